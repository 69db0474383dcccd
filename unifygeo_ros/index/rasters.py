"""Geo-referenced rasters for orthophoto tile sources: a GeoTIFF (through rasterio, windowed) or a PNG/JPEG with
a world file (``.pgw``/``.jgw``/``.wld``, optional ``.prj`` for its CRS), opened as one :class:`Raster` - size,
pixel -> CRS affine, CRS and a windowed reader - for RGB orthophotos and for surface models (heights in metres).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from unifygeo_ros.errors import DataFormatError, ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
WORLD_FILE_SUFFIXES = {".png": (".pgw", ".pngw", ".wld"), ".jpg": (".jgw", ".jpgw", ".wld"),
                       ".jpeg": (".jgw", ".jpegw", ".wld"), ".tif": (".tfw", ".tifw", ".wld"),
                       ".tiff": (".tfw", ".tiffw", ".wld")}


@dataclass
class Raster:
    """A geo-referenced raster: size, pixel -> CRS affine, CRS, and a windowed reader.

    ``transform = (a, b, c, d, e, f)`` maps continuous pixel coordinates (``col``, ``row``; (0, 0) is the
    outer corner of the upper-left pixel, GDAL's convention) to CRS coordinates:
    ``x = a*col + b*row + c``, ``y = d*col + e*row + f``.
    """

    width: int
    height: int
    transform: tuple[float, float, float, float, float, float]
    crs_wkt: str
    read_window: Callable[[int, int, int, int], np.ndarray]  # (col0, row0, col1, row1) -> RGB uint8

    def pixel_to_crs(self, col, row):
        a, b, c, d, e, f = self.transform
        return a * col + b * row + c, d * col + e * row + f

    def crs_to_pixel(self, x, y):
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        dx, dy = np.asarray(x) - c, np.asarray(y) - f
        return (e * dx - b * dy) / det, (-d * dx + a * dy) / det


def read_world_file(path: str | Path) -> tuple[float, float, float, float, float, float]:
    """A world file (6 numbers: A, D, B, E, C, F; C/F = centre of the upper-left pixel) -> corner affine."""
    try:
        values = [float(v) for v in Path(path).read_text().split()]
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"cannot read world file {path}: {exc}") from exc
    if len(values) != 6:
        raise DataFormatError(f"world file {path} must hold 6 numbers, found {len(values)}")
    a, d, b, e, c, f = values
    if a * e - b * d == 0.0:
        raise DataFormatError(f"world file {path} describes a degenerate (zero-area) pixel")
    return (a, b, c - 0.5 * a - 0.5 * b, d, e, f - 0.5 * d - 0.5 * e)


def write_world_file(path: str | Path, transform: tuple[float, float, float, float, float, float]) -> None:
    """Inverse of :func:`read_world_file` (used by tests and the demo)."""
    a, b, c, d, e, f = transform
    lines = [a, d, b, e, c + 0.5 * a + 0.5 * b, f + 0.5 * d + 0.5 * e]
    Path(path).write_text("\n".join(repr(float(v)) for v in lines) + "\n")


def _find_world_file(image: Path) -> Path | None:
    for suffix in WORLD_FILE_SUFFIXES.get(image.suffix.lower(), (".wld",)):
        for candidate in (image.with_suffix(suffix), image.with_suffix(suffix.upper()),
                          image.with_name(image.name + suffix)):
            if candidate.exists():
                return candidate
    return None


def crs_wkt(crs: str | None) -> str:
    """WKT of a CRS given in any form pyproj reads (``"EPSG:32633"``, WKT, PROJ string)."""
    import pyproj  # optional (setup.py extra "ortho"): only orthophoto sources need it

    try:
        return pyproj.CRS.from_user_input(crs).to_wkt()
    except pyproj.exceptions.CRSError as exc:
        raise DataFormatError(f"unknown CRS {crs!r}: {exc}") from exc


def _decode_image(path: Path, kind: str) -> np.ndarray:
    """A PNG/JPEG orthophoto as RGB uint8, or a 16-bit surface-model image as float32 metres."""
    if kind == "height":
        raw = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.ndim != 2 or raw.dtype != np.uint16:
            raise ImageError(f"{path}: a surface model image must be a single-channel 16-bit PNG/TIFF in "
                             "centimetres")
        return raw.astype(np.float32) / 100.0
    img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"cannot decode orthophoto image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _crs_flag(kind: str) -> str:
    """The command-line option that supplies this raster's CRS (``unifygeo index build``)."""
    return "--dsm-crs" if kind == "height" else "--crs"


def _world_file_crs(path: Path, world: Path, transform: tuple, width: int, height: int, kind: str = "rgb") -> str:
    """The CRS of a world-file raster without ``crs``: its ``.prj``, else EPSG:4326 when the coordinates are
    plainly degrees."""
    prj = path.with_suffix(".prj")
    if prj.exists():
        return prj.read_text()
    xs, ys = Raster(width, height, transform, "", None).pixel_to_crs(
        np.array([0, width, 0, width]), np.array([0, 0, height, height]))
    if np.all(np.abs(xs) <= 180) and np.all(np.abs(ys) <= 90) and abs(transform[0]) < 1e-2:
        return "EPSG:4326"
    raise DataFormatError(f"{world.name} gives no CRS and its coordinates are not degrees: add {prj.name} "
                          f"or pass {_crs_flag(kind)} (e.g. EPSG:32633)")


def open_raster(path: str | Path, crs: str | None = None, kind: str = "rgb") -> Raster:
    """Open a GeoTIFF (rasterio) or a PNG/JPEG (+ world file, + optional ``.prj``) as a :class:`Raster`.

    ``crs`` (e.g. ``"EPSG:25832"``) overrides or supplies the CRS. A world file without ``.prj`` and without
    ``crs`` is accepted only when its coordinates are plainly degrees (then EPSG:4326).
    ``kind="height"`` opens a surface model (height above ground): windows are float32 metres - band 1 of a
    GeoTIFF (nodata -> 0), or a 16-bit PNG in centimetres.
    """
    path = Path(path)
    what = "orthophoto" if kind == "rgb" else "surface model (DSM)"
    if not path.exists():
        raise DataFormatError(f"{what} not found: {path}")
    world = _find_world_file(path)
    if path.suffix.lower() in (".tif", ".tiff") and world is None:
        return _open_geotiff(path, crs, kind)
    if world is None:
        raise DataFormatError(
            f"{path} has no world file ({'/'.join(WORLD_FILE_SUFFIXES.get(path.suffix.lower(), ('.wld',)))}); "
            f"a {what} needs its geo-reference (or use a GeoTIFF)")
    transform = read_world_file(world)
    img = _decode_image(path, kind)
    height, width = img.shape[:2]
    if crs is None:
        crs = _world_file_crs(path, world, transform, width, height, kind)

    def read_window(col0: int, row0: int, col1: int, row1: int) -> np.ndarray:
        return img[row0:row1, col0:col1]

    return Raster(width, height, transform, crs_wkt(crs), read_window)


def _open_geotiff(path: Path, crs: str | None, kind: str = "rgb") -> Raster:
    """A GeoTIFF through rasterio, read window by window (RGB stretched to 8 bits, or band 1 as heights)."""
    try:  # optional (setup.py extra "ortho"): only GeoTIFF orthophotos need it
        import rasterio
        from rasterio.windows import Window
    except ImportError as exc:  # pragma: no cover - rasterio is in requirements.txt
        raise DataFormatError(
            f"reading GeoTIFF {path} needs rasterio (pip install rasterio), or convert it to PNG + world file"
        ) from exc
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise DataFormatError(f"cannot open GeoTIFF {path}: {exc}") from exc
    if ds.crs is None and crs is None:
        raise DataFormatError(f"GeoTIFF {path} has no CRS: pass {_crs_flag(kind)} (e.g. EPSG:32633)")
    t = ds.transform
    if t.is_identity:
        raise DataFormatError(f"GeoTIFF {path} is not geo-referenced (identity transform)")
    bands = (1, 2, 3) if ds.count >= 3 else (1, 1, 1)
    wkt = crs_wkt(crs) if crs is not None else ds.crs.to_wkt()

    def read_height(col0: int, row0: int, col1: int, row1: int) -> np.ndarray:
        arr = ds.read(1, window=Window(col0, row0, col1 - col0, row1 - row0), masked=True)
        return np.ascontiguousarray(np.clip(np.ma.filled(arr.astype(np.float32), 0.0), 0.0, None))

    if kind == "height":
        return Raster(ds.width, ds.height, (t.a, t.b, t.c, t.d, t.e, t.f), wkt, read_height)

    def read_window(col0: int, row0: int, col1: int, row1: int) -> np.ndarray:
        arr = ds.read(bands, window=Window(col0, row0, col1 - col0, row1 - row0))
        arr = np.moveaxis(arr, 0, -1)
        if arr.dtype != np.uint8:  # 16-bit or float orthophotos: stretch 2..98 % to 8 bits
            lo, hi = np.percentile(arr, [2, 98]) if arr.size else (0, 1)
            arr = np.clip((arr.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)

    return Raster(ds.width, ds.height, (t.a, t.b, t.c, t.d, t.e, t.f), wkt, read_window)


__all__ = ["IMAGE_SUFFIXES", "WORLD_FILE_SUFFIXES", "Raster", "crs_wkt", "open_raster", "read_world_file",
           "write_world_file"]
