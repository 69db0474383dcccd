"""The last seconds of a drive, kept so that a lost belief's cold start can begin in the past
(``TrackingSettings.cold_rewind_s``; used by :mod:`~unifygeo_ros.localization.tracking`).

A narrow camera's belief is declared lost 5-20 s after a kidnap (its frames explain little one by one, BENCHMARKS.md
1m), and the candidate cold start (:mod:`~unifygeo_ros.localization.tracking_cold`) then needs tens of seconds of
frames to gather its mass at one place again. The frames between the teleport and that decision were not wasted:
their global candidates were computed and the odometry moved on. With ``cold_rewind_s`` > 0 the filter keeps, for the
frames of the last ``cold_rewind_s`` seconds, what the cold start takes from a frame - its global fix's candidates
(``Fix.evidence``), the odometry since the frame before (one chained :class:`OdometryDelta`), the absolute heading
given with it, the heading new particles take and how well the belief explained it (its log evidence ratio) - and
when the belief is declared lost the cold start starts from the frame where the evidence turned and runs through the
frames since at once, instead of starting at the current frame with the old belief's particles kept beside a
background (``cold_resume_mass``). Where it turned: the change point of a CUSUM, the kept frame from which on the
sum of ``threshold - log ratio`` (the filter's "poor" threshold) is largest; the frames before it explained the old
place, and a cold start fed with them would find it again.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from unifygeo_ros.localization.fix import Fix
from unifygeo_ros.localization.tracking_motion import OdometryDelta


@dataclass(frozen=True)
class RememberedFrame:
    """What the candidate cold start takes from one frame."""

    stamp_s: float
    motion: OdometryDelta | None  #: the odometry from the frame before to this one (None: none was given)
    fix: Fix | None  #: the frame's global fix with its evidence (None: no global search ran)
    heading: tuple[float, float] | None  #: the absolute heading given with it (ENU yaw rad, variance rad^2)
    yaw_rad: float  #: the heading new particles take (the filter's ``_initial_heading``)
    yaw_std_rad: float
    log_ratio: float = math.nan  #: the belief's log evidence ratio at this frame (NaN: no belief yet)


class FrameMemory:
    """The frames of the last ``span_s`` seconds (module doc), oldest first."""

    def __init__(self, span_s: float):
        if not (math.isfinite(span_s) and span_s > 0):
            raise ValueError(f"a frame memory needs a positive span, got {span_s}")
        self.span_s = float(span_s)
        self._frames: deque[RememberedFrame] = deque()
        self._motion: OdometryDelta | None = None  # since the last remembered frame

    def __len__(self) -> int:
        return len(self._frames)

    def moved(self, delta: OdometryDelta) -> None:
        """One odometry interval (chained onto those since the last frame)."""
        self._motion = delta if self._motion is None else self._motion.then(delta)

    def remember(self, stamp_s: float, fix: Fix | None, heading: tuple[float, float] | None, yaw_rad: float,
                 yaw_std_rad: float, log_ratio: float = math.nan) -> None:
        """A frame at ``stamp_s``; frames older than ``span_s`` before it are dropped (a jump back in time clears
        the memory: a replayed or restarted stream)."""
        if self._frames and stamp_s < self._frames[-1].stamp_s:
            self._frames.clear()
        self._frames.append(RememberedFrame(float(stamp_s), self._motion, fix, heading, float(yaw_rad),
                                            float(yaw_std_rad), float(log_ratio)))
        self._motion = None
        while self._frames and self._frames[0].stamp_s < stamp_s - self.span_s:
            self._frames.popleft()

    def take(self, threshold: float = math.inf) -> list[RememberedFrame]:
        """The kept frames from the change point on (module doc; ``threshold`` inf: every kept frame), oldest
        first; the memory starts empty again."""
        frames = list(self._frames)
        self._frames.clear()
        if not frames or math.isinf(threshold):
            return frames
        excess = [threshold - f.log_ratio if math.isfinite(f.log_ratio) else 0.0 for f in frames]
        suffix = [0.0] * len(frames)
        total = 0.0
        for i in range(len(frames) - 1, -1, -1):
            total += excess[i]
            suffix[i] = total
        return frames[max(range(len(frames)), key=lambda i: (suffix[i], -i)):]
