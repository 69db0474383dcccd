"""The single-frame pipeline's position prior, ROS-free: the previous published fix narrows the next search
(:class:`PriorTracker`, settings :class:`PriorSettings`; the pipeline's module doc says when it resets). The node's
``prior.*`` parameters and ``unifygeo replay --prior`` take their defaults from :class:`PriorSettings`."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unifygeo_ros.localization.localizer import Prior


@dataclass
class PriorSettings:
    """How the previous fix narrows the next search (see :class:`PriorTracker`)."""

    enabled: bool = True
    sigma_floor_m: float = 5.0  #: smallest prior radius (1-sigma), m
    growth_m_per_s: float = 3.0  #: added to the radius per second since the fix (the robot's top speed)
    max_age_s: float = 30.0  #: older fixes are no prior
    max_sigma_m: float = 150.0  #: wider priors are no prior (the global search is as good)
    reset_after: int = 3  #: consecutive withheld fixes that drop the prior


class PriorTracker:
    """The previous published fix, turned into a :class:`~unifygeo_ros.localization.fix.Prior` (see the module
    docstring)."""

    def __init__(self, settings: PriorSettings):
        self.settings = settings
        self._fix = None
        self._t_s: float | None = None
        self._misses = 0
        self.resets = 0
        self.last_reset_reason = ""

    def prior(self, t_s: float):
        """The prior for a frame stamped ``t_s`` (seconds), or None (global search)."""
        s = self.settings
        if not s.enabled or self._fix is None:
            return None
        age = t_s - self._t_s
        if age < -1.0:
            self.reset("time went backwards (bag restarted?)")
            return None
        if age > s.max_age_s:
            self.reset(f"previous fix is {age:.1f} s old")
            return None
        cov = np.asarray(self._fix.covariance_en_m2, float)
        own = math.sqrt(max(float(np.linalg.eigvalsh(0.5 * (cov + cov.T)).max()), 0.0))
        sigma = max(s.sigma_floor_m, own) + s.growth_m_per_s * max(age, 0.0)
        if not math.isfinite(sigma) or sigma > s.max_sigma_m:
            return None
        try:
            return Prior(float(self._fix.east_m), float(self._fix.north_m), float(sigma))
        except ValueError:  # beyond a prior's bounds (fix.PRIOR_MAX_M): no prior, the global search
            return None

    def update(self, fix, published: bool, t_s: float) -> None:
        """Record the outcome of a query (``fix`` None for a bad input, which leaves the prior alone)."""
        if fix is None:
            return
        if published:
            if getattr(fix, "prior_rejected", False):
                self.resets += 1
                self.last_reset_reason = "the global search disagreed with the prior (robot moved or kidnapped)"
            self._fix, self._t_s, self._misses = fix, float(t_s), 0
            return
        self._misses += 1
        if self._fix is not None and self._misses >= self.settings.reset_after:
            self.reset(f"{self._misses} consecutive fixes withheld")

    def reset(self, reason: str) -> None:
        if self._fix is not None:
            self.resets += 1
            self.last_reset_reason = reason
        self._fix, self._t_s, self._misses = None, None, 0

    @property
    def active(self) -> bool:
        return self._fix is not None
