"""What the belief's recent log evidence ratios say of it (docs/TRACKING.md 'What one step does', steps 6-8).

A frame's log evidence ratio (:meth:`~unifygeo_ros.localization.tracking_evidence.TileLikelihood.evidence_ratio`) is
how much better the belief's positions explain its image than "none of these tiles": 7-17 for a panorama on track,
about 6 for a 4 x 90 deg rig, 0-2 for one 90 deg camera, about 0 at the old place after a kidnap (measured).
:class:`EvidenceRatios` keeps the last ``cold_collapse_frames`` of them and the current run of poor ones, and
answers the filter's questions: is the camera informative, is this frame poor, is the belief lost, unconfirmed,
weak. ROS-free, no state besides the window.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unifygeo_ros.localization.tracking_settings import TrackingSettings


@dataclass
class EvidenceRatios:
    """The last ``cold_collapse_frames`` log evidence ratios of the measured frames, and the run of poor ones."""

    settings: TrackingSettings
    ratios: list[float] = field(default_factory=list)  #: the last cold_collapse_frames log evidence ratios
    low_frames: int = 0  #: poor frames in a row (the current run)

    def clear(self) -> None:
        """A new belief: nothing judged yet."""
        self.ratios, self.low_frames = [], 0

    def add(self, log_ratio: float) -> None:
        """One measured frame's log evidence ratio."""
        self.low_frames = self.low_frames + 1 if log_ratio < self.poor_below() else 0
        self.ratios = (self.ratios + [log_ratio])[-self.settings.cold_collapse_frames:]

    def lost(self, candidates: bool) -> bool:
        """``collapse_frames`` poor frames in a row - and with the candidate cold start (``candidates``) either an
        informative camera before them or the whole window's sum below ``collapse_log_ratio`` (a narrow camera's
        frames explain little one by one, but not nothing over 10 s)."""
        s = self.settings
        return self.low_frames >= s.collapse_frames and (
            not candidates or self.informative_before_low_run()
            or (len(self.ratios) == s.cold_collapse_frames and sum(self.ratios) < s.collapse_log_ratio))

    def poor_below(self) -> float:
        """The log evidence ratio under which a frame is poor: ``collapse_log_ratio``, or for an informative camera
        ``poor_share`` of the median of the frames before the current run of poor ones, if that is higher (a belief
        a panorama explained with 15 that now explains it with 5 has lost what confirmed it)."""
        s = self.settings
        before = self._before_low_run()
        if s.poor_share > 0 and self.informative(before):
            return max(s.collapse_log_ratio, s.poor_share * float(np.median(before)))
        return s.collapse_log_ratio

    def informative(self, ratios: list[float] | None = None) -> bool:
        """At least ``collapse_frames`` frames (default: the window's) with a median of at least
        ``informative_log_ratio``: a camera whose frames are judged one by one."""
        ratios = self.ratios if ratios is None else ratios
        s = self.settings
        return len(ratios) >= s.collapse_frames and float(np.median(ratios)) >= s.informative_log_ratio

    def informative_before_low_run(self) -> bool:
        """The frames before the current run of poor ones were :meth:`informative`."""
        return self.informative(self._before_low_run())

    def unconfirmed(self) -> bool:
        """An informative camera's frame that failed to explain the belief (step 7)."""
        return self.low_frames > 0 and self.informative_before_low_run()

    def weak(self) -> bool:
        """The mean of the last ``weak_frames`` ratios is below ``weak_log_ratio`` (step 8; 0 frames: never)."""
        s = self.settings
        recent = self.ratios[-s.weak_frames:]
        return s.weak_frames > 0 and len(recent) == s.weak_frames and float(np.mean(recent)) < s.weak_log_ratio

    def _before_low_run(self) -> list[float]:
        return self.ratios[:len(self.ratios) - self.low_frames]
