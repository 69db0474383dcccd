"""What a valid index is: the format constants, the file names, and :func:`validate_meta`, the one check of
parsed metadata (called by :func:`unifygeo_ros.index.layout.read_meta`, so every entry point - localize, the
node, eval, replay, ``index info``, merge - refuses the same things).

Every failure is one one-line :class:`~unifygeo_ros.errors.IndexFormatError` naming the field and ending in
"rebuild the index". What is checked (numbers: JSON numbers, not strings or booleans, and finite):

* ``format`` / ``version``; every field of :data:`REQUIRED_FIELDS` present;
* ``count``, ``descriptor_dim``, ``tile_px`` positive integers; ``tile_m``, ``gsd_m`` positive numbers;
  ``model_aerial_px`` (when present) a positive integer;
* ``origin`` ``lat_deg`` in [-90, 90] and ``lon_deg`` in [-180, 180]; ``model.identity`` a non-empty string;
  ``source`` an object; ``shard`` null or ``{index, count}`` with ``0 <= index < count``;
* ``search.kind`` one of :data:`STORED_SEARCH_KINDS`, its ``params`` positive integers;
* ``aerial.mode`` one of :data:`AERIAL_MODES`; ``aerial.fields`` non-empty plain names (:data:`FIELD_NAME`):
  ``cells0..cellsL`` in mode ``features``, ``tiles`` in mode ``tiles``;
* ``tiles``: every list of :data:`TILE_FIELDS` ``count`` long; ids strings; latitudes/longitudes in range;
  east/north finite numbers; ordinals distinct non-negative integers;
* ``arrays``: plain file names (no folder part) with ``bytes``/``shape``/``dtype``/``sha256`` of the right kinds,
  a record for ``descriptors.npy`` and for every aerial field.

The arrays themselves (shapes, dtypes, NaN/inf) are checked when they are read (:mod:`unifygeo_ros.index.disk`).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from unifygeo_ros.errors import IndexFormatError
from unifygeo_ros.file_names import is_file_name
from unifygeo_ros.index.search import SEARCH_KINDS

FORMAT = "unifygeo-index"
FORMAT_VERSION = 1
META_FILE = "index.json"
DESCRIPTORS_FILE = "descriptors.npy"
FAISS_FILE = "search.faiss"
AERIAL_MODES = ("features", "tiles")
#: the search kinds an index records (``auto`` is resolved at build time)
STORED_SEARCH_KINDS = tuple(kind for kind in SEARCH_KINDS if kind != "auto")
#: metadata fields every index has
REQUIRED_FIELDS = ("model", "descriptor_dim", "count", "tiles", "arrays", "search", "aerial", "tile_m", "tile_px",
                   "gsd_m", "origin", "source")
#: per-tile lists of ``tiles`` (each ``count`` long)
TILE_FIELDS = ("ids", "lat_deg", "lon_deg", "east_m", "north_m", "ordinal")
#: an aerial field name: it becomes the file name ``aerial_<name>.npy`` inside the index folder
FIELD_NAME = re.compile(r"[A-Za-z0-9_]+")


def aerial_file(name: str) -> str:
    """File name of aerial field ``name`` (``cells0`` -> ``aerial_cells0.npy``)."""
    return f"aerial_{name}.npy"


def short(value: object, limit: int = 40) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters (for messages)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."



class _Checker:
    """Raises one-line errors about ``index.json`` at ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, what: str) -> None:
        raise IndexFormatError(f"{self.path}: {what}; the metadata is damaged, rebuild the index")

    def obj(self, value: object, name: str) -> dict:
        if not isinstance(value, dict):
            self.fail(f"{name} must be an object, got {short(value)}")
        return value

    def number(self, value: object, name: str, lo: float | None = None, hi: float | None = None,
               positive: bool = False) -> float:
        """A finite JSON number (``positive``: > 0; else within [lo, hi] when given)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(f"{name} must be a finite number, got {short(value)}")
        if positive and not value > 0:
            self.fail(f"{name} must be positive, got {short(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.fail(f"{name} must lie in [{lo:g}, {hi:g}], got {short(value)}")
        return float(value)

    def integer(self, value: object, name: str, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(f"{name} must be an integer >= {minimum}, got {short(value)}")
        return int(value)

    def numeric_list(self, values: list, name: str, integral: bool = False) -> np.ndarray:
        """A list of finite numbers (``integral``: integers) as an array."""
        try:
            arr = np.asarray(values) if values else np.zeros(0)
        except (ValueError, TypeError):  # ragged: a list among the numbers
            arr = np.zeros((0, 0))
        kinds = "iu" if integral else "iuf"
        if arr.ndim != 1 or arr.dtype.kind not in kinds or (arr.dtype.kind == "f" and not np.isfinite(arr).all()):
            bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))
                        or (integral and not isinstance(v, int)) or not math.isfinite(v)), "an out-of-range value")
            self.fail(f"{name} must hold finite {'integers' if integral else 'numbers'}, found {short(bad)}")
        return arr


def _check_scalars(c: _Checker, meta: dict) -> None:
    c.integer(meta["count"], "count")
    c.integer(meta["descriptor_dim"], "descriptor_dim")
    c.integer(meta["tile_px"], "tile_px")
    if meta.get("model_aerial_px") is not None:
        c.integer(meta["model_aerial_px"], "model_aerial_px")
    c.number(meta["tile_m"], "tile_m", positive=True)
    c.number(meta["gsd_m"], "gsd_m", positive=True)
    origin = c.obj(meta["origin"], "origin")
    for key, bound in (("lat_deg", 90.0), ("lon_deg", 180.0)):
        if key not in origin:
            c.fail(f"origin.{key} is missing")
        c.number(origin[key], f"origin.{key}", -bound, bound)
    identity = c.obj(meta["model"], "model").get("identity")
    if not isinstance(identity, str) or not identity:
        c.fail(f"model.identity must be the checkpoint's model hash, got {short(identity)}")
    source = c.obj(meta["source"], "source")
    if source.get("count") is not None:
        c.integer(source["count"], "source.count")
    shard = meta.get("shard")
    if shard is not None:
        shard = c.obj(shard, "shard")
        total = c.integer(shard.get("count"), "shard.count")
        if c.integer(shard.get("index"), "shard.index", 0) >= total:
            c.fail(f"shard.index {shard['index']} is not below shard.count {total}")


def _check_search(c: _Checker, search: object) -> None:
    search = c.obj(search, "search")
    kind = search.get("kind", "exact")
    if kind not in STORED_SEARCH_KINDS:
        c.fail(f"search.kind must be one of {', '.join(STORED_SEARCH_KINDS)}, got {short(kind)}")
    for key, value in c.obj(search.get("params", {}), "search.params").items():
        c.integer(value, f"search.params.{key}")


def _check_aerial(c: _Checker, aerial: object) -> list[str]:
    """The aerial block; returns its field names."""
    aerial = c.obj(aerial, "aerial")
    mode = aerial.get("mode")
    if mode not in AERIAL_MODES:
        c.fail(f"aerial.mode must be one of {', '.join(AERIAL_MODES)}, got {short(mode)}")
    fields = aerial.get("fields")
    if not isinstance(fields, list) or not fields:
        c.fail(f"aerial.fields must be a non-empty list of names, got {short(fields)}")
    for name in fields:
        if not isinstance(name, str) or FIELD_NAME.fullmatch(name) is None:
            c.fail(f"aerial field {short(name)} is not a plain name (letters, digits, _)")
    expected = ["tiles"] if mode == "tiles" else [f"cells{i}" for i in range(len(fields))]
    if sorted(fields) != sorted(expected):
        c.fail(f"aerial mode {mode} needs fields {', '.join(expected)}, got {', '.join(fields)}")
    return list(fields)


def _check_tiles(c: _Checker, tiles: object, count: int) -> None:
    tiles = c.obj(tiles, "tiles")
    for key in TILE_FIELDS:
        values = tiles.get(key)
        if not isinstance(values, list):
            c.fail(f"tiles.{key} must be a list of {count} values, got {short(values)}")
        if len(values) != count:
            c.fail(f"tiles.{key} has {len(values)} entries for count {count}")
    if not all(isinstance(t, str) for t in tiles["ids"]):
        c.fail("tiles.ids must all be strings")
    for key, bound in (("lat_deg", 90.0), ("lon_deg", 180.0)):
        arr = c.numeric_list(tiles[key], f"tiles.{key}")
        if np.abs(arr).max() > bound:
            c.fail(f"tiles.{key} holds {short(float(arr[np.abs(arr).argmax()]))}, outside [-{bound:g}, {bound:g}]")
    c.numeric_list(tiles["east_m"], "tiles.east_m")
    c.numeric_list(tiles["north_m"], "tiles.north_m")
    ordinal = c.numeric_list(tiles["ordinal"], "tiles.ordinal", integral=True)
    if ordinal.min() < 0 or len(np.unique(ordinal)) != count:
        c.fail("tiles.ordinal must be distinct non-negative integers")


def _check_arrays(c: _Checker, arrays: object, needed: list[str]) -> None:
    arrays = c.obj(arrays, "arrays")
    for name, rec in arrays.items():
        if not is_file_name(name):
            c.fail(f"arrays lists {short(name)}, not a plain file name of the index folder")
        rec = c.obj(rec, f"arrays.{name}")
        c.integer(rec.get("bytes"), f"arrays.{name}.bytes", 0)
        shape = rec.get("shape", [])
        if not isinstance(shape, list) or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shape):
            c.fail(f"arrays.{name}.shape must be a list of sizes, got {short(shape)}")
        for key in ("dtype", "sha256"):
            if key in rec and not isinstance(rec[key], str):
                c.fail(f"arrays.{name}.{key} must be a string, got {short(rec[key])}")
    for name in needed:
        if name not in arrays:
            c.fail(f"arrays has no record of {name}")


def validate_meta(index_dir: Path, meta: object) -> None:
    """Raise one :class:`IndexFormatError` unless parsed ``index.json`` ``meta`` of ``index_dir`` is valid
    (every check listed in this module's docstring); reads no array."""
    c = _Checker(index_dir / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise IndexFormatError(f"{c.path}: not a {FORMAT} index (format {short(found)}); point at an index folder "
                               "or rebuild the index with `unifygeo index build`")
    if meta.get("version") != FORMAT_VERSION:
        raise IndexFormatError(f"{index_dir}: index format version {short(meta.get('version'))}, this unifygeo_ros "
                               f"reads version {FORMAT_VERSION}; rebuild the index with `unifygeo index build`")
    for key in REQUIRED_FIELDS:
        if key not in meta:
            raise IndexFormatError(f"{c.path}: metadata field {key!r} is missing; rebuild the index")
    _check_scalars(c, meta)
    _check_search(c, meta["search"])
    fields = _check_aerial(c, meta["aerial"])
    _check_tiles(c, meta["tiles"], int(meta["count"]))
    _check_arrays(c, meta["arrays"], [DESCRIPTORS_FILE] + [aerial_file(name) for name in fields])


__all__ = ["AERIAL_MODES", "DESCRIPTORS_FILE", "FAISS_FILE", "FIELD_NAME", "FORMAT", "FORMAT_VERSION", "META_FILE",
           "REQUIRED_FIELDS", "STORED_SEARCH_KINDS", "TILE_FIELDS", "aerial_file", "is_file_name", "short",
           "validate_meta"]
