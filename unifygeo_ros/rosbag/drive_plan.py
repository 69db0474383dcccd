"""Which drive ``unifygeo bag synth`` records: the route (inside the tiled area when the city has tiles, else
anywhere in the city; :mod:`.route`), its motion (:mod:`.drive`), and with ``--kidnap-at`` the kidnapped drive.

**Kidnap** (:class:`KidnappedDrive`): until ``at_s`` the vehicle drives the route it would drive without a kidnap
(the recording is the same up to then); at ``at_s`` it is teleported to a node of the street network at least
``KIDNAP_MIN_M`` from where it is and drives on along a new route from there. The ground truth jumps. The wheel
odometry and the gyro/accelerometer do not see the jump: they feel the new route's motion continuing from the
old pose (the new path turned and moved rigidly onto the old pose at ``at_s``), so the odometry pose stays
continuous. The IMU's orientation is earth-referenced (an AHRS), so it reports the true heading after the jump.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from unifygeo_ros.data.synth import tile_grid
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.rosbag.drive import LANE_M, Drive, make_drive
from unifygeo_ros.rosbag.drive_stops import Stop, StoppedDrive, check_stops
from unifygeo_ros.rosbag.route import plan_route, street_graph

#: the route planned is this much longer than the drive (turns, the speed profile) plus ROUTE_MARGIN_M
ROUTE_LENGTH_FACTOR, ROUTE_MARGIN_M = 1.6, 60.0
#: the teleport of ``--kidnap-at`` moves the vehicle at least this far
KIDNAP_MIN_M = 200.0
#: the route after a kidnap is drawn from this child of the route seed (the route before it is the seed's own)
_KIDNAP_SEED_STREAM = 1


@dataclass
class KidnappedDrive:
    """``before`` until ``at_s``, then ``after`` from its start (its time ``t - at_s``), somewhere else."""

    before: Drive | StoppedDrive
    after: Drive | StoppedDrive
    at_s: float

    def at(self, t_s) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The true (east_north (M, 2), compass heading, speed, yaw rate deg/s) at ``t_s``, as :meth:`Drive.at`."""
        return self._merge(t_s, self.after.at)

    def felt_at(self, t_s) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The motion the wheels and gyro feel: ``after`` turned and moved rigidly so that its start continues from
        ``before``'s pose at ``at_s`` (speeds and yaw rates unchanged)."""
        (en_b,), (hd_b,), _, _ = self.before.at([self.at_s])
        (en_a,), (hd_a,), _, _ = self.after.at([0.0])
        turn = math.radians(float(hd_b - hd_a))  # compass: clockwise
        c, s = math.cos(turn), math.sin(turn)

        def moved(t):
            en, hd, v, w = self.after.at(t)
            d = en - en_a
            return (np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], 1) + en_b,
                    (hd + math.degrees(turn)) % 360.0, v, w)
        return self._merge(t_s, moved)

    @property
    def end_s(self) -> float:
        return self.at_s + self.after.end_s

    def distance_m(self, t_s: float) -> float:
        """Metres driven from the start to ``t_s`` (both legs; the teleport is not driven)."""
        if t_s < self.at_s:
            return self.before.distance_m(t_s)
        return self.before.distance_m(self.at_s) + self.after.distance_m(t_s - self.at_s)

    def jump_m(self) -> float:
        """How far the teleport moved the vehicle."""
        return float(np.hypot(*(self.before.at([self.at_s])[0][0] - self.after.at([0.0])[0][0])))

    def _merge(self, t_s, after_at) -> tuple[np.ndarray, ...]:
        t = np.atleast_1d(np.asarray(t_s, float))
        late = t >= self.at_s
        parts_b, parts_a = self.before.at(t), after_at(t - self.at_s)
        return tuple(np.where(late[:, None] if xb.ndim == 2 else late, xa, xb) for xb, xa in zip(parts_b, parts_a))


def plan_drive(meta: dict, city: Any, kind: str, seed: int, speed_mps: float, duration_s: float,
               tail_s: float, kidnap_at_s: float | None = None,
               stops: list[Stop] | None = None) -> Drive | StoppedDrive | KidnappedDrive:
    """The drive of a recording of ``duration_s`` (plus ``tail_s`` of ground truth after it) along a route of
    ``kind`` from ``seed``; with ``kidnap_at_s``, the :class:`KidnappedDrive` (module docstring); with ``stops``
    (recording times), each leg re-timed by :class:`unifygeo_ros.rosbag.drive_stops.StoppedDrive`."""
    stops = check_stops(list(stops or []), duration_s)
    if kidnap_at_s is not None and not (math.isfinite(kidnap_at_s) and 0.0 < kidnap_at_s < duration_s):
        raise UnifyGeoError(f"--kidnap-at must lie inside the drive (0 < S < {duration_s:.1f} s), got {kidnap_at_s}")
    cut = math.inf if kidnap_at_s is None else kidnap_at_s
    for s in stops:
        if s.at_s < cut < s.at_s + s.duration_s:
            raise UnifyGeoError(f"--stop {s.at_s:g}:{s.duration_s:g}: the vehicle stands at the kidnap ({cut:g} s); "
                                "stop before it or after it")
    before = _plan_leg(meta, city, kind, seed, speed_mps, duration_s)
    stops_before = [s for s in stops if s.at_s < cut]
    if stops_before:
        before = StoppedDrive(before, stops_before)
    if before.end_s < duration_s + tail_s:
        raise UnifyGeoError(f"the route is too short for {duration_s:.1f} s of driving; lower --duration/--frames")
    if kidnap_at_s is None:
        return before
    here = tuple(float(x) for x in before.at([kidnap_at_s])[0][0])
    try:
        after = _plan_leg(meta, city, kind, [seed, _KIDNAP_SEED_STREAM], speed_mps, duration_s - kidnap_at_s,
                          far_from_en=here)
    except UnifyGeoError as exc:
        raise UnifyGeoError(f"--kidnap-at {kidnap_at_s:g}: cannot teleport at least {KIDNAP_MIN_M:.0f} m in this "
                            f"city ({exc}); try another --seed or a larger city") from exc
    stops_after = [Stop(s.at_s - kidnap_at_s, s.duration_s) for s in stops if s.at_s >= cut]
    if stops_after:
        after = StoppedDrive(after, stops_after)
    if after.end_s < duration_s - kidnap_at_s + tail_s:
        raise UnifyGeoError("the route after the kidnap is too short; lower --duration/--frames")
    drive = KidnappedDrive(before, after, float(kidnap_at_s))
    assert drive.jump_m() >= KIDNAP_MIN_M, drive.jump_m()  # the start crossing is KIDNAP_MIN_M + 2 LANE_M away
    return drive


def _plan_leg(meta: dict, city: Any, kind: str, seed, speed_mps: float, duration_s: float,
              far_from_en: tuple[float, float] | None = None) -> Drive:
    """A route for ``duration_s`` of driving inside the tiles' central quarters (VIGOR positives: where the map can
    answer) when the streets there allow it, else anywhere in the city; its drive."""
    route_m = speed_mps * duration_s * ROUTE_LENGTH_FACTOR + ROUTE_MARGIN_M
    # the drive keeps LANE_M right of the centre line, at both ends of the teleport: crossings that far further
    far = dict(far_from_en=far_from_en, min_distance_m=KIDNAP_MIN_M + 2 * LANE_M) if far_from_en is not None else {}
    route = None
    if "tile_m" in meta:
        try:
            bounds = tile_grid(tuple(meta["size_m"]), float(meta["tile_m"])).camera_bounds()
            route = plan_route(street_graph(city.streets, tuple(city.size_m), bounds=bounds), kind, route_m,
                               np.random.default_rng(seed), **far)
        except (UnifyGeoError, ValueError, IndexError, KeyError):
            route = None  # too few streets inside the tiled area: drive the whole city instead
    if route is None:
        route = plan_route(street_graph(city.streets, tuple(city.size_m)), kind, route_m, np.random.default_rng(seed),
                           **far)
    return make_drive(route, speed_mps)
