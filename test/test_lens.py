"""Lens distortion of pinhole cameras (image/lens.py): CameraInfo's three ROS models projected and inverted, the
stitcher honouring them, raw vs rectified CameraInfo, bad coefficients refused, and `bag synth --distortion` rendered
for real and stitched by replay as by an undistorted camera."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from unifygeo_ros.errors import ImageError, UnifyGeoError
from unifygeo_ros.image import lens
from unifygeo_ros.image.rig import camera_from_info
from unifygeo_ros.image.stitch import PanoramaStitcher, PinholeCamera, intrinsics_for_fov, pinhole_view
from unifygeo_ros.image.lens import parse_distortion

LENSES = {"plumb_bob": (-0.28, 0.07, 0.001, -0.0015, 0.0),
          "rational_polynomial": (-0.2, 0.05, 0.0005, 0.001, 0.0, 0.1, 0.01, 0.0),
          "equidistant": (0.05, -0.02, 0.004, -0.001)}


def _camera(model: str = "", d: tuple = (), hfov: float = 100.0, yaw: float = 0.0) -> PinholeCamera:
    return PinholeCamera("c", intrinsics_for_fov(160, 120, hfov), 160, 120, yaw, 0.0, model, d)


@pytest.mark.parametrize("model", sorted(LENSES))
def test_each_pixels_ray_projects_back_onto_the_pixel(model):
    cam = _camera(model, LENSES[model])
    rays = cam.optical_rays()
    u, v, ok = lens.project(cam.k_matrix, cam.distortion_model, cam.D, rays)
    uu, vv = np.meshgrid(np.arange(160.0), np.arange(120.0))
    assert ok.all()
    assert np.abs(u - uu).max() < 1e-6 and np.abs(v - vv).max() < 1e-6
    plain = _camera().optical_rays()  # barrel distortion: the corners see further out than K alone says
    assert np.hypot(*rays[0, 0, :2]) > np.hypot(*plain[0, 0, :2]) * 1.05


def test_equidistant_with_zero_coefficients_is_a_fisheye_not_a_pinhole():
    model, d = lens.check_distortion("c", "equidistant", (0.0, 0.0, 0.0, 0.0))
    assert model == "equidistant"
    xd, yd = lens.distort(model, d, np.array([math.tan(0.5)]), np.array([0.0]))
    assert xd[0] == pytest.approx(0.5) and yd[0] == 0.0  # theta_d = theta: 0.5 rad lands at 0.5 f, not tan(0.5) f
    assert lens.check_distortion("c", "plumb_bob", (0.0,) * 5) == ("", ())


def test_rays_beyond_where_the_polynomial_folds_back_are_not_projected():
    d = (-0.5, 0.0, 0.0, 0.0, 0.0)  # r_d = r - 0.5 r^3 grows up to r = sqrt(2/3)
    assert lens.max_radius("plumb_bob", d) == pytest.approx(math.sqrt(2 / 3), abs=3e-3)
    far = np.array([[1.5, 0.0, 1.0]])  # r = 1.5: r_d = 1.5 - 1.69 < 0 would land left of the centre
    assert not lens.project(_camera().k_matrix, "plumb_bob", d, far)[2][0]
    assert lens.max_radius("", ()) == math.inf


@pytest.mark.parametrize("model", sorted(LENSES))
def test_a_distorted_cameras_image_stitches_like_the_undistorted_cameras(model):
    rng = np.random.default_rng(0)  # a smooth random scene on the panorama
    small = rng.integers(0, 255, (16, 32, 3)).astype(np.uint8)
    import cv2

    pano = cv2.resize(small, (512, 256), interpolation=cv2.INTER_CUBIC)
    bent, plain = _camera(model, LENSES[model], yaw=30.0), _camera(yaw=30.0)
    img_bent, img_plain = pinhole_view(pano, bent), pinhole_view(pano, plain)
    assert np.abs(img_bent.astype(int) - img_plain).mean() > 5  # the lens changes the image
    st_bent, st_plain = PanoramaStitcher([bent], 512), PanoramaStitcher([plain], 512)
    both = st_bent.pixel_mask & st_plain.pixel_mask
    assert both.sum() > 0.8 * st_plain.pixel_mask.sum()
    a = st_bent.stitch([img_bent]).astype(int)
    b = st_plain.stitch([img_plain]).astype(int)
    assert np.abs(a - b)[both].mean() < 2.0  # both put the scene where it is
    ignored = PanoramaStitcher([_camera(yaw=30.0)], 512).stitch([img_bent]).astype(int)  # D dropped: off
    assert np.abs(ignored - b)[both].mean() > 4 * np.abs(a - b)[both].mean()


def test_camera_info_raw_uses_k_and_d_rectified_uses_p():
    k = intrinsics_for_fov(160, 120, 90.0)
    p = (70.0, 0.0, 81.0, 0.0, 0.0, 70.0, 59.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    info = SimpleNamespace(k=k, p=p, d=np.array(LENSES["plumb_bob"]), distortion_model="plumb_bob", width=160,
                           height=120)
    raw = camera_from_info("front", info, 0.0, 0.0)
    assert raw.K == tuple(k) and raw.distortion_model == "plumb_bob" and raw.D == LENSES["plumb_bob"]
    rect = camera_from_info("front", info, 0.0, 0.0, rectified=True)
    assert rect.K == (70.0, 0.0, 81.0, 0.0, 70.0, 59.0, 0.0, 0.0, 1.0) and rect.distortion_model == "" and not rect.D
    zero = camera_from_info("front", SimpleNamespace(k=k, p=p, d=np.zeros(5), distortion_model="plumb_bob",
                                                     width=160, height=120), 0.0, 0.0)
    assert zero.distortion_model == "" and zero == _camera_named("front", k)  # zeros are no distortion
    assert camera_from_info("f", SimpleNamespace(k=k, p=(0.0,) * 12, d=(), distortion_model="", width=160,
                                                 height=120), 0.0, 0.0, rectified=True).K == tuple(k)  # P unset


def _camera_named(name, k):
    return PinholeCamera(name, k, 160, 120, 0.0, 0.0)


@pytest.mark.parametrize("model, d, words", [
    ("kannala_brandt", (0.1, 0.0, 0.0, 0.0), "not supported"),
    ("plumb_bob", (0.1, math.nan, 0.0, 0.0, 0.0), "non-finite"),
    ("equidistant", (0.1, 0.0, 0.0), "needs 4 coefficients"),
    ("rational_polynomial", (0.1,) * 9, "needs 5-8 coefficients"),
])
def test_unusable_distortion_is_one_line(model, d, words):
    with pytest.raises(ImageError, match=words) as e:
        _camera(model, d)
    assert "\n" not in str(e.value) and "'c'" in str(e.value)


def test_distortion_option_parses_and_refuses():
    assert parse_distortion(None) == ("", ())
    assert parse_distortion("plumb_bob:-0.3,0.1,0,0") == ("plumb_bob", (-0.3, 0.1, 0.0, 0.0, 0.0))
    assert parse_distortion("plumb_bob:0,0,0,0,0") == ("", ())
    assert parse_distortion("plumb_bob:-0.3,0.1,0,0,0,0,0,0") == ("plumb_bob", (-0.3, 0.1, 0.0, 0.0, 0.0))  # padded
    assert parse_distortion("equidistant:0,0,0,0") == ("equidistant", (0.0,) * 4)  # a pure fisheye, not a pinhole
    for bad in ("plumb_bob", "plumb_bob:", "plumb_bob:a,b", "fisheye:0.1,0,0,0"):
        with pytest.raises(UnifyGeoError):
            parse_distortion(bad)


def test_a_distorted_synth_bag_is_stitched_by_replay_like_its_undistorted_twin(tmp_path):
    """`bag synth --distortion` renders the lens for real and writes it to CameraInfo; replay's rig (the node's
    RigFrame) undoes it: the stitched panorama matches the undistorted rig's of the same drive where both see, and
    `--cameras-rectified` (D ignored) does not."""
    from node_world import CITY, build_world

    from unifygeo_ros.localization.pipeline import PipelineSettings
    from unifygeo_ros.localization.localizer import Localizer
    from unifygeo_ros.rosbag import io as bags
    from unifygeo_ros.rosbag.replay import ReplayConfig, replay
    from unifygeo_ros.rosbag.synth import SynthBagConfig, synth_bag

    w = build_world(tmp_path / "world", n_queries=1, use_demo=False)
    city = tmp_path / "world" / "data" / CITY
    stitched = {}
    for name, dist, rectified in (("plain", None, False), ("bent", "plumb_bob:-0.25,0.06,0,0,0", False),
                                  ("bent_ignored", "plumb_bob:-0.25,0.06,0,0,0", True)):
        rec = synth_bag(SynthBagConfig(data=str(city), out=str(tmp_path / name), frames=2, rate_hz=2.0, seed=3,
                                       camera="pinhole", cameras=2, hfov_deg=100.0, image_width=160,
                                       distortion=dist, sensors=False))
        if name == "bent":
            with bags.open_bag(rec.bag) as r:
                conns = [c for c in r.connections if c.topic.endswith("camera_info")]
                info = next(m for _, _, m in bags.iter_messages(r, conns))
            assert info.distortion_model == "plumb_bob" and np.allclose(info.d, [-0.25, 0.06, 0, 0, 0])
        loc = Localizer.from_paths(w.index, w.checkpoint, device="cpu")
        seen = []
        orig = loc.localize
        loc.localize = lambda img, *a, **k: (seen.append(img), orig(img, *a, **k))[1]
        replay(ReplayConfig(bag=str(rec.bag), index=None, out=str(tmp_path / f"out_{name}"), plots=False,
                            device="cpu", pipeline=PipelineSettings(min_score=0.0), cameras_rectified=rectified),
               localizer=loc)
        stitched[name] = np.stack(seen).astype(int)
    seen_both = (stitched["plain"].sum(-1) > 0) & (stitched["bent"].sum(-1) > 0)
    err = np.abs(stitched["bent"] - stitched["plain"]).sum(-1)[seen_both].mean() / 3
    err_ignored = np.abs(stitched["bent_ignored"] - stitched["plain"]).sum(-1)[seen_both].mean() / 3
    assert seen_both.mean() > 0.15 and err < 6.0 and err_ignored > 2 * err, (err, err_ignored)


def test_a_distorted_photo_goes_onto_the_cylinder_as_its_undistorted_twin(capsys, tmp_path):
    """`localize --hfov DEG --distortion MODEL:D`: photo_to_panorama undoes the lens; misuse is one line."""
    import cv2

    from unifygeo_ros.cli import main
    from unifygeo_ros.image.stitch import photo_to_panorama

    rng = np.random.default_rng(1)
    pano = cv2.resize(rng.integers(0, 255, (16, 32, 3)).astype(np.uint8), (512, 256), interpolation=cv2.INTER_CUBIC)
    d = LENSES["plumb_bob"]
    bent, plain = pinhole_view(pano, _camera("plumb_bob", d)), pinhole_view(pano, _camera())
    a = photo_to_panorama(bent, 100.0, 512, "p", parse_distortion("plumb_bob:" + ",".join(map(str, d)))).astype(int)
    b = photo_to_panorama(plain, 100.0, 512, "p").astype(int)
    seen = (a.sum(-1) > 0) & (b.sum(-1) > 0)
    assert seen.sum() > 5000 and np.abs(a - b)[seen].mean() < 2.0
    assert np.abs(photo_to_panorama(bent, 100.0, 512, "p").astype(int) - b)[seen].mean() > 5.0
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), bent)
    for argv, words in ((["--distortion", "plumb_bob:-0.2,0,0,0,0"], "use it with --hfov"),
                        (["--hfov", "100", "--distortion", "plumb_bob"], "--distortion must be MODEL:c1,c2")):
        assert main(["localize", str(path), "--index", str(tmp_path / "none")] + argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err


def test_topic_names_that_contradict_cameras_rectified_are_one_warning():
    """The image_proc trap (image_rect beside a CameraInfo that still has the raw D), named by node and replay."""
    from unifygeo_ros.image.rig import rectified_mismatch

    assert rectified_mismatch(["/cam/front/image_rect_color", "/cam/left/image_rect_color"], False).startswith(
        "/cam/front/image_rect_color looks rectified but cameras.rectified is false")
    assert "looks raw" in rectified_mismatch(["/cam/front/image_raw"], True)
    assert rectified_mismatch(["/cam/front/image_rect"], True) is None
    assert rectified_mismatch(["/cameras/front/image"], False) is None
    assert rectified_mismatch(["/cameras/front/image"], True) is None


def test_camera_info_roi_and_binning_follow_the_full_resolution_sensor():
    """K and width/height are the sensor's: an ROI crop shifts the principal point (image_geometry's convention),
    binning divides; the stitched crop lands where the full image's pixels do."""
    import cv2

    k = intrinsics_for_fov(320, 240, 90.0)
    full = SimpleNamespace(k=k, p=(0.0,) * 12, d=(), distortion_model="", width=320, height=240)
    roi = SimpleNamespace(x_offset=80, y_offset=60, width=160, height=120, do_rectify=False)
    crop = SimpleNamespace(**vars(full), roi=roi)
    binned = SimpleNamespace(**vars(full), binning_x=2, binning_y=2)
    c_full = camera_from_info("f", full, 0.0, 0.0)
    c_crop, c_bin = camera_from_info("f", crop, 0.0, 0.0), camera_from_info("f", binned, 0.0, 0.0)
    assert (c_crop.width, c_crop.height) == (160, 120) and (c_bin.width, c_bin.height) == (160, 120)
    assert c_crop.K[2] == pytest.approx(k[2] - 80) and c_crop.K[5] == pytest.approx(k[5] - 60)
    assert c_crop.K[0] == pytest.approx(k[0]) and c_bin.K[0] == pytest.approx(k[0] / 2)
    rng = np.random.default_rng(2)
    pano = cv2.resize(rng.integers(0, 255, (16, 32, 3)).astype(np.uint8), (512, 256), interpolation=cv2.INTER_CUBIC)
    image = pinhole_view(pano, c_full)
    a = PanoramaStitcher([c_crop], 512)
    b = PanoramaStitcher([c_full], 512)
    got, want = a.stitch([image[60:180, 80:240].copy()]).astype(int), b.stitch([image]).astype(int)
    assert a.pixel_mask.sum() < 0.5 * b.pixel_mask.sum()
    assert np.abs(got - want)[a.pixel_mask].mean() < 1.0  # the crop covers its part of the full view


def test_the_rig_says_how_each_camera_is_undistorted():
    """RigCollector.lens_summary: the node's /diagnostics rig_lens, from the latest CameraInfos."""
    from unifygeo_ros.image.rig import RigCollector, RigSettings

    k = intrinsics_for_fov(160, 120, 90.0)
    rig = RigCollector(RigSettings(camera_names=("front", "left", "back"), camera_yaw_deg=(0.0, 90.0, 180.0),
                                   camera_pitch_deg=(0.0, 0.0, 0.0)))
    rig.info("front", SimpleNamespace(k=k, d=LENSES["plumb_bob"], distortion_model="plumb_bob", width=160, height=120))
    rig.info("left", SimpleNamespace(k=k, d=(0.1, math.inf, 0, 0, 0), distortion_model="plumb_bob", width=160,
                                     height=120))
    text = rig.lens_summary()
    assert text.startswith("front: plumb_bob; left: unusable (camera 'left': non-finite distortion")
    assert text.endswith("; back: no CameraInfo yet")


def test_one_image_stream_per_camera_is_taken_from_a_bag_that_records_several(tmp_path):
    """A real bag often holds image_raw, image_rect and their /compressed beside one CameraInfo: replay takes one
    per camera - not image_rect unless --cameras-rectified, uncompressed first - and names the others."""
    from rosbags.rosbag2 import Reader, Writer

    from unifygeo_ros.rosbag import io as bags
    from unifygeo_ros.rosbag.replay_topics import choose_topics, one_image_per_camera
    from unifygeo_ros.rosbag.synth import SynthBagConfig, synth_bag

    T = bags.TopicInfo
    streams = [T("/c/front/image_raw/compressed", bags.COMPRESSED_IMAGE, 1), T("/c/front/image_raw", bags.IMAGE, 1),
               T("/c/front/image_rect", bags.IMAGE, 1), T("/c/left/image_rect", bags.IMAGE, 1)]
    chosen, also = one_image_per_camera(streams, rectified=False)
    assert [t.topic for t in chosen] == ["/c/front/image_raw", "/c/left/image_rect"]  # left has nothing else
    assert also == ["/c/front/image_raw/compressed", "/c/front/image_rect"]
    assert [t.topic for t in one_image_per_camera(streams, rectified=True)[0]] == ["/c/front/image_rect",
                                                                                  "/c/left/image_rect"]
    from node_world import CITY, build_world  # a synth rig bag, re-recorded with a rectified copy of each stream

    build_world(tmp_path / "world", n_queries=1, use_demo=False)
    rec = synth_bag(SynthBagConfig(data=str(tmp_path / "world" / "data" / CITY), out=str(tmp_path / "rig"), frames=2,
                                   camera="pinhole", cameras=2, image_width=64, sensors=False))
    both = tmp_path / "both"
    with Reader(rec.bag) as r, Writer(both, version=9) as w:
        conns = {}
        for c in r.connections:
            conns[c.topic] = w.add_connection(c.topic, c.msgtype, typestore=bags.make_typestore())
            if c.topic.endswith("/image"):
                conns[c.topic + "_rect"] = w.add_connection(c.topic + "_rect", c.msgtype,
                                                            typestore=bags.make_typestore())
        for c, t, raw in r.messages():
            w.write(conns[c.topic], t, raw)
            if c.topic.endswith("/image"):
                w.write(conns[c.topic + "_rect"], t, raw)
    for rectified, suffix in ((False, "image"), (True, "image_rect")):
        with bags.open_bag(both) as reader:
            topics = choose_topics(reader, both, cameras_rectified=rectified)
        assert [c.image_topic for c in topics.rig] == [f"/cameras/cam0/{suffix}", f"/cameras/cam1/{suffix}"]
        assert any(line.startswith("camera: one image topic per CameraInfo") for line in topics.lines)
