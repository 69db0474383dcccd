"""Reading what is left of a damaged rosbag2 storage file: a linear scan of a cut or corrupt sqlite3 ``.db3``
or MCAP file that recovers every complete message before the damage.

:func:`unifygeo_ros.rosbag.io.open_bag` falls back to :class:`SalvageReader` when rosbags' ``AnyReader`` cannot
open a bag (a sqlite3 file cut short, an MCAP without its summary/footer, a missing ``metadata.yaml``).
"""
from __future__ import annotations

import sqlite3
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from unifygeo_ros.rosbag.mcap_check import (MCAP_MAGIC, MESSAGE_HEADER_BYTES, OP_CHANNEL, OP_CHUNK, OP_FOOTER,
                                             OP_MESSAGE, OP_SCHEMA, RECORD_HEADER_BYTES, chunk_records, decompress,
                                             parse_chunk)
from unifygeo_ros.rosbag.msgtypes import BagError, make_typestore

SQLITE_MAGIC = b"SQLite format 3\x00"


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


def _sqlite_copy_with_present_pages(storage_file: Path) -> Path:
    """A temporary copy of a (cut) sqlite3 file whose header's page count is the number of whole pages present,
    so that SQLite opens it. The caller deletes the copy."""
    data = bytearray(storage_file.read_bytes())
    if len(data) < 100 or not data.startswith(SQLITE_MAGIC):
        raise BagError(f"{storage_file} is not an SQLite database (header missing)")
    page_bytes = struct.unpack(">H", data[16:18])[0]
    page_bytes = 65536 if page_bytes == 1 else page_bytes
    pages = len(data) // page_bytes
    data = data[: pages * page_bytes]
    data[28:32] = struct.pack(">I", pages)
    fd, name = tempfile.mkstemp(suffix=".db3", prefix="unifygeo_salvage_")
    with open(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


class SalvageReader:
    """Reads the complete messages of a damaged rosbag2 storage file, in file order, with the interface of
    rosbags' ``AnyReader`` that replay uses (``connections``, ``messages(connections=)``, ``deserialize``).

    * sqlite3: the header's page count is set to the pages actually present (in a temporary copy) so SQLite
      opens the file, then the ``messages`` table is read in row order until the first damaged page.
    * MCAP: records are parsed from the start (schemas, channels, messages, chunks) until the first
      incomplete one; the summary section and footer are not needed. A corrupt chunk (undecodable, wrong size,
      or a CRC mismatch: :mod:`unifygeo_ros.rosbag.mcap_check`) is skipped and the scan goes on after it.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.storage_file = _find_storage_file(self.path)
        self.stop_reason = ""
        self.skipped_chunks: dict[int, str] = {}  # MCAP: byte offset of each corrupt chunk skipped -> why
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
        self._register_embedded_definitions()

    def _register_embedded_definitions(self) -> None:
        """Types the project typestore lacks, from the definitions stored in the bag."""
        # rosbags is an optional extra (``pip install .[bags]``); make_typestore above has imported it already
        from rosbags.typesys import get_types_from_msg

        for c in self.connections:
            if c.msgtype not in self.typestore.types and c.msgdef:
                try:
                    self.typestore.register(get_types_from_msg(c.msgdef, c.msgtype))
                except Exception:  # noqa: BLE001 - an unparsable definition only matters if that topic is read
                    pass

    # -- sqlite3
    def _open_sqlite(self) -> None:
        self._tmp = _sqlite_copy_with_present_pages(self.storage_file)
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

    def _sqlite_messages(self, ids: dict[int, SalvageConnection]) -> Iterator[tuple[SalvageConnection, int, bytes]]:
        q = "SELECT topic_id, timestamp, data FROM messages ORDER BY id"
        try:
            for tid, t_ns, data in self._db.execute(q):
                if tid in ids:
                    yield ids[tid], int(t_ns), bytes(data)
        except sqlite3.DatabaseError:
            return  # the damage point found when opening

    # -- MCAP
    def _scan_mcap(self, count_only: bool, ids: dict[int, SalvageConnection] | None = None
                   ) -> Iterator[tuple[SalvageConnection, int, bytes]]:
        """Parse the records of the MCAP file. With ``count_only`` fill ``connections``; else yield messages."""
        schemas: dict[int, tuple[str, str]] = {}
        counts: dict[int, int] = {}
        for op, body in self._mcap_records():
            if op == OP_SCHEMA and count_only:
                sid = struct.unpack_from("<H", body)[0]
                schemas[sid] = _mcap_schema(body)
            elif op == OP_CHANNEL and count_only:
                cid, sid = struct.unpack_from("<HH", body)
                topic, _ = _mcap_str(body, 4)
                name, text = schemas.get(sid, ("", ""))
                if name and all(c.id != cid for c in self.connections):
                    self.connections.append(SalvageConnection(cid, topic, name, 0, text))
            elif op == OP_MESSAGE:
                cid, _seq, log_time_ns = struct.unpack_from("<HIQ", body)
                if count_only:
                    counts[cid] = counts.get(cid, 0) + 1
                elif ids is not None and cid in ids:
                    yield ids[cid], int(log_time_ns), bytes(body[MESSAGE_HEADER_BYTES:])
        if count_only:
            for c in self.connections:
                c.msgcount = counts.get(c.id, 0)

    def _mcap_records(self) -> Iterator[tuple[int, memoryview]]:
        """``(opcode, body)`` of every complete record, chunks opened, until the footer or the damage (which
        sets ``stop_reason``)."""
        data = memoryview(self.storage_file.read_bytes())
        if bytes(data[:len(MCAP_MAGIC)]) != MCAP_MAGIC:
            raise BagError(f"{self.storage_file} is not an MCAP file (magic missing)")
        head = RECORD_HEADER_BYTES
        stack = [(data, len(MCAP_MAGIC))]
        while stack:
            buf, off = stack.pop()
            while off < len(buf):
                if stack and len(buf) - off < head:  # a cut chunk's last, incomplete record
                    break
                if len(buf) - off < head:
                    self.stop_reason = self.stop_reason or f"byte {off}: incomplete record header"
                    return
                op = buf[off]
                (n,) = struct.unpack_from("<Q", buf, off + 1)
                cut = off + head + n > len(buf)
                if cut and stack:  # inside a (cut) chunk: its last record is incomplete
                    break
                if cut and op != OP_CHUNK:
                    self.stop_reason = self.stop_reason or f"byte {off}: record (op 0x{op:02x}) cut short"
                    return
                body = buf[off + head: off + head + n]
                if cut:  # the last chunk, cut: recover its complete records, then stop
                    self.stop_reason = f"byte {off}: chunk cut short after {len(body)} of {n} bytes"
                    buf = memoryview(b"")
                off += head + n
                if op == OP_CHUNK:
                    inner = self._chunk(body, cut, off - head - n)
                    if inner is None:  # corrupt: skipped, the scan goes on with the next record
                        continue
                    stack.append((buf, off))
                    buf, off = memoryview(inner), 0
                    continue
                if op == OP_FOOTER:
                    return
                yield op, body

    def _chunk(self, body: memoryview, cut: bool, offset: int) -> bytes | None:
        """The records of a chunk: of a cut one, as much as decodes; None for a corrupt one
        (:func:`~unifygeo_ros.rosbag.mcap_check.chunk_records`: undecodable, wrong size or CRC), whose offset goes
        to ``skipped_chunks``."""
        if cut:
            try:
                chunk = parse_chunk(body, partial=True)
                return decompress(chunk.compression, chunk.data, partial=True)
            except Exception:  # noqa: BLE001 - a cut chunk that does not decode at all gives nothing
                return b""
        records, reason = chunk_records(body)
        if records is None and offset not in self.skipped_chunks:
            self.skipped_chunks[offset] = reason
        return records

    # -- AnyReader interface
    def messages(self, connections: list[SalvageConnection] | None = None
                 ) -> Iterator[tuple[SalvageConnection, int, bytes]]:
        conns = self.connections if connections is None else connections
        ids = {c.id: c for c in conns}
        if self.storage_file.suffix == ".db3":
            yield from self._sqlite_messages(ids)
        else:
            yield from self._scan_mcap(count_only=False, ids=ids)

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        return self.typestore.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        if self.storage_file.suffix == ".db3":
            self._db.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _mcap_str(body: memoryview | bytes, off: int) -> tuple[str, int]:
    """The length-prefixed string at ``off`` and the offset after it."""
    (n,) = struct.unpack_from("<I", body, off)
    return bytes(body[off + 4: off + 4 + n]).decode(), off + 4 + n


def _mcap_schema(body: memoryview | bytes) -> tuple[str, str]:
    """``(type name, definition text)`` of a schema record body."""
    name, off = _mcap_str(body, 2)
    _encoding, off = _mcap_str(body, off)
    (n,) = struct.unpack_from("<I", body, off)
    return name, bytes(body[off + 4: off + 4 + n]).decode()
