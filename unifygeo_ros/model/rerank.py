"""Re-ranking of the top-K retrieved tiles with the metric-localization evidence.

For a query and each of its K candidates (in retrieval order) the evidence is
    [global cosine, local matching score (max over coarse aerial cells and headings of the cosine with the
     ground's matching descriptor, as in the official code), peak log-probability / log(h*w), map entropy / log(h*w)]
and, with ``model.rerank_centre``, a fifth entry: how far from the tile centre the map's peak lies (Chebyshev
distance in half tile sides, 0 = centre, 1 = edge). In VIGOR's labelling the positive tile is the one whose
central quarter holds the camera (|offset| < a quarter of the side), while a semi-positive neighbour also contains
the camera but off-centre: this cue lets the re-ranker prefer the positive over its overlapping neighbours.
and the score is ``scale * global_cosine + MLP(evidence)`` (the MLP starts near zero, so the initial order is
the retrieval order). It is trained by its own listwise cross-entropy over the K candidates, the target being
the candidate tile that contains the camera. :func:`rerank_candidates` reorders only the first K entries of a
ranking, so a tile outside the top K can never move and nothing beyond K is reordered.

Tile assignment (:func:`assign_tile`, after the learned scores). The position of the fix comes from the map of
the candidate the re-ranker scores highest. Tiles overlap (VIGOR: half-tile stride), so that position usually lies
inside several candidates; the tile it is *in*, in VIGOR's sense, is the one that holds it in its central
quarter - the candidate whose centre is nearest to it in Chebyshev distance (in half tile sides). That candidate
moves to the front of the re-ranked list; the position does not change. On a half-stride grid this is exactly
VIGOR's positive for that position; it is what the re-ranker's peak/centre cues could only guess at, and it needs
no training (measured in BENCHMARKS.md: the learned order alone and with the assignment).

Consensus (:func:`consensus_slot`, before the assignment; on when ``model.consensus_radius_m`` > 0). Overlapping
candidates that all hold the camera each put their map's peak at (nearly) the same place on the ground, while a
wrong tile's peak has no such company. Each candidate's fix is supported by the re-ranking probability mass
(softmax of the learned scores at ``model.consensus_temperature``) of the candidates whose fixes lie within
``consensus_radius_m`` of it, itself included; the fix with the most support is kept (ties: the better learned
rank). Two numbers, fitted on benchmark cities and never on the demo city (BENCHMARKS.md); no training.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from unifygeo_ros.model.metric_head import MetricOutput

EVIDENCE_NAMES = ("global_cosine", "local_score", "peak_logprob_norm", "entropy_norm")
CENTRE_EVIDENCE = "peak_centre_distance"  #: the optional fifth entry (``model.rerank_centre``)


def evidence_names(centre: bool = False) -> tuple[str, ...]:
    return EVIDENCE_NAMES + ((CENTRE_EVIDENCE,) if centre else ())


def peak_centre_distance(metric: MetricOutput) -> torch.Tensor:
    """(B,) Chebyshev distance of the refined peak from the tile centre, in half tile sides (0 centre .. 1 edge)."""
    h, w = metric.grid_hw
    rc = metric.peak_cell()  # cell indices; cell i spans [i, i+1) so the tile centre is at (h/2 - 0.5, w/2 - 0.5)
    dr = (rc[:, 0] - (h - 1) / 2.0).abs() / (h / 2.0)
    dc = (rc[:, 1] - (w - 1) / 2.0).abs() / (w / 2.0)
    return torch.maximum(dr, dc).clamp(max=1.0)


def rerank_evidence(global_cosine: torch.Tensor, metric: MetricOutput, centre: bool = False) -> torch.Tensor:
    """(N,) cosines and the N pairs' metric outputs -> (N, 4 or 5) evidence (see :func:`evidence_names`)."""
    h, w = metric.grid_hw
    log_cells = math.log(h * w)
    parts = [
        global_cosine.float(),
        metric.local_score.float(),
        metric.peak_logprob() / log_cells,
        metric.entropy(),
    ]
    if centre:
        parts.append(peak_centre_distance(metric).detach())  # geometry of the answer, not a training signal
    return torch.stack(parts, dim=-1)


class Reranker(nn.Module):
    """evidence (..., E) -> score (...): learned global-cosine scale plus a small MLP on all the evidence."""

    def __init__(self, hidden: int = 16, num_evidence: int = len(EVIDENCE_NAMES)) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.mlp = nn.Sequential(nn.Linear(num_evidence, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.normal_(self.mlp[2].weight, std=1e-3)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, evidence: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * evidence[..., 0] + self.mlp(evidence).squeeze(-1)


def rerank_candidates(ranking: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Reorder the first K = ``scores.shape[-1]`` entries of ``ranking`` (Q, N) by ``scores`` (Q, K), descending.

    Ties keep the retrieval order (stable sort). Entries K.. are returned unchanged.
    """
    k = scores.shape[-1]
    if ranking.shape[-1] < k:
        raise ValueError(f"ranking has {ranking.shape[-1]} entries, fewer than K={k} scores")
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    out = ranking.clone()
    out[..., :k] = torch.gather(ranking[..., :k], -1, order)
    return out


def move_to_front(order: np.ndarray, slot: int) -> np.ndarray:
    """``order`` (K,) with ``slot`` first and the others in their order (a new array of the same dtype)."""
    order = np.asarray(order)
    return np.concatenate([[slot], order[order != slot]]).astype(order.dtype)


def consensus_params(model_cfg) -> tuple[float, float]:
    """(radius m, temperature) of a model config's consensus step (radius 0 = off; configs without the fields, e.g.
    stand-in models, count as off)."""
    return (float(getattr(model_cfg, "consensus_radius_m", 0.0)),
            float(getattr(model_cfg, "consensus_temperature", 1.0)))


def centrality(centres_en_m: np.ndarray, tile_m, point_en_m: np.ndarray) -> np.ndarray:
    """(K,) Chebyshev distance of ``point_en_m`` (2,) from each tile centre (K, 2), in half tile sides
    (``tile_m``: scalar or (K,)): < 0.5 = in the tile's central quarter, <= 1 = inside the tile."""
    d = np.abs(np.asarray(centres_en_m, np.float64) - np.asarray(point_en_m, np.float64)[None]).max(axis=1)
    return d / (0.5 * np.asarray(tile_m, np.float64))


def assign_tile(order: np.ndarray, centres_en_m: np.ndarray, tile_m, fix_en_m: np.ndarray) -> np.ndarray:
    """Tile assignment: the candidate slots ``order`` (K,) (re-ranked, best first) with the candidate that holds
    the fix most centrally moved to the front; the others keep their order. Ties keep the re-ranked top-1, so a
    fix exactly between two centres does not move. ``centres_en_m`` (K, 2) are the candidates' centres, in slot
    order, in the same metric frame as ``fix_en_m`` (2,)."""
    order = np.asarray(order)
    c = centrality(centres_en_m, tile_m, fix_en_m)
    best = int(order[0])
    central = int(np.argmin(c))
    if not c[central] < c[best]:
        return order.copy()
    return move_to_front(order, central)


def within_radius(points_en_m: np.ndarray, radius_m: float) -> np.ndarray:
    """(K, K) whether points i and j (K, 2, one metric frame) lie within ``radius_m`` of each other: who agrees
    with whom, for the consensus here and the posterior's agreement counts (localization/posterior.py)."""
    p = np.asarray(points_en_m, np.float64)
    return np.linalg.norm(p[:, None, :] - p[None, :, :], axis=-1) <= float(radius_m)


def consensus_support(fixes_en_m: np.ndarray, scores: np.ndarray, radius_m: float,
                      temperature: float) -> np.ndarray:
    """(K,) for each candidate's fix (K, 2) (one metric frame): the softmax(``scores`` / ``temperature``) mass of
    the candidates whose fixes lie within ``radius_m`` of it, itself included (0..1)."""
    z = np.asarray(scores, np.float64) / float(temperature)
    w = np.exp(z - z.max())
    w /= w.sum()
    return (within_radius(fixes_en_m, radius_m) * w[None, :]).sum(axis=1)


def consensus_slot(order: np.ndarray, fixes_en_m: np.ndarray, scores: np.ndarray, radius_m: float,
                   temperature: float) -> int:
    """The candidate slot whose fix has the most support (:func:`consensus_support`); among equals, the one
    earliest in ``order`` (the learned, best-first order of the slots)."""
    order = np.asarray(order)
    support = consensus_support(fixes_en_m, scores, radius_m, temperature)[order]
    return int(order[int(np.argmax(support))])
