"""VIGOR (Zhu et al., CVPR 2021) file names and label lines, and the positions they state.

A panorama is ``<panoid>,<lat>,<lon>,.jpg``, a satellite tile ``satellite_<lat>_<lon>.png`` (its centre). A label
line has 13 space-separated columns: the panorama file name, then four ``satellite d_row d_col`` triples, the
positive tile first, then three semi-positives. ``(d_row, d_col)`` are pixels of the tile at its native size
(640 for VIGOR, ``geo.json``'s ``tile_px`` for synthetic cities); the conversion to metres lives in
:func:`unifygeo_ros.geo.vigor_offset_to_en`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unifygeo_ros import geo
from unifygeo_ros.errors import DataFormatError

PANO_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
SAT_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
LABEL_COLUMNS = 13


# =========================================================================================== file names
def _split_ext(name: str, allowed: tuple[str, ...], what: str) -> str:
    base, ext = os.path.splitext(name)
    if ext.lower() not in allowed:
        raise DataFormatError(f"{what} {name!r}: expected one of the extensions {', '.join(allowed)}")
    return base


def _parse_latlon(lat_s: str, lon_s: str, what: str) -> tuple[float, float]:
    try:
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise DataFormatError(f"{what}: latitude/longitude {lat_s!r}, {lon_s!r} are not numbers") from None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise DataFormatError(f"{what}: latitude/longitude ({lat_s}, {lon_s}) out of range")
    return lat, lon


def parse_pano_name(name: str) -> tuple[str, float, float]:
    """``"<panoid>,<lat>,<lon>,.jpg"`` -> ``(panoid, lat_deg, lon_deg)`` (the trailing comma is optional)."""
    what = f"panorama file name {name!r}"
    base = _split_ext(os.path.basename(name), PANO_EXTENSIONS, "panorama file name")
    if base.endswith(","):
        base = base[:-1]
    parts = base.rsplit(",", 2)
    if len(parts) != 3 or not parts[0]:
        raise DataFormatError(f"{what}: expected '<panoid>,<lat>,<lon>,.jpg'")
    lat, lon = _parse_latlon(parts[1], parts[2], what)
    return parts[0], lat, lon


def format_pano_name(panoid: str, lat_deg: float, lon_deg: float, digits: int = 6, ext: str = ".jpg") -> str:
    """Inverse of :func:`parse_pano_name`: VIGOR's ``"<panoid>,<lat>,<lon>,.jpg"``."""
    if not panoid or any(c in panoid for c in ", /\\"):
        raise ValueError(f"panorama id {panoid!r} must be non-empty without commas, spaces or slashes")
    return f"{panoid},{lat_deg:.{digits}f},{lon_deg:.{digits}f},{ext}"


def parse_sat_name(name: str) -> tuple[float, float]:
    """``"satellite_<lat>_<lon>.png"`` -> ``(lat_deg, lon_deg)`` of the tile centre."""
    what = f"satellite file name {name!r}"
    base = _split_ext(os.path.basename(name), SAT_EXTENSIONS, "satellite file name")
    if not base.startswith("satellite_"):
        raise DataFormatError(f"{what}: expected 'satellite_<lat>_<lon>.png'")
    parts = base[len("satellite_"):].split("_")
    if len(parts) != 2:
        raise DataFormatError(f"{what}: expected 'satellite_<lat>_<lon>.png'")
    return _parse_latlon(parts[0], parts[1], what)


def format_sat_name(lat_deg: float, lon_deg: float, digits: int = 10, ext: str = ".png") -> str:
    """Inverse of :func:`parse_sat_name`: ``"satellite_<lat>_<lon>.png"``."""
    return f"satellite_{lat_deg:.{digits}f}_{lon_deg:.{digits}f}{ext}"


# ========================================================================================== label lines
@dataclass(frozen=True)
class LabelRecord:
    """One VIGOR label line: a panorama, its positive tile and three semi-positives, with pixel offsets.

    ``sats[0]`` is the positive; ``d_row[i]``, ``d_col[i]`` are the offsets for ``sats[i]`` (pixels of the tile
    at its native size; see :func:`unifygeo_ros.geo.vigor_offset_to_en`).
    """

    pano: str
    sats: tuple[str, str, str, str]
    d_row: tuple[float, float, float, float]
    d_col: tuple[float, float, float, float]

    @property
    def positive(self) -> str:
        return self.sats[0]

    @property
    def semi_positives(self) -> tuple[str, str, str]:
        return self.sats[1], self.sats[2], self.sats[3]

    def offset_en_m(self, slot: int, mpp: float) -> tuple[float, float]:
        """Camera ``(east_m, north_m)`` relative to the centre of ``sats[slot]``."""
        east, north = geo.vigor_offset_to_en(self.d_row[slot], self.d_col[slot], mpp)
        return float(east), float(north)


def parse_label_line(line: str, lineno: int, path: str | os.PathLike) -> LabelRecord:
    """Parse one 13-column label line; :class:`DataFormatError` ``"<path>:<lineno>: <what is wrong>"``."""
    where = f"{path}:{lineno}"
    cols = line.split()
    if len(cols) != LABEL_COLUMNS:
        raise DataFormatError(
            f"{where}: expected {LABEL_COLUMNS} space-separated columns (panorama, then 4 x "
            f"'satellite d_row d_col'), got {len(cols)}: {line.strip()[:120]!r}"
        )
    try:
        parse_pano_name(cols[0])
    except DataFormatError as exc:
        raise DataFormatError(f"{where}: column 1: {exc}") from None
    sats: list[str] = []
    d_row: list[float] = []
    d_col: list[float] = []
    for k in range(4):
        c = 1 + 3 * k
        try:
            parse_sat_name(cols[c])
        except DataFormatError as exc:
            raise DataFormatError(f"{where}: column {c + 1}: {exc}") from None
        for j, target in ((c + 1, d_row), (c + 2, d_col)):
            try:
                v = float(cols[j])
            except ValueError:
                raise DataFormatError(f"{where}: column {j + 1}: offset {cols[j]!r} is not a number") from None
            if not math.isfinite(v):
                raise DataFormatError(f"{where}: column {j + 1}: offset {cols[j]!r} is not finite")
            target.append(v)
        sats.append(cols[c])
    if len(set(sats)) != 4:
        raise DataFormatError(f"{where}: the four satellite tiles must be distinct, got {sats}")
    return LabelRecord(cols[0], tuple(sats), tuple(d_row), tuple(d_col))  # type: ignore[arg-type]


def format_label_line(rec: LabelRecord, digits: int = 6) -> str:
    """Inverse of :func:`parse_label_line` (no newline)."""
    cols = [rec.pano]
    for s, r, c in zip(rec.sats, rec.d_row, rec.d_col):
        cols += [s, f"{r:.{digits}f}", f"{c:.{digits}f}"]
    return " ".join(cols)


def read_label_file(path: str | os.PathLike) -> list[LabelRecord]:
    """All label lines of a split file (blank lines and ``#`` comments skipped)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFormatError(f"label file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"cannot read label file {p}: {exc}") from None
    records = [parse_label_line(line, i, p) for i, line in enumerate(text.splitlines(), start=1)
               if line.strip() and not line.lstrip().startswith("#")]
    if not records:
        raise DataFormatError(f"label file {p} contains no label lines")
    return records


def read_satellite_list(path: str | os.PathLike) -> list[str]:
    """Tile file names of a ``satellite_list.txt`` (validated, no duplicates)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataFormatError(f"satellite list not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"cannot read satellite list {p}: {exc}") from None
    names: list[str] = []
    seen: set[str] = set()
    for i, line in enumerate(lines, start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if len(name.split()) != 1:
            raise DataFormatError(f"{p}:{i}: expected one satellite file name per line, got {name[:120]!r}")
        try:
            parse_sat_name(name)
        except DataFormatError as exc:
            raise DataFormatError(f"{p}:{i}: {exc}") from None
        if name in seen:
            raise DataFormatError(f"{p}:{i}: duplicate satellite tile {name!r}")
        seen.add(name)
        names.append(name)
    if not names:
        raise DataFormatError(f"satellite list {p} is empty")
    return names


# ====================================================================================== metric helpers
def tile_offset_en_m(tile_latlon: Sequence[float], point_latlon: Sequence[float]) -> tuple[float, float]:
    """``(east_m, north_m)`` of a point relative to a tile centre (ENU frame at the tile centre)."""
    enu = geo.LocalENU(float(tile_latlon[0]), float(tile_latlon[1]))
    e, n = enu.to_en(float(point_latlon[0]), float(point_latlon[1]))
    return float(e), float(n)


def en_to_latlon(tile_latlon: Sequence[float], east_m: float, north_m: float) -> tuple[float, float]:
    """Lat/lon of the point ``(east_m, north_m)`` from a tile centre (inverse of :func:`tile_offset_en_m`)."""
    lat, lon = geo.LocalENU(float(tile_latlon[0]), float(tile_latlon[1])).from_en(east_m, north_m)
    return float(lat), float(lon)


def label_camera_latlon(rec: LabelRecord, slot: int, mpp: float) -> tuple[float, float]:
    """Camera lat/lon implied by the label: centre of ``rec.sats[slot]`` plus its offset at ``mpp`` (native)."""
    east, north = rec.offset_en_m(slot, mpp)
    return en_to_latlon(parse_sat_name(rec.sats[slot]), east, north)

