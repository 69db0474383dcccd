"""ROS image messages -> RGB ``uint8`` numpy arrays, without ROS.

The node hands over the fields of a ``sensor_msgs/Image`` (``encoding, height, width, step, is_bigendian,
data``) or of a ``sensor_msgs/CompressedImage`` (``format, data``); this module turns them into the
``H x W x 3`` RGB ``uint8`` array every image of the project is (:mod:`unifygeo_ros.image.preprocess`). Anything
unusable raises one :class:`~unifygeo_ros.errors.ImageError` whose message says what is wrong.

Encodings (REP-118 / sensor_msgs ``image_encodings``):

============================  =====================================================================
``rgb8``, ``bgr8``            copied (channel order fixed)
``rgba8``, ``bgra8``          alpha dropped
``mono8``, ``8UC1``           grey replicated to three channels
``mono16``, ``16UC1``         scaled to 8 bit by ``>> 8`` (full 16-bit range -> full 8-bit range)
``8UC3``                      taken as BGR (OpenCV's order, what ``cv_bridge`` assumes)
``32FC1``, ``32FC3``          values in [0, 1] (clipped) -> 0..255; NaN/inf are an error
============================  =====================================================================

``step`` may exceed ``width * bytes_per_pixel`` (row padding); multi-byte data honours ``is_bigendian``.

This is the one decoder of ROS image buffers: the node (:mod:`unifygeo_ros.ros.node`) and rosbag replay
(:func:`unifygeo_ros.rosbag.io.msg_to_rgb`) both call it, so a bag replayed offline gives the pixels the node
sees live (``test/test_decode_agreement.py``). :func:`cv_bridge_available` /
:func:`image_msg_to_rgb_via_cv_bridge` use ``cv_bridge`` where it is importable, so the tests can check this
conversion against it; it is not used to decode.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from unifygeo_ros.errors import ImageError

#: encoding -> (numpy dtype, channels, how to turn the array into RGB)
_ENCODINGS: dict[str, tuple[str, int, str]] = {
    "rgb8": ("u1", 3, "rgb"),
    "bgr8": ("u1", 3, "bgr"),
    "8UC3": ("u1", 3, "bgr"),
    "rgba8": ("u1", 4, "rgba"),
    "bgra8": ("u1", 4, "bgra"),
    "mono8": ("u1", 1, "grey"),
    "8UC1": ("u1", 1, "grey"),
    "mono16": ("u2", 1, "grey16"),
    "16UC1": ("u2", 1, "grey16"),
    "32FC1": ("f4", 1, "greyf"),
    "32FC3": ("f4", 3, "rgbf"),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)
#: largest side accepted (a corrupt header must not make us allocate gigabytes)
MAX_SIDE_PX = 16384


def _normalise_encoding(encoding: str) -> str:
    enc = (encoding or "").strip()
    if enc in _ENCODINGS:
        return enc
    low = enc.lower()
    for name in _ENCODINGS:  # "RGB8", "Mono8" from sloppy drivers
        if name.lower() == low:
            return name
    return enc


def image_fields_to_rgb(encoding: str, height: int, width: int, step: int, is_bigendian: bool | int,
                        data: bytes | bytearray | memoryview | np.ndarray, what: str = "image") -> np.ndarray:
    """The fields of a ``sensor_msgs/Image`` -> ``uint8 H x W x 3`` RGB (a new, contiguous array).

    Raises :class:`ImageError` for an unsupported encoding, a zero or absurd size, a ``step`` shorter than a
    row, data shorter than ``step * height`` (truncated), or non-finite float pixels.
    """
    enc = _normalise_encoding(encoding)
    if enc not in _ENCODINGS:
        raise ImageError(f"{what}: unsupported encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    dtype_code, channels, kind = _ENCODINGS[enc]
    h, w, step = int(height), int(width), int(step)
    if h <= 0 or w <= 0:
        raise ImageError(f"{what}: zero size ({w} x {h} px)")
    if h > MAX_SIDE_PX or w > MAX_SIDE_PX:
        raise ImageError(f"{what}: {w} x {h} px is larger than {MAX_SIDE_PX} px a side")
    dtype = np.dtype(dtype_code).newbyteorder(">" if is_bigendian else "<")
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageError(f"{what}: step {step} B is shorter than a row of {w} px {enc} ({row_bytes} B)")
    buf = np.frombuffer(memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.tobytes(),
                        dtype=np.uint8)
    need = step * (h - 1) + row_bytes
    if buf.size < need:
        raise ImageError(f"{what}: truncated data: {buf.size} B for {w} x {h} px {enc} with step {step} "
                         f"(needs {need} B)")
    if buf.size > step * h:
        raise ImageError(f"{what}: {buf.size} B of data for {w} x {h} px with step {step} (expected "
                         f"{step * h} B); height, width or step is wrong")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, row_bytes), strides=(step, 1))
    px = np.ascontiguousarray(rows).view(dtype).reshape(h, w, channels)
    return _to_rgb(px, kind, what)


def _to_rgb(px: np.ndarray, kind: str, what: str) -> np.ndarray:
    if kind in ("greyf", "rgbf"):
        if not np.all(np.isfinite(px)):
            raise ImageError(f"{what}: contains NaN or infinite values ({int(np.size(px) - np.isfinite(px).sum())} "
                             "pixels)")
        px = np.clip(np.round(px.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
        kind = "grey" if kind == "greyf" else "rgb"
    elif kind == "grey16":
        px = (px.astype(np.uint16) >> 8).astype(np.uint8)
        kind = "grey"
    if kind == "rgb":
        out = px
    elif kind == "bgr":
        out = px[:, :, ::-1]
    elif kind == "rgba":
        out = px[:, :, :3]
    elif kind == "bgra":
        out = px[:, :, 2::-1]
    else:  # grey
        out = np.repeat(px, 3, axis=2)
    out = np.ascontiguousarray(out, dtype=np.uint8)
    # rgb8 without row padding is still a view of the message buffer (read-only for bytes): copy it
    return out if out.flags.owndata else out.copy()


def image_msg_to_rgb(msg: Any, what: str = "image", use_cv_bridge: bool = False) -> np.ndarray:
    """A ``sensor_msgs/Image`` (or anything with its fields: an rclpy message, a rosbags message, a namespace)
    -> ``uint8 H x W x 3`` RGB through :func:`image_fields_to_rgb`, the one conversion the node and rosbag
    replay share (``test/test_decode_agreement.py``).

    ``use_cv_bridge=True`` (cross-checks only) returns ``cv_bridge``'s conversion of an integer encoding instead,
    after the same checks; it may differ by one grey level for 16-bit data and refuses ``8UC3``, so it is never
    the default.
    """
    rgb = image_fields_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data, what)
    enc = _normalise_encoding(msg.encoding)
    if use_cv_bridge and _ENCODINGS[enc][0] != "f4" and enc == msg.encoding:
        try:
            return image_msg_to_rgb_via_cv_bridge(msg)
        except Exception:  # cv_bridge refuses what we accept (e.g. 8UC3): keep ours
            return rgb
    return rgb


def compressed_fields_to_rgb(fmt: str, data: bytes | bytearray | memoryview | np.ndarray,
                             what: str = "compressed image") -> np.ndarray:
    """The fields of a ``sensor_msgs/CompressedImage`` (``format``, ``data``: JPEG/PNG) -> RGB ``uint8``.

    ``format`` is informative only (``"jpeg"``, ``"rgb8; jpeg compressed bgr8"``, ...): the bytes say what
    they are. Depth formats (``compressedDepth``) are refused.
    """
    # lazy: preprocess imports torch, which the raw-image path (and rosbag I/O importing this module) need not load
    from unifygeo_ros.image.preprocess import decode_image_bytes

    if "compresseddepth" in (fmt or "").lower().replace(" ", ""):
        raise ImageError(f"{what}: format {fmt!r} is a depth image, not a colour panorama")
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    return decode_image_bytes(raw, f"{what} ({fmt or 'no format'})")


def rgb_to_image_fields(rgb: np.ndarray, encoding: str = "rgb8", step_padding: int = 0) -> dict[str, Any]:
    """RGB ``uint8 H x W x 3`` -> the fields of a ``sensor_msgs/Image`` in ``encoding`` (tests, benchmarks,
    replay). Inverse of :func:`image_fields_to_rgb` up to quantisation for grey and 16-bit encodings."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"expected uint8 H x W x 3 RGB, got {rgb.dtype} {rgb.shape}")
    enc = _normalise_encoding(encoding)
    if enc not in _ENCODINGS:
        raise ImageError(f"unsupported encoding {encoding!r}")
    kind = _ENCODINGS[enc][2]
    grey = np.round(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)[..., None]
    px = {
        "rgb": rgb, "bgr": rgb[:, :, ::-1],
        "rgba": np.concatenate([rgb, np.full_like(rgb[:, :, :1], 255)], axis=2),
        "bgra": np.concatenate([rgb[:, :, ::-1], np.full_like(rgb[:, :, :1], 255)], axis=2),
        "grey": grey, "grey16": grey.astype(np.uint16) * 257,
        "greyf": grey.astype(np.float32) / 255.0, "rgbf": rgb.astype(np.float32) / 255.0,
    }[kind]
    px = np.ascontiguousarray(px)
    h, w = px.shape[:2]
    row = px.reshape(h, -1).view(np.uint8).reshape(h, -1) if px.dtype != np.uint8 else px.reshape(h, -1)
    if step_padding:
        row = np.concatenate([row, np.zeros((h, step_padding), np.uint8)], axis=1)
    return {"encoding": enc, "height": h, "width": w, "step": int(row.shape[1]), "is_bigendian": 0,
            "data": np.ascontiguousarray(row).tobytes()}


# ------------------------------------------------------------------------------------------------- cv_bridge
def cv_bridge_available() -> bool:
    try:  # optional: a ROS C++ package, absent from pip-route ROS installs (docs/ROS_ENV.md)
        import cv_bridge  # noqa: F401
    except Exception:  # ImportError, or a broken binary build
        return False
    return True


def image_msg_to_rgb_via_cv_bridge(msg: Any) -> np.ndarray:
    """The same conversion through ``cv_bridge`` (``imgmsg_to_cv2(msg, "rgb8")``); for cross-checks only."""
    from cv_bridge import CvBridge  # optional, see cv_bridge_available

    return np.ascontiguousarray(CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8"))
