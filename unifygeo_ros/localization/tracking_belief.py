"""The sequential localizer's belief over position (the index's local ENU) and heading (ENU yaw), two ways:

* :class:`ParticleBelief` - N weighted samples of (east, north, yaw): the motion update moves each by the odometry
  with its own noise draw (so heading uncertainty bends the position spread, as it does on a robot), the
  measurement update multiplies the weights by the frame's likelihood (:mod:`~unifygeo_ros.localization.
  tracking_evidence`) at each particle; systematic resampling when the effective sample size falls below a fraction
  of N, with a small jitter so resampled copies separate again.
* :class:`GridBelief` - a histogram over a square window of ``cell_m`` cells that follows the belief, and the
  heading as one Gaussian (a 1-D Kalman filter): the motion update moves the window's origin by the odometry
  exactly (no interpolation, so no numerical diffusion) and convolves the histogram with the motion noise (the
  odometry's, and the heading's uncertainty turned into a sideways spread) once it exceeds half a cell; the
  measurement update multiplies each cell by the likelihood at its centre.

Both report the same :class:`BeliefSummary`: mean, 2 x 2 covariance, heading and the protection level at ``alpha``
= the radius around the mean holding ``1 - alpha`` of the belief's mass (particles: weighted quantile of their
distances; grid: cells counted at their far corner, as the single-frame posterior does).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import rice

from unifygeo_ros.localization.tracking_evidence import TileLikelihood
from unifygeo_ros.geo import wrap_pi
from unifygeo_ros.localization.tracking_motion import OdometryDelta


@dataclass
class BeliefSummary:
    """What the filter reports of its belief."""

    mean_en_m: np.ndarray  # (2,)
    covariance_en_m2: np.ndarray  # (2, 2)
    yaw_rad: float  # ENU yaw, circular mean
    yaw_std_rad: float  # circular standard deviation
    protection_level_m: float  # radius around the mean holding 1 - alpha of the mass


def draw_indices(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices drawn from normalised ``weights`` at the uniform numbers ``u`` (inverse CDF: systematic resampling
    gives evenly spaced ``u``, a multinomial draw random ones)."""
    return np.minimum(np.searchsorted(np.cumsum(weights), u), len(weights) - 1)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Smallest value whose cumulative weight reaches ``q`` of the total."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    i = int(np.searchsorted(cum, q * cum[-1] - 1e-12))
    return float(values[order][min(i, len(order) - 1)])


def circular_mean_std(yaw: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted circular mean and standard deviation ``sqrt(-2 ln R)`` of angles (rad)."""
    c, s = float(weights @ np.cos(yaw)), float(weights @ np.sin(yaw))
    r = min(max(math.hypot(c, s) / max(float(weights.sum()), 1e-300), 1e-12), 1.0)
    return math.atan2(s, c), math.sqrt(-2.0 * math.log(r))


def with_map_bias(summary: BeliefSummary, points_en_m: np.ndarray, weights: np.ndarray, bias_std_m: float,
                  alpha: float) -> BeliefSummary:
    """``summary`` of the belief convolved with the map's slowly varying error, an isotropic Gaussian of
    ``bias_std_m`` per axis (0: ``summary`` itself): covariance plus ``bias_std_m^2`` I, and the protection level
    the radius around the mean that holds ``1 - alpha`` of the convolved mass (each support point spread by the
    Gaussian: a Rice distribution of its distance; distances binned to a 40th of ``bias_std_m``), at least the
    belief's own. The frames of a drive share this error (the same buildings seen again), so no number of frames
    averages it away: it stays in what the filter publishes (docs/TRACKING.md, step 8 of 'What one step does')."""
    if bias_std_m <= 0:
        return summary
    s = float(bias_std_m)
    d = np.hypot(*(np.asarray(points_en_m, np.float64) - summary.mean_en_m).T)
    w = np.asarray(weights, np.float64)
    step = s / 40.0
    bins = np.rint(d / step).astype(np.int64)
    mass = np.bincount(bins, weights=w)
    held = np.nonzero(mass > 0)[0]
    centre, mass = held * step / s, mass[held] / mass.sum()
    radius = brentq(lambda r: float(mass @ rice.sf(r / s, centre)) - alpha, 0.0, float(d.max()) + 12.0 * s,
                    xtol=1e-3)
    return BeliefSummary(summary.mean_en_m, summary.covariance_en_m2 + np.eye(2) * s * s, summary.yaw_rad,
                         summary.yaw_std_rad, max(float(radius), summary.protection_level_m))


def _mean_cov(points: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = w @ points
    d = points - mean
    return mean, np.einsum("n,ni,nj->ij", w, d, d)


class ParticleBelief:
    """N particles (east_m, north_m, yaw_rad) with normalised weights (module doc); each also carries its own
    scale of the odometry's distances (1 unless ``scale_std`` > 0: a wheel odometry whose scale is off by a few
    per cent - tyre radius, load, slip - moves every particle too far or too short alike, a bias no per-sample
    noise describes; the particles with the right scale stay where the images agree). The scale is the robot's,
    not the place's, and it is learnt only while tracking: :meth:`hold_scales` (the filter is not initialised: a
    cold start) keeps what was learnt - the mean and spread of the tracking particles' scales, at first 1 +-
    ``scale_std`` - and moves every particle by its mean, so a cold start gains no freedom to fit a wrong place;
    :meth:`release_scales` (initialised) draws the particles' scales from it again."""

    def __init__(self, n: int, rng: np.random.Generator, resample_ess: float = 0.5, jitter_m: float = 0.1,
                 jitter_yaw_rad: float = math.radians(0.2), scale_std: float = 0.0,
                 scale_walk_per_sqrt_m: float = 0.0):
        self.n = int(n)
        self.rng = rng
        self.resample_ess = float(resample_ess)
        self.jitter_m, self.jitter_yaw_rad = float(jitter_m), float(jitter_yaw_rad)
        self.en = np.zeros((self.n, 2))
        self.yaw = np.zeros(self.n)
        self.scale_std = 0.0
        self.enable_scales(1.0, scale_std, scale_walk_per_sqrt_m)  # 1 for every particle when scale_std is 0
        self.w = np.full(self.n, 1.0 / self.n)
        self._cache: tuple[float, BeliefSummary] | None = None  # (alpha, summary) until the belief changes

    # ---- initialisation -----------------------------------------------------------------------------------
    def init_samples(self, en_m: np.ndarray, yaw_rad: np.ndarray) -> None:
        """Equal-weight particles at ``en_m`` (N, 2) with headings ``yaw_rad`` (N,), their odometry scales from
        :meth:`draw_scales` (a cold start's particles, drawn while the scales are held, all get the learnt mean)."""
        self.en = np.asarray(en_m, np.float64).reshape(self.n, 2).copy()
        self.yaw = wrap_pi(np.asarray(yaw_rad, np.float64).reshape(self.n))
        self.scale = self.draw_scales(self.n)
        self.w = np.full(self.n, 1.0 / self.n)
        self._cache = None

    def init_from(self, density: TileLikelihood, centre_en_m: np.ndarray, radius_m: float, yaw_rad: float,
                  yaw_std_rad: float) -> None:
        """Particles drawn from ``density``'s tile mixture (outside term left out) within ``radius_m`` of the
        centre; a uniform draw in that disc where the mixture holds no mass there."""
        en = sample_mixture(density, centre_en_m, radius_m, self.n, self.rng)
        yaw = (yaw_rad + yaw_std_rad * self.rng.standard_normal(self.n) if yaw_std_rad < math.pi
               else 2.0 * math.pi * self.rng.random(self.n))  # std pi: unknown, every heading alike
        self.init_samples(en, yaw)

    def enable_scales(self, mean: float, std: float, walk_per_sqrt_m: float) -> None:
        """Give the particles their own odometry scale from now on (at construction, or in a filter without one
        whose odometry was found off scale): held at ``mean`` until :meth:`release_scales` draws them ``mean`` +-
        ``std``; ``std`` 0: no scale state. A belief that already has one keeps it."""
        if self.scale_std > 0:
            return
        self.scale_std, self.scale_walk_per_sqrt_m = float(std), float(walk_per_sqrt_m)
        self.learnt_scale = (float(mean), float(std))  # (mean, std) of the scales, kept while they are held
        self.scales_held = True
        self.scale = np.full(self.n, float(mean))

    def draw_scales(self, k: int) -> np.ndarray:
        """``k`` new particles' odometry scales: while held the learnt mean; else drawn from the current particles'
        with a jitter of a tenth of ``scale_std``; 1 and no draw when ``scale_std`` is 0."""
        if self.scale_std <= 0:
            return np.ones(k)
        if self.scales_held:
            return np.full(k, self.learnt_scale[0])
        idx = draw_indices(self.w, self.rng.random(k))
        return self.scale[idx] + 0.1 * self.scale_std * self.rng.standard_normal(k)

    def mean_scale(self) -> float:
        """What the particles learnt of the odometry's scale (their weighted mean; NaN without a scale state)."""
        return float(self.w @ self.scale) if self.scale_std > 0 else math.nan

    def learn_scales(self, tracking: bool) -> None:
        """:meth:`release_scales` while the filter tracks, :meth:`hold_scales` while it does not."""
        if tracking:
            self.release_scales()
        else:
            self.hold_scales()

    def hold_scales(self) -> None:
        """The filter is not tracking (a cold start): keep the scales' mean and spread (at least a fifth of
        ``scale_std``) and move every particle by the mean until :meth:`release_scales`."""
        if self.scale_std <= 0 or self.scales_held:
            return
        mean = float(self.w @ self.scale)
        std = math.sqrt(max(float(self.w @ (self.scale - mean) ** 2), 0.0))
        self.learnt_scale = (mean, max(std, 0.2 * self.scale_std))
        self.scale = np.full(self.n, mean)
        self.scales_held = True

    def release_scales(self) -> None:
        """The filter tracks (again): the particles' scales drawn from what was learnt."""
        if self.scale_std <= 0 or not self.scales_held:
            return
        mean, std = self.learnt_scale
        self.scale = mean + std * self.rng.standard_normal(self.n)
        self.scales_held = False

    # ---- updates ------------------------------------------------------------------------------------------
    def predict(self, delta: OdometryDelta) -> None:
        """Each particle moved by the odometry plus its own draw of the delta's noise (covariance ``delta.cov``)."""
        noise = self.rng.standard_normal((self.n, 3)) @ np.linalg.cholesky(delta.cov + np.eye(3) * 1e-15).T \
            if np.any(delta.cov) else np.zeros((self.n, 3))
        self._cache = None
        fwd = delta.forward_m * self.scale + noise[:, 0]
        left = delta.left_m * self.scale + noise[:, 1]
        if self.scale_walk_per_sqrt_m > 0 and delta.distance_m > 0 and not self.scales_held:
            self.scale = self.scale + self.scale_walk_per_sqrt_m * math.sqrt(delta.distance_m) \
                * self.rng.standard_normal(self.n)
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        self.en[:, 0] += c * fwd - s * left
        self.en[:, 1] += s * fwd + c * left
        self.yaw = wrap_pi(self.yaw + delta.yaw_rad + noise[:, 2])

    def _reweight(self, logl: np.ndarray) -> None:
        self._cache = None
        logw = np.log(np.maximum(self.w, 1e-300)) + logl
        logw -= logw.max()
        w = np.exp(logw)
        self.w = w / w.sum()
        if 1.0 / float(self.w @ self.w) < self.resample_ess * self.n:
            self._resample()

    def update_position(self, density: np.ndarray, weight: float, floor_ratio: float) -> None:
        """Weights times the frame's likelihood; ``density``: ``l(x)`` at the points of :meth:`support`."""
        self._reweight(TileLikelihood.log_weights(density, weight, floor_ratio))

    def update_heading(self, yaw_rad: float, var_rad2: float, reset_sigmas: float = math.inf) -> bool:
        """An absolute heading measurement (IMU, compass): Gaussian in the wrapped difference. When it lies more
        than ``reset_sigmas`` combined standard deviations from the belief's heading (the robot was turned where
        the odometry could not see it), the particles take their headings from the measurement instead and this
        returns True."""
        if self.heading_off(yaw_rad, var_rad2, reset_sigmas):
            self.yaw = wrap_pi(yaw_rad + math.sqrt(var_rad2) * self.rng.standard_normal(self.n))
            self._cache = None
            return True
        self._reweight(-0.5 * wrap_pi(self.yaw - yaw_rad) ** 2 / max(var_rad2, 1e-12))
        return False

    def heading_off(self, yaw_rad: float, var_rad2: float, reset_sigmas: float) -> bool:
        """Whether an absolute heading lies more than ``reset_sigmas`` combined standard deviations from the
        belief's (the test :meth:`update_heading` resets on)."""
        mean, std = circular_mean_std(self.yaw, self.w)
        return abs(float(wrap_pi(yaw_rad - mean))) > reset_sigmas * math.sqrt(var_rad2 + std * std)

    def update_heading_field(self, lik: TileLikelihood, weight: float, min_std_rad: float) -> None:
        """The model's heading at each particle's cell (von Mises, concentration from the vector's length)."""
        vec = lik.heading_vectors(self.en)
        r = np.clip(np.hypot(vec[:, 0], vec[:, 1]), 1e-12, 1.0)
        var = np.maximum(-2.0 * np.log(r), min_std_rad ** 2)
        logl = np.where(r > 1e-9, np.cos(self.yaw - np.arctan2(vec[:, 1], vec[:, 0])) / var, 0.0)
        self._reweight(weight * logl)

    def _resample(self) -> None:
        """Systematic resampling, then a jitter of ``jitter_m`` / ``jitter_yaw_rad`` (1-sigma)."""
        u = (self.rng.random() + np.arange(self.n)) / self.n
        idx = draw_indices(self.w, u)
        self.en = self.en[idx] + self.jitter_m * self.rng.standard_normal((self.n, 2))
        self.yaw = wrap_pi(self.yaw[idx] + self.jitter_yaw_rad * self.rng.standard_normal(self.n))
        self.scale = self.scale[idx]
        self.w = np.full(self.n, 1.0 / self.n)

    # ---- read-out -----------------------------------------------------------------------------------------
    def support(self) -> tuple[np.ndarray, np.ndarray]:
        """(points (N, 2), weights (N,)): where the belief is, for choosing the tiles to evaluate."""
        return self.en, self.w

    def summary(self, alpha: float) -> BeliefSummary:
        if self._cache is not None and self._cache[0] == alpha:
            return self._cache[1]
        mean, cov = _mean_cov(self.en, self.w)
        yaw, yaw_std = circular_mean_std(self.yaw, self.w)
        dist = np.hypot(*(self.en - mean).T)
        out = BeliefSummary(mean, cov, yaw, yaw_std, weighted_quantile(dist, self.w, 1.0 - alpha))
        self._cache = (alpha, out)
        return out


def sample_mixture(density: TileLikelihood, centre_en_m: np.ndarray, radius_m: float, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(n, 2) positions drawn from the tile mixture of ``density`` (cells by their mass, uniform within a cell)
    restricted to the disc of ``radius_m`` around ``centre_en_m``; uniform in the disc where it holds no mass."""
    centre = np.asarray(centre_en_m, np.float64)
    dens, maps = density.density, density.maps
    if density.k:
        k, h, w = dens.shape
        cell_e, cell_n = maps.tile_m / w, maps.tile_m / h
        cols, rows = np.meshgrid(np.arange(w), np.arange(h))
        off = np.stack([(cols + 0.5) * cell_e - maps.tile_m / 2, maps.tile_m / 2 - (rows + 0.5) * cell_n], -1)
        pts = maps.centres_en_m[:, None, None, :] + off[None]  # (K, h, w, 2)
        inside = np.hypot(*(pts - centre).transpose(3, 0, 1, 2)) <= radius_m
        p = (dens * inside).reshape(-1)
        if p.sum() > 0:
            idx = rng.choice(p.size, size=n, p=p / p.sum())
            jitter = (rng.random((n, 2)) - 0.5) * np.array([cell_e, cell_n])
            return pts.reshape(-1, 2)[idx] + jitter
    r = radius_m * np.sqrt(rng.random(n))
    a = 2.0 * math.pi * rng.random(n)
    return centre + np.stack([r * np.cos(a), r * np.sin(a)], 1)
