"""`unifygeo replay` end to end on a tiny world with the real localizer (a tiny random model: accuracy is not
asserted, only that every frame is processed and the outputs are well formed and mutually consistent), its
metrics against evo's APE on the same files, damaged bags, missing topics, and `unifygeo bag synth`."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from unifygeo_ros import cli, geo
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.localization.pipeline import PipelineSettings, PriorSettings
from unifygeo_ros.rosbag.replay import ReplayConfig, replay

S = 1_000_000_000
T0 = 1_704_067_200 * S
IMG_HZ, GT_HZ, N_FRAMES = 2.0, 10.0, 10
PHASE_NS = 13_000_000  # camera stamps are not GT stamps: replay must interpolate
CAMERA_TOPIC, GT_TOPIC, FIX_TOPIC, ODOM_TOPIC = "/cam/image_raw", "/gt/geopose", "/gt/fix", "/gt/odom"


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def world(vigor_city):
    """conftest's 5 x 5-tile city (129 m a side: the drive below crosses it)."""
    return vigor_city


@pytest.fixture(scope="module")
def index_dir(micro_index):
    """conftest's tiny randomly initialised model (a checkpoint beside the index) and its index of the city."""
    return micro_index


@pytest.fixture(scope="module")
def localizer(index_dir):
    from unifygeo_ros.localization.localizer import Localizer

    return Localizer.from_paths(index_dir, device="cpu")


def _drive(world):
    """A straight drive across the fixture city: GT at 10 Hz, camera at 2 Hz (phase-shifted)."""
    origin = geo.LocalENU(*world[1].origin)
    t_gt = np.arange(int((N_FRAMES / IMG_HZ + 0.5) * GT_HZ) + 1) / GT_HZ
    a, b = np.array([12.0, 20.0]), np.array([84.0, 74.0])
    T = t_gt[-1]
    en = a + (b - a) * (t_gt / T)[:, None]
    heading = math.degrees(math.atan2(*(b - a)))  # compass
    return origin, t_gt, en, heading


def write_drive_bag(path: Path, world, storage="sqlite3", compressed=False, bad_frames=(), odom=False,
                    first_frame_before_gt=False):
    ts = bags.make_typestore()
    T = ts.types
    origin, t_gt, en, heading = _drive(world)
    yaw = geo.heading_to_yaw_deg(heading)
    q = geo.yaw_to_quaternion_xyzw(yaw)
    quat = T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])
    rng = np.random.default_rng(7)
    events = [(T0 + int(round(t * S)), "gt", k) for k, t in enumerate(t_gt)]
    events += [(T0 + PHASE_NS + int(round(j / IMG_HZ * S)), "img", j) for j in range(N_FRAMES)]
    if first_frame_before_gt:
        events.append((T0 - 2 * S, "img", -1))
    events.sort()
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_img = w.add_connection(CAMERA_TOPIC + ("/compressed" if compressed else ""),
                                 bags.COMPRESSED_IMAGE if compressed else bags.IMAGE, typestore=ts)
        c_geo = w.add_connection(GT_TOPIC, bags.GEOPOSE_STAMPED, typestore=ts)
        c_fix = w.add_connection(FIX_TOPIC, bags.NAVSATFIX, typestore=ts)
        c_odom = w.add_connection(ODOM_TOPIC, bags.ODOMETRY, typestore=ts) if odom else None
        for t_ns, kind, k in events:
            if kind == "img":
                img = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
                img = np.repeat(np.repeat(img[::8, ::8], 8, 0), 8, 1)  # blocky: compresses, still random
                msg = (bags.rgb_to_compressed_msg(ts, img, t_ns, "cam") if compressed
                       else bags.rgb_to_image_msg(ts, img, t_ns, "cam"))
                if k in bad_frames:
                    if compressed:
                        msg.data = msg.data[: len(msg.data) // 3]
                    else:
                        msg.encoding = "32FC1"
                w.write(c_img, t_ns, ts.serialize_cdr(msg, c_img.msgtype))
                continue
            lat, lon = origin.from_en(en[k, 0], en[k, 1])
            gp = T[bags.GEOPOSE_STAMPED](header=bags.header(ts, t_ns, "map"), pose=T["geographic_msgs/msg/GeoPose"](
                position=T["geographic_msgs/msg/GeoPoint"](latitude=float(lat), longitude=float(lon), altitude=2.0),
                orientation=quat))
            w.write(c_geo, t_ns, ts.serialize_cdr(gp, bags.GEOPOSE_STAMPED))
            fix = T[bags.NAVSATFIX](header=bags.header(ts, t_ns, "gps"),
                                    status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
                                    latitude=float(lat), longitude=float(lon), altitude=2.0,
                                    position_covariance=np.zeros(9), position_covariance_type=0)
            w.write(c_fix, t_ns, ts.serialize_cdr(fix, bags.NAVSATFIX))
            if c_odom is not None:
                # a local ENU frame anchored 100 m east / 50 m north of the city origin
                P = T["geometry_msgs/msg/Point"](x=float(en[k, 0] - 100.0), y=float(en[k, 1] - 50.0), z=0.0)
                od = T[bags.ODOMETRY](
                    header=bags.header(ts, t_ns, "odom_enu"), child_frame_id="base_link",
                    pose=T["geometry_msgs/msg/PoseWithCovariance"](
                        pose=T["geometry_msgs/msg/Pose"](position=P, orientation=quat), covariance=np.zeros(36)),
                    twist=T["geometry_msgs/msg/TwistWithCovariance"](twist=T["geometry_msgs/msg/Twist"](
                        linear=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                        angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)), covariance=np.zeros(36)))
                w.write(c_odom, t_ns, ts.serialize_cdr(od, bags.ODOMETRY))
    return path


def _cfg(bag, index_dir, out, min_score=0.0, prior=True, **kw):
    """The node's pipeline settings, with min_score 0 by default (the tiny random model's scores mean nothing)."""
    kw.setdefault("image_topic", CAMERA_TOPIC)
    kw.setdefault("gt_topic", GT_TOPIC)
    kw["pipeline"] = PipelineSettings(min_score=min_score, max_protection_level_m=math.inf,
                                      prior=PriorSettings(enabled=prior))
    return ReplayConfig(bag=str(bag), index=None if index_dir is None else str(index_dir), out=str(out),
                        device="cpu", **kw)


@pytest.fixture(scope="module")
def replayed(world, index_dir, tmp_path_factory):
    """One full replay through the CLI (real Localizer, plots on)."""
    d = tmp_path_factory.mktemp("replay")
    bag = write_drive_bag(d / "drive", world, storage="mcap", first_frame_before_gt=True)
    out = d / "out"
    rc = cli.main(["replay", str(bag), "--index", str(index_dir), "--image-topic", CAMERA_TOPIC, "--gt-topic",
                   GT_TOPIC, "--out", str(out), "--device", "cpu", "--map", str(world[0]), "--min-score", "0",
                   "--max-protection-level", "inf"])
    assert rc == 0
    return out, json.loads((out / "metrics.json").read_text())


# --------------------------------------------------------------------------------------------------- tests
def test_replay_processes_every_frame_and_writes_well_formed_outputs(replayed, world):
    out, m = replayed
    assert m["frames"] == N_FRAMES + 1  # the extra frame precedes the GT
    assert m["status_counts"]["fix"] == N_FRAMES + 1 and m["frames_without_fix"] == 0.0
    assert m["frames_without_gt"] == 1 and m["count"] == N_FRAMES
    assert any("without GT" in w for w in m["warnings"])
    for key in ("mean_error_m", "median_error_m", "rmse_m", "heading_error_median_deg", "latency_p50_ms",
                "latency_p95_ms"):
        assert isinstance(m[key], float) and math.isfinite(m[key]), key
    assert set(m["recall"]) == {"1m", "3m", "5m", "10m"}
    cov = m["covariance"]
    assert cov["count"] == N_FRAMES and cov["inside_1sigma"] <= cov["inside_2sigma"]
    # the figures are those of the frames in frames.csv (written to 4 decimals: a value within 1e-3 of a
    # threshold may count either way)
    with open(out / "frames.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["error_m"]]
    assert len(rows) == N_FRAMES
    col = {k: np.array([float(r[k]) for r in rows]) for k in ("east_m", "north_m", "gt_east_m", "gt_north_m",
                                                              "error_m", "heading_error_deg", "cov_ee_m2",
                                                              "cov_en_m2", "cov_nn_m2")}
    de, dn = col["east_m"] - col["gt_east_m"], col["north_m"] - col["gt_north_m"]
    np.testing.assert_allclose(col["error_m"], np.hypot(de, dn), atol=2e-4)

    def share(values, limit):  # (lowest, highest) share of values <= limit, within the rounding
        return np.mean(values <= limit - 1e-3), np.mean(values <= limit + 1e-3)

    for d in (1, 3, 5, 10):
        lo, hi = share(col["error_m"], d)
        assert lo <= m["recall"][f"{d}m"] <= hi, d
    a, b, c = col["cov_ee_m2"], col["cov_en_m2"], col["cov_nn_m2"]
    nees = (c * de * de - 2 * b * de * dn + a * dn * dn) / (a * c - b * b)
    for key, limit in (("inside_1sigma", 1.0), ("inside_2sigma", 4.0)):
        lo, hi = share(nees, limit)
        assert lo <= cov[key] <= hi, key
    assert m["heading_error_median_deg"] == pytest.approx(float(np.median(col["heading_error_deg"])), abs=1e-3)
    # integrity: HMI = published fixes whose error exceeds their protection level; availability = published / frames
    pl = np.array([float(r["protection_level_m"]) for r in rows])
    t = m["trust"]
    assert np.sum(col["error_m"] > pl + 1e-2) <= t["hmi"] <= np.sum(col["error_m"] > pl - 1e-2)
    assert t["accepted"] == N_FRAMES and t["frames"] == N_FRAMES + 1
    assert t["availability"] == 1.0  # every frame published (no gate in this fixture), the one without GT too
    assert t["inside_2sigma"] == cov["inside_2sigma"]
    with open(out / "frames.csv", newline="") as fh:  # latency: every frame with a fix (GT or not)
        latency = np.array([float(r["latency_ms"]) for r in csv.DictReader(fh) if r["latency_ms"]])
    assert len(latency) == N_FRAMES + 1
    assert m["latency_p50_ms"] == pytest.approx(float(np.percentile(latency, 50)), abs=0.01)
    assert m["latency_p95_ms"] == pytest.approx(float(np.percentile(latency, 95)), abs=0.01)
    assert m["config"]["gt_type"] == bags.GEOPOSE_STAMPED and m["config"]["gt_has_orientation"]
    est, gt = trajectory.read_tum(out / "estimate.tum"), trajectory.read_tum(out / "groundtruth.tum")
    assert len(est.t_s) == len(gt.t_s) == N_FRAMES
    est_stamps = [ln.split()[0] for ln in (out / "estimate.tum").read_text().splitlines() if ln[0] != "#"]
    gt_stamps = [ln.split()[0] for ln in (out / "groundtruth.tum").read_text().splitlines() if ln[0] != "#"]
    assert est_stamps == gt_stamps  # identical strings: evo associates them 1:1
    # GT interpolated at the camera stamps lies on the straight drive at the right place
    origin, t_gt, en, heading = _drive(world)
    t_rel = est.t_s - T0 / S
    np.testing.assert_allclose(gt.xyz[:, 0], np.interp(t_rel, t_gt, en[:, 0]), atol=2e-3)
    np.testing.assert_allclose(gt.yaw_deg, geo.heading_to_yaw_deg(heading), atol=1e-4)
    for name in ("trajectory.png", "error_over_time.png", "error_cdf.png", "reliability.png", "stanford.png",
                 "frames.csv"):
        assert (out / name).stat().st_size > 1000 or name == "frames.csv", name
    rows = (out / "frames.csv").read_text().splitlines()
    assert len(rows) == N_FRAMES + 2


def _independent_ape(out: Path) -> dict:
    """APE translation part recomputed from the TUM files alone (what evo_ape does without -a): pair lines with
    equal stamps, distance of the positions."""
    def rows(p):
        return {ln.split()[0]: np.array(ln.split()[1:4], float)
                for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    est, gt = rows(out / "estimate.tum"), rows(out / "groundtruth.tum")
    e = np.array([np.linalg.norm(est[t] - gt[t]) for t in est if t in gt])
    return {"rmse": float(np.sqrt(np.mean(e ** 2))), "mean": float(np.mean(e)), "median": float(np.median(e)),
            "n": len(e)}


def test_metrics_agree_with_an_independent_ape_of_the_tum_files(replayed):
    out, m = replayed
    ape = _independent_ape(out)
    assert ape["n"] == m["count"]
    assert m["rmse_m"] == pytest.approx(ape["rmse"], abs=1e-5)
    assert m["mean_error_m"] == pytest.approx(ape["mean"], abs=1e-5)
    assert m["median_error_m"] == pytest.approx(ape["median"], abs=1e-5)


def test_metrics_agree_with_evo_unaligned_ape(replayed):
    pytest.importorskip("evo", reason="evo not installed (pip install evo)")
    from evo.core import metrics, sync
    from evo.tools import file_interface

    out, m = replayed
    ref = file_interface.read_tum_trajectory_file(str(out / "groundtruth.tum"))
    est = file_interface.read_tum_trajectory_file(str(out / "estimate.tum"))
    ref, est = sync.associate_trajectories(ref, est, max_diff=0.01)  # evo_ape's default t_max_diff
    assert ref.num_poses == m["count"]
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))  # no alignment: `evo_ape tum groundtruth.tum estimate.tum`
    stats = ape.get_all_statistics()
    assert m["rmse_m"] == pytest.approx(stats["rmse"], abs=1e-5)
    assert m["mean_error_m"] == pytest.approx(stats["mean"], abs=1e-5)
    assert m["median_error_m"] == pytest.approx(stats["median"], abs=1e-5)


def test_truncated_bag_keeps_partial_results_with_a_warning(world, index_dir, localizer, tmp_path):
    bag = write_drive_bag(tmp_path / "drive", world, storage="sqlite3")
    db = next(bag.glob("*.db3"))
    with open(db, "r+b") as fh:
        fh.truncate(os.path.getsize(db) // 2)
    rep = replay(_cfg(bag, index_dir, tmp_path / "out", plots=False), localizer=localizer)
    assert 1 <= rep.frames < N_FRAMES
    assert any("damaged or incomplete" in w for w in rep.warnings)
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["frames"] == rep.frames and m["warnings"] == rep.warnings
    assert len(trajectory.read_tum(tmp_path / "out" / "estimate.tum").t_s) == m["count"]


def test_mcap_with_a_cut_tail_keeps_partial_results(world, index_dir, localizer, tmp_path):
    bag = write_drive_bag(tmp_path / "drive", world, storage="mcap")
    f = next(bag.glob("*.mcap"))
    with open(f, "r+b") as fh:
        fh.truncate(int(os.path.getsize(f) * 0.7))
    rep = replay(_cfg(bag, index_dir, tmp_path / "out", plots=False), localizer=localizer)
    assert 1 <= rep.frames < N_FRAMES and rep.count >= 1
    assert any("salvage" in w for w in rep.warnings)


def test_missing_topic_names_the_available_ones(world, index_dir, tmp_path, capsys):
    bag = write_drive_bag(tmp_path / "drive", world)
    rc = cli.main(["replay", str(bag), "--index", str(index_dir), "--image-topic", "/camera/wrong", "--gt-topic",
                   GT_TOPIC, "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "'/camera/wrong' not in bag; available topics:" in err
    assert f"{CAMERA_TOPIC} (sensor_msgs/msg/Image, {N_FRAMES} msgs)" in err and GT_TOPIC in err


def test_undecodable_images_count_as_frames_without_a_fix(world, index_dir, localizer, tmp_path):
    bag = write_drive_bag(tmp_path / "drive", world, compressed=True, bad_frames=(2, 5))
    rep = replay(_cfg(bag, index_dir, tmp_path / "out", image_topic=CAMERA_TOPIC + "/compressed", plots=False),
                 localizer=localizer)
    assert rep.frames == N_FRAMES and rep.status_counts["undecodable"] == 2
    assert rep.frames_without_fix == pytest.approx(2 / N_FRAMES) and rep.count == N_FRAMES - 2
    assert any("undecodable" in w for w in rep.warnings)


def test_every_and_rate_select_frames(world, index_dir, localizer, tmp_path):
    bag = write_drive_bag(tmp_path / "drive", world)
    rep = replay(_cfg(bag, index_dir, tmp_path / "a", every=3, plots=False), localizer=localizer)
    assert rep.frames == len(range(0, N_FRAMES, 3))
    rep = replay(_cfg(bag, index_dir, tmp_path / "b", rate_hz=1.0, plots=False), localizer=localizer)
    assert rep.frames == N_FRAMES // 2


def test_navsatfix_and_odometry_gt_give_the_same_ground_truth_as_geopose(world, index_dir, localizer, tmp_path):
    bag = write_drive_bag(tmp_path / "drive", world, odom=True)
    origin = geo.LocalENU(*world[1].origin)
    odom_origin = tuple(float(v) for v in origin.from_en(100.0, 50.0))
    outs = {}
    for name, topic, extra in (("geo", GT_TOPIC, {}), ("fix", FIX_TOPIC, {}),
                               ("odom", ODOM_TOPIC, {"gt_frame_origin": odom_origin})):
        replay(_cfg(bag, index_dir, tmp_path / name, gt_topic=topic, plots=False, **extra), localizer=localizer)
        outs[name] = trajectory.read_tum(tmp_path / name / "groundtruth.tum")
    # the odometry frame is a tangent plane 112 m away: positions agree to the curvature (~1 mm)
    np.testing.assert_allclose(outs["fix"].xyz, outs["geo"].xyz, atol=1e-6)
    np.testing.assert_allclose(outs["odom"].xyz, outs["geo"].xyz, atol=5e-3)
    m = json.loads((tmp_path / "fix" / "metrics.json").read_text())
    assert m["heading_error"]["count"] == 0 and m["heading_error_median_deg"] is None  # NavSatFix: no heading


# ------------------------------------------------------------------------------------------------ bag synth
def _demo_city_geo_json(tmp_path):
    """A city folder holding only the geo.json of DemoCity's city (seed 2026, 300 m, 70 m tiles): bag synth
    regenerates the city from it. Returns (folder, origin lat/lon)."""
    city_dir = tmp_path / "City"
    city_dir.mkdir()
    origin = (47.6, -122.3)
    (city_dir / "geo.json").write_text(json.dumps({
        "format": "unifygeo-city", "version": 1, "city": "City", "seed": 2026, "style": "mixed",
        "origin": {"lat_deg": origin[0], "lon_deg": origin[1]}, "size_m": [300.0, 300.0], "tile_m": 70.0,
        "stride_m": 35.0, "tile_px": 320, "mpp": 0.21875, "pano_px": [512, 256], "camera_height_m": 2.0}))
    return city_dir, origin


@pytest.mark.parametrize("storage,compressed", [("sqlite3", False), ("mcap", True)])
def test_bag_synth_writes_a_drive_rosbags_reads_back(tmp_path, storage, compressed):
    from unifygeo_ros.rosbag.synth import (FIX_TOPIC as SFIX, GEOPOSE_TOPIC as SGEO, IMAGE_TOPIC, ODOM_TOPIC as SODOM,
                                        SynthBagConfig, synth_bag)

    city_dir, origin = _demo_city_geo_json(tmp_path)
    res = synth_bag(SynthBagConfig(data=str(city_dir), out=str(tmp_path / "bag"), storage=storage, frames=4,
                                   rate_hz=2.0, image_width=64, compressed=compressed, odom=True, seed=3))
    assert res.frames == 4
    topic = IMAGE_TOPIC + ("/compressed" if compressed else "")
    with bags.open_bag(tmp_path / "bag") as r:
        types = {t.topic: (t.msgtype, t.count) for t in bags.list_topics(r)}
        assert types[topic] == (bags.COMPRESSED_IMAGE if compressed else bags.IMAGE, 4)
        assert types[SFIX][0] == bags.NAVSATFIX and types[SGEO][0] == bags.GEOPOSE_STAMPED
        assert types[SODOM][0] == bags.ODOMETRY and types[SFIX][1] == types[SGEO][1] >= 16
        frame = geo.LocalENU(*origin)
        prev = None
        for conn, t_log, msg in bags.iter_messages(r, r.connections):
            assert bags.stamp_to_ns(msg.header.stamp) == t_log  # header stamps = recording time
            if conn.topic == topic:
                img = bags.msg_to_rgb(msg, conn.msgtype)
                assert img.shape == (32, 64, 3)
            elif conn.topic == SGEO:
                p = msg.pose.position
                e, n = frame.to_en(p.latitude, p.longitude)
                # inside the tiled region whose tiles' central quarters hold cameras (35..245 m), up to a lane
                assert 32.0 < e < 248.0 and 32.0 < n < 248.0
                if prev is not None:  # plausible speed between GT samples
                    v = math.hypot(e - prev[0], n - prev[1]) / ((t_log - prev[2]) * 1e-9)
                    assert v <= 8.0 + 1e-6
                prev = (e, n, t_log)
    # the bag stores its message definitions: readable without our typestore
    from rosbags.highlevel import AnyReader

    with AnyReader([tmp_path / "bag"]) as r:
        assert {c.msgtype for c in r.connections} >= {bags.GEOPOSE_STAMPED, bags.NAVSATFIX}


# ------------------------------------------------------------------------------------------------------ live
def test_live_replay_scores_the_running_node_like_the_in_process_localizer(tmp_path, monkeypatch):
    """--live plays the bag to a real localizer_node process over DDS and scores what it publishes; with the
    same model, index and no prior, the node's fixes are the in-process localizer's (same positions)."""
    pytest.importorskip("rclpy", reason="rclpy not importable (source scripts/ros_env.sh)")
    from node_world import CITY, build_world
    from ros_helpers import NodeProcess, ros_available, ros_subprocess_env, unique_domain_id

    ok, why = ros_available()
    if not ok:
        pytest.skip(why)
    from unifygeo_ros.rosbag.synth import GEOPOSE_TOPIC, SynthBagConfig, synth_bag

    w = build_world(tmp_path / "world", n_queries=1, use_demo=False)
    rec = synth_bag(SynthBagConfig(data=str(tmp_path / "world" / "data" / CITY), out=str(tmp_path / "bag"),
                                   storage="mcap", frames=6, rate_hz=2.0, seed=3, north_aligned=True))
    domain = unique_domain_id()
    env = ros_subprocess_env(domain_id=domain)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    node = NodeProcess(env, "/live", {"checkpoint": w.checkpoint, "index": w.index, "device": "cpu", "cpu_threads": 1,
                                      "min_score": 0.0, "use_prior": "false", "max_protection_level_m": ".inf",
                                      "heading_source": "north_aligned" if w.known_orientation else "auto"},
                       tmp_path / "node.log")
    try:
        node.wait_ready(240.0)
        live = replay(_cfg(rec.bag, None, tmp_path / "live", image_topic=rec.image_topic, gt_topic=GEOPOSE_TOPIC,
                           live=True, node_input="/live/image", node_output="/live/geopose_with_covariance",
                           live_timeout_s=60.0, plots=False), origin=w_origin(w))
    finally:
        node.stop()
    local = replay(_cfg(rec.bag, w.index, tmp_path / "local", image_topic=rec.image_topic, gt_topic=GEOPOSE_TOPIC,
                        checkpoint=str(w.checkpoint), plots=False, prior=False))  # the node's settings above
    assert live.frames == local.frames == 6
    assert live.count >= 4  # at most a couple dropped while the node is busy
    m_live = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert m_live["count"] == live.count and (tmp_path / "live" / "estimate.tum").is_file()
    est_live = {round(float(l.split()[0]), 3): l.split()[1:3] for l in
                (tmp_path / "live" / "estimate.tum").read_text().splitlines() if l and not l.startswith("#")}
    est_local = {round(float(l.split()[0]), 3): l.split()[1:3] for l in
                 (tmp_path / "local" / "estimate.tum").read_text().splitlines() if l and not l.startswith("#")}
    common = set(est_live) & set(est_local)
    assert len(common) >= 4
    for t in common:  # same model, index, image: the same fix (to the metre-level rounding of lat/lon)
        assert np.allclose(np.array(est_live[t], float), np.array(est_local[t], float), atol=0.05), t


def w_origin(w):
    return geo.LocalENU(*w.origin)


def test_live_without_a_running_node_is_a_clear_error(world, tmp_path):
    pytest.importorskip("rclpy", reason="rclpy not importable (source scripts/ros_env.sh)")
    bag = write_drive_bag(tmp_path / "drive", world)
    cfg = _cfg(bag, None, tmp_path / "out", live=True, node_input="unifygeo_replay_test_no_node_image",
               node_output="fix")
    from unifygeo_ros.ros.live_client import LiveNodeClient

    orig = LiveNodeClient.__init__.__defaults__
    try:
        LiveNodeClient.__init__.__defaults__ = (1.0,)  # discovery timeout
        with pytest.raises(UnifyGeoError, match="no subscriber on .*unifygeo_replay_test_no_node_image"):
            replay(cfg)
    finally:
        LiveNodeClient.__init__.__defaults__ = orig


def test_prior_mode_passes_the_previous_fix_to_the_localizer(world, index_dir, localizer, tmp_path):
    from unifygeo_ros.localization.localizer import Prior

    seen, fixes = [], []
    orig = localizer.localize

    def spy(img, prior=None, heading_deg=None, heading_std_deg=5.0):
        seen.append(prior)
        fixes.append(orig(img, prior, heading_deg=heading_deg, heading_std_deg=heading_std_deg))
        return fixes[-1]

    localizer.localize = spy
    try:
        rep = replay(_cfg(write_drive_bag(tmp_path / "drive", world), index_dir, tmp_path / "out", plots=False),
                     localizer=localizer)
    finally:
        del localizer.localize
    assert rep.frames == N_FRAMES and len(seen) == N_FRAMES and seen[0] is None
    # every later frame gets the previous (published: min_score 0) fix as its prior, its radius the fix's own
    # 1-sigma (at least the 5 m floor) grown by 3 m/s over the 0.5 s between the frames
    s = PriorSettings()
    for prev, p in zip(fixes, seen[1:]):
        own = math.sqrt(float(np.linalg.eigvalsh(prev.covariance_en_m2).max()))
        want = max(s.sigma_floor_m, own) + s.growth_m_per_s / IMG_HZ
        assert isinstance(p, Prior) and (p.east_m, p.north_m) == (prev.east_m, prev.north_m)
        assert p.sigma_m == pytest.approx(want, abs=1e-5)  # stamps of ~1.7e9 s: microsecond rounding


def test_bag_synth_drives_inside_the_tiled_region_of_the_map(tmp_path):
    """The recorded drive stays where the map's tiles can answer (the region whose tiles' central quarters hold
    the cameras, as in VIGOR), not along the city's edge outside every tile."""
    from unifygeo_ros.rosbag.synth import GEOPOSE_TOPIC as SGEO, SynthBagConfig, synth_bag

    city_dir, origin = _demo_city_geo_json(tmp_path)
    synth_bag(SynthBagConfig(data=str(city_dir), out=str(tmp_path / "bag"), storage="mcap", frames=40,
                             rate_hz=2.0, image_width=32, seed=0))
    frame = geo.LocalENU(*origin)
    with bags.open_bag(tmp_path / "bag") as r:
        en = np.array([frame.to_en(m.pose.position.latitude, m.pose.position.longitude)
                       for c, _, m in bags.iter_messages(r, [c for c in r.connections if c.topic == SGEO])])
    assert len(en) > 100
    assert en.min() > 32.0 and en.max() < 248.0, (en.min(axis=0), en.max(axis=0))
