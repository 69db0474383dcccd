"""The panoramas' true positions as a CSV file: what ``unifygeo synth`` writes beside a city's map
(``<City>/map/panoramas.csv``) and what ``unifygeo localize --truth`` scores fixes against.

Format (UTF-8, comma-separated, a header row; the columns in any order, others ignored)::

    panorama,latitude,longitude,yaw_deg
    "GJ2z...,37.77412345,-122.41912345,.jpg",37.77412345,-122.41912345,90.0

* ``panorama``: the image's file name (no folder; VIGOR names hold commas, so they are quoted); ``unifygeo
  localize --truth`` matches each image it is given by its file name.
* ``latitude``, ``longitude``: WGS84 degrees of the camera.
* ``yaw_deg`` (optional, may be empty): ENU yaw of the panorama's centre column (0 = east, counter-clockwise;
  ``geo.heading_to_yaw_deg``): 90 for north-aligned panoramas such as VIGOR's and ``unifygeo synth``'s.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass

from unifygeo_ros.errors import DataFormatError

TRUTH_COLUMNS = ("panorama", "latitude", "longitude", "yaw_deg")
REQUIRED_COLUMNS = TRUTH_COLUMNS[:3]


@dataclass(frozen=True)
class TruthRow:
    """One panorama's true position (and optionally its yaw): a row of a truth CSV."""

    panorama: str
    latitude_deg: float
    longitude_deg: float
    yaw_deg: float | None = None


def write_truth_csv(path: str | os.PathLike, rows: list[TruthRow]) -> None:
    """Write ``rows`` (byte-deterministic: fixed decimals, ``\\n`` line ends)."""
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(TRUTH_COLUMNS)
    for r in rows:
        wr.writerow([r.panorama, f"{r.latitude_deg:.8f}", f"{r.longitude_deg:.8f}",
                     "" if r.yaw_deg is None else f"{r.yaw_deg:.1f}"])
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())


def read_truth_csv(path: str | os.PathLike) -> list[TruthRow]:
    """The rows of a truth CSV; :class:`DataFormatError` (one line: file, line, what is wrong) for a missing
    file or column, a value that is not a finite number in range, a repeated or empty panorama name, no rows."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"cannot read truth file {path}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataFormatError(f"truth file {path} has no column {', '.join(missing)} (its header must name "
                              f"{','.join(REQUIRED_COLUMNS)}[,yaw_deg]; found {','.join(header) or 'nothing'})")
    reader.fieldnames = header
    rows, seen = [], set()
    for row in reader:
        r = _parse_row(path, reader.line_num, row)
        if r.panorama in seen:
            raise DataFormatError(f"truth file {path} line {reader.line_num}: panorama {r.panorama!r} appears twice")
        seen.add(r.panorama)
        rows.append(r)
    if not rows:
        raise DataFormatError(f"truth file {path} holds no rows: one per panorama, {','.join(TRUTH_COLUMNS)}")
    return rows


def _parse_row(path, line: int, row: dict) -> TruthRow:
    name = os.path.basename((row.get("panorama") or "").strip())
    if not name:
        raise DataFormatError(f"truth file {path} line {line}: empty panorama name")
    lat = _number(path, line, row, "latitude", 90.0)
    lon = _number(path, line, row, "longitude", 180.0)
    yaw_text = (row.get("yaw_deg") or "").strip()
    yaw = _number(path, line, row, "yaw_deg", 360.0) if yaw_text else None
    return TruthRow(name, lat, lon, yaw)


def _number(path, line: int, row: dict, column: str, limit: float) -> float:
    text = (row.get(column) or "").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and abs(value) <= limit):
        raise DataFormatError(f"truth file {path} line {line}: {column} {text!r} is not a number in "
                              f"[-{limit:g}, {limit:g}]")
    return value


__all__ = ["REQUIRED_COLUMNS", "TRUTH_COLUMNS", "TruthRow", "read_truth_csv", "write_truth_csv"]
