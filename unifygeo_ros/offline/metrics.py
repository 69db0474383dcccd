"""VIGOR evaluation metrics, pure numpy: each definition written next to the number, invariants asserted.

Retrieval (one positive tile per query, three semi-positives):

* **rank** of a query = 1 + the number of gallery tiles whose score is *strictly* above the positive's
  score. Semi-positives count against the query; ties go in the query's favour (VIGOR / Sample4Geo rule).
* **R@k** = fraction of queries with rank <= k (k = 1, 5, 10).
* **R@1%** = R@k with k = ``max(1, round(gallery_size / 100))``, rounding halves up (150 tiles -> k = 2).
  (Sample4Geo cuts at ``gallery_size // 100``; the original VIGOR code at ``int(0.01 * size) + 1``; the three
  agree on 1 % of real VIGOR galleries up to one tile.)
* **hit rate** = fraction of queries for which, once the three semi-positives are masked out, no remaining
  tile scores strictly above the positive (VIGOR's own rule; also Sample4Geo's and UnifyGeo's). Always
  >= R@1, since masking can only remove tiles from above the positive.

The similarity source is read in query chunks (:func:`rank_queries`), so a full Q x R matrix never exists
for a large gallery; the chunk size is derived from a byte budget.

Metric localization (:func:`metric_loc_metrics`): the error of a query is the Euclidean distance in metres
between the predicted and true camera positions in one planar (ENU) frame; reported as mean / median and
recall within 1/3/5 m (also 10/20 m for tables). The heading error is the absolute smallest angle between
predicted and true compass headings (:func:`unifygeo_ros.geo.angle_diff_deg`, in [0, 180] deg).

Hierarchical (retrieve top-K, localize against the candidates, optionally re-rank): the **r1** of a
hierarchy is the fraction of queries whose *selected* tile (top-1 of the list, after re-ranking if any) is
the positive tile itself; ties in that list are broken by gallery index, so it is never above the
retrieval R@1 (which counts ties optimistically) when no re-ranking is applied. A top-K re-ranking only
permutes the K candidates (:func:`assert_rerank_within_topk`), so its r1 is never above the retrieval R@K.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from unifygeo_ros.geo import angle_diff_deg

#: Rank cut-offs reported as R@k.
RECALL_KS = (1, 5, 10)
#: Metre thresholds for recall within d (the JSON carries 1/3/5; 10/20 go to the extended tables).
DISTANCE_THRESHOLDS_M = (1.0, 3.0, 5.0, 10.0, 20.0)
_JSON_THRESHOLDS_M = (1.0, 3.0, 5.0)
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


# ----------------------------------------------------------------------------------------------- metric
def position_errors_m(pred_en: np.ndarray, true_en: np.ndarray) -> np.ndarray:
    """Euclidean distance (metres) between predicted and true (east, north) positions, shape (N,)."""
    pred = np.asarray(pred_en, dtype=np.float64).reshape(-1, 2)
    true = np.asarray(true_en, dtype=np.float64).reshape(-1, 2)
    assert pred.shape == true.shape, f"{pred.shape} predictions for {true.shape} labels"
    return np.hypot(pred[:, 0] - true[:, 0], pred[:, 1] - true[:, 1])


def heading_errors_deg(pred_heading_deg: np.ndarray, true_heading_deg: np.ndarray) -> np.ndarray:
    """Absolute smallest difference between predicted and true compass headings, in [0, 180] deg."""
    err = np.atleast_1d(angle_diff_deg(pred_heading_deg, true_heading_deg))
    assert np.all((err >= 0.0) & (err <= 180.0))
    return err


@dataclass
class MetricLocMetrics:
    """Metric localization summary: metres and degrees, recalls as fractions in [0, 1].

    ``recall_m[d]`` = fraction of queries with error <= d metres. Heading fields are None when no heading
    was predicted (e.g. a position-only model).
    """

    mean_m: float
    median_m: float
    recall_m: dict[float, float]
    heading_median_deg: float | None
    heading_mean_deg: float | None
    count: int

    def __post_init__(self) -> None:
        assert self.mean_m >= 0.0 and self.median_m >= 0.0
        vals = [self.recall_m[d] for d in sorted(self.recall_m)]
        assert all(0.0 <= v <= 1.0 for v in vals)
        assert all(a <= b for a, b in zip(vals, vals[1:])), "recall within d must grow with d"
        if self.heading_median_deg is not None:
            assert 0.0 <= self.heading_median_deg <= 180.0 and 0.0 <= self.heading_mean_deg <= 180.0

    def recall(self, d_m: float) -> float:
        return self.recall_m[float(d_m)]

    def to_dict(self) -> dict[str, float | None]:
        """The JSON block: mean/median metres, recall within 1/3/5 m, heading median degrees."""
        out: dict[str, float | None] = {"mean_m": self.mean_m, "median_m": self.median_m}
        for d in _JSON_THRESHOLDS_M:
            out[f"recall_{d:g}m"] = self.recall_m[d]
        out["heading_median_deg"] = self.heading_median_deg
        return out

    def to_extended_dict(self) -> dict[str, float | None]:
        """Every figure: also recall within 10/20 m, the heading mean and the query count."""
        out = {"mean_m": self.mean_m, "median_m": self.median_m}
        for d in sorted(self.recall_m):
            out[f"recall_{d:g}m"] = self.recall_m[d]
        out["heading_median_deg"] = self.heading_median_deg
        out["heading_mean_deg"] = self.heading_mean_deg
        out["count"] = self.count
        return out


def metric_loc_metrics(
    errors_m: np.ndarray,
    heading_errors: np.ndarray | None = None,
    thresholds_m: tuple[float, ...] = DISTANCE_THRESHOLDS_M,
) -> MetricLocMetrics:
    """Summarise per-query position errors (metres) and, optionally, heading errors (degrees in [0, 180])."""
    err = np.asarray(errors_m, dtype=np.float64).reshape(-1)
    assert err.size > 0, "no errors to summarise"
    assert np.all(np.isfinite(err)) and np.all(err >= 0.0), "errors must be finite distances"
    thresholds = tuple(sorted(set(float(t) for t in thresholds_m) | set(_JSON_THRESHOLDS_M)))
    recall = {d: float(np.mean(err <= d)) for d in thresholds}
    h_med = h_mean = None
    if heading_errors is not None:
        h = np.asarray(heading_errors, dtype=np.float64).reshape(-1)
        assert h.shape == err.shape, "one heading error per position error"
        assert np.all((h >= 0.0) & (h <= 180.0)), "heading errors must lie in [0, 180] deg"
        h_med, h_mean = float(np.median(h)), float(np.mean(h))
    return MetricLocMetrics(float(err.mean()), float(np.median(err)), recall, h_med, h_mean, int(err.size))


@dataclass
class HierarchicalMetrics:
    """One hierarchy variant (with or without re-ranking): localization in the city frame + selected-tile R@1."""

    r1: float
    loc: MetricLocMetrics

    def __post_init__(self) -> None:
        assert 0.0 <= self.r1 <= 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.loc.to_dict(), "r1": self.r1}

    def to_extended_dict(self) -> dict[str, Any]:
        return {**self.loc.to_extended_dict(), "r1": self.r1}


# ----------------------------------------------------------------------------------------------- report
@dataclass
class EvalReport:
    """Everything ``unifygeo eval`` reports. :meth:`to_dict` is the JSON contract:

    ``{"retrieval": {r1, r5, r10, r1pct, hit}, "metric_isolated": {mean_m, median_m, recall_1m, recall_3m,
    recall_5m, heading_median_deg}, "hierarchical": {"no_rerank": {... + r1}, "rerank": {... + r1}},
    "queries": N}`` plus the extra keys in ``extra`` (gallery, config, checkpoint, timing) and ``extended``
    (recall within 10/20 m, heading means, counts, K). ``per_query`` (arrays) and ``examples`` (plot material)
    are never serialised.
    """

    retrieval: RetrievalMetrics
    metric_isolated: MetricLocMetrics
    hier_no_rerank: HierarchicalMetrics
    hier_rerank: HierarchicalMetrics
    queries: int
    top_k: int = 5
    extra: dict[str, Any] = field(default_factory=dict)
    per_query: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    examples: list = field(default_factory=list, repr=False)  # plot material (plots.LocalizationExample)

    def __post_init__(self) -> None:
        self.check_invariants()

    def check_invariants(self) -> None:
        """Cross-figure invariants (each figure's own ones are checked by its dataclass)."""
        r = self.retrieval
        assert r.queries == self.queries, "retrieval counted other queries"
        assert self.hier_no_rerank.r1 <= r.r1 + 1e-12, (
            "top-1 of the retrieved list is the positive more often than R@1 (ties count for R@1)")
        recall_k = self.per_query_recall_at_k()
        if recall_k is not None:
            assert self.hier_rerank.r1 <= recall_k + 1e-12, (
                f"re-ranked R@1 {self.hier_rerank.r1} above retrieval R@{self.top_k} {recall_k}: "
                "a tile from outside the top K moved in")

    def per_query_recall_at_k(self) -> float | None:
        ranks = self.per_query.get("rank")
        return None if ranks is None else recall_at(ranks, self.top_k)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "retrieval": self.retrieval.to_dict(),
            "metric_isolated": self.metric_isolated.to_dict(),
            "hierarchical": {"no_rerank": self.hier_no_rerank.to_dict(), "rerank": self.hier_rerank.to_dict()},
            "queries": self.queries,
        }
        out["extended"] = {
            "gallery_size": self.retrieval.gallery_size,
            "r1pct_k": self.retrieval.r1pct_k,
            "top_k": self.top_k,
            "metric_isolated": self.metric_isolated.to_extended_dict(),
            "hierarchical": {"no_rerank": self.hier_no_rerank.to_extended_dict(),
                             "rerank": self.hier_rerank.to_extended_dict()},
        }
        for key, value in self.extra.items():
            assert key not in out, f"extra key {key!r} would overwrite a metric"
            out[key] = value
        return out
