"""``unifygeo synth``: render a synthetic city in the VIGOR on-disk layout (docs/DATA_FORMAT.md).

:func:`write_city` does the work, in steps: check the output folders, plan the files (tile and camera
positions, names, label lines), render and write the tiles with their heights, then the panoramas, then the
splits, ``geo.json``, ``panorama_meta.csv`` and ``preview.png``. The VIGOR tiling lives in :mod:`.tiling`, the
file names and writers in :mod:`.synth_files`, the preview pictures in :mod:`.synth_pictures`; their public
names are re-exported here (``synth.tile_grid``, ``synth.positive_and_semi``, ``synth.satellite_name``...).

Layout written (``<out>`` may hold several cities; splits are per city)::

    <out>/<City>/panorama/<panoid>,<lat>,<lon>,.jpg     north-aligned, pano_width x pano_width/2
    <out>/<City>/satellite/satellite_<lat>_<lon>.png     tile_px x tile_px, north-up, tile centre in the name
    <out>/<City>/satellite_height/satellite_<lat>_<lon>.png  its surface height above ground, 16-bit, cm
    <out>/<City>/geo.json, panorama_meta.csv, preview.png
    <out>/<City>/map/{orthophoto.tif, ndsm.tif, panoramas.csv}   the whole city as a user's map (GeoTIFF,
                                                        EPSG:4326) and the panoramas' true positions (.synth_geotiff)
    <out>/splits/<City>/{satellite_list.txt, pano_label_balance.txt,
                         same_area_balanced_train.txt, same_area_balanced_test.txt}
    <out>/splits__corrected/<City>/...                  (identical: synthetic labels are exact)
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from unifygeo_ros import geo
from unifygeo_ros.data.aerial import aerial_orthophoto, render_aerial, render_aerial_height
from unifygeo_ros.data.city import City
from unifygeo_ros.data.city_schema import STYLES
from unifygeo_ros.data.height import HEIGHT_DIR, write_height_png
from unifygeo_ros.data.lighting import AerialLighting, GroundLighting
from unifygeo_ros.data.panorama import render_panorama
from unifygeo_ros.data.synth_geotiff import MAP_DIR, NORTH_ALIGNED_YAW_DEG, CityMap, write_city_map
from unifygeo_ros.data.synth_files import (
    LATLON_DECIMALS,
    fmt_deg,
    new_pano_ids,
    origin_for_seed,
    panorama_name,
    parse_panorama_name,
    parse_satellite_name,
    satellite_name,
    snap_to_names,
    write_jpg,
    write_lines,
    write_png,
)
from unifygeo_ros.data.synth_pictures import city_overview, mark_camera, preview_image, write_doc_images
from unifygeo_ros.data.tiling import TileGrid, positive_and_semi, sample_camera_positions, tile_grid
from unifygeo_ros.data.truth_csv import TruthRow
from unifygeo_ros.data.world import generate_city
from unifygeo_ros.errors import UnifyGeoError

__all__ = ["LATLON_DECIMALS", "SPLIT_FILES", "SynthResult", "TileGrid", "city_overview", "configure_parser",
           "fmt_deg", "mark_camera", "origin_for_seed", "panorama_name", "parse_panorama_name",
           "parse_satellite_name", "positive_and_semi", "preview_image", "run", "sample_camera_positions",
           "satellite_name", "tile_grid", "write_city", "write_doc_images"]

SPLIT_FILES = ("satellite_list.txt", "pano_label_balance.txt", "same_area_balanced_train.txt",
               "same_area_balanced_test.txt")
SPLIT_DIRS = ("splits", "splits__corrected")


@dataclass
class SynthResult:
    """What :func:`write_city` wrote."""

    city_dir: str
    n_tiles: int
    n_panoramas: int
    seconds: float
    timings_s: dict
    city_map: CityMap | None = None  # map/ (orthophoto, nDSM, truth CSV), None with write_map=False


@dataclass
class _CityPlan:
    """A city's files before anything is rendered: tile centres (ENU metres, snapped to their names) and
    names, camera positions (snapped) with their lat/lon, ids and names, and the label lines."""

    tile_e: np.ndarray
    tile_n: np.ndarray
    sat_names: list[str]
    pano_e: np.ndarray
    pano_n: np.ndarray
    pano_lat: np.ndarray
    pano_lon: np.ndarray
    ids: list[str]
    pano_names: list[str]
    labels: list[str]


def write_city(out: str, city_name: str, seed: int, size_m=1000.0, n_panos: int = 2000, style: str = "mixed",
               tile_m: float = 70.0, tile_px: int = 320, pano_width: int = 512, cell_m: float = 0.25,
               camera_height_m: float = 2.0, jpeg_quality: int = 90, overwrite: bool = False,
               progress: bool = True, write_map: bool = True) -> SynthResult:
    """Generate city ``seed`` and write it under ``out`` in the VIGOR layout, and with ``write_map`` the whole city
    as GeoTIFFs in ``map/`` (:mod:`.synth_geotiff`). Deterministic: the same arguments give the same bytes."""
    t_start = time.perf_counter()
    timings = {}
    city_dir, split_dirs = _prepare_output(out, city_name, pano_width, overwrite)
    grid = tile_grid(size_m, tile_m)
    lat0, lon0 = origin_for_seed(seed)
    enu = geo.LocalENU(lat0, lon0)

    t = time.perf_counter()
    city = generate_city(seed, size_m, style, cell_m)
    timings["generate_city"] = time.perf_counter() - t

    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5A7])
    plan = _plan_city(city, grid, enu, n_panos, tile_m / tile_px, rng)
    a_light = AerialLighting.for_city(city)
    g_light = GroundLighting.for_city(city)
    progress_bar = _progress_bar(progress)
    t = time.perf_counter()
    aerial_orthophoto(city, a_light)
    timings["aerial_shading"] = time.perf_counter() - t
    t = time.perf_counter()
    _write_tiles(city, city_dir, plan, tile_m, tile_px, a_light, progress_bar, city_name)
    timings["tiles"] = time.perf_counter() - t
    t = time.perf_counter()
    first_pano = _write_panoramas(city, city_dir, plan, pano_width, camera_height_m, g_light, jpeg_quality,
                                  progress_bar, city_name)
    timings["panoramas"] = time.perf_counter() - t
    city_map = None
    if write_map:
        truth = [TruthRow(n, float(a), float(b), NORTH_ALIGNED_YAW_DEG)
                 for n, a, b in zip(plan.pano_names, plan.pano_lat, plan.pano_lon)]
        city_map = write_city_map(city, enu, os.path.join(city_dir, MAP_DIR), tile_m / tile_px, a_light, truth)
        timings["map"] = city_map.seconds

    _write_splits(split_dirs, plan, rng)
    meta = {
        "format": "unifygeo-city", "version": 1, "city": city_name, "seed": int(seed), "style": style,
        "origin": {"lat_deg": lat0, "lon_deg": lon0}, "size_m": [float(city.size_m[0]), float(city.size_m[1])],
        "tile_m": float(tile_m), "stride_m": float(grid.stride_m), "tile_px": int(tile_px),
        "mpp": float(tile_m / tile_px),
        "pano_px": [int(pano_width), int(pano_width // 2)], "camera_height_m": float(camera_height_m),
        "cell_m": float(cell_m), "n_tiles": len(plan.sat_names), "n_panoramas": int(n_panos),
        "generator": "unifygeo_ros.data.synth",
    }
    _write_metadata(city_dir, meta, plan)
    t = time.perf_counter()
    pv = preview_image(city, grid, np.stack([plan.pano_e, plan.pano_n], -1),
                       (float(plan.pano_e[0]), float(plan.pano_n[0])), first_pano, tile_m, tile_px, a_light)
    write_png(os.path.join(city_dir, "preview.png"), pv)
    timings["preview"] = time.perf_counter() - t
    return SynthResult(city_dir, len(plan.sat_names), n_panos, time.perf_counter() - t_start, timings, city_map)


def _prepare_output(out: str, city_name: str, pano_width: int, overwrite: bool) -> tuple[str, list[str]]:
    """Check the arguments that name the output; returns the city folder and its two split folders, none of
    which exists any more (deleted with ``overwrite``, else an error)."""
    if not city_name or any(ch in city_name for ch in "/\\,. ") or city_name in SPLIT_DIRS:
        raise UnifyGeoError(f"invalid city name {city_name!r}: use letters, digits, '-' or '_'")
    if pano_width % 2:
        raise UnifyGeoError("--pano-width must be even (equirectangular panoramas are 2:1)")
    city_dir = os.path.join(out, city_name)
    split_dirs = [os.path.join(out, s, city_name) for s in SPLIT_DIRS]
    existing = [p for p in [city_dir, *split_dirs] if os.path.exists(p)]
    if existing:
        if not overwrite:
            raise UnifyGeoError(f"{existing[0]} already exists; refusing to mix old and new files "
                                "(choose another --city or --out, or pass --overwrite to delete it first)")
        for p in existing:
            print(f"unifygeo synth: --overwrite: deleting {p}", file=sys.stderr)
            shutil.rmtree(p)
    return city_dir, split_dirs


def _plan_city(city: City, grid: TileGrid, enu: geo.LocalENU, n_panos: int, mpp: float,
               rng: np.random.Generator) -> _CityPlan:
    """Tiles on the grid, ``n_panos`` balanced cameras on the roads, their names and VIGOR label lines."""
    centres = grid.centres()
    t_lat, t_lon, t_e, t_n = snap_to_names(enu, centres[:, 0], centres[:, 1])
    sat_names = [satellite_name(a, b) for a, b in zip(t_lat, t_lon)]
    pos = sample_camera_positions(city, grid, n_panos, rng)
    p_lat, p_lon, p_e, p_n = snap_to_names(enu, pos[:, 0], pos[:, 1])
    ids = new_pano_ids(rng, n_panos)
    pano_names = [panorama_name(i, a, b) for i, a, b in zip(ids, p_lat, p_lon)]
    labels = []
    for k in range(n_panos):
        parts = [pano_names[k]]
        for (i, j) in positive_and_semi(grid, float(p_e[k]), float(p_n[k])):
            ti = grid.index(i, j)
            d_row, d_col = geo.en_to_vigor_offset(p_e[k] - t_e[ti], p_n[k] - t_n[ti], mpp)
            parts += [sat_names[ti], f"{float(d_row):.4f}", f"{float(d_col):.4f}"]
        labels.append(" ".join(parts))
    return _CityPlan(t_e, t_n, sat_names, p_e, p_n, p_lat, p_lon, ids, pano_names, labels)


def _write_tiles(city: City, city_dir: str, plan: _CityPlan, tile_m: float, tile_px: int, a_light: AerialLighting,
                 progress_bar, city_name: str):
    """``satellite/`` and ``satellite_height/``: every tile and its surface height."""
    sat_dir = os.path.join(city_dir, "satellite")
    height_dir = os.path.join(city_dir, HEIGHT_DIR)
    os.makedirs(sat_dir)
    os.makedirs(height_dir)
    for k in progress_bar(range(len(plan.sat_names)), desc=f"{city_name} tiles", unit="tile"):
        centre = (plan.tile_e[k], plan.tile_n[k])
        tile = render_aerial(city, centre, tile_m, tile_px, a_light)
        write_png(os.path.join(sat_dir, plan.sat_names[k]), tile)
        write_height_png(os.path.join(height_dir, plan.sat_names[k]),
                         render_aerial_height(city, centre, tile_m, tile_px))


def _write_panoramas(city: City, city_dir: str, plan: _CityPlan, pano_width: int, camera_height_m: float,
                     g_light: GroundLighting, jpeg_quality: int, progress_bar, city_name: str) -> np.ndarray | None:
    """``panorama/``: every camera's north-aligned panorama; returns the first one (for the preview)."""
    pano_dir = os.path.join(city_dir, "panorama")
    os.makedirs(pano_dir)
    first_pano = None
    for k in progress_bar(range(len(plan.pano_names)), desc=f"{city_name} panoramas", unit="pano"):
        pano = render_panorama(city, (plan.pano_e[k], plan.pano_n[k]), 0.0, pano_width, pano_width // 2,
                               camera_height_m, g_light)
        if first_pano is None:
            first_pano = pano
        write_jpg(os.path.join(pano_dir, plan.pano_names[k]), pano, jpeg_quality)
    return first_pano


def _write_splits(split_dirs: list[str], plan: _CityPlan, rng: np.random.Generator):
    """The split files, the same in both split folders: half of the panoramas (at random) train, half test."""
    n_panos = len(plan.labels)
    perm = rng.permutation(n_panos)
    train = np.sort(perm[: n_panos // 2])
    test = np.sort(perm[n_panos // 2:])
    for d in split_dirs:
        os.makedirs(d)
        write_lines(os.path.join(d, "satellite_list.txt"), plan.sat_names)
        write_lines(os.path.join(d, "pano_label_balance.txt"), plan.labels)
        write_lines(os.path.join(d, "same_area_balanced_train.txt"), [plan.labels[k] for k in train])
        write_lines(os.path.join(d, "same_area_balanced_test.txt"), [plan.labels[k] for k in test])


def _write_metadata(city_dir: str, meta: dict, plan: _CityPlan):
    """``geo.json`` (``meta``) and ``panorama_meta.csv`` (each camera's id, ENU position, lat/lon, heading)."""
    with open(os.path.join(city_dir, "geo.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["panoid", "east_m", "north_m", "lat", "lon", "heading_deg"])
    for k in range(len(plan.ids)):
        wr.writerow([plan.ids[k], f"{plan.pano_e[k]:.4f}", f"{plan.pano_n[k]:.4f}", fmt_deg(plan.pano_lat[k]),
                     fmt_deg(plan.pano_lon[k]), "0.0"])
    with open(os.path.join(city_dir, "panorama_meta.csv"), "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())


def _progress_bar(enabled: bool):
    """A progress-bar wrapper for iterables (on stderr), or the identity when ``enabled`` is false."""
    if not enabled:
        return lambda it, **kw: it
    return lambda it, **kw: tqdm(it, file=sys.stderr, leave=False, mininterval=0.5, **kw)


# ---------------------------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="data set root (VIGOR layout); may already hold other cities")
    parser.add_argument("--city", required=True, help="city name, e.g. Synthville (letters, digits, - or _)")
    parser.add_argument("--seed", type=int, required=True, help="world seed: same seed and arguments, same bytes")
    parser.add_argument("--size-m", type=float, default=1000.0, help="city side in metres (default 1000)")
    parser.add_argument("--panos", type=int, default=2000, help="number of panoramas (default 2000)")
    parser.add_argument("--style", choices=STYLES, default="mixed", help="city style (default mixed)")
    parser.add_argument("--tile-m", type=float, default=70.0, help="aerial tile side in metres (default 70, VIGOR)")
    parser.add_argument("--tile-px", type=int, default=320, help="aerial tile side in pixels (default 320)")
    parser.add_argument("--pano-width", type=int, default=512, help="panorama width in pixels; height = width/2")
    parser.add_argument("--cell-m", type=float, default=0.25, help="world raster cell size (default 0.25 m)")
    parser.add_argument("--camera-height-m", type=float, default=2.0, help="panorama camera height (default 2 m)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="panorama JPEG quality (default 90)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete this city's existing folders under --out before writing")
    parser.add_argument("--no-map", action="store_true",
                        help="skip map/ (the whole city as orthophoto.tif + ndsm.tif GeoTIFFs, and panoramas.csv)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    if args.panos < 1:
        raise UnifyGeoError("--panos must be at least 1")
    if args.tile_px < 16 or args.pano_width < 16:
        raise UnifyGeoError("--tile-px and --pano-width must be at least 16")
    res = write_city(args.out, args.city, args.seed, args.size_m, args.panos, args.style, args.tile_m,
                     args.tile_px, args.pano_width, args.cell_m, args.camera_height_m, args.jpeg_quality,
                     args.overwrite, progress=not args.no_progress, write_map=not args.no_map)
    print(f"wrote {res.city_dir}: {res.n_tiles} tiles, {res.n_panoramas} panoramas in {res.seconds:.1f} s "
          f"({', '.join(f'{k} {v:.1f} s' for k, v in res.timings_s.items())})", file=sys.stderr)
    m = res.city_map
    if m is not None:
        print(f"wrote {os.path.dirname(m.orthophoto)}: orthophoto.tif + ndsm.tif ({m.grid.width_px} x "
              f"{m.grid.height_px} px, {m.gsd_m:.4f} m/px, EPSG:4326), panoramas.csv; {m.bytes_on_disk / 2**20:.1f} "
              f"MiB", file=sys.stderr)
    return 0
