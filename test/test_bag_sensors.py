"""`unifygeo bag synth`'s wheel odometry and IMU (issue #15, item 6): the noise models' statistics match their
settings, the covariances in the messages are the settings' variances, odometry drifts from zero, REP-103 yaw
agrees with the GT GeoPose, the topics read back from sqlite3 and MCAP bags, and the camera / GT messages are the
same bytes with and without the sensors."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from unifygeo_ros import cli, geo
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import sensors as sens
from unifygeo_ros.rosbag import synth
from unifygeo_ros.rosbag.synth import SynthBagConfig, synth_bag

ORIGIN = (47.6, -122.3)
QUIET_ODOM = sens.WheelOdomNoise(speed_noise_frac=0.0, speed_noise_floor_mps=0.0, yaw_rate_noise_dps=0.0,
                                 speed_scale_bias_frac=0.0, yaw_rate_bias_dps=0.0)
QUIET_IMU = sens.ImuNoise(yaw_noise_deg=0.0, yaw_bias_init_deg=0.0, yaw_bias_walk_deg_per_sqrt_s=0.0,
                          gyro_noise_dps=0.0, accel_noise_mps2=0.0)


# ------------------------------------------------------------------------------------------------ fixtures
def _city_meta() -> dict:
    """DemoCity's geo.json (seed 2026, 300 m, 70 m tiles), as in test_replay."""
    return {"format": "unifygeo-city", "version": 1, "city": "City", "seed": 2026, "style": "mixed",
            "origin": {"lat_deg": ORIGIN[0], "lon_deg": ORIGIN[1]}, "size_m": [300.0, 300.0], "tile_m": 70.0,
            "stride_m": 35.0, "tile_px": 320, "mpp": 0.21875, "pano_px": [512, 256], "camera_height_m": 2.0}


@pytest.fixture(scope="module")
def city_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sensors_city") / "City"
    d.mkdir()
    (d / "geo.json").write_text(json.dumps(_city_meta()))
    return d


@pytest.fixture(scope="module")
def long_drive():
    """A drive of several minutes through the city (random walk on its streets)."""
    from unifygeo_ros.data import world
    from unifygeo_ros.rosbag.synth import make_drive, plan_route, street_graph

    meta = _city_meta()
    city = world.generate_city(meta["seed"], tuple(meta["size_m"]), meta["style"])
    route = plan_route(street_graph(city.streets, tuple(city.size_m)), "random", 3000.0, np.random.default_rng(5))
    drive = make_drive(route, 8.0)
    assert drive.t_s[-1] > 300.0
    return drive


def _series(drive, rate_hz: float, end_s: float):
    t = sens.sample_times(rate_hz, end_s)
    return (t, *drive.at(t))


def _odom(drive, noise: sens.WheelOdomNoise, seed: int, end_s: float) -> tuple[sens.OdomSamples, tuple]:
    s = _series(drive, noise.rate_hz, end_s)
    return sens.simulate_wheel_odometry(*s, noise, np.random.default_rng(seed)), s


def _imu(drive, noise: sens.ImuNoise, seed: int, end_s: float) -> tuple[sens.ImuSamples, tuple]:
    s = _series(drive, noise.rate_hz, end_s)
    return sens.simulate_imu(*s, noise, np.random.default_rng(seed)), s


def _read(bag: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(log time, message)] with the project reader."""
    out: dict[str, list] = {}
    with bags.open_bag(bag) as r:
        for conn, t_ns, msg in bags.iter_messages(r, r.connections):
            out.setdefault(conn.topic, []).append((t_ns, msg))
    return out


def _raw(bag: Path) -> dict[str, dict[int, bytes]]:
    """topic -> {log time: serialized bytes}, read with rosbags' AnyReader and the definitions the bag stores."""
    from rosbags.highlevel import AnyReader

    out: dict[str, dict[int, bytes]] = {}
    with AnyReader([bag]) as r:
        for conn, t_ns, raw in r.messages():
            out.setdefault(conn.topic, {})[t_ns] = bytes(raw)
    return out


def _record(city_dir: Path, out: Path, **kw) -> synth.SynthBagResult:
    args = dict(data=str(city_dir), out=str(out), storage="mcap", frames=4, rate_hz=1.0, image_width=32, seed=3)
    args.update(kw)
    return synth_bag(SynthBagConfig(**args))


# ------------------------------------------------------------------------------------ odometry statistics
def test_odometry_twist_noise_matches_the_settings(long_drive):
    noise = replace(QUIET_ODOM, speed_noise_frac=0.02, speed_noise_floor_mps=0.05, yaw_rate_noise_dps=0.5)
    o, (t, en, hd, v, w) = _odom(long_drive, noise, seed=1, end_s=300.0)
    v_true, w_true = sens.interval_means(t, en, hd, v, w)
    assert len(o) == 6001
    # white, proportional to the speed plus a floor: normalised errors are N(0, 1)
    z = (o.speed_mps - v_true) / np.hypot(0.02 * v_true, 0.05)
    assert abs(z.mean()) < 0.05 and z.std() == pytest.approx(1.0, abs=0.04)
    fast = v_true > 7.0  # at cruise speed the relative error's std is ~ the fraction (the floor adds a little)
    rel = (o.speed_mps - v_true)[fast] / v_true[fast]
    want = np.sqrt(np.mean(0.02 ** 2 + (0.05 / v_true[fast]) ** 2))
    assert fast.sum() > 1000 and rel.std() == pytest.approx(want, rel=0.06)
    assert np.degrees(o.yaw_rate_rps - w_true).std() == pytest.approx(0.5, rel=0.05)
    assert abs(np.degrees(o.yaw_rate_rps - w_true).mean()) < 0.03


def test_odometry_biases_are_per_drive_constants_with_the_set_spread(long_drive):
    noise = replace(QUIET_ODOM, speed_noise_frac=0.02, speed_scale_bias_frac=0.01, yaw_rate_bias_dps=0.05)
    s = _series(long_drive, noise.rate_hz, 20.0)
    v_true, w_true = sens.interval_means(*s)
    scale, yaw_bias = [], []
    for seed in range(300):
        o = sens.simulate_wheel_odometry(*s, noise, np.random.default_rng(seed))
        # within a drive the scale error is the same for every sample: the mean relative error recovers it
        assert np.mean(o.speed_mps / v_true - 1.0) == pytest.approx(o.speed_scale_bias, abs=0.004)
        np.testing.assert_allclose(o.yaw_rate_rps - w_true, o.yaw_rate_bias_rps, atol=1e-9)
        scale.append(o.speed_scale_bias)
        yaw_bias.append(o.yaw_rate_bias_rps)
    assert np.std(scale) == pytest.approx(0.01, rel=0.15)
    assert np.degrees(np.std(yaw_bias)) == pytest.approx(0.05, rel=0.15)


def test_odometry_pose_starts_at_zero_and_follows_the_truth_without_noise(long_drive):
    o, (t, en, hd, v, w) = _odom(long_drive, QUIET_ODOM, seed=0, end_s=300.0)
    assert (o.x_m[0], o.y_m[0], o.yaw_rad[0]) == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(o.pose_cov[0], np.zeros((3, 3)))
    x, y, yaw = sens.true_pose_in_odom(en, hd, o.origin_en_m, o.origin_yaw_rad)
    assert (x[0], y[0], yaw[0]) == (0.0, 0.0, 0.0)
    driven = np.sum(np.hypot(*np.diff(en, axis=0).T))
    assert driven > 1500.0
    assert np.hypot(o.x_m - x, o.y_m - y).max() < 0.3  # the path's chords vs its heading, over 1.5 km
    np.testing.assert_allclose(o.yaw_rad, yaw, atol=1e-9)  # the yaw rates are the exact interval means


def test_odometry_drift_grows_with_distance_and_its_covariance_is_honest(long_drive):
    """Over many seeds: the heading error accumulates, the position error grows with the distance driven (the
    route turns back on itself at times: a scale error then shrinks again, so not at every instant), and NEES
    (x, y, yaw) of the propagated covariance averages 3 (chi-square, 3 degrees of freedom)."""
    noise = sens.WheelOdomNoise()  # defaults, biases included
    s = _series(long_drive, noise.rate_hz, 120.0)
    en, hd = s[1], s[2]
    checks = np.array([40, 200, 600, 1200, 2400])  # 2, 10, 30, 60, 120 s
    x, y, yaw = sens.true_pose_in_odom(en, hd, en[0], float(sens.enu_yaw_rad(hd[:1])[0]))
    pos_err, yaw_err, nees = [], [], []
    for seed in range(120):
        o = sens.simulate_wheel_odometry(*s, noise, np.random.default_rng(seed))
        e = np.stack([o.x_m - x, o.y_m - y, o.yaw_rad - yaw], 1)[checks]
        pos_err.append(np.hypot(e[:, 0], e[:, 1]))
        yaw_err.append(e[:, 2])
        nees.append([ek @ np.linalg.solve(o.pose_cov[k], ek) for ek, k in zip(e, checks)])
    rms_pos = np.sqrt(np.mean(np.square(pos_err), axis=0))
    rms_yaw = np.sqrt(np.mean(np.square(yaw_err), axis=0))
    assert np.all(np.diff(rms_yaw) > 0), rms_yaw
    assert np.all(np.diff(rms_pos[:4]) > 0) and rms_pos[-1] > 10 * rms_pos[0], rms_pos
    dist = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(en, axis=0).T))])[checks]
    assert np.all((rms_pos / dist > 0.002) & (rms_pos / dist < 0.05)), (rms_pos, dist)  # ~1 % of the distance
    nees_mean = np.mean(nees, axis=0)
    assert np.all((nees_mean > 2.4) & (nees_mean < 3.8)), nees_mean


# ------------------------------------------------------------------------------------------ IMU statistics
def test_imu_yaw_white_noise_matches_the_setting(long_drive):
    noise = replace(QUIET_IMU, yaw_noise_deg=1.5, gyro_noise_dps=0.1, accel_noise_mps2=0.2)
    m, (t, en, hd, v, w) = _imu(long_drive, noise, seed=2, end_s=200.0)
    err = geo.wrap_deg(np.degrees(m.yaw_rad - sens.enu_yaw_rad(hd)))
    assert len(m) == 10001
    assert abs(err.mean()) < 0.05 and err.std() == pytest.approx(1.5, rel=0.04)
    _, w_true = sens.interval_means(t, en, hd, v, w)
    gyro_err = np.degrees(m.gyro_rps - np.stack([np.zeros_like(w_true), np.zeros_like(w_true), w_true], 1))
    np.testing.assert_allclose(gyro_err.std(axis=0), 0.1, rtol=0.04)
    quiet, _ = _imu(long_drive, QUIET_IMU, seed=2, end_s=200.0)
    np.testing.assert_allclose((m.accel_mps2 - quiet.accel_mps2).std(axis=0), 0.2, rtol=0.04)
    # honest: the yaw variance is the white noise's (no bias configured), constant
    np.testing.assert_allclose(m.yaw_var, math.radians(1.5) ** 2)


def test_imu_yaw_bias_starts_with_the_set_spread_and_walks(long_drive):
    noise = replace(QUIET_IMU, yaw_bias_init_deg=1.0, yaw_bias_walk_deg_per_sqrt_s=0.2)
    s = _series(long_drive, noise.rate_hz, 100.0)
    true_yaw = sens.enu_yaw_rad(s[2])
    b0, b100, err100 = [], [], []
    for seed in range(400):
        m = sens.simulate_imu(*s, noise, np.random.default_rng(seed))
        # no white noise here: the yaw error is the bias
        e = (m.yaw_rad - true_yaw + math.pi) % (2 * math.pi) - math.pi
        np.testing.assert_allclose(e, m.yaw_bias_rad, atol=1e-9)
        b0.append(m.yaw_bias_rad[0])
        b100.append(m.yaw_bias_rad[-1] - m.yaw_bias_rad[0])
        err100.append(e[-1])
    # the walk's steps: std 0.2 deg sqrt(dt) (one drive's 5000 steps)
    steps = np.degrees(np.diff(m.yaw_bias_rad))
    assert steps.std() == pytest.approx(0.2 * math.sqrt(1 / 50), rel=0.05)
    assert np.degrees(np.std(b0)) == pytest.approx(1.0, rel=0.1)
    assert np.degrees(np.std(b100)) == pytest.approx(0.2 * 10.0, rel=0.1)  # 0.2 deg/sqrt(s) x sqrt(100 s)
    # the reported variance at 100 s is the mean square error over drives
    assert np.mean(np.square(err100)) == pytest.approx(float(m.yaw_var[-1]), rel=0.15)
    assert float(m.yaw_var[-1]) == pytest.approx(math.radians(1.0) ** 2 + math.radians(0.2) ** 2 * 100.0)


def test_imu_rates_and_accelerations_follow_the_motion(long_drive):
    m, (t, en, hd, v, w) = _imu(long_drive, QUIET_IMU, seed=0, end_s=200.0)
    yaw = sens.enu_yaw_rad(hd)
    # the gyro's z integrates to the yaw (counter-clockwise positive, REP-103)
    np.testing.assert_allclose(yaw[0] + np.concatenate([[0.0], np.cumsum(m.gyro_rps[1:, 2] * np.diff(t))]), yaw,
                               atol=1e-9)
    # specific force: speed change forward, centripetal to the left in a left turn, +g up
    np.testing.assert_allclose(v[0] + np.concatenate([[0.0], np.cumsum(m.accel_mps2[1:, 0] * np.diff(t))]), v,
                               atol=1e-9)
    left = m.gyro_rps[:, 2] > 0.1
    assert left.any() and np.all(m.accel_mps2[left, 1] > 0)
    assert np.all(m.accel_mps2[m.gyro_rps[:, 2] < -0.1, 1] < 0)
    np.testing.assert_array_equal(m.accel_mps2[:, 2], sens.GRAVITY_MPS2)


def test_same_seed_same_samples_other_seed_other_noise(long_drive):
    settings = sens.SensorSettings(seed=7)
    a = sens.simulate_sensors(long_drive, 30.0, settings)
    b = sens.simulate_sensors(long_drive, 30.0, settings)
    c = sens.simulate_sensors(long_drive, 30.0, replace(settings, seed=8))
    np.testing.assert_array_equal(a.odom.x_m, b.odom.x_m)
    np.testing.assert_array_equal(a.imu.yaw_rad, b.imu.yaw_rad)
    assert not np.array_equal(a.odom.speed_mps, c.odom.speed_mps) and not np.array_equal(a.imu.yaw_rad, c.imu.yaw_rad)
    # the odometry's stream does not depend on the IMU's settings
    d = sens.simulate_sensors(long_drive, 30.0, replace(settings, imu=replace(settings.imu, rate_hz=100.0)))
    np.testing.assert_array_equal(a.odom.speed_mps, d.odom.speed_mps)


def test_bad_noise_settings_are_refused(city_dir, tmp_path):
    with pytest.raises(UnifyGeoError, match="speed_noise_frac"):
        sens.WheelOdomNoise(speed_noise_frac=-0.1).validate()
    with pytest.raises(UnifyGeoError, match="IMU rate"):
        sens.ImuNoise(rate_hz=0.0).validate()
    with pytest.raises(UnifyGeoError, match="yaw_noise_deg"):
        _record(city_dir, tmp_path / "bag", imu_noise=sens.ImuNoise(yaw_noise_deg=float("nan")))
    assert not (tmp_path / "bag").exists()


# ---------------------------------------------------------------------------------------------- the bags
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_sensor_topics_read_back_with_their_types_frames_and_covariances(city_dir, tmp_path, storage):
    res = _record(city_dir, tmp_path / "bag", storage=storage, frames=6, rate_hz=1.0)
    end_s = (res.gt_messages - 1) / 10.0
    n_odom, n_imu = int(round(end_s * 20)) + 1, int(round(end_s * 50)) + 1
    assert (res.wheel_odom_messages, res.imu_messages) == (n_odom, n_imu)
    with bags.open_bag(tmp_path / "bag") as r:
        types = {t.topic: (t.msgtype, t.count) for t in bags.list_topics(r)}
    assert types[synth.WHEEL_ODOM_TOPIC] == ("nav_msgs/msg/Odometry", n_odom)
    assert types[synth.IMU_TOPIC] == ("sensor_msgs/msg/Imu", n_imu)
    msgs = _read(tmp_path / "bag")
    o_def, i_def = sens.WheelOdomNoise(), sens.ImuNoise()
    for t_ns, m in msgs[synth.WHEEL_ODOM_TOPIC]:
        assert bags.stamp_to_ns(m.header.stamp) == t_ns
        assert (m.header.frame_id, m.child_frame_id) == ("odom", "base_link")
        tc = np.asarray(m.twist.covariance).reshape(6, 6)
        vx = m.twist.twist.linear.x
        want_v = (o_def.speed_noise_frac * vx) ** 2 + o_def.speed_noise_floor_mps ** 2 + (
            o_def.speed_scale_bias_frac * vx) ** 2
        assert tc[0, 0] == pytest.approx(want_v, rel=1e-12)
        assert tc[5, 5] == pytest.approx(math.radians(o_def.yaw_rate_noise_dps) ** 2
                                         + math.radians(o_def.yaw_rate_bias_dps) ** 2, rel=1e-12)
        assert tc[1, 1] == o_def.lateral_speed_std_mps ** 2 and m.twist.twist.linear.y == 0.0
        assert np.all(np.diag(tc)[2:5] == sens.UNMEASURED_VARIANCE)
        assert np.count_nonzero(tc - np.diag(np.diag(tc))) == 0
        pc = np.asarray(m.pose.covariance).reshape(6, 6)
        np.testing.assert_array_equal(pc, pc.T)
        assert np.all(np.diag(pc)[2:5] == sens.UNMEASURED_VARIANCE) and m.pose.pose.position.z == 0.0
        xyz = pc[np.ix_([0, 1, 5], [0, 1, 5])]
        assert np.linalg.eigvalsh(xyz).min() >= -1e-15
    first, last = msgs[synth.WHEEL_ODOM_TOPIC][0][1], msgs[synth.WHEEL_ODOM_TOPIC][-1][1]
    assert (first.pose.pose.position.x, first.pose.pose.position.y, first.pose.pose.orientation.w) == (0, 0, 1)
    assert np.all(np.asarray(first.pose.covariance).reshape(6, 6)[np.ix_([0, 1, 5], [0, 1, 5])] == 0)
    assert np.asarray(last.pose.covariance)[0] > 0 and np.asarray(last.pose.covariance)[35] > 0
    t0 = msgs[synth.IMU_TOPIC][0][0]
    for t_ns, m in msgs[synth.IMU_TOPIC]:
        assert bags.stamp_to_ns(m.header.stamp) == t_ns and m.header.frame_id == "base_link"
        oc = np.asarray(m.orientation_covariance).reshape(3, 3)
        assert oc[2, 2] == pytest.approx(float(i_def.yaw_var_rad2((t_ns - t0) * 1e-9)), rel=1e-9)
        assert oc[0, 0] == oc[1, 1] == math.radians(i_def.tilt_std_deg) ** 2
        np.testing.assert_allclose(np.asarray(m.angular_velocity_covariance),
                                   np.diag([math.radians(i_def.gyro_noise_dps) ** 2] * 3).reshape(-1))
        # linear acceleration is provided (REP-145: -1 in element 0 would mean it is not)
        np.testing.assert_allclose(np.asarray(m.linear_acceleration_covariance),
                                   np.diag([i_def.accel_noise_mps2 ** 2] * 3).reshape(-1))
        assert 9.0 < m.linear_acceleration.z < 10.6
        q = m.orientation
        assert q.x == q.y == 0.0 and q.z ** 2 + q.w ** 2 == pytest.approx(1.0)
    # the definitions are stored: rosbags reads the bag without the project's typestore
    raw = _raw(tmp_path / "bag")
    assert len(raw[synth.WHEEL_ODOM_TOPIC]) == n_odom and len(raw[synth.IMU_TOPIC]) == n_imu


def test_rep103_yaw_and_odom_frame_agree_with_the_gt_geopose(city_dir, tmp_path):
    """Noise-free sensors: the IMU's ENU yaw is the GT GeoPose's yaw (0 = east, counter-clockwise), and the wheel
    odometry's pose, placed at the start pose, is the GT position."""
    _record(city_dir, tmp_path / "bag", frames=12, rate_hz=0.5, seed=2, odom_noise=QUIET_ODOM, imu_noise=QUIET_IMU)
    msgs = _read(tmp_path / "bag")
    frame = geo.LocalENU(*ORIGIN)
    gt = {}
    for t_ns, m in msgs[synth.GEOPOSE_TOPIC]:
        q, p = m.pose.orientation, m.pose.position
        gt[t_ns] = (geo.quaternion_xyzw_to_yaw_deg(q.x, q.y, q.z, q.w), *frame.to_en(p.latitude, p.longitude))
    assert len(gt) > 200
    imu = {t: m for t, m in msgs[synth.IMU_TOPIC]}
    odom = {t: m for t, m in msgs[synth.WHEEL_ODOM_TOPIC]}
    assert set(gt) <= set(imu) and set(gt) <= set(odom)  # 10 Hz GT stamps are 20 / 50 Hz sensor stamps
    yaw_turned = []
    t_first = min(gt)
    yaw0, e0, n0 = gt[t_first]
    c, s = math.cos(math.radians(yaw0)), math.sin(math.radians(yaw0))
    for t, (yaw_gt, e, n) in gt.items():
        q = imu[t].orientation
        assert geo.angle_diff_deg(geo.quaternion_xyzw_to_yaw_deg(q.x, q.y, q.z, q.w), yaw_gt) < 1e-6
        o = odom[t].pose.pose
        oq = o.orientation
        assert geo.angle_diff_deg(geo.quaternion_xyzw_to_yaw_deg(oq.x, oq.y, oq.z, oq.w) + yaw0, yaw_gt) < 1e-6
        # odom -> ENU: rotate by the start yaw, add the start position
        assert math.hypot(e0 + c * o.position.x - s * o.position.y - e,
                          n0 + s * o.position.x + c * o.position.y - n) < 0.1
        yaw_turned.append(yaw_gt)
    assert np.ptp(np.unwrap(np.radians(yaw_turned))) > math.radians(60)  # the drive turns: the check has teeth


def test_sensors_add_topics_and_leave_camera_and_gt_bytes_alone(city_dir, tmp_path):
    """The same arguments with and without sensors, and with another sensor seed: the camera and GT messages are
    the same bytes; the same sensor seed gives the same sensor bytes, another seed other ones."""
    kw = dict(frames=5, rate_hz=2.0, odom=True)
    _record(city_dir, tmp_path / "none", sensors=False, **kw)
    _record(city_dir, tmp_path / "a", **kw)
    _record(city_dir, tmp_path / "b", **kw)
    _record(city_dir, tmp_path / "c", sensor_seed=99, **kw)
    none, a, b, c = (_raw(tmp_path / n) for n in ("none", "a", "b", "c"))
    sensor_topics = {synth.WHEEL_ODOM_TOPIC, synth.IMU_TOPIC}
    assert set(none) == {synth.IMAGE_TOPIC, synth.FIX_TOPIC, synth.GEOPOSE_TOPIC, synth.ODOM_TOPIC}
    assert set(a) == set(none) | sensor_topics
    for topic in none:
        assert a[topic] == none[topic] == c[topic], topic
    assert a == b
    for topic in sensor_topics:
        assert a[topic].keys() == c[topic].keys() and a[topic] != c[topic]


def test_cli_flags_reach_the_noise_models_and_no_sensors_leaves_the_topics_out(city_dir, tmp_path, capsys):
    base = ["bag", "synth", "--data", str(city_dir), "--frames", "3", "--image-width", "32", "--storage", "mcap"]
    assert cli.main([*base, "--out", str(tmp_path / "off"), "--no-sensors"]) == 0
    with bags.open_bag(tmp_path / "off") as r:
        topics = {t.topic for t in bags.list_topics(r)}
    assert topics.isdisjoint({synth.WHEEL_ODOM_TOPIC, synth.IMU_TOPIC}) and synth.GEOPOSE_TOPIC in topics
    assert "wheel odometry" not in capsys.readouterr().out
    assert cli.main([*base, "--out", str(tmp_path / "on"), "--odom-rate", "10", "--imu-rate", "25",
                     "--odom-speed-noise", "0.03", "--odom-yaw-rate-noise", "0.8", "--odom-speed-bias", "0",
                     "--odom-yaw-rate-bias", "0", "--imu-yaw-noise", "2", "--imu-yaw-bias", "0",
                     "--imu-yaw-bias-walk", "0", "--sensor-seed", "4"]) == 0
    assert f"on {synth.WHEEL_ODOM_TOPIC}" in capsys.readouterr().out
    msgs = _read(tmp_path / "on")
    odom, imu = msgs[synth.WHEEL_ODOM_TOPIC], msgs[synth.IMU_TOPIC]
    assert odom[1][0] - odom[0][0] == 100_000_000 and imu[1][0] - imu[0][0] == 40_000_000
    m = odom[-1][1]
    assert m.twist.covariance[0] == pytest.approx((0.03 * m.twist.twist.linear.x) ** 2 + 0.05 ** 2)
    assert m.twist.covariance[35] == pytest.approx(math.radians(0.8) ** 2)
    assert np.allclose([mm.orientation_covariance[8] for _, mm in imu], math.radians(2.0) ** 2)
    with pytest.raises(SystemExit):
        cli.main([*base, "--out", str(tmp_path / "x"), "--imu-rate", "fast"])
