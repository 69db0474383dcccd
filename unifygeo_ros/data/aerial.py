"""A city seen from above: the shaded orthophoto of the whole city (:func:`aerial_orthophoto`, cached on the
city per lighting and car set, with a pyramid of halvings), north-up tiles cut from it
(:func:`render_aerial`) and the matching height-above-ground tiles (:func:`render_aerial_height`).

Height shows in the RGB as cast shadows (height-field shadow sweep), slope shading of pitched roofs, dark wall
feet (ambient occlusion) and dark roof outlines, like in a real orthophoto; with an off-nadir lean, tall things
lean over (relief displacement) and show a facade. Colour balance, haze and grain differ per city.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from unifygeo_ros.data.city import City, CityLayers
from unifygeo_ros.data.city_schema import SURFACE_CAR, WINDOW_NONE
from unifygeo_ros.data.lighting import AerialLighting, cast_shadows, grade

ROW_CHUNK = 512  # rows shaded at a time (bounds the float32 temporaries)


# ---------------------------------------------------------------------------------------------- tiles
def render_aerial(city: City, center_en: tuple[float, float], tile_m: float, px: int,
                  lighting: AerialLighting | None = None, cars: str = "aerial") -> np.ndarray:
    """A north-up aerial tile, (px, px, 3) uint8 RGB: ``tile_m`` metres a side centred on ``center_en``.

    Row 0 is the northern edge, column 0 the western edge; pixel (r, c) shows the ground at
    ``east = ce - tile_m/2 + (c + 0.5) * tile_m/px``, ``north = cn + tile_m/2 - (r + 0.5) * tile_m/px``.
    Outside the city the ground is a flat field.
    """
    lighting = lighting or AerialLighting.for_city(city)
    return _cut_tile(city, ("ortho", cars, lighting), lambda: _shade_aerial(city, lighting, cars), center_en,
                     tile_m, px, _outside_aerial_rgb(city, lighting))


def render_aerial_height(city: City, center_en: tuple[float, float], tile_m: float, px: int,
                         cars: str = "aerial") -> np.ndarray:
    """The normalised surface model (height above ground, metres) of the tile :func:`render_aerial` shows,
    ``(px, px)`` float32, same pixel grid (row 0 = north). What a user with a DSM/nDSM supplies; 0 outside.

    Each pixel is the area mean of the height cells it covers (like the orthophoto's pyramid), so roof edges
    are soft at coarse resolutions as in a resampled DSM.
    """
    out = _cut_tile(city, ("height_pyr", cars), lambda: _height_base(city, cars), center_en, tile_m, px, 0.0)
    return np.maximum(out, 0.0).astype(np.float32)


def aerial_height_raster(city: City, cars: str = "aerial", level: int = 0) -> np.ndarray:
    """The surface height above ground of the whole city (metres, float32, **row 0 = south**) at
    ``cell_m * 2**level`` m/px: the raster :func:`render_aerial_height` cuts its tiles from (cached on the city)."""
    return _pyramid(city, ("height_pyr", cars), lambda: _height_base(city, cars), level)[0]


def pyramid_level(city: City, mpp: float) -> int:
    """The pyramid level that pixels of ``mpp`` metres are sampled from: the finest not finer than them."""
    return max(0, int(math.floor(math.log2(max(mpp / city.cell_m, 1.0) + 1e-9))))


def _height_base(city: City, cars: str) -> np.ndarray:
    return np.ascontiguousarray(city.layers(cars).height, dtype=np.float32)


def aerial_orthophoto(city: City, lighting: AerialLighting | None = None, cars: str = "aerial",
                      level: int = 0) -> np.ndarray:
    """The shaded orthophoto of the whole city at ``cell_m * 2**level`` m/px, uint8 RGB, **row 0 = south**.

    Cached on the city per (lighting, cars); levels are area-averaged halvings of level 0.
    """
    lighting = lighting or AerialLighting.for_city(city)
    return _pyramid(city, ("ortho", cars, lighting), lambda: _shade_aerial(city, lighting, cars), level)[0]


def _pyramid(city: City, key: tuple, make_base, level: int) -> tuple[np.ndarray, int]:
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


def _cut_tile(city: City, key: tuple, make_base, center_en: tuple[float, float], tile_m: float, px: int,
              outside) -> np.ndarray:
    """A north-up ``px`` tile of ``tile_m`` metres centred on ``center_en`` cut from the pyramid ``key`` (the
    finest level not finer than the tile's pixels; bilinear), ``outside`` beyond the raster (see render_aerial)."""
    ce, cn = float(center_en[0]), float(center_en[1])
    mpp = tile_m / px
    raster, level = _pyramid(city, key, make_base, pyramid_level(city, mpp))
    cell = city.cell_m * (2 ** level)
    s = mpp / cell
    m = np.array([[s, 0.0, (ce - tile_m / 2) / cell - 0.5 + 0.5 * s],
                  [0.0, -s, (cn + tile_m / 2) / cell - 0.5 - 0.5 * s]])
    return cv2.warpAffine(raster, m, (px, px), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=outside)


def _outside_aerial_rgb(city: City, lighting: AerialLighting) -> tuple[int, int, int]:
    """The colour of the ground outside the city as the survey shows it (graded and hazed, no shading)."""
    c = np.asarray(city.outside_rgb, np.float32)[None, None] / 255.0
    c = grade(c, lighting.gain_rgb, lighting.brightness, lighting.contrast, lighting.saturation)
    c = c * (1 - lighting.haze) + lighting.haze * np.asarray(lighting.haze_rgb, np.float32) / 255.0
    return tuple(int(v) for v in np.clip(c[0, 0] * 255 + 0.5, 0, 255))



# ---------------------------------------------------------------------------------------------- shading
def _shade_aerial(city: City, lt: AerialLighting, cars: str) -> np.ndarray:
    """The orthophoto at the city's cell size (row 0 = south): top colours under the survey's sun, then
    graded, hazed, with sensor grain; re-projected off nadir when the survey leans."""
    lay = city.layers(cars)
    h = lay.height
    light = _slope_light(h, city.cell_m, lt)
    shadow = cast_shadows(h, city.cell_m, lt.sun_azimuth_deg, lt.sun_elevation_deg)
    ao_f = _occlusion_factor(h, city.cell_m, lt)
    grain_rng = np.random.default_rng([lt.noise_seed, int(city.seed) & 0xFFFFFFFF])
    out = _expose(lay.top_rgb, light, shadow, ao_f, lt, grain_rng)
    if math.hypot(*lt.lean_m_per_m) > 1e-3:
        out = _relief_displacement(city, lay, out, lt)
    return out


def _slope_light(h: np.ndarray, cell: float, lt: AerialLighting) -> np.ndarray:
    """Direct light on the surface relative to flat ground (pitched roofs, tree domes); wall steps are clipped
    so that they do not dominate."""
    el = math.radians(lt.sun_elevation_deg)
    az = math.radians(lt.sun_azimuth_deg)
    sun = np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)], np.float32)
    gx = cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3) / np.float32(8 * cell)
    gy = cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3) / np.float32(8 * cell)
    np.clip(gx, -1.5, 1.5, out=gx)
    np.clip(gy, -1.5, 1.5, out=gy)
    light = (-gx * sun[0] - gy * sun[1] + sun[2]) / np.sqrt(gx * gx + gy * gy + 1.0) / sun[2]
    del gx, gy
    np.clip(light, 0.35, 1.35, out=light)
    return light


def _occlusion_factor(h: np.ndarray, cell: float, lt: AerialLighting) -> np.ndarray:
    """Ambient occlusion: ground near tall walls is darker; roof outlines (top of a wall) darker too."""
    sig = max(1.0, 2.0 / cell)
    blur = cv2.GaussianBlur(h, (0, 0), sig)
    ao = np.clip((blur - h) / 4.0, 0.0, 1.0)
    del blur
    ero = cv2.erode(h, np.ones((3, 3), np.uint8))
    edge = (h - ero) > 1.0
    del ero
    return 1.0 - np.float32(lt.ambient_occlusion) * ao - 0.25 * edge


def _expose(top_rgb: np.ndarray, light: np.ndarray, shadow: np.ndarray, ao_f: np.ndarray, lt: AerialLighting,
            rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB: top colours times light (blue-tinted in shadow) and occlusion, graded, hazed, plus grain."""
    rows, cols = light.shape
    tint = np.asarray(lt.shadow_tint_rgb, np.float32)
    out = np.empty((rows, cols, 3), np.uint8)
    haze_rgb = np.asarray(lt.haze_rgb, np.float32) / 255.0
    for r0 in range(0, rows, ROW_CHUNK):
        r1 = min(rows, r0 + ROW_CHUNK)
        sh = shadow[r0:r1, :, None] * np.float32(lt.shadow_strength)
        direct = light[r0:r1, :, None] * (1.0 - sh) + sh * (tint - 1.0) * 0.5
        img = top_rgb[r0:r1].astype(np.float32) * np.float32(1 / 255.0)
        img *= direct
        img *= ao_f[r0:r1, :, None]
        img = grade(img, lt.gain_rgb, lt.brightness, lt.contrast, lt.saturation)
        img *= np.float32(1 - lt.haze)
        img += np.float32(lt.haze) * haze_rgb
        img *= 255.0
        img += rng.standard_normal((r1 - r0, cols, 1), dtype=np.float32) * np.float32(lt.grain)
        np.clip(img, 0, 255, out=img)
        out[r0:r1] = (img + 0.5).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------- off nadir
def _relief_displacement(city: City, lay: CityLayers, shaded: np.ndarray, lt: AerialLighting) -> np.ndarray:
    """Re-project a true orthophoto as an off-nadir view: a point at height z moves by ``z * lean``; walls
    facing away from the lean direction become visible (facade colour, storey bands), taller things hide
    what lies behind them.
    """
    lx, ly = lt.lean_m_per_m
    lmag = math.hypot(lx, ly)
    rows, cols = lay.height.shape
    ux, uy = lx / lmag, ly / lmag
    disp_o, depth_o = _lean_displacement(lay.height, ux, uy, lmag / city.cell_m)
    gx, gy = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
    mapx = gx - disp_o * np.float32(ux)
    mapy = gy - disp_o * np.float32(uy)
    del gx, gy
    out = cv2.remap(shaded, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fac = depth_o > 0
    if fac.any():
        _paint_revealed_sides(city, lay, out, fac, mapx, mapy, depth_o, lt, (ux, uy))
    return out


def _lean_displacement(h: np.ndarray, ux: float, uy: float, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Per cell (row 0 = south): how many cells back along the lean ``(ux, uy)`` the pixel's content comes
    from, and how many metres below the top of that column the pixel sees (0: a top; > 0: a side).

    In a frame rotated so that the lean points along +x, ground column ``x`` covers the image interval
    ``[x, x + h(x) * k]`` (k = lean / cell); the pixel ``X`` sees the first column whose interval reaches it,
    i.e. a running maximum of ``x + h(x) * k`` and a ``searchsorted`` per row.
    """
    rows, cols = h.shape
    rot = np.array([[ux, uy], [-uy, ux]])
    corners = np.array([[0, 0], [cols, 0], [0, rows], [cols, rows]], float) @ rot.T
    lo = corners.min(0)
    out_w, out_h = (int(math.ceil(v)) + 2 for v in corners.max(0) - lo)
    m = np.hstack([rot, (-lo + 1.0)[:, None]])
    hr = cv2.warpAffine(h, m, (out_w, out_h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0.0)
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
    return disp_o, depth_o


def _paint_revealed_sides(city: City, lay: CityLayers, out: np.ndarray, fac: np.ndarray, mapx: np.ndarray,
                          mapy: np.ndarray, depth_o: np.ndarray, lt: AerialLighting, lean_dir: tuple[float, float]):
    """Colour the pixels ``fac`` that see the side of something, in place: buildings show their facade
    (window bands by storey, lit by how much the wall faces the sun), trees, cars and roof boxes a darker top
    colour."""
    rows, cols = lay.height.shape
    fr, fc = np.nonzero(fac)
    sr = np.clip(np.round(mapy[fac]).astype(np.int64), 0, rows - 1)
    sc = np.clip(np.round(mapx[fac]).astype(np.int64), 0, cols - 1)
    oid = city.object_id[sr, sc]
    top_z = lay.height[sr, sc]
    z = top_z - depth_o[fac]
    col = out[fr, fc].astype(np.float32) * 0.72  # sides of trees, cars, roof boxes: darker top colour
    bld = (oid > 0) & (lay.surface[sr, sc] != SURFACE_CAR)
    if bld.any():
        col[bld] = _facade_colours(city, oid[bld], z[bld], top_z[bld], lt, lean_dir)
    out[fr, fc] = (col + 0.5).astype(np.uint8)


def _facade_colours(city: City, b: np.ndarray, z: np.ndarray, top_z: np.ndarray, lt: AerialLighting,
                    lean_dir: tuple[float, float]) -> np.ndarray:
    """Float RGB (0..255) of facade points of buildings ``b`` at heights ``z`` under roofs at ``top_z``."""
    ux, uy = lean_dir
    fl = city.floor_m[b]
    fz = z / fl
    band = ((fz - np.floor(fz)) > 0.35) & ((fz - np.floor(fz)) < 0.75) & (top_z - z > 0.8)
    band &= city.window_style[b] != WINDOW_NONE
    c = np.where(band[:, None], city.window_rgb[b], city.facade_rgb[b]).astype(np.float32) / 255.0
    # walls facing -lean, lit by how much they face the sun
    az = math.radians(lt.sun_azimuth_deg)
    lam = max(0.0, -(ux * math.sin(az) + uy * math.cos(az))) * math.cos(math.radians(lt.sun_elevation_deg))
    c *= np.float32(0.45 + 0.8 * lam)
    c = grade(c, lt.gain_rgb, lt.brightness, lt.contrast, lt.saturation)
    c = c * (1 - lt.haze) + lt.haze * np.asarray(lt.haze_rgb, np.float32) / 255.0
    return np.clip(c * 255.0, 0, 255)
