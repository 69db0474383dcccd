"""``unifygeo localize --truth FILE.csv`` scores fixes against the panoramas' true positions, for any index - here
the worked example's chain on a tiny city: ``unifygeo synth`` -> map/orthophoto.tif + map/ndsm.tif ->
``unifygeo index build --orthophoto --dsm`` -> ``unifygeo localize --truth map/panoramas.csv``; and ``--json``
has one name per meaning (``yaw_deg``, ``compass_heading_deg``; ``heading_deg`` a deprecated alias)."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from conftest import micro_config, random_checkpoint
from unifygeo_ros import geo
from unifygeo_ros.cli import main
from unifygeo_ros.data.truth_csv import TruthRow, read_truth_csv, write_truth_csv
from unifygeo_ros.errors import DataFormatError
from unifygeo_ros.localization.fix import Fix
from unifygeo_ros.offline.truth_scoring import FixScore, score_fix, summarize

CITY = "Truthville"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """(city folder, index folder, checkpoint) of the worked example's chain on a tiny city and a micro model."""
    root = tmp_path_factory.mktemp("truth_chain")
    assert main(["synth", "--out", str(root / "data"), "--city", CITY, "--seed", "3", "--size-m", "150",
                 "--panos", "8", "--tile-px", "64", "--pano-width", "128", "--no-progress"]) == 0
    city = root / "data" / CITY
    ckpt = random_checkpoint(root / "ckpt", micro_config(aerial_height=True))
    assert main(["index", "build", "--checkpoint", str(ckpt), "--out", str(root / "ix"), "--orthophoto",
                 str(city / "map" / "orthophoto.tif"), "--dsm", str(city / "map" / "ndsm.tif"), "--device", "cpu",
                 "--no-progress"]) == 0
    return city, root / "ix", ckpt


def _localize(chain, images, truth, *extra):
    _, ix, ckpt = chain
    return main(["localize", *map(str, images), "--index", str(ix), "--checkpoint", str(ckpt), "--device", "cpu",
                 "--truth", str(truth), *extra])


def _distance_m(lat_a, lon_a, lat_b, lon_b) -> float:
    e, n = geo.LocalENU(lat_b, lon_b).to_en(lat_a, lon_a)
    return float(math.hypot(e, n))


def test_json_scores_each_fix_and_names_yaw_and_compass_heading(chain, tmp_path, capsys):
    city, _, _ = chain
    panos = sorted((city / "panorama").iterdir())
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    truth = tmp_path / "truth.csv"  # the synth truth plus a row for the unreadable image
    rows = read_truth_csv(city / "map" / "panoramas.csv")
    write_truth_csv(truth, rows + [TruthRow("broken.jpg", rows[0].latitude_deg, rows[0].longitude_deg)])
    capsys.readouterr()
    assert _localize(chain, [*panos, bad], truth, "--json") == 1  # an unreadable image: exit 1, others scored
    out, err = capsys.readouterr()
    objs = json.loads(out)  # stdout stays one JSON list; the summary goes to stderr
    assert "error" in objs[-1] and "error_m" not in objs[-1]
    by_name = {r.panorama: r for r in rows}
    for obj, pano in zip(objs[:-1], panos):
        t = by_name[pano.name]
        assert obj["error_m"] == pytest.approx(_distance_m(obj["latitude"], obj["longitude"], t.latitude_deg,
                                                           t.longitude_deg), abs=0.01)
        assert obj["yaw_deg"] == pytest.approx(geo.heading_to_yaw_deg(obj["compass_heading_deg"]))
        assert obj["heading_deg"] == obj["yaw_deg"]  # the deprecated alias keeps its old meaning (ENU yaw)
        assert obj["heading_error_deg"] == pytest.approx(float(geo.angle_diff_deg(obj["yaw_deg"], t.yaw_deg)))
    errors = np.array([o["error_m"] for o in objs[:-1]])
    n_acc = sum(o["accepted"] for o in objs[:-1])
    within = "/".join(f"{100 * np.mean(errors <= d):.0f}" for d in (1, 5, 10))
    assert f"truth truth.csv: {len(panos)} fixes scored (1 unreadable, not scored): median " \
           f"{np.median(errors):.2f} m, mean {errors.mean():.2f} m, within 1/5/10 m {within} %" in err
    assert f"accepted {n_acc} of {len(panos)}" in err


def test_text_lines_end_with_the_error_and_the_summary_follows_on_stdout(chain, capsys):
    city, _, _ = chain
    panos = sorted((city / "panorama").iterdir())[:3]
    capsys.readouterr()
    assert _localize(chain, panos, city / "map" / "panoramas.csv") == 0
    out = capsys.readouterr().out.splitlines()
    fixes = [ln for ln in out if ln.startswith(str(city / "panorama"))]
    assert len(fixes) == 3 and out[-2].startswith("truth panoramas.csv: 3 fixes scored: median ")
    for line in fixes:
        assert re.search(r"  error \d+\.\d m", line), line
    assert out[-1].startswith("  accepted ") and out.index(fixes[-1]) == len(out) - 3


def test_unmatched_images_are_one_line_error_naming_a_few_before_the_model_loads(chain, tmp_path, capsys):
    city, _, _ = chain
    names = [tmp_path / f"cam{k}.jpg" for k in range(5)]
    rc = main(["localize", *map(str, names), "--index", str(tmp_path / "no_index"), "--truth",
               str(city / "map" / "panoramas.csv")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "has no row for 5 of 5 images (cam0.jpg, cam1.jpg, cam2.jpg, ...)" in err


def test_images_in_two_folders_with_one_file_name_are_refused(tmp_path, capsys):
    truth = tmp_path / "t.csv"
    write_truth_csv(truth, [TruthRow("a.jpg", 1.0, 2.0)])
    rc = main(["localize", str(tmp_path / "x" / "a.jpg"), str(tmp_path / "y" / "a.jpg"), "--index", "none",
               "--truth", str(truth)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "different folders (a.jpg)" in err


@pytest.mark.parametrize("prior", ["1e308,0,10", "0,-1e308,10", "0,0,1e308", "2e7,0,10", "nan,0,10", "0,0,0", "1,2"])
def test_a_prior_out_of_bounds_is_a_one_line_error_before_the_model_loads(tmp_path, capsys, prior):
    """A finite but huge --prior overflowed the tile search (a ValueError traceback): refused like NaN, in one line."""
    rc = main(["localize", str(tmp_path / "a.jpg"), "--index", str(tmp_path / "no_index"), "--prior", prior])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "--prior must be east_m,north_m,sigma_m with |east_m|, |north_m| <= 1e+07" in err and repr(prior) in err


def test_a_huge_prior_never_reaches_the_tile_search_and_a_sane_one_localizes(chain, capsys):
    """--prior 1e308,0,10 ended in a ValueError traceback from the k-d tree of tile centres; a prior within the
    bounds is taken as before."""
    city, ix, ckpt = chain
    pano = sorted((city / "panorama").iterdir())[0]
    args = ["localize", str(pano), "--index", str(ix), "--checkpoint", str(ckpt), "--device", "cpu", "--prior"]
    capsys.readouterr()
    assert main([*args, "1e308,0,10"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--prior must be" in err
    assert main([*args, "0,0,50"]) == 0


@pytest.mark.parametrize("text, message", [
    ("name,latitude,longitude\na.jpg,1,2\n", "no column panorama"),
    ("panorama,latitude,longitude\na.jpg,north,2\n", "line 2: latitude 'north' is not a number"),
    ("panorama,latitude,longitude\na.jpg,1,200\n", "line 2: longitude '200' is not a number in [-180, 180]"),
    ("panorama,latitude,longitude,yaw_deg\na.jpg,1,2,nan\n", "line 2: yaw_deg 'nan'"),
    ("panorama,latitude,longitude\na.jpg,1,2\nb.jpg,1,2\na.jpg,1,2\n", "line 4: panorama 'a.jpg' appears twice"),
    ("panorama,latitude,longitude\n", "holds no rows"),
])
def test_bad_truth_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "truth.csv"
    path.write_text(text)
    with pytest.raises(DataFormatError) as exc:
        read_truth_csv(path)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_truth_file_round_trips_quoted_vigor_names_and_an_optional_yaw(tmp_path):
    rows = [TruthRow("id1,37.12345678,-122.1,.jpg", 37.12345678, -122.1, 90.0), TruthRow("b.png", -1.5, 2.25)]
    write_truth_csv(tmp_path / "t.csv", rows)
    assert read_truth_csv(tmp_path / "t.csv") == rows


def test_summary_over_all_and_accepted_fixes():
    scores = [FixScore(e) for e in (0.5, 2.0, 7.0, 20.0)]
    s = summarize("t.csv", scores, [True, True, False, False], failed=0)
    assert (s.overall.count, s.overall.median_m, s.accepted.count, s.accepted.median_m) == (4, 4.5, 2, 1.25)
    assert [s.overall.recall(d) for d in (1, 5, 10)] == [0.25, 0.5, 0.75]
    assert [s.accepted.recall(d) for d in (1, 5, 10)] == [0.5, 1.0, 1.0]
    assert s.lines()[1] == "  accepted 2 of 4: median 1.25 m, mean 1.25 m, within 1/5/10 m 50/100/100 %"
    none = summarize("t.csv", scores, [False] * 4, failed=1)
    assert none.accepted is None and none.lines()[1] == "  accepted 0 of 4"
    assert "(1 unreadable, not scored)" in none.lines()[0]


def _fix(heading_deg: float, east_m: float = 3.0, north_m: float = 4.0, heading_source: str = "model") -> Fix:
    return Fix(latitude_deg=1.0, longitude_deg=2.0, east_m=east_m, north_m=north_m, heading_deg=heading_deg,
               yaw_deg=geo.heading_to_yaw_deg(heading_deg), covariance_en_m2=np.eye(2), heading_std_deg=5.0,
               score=0.9, tile_id="t", tile_rank_before_rerank=1, tile_rank_after_rerank=1, used_prior=False,
               heading_source=heading_source)


def test_fix_json_has_one_name_per_meaning():
    obj = _fix(30.0).to_json("x.jpg")
    assert (obj["yaw_deg"], obj["compass_heading_deg"], obj["heading_deg"]) == (60.0, 30.0, 60.0)


def test_error_is_measured_in_the_index_frame_and_a_given_heading_is_not_scored():
    origin = geo.LocalENU(45.0, 7.0)
    lat, lon = origin.from_en(30.0, 40.0)
    truth = TruthRow("a.jpg", float(lat), float(lon), 90.0)
    estimated = score_fix(_fix(20.0, east_m=33.0, north_m=44.0), truth, origin)
    assert estimated.error_m == pytest.approx(5.0, abs=1e-6) and estimated.heading_error_deg == pytest.approx(20.0)
    given = score_fix(_fix(20.0, heading_source="input"), truth, origin)  # the caller's --heading, not a result
    assert given.heading_error_deg is None and "heading_error_deg" not in given.to_json()


def test_hfov_localizes_a_pinhole_photo_as_the_nodes_one_camera_rig(chain, tmp_path, capsys):
    """``--hfov``: a pinhole photo is stitched as the node stitches a front camera (cameras.panorama_width 512) and
    localized with --heading: the same fix as the Localizer on that panorama; a field of view outside [1, 170] is
    one line."""
    from PIL import Image

    from unifygeo_ros.image.preprocess import load_image
    from unifygeo_ros.image.stitch import PinholeCamera, intrinsics_for_fov, photo_to_panorama, pinhole_view
    from unifygeo_ros.localization.localizer import Localizer

    city, ix, ckpt = chain
    pano = load_image(sorted((city / "panorama").iterdir())[0])
    k = intrinsics_for_fov(160, 120, 90.0)
    photo = pinhole_view(np.roll(pano, -pano.shape[1] // 12, axis=1), PinholeCamera("front", k, 160, 120, 0.0))
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    capsys.readouterr()
    assert main(["localize", str(path), "--index", str(ix), "--checkpoint", str(ckpt), "--device", "cpu",
                 "--hfov", "90", "--heading", "30", "--json"]) == 0
    (obj,) = json.loads(capsys.readouterr().out)
    stitched = photo_to_panorama(load_image(path), 90.0, 512)
    assert stitched.shape == (256, 512, 3) and not stitched[:, :128].any() and stitched[:, 200:312].any()
    fix = Localizer.from_paths(ix, ckpt, device="cpu").localize(stitched, None, heading_deg=30.0)
    assert obj["latitude"] == pytest.approx(fix.latitude_deg, abs=1e-9)
    assert obj["longitude"] == pytest.approx(fix.longitude_deg, abs=1e-9)
    assert obj["score"] == pytest.approx(fix.score, abs=1e-6)
    rc = main(["localize", str(path), "--index", str(ix), "--hfov", "180"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "--hfov must be within [1, 170] deg, got 180.0" in err
