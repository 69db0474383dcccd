"""Every setting of the sequential localizer (:mod:`~unifygeo_ros.localization.tracking`) with its default, in one
place: the node's ``tracking.*`` parameters, ``unifygeo replay --track-set`` and config/localize.yaml read them from
here (docs/TRACKING.md explains and measures them)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from unifygeo_ros.localization.gate import GateSettings
from unifygeo_ros.localization.posterior import DEFAULT_ALPHA
from unifygeo_ros.localization.tracking_cold import COLD_STARTS
from unifygeo_ros.localization.tracking_motion import TrackingInputError

FILTERS = ("particles", "grid")


@dataclass(frozen=True)
class TrackingSettings:
    """Every setting of the sequential localizer, with its default (module doc; docs/TRACKING.md)."""

    filter: str = "particles"  #: "particles" | "grid"
    particles: int = 1000  #: particle count
    grid_cell_m: float = 1.0  #: grid cell side
    grid_window_m: float = 120.0  #: grid window side (grown to hold the initial disc)
    max_tiles: int = 6  #: tiles evaluated per frame (those holding the most belief)
    map_temperature: float | None = None  #: None: the calibration's pl_map_temperature
    evidence_weight: float = 0.25  #: exponent of a frame's likelihood (frames of a drive are not independent)
    #: the spacing between frames (m) the per-frame settings were tuned at (8 m/s, 2 Hz): a frame's evidence weighs
    #: fully (evidence_weight, cold_evidence_weight) once the robot has driven this far since the last update, in
    #: proportion below it (frames closer together see the same scene: their maps share their errors), at least
    #: evidence_min_share; and position_noise_frac is a random walk over the distance equal to it over this
    #: spacing, so a faster camera or a slower robot gets the same confidence per metre (fixes outside the belief count
    #: towards disagree_fixes by the distance between them); 0 = all per frame
    frame_spacing_m: float = 4.0
    evidence_min_share: float = 0.1  #: see frame_spacing_m
    #: a frame less than this far (odometry, m) from the last measured one is the same view (a robot standing still:
    #: the same scene, the same error of the maps) and is not measured at all - no evidence, no evidence ratio, no
    #: cold-start update; an accepted fix from there adds nothing to the kidnap rule's count; 0 = every frame
    still_m: float = 0.05
    #: no odometry sample for longer than this before a frame (s): the belief cannot be moved to it, so the frame
    #: is not measured and the estimate is withheld (odometry_stale); the sample after such a gap covers it by
    #: extrapolation and declares the belief lost: an accepted global fix that agrees with it keeps it, one that
    #: does not re-initialises it, else the candidate cold start resumes (the robot may have gone anywhere)
    odometry_timeout_s: float = 0.5
    floor_ratio: float = 0.01  #: a frame's likelihood is at least this share of its maximum over the belief
    model_heading_min_std_deg: float = 10.0  #: floor of the model's heading std (unknown-orientation models)
    heading_weight: float = 0.25  #: exponent of an absolute heading's likelihood (an IMU's readings share its bias)
    heading_reset_sigmas: float = 5.0  #: an absolute heading this far (combined sigmas) from the belief replaces it
    #: such a heading means the robot was moved where the odometry could not see it (a kidnap: carried, towed):
    #: an informative camera's belief (informative_log_ratio) is declared lost at once, as after an odometry gap; any
    #: other camera's estimate is withheld (weak) until cold_collapse_frames frames have been measured since (its
    #: evidence window then holds only those), then judged by its evidence as before. A change of the IMU's
    #: correction (imu_heading_deadband_deg) is no turn
    heading_reset_lost: bool = True
    #: an IMU heading that turned this much more or less than the odometry since the previous frame's reading is such
    #: a turn too (its heading is replaced), however wide the IMU's reported covariance (an IMU that reports its
    #: bias as a 10 deg sigma puts heading_reset_sigmas at ~100 deg); 0 = only heading_reset_sigmas
    heading_jump_deg: float = 30.0
    odometry_noise_scale: float = 1.5  #: the odometry's covariance is multiplied by this squared
    position_noise_frac: float = 0.05  #: extra position noise, share of the distance driven (1-sigma)
    #: particles: each carries its own scale of the odometry's distances, drawn 1 +- this once tracking (a wheel
    #: odometry's scale error is a bias over the drive, not per-sample noise; held at what was learnt through a cold
    #: start); 0 = the odometry's scale is taken as right: the default since 2026-12-01 evening (0.05 that day) - set
    #: 0.05 for an odometry not calibrated to about 2 % (docs/TRACKING.md 'An odometry whose scale is off')
    odometry_scale_std: float = 0.0
    odometry_scale_walk_per_sqrt_m: float = 0.001  #: the scales' random walk (per square root of a metre driven)
    #: the odometry's scale and the IMU's heading offset fitted (a similarity) between dead-reckoned tracks and the
    #: belief's published one over the last this many metres driven while converged (tracking_sensors.py); once the
    #: scale is further than odometry_scale_deadband from 1 the particles get their own scale
    #: (odometry_scale_detected_std around it) from then on; 0 = neither is fitted
    odometry_scale_window_m: float = 300.0
    odometry_scale_deadband: float = 0.03  #: see odometry_scale_window_m
    odometry_scale_detected_std: float = 0.05  #: see odometry_scale_window_m
    #: once the IMU's heading offset is measured further than this from 0 (deg), the measured offset is taken off its
    #: readings from then on (180: never)
    imu_heading_deadband_deg: float = 3.0
    #: only frames published with a protection level of at most this (m) are part of the fits' stretch
    sensor_fit_max_protection_level_m: float = 5.0
    sensor_fit_estimates: int = 5  #: each fit's estimate is the median of this many last fits
    position_noise_m_per_sqrt_s: float = 0.1  #: extra position random walk
    yaw_noise_deg_per_sqrt_s: float = 0.3  #: extra heading random walk
    min_score: float = GateSettings.min_score  #: the integrity gate's, for the global fixes
    max_protection_level_m: float = GateSettings.max_protection_level_m  #: the gate's
    init_min_radius_m: float = 10.0  #: the initial belief covers at least this radius around the fix
    #: accepted global fixes outside the belief in a row that re-initialise it, each after the first counted by the
    #: distance from the previous one over frame_spacing_m, at most 1 (a fix 1.6 m after the last one counts 0.4)
    disagree_fixes: int = 2
    collapse_log_ratio: float = 1.0  #: evidence ratio (log) below which a frame counts towards "lost"
    collapse_frames: int = 4  #: such frames in a row declare the belief lost
    #: 1-sigma (per axis) of the maps' slowly varying error that the frames of a drive share: added to the published
    #: covariance and protection level (0 = off)
    map_bias_std_m: float = 0.5
    converged_pl_m: float = 10.0  #: converged = initialised, not lost, protection level at most this
    alpha: float = DEFAULT_ALPHA  #: risk of the protection level
    global_every: int = 1  #: global search every N frames (always while uninitialised or lost)
    north_aligned: bool = False  #: the panorama's centre column looks north (else along the robot's heading)
    seed: int = 0  #: the particles' random generator
    #: "candidates" (particles; the grid keeps "accepted_fix"): start from the first gate-accepted global fix or
    #: from a belief seeded by every frame's candidates, once its protection level is within max_protection_level_m;
    #: "accepted_fix": from the first gate-accepted global fix only (docs/TRACKING.md, measured: "candidates" starts
    #: narrow cameras and recovers where no global fix passes the gate, at more frames beyond the protection level)
    cold_start: str = "candidates"
    cold_evidence_weight: float = 0.25  #: evidence_weight of the candidate cold start's frames
    #: cold_start "candidates": a belief declared lost goes back to the candidate cold start, its particles kept
    #: beside a background of this mass (withheld until it is concentrated again)
    cold_resume_mass: float = 0.5
    #: cold_start "candidates": "lost" also needs the log evidence ratios of this many last frames to sum below
    #: collapse_log_ratio (a narrow camera's frames explain little one by one, but not nothing over 10 s)
    cold_collapse_frames: int = 20
    #: when the frames before a run of poor ones explained the belief this well (median log evidence ratio; one
    #: 90 deg camera 0-2, a 4 x 90 rig about 6, a panorama 7-17), the camera is informative: its poor frames are
    #: withheld at once (``unconfirmed``), and with cold_start "candidates" ``collapse_frames`` of them in a row
    #: declare it lost without waiting for the window
    informative_log_ratio: float = 3.0
    #: an informative camera's frame is also poor when its log evidence ratio falls below this share of the median of
    #: the frames before (0 = only below collapse_log_ratio)
    poor_share: float = 0.3
    #: the estimate is withheld (``weak``) while the mean log evidence ratio of the last ``weak_frames`` frames since
    #: the belief was (re)initialised is below ``weak_log_ratio`` (0 frames = never): one 90 deg camera explains its
    #: belief with 0-2 per frame on track and ~0 after a kidnap, long before "lost" is declared
    weak_frames: int = 6
    weak_log_ratio: float = 0.25

    def __post_init__(self):
        if self.filter not in FILTERS:
            raise TrackingInputError(f"tracking filter must be one of {FILTERS}, got {self.filter!r}")
        if self.cold_start not in COLD_STARTS:
            raise TrackingInputError(f"tracking cold_start must be one of {COLD_STARTS}, got {self.cold_start!r}")
        positive = ("particles", "grid_cell_m", "grid_window_m", "max_tiles", "evidence_weight", "heading_weight",
                    "cold_evidence_weight", "cold_collapse_frames",
                    "disagree_fixes", "collapse_frames", "global_every", "converged_pl_m")
        for name in positive:
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise TrackingInputError(f"tracking {name} must be positive, got {v}")
        if not math.isfinite(self.informative_log_ratio):
            raise TrackingInputError(f"tracking informative_log_ratio must be a finite number, got "
                                     f"{self.informative_log_ratio}")
        if not (math.isfinite(self.frame_spacing_m) and self.frame_spacing_m >= 0):
            raise TrackingInputError(f"tracking frame_spacing_m must be a finite number >= 0, got "
                                     f"{self.frame_spacing_m}")
        if not 0.0 < self.evidence_min_share <= 1.0:
            raise TrackingInputError(f"tracking evidence_min_share must be in (0, 1], got {self.evidence_min_share}")
        for name in ("odometry_scale_std", "odometry_scale_walk_per_sqrt_m", "odometry_scale_detected_std"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v < 0.5):
                raise TrackingInputError(f"tracking {name} must be a number in [0, 0.5), got {v}")
        if not (math.isfinite(self.odometry_scale_window_m) and self.odometry_scale_window_m >= 0
                and math.isfinite(self.odometry_scale_deadband) and 0 <= self.odometry_scale_deadband < 0.5):
            raise TrackingInputError(f"tracking odometry_scale_window_m must be a finite number >= 0 and "
                                     f"odometry_scale_deadband in [0, 0.5), got {self.odometry_scale_window_m}, "
                                     f"{self.odometry_scale_deadband}")
        if not (math.isfinite(self.imu_heading_deadband_deg) and 0 <= self.imu_heading_deadband_deg <= 180
                and math.isfinite(self.sensor_fit_max_protection_level_m) and self.sensor_fit_max_protection_level_m > 0
                and isinstance(self.sensor_fit_estimates, int) and self.sensor_fit_estimates >= 1):
            raise TrackingInputError(f"tracking imu_heading_deadband_deg must be in [0, 180], "
                                     f"sensor_fit_max_protection_level_m > 0 and sensor_fit_estimates an integer >= 1, "
                                     f"got {self.imu_heading_deadband_deg}, {self.sensor_fit_max_protection_level_m}, "
                                     f"{self.sensor_fit_estimates!r}")
        if not (math.isfinite(self.heading_jump_deg) and 0 <= self.heading_jump_deg <= 180):
            raise TrackingInputError(f"tracking heading_jump_deg must be in [0, 180], got {self.heading_jump_deg}")
        if not (math.isfinite(self.still_m) and self.still_m >= 0):
            raise TrackingInputError(f"tracking still_m must be a finite number >= 0, got {self.still_m}")
        if not self.odometry_timeout_s > 0:  # inf: never stale
            raise TrackingInputError(f"tracking odometry_timeout_s must be > 0, got {self.odometry_timeout_s}")
        if not (isinstance(self.weak_frames, int) and 0 <= self.weak_frames <= self.cold_collapse_frames):
            raise TrackingInputError(f"tracking weak_frames must be an integer in [0, cold_collapse_frames], got "
                                     f"{self.weak_frames!r}")
        if not math.isfinite(self.weak_log_ratio):
            raise TrackingInputError(f"tracking weak_log_ratio must be a finite number, got {self.weak_log_ratio}")
        if not 0.0 <= self.poor_share < 1.0:
            raise TrackingInputError(f"tracking poor_share must be in [0, 1), got {self.poor_share}")
        if not (math.isfinite(self.map_bias_std_m) and self.map_bias_std_m >= 0):
            raise TrackingInputError(f"tracking map_bias_std_m must be a finite number >= 0, got {self.map_bias_std_m}")
        if not 0.0 < self.alpha < 1.0 or not 0.0 <= self.floor_ratio < 1.0:
            raise TrackingInputError(f"tracking alpha must be in (0, 1) and floor_ratio in [0, 1), got "
                                     f"{self.alpha}, {self.floor_ratio}")
