"""How a city is lit in each view: :class:`AerialLighting` (the aerial survey: sun, colour balance, haze, grain,
off-nadir lean) and :class:`GroundLighting` (the street-level capture: another day, another sun, sky, fog),
each drawn from the city seed; the sun's cast shadows on a height field (:func:`cast_shadows`); the colour
grading both renderers end with (:func:`grade`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from unifygeo_ros.data.city import City


# ---------------------------------------------------------------------------------------------- lightings
def _random_lean(rng: np.random.Generator) -> tuple[float, float]:
    """An off-nadir lean (east, north) in metres of displacement per metre of height; none in a quarter of
    the surveys."""
    mag = float(rng.uniform(0.0, 0.12)) if rng.random() < 0.75 else 0.0  # up to ~7 deg off nadir
    ang = float(rng.uniform(0, 2 * np.pi))
    return (mag * math.cos(ang), mag * math.sin(ang))


@dataclass(frozen=True)
class AerialLighting:
    """How the aerial survey saw the city (sun, colour balance, haze, grain)."""

    sun_azimuth_deg: float = 150.0  # compass direction towards the sun
    sun_elevation_deg: float = 50.0
    gain_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    haze: float = 0.06
    haze_rgb: tuple[int, int, int] = (200, 205, 212)
    shadow_strength: float = 0.6  # fraction of the light a cast shadow removes
    shadow_tint_rgb: tuple[float, float, float] = (0.92, 0.97, 1.12)  # shadows are lit by the blue sky
    ambient_occlusion: float = 0.35
    grain: float = 2.0  # std of the sensor noise, grey levels
    noise_seed: int = 0
    #: relief displacement of an off-nadir view: a point at height z appears shifted by z * lean (east, north)
    lean_m_per_m: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def random(cls, rng: np.random.Generator) -> "AerialLighting":
        g = rng.normal(1.0, 0.05, 3)
        # mid-latitude northern cities: the survey flies around noon, the sun is in the southern half
        return cls(sun_azimuth_deg=float(rng.uniform(110, 250)), sun_elevation_deg=float(rng.uniform(30, 68)),
                   gain_rgb=tuple(float(v) for v in g / g.mean()), brightness=float(rng.uniform(0.85, 1.15)),
                   contrast=float(rng.uniform(0.85, 1.15)), saturation=float(rng.uniform(0.7, 1.1)),
                   haze=float(rng.uniform(0.0, 0.18)),
                   haze_rgb=tuple(int(v) for v in np.clip(rng.normal(205, 10, 3), 150, 255)),
                   shadow_strength=float(rng.uniform(0.45, 0.7)), ambient_occlusion=float(rng.uniform(0.2, 0.45)),
                   grain=float(rng.uniform(1.0, 4.0)), noise_seed=int(rng.integers(2**31)),
                   lean_m_per_m=_random_lean(rng))

    @classmethod
    def for_city(cls, city: City) -> "AerialLighting":
        """The lighting the aerial survey of this city had (determined by the city seed)."""
        return cls.random(np.random.default_rng([int(city.seed) & 0xFFFFFFFF, 0xAE51]))


@dataclass(frozen=True)
class GroundLighting:
    """How the street-level capture saw the city (another day, another sun than the aerial survey)."""

    sun_azimuth_deg: float = 230.0
    sun_elevation_deg: float = 35.0
    gain_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    exposure: float = 1.0
    saturation: float = 1.0
    sky_zenith_rgb: tuple[int, int, int] = (70, 120, 196)
    sky_horizon_rgb: tuple[int, int, int] = (186, 206, 226)
    fog_m: float = 450.0
    clouds: float = 0.35
    shadow_strength: float = 0.55
    ambient: float = 0.5  # light on surfaces facing away from the sun, relative to a lit ground
    seed: int = 0  # cloud pattern

    @classmethod
    def random(cls, rng: np.random.Generator, avoid_azimuth_deg: float | None = None) -> "GroundLighting":
        az = float(rng.uniform(0, 360))
        if avoid_azimuth_deg is not None:  # at least 45 deg away from the aerial sun
            az = float((avoid_azimuth_deg + 45.0 + rng.uniform(0, 270.0)) % 360.0)
        g = rng.normal(1.0, 0.04, 3)
        overcast = rng.random() < 0.2
        zen = np.array([70, 120, 196]) + rng.normal(0, 15, 3)
        hor = np.array([186, 206, 226]) + rng.normal(0, 12, 3)
        if overcast:
            zen = np.full(3, rng.uniform(150, 200))
            hor = zen + 20
        return cls(sun_azimuth_deg=az, sun_elevation_deg=float(rng.uniform(15, 60)),
                   gain_rgb=tuple(float(v) for v in g / g.mean()), exposure=float(rng.uniform(0.85, 1.15)),
                   saturation=float(rng.uniform(0.8, 1.2)),
                   sky_zenith_rgb=tuple(int(v) for v in np.clip(zen, 0, 255)),
                   sky_horizon_rgb=tuple(int(v) for v in np.clip(hor, 0, 255)),
                   fog_m=float(rng.uniform(250, 900)), clouds=float(rng.uniform(0.0, 0.7)),
                   shadow_strength=float(0.15 if overcast else rng.uniform(0.4, 0.65)),
                   ambient=float(0.8 if overcast else rng.uniform(0.4, 0.6)), seed=int(rng.integers(2**31)))

    @classmethod
    def for_city(cls, city: City, variant: int = 0) -> "GroundLighting":
        """A street-level lighting for this city (``variant`` picks another day); never the aerial sun."""
        aer = AerialLighting.for_city(city)
        return cls.random(np.random.default_rng([int(city.seed) & 0xFFFFFFFF, 0x6A0D, int(variant)]),
                          avoid_azimuth_deg=aer.sun_azimuth_deg)


# ---------------------------------------------------------------------------------------------- shadows
def cast_shadows(height: np.ndarray, cell_m: float, sun_azimuth_deg: float, sun_elevation_deg: float,
                 soft_m: float = 0.35) -> np.ndarray:
    """Shadow amount in [0, 1] (1 = fully in shadow) of every cell of a height field (row 0 = south).

    A cell is shadowed when some cell towards the sun rises above the sun ray through it. The height field is
    rotated so that the sun lies along -x, and along each row the test becomes a running maximum of
    ``h(x) + x * cell * tan(elevation)``; the result is rotated back.
    """
    h = np.ascontiguousarray(height, dtype=np.float32)
    rows, cols = h.shape
    az = math.radians(sun_azimuth_deg)
    sx, sy = math.sin(az), math.cos(az)  # towards the sun, in (col, row) = (east, north)
    rot = np.array([[-sx, -sy], [sy, -sx]])  # sun -> (-1, 0)
    corners = np.array([[0, 0], [cols, 0], [0, rows], [cols, rows]], float) @ rot.T
    lo = corners.min(0)
    out_w, out_h = (int(math.ceil(v)) + 2 for v in corners.max(0) - lo)
    m = np.hstack([rot, (-lo + 1.0)[:, None]]).astype(np.float64)
    hr = cv2.warpAffine(h, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0.0)
    k = np.float32(cell_m * math.tan(math.radians(max(sun_elevation_deg, 1.0))))
    g = hr + np.arange(out_w, dtype=np.float32)[None] * k
    run = np.maximum.accumulate(g, axis=1)
    depth = np.empty_like(g)
    depth[:, 0] = -1.0
    depth[:, 1:] = run[:, :-1] - g[:, 1:]
    amount = np.clip((depth - 0.05) / np.float32(soft_m), 0.0, 1.0)
    return cv2.warpAffine(amount, m, (cols, rows), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


# ---------------------------------------------------------------------------------------------- grading
def grade(img: np.ndarray, gain, brightness, contrast, saturation) -> np.ndarray:
    """Colour grading of a float32 RGB image in [0, 1] (in place where possible)."""
    img *= np.asarray(gain, np.float32) * np.float32(brightness)
    lum = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img -= lum[..., None]
    img *= np.float32(saturation)
    img += lum[..., None]
    img -= 0.5
    img *= np.float32(contrast)
    img += 0.5
    return img

