"""Image loading, validation, tensors, panorama rolls and field-of-view masks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from unifygeo_ros import geo
from unifygeo_ros.errors import ImageError
from unifygeo_ros.image.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    aerial_tensor,
    column_azimuths_deg,
    decode_image_bytes,
    denormalize,
    ground_tensor,
    load_image,
    mask_fov,
    roll_panorama,
    to_tensor,
    validate_panorama,
)


def _rgb(h: int = 8, w: int = 16) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 200  # red
    img[..., 2] = np.arange(w, dtype=np.uint8)[None, :] * 10  # blue ramp
    return img


# -------------------------------------------------------------------------------------------- loading
def test_load_png_returns_rgb(tmp_path):
    img = _rgb()
    path = tmp_path / "a.png"
    assert cv2.imwrite(str(path), img[:, :, ::-1])  # cv2 writes BGR
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(decode_image_bytes(path.read_bytes()), img)


def test_grey_and_alpha_become_rgb(tmp_path):
    grey = np.full((4, 8), 77, np.uint8)
    ok, buf = cv2.imencode(".png", grey)
    assert ok
    out = decode_image_bytes(buf.tobytes())
    assert out.shape == (4, 8, 3) and np.all(out == 77)
    rgba = np.zeros((4, 8, 4), np.uint8)
    rgba[..., 2] = 255  # BGRA: red
    rgba[..., 3] = 128
    ok, buf = cv2.imencode(".png", rgba)
    out = decode_image_bytes(buf.tobytes())
    assert out.shape == (4, 8, 3) and np.all(out[..., 0] == 255) and np.all(out[..., 2] == 0)


def test_missing_corrupt_truncated_and_empty_files(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match=f"image file not found: {missing}"):
        load_image(missing)
    with pytest.raises(ImageError, match="not an image file"):
        load_image(tmp_path)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ImageError, match=f"{corrupt}.*cannot decode"):
        load_image(corrupt)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=f"{empty}.*empty"):
        load_image(empty)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    ok, jpg = cv2.imencode(".jpg", big)
    for cut in (2, 100, len(jpg) // 2):
        trunc = tmp_path / f"trunc{cut}.jpg"
        trunc.write_bytes(jpg.tobytes()[:-cut])
        with pytest.raises(ImageError, match=f"{trunc}"):
            load_image(trunc)
    ok, png = cv2.imencode(".png", big)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(png.tobytes()[:-20])
    with pytest.raises(ImageError, match=f"{trunc}.*truncated PNG"):
        load_image(trunc)
    with pytest.raises(ImageError, match="compressed msg.*cannot decode"):
        decode_image_bytes(b"\xff\xd8 not really a jpeg \xff\xd9", what="compressed msg")


# ----------------------------------------------------------------------------------------- validation
def test_validate_panorama():
    ok = np.zeros((8, 16, 3), np.uint8)
    assert validate_panorama(ok) is ok
    near = np.zeros((20, 41, 3), np.uint8)
    assert validate_panorama(near) is near  # 2.05:1 is within 5 %
    with pytest.raises(ImageError, match="2.200"):
        validate_panorama(np.zeros((10, 22, 3), np.uint8))
    bad = {
        "zero size": np.zeros((0, 0, 3), np.uint8),
        "dimension": np.zeros((8, 16), np.uint8),
        "channels": np.zeros((8, 16, 4), np.uint8),
        "NaN": np.full((8, 16, 3), np.nan, np.float32),
        "equirectangular": np.zeros((8, 8, 3), np.uint8),
    }
    for what, img in bad.items():
        with pytest.raises(ImageError, match=what):
            validate_panorama(img)
    with pytest.raises(ImageError, match="numpy array"):
        validate_panorama([[0]])
    square = np.zeros((8, 8, 3), np.uint8)
    assert validate_panorama(square, expected_aspect=1.0) is square


# -------------------------------------------------------------------------------------------- tensors
def test_to_tensor_resizes_with_area_and_normalises():
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, :, 0] = np.array([0, 100, 50, 50, 255, 255, 10, 30], np.uint8)[None, :]
    t = to_tensor(img, (2, 4))
    assert t.shape == (3, 2, 4) and t.dtype == torch.float32
    expected_red = np.array([50, 50, 255, 20]) / 255.0  # INTER_AREA = 2x2 block means
    np.testing.assert_allclose(t[0, 0].numpy(), (expected_red - IMAGENET_MEAN[0]) / IMAGENET_STD[0], atol=1e-2)
    np.testing.assert_allclose(t[1].numpy(), -IMAGENET_MEAN[1] / IMAGENET_STD[1], atol=1e-6)
    with pytest.raises(ImageError, match="uint8"):
        to_tensor(img.astype(np.float32), (2, 4))


def test_denormalize_inverts_and_wrappers_check_shape():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (6, 12, 3), dtype=np.uint8)
    t = ground_tensor(img, (6, 12))
    np.testing.assert_array_equal(denormalize(t), img)
    np.testing.assert_array_equal(denormalize(torch.stack([t, t]))[1], img)
    a = aerial_tensor(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), 10)
    assert a.shape == (3, 10, 10)
    with pytest.raises(ImageError, match="square"):
        aerial_tensor(img, 10)
    with pytest.raises(ImageError, match="equirectangular"):
        ground_tensor(np.zeros((12, 12, 3), np.uint8), (6, 12))


# ------------------------------------------------------------------------------------------ panoramas
def _azimuth_pano(width: int, heading: float = 0.0) -> np.ndarray:
    """A 1-row 'panorama' whose pixel value is the compass azimuth its column looks at (geo.py's rule)."""
    az = geo.wrap_deg(heading + ((np.arange(width) + 0.5) / width - 0.5) * 360.0)
    return np.asarray(az, dtype=np.float64)[None, :]


@pytest.mark.parametrize("delta", [90.0, -90.0, 45.0, 179.0, -30.0, 10.0, 0.0])
def test_roll_panorama_changes_heading_as_documented(delta):
    w = 72
    img = _azimuth_pano(w)
    rolled, applied = roll_panorama(img, delta)
    step = 360.0 / w
    assert abs(geo.angle_diff_deg(applied, delta)) <= step / 2 + 1e-9
    assert applied == pytest.approx(round(applied / step) * step)
    # every column of the rolled panorama looks where geo.py says a panorama with heading `applied` looks
    np.testing.assert_allclose(geo.angle_diff_deg(rolled, _azimuth_pano(w, applied)), 0.0, atol=1e-9)
    # the centre column now looks along the new heading (east after +90)
    assert geo.angle_diff_deg(rolled[0, w // 2] - step / 2, applied) < 1e-9


def test_roll_right_by_k_columns_is_minus_k_step():
    img = np.arange(8 * 16 * 3, dtype=np.uint8).reshape(8, 16, 3)
    rolled, applied = roll_panorama(img, -45.0)  # k = +2 columns to the right
    np.testing.assert_array_equal(rolled, np.roll(img, 2, axis=1))
    assert applied == pytest.approx(-45.0)
    back, applied_back = roll_panorama(rolled, -applied)
    np.testing.assert_array_equal(back, img)
    assert applied_back == pytest.approx(45.0)
    _, a180 = roll_panorama(img, 180.0)
    assert a180 == pytest.approx(-180.0)  # wrapped into [-180, 180)


def test_mask_fov():
    w = 360
    img = np.full((4, w, 3), 9, np.uint8)
    masked, mask = mask_fov(img, center_deg=0.0, fov_deg=90.0)
    assert mask.shape == (w,) and mask.sum() == 90
    az = column_azimuths_deg(w)
    assert np.all(np.abs(az[mask]) <= 45.0) and np.all(np.abs(az[~mask]) > 45.0)
    assert np.all(masked[:, ~mask] == 0) and np.all(masked[:, mask] == 9)
    assert np.all(img == 9)  # input untouched
    _, back = mask_fov(img, center_deg=180.0, fov_deg=60.0)  # straddles the seam
    assert back.sum() == 60 and back[0] and back[-1] and not back[w // 2]
    _, right = mask_fov(img, center_deg=90.0, fov_deg=30.0)
    assert np.all(np.abs(az[right] - 90.0) <= 15.0) and right.sum() == 30
    assert mask_fov(img, 0.0, 360.0)[1].all()
    with pytest.raises(ValueError):
        mask_fov(img, 0.0, 0.0)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    """A 1-bit PNG announcing 28000 x 14000 pixels is a few kilobytes; decoding it would take gigabytes. The header
    is read first and the image refused with one line, by the one decoder every path uses (files, CompressedImage
    messages, bags); memory stays flat."""
    import io as _io

    import psutil
    from PIL import Image

    from unifygeo_ros.image import preprocess as P

    buf = _io.BytesIO()
    Image.new("1", (28000, 14000)).save(buf, format="PNG")
    data = buf.getvalue()
    assert len(data) < 100_000
    rss0 = psutil.Process().memory_info().rss
    with pytest.raises(ImageError, match="28000 x 14000 pixels, more than the 50 MP"):
        P.decode_image_bytes(data)
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(ImageError, match="bomb.png: the image announces 28000 x 14000"):
        P.load_image(tmp_path / "bomb.png")
    from unifygeo_ros.image.codec import compressed_fields_to_rgb

    with pytest.raises(ImageError, match="announces 28000 x 14000"):
        compressed_fields_to_rgb("png", data)
    assert psutil.Process().memory_info().rss - rss0 < 200 * 2**20
    # an ordinary image right at the side of a large panorama camera still decodes
    ok = _io.BytesIO()
    Image.new("RGB", (4096, 2048), (10, 200, 30)).save(ok, format="PNG")
    assert P.decode_image_bytes(ok.getvalue()).shape == (2048, 4096, 3)


def _jpeg_header(width: int, height: int, after_soi: bytes = b"") -> bytes:
    """A JPEG's header only (SOI, APP0, a baseline SOF announcing ``width x height`` grey) and its end marker:
    enough for the size check, which runs before any decoding."""
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0\x00\x0b\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    return b"\xff\xd8" + after_soi + app0 + sof0 + b"\xff\xd9"


@pytest.mark.parametrize("after_soi", [b"", b"\xff", b"\xff\xff\xff", b"\xff\x01\xff\xd0"],
                         ids=["plain", "fill byte", "fill bytes", "standalone markers"])
def test_a_jpeg_bomb_is_refused_whatever_precedes_its_frame_header(after_soi):
    """ITU T.81 B.1.1.2: any marker may be preceded by 0xFF fill bytes, and TEM / RSTn stand without a length.
    One fill byte after SOI (``FF D8 FF FF E0``) made the marker walk miss the SOF and a 60 MP JPEG decode in full."""
    from unifygeo_ros.image.codec import compressed_fields_to_rgb

    data = _jpeg_header(11000, 5500, after_soi)
    with pytest.raises(ImageError, match="announces 11000 x 5500 pixels, more than the 50 MP") as err:
        decode_image_bytes(data, "frame")
    assert "\n" not in str(err.value)
    with pytest.raises(ImageError, match="announces 11000 x 5500 pixels"):
        compressed_fields_to_rgb("jpeg", data)


def test_fill_bytes_and_standalone_markers_in_an_intact_jpeg_change_nothing():
    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8), (5, 5), 2)
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    expected = decode_image_bytes(jpg)
    for extra in (b"\xff", b"\xff\xff\xff", b"\xff\x01"):
        np.testing.assert_array_equal(decode_image_bytes(jpg[:2] + extra + jpg[2:]), expected)


def test_a_jpeg_or_png_whose_size_cannot_be_read_is_refused_not_left_to_the_decoder():
    no_sof = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xda\x00\x02\xff\xd9"
    png = cv2.imencode(".png", np.zeros((4, 8), np.uint8))[1].tobytes()
    for data in (no_sof, png[:12] + b"tEXt" + png[16:]):
        with pytest.raises(ImageError, match="cannot decode image.*no readable (JPEG|PNG) header"):
            decode_image_bytes(data, "frame")


def _radiance_hdr_header(width: int, height: int) -> bytes:
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {height} +X {width}\n".encode()


@pytest.mark.parametrize("data, name", [
    (_radiance_hdr_header(12000, 6000), "Radiance HDR"),
    (b"PF\n12000 6000\n-1.0\n", "PFM"),
    (b"P7\nWIDTH 12000\nHEIGHT 6000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n", "PNM/PAM"),
], ids=["hdr", "pfm", "pam"])
def test_a_bomb_in_a_format_only_opencv_reads_is_refused_before_decoding(data, name):
    """Pillow cannot parse these headers, so they skipped the 50 MP check and OpenCV decoded them in full (a 4.6 MB
    .hdr -> 72 MP, 1.5 GB). Only JPEG and PNG, the documented formats, are decoded at all."""
    import psutil

    rss0 = psutil.Process().memory_info().rss
    with pytest.raises(ImageError, match=f"frame: cannot decode image .*{name} image\\): only JPEG and PNG") as err:
        decode_image_bytes(data, "frame")
    assert "\n" not in str(err.value)
    assert psutil.Process().memory_info().rss - rss0 < 100 * 2**20


@pytest.mark.parametrize("ext", [".pfm", ".hdr", ".tiff"])
def test_a_float_image_full_of_nan_is_refused_not_decoded_to_black(tmp_path, ext):
    ok, buf = cv2.imencode(ext, np.full((32, 64, 3), np.nan, np.float32))
    assert ok
    with pytest.raises(ImageError, match="cannot decode image.*only JPEG and PNG"):
        decode_image_bytes(buf.tobytes(), "frame")
    path = tmp_path / f"nan{ext}"
    path.write_bytes(buf.tobytes())
    with pytest.raises(ImageError, match=f"{path.name}: cannot decode image"):
        load_image(path)


@pytest.mark.parametrize("delta", [1e308, -1e308, 3.6e8 + 90.0, 1e20])
def test_a_huge_finite_heading_is_wrapped_into_one_turn_not_an_overflow(delta):
    """``unifygeo localize --heading 1e308`` ended in an OverflowError traceback (``1e308 * W`` is inf)."""
    import math

    from unifygeo_ros.image.preprocess import heading_change_to_roll

    img = _azimuth_pano(64)
    rolled, applied = roll_panorama(img, delta)
    assert heading_change_to_roll(delta, 64) == heading_change_to_roll(math.fmod(delta, 360.0), 64)
    assert abs(geo.wrap_deg(applied - math.fmod(delta, 360.0))) <= 360.0 / 64 / 2 + 1e-9
    assert rolled.shape == img.shape


def test_ordinary_headings_roll_exactly_as_before():
    from unifygeo_ros.image.preprocess import heading_change_to_roll

    for width in (16, 64, 1024, 1000):
        for delta in np.concatenate([np.linspace(-1e4, 1e4, 2001), [-180.0, 179.99, 1e6 + 0.5, 3.6e8]]):
            k = int(round(-float(delta) * width / 360.0))
            assert heading_change_to_roll(float(delta), width) == (k + width // 2) % width - width // 2


def test_a_tiny_panorama_is_refused():
    """A 2 x 1 image has the right aspect and used to get a fix; panoramas need at least 4 rows."""
    from unifygeo_ros.image.preprocess import MIN_PANORAMA_HEIGHT_PX, validate_panorama

    with pytest.raises(ImageError, match="too small to localize"):
        validate_panorama(np.zeros((1, 2, 3), np.uint8))
    img = np.zeros((MIN_PANORAMA_HEIGHT_PX, 2 * MIN_PANORAMA_HEIGHT_PX, 3), np.uint8)
    assert validate_panorama(img) is img
