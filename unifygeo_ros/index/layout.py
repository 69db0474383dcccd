"""The files of an index folder: per-file records and checks (presence, size, hash, shape, dtype, finite values,
no path that leaves the folder) and the metadata reader.

Each check failure is one :class:`~unifygeo_ros.errors.IndexFormatError` that names the file and says what to do
(the format itself is described in :mod:`unifygeo_ros.index.store`, what valid metadata is in
:mod:`unifygeo_ros.index.validate`).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from unifygeo_ros.errors import IndexFormatError
from unifygeo_ros.index.validate import (AERIAL_MODES, DESCRIPTORS_FILE, FAISS_FILE, FORMAT, FORMAT_VERSION,
                                         META_FILE, REQUIRED_FIELDS, TILE_FIELDS, aerial_file, is_file_name,
                                         validate_meta)

#: bytes of an array read at a time by :func:`check_finite` (memory-bounded scan of memory-mapped arrays)
SCAN_CHUNK_BYTES = 1 << 24
#: per float item size: the unsigned view and its exponent bits (all set = NaN or infinity)
_EXPONENT_BITS = {2: (np.uint16, 0x7C00), 4: (np.uint32, 0x7F800000), 8: (np.uint64, 0x7FF0000000000000)}


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


def file_in_folder(index_dir: Path, name: str) -> Path:
    """Path of file ``name`` of the index folder, refusing a name with a folder part (``../x``, ``/abs``,
    ``a/b``, ``..``) and any name whose normalised path is not directly inside the folder. A symbolic link placed
    in the folder is followed (``colcon build --symlink-install`` installs the demo index as links)."""
    p = index_dir / name
    folder = os.path.normpath(os.path.abspath(index_dir))
    if not is_file_name(name) or os.path.dirname(os.path.normpath(os.path.abspath(p))) != folder:
        raise IndexFormatError(f"index {index_dir}: file {name!r} is not a file name inside the index folder (a "
                               "path that leaves it); rebuild the index")
    return p


def check_file(index_dir: Path, name: str, rec: dict, verify: str) -> Path:
    """Path of file ``name`` (:func:`file_in_folder`) after checking its size (and with ``verify="sha256"`` its
    hash) against ``rec``."""
    p = file_in_folder(index_dir, name)
    if not p.is_file():
        raise IndexFormatError(f"index {index_dir}: {name} is missing; rebuild the index")
    size = p.stat().st_size
    if size != rec.get("bytes"):
        raise IndexFormatError(f"index {index_dir}: {name} is truncated or altered ({size} bytes, the metadata says "
                               f"{rec.get('bytes')}); rebuild the index")
    if verify == "sha256" and "sha256" in rec and sha256_file(p) != rec["sha256"]:
        raise IndexFormatError(f"index {index_dir}: {name} does not match its sha256 (corrupted); rebuild the index")
    return p


def _first_non_finite(block: np.ndarray) -> int | None:
    """Index of the first row of ``block`` holding NaN or infinity, or None (floats tested by their exponent
    bits: ~8 GiB/s for float16, against ~1.3 GiB/s for ``np.isfinite``)."""
    uint, bits = _EXPONENT_BITS.get(block.dtype.itemsize, (None, 0))
    if uint is not None and block.dtype.isnative:
        bad = (block.view(uint) & uint(bits)) == uint(bits)
    else:
        bad = ~np.isfinite(block)
    rows = bad.reshape(len(block), -1).any(axis=1)
    return int(np.argmax(rows)) if rows.any() else None


def first_non_finite_row(arr: np.ndarray, chunk_bytes: int = SCAN_CHUNK_BYTES) -> int | None:
    """The first row of array ``arr`` (row = tile) holding NaN or infinity, or None; read ``chunk_bytes`` at a
    time, so a memory-mapped array is scanned with bounded memory. Non-float arrays have none."""
    if arr.dtype.kind != "f" or arr.size == 0:
        return None
    rows = max(1, chunk_bytes // max(1, arr[:1].nbytes))
    for start in range(0, len(arr), rows):
        bad = _first_non_finite(arr[start:start + rows])
        if bad is not None:
            return start + bad
    return None


def check_finite(index_dir: Path, name: str, arr: np.ndarray) -> None:
    """Raise :class:`IndexFormatError` when array file ``name`` holds NaN or infinity
    (:func:`first_non_finite_row`)."""
    row = first_non_finite_row(arr)
    if row is not None:
        raise IndexFormatError(f"index {index_dir}: {name} holds NaN or infinite values (tile row {row}); "
                               "rebuild the index")


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


def read_meta(index_dir: str | Path) -> dict:
    """``index.json`` of an index folder, checked by :func:`unifygeo_ros.index.validate.validate_meta` (no array
    is read)."""
    d = Path(index_dir)
    meta = _parse_meta_file(d)
    validate_meta(d, meta)
    return meta


__all__ = ["AERIAL_MODES", "DESCRIPTORS_FILE", "FAISS_FILE", "FORMAT", "FORMAT_VERSION", "META_FILE", "REQUIRED_FIELDS",
           "SCAN_CHUNK_BYTES", "TILE_FIELDS", "aerial_file", "array_record", "check_file", "check_finite",
           "file_in_folder", "file_record", "first_non_finite_row", "load_npy", "read_meta", "sha256_file"]
