"""Rendering a :class:`~unifygeo_ros.data.world.City` from above (orthophoto tiles) and from the street
(equirectangular panoramas), under different lighting.

* :func:`render_aerial`: a north-up tile (row 0 = north) cut from a shaded orthophoto of the whole city
  (computed once per city, car set and lighting, then cached on the city). Height shows in the RGB as cast
  shadows (height-field shadow sweep), slope shading of pitched roofs, dark wall feet (ambient occlusion) and
  dark roof outlines, like in a real orthophoto; colour balance, haze and grain differ per city.
* :func:`render_panorama`: an equirectangular panorama, columns at the azimuths of
  :mod:`unifygeo_ros.geo`'s convention (the centre column looks along ``heading_deg``), ray-marched over the
  height field with occlusion (per column: sample along the ray, running maximum of the elevation angles of
  the tops, ``searchsorted`` of the pixel elevations into it on one flattened array). Facades get their own
  colour with windows by storey and sun shading by facade orientation; roofs, ground and cars are seen with
  their top colours under the ground-level sun (its own shadow map); tree canopies float above their trunks;
  sky with sun glow and clouds, distance fog.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from unifygeo_ros.data import world as W

# ---------------------------------------------------------------------------------------------- lighting


def _random_lean(rng: np.random.Generator) -> tuple[float, float]:
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
    def for_city(cls, city: W.City) -> "AerialLighting":
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
    def for_city(cls, city: W.City, variant: int = 0) -> "GroundLighting":
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


# ---------------------------------------------------------------------------------------------- aerial
def _grade(img: np.ndarray, gain, brightness, contrast, saturation) -> np.ndarray:
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


def aerial_orthophoto(city: W.City, lighting: AerialLighting | None = None, cars: str = "aerial",
                      level: int = 0) -> np.ndarray:
    """The shaded orthophoto of the whole city at ``cell_m * 2**level`` m/px, uint8 RGB, **row 0 = south**.

    Cached on the city per (lighting, cars); levels are area-averaged halvings of level 0.
    """
    lighting = lighting or AerialLighting.for_city(city)
    return _pyramid(city, ("ortho", cars, lighting), lambda: _shade_aerial(city, lighting, cars), level)[0]


def _pyramid(city: W.City, key: tuple, make_base, level: int) -> tuple[np.ndarray, int]:
    """Level ``level`` (or the coarsest there is) of a city-wide raster pyramid cached on the city under ``key``:
    level 0 from ``make_base()``, each next level an area-averaged halving. Returns ``(raster, level used)``."""
    pyr = city._cache.get(key)
    if pyr is None:
        pyr = [make_base()]
        city._cache[key] = pyr
    while len(pyr) <= level:
        prev = pyr[-1]
        hh, ww = prev.shape[0] // 2, prev.shape[1] // 2
        if hh < 2 or ww < 2:
            break
        pyr.append(cv2.resize(prev[: 2 * hh, : 2 * ww], (ww, hh), interpolation=cv2.INTER_AREA))
    level = min(level, len(pyr) - 1)
    return pyr[level], level


def _cut_tile(city: W.City, key: tuple, make_base, center_en: tuple[float, float], tile_m: float, px: int,
              outside) -> np.ndarray:
    """A north-up ``px`` tile of ``tile_m`` metres centred on ``center_en`` cut from the pyramid ``key`` (the
    finest level not finer than the tile's pixels; bilinear), ``outside`` beyond the raster (see render_aerial)."""
    ce, cn = float(center_en[0]), float(center_en[1])
    mpp = tile_m / px
    level = max(0, int(math.floor(math.log2(max(mpp / city.cell_m, 1.0) + 1e-9))))
    raster, level = _pyramid(city, key, make_base, level)
    cell = city.cell_m * (2 ** level)
    s = mpp / cell
    m = np.array([[s, 0.0, (ce - tile_m / 2) / cell - 0.5 + 0.5 * s],
                  [0.0, -s, (cn + tile_m / 2) / cell - 0.5 - 0.5 * s]])
    return cv2.warpAffine(raster, m, (px, px), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=outside)


def _outside_aerial_rgb(city: W.City, lighting: AerialLighting) -> tuple[int, int, int]:
    c = np.asarray(city.outside_rgb, np.float32)[None, None] / 255.0
    c = _grade(c, lighting.gain_rgb, lighting.brightness, lighting.contrast, lighting.saturation)
    c = c * (1 - lighting.haze) + lighting.haze * np.asarray(lighting.haze_rgb, np.float32) / 255.0
    return tuple(int(v) for v in np.clip(c[0, 0] * 255 + 0.5, 0, 255))


def _shade_aerial(city: W.City, lt: AerialLighting, cars: str) -> np.ndarray:
    lay = city.layers(cars)
    h = lay.height
    cell = city.cell_m
    rows, cols = h.shape
    el = math.radians(lt.sun_elevation_deg)
    az = math.radians(lt.sun_azimuth_deg)
    sun = np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)], np.float32)
    # slope shading (pitched roofs, tree domes); wall steps are clipped so that they do not dominate
    gx = cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3) / np.float32(8 * cell)
    gy = cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3) / np.float32(8 * cell)
    np.clip(gx, -1.5, 1.5, out=gx)
    np.clip(gy, -1.5, 1.5, out=gy)
    light = (-gx * sun[0] - gy * sun[1] + sun[2]) / np.sqrt(gx * gx + gy * gy + 1.0) / sun[2]
    del gx, gy
    np.clip(light, 0.35, 1.35, out=light)
    shadow = cast_shadows(h, cell, lt.sun_azimuth_deg, lt.sun_elevation_deg)
    # ambient occlusion: ground near tall walls is darker; roof outlines (top of a wall) darker too
    sig = max(1.0, 2.0 / cell)
    blur = cv2.GaussianBlur(h, (0, 0), sig)
    ao = np.clip((blur - h) / 4.0, 0.0, 1.0)
    del blur
    ero = cv2.erode(h, np.ones((3, 3), np.uint8))
    edge = (h - ero) > 1.0
    del ero
    ao_f = 1.0 - np.float32(lt.ambient_occlusion) * ao - 0.25 * edge
    del ao, edge
    tint = np.asarray(lt.shadow_tint_rgb, np.float32)
    out = np.empty((rows, cols, 3), np.uint8)
    rng = np.random.default_rng([lt.noise_seed, int(city.seed) & 0xFFFFFFFF])
    haze_rgb = np.asarray(lt.haze_rgb, np.float32) / 255.0
    chunk = 512
    for r0 in range(0, rows, chunk):
        r1 = min(rows, r0 + chunk)
        sh = shadow[r0:r1, :, None] * np.float32(lt.shadow_strength)
        direct = light[r0:r1, :, None] * (1.0 - sh) + sh * (tint - 1.0) * 0.5
        img = lay.top_rgb[r0:r1].astype(np.float32) * np.float32(1 / 255.0)
        img *= direct
        img *= ao_f[r0:r1, :, None]
        img = _grade(img, lt.gain_rgb, lt.brightness, lt.contrast, lt.saturation)
        img *= np.float32(1 - lt.haze)
        img += np.float32(lt.haze) * haze_rgb
        img *= 255.0
        img += rng.standard_normal((r1 - r0, cols, 1), dtype=np.float32) * np.float32(lt.grain)
        np.clip(img, 0, 255, out=img)
        out[r0:r1] = (img + 0.5).astype(np.uint8)
    if math.hypot(*lt.lean_m_per_m) > 1e-3:
        out = _relief_displacement(city, lay, out, lt)
    return out


def _relief_displacement(city: W.City, lay, shaded: np.ndarray, lt: AerialLighting) -> np.ndarray:
    """Re-project a true orthophoto as an off-nadir view: a point at height z moves by ``z * lean``; walls
    facing away from the lean direction become visible (facade colour, storey bands), taller things hide
    what lies behind them.

    In a frame rotated so that the lean points along +x, ground column ``x`` covers the image interval
    ``[x, x + h(x) * k]`` (k = lean / cell); the pixel ``X`` sees the first column whose interval reaches it,
    i.e. a running maximum of ``x + h(x) * k`` and a ``searchsorted`` per row.
    """
    lx, ly = lt.lean_m_per_m
    lmag = math.hypot(lx, ly)
    h = lay.height
    rows, cols = h.shape
    cell = city.cell_m
    ux, uy = lx / lmag, ly / lmag
    rot = np.array([[ux, uy], [-uy, ux]])
    corners = np.array([[0, 0], [cols, 0], [0, rows], [cols, rows]], float) @ rot.T
    lo = corners.min(0)
    out_w, out_h = (int(math.ceil(v)) + 2 for v in corners.max(0) - lo)
    m = np.hstack([rot, (-lo + 1.0)[:, None]])
    hr = cv2.warpAffine(h, m, (out_w, out_h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0.0)
    k = lmag / cell
    xs = np.arange(out_w, dtype=np.float64)
    disp = np.zeros((out_h, out_w), np.float32)  # X - x*, in cells
    depth = np.zeros((out_h, out_w), np.float32)  # metres below the top of the seen column (0: a top)
    chunk = 256
    for r0 in range(0, out_h, chunk):
        r1 = min(out_h, r0 + chunk)
        hh = hr[r0:r1]
        if not hh.any():
            continue
        g = xs[None] + hh * k
        run = np.maximum.accumulate(g, axis=1)
        big = float(out_w + hh.max() * k + 10.0)
        off = (np.arange(r1 - r0) * big)[:, None]
        xstar = np.searchsorted((run + off).ravel(), (xs[None] + off).ravel(), side="left")
        xstar = xstar.reshape(r1 - r0, out_w) - (np.arange(r1 - r0) * out_w)[:, None]
        np.clip(xstar, 0, out_w - 1, out=xstar)
        gsel = np.take_along_axis(g, xstar, axis=1)
        below = gsel - xs[None]
        disp[r0:r1] = xs[None] - xstar
        depth[r0:r1] = np.where(below > 1.0, below / k, 0.0)
    inv = cv2.WARP_INVERSE_MAP | cv2.INTER_NEAREST
    disp_o = cv2.warpAffine(disp, m, (cols, rows), flags=inv, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    depth_o = cv2.warpAffine(depth, m, (cols, rows), flags=inv, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    del disp, depth, hr
    gx, gy = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
    mapx = gx - disp_o * np.float32(ux)
    mapy = gy - disp_o * np.float32(uy)
    del gx, gy
    out = cv2.remap(shaded, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fac = depth_o > 0
    if fac.any():
        fr, fc = np.nonzero(fac)
        sr = np.clip(np.round(mapy[fac]).astype(np.int64), 0, rows - 1)
        sc = np.clip(np.round(mapx[fac]).astype(np.int64), 0, cols - 1)
        oid = city.object_id[sr, sc]
        top_z = lay.height[sr, sc]
        z = top_z - depth_o[fac]
        col = out[fr, fc].astype(np.float32) * 0.72  # sides of trees, cars, roof boxes: darker top colour
        bld = (oid > 0) & (lay.surface[sr, sc] != W.SURFACE_CAR)
        if bld.any():
            b = oid[bld]
            fl = city.floor_m[b]
            fz = z[bld] / fl
            band = ((fz - np.floor(fz)) > 0.35) & ((fz - np.floor(fz)) < 0.75) & (top_z[bld] - z[bld] > 0.8)
            band &= city.window_style[b] != W.WINDOW_NONE
            c = np.where(band[:, None], city.window_rgb[b], city.facade_rgb[b]).astype(np.float32) / 255.0
            # walls facing -lean, lit by how much they face the sun
            az = math.radians(lt.sun_azimuth_deg)
            lam = max(0.0, -(ux * math.sin(az) + uy * math.cos(az))) * math.cos(math.radians(lt.sun_elevation_deg))
            c *= np.float32(0.45 + 0.8 * lam)
            c = _grade(c, lt.gain_rgb, lt.brightness, lt.contrast, lt.saturation)
            c = c * (1 - lt.haze) + lt.haze * np.asarray(lt.haze_rgb, np.float32) / 255.0
            col[bld] = np.clip(c * 255.0, 0, 255)
        out[fr, fc] = (col + 0.5).astype(np.uint8)
    return out


def render_aerial(city: W.City, center_en: tuple[float, float], tile_m: float, px: int,
                  lighting: AerialLighting | None = None, cars: str = "aerial") -> np.ndarray:
    """A north-up aerial tile, (px, px, 3) uint8 RGB: ``tile_m`` metres a side centred on ``center_en``.

    Row 0 is the northern edge, column 0 the western edge; pixel (r, c) shows the ground at
    ``east = ce - tile_m/2 + (c + 0.5) * tile_m/px``, ``north = cn + tile_m/2 - (r + 0.5) * tile_m/px``.
    Outside the city the ground is a flat field.
    """
    lighting = lighting or AerialLighting.for_city(city)
    return _cut_tile(city, ("ortho", cars, lighting), lambda: _shade_aerial(city, lighting, cars), center_en,
                     tile_m, px, _outside_aerial_rgb(city, lighting))


def render_aerial_height(city: W.City, center_en: tuple[float, float], tile_m: float, px: int,
                         cars: str = "aerial") -> np.ndarray:
    """The normalised surface model (height above ground, metres) of the tile :func:`render_aerial` shows,
    ``(px, px)`` float32, same pixel grid (row 0 = north). What a user with a DSM/nDSM supplies; 0 outside.

    Each pixel is the area mean of the height cells it covers (like the orthophoto's pyramid), so roof edges
    are soft at coarse resolutions as in a resampled DSM.
    """
    out = _cut_tile(city, ("height_pyr", cars),
                    lambda: np.ascontiguousarray(city.layers(cars).height, dtype=np.float32), center_en, tile_m,
                    px, 0.0)
    return np.maximum(out, 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------- panorama
def _ray_distances(width: int, cell_m: float, max_m: float) -> np.ndarray:
    """Sample distances along a ray: a cell apart near the camera, one pixel's footprint apart far away,
    plus one far sample for the horizon."""
    d, out = 0.25, []
    ang = 2 * math.pi / width
    step_min = 0.8 * cell_m
    while d < max_m:
        out.append(d)
        d += max(step_min, d * ang * 0.9)
    out.append(3000.0)
    return np.asarray(out, np.float64)


def _view_cache(city: W.City, cars: str, lt: GroundLighting):
    """Per (city, cars, lighting) layers the panorama renderer needs, flattened."""
    key = ("pano", cars, lt)
    got = city._cache.get(key)
    if got is not None:
        return got
    lay = city.layers(cars)
    nkey = ("facade_normal",)
    if nkey not in city._cache:
        bm = (city.object_id > 0).astype(np.float32)
        bm = cv2.GaussianBlur(bm, (0, 0), max(1.0, 1.2 / city.cell_m))
        gx = cv2.Sobel(bm, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(bm, cv2.CV_32F, 0, 1, ksize=3)
        ang = np.arctan2(-gy, -gx)  # outward normal (east, north)
        q = np.round(ang / (2 * np.pi) * 256).astype(np.int32) & 255
        q = q.astype(np.uint8)
        q[(gx * gx + gy * gy) < 1e-6] = 0
        valid = (gx * gx + gy * gy) >= 1e-6
        city._cache[nkey] = (q.ravel(), valid.ravel())
    # the world below the canopies (trunks, cars, ground), for rays that pass under a canopy
    und = city.under_canopy_layers(cars)
    shadow = cast_shadows(lay.height, city.cell_m, lt.sun_azimuth_deg, lt.sun_elevation_deg)
    shadow_u8 = (shadow * 255 + 0.5).astype(np.uint8).ravel()
    got = dict(height=lay.height.ravel(), top=lay.top_rgb.reshape(-1, 3), surface=lay.surface.ravel(),
               oid=lay.object_id.ravel(), shadow=shadow_u8, normal=city._cache[nkey][0],
               normal_ok=city._cache[nkey][1], u_height=und.height.ravel(), u_top=und.top_rgb.reshape(-1, 3),
               u_surface=und.surface.ravel(), u_oid=und.object_id.ravel())
    # keep at most a few lighting variants per city
    old = [k for k in city._cache if isinstance(k, tuple) and k and k[0] == "pano"]
    for k in old[:-3]:
        del city._cache[k]
    city._cache[key] = got
    return got


def _cloud_texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0xC10D])
    t = np.zeros((48, 256), np.float32)
    for octave, amp in ((8, 1.0), (16, 0.5), (32, 0.25)):
        g = rng.random((octave // 2 + 2, octave)).astype(np.float32)
        g = np.concatenate([g, g[:, :1]], 1)  # periodic in azimuth
        up = cv2.resize(g, (256 + 256 // octave, 48), interpolation=cv2.INTER_CUBIC)[:, :256]
        t += amp * up
    return t / 1.75


def _march(h_flat, shape, cell, e0, n0, az, dist):
    """Heights along every ray: (W, K) float32, the flat indices (clipped) and the inside mask."""
    rows, cols = shape
    se, cn = np.sin(az)[:, None], np.cos(az)[:, None]
    pe = e0 + dist[None] * se
    pn = n0 + dist[None] * cn
    ri = np.floor(pn / cell).astype(np.int64)
    ci = np.floor(pe / cell).astype(np.int64)
    inside = (ri >= 0) & (ri < rows) & (ci >= 0) & (ci < cols)
    idx = np.clip(ri, 0, rows - 1) * cols + np.clip(ci, 0, cols - 1)
    hs = np.where(inside, h_flat[idx], np.float32(0.0))
    return hs, idx, inside


def _first_hits(hs, dist, tan_el, cols_q, rows_q, cam_h):
    """For pixels (column cols_q, row rows_q) the first sample index whose top is at or above the pixel's
    elevation (K where none: sky)."""
    n_w, k = hs.shape
    ang = np.arctan2(hs - np.float32(cam_h), dist[None].astype(np.float32))
    cm = np.maximum.accumulate(ang, axis=1)
    off = np.arange(n_w, dtype=np.float64)[:, None] * 4.0
    keys = (cm + off).ravel()
    q = np.arctan(tan_el[rows_q]) + cols_q * 4.0
    g = np.searchsorted(keys, q, side="left")
    return g - cols_q * k


def render_panorama(city: W.City, position_en: tuple[float, float], heading_deg: float, width: int,
                    height: int, camera_height_m: float = 2.0, lighting: GroundLighting | None = None,
                    cars: str = "ground", max_distance_m: float = 260.0) -> np.ndarray:
    """An equirectangular panorama (height, width, 3) uint8 RGB taken at ``position_en`` (ENU metres from the
    city's south-west corner), ``camera_height_m`` above the ground.

    Column ``u`` looks at compass azimuth ``heading_deg + ((u + 0.5)/width - 0.5) * 360`` (geo.py's convention);
    row ``r`` at elevation ``90 - (r + 0.5) * 180 / height`` degrees.
    """
    lt = lighting or GroundLighting.for_city(city)
    v = _view_cache(city, cars, lt)
    cell = city.cell_m
    e0, n0 = float(position_en[0]), float(position_en[1])
    cam_h = float(camera_height_m)
    u = np.arange(width)
    az_deg = np.mod(heading_deg + ((u + 0.5) / width - 0.5) * 360.0, 360.0)
    az = np.radians(az_deg)
    el_deg = 90.0 - (np.arange(height) + 0.5) * 180.0 / height
    tan_el = np.tan(np.radians(el_deg))
    dist = _ray_distances(width, cell, max_distance_m)
    K = len(dist)
    hs, idx, inside = _march(v["height"], city.shape, cell, e0, n0, az, dist)

    # pixels, column-major order (column u, row r); only rows below the column's skyline can hit
    cols_q = np.repeat(u, height)
    rows_q = np.tile(np.arange(height), width)
    k = _first_hits(hs, dist, tan_el, cols_q, rows_q, cam_h)
    hit = k < K
    img = np.empty((width * height, 3), np.float32)

    # ---------------- sky
    sky = ~hit
    if sky.any():
        img[sky] = _sky_lookup(lt, width, height, az_deg[cols_q[sky]], rows_q[sky])

    # ---------------- hits
    hu, hr, hk = cols_q[hit], rows_q[hit], k[hit]
    te = tan_el[hr]
    dk = dist[hk]
    dprev = np.where(hk > 0, dist[np.maximum(hk - 1, 0)], 0.0)
    Hk = hs[hu, hk]
    Hprev = np.where(hk > 0, hs[hu, np.maximum(hk - 1, 0)], 0.0)
    z_prev = cam_h + dprev * te
    on_top = z_prev >= Hk
    with np.errstate(divide="ignore", invalid="ignore"):
        d_top = np.where(te < 0, (cam_h - Hk) / -te, dk)
    d_hit = np.where(on_top, np.clip(d_top, dprev, dk), dprev)
    z_hit = np.where(on_top, Hk, np.clip(cam_h + dprev * te, 0.0, Hk))
    se, cn_ = np.sin(az[hu]), np.cos(az[hu])
    pe, pn = e0 + d_hit * se, n0 + d_hit * cn_
    rows, cols = city.shape
    ri = np.floor(pn / cell).astype(np.int64)
    ci = np.floor(pe / cell).astype(np.int64)
    ins = (ri >= 0) & (ri < rows) & (ci >= 0) & (ci < cols)
    cidx = np.where(on_top, np.clip(ri, 0, rows - 1) * cols + np.clip(ci, 0, cols - 1), idx[hu, hk])
    ins = np.where(on_top, ins, inside[hu, hk])
    surf = np.where(ins, v["surface"][cidx], W.SURFACE_GROUND)
    oid = np.where(ins, v["oid"][cidx], 0)
    top_px = v["top"][cidx]

    # rays under a tree canopy: look again through the world below the canopies (trunks, cars, ground)
    under = (~on_top) & (surf == W.SURFACE_TREE)
    if under.any():
        tree_ix = np.clip(-oid[under] - 1, 0, max(len(city.trees) - 1, 0))
        base = city.trees["base"][tree_ix] if len(city.trees) else np.zeros(0)
        below = z_hit[under] < base
        if below.any():
            sel = np.nonzero(under)[0][below]
            cols2 = np.unique(hu[sel])
            hs2, idx2, inside2 = _march(v["u_height"], city.shape, cell, e0, n0, az[cols2], dist)
            # column index within the sub-set
            pos = np.searchsorted(cols2, hu[sel])
            k2 = _first_hits(hs2, dist, tan_el, pos, hr[sel], cam_h)
            ok2 = k2 < K
            # pixels that now see the sky
            sky_px = sel[~ok2]
            if len(sky_px):
                surf[sky_px] = 255  # marker, painted as sky below
            s2, p2, kk = sel[ok2], pos[ok2], k2[ok2]
            dk2 = dist[kk]
            dprev2 = np.where(kk > 0, dist[np.maximum(kk - 1, 0)], 0.0)
            Hk2 = hs2[p2, kk]
            te2 = te[s2]
            zp2 = cam_h + dprev2 * te2
            top2 = zp2 >= Hk2
            with np.errstate(divide="ignore", invalid="ignore"):
                dt2 = np.where(te2 < 0, (cam_h - Hk2) / -te2, dk2)
            dh2 = np.where(top2, np.clip(dt2, dprev2, dk2), dprev2)
            on_top[s2] = top2
            d_hit[s2] = dh2
            dk[s2], dprev[s2], Hk[s2] = dk2, dprev2, Hk2
            Hprev[s2] = np.where(kk > 0, hs2[p2, np.maximum(kk - 1, 0)], 0.0)
            z_hit[s2] = np.where(top2, Hk2, np.clip(zp2, 0.0, Hk2))
            pe[s2], pn[s2] = e0 + dh2 * se[s2], n0 + dh2 * cn_[s2]
            ri2 = np.floor(pn[s2] / cell).astype(np.int64)
            ci2 = np.floor(pe[s2] / cell).astype(np.int64)
            ins2 = (ri2 >= 0) & (ri2 < rows) & (ci2 >= 0) & (ci2 < cols)
            cidx2 = np.where(top2, np.clip(ri2, 0, rows - 1) * cols + np.clip(ci2, 0, cols - 1), idx2[p2, kk])
            ins2 = np.where(top2, ins2, inside2[p2, kk])
            cidx[s2], ins[s2] = cidx2, ins2
            surf2 = np.where(ins2, v["u_surface"][cidx2], W.SURFACE_GROUND)
            oid[s2] = np.where(ins2, v["u_oid"][cidx2], 0)
            top_px[s2] = v["u_top"][cidx2]
            surf2[~top2 & (surf2 == W.SURFACE_TREE)] = 254  # marker: a trunk seen from the side
            surf[s2] = surf2

    col = _shade_hits(city, v, lt, top_px, cidx, ins, surf, oid, on_top, z_hit, Hk, Hprev, dk, dprev, pe, pn, se,
                      cn_)
    # fog
    fog = 1.0 - np.exp(-d_hit / lt.fog_m)
    hor = np.asarray(lt.sky_horizon_rgb, np.float32) / 255.0
    col = col * (1.0 - fog[:, None]).astype(np.float32) + (fog[:, None] * hor).astype(np.float32)
    resky = surf == 255
    if resky.any():
        col[resky] = _sky_lookup(lt, width, height, az_deg[hu[resky]], hr[resky])
    img[hit] = col
    img = img.reshape(width, height, 3).transpose(1, 0, 2)
    img = _grade(np.ascontiguousarray(img), lt.gain_rgb, lt.exposure, 1.0, lt.saturation)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


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
    tab = _sky(lt, a2.ravel(), e2.ravel()).reshape(height, width + 1, 3)
    if len(_SKY_CACHE) > 16:
        _SKY_CACHE.clear()
    _SKY_CACHE[key] = tab
    return tab


_SKY_CACHE: dict = {}


def _sky_lookup(lt: GroundLighting, width: int, height: int, az_deg: np.ndarray, rows: np.ndarray) -> np.ndarray:
    tab = _sky_table(lt, width, height)
    x = np.mod(az_deg, 360.0) * (width / 360.0)
    x0 = np.floor(x).astype(np.int64)
    f = (x - x0).astype(np.float32)[:, None]
    x0 = np.minimum(x0, width - 1)
    return tab[rows, x0] * (1 - f) + tab[rows, x0 + 1] * f


def _sky(lt: GroundLighting, az_deg: np.ndarray, el_deg: np.ndarray) -> np.ndarray:
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


def _shade_hits(city, v, lt, top_px, cidx, ins, surf, oid, on_top, z_hit, Hk, Hprev, dk, dprev, pe, pn, se, cn_):
    """Colours (float32 RGB in [0, 1]) of the hit pixels."""
    top = np.where(ins[:, None], top_px, np.asarray(city.outside_rgb, np.uint8)[None]).astype(np.float32)
    top *= np.float32(1 / 255.0)
    saz, sel = math.radians(lt.sun_azimuth_deg), math.radians(lt.sun_elevation_deg)
    sun_h = np.array([math.sin(saz), math.cos(saz)]) * math.cos(sel)
    amb = lt.ambient
    shadow = np.where(ins, v["shadow"][cidx], 0).astype(np.float32) / 255.0
    lit_top = (amb + (1 - amb) * (1.0 - lt.shadow_strength / max(1 - amb, 1e-3) * shadow).clip(0, 1))
    col = top * lit_top[:, None].astype(np.float32)

    # side hits whose step from the previous sample is small are sloped roofs / canopies: top colour
    side = ~on_top & (surf < 254)
    wall = side & ((Hk - Hprev) > 0.3 + 0.9 * (dk - dprev))
    sloped = side & ~wall
    if sloped.any():
        col[sloped] = top[sloped] * np.float32(0.85)

    # facades
    fac = wall & (surf == W.SURFACE_BUILDING) & (oid > 0)
    if fac.any():
        b = oid[fac]
        base = city.facade_rgb[b].astype(np.float32) / 255.0
        win = city.window_rgb[b].astype(np.float32) / 255.0
        fl = city.floor_m[b]
        style = city.window_style[b]
        z = z_hit[fac]
        nq = v["normal"][cidx[fac]].astype(np.float32) * (2 * np.pi / 256)
        nok = v["normal_ok"][cidx[fac]]
        ne, nn = np.cos(nq), np.sin(nq)
        # fall back to facing the camera where the normal map is undefined
        ne = np.where(nok, ne, -se[fac])
        nn = np.where(nok, nn, -cn_[fac])
        t = pe[fac] * (-nn) + pn[fac] * ne  # along the facade
        fz = z / fl
        fr = fz - np.floor(fz)
        ft = (t / 2.7) - np.floor(t / 2.7)
        punched = (fr > 0.32) & (fr < 0.78) & (ft > 0.22) & (ft < 0.78)
        ribbon = (fr > 0.12) & (fr < 0.9) & ((t / 1.5 - np.floor(t / 1.5)) > 0.08)
        ft_h = (t / 3.6) - np.floor(t / 3.6)
        house = (fr > 0.38) & (fr < 0.72) & (ft_h > 0.35) & (ft_h < 0.65) & (z > 0.6)
        shop = (z < fl * 0.85) & (z > 0.2) & (ft > 0.08) & (ft < 0.92)
        is_win = np.where(style == W.WINDOW_RIBBON, ribbon,
                          np.where(style == W.WINDOW_HOUSE, house, np.where(fz < 1.0, shop, punched)))
        is_win &= ((Hk[fac] - z) > 0.8) & (style != W.WINDOW_NONE)  # parapet; blank walls
        c = np.where(is_win[:, None], win, base)
        cornice = (Hk[fac] - z) < 0.8
        c = np.where(cornice[:, None], c * 0.82, c)
        lam = np.clip(ne * sun_h[0] + nn * sun_h[1], 0.0, 1.0)
        light = amb + (1.0 - amb) * 1.25 * lam * (1.0 - 0.6 * lt.shadow_strength * (z < 3.0))
        col[fac] = c * light[:, None].astype(np.float32)

    # roof details (HVAC boxes) seen from the side: grey, shaded by camera-facing side
    det = wall & (surf == W.SURFACE_ROOF_DETAIL)
    if det.any():
        col[det] = top[det] * np.float32(0.75)

    # tree canopies from the side: darker, slightly bluer at the bottom
    tr = side & (surf == W.SURFACE_TREE)
    if tr.any():
        tex = 0.75 + 0.25 * ((np.floor(pe[tr] * 2.0) + np.floor(pn[tr] * 2.0) + np.floor(z_hit[tr] * 2.0)) % 3) / 2
        col[tr] = top[tr] * (0.55 + 0.25 * np.clip(z_hit[tr] / np.maximum(Hk[tr], 1.0), 0, 1))[:, None] * \
            tex[:, None].astype(np.float32)

    trunk = surf == 254
    if trunk.any():
        col[trunk] = np.array([0.30, 0.24, 0.18], np.float32)

    # cars from the side: tyres, body, windows
    car = side & (surf == W.SURFACE_CAR)
    if car.any():
        z = z_hit[car]
        hc = Hk[car]
        cabin = hc > 1.15  # lower body cells are about 0.9 m high, the cabin about 1.5 m
        c = np.where((z < 0.36)[:, None], np.array([0.07, 0.07, 0.08], np.float32), top[car])
        glass = cabin & (z < hc - 0.1)
        c = np.where(glass[:, None], np.array([0.13, 0.15, 0.19], np.float32), c)
        col[car] = c * np.float32(0.92)

    # hedges and other low walls
    hed = wall & (surf == W.SURFACE_HEDGE)
    if hed.any():
        col[hed] = top[hed] * np.float32(0.7)
    return col
