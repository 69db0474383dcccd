"""A user's own map: DSM coverage, units and meaning, nodata tiles, resolution, and the origin of east/north.

Each case either works or ends in one line that says what is wrong and what to do (issue #16, "Maps").
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.warp import calculate_default_transform, reproject, Resampling

from unifygeo_ros import cli, geo
from unifygeo_ros.errors import DataFormatError
from unifygeo_ros.image import preprocess as P
from unifygeo_ros.index import build as index_build
from unifygeo_ros.index import map_checks, tiles

from conftest import micro_config, random_checkpoint, random_handle, tiny_config

UTM32N = "EPSG:32632"
# north-west corner of every map below: UTM 32N on its central meridian (9 E, 48.17 N), where grid north is north
X0, Y0 = 499960.0, 5335000.0
MAP_W_M, MAP_H_M = 80.0, 60.0
TILING = {"tile_m": 20.0, "stride_m": 10.0, "gsd_m": 0.5}  # a 7 x 5 grid over the 80 x 60 m map


def _write_tif(path, array, transform, crs=UTM32N, nodata=None):
    """A GeoTIFF of ``array`` (H x W or bands x H x W)."""
    arr = array if array.ndim == 3 else array[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(arr)
    return path


def _ortho(tmp_path, gsd=0.5, name="ortho.tif", rgb=None):
    """An 80 x 60 m grey UTM orthophoto (GeoTIFF) at ``gsd`` m/px."""
    h, w = int(MAP_H_M / gsd), int(MAP_W_M / gsd)
    img = np.full((h, w, 3), 90, np.uint8) if rgb is None else rgb
    return _write_tif(tmp_path / name, np.moveaxis(img, -1, 0), Affine(gsd, 0, X0, 0, -gsd, Y0))


def _ndsm(x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
    """Height above ground: 0, a 20 x 20 m block of 12 m at 10..30 m east, 20..40 m south of the corner."""
    return np.where((x_m >= 10) & (x_m < 30) & (y_m >= 20) & (y_m < 40), 12.0, 0.0).astype(np.float32)


def _terrain(x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
    """Ground height above sea level: 250 m, rising 0.1 m per metre east."""
    return (250.0 + 0.1 * x_m + 0.0 * y_m).astype(np.float32)


def _height_tif(tmp_path, name, fn, east_m=(0.0, MAP_W_M), dx=1.0):
    """A 1 m/px height GeoTIFF covering ``east_m`` (metres east of the map's corner) and the map's north extent."""
    w, h = int((east_m[1] - east_m[0]) / dx), int(MAP_H_M / dx)
    x = east_m[0] + (np.arange(w) + 0.5) * dx
    y = (np.arange(h) + 0.5) * dx
    xx, yy = np.meshgrid(x, y)
    return _write_tif(tmp_path / name, fn(xx, yy), Affine(dx, 0, X0 + east_m[0], 0, -dx, Y0))


# ------------------------------------------------------------------------------------------- DSM coverage


def test_a_dsm_over_the_west_half_leaves_out_the_east_tiles_and_counts_them(tmp_path):
    ortho = _ortho(tmp_path)
    dsm = _height_tif(tmp_path, "west.tif", _ndsm, east_m=(0.0, 40.0))
    src = tiles.orthophoto_tiles(ortho, dsm=dsm, **TILING)
    # tiles centred at 10, 20, 30 m east lie wholly under the DSM; at 40 m only half: left out, not height 0
    assert sorted({round(t.east_m) for t in src.tiles}) == [10, 20, 30]
    assert (src.counts.grid, src.counts.kept, src.counts.no_height) == (35, 15, 20)
    assert "kept 15 of 35" in src.counts.summary() and "20 less than 75 % under the surface model" in \
        src.counts.summary()
    # the kept tiles carry the block where it stands
    block = [i for i, t in enumerate(src.tiles) if 10 < t.east_m < 30 and -40 < t.north_m - MAP_H_M < -20]
    assert block and all(src.read(i)[..., 3].max() == P.pack_height(np.float32(12.0)) for i in block)


def test_a_dsm_of_somewhere_else_is_refused_with_one_line(tmp_path):
    ortho = _ortho(tmp_path)
    dsm = _height_tif(tmp_path, "elsewhere.tif", _ndsm, east_m=(500.0, 580.0))
    with pytest.raises(DataFormatError, match="covers none of the orthophoto's 35 tiles") as err:
        tiles.orthophoto_tiles(ortho, dsm=dsm, **TILING)
    assert "\n" not in str(err.value) and "elsewhere.tif" in str(err.value)


def test_dsm_nodata_counts_as_uncovered(tmp_path):
    ortho = _ortho(tmp_path)
    heights = np.asarray(rasterio.open(_height_tif(tmp_path, "full.tif", _ndsm)).read(1))
    heights[:, 40:] = -9999.0  # the east half is nodata
    dsm = _write_tif(tmp_path / "holes.tif", heights, Affine(1.0, 0, X0, 0, -1.0, Y0), nodata=-9999.0)
    src = tiles.orthophoto_tiles(ortho, dsm=dsm, **TILING)
    assert src.counts.kept == 15 and max(t.east_m for t in src.tiles) == pytest.approx(30.0, abs=0.1)


# ---------------------------------------------------------------------------------- DSM units and meaning


def test_an_absolute_dsm_is_refused_and_a_dtm_turns_it_into_heights_above_ground(tmp_path):
    ortho = _ortho(tmp_path)
    absolute = _height_tif(tmp_path, "dsm.tif", lambda x, y: _terrain(x, y) + _ndsm(x, y))
    dtm = _height_tif(tmp_path, "dtm.tif", _terrain)
    ndsm = _height_tif(tmp_path, "ndsm.tif", _ndsm)
    with pytest.raises(DataFormatError, match=r"absolute \(terrain \+ buildings\).*--dtm FILE") as err:
        tiles.orthophoto_tiles(ortho, dsm=absolute, **TILING)
    assert "\n" not in str(err.value) and "2nd percentile 25" in str(err.value)
    via_dtm = tiles.orthophoto_tiles(ortho, dsm=absolute, dtm=dtm, **TILING)
    direct = tiles.orthophoto_tiles(ortho, dsm=ndsm, **TILING)
    assert len(via_dtm) == len(direct) == 35 and via_dtm.describe()["dtm"] == "dtm.tif"
    for i in range(len(direct)):
        diff = via_dtm.read(i)[..., 3].astype(int) - direct.read(i)[..., 3]
        assert np.abs(diff).max() <= 1
    # an nDSM given with a DTM ends far below ground: refused, saying to leave out --dtm
    with pytest.raises(DataFormatError, match="leave out --dtm"):
        tiles.orthophoto_tiles(ortho, dsm=ndsm, dtm=dtm, **TILING)
    with pytest.raises(DataFormatError, match="give the --dsm too"):
        tiles.orthophoto_tiles(ortho, dtm=dtm, **TILING)


def test_a_dsm_in_centimetres_is_refused(tmp_path):
    ortho = _ortho(tmp_path)
    cm = _height_tif(tmp_path, "cm.tif", lambda x, y: 100.0 * _ndsm(x, y))
    with pytest.raises(DataFormatError, match="looks like centimetres: give heights in metres") as err:
        tiles.orthophoto_tiles(ortho, dsm=cm, **TILING)
    assert "99th percentile 1200" in str(err.value)


def test_swapped_orthophoto_and_dsm_are_refused(tmp_path):
    ortho = _ortho(tmp_path)
    ndsm = _height_tif(tmp_path, "ndsm.tif", _ndsm)
    with pytest.raises(DataFormatError, match="holds one band of heights, not an RGB orthophoto.*swapped"):
        tiles.orthophoto_tiles(ndsm, dsm=ortho, **TILING)
    with pytest.raises(DataFormatError, match="8-bit RGB image, not a surface model.*swapped"):
        tiles.orthophoto_tiles(ortho, dsm=ortho, **TILING)
    # the same with PNG + world file: a 16-bit single-channel image is the documented DSM format
    png = tmp_path / "ndsm.png"
    cv2.imwrite(str(png), np.full((120, 160), 300, np.uint16))
    tiles.write_world_file(tmp_path / "ndsm.pgw", (0.5, 0.0, X0, 0.0, -0.5, Y0))
    rgb = tmp_path / "rgb.png"
    cv2.imwrite(str(rgb), np.full((120, 160, 3), 90, np.uint8))
    tiles.write_world_file(tmp_path / "rgb.pgw", (0.5, 0.0, X0, 0.0, -0.5, Y0))
    with pytest.raises(DataFormatError, match="swapped"):
        tiles.orthophoto_tiles(png, crs=UTM32N, dsm=rgb, dsm_crs=UTM32N, **TILING)
    with pytest.raises(DataFormatError, match="swapped"):
        tiles.orthophoto_tiles(rgb, crs=UTM32N, dsm=rgb, dsm_crs=UTM32N, **TILING)


# ------------------------------------------------------------------------------------------------- nodata


def _east_part_without_data(tmp_path, kind: str):
    """An orthophoto whose pixels east of 50 m (or, for ``black``, below a diagonal) hold no data: a declared
    nodata value, alpha 0 (PNG or GeoTIFF), or black fill."""
    gsd = 0.5
    h, w = int(MAP_H_M / gsd), int(MAP_W_M / gsd)
    img = np.full((h, w, 3), 90, np.uint8)
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    empty = cols >= 100 if kind != "black" else cols + rows >= w  # black: a rotated raster's corner
    img[empty] = 0
    transform = Affine(gsd, 0, X0, 0, -gsd, Y0)
    if kind == "nodata":
        return _write_tif(tmp_path / "o.tif", np.moveaxis(img, -1, 0), transform, nodata=0), empty
    if kind in ("alpha", "alpha_tif"):
        img[empty] = 120  # imagery that the alpha band hides
        rgba = np.concatenate([img, np.where(empty, 0, 255).astype(np.uint8)[..., None]], axis=-1)
        if kind == "alpha_tif":
            path = tmp_path / "o.tif"
            with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=4, dtype="uint8", crs=UTM32N,
                               transform=transform, photometric="RGB", alpha="YES") as ds:
                ds.write(np.moveaxis(rgba, -1, 0))
            return path, empty
        path = tmp_path / "o.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
        tiles.write_world_file(tmp_path / "o.pgw", (gsd, 0.0, X0, 0.0, -gsd, Y0))
        (tmp_path / "o.prj").write_text(rasterio.crs.CRS.from_string(UTM32N).to_wkt())
        return path, empty
    return _write_tif(tmp_path / "o.tif", np.moveaxis(img, -1, 0), transform), empty


@pytest.mark.parametrize("kind", ["nodata", "alpha", "alpha_tif", "black"])
def test_tiles_mostly_without_data_are_left_out_and_counted(tmp_path, kind):
    path, empty = _east_part_without_data(tmp_path, kind)
    src = tiles.orthophoto_tiles(path, **TILING)
    c = src.counts
    assert c.grid == 35 and c.outside == 0 and c.nodata > 0 and c.kept == len(src) == 35 - c.nodata
    assert f"{c.nodata} less than 75 % valid imagery" in c.summary()
    for t in src.tiles:  # what is kept is at least 75 % data (to the sampling grid's precision)
        col0, row0 = int((t.east_m - 10.0) / 0.5), int((MAP_H_M - t.north_m - 10.0) / 0.5)
        assert empty[row0:row0 + 40, col0:col0 + 40].mean() <= 0.3
    # every left-out tile was mostly without data: a tile more than half empty is never kept
    kept = {(round(t.east_m), round(t.north_m)) for t in src.tiles}
    for ce in range(10, 80, 10):
        for cn in range(10, 60, 10):
            col0, row0 = int((ce - 10) / 0.5), int((MAP_H_M - cn - 10) / 0.5)
            if empty[row0:row0 + 40, col0:col0 + 40].mean() > 0.5:
                assert (ce, cn) not in kept
    if kind == "nodata":  # the threshold is --min-coverage's: lowered, more of the edge is kept
        assert len(tiles.orthophoto_tiles(path, min_coverage=0.5, **TILING)) > len(src)
        with pytest.raises(DataFormatError, match="--min-coverage must lie in"):
            tiles.orthophoto_tiles(path, min_coverage=0.0, **TILING)


def test_an_orthophoto_without_any_imagery_is_refused_with_one_line(tmp_path):
    path = _ortho(tmp_path, rgb=np.zeros((120, 160, 3), np.uint8))
    with pytest.raises(DataFormatError, match="none of its 35 tiles holds 75 % imagery"):
        tiles.orthophoto_tiles(path, **TILING)


# ------------------------------------------------------------------------------------------------ resolution


def test_resolution_note_names_both_figures():
    warn, line = map_checks.resolution_note(2.0, 0.73, 0.73)
    assert warn and "2.00 m/px" in line and "0.73 m/px" in line and "2.7x" in line
    assert map_checks.resolution_note(0.8, 0.73, 0.73) is None
    warn, line = map_checks.resolution_note(0.1, 0.73, 0.73)
    assert not warn and "0.10 m/px" in line and "0.73" in line
    warn, line = map_checks.resolution_note(0.1, 1.5, 0.73)  # a coarse --gsd loses the detail too
    assert warn and "--gsd" in line and "1.50 m/px" in line


def test_build_warns_once_about_an_orthophoto_far_coarser_than_the_model(tmp_path, caplog):
    handle = random_handle(micro_config(), seed=0)  # 70 m / 64 px: expects 1.09 m/px
    expected = 70.0 / handle.aerial_px
    coarse = _ortho(tmp_path, gsd=2.0, name="coarse.tif")
    fine = _ortho(tmp_path, gsd=1.0, name="fine.tif")
    for path, warned in ((coarse, True), (fine, False)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="unifygeo_ros.index.build"):
            src = tiles.orthophoto_tiles(path, tile_m=40.0, stride_m=40.0)
            index_build.build_index(handle, src, tmp_path / f"ix_{path.stem}", progress=False)
        lines = [r.getMessage() for r in caplog.records if "m/px" in r.getMessage()]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "m/px" in r.getMessage()]
        assert len(warnings) == (1 if warned else 0), lines
        if warned:
            assert "2.00 m/px" in lines[0] and f"{expected:.2f} m/px" in lines[0]


# ---------------------------------------------------------------------------------------------------- origin


def _marker_map(tmp_path, x0=691000.0, y0=Y0):
    """A 0.25 m/px UTM GeoTIFF with red markers at known ground positions, and the same map in EPSG:4326 with a
    nodata margin; by default 190 km east of the zone's central meridian, where grid north is 1.9 deg off north."""
    gsd, h, w = 0.25, 300, 400
    img = np.full((h, w, 3), 90, np.uint8)
    rng = np.random.default_rng(3)
    markers_xy = []
    for _ in range(8):
        col, row = int(rng.uniform(60, w - 60)), int(rng.uniform(60, h - 60))
        cv2.circle(img, (col, row), 4, (255, 0, 0), -1)
        markers_xy.append((x0 + (col + 0.5) * gsd, y0 - (row + 0.5) * gsd))
    transform = Affine(gsd, 0, x0, 0, -gsd, y0)
    utm = _write_tif(tmp_path / "utm.tif", np.moveaxis(img, -1, 0), transform)
    dst_t, dw, dh = calculate_default_transform(UTM32N, "EPSG:4326", w, h, x0, y0 - h * gsd, x0 + w * gsd, y0)
    pad = 40  # nodata pixels on its west and south sides, as another export of the same map might have
    dst_t, dw, dh = dst_t @ Affine.translation(-pad, 0), dw + pad, dh + pad
    out = np.zeros((3, dh, dw), np.uint8)
    reproject(np.moveaxis(img, -1, 0), out, src_transform=transform, src_crs=UTM32N, dst_transform=dst_t,
              dst_crs="EPSG:4326", resampling=Resampling.nearest)
    wgs = _write_tif(tmp_path / "wgs84.tif", out, dst_t, crs="EPSG:4326", nodata=0)
    import pyproj

    to_wgs = pyproj.Transformer.from_crs(UTM32N, "EPSG:4326", always_xy=True)
    markers = [to_wgs.transform(x, y)[::-1] for x, y in markers_xy]
    return utm, wgs, markers


def _marker_en(src, lat_lon):
    """Where the tiles of ``src`` show the marker nearest to ``lat_lon``: (east m, north m) from its pixels."""
    want_e, want_n = src.origin.to_en(*lat_lon)
    centres = np.array([[t.east_m, t.north_m] for t in src.tiles])
    i = int(np.argmin(np.abs(centres - [want_e, want_n]).max(axis=1)))
    img = src.read(i)
    red = (img[:, :, 0].astype(int) - img[:, :, 1]) > 60
    ys, xs = np.nonzero(red)
    gsd = src.gsd_m
    e = centres[i, 0] - src.tile_m / 2 + (xs + 0.5) * gsd
    n = centres[i, 1] + src.tile_m / 2 - (ys + 0.5) * gsd
    near = np.hypot(e - want_e, n - want_n) < 3.0
    return float(e[near].mean()), float(n[near].mean())


def test_the_same_map_in_utm_and_wgs84_with_the_same_origin_gives_the_same_east_north(tmp_path):
    utm, wgs, markers = _marker_map(tmp_path)
    kw = {"tile_m": 30.0, "stride_m": 15.0, "gsd_m": 0.25}
    # default origins: each raster's own south-west corner, metres apart (the issue measured 11 m)
    d_utm, d_wgs = tiles.orthophoto_tiles(utm, **kw), tiles.orthophoto_tiles(wgs, **kw)
    apart = d_utm.origin.to_en(d_wgs.origin.lat0_deg, d_wgs.origin.lon0_deg)
    assert math.hypot(*apart) > 5.0
    origin = (markers[0][0] - 0.0002, markers[0][1] - 0.0003)
    s_utm = tiles.orthophoto_tiles(utm, origin=origin, **kw)
    s_wgs = tiles.orthophoto_tiles(wgs, origin=origin, **kw)
    assert s_utm.origin == s_wgs.origin == geo.LocalENU(*origin) and s_utm.origin_note == "given by --origin"
    truth = geo.LocalENU(*origin)
    for lat, lon in markers:
        a, b = np.array(_marker_en(s_utm, (lat, lon))), np.array(_marker_en(s_wgs, (lat, lon)))
        assert np.hypot(*(a - b)) < 0.5 and np.hypot(*(a - np.array(truth.to_en(lat, lon)))) < 0.5
    # the grid stays flush with the footprint's south-west corner, wherever the origin is
    assert len(s_utm) == len(d_utm)


def test_origin_text_and_distance_are_checked(tmp_path, vigor_city):
    assert map_checks.parse_origin("47.5,-122.25") == (47.5, -122.25)
    for bad in ("47.5", "north,west", "95,10", "nan,3"):
        with pytest.raises(DataFormatError, match="--origin"):
            map_checks.parse_origin(bad)
    city_dir, truth = vigor_city
    lat, lon = truth.origin
    src = tiles.vigor_tiles(city_dir, origin=(lat + 0.001, lon))
    e, n = geo.LocalENU(lat + 0.001, lon).to_en(truth.tile_latlon[:, 0], truth.tile_latlon[:, 1])
    want = {Path(name).stem: (ee, nn) for name, ee, nn in zip(truth.tile_names, e, n)}
    assert len(src) == len(want)
    assert all(np.allclose((t.east_m, t.north_m), want[t.tile_id]) for t in src.tiles)
    assert tiles.vigor_tiles(city_dir).origin_note == "from geo.json"
    with pytest.raises(DataFormatError, match="km from the map.*latitude first"):
        tiles.vigor_tiles(city_dir, origin=(lon, lat))  # swapped
    utm = _ortho(tmp_path)
    with pytest.raises(DataFormatError, match="km from the map"):
        tiles.orthophoto_tiles(utm, origin=(48.17, 10.0), **TILING)  # ~74 km east


def test_cli_build_prints_counts_and_origin_and_localize_prints_the_origin(tmp_path, caplog, capsys, micro_index,
                                                                           vigor_city):
    ckpt = random_checkpoint(tmp_path / "ckpt", tiny_config(aerial_height=True))
    ortho = _ortho(tmp_path)
    dsm = _height_tif(tmp_path, "west.tif", _ndsm, east_m=(0.0, 40.0))
    args = ["index", "build", "--checkpoint", str(ckpt), "--out", str(tmp_path / "ix"), "--orthophoto", str(ortho),
            "--dsm", str(dsm), "--tile-m", "20", "--stride-m", "10", "--device", "cpu", "--no-progress"]
    with caplog.at_level(logging.INFO, logger="unifygeo_ros.index.build"):
        assert cli.main(args + ["--origin", "9.0,48.168"]) == 1  # latitude and longitude swapped
        assert cli.main(args + ["--origin", "48.168,9.0"]) == 0  # the map's corner is ~48.1682 N 8.9995 E
    out, err = capsys.readouterr()
    assert "km from the map" in err and "Traceback" not in err
    assert "origin of east/north: lat 48.1680000 lon 9.0000000 (given by --origin)" in out
    assert any("kept 15 of 35" in r.getMessage() for r in caplog.records)
    pano = str(next((vigor_city[0] / "panorama").iterdir()))
    assert cli.main(["localize", pano, "--index", str(micro_index), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    lat, lon = vigor_city[1].origin
    assert out.count("origin") == 1 and f"lat {lat:.7f} lon {lon:.7f}" in out
    assert cli.main(["localize", pano, "--index", str(micro_index), "--device", "cpu", "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 1 and "origin" not in err  # stdout is JSON only, stderr errors only


# ------------------------------------------------------------------------------ 16-bit orthophotos (issue 16)
def _dark_and_bright_16bit() -> np.ndarray:
    """A 16-bit RGB map: the west half dark (1000..2000), the east half bright (30000..40000), a gradient in each."""
    h, w = int(MAP_H_M / 0.5), int(MAP_W_M / 0.5)
    ramp = np.linspace(0.0, 1.0, w // 2, dtype=np.float32)[None, :, None]
    west = 1000.0 + 1000.0 * np.broadcast_to(ramp, (h, w // 2, 3))
    east = 30000.0 + 10000.0 * np.broadcast_to(ramp, (h, w // 2, 3))
    return np.concatenate([west, east], axis=1).astype(np.uint16)


def test_a_16_bit_orthophoto_gets_one_stretch_for_the_whole_map(tmp_path):
    """Every window of a 16-bit GeoTIFF or PNG is mapped to 8 bits by the same linear map (2nd..98th percentile
    of the whole raster): a dark part stays dark and a pixel reads the same in every tile (was: each window
    stretched on its own, so a dark tile came out as bright as a bright one)."""
    from unifygeo_ros.index.rasters import open_raster, write_world_file

    img16 = _dark_and_bright_16bit()
    tif = _write_tif(tmp_path / "ortho16.tif", np.moveaxis(img16, -1, 0), Affine(0.5, 0, X0, 0, -0.5, Y0))
    png = tmp_path / "ortho16.png"
    cv2.imwrite(str(png), img16[:, :, ::-1])
    write_world_file(png.with_suffix(".pgw"), (0.5, 0.0, 0.0, -0.5, X0 + 0.25, Y0 - 0.25))
    for path in (tif, png):
        raster = open_raster(path, crs=UTM32N)
        west = raster.read_window(0, 0, 40, 40)  # inside the dark half
        east = raster.read_window(100, 0, 140, 40)  # inside the bright half
        assert west.dtype == np.uint8 and west.max() < 40 and east.min() > 200, path.name
        whole = raster.read_window(0, 0, raster.width, raster.height)
        assert np.array_equal(whole[0:40, 0:40], west)  # the same pixels read alone or with the rest
        assert np.array_equal(raster.read_window(20, 10, 60, 50), whole[10:50, 20:60])
