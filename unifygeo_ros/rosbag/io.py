"""rosbag2 plumbing without ROS: image messages <-> numpy, and a reader that turns rosbags' many failure modes
into one clear :class:`BagError`.

ROS-free (pure Python through ``rosbags``): replay and bag synthesis run on machines with no ROS install. This is
the module the rest of the project imports; it re-exports

* :mod:`unifygeo_ros.rosbag.msgtypes` - message type names, the typestore with ``geographic_msgs``
  (:func:`make_typestore`), stamps, :class:`BagError`;
* :mod:`unifygeo_ros.rosbag.salvage` - :class:`SalvageReader`, the linear scan of a damaged bag that
  :func:`open_bag` falls back to.

Images are ``uint8 H x W x 3`` **RGB** arrays throughout the project (:mod:`unifygeo_ros.image.preprocess`).
Decoding is :mod:`unifygeo_ros.image.codec`'s, the one decoder the ROS node uses too: a bag replayed gives the
node's pixels for every encoding (``8UC3`` is BGR, ``mono16`` is scaled by ``>> 8``, ...).
"""
from __future__ import annotations

import sqlite3
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from unifygeo_ros.errors import ImageError
from unifygeo_ros.image import codec
from unifygeo_ros.rosbag.mcap_check import McapCheck, check_mcap
from unifygeo_ros.rosbag.msgtypes import (COMPRESSED_IMAGE, GEOGRAPHIC_MSGS_DEFS, GEOPOSE_COV_STAMPED,
                                          GEOPOSE_STAMPED, IMAGE, IMAGE_TYPES, NAVSATFIX, ODOMETRY,
                                          POSE_COV_STAMPED, ROS_DISTRO_STORE, BagError, geographic_msgs_defs,
                                          header, make_typestore, ns_to_stamp, stamp_or_log_time,
                                          stamp_to_ns)
from unifygeo_ros.rosbag.salvage import SalvageConnection, SalvageReader


# ---------------------------------------------------------------------------------------------------- images
def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``uint8 H x W x 3`` RGB through :func:`codec.image_fields_to_rgb` (every encoding
    of ``codec.SUPPORTED_ENCODINGS``, any row ``step``, either byte order).

    Raises :class:`ImageError` for an unsupported encoding, a bad size or step, truncated data, NaN pixels.
    """
    return codec.image_fields_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data,
                                     "sensor_msgs/Image")


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG/PNG) -> ``uint8 H x W x 3`` RGB through
    :func:`codec.compressed_fields_to_rgb` (:class:`ImageError` if corrupt or a depth image)."""
    return codec.compressed_fields_to_rgb(msg.format, msg.data, "sensor_msgs/CompressedImage")


def msg_to_rgb(msg: Any, msgtype: str) -> np.ndarray:
    """Decode an image message of either type to ``uint8 H x W x 3`` RGB."""
    if msgtype == IMAGE:
        return image_msg_to_rgb(msg)
    if msgtype == COMPRESSED_IMAGE:
        return compressed_msg_to_rgb(msg)
    raise ImageError(f"not an image message type: {msgtype}")


def rgb_to_image_msg(store: Any, rgb: np.ndarray, t_ns: int, frame_id: str) -> Any:
    """``uint8 H x W x 3`` RGB -> ``sensor_msgs/msg/Image`` (rgb8, step = 3 W, little-endian flag 0)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"expected H x W x 3 RGB, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    return store.types[IMAGE](header=header(store, t_ns, frame_id), height=h, width=w, encoding="rgb8",
                              is_bigendian=0, step=3 * w, data=rgb.reshape(-1))


def rgb_to_compressed_msg(store: Any, rgb: np.ndarray, t_ns: int, frame_id: str, quality: int = 90) -> Any:
    """``uint8 H x W x 3`` RGB -> ``sensor_msgs/msg/CompressedImage`` with ``format="rgb8; jpeg compressed bgr8"``
    (image_transport's spelling)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 always encodes uint8 BGR
        raise ImageError("JPEG encoding failed")
    return store.types[COMPRESSED_IMAGE](header=header(store, t_ns, frame_id),
                                         format="rgb8; jpeg compressed bgr8", data=buf.reshape(-1))


# ---------------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class TopicInfo:
    """A topic of a bag: name, message type and message count."""

    topic: str
    msgtype: str
    count: int


def describe_topics(topics: list[TopicInfo]) -> str:
    """``"/a (type, n msgs), /b (...)"`` for error messages; ``"none"`` for no topics."""
    return ", ".join(f"{t.topic} ({t.msgtype}, {t.count} msgs)" for t in topics) or "none"


def _read_errors() -> tuple[type[BaseException], ...]:
    """Exceptions rosbags (and the storage libraries under it) raise on truncated or corrupt data. ``TypeError``
    too: rosbags raises it for a ``metadata.yaml`` whose times are not numbers and for an MCAP file of its magic
    bytes alone (a recorder killed right after opening it)."""
    # rosbags is an optional extra (``pip install .[bags]``): imported where a bag is read
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag2 import ReaderError

    errors: tuple[type[BaseException], ...] = (AnyReaderError, ReaderError, sqlite3.DatabaseError, struct.error,
                                               EOFError, ValueError, TypeError, KeyError, IndexError,
                                               AssertionError, OSError)
    try:  # rosbags reads sqlite3 through apsw (a rosbags dependency, absent from some installs)
        import apsw

        errors += (apsw.Error,)
    except ImportError:  # pragma: no cover
        pass
    return errors


def _mcap_files(p: Path) -> list[Path]:
    if p.is_file():
        return [p] if p.suffix == ".mcap" else []
    return sorted(p.glob("*.mcap"))


def _salvage(p: Path, reason: str, warnings: list[str] | None, cause: BaseException | None = None) -> Any:
    """:class:`SalvageReader` of ``p`` with a note (why, what was recovered) in ``warnings``; :class:`BagError`
    when there is no ``warnings`` list or the scan fails."""
    try:
        reader = SalvageReader(p)
    except BagError as exc2:
        raise BagError(f"cannot open bag {p}: {reason}; salvage scan failed too: {exc2}") from (cause or exc2)
    note = (f"bag {p} is damaged or incomplete ({reason}); read by a linear salvage scan of "
            f"{reader.storage_file.name}: {reader.salvaged_messages} complete messages recovered")
    if reader.stop_reason:
        note += f", scan stopped at {reader.stop_reason}"
    if warnings is None:
        reader.close()
        raise BagError(note) from cause
    warnings.append(note)
    return reader


def _message_count(conn: Any) -> int:
    """A connection's message count (from ``metadata.yaml`` or the MCAP summary; None counts 0); ``ValueError``
    when it is not a whole number >= 0 (damaged metadata)."""
    n = conn.msgcount or 0
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{conn.topic}: message_count {n!r} is not a whole number >= 0 (damaged metadata.yaml?)")
    return n


def _open_any_reader(p: Path) -> Any:
    """rosbags' ``AnyReader`` of ``p``, opened, its connections' message counts checked (:func:`_message_count`):
    a read error (:func:`_read_errors`) otherwise, the reader closed."""
    from rosbags.highlevel import AnyReader  # optional extra, see _read_errors

    reader = AnyReader([p], default_typestore=make_typestore())
    reader.open()
    try:
        for c in reader.connections:
            _message_count(c)
    except ValueError:
        reader.close()
        raise
    return reader


@contextmanager
def open_bag(path: str | Path, warnings: list[str] | None = None, salvage: bool = True,
             mcap_checks: list[McapCheck] | None = None) -> Iterator[Any]:
    """Open a rosbag2 folder (sqlite3 or MCAP) or a single ``.db3``/``.mcap`` file.

    Every MCAP chunk is checked first (:func:`~unifygeo_ros.rosbag.mcap_check.check_mcap`: decodable, its size,
    its CRC when the writer stored one; the results go to ``mcap_checks``). A bag with a corrupt chunk is read by
    a linear scan that skips it (:class:`SalvageReader`, a warning says how many messages of which topics were
    lost), or refused when ``salvage`` is off. Otherwise it is opened with rosbags' ``AnyReader`` (definitions
    embedded in the bag are used, the project typestore otherwise). When that fails (a sqlite3 file cut short, an
    MCAP without its summary/footer, a missing ``metadata.yaml``) and ``salvage`` is set, the storage file is read
    by the linear scan instead: every complete message before the damage is recovered and a note goes to
    ``warnings``. Raises :class:`BagError` with the path and the reason when nothing can be read.
    """
    p = Path(path)
    if not p.exists():
        raise BagError(f"bag not found: {p}")
    files = _mcap_files(p)
    try:
        checks = [check_mcap(f) for f in files]
    except (OSError, struct.error, ValueError) as exc:
        raise BagError(f"cannot read bag {p}: {type(exc).__name__}: {exc} (unreadable or corrupt MCAP file)") from exc
    if mcap_checks is not None:
        mcap_checks.extend(checks)
    corrupt = next((c for c in checks if c.corrupt), None)
    reader: Any
    if corrupt is not None:
        what = corrupt.describe_corrupt()
        if not salvage or len(files) > 1:
            why = "salvage is off" if not salvage else "the salvage scan reads single-file bags only"
            raise BagError(f"bag {p}: {what}; refused ({why}): copy the bag again from its source")
        reader = _salvage(p, f"{what}: skipped, their messages lost", warnings)
    else:
        try:
            reader = _open_any_reader(p)
        except _read_errors() as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if not salvage:
                raise BagError(f"cannot open bag {p}: {reason} (truncated or corrupt?)") from exc
            reader = _salvage(p, reason, warnings, exc)
    try:
        yield reader
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - closing a corrupt bag must not hide the original error
            pass


def list_topics(reader: Any) -> list[TopicInfo]:
    """Topics of an open reader, sorted by name (counts from the bag's metadata/summary; :func:`open_bag` checked
    them, a reader opened otherwise gets a :class:`BagError` for a count that is not a whole number)."""
    seen: dict[tuple[str, str], int] = {}
    for c in reader.connections:
        try:
            n = _message_count(c)
        except ValueError as exc:
            raise BagError(str(exc)) from None
        seen[(c.topic, c.msgtype)] = seen.get((c.topic, c.msgtype), 0) + n
    return [TopicInfo(t, m, n) for (t, m), n in sorted(seen.items())]


def connections_for(reader: Any, topic: str, allowed_types: tuple[str, ...] | None = None) -> list[Any]:
    """Connections of ``topic``; :class:`BagError` listing the available topics when it is absent or of a type
    not in ``allowed_types``."""
    conns = [c for c in reader.connections if c.topic == topic]
    avail = describe_topics(list_topics(reader))
    if not conns:
        raise BagError(f"topic {topic!r} not in bag; available topics: {avail}")
    if allowed_types is not None:
        bad = [c.msgtype for c in conns if c.msgtype not in allowed_types]
        if bad:
            raise BagError(f"topic {topic!r} has type {bad[0]}, expected one of {', '.join(allowed_types)}; "
                           f"available topics: {avail}")
    return conns


def iter_messages(reader: Any, connections: list[Any], warnings: list[str] | None = None
                  ) -> Iterator[tuple[Any, int, Any]]:
    """Yield ``(connection, log_time_ns, message)`` in log-time order until the end of the bag or the first read
    error. A read error (truncated or corrupt storage) ends the iteration: the message goes to ``warnings``
    (raised as :class:`BagError` when ``warnings`` is None); what was read before stays valid. A message that
    fails to deserialize alone is skipped with a warning."""
    errors = _read_errors()
    n = 0
    try:
        for conn, t_ns, raw in reader.messages(connections=connections):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except errors as exc:
                note = f"{conn.topic}: message at t={t_ns * 1e-9:.3f} s cannot be deserialized ({exc}); skipped"
                if warnings is None:
                    raise BagError(note) from exc
                warnings.append(note)
                continue
            n += 1
            yield conn, t_ns, msg
    except errors as exc:
        note = (f"bag read stopped after {n} messages: {type(exc).__name__}: {exc} (truncated or corrupt bag); "
                "results cover the messages read before the error")
        if warnings is None:
            raise BagError(note) from exc
        warnings.append(note)


#: what the rest of the project imports from here, re-exported from msgtypes, salvage and mcap_check included
__all__ = ["COMPRESSED_IMAGE", "GEOGRAPHIC_MSGS_DEFS", "GEOPOSE_COV_STAMPED", "GEOPOSE_STAMPED", "IMAGE", "IMAGE_TYPES",
           "NAVSATFIX", "ODOMETRY", "POSE_COV_STAMPED", "ROS_DISTRO_STORE", "BagError", "McapCheck",
           "SalvageConnection", "SalvageReader", "TopicInfo", "check_mcap", "compressed_msg_to_rgb",
           "connections_for", "describe_topics", "geographic_msgs_defs", "header", "image_msg_to_rgb",
           "iter_messages", "list_topics", "make_typestore", "msg_to_rgb", "ns_to_stamp", "open_bag",
           "rgb_to_compressed_msg", "rgb_to_image_msg", "stamp_or_log_time", "stamp_to_ns"]
