"""Metric localization head (CCVPE-style dense matching with orientation hypotheses).

Geometry (one place, used for the training target and for every readout):
    a map of ``h x w`` cells covers the tile; cell (row i, col j) has its centre at
    ``east = ((j + 0.5) / w - 0.5) * tile_m`` and ``north = (0.5 - (i + 0.5) / h) * tile_m``
    (north-up: row grows southwards, column eastwards), see :func:`offset_to_cell` / :func:`cell_to_offset`.

Orientation. The panorama is cut into ``S`` azimuth sectors (sector ``s`` is centred at relative azimuth
``((s + 0.5) / S - 0.5) * 360`` from the camera heading, geo.py's column convention), each with a ``d``-dim
descriptor. Every aerial cell carries ``S`` directional descriptors, direction ``k`` standing for compass azimuth
``((k + 0.5) / S - 0.5) * 360``. Heading hypothesis ``r`` (compass heading ``r * 360 / S``) pairs sector ``s`` with
direction ``(s + r) mod S``; the cosine of the two concatenated descriptors gives a rotation volume
``V[b, r, i, j]``. Position logits = a learned-scale soft maximum over ``r``; the heading vector of a cell =
the softmax(r)-weighted mean of the unit vectors of the hypotheses (then continuous, not binned).
Known orientation (``heading_window`` N >= 0): the panorama arrives rolled to north, so only the hypotheses
within N bins of heading 0 are kept (N = 0: the given heading alone). The other hypotheses can only let a wrong
tile match a rotated panorama: dropping them sharpens the map and the re-ranking evidence (BENCHMARKS.md).
Heading vectors are ``(east, north)`` components: ``(sin h, cos h)`` for compass heading ``h``.
Levels (coarse to fine) are fused by upsampling their volumes to the finest grid and averaging.
"""
from __future__ import annotations

import math
from functools import cached_property
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- geometry -----------------------------------------------------------------------------------------------
def offset_to_cell(offset_en_m: torch.Tensor, tile_m, hw: tuple[int, int]) -> torch.Tensor:
    """(..., 2) east/north metres from the tile centre -> (..., 2) continuous (row, col) cell coordinates."""
    h, w = hw
    tile_m = torch.as_tensor(tile_m, dtype=offset_en_m.dtype, device=offset_en_m.device)
    if tile_m.ndim:
        tile_m = tile_m[..., None]
    u = offset_en_m / tile_m
    col = (u[..., 0] + 0.5) * w - 0.5
    row = (0.5 - u[..., 1]) * h - 0.5
    return torch.stack([row, col], dim=-1)


def cell_to_offset(cell_rc: torch.Tensor, tile_m, hw: tuple[int, int]) -> torch.Tensor:
    """(..., 2) continuous (row, col) cell coordinates -> (..., 2) east/north metres from the tile centre."""
    h, w = hw
    tile_m = torch.as_tensor(tile_m, dtype=cell_rc.dtype, device=cell_rc.device)
    east = ((cell_rc[..., 1] + 0.5) / w - 0.5) * tile_m
    north = (0.5 - (cell_rc[..., 0] + 0.5) / h) * tile_m
    return torch.stack([east, north], dim=-1)


def heading_to_vector(heading_deg: torch.Tensor) -> torch.Tensor:
    """Compass heading (deg) -> (..., 2) unit (east, north) vector."""
    rad = torch.deg2rad(heading_deg)
    return torch.stack([torch.sin(rad), torch.cos(rad)], dim=-1)


def vector_to_heading(vec_en: torch.Tensor) -> torch.Tensor:
    """(..., 2) (east, north) vector -> compass heading in [-180, 180) deg."""
    deg = torch.rad2deg(torch.atan2(vec_en[..., 0], vec_en[..., 1]))
    return torch.remainder(deg + 180.0, 360.0) - 180.0


# ---- output -------------------------------------------------------------------------------------------------
@dataclass
class MetricOutput:
    """Metric localization of B (ground, aerial) pairs on the finest grid (h x w cells over the tile).

    Attributes:
        logits: (B, h, w) position logits (softmax over all cells = probability of the camera's cell).
        heading_vectors: (B, 2, h, w) (east, north) heading vector at each cell: the mean of the heading
            hypotheses' unit vectors under their softmax, so its length (0..1) is the confidence; its direction
            is the heading (``heading_unit`` normalises it).
        level_logits: per matching level (coarse to fine), (B, h_l, w_l) logits; trained with deep supervision.
        local_score: (B,) max over coarsest-level cells and heading hypotheses of the descriptor cosine
            (the official code's local matching score, used by the re-ranker).
    """

    logits: torch.Tensor
    heading_vectors: torch.Tensor
    level_logits: list
    local_score: torch.Tensor
    refine_window: int = 5

    @property
    def grid_hw(self) -> tuple[int, int]:
        return tuple(self.logits.shape[-2:])  # type: ignore[return-value]

    @property
    def heading_unit(self) -> torch.Tensor:
        """(B, 2, h, w) unit (east, north) heading vectors."""
        return F.normalize(self.heading_vectors.float(), dim=1)

    @cached_property
    def probabilities(self) -> torch.Tensor:
        """(B, h, w) softmax over each map's cells (computed once per output: the outputs are not mutated)."""
        b = self.logits.shape[0]
        return torch.softmax(self.logits.reshape(b, -1).float(), dim=-1).reshape(self.logits.shape)

    def entropy(self) -> torch.Tensor:
        """(B,) entropy of the position map divided by log(h*w): 0 = one cell, 1 = uniform."""
        b = self.logits.shape[0]
        logp = torch.log_softmax(self.logits.reshape(b, -1).float(), dim=-1)
        return -(logp.exp() * logp).sum(-1) / math.log(logp.shape[-1])

    def peak_logprob(self) -> torch.Tensor:
        """(B,) log-probability of the most likely cell."""
        b = self.logits.shape[0]
        return torch.log_softmax(self.logits.reshape(b, -1).float(), dim=-1).max(-1).values

    def peak_cell(self) -> torch.Tensor:
        """(B, 2) continuous (row, col) of the peak, refined by a soft-argmax in a window around it."""
        return self._peak_cell

    @cached_property
    def _peak_cell(self) -> torch.Tensor:
        prob = self.probabilities
        b, h, w = prob.shape
        idx = prob.reshape(b, -1).argmax(-1)
        r0, c0 = idx // w, idx % w
        k = self.refine_window // 2
        offs = torch.arange(-k, k + 1, device=prob.device)
        rows = (r0[:, None] + offs[None]).clamp(0, h - 1)  # (B, win)
        cols = (c0[:, None] + offs[None]).clamp(0, w - 1)
        valid_r = ((r0[:, None] + offs[None]) >= 0) & ((r0[:, None] + offs[None]) < h)
        valid_c = ((c0[:, None] + offs[None]) >= 0) & ((c0[:, None] + offs[None]) < w)
        win = prob[torch.arange(b, device=prob.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
        win = win * (valid_r[:, :, None] & valid_c[:, None, :])
        win = win / win.sum((1, 2), keepdim=True).clamp(min=1e-12)
        row = (win.sum(2) * rows).sum(1)
        col = (win.sum(1) * cols).sum(1)
        return torch.stack([row.float(), col.float()], dim=-1)

    def peak_offset_en_m(self, tile_m) -> torch.Tensor:
        """(B, 2) east/north metres of the refined peak from the tile centre."""
        return cell_to_offset(self.peak_cell(), tile_m, self.grid_hw)

    def expected_offset_en_m(self, tile_m) -> torch.Tensor:
        """(B, 2) east/north metres: expectation of the cell centres under the whole probability map."""
        prob = self.probabilities
        h, w = self.grid_hw
        rows = torch.arange(h, device=prob.device, dtype=prob.dtype)
        cols = torch.arange(w, device=prob.device, dtype=prob.dtype)
        rc = torch.stack([(prob.sum(2) * rows).sum(1), (prob.sum(1) * cols).sum(1)], dim=-1)
        return cell_to_offset(rc, tile_m, self.grid_hw)

    def covariance_m2(self, tile_m) -> torch.Tensor:
        """(B, 2, 2) east/north covariance (m^2) of the map about the refined peak, plus the cell's own
        uniform variance (cell^2 / 12). A multimodal map gives a large covariance, as it should."""
        prob = self.probabilities
        b, h, w = prob.shape
        tile = torch.as_tensor(tile_m, dtype=prob.dtype, device=prob.device).reshape(-1).expand(b)
        peak = self.peak_cell()
        rows = torch.arange(h, device=prob.device, dtype=prob.dtype)
        cols = torch.arange(w, device=prob.device, dtype=prob.dtype)
        d_east = ((cols[None, :] - peak[:, 1:2]) * (tile / w)[:, None])[:, None, :].expand(b, h, w)
        d_north = (-(rows[None, :] - peak[:, 0:1]) * (tile / h)[:, None])[:, :, None].expand(b, h, w)
        d = torch.stack([d_east, d_north], dim=-1)
        cov = torch.einsum("bhw,bhwi,bhwj->bij", prob, d, d)
        cell_var = torch.stack([(tile / w) ** 2, (tile / h) ** 2], -1) / 12.0
        return cov + torch.diag_embed(cell_var)

    def heading_vector_at(self, cell_rc: torch.Tensor) -> torch.Tensor:
        """(B, 2) unit heading vector at the (nearest) cell to continuous (row, col) ``cell_rc``."""
        h, w = self.grid_hw
        r = cell_rc[:, 0].round().long().clamp(0, h - 1)
        c = cell_rc[:, 1].round().long().clamp(0, w - 1)
        v = self.heading_vectors[torch.arange(len(r), device=r.device), :, r, c]
        return F.normalize(v.float(), dim=-1)

    def heading_deg(self) -> torch.Tensor:
        """(B,) compass heading (deg, [-180, 180)) of the panorama's centre column, read at the peak cell."""
        return vector_to_heading(self.heading_vector_at(self.peak_cell()))


# ---- heads --------------------------------------------------------------------------------------------------
class AerialMatchHead(nn.Module):
    """Per matching level: decoder map -> ``S * d`` directional descriptor per cell (L2-normalised per cell)."""

    def __init__(self, dim: int, levels: int, bins: int, match_dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(dim, bins * match_dim, 1) for _ in range(levels))

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [F.normalize(p(m), dim=1) for p, m in zip(self.proj, maps)]


class GroundMatchHead(nn.Module):
    """Per matching level: panorama map -> (S, d) sector descriptors, L2-normalised over all S*d values.

    Each of the S azimuth sectors is pooled into ``elevation_bins`` bands, and a linear layer shared by the
    sectors maps the bands to ``d`` values: rolling the panorama by whole sectors rolls the descriptors.
    """

    def __init__(self, dim: int, levels: int, bins: int, match_dim: int, elevation_bins: int) -> None:
        super().__init__()
        self.bins, self.elev = bins, elevation_bins
        self.proj = nn.ModuleList(nn.Linear(dim * elevation_bins, match_dim) for _ in range(levels))

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for p, m in zip(self.proj, maps):
            pooled = F.adaptive_avg_pool2d(m, (self.elev, self.bins))  # (B, C, E, S)
            sect = p(pooled.permute(0, 3, 1, 2).flatten(2))            # (B, S, d)
            out.append(F.normalize(sect.flatten(1), dim=1).view_as(sect))
        return out


def rotation_volume(sectors: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Cosine of every heading hypothesis at every cell.

    sectors: (B, S, d) ground sector descriptors; cells: (B, S*d, h, w) aerial directional descriptors.
    Returns (B, S, h, w): entry r pairs sector s with aerial direction (s + r) mod S.
    """
    s = sectors.shape[1]
    rolled = torch.stack([torch.roll(sectors, shifts=r, dims=1) for r in range(s)], dim=1)  # [:, r, k] = g[k-r]
    return torch.einsum("brc,bchw->brhw", rolled.flatten(2), cells)


class MetricHead(nn.Module):
    """Fuses the levels' rotation volumes into position logits and per-cell heading vectors."""

    def __init__(self, bins: int, refine_window: int, heading_window: int = -1) -> None:
        super().__init__()
        self.bins = bins
        self.refine_window = refine_window
        kept = list(range(bins))
        if heading_window >= 0:  # hypotheses r = -N..N (mod S) around heading 0
            kept = sorted({r % bins for r in range(-heading_window, heading_window + 1)})
        self.restricted = len(kept) < bins  # decided once: the forward pass never asks the device
        self.register_buffer("hyp_index", torch.tensor(kept), persistent=False)
        self.log_match_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.log_heading_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        angles = torch.tensor(kept, dtype=torch.float32) * (2 * math.pi / bins)
        self.register_buffer("hyp_vectors", torch.stack([torch.sin(angles), torch.cos(angles)], 0),
                             persistent=False)  # (2, kept) (east, north) of heading r * 360 / S, r kept

    def forward(self, sectors: list[torch.Tensor], cells: list[torch.Tensor]) -> MetricOutput:
        scale = self.log_match_scale.exp().clamp(max=100.0)
        vols = [rotation_volume(g, a) for g, a in zip(sectors, cells)]
        if self.restricted:
            vols = [v.index_select(1, self.hyp_index) for v in vols]
        level_logits = [torch.logsumexp(scale * v, dim=1) for v in vols]
        size = vols[-1].shape[-2:]
        fused = torch.stack([F.interpolate(v, size=size, mode="bilinear", align_corners=False)
                             if v.shape[-2:] != size else v for v in vols], 0).mean(0)
        logits = torch.logsumexp(scale * fused, dim=1)
        weights = torch.softmax(self.log_heading_scale.exp().clamp(max=100.0) * fused, dim=1)  # (B, kept, h, w)
        heading = torch.einsum("brhw,er->behw", weights, self.hyp_vectors.to(weights.dtype))
        local = vols[0].flatten(1).max(-1).values
        return MetricOutput(logits=logits, heading_vectors=heading, level_logits=level_logits,
                            local_score=local, refine_window=self.refine_window)
