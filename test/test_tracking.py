"""The sequential localizer (issue #17, item 1): odometry deltas, the calibrated tile likelihood, both beliefs on
scripted drives (maps that peak where the scene says), kidnap, lost, heading; then the real Localizer (micro model)
and a short drive through the demo city with the demo model."""
from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass

import numpy as np
import pytest

from unifygeo_ros import geo
from unifygeo_ros.errors import ImageError, UnifyGeoError
from unifygeo_ros.localization.fix import Fix, QueryEvidence
from unifygeo_ros.localization.gate import gate_track
from unifygeo_ros.localization.localizer import TileMaps
from unifygeo_ros.localization.posterior import Calibration
from unifygeo_ros.localization.tracking import (NEEDS_HEADING, OdometryDelta, SequentialLocalizer, TrackingInputError,
                                                TrackingSettings)
from unifygeo_ros.localization.tracking_evidence import TileLikelihood, tiles_under
from unifygeo_ros.localization.tracking_ratios import EvidenceRatios
from unifygeo_ros.localization.tracking_sensors import SensorFit

TILE_M, GRID, HW = 70.0, 9, 24  # 9 x 9 tiles on a half-tile stride: 350 m across
CAL = Calibration(score_temperature=1.0, outside_logit=3.0, map_temperature=1.0, pl_map_temperature=1.0)
FILTERS = ("particles", "grid")


# ------------------------------------------------------------------------------------- a scripted world
@dataclass
class Geometry:
    """What the filter reads of an index: tile centres, tile side, origin, the spatial filter."""

    en_m: np.ndarray
    tile_m: float = TILE_M
    origin: geo.LocalENU = geo.LocalENU(47.0, 8.0)

    def tiles_within(self, east_m, north_m, radius_m):
        return np.nonzero(np.hypot(self.en_m[:, 0] - east_m, self.en_m[:, 1] - north_m) <= radius_m)[0]


@dataclass
class Scene:
    """Stands for an image: where the camera is, where its maps peak, and the global fix (None: withheld)."""

    truth: tuple[float, float]
    peak: tuple[float, float] | None = None  # default: the truth
    fix: tuple[float, float] | None = None
    shape: tuple[int, int, int] = (96, 192, 3)
    heading_deg: float | None = None  # what the model reads from the image (unknown-orientation models)


class ScriptedLocalizer:
    """The Localizer's interface for the filter, with maps that peak (sigma 2 m) at the scene's peak in the tiles
    holding it (score 6) and are flat in the others (score -3)."""

    known_orientation = True

    def __init__(self):
        s = TILE_M / 2
        self.index = Geometry(np.array([(i * s, j * s) for j in range(GRID) for i in range(GRID)], float))
        self.calibration = CAL
        self.queries: list[tuple[float | None, int]] = []  # (heading given, tiles asked)

    def maps(self, rows, peak, heading_deg=None) -> TileMaps:
        rows = np.asarray(rows, np.int64)
        c = self.index.en_m[rows]
        off = (np.arange(HW) + 0.5) / HW * TILE_M - TILE_M / 2
        east = c[:, 0, None, None] + off[None, None, :]
        north = c[:, 1, None, None] - off[None, :, None]
        d2 = (east - peak[0]) ** 2 + (north - peak[1]) ** 2
        holds = np.all(np.abs(c - np.asarray(peak)) <= TILE_M / 2, axis=1)
        maps = np.where(holds[:, None, None], np.exp(-0.5 * d2 / 4.0), 1.0)
        maps = (maps / maps.sum(axis=(1, 2), keepdims=True)).astype(np.float32)
        vec = np.zeros((len(rows), 2, HW, HW), np.float32)
        if heading_deg is not None:  # (east, north) = (sin h, cos h), length 0.99 (8 deg)
            rad = math.radians(heading_deg)
            vec[:, 0], vec[:, 1] = 0.99 * math.sin(rad), 0.99 * math.cos(rad)
        return TileMaps(rows, c, TILE_M, maps, np.where(holds, 6.0, -3.0), vec)

    def localize_with_maps(self, image, rows, heading_deg=None, heading_std_deg=5.0, global_search=True):
        if image.shape[0] < 4:
            raise ImageError("a panorama needs at least 4 rows")
        self.queries.append((heading_deg, len(rows)))
        peak = image.peak or image.truth
        fix = None
        if global_search and image.fix is not None:
            near = self.index.tiles_within(*image.fix, TILE_M / math.sqrt(2))
            ev = self.maps(near, image.fix)
            model = not self.known_orientation
            h = (image.heading_deg if model else heading_deg) or 0.0
            fix = Fix(0.0, 0.0, image.fix[0], image.fix[1], h, float(geo.heading_to_yaw_deg(h)), np.eye(2) * 4.0,
                      20.0 if model else 5.0, 0.9, "t", 1, 1, False, protection_level_m=8.0,
                      heading_source="model" if model else "input")
            fix.evidence = QueryEvidence(np.array(image.fix), ev.centres_en_m, np.full(len(near), TILE_M), ev.maps,
                                         ev.scores)
        maps = self.maps(rows, peak, image.heading_deg)
        maps.timings_ms = {"total": 1.0}
        return fix, maps


def drive(n: int, start=(80.0, 100.0), speed=5.0, yaw_rate=0.0, dt=0.5):
    """(positions (n, 2), ENU yaws (n,), deltas (n - 1)) of a constant-twist drive starting east."""
    pos, yaw = [np.array(start)], [0.0]
    deltas = []
    for _ in range(n - 1):
        d = OdometryDelta.from_twist(speed, yaw_rate, dt, 0.05 ** 2, math.radians(0.5) ** 2, 0.01)
        pos.append(pos[-1] + d.in_world(yaw[-1]))
        yaw.append(yaw[-1] + d.yaw_rad)
        deltas.append(d)
    return np.array(pos), np.array(yaw), deltas


def compass(yaw_rad: float) -> float:
    return float(geo.yaw_to_heading_deg(math.degrees(yaw_rad)))


def run(tracker, pos, yaw, deltas, scene=lambda k, p: Scene(tuple(p), fix=tuple(p) if k % 4 == 0 else None),
        heading=True, heading_offset_deg=0.0, heading_std_deg=1.0):
    """The drive through ``tracker``; ``heading``: an IMU (its compass reads ``heading_offset_deg`` clockwise of the
    truth, with the 1-sigma ``heading_std_deg``)."""
    out = []
    for k, p in enumerate(pos):
        if k:
            tracker.predict(deltas[k - 1])
        out.append(tracker.step(scene(k, p), float(k) * 0.5,
                                compass(yaw[k]) + heading_offset_deg if heading else None, heading_std_deg))
    return out


def error(est, p) -> float:
    return math.hypot(est.east_m - p[0], est.north_m - p[1])


# ------------------------------------------------------------------------------------------------ motion
def test_odometry_from_twist_chains_into_the_arc_and_inverts_between_poses():
    v, w, t = 4.0, math.radians(20.0), 2.0
    whole = OdometryDelta.from_twist(v, w, t)
    chained = OdometryDelta.from_twist(v, w, t / 40)
    for _ in range(39):
        chained = chained.then(OdometryDelta.from_twist(v, w, t / 40, 0.01, 1e-4))
    radius = v / w  # the exact arc: forward R sin(wt), left R (1 - cos(wt))
    assert chained.forward_m == pytest.approx(radius * math.sin(w * t), abs=1e-3)
    assert chained.left_m == pytest.approx(radius * (1 - math.cos(w * t)), abs=1e-3)
    assert whole.forward_m == pytest.approx(chained.forward_m, abs=1e-6) and chained.dt_s == pytest.approx(t)
    assert chained.cov[0, 0] > 0 and chained.cov[2, 2] == pytest.approx(39 * 1e-4 * (t / 40) ** 2)
    back = OdometryDelta.between((1.0, 2.0, 0.3), (1.0 + math.cos(0.3) * 3, 2.0 + math.sin(0.3) * 3, 0.5))
    assert (back.forward_m, back.left_m, back.yaw_rad) == pytest.approx((3.0, 0.0, 0.2))


@pytest.mark.parametrize("kwargs", [dict(forward_m=math.nan, left_m=0, yaw_rad=0),
                                    dict(forward_m=1, left_m=0, yaw_rad=0, cov=-np.eye(3)),
                                    dict(forward_m=1, left_m=0, yaw_rad=0, dt_s=-1.0)])
def test_odometry_delta_refuses_unusable_values_with_one_line(kwargs):
    with pytest.raises(TrackingInputError) as exc:
        OdometryDelta(**kwargs)
    assert isinstance(exc.value, UnifyGeoError) and "\n" not in str(exc.value)


@pytest.mark.parametrize("kwargs", [dict(filter="kalman"), dict(particles=0), dict(alpha=1.0),
                                    dict(evidence_weight=math.nan), dict(cold_start="guess"),
                                    dict(cold_evidence_weight=0.0), dict(map_bias_std_m=-1.0),
                                    dict(map_bias_std_m=math.inf)])
def test_settings_are_validated(kwargs):
    with pytest.raises(TrackingInputError):
        TrackingSettings(**kwargs)


# ------------------------------------------------------------------------------------------- likelihood
def test_likelihood_peaks_at_the_map_peak_is_sharpened_by_the_temperature_and_floors_outside():
    loc = ScriptedLocalizer()
    rows = loc.index.tiles_within(100.0, 100.0, 60.0)
    maps = loc.maps(rows, (100.0, 100.0))
    lik = TileLikelihood(maps, CAL, 350.0 ** 2)
    at = lik.density_at(np.array([[100.0, 100.0], [104.0, 100.0], [1000.0, 1000.0]]))
    assert at[0] > at[1] > at[2] and at[2] == pytest.approx(lik.outside)
    sharp = TileLikelihood(maps, CAL, 350.0 ** 2, map_temperature=0.5)
    ratio = lambda d: d[0] / d[1]  # noqa: E731
    assert ratio(sharp.density_at(np.array([[100.0, 100.0], [104.0, 100.0]]))) > ratio(at)
    logw = TileLikelihood.log_weights(at, 1.0, 0.01)
    assert logw.max() - logw.min() == pytest.approx(math.log(100.0))  # floored at 1 % of the maximum
    assert lik.evidence_ratio(at[:1], np.ones(1)) > 100 and lik.evidence_ratio(at[2:], np.ones(1)) == pytest.approx(1)


def test_tiles_under_the_belief_are_those_holding_its_mass_most_first():
    c = np.array([[0.0, 0.0], [35.0, 0.0], [70.0, 0.0], [200.0, 0.0]])
    pts = np.array([[30.0, 0.0], [31.0, 0.0], [50.0, 0.0]])
    assert tiles_under(c, 70.0, pts, np.array([0.4, 0.4, 0.2]), 9).tolist() == [0, 1, 2]
    assert tiles_under(c, 70.0, pts, np.array([0.4, 0.4, 0.2]), 2).tolist() == [0, 1]  # tile 2 holds only 0.2


def test_the_maps_shared_error_widens_covariance_and_protection_level_by_the_convolution():
    from unifygeo_ros.localization.tracking_belief import BeliefSummary, with_map_bias
    alpha = 0.01
    point = BeliefSummary(np.zeros(2), np.zeros((2, 2)), 0.0, 0.0, 0.0)
    at_one_place = np.zeros((100, 2)), np.full(100, 0.01)
    assert with_map_bias(point, *at_one_place, 0.0, alpha) is point
    # a point belief spread by N(0, s^2 I): the radius is Rayleigh's quantile s * sqrt(-2 ln alpha)
    out = with_map_bias(point, *at_one_place, 1.5, alpha)
    assert out.protection_level_m == pytest.approx(1.5 * math.sqrt(-2 * math.log(alpha)), rel=0.01)
    assert np.allclose(out.covariance_en_m2, np.eye(2) * 2.25)
    # a Gaussian belief N(0, I) with s = 1: N(0, 2 I), radius sqrt(2) * sqrt(-2 ln alpha)
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((20000, 2))
    belief = BeliefSummary(np.zeros(2), np.eye(2), 0.0, 0.0, 3.0)
    out = with_map_bias(belief, pts, np.full(len(pts), 1 / len(pts)), 1.0, alpha)
    assert out.protection_level_m == pytest.approx(math.sqrt(2) * math.sqrt(-2 * math.log(alpha)), rel=0.03)
    # never below the belief's own protection level (a grid counts its cells at their far corner)
    wide = BeliefSummary(np.zeros(2), np.eye(2), 0.0, 0.0, 50.0)
    assert with_map_bias(wide, *at_one_place, 1.0, alpha).protection_level_m == 50.0


@pytest.mark.parametrize("name", FILTERS)
def test_the_published_belief_carries_the_maps_shared_error(name):
    pos, yaw, deltas = drive(20)
    plain = run(SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(filter=name, particles=500,
                                                                          map_bias_std_m=0.0)), pos, yaw, deltas)
    biased = run(SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(filter=name, particles=500,
                                                                           map_bias_std_m=2.0)), pos, yaw, deltas)
    for a, b in zip(plain[5:], biased[5:]):  # the same filter (same seed, same frames): only what is published grows
        assert (a.east_m, a.north_m) == pytest.approx((b.east_m, b.north_m))
        assert np.allclose(b.covariance_en_m2, a.covariance_en_m2 + np.eye(2) * 4.0)
        assert b.protection_level_m >= max(a.protection_level_m, 2.0 * math.sqrt(-2 * math.log(0.01))) - 0.01


def stop_and_go(speeds: list[float], dt=0.5, start=(80.0, 100.0)):
    """(positions, yaws, deltas) of a drive east whose frame k is reached at ``speeds[k - 1]`` (0: standing)."""
    pos, deltas = [np.array(start)], []
    for v in speeds:
        d = OdometryDelta.from_twist(v, 0.0, dt, 0.05 ** 2 if v else 0.0, math.radians(0.5) ** 2 if v else 0.0,
                                     0.01 if v else 0.0)
        pos.append(pos[-1] + d.in_world(0.0))
        deltas.append(d)
    return np.array(pos), np.zeros(len(pos)), deltas


# ---------------------------------------------------------------------------------------- scripted drives
@pytest.mark.parametrize("name", FILTERS)
def test_filter_converges_on_a_drive_and_its_protection_level_bounds_the_error(name):
    pos, yaw, deltas = drive(40, yaw_rate=math.radians(4.0))
    tracker = SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(filter=name, particles=500))
    est = run(tracker, pos, yaw, deltas)
    assert est[0].initialised and est[0].reinitialised.startswith("cold start")
    errs = np.array([error(e, p) for e, p in zip(est, pos)])
    pl = np.array([e.protection_level_m for e in est])
    assert errs[10:].max() < 1.5 and est[-1].converged
    assert np.mean(errs <= pl) >= 0.9
    assert abs(geo.angle_diff_deg(est[-1].heading_deg, compass(yaw[-1]))) < 3.0
    lat, lon = tracker.localizer.index.origin.from_en(est[-1].east_m, est[-1].north_m)
    assert (est[-1].latitude_deg, est[-1].longitude_deg) == pytest.approx((float(lat), float(lon)))
    assert all(e.tiles_evaluated <= tracker.settings.max_tiles for e in est) and est[-1].tiles_evaluated > 0


def test_a_robot_standing_still_sees_one_view_however_many_frames():
    """Standing, frame after frame shows the same scene with the same map error: those frames add no evidence
    and no evidence ratio to the windows that judge the belief (found with `bag synth --stop`: a 90 deg camera's
    belief, sharpened by 30 s of one view, scored like an informative camera's and was declared lost 3 s after
    pulling away, 0.7 m from the truth). Here 40 standing frames see their maps 3 m north of the truth."""
    speeds = [8.0] * 10 + [0.0] * 40 + [8.0] * 10
    pos, yaw, deltas = stop_and_go(speeds)
    standing = set(range(11, 51))

    def scene(k, p):
        peak = (p[0], p[1] + 3.0) if k in standing else None
        return Scene(tuple(p), peak=peak, fix=tuple(p) if k == 0 else None)

    def drive_with(settings):
        return run(SequentialLocalizer(ScriptedLocalizer(), settings), pos, yaw, deltas, scene=scene)

    est = drive_with(TrackingSettings(particles=1000, map_bias_std_m=0.0))
    assert all(math.isnan(est[k].evidence_log_ratio) for k in standing)
    assert all(math.isfinite(est[k].evidence_log_ratio) for k in range(1, 11))
    before, after = est[10], est[50]
    assert math.hypot(after.east_m - before.east_m, after.north_m - before.north_m) < 0.3  # not pulled north
    assert np.trace(after.covariance_en_m2) >= np.trace(before.covariance_en_m2)  # only the process noise
    assert all(e.initialised and not (e.lost or e.unconfirmed or e.weak) for e in est[10:])
    assert max(error(e, p) for e, p in zip(est[51:], pos[51:])) < 1.5
    per_frame = drive_with(TrackingSettings(particles=1000, map_bias_std_m=0.0, frame_spacing_m=0.0, still_m=0.0))
    assert per_frame[50].north_m - per_frame[10].north_m > 1.5  # weighed per frame, one view pulls it 3 m north
    floored = drive_with(TrackingSettings(particles=1000, map_bias_std_m=0.0, still_m=0.0))
    assert floored[50].north_m - floored[10].north_m > 0.5  # evidence_min_share alone: 40 x 0.1 frames still pull


def test_accepted_fixes_seen_standing_still_are_one_view_for_the_kidnap_rule():
    """Twenty accepted global fixes at one wrong place 120 m away while the robot stands still are one view: no
    re-initialisation until it has driven on and a second view agrees."""
    speeds = [8.0] * 10 + [0.0] * 20 + [8.0] * 4
    pos, yaw, deltas = stop_and_go(speeds)
    wrong = lambda p: (p[0], p[1] + 120.0)  # noqa: E731 - moves with the robot, as a kidnap's place would

    def scene(k, p):
        if k == 0:
            return Scene(tuple(p), fix=tuple(p))
        return Scene(tuple(p), peak=wrong(p), fix=wrong(p)) if k >= 10 else Scene(tuple(p))

    est = run(SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(particles=1000)), pos, yaw, deltas,
              scene=scene)
    assert not any(e.reinitialised for e in est[1:31])
    moved = [k for k, e in enumerate(est) if e.reinitialised and k > 0]
    assert moved and moved[0] == 31
    assert error(est[-1], wrong(pos[-1])) < 3.0


@pytest.mark.parametrize("name", FILTERS)
def test_frames_closer_than_the_frame_spacing_weigh_less(name):
    """frame_spacing_m: a robot standing still sees the same scene frame after frame (the maps' errors are
    shared), so its frames weigh evidence_min_share each (still_m 0 here: with it they are not measured at all,
    test_a_robot_standing_still_sees_one_view_however_many_frames) and the belief narrows slower than when every
    frame weighs fully; a robot driving the spacing between frames is updated (evidence and process noise) as
    without it."""
    def spread(settings, speed):
        pos, yaw, deltas = drive(30, speed=speed)
        est = run(SequentialLocalizer(ScriptedLocalizer(), settings), pos, yaw, deltas,
                  scene=lambda k, p: Scene(tuple(p), fix=tuple(p) if k == 0 else None))
        return float(np.trace(est[-1].covariance_en_m2)), est[-1]

    base = TrackingSettings(filter=name, particles=1000, map_bias_std_m=0.0, frame_spacing_m=0.0, still_m=0.0)
    spaced = dataclasses.replace(base, frame_spacing_m=4.0, evidence_min_share=0.1)
    still_full, _ = spread(base, 0.0)
    still_spaced, est = spread(spaced, 0.0)
    assert est.initialised and still_spaced > 2.0 * still_full
    moving_full, _ = spread(base, 8.0)  # 4 m between frames: the spacing itself, so the same updates and noise
    moving_spaced, _ = spread(spaced, 8.0)
    assert moving_spaced == pytest.approx(moving_full, rel=1e-9)
    with pytest.raises(TrackingInputError, match="evidence_min_share"):
        TrackingSettings(evidence_min_share=0.0)
    with pytest.raises(TrackingInputError, match="still_m"):
        TrackingSettings(still_m=-0.1)


def test_the_distance_share_of_the_process_noise_is_per_metre_whatever_the_frame_rate():
    """With frame_spacing_m, position_noise_frac is a random walk over the distance driven (its variance over 8 m is
    the same in 2 steps of 4 m or 10 of 0.8 m); without it (0) it is drawn per step, so a faster camera adds less."""
    def added_variance(spacing, steps):
        t = SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(
            particles=200, frame_spacing_m=spacing, position_noise_m_per_sqrt_s=0.0))
        t.step(Scene((80.0, 100.0), fix=(80.0, 100.0)), 0.0, 90.0, 1.0)
        assert t.initialised
        got = []
        t.belief.predict = lambda delta: got.append(delta.cov[0, 0])
        for _ in range(steps):
            t.predict(OdometryDelta.from_twist(8.0 / steps, 0.0, 1.0, 1e-12, 1e-12, 1e-12))
        return sum(got) - steps * 1e-12 * 1.5 ** 2

    frac2 = TrackingSettings().position_noise_frac ** 2
    assert added_variance(4.0, 2) == pytest.approx(frac2 * 4.0 * 8.0, rel=1e-6)
    assert added_variance(4.0, 10) == pytest.approx(frac2 * 4.0 * 8.0, rel=1e-6)
    assert added_variance(0.0, 2) == pytest.approx(frac2 * 2 * 16.0, rel=1e-6)
    assert added_variance(0.0, 10) == pytest.approx(frac2 * 10 * 0.64, rel=1e-6)


def test_the_particles_learn_an_odometry_that_reads_8_percent_short():
    """A wheel odometry whose scale is off (tyre radius, load) moves every particle too short alike: a bias, not
    per-sample noise. Taken as right, the belief trails the images by metres with a protection level that does not
    hold it; with odometry_scale_std each particle carries its own scale and those with the right one stay, and a
    re-initialisation keeps what was learnt."""
    pos, yaw, deltas = drive(80, speed=5.0, yaw_rate=math.radians(2.0))
    short = [OdometryDelta(d.forward_m * 0.92, d.left_m * 0.92, d.yaw_rad, d.cov, d.dt_s) for d in deltas]

    def replay(scale_std):
        t = SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(
            particles=500, odometry_scale_std=scale_std, odometry_scale_walk_per_sqrt_m=0.001 if scale_std else 0.0))
        est = run(t, pos, yaw, short, scene=lambda k, p: Scene(tuple(p), fix=tuple(p) if k == 0 else None))
        err = np.array([error(e, p) for e, p in zip(est, pos)])[40:]
        beyond = int(sum(e > x.protection_level_m for e, x in zip(err, est[40:])))
        learnt_scale = float(t.belief.w @ t.belief.scale)
        if scale_std:  # what it publishes
            assert est[-1].odometry_scale == pytest.approx(learnt_scale)
        else:
            assert math.isnan(est[-1].odometry_scale)
        t.belief.init_samples(np.zeros((500, 2)), np.zeros(500))  # a re-initialisation elsewhere (a kidnap)
        return float(err.mean()), beyond, learnt_scale, float(t.belief.scale.mean())

    fixed, learnt = replay(0.0), replay(0.05)
    assert fixed[0] > 3.0 and fixed[1] > 20 and fixed[2] == pytest.approx(1.0) and fixed[3] == 1.0
    assert learnt[0] < 1.5 and learnt[1] == 0
    assert learnt[2] == pytest.approx(1.0 / 0.92, abs=0.03)
    assert learnt[3] == pytest.approx(learnt[2], abs=0.01)  # the robot's odometry did not change with the place


def test_the_odometry_scale_fitted_over_a_long_stretch():
    """odometry_scale_window_m: a similarity fitted between the odometry's own track and the belief's measures the
    scale whatever the route's shape (here a curve, the belief's track turned and shifted from the odometry's); it is
    off scale outside the deadband, never fitted across a re-initialisation, kept through one (the robot's, not the
    place's), and fitted again as the robot drives on."""
    m = SensorFit(100.0, 0.02)
    step = OdometryDelta.from_twist(5.0, math.radians(10.0), 1.0)  # 5 m per step on a circle of 29 m radius
    turn = np.array([[math.cos(0.7), -math.sin(0.7)], [math.sin(0.7), math.cos(0.7)]])

    def drive_on(monitor, steps, scale, origin, converged=True, pl_m=3.0):
        for _ in range(steps):
            monitor.move(step)
            monitor.observe(origin + scale * turn @ monitor._pose[:2], converged, pl_m)

    drive_on(m, 30, 1.05, np.array([100.0, -40.0]))  # the robot covers 5 % more than its odometry says
    assert m.scale_estimate == pytest.approx(1.05, abs=1e-6) and m.off_scale
    m.restart()  # the belief jumped 500 m (a re-initialisation): no stretch spans the jump
    drive_on(m, 17, 1.0, np.array([600.0, 0.0]))  # 85 m since: not a window yet, the scale is kept
    assert m.scale_estimate == pytest.approx(1.05, abs=1e-6) and m.off_scale
    drive_on(m, 10, 1.0, np.array([600.0, 0.0]))  # now the odometry is right: fitted again, inside the deadband
    assert m.scale_estimate == pytest.approx(1.0, abs=1e-6) and not m.off_scale
    kept = len(m._track)
    for _ in range(500):  # a robot standing still: its frames add nothing to the stretch
        m.observe(np.array([600.0, 0.0]) + turn @ m._pose[:2], True, 3.0)
    assert len(m._track) == kept
    unconverged = SensorFit(100.0, 0.02)
    drive_on(unconverged, 30, 1.05, np.zeros(2), converged=False)
    assert math.isnan(unconverged.scale_estimate) and not unconverged.off_scale
    wide = SensorFit(100.0, 0.02)  # published, but with a cold start's protection level: not a stretch
    drive_on(wide, 30, 1.05, np.zeros(2), pl_m=8.0)
    assert math.isnan(wide.scale_estimate)
    spin = SensorFit(100.0, 0.02)  # a turn on the spot: no stretch to fit a scale on
    for _ in range(40):
        spin.move(OdometryDelta(2.5, 0.0, math.pi))  # back and forth along the same 2.5 m
        spin.observe(1.05 * spin._pose[:2], True, 3.0)
    assert math.isnan(spin.scale_estimate)
    off = SensorFit(0.0, 0.02)
    drive_on(off, 30, 1.05, np.zeros(2))
    assert not off.active and math.isnan(off.scale_estimate) and not off.off_scale


def test_the_filter_corrects_an_odometry_8_percent_short_fitted_over_a_long_stretch():
    """The same drive as above: with odometry_scale_window_m the filter finds the odometry off scale, its particles
    get their own scale from there, and the belief stops trailing the images; an odometry within the deadband moves
    the belief exactly as without the fit (no scale state: an odometry calibrated to a per cent gets no freedom)."""
    pos, yaw, deltas = drive(120, speed=5.0, yaw_rate=math.radians(2.0))

    def replay(deltas, window_m, tracker=None):
        t = SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(particles=500, odometry_scale_window_m=window_m))
        est = run(t, pos, yaw, deltas, scene=lambda k, p: Scene(tuple(p), fix=tuple(p) if k == 0 else None))
        err = np.array([error(e, p) for e, p in zip(est, pos)])
        if tracker is not None:
            tracker.append(t)
        return est, err

    short = [OdometryDelta(d.forward_m * 0.92, d.left_m * 0.92, d.yaw_rad, d.cov, d.dt_s) for d in deltas]
    est0, err0 = replay(short, 0.0)
    trackers = []
    est1, err1 = replay(short, 100.0, trackers)
    beyond = [int(sum(e > x.protection_level_m for e, x in zip(err[80:], est[80:]))) for err, est in
              ((err0, est0), (err1, est1))]
    assert err0[80:].mean() > 4.0 and beyond[0] > 30 and math.isnan(est0[-1].odometry_scale)
    assert err1[80:].mean() < 0.4 * err0[80:].mean() and beyond[1] <= 3
    assert est1[-1].odometry_scale == pytest.approx(1.0 / 0.92, abs=0.03)  # what the particles learnt
    found = trackers[0].sensor_fit.found
    assert found is not None and found[0] > 1.02  # the first fit off scale (short of 1.087: the particles learn it)
    trackers[0].reset()  # the robot's odometry did not change: its particles keep a scale state
    assert trackers[0].belief.scale_std == pytest.approx(0.05) and trackers[0].belief.learnt_scale[0] == found[0]
    near = [OdometryDelta(d.forward_m * 0.995, d.left_m * 0.995, d.yaw_rad, d.cov, d.dt_s) for d in deltas]
    (a, _), (b, _) = replay(near, 0.0), replay(near, 100.0)
    assert [(e.east_m, e.north_m) for e in a] == [(e.east_m, e.north_m) for e in b]
    assert b[-1].odometry_scale == pytest.approx(1.0 / 0.995, abs=0.01)  # what the fit measured


def test_the_odometry_scale_is_held_through_a_cold_start_and_drawn_again_once_tracking():
    """While the filter is not initialised every particle moves by the learnt mean scale (a cold start gets no more
    freedom to fit a wrong place); once initialised the scales spread again around what was learnt."""
    from unifygeo_ros.localization.tracking_belief import ParticleBelief
    b = ParticleBelief(400, np.random.default_rng(5), scale_std=0.05)
    assert b.scales_held and np.all(b.scale == 1.0)
    b.release_scales()
    assert np.std(b.scale) == pytest.approx(0.05, rel=0.2)
    b.scale = np.full(400, 1.08) + 0.002 * np.random.default_rng(6).standard_normal(400)  # what tracking learnt
    b.hold_scales()
    assert np.all(b.scale == b.scale[0]) and b.scale[0] == pytest.approx(1.08, abs=1e-3)
    assert np.all(b.draw_scales(7) == b.scale[0])
    b.release_scales()  # the spread kept is at least a fifth of scale_std
    assert np.mean(b.scale) == pytest.approx(1.08, abs=0.003) and np.std(b.scale) == pytest.approx(0.01, rel=0.2)


def test_without_odometry_scale_the_particles_draw_nothing_more():
    """odometry_scale_std 0 (no scale state): every scale stays 1 and no random number is drawn for it, so the
    particles move exactly as without the scale state."""
    from unifygeo_ros.localization.tracking_belief import ParticleBelief
    a, b = (ParticleBelief(50, np.random.default_rng(3)) for _ in range(2))
    a.init_samples(np.zeros((50, 2)), np.zeros(50))
    b.en, b.yaw = np.zeros((50, 2)), np.zeros(50)
    d = OdometryDelta.from_twist(5.0, 0.1, 0.5, 0.01, 0.001, 0.0)
    for p in (a, b):
        p.predict(d)
    assert np.all(a.scale == 1.0) and np.array_equal(a.en, b.en) and np.array_equal(a.yaw, b.yaw)
    assert a.rng.random() == b.rng.random()

@pytest.mark.parametrize("name", FILTERS)
def test_one_confident_wrong_frame_does_not_move_the_belief(name):
    pos, yaw, deltas = drive(30)
    bad = 20

    def scene(k, p):
        return Scene(tuple(p), peak=(p[0] + 25.0, p[1]) if k == bad else None, fix=tuple(p) if k == 0 else None)

    est = run(SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(filter=name, particles=500)), pos, yaw,
              deltas, scene)
    assert error(est[bad], pos[bad]) < 2.0 and error(est[-1], pos[-1]) < 1.5


@pytest.mark.parametrize("name", FILTERS)
def test_kidnap_is_detected_by_accepted_fixes_outside_the_belief(name):
    pos, yaw, deltas = drive(40, speed=8.0)  # 4 m between frames: frame_spacing_m, each fix counts fully
    jump = np.array([0.0, 150.0])  # the odometry does not see it

    def scene(k, p):
        q = p + jump if k >= 20 else p
        return Scene(tuple(q), fix=tuple(q) if k in (0, 21, 22, 23) else None)

    tracker = SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(filter=name, particles=500))
    est = run(tracker, pos, yaw, deltas, scene)
    again = [k for k, e in enumerate(est) if e.reinitialised and k > 0]
    assert again and again[0] <= 22 and ("kidnap" in est[again[0]].reinitialised
                                          or "lost" in est[again[0]].reinitialised)
    assert error(est[-1], pos[-1] + jump) < 1.5


@pytest.mark.parametrize("name", FILTERS)
def test_wrong_fixes_from_nearly_the_same_place_count_as_one_view(name):
    """At 5 Hz and 8 m/s frames are 1.6 m apart: two accepted global fixes in a row at the same wrong place (one
    wrong match seen twice) while the belief briefly fails to explain the images do not re-initialise it - the
    second counts by the distance driven since the first over frame_spacing_m (1.6 / 4), like the evidence. Counted per frame
    (frame_spacing_m 0) they did: a replayed 5 Hz rig followed such a pair 68-112 m off (BENCHMARKS.md 1n)."""
    pos, yaw, deltas = drive(30, speed=8.0, dt=0.2)
    wrong = np.array([0.0, 60.0])

    def scene(k, p):
        if k in (15, 16):  # the maps and the fixes at the same wrong place: the belief fails these two frames
            return Scene(tuple(p), peak=tuple(p + wrong), fix=tuple(p + wrong))
        return Scene(tuple(p), fix=tuple(p) if k == 0 else None)

    for spacing_m, reinitialised in ((4.0, False), (0.0, True)):
        s = TrackingSettings(filter=name, particles=500, frame_spacing_m=spacing_m)
        est = run(SequentialLocalizer(ScriptedLocalizer(), s), pos, yaw, deltas, scene)
        again = [k for k, e in enumerate(est) if e.reinitialised and k > 0]
        assert est[15].evidence_log_ratio < s.collapse_log_ratio < est[14].evidence_log_ratio
        assert (again == [16]) if reinitialised else not again, (spacing_m, again)
        assert (error(est[-1], pos[-1]) > 30.0) if reinitialised else error(est[-1], pos[-1]) < 2.0


@pytest.mark.parametrize("name", FILTERS)
def test_fixes_a_frame_spacing_apart_count_as_two_views_however_many_frames_between(name):
    """At 4 Hz and 8 m/s (2 m between frames) two accepted fixes at the same place 4 m apart, a frame without an
    accepted fix between them, are two views (frame_spacing_m): while the belief fails to explain the images they
    re-initialise it at the second - the count goes by the distance between the fixes, not by their frames."""
    pos, yaw, deltas = drive(30, speed=8.0, dt=0.25)
    jump = np.array([0.0, 150.0])

    def scene(k, p):  # kidnapped at frame 15; accepted fixes of the new place at frames 15 and 17 only
        q = tuple(p + jump) if k >= 15 else tuple(p)
        return Scene(q, fix=q if k in (0, 15, 17) else None)

    est = run(SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(filter=name, particles=500)), pos, yaw,
              deltas, scene)
    again = [k for k, e in enumerate(est) if e.reinitialised and k > 0]
    assert again and again[0] == 17 and "2 accepted global fixes" in est[17].reinitialised, again
    assert error(est[-1], pos[-1] + jump) < 2.0


def test_evidence_ratios_judge_an_informative_and_a_narrow_camera():
    """The window's answers on ratios as measured: a panorama 12 on track then 2 at its old place (poor below 30 % of
    its usual: unconfirmed at once, lost after collapse_frames); a narrow camera 1.0 then 0 (never informative:
    weak once the last weak_frames average below weak_log_ratio, lost only when the whole window's sum is poor)."""
    s = TrackingSettings()
    pano = EvidenceRatios(s)
    for r in [12.0] * 10:
        pano.add(r)
    assert pano.informative() and not pano.unconfirmed() and not pano.weak()
    pano.add(2.0)  # above collapse_log_ratio (1), below poor_share of the median before
    assert pano.low_frames == 1 and pano.unconfirmed() and not pano.lost(candidates=True)
    for _ in range(s.collapse_frames - 1):
        pano.add(2.0)
    assert pano.lost(candidates=True) and pano.lost(candidates=False)
    narrow = EvidenceRatios(s)
    for r in [1.0] * 10:
        narrow.add(r)
    assert not narrow.informative() and not narrow.weak()
    for k in range(s.cold_collapse_frames):
        narrow.add(0.0)
        assert narrow.weak() == (k + 1 >= s.weak_frames - 1)  # five 0 and one 1.0 average 0.17
        assert not narrow.unconfirmed()
        assert narrow.lost(candidates=False) == (k + 1 >= s.collapse_frames)
        assert narrow.lost(candidates=True) == (sum(narrow.ratios) < s.collapse_log_ratio
                                                and len(narrow.ratios) == s.cold_collapse_frames
                                                and k + 1 >= s.collapse_frames)
    assert narrow.lost(candidates=True)
    narrow.clear()
    assert narrow.ratios == [] and narrow.low_frames == 0 and not narrow.lost(candidates=False)


@pytest.mark.parametrize("name", FILTERS)
def test_a_belief_the_images_stop_explaining_is_declared_lost(name):
    pos, yaw, deltas = drive(20)
    s = TrackingSettings(filter=name, particles=300, cold_start="accepted_fix")

    def scene(k, p):  # from frame 10 the camera is elsewhere and no fix is accepted
        return Scene(tuple(p + ([0.0, 150.0] if k >= 10 else 0.0)), fix=tuple(p) if k == 0 else None)

    est = run(SequentialLocalizer(ScriptedLocalizer(), s), pos, yaw, deltas, scene)
    assert not any(e.lost for e in est[:10])
    assert est[10 + s.collapse_frames - 1].lost and not est[-1].converged
    assert est[12].evidence_log_ratio < s.collapse_log_ratio < est[5].evidence_log_ratio


class CandidatesLocalizer(ScriptedLocalizer):
    """A narrow camera: every frame's global fix is withheld by the gate (protection level 300 m), its candidates
    are the tiles holding the truth and those holding two places drawn anew each frame, all with the same score and
    a sharp peak: no frame alone says which is right, the odometry does."""

    def __init__(self, seed=1):
        super().__init__()
        self.rng = np.random.default_rng(seed)

    def localize_with_maps(self, image, rows, heading_deg=None, heading_std_deg=5.0, global_search=True):
        fix, maps = super().localize_with_maps(image, rows, heading_deg, heading_std_deg, global_search)
        peaks = [image.peak or image.truth] + [tuple(self.rng.uniform(20.0, 260.0, 2)) for _ in range(2)]
        parts = [self.maps(self.index.tiles_within(*p, TILE_M / math.sqrt(2)), p) for p in peaks]
        held = [m.scores > 0 for m in parts]  # only the tiles holding each peak
        ev = QueryEvidence(np.array(peaks[1]), np.concatenate([m.centres_en_m[k] for m, k in zip(parts, held)]),
                           np.full(sum(int(k.sum()) for k in held), TILE_M),
                           np.concatenate([m.maps[k] for m, k in zip(parts, held)]),
                           np.concatenate([m.scores[k] for m, k in zip(parts, held)]))
        h = heading_deg or 0.0
        fix = Fix(0.0, 0.0, peaks[1][0], peaks[1][1], h, float(geo.heading_to_yaw_deg(h)), np.eye(2) * 4.0, 5.0,
                  0.9, "t", 1, 1, False, protection_level_m=300.0, heading_source="input")
        fix.evidence = ev
        return fix, maps


def test_candidate_cold_start_concentrates_on_the_true_place_and_publishes_nothing_while_spread():
    pos, yaw, deltas = drive(40, yaw_rate=math.radians(4.0))
    scene = lambda k, p: Scene(tuple(p))  # noqa: E731
    est = run(SequentialLocalizer(CandidatesLocalizer(), TrackingSettings(particles=1000, cold_start="candidates")),
              pos, yaw, deltas, scene)
    assert not any(e.fix_accepted for e in est)
    assert not est[0].initialised and math.isinf(est[0].protection_level_m) and math.isnan(est[0].east_m)
    assert math.isinf(est[0].cold_protection_level_m)  # three places alike, the background: spread
    assert gate_track(est[0], TrackingSettings().max_protection_level_m)[0] == "not_initialised"
    first = next(k for k, e in enumerate(est) if e.initialised)
    assert 2 <= first <= 15 and est[first].reinitialised.startswith("cold start from the candidates")
    assert all(error(e, p) < 3.0 for e, p in zip(est[first:], pos[first:]))
    assert est[-1].converged
    # the same frames with the old cold start: never initialised
    old = run(SequentialLocalizer(CandidatesLocalizer(), TrackingSettings(particles=1000, cold_start="accepted_fix")),
              pos, yaw, deltas, scene)
    assert not any(e.initialised for e in old)


def test_candidate_cold_start_takes_a_lost_belief_back_and_withholds_it_until_it_holds_again():
    pos, yaw, deltas = drive(60)
    s = TrackingSettings(particles=1000, cold_start="candidates", collapse_log_ratio=5.0)  # scripted: 12 vs 0.2

    def scene(k, p):  # from frame 20 the camera is 150 m away (the odometry does not see it), no fix accepted
        return Scene(tuple(p + ([0.0, 150.0] if k >= 20 else 0.0)))

    est = run(SequentialLocalizer(CandidatesLocalizer(), s), pos, yaw, deltas, scene)
    assert est[19].initialised and error(est[19], pos[19]) < 3.0
    back = next(k for k, e in enumerate(est) if k > 19 and not e.initialised)
    assert back <= 20 + s.cold_collapse_frames  # withheld (gate: not_initialised), not published as lost
    again = next(k for k, e in enumerate(est) if k > back and e.initialised)
    assert est[again].reinitialised.startswith("cold start from the candidates")
    assert all(error(e, p + [0.0, 150.0]) < 3.0 for e, p in zip(est[again:], pos[again:]))


def test_a_belief_the_last_frames_explain_little_is_withheld_as_weak_before_it_is_lost():
    """A camera whose frames are not judged one by one (informative_log_ratio out of reach) is withheld once the mean
    log evidence ratio of the last weak_frames frames falls below weak_log_ratio: after a kidnap, well before "lost"
    (scripted ratios: 12 on track, 0.2 at the old place)."""
    pos, yaw, deltas = drive(60)

    def scene(k, p):  # from frame 20 the camera is 150 m away (the odometry does not see it), no fix accepted
        return Scene(tuple(p + ([0.0, 150.0] if k >= 20 else 0.0)))

    first, old_place = {}, {}
    for frames in (0, 4):
        s = TrackingSettings(particles=1000, cold_start="candidates", collapse_log_ratio=5.0,
                             informative_log_ratio=100.0, weak_frames=frames, weak_log_ratio=5.0)
        est = run(SequentialLocalizer(CandidatesLocalizer(), s), pos, yaw, deltas, scene)
        assert est[19].initialised and not any(e.weak for e in est[:20])
        published = [k for k, e in enumerate(est) if k >= 20 and e.initialised and not gate_track(e)[0]]
        first[frames] = next((k for k, e in enumerate(est) if k >= 20 and e.weak), None)
        old_place[frames] = sum(error(est[k], pos[k] + [0.0, 150.0]) > 100.0 for k in published)
        if frames:
            assert 20 < first[frames] <= 20 + frames and gate_track(est[first[frames]])[0] == "weak"
            assert not est[first[frames]].converged
            assert all(error(est[k], pos[k] + [0.0, 150.0]) < 3.0 for k in published if k >= first[frames])
        else:
            assert first[frames] is None
    assert old_place[4] <= 3 < old_place[0]  # published at the old place after the kidnap
    with pytest.raises(TrackingInputError, match="weak_frames"):
        TrackingSettings(weak_frames=TrackingSettings().cold_collapse_frames + 1)


def test_candidate_cold_start_gives_up_an_informative_cameras_belief_after_collapse_frames():
    """A camera whose frames explained the belief well (scripted log ratio 12 on track) is lost after
    collapse_frames poor frames, as in accepted_fix mode; a camera declared uninformative waits for the window."""
    pos, yaw, deltas = drive(60)

    def scene(k, p):  # from frame 20 the camera is 150 m away (the odometry does not see it), no fix accepted
        return Scene(tuple(p + ([0.0, 150.0] if k >= 20 else 0.0)))

    backs = {}
    for informative in (3.0, 100.0):
        s = TrackingSettings(particles=1000, cold_start="candidates", collapse_log_ratio=5.0,
                             informative_log_ratio=informative)
        est = run(SequentialLocalizer(CandidatesLocalizer(), s), pos, yaw, deltas, scene)
        assert est[19].initialised
        backs[informative] = next(k for k, e in enumerate(est) if k > 19 and not e.initialised)
    assert backs[3.0] <= 20 + TrackingSettings().collapse_frames < backs[100.0]
    with pytest.raises(TrackingInputError, match="informative_log_ratio"):
        TrackingSettings(informative_log_ratio=math.nan)


def test_known_orientation_model_waits_for_a_heading_then_keeps_it_with_odometry_alone():
    loc = ScriptedLocalizer()
    pos, yaw, deltas = drive(30, yaw_rate=math.radians(10.0))
    tracker = SequentialLocalizer(loc, TrackingSettings(particles=500))
    first = tracker.step(Scene(tuple(pos[0]), fix=tuple(pos[0])), 0.0)
    assert not first.initialised and first.note == NEEDS_HEADING and not loc.queries
    tracker.initial_heading_deg = compass(yaw[0])
    est = run(tracker, pos, yaw, deltas, heading=False)  # no IMU: 150 deg of turning from the odometry alone
    assert est[0].initialised and abs(geo.angle_diff_deg(est[-1].heading_deg, compass(yaw[-1]))) < 5.0
    given = [h for h, _ in loc.queries[-5:]]  # the panorama is rolled by the belief's heading
    assert all(abs(geo.angle_diff_deg(h, compass(y))) < 5.0 for h, y in zip(given, yaw[-5:]))


@pytest.mark.parametrize("name", FILTERS)
def test_a_model_that_estimates_the_heading_corrects_the_belief_without_an_imu(name):
    """Unknown-orientation model: the first fix's heading is 25 deg off; the heading vectors at the belief's cells
    (the truth's) bring the heading back while the robot drives, with no IMU."""
    loc = ScriptedLocalizer()
    loc.known_orientation = False
    pos, yaw, deltas = drive(30, yaw_rate=math.radians(3.0))

    def scene(k, p):
        true = compass(yaw[k])
        return Scene(tuple(p), fix=tuple(p) if k == 0 else None, heading_deg=true + 25.0 if k == 0 else true)

    est = run(SequentialLocalizer(loc, TrackingSettings(filter=name, particles=500)), pos, yaw, deltas, scene,
              heading=False)
    assert abs(geo.angle_diff_deg(est[0].heading_deg, compass(yaw[0]))) > 10.0
    assert abs(geo.angle_diff_deg(est[-1].heading_deg, compass(yaw[-1]))) < 5.0 and error(est[-1], pos[-1]) < 2.0


def test_global_search_every_n_frames_once_tracking():
    pos, yaw, deltas = drive(10)
    est = run(SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(particles=300, global_every=3)), pos, yaw,
              deltas, lambda k, p: Scene(tuple(p), fix=tuple(p)))
    assert [e.fix is not None for e in est] == [k % 3 == 0 for k in range(10)]
    assert all(e.tracking_ms == e.step_ms for e in est if e.fix is None)


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("lost", [True, False])
def test_a_heading_far_from_the_belief_replaces_it(name, lost):
    """... and with heading_reset_lost (the default) declares the belief lost; an accepted fix that agrees keeps it."""
    pos, yaw, deltas = drive(6)
    tracker = SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(filter=name, particles=300,
                                                                        heading_reset_lost=lost))
    run(tracker, pos, yaw, deltas)
    assert not tracker.lost
    tracker.heading(compass(yaw[-1]) + 2.0, 1.0)  # within heading_reset_sigmas: a measurement, nothing more
    assert not tracker.lost
    tracker.heading(compass(yaw[-1]) + 90.0, 1.0)  # the robot was turned where the odometry could not see it
    assert tracker.lost == lost
    est = tracker.step(Scene(tuple(pos[-1]), fix=tuple(pos[-1])), 3.0)
    assert est.initialised and not est.lost and not est.reinitialised
    assert abs(geo.angle_diff_deg(est.heading_deg, compass(yaw[-1]) + 90.0)) < 3.0


def turned_kidnap(k0: int, n: int = 60):
    """A drive east, teleported 150 m north at frame ``k0`` and turned 90 deg clockwise there (it drives south on),
    which the odometry does not see: (true positions, true ENU yaws, odometry deltas). Most 200 m kidnaps of the
    benchmark drives turned the robot (33-176 deg; two of the holdout's by 2 and 5 deg)."""
    pos, yaw, deltas = drive(n)
    true_pos, true_yaw = pos.copy(), yaw.copy()
    true_pos[k0:] = pos[k0] + [0.0, 150.0] + (pos[k0:] - pos[k0]) @ np.array([[0.0, -1.0], [1.0, 0.0]])
    true_yaw[k0:] -= math.pi / 2
    return true_pos, true_yaw, deltas


def replay_turned_kidnap(k0: int, **settings) -> tuple[dict, np.ndarray]:
    """:func:`turned_kidnap` through the candidate cold start with and without heading_reset_lost (scripted ratios 12
    on track, 0.2 at the old place): ({heading_reset_lost: estimates}, true positions); converged before the kidnap."""
    true_pos, true_yaw, deltas = turned_kidnap(k0)
    out = {}
    for lost in (True, False):
        s = TrackingSettings(**{"particles": 1000, "cold_start": "candidates", "collapse_log_ratio": 5.0, **settings},
                             heading_reset_lost=lost)
        out[lost] = run(SequentialLocalizer(CandidatesLocalizer(), s), true_pos, true_yaw, deltas,
                        lambda k, p: Scene(tuple(p)))
        assert out[lost][k0 - 1].converged and error(out[lost][k0 - 1], true_pos[k0 - 1]) < 3.0
    return out, true_pos


def test_a_kidnap_that_turns_the_robot_loses_an_informative_cameras_belief_at_once():
    """The IMU's heading jumps where the odometry saw no turn: an informative camera's belief is lost on the kidnap's
    frame and the candidate cold start begins there, instead of after collapse_frames poor frames (unconfirmed
    meanwhile). A turn the odometry saw is no kidnap."""
    k0 = 20
    est, true_pos = replay_turned_kidnap(k0)
    back = {}
    for lost in (True, False):
        back[lost] = next(k for k, e in enumerate(est[lost]) if k >= k0 and not e.initialised)
        again = next(k for k, e in enumerate(est[lost]) if k > back[lost] and e.initialised)
        assert est[lost][again].reinitialised.startswith("cold start from the candidates")
        assert all(error(e, p) < 3.0 for e, p in zip(est[lost][again:], true_pos[again:]))
        assert not any(e.initialised and not gate_track(e)[0] and error(e, p) > 100.0
                       for e, p in zip(est[lost], true_pos))
    assert back[True] == k0 < back[False] <= k0 + TrackingSettings().collapse_frames
    turning = drive(40, yaw_rate=math.radians(20.0))  # 90 deg in 9 frames, seen by the odometry as by the IMU
    seen = run(SequentialLocalizer(CandidatesLocalizer(), TrackingSettings(particles=1000)), *turning,
               lambda k, p: Scene(tuple(p)))
    assert not any(e.lost or e.weak for e in seen) and seen[-1].converged


def test_a_kidnap_that_turns_the_robot_withholds_a_narrow_cameras_belief_until_it_could_be_lost():
    """A camera whose frames are never judged one by one (informative_log_ratio out of reach): after the turn the
    odometry did not see, its estimate is withheld (weak) - not published at the old place - until it is lost and
    cold-started, at the same frame as without heading_reset_lost, the belief the same frame for frame. Its evidence
    may explain the old place for a few frames by chance (a 90 deg view): the withholding lasts until the evidence
    window (cold_collapse_frames) holds only frames since the turn, then it is judged by its evidence as before."""
    k0 = 20
    est, true_pos = replay_turned_kidnap(k0, informative_log_ratio=100.0, weak_frames=4)
    old_place = [k for k, e in enumerate(est[False]) if k >= k0 and e.initialised and not gate_track(e)[0]
                 and error(e, true_pos[k]) > 100.0]
    assert old_place == [k0, k0 + 1, k0 + 2]  # published at the old place without it, until weak (4 frames)
    lost_at = next(k for k, e in enumerate(est[False]) if k >= k0 and (e.lost or not e.initialised))
    assert lost_at > k0 + 4  # a narrow camera's window needs more than weak_frames frames to be judged lost
    assert [gate_track(e)[0] for e in est[True][k0:lost_at]] == ["weak"] * (lost_at - k0)
    assert not any(e.initialised and not gate_track(e)[0] and error(e, p) > 100.0
                   for e, p in zip(est[True], true_pos))
    assert [(e.initialised, e.east_m, e.north_m) for e in est[True]] == [(e.initialised, e.east_m, e.north_m)
                                                                         for e in est[False]]
    # never lost (collapse_log_ratio out of reach) nor weak by its evidence: withheld for cold_collapse_frames frames
    est, _ = replay_turned_kidnap(k0, informative_log_ratio=100.0, weak_frames=4, weak_log_ratio=-100.0,
                                  cold_collapse_frames=8, collapse_log_ratio=-100.0)
    assert [gate_track(e)[0] for e in est[True][k0:k0 + 7]] == ["weak"] * 7
    assert not est[True][k0 + 7].weak and est[True][k0 + 7].initialised  # 8 frames measured: judged as before
    assert not any(e.weak for e in est[False][k0:k0 + 8])


@pytest.mark.parametrize("jump_deg", [30.0, 0.0])
def test_an_imu_turn_the_odometry_did_not_see_is_a_kidnap_however_wide_the_imus_covariance(jump_deg):
    """An IMU that reports a 10 deg sigma (its bias, say) puts heading_reset_sigmas' reach at ~100 deg; a 60 deg turn
    between two frames that the odometry did not see is caught by heading_jump_deg (0: not), one the odometry saw is
    not, nor one after a frame without a reading (nothing to compare with)."""
    pos, yaw, deltas = drive(12)
    tracker = SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(particles=300, heading_jump_deg=jump_deg))
    run(tracker, pos, yaw, deltas, heading_std_deg=10.0)
    tracker.predict(deltas[0])  # straight on
    tracker.heading(compass(yaw[-1]) + 60.0, 10.0)
    assert tracker.lost == (jump_deg > 0)
    est = tracker.step(Scene(tuple(pos[-1]), fix=tuple(pos[-1])), 6.0)  # an accepted fix that agrees keeps it
    assert not est.lost and abs(geo.angle_diff_deg(est.heading_deg, compass(yaw[-1]) + 60.0)) < (3.0 if jump_deg
                                                                                                   else 60.0)
    tracker.predict(OdometryDelta.from_twist(5.0, math.radians(-120.0), 0.5, 0.05 ** 2, math.radians(0.5) ** 2))
    tracker.heading(compass(yaw[-1]) + 120.0, 10.0)  # turned 60 deg clockwise, and the odometry saw it
    assert not tracker.lost
    if jump_deg:  # the belief took the +60 reading: it is at +120 now, and +180 lies within heading_reset_sigmas
        tracker.step(Scene(tuple(pos[-1])), 6.5, heading_deg=None)  # a frame without a reading
        tracker.heading(compass(yaw[-1]) + 180.0, 10.0)
        assert not tracker.lost
    with pytest.raises(TrackingInputError, match="heading_jump_deg"):
        TrackingSettings(heading_jump_deg=-1.0)


def test_an_unusable_image_raises_and_leaves_the_belief_alone():
    pos, yaw, deltas = drive(5)
    tracker = SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(particles=300))
    before = run(tracker, pos, yaw, deltas)[-1]
    with pytest.raises(ImageError):
        tracker.step(Scene(tuple(pos[-1]), shape=(2, 4, 3)), 3.0)
    after = tracker.belief.summary(tracker.settings.alpha)
    assert (after.mean_en_m == pytest.approx([before.east_m, before.north_m]))


# --------------------------------------------------------------------------------------- the real Localizer
@pytest.fixture(scope="module")
def micro(micro_index, micro_checkpoint):
    from unifygeo_ros.index import store
    from unifygeo_ros.localization.localizer import Localizer
    from unifygeo_ros.model.handle import load_model

    return Localizer(store.load_index(micro_index), load_model(micro_checkpoint, "cpu"))


def test_localize_with_maps_encodes_once_and_agrees_with_localize(micro):
    """The fix equals :meth:`Localizer.localize`'s; the maps of the tiles are probability maps whose scores equal
    the global pass's for the candidates both evaluated (two ways of computing the same figure)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)
    rows = np.array([0, 3, 7, 12])
    fix, maps = micro.localize_with_maps(img, rows, heading_deg=30.0)
    ref = micro.localize(img, heading_deg=30.0)
    assert (fix.east_m, fix.north_m, fix.score, fix.protection_level_m) == pytest.approx(
        (ref.east_m, ref.north_m, ref.score, ref.protection_level_m))
    assert fix.evidence is not None and micro.record_evidence is False
    assert maps.rows.tolist() == rows.tolist() and maps.maps.shape[0] == 4
    assert maps.maps.sum(axis=(1, 2)) == pytest.approx(np.ones(4), abs=1e-4)
    assert maps.heading_vectors_en.shape == (4, 2, *maps.maps.shape[1:]) and maps.timings_ms["maps"] >= 0
    row_of = {t: i for i, t in enumerate(micro.index.tile_ids)}
    cand = [row_of[t] for t in fix.candidate_tile_ids]
    for j, r in enumerate(rows):
        if int(r) in cand:
            assert maps.scores[j] == pytest.approx(fix.evidence.scores[cand.index(int(r))], abs=1e-4)
    none, empty = micro.localize_with_maps(img, np.zeros(0, np.int64), global_search=False)
    assert none is None and empty.maps.shape[0] == 0


def test_sequential_localizer_runs_on_the_real_localizer_and_keeps_its_belief_on_a_bad_image(micro):
    """Random weights (nothing to converge to): the filter starts from the first fix when the gate lets every fix
    through, reports finite figures, and a panorama that cannot be used changes nothing."""
    from unifygeo_ros.data.render import render_panorama
    from unifygeo_ros.data.world import generate_city

    city = generate_city(3, 120.0)  # a camera-like image passes the input check (noise would not)
    s = TrackingSettings(particles=200, min_score=0.0, max_protection_level_m=math.inf)
    tracker = SequentialLocalizer(micro, s)
    est = [tracker.step(render_panorama(city, (40.0 + 2 * k, 60.0), 90.0, 128, 64), 0.5 * k, 90.0, 2.0)
           for k in range(3)]
    assert est[0].initialised and est[0].fix_accepted and est[0].reinitialised.startswith("cold start")
    last = est[-1]
    assert math.isfinite(last.east_m) and np.all(np.isfinite(last.covariance_en_m2))
    assert last.tiles_evaluated > 0 and last.step_ms >= last.tracking_ms > 0 and "maps" in last.timings_ms
    before = tracker.belief.summary(s.alpha)
    with pytest.raises(ImageError):
        tracker.step(np.zeros((2, 4, 3), np.uint8), 2.0)
    assert tracker.belief.summary(s.alpha).mean_en_m == pytest.approx(before.mean_en_m)


def test_demo_model_tracks_a_short_drive_through_the_demo_city():
    """The embedded demo model and index on 20 s of a drive through the demo city at 2 Hz (vehicle-aligned
    panoramas, the simulated wheel odometry and IMU): the filter starts from an accepted fix within 10 s and ends
    within 4 m (this model's single frames: median 3.1 m in this city; benchmarks/bench_tracking.py measures)."""
    from node_world import demo_paths

    from unifygeo_ros.data import render, synth
    from unifygeo_ros.data import world as W
    from unifygeo_ros.localization.localizer import Localizer
    from unifygeo_ros.offline.demo import DEMO_SEED
    from unifygeo_ros.rosbag import sensors as sens
    from unifygeo_ros.rosbag.drive import make_drive
    from unifygeo_ros.rosbag.route import plan_route, street_graph

    if demo_paths() is None:
        pytest.skip("the embedded demo model is not in this checkout")
    ckpt, ix = demo_paths()
    loc = Localizer.from_paths(ix, ckpt, device="cpu")
    city = W.generate_city(DEMO_SEED, 300.0)
    graph = street_graph(city.streets, tuple(city.size_m), bounds=synth.tile_grid(300.0, loc.tile_m).camera_bounds())
    d = make_drive(plan_route(graph, "random", 300.0, np.random.default_rng(3)), 8.0)
    samples = sens.simulate_sensors(d, 21.0, sens.SensorSettings(seed=3))
    odom, imu = samples.odom, samples.imu
    tracker = SequentialLocalizer(loc, TrackingSettings(particles=500))
    errs, started = [], None
    for k in range(41):
        t = 0.5 * k
        if k:
            for i in np.nonzero((odom.t_s > t - 0.5 + 1e-9) & (odom.t_s <= t + 1e-9))[0]:
                tracker.predict(OdometryDelta.from_twist(odom.speed_mps[i], odom.yaw_rate_rps[i], 0.05,
                                                         odom.speed_var[i], odom.yaw_rate_var))
        en, heading, _, _ = (a[0] for a in d.at([t]))
        img = render.render_panorama(city, (float(en[0]), float(en[1])), float(heading), 192, 96)
        j = int(np.argmin(np.abs(imu.t_s - t)))
        est = tracker.step(img, t, compass(float(imu.yaw_rad[j])), math.degrees(math.sqrt(imu.yaw_var[j])))
        started = started if started is not None or not est.initialised else t
        errs.append(error(est, en) if est.initialised else math.inf)
    assert started is not None and started <= 10.0
    assert max(errs[-4:]) < 4.0


def test_tracking_likelihood_weighs_tiles_with_the_single_frames_calibrated_logits():
    """The filter's measurement and the single-frame posterior share one definition of a tile's weight
    (posterior.candidate_logits), consensus weight included."""
    from dataclasses import replace

    from unifygeo_ros.localization.posterior import candidate_probabilities

    loc = ScriptedLocalizer()
    rows = loc.index.tiles_within(100.0, 100.0, 60.0)
    maps = loc.maps(rows, (100.0, 100.0))
    for cal in (CAL, replace(CAL, consensus_weight=1.0)):
        lik = TileLikelihood(maps, cal, 350.0 ** 2)
        pi, _ = candidate_probabilities(maps.scores, cal, maps.centres_en_m, np.full(len(rows), maps.tile_m),
                                        maps.maps)
        mass = lik.density.reshape(len(rows), -1).sum(axis=1) * (maps.tile_m / lik.hw[1]) * (maps.tile_m / lik.hw[0])
        np.testing.assert_allclose(mass / mass.sum(), pi / pi.sum(), rtol=1e-9)


@pytest.mark.parametrize("name", FILTERS)
def test_accepted_fixes_elsewhere_do_not_move_a_belief_the_images_confirm(name):
    """A wrong place can pass the gate several frames in a row (repetitive streets; measured on a benchmark drive:
    six accepted fixes 161 m off while the belief was 0.8 m from the truth); while the images still confirm the
    belief, it is kept."""
    pos, yaw, deltas = drive(40)

    def scene(k, p):  # the camera never moves away; frames 20-25 give accepted global fixes 150 m north
        return Scene(tuple(p), fix=tuple(p + [0.0, 150.0]) if 20 <= k <= 25 else (tuple(p) if k == 0 else None))

    est = run(SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(filter=name, particles=500)), pos, yaw,
              deltas, scene)
    assert not [k for k, e in enumerate(est) if e.reinitialised and k > 0]
    assert max(error(e, p) for e, p in zip(est[1:], pos[1:])) < 2.0


@pytest.mark.parametrize("name", FILTERS)
def test_an_informative_cameras_first_poor_frames_are_withheld_before_the_belief_is_declared_lost(name):
    """After a kidnap the first frames that no longer explain the belief are not published (``unconfirmed``) while
    the belief waits out ``collapse_frames``; frames on track are not withheld; a camera whose frames never explained
    the belief well (uninformative) is not withheld for one poor frame."""
    pos, yaw, deltas = drive(24)
    s = TrackingSettings(filter=name, particles=300, cold_start="accepted_fix")

    def scene(k, p):  # from frame 14 the camera is elsewhere and no fix is accepted
        return Scene(tuple(p + ([0.0, 150.0] if k >= 14 else 0.0)), fix=tuple(p) if k == 0 else None)

    est = run(SequentialLocalizer(ScriptedLocalizer(), s), pos, yaw, deltas, scene)
    assert [gate_track(e)[0] for e in est[:14]] == [""] * 14  # on track: every frame out
    assert all(e.unconfirmed and not e.lost and gate_track(e)[0] == "unconfirmed"
               for e in est[14:14 + s.collapse_frames - 1])
    assert est[14 + s.collapse_frames - 1].lost and gate_track(est[-1])[0] == "lost"
    quiet = run(SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(
        filter=name, particles=300, cold_start="accepted_fix", informative_log_ratio=1e6)), pos, yaw, deltas,
        scene)
    assert not any(e.unconfirmed for e in quiet) and gate_track(quiet[14])[0] == ""


@pytest.mark.parametrize("name", FILTERS)
def test_with_poor_share_a_frame_far_below_the_cameras_usual_evidence_is_withheld(name):
    """A frame whose maps peak 9 m from the belief still explains it well above ``collapse_log_ratio`` (about 6
    against 12 on track here, as a panorama after a kidnap into similar streets: 2.5-8 against 14-20, measured);
    with ``poor_share`` it counts as poor - withheld at once - and without it, it is published."""
    pos, yaw, deltas = drive(30)

    def scene(k, p):
        return Scene(tuple(p), peak=(p[0], p[1] + 9.0) if k >= 20 else None, fix=tuple(p) if k == 0 else None)

    plain, poor = (run(SequentialLocalizer(ScriptedLocalizer(), TrackingSettings(  # every frame weighs fully
        filter=name, particles=500, poor_share=share, frame_spacing_m=0.0)), pos, yaw, deltas, scene)
        for share in (0.0, 0.5))
    usual = float(np.median([e.evidence_log_ratio for e in plain[10:20]]))
    assert TrackingSettings().collapse_log_ratio < plain[20].evidence_log_ratio < 0.5 * usual
    assert not plain[20].unconfirmed and gate_track(plain[20])[0] == ""
    assert poor[20].unconfirmed and gate_track(poor[20])[0] == "unconfirmed"
    assert not any(e.unconfirmed for e in poor[1:20])  # on track nothing is withheld
