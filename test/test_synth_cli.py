"""``unifygeo synth`` writes the VIGOR layout of docs/DATA_FORMAT.md, deterministically, with exact labels."""
from __future__ import annotations

import csv
import hashlib
import json
import os

import numpy as np
import pytest

from unifygeo_ros import geo
from unifygeo_ros.cli import main
from unifygeo_ros.data import synth as S

SMALL = ["--size-m", "150", "--panos", "14", "--tile-px", "96", "--pano-width", "128", "--no-progress"]


def _synth(root, city="Tinyville", seed=5, extra=()):
    return main(["synth", "--out", str(root), "--city", city, "--seed", str(seed), *SMALL, *extra])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("vigor")
    assert _synth(root) == 0
    return root


def _tree_hash(root) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _labels(root, city="Tinyville", name="pano_label_balance.txt", folder="splits"):
    with open(os.path.join(root, folder, city, name), encoding="utf-8") as f:
        return [ln.split() for ln in f if ln.strip()]


def test_cli_writes_the_vigor_layout(written):
    city = written / "Tinyville"
    sats = sorted(os.listdir(city / "satellite"))
    panos = sorted(os.listdir(city / "panorama"))
    assert len(sats) == 9 and len(panos) == 14  # 150 m, 70 m tiles: strides 35..105 -> 3 x 3 tiles
    for sub in ("splits", "splits__corrected"):
        for f in S.SPLIT_FILES:
            assert (written / sub / "Tinyville" / f).is_file()
    for f in ("geo.json", "panorama_meta.csv", "preview.png"):
        assert (city / f).is_file()
    meta = json.loads((city / "geo.json").read_text())
    for key in ("format", "version", "city", "seed", "style", "origin", "size_m", "tile_m", "stride_m", "tile_px",
                "mpp", "pano_px", "camera_height_m"):
        assert key in meta
    assert meta["format"] == "unifygeo-city" and meta["city"] == "Tinyville" and meta["seed"] == 5
    assert meta["mpp"] == pytest.approx(70.0 / 96) and meta["pano_px"] == [128, 64]
    import cv2

    tile = cv2.imread(str(city / "satellite" / sats[0]))
    pano = cv2.imread(str(city / "panorama" / panos[0]))
    assert tile.shape == (96, 96, 3) and pano.shape == (64, 128, 3)


def test_split_files_are_consistent(written):
    sat_list = (written / "splits" / "Tinyville" / "satellite_list.txt").read_text().split()
    assert sorted(sat_list) == sorted(os.listdir(written / "Tinyville" / "satellite"))
    full = _labels(written)
    assert all(len(ln) == 13 for ln in full)
    assert sorted(ln[0] for ln in full) == sorted(os.listdir(written / "Tinyville" / "panorama"))
    train = _labels(written, name="same_area_balanced_train.txt")
    test = _labels(written, name="same_area_balanced_test.txt")
    assert sorted(map(tuple, train + test)) == sorted(map(tuple, full))
    assert not {ln[0] for ln in train} & {ln[0] for ln in test}
    for f in S.SPLIT_FILES:
        a = (written / "splits" / "Tinyville" / f).read_bytes()
        assert a == (written / "splits__corrected" / "Tinyville" / f).read_bytes()
    for ln in full:
        assert all(t in sat_list for t in ln[1::3])


def test_file_names_parse_back_to_what_geo_json_and_meta_say(written):
    meta = json.loads((written / "Tinyville" / "geo.json").read_text())
    enu = geo.LocalENU(meta["origin"]["lat_deg"], meta["origin"]["lon_deg"])
    with open(written / "Tinyville" / "panorama_meta.csv", encoding="utf-8") as f:
        rows = {r["panoid"]: r for r in csv.DictReader(f)}
    for name in os.listdir(written / "Tinyville" / "panorama"):
        pid, lat, lon = S.parse_panorama_name(name)
        assert name == S.panorama_name(pid, lat, lon) and len(pid) == 22
        e, n = enu.to_en(lat, lon)
        assert abs(e - float(rows[pid]["east_m"])) < 0.01 and abs(n - float(rows[pid]["north_m"])) < 0.01
        assert float(rows[pid]["heading_deg"]) == 0.0
    for name in os.listdir(written / "Tinyville" / "satellite"):
        lat, lon = S.parse_satellite_name(name)
        assert name == S.satellite_name(lat, lon)
        e, n = enu.to_en(lat, lon)
        # tile centres sit on the half-tile stride grid, inside the city
        stride = meta["stride_m"]
        assert abs(e / stride - round(e / stride)) * stride < 0.01 and abs(n / stride - round(n / stride)) * stride < 0.01
        assert stride - 0.01 <= e <= meta["size_m"][0] - stride + 0.01


def test_labels_round_trip_to_the_true_camera_position_within_one_pixel(written):
    meta = json.loads((written / "Tinyville" / "geo.json").read_text())
    enu = geo.LocalENU(meta["origin"]["lat_deg"], meta["origin"]["lon_deg"])
    mpp, tile_m = meta["mpp"], meta["tile_m"]
    for ln in _labels(written, folder="splits__corrected"):
        _pid, lat, lon = S.parse_panorama_name(ln[0])
        true_e, true_n = enu.to_en(lat, lon)
        tiles = []
        for k in range(4):
            sat, d_row, d_col = ln[1 + 3 * k], float(ln[2 + 3 * k]), float(ln[3 + 3 * k])
            ce, cn = enu.to_en(*S.parse_satellite_name(sat))
            de, dn = geo.vigor_offset_to_en(d_row, d_col, mpp)
            assert np.hypot(ce + de - true_e, cn + dn - true_n) < mpp  # within one pixel (in fact ~1e-4 m)
            limit = tile_m / 4 if k == 0 else tile_m / 2  # positive: central quarter; semi-positives: inside
            assert abs(de) <= limit + 0.01 and abs(dn) <= limit + 0.01
            tiles.append(sat)
        assert len(set(tiles)) == 4


def test_same_seed_and_arguments_give_identical_bytes_and_another_seed_does_not(tmp_path, written):
    assert _synth(tmp_path / "a") == 0
    assert _tree_hash(tmp_path / "a") == _tree_hash(written)
    assert _synth(tmp_path / "b", seed=6) == 0
    ha, hb = _tree_hash(tmp_path / "a"), _tree_hash(tmp_path / "b")
    assert ha["Tinyville/preview.png"] != hb["Tinyville/preview.png"]
    assert set(ha) != set(hb)  # other positions -> other file names


def test_refuses_to_mix_into_an_existing_city_unless_told_to_overwrite(tmp_path, capsys):
    assert _synth(tmp_path) == 0
    before = _tree_hash(tmp_path)
    assert _synth(tmp_path, seed=9) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert _tree_hash(tmp_path) == before
    assert _synth(tmp_path, seed=9, extra=["--overwrite"]) == 0
    after = _tree_hash(tmp_path)
    assert json.loads((tmp_path / "Tinyville" / "geo.json").read_text())["seed"] == 9
    assert len([p for p in after if p.startswith("Tinyville/panorama/")]) == 14  # no leftovers of seed 5


def test_several_cities_share_one_root_with_per_city_splits(tmp_path):
    assert _synth(tmp_path, city="Alpha", seed=1) == 0
    assert _synth(tmp_path, city="Beta", seed=2, extra=["--style", "suburb"]) == 0
    for city in ("Alpha", "Beta"):
        assert (tmp_path / city / "geo.json").is_file()
        labels = _labels(tmp_path, city)
        assert len(labels) == 14
        assert all(os.path.isfile(tmp_path / city / "panorama" / ln[0]) for ln in labels)
    assert json.loads((tmp_path / "Beta" / "geo.json").read_text())["style"] == "suburb"


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--city", "Bad,Name", "--seed", "1", *SMALL]) == 1
    assert "invalid city name" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path), "--city", "Small", "--seed", "1", "--size-m", "60",
                 *SMALL[2:]]) == 1
    assert "too small" in capsys.readouterr().err
