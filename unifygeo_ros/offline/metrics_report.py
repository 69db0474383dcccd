"""The figures ``unifygeo eval`` reports, gathered: :class:`EvalReport`, its cross-figure invariants and its JSON
contract (the figures themselves: :mod:`~unifygeo_ros.offline.retrieval_metrics`,
:mod:`~unifygeo_ros.offline.localization_metrics`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unifygeo_ros.offline.localization_metrics import HierarchicalMetrics, MetricLocMetrics
from unifygeo_ros.offline.retrieval_metrics import RetrievalMetrics, recall_at


# ----------------------------------------------------------------------------------------------- report
@dataclass
class EvalReport:
    """Everything ``unifygeo eval`` reports. :meth:`to_dict` is the JSON contract:

    ``{"retrieval": {r1, r5, r10, r1pct, hit}, "metric_isolated": {mean_m, median_m, recall_1m, recall_3m,
    recall_5m, heading_median_deg}, "hierarchical": {"no_rerank": {... + r1}, "rerank": {... + r1}},
    "queries": N}`` plus the extra keys in ``extra`` (gallery, config, checkpoint, timing) and ``extended``
    (recall within 10/20 m, heading means, counts, K). ``per_query`` (arrays) and ``examples`` (plot material)
    are never serialised. The hierarchical recalls are the lenient ones (any selected tile); when both variants
    carry the strict ones, ``"hierarchical_strict": {"no_rerank": {recall_strict_1m, recall_strict_3m,
    recall_strict_5m}, "rerank": {...}}`` holds them (10/20 m in ``extended.hierarchical_strict``): the selected
    tile is the positive and the error <= d, UnifyGeo's rule (:mod:`unifygeo_ros.offline.metrics`).
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
        variants = {"no_rerank": self.hier_no_rerank, "rerank": self.hier_rerank}
        if all(v.recall_strict_m is not None for v in variants.values()):
            out["hierarchical_strict"] = {k: v.strict_dict() for k, v in variants.items()}
            out["extended"]["hierarchical_strict"] = {k: v.strict_dict(extended=True) for k, v in variants.items()}
        for key, value in self.extra.items():
            assert key not in out, f"extra key {key!r} would overwrite a metric"
            out[key] = value
        return out


__all__ = ["EvalReport"]
