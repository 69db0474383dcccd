"""The integrity gate, ROS-free: what may be published. One place for the node, ``unifygeo replay``, ``unifygeo
localize --json``, the demo and the sequential localizer (which gates its global fixes with it).

* :func:`gate_fix` - a single-frame :class:`~unifygeo_ros.localization.fix.Fix`: finite, looks like a camera image
  of the map, protection level within the limit, score above ``min_score``.
* :func:`gate_track` - the sequential localizer's :class:`~unifygeo_ros.localization.tracking.TrackEstimate`:
  initialised, not lost, finite, protection level within the limit (a belief has no score).
* :class:`GateSettings` - the two limits and their defaults (the node's ``min_score`` and
  ``max_protection_level_m``; :class:`~unifygeo_ros.localization.pipeline.PipelineSettings` and
  :class:`~unifygeo_ros.localization.tracking.TrackingSettings` take their defaults from here).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: why a single-frame fix was withheld (``Outcome.reason``; ``/diagnostics`` and replay count them)
GATE_REASONS = ("not_finite", "out_of_distribution", "protection_level", "low_score")
#: why the sequential localizer's estimate was withheld, besides ``not_finite`` and ``protection_level``
TRACK_REASONS = ("not_initialised", "odometry_stale", "lost", "unconfirmed", "weak")
#: every reason an output is withheld, in the order ``/diagnostics`` lists them
WITHHELD_REASONS = GATE_REASONS + TRACK_REASONS


@dataclass(frozen=True)
class GateSettings:
    """The gate's limits and their defaults."""

    min_score: float = 0.5  #: fixes scoring lower are withheld (``low_score``)
    #: fixes whose protection level is larger are withheld (``protection_level``). 50 m: measured on the ten
    #: benchmark cities (the five the calibration was fitted on and five cross-area ones; benchmarks/bench_trust.py),
    #: the largest limit at which the accepted fixes stay consistent (mean NEES <= 2.6) with HMI <= 1 % in both
    #: sets; beyond it fixes in a wrong place get in.
    max_protection_level_m: float = 50.0


def _finite(values, covariance) -> bool:
    return all(math.isfinite(v) for v in values) and bool(np.all(np.isfinite(np.asarray(covariance, float))))


def gate_fix(fix: Any, min_score: float, max_protection_level_m: float = math.inf) -> tuple[str, str]:
    """The one integrity gate: ``("", "")`` when the fix goes out, else (reason, one-line message) with reason in
    :data:`GATE_REASONS`, checked in that order: a non-finite fix; an input unlike a camera image of the map
    (``Fix.input_problem``); a protection level above ``max_protection_level_m`` (the posterior cannot bound the
    error that tightly at its risk alpha); a score below ``min_score``."""
    if not _finite((fix.score, fix.latitude_deg, fix.longitude_deg, fix.yaw_deg), fix.covariance_en_m2):
        return "not_finite", "the fix has a non-finite position, heading, score or covariance"
    if fix.input_problem:
        return "out_of_distribution", fix.input_problem
    if not fix.protection_level_m <= max_protection_level_m:
        return "protection_level", (f"protection level {fix.protection_level_m:.1f} m above "
                                    f"max_protection_level_m {max_protection_level_m:g}")
    if fix.score < min_score:
        return "low_score", f"score {fix.score:.3f} below min_score {min_score:g}"
    return "", ""


def gate_track(est: Any, max_protection_level_m: float = math.inf) -> tuple[str, str]:
    """The gate of a sequential localizer's estimate: ``("", "")`` when it goes out, else (reason, message) with
    reason ``not_initialised`` (no accepted global fix yet, or a known-orientation model waiting for a heading),
    ``odometry_stale`` (no odometry reached the frame: the belief cannot be moved to it),
    ``lost`` (the belief has stopped explaining the images: wait for the global evidence to re-initialise it),
    ``unconfirmed`` (an informative camera's frame just failed to explain the belief: the first frames after a
    kidnap, before it is declared lost), ``weak`` (the last frames explained the belief little, on average: a narrow
    camera's first seconds after a kidnap), ``not_finite`` or ``protection_level`` (the belief's protection level,
    as for a fix)."""
    if not est.initialised:
        return "not_initialised", ("tracking: not initialised (" + (est.note or "waiting for an accepted global fix")
                                   + ")")
    if est.odometry_stale:
        return "odometry_stale", ("tracking: odometry stale (no odometry reached this frame: the belief cannot be "
                                  "moved to it; withheld until the odometry comes back)")
    if est.lost:
        return "lost", "tracking: lost (the belief no longer explains the images; waiting for an accepted global fix)"
    if est.unconfirmed:
        return "unconfirmed", ("tracking: unconfirmed (this frame did not explain the belief that the frames before "
                               "explained well; withheld until one does or the belief is declared lost)")
    if est.weak:
        return "weak", ("tracking: weak (the last frames explained the belief little on average; withheld until "
                        "they do or the belief is declared lost)")
    if not _finite((est.latitude_deg, est.longitude_deg, est.yaw_deg), est.covariance_en_m2):
        return "not_finite", "the estimate has a non-finite position, heading or covariance"
    if not est.protection_level_m <= max_protection_level_m:
        return "protection_level", (f"protection level {est.protection_level_m:.1f} m above "
                                    f"max_protection_level_m {max_protection_level_m:g}")
    return "", ""
