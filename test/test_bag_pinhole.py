"""Pinhole cameras rendered for real (issue #17, item 2): the pinhole renderer agrees with a panorama of the same
pose resampled through ``stitch.pinhole_view`` and looks the right way; ``unifygeo bag synth --camera pinhole``
records Image + CameraInfo per camera on the node's ``cameras/<name>/...`` topics, a 4 x 90 deg rig from the bag
stitched by the node's own path covers and matches the panorama; ``--kidnap-at`` teleports the vehicle (the
ground truth jumps, the wheel odometry does not) and marks it on ``/gt/kidnap`` and in the bag's metadata."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from unifygeo_ros import cli, geo
from unifygeo_ros.data import render, world
from unifygeo_ros.data.pinhole import render_pinhole
from unifygeo_ros.image.rig import RigFrame
from unifygeo_ros.image.stitch import PinholeCamera, intrinsics_for_fov, pinhole_view, stitcher_for
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import sensors as sens
from unifygeo_ros.rosbag import synth_topics as topics
from unifygeo_ros.rosbag.camera_rig import make_rig, mount_quaternion_xyzw
from unifygeo_ros.rosbag.drive_plan import KIDNAP_MIN_M, plan_drive
from unifygeo_ros.rosbag.synth import SynthBagConfig, synth_bag

ORIGIN = (47.6, -122.3)
META = {"format": "unifygeo-city", "version": 1, "city": "City", "seed": 2026, "style": "mixed",
        "origin": {"lat_deg": ORIGIN[0], "lon_deg": ORIGIN[1]}, "size_m": [300.0, 300.0], "tile_m": 70.0,
        "stride_m": 35.0, "tile_px": 320, "mpp": 0.21875, "pano_px": [512, 256], "camera_height_m": 2.0}
FLAT_GROUND = render.GroundLighting(sun_azimuth_deg=200.0, sun_elevation_deg=40.0, clouds=0.0, fog_m=1e6)
QUIET = dict(odom_noise=sens.WheelOdomNoise(speed_noise_frac=0.0, speed_noise_floor_mps=0.0, yaw_rate_noise_dps=0.0,
                                            speed_scale_bias_frac=0.0, yaw_rate_bias_dps=0.0),
             imu_noise=sens.ImuNoise(yaw_noise_deg=0.0, yaw_bias_init_deg=0.0, yaw_bias_walk_deg_per_sqrt_s=0.0,
                                     gyro_noise_dps=0.0, accel_noise_mps2=0.0))


@pytest.fixture(scope="module")
def city():
    return world.generate_city(META["seed"], tuple(META["size_m"]), META["style"])


@pytest.fixture(scope="module")
def city_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pinhole_city") / "City"
    d.mkdir()
    (d / "geo.json").write_text(json.dumps(META))
    return d


def _poses(city, n: int, seed: int):
    free = city.free_space()
    rr, cc = np.nonzero(free)
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(rr), n, replace=False):
        yield ((cc[i] + 0.5) * city.cell_m, (rr[i] + 0.5) * city.cell_m), float(rng.uniform(0.0, 360.0))


def _mad(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=-1)
    return float(d[mask].mean() if mask is not None else d.mean())


def _read(bag: Path) -> tuple[dict, dict]:
    """topic -> [(t_ns, message)] and topic -> message type."""
    ts = bags.make_typestore()
    from rosbags.rosbag2 import Reader

    msgs: dict = {}
    with Reader(bag) as r:
        types = {c.topic: c.msgtype for c in r.connections}
        for c, t, raw in r.messages():
            msgs.setdefault(c.topic, []).append((t, ts.deserialize_cdr(raw, c.msgtype)))
    return msgs, types


def _raw(bag: Path) -> list[tuple[str, int, bytes]]:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as r:
        return [(c.topic, t, bytes(raw)) for c, t, raw in r.messages()]


def _en_heading(msg) -> tuple[np.ndarray, float]:
    """ENU position and compass heading of a GT GeoPoseStamped."""
    p, q = msg.pose.position, msg.pose.orientation
    e, n = geo.LocalENU(*ORIGIN).to_en(p.latitude, p.longitude)
    yaw = math.degrees(2.0 * math.atan2(q.z, q.w))
    return np.array([float(e), float(n)]), (90.0 - yaw) % 360.0


# ------------------------------------------------------------------------------------------- the renderer
@pytest.mark.parametrize("pitch_deg", [0.0, 10.0])
def test_pinhole_image_agrees_with_the_panorama_resampled_through_pinhole_view(city, pitch_deg):
    """hfov 90 at yaw 0 (and yaw 90, pitched): the rendered pinhole image and the same camera resampled from a
    panorama rendered at the same pose differ little; mirrored or turned, they differ a lot."""
    for pos, heading in _poses(city, 3, seed=int(pitch_deg) + 1):
        pano = render.render_panorama(city, pos, heading, 1024, 512)
        for yaw in (0.0, 90.0):
            cam = PinholeCamera("c", intrinsics_for_fov(128, 96, 90.0), 128, 96, yaw, pitch_deg)
            img = render_pinhole(city, pos, heading, cam)
            assert img.shape == (96, 128, 3) and img.dtype == np.uint8
            ref = pinhole_view(pano, cam)
            same = _mad(img, ref)
            assert same < 9.0, (pos, heading, yaw, same)
            assert _mad(img, ref[:, ::-1]) > 2.5 * same + 5.0  # not mirrored
            turned = pinhole_view(pano, PinholeCamera("c", cam.K, 128, 96, yaw + 180.0, pitch_deg))
            assert _mad(img, turned) > 2.5 * same + 5.0  # not looking backwards


def _red_tower_world():
    """Flat grey world; a 30 m red tower 30-40 m east of (100, 100), 40 m wide (north 80-120)."""
    c = world.City.blank(200, 0.25)
    c.add_box(130, 80, 140, 120, 30.0, roof_rgb=(30, 30, 220), facade_rgb=(220, 30, 30), window_style=world.WINDOW_NONE)
    return c


def _red(img: np.ndarray) -> np.ndarray:
    px = img.astype(int)
    return (px[..., 0] > 100) & (px[..., 0] > 2 * px[..., 1]) & (px[..., 0] > 2 * px[..., 2])


def test_a_tower_east_of_the_vehicle_is_in_the_east_facing_camera_at_the_predicted_rows():
    tower = _red_tower_world()
    w = 160  # fx = 80 at 90 deg
    rig = {c.name: c for c in make_rig("pinhole", 4, 90.0, w).cameras}
    cx, cy = rig["right"].k_matrix[0, 2], rig["right"].k_matrix[1, 2]
    # vehicle heading north: the right camera (yaw -90) faces east, the left one west
    east = render_pinhole(tower, (100.0, 100.0), 0.0, rig["right"], 2.0, FLAT_GROUND)
    west = render_pinhole(tower, (100.0, 100.0), 0.0, rig["left"], 2.0, FLAT_GROUND)
    assert _red(east).mean() > 0.3 and not _red(west).any()
    # the wall spans azimuths 90 -+ 33.7 deg: columns cx -+ fx tan(33.7) = cx -+ 53.3 of the east camera
    cols = np.nonzero(_red(east)[int(cy)])[0]
    assert abs(cols.min() - (cx - 80 * 20 / 30)) <= 1.5 and abs(cols.max() - (cx + 80 * 20 / 30)) <= 1.5
    # a taller image of the same camera: the wall (fronto-parallel at depth 30 m) has its top edge, 28 m above the
    # camera, at row cy - fy 28 / 30, and its foot, 2 m below, at cy + fy 2 / 30
    tall = PinholeCamera("tall", intrinsics_for_fov(w, 200, 90.0), w, 200, -90.0)
    fy, cy = tall.k_matrix[1, 1], tall.k_matrix[1, 2]
    rows = np.nonzero(_red(render_pinhole(tower, (100.0, 100.0), 0.0, tall, 2.0, FLAT_GROUND))[:, w // 2])[0]
    assert abs(rows.min() - (cy - fy * 28.0 / 30.0)) <= 1.5
    assert abs(rows.max() - (cy + fy * 2.0 / 30.0)) <= 1.5
    # heading east, the front camera sees the same picture
    front = render_pinhole(tower, (100.0, 100.0), 90.0, rig["front"], 2.0, FLAT_GROUND)
    assert (_red(front) == _red(east)).mean() > 0.999


# ---------------------------------------------------------------------------------------------- the bag
def test_rig_names_and_yaws_are_the_nodes_defaults():
    from unifygeo_ros.ros.params import PARAMETERS

    defaults = {p.name: p.default for p in PARAMETERS}
    rig = make_rig("pinhole", 4)
    assert [c.name for c in rig.cameras] == list(defaults["cameras.names"])
    assert [c.yaw_deg for c in rig.cameras] == list(defaults["cameras.yaw_deg"])
    assert [c.name for c in make_rig("pinhole", 1).cameras] == ["front"]
    assert [(c.name, c.yaw_deg) for c in make_rig("pinhole", 3).cameras] == [("cam0", 0.0), ("cam1", 120.0),
                                                                             ("cam2", -120.0)]
    # the mounting quaternion turns the optical z axis (forward) to the camera's yaw in base_link
    for cam in rig.cameras:
        x, y, z, w = mount_quaternion_xyzw(cam)
        fwd = np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])  # R @ (0, 0, 1)
        np.testing.assert_allclose(fwd, [math.cos(math.radians(cam.yaw_deg)), math.sin(math.radians(cam.yaw_deg)),
                                         0.0], atol=1e-12)


@pytest.fixture(scope="module")
def rig_bag(city_dir, city, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rig") / "bag"
    synth_bag(SynthBagConfig(data=str(city_dir), out=str(out), storage="mcap", frames=3, camera="pinhole", cameras=4,
                             hfov_deg=90.0, image_width=128), city=city)
    return out


def test_pinhole_bag_has_image_and_camera_info_per_camera_on_the_nodes_topics(rig_bag):
    msgs, types = _read(rig_bag)
    rig = make_rig("pinhole", 4, 90.0, 128)
    for cam in rig.cameras:
        img_t, info_t = f"/cameras/{cam.name}/image", f"/cameras/{cam.name}/camera_info"
        assert types[img_t] == "sensor_msgs/msg/Image" and types[info_t] == "sensor_msgs/msg/CameraInfo"
        assert len(msgs[img_t]) == len(msgs[info_t]) == 3
        for (t_i, im), (t_c, info) in zip(msgs[img_t], msgs[info_t]):
            assert t_i == t_c == bags.stamp_to_ns(im.header.stamp) == bags.stamp_to_ns(info.header.stamp)
            assert im.header.frame_id == info.header.frame_id == f"camera_{cam.name}_optical"
            assert (im.width, im.height, info.width, info.height) == (128, 96, 128, 96)
            np.testing.assert_allclose(info.k, cam.K)
            np.testing.assert_allclose(np.asarray(info.p).reshape(3, 4)[:, :3], np.asarray(cam.K).reshape(3, 3))
    (_, tf), = msgs[topics.TF_STATIC_TOPIC]
    assert [t.child_frame_id for t in tf.transforms] == [f"camera_{n}_optical" for n in ("front", "left", "back",
                                                                                        "right")]
    assert all(t.header.frame_id == "base_link" and t.transform.translation.z == 2.0 for t in tf.transforms)
    assert {topics.WHEEL_ODOM_TOPIC, topics.IMU_TOPIC, topics.GEOPOSE_TOPIC} <= set(types)
    assert topics.IMAGE_TOPIC not in types and topics.KIDNAP_TOPIC not in types
    meta = json.loads(_custom_data(rig_bag)[topics.METADATA_KEY])
    assert meta["camera"] == "pinhole" and [c["yaw_deg"] for c in meta["cameras"]] == [0.0, 90.0, 180.0, -90.0]
    assert meta["kidnap_at_s"] is None


def _custom_data(bag: Path) -> dict:
    import yaml

    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]


def test_a_4x90_rig_from_the_bag_stitched_by_the_nodes_path_covers_and_matches_the_panorama(rig_bag, city):
    """RigFrame (the node's input_mode cameras) on the bag's Image + CameraInfo messages, with the node's default
    names and yaws: every panorama column is seen, and the stitched pixels match a panorama rendered at the
    vehicle's true pose."""
    from unifygeo_ros.ros.params import PARAMETERS

    defaults = {p.name: p.default for p in PARAMETERS}
    msgs, _ = _read(rig_bag)
    names = tuple(defaults["cameras.names"])
    drive = plan_drive(META, city, "random", 0, 8.0, 1.0 + 0.013, 0.1)
    width = int(defaults["cameras.panorama_width"])
    for k in range(3):
        images = [msgs[f"/cameras/{n}/image"][k][1] for n in names]
        infos = [msgs[f"/cameras/{n}/camera_info"][k][1] for n in names]
        frame = RigFrame(images[0].header.stamp, 0.0, images, infos, names, tuple(defaults["cameras.yaw_deg"]),
                         tuple(defaults["cameras.pitch_deg"]), width)
        stitched = frame.decode()
        mask = stitcher_for([PinholeCamera(n, tuple(i.k), i.width, i.height, y) for n, i, y in
                             zip(names, infos, defaults["cameras.yaw_deg"])], width).pixel_mask
        assert mask.any(axis=0).all()  # full coverage in azimuth
        t_s = (msgs[f"/cameras/{names[0]}/image"][k][0] - int(round(1_704_067_200 * 1e9))) / 1e9
        (en,), (heading,), _, _ = drive.at([t_s])
        pano = render.render_panorama(city, tuple(en), float(heading), width, width // 2)
        assert _mad(stitched, pano, mask) < 10.0
        assert _mad(stitched, np.roll(pano, width // 4, axis=1), mask) > 2.0 * _mad(stitched, pano, mask)


# --------------------------------------------------------------------------------------------- the kidnap
@pytest.fixture(scope="module")
def kidnap_bags(city_dir, city, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("kidnap")
    common = dict(data=str(city_dir), storage="sqlite3", duration_s=20.0, camera="pinhole", image_width=32, **QUIET)
    plain = synth_bag(SynthBagConfig(out=str(root / "plain"), **common), city=city)
    kid = synth_bag(SynthBagConfig(out=str(root / "kid"), kidnap_at_s=8.0, **common), city=city)
    assert plain.kidnap_jump_m is None and kid.kidnap_jump_m >= KIDNAP_MIN_M
    return root / "plain", root / "kid"


def test_kidnap_jumps_the_ground_truth_but_not_the_wheel_odometry(kidnap_bags):
    _plain, bag = kidnap_bags
    msgs, types = _read(bag)
    t0 = int(round(1_704_067_200 * 1e9))
    (t_k, hdr), = msgs[topics.KIDNAP_TOPIC]
    assert types[topics.KIDNAP_TOPIC] == "std_msgs/msg/Header"
    assert t_k == bags.stamp_to_ns(hdr.stamp) == t0 + 8_000_000_000 and hdr.frame_id == "map"
    meta = json.loads(_custom_data(bag)[topics.METADATA_KEY])
    assert meta["kidnap_at_s"] == 8.0 and meta["kidnap_jump_m"] >= KIDNAP_MIN_M
    gt = [(t, *_en_heading(m)) for t, m in msgs[topics.GEOPOSE_TOPIC]]
    steps = [(t1, float(np.hypot(*(en1 - en0)))) for (_t0, en0, _h0), (t1, en1, _h1) in zip(gt[:-1], gt[1:])]
    jumps = [(t, d) for t, d in steps if d > 5.0]
    assert len(jumps) == 1 and jumps[0][0] == t_k and jumps[0][1] >= KIDNAP_MIN_M  # GT at 10 Hz, 8 m/s
    odom = msgs[topics.WHEEL_ODOM_TOPIC]
    xy = np.array([[m.pose.pose.position.x, m.pose.pose.position.y] for _t, m in odom])
    dt = np.diff([t for t, _m in odom]) / 1e9
    assert np.all(np.hypot(*np.diff(xy, axis=0).T) <= 10.0 * dt + 1e-6)  # never faster than 10 m/s: no jump
    # the (noise-free) IMU orientation is earth-referenced: it reports the true heading after the jump too
    imu = {t: m for t, m in msgs[topics.IMU_TOPIC]}
    for t, _en, heading in gt:
        q = imu[t].orientation
        yaw_deg = math.degrees(2.0 * math.atan2(q.z, q.w))
        assert abs(geo.wrap_deg(yaw_deg - (90.0 - heading))) < 1e-6
    assert max(abs(m.angular_velocity.z) for m in imu.values()) < 1.5  # no spike at the jump


def test_kidnapped_bag_is_the_plain_bag_until_the_kidnap(kidnap_bags):
    plain, kid = kidnap_bags
    t_k = int(round(1_704_067_200 * 1e9)) + 8_000_000_000
    a = [m for m in _raw(plain) if m[1] < t_k]
    b = [m for m in _raw(kid) if m[1] < t_k]
    assert len(a) > 100 and a == b
    assert [m for m in _raw(plain) if m[1] >= t_k] != [m for m in _raw(kid) if m[1] >= t_k]


# -------------------------------------------------------------------------------------------------- CLI
def test_cli_records_a_two_camera_rig(city_dir, tmp_path, capsys):
    out = tmp_path / "bag"
    rc = cli.main(["bag", "synth", "--data", str(city_dir), "--out", str(out), "--frames", "1", "--camera", "pinhole",
                   "--cameras", "2", "--hfov", "120", "--image-width", "32", "--no-sensors"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "/cameras/cam0/image, /cameras/cam1/image" in printed and "cameras.yaw_deg [0.0, 180.0]" in printed
    msgs, _ = _read(out)
    (_, info), = msgs["/cameras/cam1/camera_info"]
    assert (info.width, info.height) == (32, 24)
    assert math.isclose(2 * math.degrees(math.atan2(16.0, info.k[0])), 120.0, abs_tol=1e-9)


@pytest.mark.parametrize("flags, words", [
    (["--hfov", "90"], "--camera pinhole"),
    (["--cameras", "4"], "--camera pinhole"),
    (["--camera", "pinhole", "--hfov", "180"], "--hfov"),
    (["--camera", "pinhole", "--cameras", "0"], "--cameras"),
    (["--camera", "pinhole", "--north-aligned"], "--north-aligned"),
    (["--kidnap-at", "5"], "--kidnap-at"),  # the drive is 0.5 s long
])
def test_cli_refuses_options_that_do_not_fit_in_one_line(city_dir, tmp_path, capsys, flags, words):
    rc = cli.main(["bag", "synth", "--data", str(city_dir), "--out", str(tmp_path / "bag"), "--frames", "2",
                   "--image-width", "32", *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and words in err and len(err.splitlines()) == 1
