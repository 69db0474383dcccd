"""Pinhole cameras -> partial equirectangular panorama: geometry, coverage, masking, and the rig frame."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest

from PIL import Image as PILImage

from unifygeo_ros.errors import ImageError, UnifyGeoError
from unifygeo_ros.image.codec import rgb_to_image_fields
from unifygeo_ros.ros.params import NodeSettings
from unifygeo_ros.image.preprocess import column_azimuths_deg
from unifygeo_ros.image.rig import RigFrame
from unifygeo_ros.image.stitch import PanoramaStitcher, PinholeCamera, intrinsics_for_fov, pinhole_view

W = 256


@pytest.fixture(scope="module")
def panorama():
    """A panorama whose colour encodes the direction: red = azimuth, green = elevation, blue = a fine pattern."""
    h = W // 2
    az = column_azimuths_deg(W)  # -180..180, clockwise from forward
    el = 90.0 - (np.arange(h) + 0.5) * 180.0 / h
    img = np.zeros((h, W, 3), np.uint8)
    img[..., 0] = np.round((az[None] + 180.0) / 360.0 * 255.0)
    img[..., 1] = np.round((el[:, None] + 90.0) / 180.0 * 255.0)
    img[..., 2] = ((np.arange(W)[None] // 8 + np.arange(h)[:, None] // 8) % 2) * 200
    return img


def cam(name, yaw, hfov=90.0, w=160, h=120, pitch=0.0):
    return PinholeCamera(name, intrinsics_for_fov(w, h, hfov), w, h, yaw, pitch)


def test_a_left_camera_fills_the_columns_left_of_the_heading():
    """REP-103 yaw +90 = left = azimuth -90 (clockwise from forward) = left of the panorama's centre."""
    st = PanoramaStitcher([cam("left", 90.0, hfov=60.0)], W)
    az = column_azimuths_deg(W)[st.column_mask]
    assert az.min() >= -121 and az.max() <= -59
    assert st.coverage == pytest.approx(60.0 / 360.0, abs=2 / W)


def test_four_90_degree_cameras_cover_everything_around(panorama):
    rig = [cam(n, y) for n, y in (("front", 0.0), ("left", 90.0), ("back", 180.0), ("right", -90.0))]
    st = PanoramaStitcher(rig, W)
    assert st.coverage == 1.0
    h = W // 2
    rows = slice(int(h * 0.35), int(h * 0.65))  # +-27 deg elevation: inside every camera's vertical view
    assert st.pixel_mask[rows].all()
    assert not st.pixel_mask[0].any() and not st.pixel_mask[-1].any()  # zenith and nadir unseen


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (90.0, 0.0), (-135.0, 0.0), (30.0, 10.0)])
def test_view_then_stitch_gives_back_the_panorama(panorama, yaw, pitch):
    c = cam("c", yaw, hfov=80.0, pitch=pitch)
    view = pinhole_view(panorama, c)
    st = PanoramaStitcher([c], W)
    pano = st.stitch([view])
    m = st.pixel_mask.copy()
    m[:, :2] = m[:, -2:] = False  # the seam columns interpolate across the wrap
    err = np.abs(pano[m].astype(int) - panorama[m].astype(int))
    assert np.median(err[:, 0]) <= 2 and np.median(err[:, 1]) <= 2  # azimuth / elevation codes agree
    assert np.all(pano[~st.pixel_mask] == 0)  # unseen part masked (zero), as mask_fov does


def test_overlaps_take_the_camera_closest_to_its_axis():
    st = PanoramaStitcher([cam("a", 0.0, hfov=120.0), cam("b", -60.0, hfov=120.0)], W)
    az = column_azimuths_deg(W)
    mid = W // 4
    owner = st.owner[mid]
    assert np.all(owner[(az > -20) & (az < 20) & st.column_mask] == 0)
    assert np.all(owner[(az > 40) & (az < 80)] == 1)  # camera b looks right (azimuth +60)


def test_wrong_images_and_intrinsics_are_refused():
    c = cam("front", 0.0)
    st = PanoramaStitcher([c], W)
    with pytest.raises(ImageError, match="images for"):
        st.stitch([])
    with pytest.raises(ImageError, match="CameraInfo says"):
        st.stitch([np.zeros((10, 10, 3), np.uint8)])
    with pytest.raises(ImageError, match="intrinsics"):
        PinholeCamera("x", (0.0,) * 9, 10, 10, 0.0)
    assert c.scaled_to(80, 60).k_matrix[0, 0] == pytest.approx(c.k_matrix[0, 0] / 2)


def _msg(rgb, t):
    f = rgb_to_image_fields(rgb, "bgr8")
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=int(t), nanosec=int((t % 1) * 1e9))), **f)


def _info(c):
    return SimpleNamespace(k=list(c.K), width=c.width, height=c.height)


def test_rig_frame_waits_for_a_synchronised_set_and_stitches_it(panorama):
    s = NodeSettings.from_params({"input_mode": "cameras", "cameras.names": ["front", "back"],
                                  "cameras.yaw_deg": [0.0, 180.0], "cameras.pitch_deg": [0.0, 0.0],
                                  "cameras.panorama_width": W, "cameras.sync_tolerance_s": 0.05})
    cams = {"front": cam("front", 0.0), "back": cam("back", 180.0)}
    views = {n: pinhole_view(panorama, c) for n, c in cams.items()}
    infos = {n: _info(c) for n, c in cams.items()}
    assert RigFrame.collect(s, {"front": _msg(views["front"], 10.0)}, infos, -1) is None  # one camera missing
    imgs = {"front": _msg(views["front"], 10.0), "back": _msg(views["back"], 10.2)}
    assert RigFrame.collect(s, imgs, infos, -1) is None  # stamps too far apart
    imgs["back"] = _msg(views["back"], 10.01)
    f = RigFrame.collect(s, imgs, infos, -1)
    assert f is not None and f.newest_stamp_s == pytest.approx(10.01)
    assert RigFrame.collect(s, imgs, infos, f.newest_stamp_s) is None  # already used
    pano = f.decode()
    expect = PanoramaStitcher(list(cams.values()), W).stitch([views["front"], views["back"]])
    assert np.array_equal(pano, expect)


def test_rig_frame_decodes_compressed_images_like_raw_ones(panorama):
    """CompressedImage messages (cameras.transport compressed): PNG gives the raw images' panorama exactly, JPEG
    within its loss; a corrupt one is an ImageError naming the camera."""
    def encode_image_bytes(rgb, fmt):
        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(buf, format=fmt.upper(), **({"quality": 95} if fmt == "jpeg" else {}))
        return buf.getvalue()

    s = NodeSettings.from_params({"input_mode": "cameras", "cameras.names": ["front", "back"],
                                  "cameras.yaw_deg": [0.0, 180.0], "cameras.pitch_deg": [0.0, 0.0],
                                  "cameras.panorama_width": W, "cameras.transport": "compressed"})
    cams = {"front": cam("front", 0.0), "back": cam("back", 180.0)}
    views = {n: pinhole_view(panorama, c) for n, c in cams.items()}
    infos = {n: _info(c) for n, c in cams.items()}
    stamp = _msg(views["front"], 10.0).header
    raw = RigFrame.collect(s, {n: _msg(v, 10.0) for n, v in views.items()}, infos, -1).decode()
    for fmt, tol in (("png", 0), ("jpeg", 12)):
        imgs = {n: SimpleNamespace(header=stamp, format=fmt, data=encode_image_bytes(v, fmt))
                for n, v in views.items()}
        pano = RigFrame.collect(s, imgs, infos, -1).decode()
        assert pano.shape == raw.shape
        assert np.abs(pano.astype(int) - raw.astype(int)).mean() <= tol / 4 and (tol or np.array_equal(pano, raw))
    imgs["back"] = SimpleNamespace(header=stamp, format="jpeg", data=b"\xff\xd8 not a jpeg")
    with pytest.raises(ImageError, match="camera 'back' compressed image"):
        RigFrame.collect(s, imgs, infos, -1).decode()
    with pytest.raises(UnifyGeoError, match="cameras.transport"):
        NodeSettings.from_params({"cameras.transport": "theora"})


def test_rig_collector_says_why_no_set_is_stitched_and_counts_unsynchronised_ones(panorama):
    """The node's and replay's camera bookkeeping: what is missing, images too far apart (counted: the node's
    /diagnostics rig_out_of_sync, replay's warning), a stale set; a complete set goes out once."""
    from unifygeo_ros.image.rig import RigCollector

    s = NodeSettings.from_params({"input_mode": "cameras", "cameras.names": ["front", "back"],
                                  "cameras.yaw_deg": [0.0, 180.0], "cameras.pitch_deg": [0.0, 0.0],
                                  "cameras.panorama_width": W, "cameras.sync_tolerance_s": 0.05})
    cams = {"front": cam("front", 0.0), "back": cam("back", 180.0)}
    views = {n: pinhole_view(panorama, c) for n, c in cams.items()}
    rig = RigCollector(s)
    assert rig.image("front", _msg(views["front"], 10.0)) is None
    assert rig.waiting == "no image from back; no CameraInfo from front, back" and rig.waiting_kind == "missing"
    assert rig.info("front", _info(cams["front"])) is None and rig.info("back", _info(cams["back"])) is None
    assert rig.waiting == "no image from back"
    assert rig.image("back", _msg(views["back"], 10.2)) is None and rig.out_of_sync == 1
    assert rig.waiting == ("the images of front and back are 0.200 s apart, more than cameras.sync_tolerance_s 0.05")
    f = rig.image("front", _msg(views["front"], 10.21))
    assert f is not None and rig.sets == 1 and rig.waiting == "" and f.newest_stamp_s == pytest.approx(10.21)
    assert rig.image("back", _msg(views["back"], 10.2)) is None and rig.waiting == "no image from front"
    assert rig.image("front", _msg(views["front"], 10.19)) is None and rig.waiting_kind == "stale"
    assert rig.out_of_sync == 1 and rig.sets == 1 and rig.restarts == 0
    # the clock goes back (a bag looped under use_sim_time): the collector starts again instead of calling every
    # later set stale until the clock passes 10.21 again
    rig.images = {}
    assert rig.image("front", _msg(views["front"], 2.0)) is None and rig.restarts == 1
    f = rig.image("back", _msg(views["back"], 2.01))
    assert f is not None and f.newest_stamp_s == pytest.approx(2.01) and rig.sets == 2 and rig.restarts == 1


def test_degenerate_focal_lengths_are_refused():
    """fx = fy = 1e-9 (a camera seeing 180 deg in a fraction of a pixel) used to get a fix; now one clear error."""
    from unifygeo_ros.errors import ImageError
    from unifygeo_ros.image.stitch import MIN_FOCAL_PX, PinholeCamera

    with pytest.raises(ImageError, match="focal lengths must be at least"):
        PinholeCamera("front", (1e-9, 0, 80, 0, 1e-9, 60, 0, 0, 1), 160, 120, 0.0)
    PinholeCamera("front", (MIN_FOCAL_PX, 0, 80, 0, MIN_FOCAL_PX, 60, 0, 0, 1), 160, 120, 0.0)  # the limit itself


def test_the_nodes_rig_stitches_raw_images_through_their_distortion_and_rectified_ones_through_p(panorama):
    """cameras.rectified false (the default): CameraInfo's K and D undo a raw lens; true: its P, D ignored."""
    d = (-0.25, 0.06, 0.0, 0.0, 0.0)
    bent = PinholeCamera("front", intrinsics_for_fov(160, 120, 90.0), 160, 120, 0.0, 0.0, "plumb_bob", d)
    plain = cam("front", 0.0, hfov=90.0)
    info = _info(plain)
    info.distortion_model, info.d = "plumb_bob", np.array(d)
    info.p = [*plain.K[:3], 0.0, *plain.K[3:6], 0.0, *plain.K[6:], 0.0]  # P = [K | 0]
    want = PanoramaStitcher([plain], W).stitch([pinhole_view(panorama, plain)])
    for rectified, image, same in ((False, pinhole_view(panorama, bent), True),   # a raw image, distorted
                                   (True, pinhole_view(panorama, plain), True),   # image_rect: P, no D
                                   (True, pinhole_view(panorama, bent), False)):  # raw image declared rectified
        s = NodeSettings.from_params({"input_mode": "cameras", "cameras.names": ["front"], "cameras.yaw_deg": [0.0],
                                      "cameras.pitch_deg": [0.0], "cameras.panorama_width": W,
                                      "cameras.rectified": rectified})
        got = RigFrame.collect(s, {"front": _msg(image, 10.0)}, {"front": info}, -1).decode()
        seen = (got.sum(-1) > 0) & (want.sum(-1) > 0)
        diff = np.abs(got.astype(int) - want)[seen].mean()
        assert (diff < 3.0) == same, (rectified, diff)
    info.distortion_model = "fisheye62"
    s = NodeSettings.from_params({"input_mode": "cameras", "cameras.names": ["front"], "cameras.yaw_deg": [0.0],
                                  "cameras.pitch_deg": [0.0], "cameras.panorama_width": W})
    with pytest.raises(ImageError, match="distortion model 'fisheye62'"):
        RigFrame.collect(s, {"front": _msg(pinhole_view(panorama, bent), 10.0)}, {"front": info}, -1).decode()
