"""The shared pipeline's tracking mode (issue #17, item 4), ROS-free: the odometry integrator and the IMU heading
feed (the node and replay read their sensors through them), and the pipeline owning the sequential localizer - what
it publishes, what it withholds and why, its run-time gate limits, its counters."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from test_tracking import Scene, ScriptedLocalizer, compass, drive, error
from unifygeo_ros import geo
from unifygeo_ros.localization.gate import gate_track
from unifygeo_ros.localization.pipeline import (Frame, LocalizationPipeline, PipelineSettings, tracking_state)
from unifygeo_ros.localization.sensor_feed import (MAX_SPEED_MPS, MAX_YAW_RATE_RPS, HeadingFeed, ImuSettings,
                                                   OdometryIntegrator, TwistReading, twist_reading)
from unifygeo_ros.localization.tracking import OdometryDelta, TrackingSettings


def _stamp(t_s: float):
    return SimpleNamespace(sec=int(math.floor(t_s)), nanosec=int(round((t_s - math.floor(t_s)) * 1e9)))


def _odom_msg(t_s, v, w, cov=None):
    c = np.zeros(36) if cov is None else np.asarray(cov, float)
    return SimpleNamespace(header=SimpleNamespace(stamp=_stamp(t_s)), twist=SimpleNamespace(
        twist=SimpleNamespace(linear=SimpleNamespace(x=v, y=0.0), angular=SimpleNamespace(z=w)), covariance=c))


def _imu_msg(t_s, yaw_deg, var=0.0, q=None):
    qx, qy, qz, qw = q if q is not None else geo.yaw_to_quaternion_xyzw(yaw_deg)
    cov = np.zeros(9)
    cov[8] = var
    return SimpleNamespace(header=SimpleNamespace(stamp=_stamp(t_s)), orientation=SimpleNamespace(x=qx, y=qy, z=qz,
                                                                                                   w=qw),
                           orientation_covariance=cov)


# ----------------------------------------------------------------------------------------------- sensors
def test_the_tracking_filter_and_the_fusion_read_odometry_and_imu_alike():
    """One reader per message (sensor_feed.odometry_twist / imu_yaw): the node's and replay's feeds and the fusion's
    samples get the same values and refuse the same messages (a non-unit quaternion, a NaN twist)."""
    from unifygeo_ros.localization.sensor_feed import HeadingFeed, twist_reading
    from unifygeo_ros.rosbag.fusion_inputs import twist_sample, yaw_sample

    cov = np.zeros(36)
    cov[0], cov[7], cov[35] = 0.01, 0.02, 0.003
    odom = _odom_msg(1.0, 2.5, 0.1, cov)
    r, s = twist_reading(odom), twist_sample(odom, 1_000_000_000)
    assert (r.speed_mps, r.yaw_rate_rps, r.speed_var, r.yaw_rate_var) == (2.5, 0.1, 0.01, 0.003)
    assert s.v.tolist() == [2.5, 0.0, 0.1] and s.var.tolist() == [0.01, 0.02, 0.003]
    for bad in (_odom_msg(1.0, float("nan"), 0.1, cov), _odom_msg(1.0, 1e300, 0.1, cov)):
        assert isinstance(twist_reading(bad), str) and twist_sample(bad, 0) is None
    imu = _imu_msg(1.0, 30.0, var=0.0004)
    feed = HeadingFeed()
    feed.add(imu)
    heading, std, _ = feed.at(1.0)
    y = yaw_sample(imu, 0)
    assert heading == pytest.approx(geo.yaw_to_heading_deg(30.0)) and math.degrees(y.yaw_rad) == pytest.approx(30.0)
    assert y.var_rad2 == pytest.approx(0.0004) and std == pytest.approx(math.degrees(0.02))
    skew = _imu_msg(1.0, 0.0, q=(0.0, 0.0, 0.1, 0.1))  # not a rotation
    feed2 = HeadingFeed()
    feed2.add(skew)
    assert feed2.at(1.0)[0] is None and "unit quaternion" in feed2.at(1.0)[2]
    assert yaw_sample(skew, 0) is None


def test_odometry_integrator_chains_the_samples_up_to_each_frame_and_keeps_late_ones_for_the_next():
    odo = OdometryIntegrator()
    v, w = 4.0, math.radians(10.0)
    cov = np.zeros(36)
    cov[0], cov[35], cov[7] = 0.01, 1e-4, 1e6  # lateral 1e6: "not measured" -> non-holonomic, no lateral noise
    for k in range(11):  # 20 Hz from t = 0: the first sample starts the clock
        odo.add(twist_reading(_odom_msg(0.05 * k, v, w, cov)))
    d = odo.take_until(0.313)  # samples 1..6 (stamps 0.05..0.30)
    ref = OdometryDelta.from_twist(v, w, 0.30)
    assert (d.forward_m, d.left_m, d.yaw_rad, d.dt_s) == pytest.approx((ref.forward_m, ref.left_m, ref.yaw_rad, 0.3))
    assert d.cov[0, 0] > 0 and odo.samples == 10
    odo.add(twist_reading(_odom_msg(0.55, v, w)))
    rest = odo.take_until(0.6)  # 0.35 .. 0.55: the late ones are not lost
    assert rest.dt_s == pytest.approx(0.25) and odo.take_until(0.6) is None
    assert odo.add(twist_reading(_odom_msg(0.55, v, w))) == ""  # a repeated stamp is not an interval
    assert "not finite" in odo.add(twist_reading(_odom_msg(0.6, math.nan, w)))  # refused, and says why
    assert odo.skipped == 1 and odo.rejected == 1 and odo.take_until(9.0) is None


@pytest.mark.parametrize("case", ["speed", "yaw_rate", "variance", "stamp_gap", "stamp_nan"])
def test_odometry_beyond_a_ground_robots_physics_is_refused_and_the_next_sample_covers_the_interval(case):
    """A garbage sample (a driver's bug, a flipped bit: 1e300 m/s once overflowed the arc's covariance and stopped
    the node) is refused with its reason and counted; the clock stays at the last good sample, so the next good one
    covers the whole interval and nothing is lost."""
    odo = OdometryIntegrator(timeout_s=0.5)
    v, w = 4.0, math.radians(10.0)
    odo.add(twist_reading(_odom_msg(0.0, v, w)))
    cov = np.zeros(36)
    cov[0], cov[35] = 0.01, 1e-4
    if case == "speed":
        bad = twist_reading(_odom_msg(0.1, 1e300, w))
    elif case == "yaw_rate":
        bad = twist_reading(_odom_msg(0.1, v, 1.7e308))
    elif case == "variance":
        cov[0] = np.finfo(np.float64).max  # some drivers' "unknown"
        bad = twist_reading(_odom_msg(0.1, v, w, cov))
    elif case == "stamp_nan":
        bad = twist_reading(_odom_msg(0.1, v, w), stamp=math.nan)
    else:  # a stamp 1e300 s on: the arc cannot be integrated over it
        bad = TwistReading(1e300, MAX_SPEED_MPS, MAX_YAW_RATE_RPS, 1.0, 1.0, 0.0)
    why = odo.add(bad)
    assert why and odo.rejected == 1 and odo.problem == why and odo.samples == 0
    expect = {"speed": "speed 1e+300,", "yaw_rate": "yaw rate 1.7e+308", "variance": "above 1e+06",
              "stamp_nan": "stamp nan", "stamp_gap": "cannot be integrated"}[case]
    assert expect in why, why
    assert odo.add(twist_reading(_odom_msg(0.2, v, w))) == ""
    d = odo.take_until(0.2)
    assert d.dt_s == pytest.approx(0.2) and d.gap_s == 0.0 and np.all(np.isfinite(d.cov))


def test_heading_feed_gives_the_newest_orientation_within_its_age_with_offset_and_std():
    feed = HeadingFeed(ImuSettings(panorama_yaw_offset_deg=90.0, max_age_s=0.5, default_yaw_std_deg=4.0))
    h, std, why = feed.at(1.0, "/r/imu")
    assert h is None and "no IMU orientation received yet on /r/imu" in why
    feed.add(_imu_msg(1.0, 0.0))  # ENU yaw 0 = east; + 90 deg offset: the panorama looks north
    assert feed.at(1.3) == pytest.approx((0.0, 4.0, ""))
    feed.add(_imu_msg(1.1, 0.0, var=math.radians(2.0) ** 2))
    assert feed.at(1.2)[:2] == pytest.approx((0.0, 2.0))
    h, _, why = feed.at(2.0)
    assert h is None and "0.90 s from the image stamp" in why
    feed.add(_imu_msg(2.0, 0.0, q=(0.0, 0.0, 0.1, 0.1)))
    assert "not a unit quaternion" in feed.at(2.0)[2]


# ------------------------------------------------------------------------------------------------ pipeline
def _pipeline(**tracking) -> LocalizationPipeline:
    settings = PipelineSettings(mode="tracking", tracking=TrackingSettings(**{"particles": 400, **tracking}))
    return LocalizationPipeline.from_settings(ScriptedLocalizer(), settings)


def _frames(pipe, pos, yaw, scene, heading=True, t0=0.0):
    """Drive: 20 Hz odometry between 2 Hz frames into the pipeline's integrator, then each frame."""
    out = []
    for k, p in enumerate(pos):
        t = t0 + 0.5 * k
        if k:
            step = (yaw[k] - yaw[k - 1]) / 0.5
            speed = float(np.hypot(*(pos[k] - pos[k - 1]))) / 0.5
            for j in range(1, 11):
                pipe.odometry.add(TwistReading(t - 0.5 + 0.05 * j, speed, step, 0.05 ** 2, math.radians(0.5) ** 2,
                                               0.0))
        elif not out:
            pipe.odometry.add(TwistReading(t, 0.0, 0.0, 0.0, 0.0, 0.0))
        frame = Frame(None, t, lambda s=scene(k, p): s, heading_deg=compass(yaw[k]) if heading else None,
                      heading_std_deg=1.0)
        pipe.stats.received()  # the node counts a frame when it arrives
        out.append(pipe.process(frame))
    return out


def test_tracking_pipeline_publishes_the_belief_once_initialised_and_moves_it_with_the_odometry():
    pos, yaw, _ = drive(30, yaw_rate=math.radians(4.0))
    pipe = _pipeline()
    scene = (lambda k, p: Scene(tuple(p), fix=tuple(p) if k in (2, 20) else None))
    out = _frames(pipe, pos, yaw, scene)
    assert [o.status for o in out[:2]] == ["withheld", "withheld"]
    assert {o.reason for o in out[:2]} == {"not_initialised"} and "tracking: not initialised" in out[0].message
    assert all(o.published for o in out[2:]) and out[2].track.reinitialised.startswith("cold start")
    last = out[-1]
    assert last.pose is last.track and error(last.track, pos[-1]) < 1.5  # 14 s on odometry and maps alone
    assert np.asarray(last.pose.covariance_en_m2).shape == (2, 2) and last.pose.protection_level_m < 10.0
    assert out[20].fix is not None and out[20].fix is out[20].track.fix  # the global fix rides along
    snap = pipe.stats.snapshot()
    assert snap["withheld_by_reason"] == {"not_initialised": 2} and snap["published"] == 28
    assert snap["tracking_state"] == "converged" == tracking_state(last.track)
    assert snap["tracking_reinitialisations"] == 1
    assert snap["last_protection_level_m"] == pytest.approx(last.track.protection_level_m)
    assert snap["tracking_evidence_log_ratio"] == last.track.evidence_log_ratio > 1.0  # the images explain it
    # 75 m driven: no stretch of odometry_scale_window_m yet, so neither sensor fit has measured anything
    assert math.isnan(snap["tracking_imu_heading_offset_deg"]) and math.isnan(last.track.imu_heading_offset_deg)


def test_tracking_pipeline_withholds_an_unconfirmed_then_lost_belief_and_counts_it():
    pos, yaw, _ = drive(20)
    pipe = _pipeline(particles=300, cold_start="accepted_fix")  # candidates would take a lost belief back (withheld)
    s = pipe.tracker.settings

    def scene(k, p):  # from frame 8 the camera is elsewhere and no fix is accepted
        return Scene(tuple(p + ([0.0, 150.0] if k >= 8 else 0.0)), fix=tuple(p) if k == 0 else None)

    out = _frames(pipe, pos, yaw, scene)
    assert all(o.reason == "" for o in out[1:8])
    assert [o.reason for o in out[8:8 + s.collapse_frames - 1]] == ["unconfirmed"] * (s.collapse_frames - 1)
    lost = [k for k, o in enumerate(out) if o.reason == "lost"]
    assert lost and lost[0] == 8 + s.collapse_frames - 1 and all(out[k].reason == "lost" for k in range(lost[0], 20))
    snap = pipe.stats.snapshot()
    assert snap["tracking_state"] == "lost" and snap["withheld_by_reason"]["unconfirmed"] == s.collapse_frames - 1
    assert gate_track(out[-1].track)[0] == "lost" and tracking_state(out[8].track) == "unconfirmed"


def test_odometry_integrator_marks_a_gap_and_says_when_it_is_stale():
    odo = OdometryIntegrator(timeout_s=0.5)
    assert odo.stale_at(0.0)  # nothing yet
    for t in np.arange(0.0, 1.01, 0.05):
        odo.add(TwistReading(float(t), 5.0, 0.0, 0.01, 1e-4, 0.0))
    assert not odo.stale_at(1.2) and odo.stale_at(1.6)
    assert odo.take_until(1.0).gap_s == 0.0
    odo.add(TwistReading(4.0, 5.0, 0.0, 0.01, 1e-4, 0.0))  # three seconds without a sample
    odo.add(TwistReading(4.05, 5.0, 0.0, 0.01, 1e-4, 0.0))
    delta = odo.take_until(4.05)
    assert delta.gap_s == pytest.approx(3.0) and delta.forward_m == pytest.approx(15.25)  # extrapolated, marked
    assert odo.gaps == 1 and not odo.stale_at(4.3)


def test_a_gap_in_the_odometry_withholds_the_frames_it_leaves_behind_and_loses_the_belief():
    """Found by replaying a drive whose wheel odometry stopped for 10 s (a driver restart): the belief stood still
    while the robot drove on, and was published 63 m off with a 3.7 m protection level. Frames no odometry reaches
    are withheld (odometry_stale) and not measured; the sample after the gap extrapolates its twist over it and marks
    the belief lost, so an accepted global fix there keeps the belief if it agrees and re-initialises it if not.
    Here the robot stood during the gap: the extrapolation (8 m/s for 10 s) is 80 m wrong."""
    speeds = [8.0] * 10 + [0.0] * 20 + [8.0] * 9  # frame k is reached at speeds[k - 1]
    pos = np.cumsum(np.vstack([[80.0, 100.0]] + [[0.5 * v, 0.0] for v in speeds]), axis=0)
    pipe = _pipeline(cold_start="accepted_fix")
    scene = (lambda k, p: Scene(tuple(p), fix=tuple(p) if k in (0, 31) else None))
    out = []
    for k, p in enumerate(pos):
        t = 0.5 * k
        if k == 0:
            pipe.odometry.add(TwistReading(t, 0.0, 0.0, 0.0, 0.0, 0.0))
        elif not 10 < k <= 30:  # no odometry from 5 s to 15 s
            for j in range(1, 11):
                pipe.odometry.add(TwistReading(t - 0.5 + 0.05 * j, speeds[k - 1], 0.0, 0.05 ** 2,
                                               math.radians(0.5) ** 2, 0.0))
        pipe.stats.received()
        out.append(pipe.process(Frame(None, t, lambda s=scene(k, p): s, heading_deg=90.0, heading_std_deg=1.0)))
        if k == 30:  # what /diagnostics says while the odometry is missing
            assert pipe.stats.snapshot()["last_withheld_reason"].startswith("tracking: odometry stale")
    assert all(o.published for o in out[1:11])
    assert [o.reason for o in out[12:31]] == ["odometry_stale"] * 19  # 0.5 s of grace (odometry_timeout_s) at 11
    assert all(math.isnan(o.track.evidence_log_ratio) for o in out[12:31])
    assert tracking_state(out[20].track) == "odometry stale"
    assert out[31].track.reinitialised.startswith("the belief was lost")  # the fix 80 m from the extrapolation
    assert all(o.published and error(o.track, p) < 3.0 for o, p in zip(out[31:], pos[31:]))
    snap = pipe.stats.snapshot()
    assert snap["withheld_by_reason"]["odometry_stale"] == 19 and pipe.odometry.gaps == 1


def test_gate_limits_set_at_run_time_reach_the_filters_global_fixes():
    pipe = _pipeline()
    assert pipe.tracker.settings.min_score == 0.5 and pipe.mode == "tracking"
    pipe.min_score = 0.95  # the scripted fixes score 0.9: none is accepted any more, the filter cannot start
    pipe.max_protection_level_m = 40.0
    assert (pipe.tracker.settings.min_score, pipe.tracker.settings.max_protection_level_m) == (0.95, 40.0)
    out = pipe.process(Frame(None, 0.0, lambda: Scene((100.0, 100.0), fix=(100.0, 100.0)), heading_deg=0.0))
    assert out.reason == "not_initialised" and out.fix is not None and not out.track.fix_accepted


def test_a_frame_without_a_heading_says_why_and_an_unusable_image_is_bad_input_that_still_moves_the_belief():
    pipe = _pipeline()
    out = pipe.process(Frame(None, 0.0, lambda: Scene((100.0, 100.0), fix=(100.0, 100.0)),
                             heading_note="no IMU orientation received yet on /imu"))
    assert out.reason == "not_initialised" and "no IMU orientation received yet on /imu" in out.message
    pos, yaw, _ = drive(4)
    _frames(pipe, pos, yaw, lambda k, p: Scene(tuple(p), fix=tuple(p)), t0=1.0)
    before = pipe.tracker.belief.summary(0.5).mean_en_m.copy()
    pipe.odometry.add(TwistReading(3.0, 10.0, 0.0, 0.0, 0.0, 0.0))  # 10 m/s over 0.5 s, heading east
    bad = pipe.process(Frame(None, 3.0, lambda: Scene((0.0, 0.0), shape=(2, 4, 3)), heading_deg=90.0))
    assert bad.status == "bad_input"
    moved = pipe.tracker.belief.summary(0.5).mean_en_m - before
    assert moved == pytest.approx([5.0, 0.0], abs=0.5)


def test_a_north_aligned_heading_is_published_as_unmeasured():
    """heading_source north_aligned: the panorama's north is a convention, not the robot's heading; the frame gets
    heading 0 with the unmeasured std, and the pose's yaw variance is the cap (pi^2), not a measured 5 deg that
    robot_localization would fuse (the node and replay share set_heading)."""
    from unifygeo_ros.localization.pipeline import UNMEASURED_HEADING_STD_DEG
    from unifygeo_ros.ros.messages import MAX_YAW_VARIANCE_RAD2, yaw_variance_rad2

    pipe = LocalizationPipeline.from_settings(ScriptedLocalizer(), PipelineSettings())
    pipe.use_heading_source("north_aligned")
    frame = Frame(None, 1.0, lambda: Scene((0.0, 0.0)))
    pipe.set_heading(frame, HeadingFeed())
    assert frame.heading_deg == 0.0 and frame.heading_std_deg == UNMEASURED_HEADING_STD_DEG
    assert yaw_variance_rad2(frame.heading_std_deg) == MAX_YAW_VARIANCE_RAD2 == pytest.approx(math.pi ** 2)


def test_the_status_warns_when_images_stop_coming():
    """/diagnostics must not stay OK after the camera stopped (a dead driver, a remap lost on restart, images DDS
    dropped): WARN once no image came for 3 of its usual intervals and at least the recent window (5 s)."""
    pytest.importorskip("rclpy", reason="rclpy not importable (source scripts/ros_env.sh)")
    from diagnostic_msgs.msg import DiagnosticStatus

    from unifygeo_ros.localization.pipeline_stats import PipelineStats
    from unifygeo_ros.ros.node import diagnostic_level

    now = [0.0]
    stats = PipelineStats(clock=lambda: now[0])
    for k in range(20):  # 2 Hz
        now[0] = 0.5 * k
        stats.received()
    now[0] = 9.5 + 4.0  # 4 s of silence: within max(3 x 0.5 s, 5 s)
    level, message = diagnostic_level({**stats.snapshot(), "last_status": "published"}, 1.0, "/image")
    assert level == DiagnosticStatus.OK, message
    now[0] = 9.5 + 60.0
    level, message = diagnostic_level(stats.snapshot(), 1.0, "/image")
    assert level == DiagnosticStatus.WARN and message.startswith("no image for 60 s on /image"), message


def test_single_mode_is_unchanged_and_mode_is_checked():
    from unifygeo_ros.errors import UnifyGeoError

    assert PipelineSettings().mode == "single"
    with pytest.raises(UnifyGeoError, match="mode must be one of single, tracking"):
        PipelineSettings(mode="kalman")


def test_node_diagnostics_say_the_tracking_state():
    """The node's status line (ros/node.py: diagnostic_level) from the tracking pipeline's counters: WARN with the
    reason while nothing can go out, OK with the state once the belief is published."""
    pytest.importorskip("rclpy", reason="rclpy not importable (source scripts/ros_env.sh)")
    from diagnostic_msgs.msg import DiagnosticStatus

    from unifygeo_ros.ros.node import diagnostic_level

    pos, yaw, _ = drive(24)
    pipe = _pipeline()
    _frames(pipe, pos[:1], yaw[:1], lambda k, p: Scene(tuple(p)))  # no global fix accepted yet
    level, message = diagnostic_level(pipe.stats.snapshot(), 1.0, "/image")
    assert level == DiagnosticStatus.WARN and message.startswith(
        "estimate withheld: tracking: not initialised (waiting for an accepted global fix)")
    _frames(pipe, pos, yaw, lambda k, p: Scene(tuple(p), fix=tuple(p) if k == 0 else None), t0=1.0)
    level, message = diagnostic_level(pipe.stats.snapshot(), 1.0, "/image")
    assert level == DiagnosticStatus.OK and message.startswith("tracking: converged, ") and \
        "1 (re)initialisations" in message
