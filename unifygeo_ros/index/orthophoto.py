"""Orthophoto tile sources: one geo-referenced raster cut into overlapping north-up tiles.

The ENU frame of an orthophoto is anchored at the south-west corner of the orthophoto's footprint (as
``unifygeo synth`` anchors a city at its south-west corner), so tile centres have positive east/north.
Tiles are resampled so that they are north-up in ENU whatever the raster's CRS or rotation: each output pixel
is mapped ENU -> lat/lon -> raster CRS -> raster pixel through an affine map fitted to exact projections of a
3 x 3 grid of points per tile (sub-millimetre over a 70 m tile). A surface model (nDSM) is cut onto exactly the
same tile pixels as a 4th channel.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import DataFormatError
from unifygeo_ros.index.rasters import Raster, open_raster
from unifygeo_ros.index.tile_source import TileSource, TileSpec


class _Geo:
    """ENU <-> raster pixel for one raster and one ENU origin."""

    def __init__(self, raster: Raster, origin: geo.LocalENU):
        import pyproj  # optional (setup.py extra "ortho"): only orthophoto sources need it

        self.raster = raster
        self.origin = origin
        crs = pyproj.CRS.from_wkt(raster.crs_wkt)
        self.to_crs = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        self.to_wgs = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def en_to_pixel(self, east, north):
        lat, lon = self.origin.from_en(east, north)
        x, y = self.to_crs.transform(lon, lat)
        return self.raster.crs_to_pixel(x, y)

    def pixel_to_latlon(self, col, row):
        x, y = self.raster.pixel_to_crs(np.asarray(col, float), np.asarray(row, float))
        lon, lat = self.to_wgs.transform(x, y)
        return np.asarray(lat), np.asarray(lon)


def _grid_centres(extent_m: float, tile_m: float, stride_m: float) -> np.ndarray:
    """Tile centres along one axis of ``[0, extent_m]``: ``tile_m / 2 + k * stride_m``; the slack at the far end
    (less than a stride) is shared between both ends when under a quarter stride, otherwise covered by one more
    tile flush with the far end."""
    if extent_m <= tile_m:
        return np.array([extent_m / 2.0])
    n = int(math.floor((extent_m - tile_m) / stride_m + 1e-9))
    centres = tile_m / 2.0 + stride_m * np.arange(n + 1)
    slack = extent_m - tile_m / 2.0 - centres[-1]
    if slack > stride_m / 4.0:
        return np.append(centres, extent_m - tile_m / 2.0)
    return centres + slack / 2.0



def _anchored_frame(raster: Raster) -> tuple[_Geo, float, float]:
    """The raster's ENU frame anchored at its footprint's south-west corner: (geo mapping, extent east m, extent
    north m). A provisional frame at the raster centre finds the corner first."""
    g = _Geo(raster, geo.LocalENU(0.0, 0.0))
    lat_c, lon_c = g.pixel_to_latlon(raster.width / 2.0, raster.height / 2.0)
    g = _Geo(raster, geo.LocalENU(float(lat_c), float(lon_c)))
    border_c = np.array([0, raster.width, 0, raster.width, raster.width / 2, 0, raster.width / 2, raster.width])
    border_r = np.array([0, 0, raster.height, raster.height, 0, raster.height / 2, raster.height,
                         raster.height / 2])
    lat, lon = g.pixel_to_latlon(border_c, border_r)
    e, n = g.origin.to_en(lat, lon)
    sw_lat, sw_lon = g.origin.from_en(float(np.min(e)), float(np.min(n)))
    origin = geo.LocalENU(float(sw_lat), float(sw_lon))
    e, n = origin.to_en(lat, lon)
    return _Geo(raster, origin), float(np.max(e)), float(np.max(n))


def _native_gsd_m(g: _Geo) -> float:
    """Metres per raster pixel at the raster centre (area of one pixel step, square-rooted)."""
    raster = g.raster
    cc, rr = np.array([raster.width / 2, raster.width / 2 + 1, raster.width / 2]), \
        np.array([raster.height / 2, raster.height / 2, raster.height / 2 + 1])
    la, lo = g.pixel_to_latlon(cc, rr)
    pe, pn = g.origin.to_en(la, lo)
    return math.sqrt(abs((pe[1] - pe[0]) * (pn[2] - pn[0]) - (pe[2] - pe[0]) * (pn[1] - pn[0])))


def _covered_tiles(g: _Geo, stem: str, extent_e_m: float, extent_n_m: float, tile_m: float, stride_m: float,
                   min_coverage: float) -> tuple[list[TileSpec], list[tuple[float, float]]]:
    """The grid's tiles at least ``min_coverage`` inside the raster (on an 8 x 8 sample grid per tile), row 0
    north: (specs, ENU centres)."""
    raster, origin = g.raster, g.origin
    ce_all = _grid_centres(extent_e_m, tile_m, stride_m)
    cn_all = _grid_centres(extent_n_m, tile_m, stride_m)[::-1]  # row 0 = north
    s = (np.arange(8) + 0.5) / 8 * tile_m - tile_m / 2
    se, sn = np.meshgrid(s, s)
    specs: list[TileSpec] = []
    centres: list[tuple[float, float]] = []
    for r, cn in enumerate(cn_all):
        for c, ce in enumerate(ce_all):
            col, row = g.en_to_pixel(ce + se.ravel(), cn + sn.ravel())
            inside = (col >= 0) & (col <= raster.width) & (row >= 0) & (row <= raster.height)
            if inside.mean() < min_coverage:
                continue
            la, lo = origin.from_en(float(ce), float(cn))
            specs.append(TileSpec(f"{stem}_r{r:04d}_c{c:04d}", float(la), float(lo), float(ce), float(cn)))
            centres.append((float(ce), float(cn)))
    return specs, centres


def orthophoto_tiles(path: str | Path, tile_m: float = 70.0, stride_m: float = 35.0, gsd_m: float | None = None,
                     crs: str | None = None, min_coverage: float = 0.75, dsm: str | Path | None = None,
                     dsm_crs: str | None = None) -> TileSource:
    """Cut a geo-referenced orthophoto into overlapping north-up tiles.

    ``tile_m``/``stride_m``: tile side and grid step in metres (VIGOR: 70 / 35), on the ENU frame anchored at the
    footprint's south-west corner (see :func:`_grid_centres` for the far edges). ``gsd_m``: metres per pixel of
    the tiles (default: the orthophoto's own resolution). Tiles whose footprint lies less than ``min_coverage``
    inside the raster are skipped (pixels outside are black). Tile ids: ``<stem>_r<row>_c<col>`` with row 0 the
    northernmost row of the grid. ``dsm``: a surface-model raster (height above ground; its own geo-reference
    and CRS, ``dsm_crs`` when it has none) cut onto the same tile pixels as a 4th channel.
    """
    if tile_m <= 0 or stride_m <= 0:
        raise DataFormatError(f"tile_m and stride_m must be positive (got {tile_m}, {stride_m})")
    path = Path(path)
    raster = open_raster(path, crs)
    g, extent_e, extent_n = _anchored_frame(raster)
    native_gsd = _native_gsd_m(g)
    gsd = native_gsd if gsd_m is None else float(gsd_m)
    tile_px = max(8, int(round(tile_m / gsd)))
    specs, centres = _covered_tiles(g, path.stem, extent_e, extent_n, tile_m, stride_m, min_coverage)
    if not specs:
        raise DataFormatError(f"{path}: no {tile_m:g} m tile fits inside the orthophoto "
                              f"({extent_e:.1f} x {extent_n:.1f} m)")
    read_rgb = _tile_reader(g, centres, tile_m, tile_px)
    read: Callable[[int], np.ndarray] = read_rgb
    params = {"stride_m": float(stride_m), "crs": raster.crs_wkt[:80], "native_gsd_m": native_gsd,
              "min_coverage": float(min_coverage)}
    if dsm is not None:
        # image.preprocess imports torch; this module is torch-free otherwise
        from unifygeo_ros.image.preprocess import with_height

        read_dsm = _tile_reader(_Geo(open_raster(dsm, dsm_crs, kind="height"), g.origin), centres, tile_m, tile_px)

        def read_with_height(i: int) -> np.ndarray:
            return with_height(read_rgb(i), read_dsm(i))

        read = read_with_height
        params["dsm"] = str(Path(dsm).resolve())
    return TileSource("orthophoto", str(path.resolve()), g.origin, float(tile_m), tile_px, specs, read,
                      params=params, channels=4 if dsm is not None else 3)


def _tile_affine(g: _Geo, centre_en_m: tuple[float, float], tile_m: float, tile_px: int) -> np.ndarray:
    """(2, 3) affine from output pixel index (j, i) of the tile centred on ``centre_en_m`` to raster pixel index
    coordinates, fitted to exact projections of a 3 x 3 grid of its pixels (ENU -> lat/lon -> CRS -> pixel)."""
    ce, cn = centre_en_m
    cell = tile_m / tile_px
    ctrl = np.array([0.0, 0.5, 1.0]) * (tile_px - 1)
    jj, ii = np.meshgrid(ctrl, ctrl)
    ee = ce - tile_m / 2 + (jj.ravel() + 0.5) * cell
    nn = cn + tile_m / 2 - (ii.ravel() + 0.5) * cell
    col, row = g.en_to_pixel(ee, nn)
    src = np.stack([col - 0.5, row - 0.5], axis=1)  # continuous -> index coordinates (cv2)
    design = np.stack([jj.ravel(), ii.ravel(), np.ones(jj.size)], axis=1)
    affine, *_ = np.linalg.lstsq(design, src, rcond=None)  # (3, 2): dst index -> src index
    return affine.T


def _warp_tile(raster: Raster, m: np.ndarray, tile_px: int) -> np.ndarray:
    """The ``tile_px`` tile that affine ``m`` (output index -> raster index) cuts from the raster: only the
    window it touches is read; a strong downsampling is anti-aliased first; outside the raster 0."""
    corners = m @ np.array([[0, tile_px - 1, 0, tile_px - 1], [0, 0, tile_px - 1, tile_px - 1], [1, 1, 1, 1]])
    col0 = int(max(0, math.floor(corners[0].min()) - 2))
    row0 = int(max(0, math.floor(corners[1].min()) - 2))
    col1 = int(min(raster.width, math.ceil(corners[0].max()) + 3))
    row1 = int(min(raster.height, math.ceil(corners[1].max()) + 3))
    if col1 <= col0 or row1 <= row0:
        probe = raster.read_window(0, 0, 1, 1)
        return np.zeros((tile_px, tile_px) + probe.shape[2:], probe.dtype)
    window = raster.read_window(col0, row0, col1, row1)
    m = m.copy()
    m[:, 2] -= (col0, row0)
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))  # source pixels per output pixel
    if scale > 1.5:  # anti-alias a strong downsampling
        f = 1.0 / scale
        small = cv2.resize(window, (max(1, round(window.shape[1] * f)), max(1, round(window.shape[0] * f))),
                           interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / window.shape[1], small.shape[0] / window.shape[0]
        m = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]]) @ np.vstack([m, [0, 0, 1]])
        window = small
    return cv2.warpAffine(np.ascontiguousarray(window), m, (tile_px, tile_px),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def _tile_reader(g: _Geo, centres: list[tuple[float, float]], tile_m: float, tile_px: int
                 ) -> Callable[[int], np.ndarray]:
    """Reader of north-up ``tile_px`` tiles centred on ``centres`` (ENU) from ``g``'s raster: RGB uint8, or
    float32 metres for a surface model; outside the raster 0."""

    def read(i: int) -> np.ndarray:
        return _warp_tile(g.raster, _tile_affine(g, centres[i], tile_m, tile_px), tile_px)

    return read


__all__ = ["orthophoto_tiles"]
