"""Surface-height files next to aerial tiles: the optional 4th input channel of a height-aware model.

A model trained with ``model.aerial_height`` sees each aerial tile as RGB plus the surface height above the
ground (a normalised DSM, "nDSM": roofs, trees, cars; 0 on the street). In the VIGOR layout the height of
``<City>/satellite/<name>.png`` is ``<City>/satellite_height/<stem>.png``: a single-channel **16-bit** PNG (or
TIFF) in **centimetres**, same size and pixel grid as the tile (north-up, row 0 = north); a float ``.npy``
in metres (read with ``allow_pickle=False``) is accepted as well. ``unifygeo synth`` writes them; a user with
a DSM/DTM of their map writes ``DSM - DTM`` the same way, or gives ``unifygeo index build --dsm`` a raster.

Internally the height travels with the tile as a packed uint8 4th channel
(:func:`unifygeo_ros.image.preprocess.with_height`, 0.5 m steps up to 127.5 m).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from unifygeo_ros.errors import DataFormatError
from unifygeo_ros.image.preprocess import load_image, with_height

HEIGHT_DIR = "satellite_height"
HEIGHT_EXTENSIONS = (".png", ".tif", ".tiff", ".npy")
CM_PER_M = 100.0


def height_candidates(tile_path: str | os.PathLike) -> list[Path]:
    """Where the height of a tile may be: ``../satellite_height/<stem>{.png,.tif,.tiff,.npy}``."""
    p = Path(tile_path)
    d = p.parent.parent / HEIGHT_DIR
    return [d / (p.stem + ext) for ext in HEIGHT_EXTENSIONS]


def find_height_file(tile_path: str | os.PathLike) -> Path:
    """The height file of a tile; :class:`DataFormatError` naming where it was looked for when there is none."""
    cands = height_candidates(tile_path)
    for c in cands:
        if c.is_file():
            return c
    raise DataFormatError(f"no surface height for aerial tile {tile_path}: looked for {cands[0]} "
                          f"(or {', '.join(c.suffix for c in cands[1:])}); this model (model.aerial_height) needs "
                          "the height above ground of every tile (docs/DATA_FORMAT.md)")


def load_height(path: str | os.PathLike) -> np.ndarray:
    """A height file -> float32 (H, W) metres above ground. 16-bit PNG/TIFF in centimetres, or ``.npy`` metres."""
    p = Path(path)
    if p.suffix == ".npy":
        try:
            h = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"cannot read height map {p}: {exc}") from None
        h = np.asarray(h, dtype=np.float32)
    else:
        data = np.fromfile(str(p), dtype=np.uint8) if p.is_file() else None
        if data is None:
            raise DataFormatError(f"height map not found: {p}")
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DataFormatError(f"cannot decode height map {p} (truncated or not an image)")
        if img.ndim != 2:
            raise DataFormatError(f"height map {p}: expected one channel, got shape {img.shape}")
        if img.dtype != np.uint16:
            raise DataFormatError(f"height map {p}: expected a 16-bit image in centimetres, got {img.dtype}")
        h = img.astype(np.float32) / CM_PER_M
    if h.ndim != 2 or h.size == 0:
        raise DataFormatError(f"height map {p}: expected H x W, got shape {h.shape}")
    if not np.all(np.isfinite(h)):
        raise DataFormatError(f"height map {p}: contains NaN or infinite values")
    return h


def write_height_png(path: str | os.PathLike, height_m: np.ndarray) -> None:
    """Write a height map (metres above ground) as a 16-bit PNG in centimetres (0 .. 655.35 m)."""
    cm = np.clip(np.rint(np.asarray(height_m, np.float64) * CM_PER_M), 0, 65535).astype(np.uint16)
    ok, buf = cv2.imencode(".png", cm, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise DataFormatError(f"could not encode {path}")
    Path(path).write_bytes(buf.tobytes())


def load_aerial(tile_path: str | os.PathLike, height: bool = False) -> np.ndarray:
    """An aerial tile as ``uint8 (H, W, 3)`` RGB, or with ``height`` ``(H, W, 4)``: RGB + packed height."""
    rgb = load_image(tile_path)
    if not height:
        return rgb
    h = load_height(find_height_file(tile_path))
    if h.shape != rgb.shape[:2] and abs(h.shape[0] / h.shape[1] - rgb.shape[0] / rgb.shape[1]) > 0.02:
        raise DataFormatError(f"height map of {tile_path} is {h.shape[1]}x{h.shape[0]}, the tile "
                              f"{rgb.shape[1]}x{rgb.shape[0]}: they must cover the same ground")
    return with_height(rgb, h)


__all__ = ["HEIGHT_DIR", "find_height_file", "height_candidates", "load_aerial", "load_height",
           "write_height_png"]
