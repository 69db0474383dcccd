"""Inference off the ROS executor, on the newest frame only; the prior; the figures diagnostics report. ROS-free.

Three plain objects the node wires together:

* :class:`LatestFrameWorker` - one thread that runs a handler on the **newest** submitted frame. ``submit`` never
  blocks: it puts the frame into a one-frame slot (a condition variable wakes the thread); a frame still
  waiting in the slot is replaced and counted as *dropped*. So when images arrive faster than the network,
  stale frames are skipped, latency stays one inference, and memory stays flat (at most one frame waiting and
  one in work).
* :class:`PriorTracker` - the previous published fix as a position prior for the next query: a circle around
  it whose radius grows with elapsed time (``growth_m_per_s``, the robot's top speed) on top of the fix's own
  uncertainty. It resets (global search again) when the localizer itself rejected the prior (the global
  search disagreed: kidnapped robot), after ``reset_after`` consecutive withheld fixes, when the prior is
  older than ``max_age_s`` or wider than ``max_sigma_m``, and when time runs backwards (a bag restarted).
* :class:`LocalizationPipeline` - frame -> RGB panorama -> checks -> ``Localizer.localize(image, prior)`` ->
  an :class:`Outcome`: published (score >= ``min_score``), withheld (low score), bad input (an
  :class:`~unifygeo_ros.errors.ImageError`) or error (anything else; the worker survives it).
  :class:`PipelineStats` keeps the counters and windows the node's ``/diagnostics`` shows.
"""
from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from unifygeo_ros.errors import ImageError


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
    """What became of one frame. ``status``: ``published`` | ``withheld`` | ``bad_input`` | ``error``."""

    frame: Frame
    status: str
    fix: Any = None
    message: str = ""
    processing_ms: float = 0.0
    prior_sigma_m: float | None = None

    @property
    def published(self) -> bool:
        return self.status == "published"


# -------------------------------------------------------------------------------------------------- worker
class LatestFrameWorker:
    """Runs ``handler(frame)`` on a daemon thread for the newest frame; see the module docstring.

    ``handler`` exceptions are caught (``on_exception(frame, exc)`` is called, the thread goes on).
    """

    def __init__(self, handler: Callable[[Frame], None],
                 on_exception: Callable[[Frame, BaseException], None] | None = None,
                 name: str = "unifygeo-localizer"):
        self._handler = handler
        self._on_exception = on_exception
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._stop = False
        self._busy = False
        self.submitted = 0
        self.dropped = 0
        self.handled = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "LatestFrameWorker":
        self._thread.start()
        return self

    def submit(self, frame: Frame) -> bool:
        """Offer a frame; returns True when it replaced a frame that was still waiting (that one is dropped).
        Never blocks beyond a lock held for a few instructions."""
        with self._cond:
            replaced = self._slot is not None
            if replaced:
                self.dropped += 1
            self._slot = frame
            self.submitted += 1
            self._cond.notify()
        return replaced

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def pending(self) -> int:
        return 0 if self._slot is None else 1

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Ask the thread to finish (after the frame in work, if any); True if it did within ``timeout_s``."""
        with self._cond:
            self._stop = True
            self._slot = None
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until no frame waits and none is in work (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._cond:
                if self._slot is None and not self._busy:
                    return True
            time.sleep(0.005)
        return False

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                frame, self._slot = self._slot, None
                self._busy = True
            try:
                self._handler(frame)
            except BaseException as exc:  # noqa: BLE001 - the worker must outlive any frame
                if self._on_exception is not None:
                    try:
                        self._on_exception(frame, exc)
                    except Exception:  # pragma: no cover - a broken reporter must not kill the thread
                        pass
            finally:
                with self._cond:
                    self._busy = False
                    self.handled += 1


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
    """The previous published fix, turned into a :class:`~unifygeo_ros.localization.localizer.Prior` (see module docstring)."""

    def __init__(self, settings: PriorSettings, prior_cls=None):
        if prior_cls is None:
            from unifygeo_ros.localization.localizer import Prior as prior_cls  # noqa: N813
        self.settings = settings
        self._prior_cls = prior_cls
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
        return self._prior_cls(float(self._fix.east_m), float(self._fix.north_m), float(sigma))

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
        self.last_score = float("nan")
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
            if o.fix is not None:
                self.last_score = float(o.fix.score)
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
                "last_score": self.last_score,
                "last_error": self.last_error,
                "last_error_status": self.last_error_status,
                "last_status": self.last_status,
                "seconds_since_error": (now - self.last_error_time) if self.last_error_time is not None else None,
                "seconds_since_fix": (now - self._published_at[-1]) if self._published_at else None,
                "uptime_s": now - self.started,
            }


# ------------------------------------------------------------------------------------------------ pipeline
class LocalizationPipeline:
    """Frame -> :class:`Outcome` (see the module docstring). Not thread-safe: one worker thread calls it."""

    def __init__(self, localizer, min_score: float, prior: PriorTracker | None = None,
                 expected_aspect: float = 2.0, aspect_tolerance: float = 0.05,
                 stats: PipelineStats | None = None):
        self.localizer = localizer
        self.min_score = float(min_score)
        self.prior = prior
        self.expected_aspect = float(expected_aspect)
        self.aspect_tolerance = float(aspect_tolerance)
        self.stats = stats or PipelineStats()

    def process(self, frame: Frame) -> Outcome:
        from unifygeo_ros.image.preprocess import validate_panorama

        t0 = time.perf_counter()
        prior = None
        try:
            rgb = frame.decode()
            validate_panorama(rgb, self.expected_aspect, self.aspect_tolerance)
            if rgb.dtype != np.uint8:
                raise ImageError(f"panorama: expected uint8 pixels, got {rgb.dtype}")
            prior = self.prior.prior(frame.stamp_s) if self.prior is not None else None
            fix = self.localizer.localize(rgb, prior, heading_deg=frame.heading_deg,
                                          heading_std_deg=frame.heading_std_deg)
        except ImageError as exc:
            out = Outcome(frame, "bad_input", message=str(exc), processing_ms=_ms(t0))
            self.stats.outcome(out)
            return out
        except Exception as exc:  # noqa: BLE001 - reported in diagnostics; the node lives on
            out = Outcome(frame, "error", message=f"{type(exc).__name__}: {exc}", processing_ms=_ms(t0))
            self.stats.outcome(out)
            return out
        good = (math.isfinite(fix.score) and fix.score >= self.min_score
                and all(math.isfinite(v) for v in (fix.latitude_deg, fix.longitude_deg, fix.yaw_deg))
                and bool(np.all(np.isfinite(np.asarray(fix.covariance_en_m2, float)))))
        if self.prior is not None:
            self.prior.update(fix, good, frame.stamp_s)
        msg = "" if good else f"score {fix.score:.3f} below min_score {self.min_score:g}"
        out = Outcome(frame, "published" if good else "withheld", fix=fix, message=msg, processing_ms=_ms(t0),
                      prior_sigma_m=None if prior is None else prior.sigma_m)
        self.stats.outcome(out)
        return out


def _ms(t0: float) -> float:
    return 1000.0 * (time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ throttle
class Throttle:
    """``ready(key)`` is True at most once per ``period_s`` for each key (log lines for repeated bad input)."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic):
        self.period_s = float(period_s)
        self._clock = clock
        self._last: dict[str, float] = {}
        self.suppressed = collections.Counter()

    def ready(self, key: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            self.suppressed[key] += 1
            return False
        self._last[key] = now
        return True


def error_kind(message: str) -> str:
    """A short key for a bad-input message (its text up to the first digit), to throttle per kind."""
    head = message.split(":", 2)
    text = head[1] if len(head) > 1 else head[0]
    out = []
    for ch in text:
        if ch.isdigit():
            break
        out.append(ch)
    return "".join(out).strip()[:60] or message[:40]


# ------------------------------------------------------------------------------------------------- loading
@dataclass
class StartupInfo:
    """What was loaded at start-up, for the log line and ``/diagnostics``."""

    checkpoint: str
    index: str
    model_identity: str
    index_tiles: int
    device: str
    index_origin_lat_deg: float
    index_origin_lon_deg: float
    load_s: float


def load_pipeline(settings, stats: PipelineStats | None = None) -> tuple[LocalizationPipeline, StartupInfo]:
    """Load the checkpoint and the index once (``settings``: :class:`~unifygeo_ros.ros.params.NodeSettings`)
    and wire the pipeline. Raises one :class:`~unifygeo_ros.errors.UnifyGeoError` for a missing or mismatched
    model or index."""
    from unifygeo_ros.ros.params import resolve_model_paths

    t0 = time.perf_counter()
    ckpt, index_dir = resolve_model_paths(settings.checkpoint, settings.index)
    import torch

    from unifygeo_ros.localization.localizer import Localizer

    if settings.cpu_threads > 0:
        torch.set_num_threads(int(settings.cpu_threads))
    loc = Localizer.from_paths(index_dir, ckpt, device=settings.device)
    _, w = loc.handle.ground_hw
    loc.localize(np.zeros((w // 2, w, 3), np.uint8))  # warm-up: first calls allocate
    prior = PriorTracker(PriorSettings(
        enabled=settings.use_prior, sigma_floor_m=settings.prior_sigma_floor_m,
        growth_m_per_s=settings.prior_growth_m_per_s, max_age_s=settings.prior_max_age_s,
        max_sigma_m=settings.prior_max_sigma_m, reset_after=settings.prior_reset_after))
    pipeline = LocalizationPipeline(loc, settings.min_score, prior, aspect_tolerance=settings.aspect_tolerance,
                                    stats=stats)
    origin = loc.index.origin
    info = StartupInfo(checkpoint=str(ckpt), index=str(index_dir), model_identity=str(loc.handle.identity),
                       index_tiles=len(loc.index), device=str(loc.handle.device),
                       index_origin_lat_deg=origin.lat0_deg, index_origin_lon_deg=origin.lon0_deg,
                       load_s=time.perf_counter() - t0)
    return pipeline, info
