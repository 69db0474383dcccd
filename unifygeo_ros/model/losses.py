"""The joint objective: retrieval (symmetric InfoNCE) + metric localization (position CE + heading) + re-ranking.

Duplicates and semi-positives in a batch are **masked**: when query i's camera also lies inside batch tile j
(j != i: the same tile twice, or an overlapping neighbour), the pair (i, j) is removed from both softmaxes of the
InfoNCE (it is neither a positive nor a negative) and tile j is never offered to query i as a re-ranking
candidate - unless ``loss.rerank_semi``: then the re-ranking candidates are the plain top K, as at test time, and
every candidate that holds the camera is a right answer (a multi-positive listwise loss; the tile assignment
after the re-ranker picks the one holding it centrally, see model/rerank.py). The caller passes that as a boolean
``exclude`` (B, B) matrix (see :func:`exclusion_mask`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from unifygeo_ros.config import LossConfig
from unifygeo_ros.model.metric_head import MetricOutput, heading_to_vector, offset_to_cell


def _smoothed_ce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy with label smoothing spread over the *valid* classes only. logits/valid (B, C), target (B,)."""
    logits = logits.float().masked_fill(~valid, float("-inf"))
    logp = torch.log_softmax(logits, dim=-1)
    logp = torch.where(valid, logp, torch.zeros_like(logp))
    nll = -logp.gather(1, target[:, None]).squeeze(1)
    if smoothing <= 0:
        return nll.mean()
    uniform = -(logp.sum(-1) / valid.sum(-1).clamp(min=1))
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


def info_nce(ground_desc: torch.Tensor, aerial_desc: torch.Tensor, logit_scale: torch.Tensor,
             label_smoothing: float = 0.0, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matched (ground i, aerial i) pairs; ``exclude`` (B, B) pairs are masked."""
    b = ground_desc.shape[0]
    logits = logit_scale * ground_desc.float() @ aerial_desc.float().t()
    eye = torch.eye(b, dtype=torch.bool, device=logits.device)
    valid = torch.ones_like(eye) if exclude is None else (~exclude | eye)
    target = torch.arange(b, device=logits.device)
    return 0.5 * (_smoothed_ce(logits, target, valid, label_smoothing)
                  + _smoothed_ce(logits.t(), target, valid.t(), label_smoothing))


def gaussian_target(offset_en_m: torch.Tensor, tile_m, hw: tuple[int, int], sigma_m: float) -> torch.Tensor:
    """(B, h, w) normalised Gaussian over cell centres around the true position (sigma >= half a cell)."""
    h, w = hw
    rc = offset_to_cell(offset_en_m.float(), tile_m, hw)  # (B, 2)
    tile = torch.as_tensor(tile_m, dtype=torch.float32, device=rc.device).reshape(-1, 1, 1)
    cell_m = tile / max(h, w)
    sigma_cells = torch.clamp(sigma_m / cell_m, min=0.5)
    rows = torch.arange(h, device=rc.device, dtype=torch.float32)[None, :, None]
    cols = torch.arange(w, device=rc.device, dtype=torch.float32)[None, None, :]
    d2 = (rows - rc[:, 0, None, None]) ** 2 + (cols - rc[:, 1, None, None]) ** 2
    g = torch.exp(-0.5 * d2 / sigma_cells**2)
    return g / g.sum((1, 2), keepdim=True).clamp(min=1e-12)


def position_loss(logits: torch.Tensor, offset_en_m: torch.Tensor, tile_m, sigma_m: float) -> torch.Tensor:
    """Cross-entropy of a (B, h, w) position map against the Gaussian target (minimal when the map matches it)."""
    b = logits.shape[0]
    target = gaussian_target(offset_en_m, tile_m, tuple(logits.shape[-2:]), sigma_m).reshape(b, -1)
    logp = torch.log_softmax(logits.reshape(b, -1).float(), dim=-1)
    return -(target * logp).sum(-1).mean()


def heading_loss(metric: MetricOutput, offset_en_m: torch.Tensor, tile_m, heading_deg: torch.Tensor) -> torch.Tensor:
    """1 - cos(predicted - true heading) at the true cell: 0 at the correct angle, 2 when opposite."""
    rc = offset_to_cell(offset_en_m.float(), tile_m, metric.grid_hw)
    pred = metric.heading_vector_at(rc)
    return (1.0 - (pred * heading_to_vector(heading_deg.float())).sum(-1)).mean()


def rerank_loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Listwise cross-entropy over K candidates (Q, K). ``target``: (Q,) index of the positive, or a (Q, K) bool
    mask of every acceptable candidate (multi-positive: ``-log`` of their total probability)."""
    if target.dtype != torch.bool:
        return F.cross_entropy(scores.float(), target)
    logp = torch.log_softmax(scores.float(), dim=-1)
    return -torch.logsumexp(logp.masked_fill(~target, float("-inf")), dim=-1).mean()


def exclusion_mask(batch: dict, tile_m, device=None) -> torch.Tensor | None:
    """(B, B) bool: query i's camera lies in batch tile j (j != i), from whichever keys the batch carries.

    * ``tile_index`` (+ optional ``semi_indices`` (B, 3), ``positive_index``): VIGOR ids; tile j is the query's
      tile, its positive or one of its semi-positives.
    * ``tile_center_en_m`` (+ optional ``city_seed``): synthetic world coordinates of the tile centres; the
      camera (centre + ``offset_en_m``) inside tile j of the same city.
    Returns None when the batch says nothing (pairs assumed unique).
    """
    if "tile_index" in batch:
        t = torch.as_tensor(batch["tile_index"]).reshape(-1)
        mask = t[:, None] == t[None, :]
        for key in ("semi_indices", "positive_index"):  # the query's other tiles (it lies in all four)
            if key in batch:
                other = torch.as_tensor(batch[key]).reshape(len(t), -1)
                mask |= (other[:, :, None] == t[None, None, :]).any(1)
    elif "tile_center_en_m" in batch:
        centre = torch.as_tensor(batch["tile_center_en_m"], dtype=torch.float64).reshape(-1, 2)
        cam = centre + torch.as_tensor(batch["offset_en_m"], dtype=torch.float64).reshape(-1, 2)
        half = torch.as_tensor(tile_m, dtype=torch.float64).reshape(-1)[0] / 2
        mask = ((cam[:, None, :] - centre[None, :, :]).abs() < half).all(-1)
        if "city_seed" in batch:
            c = torch.as_tensor(batch["city_seed"]).reshape(-1)
            mask &= c[:, None] == c[None, :]
    else:
        return None
    mask.fill_diagonal_(False)
    return mask.to(device) if device is not None else mask


@dataclass
class LossOutput:
    """Total loss (to backpropagate) and its parts, plus in-batch diagnostics (floats, no grad)."""

    total: torch.Tensor
    infonce: torch.Tensor
    position: torch.Tensor
    orientation: torch.Tensor
    rerank: torch.Tensor
    batch_r1: float = 0.0           #: fraction of queries whose positive is the most similar tile of the batch
    rerank_r1: float = 0.0          #: same after re-ranking the top K
    position_err_m: float = 0.0     #: mean distance of the refined peak from the true position
    heading_err_deg: float = 0.0    #: mean absolute heading error at the peak
    temperature: float = 0.0

    def scalars(self) -> dict[str, float]:
        out = {k: float(getattr(self, k).detach()) for k in ("total", "infonce", "position", "orientation", "rerank")}
        out.update(batch_r1=self.batch_r1, rerank_r1=self.rerank_r1, position_err_m=self.position_err_m,
                   heading_err_deg=self.heading_err_deg, temperature=self.temperature)
        return out


class JointObjective(nn.Module):
    """Wraps the model so that one ``forward`` computes the whole joint loss (what DDP needs to sync grads)."""

    def __init__(self, model: nn.Module, cfg: LossConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, ground: torch.Tensor, aerial: torch.Tensor, offset_en_m: torch.Tensor,
                heading_deg: torch.Tensor, tile_m: torch.Tensor, exclude: torch.Tensor | None = None) -> LossOutput:
        cfg, model = self.cfg, self.model
        b = ground.shape[0]
        gf, af = model.encode_ground(ground), model.encode_aerial(aerial)
        zero = gf.descriptor.sum() * 0.0

        sim = gf.descriptor.float() @ af.descriptor.float().t()
        l_nce = info_nce(gf.descriptor, af.descriptor, model.logit_scale, cfg.label_smoothing, exclude)

        metric = model.localize(gf, af)
        levels = list(metric.level_logits) + [metric.logits]
        l_pos = sum(position_loss(lg, offset_en_m, tile_m, cfg.position_sigma_m) for lg in levels) / len(levels)
        l_ori = heading_loss(metric, offset_en_m, tile_m, heading_deg)

        masked = sim.detach().clone()
        if exclude is not None:
            masked = masked.masked_fill(exclude, float("-inf"))
        l_rr, rr_r1 = self._rerank_term(gf, af, sim, masked, exclude, zero)
        total = (cfg.infonce_weight * l_nce + cfg.position_weight * l_pos + cfg.orientation_weight * l_ori
                 + cfg.rerank_weight * l_rr)

        with torch.no_grad():
            r1 = float((masked.argmax(1) == torch.arange(b, device=sim.device)).float().mean())
            err = (metric.peak_offset_en_m(tile_m) - offset_en_m.float()).norm(dim=-1).mean()
            dh = torch.remainder(metric.heading_deg() - heading_deg.float() + 180.0, 360.0) - 180.0
        return LossOutput(total=total, infonce=l_nce.detach(), position=l_pos.detach(), orientation=l_ori.detach(),
                          rerank=l_rr.detach(), batch_r1=r1, rerank_r1=r1 if rr_r1 is None else rr_r1,
                          position_err_m=float(err), heading_err_deg=float(dh.abs().mean()),
                          temperature=float(1.0 / model.logit_scale.detach()))

    def _rerank_term(self, gf, af, sim: torch.Tensor, masked: torch.Tensor, exclude: torch.Tensor | None,
                     zero: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        """(re-ranking loss, batch R@1 after re-ranking; None when the term is off).

        Each query's top-K batch tiles by global similarity, as at test time. Only queries whose positive is
        among them train it: forcing a missed positive into the list would teach the re-ranker that a low global
        cosine marks the right tile (the opposite of what it sees at test time)."""
        cfg, model = self.cfg, self.model
        b = sim.shape[0]
        k = min(cfg.rerank_k, b)
        if not (k > 1 and cfg.rerank_weight > 0):
            return zero, None
        arange = torch.arange(b, device=sim.device)
        # rerank_semi: the candidates are the plain top K, as at test time (where overlapping neighbours that
        # also hold the camera are retrieved too), and any tile holding the camera is a right answer
        top = (sim.detach() if cfg.rerank_semi else masked).topk(k, dim=1).indices
        has_pos = (top == arange[:, None]).any(1)
        qs, top = arange[has_pos], top[has_pos]
        nq = int(qs.numel())
        if nq == 0:
            return zero, 0.0
        if cfg.rerank_semi:  # (nq, K) mask: the positive and every candidate holding the camera
            target = top == qs[:, None]
            if exclude is not None:
                target = target | exclude[qs[:, None], top]
        else:  # (nq,) slot of the positive
            target = (top == qs[:, None]).float().argmax(1)
        gi, ai = qs.repeat_interleave(k), top.reshape(-1)
        g_sel, a_sel = gf.select(gi), af.select(ai)
        if cfg.rerank_detach:
            g_sel, a_sel = g_sel._map(torch.Tensor.detach), a_sel._map(torch.Tensor.detach)
        cand = model.localize(g_sel, a_sel)
        cos = sim[gi, ai] if not cfg.rerank_detach else sim[gi, ai].detach()
        scores = model.rerank_from(cos, cand).view(nq, k)
        l_rr = rerank_loss(scores, target) * (nq / b)  # per query of the batch: none -> 0
        with torch.no_grad():  # batch R@1 after re-ranking: queries without their positive in the list miss
            best = scores.argmax(1)
            hit = target[torch.arange(nq, device=best.device), best] if target.dtype == torch.bool \
                else best == target
            rr_r1 = float(hit.float().sum()) / b
        return l_rr, rr_r1
