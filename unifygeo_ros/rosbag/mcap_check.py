"""The chunks of an MCAP storage file, checked before a replay trusts their bytes.

An MCAP chunk record carries the CRC-32 of its uncompressed records (https://mcap.dev/spec, "Chunk"); rosbag2's
recorder (the mcap C++ writer) fills it, rosbags' writer leaves it 0 ("not computed"). rosbags checks a non-zero
CRC only when it decodes the chunk, part-way through a replay, and then stops reading the bag. Here every chunk is
checked up front, one chunk in memory at a time: a chunk is **corrupt** when it cannot be decompressed, its
decompressed size differs from the size it records, or its CRC is non-zero and differs. A corrupt chunk's
messages are counted from the MessageIndex records that follow it (what a reader loses by skipping it).

:func:`write_chunk_crcs` fills the CRCs a writer left at 0 (``unifygeo bag synth``'s bags, tests), so that damage
inside their chunks can be detected later. A chunk without a CRC can only be checked for decodability: a flipped
byte inside an uncompressed one goes unnoticed (:attr:`McapCheck.without_crc` counts them).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

MCAP_MAGIC = b"\x89MCAP0\r\n"
#: record opcodes read here and by the salvage scan
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_MESSAGE_INDEX = 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
RECORD_HEADER_BYTES = 9  # opcode (1) + body length (8)
MESSAGE_HEADER_BYTES = 22  # channel id (2) + sequence (4) + log time (8) + publish time (8)
CHUNK_CRC_OFFSET = 24  # in a chunk body: message start (8), end (8), uncompressed size (8), then the CRC (4)
MESSAGE_INDEX_ENTRY_BYTES = 16  # log time (8) + offset (8)


@dataclass
class ChunkBody:
    """The fields of a chunk record body (``data`` still compressed)."""

    start_ns: int
    end_ns: int
    uncompressed_bytes: int
    crc: int
    compression: str
    data: bytes


def parse_chunk(body: bytes | memoryview, partial: bool = False) -> ChunkBody:
    """The fields of a chunk record body; ``struct.error``/``ValueError`` when it is too short (its data may be
    short when ``partial``: a chunk cut by the end of the file)."""
    start, end, size, crc = struct.unpack_from("<QQQI", body)
    (n,) = struct.unpack_from("<I", body, 28)
    compression = bytes(body[32: 32 + n]).decode()
    (m,) = struct.unpack_from("<Q", body, 32 + n)
    data = bytes(body[40 + n: 40 + n + m])
    if len(data) != m and not partial:
        raise ValueError(f"chunk data cut short ({len(data)} of {m} bytes)")
    return ChunkBody(start, end, size, crc, compression, data)


def decompress(compression: str, raw: bytes, partial: bool = False) -> bytes:
    """The records of a chunk's data; of a cut (``partial``) one, as much as decodes."""
    if compression == "":
        return raw
    if compression == "zstd":
        # optional decompressors, imported only for a chunk that needs them: zstd is in the standard library
        # from Python 3.14 (compression.zstd), a backport before
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd  # type: ignore[import-not-found,no-redef]
        return zstd.ZstdDecompressor().decompress(raw) if partial else zstd.decompress(raw)
    if compression == "lz4":
        from lz4.frame import LZ4FrameDecompressor, decompress as lz4_decompress  # optional: lz4 chunks only

        return LZ4FrameDecompressor().decompress(raw) if partial else lz4_decompress(raw)
    raise ValueError(f"unsupported chunk compression {compression!r}")


def chunk_records(body: bytes | memoryview) -> tuple[bytes | None, str]:
    """``(records, "")`` of an intact chunk body, ``(None, reason)`` of a corrupt one (module docstring)."""
    try:
        chunk = parse_chunk(body)
        records = decompress(chunk.compression, chunk.data)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the chunk is corrupt
        return None, f"undecodable ({type(exc).__name__}: {exc})"
    if len(records) != chunk.uncompressed_bytes:
        return None, f"size mismatch ({len(records)} bytes decoded, {chunk.uncompressed_bytes} recorded)"
    if chunk.crc and zlib.crc32(records) != chunk.crc:
        return None, "CRC mismatch"
    return records, ""


@dataclass
class CorruptChunk:
    """One corrupt chunk: where it is, why, and the messages it indexed (channel id -> count)."""

    offset: int
    reason: str
    messages: dict[int, int] = field(default_factory=dict)


@dataclass
class McapCheck:
    """What :func:`check_mcap` found in one MCAP file."""

    file: str
    chunks: int = 0
    without_crc: int = 0
    corrupt: list[CorruptChunk] = field(default_factory=list)
    topics: dict[int, str] = field(default_factory=dict)  # channel id -> topic (top-level channel records)
    stopped: str = ""  # why the scan ended before the footer (a cut file), "" when it reached it

    @property
    def messages_lost(self) -> int:
        return sum(sum(c.messages.values()) for c in self.corrupt)

    def lost_by_topic(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.corrupt:
            for cid, n in c.messages.items():
                name = self.topics.get(cid, f"channel {cid}")
                out[name] = out.get(name, 0) + n
        return out

    def describe_corrupt(self) -> str:
        """How many chunks are corrupt, why, and the messages they hold by topic (part of one line)."""
        lost = ", ".join(f"{t} {n}" for t, n in sorted(self.lost_by_topic().items())) or "none indexed"
        first = self.corrupt[0]
        return (f"{len(self.corrupt)} of {self.chunks} MCAP chunks of {Path(self.file).name} are corrupt (first at "
                f"byte {first.offset}: {first.reason}), {self.messages_lost} messages in them ({lost})")

    def to_json(self) -> dict:
        return {"file": Path(self.file).name, "chunks": self.chunks, "chunks_without_crc": self.without_crc,
                "chunks_corrupt": len(self.corrupt), "messages_lost": self.messages_lost,
                "messages_lost_by_topic": self.lost_by_topic(),
                "corrupt": [{"offset": c.offset, "reason": c.reason} for c in self.corrupt],
                "scan_stopped": self.stopped or None}


def _records(fh: BinaryIO, size: int, check: McapCheck) -> Iterator[tuple[int, int, bytes | None]]:
    """``(offset, opcode, body)`` of the top-level records (body None for the ones not needed), until the footer
    or a record cut short (which sets ``check.stopped``)."""
    off = len(MCAP_MAGIC)
    while off + RECORD_HEADER_BYTES <= size:
        fh.seek(off)
        op, n = struct.unpack("<BQ", fh.read(RECORD_HEADER_BYTES))
        end = off + RECORD_HEADER_BYTES + n
        if end > size:
            check.stopped = f"byte {off}: record (op 0x{op:02x}) cut short"
            return
        if op == OP_FOOTER:
            return
        body = fh.read(n) if op in (OP_CHANNEL, OP_CHUNK, OP_MESSAGE_INDEX) else None
        yield off, op, body
        off = end
    check.stopped = f"byte {off}: no footer"


def check_mcap(path: str | Path) -> McapCheck:
    """Check every chunk of an MCAP file (module docstring); a file that is not MCAP gives an empty check."""
    path = Path(path)
    check = McapCheck(str(path))
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if fh.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
            check.stopped = "not an MCAP file (magic missing)"
            return check
        last: CorruptChunk | None = None  # the MessageIndex records after a chunk belong to it
        for off, op, body in _records(fh, size, check):
            if op == OP_MESSAGE_INDEX and last is not None and body is not None and len(body) >= 6:
                cid, n = struct.unpack_from("<HI", body)
                last.messages[cid] = last.messages.get(cid, 0) + n // MESSAGE_INDEX_ENTRY_BYTES
                continue
            last = None
            if op == OP_CHANNEL and body is not None and len(body) >= 8:
                cid, _sid, n = struct.unpack_from("<HHI", body)
                check.topics[cid] = bytes(body[8: 8 + n]).decode(errors="replace")
            elif op == OP_CHUNK and body is not None:
                check.chunks += 1
                if len(body) >= CHUNK_CRC_OFFSET + 4 and not struct.unpack_from("<I", body, CHUNK_CRC_OFFSET)[0]:
                    check.without_crc += 1
                _, reason = chunk_records(body)
                if reason:
                    last = CorruptChunk(off, reason)
                    check.corrupt.append(last)
    return check


def write_chunk_crcs(path: str | Path) -> int:
    """Fill the CRC of every decodable chunk whose CRC is 0, in place; returns how many were written."""
    path = Path(path)
    check = McapCheck(str(path))
    written = 0
    with open(path, "r+b") as fh:
        if fh.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
            raise ValueError(f"{path} is not an MCAP file")
        for off, op, body in _records(fh, path.stat().st_size, check):  # seeks to each record: writes are safe
            if op != OP_CHUNK or body is None or struct.unpack_from("<I", body, CHUNK_CRC_OFFSET)[0]:
                continue
            records, _reason = chunk_records(body)
            if records is None:
                continue
            fh.seek(off + RECORD_HEADER_BYTES + CHUNK_CRC_OFFSET)
            fh.write(struct.pack("<I", zlib.crc32(records)))
            written += 1
    return written
