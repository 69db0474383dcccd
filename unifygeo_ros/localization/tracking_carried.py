"""Parameters of the robot's own sensors that each particle of the sequential localizer carries a value of, so the
filter learns them while it tracks (docs/TRACKING.md, step 4):

* the **odometry's scale** (``odometry_scale_std``): a wheel odometry whose scale is off by a few per cent (tyre
  radius, load, slip) moves every particle too far or too short alike - a bias no per-sample noise describes;
* the **IMU's heading offset** (``imu_yaw_offset_std_deg``): an IMU / compass whose yaw is off by a few degrees
  (magnetometer calibration, a mounting error) gives every reading the same error, which its repeated readings,
  taken as independent, would write into the belief's heading.

The particles with the right value stay where the images agree. A parameter is the robot's, not the place's, and
it is learnt only while tracking: :meth:`CarriedParameter.hold` (the filter is not initialised: a cold start) keeps
what was learnt - the mean and spread of the tracking particles' values, at first the nominal +- ``std`` - and gives
every particle the mean, so a cold start gains no freedom to fit a wrong place; :meth:`CarriedParameter.release`
(initialised) draws the particles' values from it again. ``std`` 0: the nominal value for every particle and no
random number drawn (the filter as without the parameter, frame for frame).
"""
from __future__ import annotations

import math

import numpy as np


def draw_indices(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices drawn from normalised ``weights`` at the uniform numbers ``u`` (inverse CDF: systematic resampling
    gives evenly spaced ``u``, a multinomial draw random ones)."""
    return np.minimum(np.searchsorted(np.cumsum(weights), u), len(weights) - 1)


class CarriedParameter:
    """One sensor parameter, a value per particle (module doc): nominal value, prior ``std`` and a random walk of
    ``walk_per_sqrt_m`` per square root of a metre driven while it is learnt."""

    def __init__(self, n: int, rng: np.random.Generator, nominal: float, std: float, walk_per_sqrt_m: float = 0.0):
        self.n, self.rng = int(n), rng
        self.nominal, self.std, self.walk_per_sqrt_m = float(nominal), float(std), float(walk_per_sqrt_m)
        self.values = np.full(self.n, self.nominal)
        self.learnt = (self.nominal, self.std)  # (mean, std) of the values, kept while they are held
        self.held = True

    @property
    def active(self) -> bool:
        return self.std > 0

    def draw(self, k: int, weights: np.ndarray) -> np.ndarray:
        """``k`` new particles' values: while held the learnt mean; else drawn from the current particles' (by
        ``weights``) with a jitter of a tenth of ``std``; the nominal value and no draw when inactive."""
        if not self.active:
            return np.full(k, self.nominal)
        if self.held:
            return np.full(k, self.learnt[0])
        idx = draw_indices(weights, self.rng.random(k))
        return self.values[idx] + 0.1 * self.std * self.rng.standard_normal(k)

    def mean(self, weights: np.ndarray) -> float:
        """What the particles learnt (their weighted mean; NaN when inactive)."""
        return float(weights @ self.values) if self.active else math.nan

    def held_mean(self) -> float:
        """The value every particle has while held (the nominal value when inactive)."""
        return self.learnt[0] if self.active else self.nominal

    def held_std(self) -> float:
        """The spread of what was learnt, kept while held (0 when inactive)."""
        return self.learnt[1] if self.active else 0.0

    def learn(self, tracking: bool, weights: np.ndarray) -> None:
        """:meth:`release` while the filter tracks, :meth:`hold` while it does not."""
        if tracking:
            self.release()
        else:
            self.hold(weights)

    def hold(self, weights: np.ndarray) -> None:
        """Keep the values' mean and spread (at least a fifth of ``std``); every particle gets the mean."""
        if not self.active or self.held:
            return
        mean = float(weights @ self.values)
        std = math.sqrt(max(float(weights @ (self.values - mean) ** 2), 0.0))
        self.learnt = (mean, max(std, 0.2 * self.std))
        self.values = np.full(self.n, mean)
        self.held = True

    def release(self) -> None:
        """The particles' values drawn from what was learnt."""
        if not self.active or not self.held:
            return
        mean, std = self.learnt
        self.values = mean + std * self.rng.standard_normal(self.n)
        self.held = False

    def walk(self, distance_m: float) -> None:
        """The random walk over ``distance_m`` driven (not while held)."""
        if self.walk_per_sqrt_m > 0 and distance_m > 0 and not self.held:
            self.values = self.values + self.walk_per_sqrt_m * math.sqrt(distance_m) * self.rng.standard_normal(self.n)

    def resample(self, idx: np.ndarray) -> None:
        self.values = self.values[idx]
