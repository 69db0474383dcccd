"""The sky of the street-level panoramas: a zenith-to-horizon gradient, a glow around the sun and clouds
(periodic in absolute azimuth, so rotated panoramas agree), tabulated per lighting and panorama size.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from unifygeo_ros.data.lighting import GroundLighting

_SKY_CACHE: dict = {}  # (lighting, width, height) -> table; cleared when it grows past 16 entries


def sky_colours(lt: GroundLighting, width: int, height: int, az_deg: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """float32 RGB (n, 3) of the sky at compass azimuths ``az_deg`` and panorama rows ``rows`` (a panorama of
    ``width`` x ``height``), interpolated in azimuth from the table."""
    tab = _sky_table(lt, width, height)
    x = np.mod(az_deg, 360.0) * (width / 360.0)
    x0 = np.floor(x).astype(np.int64)
    f = (x - x0).astype(np.float32)[:, None]
    x0 = np.minimum(x0, width - 1)
    return tab[rows, x0] * (1 - f) + tab[rows, x0 + 1] * f


def sky_colours_at(lt: GroundLighting, az_deg: np.ndarray, el_deg: np.ndarray) -> np.ndarray:
    """float32 RGB (n, 3) of the sky at compass azimuths ``az_deg`` and elevations ``el_deg`` (degrees), evaluated
    at each direction (views that are not an equirectangular panorama, e.g. a pinhole camera)."""
    return _sky_gradient(lt, np.asarray(az_deg, np.float64), np.asarray(el_deg, np.float64))


def _sky_table(lt: GroundLighting, width: int, height: int) -> np.ndarray:
    """Sky colours (height, width + 1, 3) float32 for absolute azimuths ``u * 360 / width`` (column ``width``
    repeats column 0), cached per lighting and size."""
    key = (lt, width, height)
    got = _SKY_CACHE.get(key)
    if got is not None:
        return got
    az = np.arange(width + 1) * 360.0 / width
    el = 90.0 - (np.arange(height) + 0.5) * 180.0 / height
    a2, e2 = np.meshgrid(az, el)
    tab = _sky_gradient(lt, a2.ravel(), e2.ravel()).reshape(height, width + 1, 3)
    if len(_SKY_CACHE) > 16:
        _SKY_CACHE.clear()
    _SKY_CACHE[key] = tab
    return tab


def _sky_gradient(lt: GroundLighting, az_deg: np.ndarray, el_deg: np.ndarray) -> np.ndarray:
    """float32 RGB of the sky at (azimuth, elevation) pairs in degrees: gradient, sun glow, clouds."""
    zen = np.asarray(lt.sky_zenith_rgb, np.float32) / 255.0
    hor = np.asarray(lt.sky_horizon_rgb, np.float32) / 255.0
    t = np.clip(el_deg / 90.0, 0.0, 1.0) ** 0.6
    c = hor[None] * (1 - t[:, None]) + zen[None] * t[:, None]
    # sun glow
    saz, sel = math.radians(lt.sun_azimuth_deg), math.radians(lt.sun_elevation_deg)
    a, e = np.radians(az_deg), np.radians(np.maximum(el_deg, 0.0))
    cosang = np.sin(e) * math.sin(sel) + np.cos(e) * math.cos(sel) * np.cos(a - saz)
    ang = np.degrees(np.arccos(np.clip(cosang, -1, 1)))
    glow = 0.35 * np.exp(-(ang / 12.0) ** 2) + 0.6 * (ang < 1.5)
    c = c + glow[:, None] * np.array([1.0, 0.95, 0.8], np.float32)
    # clouds (absolute azimuth, so rolled panoramas match)
    if lt.clouds > 0:
        tex = _cloud_texture(lt.seed)
        xf = az_deg / 360.0 * tex.shape[1]
        x0 = np.floor(xf).astype(np.int64)
        fx = xf - x0
        y = np.clip((1.0 - np.clip(el_deg, 0, 90) / 90.0) * (tex.shape[0] - 1), 0, tex.shape[0] - 1).astype(np.int64)
        val = tex[y, x0 % tex.shape[1]] * (1 - fx) + tex[y, (x0 + 1) % tex.shape[1]] * fx
        dens = np.clip((val - (1.0 - lt.clouds)) * 3.0, 0.0, 1.0) * np.clip(el_deg / 8.0, 0, 1)
        cloud_rgb = np.array([0.93, 0.93, 0.95], np.float32)
        c = c * (1 - 0.85 * dens[:, None]) + 0.85 * dens[:, None] * cloud_rgb * (0.8 + 0.2 * t[:, None])
    return np.clip(c, 0, 1.2).astype(np.float32)


def _cloud_texture(seed: int) -> np.ndarray:
    """A (48, 256) cloud density texture (rows: elevation from the zenith down, columns: azimuth, periodic):
    three octaves of smooth noise."""
    rng = np.random.default_rng([seed, 0xC10D])
    t = np.zeros((48, 256), np.float32)
    for octave, amp in ((8, 1.0), (16, 0.5), (32, 0.25)):
        g = rng.random((octave // 2 + 2, octave)).astype(np.float32)
        g = np.concatenate([g, g[:, :1]], 1)  # periodic in azimuth
        up = cv2.resize(g, (256 + 256 // octave, 48), interpolation=cv2.INTER_CUBIC)[:, :256]
        t += amp * up
    return t / 1.75
