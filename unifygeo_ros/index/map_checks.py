"""Checks of a user's map before it is indexed: what each tile holds, what the surface model means, how sharp the
orthophoto is, where the local frame sits.

A map is refused with one line (:class:`~unifygeo_ros.errors.DataFormatError`) when it cannot give right fixes
(a DSM that covers no tile, heights that are not above ground in metres); tiles it cannot fill are left out
and counted (:class:`TileCounts`); a resolution far from the model's is warned. docs/INDEX.md ("Checks of the
map") states every threshold below and why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import DataFormatError

#: sample points per side of a tile when measuring its coverage (8 x 8 = 64 points)
SAMPLES_PER_SIDE = 8
#: the 2nd percentile of heights above this is no ground at ~0: an absolute DSM (terrain + objects)
ABSOLUTE_DSM_P2_M = 10.0
#: the 2nd percentile of heights below this: the ground lies far below the surface model's zero
BELOW_GROUND_P2_M = -5.0
#: the 99th percentile of heights above this: no 1 % of a map stands 300 m above ground; centimetres
CENTIMETRE_P99_M = 300.0
#: orthophoto pixels more than this factor coarser than the model's tiles are warned
RESOLUTION_WARN_FACTOR = 1.5
#: an --origin further than this from every tile is refused (a typo, or latitude and longitude swapped)
ORIGIN_MAX_DISTANCE_M = 50_000.0


@dataclass
class TileCounts:
    """How many tiles of an orthophoto's grid were kept, and why the others were left out."""

    grid: int  # tiles of the grid over the bounding box of the orthophoto's footprint
    outside: int  # less than min_coverage of the tile inside the orthophoto's footprint
    nodata: int  # inside, but less than min_coverage valid imagery (nodata value, alpha 0, black fill)
    no_height: int  # less than min_coverage of the tile under valid heights of the DSM (and DTM)
    min_coverage: float

    @property
    def kept(self) -> int:
        return self.grid - self.outside - self.nodata - self.no_height

    def summary(self) -> str:
        """One line for the build's output."""
        pct = f"{100 * self.min_coverage:.0f} %"
        parts = []
        if self.outside:
            parts.append(f"{self.outside} less than {pct} inside the orthophoto")
        if self.nodata:
            parts.append(f"{self.nodata} less than {pct} valid imagery (nodata, alpha 0 or black fill)")
        if self.no_height:
            parts.append(f"{self.no_height} less than {pct} under the surface model")
        return f"tiles: kept {self.kept} of {self.grid}" + ("; left out " + ", ".join(parts) if parts else "")


@dataclass
class Samples:
    """A raster sampled at points (one row per tile): inside its footprint, valid (inside and not nodata), and
    the value there (heights; NaN where not valid) when the raster holds heights."""

    inside: np.ndarray  # bool (tiles, points)
    valid: np.ndarray  # bool (tiles, points)
    values: np.ndarray | None  # float32 (tiles, points)


def tile_sample_offsets(tile_m: float) -> tuple[np.ndarray, np.ndarray]:
    """East/north offsets from a tile's centre of its :data:`SAMPLES_PER_SIDE` squared sample points."""
    s = (np.arange(SAMPLES_PER_SIDE) + 0.5) / SAMPLES_PER_SIDE * tile_m - tile_m / 2
    se, sn = np.meshgrid(s, s)
    return se.ravel(), sn.ravel()


def sample_raster(to_pixel: Callable, width: int, height: int, overview: np.ndarray, east_m: np.ndarray,
                  north_m: np.ndarray) -> Samples:
    """Sample a raster at ENU points: ``to_pixel(east, north) -> (col, row)``; ``overview``: the raster's
    validity (bool) or heights (float, NaN = nodata) at a reduced resolution (``Raster.overview``)."""
    col, row = to_pixel(east_m.ravel(), north_m.ravel())
    col, row = np.asarray(col, float), np.asarray(row, float)
    inside = (col >= 0) & (col <= width) & (row >= 0) & (row <= height)
    oh, ow = overview.shape[:2]
    j = np.clip(np.floor(np.nan_to_num(col) * ow / width), 0, ow - 1).astype(np.int64)
    i = np.clip(np.floor(np.nan_to_num(row) * oh / height), 0, oh - 1).astype(np.int64)
    at = overview[i, j]
    values = None
    if overview.dtype == bool:
        valid = inside & at
    else:
        values = np.where(inside, at, np.nan).astype(np.float32)
        valid = np.isfinite(values)
    shape = east_m.shape
    return Samples(inside.reshape(shape), valid.reshape(shape), None if values is None else values.reshape(shape))


def height_difference(dsm: Samples, dtm: Samples | None) -> Samples:
    """The heights above ground the tiles will carry: the DSM's, or DSM - DTM where both are valid."""
    if dtm is None:
        return dsm
    valid = dsm.valid & dtm.valid
    values = np.where(valid, dsm.values - np.nan_to_num(dtm.values), np.nan).astype(np.float32)
    return Samples(dsm.inside & dtm.inside, valid, values)


def check_heights_above_ground(heights_m: np.ndarray, what: str, with_dtm: bool) -> None:
    """Refuse heights that are not an nDSM in metres: its ground (the lowest 2 %) lies near 0 and no 1 % of it
    stands higher than :data:`CENTIMETRE_P99_M` (see docs/INDEX.md, "Checks of the map")."""
    h = heights_m[np.isfinite(heights_m)]
    if h.size == 0:
        return
    p2, p99 = (float(v) for v in np.percentile(h, [2, 99]))
    if p2 > ABSOLUTE_DSM_P2_M:
        fix = ("check that the --dtm is the terrain of the same area, in metres" if with_dtm else
               "give its terrain model with --dtm FILE (height = DSM - DTM), or an nDSM")
        raise DataFormatError(
            f"{what}: its lowest 2 % of heights lie above {ABSOLUTE_DSM_P2_M:g} m (2nd percentile {p2:.1f} m), "
            f"so it is not height above ground (an nDSM's ground is ~0) but absolute (terrain + buildings): {fix}")
    if p2 < BELOW_GROUND_P2_M:
        fix = ("is the --dsm already an nDSM? then leave out --dtm" if with_dtm else
               "give height above ground in metres (an nDSM)")
        raise DataFormatError(
            f"{what}: 2 % of its heights lie more than {-BELOW_GROUND_P2_M:g} m below ground (2nd percentile "
            f"{p2:.1f} m): {fix}")
    if p99 > CENTIMETRE_P99_M:
        raise DataFormatError(
            f"{what}: 1 % of its heights stand above {CENTIMETRE_P99_M:g} m (99th percentile {p99:.0f}), which "
            f"looks like centimetres: give heights in metres (divide by 100)")


def resolution_note(native_gsd_m: float, tile_gsd_m: float, model_gsd_m: float) -> tuple[bool, str] | None:
    """``(is_warning, line)`` when the map's detail (the coarser of its own pixels and the tiles' ``--gsd``) is
    more than :data:`RESOLUTION_WARN_FACTOR` coarser than the model's ``data.tile_m / model.aerial_px`` (a
    warning: tiles are upsampled, detail is missing), or its own pixels that much finer (a note: tiles are
    area-averaged down, nothing is lost); None when they are close."""
    detail_gsd_m = max(native_gsd_m, tile_gsd_m)
    factor = detail_gsd_m / model_gsd_m
    if factor > RESOLUTION_WARN_FACTOR:
        what = "the map has" if detail_gsd_m == native_gsd_m else "the tiles (--gsd) have"
        return True, (f"warning: {what} {detail_gsd_m:.2f} m/px but the model expects {model_gsd_m:.2f} m/px "
                      f"(data.tile_m / model.aerial_px): tiles are upsampled {factor:.1f}x and lack the detail it "
                      f"was trained on; expect worse fixes, or use imagery of {model_gsd_m:.2f} m/px or finer")
    if native_gsd_m * RESOLUTION_WARN_FACTOR < model_gsd_m:
        return False, (f"the map has {native_gsd_m:.2f} m/px, finer than the model's {model_gsd_m:.2f} m/px: "
                       f"tiles are area-averaged down {model_gsd_m / native_gsd_m:.1f}x")
    return None


def parse_origin(text: str) -> tuple[float, float]:
    """``"LAT,LON"`` (degrees) -> ``(lat_deg, lon_deg)``, or a one-line error."""
    try:
        lat, lon = (float(v) for v in text.split(","))
    except ValueError:
        raise DataFormatError(f"--origin must be LAT,LON in degrees (e.g. 47.6062,-122.3321), got {text!r}") from None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise DataFormatError(f"--origin {text}: latitude must lie in -90..90 and longitude in -180..180 degrees")
    return lat, lon


def check_origin_near(origin: geo.LocalENU, lat_deg: np.ndarray, lon_deg: np.ndarray) -> None:
    """Refuse an origin further than :data:`ORIGIN_MAX_DISTANCE_M` from every one of the map's points."""
    e, n = origin.to_en(np.asarray(lat_deg, float), np.asarray(lon_deg, float))
    d = float(np.min(np.hypot(e, n)))
    if d > ORIGIN_MAX_DISTANCE_M:
        raise DataFormatError(
            f"--origin {origin.lat0_deg:.6f},{origin.lon0_deg:.6f} is {d / 1000:.0f} km from the map: give a "
            f"LAT,LON within {ORIGIN_MAX_DISTANCE_M / 1000:.0f} km of it (latitude first)")


__all__ = ["TileCounts", "Samples", "tile_sample_offsets", "sample_raster", "height_difference",
           "check_heights_above_ground", "resolution_note", "parse_origin", "check_origin_near"]
