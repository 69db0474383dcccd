"""UnifyGeo: one network whose parameters serve retrieval and metric localization, plus a learned re-ranker.

Inference API (what the index, the localizer and the evaluation call)::

    g = model.encode_ground(pano)        # (B, 3, Hg, Wg) normalised -> GroundFeatures
    a = model.encode_aerial(tiles)       # (B, C, A, A) normalised   -> AerialFeatures (cacheable, .cpu()/.half())
                                         # C = 3, or 4 with model.aerial_height (RGB + surface height)
    sim = model.similarity(g, a)         # (Bg, Ba) cosine
    m = model.localize(g, a)             # pairs g[i] with a[i]; a ground batch of 1 broadcasts over K tiles
    m.peak_offset_en_m(tile_m), m.heading_deg(), m.covariance_m2(tile_m)
    scores = model.rerank_scores(g, a_topk)   # one query vs its K candidates -> (K,)

Inputs are ImageNet-normalised float tensors: panoramas in geo.py's convention (column azimuth relative to the
heading), aerial tiles north-up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn as nn

from unifygeo_ros.config import ConfigError, ModelConfig, validate_model
from unifygeo_ros.model.aggregator import AttentionAggregator
from unifygeo_ros.model.encoder import ViewEncoder
from unifygeo_ros.model.metric_head import AerialMatchHead, GroundMatchHead, MetricHead, MetricOutput
from unifygeo_ros.model.rerank import Reranker, evidence_names, rerank_evidence


class _Features:
    """Batch-indexable, device-movable bundle of tensors / lists of tensors."""

    def _map(self, fn):
        kwargs = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            kwargs[f.name] = [fn(t) for t in v] if isinstance(v, list) else fn(v)
        return type(self)(**kwargs)

    def select(self, index) -> "_Features":
        """The features of batch entries ``index`` (int tensor, list or slice)."""
        return self._map(lambda t: t[index])

    def to(self, *args, **kwargs) -> "_Features":
        return self._map(lambda t: t.to(*args, **kwargs))

    def __len__(self) -> int:
        return self.descriptor.shape[0]  # type: ignore[attr-defined]


def cat_features(parts: list[_Features]) -> _Features:
    """Concatenate feature bundles of one type along the batch (lists of tensors level by level)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    kwargs = {}
    for f in fields(first):  # type: ignore[arg-type]
        vals = [getattr(p, f.name) for p in parts]
        if isinstance(vals[0], list):
            kwargs[f.name] = [torch.cat([v[level] for v in vals]) for level in range(len(vals[0]))]
        else:
            kwargs[f.name] = torch.cat(vals)
    return type(first)(**kwargs)


@dataclass
class GroundFeatures(_Features):
    """descriptor: (B, D) L2-normalised global descriptor; sectors: per matching level (coarse to fine),
    (B, S, d) azimuth-sector matching descriptors (L2-normalised over S*d)."""

    descriptor: torch.Tensor
    sectors: list


@dataclass
class AerialFeatures(_Features):
    """descriptor: (B, D) L2-normalised global descriptor; cells: per matching level (coarse to fine),
    (B, S*d, h_l, w_l) directional descriptors per cell (L2-normalised per cell)."""

    descriptor: torch.Tensor
    cells: list


class UnifyGeo(nn.Module):
    """The network. With ``cfg.share_views`` the ground and aerial branches are one module (registered once:
    ``ground_encoder`` / ``ground_aggregator``), otherwise two of the same architecture (pseudo-Siamese)."""

    def __init__(self, cfg: ModelConfig, init_temperature: float = 0.07, learn_temperature: bool = True,
                 load_pretrained: bool = True) -> None:
        super().__init__()
        validate_model(cfg)
        self.cfg = cfg
        self.ground_encoder = ViewEncoder(cfg, load_pretrained=load_pretrained)
        _check_input_sizes(cfg, self.ground_encoder.trunk.reductions)
        layout = cfg.descriptor_layout
        agg = lambda hw: AttentionAggregator(cfg.semantic_dim, cfg.descriptor_dim,  # noqa: E731
                                             cfg.aggregator_layers, cfg.aggregator_heads, cfg.gem_p,
                                             layout_hw=hw)
        self.ground_aggregator = agg(tuple(cfg.ground_layout_hw) if layout else None)
        if not cfg.share_views:
            self.aerial_encoder_ = ViewEncoder(cfg, 4 if cfg.aerial_height else 3, load_pretrained)
            self.aerial_aggregator_ = agg(tuple(cfg.aerial_layout_hw) if layout else None)
        levels = len(cfg.metric_strides)
        self.ground_match = GroundMatchHead(cfg.decoder_dim, levels, cfg.orientation_bins, cfg.match_dim,
                                            cfg.ground_elevation_bins)
        self.aerial_match = AerialMatchHead(cfg.decoder_dim, levels, cfg.orientation_bins, cfg.match_dim)
        self.metric = MetricHead(cfg.orientation_bins, cfg.refine_window, cfg.heading_window)
        self.reranker = Reranker(cfg.rerank_hidden, len(evidence_names(cfg.rerank_centre)))
        # CLIP-style learnable InfoNCE temperature (logit scale = 1 / T); part of the model so DDP syncs it
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)),
                                            requires_grad=learn_temperature)

    @property
    def aerial_channels(self) -> int:
        """Channels of the aerial input: 3 (RGB) or 4 (RGB + surface height, ``model.aerial_height``)."""
        return 4 if self.cfg.aerial_height else 3

    @property
    def aerial_encoder(self) -> ViewEncoder:
        return self.ground_encoder if self.cfg.share_views else self.aerial_encoder_

    @property
    def aerial_aggregator(self) -> AttentionAggregator:
        return self.ground_aggregator if self.cfg.share_views else self.aerial_aggregator_

    # ---- encoders ---------------------------------------------------------------------------------------------
    def encode_ground(self, x: torch.Tensor) -> GroundFeatures:
        semantic, fine = self.ground_encoder(x, wrap=self.cfg.circular_ground)
        return GroundFeatures(self.ground_aggregator(semantic), self.ground_match(fine))

    def encode_aerial(self, x: torch.Tensor) -> AerialFeatures:
        semantic, fine = self.aerial_encoder(x, wrap=False)
        return AerialFeatures(self.aerial_aggregator(semantic), self.aerial_match(fine))

    # ---- heads ------------------------------------------------------------------------------------------------
    @staticmethod
    def similarity(ground: GroundFeatures, aerial: AerialFeatures) -> torch.Tensor:
        """(Bg, Ba) cosine similarity of the global descriptors."""
        return ground.descriptor @ aerial.descriptor.t()

    def localize(self, ground: GroundFeatures, aerial: AerialFeatures) -> MetricOutput:
        """Metric localization of ground[i] in aerial[i]; a ground batch of 1 is matched against every tile."""
        sectors = ground.sectors
        if len(ground) != len(aerial):
            if len(ground) != 1:
                raise ValueError(f"localize: {len(ground)} ground vs {len(aerial)} aerial features "
                                 "(pair them, or pass a single ground query)")
            sectors = [s.expand(len(aerial), *s.shape[1:]) for s in sectors]
        cells = [c.to(sectors[0].dtype) for c in aerial.cells]
        return self.metric(sectors, cells)

    def rerank_scores(self, ground: GroundFeatures, aerial: AerialFeatures,
                      metric: MetricOutput | None = None) -> torch.Tensor:
        """Re-rank scores of paired (or one-vs-K broadcast) ground/aerial features; higher = more likely."""
        if metric is None:
            metric = self.localize(ground, aerial)
        cos = (ground.descriptor * aerial.descriptor).sum(-1) if len(ground) == len(aerial) \
            else (aerial.descriptor @ ground.descriptor[0])
        return self.rerank_from(cos, metric)

    def rerank_from(self, global_cosine: torch.Tensor, metric: MetricOutput) -> torch.Tensor:
        """Re-rank scores from the pairs' global cosines and metric outputs (the one place evidence is built)."""
        return self.reranker(rerank_evidence(global_cosine, metric, centre=self.cfg.rerank_centre))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.exp().clamp(max=100.0)

    def forward(self, ground: torch.Tensor, aerial: torch.Tensor) -> tuple[GroundFeatures, AerialFeatures]:
        return self.encode_ground(ground), self.encode_aerial(aerial)


def _check_input_sizes(cfg: ModelConfig, reductions: list[int]) -> None:
    """Each input side must cover at least one cell of the trunk's coarsest stage (else the forward pass fails)."""
    coarsest = max(reductions)
    for key, sides in (("ground_hw", list(cfg.ground_hw)), ("aerial_px", [cfg.aerial_px])):
        if min(sides) < coarsest:
            raise ConfigError(f"model.{key} must be at least {coarsest} px (the coarsest stride of "
                              f"{cfg.backbone}), got {cfg.ground_hw if key == 'ground_hw' else cfg.aerial_px}")


def build_model(cfg, load_pretrained: bool = True) -> UnifyGeo:
    """A model from a full :class:`~unifygeo_ros.config.Config` (model + loss temperature) or a ModelConfig.

    ``load_pretrained=False`` ignores ``model.pretrained`` / ``pretrained_file`` (the weights come from a
    checkpoint); True (training) takes them from a local file and never from the network.
    """
    if hasattr(cfg, "model"):
        return UnifyGeo(cfg.model, cfg.loss.init_temperature, cfg.loss.learn_temperature, load_pretrained)
    return UnifyGeo(cfg, load_pretrained=load_pretrained)
