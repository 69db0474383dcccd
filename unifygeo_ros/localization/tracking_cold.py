"""The sequential localizer's cold start without an accepted fix (``TrackingSettings(cold_start="candidates")``).

A limited field of view (one 90 deg camera) gives no single frame whose posterior the integrity gate can bound, so
"start from the first accepted fix" never starts. Instead, while not initialised, the filter keeps a belief made of

* **a uniform background** of mass ``beta`` over the index's area ``A`` ("the camera is somewhere we have no
  particle"; the prior before any frame: ``beta = 1``), and
* **particles** (mass ``1 - beta``), moved by the odometry like the tracking belief.

Each frame whose global fix passes the gate's *input* checks (finite, not out of distribution; its protection
level may be anything) re-weights both with that frame's likelihood ``l(x)`` (:mod:`~unifygeo_ros.localization.
tracking_evidence`: the K re-ranked candidates' calibrated maps, plus the tiles under the particles, and the
"outside" density), tempered by ``evidence_weight`` and floored like the tracking update:

* a particle's mass is multiplied by ``l(x)^w``;
* the background's mass by ``(T + O) / A`` with ``O = o^w A`` (the outside density ``o``) and
  ``T = sum_cells ((d_c + o)^w - o^w) a_c`` over the candidate tiles' cells (``d_c`` their density, ``a_c`` their
  area): the integral of ``l^w`` over the area. The part ``T`` is no longer uniform: it becomes particles drawn
  from the cells in proportion to ``(d_c + o)^w - o^w`` (each frame's candidates seed hypotheses); the part ``O``
  stays background.

So the background shrinks only when the particles explain the images better than "anywhere": a place that keeps
coming back among the candidates, consistent with the odometry, gathers the mass. The protection level counts the
background as mass outside every radius: infinite while ``beta > alpha``, else the radius around the particles'
mean holding ``(1 - alpha) / (1 - beta)`` of their mass. The filter is initialised (the particles become the
tracking belief) once it is at most the gate's ``max_protection_level_m``; nothing is published before.
"""
from __future__ import annotations

import math

import numpy as np

from unifygeo_ros.localization.localizer import TileMaps
from unifygeo_ros.localization.tracking_belief import ParticleBelief, draw_indices, weighted_quantile
from unifygeo_ros.localization.tracking_evidence import TileLikelihood

COLD_STARTS = ("accepted_fix", "candidates")


def merged_maps(a: TileMaps, b: TileMaps) -> TileMaps:
    """The tiles of ``a`` and those of ``b`` whose centre is not one of ``a``'s (same model, same tile size)."""
    if not len(b.rows):
        return a
    if not len(a.rows):
        return b
    dup = np.any(np.all(np.abs(b.centres_en_m[:, None, :] - a.centres_en_m[None]) < 1e-6, axis=2), axis=1)
    keep = ~dup
    return TileMaps(np.concatenate([a.rows, b.rows[keep]]), np.concatenate([a.centres_en_m, b.centres_en_m[keep]]),
                    a.tile_m, np.concatenate([a.maps, b.maps[keep]]), np.concatenate([a.scores, b.scores[keep]]),
                    np.concatenate([a.heading_vectors_en, b.heading_vectors_en[keep]]))


class CandidateColdStart:
    """Background mass + particles before initialisation (module doc). The particles are a :class:`ParticleBelief`
    owned by the caller (the tracking belief itself), so initialising is just stopping this bookkeeping."""

    def __init__(self, particles: ParticleBelief, area_m2: float):
        self.particles = particles
        self.area_m2 = float(area_m2)
        self.background = 1.0
        self.frames = 0  #: frames whose evidence was applied

    @property
    def seeded(self) -> bool:
        return self.background < 1.0

    def update(self, lik: TileLikelihood, weight: float, floor_ratio: float, yaw_rad: float,
               yaw_std_rad: float) -> None:
        """One frame's likelihood (module doc); new particles take headings around ``yaw_rad``."""
        pb, n, rng = self.particles, self.particles.n, self.particles.rng
        self.frames += 1
        extra, f, lb, lw, top = self._terms(lik, weight, floor_ratio, self.seeded)
        pw = pb.w * np.exp(lw - top) if self.seeded else np.zeros(n)
        part = (1.0 - self.background) * float(pw.sum())
        bg = self.background * math.exp(lb - top)
        inject, stay = bg * f, bg * (1.0 - f)
        total = part + inject + stay
        self.background = min(stay / total, 1.0 - 1e-12) if total > 0 else self.background
        if part + inject <= 0:
            return
        n_new = int(round(n * inject / (part + inject))) if part > 0 else n
        en, yaw = [], []
        if n - n_new > 0:
            u = (rng.random() + np.arange(n - n_new)) / (n - n_new)
            idx = draw_indices(pw / pw.sum(), u)
            en.append(pb.en[idx] + pb.jitter_m * rng.standard_normal((len(idx), 2)))
            yaw.append(pb.yaw[idx] + pb.jitter_yaw_rad * rng.standard_normal(len(idx)))
        if n_new > 0:
            en.append(_sample_cells(lik, extra, n_new, rng))
            yaw.append(yaw_rad + yaw_std_rad * rng.standard_normal(n_new) if yaw_std_rad < math.pi
                       else 2.0 * math.pi * rng.random(n_new))
        pb.init_samples(np.concatenate(en), np.concatenate(yaw))

    def _terms(self, lik: TileLikelihood, weight: float, floor_ratio: float, seeded: bool):
        """(cells' extra mass, f = T / (T + O), log background factor, particles' log factors, top) of a frame."""
        o = max(lik.outside, 1e-300)
        ow = o ** weight
        if lik.k:
            h, w = lik.hw
            cell_a = (lik.maps.tile_m / w) * (lik.maps.tile_m / h)
            extra = np.maximum((lik.density + o) ** weight - ow, 0.0).reshape(-1)
            tiles = float(extra.sum()) * cell_a
        else:
            extra, tiles = np.zeros(0), 0.0
        outside = ow * self.area_m2
        lb = math.log((tiles + outside) / self.area_m2)
        if seeded:
            lw = weight * np.log(np.maximum(lik.density_at(self.particles.en), 1e-300))
            top = max(float(lw.max()), lb)
        else:
            lw, top = np.zeros(self.particles.n), lb
        if floor_ratio > 0:
            lw, lb = np.maximum(lw, top + math.log(floor_ratio)), max(lb, top + math.log(floor_ratio))
        return extra, tiles / (tiles + outside), lb, lw, top

    def protection_level_m(self, alpha: float) -> float:
        """Radius around the particles' mean holding ``1 - alpha`` of the whole belief (background outside)."""
        if not self.seeded or self.background > alpha:
            return math.inf
        pts, w = self.particles.support()
        mean = w @ pts
        q = min((1.0 - alpha) / max(1.0 - self.background, 1e-12), 1.0)
        return weighted_quantile(np.hypot(*(pts - mean).T), w, q)


def _sample_cells(lik: TileLikelihood, mass: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) positions: cells of ``lik``'s tiles drawn by ``mass`` (flattened (K, h, w)), uniform within a cell."""
    k, (h, w) = lik.k, lik.hw
    t = lik.maps.tile_m
    cell_e, cell_n = t / w, t / h
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    off = np.stack([(cols + 0.5) * cell_e - t / 2, t / 2 - (rows + 0.5) * cell_n], -1)
    pts = (lik.maps.centres_en_m[:, None, None, :] + off[None]).reshape(-1, 2)
    idx = rng.choice(k * h * w, size=n, p=mass / mass.sum())
    return pts[idx] + (rng.random((n, 2)) - 0.5) * np.array([cell_e, cell_n])
