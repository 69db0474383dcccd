"""The decoupled baseline UnifyGeo is measured against: two separately trained networks.

Prior hierarchical systems use one model for retrieval and another for metric localization. This wrapper
combines a *retrieval-only* checkpoint (trained with the InfoNCE loss alone) and a *localization-only* checkpoint
(position + orientation losses alone) behind the same inference API as :class:`~unifygeo_ros.model.unifygeo.UnifyGeo`,
so :func:`unifygeo_ros.offline.evaluate.evaluate` scores both systems with the same code. There is no trained re-ranker
in a decoupled system: :meth:`rerank_scores` returns the retrieval cosine, so "re-ranked" equals retrieval order.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from unifygeo_ros.model.unifygeo import AerialFeatures, GroundFeatures, UnifyGeo


class DecoupledModel(nn.Module):
    """Retrieval from ``retrieval``'s global descriptors, metric localization from ``localization``'s head."""

    def __init__(self, retrieval: UnifyGeo, localization: UnifyGeo) -> None:
        super().__init__()
        for name in ("aerial_px", "ground_hw"):
            a, b = getattr(retrieval.cfg, name), getattr(localization.cfg, name)
            if a != b:
                raise ValueError(f"decoupled models disagree on model.{name}: {a} vs {b}")
        self.retrieval = retrieval
        self.localization = localization
        self.cfg = localization.cfg

    def encode_ground(self, x: torch.Tensor) -> GroundFeatures:
        return GroundFeatures(self.retrieval.encode_ground(x).descriptor, self.localization.encode_ground(x).sectors)

    def encode_aerial(self, x: torch.Tensor) -> AerialFeatures:
        return AerialFeatures(self.retrieval.encode_aerial(x).descriptor, self.localization.encode_aerial(x).cells)

    similarity = staticmethod(UnifyGeo.similarity)

    def localize(self, ground: GroundFeatures, aerial: AerialFeatures):
        return self.localization.localize(ground, aerial)

    def rerank_scores(self, ground: GroundFeatures, aerial: AerialFeatures, metric=None) -> torch.Tensor:
        """No learned re-ranking: the retrieval cosine (keeps the retrieval order)."""
        if len(ground) == len(aerial):
            return (ground.descriptor * aerial.descriptor).sum(-1)
        return aerial.descriptor @ ground.descriptor[0]
