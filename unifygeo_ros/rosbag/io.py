"""rosbag2 plumbing without ROS: a typestore that knows ``geographic_msgs``, image <-> numpy helpers, stamps,
and a reader that turns rosbags' many failure modes into one clear :class:`BagError`.

ROS-free (pure Python through ``rosbags``): replay and bag synthesis run on machines with no ROS install.

* ``geographic_msgs`` is not in rosbags' built-in stores. Its definitions are registered from the upstream
  ``.msg`` text (ros-geographic-info/geographic_info, ``geographic_msgs/msg/``), kept verbatim in
  :data:`GEOGRAPHIC_MSGS_DEFS` so an installed package needs no source checkout; a test compares them with
  ``third_party/geographic_msgs/msg/`` when that folder exists. Bags written with :func:`make_typestore` embed
  every definition (sqlite3: ``message_definitions`` table; MCAP: ``ros2msg`` schemas), so ``ros2 bag`` and
  rosbags read them back without this module.
* Images are ``uint8 H x W x 3`` **RGB** arrays throughout the project (:mod:`unifygeo_ros.image.preprocess`).
"""
from __future__ import annotations

import sqlite3
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from unifygeo_ros.errors import ImageError, UnifyGeoError

#: rosbags store the project writes with and falls back to for bags without embedded definitions.
ROS_DISTRO_STORE = "ROS2_KILTED"

#: Upstream ``geographic_msgs`` definitions (ros2 branch, release 1.0.6; the subset the project publishes or
#: reads), verbatim: ``third_party/geographic_msgs/msg/<Name>.msg``.
GEOGRAPHIC_MSGS_DEFS: dict[str, str] = {
    "geographic_msgs/msg/GeoPoint": (
        '# Geographic point, using the WGS 84 reference ellipsoid.\n'
        '\n'
        '# Latitude [degrees]. Positive is north of equator; negative is south\n'
        '# (-90 <= latitude <= +90).\n'
        'float64 latitude\n'
        '\n'
        '# Longitude [degrees]. Positive is east of prime meridian; negative is\n'
        '# west (-180 <= longitude <= +180). At the poles, latitude is -90 or\n'
        '# +90, and longitude is irrelevant, but must be in range.\n'
        'float64 longitude\n'
        '\n'
        '# Altitude [m]. Positive is above the WGS 84 ellipsoid (NaN if unspecified).\n'
        'float64 altitude\n'
    ),
    "geographic_msgs/msg/GeoPose": (
        '# Geographic pose, using the WGS 84 reference ellipsoid.\n'
        '#\n'
        '# Orientation uses the East-North-Up (ENU) frame of reference.\n'
        '# (But, what about singularities at the poles?)\n'
        '\n'
        'GeoPoint position\n'
        'geometry_msgs/Quaternion orientation\n'
    ),
    "geographic_msgs/msg/GeoPoseStamped": (
        'std_msgs/Header header\n'
        'geographic_msgs/GeoPose pose\n'
    ),
    "geographic_msgs/msg/GeoPoseWithCovariance": (
        '# Geographic pose, using the WGS 84 reference ellipsoid.\n'
        '#\n'
        '# Orientation uses the East-North-Up (ENU) frame of reference.\n'
        '# (But, what about singularities at the poles?)\n'
        '\n'
        'GeoPose pose\n'
        '\n'
        '# Row-major representation of the 6x6 covariance matrix\n'
        '# The orientation parameters use a fixed-axis representation.\n'
        '# In order, the parameters are:\n'
        '# (Lat, Lon, Alt, rotation about E (East) axis, rotation about N (North) axis, rotation about U (Up) axis)\n'
        'float64[36] covariance'
    ),
    "geographic_msgs/msg/GeoPoseWithCovarianceStamped": (
        'std_msgs/Header header\n'
        'geographic_msgs/GeoPoseWithCovariance pose\n'
    ),
}

# message type names used across replay / bag synthesis
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
NAVSATFIX = "sensor_msgs/msg/NavSatFix"
ODOMETRY = "nav_msgs/msg/Odometry"
GEOPOSE_STAMPED = "geographic_msgs/msg/GeoPoseStamped"
GEOPOSE_COV_STAMPED = "geographic_msgs/msg/GeoPoseWithCovarianceStamped"
POSE_COV_STAMPED = "geometry_msgs/msg/PoseWithCovarianceStamped"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)


class BagError(UnifyGeoError):
    """A bag is missing, truncated, corrupt, or lacks the topics asked for."""


# ------------------------------------------------------------------------------------------------ typestore
def geographic_msgs_defs(third_party_dir: str | Path | None = None) -> dict[str, str]:
    """Definitions to register: the embedded upstream text, or the ``.msg`` files of ``third_party_dir``
    (``<dir>/<Name>.msg``) for the same types when given."""
    if third_party_dir is None:
        return dict(GEOGRAPHIC_MSGS_DEFS)
    d = Path(third_party_dir)
    return {name: (d / f"{name.rsplit('/', 1)[1]}.msg").read_text() for name in GEOGRAPHIC_MSGS_DEFS}


def make_typestore(third_party_dir: str | Path | None = None):
    """A rosbags typestore (ROS 2 Kilted) with the ``geographic_msgs`` types registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(getattr(Stores, ROS_DISTRO_STORE))
    types: dict[str, Any] = {}
    for name, text in geographic_msgs_defs(third_party_dir).items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


# ---------------------------------------------------------------------------------------------------- stamps
def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (anything with ``sec``/``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(store, t_ns: int):
    """Integer nanoseconds -> ``builtin_interfaces/msg/Time`` of ``store``."""
    t_ns = int(t_ns)
    return store.types["builtin_interfaces/msg/Time"](sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)


def header(store, t_ns: int, frame_id: str):
    return store.types["std_msgs/msg/Header"](stamp=ns_to_stamp(store, t_ns), frame_id=frame_id)


# ---------------------------------------------------------------------------------------------------- images
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3}


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8; any row ``step``) -> ``uint8 H x W x 3`` RGB.

    Raises :class:`ImageError` for other encodings, 16-bit data or a data buffer shorter than ``step * height``.
    """
    enc = str(msg.encoding)
    if enc not in _CHANNELS:
        raise ImageError(f"sensor_msgs/Image: unsupported encoding {enc!r} (supported: {', '.join(_CHANNELS)})")
    h, w, step, c = int(msg.height), int(msg.width), int(msg.step), _CHANNELS[enc]
    if h <= 0 or w <= 0:
        raise ImageError(f"sensor_msgs/Image: empty image {w} x {h}")
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, dtype=np.uint8)
    if step < w * c or data.size < step * h:
        raise ImageError(f"sensor_msgs/Image: {data.size} data bytes for {w} x {h} {enc} with step {step} "
                         f"(need {step * h}); truncated message")
    rows = data[: step * h].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if c == 1:
        return np.repeat(rows, 3, axis=2)
    if enc.startswith("bgr"):
        return np.array(rows[:, :, 2::-1], order="C")  # a writable copy (the message buffer is read-only)
    return np.array(rows[:, :, :3], order="C")


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG/PNG) -> ``uint8 H x W x 3`` RGB (:class:`ImageError` if corrupt)."""
    from unifygeo_ros.image.preprocess import decode_image_bytes

    data = msg.data.tobytes() if isinstance(msg.data, np.ndarray) else bytes(msg.data)
    return decode_image_bytes(data, f"sensor_msgs/CompressedImage ({msg.format or 'no format'})")


def msg_to_rgb(msg: Any, msgtype: str) -> np.ndarray:
    """Decode an image message of either type to ``uint8 H x W x 3`` RGB."""
    if msgtype == IMAGE:
        return image_msg_to_rgb(msg)
    if msgtype == COMPRESSED_IMAGE:
        return compressed_msg_to_rgb(msg)
    raise ImageError(f"not an image message type: {msgtype}")


def rgb_to_image_msg(store, rgb: np.ndarray, t_ns: int, frame_id: str):
    """``uint8 H x W x 3`` RGB -> ``sensor_msgs/msg/Image`` (rgb8, step = 3 W, little-endian flag 0)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"expected H x W x 3 RGB, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    return store.types[IMAGE](header=header(store, t_ns, frame_id), height=h, width=w, encoding="rgb8",
                              is_bigendian=0, step=3 * w, data=rgb.reshape(-1))


def rgb_to_compressed_msg(store, rgb: np.ndarray, t_ns: int, frame_id: str, quality: int = 90):
    """``uint8 H x W x 3`` RGB -> ``sensor_msgs/msg/CompressedImage`` with ``format="rgb8; jpeg compressed bgr8"``
    (image_transport's spelling)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 always encodes uint8 BGR
        raise ImageError("JPEG encoding failed")
    return store.types[COMPRESSED_IMAGE](header=header(store, t_ns, frame_id),
                                         format="rgb8; jpeg compressed bgr8", data=buf.reshape(-1))


# ---------------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class TopicInfo:
    topic: str
    msgtype: str
    count: int


def describe_topics(topics: list[TopicInfo]) -> str:
    return ", ".join(f"{t.topic} ({t.msgtype}, {t.count} msgs)" for t in topics) or "none"



def _read_errors() -> tuple[type[BaseException], ...]:
    """Exceptions rosbags (and the storage libraries under it) raise on truncated or corrupt data."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag2 import ReaderError

    errors: tuple[type[BaseException], ...] = (AnyReaderError, ReaderError, sqlite3.DatabaseError, struct.error,
                                               EOFError, ValueError, KeyError, IndexError, AssertionError, OSError)
    try:  # rosbags reads sqlite3 through apsw
        import apsw

        errors += (apsw.Error,)
    except ImportError:  # pragma: no cover
        pass
    return errors


@contextmanager
def open_bag(path: str | Path, warnings: list[str] | None = None, salvage: bool = True) -> Iterator[Any]:
    """Open a rosbag2 folder (sqlite3 or MCAP) or a single ``.db3``/``.mcap`` file.

    First with rosbags' ``AnyReader`` (definitions embedded in the bag are used, the project typestore
    otherwise). When that fails (a sqlite3 file cut short, an MCAP without its summary/footer, a missing
    ``metadata.yaml``) and ``salvage`` is set, the storage file is read by a linear scan instead
    (:class:`SalvageReader`): every complete message before the damage is recovered and a note goes to
    ``warnings``. Raises :class:`BagError` with the path and the reason when nothing can be read.
    """
    from rosbags.highlevel import AnyReader

    p = Path(path)
    if not p.exists():
        raise BagError(f"bag not found: {p}")
    reader: Any
    try:
        reader = AnyReader([p], default_typestore=make_typestore())
        reader.open()
    except _read_errors() as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if not salvage:
            raise BagError(f"cannot open bag {p}: {reason} (truncated or corrupt?)") from exc
        try:
            reader = SalvageReader(p)
        except BagError as exc2:
            raise BagError(f"cannot open bag {p}: {reason}; salvage scan failed too: {exc2}") from exc
        note = (f"bag {p} is damaged or incomplete ({reason}); read by a linear salvage scan of "
                f"{reader.storage_file.name}: {reader.salvaged_messages} complete messages recovered")
        if reader.stop_reason:
            note += f", scan stopped at {reader.stop_reason}"
        if warnings is None:
            raise BagError(note) from exc
        warnings.append(note)
    try:
        yield reader
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - closing a corrupt bag must not hide the original error
            pass


def list_topics(reader: Any) -> list[TopicInfo]:
    """Topics of an open reader, sorted by name (counts from the bag's metadata/summary)."""
    seen: dict[tuple[str, str], int] = {}
    for c in reader.connections:
        seen[(c.topic, c.msgtype)] = seen.get((c.topic, c.msgtype), 0) + int(c.msgcount or 0)
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


# ---------------------------------------------------------------------------------------------------- salvage
@dataclass
class SalvageConnection:
    """The part of rosbags' ``Connection`` that the project reads."""

    id: int
    topic: str
    msgtype: str
    msgcount: int
    msgdef: str = ""


def _find_storage_file(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))
    if not files:
        raise BagError(f"no .mcap or .db3 storage file in {path}")
    return files[0]


class SalvageReader:
    """Reads the complete messages of a damaged rosbag2 storage file, in file order, with the interface of
    rosbags' ``AnyReader`` that replay uses (``connections``, ``messages(connections=)``, ``deserialize``).

    * sqlite3: the header's page count is set to the pages actually present (in a temporary copy) so SQLite
      opens the file, then the ``messages`` table is read in row order until the first damaged page.
    * MCAP: records are parsed from the start (schemas, channels, messages, chunks) until the first
      incomplete or corrupt one; the summary section and footer are not needed.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.storage_file = _find_storage_file(self.path)
        self.stop_reason = ""
        self._tmp: Path | None = None
        self.connections: list[SalvageConnection] = []
        self.typestore = make_typestore()
        if self.storage_file.suffix == ".db3":
            self._open_sqlite()
        elif self.storage_file.suffix == ".mcap":
            for _ in self._scan_mcap(count_only=True):  # a generator: run it to fill ``connections``
                pass
        else:
            raise BagError(f"unknown storage file type: {self.storage_file}")
        self.salvaged_messages = sum(c.msgcount for c in self.connections)
        if not self.connections:
            raise BagError(f"no topic definitions recoverable from {self.storage_file}")
        from rosbags.typesys import get_types_from_msg

        for c in self.connections:
            if c.msgtype not in self.typestore.types and c.msgdef:
                try:
                    self.typestore.register(get_types_from_msg(c.msgdef, c.msgtype))
                except Exception:  # noqa: BLE001 - an unparsable definition only matters if that topic is read
                    pass

    # -- sqlite3
    def _open_sqlite(self) -> None:
        import tempfile

        data = bytearray(self.storage_file.read_bytes())
        if len(data) < 100 or not data.startswith(b"SQLite format 3\x00"):
            raise BagError(f"{self.storage_file} is not an SQLite database (header missing)")
        page = struct.unpack(">H", data[16:18])[0]
        page = 65536 if page == 1 else page
        pages = len(data) // page
        data = data[: pages * page]
        data[28:32] = struct.pack(">I", pages)
        fd, name = tempfile.mkstemp(suffix=".db3", prefix="unifygeo_salvage_")
        with open(fd, "wb") as fh:
            fh.write(data)
        self._tmp = Path(name)
        self._db = sqlite3.connect(f"file:{self._tmp}?immutable=1", uri=True)
        try:
            topics = self._db.execute("SELECT id, name, type FROM topics").fetchall()
        except sqlite3.DatabaseError as exc:
            raise BagError(f"topics table unreadable in {self.storage_file}: {exc}") from exc
        defs: dict[str, str] = {}
        try:
            defs = dict(self._db.execute("SELECT topic_type, encoded_message_definition FROM message_definitions "
                                         "WHERE encoding = 'ros2msg'").fetchall())
        except sqlite3.DatabaseError:
            pass
        counts: dict[int, int] = {}
        try:
            for tid, _data in self._db.execute("SELECT topic_id, data FROM messages ORDER BY id"):
                counts[tid] = counts.get(tid, 0) + 1
        except sqlite3.DatabaseError as exc:
            self.stop_reason = f"a damaged page of the messages table ({exc})"
        self.connections = [SalvageConnection(i, n, t, counts.get(i, 0), defs.get(t, "")) for i, n, t in topics]

    def _sqlite_messages(self, ids: dict[int, SalvageConnection]):
        q = "SELECT topic_id, timestamp, data FROM messages ORDER BY id"
        try:
            for tid, t_ns, data in self._db.execute(q):
                if tid in ids:
                    yield ids[tid], int(t_ns), bytes(data)
        except sqlite3.DatabaseError:
            return  # the damage point found when opening

    # -- MCAP
    def _scan_mcap(self, count_only: bool, ids: dict[int, SalvageConnection] | None = None):
        """Parse the records of the MCAP file. With ``count_only`` fill ``connections``; else yield messages."""
        gen = self._mcap_records()
        schemas: dict[int, tuple[str, str]] = {}
        counts: dict[int, int] = {}
        for op, body in gen:
            if op == 0x03 and count_only:
                sid = struct.unpack_from("<H", body)[0]
                name, off = _mcap_str(body, 2)
                _enc, off = _mcap_str(body, off)
                (n,) = struct.unpack_from("<I", body, off)
                schemas[sid] = (name, bytes(body[off + 4: off + 4 + n]).decode())
            elif op == 0x04 and count_only:
                cid, sid = struct.unpack_from("<HH", body)
                topic, _ = _mcap_str(body, 4)
                name, text = schemas.get(sid, ("", ""))
                if name and all(c.id != cid for c in self.connections):
                    self.connections.append(SalvageConnection(cid, topic, name, 0, text))
            elif op == 0x05:
                cid, _seq, log_time = struct.unpack_from("<HIQ", body)
                if count_only:
                    counts[cid] = counts.get(cid, 0) + 1
                elif ids is not None and cid in ids:
                    yield ids[cid], int(log_time), bytes(body[22:])
        if count_only:
            for c in self.connections:
                c.msgcount = counts.get(c.id, 0)

    def _mcap_records(self):
        data = memoryview(self.storage_file.read_bytes())
        magic = b"\x89MCAP0\r\n"
        if bytes(data[:8]) != magic:
            raise BagError(f"{self.storage_file} is not an MCAP file (magic missing)")
        stack = [(data, 8)]
        while stack:
            buf, off = stack.pop()
            while off < len(buf):
                if stack and len(buf) - off < 9:  # a cut chunk's last, incomplete record
                    break
                if len(buf) - off < 9:
                    self.stop_reason = self.stop_reason or f"byte {off}: incomplete record header"
                    return
                op = buf[off]
                (n,) = struct.unpack_from("<Q", buf, off + 1)
                cut = off + 9 + n > len(buf)
                if cut and stack:  # inside a (cut) chunk: its last record is incomplete
                    break
                if cut and op != 0x06:
                    self.stop_reason = self.stop_reason or f"byte {off}: record (op 0x{op:02x}) cut short"
                    return
                body = buf[off + 9: off + 9 + n]
                if cut:  # the last chunk, cut: recover its complete records, then stop
                    self.stop_reason = f"byte {off}: chunk cut short after {len(body)} of {n} bytes"
                    buf = memoryview(b"")
                off += 9 + n
                if op == 0x06:
                    try:
                        inner = _mcap_chunk_records(body, partial=cut)
                    except Exception as exc:  # noqa: BLE001 - a corrupt chunk ends the salvage
                        self.stop_reason = self.stop_reason or f"byte {off}: corrupt chunk ({exc})"
                        return
                    stack.append((buf, off))
                    buf, off = memoryview(inner), 0
                    continue
                if op == 0x02:  # footer
                    return
                yield op, body

    # -- AnyReader interface
    def messages(self, connections=None):
        conns = self.connections if connections is None else connections
        ids = {c.id: c for c in conns}
        if self.storage_file.suffix == ".db3":
            yield from self._sqlite_messages(ids)
        else:
            yield from self._scan_mcap(count_only=False, ids=ids)

    def deserialize(self, raw: bytes, msgtype: str):
        return self.typestore.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        if self.storage_file.suffix == ".db3":
            self._db.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _mcap_str(body, off: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", body, off)
    return bytes(body[off + 4: off + 4 + n]).decode(), off + 4 + n


def _mcap_chunk_records(body, partial: bool = False) -> bytes:
    """Uncompressed records of a chunk record body; of a cut (``partial``) one, as much as decodes."""
    _start, _end, size, _crc = struct.unpack_from("<QQQI", body)
    compression, off = _mcap_str(body, 28)
    (n,) = struct.unpack_from("<Q", body, off)
    raw = bytes(body[off + 8: off + 8 + n])
    if compression == "":
        return raw
    if compression == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd  # type: ignore[import-not-found,no-redef]
        return zstd.ZstdDecompressor().decompress(raw) if partial else zstd.decompress(raw)
    if compression == "lz4":
        from lz4.frame import LZ4FrameDecompressor, decompress

        return LZ4FrameDecompressor().decompress(raw) if partial else decompress(raw)
    raise ValueError(f"unsupported chunk compression {compression!r}")
