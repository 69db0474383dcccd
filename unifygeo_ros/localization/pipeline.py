"""Frames -> outcomes, ROS-free: the one pipeline that the node and ``unifygeo replay`` drive.

* :class:`LocalizationPipeline` - frame -> RGB panorama -> an :class:`Outcome`: published, withheld (with a reason:
  :data:`~unifygeo_ros.localization.gate.WITHHELD_REASONS`), bad input (an :class:`~unifygeo_ros.errors.ImageError`)
  or error (anything else; the caller survives it). Two modes (``PipelineSettings.mode``):

  - ``single``: :meth:`Localizer.localize <unifygeo_ros.localization.localizer.Localizer.localize>` (which
    validates the panorama with the configured ``aspect_tolerance``, once) with the prior below, then
    :func:`~unifygeo_ros.localization.gate.gate_fix`; the output is the frame's fix;
  - ``tracking``: the pipeline owns a :class:`~unifygeo_ros.localization.tracking.SequentialLocalizer`. The
    odometry fed to :attr:`LocalizationPipeline.odometry` (:class:`~unifygeo_ros.localization.sensor_feed.
    OdometryIntegrator`) up to the frame's stamp moves the belief, the frame's heading (IMU) and panorama update it
    (the filter's global fixes go through ``gate_fix`` with this pipeline's ``min_score`` and
    ``max_protection_level_m``), and :func:`~unifygeo_ros.localization.gate.gate_track` decides whether the belief
    goes out (nothing before it is initialised, nothing while lost); the output is the belief (``Outcome.track``:
    position, heading, the belief's covariance and protection level), the frame's global fix rides along.
* :class:`PriorTracker` - (single mode) the previous published fix as a position prior for the next query: a circle
  around it whose radius grows with elapsed time (``growth_m_per_s``, the robot's top speed) on top of the fix's own
  uncertainty. It resets (global search again) when the localizer itself rejected the prior (the global
  search disagreed: kidnapped robot), after ``reset_after`` consecutive withheld fixes, when the prior is
  older than ``max_age_s`` or wider than ``max_sigma_m``, and when time runs backwards (a bag restarted).
* :class:`~unifygeo_ros.localization.pipeline_stats.PipelineStats` - the counters and windows the node's
  ``/diagnostics`` shows and replay reports (its own module; imported here too).
* :class:`PipelineSettings` - every setting of the above with its default: the node's parameters
  (:mod:`unifygeo_ros.ros.params`) and ``unifygeo replay`` take their defaults from here.
* :func:`build_pipeline` - index + checkpoint + settings -> a warmed-up pipeline (node and replay alike).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unifygeo_ros.errors import ImageError, UnifyGeoError
from unifygeo_ros.localization.gate import (GATE_REASONS, TRACK_REASONS, WITHHELD_REASONS, GateSettings, gate_fix,
                                            gate_track)
from unifygeo_ros.localization.localizer import Fix, Localizer
from unifygeo_ros.localization.pipeline_stats import PipelineStats, tracking_state
from unifygeo_ros.localization.prior_tracker import PriorSettings, PriorTracker
from unifygeo_ros.localization.sensor_feed import TIME_BACK_RESTART_S, HeadingFeed, OdometryIntegrator
from unifygeo_ros.localization.tracking import SequentialLocalizer, TrackEstimate, TrackingSettings
from unifygeo_ros.model.backends import BackendSettings

__all__ = ["GATE_REASONS", "MODES", "TRACK_REASONS", "WITHHELD_REASONS", "Frame", "LocalizationPipeline", "Outcome",
           "PipelineSettings", "PipelineStats", "PriorSettings", "PriorTracker", "build_pipeline", "gate_fix",
           "gate_track", "tracking_state"]
MODES = ("single", "tracking")
#: the heading std of a fix whose heading nothing measured (``heading_source: north_aligned``: the panoramas' north
#: is the convention, the robot's heading unknown): its published yaw variance is the cap, pi^2 - a filter that fuses
#: the yaw learns nothing from it (a 5 deg std here pulled robot_localization's heading north)
UNMEASURED_HEADING_STD_DEG = 180.0


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
    heading_note: str = ""  #: why there is no heading (tracking mode: the frame goes on without one)


@dataclass
class Outcome:
    """What became of one frame. ``status``: ``published`` | ``withheld`` | ``bad_input`` | ``error``;
    ``reason``: for ``withheld``, one of :data:`WITHHELD_REASONS`. ``fix``: the frame's single-frame fix (tracking
    mode: the filter's global fix, None when it did not run); ``track``: the filter's estimate (tracking mode)."""

    frame: Frame
    status: str
    fix: Fix | None = None
    message: str = ""
    processing_ms: float = 0.0
    prior_sigma_m: float | None = None
    reason: str = ""
    track: TrackEstimate | None = None

    @property
    def published(self) -> bool:
        return self.status == "published"

    @property
    def pose(self) -> Fix | TrackEstimate | None:
        """What the node publishes (and replay scores): the belief in tracking mode, else the fix. Both carry
        ``latitude_deg``, ``longitude_deg``, ``east_m``, ``north_m``, ``yaw_deg``, ``heading_std_deg``,
        ``covariance_en_m2`` and ``protection_level_m``."""
        return self.track if self.track is not None else self.fix


# ------------------------------------------------------------------------------------------------ pipeline
@dataclass(frozen=True)
class PipelineSettings:
    """Everything the pipeline decides with, and the defaults of the node's parameters of the same names."""

    min_score: float = GateSettings.min_score  #: fixes scoring lower are withheld (``low_score``)
    #: fixes (and, tracking, beliefs) whose protection level is larger are withheld (``protection_level``; the
    #: default's measurement: :class:`~unifygeo_ros.localization.gate.GateSettings`)
    max_protection_level_m: float = GateSettings.max_protection_level_m
    aspect_tolerance: float = 0.05  #: accepted relative deviation of a panorama's width/height from 2
    prior: PriorSettings = field(default_factory=PriorSettings)  #: single mode only
    mode: str = "single"  #: ``single`` (one fix per frame) | ``tracking`` (the sequential localizer)
    #: tracking mode: the filter's settings (its ``min_score`` / ``max_protection_level_m`` are this pipeline's)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)

    def __post_init__(self):
        if self.mode not in MODES:
            raise UnifyGeoError(f"pipeline mode must be one of {', '.join(MODES)}, got {self.mode!r}")


class LocalizationPipeline:
    """Frame -> :class:`Outcome` (see the module docstring). :meth:`process` is called by one thread;
    :attr:`odometry` may be fed from another (the node's executor)."""

    def __init__(self, localizer: Localizer, min_score: float, prior: PriorTracker | None = None,
                 stats: PipelineStats | None = None, max_protection_level_m: float = math.inf,
                 tracker: SequentialLocalizer | None = None):
        self.localizer = localizer
        self.tracker = tracker
        self._min_score, self._max_protection_level_m = float(min_score), float(max_protection_level_m)
        self._sync_tracker()
        self.prior = prior
        self.stats = stats or PipelineStats()
        #: tracking mode: the odometry not yet applied to the belief (gaps and staleness per the tracker's settings)
        self.odometry = OdometryIntegrator(tracker.settings.odometry_timeout_s if tracker is not None else math.inf)
        self.heading_source = "model"  #: see :meth:`use_heading_source`
        self._last_stamp_s: float | None = None

    # the gate's limits: settable at run time (the node's parameters); the filter's global fixes follow them
    @property
    def min_score(self) -> float:
        return self._min_score

    @min_score.setter
    def min_score(self, value: float) -> None:
        self._min_score = float(value)
        self._sync_tracker()

    @property
    def max_protection_level_m(self) -> float:
        return self._max_protection_level_m

    @max_protection_level_m.setter
    def max_protection_level_m(self, value: float) -> None:
        self._max_protection_level_m = float(value)
        self._sync_tracker()

    def _sync_tracker(self) -> None:
        if self.tracker is not None:
            self.tracker.settings = dataclasses.replace(self.tracker.settings, min_score=self._min_score,
                                                        max_protection_level_m=self._max_protection_level_m)

    @property
    def mode(self) -> str:
        return "single" if self.tracker is None else "tracking"

    def use_heading_source(self, heading_source: str) -> None:
        """The resolved heading source (``model`` | ``imu`` | ``north_aligned``, the node's meanings) that
        :meth:`set_heading` follows; in tracking mode ``north_aligned`` also tells the filter that the panoramas'
        centre column looks north (else along the robot's heading)."""
        self.heading_source = heading_source
        if self.tracker is not None:
            self.tracker.settings = dataclasses.replace(self.tracker.settings,
                                                        north_aligned=heading_source == "north_aligned")

    def set_heading(self, frame: Frame, imu: HeadingFeed | None, imu_topic: str = "imu") -> None:
        """The frame's heading under :attr:`heading_source`, the rule the node and replay share. Single mode:
        ``north_aligned`` gives 0 with :data:`UNMEASURED_HEADING_STD_DEG` (not the robot's heading); ``imu`` the
        IMU's heading within ``imu.max_age_s``, else the frame becomes bad input saying why; ``model`` none (the
        network estimates it). Tracking: the IMU's heading whenever there is one (the robot's heading, whatever the
        panorama's convention), else none, with the reason in ``heading_note`` (a known-orientation model waits for
        one until the filter is initialised, then runs on the odometry)."""
        heading_source = self.heading_source
        if heading_source == "north_aligned" and self.tracker is None:
            # the panorama's convention, not a measurement of the robot's heading: published as unmeasured
            frame.heading_deg, frame.heading_std_deg = 0.0, UNMEASURED_HEADING_STD_DEG
            return
        if imu is None or (heading_source == "model" and self.tracker is None):
            return
        heading, std, why = imu.at(frame.stamp_s, imu_topic)
        if heading is not None:
            frame.heading_deg, frame.heading_std_deg = heading, std
        elif self.tracker is not None:
            frame.heading_note = f"heading_source {heading_source}: {why}"
        elif heading_source == "imu":
            frame.decode = _raise_image_error(f"heading_source imu: {why}")

    def process(self, frame: Frame) -> Outcome:
        if self.tracker is not None:
            return self._track(frame)
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

    def _track(self, frame: Frame) -> Outcome:
        """Tracking mode: the odometry up to the frame's stamp, then the filter's step, then :func:`gate_track`."""
        t0 = time.perf_counter()
        tracker = self.tracker
        if self._last_stamp_s is not None and frame.stamp_s < self._last_stamp_s - TIME_BACK_RESTART_S:
            tracker.reset()  # time went backwards (a bag restarted): start again from a global fix
        self._last_stamp_s = frame.stamp_s
        try:
            delta = self.odometry.take_until(frame.stamp_s)
            if delta is not None:
                tracker.predict(delta)  # before the image: the robot moved whether the image is usable or not
            rgb = frame.decode()
            est = tracker.step(rgb, frame.stamp_s, heading_deg=frame.heading_deg,
                               heading_std_deg=frame.heading_std_deg,
                               odometry_stale=self.odometry.stale_at(frame.stamp_s))
        except ImageError as exc:
            return self._record(Outcome(frame, "bad_input", message=str(exc), processing_ms=_ms(t0)))
        except Exception as exc:  # noqa: BLE001 - reported in diagnostics; the node lives on
            return self._record(Outcome(frame, "error", message=f"{type(exc).__name__}: {exc}",
                                        processing_ms=_ms(t0)))
        if not est.initialised and frame.heading_note and est.note:
            est.note = f"{est.note}; {frame.heading_note}"
        reason, message = gate_track(est, self.max_protection_level_m)
        return self._record(Outcome(frame, "withheld" if reason else "published", fix=est.fix, message=message,
                                    processing_ms=_ms(t0), reason=reason, track=est))

    @classmethod
    def from_settings(cls, localizer: Localizer, settings: PipelineSettings,
                      stats: PipelineStats | None = None) -> "LocalizationPipeline":
        """The pipeline of ``settings`` around a loaded localizer (the one way the node and replay wire it)."""
        if settings.mode == "tracking":
            return cls(localizer, settings.min_score, None, stats=stats,
                       max_protection_level_m=settings.max_protection_level_m,
                       tracker=SequentialLocalizer(localizer, settings.tracking))
        return cls(localizer, settings.min_score, PriorTracker(settings.prior), stats=stats,
                   max_protection_level_m=settings.max_protection_level_m)

    def _record(self, out: Outcome) -> Outcome:
        self.stats.outcome(out)
        return out


def _raise_image_error(message: str) -> Callable[[], np.ndarray]:
    def decode() -> np.ndarray:
        raise ImageError(message)
    return decode


def _ms(t0: float) -> float:
    return 1000.0 * (time.perf_counter() - t0)


def build_pipeline(index_dir: str | Path, checkpoint: str | Path | None, settings: PipelineSettings,
                   device: str = "auto", stats: PipelineStats | None = None,
                   backend: BackendSettings | None = None) -> LocalizationPipeline:
    """Load the model and the index, warm the network up (first calls allocate) and wire the pipeline.
    ``backend``: who runs the encoders and on how many threads (:mod:`unifygeo_ros.model.backends`)."""
    loc = Localizer.from_paths(index_dir, checkpoint, device=device, backend=backend,
                               aspect_tolerance=settings.aspect_tolerance)
    _, w = loc.handle.ground_hw
    try:
        loc.localize(np.zeros((w // 2, w, 3), np.uint8))
    except UnifyGeoError:
        raise
    except Exception as exc:  # noqa: BLE001 - a start-up failure is one line naming what was loaded, not a traceback
        raise UnifyGeoError(f"the warm-up query failed ({type(exc).__name__}: {(str(exc) or '?').splitlines()[0]}) "
                            f"with model {loc.handle.checkpoint or loc.handle.identity} and index {loc.index.path}: "
                            "check both (an index built with this model: rebuild it)") from exc
    return LocalizationPipeline.from_settings(loc, settings, stats)
