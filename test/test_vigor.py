"""VIGOR reader: names, label lines, offset convention, scale, splits, items, errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unifygeo_ros import geo
from unifygeo_ros.data import vigor
from unifygeo_ros.data.vigor import (
    LabelRecord,
    VigorDataset,
    VigorGallery,
    city_mpp,
    format_label_line,
    format_pano_name,
    format_sat_name,
    label_camera_latlon,
    parse_label_line,
    parse_pano_name,
    parse_sat_name,
    read_label_file,
)
from unifygeo_ros.errors import DataFormatError, ImageError
from unifygeo_ros.image.preprocess import denormalize

from vigor_fixture import ORIGINAL_LABEL_ERROR_PX, write_vigor_world

CITIES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")
SMALL = dict(ground_size_hw=(16, 32), aerial_px=16)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("vigor")
    return root, write_vigor_world(root, CITIES, seed=3)


@pytest.fixture()
def one_city(tmp_path):
    """A fresh single-city world that a test may damage."""
    return tmp_path, write_vigor_world(tmp_path, ("Chicago",), seed=5)


def _metres_between(a_latlon, b_latlon) -> float:
    e, n = geo.LocalENU(*a_latlon).to_en(*b_latlon)
    return float(math.hypot(e, n))


# ------------------------------------------------------------------------------------------------ names
def test_pano_name_round_trip_and_vigor_example():
    assert parse_pano_name("-0r1n7RjTfq5R87-MkIxTA,37.798628,-122.403286,.jpg") == (
        "-0r1n7RjTfq5R87-MkIxTA", 37.798628, -122.403286)
    name = format_pano_name("Ab_c-1", 40.123456, -74.654321)
    assert name == "Ab_c-1,40.123456,-74.654321,.jpg"
    assert parse_pano_name(name) == ("Ab_c-1", 40.123456, -74.654321)
    assert parse_pano_name("x,1.5,2.5.jpg") == ("x", 1.5, 2.5)  # trailing comma optional
    assert parse_pano_name("/some/dir/x,1.5,2.5,.png")[0] == "x"


@pytest.mark.parametrize("bad", ["x,1.5,.jpg", ",1,2,.jpg", "x,a,2,.jpg", "x,95,2,.jpg", "x,1,2,.txt"])
def test_bad_pano_names(bad):
    with pytest.raises(DataFormatError, match="panorama file name"):
        parse_pano_name(bad)


def test_sat_name_round_trip():
    assert parse_sat_name("satellite_37.7984226201_-122.40419864.png") == (37.7984226201, -122.40419864)
    assert parse_sat_name(format_sat_name(-33.5, 151.25)) == (-33.5, 151.25)
    for bad in ("sat_1_2.png", "satellite_1.png", "satellite_1_2_3.png", "satellite_x_2.png", "satellite_1_2"):
        with pytest.raises(DataFormatError, match="satellite file name"):
            parse_sat_name(bad)


def _line() -> str:
    sats = [format_sat_name(40.0 + k * 1e-4, -74.0) for k in range(4)]
    return (f"P1,40.00001,-74.00001,.jpg {sats[0]} 10.5 -3 {sats[1]} -150 -3 "
            f"{sats[2]} 10.5 160 {sats[3]} -150 160")


def test_label_line_both_ways():
    rec = parse_label_line(_line() + "\r\n", 1, "f.txt")
    assert rec.pano == "P1,40.00001,-74.00001,.jpg"
    assert rec.positive == rec.sats[0] and rec.semi_positives == rec.sats[1:]
    assert rec.d_row == (10.5, -150.0, 10.5, -150.0) and rec.d_col == (-3.0, -3.0, 160.0, 160.0)
    again = parse_label_line(format_label_line(rec), 2, "f.txt")
    assert again == rec


@pytest.mark.parametrize("mutate, what", [
    (lambda cols: cols[:-1], "13 space-separated columns"),
    (lambda cols: cols + ["1"], "13 space-separated columns"),
    (lambda cols: cols[:2] + ["ten"] + cols[3:], "column 3: offset 'ten' is not a number"),
    (lambda cols: cols[:3] + ["nan"] + cols[4:], "column 4: offset 'nan' is not finite"),
    (lambda cols: cols[:4] + ["tile.png"] + cols[5:], "column 5: satellite file name"),
    (lambda cols: ["pano.jpg"] + cols[1:], "column 1: panorama file name"),
    (lambda cols: cols[:4] + [cols[1]] + cols[5:], "distinct"),
])
def test_malformed_label_lines_name_file_and_line(tmp_path, mutate, what):
    path = tmp_path / "labels.txt"
    good = _line()
    path.write_text(good + "\n\n" + " ".join(mutate(good.split())) + "\n")
    with pytest.raises(DataFormatError) as err:
        read_label_file(path)
    assert f"{path}:3:" in str(err.value)
    assert what in str(err.value)


# ------------------------------------------------------------------------------------ offset convention
def test_offset_convention_south_west_both_ways():
    mpp = 0.1
    # a camera 10 px south and 10 px west of the centre: row = 320 + 10, col = 320 - 10
    east, north = geo.vigor_offset_to_en(10.0, 10.0, mpp)
    assert east < 0 and north < 0
    assert east == pytest.approx(-1.0) and north == pytest.approx(-1.0)
    d_row, d_col = geo.en_to_vigor_offset(-1.0, -1.0, mpp)
    assert (d_row, d_col) == (pytest.approx(10.0), pytest.approx(10.0))
    # north-east: negative offsets
    d_row, d_col = geo.en_to_vigor_offset(2.0, 3.0, mpp)
    assert d_row == pytest.approx(-30.0) and d_col == pytest.approx(-20.0)
    rec = LabelRecord("P,0,0,.jpg", ("satellite_0_0.png", "satellite_0_1.png", "satellite_1_0.png",
                                     "satellite_1_1.png"), (10.0, 0, 0, 0), (10.0, 0, 0, 0))
    assert rec.offset_en_m(0, mpp) == (pytest.approx(-1.0), pytest.approx(-1.0))


def test_label_offsets_point_from_tile_centre_to_the_panorama(world):
    """Independent of the convention's code: a positive d_row must mean a smaller latitude, a positive d_col a
    smaller longitude, and tile centre + offset must land on the position in the panorama's name."""
    root, truth = world
    ds = VigorDataset(root, cities=CITIES, split="cross", train=True, **SMALL)
    assert len(ds) == sum(len(c.pano_names) for c in truth.values())
    for i, rec in enumerate(ds.records):
        _, plat, plon = parse_pano_name(rec.pano)
        for slot in range(4):
            tlat, tlon = parse_sat_name(rec.sats[slot])
            assert np.sign(rec.d_row[slot]) == -np.sign(plat - tlat)
            assert np.sign(rec.d_col[slot]) == -np.sign(plon - tlon)
        mpp = ds.city_mpp_native[ds.pano_city[i]]
        for slot in range(4):
            assert _metres_between(label_camera_latlon(rec, slot, mpp), (plat, plon)) < 1e-3
        assert _metres_between(ds.camera_latlon(i), (plat, plon)) < 1e-3


# ------------------------------------------------------------------------------------------------- scale
def test_city_mpp_fallbacks(tmp_path):
    write_vigor_world(tmp_path, ("Chicago", "Synthville"), seed=1, geo_json=False, panos_per_city=2)
    assert city_mpp(tmp_path, "Chicago", 640) == pytest.approx(0.111262)
    assert city_mpp(tmp_path, "Chicago", 320) == pytest.approx(0.222524)
    assert city_mpp(tmp_path, "Chicago", 320, original_mpp=True) == pytest.approx(0.228)
    with pytest.raises(DataFormatError, match="geo.json"):
        city_mpp(tmp_path, "Synthville", 320)
    (tmp_path / "Synthville" / "geo.json").write_text(json.dumps({"format": "unifygeo-city", "mpp": 0.25,
                                                                   "tile_px": 320}))
    assert city_mpp(tmp_path, "Synthville", 320) == pytest.approx(0.25)
    assert city_mpp(tmp_path, "Synthville", 160) == pytest.approx(0.5)
    assert city_mpp(tmp_path, "Synthville", 160, original_mpp=True) == pytest.approx(0.5)  # exact scale wins
    assert vigor.native_tile_px(tmp_path, "Synthville") == 320
    assert vigor.native_tile_px(tmp_path, "Chicago") == 640
    (tmp_path / "Synthville" / "geo.json").write_text(json.dumps({"mpp": -1, "tile_px": 320}))
    with pytest.raises(DataFormatError, match="'mpp' must be a positive number"):
        city_mpp(tmp_path, "Synthville", 320)
    (tmp_path / "Synthville" / "geo.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="geo.json"):
        city_mpp(tmp_path, "Synthville", 320)


def test_geo_json_scale_is_used_for_offsets(tmp_path):
    truth = write_vigor_world(tmp_path, ("Synthville",), seed=2, geo_json=True, mpp=0.5, tile_px=40)
    ds = VigorDataset(tmp_path, cities=["Synthville"], split="cross", train=False, ground_size_hw=(16, 32),
                      aerial_px=20)
    c = truth["Synthville"]
    assert ds.city_mpp_native[0] == pytest.approx(0.5)
    item = ds[0]
    assert item["mpp"] == pytest.approx(1.0)  # 40 px at 0.5 m read at 20 px
    k = int(np.flatnonzero([n == ds.records[0].pano for n in c.pano_names])[0])
    t = c.label_tiles[k, 0]
    np.testing.assert_allclose(item["offset_en_m"], c.pano_en[k] - c.tile_en[t], atol=0.01)


# ------------------------------------------------------------------------------------------------ splits
def _panos(ds: VigorDataset) -> set[tuple[str, str]]:
    return {(ds.cities[ci], r.pano) for r, ci in zip(ds.records, ds.pano_city)}


def _expected(truth, cities, which) -> set[tuple[str, str]]:
    out = set()
    for name in cities:
        c = truth[name]
        idx = {"train": c.train, "test": c.test, "all": range(len(c.pano_names))}[which]
        out |= {(name, c.pano_names[i]) for i in idx}
    return out


def test_same_and_cross_area_sets(world):
    root, truth = world
    same_train = VigorDataset(root, split="same", train=True, **SMALL)
    same_test = VigorDataset(root, split="same", train=False, **SMALL)
    assert same_train.cities == CITIES == same_test.cities
    assert _panos(same_train) == _expected(truth, CITIES, "train")
    assert _panos(same_test) == _expected(truth, CITIES, "test")
    assert not _panos(same_train) & _panos(same_test)

    cross_train = VigorDataset(root, split="cross", train=True, **SMALL)
    cross_test = VigorDataset(root, split="cross", train=False, **SMALL)
    assert cross_train.cities == ("NewYork", "Seattle")
    assert cross_test.cities == ("SanFrancisco", "Chicago")
    assert _panos(cross_train) == _expected(truth, ("NewYork", "Seattle"), "all")
    assert _panos(cross_test) == _expected(truth, ("SanFrancisco", "Chicago"), "all")

    explicit = VigorDataset(root, cities=["Chicago"], split="cross", train=True, **SMALL)
    assert _panos(explicit) == _expected(truth, ("Chicago",), "all")
    explicit_same = VigorDataset(root, cities=("Seattle",), split="same", train=False, **SMALL)
    assert _panos(explicit_same) == _expected(truth, ("Seattle",), "test")


def test_gallery_shares_the_global_tile_indexing(world):
    root, truth = world
    ds = VigorDataset(root, split="cross", train=False, **SMALL)
    gal = VigorGallery(root, ds.cities, aerial_px=16)
    assert len(gal) == sum(len(truth[c].tile_names) for c in ds.cities) == len(ds.gallery())
    np.testing.assert_array_equal(gal.tile_latlon, ds.tile_latlon)
    expected = np.concatenate([truth[c].tile_latlon for c in ds.cities])
    np.testing.assert_allclose(gal.tile_latlon, expected, atol=1e-9)
    for t in (0, len(gal) - 1):
        item = gal[t]
        assert item["tile_index"] == t and item["aerial"].shape == (3, 16, 16)
        np.testing.assert_allclose(item["center_latlon"], expected[t])
        city = truth[item["city"]]
        local = t - sum(len(truth[c].tile_names) for c in ds.cities[: ds.cities.index(item["city"])])
        np.testing.assert_allclose(denormalize(item["aerial"])[5, 5], city.tile_colors[local], atol=2)
    with pytest.raises(IndexError):
        gal[len(gal)]


# ------------------------------------------------------------------------------------------------- items
def _tile_color(truth, ds: VigorDataset, tile: int) -> np.ndarray:
    city = ds.cities[int(ds.tiles.tile_city[tile])]
    return truth[city].tile_colors[tile - ds.tiles.offsets[ds.cities.index(city)]]


def test_items_positive_tile_offset_and_semi_positives(world):
    root, truth = world
    ds = VigorDataset(root, split="same", train=False, **SMALL)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False)
    batch = next(iter(loader))
    assert batch["ground"].shape == (3, 3, 16, 32) and batch["ground"].dtype == torch.float32
    assert batch["aerial"].shape == (3, 3, 16, 16)
    assert batch["offset_en_m"].dtype == torch.float32 and batch["semi_indices"].dtype == torch.int64
    for i in range(len(ds)):
        item = ds[i]
        assert item["pano_index"] == i and item["heading_deg"] == 0.0
        assert item["tile_index"] == item["positive_index"] == ds.positive_indices[i]
        np.testing.assert_allclose(denormalize(item["aerial"])[8, 8], _tile_color(truth, ds, item["tile_index"]),
                                   atol=2)
        plat, plon = ds.pano_latlon[i]
        half = truth[item["city"]].tile_m / 2
        # offset = camera relative to the returned tile, from the exact geometry
        e, n = vigor.tile_offset_en_m(ds.tile_latlon[item["tile_index"]], (plat, plon))
        np.testing.assert_allclose(item["offset_en_m"], (e, n), atol=1e-3)
        assert max(abs(e), abs(n)) <= half / 2 + 1e-6  # central quarter of the positive
        semis = item["semi_indices"]
        assert semis.shape == (3,) and len(set(semis.tolist()) | {item["tile_index"]}) == 4
        for t in semis:
            e, n = vigor.tile_offset_en_m(ds.tile_latlon[t], (plat, plon))
            assert max(abs(e), abs(n)) <= half + 1e-6  # inside the semi-positive
        assert item["mpp"] == pytest.approx(truth[item["city"]].tile_m / 16, rel=1e-6)  # 16-px tensor


def test_semi_positive_sampling_for_training(world):
    root, truth = world
    ds = VigorDataset(root, cities=["NewYork"], split="cross", train=True, positives_only=False, seed=1, **SMALL)
    slots = set()
    for _ in range(12):
        item = ds[0]
        slot = list(ds.sat_indices[0]).index(item["tile_index"])
        slots.add(slot)
        assert item["positive_index"] == ds.sat_indices[0, 0]
        np.testing.assert_allclose(item["offset_en_m"], ds.offsets_en_m[0, slot].astype(np.float32))
        np.testing.assert_allclose(item["offset_en_m"], ds.camera_en_relative_to(0, item["tile_index"]),
                                   atol=1e-3)
        np.testing.assert_allclose(denormalize(item["aerial"])[8, 8], _tile_color(truth, ds, item["tile_index"]),
                                   atol=2)
    assert len(slots) >= 3
    test_ds = VigorDataset(root, cities=["NewYork"], split="cross", train=False, positives_only=False, **SMALL)
    assert all(test_ds[0]["tile_index"] == test_ds.sat_indices[0, 0] for _ in range(5))


def test_camera_relative_to_any_tile(world):
    root, _ = world
    ds = VigorDataset(root, cities=["Seattle"], split="cross", train=False, **SMALL)
    for t in range(len(ds.tiles)):
        e, n = ds.camera_en_relative_to(2, t)
        e2, n2 = vigor.tile_offset_en_m(ds.tile_latlon[t], ds.pano_latlon[2])
        assert math.hypot(e - e2, n - n2) < 1e-3


def test_unknown_orientation_rolls_content_and_heading(world):
    root, _ = world
    known = VigorDataset(root, split="same", train=False, orientation="known", **SMALL)
    unknown = VigorDataset(root, split="same", train=False, orientation="unknown", seed=7, **SMALL)
    again = VigorDataset(root, split="same", train=False, orientation="unknown", seed=7, **SMALL)
    other = VigorDataset(root, split="same", train=False, orientation="unknown", seed=8, **SMALL)
    w = SMALL["ground_size_hw"][1]
    headings = []
    for i in range(len(known)):
        a, b = known[i], unknown[i]
        h = float(b["heading_deg"])
        assert -180.0 <= h < 180.0
        assert h == float(again[i]["heading_deg"])  # deterministic per index and seed
        k = -h * w / 360.0
        assert k == pytest.approx(round(k), abs=1e-4)  # whole columns
        # rolling right by k columns changes the heading by -k*360/W
        torch.testing.assert_close(b["ground"], torch.roll(a["ground"], int(round(k)), dims=-1))
        torch.testing.assert_close(b["aerial"], a["aerial"])
        np.testing.assert_array_equal(b["offset_en_m"], a["offset_en_m"])
        headings.append(h)
    assert len(set(headings)) > len(headings) // 2
    assert [float(other[i]["heading_deg"]) for i in range(len(other))] != headings

    train = VigorDataset(root, cities=["Chicago"], split="cross", train=True, orientation="unknown", seed=7,
                         **SMALL)
    draws = {float(train[0]["heading_deg"]) for _ in range(6)}
    assert len(draws) >= 4  # random per draw when training
    k_ds = VigorDataset(root, cities=["Chicago"], split="cross", train=True, orientation="known", **SMALL)
    item = train[0]
    k = int(round(-float(item["heading_deg"]) * w / 360.0))
    torch.testing.assert_close(item["ground"], torch.roll(k_ds[0]["ground"], k, dims=-1))


# --------------------------------------------------------------------------------------- corrected labels
def test_corrected_original_and_auto(one_city):
    root, truth = one_city
    corr = VigorDataset(root, cities=["Chicago"], split="cross", train=False, **SMALL)
    orig = VigorDataset(root, cities=["Chicago"], split="cross", train=False, corrected=False, **SMALL)
    assert [r.pano for r in corr.records] == [r.pano for r in orig.records]
    d = np.array(orig.records[0].d_row) - np.array(corr.records[0].d_row)
    np.testing.assert_allclose(d, ORIGINAL_LABEL_ERROR_PX[0], atol=1e-5)
    (root / "splits__corrected" / "Chicago" / "pano_label_balanced__corrected.txt").unlink()
    with pytest.raises(DataFormatError, match="corrected labels for Chicago not found.*corrected='auto'"):
        VigorDataset(root, cities=["Chicago"], split="cross", train=False, **SMALL)
    with pytest.warns(UserWarning, match="no corrected labels for Chicago"):
        auto = VigorDataset(root, cities=["Chicago"], split="cross", train=False, corrected="auto", **SMALL)
    assert auto.records == orig.records


def test_contract_file_names_are_read(tmp_path):
    truth = write_vigor_world(tmp_path, ("Seattle",), seed=4, naming="contract", original=False)
    assert (tmp_path / "splits__corrected" / "Seattle" / "pano_label_balance.txt").is_file()
    ds = VigorDataset(tmp_path, cities=["Seattle"], split="cross", train=True, **SMALL)
    assert _panos(ds) == _expected(truth, ("Seattle",), "all")
    with pytest.raises(DataFormatError, match="not found"):
        VigorDataset(tmp_path, cities=["Seattle"], split="cross", train=True, corrected=False, **SMALL)


# ------------------------------------------------------------------------------------------------ errors
def test_wrong_root(tmp_path):
    with pytest.raises(DataFormatError, match="VIGOR root not found"):
        VigorDataset(tmp_path / "nope", cities=["Chicago"], **SMALL)
    (tmp_path / "Chicago").mkdir()
    with pytest.raises(DataFormatError, match="not a VIGOR root"):
        VigorDataset(tmp_path, cities=["Chicago"], **SMALL)


def test_unknown_city_lists_the_cities_found(one_city):
    root, _ = one_city
    with pytest.raises(DataFormatError, match=r"city folder .*Boston not found.*Chicago"):
        VigorDataset(root, cities=["Boston"], **SMALL)


def test_missing_split_file(one_city):
    root, _ = one_city
    for folder, name in (("splits__corrected", "same_area_balanced_test__corrected.txt"),
                         ("splits", "same_area_balanced_test.txt")):
        (root / folder / "Chicago" / name).unlink()
    with pytest.raises(DataFormatError, match="same_area_balanced_test"):
        VigorDataset(root, cities=["Chicago"], split="same", train=False, **SMALL)
    with pytest.raises(DataFormatError, match=r"label file for Chicago \(same_test\) not found"):
        VigorDataset(root, cities=["Chicago"], split="same", train=False, corrected=False, **SMALL)
    VigorDataset(root, cities=["Chicago"], split="same", train=True, **SMALL)  # the other half still loads
    for folder in ("splits", "splits__corrected"):
        (root / folder / "Chicago" / "satellite_list.txt").unlink()
    with pytest.raises(DataFormatError, match="satellite_list.txt for Chicago not found"):
        VigorDataset(root, cities=["Chicago"], split="same", train=True, **SMALL)


def test_malformed_line_in_split_file(one_city):
    root, _ = one_city
    path = root / "splits__corrected" / "Chicago" / "same_area_balanced_train__corrected.txt"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0]  # drop the last column
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=rf"{path}:2: expected 13 space-separated columns"):
        VigorDataset(root, cities=["Chicago"], split="same", train=True, **SMALL)


def test_label_referencing_unknown_tile(one_city):
    root, truth = one_city
    path = root / "splits__corrected" / "Chicago" / "pano_label_balanced__corrected.txt"
    text = path.read_text().replace(truth["Chicago"].tile_names[4], format_sat_name(1.0, 2.0))
    path.write_text(text)
    with pytest.raises(DataFormatError, match="not in the city's satellite_list.txt: satellite_1.0000000000_2"):
        VigorDataset(root, cities=["Chicago"], split="cross", train=True, **SMALL)


def test_missing_images(one_city):
    root, truth = one_city
    c = truth["Chicago"]
    for name in c.pano_names[:2]:
        (root / "Chicago" / "panorama" / name).unlink()
    with pytest.raises(DataFormatError) as err:
        VigorDataset(root, cities=["Chicago"], split="cross", train=False, **SMALL)
    assert "2 panorama file(s) missing" in str(err.value) and c.pano_names[0] in str(err.value)
    ds = VigorDataset(root, cities=["Chicago"], split="cross", train=False, check_files=False, **SMALL)
    i = [r.pano for r in ds.records].index(c.pano_names[0])
    with pytest.raises(ImageError, match=r"image file not found: .*" + c.pano_names[0].split(",")[0]):
        ds[i]
    (root / "Chicago" / "satellite" / c.tile_names[0]).unlink()
    with pytest.raises(DataFormatError, match=r"1 satellite tile\(s\) of satellite_list.txt missing"):
        VigorGallery(root, ["Chicago"])


def test_corrupt_and_truncated_images(one_city):
    root, truth = one_city
    c = truth["Chicago"]
    ds = VigorDataset(root, cities=["Chicago"], split="cross", train=False, **SMALL)
    names = [r.pano for r in ds.records]
    (root / "Chicago" / "panorama" / names[0]).write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageError, match=r"image file .*" + names[0].split(",")[0] + ".*cannot decode"):
        ds[0]
    p = root / "Chicago" / "panorama" / names[1]
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 40])
    with pytest.raises(ImageError, match=r"truncated JPEG"):
        ds[1]
    tile = root / "Chicago" / "satellite" / c.tile_names[0]
    tile.write_bytes(tile.read_bytes()[:30])
    gal = ds.gallery()
    with pytest.raises(ImageError, match=c.tile_names[0]):
        gal[0]


def test_bad_arguments(world):
    root, _ = world
    with pytest.raises(ValueError, match="split"):
        VigorDataset(root, split="other", **SMALL)
    with pytest.raises(ValueError, match="orientation"):
        VigorDataset(root, orientation="sideways", **SMALL)
    with pytest.raises(ValueError, match="corrected"):
        VigorDataset(root, corrected="yes", **SMALL)


# ---------------------------------------------------------------------------------------- synthetic city
def test_synthetic_city_labels_match_file_names(tmp_path):
    from unifygeo_ros.cli import main

    out = tmp_path / "synth"
    rc = main(["synth", "--out", str(out), "--city", "Synthcity", "--seed", "1", "--size-m", "200",
               "--panos", "20"])
    assert rc == 0
    ds = VigorDataset(out, cities=["Synthcity"], split="cross", train=False, ground_size_hw=(16, 32),
                      aerial_px=16)
    assert len(ds) == 20
    mpp = ds.city_mpp_native[0]
    for i, rec in enumerate(ds.records):
        for slot in range(4):
            err_m = _metres_between(label_camera_latlon(rec, slot, mpp), ds.pano_latlon[i])
            assert err_m / mpp < 1.0, f"{rec.pano} tile {rec.sats[slot]}: {err_m / mpp:.2f} px"
