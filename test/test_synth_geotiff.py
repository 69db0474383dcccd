"""``unifygeo synth`` writes the whole city as a user's map - map/orthophoto.tif, map/ndsm.tif (GeoTIFF, EPSG:4326,
the tiles' ground sampling distance) and map/panoramas.csv - georeferenced exactly as the VIGOR-layout files."""
from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import pytest
import rasterio

from conftest import micro_config, random_checkpoint
from unifygeo_ros import geo
from unifygeo_ros.cli import main
from unifygeo_ros.data.height import load_height
from unifygeo_ros.data.synth_files import parse_panorama_name, parse_satellite_name
from unifygeo_ros.data.synth_geotiff import NDSM_NODATA
from unifygeo_ros.data.truth_csv import read_truth_csv
from unifygeo_ros.index import tiles
from unifygeo_ros.index.disk import load_index

CITY = "Mapville"
TILE_PX = 96
SMALL = ["--size-m", "150", "--panos", "14", "--tile-px", str(TILE_PX), "--pano-width", "128", "--no-progress"]


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("map_city")
    assert main(["synth", "--out", str(root), "--city", CITY, "--seed", "11", *SMALL]) == 0
    return root / CITY


def _meta(city):
    return json.loads((city / "geo.json").read_text())


def _labels(city):
    path = city.parent / "splits" / CITY / "pano_label_balance.txt"
    return [ln.split() for ln in path.read_text().splitlines() if ln.strip()]


def test_map_is_two_geotiffs_in_epsg4326_at_the_tiles_gsd_anchored_at_the_city_origin(city):
    meta = _meta(city)
    origin = geo.LocalENU(meta["origin"]["lat_deg"], meta["origin"]["lon_deg"])
    m_lon, m_lat = origin.meters_per_degree()
    with rasterio.open(city / "map" / "orthophoto.tif") as o, rasterio.open(city / "map" / "ndsm.tif") as h:
        assert o.crs.to_epsg() == 4326 and h.crs.to_epsg() == 4326
        assert (o.count, o.dtypes[0], h.count, h.dtypes[0]) == (3, "uint8", 1, "float32")
        assert o.transform == h.transform and o.shape == h.shape
        assert h.nodata == NDSM_NODATA and o.nodata is None
        # pixels of the tiles' size on the ground (at the origin), the outer south-west corner at the origin
        assert o.transform.a * m_lon == pytest.approx(meta["mpp"], rel=1e-9)
        assert -o.transform.e * m_lat == pytest.approx(meta["mpp"], rel=1e-9)
        assert (o.bounds.left, o.bounds.bottom) == pytest.approx((origin.lon0_deg, origin.lat0_deg), abs=1e-9)
        assert o.width == math.floor(meta["size_m"][0] / meta["mpp"])
        ndsm = h.read(1)
    # metres above ground: streets at 0, roofs metres up (not centimetres, not an absolute elevation)
    assert ndsm.min() == 0.0 and 3.0 < ndsm.max() < 150.0 and np.median(ndsm) < 1.0


def test_orthophoto_and_ndsm_pixels_at_each_panorama_are_the_positive_tiles_pixels(city):
    """The GeoTIFF pixel holding a panorama's label position (looked up by rasterio from its lat/lon) is the
    pixel of the label's positive tile there; two pixels off it is not."""
    meta = _meta(city)
    origin, mpp, tile_m = geo.LocalENU(meta["origin"]["lat_deg"], meta["origin"]["lon_deg"]), meta["mpp"], 70.0
    with rasterio.open(city / "map" / "orthophoto.tif") as o, rasterio.open(city / "map" / "ndsm.tif") as h:
        ortho, ndsm, index_of = np.moveaxis(o.read(), 0, -1), h.read(1), o.index
    same, shifted, height_diff = [], [], []
    for label in _labels(city):
        _, lat, lon = parse_panorama_name(label[0])
        t_lat, t_lon = parse_satellite_name(label[1])
        pe, pn = origin.to_en(lat, lon)
        te, tn = origin.to_en(t_lat, t_lon)
        col = int(math.floor((pe - te + tile_m / 2) / mpp))
        row = int(math.floor((tn + tile_m / 2 - pn) / mpp))
        tile = cv2.cvtColor(cv2.imread(str(city / "satellite" / label[1])), cv2.COLOR_BGR2RGB).astype(int)
        tile_h = load_height(city / "satellite_height" / label[1])
        r, c = index_of(lon, lat)
        patch = tile[row - 2:row + 3, col - 2:col + 3]  # 5 x 5 pixels around it, for a control with contrast
        same.append(np.abs(ortho[r - 2:r + 3, c - 2:c + 3].astype(int) - patch).max())
        shifted.append(np.abs(ortho[r:r + 5, c:c + 5].astype(int) - patch).mean())
        height_diff.append(abs(float(ndsm[r, c]) - float(tile_h[row, col])))
    assert max(same) <= 2, same  # bilinear samples of the same ground points, up to rounding
    assert max(height_diff) <= 0.011, height_diff  # the tiles' heights are whole centimetres
    assert np.mean(shifted) > 5, shifted  # two pixels off is other ground


def test_index_from_the_geotiffs_places_tiles_where_the_vigor_index_places_the_same_ground(city, tmp_path):
    ckpt = random_checkpoint(tmp_path / "ckpt", micro_config(aerial_height=True))
    common = ["--checkpoint", str(ckpt), "--device", "cpu", "--no-progress"]
    assert main(["index", "build", "--out", str(tmp_path / "ix_vigor"), "--vigor", str(city), *common]) == 0
    assert main(["index", "build", "--out", str(tmp_path / "ix_map"), "--orthophoto",
                 str(city / "map" / "orthophoto.tif"), "--dsm", str(city / "map" / "ndsm.tif"), *common]) == 0
    ix_v, ix_m = load_index(tmp_path / "ix_vigor"), load_index(tmp_path / "ix_map")
    frame = geo.LocalENU(*ix_v.latlon_deg[0])
    ve, vn = frame.to_en(ix_v.latlon_deg[:, 0], ix_v.latlon_deg[:, 1])
    me, mn = frame.to_en(ix_m.latlon_deg[:, 0], ix_m.latlon_deg[:, 1])
    dist = np.hypot(ve[:, None] - me[None], vn[:, None] - mn[None])
    assert dist.min(1).max() < 0.5  # every VIGOR tile has a GeoTIFF tile centred on it (within 0.5 m)
    nearest = dist.argmin(1)
    # ... showing the same ground: RGB and height, pixel for pixel (both cut at the tiles' own resolution)
    vigor_src = tiles.vigor_tiles(city, height=True)
    map_src = tiles.orthophoto_tiles(city / "map" / "orthophoto.tif", gsd_m=_meta(city)["mpp"],
                                     dsm=city / "map" / "ndsm.tif")
    by_id = {t.tile_id: k for k, t in enumerate(map_src.tiles)}
    vigor_row = {t.tile_id: k for k, t in enumerate(vigor_src.tiles)}
    diffs, shifted = [], []
    for i, tile_id in enumerate(ix_v.tile_ids):
        a = vigor_src.read(vigor_row[tile_id]).astype(int)
        b = map_src.read(by_id[ix_m.tile_ids[nearest[i]]]).astype(int)
        assert a.shape == b.shape == (TILE_PX, TILE_PX, 4)
        diffs.append(np.abs(a - b).mean())
        shifted.append(np.abs(a[:, 2:] - b[:, :-2]).mean())
    assert max(diffs) < 0.5 and min(shifted) > 4 * max(diffs), (diffs, shifted)


def test_truth_csv_lists_every_panorama_at_its_label_position(city):
    rows = read_truth_csv(city / "map" / "panoramas.csv")
    assert sorted(r.panorama for r in rows) == sorted(os.listdir(city / "panorama"))
    for r in rows:
        _, lat, lon = parse_panorama_name(r.panorama)
        assert (r.latitude_deg, r.longitude_deg, r.yaw_deg) == (lat, lon, 90.0)  # north-aligned: ENU yaw 90


def test_no_map_flag_writes_the_vigor_layout_only(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--city", CITY, "--seed", "11", *SMALL, "--no-map"]) == 0
    assert (tmp_path / CITY / "satellite").is_dir() and not (tmp_path / CITY / "map").exists()
    assert "orthophoto.tif" not in capsys.readouterr().err
