"""The node's worker thread and its helpers: inference off the ROS executor, on the newest frame only. ROS-free.

* :class:`LatestFrameWorker` - one thread that runs a handler on the **newest** submitted frame. ``submit`` never
  blocks: it puts the frame into a one-frame slot (a condition variable wakes the thread); a frame still
  waiting in the slot is replaced and counted as *dropped*. So when images arrive faster than the network,
  stale frames are skipped, latency stays one inference, and memory stays flat (at most one frame waiting and
  one in work).
* :class:`Throttle` / :func:`error_kind` - at most one log line per kind of bad input per period.
* :func:`load_pipeline` - the node's parameters -> the model, the index and the
  :class:`~unifygeo_ros.localization.pipeline.LocalizationPipeline` (the same object ``unifygeo replay`` drives).
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Callable

from unifygeo_ros.localization.pipeline import Frame, LocalizationPipeline, PipelineStats, build_pipeline
from unifygeo_ros.resources import resolve_model_paths
from unifygeo_ros.ros.params import NodeSettings


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
    backend: str  # who runs the encoders, one line (ModelHandle.backend)
    index_origin_lat_deg: float
    index_origin_lon_deg: float
    load_s: float


def load_pipeline(settings: NodeSettings,
                  stats: PipelineStats | None = None) -> tuple[LocalizationPipeline, StartupInfo]:
    """Load the checkpoint and the index once and wire the pipeline (the same object ``unifygeo replay`` drives,
    :func:`~unifygeo_ros.localization.pipeline.build_pipeline`). Raises one
    :class:`~unifygeo_ros.errors.UnifyGeoError` for a missing or mismatched model or index."""
    t0 = time.perf_counter()
    ckpt, index_dir = resolve_model_paths(settings.checkpoint, settings.index)
    pipeline = build_pipeline(index_dir, ckpt, settings.pipeline_settings(), device=settings.device, stats=stats,
                              backend=settings.backend_settings())  # its threads: cpu_threads
    loc = pipeline.localizer
    origin = loc.index.origin
    info = StartupInfo(checkpoint=str(ckpt), index=str(index_dir), model_identity=str(loc.handle.identity),
                       index_tiles=len(loc.index), device=str(loc.handle.device), backend=loc.handle.backend,
                       index_origin_lat_deg=origin.lat0_deg, index_origin_lon_deg=origin.lon0_deg,
                       load_s=time.perf_counter() - t0)
    return pipeline, info
