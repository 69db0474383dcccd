"""The sequential localizer's measurement model: one query's :class:`~unifygeo_ros.localization.localizer.TileMaps`
turned into a likelihood over ground positions, calibrated like the single-frame posterior.

Definition. With the tiles evaluated for this frame (those under the belief), the density of the camera's position
``x`` given the image is the single-frame posterior's mixture (:mod:`~unifygeo_ros.localization.posterior`)::

    l(x) = sum_k exp(z_k) * P_k(x) / a_k  +  exp(o) / A

* ``z_k = s_k / T + c * ln n_k`` the single frame's calibrated logit of tile k (``posterior.candidate_logits``:
  the re-ranker's score over the ``score_temperature``, plus the consensus weight times the log of how many of
  these tiles' map peaks agree with its own), ``o`` the calibration's ``outside_logit``
  ("the camera is in none of these tiles"), spread uniformly over the index's area ``A`` (the tiles' bounding box,
  as the calibration's fit defines it);
* ``P_k`` tile k's map raised to ``1 / map_temperature`` and renormalised (``posterior.tempered``; the default is
  the calibration's ``pl_map_temperature``, the one fitted by maximum likelihood of the truth), read at ``x`` by
  bilinear interpolation between cell centres (0 outside the tile's footprint), ``a_k`` the cell area in m^2.

The normaliser of the mixture does not depend on ``x``, so ``l`` is a likelihood of the image up to a constant,
whatever set of tiles was evaluated, as long as every tile covering a position of the belief was. The filter uses
``weight * log l(x)`` floored at ``log floor_ratio`` below its maximum over the belief
(:meth:`TileLikelihood.log_weights`): consecutive frames of a drive are not independent views, and one confident
wrong frame must not wipe out the hypotheses near the truth.

Heading evidence (models that estimate the heading): at ``x`` the mixture-weighted heading vector of the tiles'
cells (:meth:`TileLikelihood.heading_vectors`); its direction is the heading, its length ``R`` the confidence
(circular standard deviation ``sqrt(-2 ln R)``).
"""
from __future__ import annotations

import math

import numpy as np

from unifygeo_ros.localization.localizer import TileMaps
from unifygeo_ros.localization.posterior import Calibration, candidate_logits, tempered


def index_area_m2(en_m: np.ndarray, tile_m: float) -> float:
    """Area (m^2) of the bounding box of the index's tiles: where "outside the evaluated tiles" is spread."""
    en = np.asarray(en_m, np.float64).reshape(-1, 2)
    span = (en.max(axis=0) - en.min(axis=0)) + tile_m
    return float(span[0] * span[1])


def tiles_under(centres_en_m: np.ndarray, tile_m: float, points_en_m: np.ndarray, weights: np.ndarray,
                max_tiles: int) -> np.ndarray:
    """Rows of the tiles whose footprint holds at least one of ``points_en_m`` (N, 2), the ``max_tiles`` holding the
    most ``weights`` first, then by row (deterministic). ``centres_en_m`` (M, 2) are candidate tiles' centres."""
    c = np.asarray(centres_en_m, np.float64).reshape(-1, 2)
    p = np.asarray(points_en_m, np.float64).reshape(-1, 2)
    w = np.asarray(weights, np.float64).reshape(-1)
    if not len(c) or not len(p):
        return np.zeros(0, np.int64)
    lo, hi = p.min(axis=0) - tile_m / 2, p.max(axis=0) + tile_m / 2
    near = np.nonzero(np.all((c >= lo) & (c <= hi), axis=1))[0]  # footprints meeting the points' bounding box
    mass = np.array([w[np.all(np.abs(p - c[r]) <= tile_m / 2, axis=1)].sum() for r in near])
    held = mass > 0
    if not held.any():
        held = np.array([np.any(np.all(np.abs(p - c[r]) <= tile_m / 2, axis=1)) for r in near], bool)
    near, mass = near[held], mass[held]
    order = np.lexsort((near, -mass))
    return np.sort(near[order[:max_tiles]])


class TileLikelihood:
    """``l(x)`` of one frame (see the module docstring) over the tiles of ``maps``."""

    def __init__(self, maps: TileMaps, cal: Calibration, area_m2: float, map_temperature: float | None = None):
        self.maps = maps
        k = len(maps.rows)
        self.k = k
        self.hw = tuple(maps.maps.shape[1:]) if k else (1, 1)
        h, w = self.hw
        tau = cal.pl_map_temperature if map_temperature is None else float(map_temperature)
        z = (candidate_logits(maps.scores, cal, maps.centres_en_m, np.full(k, maps.tile_m), maps.maps) if k
             else np.zeros(0))
        top = max(float(z.max()) if k else -math.inf, cal.outside_logit)
        if not math.isfinite(top):
            top = 0.0
        cell_area = (maps.tile_m / w) * (maps.tile_m / h)
        #: per tile, the density (1/m^2) of each cell, times exp(s_k / T - top): (K, h, w)
        scale = np.exp(z - top)[:, None, None] / cell_area
        self.density = (tempered(np.asarray(maps.maps, np.float64), tau).reshape(k, h, w) * scale
                        if k else np.zeros((0, h, w)))
        #: the "none of these tiles" density (1/m^2), same scale
        self.outside = math.exp(cal.outside_logit - top) / area_m2 if cal.outside_logit > -math.inf else 0.0

    # ---- position -----------------------------------------------------------------------------------------
    def _cells(self, points_en_m: np.ndarray):
        """Per tile: bilinear corners and weights of each point, and whether it lies in the footprint."""
        h, w = self.hw
        t = self.maps.tile_m
        d = points_en_m[None, :, :] - self.maps.centres_en_m[:, None, :]  # (K, N, 2)
        inside = np.all(np.abs(d) <= t / 2, axis=2)
        col = np.clip((d[..., 0] / t + 0.5) * w - 0.5, 0.0, w - 1.0)
        row = np.clip((0.5 - d[..., 1] / t) * h - 0.5, 0.0, h - 1.0)
        r0, c0 = np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)
        r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
        fr, fc = row - r0, col - c0
        return (r0, r1, c0, c1, fr, fc), inside

    def density_at(self, points_en_m: np.ndarray) -> np.ndarray:
        """(N,) ``l(x)`` at positions (N, 2) (up to the frame's constant)."""
        p = np.asarray(points_en_m, np.float64).reshape(-1, 2)
        if not self.k:
            return np.full(len(p), self.outside)
        (r0, r1, c0, c1, fr, fc), inside = self._cells(p)
        kk = np.arange(self.k)[:, None]
        m = self.density
        v = ((1 - fr) * (1 - fc) * m[kk, r0, c0] + (1 - fr) * fc * m[kk, r0, c1]
             + fr * (1 - fc) * m[kk, r1, c0] + fr * fc * m[kk, r1, c1])
        return (v * inside).sum(axis=0) + self.outside

    @staticmethod
    def log_weights(density: np.ndarray, weight: float, floor_ratio: float) -> np.ndarray:
        """(N,) ``weight * log l(x)`` of densities ``l(x)`` (:meth:`density_at`), floored at ``log floor_ratio``
        below its maximum over the points."""
        logl = weight * np.log(np.maximum(density, 1e-300))
        if floor_ratio > 0 and logl.size:
            logl = np.maximum(logl, logl.max() + math.log(floor_ratio))
        return logl

    def evidence_ratio(self, density: np.ndarray, weights: np.ndarray) -> float:
        """``E_belief[l(x)] / l_outside`` of the belief's points' densities (:meth:`density_at`) and weights: how
        much better the belief's positions explain the image than "none of these tiles" (1 = no better; inf without
        an outside term)."""
        mean = float(np.asarray(weights, np.float64) @ density)
        return mean / self.outside if self.outside > 0 else math.inf

    # ---- heading ------------------------------------------------------------------------------------------
    def heading_vectors(self, points_en_m: np.ndarray) -> np.ndarray:
        """(N, 2) mixture-weighted (east, north) heading vector at each position (nearest cell of each tile holding
        it); zero where no tile holds it."""
        p = np.asarray(points_en_m, np.float64).reshape(-1, 2)
        if not self.k:
            return np.zeros((len(p), 2))
        (r0, r1, c0, c1, fr, fc), inside = self._cells(p)
        r = np.where(fr < 0.5, r0, r1)
        c = np.where(fc < 0.5, c0, c1)
        kk = np.arange(self.k)[:, None]
        mass = self.density[kk, r, c] * inside  # (K, N)
        vec = self.maps.heading_vectors_en[kk, :, r, c]  # (K, N, 2)
        total = mass.sum(axis=0)
        out = np.einsum("kn,kni->ni", mass, vec) / np.maximum(total, 1e-300)[:, None]
        out[total <= 0] = 0.0
        return out
