"""Writing and loading an index folder (the format is described in :mod:`unifygeo_ros.index.store`).

:func:`write_index` writes the arrays, the search structure and - last, atomically - ``index.json``;
:func:`load_index` reads them back with every check of :mod:`unifygeo_ros.index.layout`. Needs numpy only
(faiss when present).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from unifygeo_ros.errors import IndexFormatError
from unifygeo_ros.index import search as search_mod
from unifygeo_ros.index.data import AerialIndex, IndexData
from unifygeo_ros.index.layout import (DESCRIPTORS_FILE, FAISS_FILE, FORMAT, FORMAT_VERSION, META_FILE, aerial_file,
                                       array_record, check_file, check_finite, file_record, first_non_finite_row,
                                       load_npy, read_meta)
from unifygeo_ros.index.validate import FIELD_NAME


# ------------------------------------------------------------------------------------------------- write
def _refuse_non_finite(out: Path, data: IndexData) -> None:
    """An index is never written with NaN or infinity in its descriptors or aerial arrays (a loader refuses it)."""
    named = {DESCRIPTORS_FILE: np.asarray(data.descriptors)}
    named.update({aerial_file(k): v for k, v in data.aerial.items()})
    for name, arr in named.items():
        row = first_non_finite_row(arr)
        if row is not None:
            tile = data.tile_ids[row] if row < len(data.tile_ids) else f"row {row}"
            raise IndexFormatError(f"cannot write index {out}: {name} of tile {tile} holds NaN or "
                                   "infinite values (what the model made of the tile: check the checkpoint)")


def _write_arrays(out: Path, data: IndexData, desc: np.ndarray) -> dict[str, dict]:
    """Save the descriptors and the aerial arrays; their ``arrays`` records."""
    n = desc.shape[0]
    arrays: dict[str, dict] = {}
    np.save(out / DESCRIPTORS_FILE, desc, allow_pickle=False)
    arrays[DESCRIPTORS_FILE] = array_record(out / DESCRIPTORS_FILE, desc)
    for name, arr in sorted(data.aerial.items()):
        if arr.shape[0] != n:
            raise ValueError(f"aerial array {name!r} has {arr.shape[0]} rows for {n} tiles")
        fname = aerial_file(name)
        np.save(out / fname, np.ascontiguousarray(arr), allow_pickle=False)
        arrays[fname] = array_record(out / fname, arr)
    return arrays


def _write_search(out: Path, desc: np.ndarray, search_kind: str, faiss_index, search_info: dict | None
                  ) -> tuple[dict | None, dict]:
    """Build (unless given) and save the faiss structure: (its ``arrays`` record or None, the ``search`` block)."""
    if faiss_index is None and search_info is None:
        faiss_index, info = search_mod.build_faiss_index(desc, search_kind)
        search_info = {**info.to_dict(), "requested": search_kind}
    if (out / FAISS_FILE).exists():
        (out / FAISS_FILE).unlink()
    if faiss_index is None:
        return None, search_info
    search_mod.faiss.write_index(faiss_index, str(out / FAISS_FILE))
    return file_record(out / FAISS_FILE), search_info


def _tile_table(data: IndexData) -> dict[str, list]:
    """The ``tiles`` block: ids, centres (degrees, ENU metres to 0.1 mm) and ordinals."""
    return {
        "ids": list(data.tile_ids),
        "lat_deg": [float(v) for v in data.latlon_deg[:, 0]],
        "lon_deg": [float(v) for v in data.latlon_deg[:, 1]],
        "east_m": [round(float(v), 4) for v in data.en_m[:, 0]],
        "north_m": [round(float(v), 4) for v in data.en_m[:, 1]],
        "ordinal": [int(v) for v in data.ordinal],
    }


def _is_index_file(name: object) -> bool:
    """Whether ``name`` is a file an index writes (descriptors, search structure, ``aerial_<field>.npy``)."""
    if not isinstance(name, str):
        return False
    if name in (DESCRIPTORS_FILE, FAISS_FILE):
        return True
    return name.startswith("aerial_") and name.endswith(".npy") and FIELD_NAME.fullmatch(name[7:-4]) is not None


def _previous_files(out: Path) -> set[str]:
    """The index files a previous index in ``out`` lists (none when there is no readable one); only names an
    index writes, so a damaged ``index.json`` cannot make a rebuild delete anything else."""
    try:
        arrays = json.loads((out / META_FILE).read_text()).get("arrays", {})
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in arrays if _is_index_file(name)}


def write_index(out_dir: str | Path, data: IndexData, meta: dict, search_kind: str = "auto",
                faiss_index=None, search_info: dict | None = None) -> dict:
    """Write ``data`` as an index folder; ``meta`` supplies model/source/tiling fields. Returns the metadata.

    The faiss structure is built here from the descriptors unless ``faiss_index``/``search_info`` are given.
    ``index.json`` is written last (atomically), so an interrupted write leaves no loadable index. Files of a
    previous index in the folder that the new one does not write (e.g. ``aerial_tiles.npy`` when a tiles-mode
    index is rebuilt with features) are removed after it.
    """
    out = Path(out_dir)
    _refuse_non_finite(out, data)
    out.mkdir(parents=True, exist_ok=True)
    previous = _previous_files(out)
    if (out / META_FILE).exists():
        (out / META_FILE).unlink()  # the folder is not a valid index until the new metadata lands
    desc = search_mod.normalize(data.descriptors)
    n, d = desc.shape
    if n != len(data.tile_ids):
        raise ValueError(f"{n} descriptors for {len(data.tile_ids)} tiles")
    arrays = _write_arrays(out, data, desc)
    faiss_record, search_info = _write_search(out, desc, search_kind, faiss_index, search_info)
    if faiss_record is not None:
        arrays[FAISS_FILE] = faiss_record
    full = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **meta,
        "descriptor_dim": int(d),
        "count": int(n),
        "search": search_info,
        "aerial": {**meta.get("aerial", {}), "fields": sorted(data.aerial)},
        "tiles": _tile_table(data),
        "arrays": arrays,
    }
    tmp = out / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(full, indent=1))
    os.replace(tmp, out / META_FILE)
    for stale in previous - set(arrays):
        (out / stale).unlink(missing_ok=True)
    return full


# -------------------------------------------------------------------------------------------------- load
def _load_descriptors(d: Path, meta: dict, verify: str) -> np.ndarray:
    """The descriptors, in memory: (count, descriptor_dim) float32, finite."""
    n, dim = int(meta["count"]), int(meta["descriptor_dim"])
    desc = load_npy(d, DESCRIPTORS_FILE, meta["arrays"][DESCRIPTORS_FILE], verify, mmap=False)
    if desc.shape != (n, dim) or desc.dtype != np.float32:
        raise IndexFormatError(f"index {d}: {DESCRIPTORS_FILE} is {desc.shape} {desc.dtype}, expected "
                               f"({n}, {dim}) float32; rebuild the index")
    check_finite(d, DESCRIPTORS_FILE, desc)
    return desc


def _aerial_layout_problem(arr: np.ndarray, aerial: dict, model_px: int | None) -> str | None:
    """What is wrong with an aerial array for the index's aerial mode, or None: features (N, C, h, w) floats,
    tiles (N, A, A, 3|4) uint8 with A = model_aerial_px; the dtype ``aerial.dtype`` says when it says one."""
    if "dtype" in aerial and str(arr.dtype) != str(aerial["dtype"]):
        return f"dtype {arr.dtype}, aerial.dtype says {aerial['dtype']}"
    if aerial["mode"] == "features":
        return None if arr.ndim == 4 and arr.dtype.kind == "f" else "not (N, C, h, w) floating-point features"
    if arr.ndim != 4 or arr.dtype != np.uint8 or arr.shape[1] != arr.shape[2] or arr.shape[3] not in (3, 4):
        return "not (N, A, A, 3 or 4) uint8 tiles"
    if model_px is not None and arr.shape[1] != model_px:
        return f"{arr.shape[1]} px tiles, model_aerial_px says {model_px}"
    return None


def _load_aerial(d: Path, meta: dict, verify: str) -> dict[str, np.ndarray]:
    """The aerial arrays, memory-mapped, checked against the metadata and scanned for NaN/inf in chunks."""
    arrays, n = meta["arrays"], int(meta["count"])
    aerial = {}
    for name in meta["aerial"]["fields"]:
        fname = aerial_file(name)
        arr = load_npy(d, fname, arrays[fname], verify, mmap=True)
        if arr.ndim == 0 or arr.shape[0] != n:
            rows = arr.shape[0] if arr.ndim else 0
            raise IndexFormatError(f"index {d}: {fname} has {rows} rows for {n} tiles; rebuild the index")
        problem = _aerial_layout_problem(arr, meta["aerial"], meta.get("model_aerial_px"))
        if problem:
            raise IndexFormatError(f"index {d}: {fname} is {arr.shape} {arr.dtype} ({problem}) in aerial mode "
                                   f"{meta['aerial']['mode']}; rebuild the index")
        check_finite(d, fname, arr)
        aerial[name] = arr
    return aerial


def _load_faiss(d: Path, meta: dict, verify: str):
    """The faiss structure (its search parameters applied), checked against the metadata and for its content."""
    arrays, n, dim = meta["arrays"], int(meta["count"]), int(meta["descriptor_dim"])
    kind = meta["search"].get("kind", "exact")
    if FAISS_FILE not in arrays:
        raise IndexFormatError(f"index {d}: search kind {kind} but no {FAISS_FILE} record; rebuild the index")
    p = check_file(d, FAISS_FILE, arrays[FAISS_FILE], verify)
    try:
        faiss_index = search_mod.faiss.read_index(str(p))
    except RuntimeError as exc:
        raise IndexFormatError(f"index {d}: cannot read {FAISS_FILE} ({str(exc).splitlines()[0]}); "
                               "rebuild the index") from None
    if faiss_index.ntotal != n or faiss_index.d != dim:
        raise IndexFormatError(f"index {d}: {FAISS_FILE} holds {faiss_index.ntotal} x {faiss_index.d}, "
                               f"expected {n} x {dim}; rebuild the index")
    _check_faiss_content(d, faiss_index, kind, n)
    search_mod.apply_params(faiss_index, meta["search"])
    return faiss_index


#: how far from 1 the norm of a vector in search.faiss may be (the build stores L2-normalised descriptors; a zero
#: descriptor stays zero)
FAISS_NORM_TOLERANCE = 1e-3


def _check_faiss_content(d: Path, faiss_index, kind: str, n: int) -> None:
    """The faiss structure is what a build writes (the same size is not enough: a damaged file searches NaN): its
    class, metric and graph (:func:`~unifygeo_ros.index.search.structure_problem`), the vectors it stores finite
    and of unit norm, each of the ``n`` tiles stored once. Not compared with descriptors.npy (whose content
    ``verify="size"`` checks for NaN only: an altered copy of the same size loads)."""
    problem = search_mod.structure_problem(faiss_index, kind)
    if problem:
        raise IndexFormatError(f"index {d}: {FAISS_FILE} {problem}; rebuild the index")
    listed = []
    for ids, vectors in search_mod.stored_vectors(faiss_index):
        if ids.size and not (0 <= ids.min() and ids.max() < n):
            raise IndexFormatError(f"index {d}: {FAISS_FILE} lists tile ids outside 0..{n - 1}; rebuild the index")
        squares = np.einsum("ij,ij->i", vectors, vectors)  # NaN for NaN, inf or NaN for infinity
        off = np.flatnonzero(~(np.abs(squares - 1.0) <= 2 * FAISS_NORM_TOLERANCE) & (squares != 0.0))
        if off.size and not np.isfinite(vectors[off[0]]).all():
            raise IndexFormatError(f"index {d}: {FAISS_FILE} holds NaN or infinite values (tile row {ids[off[0]]}); "
                                   "rebuild the index")
        if off.size:
            raise IndexFormatError(f"index {d}: {FAISS_FILE} holds a vector of norm {np.sqrt(squares[off[0]]):.6g}, "
                                   f"not a normalised descriptor (tile row {ids[off[0]]}); rebuild the index")
        listed.append(ids)
    counts = np.bincount(np.concatenate(listed), minlength=n) if listed else np.zeros(n, np.int64)
    if n and not (counts == 1).all():
        row = int(np.flatnonzero(counts != 1)[0])
        raise IndexFormatError(f"index {d}: {FAISS_FILE} stores tile row {row} {counts[row]} times, not once; "
                               "rebuild the index")


def load_index(index_dir: str | Path, device: str = "cpu", verify: str = "size",
               load_search: bool = True) -> AerialIndex:
    """Load an index folder. ``verify``: ``"size"`` (file sizes and shapes, fast) or ``"sha256"`` (also hashes).

    Raises :class:`IndexFormatError` for a missing/truncated/altered file, another format version, or
    metadata that does not match the arrays.
    """
    d = Path(index_dir)
    meta = read_meta(d)
    desc = _load_descriptors(d, meta, verify)
    aerial = _load_aerial(d, meta, verify)
    faiss_index = None
    if load_search and meta["search"].get("kind", "exact") != "numpy" and search_mod.have_faiss():
        faiss_index = _load_faiss(d, meta, verify)
    t = meta["tiles"]
    return AerialIndex(
        path=d, meta=meta, tile_ids=list(t["ids"]),
        latlon_deg=np.stack([np.asarray(t["lat_deg"], float), np.asarray(t["lon_deg"], float)], axis=1),
        en_m=np.stack([np.asarray(t["east_m"], float), np.asarray(t["north_m"], float)], axis=1),
        ordinal=np.asarray(t["ordinal"], np.int64), descriptors=desc, aerial=aerial,
        searcher=search_mod.Searcher(desc, faiss_index, device=device))


def index_data(index: AerialIndex) -> IndexData:
    """The arrays of a loaded index as :class:`IndexData`, aerial arrays copied into memory (``np.asarray`` of a
    memory map is still the map: writing the index back into its own folder would then truncate the file under
    it)."""
    return IndexData(list(index.tile_ids), index.latlon_deg, index.en_m, index.ordinal,
                     np.array(index.descriptors), {k: np.array(v) for k, v in index.aerial.items()})


__all__ = ["index_data", "load_index", "write_index"]
