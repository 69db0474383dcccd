"""The grid belief of the sequential localizer (see :mod:`~unifygeo_ros.localization.tracking_belief` for what it
is and how it compares with the particles): a histogram over a square window of ``cell_m`` cells that follows the
belief, and the heading as one Gaussian (a 1-D Kalman filter, so its coupling with the position is not kept).

Array layout: ``p[iy, ix]`` is the mass of the cell centred at ``east = origin_e + ix * cell_m``,
``north = origin_n + iy * cell_m``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from unifygeo_ros.localization.tracking_belief import BeliefSummary, weighted_quantile
from unifygeo_ros.localization.tracking_evidence import TileLikelihood
from unifygeo_ros.geo import wrap_pi
from unifygeo_ros.localization.tracking_motion import OdometryDelta

#: cells holding less than this share of the largest cell are left out of the likelihood and the support
NEGLIGIBLE = 1e-9


def gaussian_kernel(cov_px2: np.ndarray, supersample: int = 5) -> np.ndarray:
    """A normalised 2-D Gaussian of covariance ``cov_px2`` (cells^2, axes (x, y)) integrated over each cell by
    ``supersample`` x ``supersample`` points; indexed ``[y, x]``."""
    cov = np.asarray(cov_px2, np.float64) + np.eye(2) * 1e-9
    half = max(1, int(math.ceil(3.0 * math.sqrt(float(np.linalg.eigvalsh(cov).max())))))
    s = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = np.arange(-half, half + 1)
    x = (grid[:, None] + s[None, :]).reshape(-1)
    xx, yy = np.meshgrid(x, x)
    inv = np.linalg.inv(cov)
    q = inv[0, 0] * xx * xx + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy * yy
    g = np.exp(-0.5 * q)
    n = 2 * half + 1
    k = g.reshape(n, supersample, n, supersample).sum(axis=(1, 3))
    return k / k.sum()


class GridBelief:
    """Histogram belief over position, Gaussian heading (module doc)."""

    def __init__(self, cell_m: float, window_m: float):
        self.cell_m = float(cell_m)
        self.window_m = float(window_m)
        self.p = np.zeros((1, 1))
        self.origin = np.zeros(2)
        self.yaw, self.yaw_var = 0.0, 0.0
        self.pending = np.zeros((2, 2))  # motion covariance (m^2) not yet convolved in
        self._cache: tuple[float, BeliefSummary] | None = None  # (alpha, summary) until the belief changes

    # ---- geometry -----------------------------------------------------------------------------------------
    def centres(self, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        return np.stack([self.origin[0] + ix * self.cell_m, self.origin[1] + iy * self.cell_m], axis=-1)

    def _significant(self) -> tuple[np.ndarray, np.ndarray]:
        return np.nonzero(self.p > NEGLIGIBLE * self.p.max())

    # ---- initialisation -----------------------------------------------------------------------------------
    def init_from(self, density: TileLikelihood, centre_en_m: np.ndarray, radius_m: float, yaw_rad: float,
                  yaw_std_rad: float) -> None:
        """The tile mixture of ``density`` (outside term left out) within ``radius_m`` of the centre (uniform in
        that disc where the mixture holds no mass), on a window centred there."""
        size = max(self.window_m, 2.0 * radius_m + 4.0 * self.cell_m)
        n = int(math.ceil(size / self.cell_m)) | 1
        centre = np.asarray(centre_en_m, np.float64)
        self.origin = centre - (n // 2) * self.cell_m
        iy, ix = np.mgrid[0:n, 0:n]
        pts = self.centres(iy, ix).reshape(-1, 2)
        disc = np.hypot(*(pts - centre).T) <= radius_m
        mass = np.zeros(len(pts))
        mass[disc] = np.maximum(density.density_at(pts[disc]) - density.outside, 0.0)
        if mass.sum() <= 0:
            mass = disc.astype(np.float64)
        self.p = (mass / mass.sum()).reshape(n, n)
        self.yaw, self.yaw_var = float(wrap_pi(yaw_rad)), float(yaw_std_rad) ** 2
        self.pending = np.zeros((2, 2))
        self._cache = None

    # ---- updates ------------------------------------------------------------------------------------------
    def predict(self, delta: OdometryDelta) -> None:
        """The window moves with the odometry along the mean heading; the noise (the delta's, and the heading's
        variance as a sideways spread) accumulates until it is worth a convolution."""
        self._cache = None
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        rot = np.array([[c, -s], [s, c]])
        d = rot @ np.array([delta.forward_m, delta.left_m])
        self.origin = self.origin + d
        j_yaw = np.array([-d[1], d[0]])
        self.pending = (self.pending + rot @ delta.cov[:2, :2] @ rot.T
                        + np.outer(j_yaw, j_yaw) * (self.yaw_var + 0.5 * delta.cov[2, 2]))
        self.yaw = float(wrap_pi(self.yaw + delta.yaw_rad))
        self.yaw_var += float(delta.cov[2, 2])
        if float(np.linalg.eigvalsh(self.pending).max()) >= (0.5 * self.cell_m) ** 2:
            self._diffuse()

    def _diffuse(self) -> None:
        """Convolve the pending motion noise into the histogram (over the cells that hold mass, plus a margin)."""
        kernel = gaussian_kernel(self.pending / self.cell_m ** 2)
        half = kernel.shape[0] // 2
        iy, ix = self._significant()
        y0, y1 = max(int(iy.min()) - half, 0), min(int(iy.max()) + half + 1, self.p.shape[0])
        x0, x1 = max(int(ix.min()) - half, 0), min(int(ix.max()) + half + 1, self.p.shape[1])
        out = np.zeros_like(self.p)
        out[y0:y1, x0:x1] = ndimage.convolve(self.p[y0:y1, x0:x1], kernel, mode="constant")
        self.p = out / out.sum()
        self.pending = np.zeros((2, 2))

    def update_position(self, density: np.ndarray, weight: float, floor_ratio: float) -> None:
        """Each cell times the frame's likelihood; ``density``: ``l(x)`` at the points of :meth:`support`
        (motion noise under half a cell stays pending: it is added to the covariance)."""
        self._cache = None
        iy, ix = self._significant()
        logl = TileLikelihood.log_weights(density, weight, floor_ratio)
        vals = self.p[iy, ix] * np.exp(logl - logl.max())
        self.p = np.zeros_like(self.p)
        self.p[iy, ix] = vals / vals.sum()
        self._recentre()

    def update_heading(self, yaw_rad: float, var_rad2: float, reset_sigmas: float = math.inf) -> bool:
        """A 1-D Kalman update of the heading with an absolute measurement (taken as it is when it lies more than
        ``reset_sigmas`` combined standard deviations away: then this returns True)."""
        self._cache = None
        if self.heading_off(yaw_rad, var_rad2, reset_sigmas):
            self.yaw, self.yaw_var = float(wrap_pi(yaw_rad)), float(var_rad2)
            return True
        k = self.yaw_var / (self.yaw_var + max(var_rad2, 1e-12))
        self.yaw = float(wrap_pi(self.yaw + k * float(wrap_pi(yaw_rad - self.yaw))))
        self.yaw_var *= 1.0 - k
        return False

    def heading_off(self, yaw_rad: float, var_rad2: float, reset_sigmas: float) -> bool:
        """Whether an absolute heading lies more than ``reset_sigmas`` combined standard deviations from the
        belief's (the test :meth:`update_heading` resets on)."""
        return abs(float(wrap_pi(yaw_rad - self.yaw))) > reset_sigmas * math.sqrt(var_rad2 + self.yaw_var)

    def enable_scales(self, mean: float, std: float, walk_per_sqrt_m: float) -> None:
        """The grid has no scale state: nothing to enable."""

    def learn_scales(self, tracking: bool) -> None:
        """The grid has no scale state of the odometry (the particles' ``odometry_scale_std``)."""

    @staticmethod
    def mean_scale() -> float:
        return math.nan

    def update_heading_field(self, lik: TileLikelihood, weight: float, min_std_rad: float) -> None:
        """The model's heading at the mean position as a measurement (variance from the vector's length)."""
        vec = lik.heading_vectors(self.summary(0.5).mean_en_m[None])[0]
        r = min(math.hypot(*vec), 1.0)
        if r > 1e-9:
            var = max(-2.0 * math.log(r), min_std_rad ** 2) / max(weight, 1e-9)
            self.update_heading(math.atan2(vec[1], vec[0]), var)

    def _recentre(self) -> None:
        """Shift the window by whole cells so that the mean stays within a quarter window of its centre."""
        n = self.p.shape[0]
        mean = self.summary(0.5).mean_en_m
        off = np.round((mean - (self.origin + (n // 2) * self.cell_m)) / self.cell_m).astype(int)
        if np.all(np.abs(off) <= n // 4):
            return
        dx, dy = int(off[0]), int(off[1])
        out = np.zeros_like(self.p)
        src_y, dst_y = slice(max(dy, 0), n + min(dy, 0)), slice(max(-dy, 0), n + min(-dy, 0))
        src_x, dst_x = slice(max(dx, 0), n + min(dx, 0)), slice(max(-dx, 0), n + min(-dx, 0))
        out[dst_y, dst_x] = self.p[src_y, src_x]
        self.p = out / max(out.sum(), 1e-300)
        self.origin = self.origin + off * self.cell_m
        self._cache = None

    # ---- read-out -----------------------------------------------------------------------------------------
    def support(self) -> tuple[np.ndarray, np.ndarray]:
        """(centres (N, 2), masses (N,)) of the cells that hold mass."""
        iy, ix = self._significant()
        w = self.p[iy, ix]
        return self.centres(iy, ix), w / w.sum()

    def summary(self, alpha: float) -> BeliefSummary:
        if self._cache is not None and self._cache[0] == alpha:
            return self._cache[1]
        pts, w = self.support()
        mean = w @ pts
        d = pts - mean
        cov = np.einsum("n,ni,nj->ij", w, d, d) + np.eye(2) * self.cell_m ** 2 / 12.0 + self.pending
        far = np.hypot(d[:, 0], d[:, 1]) + self.cell_m / math.sqrt(2.0)
        out = BeliefSummary(mean, cov, self.yaw, math.sqrt(max(self.yaw_var, 0.0)),
                            weighted_quantile(far, w, 1.0 - alpha))
        self._cache = (alpha, out)
        return out
