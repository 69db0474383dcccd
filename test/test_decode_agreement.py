"""One image decoder: a bag's image message (replay, ``rosbag.io.msg_to_rgb``) and the same message as the ROS node
receives it (``ros/node.py``: ``codec.image_msg_to_rgb`` / ``codec.compressed_fields_to_rgb``) give identical RGB
arrays, for every encoding the codec supports, with row padding and either byte order; bad input is an
:class:`ImageError` on both paths.

The bag side is a real rosbags message: built with the project typestore (as ``rosbag/synth.py`` builds them) and
round-tripped through CDR, so it is exactly what the bag reader hands to replay. The node side is a
``sensor_msgs.msg.Image`` when rclpy's messages are importable (``source scripts/ros_env.sh``), else a namespace
with the same fields.
"""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from unifygeo_ros.errors import ImageError
from unifygeo_ros.image import codec
from unifygeo_ros.rosbag import io as bags

try:  # the node's message classes (a ROS environment); the namespace stand-in otherwise
    from sensor_msgs.msg import CompressedImage as RosCompressedImage
    from sensor_msgs.msg import Image as RosImage
except ImportError:  # pragma: no cover - depends on the environment
    RosImage = RosCompressedImage = None

T0_NS = 1_700_000_000 * 1_000_000_000
MULTI_BYTE = [e for e in codec.SUPPORTED_ENCODINGS if e in ("mono16", "16UC1", "32FC1", "32FC3")]


@pytest.fixture(scope="module")
def store():
    return bags.make_typestore()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)  # odd width: 3 W and 2 W are odd/unaligned
    img[0, 0] = (255, 0, 0)  # pure red: a channel-order mistake shows
    return img


# ------------------------------------------------------------------------------------------- two messages
def _bag_image(store, fields: dict):
    """``sensor_msgs/msg/Image`` as the bag reader yields it (rosbags object, CDR round trip)."""
    msg = store.types[bags.IMAGE](header=bags.header(store, T0_NS, "cam"), height=fields["height"],
                                  width=fields["width"], encoding=fields["encoding"],
                                  is_bigendian=int(fields["is_bigendian"]), step=fields["step"],
                                  data=np.frombuffer(fields["data"], np.uint8).copy())
    return store.deserialize_cdr(store.serialize_cdr(msg, bags.IMAGE), bags.IMAGE)


def _node_image(fields: dict):
    """The same image as the node's subscription callback receives it."""
    if RosImage is None:
        return SimpleNamespace(**fields)
    msg = RosImage(height=fields["height"], width=fields["width"], encoding=fields["encoding"],
                   is_bigendian=int(fields["is_bigendian"]), step=fields["step"])
    msg.data = bytes(fields["data"])
    return msg


def _bag_compressed(store, fmt: str, data: bytes):
    msg = store.types[bags.COMPRESSED_IMAGE](header=bags.header(store, T0_NS, "cam"), format=fmt,
                                             data=np.frombuffer(data, np.uint8).copy())
    return store.deserialize_cdr(store.serialize_cdr(msg, bags.COMPRESSED_IMAGE), bags.COMPRESSED_IMAGE)


def _node_compressed(fmt: str, data: bytes):
    if RosCompressedImage is None:
        return SimpleNamespace(format=fmt, data=data)
    msg = RosCompressedImage(format=fmt)
    msg.data = bytes(data)
    return msg


def _decode_both(store, fields: dict) -> tuple[np.ndarray, np.ndarray]:
    replay = bags.msg_to_rgb(_bag_image(store, fields), bags.IMAGE)
    node = codec.image_msg_to_rgb(_node_image(fields), "image")  # what ros/node.py calls
    return replay, node


# ------------------------------------------------------------------------------------------- field builders
def _padded(fields: dict, pad_bytes: int) -> dict:
    """``fields`` with ``pad_bytes`` of junk after every row (``step`` > row size)."""
    h, step = fields["height"], fields["step"]
    rows = np.frombuffer(fields["data"], np.uint8).reshape(h, step)
    junk = np.full((h, pad_bytes), 0xAB, np.uint8)
    return {**fields, "step": step + pad_bytes, "data": np.concatenate([rows, junk], axis=1).tobytes()}


def _big_endian(fields: dict) -> dict:
    """The same pixels of a multi-byte encoding written big-endian (``is_bigendian`` = 1)."""
    item = 2 if fields["encoding"] in ("mono16", "16UC1") else 4
    h, step = fields["height"], fields["step"]
    rows = np.frombuffer(fields["data"], np.uint8).reshape(h, step)
    swapped = rows.reshape(h, step // item, item)[:, :, ::-1].reshape(h, step)
    return {**fields, "is_bigendian": 1, "data": np.ascontiguousarray(swapped).tobytes()}


# ------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("encoding", codec.SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("pad_bytes", [0, 3])  # 3: odd step, rows not aligned to the pixel size
def test_every_encoding_decodes_identically_in_replay_and_node(store, rgb, encoding, pad_bytes):
    fields = codec.rgb_to_image_fields(rgb, encoding)
    if pad_bytes:
        fields = _padded(fields, pad_bytes)
    replay, node = _decode_both(store, fields)
    assert replay.dtype == np.uint8 and replay.shape == rgb.shape
    assert replay.flags.writeable and node.flags.writeable  # new arrays, not views of the message buffers
    np.testing.assert_array_equal(replay, node)
    np.testing.assert_array_equal(replay, codec.image_fields_to_rgb(**fields))


@pytest.mark.parametrize("encoding", MULTI_BYTE)
@pytest.mark.parametrize("pad_bytes", [0, 5])
def test_big_endian_multi_byte_encodings_decode_identically(store, rgb, encoding, pad_bytes):
    little = codec.rgb_to_image_fields(rgb, encoding)
    big = _big_endian(little)
    if pad_bytes:
        big = _padded(big, pad_bytes)
    replay, node = _decode_both(store, big)
    np.testing.assert_array_equal(replay, node)
    np.testing.assert_array_equal(replay, codec.image_fields_to_rgb(**little))


def test_8uc3_is_bgr_on_both_paths(store):
    """Documented convention (codec.py, OpenCV / cv_bridge): 8UC3 bytes are blue, green, red."""
    fields = {"encoding": "8UC3", "height": 1, "width": 1, "step": 3, "is_bigendian": 0, "data": bytes([10, 20, 30])}
    replay, node = _decode_both(store, fields)
    assert replay[0, 0].tolist() == [30, 20, 10]
    assert node[0, 0].tolist() == [30, 20, 10]


@pytest.mark.parametrize("is_bigendian", [0, 1])
def test_mono16_is_scaled_by_the_high_byte_on_both_paths(store, is_bigendian):
    values = np.array([[0, 255, 256, 65535], [4660, 43981, 32768, 1]], np.uint16)
    dtype = ">u2" if is_bigendian else "<u2"
    pad = b"\x7f"  # odd step: 9 bytes for 4 px of 2 bytes
    data = b"".join(row.astype(dtype).tobytes() + pad for row in values)
    fields = {"encoding": "mono16", "height": 2, "width": 4, "step": 9, "is_bigendian": is_bigendian, "data": data}
    replay, node = _decode_both(store, fields)
    np.testing.assert_array_equal(replay, node)
    assert replay[..., 0].tolist() == [[0, 0, 1, 255], [0x12, 0xAB, 0x80, 0]]
    assert np.all(replay[..., 0] == replay[..., 2])


@pytest.mark.parametrize("ext,fmt", [(".jpg", "rgb8; jpeg compressed bgr8"), (".png", "png"), (".jpg", "jpeg")])
def test_compressed_images_decode_identically(store, rgb, ext, fmt):
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    data = buf.tobytes()
    replay = bags.msg_to_rgb(_bag_compressed(store, fmt, data), bags.COMPRESSED_IMAGE)
    node_msg = _node_compressed(fmt, data)
    node = codec.compressed_fields_to_rgb(node_msg.format, node_msg.data)  # what ros/node.py calls
    np.testing.assert_array_equal(replay, node)
    if ext == ".png":
        np.testing.assert_array_equal(replay, rgb)


def test_the_writer_helpers_round_trip_through_the_reader(store, rgb):
    msg = bags.rgb_to_image_msg(store, rgb, T0_NS, "cam")
    np.testing.assert_array_equal(bags.msg_to_rgb(msg, bags.IMAGE), rgb)
    jpeg = bags.rgb_to_compressed_msg(store, rgb, T0_NS, "cam", quality=100)
    back = bags.msg_to_rgb(jpeg, bags.COMPRESSED_IMAGE)
    np.testing.assert_array_equal(back, codec.compressed_fields_to_rgb(jpeg.format, jpeg.data))


@pytest.mark.parametrize("change", [{"encoding": "bayer_rggb8"}, {"height": 0}, {"step": 5},
                                    {"data": bytes(10)}])
def test_bad_images_are_image_errors_on_both_paths(store, rgb, change):
    fields = {**codec.rgb_to_image_fields(rgb, "rgb8"), **change}
    with pytest.raises(ImageError):
        bags.msg_to_rgb(_bag_image(store, fields), bags.IMAGE)
    with pytest.raises(ImageError):
        codec.image_msg_to_rgb(_node_image(fields), "image")


def test_corrupt_compressed_and_wrong_types_are_image_errors(store, rgb):
    ok, buf = cv2.imencode(".jpg", rgb)
    half = buf.tobytes()[: len(buf) // 2]
    with pytest.raises(ImageError):
        bags.msg_to_rgb(_bag_compressed(store, "jpeg", half), bags.COMPRESSED_IMAGE)
    with pytest.raises(ImageError):
        codec.compressed_fields_to_rgb("jpeg", half)
    with pytest.raises(ImageError, match="not an image message type"):
        bags.msg_to_rgb(_bag_compressed(store, "jpeg", buf.tobytes()), bags.NAVSATFIX)
