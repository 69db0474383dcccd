"""Retrieval metrics, pure numpy: the similarity sources read in query chunks, the rank of each query's positive
tile, R@k, R@1% and the hit rate, and the checks of a top-K re-ranking (definitions in
:mod:`unifygeo_ros.offline.metrics`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: Rank cut-offs reported as R@k.
RECALL_KS = (1, 5, 10)
#: Default memory budget of one chunk of the similarity matrix (float64 bytes).
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024


# ----------------------------------------------------------------------------------------------- sources
class SimilaritySource(Protocol):
    """Anything that yields rows of the query x gallery score matrix (higher = more similar)."""

    num_queries: int
    gallery_size: int

    def __call__(self, start: int, stop: int) -> np.ndarray:
        """Scores of queries ``start:stop`` against every gallery tile, shape (stop - start, gallery_size)."""


@dataclass
class DescriptorSimilarity:
    """Dot-product similarity of query and gallery descriptors (cosine when both are L2-normalised)."""

    query_desc: np.ndarray  # (Q, D)
    gallery_desc: np.ndarray  # (R, D)

    def __post_init__(self) -> None:
        self.query_desc = np.asarray(self.query_desc)
        self.gallery_desc = np.asarray(self.gallery_desc)
        assert self.query_desc.ndim == 2 and self.gallery_desc.ndim == 2, "descriptors must be (N, D)"
        assert self.query_desc.shape[1] == self.gallery_desc.shape[1], "descriptor sizes differ"

    @property
    def num_queries(self) -> int:
        return int(self.query_desc.shape[0])

    @property
    def gallery_size(self) -> int:
        return int(self.gallery_desc.shape[0])

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.query_desc[start:stop] @ self.gallery_desc.T, dtype=np.float64)


@dataclass
class MatrixSimilarity:
    """A score matrix already in memory (tests, small galleries)."""

    scores: np.ndarray  # (Q, R)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        assert self.scores.ndim == 2, "scores must be (Q, R)"

    @property
    def num_queries(self) -> int:
        return int(self.scores.shape[0])

    @property
    def gallery_size(self) -> int:
        return int(self.scores.shape[1])

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return self.scores[start:stop]


def chunk_rows(gallery_size: int, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES, itemsize: int = 8) -> int:
    """Queries per chunk so that one (chunk, gallery_size) score block stays within ``max_chunk_bytes``."""
    return max(1, int(max_chunk_bytes) // max(1, int(gallery_size) * itemsize))


# ----------------------------------------------------------------------------------------------- retrieval
def recall_one_percent_cut(gallery_size: int) -> int:
    """k of R@1%: ``max(1, round(gallery_size / 100))`` with halves rounded up (integer arithmetic)."""
    assert gallery_size >= 1
    return max(1, (int(gallery_size) + 50) // 100)


def _normalise_semi(semi_indices: np.ndarray | None, num_queries: int) -> np.ndarray:
    if semi_indices is None:
        return np.full((num_queries, 0), -1, dtype=np.int64)
    semi = np.asarray(semi_indices, dtype=np.int64)
    if semi.ndim == 1:
        semi = semi[:, None]
    assert semi.shape[0] == num_queries, "one row of semi-positive indices per query"
    return semi


def topk_stable(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k gallery indices of each row, by score descending, ties broken by the lower gallery index.

    Vectorised without a full sort: the k-th largest score of each row is found with a partition, every
    tile at or above it is a candidate (k or more with ties), and the candidates are ordered by
    (row, -score, index). Returns (indices, scores), both (rows, k).
    """
    scores = np.asarray(scores)
    n, r = scores.shape
    k = int(min(k, r))
    assert k >= 1
    if n == 0:
        return np.zeros((0, k), np.int64), np.zeros((0, k), scores.dtype)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero(scores >= kth[:, None])
    vals = scores[rows, cols]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(n))
    pos_in_row = np.arange(rows.size) - starts[rows]
    keep = pos_in_row < k
    idx = cols[keep].reshape(n, k)
    return idx.astype(np.int64), vals[keep].reshape(n, k)


@dataclass
class RankResult:
    """Per-query outcome of one chunked pass over the similarity source."""

    ranks: np.ndarray  # (Q,) int, 1-based rank of the positive (ties optimistic)
    hits: np.ndarray  # (Q,) bool, hit-rate rule (semi-positives masked)
    topk_indices: np.ndarray  # (Q, K) int, gallery indices by score desc, ties by index
    topk_scores: np.ndarray  # (Q, K) float
    positive_scores: np.ndarray  # (Q,) float
    gallery_size: int


def rank_queries(
    source: SimilaritySource,
    positive_indices: np.ndarray,
    semi_indices: np.ndarray | None = None,
    top_k: int = 10,
    chunk_size: int | None = None,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> RankResult:
    """Rank of each query's positive, hit flag and top-K list, reading ``source`` in query chunks.

    ``positive_indices[q]`` is the gallery index of the tile containing query q; ``semi_indices[q]`` the
    gallery indices of its semi-positives (-1 pads rows with fewer than three, e.g. a neighbour missing from
    the gallery). Ranks and hits follow the module's definitions; see :func:`topk_stable` for the list.
    """
    q_total, r_total = int(source.num_queries), int(source.gallery_size)
    pos = np.asarray(positive_indices, dtype=np.int64).reshape(-1)
    assert pos.shape == (q_total,), f"{pos.shape[0]} positive indices for {q_total} queries"
    assert r_total >= 1, "empty gallery"
    assert np.all((pos >= 0) & (pos < r_total)), "positive index outside the gallery"
    semi = _normalise_semi(semi_indices, q_total)
    assert np.all((semi >= -1) & (semi < r_total)), "semi-positive index outside the gallery (-1 pads)"
    assert not np.any(semi == pos[:, None]), "a semi-positive equals the positive"
    k = int(min(top_k, r_total))
    step = int(chunk_size) if chunk_size else chunk_rows(r_total, max_chunk_bytes)
    assert step >= 1

    ranks = np.empty(q_total, np.int64)
    hits = np.empty(q_total, bool)
    top_idx = np.empty((q_total, k), np.int64)
    top_val = np.empty((q_total, k), np.float64)
    pos_val = np.empty(q_total, np.float64)
    for start in range(0, q_total, step):
        stop = min(q_total, start + step)
        s = np.asarray(source(start, stop), dtype=np.float64)
        assert s.shape == (stop - start, r_total), f"source returned {s.shape}, expected {(stop - start, r_total)}"
        assert np.all(np.isfinite(s)), "non-finite similarity scores"
        rows = np.arange(stop - start)
        p = s[rows, pos[start:stop]]
        above = s > p[:, None]
        ranks[start:stop] = 1 + above.sum(axis=1)
        sm = semi[start:stop]
        r_i, c_i = np.nonzero(sm >= 0)
        above[r_i, sm[r_i, c_i]] = False
        hits[start:stop] = ~above.any(axis=1)
        top_idx[start:stop], top_val[start:stop] = topk_stable(s, k)
        pos_val[start:stop] = p
    assert np.all(ranks >= 1) and np.all(ranks <= r_total)
    assert np.all(hits[ranks == 1]), "rank 1 must be a hit"
    return RankResult(ranks, hits, top_idx, top_val, pos_val, r_total)


@dataclass
class RetrievalMetrics:
    """Retrieval recalls and hit rate, fractions in [0, 1] (definitions in the module docstring)."""

    r1: float
    r5: float
    r10: float
    r1pct: float
    hit: float
    queries: int
    gallery_size: int
    r1pct_k: int

    def __post_init__(self) -> None:
        for name in ("r1", "r5", "r10", "r1pct", "hit"):
            v = getattr(self, name)
            assert 0.0 <= v <= 1.0, f"{name}={v} outside [0, 1]"
        assert self.hit >= self.r1, f"hit rate {self.hit} < R@1 {self.r1}"
        assert self.r1 <= self.r5 <= self.r10, f"R@1 {self.r1} <= R@5 {self.r5} <= R@10 {self.r10} violated"

    def to_dict(self) -> dict[str, float]:
        return {"r1": self.r1, "r5": self.r5, "r10": self.r10, "r1pct": self.r1pct, "hit": self.hit}


def recall_at(ranks: np.ndarray, k: int) -> float:
    """R@k = fraction of queries with rank <= k."""
    ranks = np.asarray(ranks)
    return float(np.mean(ranks <= k)) if ranks.size else float("nan")


def retrieval_metrics(ranks: np.ndarray, hits: np.ndarray, gallery_size: int) -> RetrievalMetrics:
    """:class:`RetrievalMetrics` from per-query ranks and hit flags (see :func:`rank_queries`)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    hits = np.asarray(hits, dtype=bool)
    assert ranks.shape == hits.shape and ranks.size > 0, "need one rank and one hit flag per query"
    assert np.all(hits[ranks == 1]), "rank 1 must be a hit"
    cut = recall_one_percent_cut(gallery_size)
    return RetrievalMetrics(
        r1=recall_at(ranks, 1),
        r5=recall_at(ranks, 5),
        r10=recall_at(ranks, 10),
        r1pct=recall_at(ranks, cut),
        hit=float(np.mean(hits)),
        queries=int(ranks.size),
        gallery_size=int(gallery_size),
        r1pct_k=cut,
    )


def evaluate_retrieval(
    source: SimilaritySource,
    positive_indices: np.ndarray,
    semi_indices: np.ndarray | None = None,
    chunk_size: int | None = None,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> RetrievalMetrics:
    """Chunked retrieval metrics straight from a similarity source."""
    res = rank_queries(source, positive_indices, semi_indices, top_k=1, chunk_size=chunk_size,
                       max_chunk_bytes=max_chunk_bytes)
    return retrieval_metrics(res.ranks, res.hits, res.gallery_size)


# ----------------------------------------------------------------------------------------------- re-ranking
def assert_rerank_within_topk(topk_before: np.ndarray, topk_after: np.ndarray) -> None:
    """A top-K re-ranking only permutes each query's K candidates: no tile outside the top K moves in.

    Hence a positive that was outside the top K cannot become the re-ranked top-1.
    """
    before = np.sort(np.asarray(topk_before), axis=1)
    after = np.sort(np.asarray(topk_after), axis=1)
    assert before.shape == after.shape, f"re-ranked list {after.shape} vs retrieved {before.shape}"
    bad = np.nonzero(np.any(before != after, axis=1))[0]
    assert bad.size == 0, f"re-ranking changed the candidate set of {bad.size} queries (first: {bad[:5]})"


def selected_is_positive(selected: np.ndarray, positive_indices: np.ndarray) -> np.ndarray:
    """Per query: the tile selected by the hierarchy is the positive tile (semi-positives do not count)."""
    return np.asarray(selected).reshape(-1) == np.asarray(positive_indices).reshape(-1)


__all__ = ["DEFAULT_CHUNK_BYTES", "RECALL_KS", "DescriptorSimilarity", "MatrixSimilarity", "RankResult",
           "RetrievalMetrics", "SimilaritySource", "assert_rerank_within_topk", "chunk_rows", "evaluate_retrieval",
           "rank_queries", "recall_at", "recall_one_percent_cut", "retrieval_metrics", "selected_is_positive",
           "topk_stable"]
