"""The files of an index folder: their names, the format constants, per-file records and checks, and the
metadata reader.

Each check failure is one :class:`~unifygeo_ros.errors.IndexFormatError` that names the file and says what to do
(the format itself is described in :mod:`unifygeo_ros.index.store`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from unifygeo_ros.errors import IndexFormatError

FORMAT = "unifygeo-index"
FORMAT_VERSION = 1
META_FILE = "index.json"
DESCRIPTORS_FILE = "descriptors.npy"
FAISS_FILE = "search.faiss"
AERIAL_MODES = ("features", "tiles")
#: metadata fields every index has (read_meta refuses a file without one of them)
REQUIRED_FIELDS = ("model", "descriptor_dim", "count", "tiles", "arrays", "search", "aerial", "tile_m", "origin")
#: per-tile lists of ``tiles`` (each ``count`` long)
TILE_FIELDS = ("ids", "lat_deg", "lon_deg", "east_m", "north_m", "ordinal")


def aerial_file(name: str) -> str:
    """File name of aerial field ``name`` (``cells0`` -> ``aerial_cells0.npy``)."""
    return f"aerial_{name}.npy"


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in ``chunk_bytes`` blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_bytes)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def array_record(path: Path, arr: np.ndarray, with_sha: bool = True) -> dict:
    """The ``arrays`` entry of a written ``.npy``: shape, dtype, size on disk and (default) its sha256."""
    rec = {"shape": list(arr.shape), "dtype": str(arr.dtype), "bytes": path.stat().st_size}
    if with_sha:
        rec["sha256"] = sha256_file(path)
    return rec


def file_record(path: Path) -> dict:
    """The ``arrays`` entry of a non-array file (the faiss structure): size on disk and sha256."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def check_file(index_dir: Path, name: str, rec: dict, verify: str) -> Path:
    """Path of file ``name`` after checking its size (and with ``verify="sha256"`` its hash) against ``rec``."""
    p = index_dir / name
    if not p.is_file():
        raise IndexFormatError(f"index {index_dir}: {name} is missing; rebuild the index")
    size = p.stat().st_size
    if size != rec.get("bytes"):
        raise IndexFormatError(f"index {index_dir}: {name} is truncated or altered ({size} bytes, the metadata says "
                               f"{rec.get('bytes')}); rebuild the index")
    if verify == "sha256" and "sha256" in rec and sha256_file(p) != rec["sha256"]:
        raise IndexFormatError(f"index {index_dir}: {name} does not match its sha256 (corrupted); rebuild the index")
    return p


def load_npy(index_dir: Path, name: str, rec: dict, verify: str, mmap: bool) -> np.ndarray:
    """Array file ``name`` (checked by :func:`check_file`, then its shape and dtype against ``rec``); never
    unpickles; ``mmap`` memory-maps it read-only."""
    p = check_file(index_dir, name, rec, verify)
    try:
        arr = np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexFormatError(f"index {index_dir}: cannot read {name} ({exc}); rebuild the index") from None
    if list(arr.shape) != list(rec.get("shape", arr.shape)) or str(arr.dtype) != rec.get("dtype", str(arr.dtype)):
        raise IndexFormatError(f"index {index_dir}: {name} has shape {arr.shape} {arr.dtype}, the metadata says "
                               f"{tuple(rec.get('shape', ()))} {rec.get('dtype')}; rebuild the index")
    return arr


def _parse_meta_file(index_dir: Path) -> dict:
    """``index.json`` parsed, or an error saying why there is none to parse."""
    if not index_dir.is_dir():
        raise IndexFormatError(f"index folder not found: {index_dir} (build one with `unifygeo index build`)")
    p = index_dir / META_FILE
    if not p.is_file():
        raise IndexFormatError(f"{index_dir} is not a complete aerial index: {META_FILE} is missing "
                               "(an interrupted build, or not an index folder); rebuild it")
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{p} is unreadable or truncated ({exc}); rebuild the index") from None


def _check_meta(index_dir: Path, meta: object) -> None:
    """Format, version, required fields and per-tile list lengths of parsed metadata."""
    p = index_dir / META_FILE
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise IndexFormatError(f"{p}: not a {FORMAT} index (format {found!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise IndexFormatError(f"{index_dir}: index format version {meta.get('version')!r}, this unifygeo_ros "
                               f"reads version {FORMAT_VERSION}; rebuild the index with `unifygeo index build`")
    for key in REQUIRED_FIELDS:
        if key not in meta:
            raise IndexFormatError(f"{p}: metadata field {key!r} is missing; rebuild the index")
    count = int(meta["count"])
    for key in TILE_FIELDS:
        got = len(meta["tiles"].get(key, ()))
        if got != count:
            raise IndexFormatError(f"{p}: tiles.{key} has {got} entries for count {count}; the metadata is "
                                   "damaged, rebuild the index")


def read_meta(index_dir: str | Path) -> dict:
    """``index.json`` of an index folder, with format/version/shape checks (no array is read)."""
    d = Path(index_dir)
    meta = _parse_meta_file(d)
    _check_meta(d, meta)
    return meta


__all__ = ["AERIAL_MODES", "DESCRIPTORS_FILE", "FAISS_FILE", "FORMAT", "FORMAT_VERSION", "META_FILE",
           "aerial_file", "array_record", "check_file", "file_record", "load_npy", "read_meta", "sha256_file"]
