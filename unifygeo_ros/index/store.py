"""The on-disk aerial index: format, metadata, checks, shards and merge.

An index is a folder (format ``unifygeo-index``, version :data:`FORMAT_VERSION`)::

    index.json              metadata (below), written last: its presence marks a complete index
    descriptors.npy         (N, D) float32, L2-normalised global descriptors, row i = tile i
    search.faiss            the faiss search structure (faiss.write_index); absent for numpy search
    aerial_<name>.npy       what metric localization needs for each tile (row i = tile i):
                              mode "features": the model's dense aerial features (float16), one file per field
                              mode "tiles":    aerial_tiles.npy (N, P, P, 3) uint8 tile images, re-encoded at query

Arrays are plain ``.npy`` read with ``allow_pickle=False`` (aerial arrays memory-mapped: only the top-K rows are
touched per query); nothing is pickled. ``index.json``::

    {"format": "unifygeo-index", "version": 1, "created_utc": ...,
     "model": {"identity": <hash>, "config": {...}, "checkpoint": <path used to build>},
     "descriptor_dim": D, "count": N, "tile_m": 70.0, "tile_px": 320, "gsd_m": 0.21875,
     "origin": {"lat_deg": ..., "lon_deg": ...},            # the local ENU frame of east_m/north_m
     "source": {"kind": "vigor"|"orthophoto", "path": ..., ...tiling parameters},
     "shard": null | {"index": i, "count": n},
     "search": {"kind": "exact"|"ivf"|"hnsw"|"numpy", "params": {...}, "recall_at_10_vs_exact": r},
     "aerial": {"mode": "features"|"tiles", "fields": [names]},
     "tiles": {"ids": [...], "lat_deg": [...], "lon_deg": [...], "east_m": [...], "north_m": [...],
               "ordinal": [...]},                             # ordinal = position in the unsharded tiling
     "arrays": {"descriptors.npy": {"shape": [...], "dtype": "float32", "bytes": b, "sha256": h}, ...}}

Every problem with an index (missing or truncated file, other format or version, model mismatch, shards that do
not fit together) raises one :class:`~unifygeo_ros.errors.IndexFormatError` that says what to do.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import IndexFormatError
from unifygeo_ros.index import search as search_mod

FORMAT = "unifygeo-index"
FORMAT_VERSION = 1
META_FILE = "index.json"
DESCRIPTORS_FILE = "descriptors.npy"
FAISS_FILE = "search.faiss"
AERIAL_MODES = ("features", "tiles")


@dataclass
class IndexData:
    """The arrays of an index in memory (what a build produces and a merge combines)."""

    tile_ids: list[str]
    latlon_deg: np.ndarray  # (N, 2) float64
    en_m: np.ndarray  # (N, 2) float64, local ENU of the index origin
    ordinal: np.ndarray  # (N,) int64, position in the unsharded tiling
    descriptors: np.ndarray  # (N, D) float32
    aerial: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, ...) array

    def __len__(self) -> int:
        return len(self.tile_ids)

    def take(self, rows: np.ndarray) -> "IndexData":
        rows = np.asarray(rows, dtype=np.int64)
        return IndexData([self.tile_ids[i] for i in rows], self.latlon_deg[rows], self.en_m[rows],
                         self.ordinal[rows], self.descriptors[rows], {k: v[rows] for k, v in self.aerial.items()})

    @staticmethod
    def concatenate(parts: list["IndexData"]) -> "IndexData":
        names = sorted(parts[0].aerial)
        return IndexData(
            [t for p in parts for t in p.tile_ids],
            np.concatenate([p.latlon_deg for p in parts]).reshape(-1, 2),
            np.concatenate([p.en_m for p in parts]).reshape(-1, 2),
            np.concatenate([p.ordinal for p in parts]).astype(np.int64),
            np.concatenate([np.asarray(p.descriptors, np.float32) for p in parts]),
            {k: np.concatenate([np.asarray(p.aerial[k]) for p in parts]) for k in names},
        )


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _array_record(path: Path, arr: np.ndarray, with_sha: bool = True) -> dict:
    rec = {"shape": list(arr.shape), "dtype": str(arr.dtype), "bytes": path.stat().st_size}
    if with_sha:
        rec["sha256"] = sha256_file(path)
    return rec


def write_index(out_dir: str | Path, data: IndexData, meta: dict, search_kind: str = "auto",
                faiss_index=None, search_info: dict | None = None) -> dict:
    """Write ``data`` as an index folder; ``meta`` supplies model/source/tiling fields. Returns the metadata.

    The faiss structure is built here from the descriptors unless ``faiss_index``/``search_info`` are given.
    ``index.json`` is written last (atomically), so an interrupted write leaves no loadable index.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old_meta = out / META_FILE
    if old_meta.exists():
        old_meta.unlink()  # the folder is not a valid index until the new metadata lands
    desc = search_mod.normalize(data.descriptors)
    n, d = desc.shape
    if n != len(data.tile_ids):
        raise ValueError(f"{n} descriptors for {len(data.tile_ids)} tiles")
    arrays: dict[str, dict] = {}
    np.save(out / DESCRIPTORS_FILE, desc, allow_pickle=False)
    arrays[DESCRIPTORS_FILE] = _array_record(out / DESCRIPTORS_FILE, desc)
    for name, arr in sorted(data.aerial.items()):
        if arr.shape[0] != n:
            raise ValueError(f"aerial array {name!r} has {arr.shape[0]} rows for {n} tiles")
        fname = f"aerial_{name}.npy"
        np.save(out / fname, np.ascontiguousarray(arr), allow_pickle=False)
        arrays[fname] = _array_record(out / fname, arr)
    if faiss_index is None and search_info is None:
        faiss_index, info = search_mod.build_faiss_index(desc, search_kind)
        search_info = {**info.to_dict(), "requested": search_kind}
    if (out / FAISS_FILE).exists():
        (out / FAISS_FILE).unlink()
    if faiss_index is not None:
        search_mod.faiss.write_index(faiss_index, str(out / FAISS_FILE))
        arrays[FAISS_FILE] = {"bytes": (out / FAISS_FILE).stat().st_size, "sha256": sha256_file(out / FAISS_FILE)}

    full = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **meta,
        "descriptor_dim": int(d),
        "count": int(n),
        "search": search_info,
        "aerial": {**meta.get("aerial", {}), "fields": sorted(data.aerial)},
        "tiles": {
            "ids": list(data.tile_ids),
            "lat_deg": [float(v) for v in data.latlon_deg[:, 0]],
            "lon_deg": [float(v) for v in data.latlon_deg[:, 1]],
            "east_m": [round(float(v), 4) for v in data.en_m[:, 0]],
            "north_m": [round(float(v), 4) for v in data.en_m[:, 1]],
            "ordinal": [int(v) for v in data.ordinal],
        },
        "arrays": arrays,
    }
    tmp = out / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(full, indent=1))
    os.replace(tmp, out / META_FILE)
    return full


def read_meta(index_dir: str | Path) -> dict:
    """``index.json`` of an index folder, with format/version/shape checks (no array is read)."""
    d = Path(index_dir)
    if not d.is_dir():
        raise IndexFormatError(f"index folder not found: {d} (build one with `unifygeo index build`)")
    p = d / META_FILE
    if not p.is_file():
        raise IndexFormatError(f"{d} is not a complete aerial index: {META_FILE} is missing "
                               "(an interrupted build, or not an index folder); rebuild it")
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{p} is unreadable or truncated ({exc}); rebuild the index") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise IndexFormatError(f"{p}: not a {FORMAT} index (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise IndexFormatError(f"{d}: index format version {meta.get('version')!r}, this unifygeo_ros reads "
                               f"version {FORMAT_VERSION}; rebuild the index with `unifygeo index build`")
    for key in ("model", "descriptor_dim", "count", "tiles", "arrays", "search", "aerial", "tile_m", "origin"):
        if key not in meta:
            raise IndexFormatError(f"{p}: metadata field {key!r} is missing; rebuild the index")
    n = int(meta["count"])
    for key in ("ids", "lat_deg", "lon_deg", "east_m", "north_m", "ordinal"):
        if len(meta["tiles"].get(key, ())) != n:
            raise IndexFormatError(f"{p}: tiles.{key} has {len(meta['tiles'].get(key, ()))} entries for "
                                   f"count {n}; the metadata is damaged, rebuild the index")
    return meta


def _check_file(d: Path, name: str, rec: dict, verify: str) -> Path:
    p = d / name
    if not p.is_file():
        raise IndexFormatError(f"index {d}: {name} is missing; rebuild the index")
    size = p.stat().st_size
    if size != rec.get("bytes"):
        raise IndexFormatError(f"index {d}: {name} is truncated or altered ({size} bytes, the metadata says "
                               f"{rec.get('bytes')}); rebuild the index")
    if verify == "sha256" and "sha256" in rec and sha256_file(p) != rec["sha256"]:
        raise IndexFormatError(f"index {d}: {name} does not match its sha256 (corrupted); rebuild the index")
    return p


def _load_npy(d: Path, name: str, rec: dict, verify: str, mmap: bool) -> np.ndarray:
    p = _check_file(d, name, rec, verify)
    try:
        arr = np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexFormatError(f"index {d}: cannot read {name} ({exc}); rebuild the index") from None
    if list(arr.shape) != list(rec.get("shape", arr.shape)) or str(arr.dtype) != rec.get("dtype", str(arr.dtype)):
        raise IndexFormatError(f"index {d}: {name} has shape {arr.shape} {arr.dtype}, the metadata says "
                               f"{tuple(rec.get('shape', ()))} {rec.get('dtype')}; rebuild the index")
    return arr


@dataclass
class AerialIndex:
    """A loaded index: metadata, tile table, descriptors, searcher, and per-tile aerial data for the metric step."""

    path: Path
    meta: dict
    tile_ids: list[str]
    latlon_deg: np.ndarray  # (N, 2)
    en_m: np.ndarray  # (N, 2)
    ordinal: np.ndarray  # (N,)
    descriptors: np.ndarray  # (N, D) float32
    aerial: dict[str, np.ndarray]  # name -> (N, ...) (memory-mapped)
    searcher: search_mod.Searcher
    _kdtree: object = field(default=None, repr=False)

    # ---- facts --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tile_ids)

    @property
    def descriptor_dim(self) -> int:
        return int(self.meta["descriptor_dim"])

    @property
    def model_identity(self) -> str:
        return str(self.meta["model"].get("identity"))

    @property
    def tile_m(self) -> float:
        return float(self.meta["tile_m"])

    @property
    def aerial_mode(self) -> str:
        return str(self.meta["aerial"]["mode"])

    @property
    def origin(self) -> geo.LocalENU:
        o = self.meta["origin"]
        return geo.LocalENU(float(o["lat_deg"]), float(o["lon_deg"]))

    def aerial_rows(self, rows) -> dict[str, np.ndarray]:
        """The aerial arrays (features or tile images) of tiles ``rows``, read into memory."""
        rows = np.asarray(rows, dtype=np.int64)
        return {k: np.asarray(v[rows]) for k, v in self.aerial.items()}

    # ---- checks -------------------------------------------------------------------------------------------
    def check_model(self, identity: str | None, descriptor_dim: int | None) -> None:
        """Raise :class:`IndexFormatError` unless the index was built by this model (identity and dimension)."""
        if descriptor_dim is not None and int(descriptor_dim) != self.descriptor_dim:
            raise IndexFormatError(
                f"index {self.path} holds {self.descriptor_dim}-d descriptors but the model makes "
                f"{descriptor_dim}-d ones: rebuild the index with this model (`unifygeo index build`)")
        if identity is not None and str(identity) != self.model_identity:
            raise IndexFormatError(
                f"index {self.path} was built with model {self.model_identity[:16]} but the model loaded is "
                f"{str(identity)[:16]}: rebuild the index with this checkpoint, or pass the checkpoint the index "
                f"was built with ({self.meta['model'].get('checkpoint')})")

    # ---- spatial filter -----------------------------------------------------------------------------------
    def tiles_within(self, east_m: float, north_m: float, radius_m: float) -> np.ndarray:
        """Indices (sorted) of the tiles whose centre lies within ``radius_m`` of ``(east_m, north_m)``."""
        if self._kdtree is None:
            from scipy.spatial import cKDTree

            self._kdtree = cKDTree(self.en_m)
        idx = self._kdtree.query_ball_point([float(east_m), float(north_m)], r=float(radius_m))
        return np.sort(np.asarray(idx, dtype=np.int64))


def load_index(index_dir: str | Path, device: str = "cpu", verify: str = "size",
               load_search: bool = True) -> AerialIndex:
    """Load an index folder. ``verify``: ``"size"`` (file sizes and shapes, fast) or ``"sha256"`` (also hashes).

    Raises :class:`IndexFormatError` for a missing/truncated/altered file, another format version, or
    metadata that does not match the arrays.
    """
    d = Path(index_dir)
    meta = read_meta(d)
    arrays = meta["arrays"]
    if DESCRIPTORS_FILE not in arrays:
        raise IndexFormatError(f"index {d}: metadata lists no {DESCRIPTORS_FILE}; rebuild the index")
    n, dim = int(meta["count"]), int(meta["descriptor_dim"])
    desc = _load_npy(d, DESCRIPTORS_FILE, arrays[DESCRIPTORS_FILE], verify, mmap=False)
    if desc.shape != (n, dim) or desc.dtype != np.float32:
        raise IndexFormatError(f"index {d}: {DESCRIPTORS_FILE} is {desc.shape} {desc.dtype}, expected "
                               f"({n}, {dim}) float32; rebuild the index")
    aerial = {}
    for name in meta["aerial"].get("fields", []):
        fname = f"aerial_{name}.npy"
        if fname not in arrays:
            raise IndexFormatError(f"index {d}: metadata lists aerial field {name!r} without its file record")
        arr = _load_npy(d, fname, arrays[fname], verify, mmap=True)
        if arr.shape[0] != n:
            raise IndexFormatError(f"index {d}: {fname} has {arr.shape[0]} rows for {n} tiles; rebuild the index")
        aerial[name] = arr
    faiss_index = None
    kind = meta["search"].get("kind", "exact")
    if load_search and kind != "numpy" and search_mod.have_faiss():
        if FAISS_FILE not in arrays:
            raise IndexFormatError(f"index {d}: search kind {kind} but no {FAISS_FILE} record; rebuild the index")
        p = _check_file(d, FAISS_FILE, arrays[FAISS_FILE], verify)
        try:
            faiss_index = search_mod.faiss.read_index(str(p))
        except RuntimeError as exc:
            raise IndexFormatError(f"index {d}: cannot read {FAISS_FILE} ({str(exc).splitlines()[0]}); "
                                   "rebuild the index") from None
        if faiss_index.ntotal != n or faiss_index.d != dim:
            raise IndexFormatError(f"index {d}: {FAISS_FILE} holds {faiss_index.ntotal} x {faiss_index.d}, "
                                   f"expected {n} x {dim}; rebuild the index")
        search_mod.apply_params(faiss_index, meta["search"])
    t = meta["tiles"]
    return AerialIndex(
        path=d, meta=meta, tile_ids=list(t["ids"]),
        latlon_deg=np.stack([np.asarray(t["lat_deg"], float), np.asarray(t["lon_deg"], float)], axis=1),
        en_m=np.stack([np.asarray(t["east_m"], float), np.asarray(t["north_m"], float)], axis=1),
        ordinal=np.asarray(t["ordinal"], np.int64), descriptors=desc, aerial=aerial,
        searcher=search_mod.Searcher(desc, faiss_index, device=device))


def index_data(index: AerialIndex) -> IndexData:
    """The arrays of a loaded index as :class:`IndexData` (aerial arrays read into memory)."""
    return IndexData(list(index.tile_ids), index.latlon_deg, index.en_m, index.ordinal,
                     np.asarray(index.descriptors), {k: np.asarray(v) for k, v in index.aerial.items()})


# ----------------------------------------------------------------------------------------------- shards


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``; None stays None."""
    if text in (None, ""):
        return None
    try:
        i_s, n_s = str(text).split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ValueError(f"--shard must be I/N with integers (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def shard_rows(count: int, shard: tuple[int, int] | None) -> np.ndarray:
    """The deterministic subset of ``count`` tiles that shard ``(i, N)`` builds: rows ``i, i+N, i+2N, ...``
    (interleaved, so shards of a city are balanced and spatially spread)."""
    if shard is None:
        return np.arange(count, dtype=np.int64)
    i, n = shard
    return np.arange(i, count, n, dtype=np.int64)


_SHARD_INVARIANT = ("model", "tile_m", "tile_px", "gsd_m", "origin", "source", "descriptor_dim")


def merge_indexes(shard_dirs: list[str | Path], out_dir: str | Path, search_kind: str | None = None) -> dict:
    """Combine the shards of one build into one index, identical to an unsharded build.

    Checks (each failure an :class:`IndexFormatError`): every folder is a complete index of this format, all
    were built by the same model (identity hash) from the same source and tiling, they are shards ``0..N-1``
    of the same ``N``, each present exactly once. Tiles are put back in their unsharded order; the search
    structure is rebuilt (``search_kind``: default the shards' kind).
    """
    if not shard_dirs:
        raise IndexFormatError("index merge: no shard folders given")
    loaded = [load_index(p, verify="sha256", load_search=False) for p in shard_dirs]
    first = loaded[0]
    for other in loaded[1:]:
        if other.model_identity != first.model_identity:
            raise IndexFormatError(
                f"cannot merge {other.path} with {first.path}: built with different models "
                f"({other.model_identity[:16]} vs {first.model_identity[:16]})")
        for key in _SHARD_INVARIANT[1:]:
            a, b = first.meta.get(key), other.meta.get(key)
            if a != b:
                raise IndexFormatError(f"cannot merge {other.path} with {first.path}: their {key} differs "
                                       f"({b!r} vs {a!r})")
    shards = [ix.meta.get("shard") for ix in loaded]
    if any(s is None for s in shards):
        if len(loaded) == 1:
            shards = [{"index": 0, "count": 1}]
        else:
            whole = [str(ix.path) for ix, s in zip(loaded, shards) if s is None]
            raise IndexFormatError(f"cannot merge: {', '.join(whole)} is a whole index, not a shard")
    counts = {int(s["count"]) for s in shards}
    if len(counts) != 1:
        raise IndexFormatError(f"cannot merge shards of different splits (N = {sorted(counts)})")
    total = counts.pop()
    got = sorted(int(s["index"]) for s in shards)
    if got != list(range(total)):
        missing = sorted(set(range(total)) - set(got))
        dup = sorted({g for g in got if got.count(g) > 1})
        raise IndexFormatError(f"cannot merge: shards of {total} needed exactly once; "
                               f"missing {missing}, repeated {dup}")
    data = IndexData.concatenate([index_data(ix) for ix in loaded])
    order = np.argsort(data.ordinal, kind="stable")
    if len(np.unique(data.ordinal)) != len(order):
        raise IndexFormatError("cannot merge: shards overlap (a tile appears in two shards)")
    expected = first.meta["source"].get("count")
    if expected is not None and len(order) != int(expected):
        raise IndexFormatError(f"merged shards hold {len(order)} tiles, the source has {expected}")
    data = data.take(order)
    meta = {k: first.meta[k] for k in _SHARD_INVARIANT if k in first.meta}
    meta["shard"] = None
    meta["aerial"] = {k: v for k, v in first.meta["aerial"].items() if k != "fields"}
    meta["merged_from"] = [str(Path(p)) for p in shard_dirs]
    kind = search_kind or first.meta["search"].get("requested", first.meta["search"].get("kind", "auto"))
    out = write_index(out_dir, data, meta, search_kind=kind)
    return out
