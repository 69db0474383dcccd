"""What the sequential localizer (:mod:`~unifygeo_ros.localization.tracking`) answers for one frame."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from unifygeo_ros.localization.fix import Fix


@dataclass
class TrackEstimate:
    """The filter's answer for one frame (NaN position and an infinite protection level until initialised)."""

    stamp_s: float
    latitude_deg: float
    longitude_deg: float
    east_m: float
    north_m: float
    heading_deg: float  #: compass (0 = north, clockwise) of the robot
    yaw_deg: float  #: the same as ENU yaw (0 = east, counter-clockwise)
    heading_std_deg: float
    covariance_en_m2: np.ndarray  #: (2, 2) the belief's covariance, m^2
    protection_level_m: float  #: radius around the estimate holding 1 - alpha of the belief's mass
    initialised: bool
    converged: bool  #: initialised, not lost, protection level <= converged_pl_m
    lost: bool  #: the belief has not explained the images for collapse_frames frames
    #: an informative camera's frame (the ones before explained the belief with a median log evidence ratio of at
    #: least ``informative_log_ratio``) just failed to explain it: withheld until a frame does again or it is lost
    unconfirmed: bool = False
    reinitialised: str = ""  #: why the belief was (re)initialised at this frame ("" = it was not)
    evidence_log_ratio: float = math.nan  #: log of the frame's evidence ratio at the belief (before the update)
    tiles_evaluated: int = 0
    fix: Fix | None = None  #: this frame's global fix (None when the global search did not run)
    fix_accepted: bool = False  #: the global fix passed the integrity gate
    step_ms: float = 0.0  #: the whole step
    #: the step beyond its global fix's stages (the filter; the belief tiles' maps share the fix's metric run and are
    #: counted in its stages)
    tracking_ms: float = 0.0
    timings_ms: dict = field(default_factory=dict)
    note: str = ""  #: why nothing was done with the frame ("" = it was used)
    #: before initialisation with cold_start "candidates": the candidate belief's protection level (inf: spread)
    cold_protection_level_m: float = math.inf
    #: the last ``weak_frames`` frames explained the belief with a mean log evidence ratio below ``weak_log_ratio``:
    #: withheld until they do again or the belief is declared lost (a narrow camera's first seconds after a kidnap)
    weak: bool = False
    #: no odometry reached this frame's stamp (``odometry_timeout_s``): the belief could not be moved to it
    odometry_stale: bool = False
    #: the scale of the odometry's distances the particles learnt (their weighted mean; held through a cold start;
    #: NaN: no scale state - ``odometry_scale_std`` 0 or the grid filter): 1.08 = the robot drives 8 % further than
    #: its odometry says
    odometry_scale: float = math.nan
    #: the IMU's compass heading minus the robot's over the last long stretch (deg, clockwise positive; NaN: not
    #: fitted yet or no IMU); taken off its readings once beyond ``imu_heading_deadband_deg``
    imu_heading_offset_deg: float = math.nan
