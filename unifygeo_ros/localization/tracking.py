"""The sequential localizer: a Bayesian filter over position and heading that localizes a driving robot from its
odometry and its camera, ROS-free (replay and the node call the same object).

    tracker = SequentialLocalizer(localizer, TrackingSettings())
    tracker.predict(OdometryDelta.from_twist(v, w, dt, var_v, var_w))   # each odometry sample (or their chain)
    est = tracker.step(panorama, stamp_s, heading_deg=imu_compass_deg, heading_std_deg=imu_std_deg)

Each :meth:`SequentialLocalizer.step` encodes the panorama once and runs (docs/TRACKING.md 'What one step does'
explains and measures every step and setting):

1. the **global search** (the single-frame :meth:`Localizer.localize <unifygeo_ros.localization.localizer.
   Localizer.localize>`, every ``global_every`` frames and whenever not initialised or lost), its fix through the
   one integrity gate (:func:`~unifygeo_ros.localization.gate.gate_fix`);
2. the **measurement update**: the metric head over the tiles under the belief, as the calibrated likelihood of
   :mod:`~unifygeo_ros.localization.tracking_evidence` (a known-orientation model gets the panorama rolled by the
   belief's heading), weighed per metre driven (``frame_spacing_m``; a robot standing still is not measured);
3. **heading**: an IMU's heading passed to ``step`` (less its offset once found, :mod:`.tracking_sensors`), or the
   model's heading field; a known-orientation model runs on odometry alone once initialised;
4. **cold start** from the first accepted global fix's posterior, or from the candidates of every frame
   (:mod:`~unifygeo_ros.localization.tracking_cold`, ``cold_start="candidates"``);
5. **re-initialisation** (kidnap): accepted global fixes outside the belief while it fails to explain the image, or
   one after the belief was declared lost (its evidence ratio poor for ``collapse_frames`` frames, an odometry gap,
   or for an informative camera a heading jump the odometry did not see, ``heading_reset_lost``); the estimate is
   withheld meanwhile (``unconfirmed``, ``weak``).

Output: a :class:`TrackEstimate` (position in WGS84 and ENU, heading, the belief's covariance and protection level at
``alpha``, flags, time per step). Particles or a grid (``TrackingSettings.filter``): docs/TRACKING.md explains the
choice, benchmarks/bench_tracking.py measures it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.localization.fix import Fix
from unifygeo_ros.localization.localizer import Localizer, TileMaps
from unifygeo_ros.localization.gate import gate_fix
from unifygeo_ros.localization.tracking_belief import BeliefSummary, ParticleBelief, with_map_bias
from unifygeo_ros.localization.tracking_cold import CandidateColdStart, merged_maps
from unifygeo_ros.localization.tracking_estimate import TrackEstimate
from unifygeo_ros.localization.tracking_evidence import TileLikelihood, index_area_m2, tiles_under
from unifygeo_ros.localization.tracking_grid import GridBelief
from unifygeo_ros.localization.tracking_motion import OdometryDelta, TrackingInputError
from unifygeo_ros.localization.tracking_ratios import EvidenceRatios
from unifygeo_ros.localization.tracking_sensors import SensorFit
from unifygeo_ros.localization.tracking_settings import FILTERS, TrackingSettings

__all__ = ["FILTERS", "OdometryDelta", "SequentialLocalizer", "TrackEstimate", "TrackingInputError",
           "TrackingSettings"]
COLD_CANDIDATES = "cold start from the candidates' belief"
NEEDS_HEADING = ("a known-orientation model needs the robot's heading before it can start: pass heading_deg (IMU) "
                 "or initial_heading_deg")


@dataclass
class _Challenger:
    """Accepted global fixes that disagree with the belief, moved along by the odometry."""

    en_m: np.ndarray
    protection_level_m: float
    count: int  #: fixes in a row
    support: float  #: the same, each after the first weighed by the distance from the previous one (frame_spacing_m)
    driven_m: float = 0.0  #: odometry distance since the last of them


class SequentialLocalizer:
    """The filter around a :class:`~unifygeo_ros.localization.localizer.Localizer` (module doc). Not thread-safe."""

    def __init__(self, localizer: Localizer, settings: TrackingSettings | None = None,
                 initial_heading_deg: float | None = None):
        self.localizer = localizer
        self.settings = settings or TrackingSettings()
        self.initial_heading_deg = initial_heading_deg
        index = localizer.index
        self.area_m2 = index_area_m2(index.en_m, index.tile_m)
        self.rng = np.random.default_rng(self.settings.seed)
        #: the odometry's scale and the IMU's heading offset over a long stretch: the robot's, so kept through reset()
        self.sensor_fit = SensorFit.from_settings(self.settings)
        self._imu_correction_deg = 0.0  # the correction the last IMU reading was given (a change of it is no turn)
        self._imu_yaw_rad: float | None = None  # the last frame's IMU heading (ENU yaw; None: that frame had none)
        self._odometry_yaw_rad = 0.0  # the odometry's turn since then
        self.reset()

    def reset(self) -> None:
        """Forget the belief (the next accepted global fix initialises it again)."""
        s = self.settings
        self.belief = (ParticleBelief(s.particles, self.rng, scale_std=s.odometry_scale_std,
                                      scale_walk_per_sqrt_m=s.odometry_scale_walk_per_sqrt_m)
                       if s.filter == "particles"
                       else GridBelief(s.grid_cell_m, s.grid_window_m))
        self.sensor_fit.hand_over(self.belief)  # once found off scale, the particles keep their scale state
        self.initialised = False
        self.lost = False
        self._ratios = EvidenceRatios(s)  # the last frames' log evidence ratios and what they say of the belief
        self._turned_frames = 0  # frames still withheld after a turn the odometry did not see (a narrow camera)
        self._challenger: _Challenger | None = None
        self._published: tuple[BeliefSummary, BeliefSummary] | None = None  # (belief's, with the map's error)
        self._frames = 0
        self._driven_m = math.inf  # odometry distance since the last measurement update (inf: none yet)
        self._heading: tuple[float, float] | None = None  # last absolute heading (yaw rad, var) before init
        self._cold = (CandidateColdStart(self.belief, self.area_m2)
                      if s.cold_start == "candidates" and s.filter == "particles" else None)

    # ---- inputs -------------------------------------------------------------------------------------------
    def predict(self, delta: OdometryDelta) -> None:
        """Move the belief by one odometry interval (its covariance scaled, plus the settings' process noise)."""
        self.sensor_fit.move(delta)
        self._odometry_yaw_rad += delta.yaw_rad
        if not self.initialised and not self._seeded():
            return
        s = self.settings
        # the share of the distance as a random walk over distance, equal to it over frame_spacing_m (0: per step)
        d2 = delta.distance_m * (s.frame_spacing_m if s.frame_spacing_m > 0 else delta.distance_m)
        extra = np.diag([s.position_noise_frac ** 2 * d2 + s.position_noise_m_per_sqrt_s ** 2
                         * delta.dt_s] * 2 + [math.radians(s.yaw_noise_deg_per_sqrt_s) ** 2 * delta.dt_s])
        noisy = OdometryDelta(delta.forward_m, delta.left_m, delta.yaw_rad,
                              delta.cov * s.odometry_noise_scale ** 2 + extra, delta.dt_s)
        yaw = self.belief.summary(0.5).yaw_rad if self._challenger is not None else 0.0
        if delta.gap_s > 0 and self.initialised:  # an odometry gap: the robot may have gone wherever it could drive
            self.lost = True  # an accepted fix that agrees keeps the extrapolated belief, else it starts again
        self._driven_m += delta.distance_m
        self.belief.predict(noisy)
        if self._challenger is not None:
            self._challenger.en_m = self._challenger.en_m + delta.in_world(yaw)
            self._challenger.driven_m += delta.distance_m

    def heading(self, heading_deg: float, heading_std_deg: float) -> None:
        """An absolute compass heading of the robot (IMU/AHRS, compass) and its 1-sigma; once its offset was found
        over a long stretch (``imu_heading_deadband_deg``), the reading less that offset. A reading that implies a
        turn the odometry did not see - ``heading_reset_sigmas`` from the belief's heading, or ``heading_jump_deg``
        beyond the odometry's turn since the previous reading - replaces the belief's heading and means the robot was
        moved (``heading_reset_lost``)."""
        if not (math.isfinite(heading_deg) and math.isfinite(heading_std_deg) and heading_std_deg > 0):
            raise TrackingInputError(f"heading needs finite values and std > 0, got {heading_deg}, {heading_std_deg}")
        s = self.settings
        self.sensor_fit.imu(heading_deg)
        before, correction = self._imu_correction_deg, self.sensor_fit.imu_correction_deg
        self._imu_correction_deg = correction
        yaw = math.radians(float(geo.heading_to_yaw_deg(heading_deg - correction)))
        # the same reading with the previous reading's correction: a change of the correction is no turn
        same = math.radians(float(geo.heading_to_yaw_deg(heading_deg - before)))
        var = math.radians(heading_std_deg) ** 2 / s.heading_weight
        self._heading = (yaw, var)
        jumped = (self._imu_yaw_rad is not None and s.heading_jump_deg > 0
                  and abs(float(geo.wrap_pi(same - self._imu_yaw_rad - self._odometry_yaw_rad)))
                  > math.radians(s.heading_jump_deg))
        self._imu_yaw_rad, self._odometry_yaw_rad = yaw, 0.0
        if self.initialised or self._seeded():
            off = correction == before or self.belief.heading_off(same, var, s.heading_reset_sigmas)
            turned = self.belief.update_heading(yaw, var, 0.0 if jumped else s.heading_reset_sigmas)
            if (jumped or (turned and off)) and self.initialised and s.heading_reset_lost:
                # turned where the odometry could not see it: moved too (a kidnap). An informative camera's belief
                # is lost, as after an odometry gap; a narrow camera's is withheld until its evidence window holds
                # only frames since the turn (cold_collapse_frames: by then "lost" could be judged on them), then
                # judged by its evidence as before (its cold start, begun at once, settled on wrong places more often)
                if self._ratios.informative():
                    self.lost = True
                else:
                    self._turned_frames = s.cold_collapse_frames

    # ---- the step -----------------------------------------------------------------------------------------
    def step(self, image: np.ndarray, stamp_s: float, heading_deg: float | None = None,
             heading_std_deg: float = 2.0, odometry_stale: bool = False) -> TrackEstimate:
        """One camera frame (RGB equirectangular panorama) at ``stamp_s``, after the odometry up to that time
        (:meth:`predict`); ``heading_deg``: the robot's compass heading from an IMU, when there is one;
        ``odometry_stale``: no odometry reached ``stamp_s`` (``odometry_timeout_s``), so the belief is not where the
        robot is: the frame is not measured and the estimate says so (withheld).
        Raises :class:`~unifygeo_ros.errors.ImageError` for an unusable image (its evidence is not applied; the
        ``heading_deg`` given with it is)."""
        t0 = time.perf_counter()
        s = self.settings
        if heading_deg is not None:
            self.heading(heading_deg, heading_std_deg)
        else:
            self._imu_yaw_rad = None  # the next reading has no previous one to be compared with
        query_heading = self._query_heading()
        rows, support = self._rows()
        run_global = not self.initialised or self.lost or self._frames % s.global_every == 0
        self._frames += 1
        if query_heading is None and self.localizer.known_orientation and not s.north_aligned:
            est = self._estimate(stamp_s, None, False, "", math.nan, 0)
            est.note = NEEDS_HEADING
            return self._timed(est, t0, {})
        fix, maps = self.localizer.localize_with_maps(image, rows, query_heading, self._heading_std_deg(),
                                                      global_search=run_global)
        accepted = fix is not None and not gate_fix(fix, s.min_score, s.max_protection_level_m)[0]
        log_ratio, why = math.nan, ""
        new_view = not odometry_stale and self._new_view()
        if self.initialised:
            if new_view:
                log_ratio = self._measure(maps, support)
            why = self._check_kidnap(fix if accepted else None)
            if self.lost and not why and self._cold is not None:  # back to the candidate cold start (withheld)
                self.initialised, self.lost, self._challenger = False, False, None
                self._ratios.clear()
                self._cold.background, self._cold.frames = s.cold_resume_mass, 0
        elif accepted:
            why = "cold start from an accepted global fix"
        elif self._cold is not None and new_view:
            why = self._cold_step(fix, maps)
        if why.startswith(COLD_CANDIDATES):  # the candidates' particles become the tracking belief
            self.initialised, self.lost, self._ratios.low_frames, self._challenger = True, False, 0, None
        elif why:
            self._initialise(fix)
        if why:
            self._turned_frames = 0
        self.belief.learn_scales(self.initialised)  # the odometry's scale: learnt while tracking, held otherwise
        est = self._estimate(stamp_s, fix, accepted, why, log_ratio, len(rows), odometry_stale)
        self.sensor_fit.watch(est, self.belief)
        est.odometry_scale = self.belief.mean_scale()
        if math.isnan(est.odometry_scale):  # no scale state (yet): what the long stretch measured
            est.odometry_scale = self.sensor_fit.scale_estimate
        est.imu_heading_offset_deg = self.sensor_fit.imu_offset_deg
        if not self.initialised and self._cold is not None:
            est.cold_protection_level_m = self._cold.protection_level_m(s.alpha)
        return self._timed(est, t0, maps.timings_ms)

    # ---- pieces of the step -------------------------------------------------------------------------------
    def _seeded(self) -> bool:
        return not self.initialised and self._cold is not None and self._cold.seeded

    def _cold_likelihood(self, fix: Fix | None, maps: TileMaps) -> TileLikelihood | None:
        """This frame's likelihood over its K candidates and the tiles under the belief, when its fix passes the
        gate's input checks (finite, not out of distribution; any protection level), else None."""
        if fix is None or fix.evidence is None or gate_fix(fix, -math.inf, math.inf)[0]:
            return None
        ev = fix.evidence
        cand = TileMaps(np.full(len(ev.scores), -1, np.int64), ev.centres_en_m, float(ev.tile_m[0]), ev.maps,
                        ev.scores, np.zeros((len(ev.scores), 2, *ev.maps.shape[1:]), np.float32))
        return TileLikelihood(merged_maps(cand, maps), self.localizer.calibration, self.area_m2,
                              self.settings.map_temperature)

    def _cold_step(self, fix: Fix | None, maps: TileMaps) -> str:
        """The candidate cold start's update with this frame (a fix that passes the gate's input checks: finite,
        not out of distribution); returns why the filter is initialised now, or ""."""
        s = self.settings
        lik = self._cold_likelihood(fix, maps)
        if lik is None:
            return ""
        yaw, yaw_std = self._initial_heading(fix)
        self._cold.update(lik, s.cold_evidence_weight * self._evidence_share(), s.floor_ratio, yaw, yaw_std)
        pl = self._cold.protection_level_m(s.alpha)
        if pl <= s.max_protection_level_m:
            return f"{COLD_CANDIDATES} ({self._cold.frames} frames, protection level {pl:.1f} m)"
        return ""

    def _query_heading(self) -> float | None:
        """The compass heading the localizer rolls the panorama by (None: as it is)."""
        if self.settings.north_aligned:
            return 0.0 if self.localizer.known_orientation else None
        if self.initialised:
            return float(geo.yaw_to_heading_deg(math.degrees(self.belief.summary(0.5).yaw_rad)))
        if self._heading is not None:
            return float(geo.yaw_to_heading_deg(math.degrees(self._heading[0])))
        return self.initial_heading_deg

    def _heading_std_deg(self) -> float:
        if self.initialised:
            return math.degrees(self.belief.summary(0.5).yaw_std_rad)
        return math.degrees(math.sqrt(self._heading[1])) if self._heading is not None else 5.0

    def _rows(self) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """The tiles under the belief, and the belief's support (points, weights)."""
        if not self.initialised and not self._seeded():
            return np.zeros(0, np.int64), None
        pts, w = self.belief.support()
        index = self.localizer.index
        radius = float(np.hypot(*(pts - w @ pts).T).max()) + index.tile_m
        near = index.tiles_within(*(w @ pts), radius)
        sub = tiles_under(index.en_m[near], index.tile_m, pts, w, self.settings.max_tiles)
        return near[sub], (pts, w)

    def _measure(self, maps: TileMaps, support) -> float:
        """The measurement update; returns the log evidence ratio (before the update) and tracks "lost"."""
        s = self.settings
        lik = TileLikelihood(maps, self.localizer.calibration, self.area_m2, s.map_temperature)
        density = lik.density_at(support[0])
        ratio = lik.evidence_ratio(density, support[1])
        weight = s.evidence_weight * self._evidence_share()
        self.belief.update_position(density, weight, s.floor_ratio)
        if not self.localizer.known_orientation and not s.north_aligned:
            self.belief.update_heading_field(lik, weight, math.radians(s.model_heading_min_std_deg))
        log_ratio = math.log(ratio) if ratio > 0 else -math.inf
        self._ratios.add(log_ratio)
        self._turned_frames = max(self._turned_frames - 1, 0)
        if self._ratios.lost(candidates=self._cold is not None):
            self.lost = True
        return log_ratio

    def _evidence_share(self) -> float:
        """The share of its weight this frame's evidence gets (:meth:`_spacing_share` of the distance driven since
        the last update); the update then starts a new distance."""
        driven, self._driven_m = self._driven_m, 0.0
        return self._spacing_share(driven)

    def _new_view(self) -> bool:
        """Whether this frame is a new view: the robot has moved at least ``still_m`` (odometry) since the last
        measured frame. A robot standing still sees the same scene again, with the same error of the maps: such a
        frame adds neither evidence nor an evidence ratio to the windows that judge the belief (weak, unconfirmed,
        lost), nor does it feed the candidate cold start."""
        return self._driven_m >= self.settings.still_m

    def _spacing_share(self, driven_m: float) -> float:
        """How independent a view ``driven_m`` after the last one is (``frame_spacing_m``): the distance over the
        spacing, within [``evidence_min_share``, 1]; 1 when the spacing is 0 (per frame)."""
        s = self.settings
        if s.frame_spacing_m <= 0:
            return 1.0
        return min(max(driven_m / s.frame_spacing_m, s.evidence_min_share), 1.0)

    def _published_summary(self) -> BeliefSummary:
        """The belief's summary at ``alpha`` with the map's shared error (``map_bias_std_m``) folded in: what is
        published and what a global fix is compared with."""
        b = self.belief.summary(self.settings.alpha)
        if self._published is None or self._published[0] is not b:
            pts, w = self.belief.support()
            self._published = (b, with_map_bias(b, pts, w, self.settings.map_bias_std_m, self.settings.alpha))
        return self._published[1]

    def _check_kidnap(self, fix: Fix | None) -> str:
        """The reason to re-initialise from ``fix`` (an accepted global fix), or ""."""
        if fix is None:
            return ""
        s = self.settings
        b = self._published_summary()
        at = np.array([fix.east_m, fix.north_m])
        if float(np.hypot(*(at - b.mean_en_m))) <= b.protection_level_m + fix.protection_level_m:
            self._challenger, self._ratios.low_frames, self.lost = None, 0, False  # the global evidence agrees
            return ""
        if self.lost:
            return "the belief was lost; an accepted global fix re-initialises it"
        c = self._challenger
        same = c is not None and float(np.hypot(*(at - c.en_m))) <= c.protection_level_m + fix.protection_level_m
        if same and c.driven_m < s.still_m:  # the same place from where the last one was seen: counted, no support
            c.count += 1
        elif same:  # one more view of the same place, as independent as the distance since the last one makes it
            self._challenger = _Challenger(at, fix.protection_level_m, c.count + 1,
                                           c.support + self._spacing_share(c.driven_m))
        else:
            self._challenger = _Challenger(at, fix.protection_level_m, 1, 1.0)
        if self._challenger.support >= s.disagree_fixes - 1e-9 and self._ratios.low_frames > 0:
            # only while the belief fails to explain the image too: a wrong place can pass the gate twice in a row
            # (repetitive streets), a belief the images still confirm is not given up for it
            return f"{self._challenger.count} accepted global fixes outside the belief (kidnap)"
        return ""

    def _initialise(self, fix: Fix) -> None:
        s = self.settings
        ev = fix.evidence
        maps = TileMaps(np.zeros(len(ev.scores), np.int64), ev.centres_en_m, float(ev.tile_m[0]), ev.maps, ev.scores,
                        np.zeros((len(ev.scores), 2, *ev.maps.shape[1:]), np.float32))
        density = TileLikelihood(maps, self.localizer.calibration, self.area_m2, s.map_temperature)
        yaw, yaw_std = self._initial_heading(fix)
        radius = max(fix.protection_level_m, s.init_min_radius_m)
        self.belief.init_from(density, np.array([fix.east_m, fix.north_m]), radius, yaw, yaw_std)
        if self._cold is not None:
            self._cold.background = s.alpha
        self._ratios.clear()
        self.initialised, self.lost, self._challenger = True, False, None

    def _initial_heading(self, fix: Fix) -> tuple[float, float]:
        """(ENU yaw, std) rad: the IMU's when given, else the belief's (re-initialisation), else
        ``initial_heading_deg``, else the model's estimate (vehicle-aligned panoramas), else unknown (std pi)."""
        if self._heading is not None:
            return self._heading[0], math.sqrt(self._heading[1])
        if self.initialised:
            b = self.belief.summary(0.5)
            return b.yaw_rad, b.yaw_std_rad
        if self.initial_heading_deg is not None:
            return math.radians(float(geo.heading_to_yaw_deg(self.initial_heading_deg))), math.radians(5.0)
        if fix.heading_source == "model" and not self.settings.north_aligned:
            return math.radians(fix.yaw_deg), math.radians(max(fix.heading_std_deg, 1.0))
        return 0.0, math.pi  # unknown: particles spread over every heading, the images and odometry sort them out

    def _estimate(self, stamp_s: float, fix: Fix | None, accepted: bool, why: str, log_ratio: float,
                  tiles: int, odometry_stale: bool = False) -> TrackEstimate:
        s = self.settings
        if not self.initialised:
            nan = math.nan
            return TrackEstimate(stamp_s, nan, nan, nan, nan, nan, nan, nan, np.full((2, 2), nan), math.inf,
                                 False, False, False, False, why, log_ratio, tiles, fix, accepted)
        b = self._published_summary()
        east, north = (float(v) for v in b.mean_en_m)
        lat, lon = self.localizer.index.origin.from_en(east, north)
        yaw_deg = float(geo.wrap_deg(math.degrees(b.yaw_rad)))
        unconfirmed = not self.lost and not why and self._ratios.unconfirmed()
        weak = not self.lost and not why and (self._turned_frames > 0 or self._ratios.weak())
        stale = odometry_stale and not why  # a re-initialisation from a global fix needs no odometry
        converged = (not self.lost and not unconfirmed and not weak and not stale
                     and b.protection_level_m <= s.converged_pl_m)
        return TrackEstimate(stamp_s, float(lat), float(lon), east, north,
                             float(geo.wrap_deg(geo.yaw_to_heading_deg(yaw_deg))), yaw_deg,
                             math.degrees(b.yaw_std_rad), b.covariance_en_m2, b.protection_level_m, True, converged,
                             self.lost, unconfirmed, why, log_ratio, tiles, fix, accepted, weak=weak,
                             odometry_stale=stale)

    @staticmethod
    def _timed(est: TrackEstimate, t0: float, timings_ms: dict) -> TrackEstimate:
        est.step_ms = 1000.0 * (time.perf_counter() - t0)
        single = float(timings_ms.get("total", 0.0)) if est.fix is not None else 0.0
        est.tracking_ms = max(est.step_ms - single, 0.0)
        est.timings_ms = dict(timings_ms)
        return est
