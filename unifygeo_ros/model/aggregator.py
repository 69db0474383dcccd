"""Feature aggregator: semantic map -> global descriptor (retrieval).

Self-attention over the map's tokens weights each feature by its correlation with the others (so the patterns
that recur and matter for retrieval dominate), then generalised-mean pooling, a linear projection, LayerNorm and
L2 normalisation. No positional embedding: the descriptor of a panorama does not change when the panorama is
rolled (unknown heading), and an aerial tile's does not depend on where in the tile a structure sits.

With ``layout_hw`` (the known-orientation setting: north-aligned panoramas, as in VIGOR's standard protocol)
the aggregator keeps the layout instead: the map is pooled to a fixed ``layout_hw`` grid, a learned positional
embedding is added before self-attention, and the attended tokens are flattened into the projection, so the
descriptor says *where* (which azimuth / which part of the tile) each pattern sits. Cross-view, the shared cue is
geometry (where the roads, tall buildings and trees are around the camera), not appearance, so this is the
stronger descriptor whenever the heading is known; measured in BENCHMARKS.md.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class AttentionBlock(nn.Module):
    """Pre-norm transformer block (multi-head self-attention + MLP) over a token set."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.norm1(tokens)
        tokens = tokens + self.attn(h, h, h, need_weights=False)[0]
        return tokens + self.mlp(self.norm2(tokens))


class GeM(nn.Module):
    """Generalised mean over tokens with a learned exponent p (p=1: mean, p->inf: max) of positive values."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, C)
        p = self.p.clamp(1.0, 8.0)
        x = (F.elu(tokens) + 1.0).clamp(min=self.eps)  # positive, smooth
        return x.pow(p).mean(dim=1).pow(1.0 / p)


class AttentionAggregator(nn.Module):
    """(B, C, H, W) semantic map -> (B, D) L2-normalised global descriptor."""

    def __init__(self, dim: int, out_dim: int, layers: int = 1, heads: int = 4, gem_p: float = 3.0,
                 layout_hw: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.layout_hw = tuple(layout_hw) if layout_hw else None
        self.blocks = nn.ModuleList(AttentionBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        if self.layout_hw is None:
            self.pool = GeM(gem_p)
            self.proj = nn.Linear(dim, out_dim)
        else:
            n = self.layout_hw[0] * self.layout_hw[1]
            self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.02)
            self.proj = nn.Linear(n * dim, out_dim)
        self.out_norm = nn.LayerNorm(out_dim)

    def forward(self, semantic: torch.Tensor) -> torch.Tensor:
        if self.layout_hw is not None:
            semantic = F.adaptive_avg_pool2d(semantic, self.layout_hw)
        tokens = semantic.flatten(2).transpose(1, 2)  # (B, N, C)
        if self.layout_hw is not None:
            tokens = tokens + self.pos
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        pooled = tokens.flatten(1) if self.layout_hw is not None else self.pool(tokens)
        desc = self.out_norm(self.proj(pooled))
        return F.normalize(desc, dim=-1)
