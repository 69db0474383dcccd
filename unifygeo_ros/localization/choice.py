"""The last step of the hierarchy, once: the K candidates' metric outputs -> the fix.

:func:`choose_fix` is the one implementation of "which candidate gives the fix, which tile is it in, where is it
and how sure": the :class:`~unifygeo_ros.localization.localizer.Localizer` (node, ``unifygeo localize``,
``unifygeo replay``, ``unifygeo demo``) and ``unifygeo eval`` both call it, so the evaluation scores exactly the
code that runs on the robot. The steps (definitions in :mod:`unifygeo_ros.model.rerank`):

1. **learned order** - the candidates sorted by the re-ranker's scores (stable: ties keep the retrieval order);
2. **consensus** (``consensus_radius_m`` > 0) - the candidate whose fix the most re-ranking mass agrees with within
   that radius gives the position (:func:`~unifygeo_ros.model.rerank.consensus_slot`);
3. **tile assignment** (``tile_assignment``) - the candidate that holds that position most centrally is the tile
   the fix is *in* and goes first (:func:`~unifygeo_ros.model.rerank.assign_tile`); the position is unchanged;
4. **position** = the evidence candidate's centre + its peak offset; **covariance** = the evidence candidate's map
   covariance (when given); **probability** = softmax of the learned scores at the evidence candidate.

All positions are in one metric frame (east, north; metres): the index's local ENU frame at run time, the
gallery's at evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unifygeo_ros.model.rerank import assign_tile, move_to_front, consensus_slot


@dataclass(frozen=True)
class Candidates:
    """One query's K re-ranked candidates, in retrieval (descriptor) order."""

    centres_en_m: np.ndarray  #: (K, 2) tile centres in one metric frame
    tile_m: np.ndarray  #: (K,) side of each tile, metres
    offsets_en_m: np.ndarray  #: (K, 2) each candidate's map peak relative to its own centre, metres
    scores: np.ndarray  #: (K,) the re-ranker's scores
    covariances_en_m2: np.ndarray | None = None  #: (K, 2, 2) each candidate's map covariance, m^2


@dataclass(frozen=True)
class FixChoice:
    """What :func:`choose_fix` decided. Slots index the candidates (retrieval order)."""

    learned_order: np.ndarray  #: (K,) slots by the learned scores, best first
    order: np.ndarray  #: (K,) the final re-ranked order (after the consensus and the tile assignment)
    evidence_slot: int  #: whose probability map gives the position (and heading, covariance)
    tile_slot: int  #: the tile the fix is in (``order[0]``)
    position_en_m: np.ndarray  #: (2,) the fix, in the candidates' frame
    probability: float  #: softmax of the learned scores at ``evidence_slot``
    covariance_en_m2: np.ndarray | None  #: (2, 2) the evidence candidate's covariance, when given


def softmax(scores: np.ndarray) -> np.ndarray:
    z = np.asarray(scores, np.float64)
    w = np.exp(z - z.max())
    return w / w.sum()


def choose_fix(c: Candidates, consensus: tuple[float, float] = (0.0, 1.0),
               tile_assignment: bool = True) -> FixChoice:
    """The fix from one query's candidates (see the module docstring). ``consensus``: (radius m, temperature);
    radius <= 0 = off."""
    scores = np.asarray(c.scores, np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"choose_fix needs K >= 1 scores, got shape {scores.shape}")
    centres = np.asarray(c.centres_en_m, np.float64)
    offsets = np.asarray(c.offsets_en_m, np.float64)
    learned = np.argsort(-scores, kind="stable")
    order = learned
    radius, temperature = consensus
    if radius > 0 and scores.size > 1:
        order = move_to_front(learned, consensus_slot(learned, centres + offsets, scores, radius, temperature))
    evidence = int(order[0])
    position = centres[evidence] + offsets[evidence]
    if tile_assignment:
        order = assign_tile(order, centres, np.asarray(c.tile_m, np.float64), position)
    cov = None if c.covariances_en_m2 is None else np.asarray(c.covariances_en_m2, np.float64)[evidence]
    return FixChoice(learned_order=learned, order=np.asarray(order), evidence_slot=evidence,
                     tile_slot=int(order[0]), position_en_m=position,
                     probability=float(softmax(scores)[evidence]), covariance_en_m2=cov)
