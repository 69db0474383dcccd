"""sensor_msgs/Image and CompressedImage fields -> RGB uint8, without ROS: every encoding, every bad input."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from unifygeo_ros.errors import ImageError
from unifygeo_ros.image.codec import (SUPPORTED_ENCODINGS, compressed_fields_to_rgb, cv_bridge_available,
                                      image_fields_to_rgb, image_msg_to_rgb, image_msg_to_rgb_via_cv_bridge,
                                      rgb_to_image_fields)


@pytest.fixture(scope="module")
def rgb():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    img[0, 0] = (255, 0, 0)  # a pure red pixel: channel order mistakes show
    return img


def _grey(rgb):
    return np.round(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3"])
def test_colour_encodings_give_the_same_rgb(rgb, encoding):
    out = image_fields_to_rgb(**rgb_to_image_fields(rgb, encoding))
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out.flags.c_contiguous
    assert np.array_equal(out, rgb)
    assert tuple(out[0, 0]) == (255, 0, 0)


def test_bgr8_bytes_are_read_as_blue_green_red():
    data = bytes([10, 20, 30])  # one pixel, B=10 G=20 R=30
    assert image_fields_to_rgb("bgr8", 1, 1, 3, 0, data)[0, 0].tolist() == [30, 20, 10]
    assert image_fields_to_rgb("rgb8", 1, 1, 3, 0, data)[0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("encoding", ["mono8", "8UC1", "mono16", "16UC1", "32FC1"])
def test_grey_encodings_replicate_grey(rgb, encoding):
    out = image_fields_to_rgb(**rgb_to_image_fields(rgb, encoding))
    grey = _grey(rgb)
    assert out.shape == rgb.shape
    assert np.all(out[..., 0] == out[..., 1]) and np.all(out[..., 1] == out[..., 2])
    assert np.abs(out[..., 0].astype(int) - grey).max() <= 1


def test_mono16_is_scaled_to_8_bit_both_byte_orders():
    values = np.array([[0, 255, 256, 65535]], np.uint16)
    little = image_fields_to_rgb("mono16", 1, 4, 8, 0, values.astype("<u2").tobytes())
    big = image_fields_to_rgb("16UC1", 1, 4, 8, 1, values.astype(">u2").tobytes())
    assert little[0, :, 0].tolist() == [0, 0, 1, 255]
    assert np.array_equal(little, big)


def test_row_padding_in_step_is_skipped(rgb):
    fields = rgb_to_image_fields(rgb, "bgr8", step_padding=6)
    assert fields["step"] == rgb.shape[1] * 3 + 6
    assert np.array_equal(image_fields_to_rgb(**fields), rgb)


def test_unsupported_encoding_is_refused_with_the_list(rgb):
    fields = rgb_to_image_fields(rgb, "rgb8")
    fields["encoding"] = "bayer_rggb8"
    with pytest.raises(ImageError, match="unsupported encoding 'bayer_rggb8'.*rgb8"):
        image_fields_to_rgb(**fields)


@pytest.mark.parametrize("h,w", [(0, 10), (6, 0), (0, 0)])
def test_zero_size_is_refused(h, w):
    with pytest.raises(ImageError, match="zero size"):
        image_fields_to_rgb("rgb8", h, w, w * 3, 0, b"")


def test_truncated_data_is_refused(rgb):
    fields = rgb_to_image_fields(rgb, "rgb8")
    fields["data"] = fields["data"][: len(fields["data"]) // 2]
    with pytest.raises(ImageError, match="truncated"):
        image_fields_to_rgb(**fields)


def test_step_shorter_than_a_row_and_too_much_data_are_refused(rgb):
    fields = rgb_to_image_fields(rgb, "rgb8")
    with pytest.raises(ImageError, match="step"):
        image_fields_to_rgb(**{**fields, "step": fields["step"] - 1})
    with pytest.raises(ImageError, match="height, width or step is wrong"):
        image_fields_to_rgb(**{**fields, "height": fields["height"] - 2})


def test_absurd_sizes_are_refused_before_allocating():
    with pytest.raises(ImageError, match="larger than"):
        image_fields_to_rgb("rgb8", 100_000, 200_000, 600_000, 0, b"\x00" * 16)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_images_are_refused(bad):
    px = np.full((2, 4), 0.5, np.float32)
    px[1, 2] = bad
    with pytest.raises(ImageError, match="NaN or infinite"):
        image_fields_to_rgb("32FC1", 2, 4, 16, 0, px.tobytes())


def test_message_objects_and_memoryviews_are_accepted(rgb):
    fields = rgb_to_image_fields(rgb, "rgba8")
    msg = SimpleNamespace(**{**fields, "data": memoryview(bytearray(fields["data"]))})
    assert np.array_equal(image_msg_to_rgb(msg, use_cv_bridge=False), rgb)


def test_compressed_jpeg_and_png_decode_and_corrupt_ones_are_refused(rgb):
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    assert np.array_equal(compressed_fields_to_rgb("png", png.tobytes()), rgb)
    smooth = np.zeros((16, 32, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 32)[None].astype(np.uint8)  # red ramp left to right
    smooth[..., 2] = 80
    ok, jpg = cv2.imencode(".jpg", smooth[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = compressed_fields_to_rgb("rgb8; jpeg compressed bgr8", jpg)
    assert out.shape == smooth.shape and np.abs(out.astype(int) - smooth).mean() < 4
    with pytest.raises(ImageError, match="truncated"):
        compressed_fields_to_rgb("jpeg", jpg.tobytes()[: len(jpg) // 2])
    with pytest.raises(ImageError, match="cannot decode"):
        compressed_fields_to_rgb("jpeg", b"\x00garbage" * 10)
    with pytest.raises(ImageError, match="empty"):
        compressed_fields_to_rgb("jpeg", b"")
    with pytest.raises(ImageError, match="depth"):
        compressed_fields_to_rgb("16UC1; compressedDepth", png.tobytes())


@pytest.mark.skipif(not cv_bridge_available(), reason="cv_bridge is not importable here")
@pytest.mark.parametrize("encoding", [e for e in SUPPORTED_ENCODINGS if not e.startswith("32F")])
def test_matches_cv_bridge(rgb, encoding):
    from sensor_msgs.msg import Image

    fields = rgb_to_image_fields(rgb, encoding)
    msg = Image(**{k: v for k, v in fields.items() if k != "data"})
    msg.data = fields["data"]
    ours = image_msg_to_rgb(msg, use_cv_bridge=False)
    theirs = image_msg_to_rgb_via_cv_bridge(msg)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


# ------------------------------------------------------------------ a JPEG cut short and re-terminated (issue 16)
def _textured_jpeg(quality: int = 90) -> tuple[np.ndarray, bytes]:
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(0, 256, (128, 256, 3), dtype=np.uint8), (9, 9), 3)
    return img, cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def test_a_truncated_jpeg_with_its_end_marker_re_appended_is_refused_on_every_path(tmp_path):
    """OpenCV and Pillow decode such a file "successfully" (the lost part grey; libjpeg only warns "Corrupt JPEG
    data: premature end of data segment"): the end-marker check alone let it through."""
    from unifygeo_ros.image.preprocess import decode_image_bytes, load_image

    _, jpg = _textured_jpeg()
    cut = jpg[: len(jpg) // 2] + b"\xff\xd9"
    assert cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_COLOR) is not None  # what slipped through
    with pytest.raises(ImageError, match="corrupt JPEG.*premature end"):
        decode_image_bytes(cut, "frame")
    with pytest.raises(ImageError, match="corrupt JPEG"):
        compressed_fields_to_rgb("jpeg", cut)
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut)
    with pytest.raises(ImageError, match=f"{path.name}.*corrupt JPEG"):
        load_image(path)


def test_intact_jpegs_decode_as_opencv_does_grey_and_cmyk_included():
    import io

    from PIL import Image as PILImage

    from unifygeo_ros.image.preprocess import decode_image_bytes

    img, jpg = _textured_jpeg()
    expected = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.array_equal(decode_image_bytes(jpg), expected)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    out = decode_image_bytes(cv2.imencode(".jpg", grey)[1].tobytes())
    assert out.shape == (128, 256, 3) and np.array_equal(out[..., 0], out[..., 2])
    assert np.abs(out[..., 0].astype(int) - grey).mean() < 3
    buf = io.BytesIO()
    PILImage.fromarray(img).convert("CMYK").save(buf, "JPEG", quality=95)  # libjpeg-turbo cannot: OpenCV decodes
    out = decode_image_bytes(buf.getvalue())
    assert out.shape == img.shape and np.abs(out.astype(int) - img).mean() < 12
