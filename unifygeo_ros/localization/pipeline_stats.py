"""What the pipeline has done, for the node's ``/diagnostics`` and replay's reports, ROS-free: :class:`PipelineStats`
(thread-safe counters and recent windows, fed one :class:`~unifygeo_ros.localization.pipeline.Outcome` per frame and
a line per refused sensor message) and :func:`tracking_state` (the word a tracking estimate's state is reported by).
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

import numpy as np

from unifygeo_ros.localization.gate import TRACK_REASONS, gate_track
from unifygeo_ros.localization.tracking_estimate import TrackEstimate


def tracking_state(est: TrackEstimate | None) -> str:
    """``not initialised`` | ``lost`` | ``unconfirmed`` (withheld: the frame did not explain the belief) | ``weak``
    (withheld: the last frames explained it little on average) |
    ``converged`` | ``tracking`` (initialised, protection level above ``converged_pl_m``); "" without an estimate
    (single mode). The withheld states are :func:`gate_track`'s reasons (``TRACK_REASONS``), read once there."""
    if est is None:
        return ""
    reason = gate_track(est)[0]
    if reason in TRACK_REASONS:
        return reason.replace("_", " ")
    return "converged" if est.converged else "tracking"


class PipelineStats:
    """Thread-safe counters and recent windows for ``/diagnostics``. Times in seconds unless ``_ms``."""

    WINDOW = 100

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self.started = clock()
        self.counts = collections.Counter()  # received, processed, published, withheld, bad_input, error
        self.withheld_by_reason = collections.Counter()  # WITHHELD_REASONS key -> frames
        self.tracking_state = ""  # tracking mode: tracking_state() of the last estimate
        self.tracking_reinitialisations = 0  # tracking mode: (re)initialisations of the belief, the first included
        #: tracking mode: how much better the belief explained the last frame than "none of these tiles" (log)
        self.tracking_evidence_log_ratio = float("nan")
        self.tracking_odometry_scale = float("nan")  #: tracking mode: the odometry's scale the filter learnt
        self.tracking_imu_heading_offset_deg = float("nan")  #: tracking mode: the IMU's heading offset measured
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

    def outcome(self, o: Any) -> None:
        """One frame's :class:`~unifygeo_ros.localization.pipeline.Outcome` (not imported: pipeline imports this)."""
        with self._lock:
            self.counts["processed"] += 1
            self.counts[o.status] += 1
            self.last_status = o.status
            if o.status == "withheld":
                self.withheld_by_reason[o.reason] += 1
            if o.fix is not None:
                self.last_score = float(o.fix.score)
                self.last_protection_level_m = float(o.fix.protection_level_m)
            if o.track is not None:
                self.last_protection_level_m = float(o.track.protection_level_m)
                self.tracking_state = tracking_state(o.track)
                self.tracking_reinitialisations += bool(o.track.reinitialised)
                self.tracking_evidence_log_ratio = float(o.track.evidence_log_ratio)
                self.tracking_odometry_scale = float(o.track.odometry_scale)
                self.tracking_imu_heading_offset_deg = float(o.track.imu_heading_offset_deg)
            if o.status == "withheld":
                self.last_withheld_reason = o.message
            if o.status in ("bad_input", "error"):
                self.last_error, self.last_error_status = o.message, o.status
                self.last_error_time = self._clock()
            else:
                self._processing_ms.append(o.processing_ms)

    def bad_message(self, message: str, status: str = "bad_input") -> None:
        """A message other than a frame (odometry, IMU, CameraInfo) refused, or one whose callback failed
        (``status`` "error"): the last error and its time, as a frame's (/diagnostics WARN or ERROR while recent);
        the frame counters are not touched."""
        with self._lock:
            self.last_error, self.last_error_status, self.last_error_time = message, status, self._clock()

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
                "tracking_state": self.tracking_state,
                "tracking_reinitialisations": self.tracking_reinitialisations,
                "tracking_evidence_log_ratio": self.tracking_evidence_log_ratio,
                "tracking_odometry_scale": self.tracking_odometry_scale,
                "tracking_imu_heading_offset_deg": self.tracking_imu_heading_offset_deg,
                "seconds_since_error": (now - self.last_error_time) if self.last_error_time is not None else None,
                "seconds_since_fix": (now - self._published_at[-1]) if self._published_at else None,
                "seconds_since_input": (now - self._received_at[-1]) if self._received_at else None,
                #: the median interval between the last frames received (None: fewer than two)
                "input_period_s_p50": (float(np.median(np.diff(list(self._received_at))))
                                       if len(self._received_at) > 1 else None),
                "uptime_s": now - self.started,
            }
