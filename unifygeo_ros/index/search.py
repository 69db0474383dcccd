"""Nearest-descriptor search over the aerial index: faiss exact / IVF / HNSW, GPU faiss when present, numpy
fallback.

Descriptors are L2-normalised ``float32``; similarity is the inner product (= cosine). Definitions:

* ``exact`` - ``faiss.IndexFlatIP``: brute force, the reference every approximate index is measured against.
* ``ivf`` - ``faiss.IndexIVFFlat`` (inner product), ``nlist ~ 4 sqrt(N)`` lists trained with k-means on at most
  ``64 * nlist`` descriptors (fixed seed, so the same descriptors give the same index); ``nprobe`` is tuned at
  build time to the smallest value whose recall@10 against exact reaches ``target_recall``.
* ``hnsw`` - ``faiss.IndexHNSWFlat`` (M = 32, inner product); ``efSearch`` tuned the same way.
* recall@10 vs exact = mean over queries of |approx top-10 ∩ exact top-10| / 10. The build measures it on
  *synthetic queries*: database descriptors perturbed with noise to a cosine of about 0.6 to their source (what a
  matching ground descriptor looks like) and re-normalised.

A spatial restriction (a prior) searches a subset of the tiles exactly with numpy: subsets are small and exact
search over them is cheaper than any index.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

try:  # faiss is optional at run time: numpy brute force is the fallback
    import faiss  # type: ignore
except ImportError:  # pragma: no cover - faiss-cpu is in requirements.txt
    faiss = None

#: above this many tiles ``auto`` picks an approximate index (see docs/INDEX.md for the measurements)
AUTO_EXACT_MAX = 100_000
SEARCH_KINDS = ("auto", "exact", "ivf", "hnsw", "numpy")


def have_faiss() -> bool:
    return faiss is not None


def faiss_gpus() -> int:
    if faiss is None or not hasattr(faiss, "get_num_gpus"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except Exception:  # noqa: BLE001 - a broken CUDA install means "no GPU"
        return 0


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, ``float32`` C-contiguous (zero rows stay zero)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


def numpy_topk(queries: np.ndarray, database: np.ndarray, k: int, chunk: int = 65536
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` by brute force in chunks of the database (memory-bounded).

    Ties rank the lower database index first. Returns ``(scores, ids)`` of shape ``(Q, k')``, ``k' = min(k, N)``.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    n = database.shape[0]
    k = min(int(k), n)
    best_s = np.full((queries.shape[0], 0), -np.inf, np.float32)
    best_i = np.zeros((queries.shape[0], 0), np.int64)
    for start in range(0, n, chunk):
        block = np.asarray(database[start:start + chunk], dtype=np.float32)
        s = queries @ block.T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < s.shape[1] else \
            np.broadcast_to(np.arange(s.shape[1]), s.shape)
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_s, best_i


def synthetic_queries(database: np.ndarray, n: int, cosine: float = 0.6, seed: int = 0) -> np.ndarray:
    """Queries for recall measurement: random database rows pushed to about ``cosine`` from their source."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(database.shape[0], size=min(n, database.shape[0]), replace=False)
    base = np.asarray(database[np.sort(rows)], dtype=np.float32)
    noise = normalize(rng.standard_normal(base.shape).astype(np.float32))
    # x = c * base + s * noise with noise ~orthogonal to base in high dimension: cos(x, base) ~ c
    s = math.sqrt(max(0.0, 1.0 - cosine ** 2))
    return normalize(cosine * base + s * noise)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int = 10) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k (ids < 0 = missing)."""
    hits = 0
    for a, e in zip(approx_ids[:, :k], exact_ids[:, :k]):
        hits += len(set(a[a >= 0].tolist()) & set(e.tolist()))
    return hits / float(k * len(exact_ids))


@dataclass
class SearchInfo:
    """How an index searches, recorded in the index metadata."""

    kind: str  # exact | ivf | hnsw | numpy
    params: dict
    recall_at_10_vs_exact: float | None = None
    build_s: float = 0.0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "params": self.params, "recall_at_10_vs_exact": self.recall_at_10_vs_exact,
                "build_s": round(self.build_s, 3)}


def resolve_kind(kind: str, n: int) -> str:
    if kind not in SEARCH_KINDS:
        raise ValueError(f"unknown search kind {kind!r}; choose from {', '.join(SEARCH_KINDS)}")
    if faiss is None:
        if kind not in ("auto", "numpy", "exact"):
            log.warning("faiss is not installed: %s search falls back to numpy brute force", kind)
        return "numpy"
    if kind == "auto":
        return "exact" if n <= AUTO_EXACT_MAX else "ivf"
    return kind


def build_faiss_index(descriptors: np.ndarray, kind: str = "auto", *, target_recall: float = 0.95,
                      nlist: int | None = None, hnsw_m: int = 32, seed: int = 0,
                      recall_queries: int = 500) -> tuple["faiss.Index | None", SearchInfo]:
    """Build the search structure for ``descriptors`` (``(N, D)``, L2-normalised ``float32``).

    Returns ``(index, info)``; ``index`` is None for ``numpy`` (no faiss). Approximate kinds are tuned to
    ``target_recall`` (recall@10 vs exact on synthetic queries) and the reached recall is in ``info``.
    """
    x = normalize(descriptors)
    n, d = x.shape
    kind = resolve_kind(kind, n)
    t0 = time.perf_counter()
    if kind == "numpy":
        return None, SearchInfo("numpy", {}, 1.0, 0.0)
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
        index.add(x)
        return index, SearchInfo("exact", {}, 1.0, time.perf_counter() - t0)

    if kind == "ivf":
        nlist = int(nlist or max(1, min(n // 39, int(round(4 * math.sqrt(n))))))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = x if n <= 64 * nlist else x[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        index.cp.seed = seed
        index.train(train)
        index.add(x)
        knob, values = "nprobe", [v for v in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if v <= nlist] + [nlist]
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(x)
        knob, values = "efSearch", [16, 32, 64, 128, 256, 512, 1024]
    else:  # pragma: no cover - resolve_kind guards
        raise ValueError(kind)
    build_s = time.perf_counter() - t0

    q = synthetic_queries(x, recall_queries, seed=seed)
    exact_ids = numpy_topk(q, x, 10)[1]
    recall, chosen = 0.0, values[-1]
    for v in dict.fromkeys(values):
        _set_knob(index, knob, v)
        recall = recall_at_k(index.search(q, 10)[1], exact_ids)
        chosen = v
        if recall >= target_recall:
            break
    _set_knob(index, knob, chosen)
    params = {knob: int(chosen)}
    if kind == "ivf":
        params["nlist"] = int(nlist)
    else:
        params["M"] = int(hnsw_m)
    return index, SearchInfo(kind, params, round(float(recall), 4), build_s)


def _set_knob(index, knob: str, value: int) -> None:
    if knob == "nprobe":
        index.nprobe = int(value)
    else:
        index.hnsw.efSearch = int(value)


def apply_params(index, info: dict) -> None:
    """Re-apply the tuned query-time parameters after ``faiss.read_index`` (they are not all serialised)."""
    params = info.get("params", {})
    if "nprobe" in params and hasattr(index, "nprobe"):
        index.nprobe = int(params["nprobe"])
    if "efSearch" in params and hasattr(index, "hnsw"):
        index.hnsw.efSearch = int(params["efSearch"])


#: the faiss class each stored search kind is written as (:func:`build_faiss_index`)
STORED_CLASSES = {"exact": "IndexFlat", "ivf": "IndexIVFFlat", "hnsw": "IndexHNSWFlat"}


def _view(ptr, count: int, dtype) -> np.ndarray:
    """A numpy view of ``count`` items behind a faiss pointer (no copy; empty for none)."""
    return faiss.rev_swig_ptr(ptr, count) if count else np.zeros(0, dtype)


def structure_problem(index, kind: str) -> str | None:
    """What is wrong with the faiss structure of a search ``kind`` beside its vectors (read by
    :func:`stored_vectors`), or None: its class and metric (inner product); IVF: finite centroids, code size;
    HNSW: every link and the entry point a stored vector, the link offsets consistent."""
    want = STORED_CLASSES.get(kind)
    if want is None or not isinstance(index, getattr(faiss, want)):
        return f"holds faiss {type(index).__name__}, not {want or 'a structure'} (search kind {kind})"
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return f"ranks by metric {index.metric_type}, not the inner product"
    n = int(index.ntotal)
    if kind == "ivf":
        centroids = faiss.downcast_index(index.quantizer)
        if not isinstance(centroids, faiss.IndexFlat) or centroids.ntotal != index.nlist or centroids.d != index.d:
            return "has no flat quantizer of its nlist centroids"
        if not np.isfinite(_view(centroids.get_xb(), centroids.ntotal * centroids.d, np.float32)).all():
            return "holds NaN or infinite IVF centroids"
        if index.invlists.code_size != 4 * index.d or index.invlists.nlist != index.nlist:
            return "has inverted lists of another layout"
    elif kind == "hnsw":
        h = index.hnsw
        links = _view(h.neighbors.data(), h.neighbors.size(), np.int32)
        offsets = _view(h.offsets.data(), h.offsets.size(), np.uint64)
        if h.levels.size() != n or len(offsets) != n + 1 or (n and int(offsets[-1]) != len(links)) or \
                (n and bool((np.diff(offsets.astype(np.int64)) < 0).any())):
            return "has an HNSW graph of another size than its vectors"
        if (n and not 0 <= h.entry_point < n) or (links.size and not (-1 <= links.min() and links.max() < n)):
            return f"has HNSW links outside its {n} vectors"
    return None


def stored_vectors(index, chunk_rows: int = 65536):
    """Yield ``(ids, vectors)``: the vectors a faiss structure of :data:`STORED_CLASSES` holds (float32 rows) and
    the database ids they stand for - in blocks of ``chunk_rows`` rows for flat storage (views, no copy), one
    block per inverted list for IVF (copies). Check :func:`structure_problem` first."""
    if isinstance(index, faiss.IndexHNSW):
        index = faiss.downcast_index(index.storage)
    n, d = int(index.ntotal), int(index.d)
    if isinstance(index, faiss.IndexFlat):
        xb = _view(index.get_xb(), n * d, np.float32).reshape(n, d)
        for start in range(0, n, chunk_rows):
            yield np.arange(start, min(n, start + chunk_rows)), xb[start:start + chunk_rows]
        return
    lists = index.invlists  # IndexIVFFlat: each code is the vector's float32 bytes
    for li in range(index.nlist):
        size = int(lists.list_size(li))
        if size:
            code_ptr, id_ptr = lists.get_codes(li), lists.get_ids(li)
            codes = np.array(_view(code_ptr, size * lists.code_size, np.uint8))
            ids = np.array(_view(id_ptr, size, np.int64))
            lists.release_codes(li, code_ptr)
            lists.release_ids(li, id_ptr)
            yield ids, codes.view(np.float32).reshape(size, d)


class Searcher:
    """Top-k search over the index's descriptors, globally (faiss or numpy) or within a subset of tiles.

    ``device="cuda"`` moves exact/IVF faiss indexes to the GPU when faiss was built with GPU support
    (``faiss.get_num_gpus() > 0``); HNSW stays on the CPU (faiss has no GPU HNSW).
    """

    def __init__(self, descriptors: np.ndarray, index=None, device: str = "cpu"):
        self.descriptors = descriptors  # (N, D) float32, possibly memory-mapped
        self.index = index
        self.on_gpu = False
        if index is not None and device.startswith("cuda") and faiss_gpus() > 0 and \
                not isinstance(index, getattr(faiss, "IndexHNSW", ())):
            try:
                self._gpu_res = faiss.StandardGpuResources()
                self.index = faiss.index_cpu_to_gpu(self._gpu_res, 0, index)
                self.on_gpu = True
            except Exception as exc:  # noqa: BLE001 - fall back to the CPU index
                log.warning("faiss GPU transfer failed (%s); searching on the CPU", exc)

    def __len__(self) -> int:
        return int(self.descriptors.shape[0])

    def search(self, queries: np.ndarray, k: int, subset: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` of the top-``k`` tiles per query (``(Q, k')`` each), best first.

        ``subset`` (tile indices) restricts the search to those tiles (exact, numpy); ids stay global.
        """
        q = normalize(np.atleast_2d(queries))
        if subset is not None:
            subset = np.asarray(subset, dtype=np.int64)
            if subset.size == 0:
                return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
            s, i = numpy_topk(q, np.asarray(self.descriptors[np.sort(subset)], np.float32), k)
            return s, np.sort(subset)[i]
        if self.index is None:
            return numpy_topk(q, self.descriptors, k)
        k = min(int(k), len(self))
        s, i = self.index.search(q, k)
        return s.astype(np.float32), i.astype(np.int64)
