"""Frames -> outcomes, ROS-free: the one pipeline that the node and ``unifygeo replay`` drive.

* :class:`LocalizationPipeline` - frame -> RGB panorama -> :meth:`Localizer.localize <unifygeo_ros.localization.
  localizer.Localizer.localize>` (which validates the panorama with the configured ``aspect_tolerance``, once) ->
  :func:`gate_fix` -> an :class:`Outcome`: published, withheld (with a reason: :data:`GATE_REASONS`), bad input
  (an :class:`~unifygeo_ros.errors.ImageError`) or error (anything else; the caller survives it).
* :class:`PriorTracker` - the previous published fix as a position prior for the next query: a circle around
  it whose radius grows with elapsed time (``growth_m_per_s``, the robot's top speed) on top of the fix's own
  uncertainty. It resets (global search again) when the localizer itself rejected the prior (the global
  search disagreed: kidnapped robot), after ``reset_after`` consecutive withheld fixes, when the prior is
  older than ``max_age_s`` or wider than ``max_sigma_m``, and when time runs backwards (a bag restarted).
* :class:`PipelineStats` - the counters and windows the node's ``/diagnostics`` shows and replay reports.
* :class:`PipelineSettings` - every setting of the above with its default: the node's parameters
  (:mod:`unifygeo_ros.ros.params`) and ``unifygeo replay`` take their defaults from here.
* :func:`build_pipeline` - index + checkpoint + settings -> a warmed-up pipeline (node and replay alike).
"""
from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unifygeo_ros.errors import ImageError
from unifygeo_ros.localization.localizer import Fix, Localizer, Prior

#: why a fix was withheld (``Outcome.reason``; ``/diagnostics`` and replay count them)
GATE_REASONS = ("not_finite", "out_of_distribution", "protection_level", "low_score")


# -------------------------------------------------------------------------------------------------- frames
@dataclass
class Frame:
    """One input: its stamp (opaque, copied to the outputs), the stamp in seconds, and how to get the RGB
    panorama (run on the worker thread, so decoding and stitching do not load the executor)."""

    stamp: Any
    stamp_s: float
    decode: Callable[[], np.ndarray]
    received_monotonic: float = field(default_factory=time.monotonic)
    source: str = "image"
    heading_deg: float | None = None      #: compass heading of the panorama's centre column, when given (IMU)
    heading_std_deg: float = 5.0


@dataclass
class Outcome:
    """What became of one frame. ``status``: ``published`` | ``withheld`` | ``bad_input`` | ``error``;
    ``reason``: for ``withheld``, one of :data:`GATE_REASONS`."""

    frame: Frame
    status: str
    fix: Fix | None = None
    message: str = ""
    processing_ms: float = 0.0
    prior_sigma_m: float | None = None
    reason: str = ""

    @property
    def published(self) -> bool:
        return self.status == "published"


# --------------------------------------------------------------------------------------------------- prior
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
        return Prior(float(self._fix.east_m), float(self._fix.north_m), float(sigma))

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


# --------------------------------------------------------------------------------------------------- stats
class PipelineStats:
    """Thread-safe counters and recent windows for ``/diagnostics``. Times in seconds unless ``_ms``."""

    WINDOW = 100

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self.started = clock()
        self.counts = collections.Counter()  # received, processed, published, withheld, bad_input, error
        self.withheld_by_reason = collections.Counter()  # GATE_REASONS key -> frames
        self.last_score = float("nan")
        self.last_protection_level_m = float("nan")
        self.last_withheld_reason = ""
        self.last_error = ""
        self.last_error_time: float | None = None
        self.last_error_status = ""
        self.last_status = ""
        self._processing_ms = collections.deque(maxlen=self.WINDOW)
        self._latency_ms = collections.deque(maxlen=self.WINDOW)
        self._published_at = collections.deque(maxlen=self.WINDOW)
        self._received_at = collections.deque(maxlen=self.WINDOW)

    def received(self) -> None:
        with self._lock:
            self.counts["received"] += 1
            self._received_at.append(self._clock())

    def outcome(self, o: Outcome) -> None:
        with self._lock:
            self.counts["processed"] += 1
            self.counts[o.status] += 1
            self.last_status = o.status
            if o.status == "withheld":
                self.withheld_by_reason[o.reason] += 1
            if o.fix is not None:
                self.last_score = float(o.fix.score)
                self.last_protection_level_m = float(o.fix.protection_level_m)
            if o.status == "withheld":
                self.last_withheld_reason = o.message
            if o.status in ("bad_input", "error"):
                self.last_error, self.last_error_status = o.message, o.status
                self.last_error_time = self._clock()
            else:
                self._processing_ms.append(o.processing_ms)

    def published(self, latency_ms: float) -> None:
        """A fix went out ``latency_ms`` after its image's stamp."""
        with self._lock:
            self._latency_ms.append(float(latency_ms))
            self._published_at.append(self._clock())

    @staticmethod
    def _rate(times, now: float, window_s: float) -> float:
        recent = [t for t in times if now - t <= window_s]
        if len(recent) < 2:
            return 0.0 if not recent else 1.0 / window_s
        span = max(now - recent[0], 1e-6)
        return len(recent) / span

    def snapshot(self, window_s: float = 10.0) -> dict:
        """Everything as plain numbers (see docs/NODE.md for the definitions)."""
        with self._lock:
            now = self._clock()

            def pct(values, q):
                return float(np.percentile(list(values), q)) if values else float("nan")

            return {
                **{k: int(self.counts[k]) for k in ("received", "processed", "published", "withheld",
                                                     "bad_input", "error")},
                "input_rate_hz": self._rate(self._received_at, now, window_s),
                "fix_rate_hz": self._rate(self._published_at, now, window_s),
                "processing_ms_p50": pct(self._processing_ms, 50),
                "processing_ms_p95": pct(self._processing_ms, 95),
                "latency_ms_p50": pct(self._latency_ms, 50),
                "latency_ms_p95": pct(self._latency_ms, 95),
                "withheld_by_reason": dict(self.withheld_by_reason),
                "availability": (self.counts["published"] / self.counts["processed"]) if self.counts["processed"]
                else float("nan"),
                "last_score": self.last_score,
                "last_protection_level_m": self.last_protection_level_m,
                "last_withheld_reason": self.last_withheld_reason,
                "last_error": self.last_error,
                "last_error_status": self.last_error_status,
                "last_status": self.last_status,
                "seconds_since_error": (now - self.last_error_time) if self.last_error_time is not None else None,
                "seconds_since_fix": (now - self._published_at[-1]) if self._published_at else None,
                "uptime_s": now - self.started,
            }



# ------------------------------------------------------------------------------------------------ pipeline
@dataclass(frozen=True)
class PipelineSettings:
    """Everything the pipeline decides with, and the defaults of the node's parameters of the same names."""

    min_score: float = 0.5  #: fixes scoring lower are withheld (``low_score``)
    #: fixes whose protection level is larger are withheld (``protection_level``). 75 m: measured on the benchmark
    #: cities the calibration was fitted on (benchmarks/bench_trust.py), the largest limit at which the accepted
    #: fixes stay consistent (mean NEES <= 2.6) with HMI <= 1 %; beyond it fixes in a wrong place get in.
    max_protection_level_m: float = 75.0
    aspect_tolerance: float = 0.05  #: accepted relative deviation of a panorama's width/height from 2
    prior: PriorSettings = field(default_factory=PriorSettings)


def gate_fix(fix: Fix, min_score: float, max_protection_level_m: float = math.inf) -> tuple[str, str]:
    """The one integrity gate: ``("", "")`` when the fix goes out, else (reason, one-line message) with reason in
    :data:`GATE_REASONS`, checked in that order: a non-finite fix; an input unlike a camera image of the map
    (``Fix.input_problem``); a protection level above ``max_protection_level_m`` (the posterior cannot bound the
    error that tightly at its risk alpha); a score below ``min_score``."""
    values = (fix.score, fix.latitude_deg, fix.longitude_deg, fix.yaw_deg)
    if not (all(math.isfinite(v) for v in values)
            and bool(np.all(np.isfinite(np.asarray(fix.covariance_en_m2, float))))):
        return "not_finite", "the fix has a non-finite position, heading, score or covariance"
    if fix.input_problem:
        return "out_of_distribution", fix.input_problem
    if not fix.protection_level_m <= max_protection_level_m:
        return "protection_level", (f"protection level {fix.protection_level_m:.1f} m above "
                                    f"max_protection_level_m {max_protection_level_m:g}")
    if fix.score < min_score:
        return "low_score", f"score {fix.score:.3f} below min_score {min_score:g}"
    return "", ""


class LocalizationPipeline:
    """Frame -> :class:`Outcome` (see the module docstring). Not thread-safe: one thread calls it."""

    def __init__(self, localizer: Localizer, min_score: float, prior: PriorTracker | None = None,
                 stats: PipelineStats | None = None, max_protection_level_m: float = math.inf):
        self.localizer = localizer
        self.min_score = float(min_score)
        self.max_protection_level_m = float(max_protection_level_m)
        self.prior = prior
        self.stats = stats or PipelineStats()

    def process(self, frame: Frame) -> Outcome:
        t0 = time.perf_counter()
        prior = None
        try:
            rgb = frame.decode()
            prior = self.prior.prior(frame.stamp_s) if self.prior is not None else None
            fix = self.localizer.localize(rgb, prior, heading_deg=frame.heading_deg,
                                          heading_std_deg=frame.heading_std_deg)
        except ImageError as exc:
            return self._record(Outcome(frame, "bad_input", message=str(exc), processing_ms=_ms(t0)))
        except Exception as exc:  # noqa: BLE001 - reported in diagnostics; the node lives on
            return self._record(Outcome(frame, "error", message=f"{type(exc).__name__}: {exc}",
                                        processing_ms=_ms(t0)))
        reason, message = gate_fix(fix, self.min_score, self.max_protection_level_m)
        if self.prior is not None:
            self.prior.update(fix, not reason, frame.stamp_s)
        return self._record(Outcome(frame, "withheld" if reason else "published", fix=fix, message=message,
                                    processing_ms=_ms(t0), reason=reason,
                                    prior_sigma_m=None if prior is None else prior.sigma_m))

    @classmethod
    def from_settings(cls, localizer: Localizer, settings: PipelineSettings,
                      stats: PipelineStats | None = None) -> "LocalizationPipeline":
        """The pipeline of ``settings`` around a loaded localizer (the one way the node and replay wire it)."""
        return cls(localizer, settings.min_score, PriorTracker(settings.prior), stats=stats,
                   max_protection_level_m=settings.max_protection_level_m)

    def _record(self, out: Outcome) -> Outcome:
        self.stats.outcome(out)
        return out


def _ms(t0: float) -> float:
    return 1000.0 * (time.perf_counter() - t0)


def build_pipeline(index_dir: str | Path, checkpoint: str | Path | None, settings: PipelineSettings,
                   device: str = "auto", stats: PipelineStats | None = None) -> LocalizationPipeline:
    """Load the model and the index, warm the network up (first calls allocate) and wire the pipeline."""
    loc = Localizer.from_paths(index_dir, checkpoint, device=device, aspect_tolerance=settings.aspect_tolerance)
    _, w = loc.handle.ground_hw
    loc.localize(np.zeros((w // 2, w, 3), np.uint8))
    return LocalizationPipeline.from_settings(loc, settings, stats)
