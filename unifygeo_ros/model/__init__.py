"""The UnifyGeo network: encoders, aggregator, metric head, re-ranker, losses and checkpoints."""
from unifygeo_ros.model.metric_head import MetricOutput, cell_to_offset, offset_to_cell
from unifygeo_ros.model.rerank import Reranker, rerank_candidates, rerank_evidence
from unifygeo_ros.model.unifygeo import AerialFeatures, GroundFeatures, UnifyGeo, build_model

__all__ = [
    "AerialFeatures", "GroundFeatures", "MetricOutput", "Reranker", "UnifyGeo", "build_model",
    "cell_to_offset", "offset_to_cell", "rerank_candidates", "rerank_evidence",
]
