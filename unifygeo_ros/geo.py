"""Geodesy and the project's conventions, each in exactly one place.

Conventions (REP-103, VIGOR):

* Local frames are ENU: ``east_m`` (x), ``north_m`` (y), up (z), metres, anchored at a geographic origin.
* ``yaw`` (ENU, REP-103) is 0 deg at east and 90 deg at north, counter-clockwise positive.
  ``heading`` (compass) is 0 deg at north and 90 deg at east, clockwise positive.
  ``yaw_deg = 90 - heading_deg``; both are wrapped into [-180, 180).
* Panoramas are equirectangular, W = 2 H. Column ``u`` (0..W-1, pixel centres at u + 0.5) looks at the
  compass azimuth ``heading + ((u + 0.5) / W - 0.5) * 360``: the centre column looks along the camera heading and
  azimuth grows to the right (clockwise seen from above). VIGOR panoramas are north-aligned: heading 0, the
  centre column looks north. Rolling a panorama right by ``k`` columns rotates the camera heading by
  ``-k * 360 / W`` deg.
* Aerial tiles are north-up images: row grows southwards, column grows eastwards.
* VIGOR label offsets ``(d_row, d_col)`` are pixels of the tile at its native size; the camera sits at
  ``row = H/2 + d_row`` and ``col = W/2 - d_col``, i.e. ``north_m = -d_row * mpp`` and ``east_m = -d_col * mpp``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# WGS84
WGS84_A = 6378137.0
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)
WEB_MERCATOR_M_PER_PX_Z0 = 2.0 * math.pi * WGS84_A / 256.0  # 156543.03392804097 m/px at zoom 0, equator

#: VIGOR metres per pixel of a 640x640 tile, per city (CCVPE's values; Web-Mercator zoom 20 at the city latitude).
VIGOR_MPP_640 = {
    "NewYork": 0.113248,
    "Seattle": 0.100817,
    "SanFrancisco": 0.118141,
    "Chicago": 0.111262,
}
#: The value the original VIGOR evaluation used for every city.
VIGOR_MPP_ORIGINAL = 0.114
VIGOR_TILE_PX = 640


def wrap_pi(angle_rad):
    """Wrap an angle (scalar -> float, array -> array) into [-pi, pi)."""
    wrapped = (np.asarray(angle_rad, dtype=np.float64) + math.pi) % (2.0 * math.pi) - math.pi
    return float(wrapped) if wrapped.ndim == 0 else wrapped


def wrap_deg(angle_deg):
    """Wrap an angle (scalar -> float, array -> array) into [-180, 180)."""
    wrapped = (np.asarray(angle_deg, dtype=np.float64) + 180.0) % 360.0 - 180.0
    return float(wrapped) if wrapped.ndim == 0 else wrapped


def heading_to_yaw_deg(heading_deg):
    """Compass heading (0 = north, clockwise) -> ENU yaw (0 = east, counter-clockwise)."""
    return wrap_deg(90.0 - np.asarray(heading_deg, dtype=np.float64))


def yaw_to_heading_deg(yaw_deg):
    """ENU yaw (0 = east, counter-clockwise) -> compass heading (0 = north, clockwise)."""
    return heading_to_yaw_deg(yaw_deg)  # the map is its own inverse


def angle_diff_deg(a_deg, b_deg):
    """Absolute smallest difference between two angles, in [0, 180]."""
    return np.abs(wrap_deg(np.asarray(a_deg, dtype=np.float64) - np.asarray(b_deg, dtype=np.float64)))


def yaw_to_quaternion_xyzw(yaw_deg: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a rotation by ``yaw_deg`` about +z (ENU up)."""
    half = math.radians(yaw_deg) / 2.0
    return (0.0, 0.0, math.sin(half), math.cos(half))


def quaternion_xyzw_to_yaw_deg(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about +z, degrees) of a quaternion (x, y, z, w)."""
    return math.degrees(math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def web_mercator_mpp(lat_deg: float, zoom: float) -> float:
    """Ground metres per pixel of a Web-Mercator (256 px tiles) image at ``zoom`` and latitude ``lat_deg``."""
    return WEB_MERCATOR_M_PER_PX_Z0 * math.cos(math.radians(lat_deg)) / (2.0 ** zoom)


def vigor_offset_to_en(d_row, d_col, mpp):
    """VIGOR label pixel offsets -> (east_m, north_m) of the camera relative to the tile centre."""
    return -np.asarray(d_col, dtype=np.float64) * mpp, -np.asarray(d_row, dtype=np.float64) * mpp


def en_to_vigor_offset(east_m, north_m, mpp):
    """(east_m, north_m) of the camera relative to the tile centre -> VIGOR (d_row, d_col) pixel offsets."""
    return -np.asarray(north_m, dtype=np.float64) / mpp, -np.asarray(east_m, dtype=np.float64) / mpp


def _geodetic_to_ecef(lat_deg, lon_deg, h_m=0.0):
    lat = np.radians(lat_deg)
    lon = np.radians(lon_deg)
    sin_lat = np.sin(lat)
    n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * sin_lat**2)
    x = (n + h_m) * np.cos(lat) * np.cos(lon)
    y = (n + h_m) * np.cos(lat) * np.sin(lon)
    z = (n * (1.0 - WGS84_E2) + h_m) * sin_lat
    return x, y, z


def _ecef_to_geodetic(x, y, z):
    """Bowring-style iteration; sub-millimetre for terrestrial points."""
    lon = np.arctan2(y, x)
    p = np.hypot(x, y)
    lat = np.arctan2(z, p * (1.0 - WGS84_E2))
    h = np.zeros_like(p)
    for _ in range(6):
        sin_lat = np.sin(lat)
        n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * sin_lat**2)
        h = p / np.cos(lat) - n
        lat = np.arctan2(z, p * (1.0 - WGS84_E2 * n / (n + h)))
    return np.degrees(lat), np.degrees(lon), h


@dataclass(frozen=True)
class LocalENU:
    """A local east/north/up tangent frame anchored at ``(lat0_deg, lon0_deg, h0_m)`` on WGS84.

    Exact (through ECEF), vectorised over numpy arrays. Horizontal positions returned by :meth:`to_en` are
    the tangent-plane coordinates; :meth:`from_en` inverts them for points on the ellipsoid surface
    (height ``h0_m``), which is what a ground robot's fixes are.
    """

    lat0_deg: float
    lon0_deg: float
    h0_m: float = 0.0

    def _rotation(self) -> np.ndarray:
        lat = math.radians(self.lat0_deg)
        lon = math.radians(self.lon0_deg)
        sl, cl, so, co = math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon)
        # rows: east, north, up expressed in ECEF
        return np.array([[-so, co, 0.0], [-sl * co, -sl * so, cl], [cl * co, cl * so, sl]])

    def to_enu(self, lat_deg, lon_deg, h_m=None):
        """Geodetic -> (east_m, north_m, up_m)."""
        h = self.h0_m if h_m is None else h_m
        x, y, z = _geodetic_to_ecef(np.asarray(lat_deg, float), np.asarray(lon_deg, float), h)
        x0, y0, z0 = _geodetic_to_ecef(self.lat0_deg, self.lon0_deg, self.h0_m)
        d = np.stack(np.broadcast_arrays(x - x0, y - y0, z - z0), axis=0)
        enu = np.tensordot(self._rotation(), d, axes=1)
        return enu[0], enu[1], enu[2]

    def to_en(self, lat_deg, lon_deg):
        """Geodetic (on the surface at the origin's height) -> (east_m, north_m)."""
        e, n, _ = self.to_enu(lat_deg, lon_deg)
        return e, n

    def from_enu(self, east_m, north_m, up_m):
        """(east_m, north_m, up_m) -> (lat_deg, lon_deg, h_m)."""
        enu = np.stack(np.broadcast_arrays(np.asarray(east_m, float), np.asarray(north_m, float),
                                           np.asarray(up_m, float)), axis=0)
        d = np.tensordot(self._rotation().T, enu, axes=1)
        x0, y0, z0 = _geodetic_to_ecef(self.lat0_deg, self.lon0_deg, self.h0_m)
        return _ecef_to_geodetic(d[0] + x0, d[1] + y0, d[2] + z0)

    def from_en(self, east_m, north_m):
        """Tangent-plane (east_m, north_m) -> (lat_deg, lon_deg) of the point at the origin's height.

        The tangent plane leaves the ellipsoid with distance (about d^2 / 2R: 8 cm at 1 km), so the up
        component that brings the point back to height ``h0_m`` is solved for with two fixed-point steps.
        """
        east_m = np.asarray(east_m, float)
        north_m = np.asarray(north_m, float)
        up = np.zeros(np.broadcast(east_m, north_m).shape)
        for _ in range(3):
            lat, lon, h = self.from_enu(east_m, north_m, up)
            up = up - (h - self.h0_m)
        lat, lon, _ = self.from_enu(east_m, north_m, up)
        return lat, lon

    def meters_per_degree(self) -> tuple[float, float]:
        """(metres per degree of longitude, metres per degree of latitude) at the origin."""
        lat = math.radians(self.lat0_deg)
        s2 = math.sin(lat) ** 2
        m = WGS84_A * (1.0 - WGS84_E2) / (1.0 - WGS84_E2 * s2) ** 1.5
        n = WGS84_A / math.sqrt(1.0 - WGS84_E2 * s2)
        return math.radians(1.0) * n * math.cos(lat), math.radians(1.0) * m
