"""Tile sources: where the aerial tiles of an index come from (and the one import for all of them).

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

The ENU frame and resampling of orthophoto tiles are described in :mod:`~unifygeo_ros.index.orthophoto`.

Where it lives: :class:`TileSpec` / :class:`TileSource` in :mod:`~unifygeo_ros.index.tile_source`,
:func:`vigor_tiles` here, :func:`orthophoto_tiles` in :mod:`~unifygeo_ros.index.orthophoto`, the rasters it
reads (world files, GeoTIFF) in :mod:`~unifygeo_ros.index.rasters`.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import DataFormatError
from unifygeo_ros.index import map_checks
from unifygeo_ros.index.orthophoto import orthophoto_tiles
from unifygeo_ros.index.rasters import (IMAGE_SUFFIXES, WORLD_FILE_SUFFIXES, Raster, open_raster, read_world_file,
                                        write_world_file)
from unifygeo_ros.index.tile_source import TileSource, TileSpec


def _read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8."""
    from unifygeo_ros.image.preprocess import load_image  # imports torch; this module is torch-free otherwise

    return load_image(path)


def vigor_tiles(city_dir: str | Path, gsd_m: float | None = None, height: bool = False,
                origin: tuple[float, float] | None = None) -> TileSource:
    """The satellite tiles of one VIGOR-layout city folder (every ``satellite/*.png``, sorted by name).

    Tile size: native pixels x metres per pixel (:func:`unifygeo_ros.data.vigor.city_mpp`: ``geo.json`` for
    synthetic cities, VIGOR's per-city value otherwise). ENU origin: ``origin`` (``(lat, lon)``, near the tiles),
    else ``geo.json``'s origin, else the south-west corner of the tile centres' bounding box. ``gsd_m`` resamples
    tiles (default: native resolution).
    ``height``: tiles carry their surface height from ``<City>/satellite_height/`` (checked up front).
    """
    # both import torch (data.vigor's Dataset, image.preprocess); this module is torch-free otherwise
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
    frame, note = _vigor_origin(meta, latlon, origin)
    native_px = int(meta["tile_px"]) if "tile_px" in meta else int(_read_rgb(files[0]).shape[1])
    tile_m = vigor.city_mpp(root, city, native_px) * native_px
    tile_px = native_px if gsd_m is None else max(8, int(round(tile_m / gsd_m)))

    east, north = frame.to_en(latlon[:, 0], latlon[:, 1])
    tiles = [TileSpec(p.stem, float(la), float(lo), float(e), float(n))
             for p, (la, lo), e, n in zip(files, latlon, np.atleast_1d(east), np.atleast_1d(north))]

    def read(i: int) -> np.ndarray:
        img = load_aerial(files[i], height)
        if img.shape[0] != tile_px or img.shape[1] != tile_px:
            interp = cv2.INTER_AREA if img.shape[0] > tile_px else cv2.INTER_LINEAR
            img = cv2.resize(img, (tile_px, tile_px), interpolation=interp)
        return img

    return TileSource("vigor", str(city_dir.resolve()), frame, float(tile_m), tile_px, tiles, read,
                      params={"city": city}, channels=4 if height else 3, native_gsd_m=tile_m / native_px,
                      origin_note=note)


def _vigor_origin(meta: dict, latlon: np.ndarray, origin: tuple[float, float] | None) -> tuple[geo.LocalENU, str]:
    """The ENU origin of a VIGOR city's tiles and how it was chosen (see :func:`vigor_tiles`)."""
    if origin is not None:
        frame = geo.LocalENU(*origin)
        map_checks.check_origin_near(frame, latlon[:, 0], latlon[:, 1])
        return frame, "given by --origin"
    if "origin" in meta:
        return geo.LocalENU(float(meta["origin"]["lat_deg"]), float(meta["origin"]["lon_deg"])), "from geo.json"
    return (geo.LocalENU(float(latlon[:, 0].min()), float(latlon[:, 1].min())),
            "the south-west corner of the tile centres")


__all__ = ["IMAGE_SUFFIXES", "WORLD_FILE_SUFFIXES", "Raster", "TileSource", "TileSpec", "open_raster",
           "orthophoto_tiles", "read_world_file", "vigor_tiles", "write_world_file"]
