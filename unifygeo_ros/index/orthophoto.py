"""Orthophoto tile sources: one geo-referenced raster cut into overlapping north-up tiles.

The ENU frame of an orthophoto is anchored at the south-west corner of the orthophoto's footprint (as
``unifygeo synth`` anchors a city at its south-west corner), so tile centres have positive east/north, or at a
given ``origin`` (then the same ground has the same east/north whatever the raster's CRS or extent).
Tiles are resampled so that they are north-up in ENU whatever the raster's CRS or rotation: each output pixel
is mapped ENU -> lat/lon -> raster CRS -> raster pixel through an affine map fitted to exact projections of a
3 x 3 grid of points per tile (sub-millimetre over a 70 m tile). A surface model (nDSM) is cut onto exactly the
same tile pixels as a 4th channel. Tiles without enough imagery or heights are left out and counted, a surface
model that is not height above ground is refused (:mod:`~unifygeo_ros.index.map_checks`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import DataFormatError
from unifygeo_ros.index import map_checks
from unifygeo_ros.index.map_checks import Samples, TileCounts
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



def _anchored_frame(raster: Raster, origin: tuple[float, float] | None = None
                    ) -> tuple[_Geo, tuple[float, float], float, float]:
    """The raster's ENU frame and its footprint there: (geo mapping, south-west corner (east m, north m), extent
    east m, extent north m). Default origin: the footprint's south-west corner (found through a provisional frame
    at the raster centre), so the corner is (0, 0); a given ``(lat, lon)`` must lie near the map."""
    g = _Geo(raster, geo.LocalENU(0.0, 0.0))
    lat_c, lon_c = g.pixel_to_latlon(raster.width / 2.0, raster.height / 2.0)
    g = _Geo(raster, geo.LocalENU(float(lat_c), float(lon_c)))
    border_c = np.array([0, raster.width, 0, raster.width, raster.width / 2, 0, raster.width / 2, raster.width])
    border_r = np.array([0, 0, raster.height, raster.height, 0, raster.height / 2, raster.height,
                         raster.height / 2])
    lat, lon = g.pixel_to_latlon(border_c, border_r)
    if origin is not None:
        g = _Geo(raster, geo.LocalENU(*origin))
        map_checks.check_origin_near(g.origin, np.append(lat, lat_c), np.append(lon, lon_c))
        e, n = g.origin.to_en(lat, lon)
        return g, (float(np.min(e)), float(np.min(n))), float(np.ptp(e)), float(np.ptp(n))
    e, n = g.origin.to_en(lat, lon)
    sw_lat, sw_lon = g.origin.from_en(float(np.min(e)), float(np.min(n)))
    origin_sw = geo.LocalENU(float(sw_lat), float(sw_lon))
    e, n = origin_sw.to_en(lat, lon)
    return _Geo(raster, origin_sw), (0.0, 0.0), float(np.max(e)), float(np.max(n))


def _native_gsd_m(g: _Geo) -> float:
    """Metres per raster pixel at the raster centre (area of one pixel step, square-rooted)."""
    raster = g.raster
    cc, rr = np.array([raster.width / 2, raster.width / 2 + 1, raster.width / 2]), \
        np.array([raster.height / 2, raster.height / 2, raster.height / 2 + 1])
    la, lo = g.pixel_to_latlon(cc, rr)
    pe, pn = g.origin.to_en(la, lo)
    return math.sqrt(abs((pe[1] - pe[0]) * (pn[2] - pn[0]) - (pe[2] - pe[0]) * (pn[1] - pn[0])))


def _grid(sw_en_m: tuple[float, float], extent_e_m: float, extent_n_m: float, tile_m: float, stride_m: float
          ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Centres (east m, north m) and (row, col) of the tile grid over the footprint, row 0 north."""
    ce = sw_en_m[0] + _grid_centres(extent_e_m, tile_m, stride_m)
    cn = sw_en_m[1] + _grid_centres(extent_n_m, tile_m, stride_m)[::-1]  # row 0 = north
    ee, nn = np.meshgrid(ce, cn)
    rc = [(r, c) for r in range(len(cn)) for c in range(len(ce))]
    return ee.ravel(), nn.ravel(), rc


def _sample(g: _Geo, east_m: np.ndarray, north_m: np.ndarray) -> Samples:
    """``g``'s raster at the ENU points (one row per tile)."""
    return map_checks.sample_raster(g.en_to_pixel, g.raster.width, g.raster.height, g.raster.overview(),
                                    east_m, north_m)


def _select_tiles(rgb: Samples, heights: Samples | None, min_coverage: float, what: str, dsm_what: str
                  ) -> tuple[np.ndarray, TileCounts]:
    """Which grid tiles to keep: at least ``min_coverage`` of their sample points inside the orthophoto, holding
    imagery, and (with a surface model) under valid heights. Refuses a map that leaves no tile."""
    inside_ok = rgb.inside.mean(axis=1) >= min_coverage
    valid_ok = rgb.valid.mean(axis=1) >= min_coverage
    keep = inside_ok & valid_ok
    height_ok = np.ones_like(keep) if heights is None else heights.valid.mean(axis=1) >= min_coverage
    counts = TileCounts(grid=int(keep.size), outside=int((~inside_ok).sum()),
                        nodata=int((inside_ok & ~valid_ok).sum()), no_height=int((keep & ~height_ok).sum()),
                        min_coverage=float(min_coverage))
    pct = f"{100 * min_coverage:.0f} %"
    if inside_ok.any() and not keep.any():
        raise DataFormatError(f"{what}: none of its {int(inside_ok.sum())} tiles holds {pct} imagery (the rest is "
                              "nodata, alpha 0 or black fill): check the orthophoto, or lower --min-coverage")
    if keep.any() and not (keep & height_ok).any():
        raise DataFormatError(f"{dsm_what} covers none of the orthophoto's {int(keep.sum())} tiles ({pct} of a tile "
                              "under valid heights needed): give the surface model of the orthophoto's area")
    return keep & height_ok, counts


def orthophoto_tiles(path: str | Path, tile_m: float = 70.0, stride_m: float = 35.0, gsd_m: float | None = None,
                     crs: str | None = None, min_coverage: float = 0.75, dsm: str | Path | None = None,
                     dsm_crs: str | None = None, dtm: str | Path | None = None,
                     origin: tuple[float, float] | None = None) -> TileSource:
    """Cut a geo-referenced orthophoto into overlapping north-up tiles.

    ``tile_m``/``stride_m``: tile side and grid step in metres (VIGOR: 70 / 35), on the ENU frame of ``origin``
    (``(lat, lon)``; default the footprint's south-west corner), the grid flush with the footprint's south-west
    corner (see :func:`_grid_centres` for the far edges). ``gsd_m``: metres per pixel of the tiles (default: the
    orthophoto's own resolution). A tile is left out (and counted in ``TileSource.counts``) unless at least
    ``min_coverage`` of it lies inside the raster, holds imagery (not nodata, alpha 0 or black fill) and - with
    a surface model - valid heights. Tile ids: ``<stem>_r<row>_c<col>`` with row 0 the northernmost row of the
    grid. ``dsm``: a surface-model raster (height above ground in metres; its own geo-reference and CRS,
    ``dsm_crs`` when it has none), or an absolute one with its terrain model ``dtm`` (height = DSM - DTM), cut
    onto the same tile pixels as a 4th channel; heights that are not above ground in metres are refused.
    """
    if tile_m <= 0 or stride_m <= 0:
        raise DataFormatError(f"tile_m and stride_m must be positive (got {tile_m}, {stride_m})")
    if not 0.0 < min_coverage <= 1.0:
        raise DataFormatError(f"--min-coverage must lie in (0, 1], got {min_coverage:g}")
    if dtm is not None and dsm is None:
        raise DataFormatError("--dtm turns an absolute --dsm into heights above ground: give the --dsm too")
    path = Path(path)
    raster = open_raster(path, crs)
    g, sw_en, extent_e, extent_n = _anchored_frame(raster, origin)
    native_gsd = _native_gsd_m(g)
    tile_px = max(8, int(round(tile_m / (native_gsd if gsd_m is None else float(gsd_m)))))
    ce, cn, rc = _grid(sw_en, extent_e, extent_n, tile_m, stride_m)
    se, sn = map_checks.tile_sample_offsets(tile_m)
    ee, nn = ce[:, None] + se[None, :], cn[:, None] + sn[None, :]
    heights = _height_rasters(dsm, dtm, dsm_crs, g.origin)
    h_samples = None if heights is None else map_checks.height_difference(
        _sample(heights[0], ee, nn), _sample(heights[1], ee, nn) if len(heights) == 2 else None)
    dsm_what = "" if dsm is None else f"surface model {Path(dsm).name}" + (f" - {Path(dtm).name}" if dtm else "")
    keep, counts = _select_tiles(_sample(g, ee, nn), h_samples, min_coverage, str(path), dsm_what)
    if not keep.any():
        raise DataFormatError(f"{path}: no {tile_m:g} m tile fits inside the orthophoto "
                              f"({extent_e:.1f} x {extent_n:.1f} m)")
    if h_samples is not None:
        map_checks.check_heights_above_ground(h_samples.values[keep], dsm_what, with_dtm=dtm is not None)
    specs = _tile_specs(path.stem, g.origin, ce, cn, rc, keep)
    centres = [(t.east_m, t.north_m) for t in specs]
    params = {"stride_m": float(stride_m), "crs": raster.crs_wkt[:80], "native_gsd_m": native_gsd,
              "min_coverage": float(min_coverage)}
    read = _tile_reader(g, centres, tile_m, tile_px)
    if heights is not None:
        read = _with_height_reader(read, heights, centres, tile_m, tile_px)
        params["dsm"] = str(Path(dsm).resolve())
        if dtm is not None:
            params["dtm"] = Path(dtm).name
    note = "given by --origin" if origin is not None else "the south-west corner of the orthophoto's footprint"
    return TileSource("orthophoto", str(path.resolve()), g.origin, float(tile_m), tile_px, specs, read,
                      params=params, channels=4 if heights is not None else 3, native_gsd_m=native_gsd,
                      counts=counts, origin_note=note)


def _tile_specs(stem: str, origin: geo.LocalENU, ce: np.ndarray, cn: np.ndarray, rc: list[tuple[int, int]],
                keep: np.ndarray) -> list[TileSpec]:
    """The kept grid tiles: id ``<stem>_r<row>_c<col>``, centre in lat/lon and ENU."""
    rows = np.flatnonzero(keep)
    la, lo = origin.from_en(ce[rows], cn[rows])
    return [TileSpec(f"{stem}_r{rc[k][0]:04d}_c{rc[k][1]:04d}", float(a), float(b), float(ce[k]), float(cn[k]))
            for k, a, b in zip(rows, np.atleast_1d(la), np.atleast_1d(lo))]


def _height_rasters(dsm: str | Path | None, dtm: str | Path | None, dsm_crs: str | None, origin: geo.LocalENU
                    ) -> list[_Geo] | None:
    """The surface model (and terrain model) in the tiles' ENU frame, or None."""
    if dsm is None:
        return None
    return [_Geo(open_raster(f, dsm_crs, kind="height"), origin) for f in ([dsm] if dtm is None else [dsm, dtm])]


def _with_height_reader(read_rgb: Callable[[int], np.ndarray], heights: list[_Geo],
                        centres: list[tuple[float, float]], tile_m: float, tile_px: int
                        ) -> Callable[[int], np.ndarray]:
    """Reader of RGB + height tiles: the DSM (less the DTM) on the RGB tile's pixels, nodata -> 0 (ground),
    below ground -> 0."""
    # image.preprocess imports torch; this module is torch-free otherwise
    from unifygeo_ros.image.preprocess import with_height

    readers = [_tile_reader(h, centres, tile_m, tile_px, fill=np.nan) for h in heights]

    def read(i: int) -> np.ndarray:
        h = readers[0](i)
        if len(readers) == 2:
            h = h - readers[1](i)
        return with_height(read_rgb(i), np.clip(np.nan_to_num(h, nan=0.0), 0.0, None))

    return read


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


def _warp_tile(raster: Raster, m: np.ndarray, tile_px: int, fill: float = 0.0) -> np.ndarray:
    """The ``tile_px`` tile that affine ``m`` (output index -> raster index) cuts from the raster: only the
    window it touches is read; a strong downsampling is anti-aliased first; outside the raster ``fill``."""
    corners = m @ np.array([[0, tile_px - 1, 0, tile_px - 1], [0, 0, tile_px - 1, tile_px - 1], [1, 1, 1, 1]])
    col0 = int(max(0, math.floor(corners[0].min()) - 2))
    row0 = int(max(0, math.floor(corners[1].min()) - 2))
    col1 = int(min(raster.width, math.ceil(corners[0].max()) + 3))
    row1 = int(min(raster.height, math.ceil(corners[1].max()) + 3))
    if col1 <= col0 or row1 <= row0:
        probe = raster.read_window(0, 0, 1, 1)
        return np.full((tile_px, tile_px) + probe.shape[2:], fill, probe.dtype)
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
                          borderValue=fill)


def _tile_reader(g: _Geo, centres: list[tuple[float, float]], tile_m: float, tile_px: int, fill: float = 0.0
                 ) -> Callable[[int], np.ndarray]:
    """Reader of north-up ``tile_px`` tiles centred on ``centres`` (ENU) from ``g``'s raster: RGB uint8, or
    float32 metres for a surface model (NaN = nodata); outside the raster ``fill``."""

    def read(i: int) -> np.ndarray:
        return _warp_tile(g.raster, _tile_affine(g, centres[i], tile_m, tile_px), tile_px, fill)

    return read


__all__ = ["orthophoto_tiles"]
