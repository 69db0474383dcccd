"""A tiny VIGOR-layout world for tests.

Each city is a ``grid x grid`` lattice of tiles on a half-tile stride (as in VIGOR), every tile a distinct
uniform colour (so a test can tell which tile it got), and a few panoramas at random positions where four tiles
overlap. Panorama columns have distinct colours, so rolls are visible. Labels are computed from the exact
positions (corrected labels); the "original" labels carry a fixed pixel error so tests can tell them apart.

The geometry is computed here independently of :mod:`unifygeo_ros.data.vigor` (only ``geo`` is used, for the
ENU frame and the documented offset convention).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from unifygeo_ros import geo

#: roughly where the VIGOR cities are
CITY_ORIGINS: dict[str, tuple[float, float]] = {
    "NewYork": (40.70, -74.01),
    "Seattle": (47.60, -122.33),
    "SanFrancisco": (37.77, -122.42),
    "Chicago": (41.87, -87.63),
}
#: pixel error added to the "original" (uncorrected) labels
ORIGINAL_LABEL_ERROR_PX: tuple[float, float] = (1.5, -1.0)


@dataclass
class FixtureCity:
    name: str
    origin: tuple[float, float]
    tile_px: int
    mpp: float
    tile_names: list[str]
    tile_latlon: np.ndarray  # (M, 2)
    tile_en: np.ndarray  # (M, 2) relative to origin
    tile_colors: np.ndarray  # (M, 3) uint8 RGB
    pano_names: list[str]
    pano_latlon: np.ndarray  # (N, 2), exact (also in the file names, 9 decimals)
    pano_en: np.ndarray  # (N, 2) relative to origin
    label_tiles: np.ndarray  # (N, 4) local tile indices, positive first
    label_offsets: np.ndarray  # (N, 4, 2) corrected (d_row, d_col), pixels of a label_px tile
    label_px: int  # tile size the label offsets refer to: tile_px with geo.json, else VIGOR's 640
    train: list[int] = field(default_factory=list)
    test: list[int] = field(default_factory=list)

    @property
    def tile_m(self) -> float:
        return self.tile_px * self.mpp


def _label_line(c: FixtureCity, i: int, error_px: tuple[float, float] = (0.0, 0.0)) -> str:
    cols = [c.pano_names[i]]
    for k in range(4):
        t = int(c.label_tiles[i, k])
        d_row, d_col = c.label_offsets[i, k]
        cols += [c.tile_names[t], f"{d_row + error_px[0]:.6f}", f"{d_col + error_px[1]:.6f}"]
    return " ".join(cols)


def _make_city(root: Path, name: str, rng: np.random.Generator, grid: int, tile_px: int, mpp: float,
               pano_hw: tuple[int, int], n_panos: int, label_px: int) -> FixtureCity:
    origin = CITY_ORIGINS.get(name, (45.0, 7.0))
    frame = geo.LocalENU(*origin)
    side = tile_px * mpp
    stride = side / 2.0
    ij = [(i, j) for j in range(grid) for i in range(grid)]  # i: east index, j: north index
    tile_en = np.array([(i * stride, j * stride) for i, j in ij], dtype=np.float64)
    lat, lon = frame.from_en(tile_en[:, 0], tile_en[:, 1])
    tile_latlon = np.stack([lat, lon], axis=1)
    tile_names = [f"satellite_{a:.10f}_{b:.10f}.png" for a, b in tile_latlon]
    colors = rng.choice(256 ** 3, size=len(ij), replace=False)
    tile_colors = np.stack([colors // 65536, (colors // 256) % 256, colors % 256], axis=1).astype(np.uint8)

    (root / name / "satellite").mkdir(parents=True, exist_ok=True)
    (root / name / "panorama").mkdir(parents=True, exist_ok=True)
    for tname, col in zip(tile_names, tile_colors):
        img = np.empty((tile_px, tile_px, 3), np.uint8)
        img[:] = col
        cv2.imwrite(str(root / name / "satellite" / tname), img[:, :, ::-1])

    pano_en = rng.uniform(0.1 * stride, (grid - 1 - 0.1) * stride, size=(n_panos, 2))
    plat, plon = frame.from_en(pano_en[:, 0], pano_en[:, 1])
    pano_latlon = np.stack([plat, plon], axis=1)
    pano_names = [f"p{name[:3]}{k:03d}-x_Y,{a:.9f},{b:.9f},.jpg" for k, (a, b) in enumerate(pano_latlon)]
    label_tiles = np.zeros((n_panos, 4), np.int64)
    label_offsets = np.zeros((n_panos, 4, 2), np.float64)
    h, w = pano_hw
    for k in range(n_panos):
        e, n = pano_en[k]
        i0, j0 = int(round(e / stride)), int(round(n / stride))
        si = 1 if e >= i0 * stride else -1
        sj = 1 if n >= j0 * stride else -1
        cells = [(i0, j0), (i0 + si, j0), (i0, j0 + sj), (i0 + si, j0 + sj)]
        for slot, (i, j) in enumerate(cells):
            assert 0 <= i < grid and 0 <= j < grid
            t = j * grid + i
            label_tiles[k, slot] = t
            # exact camera position relative to this tile's centre, in the tile centre's own ENU frame
            te, tn = geo.LocalENU(*tile_latlon[t]).to_en(pano_latlon[k, 0], pano_latlon[k, 1])
            label_offsets[k, slot] = geo.en_to_vigor_offset(te, tn, mpp * tile_px / label_px)
        # panorama: every column its own colour (rows identical), so rolls are visible after JPEG
        cols = rng.integers(0, 256, size=(w, 3), dtype=np.uint8)
        img = np.repeat(cols[None], h, axis=0)
        cv2.imwrite(str(root / name / "panorama" / pano_names[k]), img[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    order = rng.permutation(n_panos)
    return FixtureCity(name=name, origin=origin, tile_px=tile_px, mpp=mpp, tile_names=tile_names,
                       tile_latlon=tile_latlon, tile_en=tile_en, tile_colors=tile_colors, pano_names=pano_names,
                       pano_latlon=pano_latlon, pano_en=pano_en, label_tiles=label_tiles,
                       label_offsets=label_offsets, label_px=label_px, train=sorted(order[: n_panos // 2].tolist()),
                       test=sorted(order[n_panos // 2:].tolist()))


def write_vigor_world(
    root: str | Path,
    cities: tuple[str, ...] = ("NewYork", "Seattle", "SanFrancisco", "Chicago"),
    *,
    grid: int = 3,
    tile_px: int = 32,
    mpp: float | None = None,
    pano_hw: tuple[int, int] = (16, 32),
    panos_per_city: int = 6,
    seed: int = 0,
    geo_json: bool = False,
    original: bool = True,
    corrected: bool = True,
    naming: Literal["vigor", "contract"] = "vigor",
) -> dict[str, FixtureCity]:
    """Write the world under ``root``; returns the ground truth per city.

    ``mpp`` (of the stored ``tile_px`` tiles) defaults to VIGOR's value for the city rescaled to ``tile_px``
    (1.0 for other names; those need ``geo_json=True`` to be readable). Without a geo.json the label offsets are
    pixels of a 640-px tile, as in VIGOR (the stored tiles are then a downsized VIGOR); with one, pixels of the
    stored ``tile_px`` tile, as ``unifygeo synth`` writes them. ``naming="vigor"`` writes the released VIGOR file names
    (``pano_label_balanced.txt``; ``__corrected`` suffix in ``splits__corrected/``); ``"contract"`` writes
    ``docs/DATA_FORMAT.md``'s names (``pano_label_balance.txt``; the same names in both folders).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: dict[str, FixtureCity] = {}
    for name in cities:
        city_mpp = mpp if mpp is not None else (
            geo.VIGOR_MPP_640[name] * geo.VIGOR_TILE_PX / tile_px if name in geo.VIGOR_MPP_640 else 1.0)
        label_px = tile_px if geo_json else geo.VIGOR_TILE_PX
        c = _make_city(root, name, rng, grid, tile_px, city_mpp, pano_hw, panos_per_city, label_px)
        out[name] = c
        if geo_json:
            meta = {"format": "unifygeo-city", "version": 1, "city": name, "seed": seed, "style": "centre",
                    "origin": {"lat_deg": c.origin[0], "lon_deg": c.origin[1]},
                    "size_m": [(grid - 1) * c.tile_m / 2 + c.tile_m] * 2, "tile_m": c.tile_m,
                    "stride_m": c.tile_m / 2, "tile_px": tile_px, "mpp": city_mpp,
                    "pano_px": [pano_hw[1], pano_hw[0]], "camera_height_m": 2.0}
            (root / name / "geo.json").write_text(json.dumps(meta, indent=1))
        all_name = "pano_label_balanced" if naming == "vigor" else "pano_label_balance"
        stems = {"same_area_balanced_train": c.train, "same_area_balanced_test": c.test,
                 all_name: list(range(len(c.pano_names)))}
        folders: list[tuple[str, tuple[float, float], str]] = []
        if original:
            folders.append(("splits", ORIGINAL_LABEL_ERROR_PX, ""))
        if corrected:
            folders.append(("splits__corrected", (0.0, 0.0), "__corrected" if naming == "vigor" else ""))
        for folder, err, suffix in folders:
            d = root / folder / name
            d.mkdir(parents=True, exist_ok=True)
            (d / "satellite_list.txt").write_text("\n".join(c.tile_names) + "\n")
            for stem, idx in stems.items():
                lines = [_label_line(c, i, err) for i in idx]
                (d / f"{stem}{suffix}.txt").write_text("\n".join(lines) + "\n")
    return out


def write_one_city(root: Path, grid: int, seed: int, city: str = "Seattle"):
    """One small geo.json city (32 px tiles) under ``root``: (city folder, its FixtureCity truth)."""
    truth = write_vigor_world(root, (city,), grid=grid, tile_px=32, geo_json=True, seed=seed)[city]
    return root / city, truth
