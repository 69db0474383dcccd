"""Geo-referenced rasters for orthophoto tile sources: a GeoTIFF (through rasterio, windowed) or a PNG/JPEG with
a world file (``.pgw``/``.jgw``/``.wld``, optional ``.prj`` for its CRS), opened as one :class:`Raster` - size,
pixel -> CRS affine, CRS, a windowed reader and a reduced overview of which pixels hold data - for RGB
orthophotos and for surface models (heights in metres, NaN where the raster has no data).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from unifygeo_ros.errors import DataFormatError, ImageError

#: an orthophoto without a declared nodata value, alpha band or mask: pixels whose every band is at most this are
#: black fill (the corners of a rotated, re-projected orthophoto), not imagery
BLACK_FILL_MAX = 2
#: the validity overview (``Raster.overview``) is at most this many pixels a side
OVERVIEW_MAX_PX = 2048

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
    read_window: Callable[[int, int, int, int], np.ndarray]  # (col0, row0, col1, row1) -> RGB uint8 | float32 m
    #: the whole raster at most OVERVIEW_MAX_PX a side: bool "holds imagery" (RGB) or float32 heights, NaN = none
    overview: Callable[[], np.ndarray] | None = None

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


#: percentiles of a 16-bit or float orthophoto's pixels (all bands together) mapped to 0 and 255
STRETCH_PERCENTILES = (2.0, 98.0)


def stretch_range(values: np.ndarray) -> tuple[float, float]:
    """(lo, hi) of the 8-bit stretch of a 16-bit or float orthophoto: the :data:`STRETCH_PERCENTILES` of its finite
    data values, all bands together (one map keeps the colour balance and makes every tile comparable)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, STRETCH_PERCENTILES)
    return float(lo), float(max(hi, lo + 1e-6))


def to_uint8(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of ``[lo, hi]`` to ``[0, 255]``, clipped (NaN -> 0)."""
    out = np.clip((np.nan_to_num(arr.astype(np.float32), nan=lo) - lo) / (hi - lo) * 255.0, 0.0, 255.0)
    return np.ascontiguousarray(np.round(out).astype(np.uint8))


def _overview_step(width: int, height: int) -> int:
    """Pixel step of the overview of a ``width`` x ``height`` raster."""
    return max(1, -(-max(width, height) // OVERVIEW_MAX_PX))


def _swapped(path: Path, looks_like: str) -> DataFormatError:
    """The error for an orthophoto given as the DSM or the other way round."""
    if looks_like == "height":
        return DataFormatError(f"{path} holds one band of heights, not an RGB orthophoto: --orthophoto takes the "
                               "aerial image and --dsm the surface model (swapped?)")
    return DataFormatError(f"{path} is an 8-bit RGB image, not a surface model: --dsm takes heights above ground in "
                           "metres and --orthophoto the aerial image (swapped?)")


def _decode_image(path: Path, kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A PNG/JPEG orthophoto as (RGB uint8, alpha > 0 or None), or a 16-bit surface-model image as (float32 metres,
    None)."""
    raw = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageError(f"cannot decode {'surface model' if kind == 'height' else 'orthophoto'} image {path}")
    if kind == "height":
        if raw.ndim == 3 and raw.shape[2] >= 3 and raw.dtype == np.uint8:
            raise _swapped(path, "rgb")
        if raw.ndim != 2 or raw.dtype != np.uint16:
            raise ImageError(f"{path}: a surface model image must be a single-channel 16-bit PNG/TIFF in "
                             "centimetres")
        return raw.astype(np.float32) / 100.0, None
    if raw.ndim == 2 and raw.dtype == np.uint16:
        raise _swapped(path, "height")
    if raw.dtype != np.uint8:  # 16-bit colour PNG/TIFF: the same whole-image stretch as a 16-bit GeoTIFF
        colour = raw[:, :, :3] if raw.ndim == 3 else raw
        keep = (raw[:, :, 3] > 0) if raw.ndim == 3 and raw.shape[2] == 4 else None
        step = _overview_step(raw.shape[1], raw.shape[0])
        sample = colour[::step, ::step] if keep is None else colour[::step, ::step][keep[::step, ::step]]
        lo, hi = stretch_range(sample)
        raw = np.concatenate([to_uint8(colour, lo, hi).reshape(*colour.shape[:2], -1),
                              (keep[..., None] * 255).astype(np.uint8)], axis=2) if keep is not None \
            else to_uint8(colour, lo, hi)
    if raw.ndim == 2:
        return cv2.cvtColor(raw, cv2.COLOR_GRAY2RGB), None
    alpha = raw[:, :, 3] > 0 if raw.shape[2] == 4 else None
    return cv2.cvtColor(np.ascontiguousarray(raw[:, :, :3]), cv2.COLOR_BGR2RGB), alpha


def _image_overview(img: np.ndarray, alpha: np.ndarray | None, kind: str) -> np.ndarray:
    """The overview of a decoded image: heights (no nodata in a PNG), or alpha > 0, else not black fill."""
    step = _overview_step(img.shape[1], img.shape[0])
    if kind == "height":
        return np.ascontiguousarray(img[::step, ::step])
    if alpha is not None:
        return np.ascontiguousarray(alpha[::step, ::step])
    return np.ascontiguousarray(img[::step, ::step].max(axis=2) > BLACK_FILL_MAX)


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
    GeoTIFF (nodata -> NaN), or a 16-bit PNG in centimetres. An orthophoto that looks like a surface model (one
    float band; a single-channel 16-bit PNG) or a surface model that looks like an orthophoto (8-bit RGB) is
    refused: the two were swapped.
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
    img, alpha = _decode_image(path, kind)
    height, width = img.shape[:2]
    if crs is None:
        crs = _world_file_crs(path, world, transform, width, height, kind)

    def read_window(col0: int, row0: int, col1: int, row1: int) -> np.ndarray:
        return img[row0:row1, col0:col1]

    return Raster(width, height, transform, crs_wkt(crs), read_window,
                  overview=lambda: _image_overview(img, alpha, kind))


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
    if kind == "rgb" and ds.count == 1 and np.dtype(ds.dtypes[0]).kind == "f":
        raise _swapped(path, "height")
    if kind == "height" and ds.count >= 3 and ds.dtypes[0] == "uint8":
        raise _swapped(path, "rgb")
    bands = (1, 2, 3) if ds.count >= 3 else (1, 1, 1)
    wkt = crs_wkt(crs) if crs is not None else ds.crs.to_wkt()
    affine = (t.a, t.b, t.c, t.d, t.e, t.f)
    step = _overview_step(ds.width, ds.height)
    small = (-(-ds.height // step), -(-ds.width // step))

    if kind == "height":
        def read_height(col0: int, row0: int, col1: int, row1: int) -> np.ndarray:
            arr = ds.read(1, window=Window(col0, row0, col1 - col0, row1 - row0), masked=True)
            return np.ascontiguousarray(np.ma.filled(arr.astype(np.float32), np.nan))

        def height_overview() -> np.ndarray:
            return np.ma.filled(ds.read(1, out_shape=small, masked=True).astype(np.float32), np.nan)

        return Raster(ds.width, ds.height, affine, wkt, read_height, overview=height_overview)

    stretch: list[tuple[float, float]] = []  # the raster's one 8-bit stretch, computed at the first read

    def read_window(col0: int, row0: int, col1: int, row1: int) -> np.ndarray:
        arr = np.moveaxis(ds.read(bands, window=Window(col0, row0, col1 - col0, row1 - row0)), 0, -1)
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        if not stretch:  # 16-bit or float: one linear map for the whole raster, not one per window
            sample = ds.read(bands, out_shape=(3,) + small, masked=True)
            stretch.append(stretch_range(sample.compressed() if np.ma.isMaskedArray(sample) else sample))
        return to_uint8(arr, *stretch[0])

    def rgb_overview() -> np.ndarray:
        """Pixels with data: the dataset mask (nodata value, alpha band, internal mask), else not black fill."""
        declared = any(flag != [rasterio.enums.MaskFlags.all_valid] for flag in ds.mask_flag_enums)
        if declared:
            return ds.dataset_mask(out_shape=small) > 0
        return ds.read(bands, out_shape=(3,) + small).max(axis=0) > BLACK_FILL_MAX

    return Raster(ds.width, ds.height, affine, wkt, read_window, overview=rgb_overview)


__all__ = ["IMAGE_SUFFIXES", "WORLD_FILE_SUFFIXES", "Raster", "crs_wkt", "open_raster", "read_world_file",
           "write_world_file"]
