"""Stops in a synthetic drive (``unifygeo bag synth --stop S:DURATION``): the vehicle brakes to a standstill at S
seconds, stands for DURATION seconds, and drives on along the same route - at traffic lights, behind a bus, or
before it moves at all (``--stop 0:60``: a robot that boots and waits a minute).

:class:`StoppedDrive` re-times a drive (:class:`unifygeo_ros.rosbag.drive.Drive`) without changing its path: the
recording clock ``t`` maps to the drive's own clock ``tau(t) = integral of f``, where the speed factor ``f`` is 1
while cruising, falls linearly to 0 over the ``ramp_s`` before a stop, stays 0 for its duration and rises back
linearly over ``ramp_s`` after it. ``ramp_s`` is the speed at the stop over the drive's longitudinal acceleration
limit (``LONG_ACC_MPS2``), so at a constant speed the vehicle brakes and pulls away at that limit. Speeds and yaw
rates are the drive's times ``f``. Standing, the vehicle does not move at all: the wheel odometry counts no tick and
reports exactly 0 (:mod:`unifygeo_ros.rosbag.sensors`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.rosbag.drive import LONG_ACC_MPS2, Drive

#: the shortest braking ramp (s): a stop in a curve at the speed floor still takes this long
MIN_RAMP_S = 1.0


@dataclass(frozen=True)
class Stop:
    """The vehicle stands still from ``at_s`` (recording time) for ``duration_s``; it brakes before ``at_s``."""

    at_s: float
    duration_s: float


def parse_stop(text: str) -> Stop:
    """``"S:DURATION"`` (seconds) -> :class:`Stop`; a one-line error for anything else."""
    try:
        at_text, dur_text = text.split(":")
        stop = Stop(float(at_text), float(dur_text))
    except ValueError:
        raise UnifyGeoError(f"--stop wants S:DURATION in seconds (e.g. 0:60 or 42.5:20), got {text!r}") from None
    if not (math.isfinite(stop.at_s) and math.isfinite(stop.duration_s) and stop.at_s >= 0 and stop.duration_s > 0):
        raise UnifyGeoError(f"--stop {text}: S must be >= 0 and DURATION > 0 (finite seconds)")
    return stop


def check_stops(stops: list[Stop], duration_s: float) -> list[Stop]:
    """``stops`` sorted; each must start inside the recording and end before the next one starts."""
    out = sorted(stops, key=lambda s: s.at_s)
    for s in out:
        if s.at_s >= duration_s:
            raise UnifyGeoError(f"--stop {s.at_s:g}:{s.duration_s:g} starts after the recording ({duration_s:.1f} s)")
    for a, b in zip(out, out[1:]):
        if b.at_s < a.at_s + a.duration_s:
            raise UnifyGeoError(f"--stop {b.at_s:g}:{b.duration_s:g} starts while the vehicle stands for the stop "
                                f"at {a.at_s:g} s")
    return out


class StoppedDrive:
    """``base`` re-timed with ``stops`` (recording times; each stop's braking ramp must fit after the previous
    stop's pull-away, else a one-line error). Same interface as :class:`Drive` (``at``, ``felt_at``, ``end_s``,
    ``distance_m``)."""

    def __init__(self, base: Drive, stops: list[Stop]):
        self.base = base
        self.stops = list(stops)
        # knots of the piecewise-linear speed factor f(t) (1 after the last knot)
        t_k, f_k = [0.0], [1.0]
        for s in self.stops:
            speed = float(base.at([_integral(np.array(t_k), np.array(f_k), np.array([s.at_s]))[0]])[2][0])
            ramp = max(speed / LONG_ACC_MPS2, MIN_RAMP_S)
            if s.at_s == 0.0:  # standing from the start
                f_k[0] = 0.0
            elif s.at_s - ramp < t_k[-1] - 1e-9:
                after = "the start" if len(t_k) == 1 else "the previous stop's pull-away"
                raise UnifyGeoError(f"--stop {s.at_s:g}:{s.duration_s:g}: the vehicle needs {ramp:.1f} s to brake "
                                    f"from {speed:.1f} m/s, more than it has after {after} (--stop 0:D stands "
                                    "from the start)")
            else:
                t_k += [s.at_s - ramp, s.at_s]
                f_k += [1.0, 0.0]
            end = s.at_s + s.duration_s
            t_k += [end, end + ramp]
            f_k += [0.0, 1.0]
        self._t_k, self._f_k = np.array(t_k), np.array(f_k)
        lost_s = self._t_k[-1] - float(_integral(self._t_k, self._f_k, self._t_k[-1:])[0])
        self.end_s = float(base.end_s + lost_s)

    def tau(self, t_s) -> np.ndarray:
        """The drive's own clock at recording times ``t_s``."""
        return _integral(self._t_k, self._f_k, np.asarray(t_s, np.float64))

    def factor(self, t_s) -> np.ndarray:
        """The speed factor ``f`` at ``t_s`` (0 standing, 1 cruising)."""
        t = np.asarray(t_s, np.float64)
        return np.interp(t, self._t_k, self._f_k, right=1.0)

    def at(self, t_s) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self._scaled(t_s, self.base.at)

    def felt_at(self, t_s) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self._scaled(t_s, self.base.felt_at)

    def distance_m(self, t_s: float) -> float:
        return self.base.distance_m(float(self.tau(np.array([t_s]))[0]))

    def _scaled(self, t_s, base_at) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        t = np.atleast_1d(np.asarray(t_s, np.float64))
        en, hd, v, w = base_at(self.tau(t))
        f = self.factor(t)
        return en, hd, v * f, w * f


def _integral(t_k: np.ndarray, f_k: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The integral from 0 to ``t`` of the piecewise-linear ``f`` (knots ``t_k``, ``f_k``; 1 after the last knot,
    which is always 1)."""
    cum = np.concatenate([[0.0], np.cumsum(np.diff(t_k) * 0.5 * (f_k[1:] + f_k[:-1]))])
    i = np.clip(np.searchsorted(t_k, t, side="right") - 1, 0, len(t_k) - 1)
    dt = t - t_k[i]
    nxt = np.minimum(i + 1, len(t_k) - 1)
    span = t_k[nxt] - t_k[i]
    slope = np.where(span > 0, (f_k[nxt] - f_k[i]) / np.where(span > 0, span, 1.0), 0.0)
    return cum[i] + f_k[i] * dt + 0.5 * slope * dt ** 2
