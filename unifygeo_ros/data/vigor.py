"""VIGOR (Zhu et al., CVPR 2021) reader: file names, label lines, per-city scale, splits, datasets.

Layout (``docs/DATA_FORMAT.md``; real VIGOR and ``unifygeo synth`` output alike)::

    ROOT/<City>/panorama/<panoid>,<lat>,<lon>,.jpg
    ROOT/<City>/satellite/satellite_<lat>_<lon>.png
    ROOT/<City>/geo.json                                  (synthetic cities; optional)
    ROOT/splits/<City>/{satellite_list.txt, pano_label_balanced.txt,
                        same_area_balanced_train.txt, same_area_balanced_test.txt}
    ROOT/splits__corrected/<City>/...                     (corrected labels)

File names accepted for the split files: the released VIGOR names (``pano_label_balanced.txt``; in
``splits__corrected/`` the HC-Net release adds ``__corrected`` before ``.txt``) and the project contract's
names (``pano_label_balance.txt``; the same names in both folders).

A label line has 13 space-separated columns: the panorama file name, then four ``satellite d_row d_col``
triples, the positive tile first, then three semi-positives. ``(d_row, d_col)`` are pixels of the tile at its
native size (640 for VIGOR, ``geo.json``'s ``tile_px`` for synthetic cities); the conversion to metres lives in
:func:`unifygeo_ros.geo.vigor_offset_to_en`.

Global tile indexing: the tiles of the given cities, city by city in the order given, each city in the order of
its ``satellite_list.txt``. :class:`VigorDataset` and :class:`VigorGallery` built on the same root and cities
share it.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from unifygeo_ros import geo
from unifygeo_ros.errors import DataFormatError
from unifygeo_ros.data.height import load_aerial
from unifygeo_ros.image.preprocess import (
    aerial_tensor,
    load_image,
    normalize_to_tensor,
    resize_image,
    roll_panorama,
    validate_panorama,
)

VIGOR_CITIES: tuple[str, ...] = ("NewYork", "Seattle", "SanFrancisco", "Chicago")
CROSS_TRAIN_CITIES: tuple[str, ...] = ("NewYork", "Seattle")
CROSS_TEST_CITIES: tuple[str, ...] = ("SanFrancisco", "Chicago")

SPLIT_DIR = "splits"
CORRECTED_SPLIT_DIR = "splits__corrected"
SATELLITE_LIST = "satellite_list.txt"
#: label-file kind -> accepted file stems (first match wins)
LABEL_FILE_STEMS: dict[str, tuple[str, ...]] = {
    "same_train": ("same_area_balanced_train",),
    "same_test": ("same_area_balanced_test",),
    "all": ("pano_label_balanced", "pano_label_balance"),
}
PANO_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
SAT_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
GEO_JSON_FORMAT = "unifygeo-city"
LABEL_COLUMNS = 13
_MAX_LISTED = 5

Corrected = Union[bool, Literal["auto"]]


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


# ===================================================================================== scale (metres/px)
def read_geo_json(root: str | os.PathLike, city: str) -> dict[str, Any] | None:
    """``<root>/<city>/geo.json`` validated (``mpp`` > 0, ``tile_px`` > 0), or None when absent."""
    p = Path(root) / city / "geo.json"
    if not p.is_file():
        return None
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"cannot read {p}: {exc}") from None
    if not isinstance(meta, dict):
        raise DataFormatError(f"{p}: expected a JSON object")
    if meta.get("format", GEO_JSON_FORMAT) != GEO_JSON_FORMAT:
        raise DataFormatError(f"{p}: format {meta.get('format')!r}, expected {GEO_JSON_FORMAT!r}")
    for key in ("mpp", "tile_px"):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise DataFormatError(f"{p}: {key!r} must be a positive number, got {v!r}")
    return meta


def native_tile_px(root: str | os.PathLike, city: str) -> int:
    """Size in pixels of the tile the labels' offsets refer to: geo.json's ``tile_px``, else VIGOR's 640."""
    meta = read_geo_json(root, city)
    return int(meta["tile_px"]) if meta is not None else geo.VIGOR_TILE_PX


def city_mpp(root: str | os.PathLike, city: str, tile_px: int, original_mpp: bool = False) -> float:
    """Metres per pixel of ``city``'s tiles when read at ``tile_px`` x ``tile_px``.

    From ``<root>/<city>/geo.json`` when present (``mpp`` of a stored ``tile_px``-pixel tile, rescaled);
    otherwise VIGOR's per-city 640-px value (:data:`geo.VIGOR_MPP_640`), or with ``original_mpp=True`` the single
    value of the original VIGOR evaluation (:data:`geo.VIGOR_MPP_ORIGINAL`), rescaled to ``tile_px``.
    ``original_mpp`` does not apply to cities with a geo.json (their scale is exact).
    """
    if tile_px <= 0:
        raise ValueError(f"tile_px must be positive, got {tile_px}")
    meta = read_geo_json(root, city)
    if meta is not None:
        return float(meta["mpp"]) * float(meta["tile_px"]) / float(tile_px)
    if original_mpp:
        return geo.VIGOR_MPP_ORIGINAL * geo.VIGOR_TILE_PX / float(tile_px)
    if city not in geo.VIGOR_MPP_640:
        raise DataFormatError(
            f"no scale for city {city!r}: {Path(root) / city / 'geo.json'} is absent and {city!r} is not a VIGOR "
            f"city ({', '.join(geo.VIGOR_MPP_640)}); write a geo.json with 'mpp' and 'tile_px'"
        )
    return geo.VIGOR_MPP_640[city] * geo.VIGOR_TILE_PX / float(tile_px)


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


# ================================================================================================ cities
def _list_missing(missing: list[str], what: str, where: Path) -> str:
    shown = ", ".join(missing[:_MAX_LISTED])
    more = f" (and {len(missing) - _MAX_LISTED} more)" if len(missing) > _MAX_LISTED else ""
    return f"{len(missing)} {what} missing under {where}: {shown}{more}"


def _check_root(root: Path, city: str) -> None:
    if not root.is_dir():
        raise DataFormatError(f"VIGOR root not found: {root}")
    if not (root / SPLIT_DIR).is_dir() and not (root / CORRECTED_SPLIT_DIR).is_dir():
        raise DataFormatError(
            f"{root} is not a VIGOR root: it has neither '{SPLIT_DIR}/' nor '{CORRECTED_SPLIT_DIR}/' "
            "(expected ROOT/<City>/panorama, ROOT/<City>/satellite, ROOT/splits/<City>/...)"
        )
    if not (root / city).is_dir():
        found = sorted(d.name for d in root.iterdir() if d.is_dir() and (d / "satellite").is_dir())
        raise DataFormatError(f"city folder {root / city} not found; cities under {root}: {found or 'none'}")


def label_file_path(root: str | os.PathLike, city: str, kind: str, corrected: Corrected = True) -> tuple[Path, bool]:
    """Resolve a city's label file; returns ``(path, is_corrected)``.

    ``kind``: ``"same_train"``, ``"same_test"`` or ``"all"`` (every panorama of the city). ``corrected=True``
    requires ``splits__corrected/``; ``False`` reads ``splits/``; ``"auto"`` prefers corrected labels and falls
    back to the original ones with a warning.
    """
    if kind not in LABEL_FILE_STEMS:
        raise ValueError(f"label file kind must be one of {sorted(LABEL_FILE_STEMS)}, got {kind!r}")
    if corrected not in (True, False, "auto"):
        raise ValueError(f"corrected must be True, False or 'auto', got {corrected!r}")
    root = Path(root)
    _check_root(root, city)
    stems = LABEL_FILE_STEMS[kind]
    corr_dir = root / CORRECTED_SPLIT_DIR / city
    orig_dir = root / SPLIT_DIR / city
    corr_candidates = [corr_dir / f"{s}__corrected.txt" for s in stems] + [corr_dir / f"{s}.txt" for s in stems]
    orig_candidates = [orig_dir / f"{s}.txt" for s in stems]
    if corrected is not False:
        for p in corr_candidates:
            if p.is_file():
                return p, True
        if corrected is True:
            raise DataFormatError(
                f"corrected labels for {city} not found (looked for {', '.join(p.name for p in corr_candidates)} "
                f"in {corr_dir}); pass corrected=False for the original labels or corrected='auto'"
            )
    for p in orig_candidates:
        if p.is_file():
            if corrected == "auto":
                warnings.warn(f"no corrected labels for {city}; using the original labels {p}", stacklevel=2)
            return p, False
    looked = orig_candidates if corrected is False else corr_candidates + orig_candidates
    raise DataFormatError(f"label file for {city} ({kind}) not found; looked for: {', '.join(map(str, looked))}")


def satellite_list_path(root: str | os.PathLike, city: str, prefer_corrected: bool = True) -> Path:
    """``satellite_list.txt`` of a city (the corrected folder's when present and preferred, else ``splits/``)."""
    root = Path(root)
    _check_root(root, city)
    dirs = [CORRECTED_SPLIT_DIR, SPLIT_DIR] if prefer_corrected else [SPLIT_DIR, CORRECTED_SPLIT_DIR]
    for d in dirs:
        p = root / d / city / SATELLITE_LIST
        if p.is_file():
            return p
    raise DataFormatError(f"{SATELLITE_LIST} for {city} not found in {root / SPLIT_DIR / city} "
                          f"or {root / CORRECTED_SPLIT_DIR / city}")


@dataclass
class VigorCity:
    """One city's tiles (in ``satellite_list.txt`` order) and scale; reads its label files."""

    root: Path
    name: str
    sat_names: list[str]
    sat_latlon: np.ndarray  # (M, 2) float64, tile centres
    tile_px: int  # native tile size the label offsets refer to
    mpp: float  # metres per pixel at tile_px
    sat_index: dict[str, int] = field(repr=False)

    @classmethod
    def load(cls, root: str | os.PathLike, name: str, original_mpp: bool = False,
             check_files: bool = True, prefer_corrected: bool = True) -> "VigorCity":
        root = Path(root)
        sat_names = read_satellite_list(satellite_list_path(root, name, prefer_corrected))
        if check_files:
            sat_dir = root / name / "satellite"
            if not sat_dir.is_dir():
                raise DataFormatError(f"satellite folder not found: {sat_dir}")
            present = set(os.listdir(sat_dir))
            missing = [s for s in sat_names if s not in present]
            if missing:
                raise DataFormatError(_list_missing(missing, "satellite tile(s) of satellite_list.txt", sat_dir))
        latlon = np.array([parse_sat_name(s) for s in sat_names], dtype=np.float64).reshape(-1, 2)
        tile_px = native_tile_px(root, name)
        return cls(root=root, name=name, sat_names=sat_names, sat_latlon=latlon, tile_px=tile_px,
                   mpp=city_mpp(root, name, tile_px, original_mpp),
                   sat_index={s: i for i, s in enumerate(sat_names)})

    @property
    def pano_dir(self) -> Path:
        return self.root / self.name / "panorama"

    @property
    def sat_dir(self) -> Path:
        return self.root / self.name / "satellite"

    def labels(self, kind: str, corrected: Corrected = True, check_files: bool = True) -> list[LabelRecord]:
        """Label lines of ``kind`` (``same_train``/``same_test``/``all``), checked against the tile list and,
        with ``check_files``, against the panorama folder."""
        path, _ = label_file_path(self.root, self.name, kind, corrected)
        records = read_label_file(path)
        unknown = sorted({s for r in records for s in r.sats if s not in self.sat_index})
        if unknown:
            shown = ", ".join(unknown[:_MAX_LISTED])
            raise DataFormatError(f"{path}: {len(unknown)} tile(s) referenced by the labels are not in the city's "
                                  f"{SATELLITE_LIST}: {shown}" + (" ..." if len(unknown) > _MAX_LISTED else ""))
        if check_files:
            if not self.pano_dir.is_dir():
                raise DataFormatError(f"panorama folder not found: {self.pano_dir}")
            present = set(os.listdir(self.pano_dir))
            missing = [r.pano for r in records if r.pano not in present]
            if missing:
                raise DataFormatError(f"{path}: " + _list_missing(missing, "panorama file(s)", self.pano_dir))
        return records


@dataclass
class VigorTiles:
    """The city-combined gallery: global tile index -> city, file, centre."""

    cities: list[VigorCity]
    offsets: list[int]  # global index of each city's first tile
    tile_city: np.ndarray  # (M,) int64 index into cities
    tile_latlon: np.ndarray  # (M, 2) float64
    tile_paths: list[Path]

    @classmethod
    def build(cls, cities: list[VigorCity]) -> "VigorTiles":
        offsets, paths, city_ids, latlon = [], [], [], []
        n = 0
        for ci, c in enumerate(cities):
            offsets.append(n)
            n += len(c.sat_names)
            paths += [c.sat_dir / s for s in c.sat_names]
            city_ids.append(np.full(len(c.sat_names), ci, dtype=np.int64))
            latlon.append(c.sat_latlon)
        return cls(cities=cities, offsets=offsets, tile_city=np.concatenate(city_ids),
                   tile_latlon=np.concatenate(latlon).reshape(-1, 2), tile_paths=paths)

    def __len__(self) -> int:
        return len(self.tile_paths)

    def global_index(self, city_pos: int, sat_name: str) -> int:
        return self.offsets[city_pos] + self.cities[city_pos].sat_index[sat_name]


def _resolve_cities(split: str, train: bool, cities: Sequence[str] | None,
                    cross_train_cities: Sequence[str], cross_test_cities: Sequence[str]) -> tuple[str, ...]:
    if split not in ("same", "cross"):
        raise ValueError(f"split must be 'same' or 'cross', got {split!r}")
    if cities is not None:
        if isinstance(cities, str):
            cities = (cities,)
        out = tuple(cities)
    elif split == "same":
        out = VIGOR_CITIES
    else:
        out = tuple(cross_train_cities if train else cross_test_cities)
    if not out:
        raise ValueError("no cities given")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate cities in {out}")
    return out


def _load_cities(root: Path, names: Sequence[str], original_mpp: bool, check_files: bool,
                 corrected: Corrected) -> list[VigorCity]:
    if corrected not in (True, False, "auto"):
        raise ValueError(f"corrected must be True, False or 'auto', got {corrected!r}")
    return [VigorCity.load(root, n, original_mpp=original_mpp, check_files=check_files,
                           prefer_corrected=corrected is not False) for n in names]


# ============================================================================================== datasets
class VigorDataset(Dataset):
    """VIGOR (panorama, aerial tile, offset) samples.

    Same-area (``split="same"``): ``same_area_balanced_{train,test}.txt`` of every city. Cross-area: training
    reads ``pano_label_balanced.txt`` of ``cross_train_cities``, testing reads every panorama of
    ``cross_test_cities``. An explicit ``cities`` overrides the default city set in both settings.

    An item is a dict:

    * ``ground``: float32 ``3 x H x W`` (``ground_size_hw``), rolled in the unknown-orientation setting;
    * ``aerial``: float32 ``3 x A x A`` (``aerial_px``): the positive tile, or (training with
      ``positives_only=False``) one of the four tiles containing the camera drawn uniformly, as CCVPE does;
    * ``offset_en_m``: float32 ``[east, north]`` of the camera relative to that tile's centre (from the label);
    * ``heading_deg``: float32 compass heading of the returned panorama: 0 (north-aligned) for known
      orientation; the applied rotation for unknown orientation (random when training, fixed per index from
      ``seed`` when testing);
    * ``tile_index`` (the returned tile), ``positive_index``, ``semi_indices`` (int64 ``[3]``): global tile
      indices (see :class:`VigorGallery`); ``pano_index``; ``city``; ``mpp`` (float32, metres per pixel of the
      returned aerial tensor).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        cities: Sequence[str] | None = None,
        split: Literal["same", "cross"] = "same",
        train: bool = True,
        ground_size_hw: tuple[int, int] = (320, 640),
        aerial_px: int = 320,
        orientation: Literal["known", "unknown"] = "known",
        positives_only: bool = True,
        corrected: Corrected = True,
        cross_train_cities: Sequence[str] = CROSS_TRAIN_CITIES,
        cross_test_cities: Sequence[str] = CROSS_TEST_CITIES,
        seed: int = 0,
        original_mpp: bool = False,
        check_files: bool = True,
        aerial_height: bool = False,
    ) -> None:
        if orientation not in ("known", "unknown"):
            raise ValueError(f"orientation must be 'known' or 'unknown', got {orientation!r}")
        if aerial_px <= 0 or min(ground_size_hw) <= 0:
            raise ValueError(f"sizes must be positive: ground {ground_size_hw}, aerial {aerial_px}")
        self.root = Path(root)
        self.split = split
        self.train = bool(train)
        self.ground_size_hw = (int(ground_size_hw[0]), int(ground_size_hw[1]))
        self.aerial_px = int(aerial_px)
        self.aerial_height = bool(aerial_height)
        self.orientation = orientation
        self.positives_only = bool(positives_only)
        self.seed = int(seed)
        self.cities: tuple[str, ...] = _resolve_cities(split, train, cities, cross_train_cities, cross_test_cities)
        city_objs = _load_cities(self.root, self.cities, original_mpp, check_files, corrected)
        self.tiles = VigorTiles.build(city_objs)
        kind = ("same_train" if self.train else "same_test") if split == "same" else "all"

        records: list[LabelRecord] = []
        pano_city: list[int] = []
        for ci, c in enumerate(city_objs):
            recs = c.labels(kind, corrected, check_files)
            records += recs
            pano_city += [ci] * len(recs)
        self.records: list[LabelRecord] = records
        #: (N,) index into ``self.cities`` of each panorama
        self.pano_city = np.asarray(pano_city, dtype=np.int64)
        self.pano_paths: list[Path] = [city_objs[ci].pano_dir / r.pano for r, ci in zip(records, pano_city)]
        #: (N, 2) lat/lon from the panorama file names
        self.pano_latlon = np.array([parse_pano_name(r.pano)[1:] for r in records], dtype=np.float64).reshape(-1, 2)
        #: (N, 4) global tile indices, positive first
        self.sat_indices = np.array([[self.tiles.global_index(ci, s) for s in r.sats]
                                     for r, ci in zip(records, pano_city)], dtype=np.int64).reshape(-1, 4)
        #: native metres per pixel of each city (the labels' scale)
        self.city_mpp_native = np.array([c.mpp for c in city_objs], dtype=np.float64)
        #: (N, 4, 2) camera east/north relative to each of the four tiles (metres, from the labels)
        mpp = self.city_mpp_native[self.pano_city][:, None]
        d_row = np.array([r.d_row for r in records], dtype=np.float64).reshape(-1, 4)
        d_col = np.array([r.d_col for r in records], dtype=np.float64).reshape(-1, 4)
        east, north = geo.vigor_offset_to_en(d_row, d_col, mpp)
        self.offsets_en_m = np.stack([east, north], axis=-1)
        #: metres per pixel of the aerial tensors, per city
        self.city_mpp_aerial = np.array([c.mpp * c.tile_px / self.aerial_px for c in city_objs], dtype=np.float64)
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, int] | None = None

    # ---------------------------------------------------------------------------------------- indexing
    def __len__(self) -> int:
        return len(self.records)

    @property
    def positive_indices(self) -> np.ndarray:
        """(N,) global index of each panorama's positive tile."""
        return self.sat_indices[:, 0]

    @property
    def semi_positive_indices(self) -> np.ndarray:
        """(N, 3) global indices of each panorama's semi-positive tiles."""
        return self.sat_indices[:, 1:]

    @property
    def tile_latlon(self) -> np.ndarray:
        """(M, 2) centres of the gallery tiles."""
        return self.tiles.tile_latlon

    def gallery(self) -> "VigorGallery":
        """The gallery of this dataset's cities, with the same tile indexing and aerial size."""
        return VigorGallery.from_tiles(self.tiles, self.aerial_px, self.aerial_height)

    def camera_en_relative_to(self, pano_index: int, tile_index: int) -> tuple[float, float]:
        """Labelled camera position ``(east_m, north_m)`` relative to any gallery tile's centre (for metric
        errors after retrieval picked ``tile_index``)."""
        pos = int(self.sat_indices[pano_index, 0])
        e0, n0 = self.offsets_en_m[pano_index, 0]
        if tile_index == pos:
            return float(e0), float(n0)
        de, dn = tile_offset_en_m(self.tiles.tile_latlon[tile_index], self.tiles.tile_latlon[pos])
        return float(e0 + de), float(n0 + dn)

    def camera_latlon(self, pano_index: int) -> tuple[float, float]:
        """Labelled camera lat/lon: positive tile centre plus the label's offset."""
        e, n = self.offsets_en_m[pano_index, 0]
        return en_to_latlon(self.tiles.tile_latlon[self.sat_indices[pano_index, 0]], float(e), float(n))

    # ------------------------------------------------------------------------------------ randomness
    def _train_rng(self) -> np.random.Generator:
        """A generator per process / DataLoader worker, seeded from ``seed`` and torch's per-worker seed, so
        workers differ and runs with the same torch seed repeat."""
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), -1 if info is None else info.id)
        if self._rng is None or self._rng_owner != owner:
            self._rng = np.random.default_rng([self.seed, torch.initial_seed() % (2**63), owner[1] + 1])
            self._rng_owner = owner
        return self._rng

    def _test_heading(self, index: int) -> float:
        return float(np.random.default_rng([self.seed, 0x0E1E7, index]).uniform(-180.0, 180.0))

    # ------------------------------------------------------------------------------------------- items
    def load_ground(self, index: int, delta_heading_deg: float = 0.0) -> tuple[torch.Tensor, float]:
        """Ground tensor of panorama ``index`` rotated by about ``delta_heading_deg`` (whole columns of the
        resized panorama); returns ``(tensor, applied heading change)``."""
        img = validate_panorama(load_image(self.pano_paths[index]))
        img = resize_image(img, self.ground_size_hw)
        applied = 0.0
        if delta_heading_deg != 0.0:
            img, applied = roll_panorama(img, delta_heading_deg)
        return normalize_to_tensor(img), applied

    def load_aerial(self, tile_index: int) -> torch.Tensor:
        """Aerial tensor of gallery tile ``tile_index`` (4 channels with its surface height when
        ``aerial_height``, read from ``satellite_height/``)."""
        return aerial_tensor(load_aerial(self.tiles.tile_paths[tile_index], self.aerial_height), self.aerial_px)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} panoramas")
        rng = self._train_rng() if self.train else None
        slot = 0
        if self.train and not self.positives_only:
            slot = int(rng.integers(0, 4))
        delta = 0.0
        if self.orientation == "unknown":
            delta = float(rng.uniform(-180.0, 180.0)) if self.train else self._test_heading(index)
        ground, heading = self.load_ground(index, delta)
        tile = int(self.sat_indices[index, slot])
        ci = int(self.pano_city[index])
        return {
            "ground": ground,
            "aerial": self.load_aerial(tile),
            "offset_en_m": self.offsets_en_m[index, slot].astype(np.float32),
            "heading_deg": np.float32(heading),
            "tile_index": tile,
            "positive_index": int(self.sat_indices[index, 0]),
            "semi_indices": self.sat_indices[index, 1:].copy(),
            "pano_index": int(index),
            "city": self.cities[ci],
            "mpp": np.float32(self.city_mpp_aerial[ci]),
        }


class VigorGallery(Dataset):
    """Every satellite tile of the given cities, indexed like :class:`VigorDataset` on the same cities.

    Item: ``{"aerial": float32 C x A x A (C = 4 with ``aerial_height``: RGB + surface height), "tile_index": int, "center_latlon": float64[2], "city": str,
    "mpp": float32 (metres per pixel of the tensor)}``.
    """

    def __init__(self, root: str | os.PathLike, cities: Sequence[str], aerial_px: int = 320,
                 corrected: Corrected = True, original_mpp: bool = False, check_files: bool = True,
                 aerial_height: bool = False) -> None:
        if isinstance(cities, str):
            cities = (cities,)
        if not cities or len(set(cities)) != len(cities):
            raise ValueError(f"cities must be non-empty and distinct, got {cities!r}")
        tiles = VigorTiles.build(_load_cities(Path(root), list(cities), original_mpp, check_files, corrected))
        self._init(tiles, aerial_px, aerial_height)

    @classmethod
    def from_tiles(cls, tiles: VigorTiles, aerial_px: int, aerial_height: bool = False) -> "VigorGallery":
        obj = cls.__new__(cls)
        obj._init(tiles, aerial_px, aerial_height)
        return obj

    def _init(self, tiles: VigorTiles, aerial_px: int, aerial_height: bool = False) -> None:
        if aerial_px <= 0:
            raise ValueError(f"aerial_px must be positive, got {aerial_px}")
        self.tiles = tiles
        self.aerial_px = int(aerial_px)
        self.aerial_height = bool(aerial_height)
        self.cities: tuple[str, ...] = tuple(c.name for c in tiles.cities)
        self.city_mpp_aerial = np.array([c.mpp * c.tile_px / self.aerial_px for c in tiles.cities])

    @property
    def tile_latlon(self) -> np.ndarray:
        return self.tiles.tile_latlon

    @property
    def tile_paths(self) -> list[Path]:
        return self.tiles.tile_paths

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"tile index {index} out of range for {len(self)} tiles")
        ci = int(self.tiles.tile_city[index])
        return {
            "aerial": aerial_tensor(load_aerial(self.tiles.tile_paths[index], self.aerial_height), self.aerial_px),
            "tile_index": int(index),
            "center_latlon": self.tiles.tile_latlon[index].copy(),
            "city": self.cities[ci],
            "mpp": np.float32(self.city_mpp_aerial[ci]),
        }
