"""A synthetic city as a user's own map: the whole city as one georeferenced orthophoto and nDSM (GeoTIFF) and
the panoramas' true positions (CSV), written by ``unifygeo synth`` beside the VIGOR layout
(docs/WORKED_EXAMPLE.md walks from these files to scored fixes)::

    <out>/<City>/map/orthophoto.tif   RGB uint8, EPSG:4326, at the aerial tiles' ground sampling distance
    <out>/<City>/map/ndsm.tif         float32 metres above ground, the same grid, nodata -9999
    <out>/<City>/map/panoramas.csv    panorama,latitude,longitude,yaw_deg (data.truth_csv)

**CRS: EPSG:4326** (WGS84 longitude/latitude). The city is defined by latitudes and longitudes (its VIGOR file
names) around its origin, the south-west corner; a longitude/latitude grid anchored there stays aligned with the
city's local east/north frame (within 0.2 m over 1 km), so the raster covers exactly the city - no rotated
footprint with empty corners as a UTM grid would have (grid convergence: up to 3 degrees) - and an index built
from it has its origin and tile grid where the VIGOR-layout index has them, tile for tile. No zone to choose.
(A UTM orthophoto works the same way in ``unifygeo index build``; docs/INDEX.md.)

**Grid.** The raster's outer south-west corner is the city's origin (``geo.json``); a pixel is ``gsd_m`` metres
a side at the origin (``dlon = gsd_m / metres per degree of longitude there``, ``dlat`` likewise), and the raster
holds ``floor(size / gsd_m)`` pixels a side, so it lies inside the city. Each pixel is the city's surface sampled
at its centre's exact position (lat/lon -> the city's ENU frame, bilinear on the pyramid level the VIGOR tiles are
cut from: :func:`aerial.pyramid_level`), so it shows what the tiles show at that latitude and longitude.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import cv2
import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.data.aerial import aerial_height_raster, aerial_orthophoto, pyramid_level
from unifygeo_ros.data.city import City
from unifygeo_ros.data.lighting import AerialLighting
from unifygeo_ros.data.truth_csv import TruthRow, write_truth_csv

MAP_DIR = "map"
ORTHOPHOTO_NAME = "orthophoto.tif"
NDSM_NAME = "ndsm.tif"
TRUTH_NAME = "panoramas.csv"
MAP_CRS = "EPSG:4326"
NDSM_NODATA = -9999.0
ROW_BLOCK = 256  # rows sampled and written at a time (= the GeoTIFF block size)
NORTH_ALIGNED_YAW_DEG = geo.heading_to_yaw_deg(0.0)  # a synthetic panorama's centre column looks north


@dataclass(frozen=True)
class MapGrid:
    """A north-up EPSG:4326 pixel grid: upper-left corner (west longitude, north latitude), pixel size in
    degrees, size in pixels."""

    lon_west_deg: float
    lat_north_deg: float
    dlon_deg: float
    dlat_deg: float
    width_px: int
    height_px: int

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """GDAL's geotransform as ``(a, b, c, d, e, f)``: ``lon = a*col + b*row + c``, ``lat = d*col + e*row + f``
        (continuous pixel coordinates, (0, 0) = outer corner of the upper-left pixel)."""
        return (self.dlon_deg, 0.0, self.lon_west_deg, 0.0, -self.dlat_deg, self.lat_north_deg)

    def pixel_of(self, lat_deg, lon_deg) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of the pixel holding each (lat, lon)."""
        row = np.floor((self.lat_north_deg - np.asarray(lat_deg, float)) / self.dlat_deg).astype(np.int64)
        col = np.floor((np.asarray(lon_deg, float) - self.lon_west_deg) / self.dlon_deg).astype(np.int64)
        return row, col


@dataclass
class CityMap:
    """What :func:`write_city_map` wrote: the three files' paths, the grid, its ground sampling distance, the
    bytes on disk and the seconds taken."""

    orthophoto: str
    ndsm: str
    truth_csv: str
    grid: MapGrid
    gsd_m: float
    bytes_on_disk: int
    seconds: float


def map_grid(enu: geo.LocalENU, size_en_m: tuple[float, float], gsd_m: float) -> MapGrid:
    """The EPSG:4326 grid of a city of ``size_en_m`` (east, north) whose south-west corner is ``enu``'s origin,
    pixels of ``gsd_m`` metres at the origin (see the module doc)."""
    m_per_deg_lon, m_per_deg_lat = enu.meters_per_degree()
    width = int(math.floor(size_en_m[0] / gsd_m + 1e-9))
    height = int(math.floor(size_en_m[1] / gsd_m + 1e-9))
    dlon, dlat = gsd_m / m_per_deg_lon, gsd_m / m_per_deg_lat
    return MapGrid(float(enu.lon0_deg), float(enu.lat0_deg + height * dlat), dlon, dlat, width, height)


def write_city_map(city: City, enu: geo.LocalENU, map_dir: str, gsd_m: float, lighting: AerialLighting,
                   truth: list[TruthRow]) -> CityMap:
    """Write ``map_dir``/{orthophoto.tif, ndsm.tif, panoramas.csv} (the folder must not exist). Deterministic."""
    t0 = time.perf_counter()
    os.makedirs(map_dir)
    grid = map_grid(enu, city.size_m, gsd_m)
    paths = [os.path.join(map_dir, n) for n in (ORTHOPHOTO_NAME, NDSM_NAME, TRUTH_NAME)]
    _write_rasters(city, enu, grid, gsd_m, lighting, paths[0], paths[1])
    write_truth_csv(paths[2], truth)
    size = sum(os.path.getsize(p) for p in paths)
    return CityMap(*paths, grid, float(gsd_m), size, time.perf_counter() - t0)


def _write_rasters(city: City, enu: geo.LocalENU, grid: MapGrid, gsd_m: float, lighting: AerialLighting,
                   ortho_path: str, ndsm_path: str) -> None:
    """Sample the city's orthophoto and height onto ``grid``, ``ROW_BLOCK`` rows at a time, into two GeoTIFFs."""
    import rasterio
    from rasterio.windows import Window

    level = pyramid_level(city, gsd_m)
    rgb_src = aerial_orthophoto(city, lighting, "aerial", level)
    h_src = aerial_height_raster(city, "aerial", level)
    cell_m = city.cell_m * 2 ** level
    assert rgb_src.shape[:2] == h_src.shape == (city.shape[0] >> level, city.shape[1] >> level)
    ortho_profile, ndsm_profile = _profiles(grid)
    with rasterio.open(ortho_path, "w", **ortho_profile) as o_ds, rasterio.open(ndsm_path, "w", **ndsm_profile) as h_ds:
        h_ds.set_band_description(1, "surface height above ground (nDSM)")
        h_ds.units = ("metre",)
        for r0 in range(0, grid.height_px, ROW_BLOCK):
            r1 = min(grid.height_px, r0 + ROW_BLOCK)
            map_x, map_y = _source_coordinates(enu, grid, r0, r1, cell_m)
            window = Window(0, r0, grid.width_px, r1 - r0)
            rgb = cv2.remap(rgb_src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            o_ds.write(np.moveaxis(rgb, -1, 0), window=window)
            hgt = cv2.remap(h_src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            h_ds.write(np.maximum(hgt, 0.0).astype(np.float32)[None], window=window)


def _source_coordinates(enu: geo.LocalENU, grid: MapGrid, r0: int, r1: int,
                        cell_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Where rows ``r0:r1`` of ``grid`` sample the city rasters (row 0 = south, ``cell_m`` pixels): float32
    column and row index coordinates of each pixel centre's exact ENU position, for ``cv2.remap``."""
    lat = grid.lat_north_deg - (np.arange(r0, r1) + 0.5)[:, None] * grid.dlat_deg
    lon = grid.lon_west_deg + (np.arange(grid.width_px) + 0.5)[None, :] * grid.dlon_deg
    east, north = enu.to_en(*np.broadcast_arrays(lat, lon))
    return (east / cell_m - 0.5).astype(np.float32), (north / cell_m - 0.5).astype(np.float32)


def _profiles(grid: MapGrid) -> tuple[dict, dict]:
    """rasterio creation profiles of the orthophoto (RGB uint8) and the nDSM (float32, nodata), tiled, deflate."""
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    common = {"driver": "GTiff", "width": grid.width_px, "height": grid.height_px, "crs": CRS.from_string(MAP_CRS),
              "transform": Affine(*grid.transform), "tiled": True, "blockxsize": ROW_BLOCK,
              "blockysize": ROW_BLOCK, "compress": "deflate"}
    ortho = {**common, "count": 3, "dtype": "uint8", "photometric": "RGB", "interleave": "pixel", "predictor": 2}
    ndsm = {**common, "count": 1, "dtype": "float32", "nodata": NDSM_NODATA, "predictor": 3}
    return ortho, ndsm


__all__ = ["MAP_CRS", "MAP_DIR", "NDSM_NAME", "NDSM_NODATA", "NORTH_ALIGNED_YAW_DEG", "ORTHOPHOTO_NAME",
           "TRUTH_NAME", "CityMap", "MapGrid", "map_grid", "write_city_map"]
