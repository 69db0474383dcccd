"""Tile sources: where the aerial tiles of an index come from.

A tile source is a list of :class:`TileSpec` (id, centre in lat/lon and in a local ENU frame) plus a way to read
each tile as a north-up RGB ``uint8`` image of ``tile_px x tile_px`` pixels covering ``tile_m x tile_m`` metres.
Two sources:

* :func:`vigor_tiles` - a VIGOR-layout city folder (``<City>/satellite/satellite_<lat>_<lon>.png``; real VIGOR
  or ``unifygeo synth`` output). Tile centres come from the file names; the tile size from ``<City>/geo.json``
  or VIGOR's published metres per pixel.
* :func:`orthophoto_tiles` - one geo-referenced orthophoto, either a GeoTIFF (read through rasterio, windowed)
  or a PNG/JPEG with a world file (``.pgw``/``.jgw``/``.wld``, optional ``.prj`` for its CRS), cut into
  overlapping ``tile_m`` tiles on a ``stride_m`` grid of the local ENU frame and resampled to ``gsd_m``.

Models with ``model.aerial_height`` also need the surface height above ground of every tile (a 4th channel):
:func:`vigor_tiles` reads it from ``<City>/satellite_height/`` (:mod:`unifygeo_ros.data.height`),
:func:`orthophoto_tiles` cuts it from a second geo-referenced raster, the nDSM (``dsm=``: a single-band GeoTIFF
in metres, or a 16-bit PNG in centimetres + world file), resampled onto exactly the tiles' pixel grid.

The ENU frame of an orthophoto is anchored at the south-west corner of the orthophoto's footprint (as
``unifygeo synth`` anchors a city at its south-west corner), so tile centres have positive east/north.
Tiles are resampled so that they are north-up in ENU whatever the raster's CRS or rotation: each output pixel
is mapped ENU -> lat/lon -> raster CRS -> raster pixel through an affine map fitted to exact projections of a
3 x 3 grid of points per tile (sub-millimetre over a 70 m tile).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import DataFormatError, ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
WORLD_FILE_SUFFIXES = {".png": (".pgw", ".pngw", ".wld"), ".jpg": (".jgw", ".jpgw", ".wld"),
                       ".jpeg": (".jgw", ".jpegw", ".wld"), ".tif": (".tfw", ".tifw", ".wld"),
                       ".tiff": (".tfw", ".tiffw", ".wld")}


@dataclass(frozen=True)
class TileSpec:
    """One aerial tile: its id, its centre (WGS84 and local ENU of the source's origin)."""

    tile_id: str
    lat_deg: float
    lon_deg: float
    east_m: float
    north_m: float


@dataclass
class TileSource:
    """A list of tiles of one map, all ``tile_m`` metres a side, readable as ``tile_px`` square RGB images."""

    kind: str  # "vigor" | "orthophoto"
    path: str
    origin: geo.LocalENU
    tile_m: float
    tile_px: int
    tiles: list[TileSpec]
    reader: Callable[[int], np.ndarray] = field(repr=False)
    params: dict = field(default_factory=dict)  # what, besides path/kind, defines the tiling
    channels: int = 3  # 3 = RGB, 4 = RGB + packed surface height (preprocess.with_height)

    @property
    def gsd_m(self) -> float:
        return self.tile_m / self.tile_px

    def __len__(self) -> int:
        return len(self.tiles)

    def read(self, i: int) -> np.ndarray:
        """Tile ``i`` as a north-up ``(tile_px, tile_px, channels)`` uint8 array (RGB [+ packed height])."""
        return self.reader(i)

    def describe(self) -> dict:
        """What identifies the tiling (recorded in the index metadata; shards must agree on it)."""
        return {"kind": self.kind, "path": self.path, "tile_m": self.tile_m, "tile_px": self.tile_px,
                "gsd_m": self.gsd_m, "count": len(self.tiles), "channels": self.channels, **self.params}


# ----------------------------------------------------------------------------------------------------------
# VIGOR folder


def _read_rgb(path: Path) -> np.ndarray:
    from unifygeo_ros.image.preprocess import load_image

    return load_image(path)


def vigor_tiles(city_dir: str | Path, gsd_m: float | None = None, height: bool = False) -> TileSource:
    """The satellite tiles of one VIGOR-layout city folder (every ``satellite/*.png``, sorted by name).

    Tile size: native pixels x metres per pixel (:func:`unifygeo_ros.data.vigor.city_mpp`: ``geo.json`` for
    synthetic cities, VIGOR's per-city value otherwise). ENU origin: ``geo.json``'s origin, else the south-west
    corner of the tile centres' bounding box. ``gsd_m`` resamples tiles (default: native resolution).
    ``height``: tiles carry their surface height from ``<City>/satellite_height/`` (checked up front).
    """
    from unifygeo_ros.data import vigor
    from unifygeo_ros.data.height import find_height_file, load_aerial

    city_dir = Path(city_dir)
    sat_dir = city_dir / "satellite"
    if not sat_dir.is_dir():
        raise DataFormatError(f"{city_dir} is not a VIGOR city folder: {sat_dir} is missing")
    files = sorted(p for p in sat_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise DataFormatError(f"no satellite tiles in {sat_dir}")
    latlon = np.array([vigor.parse_sat_name(p.name) for p in files], dtype=np.float64).reshape(-1, 2)
    if height:
        for p in files:  # fail before encoding anything
            find_height_file(p)

    root, city = city_dir.parent, city_dir.name
    meta = vigor.read_geo_json(root, city) or {}
    if "origin" in meta:
        origin = geo.LocalENU(float(meta["origin"]["lat_deg"]), float(meta["origin"]["lon_deg"]))
    else:
        origin = geo.LocalENU(float(latlon[:, 0].min()), float(latlon[:, 1].min()))
    native_px = int(meta["tile_px"]) if "tile_px" in meta else int(_read_rgb(files[0]).shape[1])
    tile_m = vigor.city_mpp(root, city, native_px) * native_px
    tile_px = native_px if gsd_m is None else max(8, int(round(tile_m / gsd_m)))

    east, north = origin.to_en(latlon[:, 0], latlon[:, 1])
    tiles = [TileSpec(p.stem, float(la), float(lo), float(e), float(n))
             for p, (la, lo), e, n in zip(files, latlon, np.atleast_1d(east), np.atleast_1d(north))]

    def read(i: int) -> np.ndarray:
        img = load_aerial(files[i], height)
        if img.shape[0] != tile_px or img.shape[1] != tile_px:
            interp = cv2.INTER_AREA if img.shape[0] > tile_px else cv2.INTER_LINEAR
            img = cv2.resize(img, (tile_px, tile_px), interpolation=interp)
        return img

    return TileSource("vigor", str(city_dir.resolve()), origin, float(tile_m), tile_px, tiles, read,
                      params={"city": city}, channels=4 if height else 3)


# ----------------------------------------------------------------------------------------------------------
# Geo-referenced orthophoto


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


def _crs_wkt(crs: str | None) -> str:
    import pyproj

    try:
        return pyproj.CRS.from_user_input(crs).to_wkt()
    except pyproj.exceptions.CRSError as exc:
        raise DataFormatError(f"unknown CRS {crs!r}: {exc}") from exc


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
    if kind == "height":
        raw = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.ndim != 2 or raw.dtype != np.uint16:
            raise ImageError(f"{path}: a surface model image must be a single-channel 16-bit PNG/TIFF in "
                             "centimetres")
        img = raw.astype(np.float32) / 100.0
    else:
        img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ImageError(f"cannot decode orthophoto image {path}")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    height, width = img.shape[:2]
    if crs is None:
        prj = path.with_suffix(".prj")
        if prj.exists():
            crs = prj.read_text()
        else:
            xs, ys = Raster(width, height, transform, "", None).pixel_to_crs(
                np.array([0, width, 0, width]), np.array([0, 0, height, height]))
            if np.all(np.abs(xs) <= 180) and np.all(np.abs(ys) <= 90) and abs(transform[0]) < 1e-2:
                crs = "EPSG:4326"
            else:
                raise DataFormatError(
                    f"{world.name} gives no CRS and its coordinates are not degrees: add {prj.name} "
                    "or pass --crs (e.g. EPSG:32633)")

    def read_window(col0: int, row0: int, col1: int, row1: int) -> np.ndarray:
        return img[row0:row1, col0:col1]

    return Raster(width, height, transform, _crs_wkt(crs), read_window)


def _open_geotiff(path: Path, crs: str | None, kind: str = "rgb") -> Raster:
    try:
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
        raise DataFormatError(f"GeoTIFF {path} has no CRS: pass --crs (e.g. EPSG:32633)")
    t = ds.transform
    if t.is_identity:
        raise DataFormatError(f"GeoTIFF {path} is not geo-referenced (identity transform)")
    bands = (1, 2, 3) if ds.count >= 3 else (1, 1, 1)
    wkt = _crs_wkt(crs) if crs is not None else ds.crs.to_wkt()

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


class _Geo:
    """ENU <-> raster pixel for one raster and one ENU origin."""

    def __init__(self, raster: Raster, origin: geo.LocalENU):
        import pyproj

        self.raster = raster
        self.origin = origin
        crs = pyproj.CRS.from_wkt(raster.crs_wkt)
        self.to_crs = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        self.to_wgs = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def en_to_pixel(self, east, north):
        lat, lon = self.origin.from_en(east, north)
        x, y = self.to_crs.transform(lon, lat)
        return self.raster.crs_to_pixel(x, y)

    def pixel_to_latlon(self, col, row):
        x, y = self.raster.pixel_to_crs(np.asarray(col, float), np.asarray(row, float))
        lon, lat = self.to_wgs.transform(x, y)
        return np.asarray(lat), np.asarray(lon)


def _grid_centres(extent_m: float, tile_m: float, stride_m: float) -> np.ndarray:
    """Tile centres along one axis of ``[0, extent_m]``: ``tile_m / 2 + k * stride_m``; the slack at the far end
    (less than a stride) is shared between both ends when under a quarter stride, otherwise covered by one more
    tile flush with the far end."""
    if extent_m <= tile_m:
        return np.array([extent_m / 2.0])
    n = int(math.floor((extent_m - tile_m) / stride_m + 1e-9))
    centres = tile_m / 2.0 + stride_m * np.arange(n + 1)
    slack = extent_m - tile_m / 2.0 - centres[-1]
    if slack > stride_m / 4.0:
        return np.append(centres, extent_m - tile_m / 2.0)
    return centres + slack / 2.0


def orthophoto_tiles(path: str | Path, tile_m: float = 70.0, stride_m: float = 35.0, gsd_m: float | None = None,
                     crs: str | None = None, min_coverage: float = 0.75, dsm: str | Path | None = None,
                     dsm_crs: str | None = None) -> TileSource:
    """Cut a geo-referenced orthophoto into overlapping north-up tiles.

    ``tile_m``/``stride_m``: tile side and grid step in metres (VIGOR: 70 / 35), on the ENU frame anchored at the
    footprint's south-west corner (see :func:`_grid_centres` for the far edges). ``gsd_m``: metres per pixel of
    the tiles (default: the orthophoto's own resolution). Tiles whose footprint lies less than ``min_coverage``
    inside the raster are skipped (pixels outside are black). Tile ids: ``<stem>_r<row>_c<col>`` with row 0 the
    northernmost row of the grid. ``dsm``: a surface-model raster (height above ground; its own geo-reference
    and CRS, ``dsm_crs`` when it has none) cut onto the same tile pixels as a 4th channel.
    """
    if tile_m <= 0 or stride_m <= 0:
        raise DataFormatError(f"tile_m and stride_m must be positive (got {tile_m}, {stride_m})")
    path = Path(path)
    raster = open_raster(path, crs)
    # provisional frame at the raster centre, then re-anchor at the footprint's south-west corner
    g = _Geo(raster, geo.LocalENU(0.0, 0.0))
    lat_c, lon_c = g.pixel_to_latlon(raster.width / 2.0, raster.height / 2.0)
    g = _Geo(raster, geo.LocalENU(float(lat_c), float(lon_c)))
    border_c = np.array([0, raster.width, 0, raster.width, raster.width / 2, 0, raster.width / 2, raster.width])
    border_r = np.array([0, 0, raster.height, raster.height, 0, raster.height / 2, raster.height,
                         raster.height / 2])
    lat, lon = g.pixel_to_latlon(border_c, border_r)
    e, n = g.origin.to_en(lat, lon)
    sw_lat, sw_lon = g.origin.from_en(float(np.min(e)), float(np.min(n)))
    origin = geo.LocalENU(float(sw_lat), float(sw_lon))
    g = _Geo(raster, origin)
    e, n = origin.to_en(lat, lon)
    extent_e, extent_n = float(np.max(e)), float(np.max(n))

    # native resolution at the centre: pixel steps in metres
    cc, rr = np.array([raster.width / 2, raster.width / 2 + 1, raster.width / 2]), \
        np.array([raster.height / 2, raster.height / 2, raster.height / 2 + 1])
    la, lo = g.pixel_to_latlon(cc, rr)
    pe, pn = origin.to_en(la, lo)
    native_gsd = math.sqrt(abs((pe[1] - pe[0]) * (pn[2] - pn[0]) - (pe[2] - pe[0]) * (pn[1] - pn[0])))
    gsd = native_gsd if gsd_m is None else float(gsd_m)
    tile_px = max(8, int(round(tile_m / gsd)))
    cell = tile_m / tile_px

    ce_all = _grid_centres(extent_e, tile_m, stride_m)
    cn_all = _grid_centres(extent_n, tile_m, stride_m)[::-1]  # row 0 = north
    # coverage on a coarse grid of sample points per tile
    s = (np.arange(8) + 0.5) / 8 * tile_m - tile_m / 2
    se, sn = np.meshgrid(s, s)
    specs: list[TileSpec] = []
    centres: list[tuple[float, float]] = []
    for r, cn in enumerate(cn_all):
        for c, ce in enumerate(ce_all):
            col, row = g.en_to_pixel(ce + se.ravel(), cn + sn.ravel())
            inside = (col >= 0) & (col <= raster.width) & (row >= 0) & (row <= raster.height)
            if inside.mean() < min_coverage:
                continue
            la, lo = origin.from_en(float(ce), float(cn))
            specs.append(TileSpec(f"{path.stem}_r{r:04d}_c{c:04d}", float(la), float(lo), float(ce), float(cn)))
            centres.append((float(ce), float(cn)))
    if not specs:
        raise DataFormatError(f"{path}: no {tile_m:g} m tile fits inside the orthophoto "
                              f"({extent_e:.1f} x {extent_n:.1f} m)")

    read_rgb = _tile_reader(g, centres, tile_m, tile_px)
    read = read_rgb
    params = {"stride_m": float(stride_m), "crs": raster.crs_wkt[:80], "native_gsd_m": native_gsd,
              "min_coverage": float(min_coverage)}
    if dsm is not None:
        from unifygeo_ros.image.preprocess import with_height

        read_dsm = _tile_reader(_Geo(open_raster(dsm, dsm_crs, kind="height"), origin), centres, tile_m, tile_px)

        def read(i: int) -> np.ndarray:
            return with_height(read_rgb(i), read_dsm(i))

        params["dsm"] = str(Path(dsm).resolve())

    return TileSource("orthophoto", str(path.resolve()), origin, float(tile_m), tile_px, specs, read,
                      params=params, channels=4 if dsm is not None else 3)


def _tile_reader(g: _Geo, centres: list[tuple[float, float]], tile_m: float, tile_px: int
                 ) -> Callable[[int], np.ndarray]:
    """Reader of north-up ``tile_px`` tiles centred on ``centres`` (ENU) from ``g``'s raster: RGB uint8, or
    float32 metres for a surface model; outside the raster 0."""
    raster = g.raster
    cell = tile_m / tile_px

    def read(i: int) -> np.ndarray:
        ce, cn = centres[i]
        # output pixel index (j, i) -> ENU of its centre -> raster pixel index coordinates
        ctrl = np.array([0.0, 0.5, 1.0]) * (tile_px - 1)
        jj, ii = np.meshgrid(ctrl, ctrl)
        ee = ce - tile_m / 2 + (jj.ravel() + 0.5) * cell
        nn = cn + tile_m / 2 - (ii.ravel() + 0.5) * cell
        col, row = g.en_to_pixel(ee, nn)
        src = np.stack([col - 0.5, row - 0.5], axis=1)  # continuous -> index coordinates (cv2)
        design = np.stack([jj.ravel(), ii.ravel(), np.ones(jj.size)], axis=1)
        affine, *_ = np.linalg.lstsq(design, src, rcond=None)  # (3, 2): dst index -> src index
        m = affine.T  # (2, 3)
        corners = m @ np.array([[0, tile_px - 1, 0, tile_px - 1], [0, 0, tile_px - 1, tile_px - 1], [1, 1, 1, 1]])
        col0 = int(max(0, math.floor(corners[0].min()) - 2))
        row0 = int(max(0, math.floor(corners[1].min()) - 2))
        col1 = int(min(raster.width, math.ceil(corners[0].max()) + 3))
        row1 = int(min(raster.height, math.ceil(corners[1].max()) + 3))
        if col1 <= col0 or row1 <= row0:
            probe = raster.read_window(0, 0, 1, 1)
            return np.zeros((tile_px, tile_px) + probe.shape[2:], probe.dtype)
        window = raster.read_window(col0, row0, col1, row1)
        m = m.copy()
        m[:, 2] -= (col0, row0)
        scale = math.sqrt(abs(np.linalg.det(m[:, :2])))  # source pixels per output pixel
        if scale > 1.5:  # anti-alias a strong downsampling
            f = 1.0 / scale
            small = cv2.resize(window, (max(1, round(window.shape[1] * f)), max(1, round(window.shape[0] * f))),
                               interpolation=cv2.INTER_AREA)
            sx, sy = small.shape[1] / window.shape[1], small.shape[0] / window.shape[0]
            m = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]]) @ np.vstack([m, [0, 0, 1]])
            window = small
        return cv2.warpAffine(np.ascontiguousarray(window), m, (tile_px, tile_px),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)

    return read
