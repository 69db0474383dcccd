"""``unifygeo synth``: render a synthetic city in the VIGOR on-disk layout (docs/DATA_FORMAT.md).

Also home of the VIGOR tiling shared with :mod:`unifygeo_ros.data.stream`: tiles of ``tile_m`` on a
half-tile stride (:func:`tile_grid`), a camera's positive tile (whose central quarter holds it) and its three
semi-positives (:func:`positive_and_semi`).

Layout written (``<out>`` may hold several cities; splits are per city)::

    <out>/<City>/panorama/<panoid>,<lat>,<lon>,.jpg     north-aligned, pano_width x pano_width/2
    <out>/<City>/satellite/satellite_<lat>_<lon>.png     tile_px x tile_px, north-up, tile centre in the name
    <out>/<City>/satellite_height/satellite_<lat>_<lon>.png  its surface height above ground, 16-bit, cm
    <out>/<City>/geo.json, panorama_meta.csv, preview.png
    <out>/splits/<City>/{satellite_list.txt, pano_label_balance.txt,
                         same_area_balanced_train.txt, same_area_balanced_test.txt}
    <out>/splits__corrected/<City>/...                  (identical: synthetic labels are exact)
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.data import render as R
from unifygeo_ros.data import world as W
from unifygeo_ros.data.city import as_size
from unifygeo_ros.errors import DataFormatError, UnifyGeoError
from unifygeo_ros.data.height import HEIGHT_DIR, write_height_png

LATLON_DECIMALS = 8  # 1e-8 deg < 1.2 mm: names round-trip to well under 1 cm
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
SPLIT_FILES = ("satellite_list.txt", "pano_label_balance.txt", "same_area_balanced_train.txt",
               "same_area_balanced_test.txt")


# ---------------------------------------------------------------------------------------------- VIGOR tiling
@dataclass(frozen=True)
class TileGrid:
    """Tile centres ``(i * stride_m, j * stride_m)`` for ``i in 1..n_east-1``, ``j in 1..n_north-1`` (ENU metres
    from the city's south-west corner); every tile lies inside the city. Cameras belong in
    :meth:`camera_bounds`, where each has a positive tile and three semi-positive neighbours."""

    tile_m: float
    n_east: int  # number of strides across the city (tiles per row = n_east - 1)
    n_north: int

    @property
    def stride_m(self) -> float:
        return self.tile_m / 2.0

    @property
    def shape(self) -> tuple[int, int]:
        """(tiles along north, tiles along east)."""
        return self.n_north - 1, self.n_east - 1

    def centres(self) -> np.ndarray:
        """(n_tiles, 2) east, north of every tile centre, row-major from the south-west (j outer, i inner)."""
        i = np.arange(1, self.n_east)
        j = np.arange(1, self.n_north)
        jj, ii = np.meshgrid(j, i, indexing="ij")
        return np.stack([ii.ravel() * self.stride_m, jj.ravel() * self.stride_m], -1)

    def index(self, i: int, j: int) -> int:
        """Row-major tile index of grid position (i east, j north), both from 1."""
        return (j - 1) * (self.n_east - 1) + (i - 1)

    def camera_bounds(self) -> tuple[float, float, float, float]:
        """(east_min, east_max, north_min, north_max) of the region cameras are placed in."""
        s = self.stride_m
        return s, (self.n_east - 1) * s, s, (self.n_north - 1) * s


def tile_grid(size_m, tile_m: float) -> TileGrid:
    """The VIGOR tiling of a city of ``size_m`` (number or (east, north)) with tiles of ``tile_m``."""
    w, h = as_size(size_m)
    stride = tile_m / 2.0
    n_e, n_n = int(math.floor(w / stride + 1e-9)), int(math.floor(h / stride + 1e-9))
    if n_e < 3 or n_n < 3:
        raise UnifyGeoError(f"a city of {w:g} x {h:g} m is too small for {tile_m:g} m tiles "
                            f"(needs at least {1.5 * tile_m:g} m a side)")
    return TileGrid(float(tile_m), n_e, n_n)


def positive_and_semi(grid: TileGrid, east_m: float, north_m: float) -> list[tuple[int, int]]:
    """Grid positions (i, j) of the positive tile (the one whose central quarter holds the camera) and of the
    three semi-positives (the neighbours that also contain it), positive first."""
    s = grid.stride_m
    i = int(np.clip(np.floor(east_m / s + 0.5), 1, grid.n_east - 1))
    j = int(np.clip(np.floor(north_m / s + 0.5), 1, grid.n_north - 1))
    dx, dy = east_m - i * s, north_m - j * s
    si = 1 if (dx > 0 or (dx == 0 and i == 1)) else -1
    sj = 1 if (dy > 0 or (dy == 0 and j == 1)) else -1
    if not 1 <= i + si <= grid.n_east - 1:
        si = -si
    if not 1 <= j + sj <= grid.n_north - 1:
        sj = -sj
    return [(i, j), (i + si, j), (i, j + sj), (i + si, j + sj)]


def sample_camera_positions(city: W.City, grid: TileGrid, n: int, rng: np.random.Generator,
                            balanced: bool = True) -> np.ndarray:
    """``n`` camera positions (east, north) on the driving lanes, inside the grid's camera bounds.

    ``balanced``: spread evenly over the central quarters of the tiles that have any road (like VIGOR's
    balanced sampling), else uniformly over all free road cells.
    """
    free = city.free_space()
    e0, e1, n0, n1 = grid.camera_bounds()
    cell = city.cell_m
    r0, r1 = int(math.ceil(n0 / cell)), int(math.floor(n1 / cell))
    c0, c1 = int(math.ceil(e0 / cell)), int(math.floor(e1 / cell))
    sub = free[r0:r1, c0:c1]
    rr, cc = np.nonzero(sub)
    if len(rr) == 0:
        raise UnifyGeoError("the city has no road inside the tiled area; try another seed or a larger size")
    east = (cc + c0 + 0.5) * cell
    north = (rr + r0 + 0.5) * cell
    if not balanced:
        pick = rng.integers(0, len(east), n)
    else:
        s = grid.stride_m
        qi = np.clip(np.floor(east / s + 0.5).astype(np.int64), 1, grid.n_east - 1)
        qj = np.clip(np.floor(north / s + 0.5).astype(np.int64), 1, grid.n_north - 1)
        q = (qj - 1) * (grid.n_east - 1) + (qi - 1)
        order = np.argsort(q, kind="stable")
        qs = q[order]
        uq, start, count = np.unique(qs, return_index=True, return_counts=True)
        # as even as possible: every quarter gets n // m, a random n % m get one more
        m = len(uq)
        per = np.full(m, n // m)
        per[rng.permutation(m)[: n % m]] += 1
        pick = np.concatenate([order[start[k] + rng.integers(0, count[k], per[k])] for k in range(m)])
        pick = pick[rng.permutation(len(pick))]
    # jitter inside the cell so positions are not on the cell grid
    jit = rng.uniform(-0.5, 0.5, (len(pick), 2)) * cell
    return np.stack([east[pick], north[pick]], -1) + jit


# ---------------------------------------------------------------------------------------------- names
def fmt_deg(x: float) -> str:
    return f"{x:.{LATLON_DECIMALS}f}"


def satellite_name(lat: float, lon: float) -> str:
    return f"satellite_{fmt_deg(lat)}_{fmt_deg(lon)}.png"


def panorama_name(panoid: str, lat: float, lon: float) -> str:
    return f"{panoid},{fmt_deg(lat)},{fmt_deg(lon)},.jpg"


def parse_satellite_name(name: str) -> tuple[float, float]:
    """``satellite_<lat>_<lon>.png`` -> (lat, lon)."""
    base = os.path.basename(name)
    if not (base.startswith("satellite_") and base.endswith(".png")):
        raise DataFormatError(f"not a satellite tile name: {name!r}")
    lat, lon = base[len("satellite_"):-len(".png")].split("_")
    return float(lat), float(lon)


def parse_panorama_name(name: str) -> tuple[str, float, float]:
    """``<panoid>,<lat>,<lon>,.jpg`` -> (panoid, lat, lon)."""
    parts = os.path.basename(name).split(",")
    if len(parts) != 4 or parts[3] != ".jpg":
        raise DataFormatError(f"not a panorama name: {name!r}")
    return parts[0], float(parts[1]), float(parts[2])


def origin_for_seed(seed: int) -> tuple[float, float]:
    """A made-up geographic origin (south-west corner) for a synthetic city: somewhere at northern
    mid-latitudes, determined by the seed."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x0121])
    return float(np.round(rng.uniform(28.0, 52.0), 6)), float(np.round(rng.uniform(-124.0, -70.0), 6))


def _snap(enu: geo.LocalENU, east, north):
    """ENU -> rounded lat/lon -> ENU: positions exactly as the file names state them."""
    lat, lon = enu.from_en(np.asarray(east, float), np.asarray(north, float))
    lat, lon = np.round(lat, LATLON_DECIMALS), np.round(lon, LATLON_DECIMALS)
    e2, n2 = enu.to_en(lat, lon)
    return np.asarray(lat), np.asarray(lon), np.asarray(e2), np.asarray(n2)


def _pano_ids(rng: np.random.Generator, n: int) -> list[str]:
    alphabet = np.array(list(_ID_ALPHABET))
    ids, seen = [], set()
    while len(ids) < n:
        s = "".join(alphabet[rng.integers(0, len(alphabet), 22)])
        if s not in seen:
            seen.add(s)
            ids.append(s)
    return ids


# ---------------------------------------------------------------------------------------------- writing
@dataclass
class SynthResult:
    """What :func:`write_city` wrote."""

    city_dir: str
    n_tiles: int
    n_panoramas: int
    seconds: float
    timings_s: dict


def write_city(out: str, city_name: str, seed: int, size_m=1000.0, n_panos: int = 2000, style: str = "mixed",
               tile_m: float = 70.0, tile_px: int = 320, pano_width: int = 512, cell_m: float = 0.25,
               camera_height_m: float = 2.0, jpeg_quality: int = 90, overwrite: bool = False,
               progress: bool = True) -> SynthResult:
    """Generate city ``seed`` and write it under ``out`` in the VIGOR layout. Deterministic: the same
    arguments give the same bytes."""
    t_start = time.perf_counter()
    timings = {}
    if not city_name or any(ch in city_name for ch in "/\\,. ") or city_name in ("splits", "splits__corrected"):
        raise UnifyGeoError(f"invalid city name {city_name!r}: use letters, digits, '-' or '_'")
    if pano_width % 2:
        raise UnifyGeoError("--pano-width must be even (equirectangular panoramas are 2:1)")
    city_dir = os.path.join(out, city_name)
    split_dirs = [os.path.join(out, s, city_name) for s in ("splits", "splits__corrected")]
    existing = [p for p in [city_dir, *split_dirs] if os.path.exists(p)]
    if existing:
        if not overwrite:
            raise UnifyGeoError(f"{existing[0]} already exists; refusing to mix old and new files "
                                "(choose another --city or --out, or pass --overwrite to delete it first)")
        for p in existing:
            print(f"unifygeo synth: --overwrite: deleting {p}", file=sys.stderr)
            shutil.rmtree(p)
    grid = tile_grid(size_m, tile_m)
    lat0, lon0 = origin_for_seed(seed)
    enu = geo.LocalENU(lat0, lon0)

    t = time.perf_counter()
    city = W.generate_city(seed, size_m, style, cell_m)
    timings["generate_city"] = time.perf_counter() - t

    # tiles
    centres = grid.centres()
    t_lat, t_lon, t_e, t_n = _snap(enu, centres[:, 0], centres[:, 1])
    sat_names = [satellite_name(a, b) for a, b in zip(t_lat, t_lon)]
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5A7])
    # cameras
    pos = sample_camera_positions(city, grid, n_panos, rng)
    p_lat, p_lon, p_e, p_n = _snap(enu, pos[:, 0], pos[:, 1])
    ids = _pano_ids(rng, n_panos)
    pano_names = [panorama_name(i, a, b) for i, a, b in zip(ids, p_lat, p_lon)]
    mpp = tile_m / tile_px
    labels = []
    for k in range(n_panos):
        cells = positive_and_semi(grid, float(p_e[k]), float(p_n[k]))
        parts = [pano_names[k]]
        for (i, j) in cells:
            ti = grid.index(i, j)
            d_row, d_col = geo.en_to_vigor_offset(p_e[k] - t_e[ti], p_n[k] - t_n[ti], mpp)
            parts += [sat_names[ti], f"{float(d_row):.4f}", f"{float(d_col):.4f}"]
        labels.append(" ".join(parts))

    sat_dir = os.path.join(city_dir, "satellite")
    pano_dir = os.path.join(city_dir, "panorama")
    height_dir = os.path.join(city_dir, HEIGHT_DIR)
    os.makedirs(sat_dir)
    os.makedirs(height_dir)
    os.makedirs(pano_dir)
    a_light = R.AerialLighting.for_city(city)
    g_light = R.GroundLighting.for_city(city)
    tqdm = _tqdm(progress)
    t = time.perf_counter()
    R.aerial_orthophoto(city, a_light)
    timings["aerial_shading"] = time.perf_counter() - t
    t = time.perf_counter()
    for k in tqdm(range(len(centres)), desc=f"{city_name} tiles", unit="tile"):
        tile = R.render_aerial(city, (t_e[k], t_n[k]), tile_m, tile_px, a_light)
        _write_png(os.path.join(sat_dir, sat_names[k]), tile)
        write_height_png(os.path.join(height_dir, sat_names[k]),
                         R.render_aerial_height(city, (t_e[k], t_n[k]), tile_m, tile_px))
    timings["tiles"] = time.perf_counter() - t
    t = time.perf_counter()
    pano_h = pano_width // 2
    first_pano = None
    for k in tqdm(range(n_panos), desc=f"{city_name} panoramas", unit="pano"):
        pano = R.render_panorama(city, (p_e[k], p_n[k]), 0.0, pano_width, pano_h, camera_height_m, g_light)
        if first_pano is None:
            first_pano = pano
        _write_jpg(os.path.join(pano_dir, pano_names[k]), pano, jpeg_quality)
    timings["panoramas"] = time.perf_counter() - t

    # splits
    perm = rng.permutation(n_panos)
    train = np.sort(perm[: n_panos // 2])
    test = np.sort(perm[n_panos // 2:])
    for d in split_dirs:
        os.makedirs(d)
        _write_lines(os.path.join(d, "satellite_list.txt"), sat_names)
        _write_lines(os.path.join(d, "pano_label_balance.txt"), labels)
        _write_lines(os.path.join(d, "same_area_balanced_train.txt"), [labels[k] for k in train])
        _write_lines(os.path.join(d, "same_area_balanced_test.txt"), [labels[k] for k in test])
    # metadata
    meta = {
        "format": "unifygeo-city", "version": 1, "city": city_name, "seed": int(seed), "style": style,
        "origin": {"lat_deg": lat0, "lon_deg": lon0}, "size_m": [float(city.size_m[0]), float(city.size_m[1])],
        "tile_m": float(tile_m), "stride_m": float(grid.stride_m), "tile_px": int(tile_px), "mpp": float(mpp),
        "pano_px": [int(pano_width), int(pano_h)], "camera_height_m": float(camera_height_m),
        "cell_m": float(cell_m), "n_tiles": len(sat_names), "n_panoramas": int(n_panos),
        "generator": "unifygeo_ros.data.synth",
    }
    with open(os.path.join(city_dir, "geo.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["panoid", "east_m", "north_m", "lat", "lon", "heading_deg"])
    for k in range(n_panos):
        wr.writerow([ids[k], f"{p_e[k]:.4f}", f"{p_n[k]:.4f}", fmt_deg(p_lat[k]), fmt_deg(p_lon[k]), "0.0"])
    with open(os.path.join(city_dir, "panorama_meta.csv"), "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())
    # preview
    t = time.perf_counter()
    pv = preview_image(city, grid, np.stack([p_e, p_n], -1), (float(p_e[0]), float(p_n[0])), first_pano,
                       tile_m, tile_px, a_light)
    _write_png(os.path.join(city_dir, "preview.png"), pv)
    timings["preview"] = time.perf_counter() - t
    return SynthResult(city_dir, len(sat_names), n_panos, time.perf_counter() - t_start, timings)


def _tqdm(enabled: bool):
    if not enabled:
        return lambda it, **kw: it
    from tqdm import tqdm

    return lambda it, **kw: tqdm(it, file=sys.stderr, leave=False, mininterval=0.5, **kw)


def _write_png(path: str, rgb: np.ndarray):
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise UnifyGeoError(f"could not encode {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def _write_jpg(path: str, rgb: np.ndarray, quality: int):
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise UnifyGeoError(f"could not encode {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def _write_lines(path: str, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for ln in lines:
            f.write(ln + "\n")


# ---------------------------------------------------------------------------------------------- pictures
def mark_camera(tile: np.ndarray, offset_en_m: tuple[float, float], tile_m: float, heading_deg: float = 0.0,
                colour=(255, 0, 255)) -> np.ndarray:
    """A copy of a north-up tile with the camera drawn at ``offset_en_m`` from the tile centre, with an arrow
    along ``heading_deg`` (the panorama's centre column)."""
    img = np.ascontiguousarray(tile.copy())
    px = img.shape[0]
    c = px / 2 + offset_en_m[0] / tile_m * px - 0.5
    r = px / 2 - offset_en_m[1] / tile_m * px - 0.5
    rad = max(4, px // 45)
    h = math.radians(heading_deg)
    tip = (c + 3 * rad * math.sin(h), r - 3 * rad * math.cos(h))
    th = max(1, px // 200)
    cv2.arrowedLine(img, (int(round(c)), int(round(r))), (int(round(tip[0])), int(round(tip[1]))), colour, th + 1,
                    cv2.LINE_AA, tipLength=0.35)
    cv2.circle(img, (int(round(c)), int(round(r))), rad, colour, th + 1, cv2.LINE_AA)
    return img


def city_overview(city: W.City, grid: TileGrid | None, positions: np.ndarray | None,
                  lighting: R.AerialLighting | None = None, max_px: int = 1000,
                  highlight_tile: tuple[float, float] | None = None,
                  highlight_pos: tuple[float, float] | None = None) -> np.ndarray:
    """The whole city from above (north-up), with the tile grid (central-quarter boundaries), the camera
    positions and optionally one tile and camera highlighted."""
    lighting = lighting or R.AerialLighting.for_city(city)
    level = max(0, int(math.ceil(math.log2(max(city.shape) / max_px))))
    ortho = R.aerial_orthophoto(city, lighting, "aerial", level)
    img = np.ascontiguousarray(ortho[::-1])
    cell = city.cell_m * city.shape[0] / ortho.shape[0]
    hgt = img.shape[0]

    def to_px(e, n):
        return int(round(e / cell - 0.5)), int(round(hgt - n / cell - 0.5))

    if grid is not None:
        s = grid.stride_m
        e0, e1, n0, n1 = grid.camera_bounds()
        over = img.copy()
        for i in range(1, grid.n_east):
            for x in (i * s - s / 2, i * s + s / 2):
                cv2.line(over, to_px(x, n0 - s / 2), to_px(x, n1 + s / 2), (255, 255, 255), 1)
        for j in range(1, grid.n_north):
            for y in (j * s - s / 2, j * s + s / 2):
                cv2.line(over, to_px(e0 - s / 2, y), to_px(e1 + s / 2, y), (255, 255, 255), 1)
        img = cv2.addWeighted(img, 0.65, over, 0.35, 0)
        cv2.rectangle(img, to_px(e0, n1), to_px(e1, n0), (255, 255, 0), 1)
    if positions is not None:
        for e, n in positions:
            cv2.circle(img, to_px(e, n), 2, (255, 40, 40), -1)
    if highlight_tile is not None:
        ce, cn = highlight_tile
        t = grid.tile_m if grid is not None else 70.0
        cv2.rectangle(img, to_px(ce - t / 2, cn + t / 2), to_px(ce + t / 2, cn - t / 2), (255, 0, 255), 2)
    if highlight_pos is not None:
        cv2.circle(img, to_px(*highlight_pos), 5, (255, 0, 255), 2)
    return img


def preview_image(city: W.City, grid: TileGrid, positions: np.ndarray, pos: tuple[float, float],
                  pano: np.ndarray | None, tile_m: float, tile_px: int,
                  lighting: R.AerialLighting | None = None) -> np.ndarray:
    """Overview on the left; on the right the positive tile of ``pos`` (camera marked) above its panorama."""
    (i, j) = positive_and_semi(grid, pos[0], pos[1])[0]
    ce, cn = i * grid.stride_m, j * grid.stride_m
    ov = city_overview(city, grid, positions, lighting, 900, (ce, cn), pos)
    tile = R.render_aerial(city, (ce, cn), tile_m, tile_px, lighting)
    if tile_px < 320:  # enlarged for viewing only
        tile = cv2.resize(tile, (320, 320), interpolation=cv2.INTER_NEAREST)
    tile = mark_camera(tile, (pos[0] - ce, pos[1] - cn), tile_m, 0.0)
    if pano is None:
        pano = R.render_panorama(city, pos, 0.0, 512, 256)
    right_w = max(tile.shape[1], min(pano.shape[1], 640))
    pano_r = cv2.resize(pano, (right_w, right_w // 2), interpolation=cv2.INTER_AREA)
    right = np.full((tile.shape[0] + 8 + pano_r.shape[0], right_w, 3), 255, np.uint8)
    right[: tile.shape[0], : tile.shape[1]] = tile
    right[tile.shape[0] + 8:] = pano_r
    h = max(ov.shape[0], right.shape[0])
    out = np.full((h, ov.shape[1] + 8 + right_w, 3), 255, np.uint8)
    out[: ov.shape[0], : ov.shape[1]] = ov
    out[: right.shape[0], ov.shape[1] + 8:] = right
    return out


def write_doc_images(out_dir: str = "docs/images", seed: int = 9, style: str = "mixed", size_m: float = 420.0,
                     tile_m: float = 70.0, tile_px: int = 320, pano_width: int = 1024) -> list[str]:
    """The pictures of docs/SYNTHETIC_WORLD.md: a tile with the camera marked, its panorama, a city overview.

    ``python -c "from unifygeo_ros.data.synth import write_doc_images; write_doc_images()"``
    """
    os.makedirs(out_dir, exist_ok=True)
    city = W.generate_city(seed, size_m, style)
    grid = tile_grid(size_m, tile_m)
    rng = np.random.default_rng([seed, 0xD0C])
    pos_all = sample_camera_positions(city, grid, 60, rng)
    # a camera near the middle, with buildings around: the one whose panorama has the least sky
    mid = np.array(city.size_m) / 2
    near = np.argsort(np.hypot(*(pos_all - mid).T))[:12]
    best, best_sky = None, 2.0
    for k in near:
        p = R.render_panorama(city, tuple(pos_all[k]), 0.0, 256, 128)
        sky = float((p[:64].astype(int).sum(-1) > 480).mean())
        if sky < best_sky:
            best, best_sky = k, sky
    pos = tuple(float(v) for v in pos_all[best])
    pano = R.render_panorama(city, pos, 0.0, pano_width, pano_width // 2)
    (i, j) = positive_and_semi(grid, *pos)[0]
    ce, cn = i * grid.stride_m, j * grid.stride_m
    tile = mark_camera(R.render_aerial(city, (ce, cn), tile_m, tile_px), (pos[0] - ce, pos[1] - cn), tile_m)
    ov = city_overview(city, grid, pos_all, None, 900, (ce, cn), pos)
    paths = []
    for name, img in (("synth_aerial_tile.png", tile), ("synth_panorama.png", pano), ("synth_city_overview.png", ov)):
        p = os.path.join(out_dir, name)
        _write_png(p, img)
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="data set root (VIGOR layout); may already hold other cities")
    parser.add_argument("--city", required=True, help="city name, e.g. Synthville (letters, digits, - or _)")
    parser.add_argument("--seed", type=int, required=True, help="world seed: same seed and arguments, same bytes")
    parser.add_argument("--size-m", type=float, default=1000.0, help="city side in metres (default 1000)")
    parser.add_argument("--panos", type=int, default=2000, help="number of panoramas (default 2000)")
    parser.add_argument("--style", choices=W.STYLES, default="mixed", help="city style (default mixed)")
    parser.add_argument("--tile-m", type=float, default=70.0, help="aerial tile side in metres (default 70, VIGOR)")
    parser.add_argument("--tile-px", type=int, default=320, help="aerial tile side in pixels (default 320)")
    parser.add_argument("--pano-width", type=int, default=512, help="panorama width in pixels; height = width/2")
    parser.add_argument("--cell-m", type=float, default=0.25, help="world raster cell size (default 0.25 m)")
    parser.add_argument("--camera-height-m", type=float, default=2.0, help="panorama camera height (default 2 m)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="panorama JPEG quality (default 90)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete this city's existing folders under --out before writing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    if args.panos < 1:
        raise UnifyGeoError("--panos must be at least 1")
    if args.tile_px < 16 or args.pano_width < 16:
        raise UnifyGeoError("--tile-px and --pano-width must be at least 16")
    res = write_city(args.out, args.city, args.seed, args.size_m, args.panos, args.style, args.tile_m,
                     args.tile_px, args.pano_width, args.cell_m, args.camera_height_m, args.jpeg_quality,
                     args.overwrite, progress=not args.no_progress)
    print(f"wrote {res.city_dir}: {res.n_tiles} tiles, {res.n_panoramas} panoramas in {res.seconds:.1f} s "
          f"({', '.join(f'{k} {v:.1f} s' for k, v in res.timings_s.items())})", file=sys.stderr)
    return 0
