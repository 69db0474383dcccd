"""A synthetic city's files: the VIGOR file names of tiles and panoramas (lat/lon with ``LATLON_DECIMALS``
decimals) and their parsers, the made-up geographic origin of a city, positions snapped to what the names
state, random panorama ids, and the PNG / JPEG / text writers (byte-deterministic).
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import DataFormatError, UnifyGeoError

LATLON_DECIMALS = 8  # 1e-8 deg < 1.2 mm: names round-trip to well under 1 cm
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


# ---------------------------------------------------------------------------------------------- names
def fmt_deg(x: float) -> str:
    """A latitude or longitude as written in the file names."""
    return f"{x:.{LATLON_DECIMALS}f}"


def satellite_name(lat: float, lon: float) -> str:
    """``satellite_<lat>_<lon>.png`` of the tile centred at (lat, lon)."""
    return f"satellite_{fmt_deg(lat)}_{fmt_deg(lon)}.png"


def panorama_name(panoid: str, lat: float, lon: float) -> str:
    """``<panoid>,<lat>,<lon>,.jpg`` of the panorama taken at (lat, lon)."""
    return f"{panoid},{fmt_deg(lat)},{fmt_deg(lon)},.jpg"


def parse_satellite_name(name: str) -> tuple[float, float]:
    """``satellite_<lat>_<lon>.png`` -> (lat, lon)."""
    base = os.path.basename(name)
    if not (base.startswith("satellite_") and base.endswith(".png")):
        raise DataFormatError(f"not a satellite tile name: {name!r}")
    lat, lon = base[len("satellite_"):-len(".png")].split("_")
    return float(lat), float(lon)


def parse_panorama_name(name: str) -> tuple[str, float, float]:
    """``<panoid>,<lat>,<lon>,.jpg`` -> (panoid, lat, lon)."""
    parts = os.path.basename(name).split(",")
    if len(parts) != 4 or parts[3] != ".jpg":
        raise DataFormatError(f"not a panorama name: {name!r}")
    return parts[0], float(parts[1]), float(parts[2])


def origin_for_seed(seed: int) -> tuple[float, float]:
    """A made-up geographic origin (south-west corner) for a synthetic city: somewhere at northern
    mid-latitudes, determined by the seed."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x0121])
    return float(np.round(rng.uniform(28.0, 52.0), 6)), float(np.round(rng.uniform(-124.0, -70.0), 6))


def snap_to_names(enu: geo.LocalENU, east, north):
    """ENU -> rounded lat/lon -> ENU: positions exactly as the file names state them."""
    lat, lon = enu.from_en(np.asarray(east, float), np.asarray(north, float))
    lat, lon = np.round(lat, LATLON_DECIMALS), np.round(lon, LATLON_DECIMALS)
    e2, n2 = enu.to_en(lat, lon)
    return np.asarray(lat), np.asarray(lon), np.asarray(e2), np.asarray(n2)


def new_pano_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct random 22-character panorama ids (the length of VIGOR's)."""
    alphabet = np.array(list(_ID_ALPHABET))
    ids, seen = [], set()
    while len(ids) < n:
        s = "".join(alphabet[rng.integers(0, len(alphabet), 22)])
        if s not in seen:
            seen.add(s)
            ids.append(s)
    return ids


# ---------------------------------------------------------------------------------------------- writing
def write_png(path: str, rgb: np.ndarray):
    """Write an RGB image as PNG (compression 3)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise UnifyGeoError(f"could not encode {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def write_jpg(path: str, rgb: np.ndarray, quality: int):
    """Write an RGB image as JPEG of the given quality."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise UnifyGeoError(f"could not encode {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def write_lines(path: str, lines):
    """Write text lines, each ended by a newline (UTF-8, ``\\n`` on every platform)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for ln in lines:
            f.write(ln + "\n")
