"""The VIGOR folder layout: where a city's tiles, panoramas and label files are, which label files count
(released names and the project contract's), each city's scale (metres per pixel: ``geo.json`` for synthetic
cities, VIGOR's per-city values otherwise), and the tables that combine cities into one gallery.

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

from unifygeo_ros import geo
from unifygeo_ros.data.vigor_labels import LabelRecord, parse_sat_name, read_label_file, read_satellite_list
from unifygeo_ros.errors import DataFormatError

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
GEO_JSON_FORMAT = "unifygeo-city"
_MAX_LISTED = 5

Corrected = Union[bool, Literal["auto"]]


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


# ================================================================================================ cities
def _list_missing(missing: list[str], what: str, where: Path) -> str:
    shown = ", ".join(missing[:_MAX_LISTED])
    more = f" (and {len(missing) - _MAX_LISTED} more)" if len(missing) > _MAX_LISTED else ""
    return f"{len(missing)} {what} missing under {where}: {shown}{more}"


def cities_under(root: str | os.PathLike) -> list[str]:
    """The city folders of a VIGOR-layout root (folders holding ``satellite/``), sorted."""
    root = Path(root)
    return sorted(d.name for d in root.iterdir() if d.is_dir() and (d / "satellite").is_dir())


def _check_root(root: Path, city: str | None) -> None:
    """A VIGOR root (with ``splits/`` or ``splits__corrected/``) holding the folder of ``city`` (None: any)."""
    if not root.is_dir():
        raise DataFormatError(f"VIGOR root not found: {root}")
    if not (root / SPLIT_DIR).is_dir() and not (root / CORRECTED_SPLIT_DIR).is_dir():
        raise DataFormatError(
            f"{root} is not a VIGOR root: it has neither '{SPLIT_DIR}/' nor '{CORRECTED_SPLIT_DIR}/' "
            "(expected ROOT/<City>/panorama, ROOT/<City>/satellite, ROOT/splits/<City>/...)"
        )
    if city is not None and not (root / city).is_dir():
        found = cities_under(root)
        raise DataFormatError(f"city folder {root / city} not found; cities under {root}: {found or 'none'}")


def check_city_folders(root: str | os.PathLike, cities: Sequence[str], choose_with: str) -> None:
    """One :class:`DataFormatError` line naming the city folders of ``cities`` missing under a VIGOR-layout
    ``root``, the cities there and the option that chooses them (``choose_with``, e.g. ``--cities A,B``)."""
    root = Path(root)
    _check_root(root, None)
    missing = [c for c in cities if not (root / c).is_dir()]
    if missing:
        raise DataFormatError(f"city folder(s) {', '.join(missing)} not found under {root}; cities there: "
                              f"{', '.join(cities_under(root)) or 'none'} (choose them with {choose_with})")


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
                f"in {corr_dir}); read the original labels in {SPLIT_DIR}/ or, with 'auto', the corrected ones where "
                "present: unifygeo eval --labels original|auto, unifygeo train --set data.vigor_corrected=false|auto "
                "(Python: corrected=False or corrected='auto')"
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


def resolve_cities(split: str, train: bool, cities: Sequence[str] | None,
                   cross_train_cities: Sequence[str], cross_test_cities: Sequence[str]) -> tuple[str, ...]:
    """The cities a data set reads: ``cities`` when given, else every VIGOR city (same-area) or the cross-area
    training / test cities."""
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


def load_cities(root: Path, names: Sequence[str], original_mpp: bool, check_files: bool,
                corrected: Corrected) -> list[VigorCity]:
    """:meth:`VigorCity.load` of each city (validating ``corrected``)."""
    if corrected not in (True, False, "auto"):
        raise ValueError(f"corrected must be True, False or 'auto', got {corrected!r}")
    return [VigorCity.load(root, n, original_mpp=original_mpp, check_files=check_files,
                           prefer_corrected=corrected is not False) for n in names]
