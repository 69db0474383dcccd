"""What an encoded image's header says, read without decoding: its format (by signature) and its size.

ROS-free and torch-free. The decoder (:mod:`~unifygeo_ros.image.preprocess`) accepts JPEG and PNG only, and only
after their header has announced a size it accepts; these functions read that header as the decoders do.
"""
from __future__ import annotations

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG markers without a length field (TEM, RST0..7, SOI) and the start-of-frame markers (SOF0..15 less DHT, JPG
#: and DAC), whose segment holds the image's height and width
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD9)))
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: signatures of formats OpenCV would decode but the decoder refuses (named in its error message)
_OTHER_FORMATS: dict[str, tuple[bytes, ...]] = {
    "a Radiance HDR image": (b"#?RADIANCE", b"#?RGBE"), "a PFM image": (b"PF\n", b"Pf\n", b"PF\r", b"Pf\r"),
    "a TIFF image": (b"II*\x00", b"MM\x00*"), "a BMP image": (b"BM",), "a GIF image": (b"GIF87a", b"GIF89a"),
    "a PNM/PAM image": tuple(b"P%d" % n for n in range(1, 8)), "a JPEG 2000 image": (b"\x00\x00\x00\x0cjP  ",),
    "an OpenEXR image": (b"v/1\x01",),
}


def encoded_format(data: bytes) -> str | None:
    """``"JPEG"`` or ``"PNG"`` by the data's signature (not by a file name or a message's ``format``), else None."""
    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data.startswith(JPEG_SOI):
        return "JPEG"
    return None


def jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG's start-of-frame segment, found by walking the marker segments as libjpeg does
    (ITU T.81 B.1.1.2: any number of 0xFF fill bytes may precede a marker; SOI, TEM and RSTn stand alone).
    ``None`` when no frame header comes before the scan data, or the walk meets bytes that are not a marker
    (libjpeg would skip them with a warning: refused rather than guessed)."""
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            return None
        while i < len(data) and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= len(data):
            return None
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD9, 0xDA) or i + 2 > len(data):  # stuffed zero, end of image, scan: no frame header
            return None
        length = int.from_bytes(data[i:i + 2], "big")
        if length < 2:
            return None
        if marker in _JPEG_SOF:  # length, precision, height, width
            if length < 7 or i + 7 > len(data):
                return None
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 3:i + 5], "big")
        i += length
    return None


def announced_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a JPEG's SOF or a PNG's IHDR announces; ``None`` for any other data and for a JPEG/PNG
    whose header cannot be read."""
    fmt = encoded_format(data)
    if fmt == "PNG":
        if len(data) < 24 or data[12:16] != b"IHDR":  # libpng requires IHDR as the first chunk
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return jpeg_frame_size(data) if fmt == "JPEG" else None


def describe_other_format(data: bytes) -> str:
    """What a byte string that is neither JPEG nor PNG looks like, for an error message."""
    for name, signatures in _OTHER_FORMATS.items():
        if data.startswith(signatures):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image"
    return "corrupt, or not an image"
