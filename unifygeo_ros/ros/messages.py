"""The numbers of the node's output messages, without ROS: covariances, quaternion, altitude.

A :class:`~unifygeo_ros.localization.localizer.Fix` measures three things: east and north (with a full 2 x 2 covariance,
conditional on the chosen tile being right) and the heading (with a circular standard deviation). It does
*not* measure altitude, roll or pitch. The messages still have slots for them; this module fills those slots
honestly (REP-103/REP-145 conventions, robot_localization's behaviour):

* **Never a zero variance.** robot_localization replaces zeros by 1e-6, i.e. trusts the value blindly.
* **Altitude** is the configured ground height of the map origin; its variance is the configured
  ``vertical_variance_m2`` (how far the ground may be from that height). navsat_transform_node can ignore it
  (``zero_altitude``), ekf_node should not fuse it (``two_d_mode`` or z disabled in ``pose0_config``).
* **Roll and pitch** are not estimated: the orientation is level (yaw only) and their variance is
  ``unmeasured_variance`` (default 1e6 rad^2, "unknown"). Disable them in ``pose0_config`` rather than rely
  on the variance alone (docs/NODE.md).
* **Yaw**: ``yaw_deg`` is REP-103 ENU (0 = east, counter-clockwise); the quaternion is a rotation about +z
  (up) by it; variance = ``heading_std_deg`` in rad^2, capped at ``(pi)^2`` (a circular std beyond 180 deg
  means "no idea", and robot_localization must not receive a variance that wraps).
* Cross-covariances between position and yaw are zero (the localizer does not estimate them).

Layouts:

* ``sensor_msgs/NavSatFix.position_covariance``: 3 x 3 row-major, ENU (east, north, up), m^2;
  ``position_covariance_type = COVARIANCE_TYPE_APPROXIMATED`` (an estimate from the model's probability map,
  not a known sensor covariance).
* ``geometry_msgs/PoseWithCovariance.covariance``: 6 x 6 row-major over (x, y, z, rot x, rot y, rot z) in the
  local ENU ``map`` frame: x = east, y = north.
* ``geographic_msgs/GeoPoseWithCovariance.covariance``: 6 x 6 row-major over (Lat, Lon, Alt, rot E, rot N,
  rot U) per its message definition, in metres and radians: position order is north, east, up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.localization import sensor_feed

#: ``sensor_msgs/NavSatFix`` constants (mirrored so this module needs no ROS)
COVARIANCE_TYPE_UNKNOWN = 0
COVARIANCE_TYPE_APPROXIMATED = 1
COVARIANCE_TYPE_DIAGONAL_KNOWN = 2
COVARIANCE_TYPE_KNOWN = 3
STATUS_NO_FIX = -1
STATUS_FIX = 0
SERVICE_UNKNOWN = 0

DEFAULT_UNMEASURED_VARIANCE = 1.0e6
MIN_VARIANCE = 1.0e-4  # 1 cm^2 / (0.57 deg)^2: the floor of any variance we publish
MAX_YAW_VARIANCE_RAD2 = math.pi ** 2


def _psd_2x2(cov_en_m2) -> np.ndarray:
    """Symmetrise a 2 x 2 covariance and lift its eigenvalues to at least MIN_VARIANCE (finite, PSD)."""
    c = np.asarray(cov_en_m2, dtype=np.float64).reshape(2, 2)
    if not np.all(np.isfinite(c)):
        raise ValueError(f"covariance has non-finite entries: {c.tolist()}")
    c = 0.5 * (c + c.T)
    vals, vecs = np.linalg.eigh(c)
    vals = np.maximum(vals, MIN_VARIANCE)
    return (vecs * vals) @ vecs.T


def yaw_variance_rad2(heading_std_deg: float) -> float:
    """Variance (rad^2) of the yaw from the localizer's circular std (deg), floored and capped at pi^2."""
    if not math.isfinite(heading_std_deg):
        return MAX_YAW_VARIANCE_RAD2
    var = math.radians(max(float(heading_std_deg), 0.0)) ** 2
    return float(min(max(var, MIN_VARIANCE), MAX_YAW_VARIANCE_RAD2))


def _diagonal(n: int, diag: dict[int, float]) -> list[float]:
    """An ``n x n`` row-major list of zeros with ``diag`` ({index: value}) on the diagonal."""
    out = [0.0] * (n * n)
    for i, v in diag.items():
        out[i * n + i] = v
    return out


def _covariances(c: np.ndarray, heading_std_deg: float, vertical_variance_m2: float,
                 unmeasured_variance: float) -> tuple[list[float], list[float], list[float]]:
    """(navsat 3 x 3, pose 6 x 6, geopose 6 x 6) from the already symmetrised, floored 2 x 2 ``c`` (east, north):
    the one place the three layouts are filled, so :func:`fix_outputs` decomposes the covariance once."""
    (ee, en), (ne, nn) = ((float(c[0, 0]), float(c[0, 1])), (float(c[1, 0]), float(c[1, 1])))
    vert = max(float(vertical_variance_m2), MIN_VARIANCE)
    rot = max(float(unmeasured_variance), MIN_VARIANCE)
    yaw = yaw_variance_rad2(heading_std_deg)
    navsat = [ee, en, 0.0, ne, nn, 0.0, 0.0, 0.0, vert]
    pose = _diagonal(6, {2: vert, 3: rot, 4: rot, 5: yaw})
    pose[0], pose[1], pose[6], pose[7] = ee, en, ne, nn
    geopose = list(pose)  # rows and columns 0 and 1 swapped: (east, north) -> (north=Lat, east=Lon)
    geopose[0], geopose[1], geopose[6], geopose[7] = nn, ne, en, ee
    return navsat, pose, geopose


def navsat_position_covariance(cov_en_m2, vertical_variance_m2: float) -> list[float]:
    """``NavSatFix.position_covariance``: 3 x 3 row-major ENU (east, north, up) in m^2."""
    return _covariances(_psd_2x2(cov_en_m2), 0.0, vertical_variance_m2, DEFAULT_UNMEASURED_VARIANCE)[0]


def pose_covariance(cov_en_m2, heading_std_deg: float, vertical_variance_m2: float,
                    unmeasured_variance: float = DEFAULT_UNMEASURED_VARIANCE) -> list[float]:
    """``PoseWithCovariance.covariance`` in the local ENU frame: 6 x 6 row-major (x=east, y=north, z, rx, ry, rz)."""
    return _covariances(_psd_2x2(cov_en_m2), heading_std_deg, vertical_variance_m2, unmeasured_variance)[1]


def geopose_covariance(cov_en_m2, heading_std_deg: float, vertical_variance_m2: float,
                       unmeasured_variance: float = DEFAULT_UNMEASURED_VARIANCE) -> list[float]:
    """``GeoPoseWithCovariance.covariance``: 6 x 6 row-major over (Lat, Lon, Alt, rot E, rot N, rot U), i.e. the
    position block in (north, east, up) order, metres; the rotation block as in :func:`pose_covariance`."""
    return _covariances(_psd_2x2(cov_en_m2), heading_std_deg, vertical_variance_m2, unmeasured_variance)[2]


@dataclass(frozen=True)
class FixOutputs:
    """Every number the node publishes for one fix (the node only copies these into messages)."""

    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    east_m: float  # in the node's map frame (which may be anchored elsewhere than the index origin)
    north_m: float
    up_m: float
    yaw_deg: float  # ENU, REP-103
    quaternion_xyzw: tuple[float, float, float, float]
    navsat_covariance: list[float]  # 9
    pose_covariance: list[float]  # 36, map frame
    geopose_covariance: list[float]  # 36, (Lat, Lon, Alt, ...)
    navsat_covariance_type: int = COVARIANCE_TYPE_APPROXIMATED


def fix_outputs(fix, map_frame: geo.LocalENU, altitude_m: float = 0.0, vertical_variance_m2: float = 1e6,
                unmeasured_variance: float = DEFAULT_UNMEASURED_VARIANCE) -> FixOutputs:
    """The message numbers of a :class:`~unifygeo_ros.localization.localizer.Fix` (duck-typed: latitude_deg, longitude_deg,
    yaw_deg, covariance_en_m2, heading_std_deg).

    ``map_frame`` anchors the ``pose`` output (its own origin, possibly not the index's); the position is taken
    from the fix's latitude/longitude, so any anchor gives the same point. The horizontal covariance is reused
    unrotated: the two tangent planes differ by a fraction of a milliradian over a city.
    """
    lat, lon = float(fix.latitude_deg), float(fix.longitude_deg)
    if not (math.isfinite(lat) and math.isfinite(lon) and math.isfinite(fix.yaw_deg)):
        raise ValueError(f"fix has non-finite position or yaw: {lat}, {lon}, {fix.yaw_deg}")
    east, north = (float(x) for x in map_frame.to_en(lat, lon))
    altitude, up = float(altitude_m), float(altitude_m - map_frame.h0_m)
    if not all(math.isfinite(x) for x in (east, north, altitude, up)):  # a NaN altitude or map origin: never published
        raise ValueError(f"fix has non-finite map position or altitude: east {east}, north {north}, up {up}, "
                         f"altitude {altitude}")
    yaw = float(geo.wrap_deg(fix.yaw_deg))
    navsat, pose, geopose = _covariances(_psd_2x2(fix.covariance_en_m2), fix.heading_std_deg, vertical_variance_m2,
                                         unmeasured_variance)  # one decomposition for the three layouts
    return FixOutputs(
        latitude_deg=lat, longitude_deg=lon, altitude_m=altitude,
        east_m=east, north_m=north, up_m=up,
        yaw_deg=yaw, quaternion_xyzw=geo.yaw_to_quaternion_xyzw(yaw),
        navsat_covariance=navsat, pose_covariance=pose, geopose_covariance=geopose,
    )


# the IMU quaternion check lives with the IMU heading feed (node and replay read the IMU through it)
UNIT_QUATERNION_TOLERANCE = sensor_feed.UNIT_QUATERNION_TOLERANCE
unit_quaternion_problem = sensor_feed.unit_quaternion_problem
