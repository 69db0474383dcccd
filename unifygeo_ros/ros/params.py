"""The localizer node's parameters and their checks. ROS-free.

:data:`PARAMETERS` is the one list of the node's parameters (name, default, description): the node declares
exactly these, ``config/localize.yaml`` sets exactly these (tested), docs/NODE.md describes them.
:meth:`NodeSettings.from_params` turns the values into typed settings and refuses impossible ones with one
:class:`~unifygeo_ros.errors.UnifyGeoError` message. The defaults of the pipeline's settings (``min_score``,
``aspect_tolerance``, the prior) are those of :class:`~unifygeo_ros.localization.pipeline.PipelineSettings`, which
``unifygeo replay`` uses too. The embedded demo's paths: :mod:`unifygeo_ros.resources`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.image.rig import RigSettings
from unifygeo_ros.localization.pipeline import MODES, PipelineSettings, PriorSettings
from unifygeo_ros.localization.sensor_feed import ImuSettings
from unifygeo_ros.localization.tracking_settings import FILTERS, TrackingSettings
from unifygeo_ros.model.backends import BACKENDS, DEFAULT_BACKEND, DEFAULT_THREADS, BackendSettings

INPUT_MODES = ("panorama", "compressed", "cameras")
CAMERA_TRANSPORTS = ("raw", "compressed")
_PIPE = PipelineSettings()  # the defaults the node shares with ``unifygeo replay``
_RIG, _IMU, _TRACK = RigSettings(), ImuSettings(), TrackingSettings()
#: the sequential localizer's settings the node exposes as ``tracking.<name>`` (defaults: TrackingSettings; the gate's
#: limits are min_score / max_protection_level_m, the panorama's convention follows heading_source)
TRACKING_PARAMETERS = (
    ("filter", "particles (default) or grid (docs/TRACKING.md measures both)"),
    ("particles", "particle count"),
    ("grid_cell_m", "grid filter: cell side, m"),
    ("grid_window_m", "grid filter: side of the window that follows the belief, m"),
    ("max_tiles", "tiles whose maps are evaluated per frame (those holding the most belief)"),
    ("evidence_weight", "exponent of a frame's likelihood (consecutive frames are not independent views)"),
    ("frame_spacing_m", "frame spacing the per-frame settings were tuned at: a frame's evidence weighs in proportion to "
                        "the distance driven since the last update up to it, the distance noise is per metre (0: "
                        "per frame), m"),
    ("evidence_min_share", "the least share of its weight a measured frame's evidence gets"),
    ("still_m", "a frame nearer than this (odometry) to the last measured one is the same view and is not measured "
                "(a robot standing still), m"),
    ("floor_ratio", "a frame's likelihood is at least this share of its maximum over the belief"),
    ("heading_weight", "exponent of an absolute (IMU) heading's likelihood (its readings share a bias)"),
    ("heading_reset_sigmas", "an IMU heading this many combined sigmas from the belief replaces the belief's heading"),
    ("heading_reset_lost", "such an IMU heading means the robot was moved where the odometry could not see it: an "
                           "informative camera's belief is lost at once, any other's estimate withheld for "
                           "cold_collapse_frames frames"),
    ("heading_jump_deg", "an IMU heading that turned this much more or less than the odometry since the previous "
                         "frame's reading is such a turn too, however wide its reported covariance, deg (0: off)"),
    ("model_heading_min_std_deg", "floor of the model's heading std (unknown-orientation models), deg"),
    ("odometry_noise_scale", "the odometry's covariance is multiplied by this squared"),
    ("position_noise_frac", "extra position noise per prediction, share of the distance driven"),
    ("odometry_scale_std", "particles: each carries its own scale of the odometry's distances, drawn 1 +- this "
                           "from the start (0: only once odometry_scale_window_m finds the odometry off scale)"),
    ("odometry_scale_walk_per_sqrt_m", "random walk of those scales per square root of a metre driven"),
    ("odometry_scale_window_m", "the odometry's scale and the IMU's heading offset fitted between dead-reckoned tracks "
                                "and the belief's over this many metres driven; off scale by more than "
                                "odometry_scale_deadband, the particles get their own scale (0: neither is fitted)"),
    ("odometry_scale_deadband", "see odometry_scale_window_m"),
    ("odometry_scale_detected_std", "the particles' scale prior once the odometry was found off scale"),
    ("imu_heading_deadband_deg", "the IMU's heading offset measured beyond this (deg), it is taken off every reading "
                                 "from then on (180: never)"),
    ("sensor_fit_max_protection_level_m", "only frames published with a protection level of at most this are part "
                                          "of those fits' stretch, m"),
    ("sensor_fit_estimates", "each of those fits' estimate is the median of this many last fits"),
    ("position_noise_m_per_sqrt_s", "extra position random walk, m/sqrt(s)"),
    ("yaw_noise_deg_per_sqrt_s", "extra heading random walk, deg/sqrt(s)"),
    ("init_min_radius_m", "the belief started from a fix covers at least this radius, m"),
    ("disagree_fixes", "accepted global fixes outside the belief in a row that re-initialise it (kidnap), each "
                       "after the first by the distance from the previous one over frame_spacing_m"),
    ("collapse_log_ratio", "log evidence ratio below which a frame counts towards 'lost'"),
    ("collapse_frames", "such frames in a row declare the belief lost (its estimate is withheld)"),
    ("map_bias_std_m", "1-sigma of the maps' slowly varying error the frames share, added to the published "
                       "covariance and protection level, m (0 = off)"),
    ("converged_pl_m", "converged = initialised, not lost, protection level at most this, m"),
    ("global_every", "global search every N frames once tracking (always while not initialised or lost)"),
    ("seed", "seed of the particles' random generator"),
    ("cold_start", "candidates (default; particles only: start from a gate-accepted fix or from a belief seeded "
                   "by every frame's candidates, published once concentrated) or accepted_fix (a gate-accepted fix "
                   "only; what the grid does), see TRACKING.md"),
    ("cold_evidence_weight", "cold_start candidates: exponent of a frame's likelihood before initialisation"),
    ("cold_resume_mass", "cold_start candidates: the uncovered mass a lost belief resumes the cold start with"),
    ("cold_collapse_frames", "cold_start candidates: 'lost' also needs this many last frames' evidence to be poor"),
    ("informative_log_ratio", "frames this informative before a poor frame (median log evidence ratio): the "
                              "poor frame is withheld (unconfirmed), and collapse_frames of them declare the belief "
                              "lost without the cold_collapse_frames window"),
    ("weak_frames", "the estimate is withheld (weak) while the mean log evidence ratio of this many last frames is "
                    "below weak_log_ratio (0 = never)"),
    ("weak_log_ratio", "see weak_frames"),
    ("poor_share", "an informative camera's frame is also poor below this share of the median log evidence ratio "
                   "of the frames before (0 = only below collapse_log_ratio)"),
    ("odometry_timeout_s", "no odometry for longer than this before a frame: the frame is not measured and the "
                           "estimate is withheld (odometry_stale); the sample after such a gap declares the belief "
                           "lost, s"),
)
DEVICES = ("auto", "cpu", "cuda")
HEADING_SOURCES = ("auto", "model", "north_aligned", "imu")
#: the number parameters for which infinity means something (``.inf`` in YAML); every other number parameter,
#: and every element of a number list, must be finite (NaN never is a value)
INFINITY_MEANS = {"max_protection_level_m": "the integrity gate off", "tracking.odometry_timeout_s": "never stale"}
#: the largest magnitude of a yaw (deg) a parameter may give: one turn either way, not wrapped (a larger number is a
#: unit or sign mistake, not an angle)
MAX_YAW_DEG = 360.0


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object
    description: str
    choices: tuple = ()
    read_only: bool = True


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "", "model checkpoint folder; empty = the embedded demo model (models/demo)"),
    ParamSpec("index", "", "aerial index folder (unifygeo index build); empty = the embedded demo index"),
    ParamSpec("device", "auto", "inference device: auto (CUDA when available), cpu or cuda", DEVICES),
    ParamSpec("cpu_threads", DEFAULT_THREADS,
              "intra-op CPU threads of torch and onnxruntime; 0 = the libraries' default (all cores). 1 measured "
              "best on 2 shared cores (docs/DEPLOYMENT.md)"),
    ParamSpec("backend", DEFAULT_BACKEND,
              "who runs the encoders: torch, or onnxruntime on an ONNX export of the checkpoint (docs/DEPLOYMENT.md)",
              BACKENDS),
    ParamSpec("onnx_export", "",
              "backend onnxruntime: export folder (unifygeo export); empty = exported once into the user's cache "
              "(~/.cache/unifygeo/onnx/<model hash>)"),
    ParamSpec("mode", _PIPE.mode,
              "single: one fix per frame; tracking: the sequential localizer - wheel odometry (nav_msgs/Odometry on "
              "'odom') between frames, the IMU heading and the images; publishes the belief (docs/TRACKING.md)",
              MODES),
    ParamSpec("input_mode", "panorama",
              "panorama: sensor_msgs/Image on 'image'; compressed: sensor_msgs/CompressedImage on "
              "'image/compressed'; cameras: several pinhole cameras stitched into a partial panorama", INPUT_MODES),
    ParamSpec("heading_source", "auto",
              "where the camera heading comes from. model: estimated by the network (models trained with unknown "
              "orientation); north_aligned: the panoramas are already north-aligned (VIGOR convention); imu: the "
              "yaw of sensor_msgs/Imu on 'imu' (REP-103 ENU: 0 = east, earth-referenced), the panorama is rolled "
              "to north before the network sees it; auto: model for unknown-orientation models, else imu",
              HEADING_SOURCES),
    ParamSpec("imu.panorama_yaw_offset_deg", _IMU.panorama_yaw_offset_deg,
              "yaw of the panorama's centre column relative to the IMU frame's x axis (REP-103: counter-clockwise, "
              "left = +90), deg"),
    ParamSpec("imu.mount_yaw_deg", _IMU.mount_yaw_deg,
              "yaw of the IMU frame's x axis relative to base_link's x axis (the base_link -> IMU transform's yaw, "
              "REP-103: counter-clockwise, left = +90), subtracted from every IMU yaw first (the panorama's offset "
              "then counts from base_link); allowed in mode tracking, deg"),
    ParamSpec("imu.max_age_s", _IMU.max_age_s, "an IMU orientation older than this (vs the image stamp) is not used, s"),
    ParamSpec("imu.default_yaw_std_deg", _IMU.default_yaw_std_deg,
              "heading standard deviation published when the IMU reports no yaw covariance, deg"),
    ParamSpec("min_score", _PIPE.min_score,
              "fixes whose score (the model's probability that the tile is right) is below this are withheld and "
              "counted; settable at run time", read_only=False),
    ParamSpec("max_protection_level_m", _PIPE.max_protection_level_m,
              "integrity gate: fixes whose protection level (radius holding the truth with probability 1 - alpha "
              "under the posterior) is larger are withheld and counted; settable at run time", read_only=False),
    ParamSpec("use_prior", _PIPE.prior.enabled, "narrow the search around the previous published fix"),
    ParamSpec("prior.sigma_floor_m", _PIPE.prior.sigma_floor_m, "smallest prior radius (1-sigma), m"),
    ParamSpec("prior.growth_m_per_s", _PIPE.prior.growth_m_per_s,
              "prior radius growth per second since the previous fix (top speed), m/s"),
    ParamSpec("prior.max_age_s", _PIPE.prior.max_age_s, "a previous fix older than this is no prior, s"),
    ParamSpec("prior.max_sigma_m", _PIPE.prior.max_sigma_m, "a prior wider than this is no prior (global search), m"),
    ParamSpec("prior.reset_after", _PIPE.prior.reset_after, "consecutive withheld fixes that drop the prior"),
    ParamSpec("map_frame", "map", "frame_id of 'pose': the local ENU frame anchored at the map origin"),
    ParamSpec("sensor_frame", "base_link",
              "frame_id of 'fix' and 'geopose*': the panorama camera's frame (navsat_transform_node uses it for "
              "the antenna offset)"),
    ParamSpec("map_origin.from_index", True, "anchor the map frame at the index's origin (else at lat/lon below)"),
    ParamSpec("map_origin.lat_deg", 0.0, "map frame origin latitude (when map_origin.from_index is false), deg"),
    ParamSpec("map_origin.lon_deg", 0.0, "map frame origin longitude (when map_origin.from_index is false), deg"),
    ParamSpec("altitude_m", 0.0, "published altitude (WGS84 ellipsoid height of the ground at the camera); "
                                 "the fix does not measure altitude, m"),
    ParamSpec("vertical_variance_m2", 1e6, "variance of the published altitude / z, m^2 (default: unmeasured - "
              "nothing measures the altitude; set it with altitude_m from a terrain model)"),
    ParamSpec("unmeasured_variance", 1.0e6, "variance published for roll and pitch (not measured), rad^2"),
    ParamSpec("diagnostics_period_s", 1.0, "period of /diagnostics, s"),
    ParamSpec("warn_throttle_s", 5.0, "at most one log line per kind of bad input per this period, s"),
    ParamSpec("aspect_tolerance", _PIPE.aspect_tolerance,
              "accepted relative deviation of a panorama's width/height from 2"),
    ParamSpec("cameras.names", list(_RIG.camera_names),
              "camera names (input_mode cameras): topics cameras/<name>/image and cameras/<name>/camera_info"),
    ParamSpec("cameras.yaw_deg", list(_RIG.camera_yaw_deg),
              "yaw of each camera's optical axis in the body frame (REP-103: counter-clockwise, left = +90), deg"),
    ParamSpec("cameras.pitch_deg", list(_RIG.camera_pitch_deg), "pitch of each camera (up positive), deg"),
    ParamSpec("cameras.panorama_width", _RIG.panorama_width, "width of the stitched panorama, px (height = width / 2)"),
    ParamSpec("cameras.sync_tolerance_s", _RIG.sync_tolerance_s,
              "images of the rig whose stamps differ by more are not stitched, s"),
    ParamSpec("cameras.transport", _RIG.camera_transport,
              "image_transport of the cameras' images: raw (sensor_msgs/Image on cameras/<name>/image) or "
              "compressed (sensor_msgs/CompressedImage, JPEG or PNG, on cameras/<name>/image/compressed)",
              CAMERA_TRANSPORTS),
    ParamSpec("cameras.rectified", _RIG.camera_rectified,
              "the cameras' images are rectified (image_rect): stitched with CameraInfo's P, no distortion; false: "
              "raw images, stitched with its K and lens distortion (plumb_bob, rational_polynomial, equidistant)"),
    *(ParamSpec(f"tracking.{name}", getattr(_TRACK, name), f"mode tracking: {text}",
                FILTERS if name == "filter" else ()) for name, text in TRACKING_PARAMETERS),
)
PARAMETER_NAMES = tuple(p.name for p in PARAMETERS)


@dataclass(frozen=True)
class NodeSettings:
    """Typed, checked parameter values."""

    checkpoint: str
    index: str
    device: str
    cpu_threads: int
    backend: str
    onnx_export: str
    input_mode: str
    heading_source: str
    imu_panorama_yaw_offset_deg: float
    imu_mount_yaw_deg: float
    imu_max_age_s: float
    imu_default_yaw_std_deg: float
    min_score: float
    max_protection_level_m: float
    use_prior: bool
    prior_sigma_floor_m: float
    prior_growth_m_per_s: float
    prior_max_age_s: float
    prior_max_sigma_m: float
    prior_reset_after: int
    map_frame: str
    sensor_frame: str
    map_origin_from_index: bool
    map_origin_lat_deg: float
    map_origin_lon_deg: float
    altitude_m: float
    vertical_variance_m2: float
    unmeasured_variance: float
    diagnostics_period_s: float
    warn_throttle_s: float
    aspect_tolerance: float
    camera_names: tuple
    camera_yaw_deg: tuple
    camera_pitch_deg: tuple
    panorama_width: int
    sync_tolerance_s: float
    camera_transport: str = _RIG.camera_transport
    camera_rectified: bool = _RIG.camera_rectified
    mode: str = _PIPE.mode
    tracking: TrackingSettings = _TRACK

    @classmethod
    def from_params(cls, values: dict) -> "NodeSettings":
        """``values``: parameter name -> value (missing names take their defaults). Raises UnifyGeoError."""
        unknown = set(values) - set(PARAMETER_NAMES)
        if unknown:
            raise UnifyGeoError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        v = {p.name: values.get(p.name, p.default) for p in PARAMETERS}
        for p in PARAMETERS:
            if p.choices and v[p.name] not in p.choices:
                raise UnifyGeoError(f"parameter {p.name}: {v[p.name]!r} is not one of {', '.join(p.choices)}")
            _check_number(p, v[p.name])

        def positive(name, allow_zero=False):
            x = float(v[name])
            if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
                raise UnifyGeoError(f"parameter {name}: must be a {'non-negative' if allow_zero else 'positive'} "
                                    f"number, got {v[name]!r}")
            return x

        min_score = float(v["min_score"])
        if not 0.0 <= min_score <= 1.0:
            raise UnifyGeoError(f"parameter min_score: must be within [0, 1], got {min_score}")
        names = tuple(str(n) for n in v["cameras.names"])
        yaws = tuple(float(x) for x in v["cameras.yaw_deg"])
        pitches = tuple(float(x) for x in v["cameras.pitch_deg"])
        if v["input_mode"] == "cameras":
            if not names or len(set(names)) != len(names) or any(not n or "/" in n for n in names):
                raise UnifyGeoError(f"parameter cameras.names: needs distinct non-empty names without '/', "
                                    f"got {list(names)}")
            if len(yaws) != len(names):
                raise UnifyGeoError(f"parameter cameras.yaw_deg: {len(yaws)} yaws for {len(names)} cameras "
                                    f"({list(names)})")
            if len(pitches) != len(names):
                raise UnifyGeoError(f"parameter cameras.pitch_deg: {len(pitches)} pitches for {len(names)} cameras")
        width = int(v["cameras.panorama_width"])
        if width < 16 or width % 2:
            raise UnifyGeoError(f"parameter cameras.panorama_width: must be even and >= 16, got {width}")
        _check_angles(v)
        lat, lon = float(v["map_origin.lat_deg"]), float(v["map_origin.lon_deg"])
        if not (-90 < lat < 90 and -180 <= lon <= 180):  # also when unused (map_origin.from_index): never a position
            raise UnifyGeoError(f"parameters map_origin.lat_deg/lon_deg: ({lat}, {lon}) is not a position (latitude "
                                f"within (-90, 90), longitude within [-180, 180] deg)")
        if v["onnx_export"] and v["backend"] != "onnxruntime":
            raise UnifyGeoError("parameter onnx_export: needs backend onnxruntime")
        for name in ("map_frame", "sensor_frame"):
            if not str(v[name]).strip():
                raise UnifyGeoError(f"parameter {name}: must not be empty (robot_localization needs frame ids)")
        return cls(
            checkpoint=str(v["checkpoint"]), index=str(v["index"]), device=str(v["device"]),
            cpu_threads=int(positive("cpu_threads", allow_zero=True)), backend=str(v["backend"]),
            onnx_export=str(v["onnx_export"]), input_mode=str(v["input_mode"]),
            heading_source=str(v["heading_source"]),
            imu_panorama_yaw_offset_deg=float(v["imu.panorama_yaw_offset_deg"]),
            imu_mount_yaw_deg=float(v["imu.mount_yaw_deg"]),
            imu_max_age_s=positive("imu.max_age_s"), imu_default_yaw_std_deg=positive("imu.default_yaw_std_deg"),
            min_score=min_score, max_protection_level_m=protection_limit(v["max_protection_level_m"]),
            use_prior=bool(v["use_prior"]), prior_sigma_floor_m=positive("prior.sigma_floor_m"),
            prior_growth_m_per_s=positive("prior.growth_m_per_s", True), prior_max_age_s=positive("prior.max_age_s"),
            prior_max_sigma_m=positive("prior.max_sigma_m"), prior_reset_after=max(1, int(v["prior.reset_after"])),
            map_frame=str(v["map_frame"]), sensor_frame=str(v["sensor_frame"]),
            map_origin_from_index=bool(v["map_origin.from_index"]), map_origin_lat_deg=lat, map_origin_lon_deg=lon,
            altitude_m=float(v["altitude_m"]), vertical_variance_m2=positive("vertical_variance_m2"),
            unmeasured_variance=positive("unmeasured_variance"),
            diagnostics_period_s=positive("diagnostics_period_s"), warn_throttle_s=positive("warn_throttle_s", True),
            aspect_tolerance=positive("aspect_tolerance"), camera_names=names, camera_yaw_deg=yaws,
            camera_pitch_deg=pitches, panorama_width=width, sync_tolerance_s=positive("cameras.sync_tolerance_s"),
            camera_transport=str(v["cameras.transport"]), camera_rectified=bool(v["cameras.rectified"]),
            mode=str(v["mode"]), tracking=_tracking_settings(v),
        )

    def backend_settings(self) -> BackendSettings:
        """Who runs the encoders, on ``cpu_threads`` threads (:mod:`unifygeo_ros.model.backends`)."""
        return BackendSettings(self.backend, self.cpu_threads, self.onnx_export or None)

    def pipeline_settings(self) -> PipelineSettings:
        """The settings of the shared :class:`~unifygeo_ros.localization.pipeline.LocalizationPipeline`."""
        return PipelineSettings(
            min_score=self.min_score, max_protection_level_m=self.max_protection_level_m,
            aspect_tolerance=self.aspect_tolerance,
            prior=PriorSettings(enabled=self.use_prior, sigma_floor_m=self.prior_sigma_floor_m,
                                growth_m_per_s=self.prior_growth_m_per_s, max_age_s=self.prior_max_age_s,
                                max_sigma_m=self.prior_max_sigma_m, reset_after=self.prior_reset_after),
            mode=self.mode, tracking=self.tracking)

    def imu_settings(self) -> ImuSettings:
        return ImuSettings(self.imu_panorama_yaw_offset_deg, self.imu_max_age_s, self.imu_default_yaw_std_deg,
                           self.imu_mount_yaw_deg)


def _is_number_list(default: object) -> bool:
    return isinstance(default, list) and bool(default) and all(isinstance(x, float) for x in default)


def _check_number(p: ParamSpec, value: object) -> None:
    """Refuse a value of number parameter ``p`` (int or float default; each element of a float list) that is no
    number, NaN, or infinite where infinity means nothing (:data:`INFINITY_MEANS`)."""
    if isinstance(p.default, bool) or not (isinstance(p.default, (int, float)) or _is_number_list(p.default)):
        return
    what = "a list of finite numbers" if isinstance(p.default, list) else "a finite number"
    what += f" (or .inf: {INFINITY_MEANS[p.name]})" if p.name in INFINITY_MEANS else ""
    try:
        items = list(value) if isinstance(p.default, list) else [value]
        numbers = [float(x) for x in items]
    except (TypeError, ValueError):
        numbers = [math.nan]
    for x in numbers:
        if math.isnan(x) or (math.isinf(x) and p.name not in INFINITY_MEANS):
            raise UnifyGeoError(f"parameter {p.name}: must be {what}, got {value!r}")


def _check_angles(v: dict) -> None:
    """Yaws within +-MAX_YAW_DEG (refused beyond, not wrapped), pitches within [-90, 90] deg."""
    for name in ("imu.panorama_yaw_offset_deg", "imu.mount_yaw_deg", "cameras.yaw_deg", "cameras.pitch_deg"):
        limit = 90.0 if "pitch" in name else MAX_YAW_DEG
        values = list(v[name]) if name.startswith("cameras.") else [v[name]]  # lists (a ROS double array)
        if any(abs(float(x)) > limit for x in values):
            raise UnifyGeoError(f"parameter {name}: angles must be within [-{limit:g}, {limit:g}] deg, got {v[name]!r}")


def _tracking_settings(v: dict) -> TrackingSettings:
    """The ``tracking.*`` values as :class:`TrackingSettings` (checked there: one line naming the parameter)."""
    kw = {name: type(getattr(_TRACK, name))(v[f"tracking.{name}"]) for name, _ in TRACKING_PARAMETERS}
    try:
        out = replace(_TRACK, **kw)
    except UnifyGeoError as exc:
        raise UnifyGeoError(f"parameter {str(exc).replace('tracking ', 'tracking.', 1)}") from exc
    if v["mode"] == "tracking" and float(v["imu.panorama_yaw_offset_deg"]) != 0.0:
        raise UnifyGeoError("parameter imu.panorama_yaw_offset_deg: mode tracking needs the panorama's centre column "
                            "along the robot's forward axis (offset 0; the odometry moves the robot along it); an IMU "
                            "mounted with a yaw is imu.mount_yaw_deg")
    return out


def protection_limit(value) -> float:
    """``max_protection_level_m``: a positive number of metres, or infinity (``.inf`` in YAML: the gate off)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not x > 0:
        raise UnifyGeoError(f"parameter max_protection_level_m: must be a positive number of metres (or .inf), got "
                            f"{value!r}")
    return x
