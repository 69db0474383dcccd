"""`unifygeo replay --fuse` (issue #15, item 6): the map-frame EKF of rosbag/fusion.py on synthetic drives with known
noise (no bag) - settings read from config/robot_localization/ekf.yaml, perfect fixes give a small APE, odometry
alone drifts, a confident wrong fix is rejected by the Mahalanobis gate without a jump, the NEES is consistent when
the noise is what the filter is told, the model's Jacobians - and end to end: a `unifygeo bag synth` drive replayed
with --fuse (metrics.json's `fusion`, fused.tum read by evo with the same APE, the missing-odometry error)."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from unifygeo_ros import cli
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import sensors as sens
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.fusion import (FusionConfig, PlanarFusion, PositionFix, TwistSample, YawSample, fuse,
                                        load_ekf_params, motion_jacobians, motion_model, pick_topics, run_fusion,
                                        score_track)

REPO = Path(__file__).resolve().parents[1]
EKF_YAML = REPO / "config" / "robot_localization" / "ekf.yaml"
T0 = 1_704_067_200 * 1_000_000_000
#: the filter's noise model is white: these are the sensors with their per-drive biases off ("correct noise")
WHITE_ODOM = sens.WheelOdomNoise(speed_scale_bias_frac=0.0, yaw_rate_bias_dps=0.0)
WHITE_IMU = sens.ImuNoise(yaw_bias_init_deg=0.0, yaw_bias_walk_deg_per_sqrt_s=0.0)


# --------------------------------------------------------------------------------------------- synthetic drive
class _Drive:
    """8 m/s, straight stretches and 90-degree turns (10 deg/s) in random directions, from (500, 300) with ENU yaw
    ``yaw0_deg`` (default 135: north-west, far from the filter's initial yaw 0); ``at(t)`` returns what :meth:`unifygeo_ros.rosbag.drive.Drive.at` does (ENU, compass heading, speed,
    ENU yaw rate in deg/s), from a 1 kHz integration."""

    DT = 1e-3

    def __init__(self, duration_s: float, seed: int = 0, speed: float = 8.0, yaw0_deg: float = 135.0):
        rng = np.random.default_rng(seed)
        t = np.arange(0.0, duration_s + 1.0, self.DT)
        w = np.zeros_like(t)
        start = 10.0
        while start < t[-1]:
            w[(t >= start) & (t < start + 9.0)] = math.radians(10.0) * rng.choice([-1.0, 1.0])
            start += 9.0 + rng.uniform(10.0, 25.0)
        yaw = math.radians(yaw0_deg) + np.cumsum(w) * self.DT
        self.e = 500.0 + np.cumsum(speed * np.cos(yaw)) * self.DT
        self.n = 300.0 + np.cumsum(speed * np.sin(yaw)) * self.DT
        self.yaw, self.w, self.speed = yaw, w, speed

    def at(self, t_s):
        i = np.clip(np.round(np.asarray(t_s, float) / self.DT).astype(int), 0, self.e.size - 1)
        return (np.stack([self.e[i], self.n[i]], axis=1), 90.0 - np.degrees(self.yaw[i]),
                np.full(i.size, self.speed), np.degrees(self.w[i]))


def _ns(t_s: float) -> int:
    return T0 + int(round(t_s * 1e9))


def _sensors(drive: _Drive, end_s: float, seed: int, odom=WHITE_ODOM, imu=WHITE_IMU):
    """(twists, IMU yaws) of rosbag/sensors.py's noise models, as replay collects them from the messages."""
    r_odom, r_imu = sens.SensorSettings(odom, imu, seed).rngs()
    to = sens.sample_times(odom.rate_hz, end_s)
    od = sens.simulate_wheel_odometry(to, *drive.at(to), odom, r_odom)
    ti = sens.sample_times(imu.rate_hz, end_s)
    im = sens.simulate_imu(ti, *drive.at(ti), imu, r_imu)
    twists = [TwistSample(_ns(t), np.array([od.speed_mps[k], 0.0, od.yaw_rate_rps[k]]),
                          np.array([od.speed_var[k], od.lateral_speed_var, od.yaw_rate_var])) for k, t in enumerate(to)]
    yaws = [YawSample(_ns(t), float(im.yaw_rad[k]), float(im.yaw_var[k])) for k, t in enumerate(ti)]
    return twists, yaws


def _fixes(drive: _Drive, t_s: np.ndarray, sigma_m: tuple[float, float], seed: int) -> list[PositionFix]:
    """Fixes at ``t_s``: the truth plus noise drawn from their own covariance (random orientation)."""
    rng = np.random.default_rng(seed)
    en = drive.at(t_s)[0]
    out = []
    for k, t in enumerate(t_s):
        a = rng.uniform(0.0, math.pi)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        cov = rot @ np.diag(np.square(sigma_m)) @ rot.T
        z = en[k] + np.linalg.cholesky(cov) @ rng.standard_normal(2)
        out.append(PositionFix(_ns(t), float(z[0]), float(z[1]), cov))
    return out


def _run(duration_s=300.0, seed=0, sigma_m=(3.0, 2.0), fix_every=1, imu_yaw=True, odom=WHITE_ODOM, imu=WHITE_IMU,
         edit=None):
    """Fuse a drive with 2 Hz frames (fixes on every ``fix_every``-th frame); (figures, track, GT, fixes)."""
    drive = _Drive(duration_s, seed)
    twists, yaws = _sensors(drive, duration_s, seed, odom, imu)
    frame_t = np.arange(0.013, duration_s, 0.5)
    fixes = _fixes(drive, frame_t, sigma_m, seed + 100)[::fix_every]
    if edit is not None:
        fixes = edit(fixes)
    track = fuse(twists, yaws, fixes, [_ns(t) for t in frame_t], load_ekf_params(EKF_YAML), imu_yaw)
    en = drive.at(frame_t)[0]
    gt = trajectory.make_trajectory([_ns(t) for t in frame_t], en[:, 0], en[:, 1])
    fig, err = score_track(track, gt, 0.5)
    return fig, track, err, fixes


# ------------------------------------------------------------------------------------------------ settings
def test_settings_come_from_the_map_section_of_the_shipped_ekf_yaml():
    p = load_ekf_params(EKF_YAML)
    assert p.section == "ekf_filter_node_map"
    assert p.process_noise_per_s == (0.5, 0.5, 0.06)  # x, y measured (bench_fusion_noise.py), yaw the default
    assert p.initial_covariance == (1e8, 1e8, 9.8696)
    assert p.pose_rejection_threshold == 4.03 and p.imu_yaw_rejection_threshold == math.inf
    assert p.odom_twist == (True, True, True)
    assert p.pose_yaw_configured and not p.imu_yaw_configured  # the fix's yaw, not the IMU's, in the yaml
    assert p.two_d_mode and p.smooth_lagged_data and p.history_length_s == 2.0
    j = p.to_json()
    assert j["path"] == str(EKF_YAML) and j["pose0_rejection_threshold"] == 4.03


def test_a_missing_section_or_key_is_a_clear_error(tmp_path):
    import yaml

    doc = yaml.safe_load(EKF_YAML.read_text())
    only_odom = tmp_path / "odom_only.yaml"
    only_odom.write_text(yaml.safe_dump({"ekf_filter_node_odom": doc["ekf_filter_node_odom"]}))
    with pytest.raises(UnifyGeoError, match="no section 'ekf_filter_node_map'.*sections: ekf_filter_node_odom"):
        load_ekf_params(only_odom)
    params = dict(doc["ekf_filter_node_map"]["ros__parameters"])
    del params["process_noise_covariance"]
    no_q = tmp_path / "no_q.yaml"
    no_q.write_text(yaml.safe_dump({"ekf_filter_node_map": {"ros__parameters": params}}))
    with pytest.raises(UnifyGeoError, match="lacks process_noise_covariance"):
        load_ekf_params(no_q)
    # the 15-value diagonal form (newer robot_localization branches) reads the same numbers
    params = dict(doc["ekf_filter_node_map"]["ros__parameters"])
    params["process_noise_covariance"] = np.diag(np.reshape(params["process_noise_covariance"], (15, 15))).tolist()
    diag = tmp_path / "diag.yaml"
    diag.write_text(yaml.safe_dump({"ekf_filter_node_map": {"ros__parameters": params}}))
    assert load_ekf_params(diag).process_noise_per_s == (0.5, 0.5, 0.06)


# -------------------------------------------------------------------------------------------------- filter
def test_motion_jacobians_match_finite_differences():
    x = np.array([[3.0], [-2.0], [0.7]])
    u = np.array([7.5, 0.3, 0.2, 0.05])
    F, G = motion_jacobians(x, u)
    eps = 1e-6
    for j in range(3):
        d = np.zeros((3, 1))
        d[j] = eps
        np.testing.assert_allclose(((motion_model(x + d, u) - motion_model(x - d, u)) / (2 * eps))[:, 0], F[:, j],
                                   atol=1e-6)
        du = np.zeros(4)
        du[j] = eps
        np.testing.assert_allclose(((motion_model(x, u + du) - motion_model(x, u - du)) / (2 * eps))[:, 0], G[:, j],
                                   atol=1e-6)


def test_perfect_fixes_give_a_small_ape_from_the_first_fix_on():
    fig, track, err, fixes = _run(duration_s=120.0, sigma_m=(0.05, 0.05))
    assert fig["ape"]["rmse_m"] < 0.1 and fig["ape"]["max_m"] < 0.3
    assert fig["fixes_fused"] == len(fixes) and fig["fixes_rejected"] == 0
    assert track.fused.all() and fig["availability"] == 1.0  # the first frame carries the first fix
    # the filter starts AT the first fix (robot_localization's wide initial covariance: the fix's own)
    assert track.east_m[0] == pytest.approx(fixes[0].east_m, abs=1e-3)
    assert track.north_m[0] == pytest.approx(fixes[0].north_m, abs=1e-3)
    assert track.fix_status[0] == "started"


def test_frames_before_the_first_fix_are_not_fused():
    def late_start(fixes):
        return fixes[10:]

    fig, track, err, fixes = _run(duration_s=60.0, edit=late_start)
    assert not track.fused[:10].any() and track.fused[10:].all()
    assert fig["frames_fused"] == fig["frames"] - 10 and fig["availability"] == pytest.approx(1 - 10 / fig["frames"])
    assert np.isnan(track.east_m[:10]).all()


def test_a_first_fix_beyond_the_initial_covariance_gate_does_not_start_the_filter():
    """The filter starts at the map origin with sigma 1e4 m: a fix 50 km away fails the 4.03-sigma gate (as in
    robot_localization), is counted as before the start, and the next fix within reach starts the filter."""
    f = PlanarFusion(load_ekf_params(EKF_YAML), imu_yaw=False)
    assert f.fix(PositionFix(T0, 50_000.0, 0.0, np.eye(2))) == "before_start" and not f.started
    assert f.fix(PositionFix(T0 + 500_000_000, 30_000.0, 0.0, np.eye(2))) == "started"
    assert f.pose()[0] == pytest.approx(30_000.0, abs=0.01)
    assert (f.fixes_before_start, f.fixes_fused, f.fixes_rejected) == (1, 1, 0)


def test_odometry_alone_after_the_first_fix_drifts():
    """Only the first fix (then odometry and IMU yaw): the error grows with the distance driven, and the
    filter's covariance grows with it."""
    fig, track, err, _ = _run(duration_s=300.0, fix_every=10 ** 6, odom=sens.WheelOdomNoise(), imu=sens.ImuNoise())
    e = np.hypot(err[:, 0], err[:, 1])
    assert fig["fixes_fused"] == 1
    assert e[-20:].mean() > 5.0 and e[-20:].mean() > 5 * e[:20].mean()
    sigma = np.sqrt(np.trace(track.cov_m2, axis1=1, axis2=2))
    assert sigma[-1] > 1.5 * sigma[1]  # from the first fix's few metres on
    with_fixes, *_ = _run(duration_s=300.0, odom=sens.WheelOdomNoise(), imu=sens.ImuNoise())
    assert with_fixes["ape"]["rmse_m"] < fig["ape"]["rmse_m"] / 3


def test_a_confident_wrong_fix_is_rejected_by_the_gate_and_causes_no_jump():
    """A fix 200 m off with a 1 m^2 covariance (a confident fix on a wrong tile): d >> 4.03, rejected; the fused
    track is the one without it (the rejected fix only splits a prediction step)."""
    base, base_track, base_err, _ = _run(duration_s=120.0, edit=lambda fixes: fixes[:120] + fixes[121:])

    def wrong(fixes):
        f = fixes[120]
        fixes[120] = PositionFix(f.t_ns, f.east_m + 200.0, f.north_m, np.eye(2))
        return fixes

    fig, track, err, fixes = _run(duration_s=120.0, edit=wrong)
    assert fig["fixes_rejected"] == base["fixes_rejected"] + 1 and track.fix_status[120] == "rejected"
    assert fig["largest_jump_m"] == pytest.approx(base["largest_jump_m"], abs=1e-3) and fig["largest_jump_m"] < 3.0
    np.testing.assert_allclose(track.east_m, base_track.east_m, atol=1e-3)
    np.testing.assert_allclose(track.north_m, base_track.north_m, atol=1e-3)
    assert fig["largest_error_change_m"] < 3.0


def test_the_gate_rejects_at_d_squared_at_least_threshold_squared():
    """robot_localization's checkMahalanobisThreshold: d^2 >= threshold^2 is rejected, just below passes."""
    params = replace(load_ekf_params(EKF_YAML), process_noise_per_s=(0.0, 0.0, 0.0))
    thr = params.pose_rejection_threshold

    def filt():
        f = PlanarFusion(params, imu_yaw=False)
        f.fix(PositionFix(T0, 10.0, 20.0, np.diag([1e-6, 1e-6])))  # starts at (10, 20) with P ~ 1e-6
        f.ekf.P = np.diag([3.0, 3.0, 0.1])
        return f

    s = math.sqrt(3.0 + 1.0)  # innovation sigma along x: P + R
    assert filt().fix(PositionFix(T0, 10.0 + 0.999 * thr * s, 20.0, np.eye(2))) == "fused"
    f = filt()
    assert f.fix(PositionFix(T0, 10.0 + 1.001 * thr * s, 20.0, np.eye(2))) == "rejected"
    assert f.pose()[:2] == pytest.approx((10.0, 20.0), abs=1e-3) and f.fixes_rejected == 1


def test_nees_is_consistent_on_a_long_drive_with_correct_noise():
    """Noise as the filter is told (white, the messages' covariances; fixes drawn from their covariance): the
    2-D NEES averages near 2 - below it, as the yaml's process noise comes on top of the odometry's."""
    fig, *_ = _run(duration_s=600.0, seed=3)
    assert fig["nees"]["count"] == 1200
    assert 0.5 <= fig["nees"]["mean"] <= 6.0, fig["nees"]
    assert fig["ape"]["rmse_m"] < 2.0  # better than the single fixes (sigma 2-3 m per axis)


def test_without_an_absolute_yaw_the_replay_warns():
    """No IMU topic: no absolute yaw (the fixes' yaw is not fused); the filter runs and says so."""
    from types import SimpleNamespace

    drive = _Drive(60.0)
    twists, _ = _sensors(drive, 60.0, 0)
    fixes = _fixes(drive, np.arange(0.013, 60.0, 0.5), (3.0, 2.0), 1)
    frames = [SimpleNamespace(status="fix", t_ns=f.t_ns, east_m=f.east_m, north_m=f.north_m, cov_en_m2=f.cov_m2)
              for f in fixes]
    sensors = SimpleNamespace(imu_topic=None, odom_topic="/wheel/odometry", yaws=[], twists=twists, skipped=0,
                              odometry_messages=len(twists), imu_messages=0)
    en = drive.at(np.arange(0.0, 61.0, 0.1))[0]
    gt = trajectory.make_trajectory([_ns(t) for t in np.arange(0.0, 61.0, 0.1)], en[:, 0], en[:, 1])
    warnings: list[str] = []
    res = run_fusion(sensors, frames, gt, FusionConfig(ekf_yaml=str(EKF_YAML)), 0.5, warnings)
    assert any("no absolute yaw source" in w for w in warnings)
    assert res.report["config"]["imu_yaw_fused"] is False and res.report["imu_yaws_fused"] == 0
    assert res.report["count"] == len(frames) and res.report["odometry_messages"] == len(twists)


# -------------------------------------------------------------------------------------------------- topics
def _topics(*pairs):
    return [bags.TopicInfo(t, m, 10) for t, m in pairs]


def test_topics_are_picked_automatically_and_gt_is_never_odometry():
    ts = _topics(("/gt/odom", bags.ODOMETRY), ("/wheel/odometry", bags.ODOMETRY), ("/imu/data", "sensor_msgs/msg/Imu"),
                 ("/cam", bags.IMAGE))
    assert pick_topics(ts, FusionConfig()) == ("/wheel/odometry", "/imu/data")
    assert pick_topics(ts[:2] + ts[3:], FusionConfig()) == ("/wheel/odometry", None)
    with pytest.raises(bags.BagError, match=r"no wheel odometry in the bag .*topics found: .*/cam \(sensor_msgs/msg/"
                                            r"Image, 10 msgs\)") as exc:
        pick_topics([ts[0], ts[3]], FusionConfig())
    assert "/gt/odom (nav_msgs/msg/Odometry, 10 msgs)" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(bags.BagError, match="several odometry topics"):
        pick_topics(ts + _topics(("/odom2", bags.ODOMETRY)), FusionConfig())
    assert pick_topics(ts + _topics(("/odom2", bags.ODOMETRY)), FusionConfig(odom_topic="/odom2"))[0] == "/odom2"
    with pytest.raises(bags.BagError, match="--imu-topic /cam is of type sensor_msgs/msg/Image"):
        pick_topics(ts, FusionConfig(imu_topic="/cam"))


# ------------------------------------------------------------------------------------------------ end to end
def _city(tmp_path: Path, origin: tuple[float, float]) -> Path:
    """geo.json of DemoCity's city (seed 2026, 300 m) at ``origin``: bag synth regenerates the city from it."""
    d = tmp_path / "City"
    d.mkdir()
    (d / "geo.json").write_text(json.dumps({
        "format": "unifygeo-city", "version": 1, "city": "City", "seed": 2026, "style": "mixed",
        "origin": {"lat_deg": origin[0], "lon_deg": origin[1]}, "size_m": [300.0, 300.0], "tile_m": 70.0,
        "stride_m": 35.0, "tile_px": 320, "mpp": 0.21875, "pano_px": [512, 256], "camera_height_m": 2.0}))
    return d


def test_replay_fuse_end_to_end_on_a_synthetic_bag(vigor_city, micro_index, tmp_path):
    """`unifygeo bag synth` (odometry + IMU on) -> `unifygeo replay --fuse` with conftest's tiny random model (its
    fixes mean nothing: the figures are checked for form and against evo, not for accuracy)."""
    from unifygeo_ros.rosbag.synth import GEOPOSE_TOPIC, IMAGE_TOPIC, SynthBagConfig, synth_bag

    city = _city(tmp_path, vigor_city[1].origin)  # the index's origin: the drive is in the replay's frame
    rec = synth_bag(SynthBagConfig(data=str(city), out=str(tmp_path / "bag"), frames=8, rate_hz=2.0, image_width=64,
                                   north_aligned=True, seed=1))
    out = tmp_path / "out"
    rc = cli.main(["replay", str(rec.bag), "--index", str(micro_index), "--image-topic", IMAGE_TOPIC, "--gt-topic",
                   GEOPOSE_TOPIC, "--out", str(out), "--device", "cpu", "--min-score", "0",
                   "--max-protection-level", "inf", "--no-prior", "--fuse"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    fz = m["fusion"]
    assert set(fz) >= {"count", "ape", "nees", "largest_jump_m", "fixes_fused", "fixes_rejected",
                       "odometry_messages", "imu_messages", "config"}
    assert set(fz["ape"]) == {"rmse_m", "median_m", "max_m", "mean_m"} and set(fz["nees"]) >= {"mean", "median"}
    assert fz["odometry_messages"] == rec.wheel_odom_messages and fz["imu_messages"] == rec.imu_messages
    assert fz["fixes_fused"] + fz["fixes_rejected"] + fz["fixes_before_start"] == m["status_counts"]["fix"]
    assert fz["fixes_fused"] >= 1 and fz["count"] >= 1 and fz["frames"] == m["frames"] == 8
    cfg = fz["config"]
    assert cfg["path"].endswith("config/robot_localization/ekf.yaml") and cfg["pose0_rejection_threshold"] == 4.03
    assert cfg["process_noise_per_s"] == {"x_m2": 0.5, "y_m2": 0.5, "yaw_rad2": 0.06}
    assert cfg["odom_topic"] == "/wheel/odometry" and cfg["imu_topic"] == "/imu/data" and cfg["imu_yaw_fused"]
    assert (out / "fusion.png").stat().st_size > 0
    # fused.tum: evo's 8 fields; evo's unaligned APE of the pair equals metrics.json's
    rows = [ln.split() for ln in (out / "fused.tum").read_text().splitlines() if not ln.startswith("#")]
    assert len(rows) == fz["frames_fused"] and all(len(r) == 8 for r in rows)
    pytest.importorskip("evo", reason="evo not installed (pip install evo)")
    from evo.core import metrics, sync
    from evo.tools import file_interface

    ref = file_interface.read_tum_trajectory_file(str(out / "fused_groundtruth.tum"))
    est = file_interface.read_tum_trajectory_file(str(out / "fused.tum"))
    ref, est = sync.associate_trajectories(ref, est, max_diff=0.01)
    assert ref.num_poses == fz["count"]
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    stats = ape.get_all_statistics()
    for ours, evo_key in (("rmse_m", "rmse"), ("median_m", "median"), ("max_m", "max"), ("mean_m", "mean")):
        assert fz["ape"][ours] == pytest.approx(stats[evo_key], abs=1e-5), ours


def test_replay_fuse_without_odometry_names_the_topics_found(vigor_city, micro_index, tmp_path, capsys):
    from unifygeo_ros.rosbag.synth import GEOPOSE_TOPIC, IMAGE_TOPIC, SynthBagConfig, synth_bag

    city = _city(tmp_path, vigor_city[1].origin)
    rec = synth_bag(SynthBagConfig(data=str(city), out=str(tmp_path / "bag"), frames=2, image_width=64,
                                   north_aligned=True, sensors=False, odom=True))
    rc = cli.main(["replay", str(rec.bag), "--index", str(micro_index), "--image-topic", IMAGE_TOPIC, "--gt-topic",
                   GEOPOSE_TOPIC, "--out", str(tmp_path / "out"), "--device", "cpu", "--fuse"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "--fuse: no wheel odometry in the bag" in err[0] and "/gt/odom (nav_msgs/msg/Odometry" in err[0]
    assert f"{IMAGE_TOPIC} (sensor_msgs/msg/Image, 2 msgs)" in err[0]
