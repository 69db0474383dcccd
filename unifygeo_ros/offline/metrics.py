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

Hierarchical recall within d, two rules (both in every report):

* **lenient** (``hierarchical.<variant>.recall_{d}m``): error <= d, the error measured in the city frame from
  whichever tile was selected, so a fix from a neighbouring or semi-positive tile that lands near the camera
  counts. This is the project's own figure; it is not UnifyGeo's.
* **strict** (``hierarchical_strict.<variant>.recall_strict_{d}m``, :func:`strict_recall_m`): the selected tile
  (the top-1 that r1 counts) is the positive **and** the error is <= d - UnifyGeo's official rule (after
  LF-CVGL), the one its published hierarchical recall (39.64 % / 25.58 % within 1 m) uses. Always <= the lenient
  recall and <= r1.

Where it lives: :mod:`~unifygeo_ros.offline.retrieval_metrics` (similarity sources, ranks, recalls, hit rate,
re-ranking checks), :mod:`~unifygeo_ros.offline.localization_metrics` (position / heading errors, their summary,
hierarchical figures), :mod:`~unifygeo_ros.offline.metrics_report` (:class:`EvalReport`); all importable from here.
"""
from __future__ import annotations

from unifygeo_ros.offline.localization_metrics import (DISTANCE_THRESHOLDS_M, JSON_THRESHOLDS_M, HierarchicalMetrics,
                                                       MetricLocMetrics, heading_errors_deg, metric_loc_metrics,
                                                       position_errors_m, strict_key, strict_recall_m)
from unifygeo_ros.offline.metrics_report import EvalReport
from unifygeo_ros.offline.retrieval_metrics import (DEFAULT_CHUNK_BYTES, RECALL_KS, DescriptorSimilarity,
                                                    MatrixSimilarity, RankResult, RetrievalMetrics, SimilaritySource,
                                                    assert_rerank_within_topk, chunk_rows, evaluate_retrieval,
                                                    rank_queries, recall_at, recall_one_percent_cut,
                                                    retrieval_metrics, selected_is_positive, topk_stable)

#: the former private name of :data:`JSON_THRESHOLDS_M`
_JSON_THRESHOLDS_M = JSON_THRESHOLDS_M

__all__ = ["DEFAULT_CHUNK_BYTES", "DISTANCE_THRESHOLDS_M", "JSON_THRESHOLDS_M", "RECALL_KS", "DescriptorSimilarity",
           "EvalReport", "HierarchicalMetrics", "MatrixSimilarity", "MetricLocMetrics", "RankResult",
           "RetrievalMetrics", "SimilaritySource", "assert_rerank_within_topk", "chunk_rows", "evaluate_retrieval",
           "heading_errors_deg", "metric_loc_metrics", "position_errors_m", "rank_queries", "recall_at",
           "recall_one_percent_cut", "retrieval_metrics", "selected_is_positive", "strict_key", "strict_recall_m",
           "topk_stable"]
