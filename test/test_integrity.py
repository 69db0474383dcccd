"""The integrity gate and its parts: the camera-image check, the gate's reasons and order, the trust figures, the
calibration fit (on queries whose truth follows a known posterior), and the node parameter."""
import math
from dataclasses import replace

import numpy as np
import pytest

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.localization.fix import Fix, QueryEvidence
from unifygeo_ros.localization.input_check import camera_image_problem, descriptor_problem
from unifygeo_ros.localization.integrity import EXPECTED_COVERAGE, nees, trust_report
from unifygeo_ros.localization.pipeline import GATE_REASONS, PipelineSettings, gate_fix
from unifygeo_ros.localization.posterior import Calibration
from unifygeo_ros.offline import calibrate as C
from unifygeo_ros.ros.params import NodeSettings


def _scene(seed=0, h=128, w=256):
    """A smooth, colourful synthetic 'scene': low-frequency colour gradients and blobs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.stack([120 + 80 * np.sin(6 * x + rng.uniform(0, 6)), 100 + 60 * np.cos(4 * y + 3 * x),
                    90 + 50 * np.sin(5 * y + rng.uniform(0, 6))], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_camera_image_check_refuses_noise_blank_and_grey_and_passes_a_scene():
    scene = _scene()
    assert camera_image_problem(scene) == ""
    noise = np.random.default_rng(1).integers(0, 256, scene.shape, dtype=np.uint8)
    assert "noise" in camera_image_problem(noise)
    assert "blank" in camera_image_problem(np.full_like(scene, 127))
    grey = np.repeat(scene.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    assert "colour" in camera_image_problem(grey)
    assert descriptor_problem(0.6, 0.5) == "" and "nothing in the map" in descriptor_problem(0.4, 0.5)
    assert descriptor_problem(0.1, -math.inf) == ""  # no floor calibrated: off


def _fix(**kw):
    base = dict(latitude_deg=47.0, longitude_deg=8.0, east_m=1.0, north_m=2.0, heading_deg=0.0, yaw_deg=90.0,
                covariance_en_m2=np.eye(2), heading_std_deg=5.0, score=0.9, tile_id="t", tile_rank_before_rerank=1,
                tile_rank_after_rerank=1, used_prior=False, protection_level_m=10.0)
    return Fix(**{**base, **kw})


def test_gate_reasons_in_order():
    assert gate_fix(_fix(), 0.5, 75.0) == ("", "")
    assert gate_fix(_fix(covariance_en_m2=np.full((2, 2), np.nan)), 0.5, 75.0)[0] == "not_finite"
    assert gate_fix(_fix(input_problem="the image looks like noise", score=0.1), 0.5, 75.0) == \
        ("out_of_distribution", "the image looks like noise")
    reason, msg = gate_fix(_fix(protection_level_m=math.inf, score=0.1), 0.5, 75.0)
    assert reason == "protection_level" and "inf m above max_protection_level_m 75" in msg
    assert gate_fix(_fix(protection_level_m=80.0), 0.5, 75.0)[0] == "protection_level"
    assert gate_fix(_fix(protection_level_m=80.0), 0.5, math.inf) == ("", "")
    assert gate_fix(_fix(score=0.2), 0.5, 75.0)[0] == "low_score"
    assert set(GATE_REASONS) == {"not_finite", "out_of_distribution", "protection_level", "low_score"}
    assert PipelineSettings().max_protection_level_m == 50.0


def test_trust_report_counts_hmi_coverage_and_availability():
    err = np.array([[1.0, 0.0], [0.0, 3.0], [50.0, 0.0], [0.5, 0.5]])
    cov = np.stack([np.eye(2)] * 4)
    pl = np.array([5.0, 5.0, 20.0, math.inf])
    r = trust_report(err, cov, pl, np.array([True, True, True, False]), frames=6)
    assert (r.frames, r.accepted, r.availability) == (6, 3, 0.5)
    assert r.hmi == 1 and r.hmi_rate == pytest.approx(1 / 3)  # 50 m error > 20 m protection level
    assert r.inside_1sigma == pytest.approx(1 / 3) and r.inside_2sigma == pytest.approx(1 / 3)
    assert r.nees_mean == pytest.approx((1.0 + 9.0 + 2500.0) / 3)
    assert nees(np.array([[1.0, 1.0]]), np.array([[[0.0, 0.0], [0.0, 0.0]]]))[0] == math.inf
    js = trust_report(err, cov, pl, np.ones(4, bool)).to_json()
    assert js["protection_level_median_m"] == 12.5 and js["expected"]["inside_1sigma"] == EXPECTED_COVERAGE[1]


def _synthetic_queries(n=300, seed=0, sharpness=1.0):
    """Queries whose truth is drawn from each candidate's map raised to 1 / ``sharpness`` (one candidate, a
    4 x 4-cell map): the calibration must find a map temperature near ``sharpness``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        logits = rng.normal(0, 2.0, 16)
        m = np.exp(logits) / np.exp(logits).sum()
        truth_p = m ** (1 / sharpness) / (m ** (1 / sharpness)).sum()
        cell = rng.choice(16, p=truth_p)
        r, c = divmod(int(cell), 4)
        truth = np.array([((c + rng.uniform()) / 4 - 0.5) * 40.0, (0.5 - (r + rng.uniform()) / 4) * 40.0])
        peak_r, peak_c = divmod(int(np.argmax(m)), 4)
        fix = np.array([((peak_c + 0.5) / 4 - 0.5) * 40.0, (0.5 - (peak_r + 0.5) / 4) * 40.0])
        ev = QueryEvidence(fix, np.zeros((1, 2)), np.array([40.0]), m.reshape(1, 4, 4).astype(np.float32),
                           np.array([1.0]), 0)
        out.append(C.CalibrationQuery(f"q{i}", "synthetic", ev, truth, 1600.0, 0.8 + 0.001 * i))
    return out


def test_calibration_fit_finds_the_map_temperature_behind_the_truths():
    flat = C.fit(_synthetic_queries(sharpness=2.0))[0]
    sharp = C.fit(_synthetic_queries(sharpness=0.5))[0]
    assert flat.pl_map_temperature > 1.2 and sharp.pl_map_temperature < 0.8  # maximum likelihood finds it
    assert C.mean_log_likelihood(_synthetic_queries(sharpness=2.0), flat) > \
        C.mean_log_likelihood(_synthetic_queries(sharpness=2.0), replace(flat, pl_map_temperature=0.5))
    assert flat.min_descriptor_cosine == pytest.approx(np.quantile(0.8 + 0.001 * np.arange(300), 0.005) - 0.05)


def test_node_parameter_max_protection_level():
    assert NodeSettings.from_params({}).pipeline_settings().max_protection_level_m == 50.0
    assert NodeSettings.from_params({"max_protection_level_m": math.inf}).max_protection_level_m == math.inf
    for bad in (0.0, -3.0, math.nan, "x"):
        with pytest.raises(UnifyGeoError, match="max_protection_level_m"):
            NodeSettings.from_params({"max_protection_level_m": bad})
    with pytest.raises(UnifyGeoError, match="cpu_threads: must be a non-negative"):  # was accepted silently
        NodeSettings.from_params({"cpu_threads": -1})


def test_calibration_round_trips_with_every_field(tmp_path):
    from unifygeo_ros.localization.posterior import load_calibration, save_calibration

    cal = Calibration(score_temperature=1.5, outside_logit=2.0, map_temperature=0.2, pl_map_temperature=0.3,
                      min_descriptor_cosine=0.45, fitted_on="x")
    save_calibration(tmp_path, cal)
    assert load_calibration(tmp_path) == cal


def test_calibrate_command_fits_and_writes_beside_the_checkpoint(vigor_city, micro_checkpoint, tmp_path, capsys):
    """``unifygeo calibrate`` on a tiny city: collects every panorama, fits, prints the trust table, writes the JSON
    report and (--write) calibration.json beside a copy of the checkpoint, where the Localizer then finds it."""
    import json
    import shutil

    from unifygeo_ros import cli
    from unifygeo_ros.localization.posterior import CALIBRATION_FILE, load_calibration

    city_dir, _ = vigor_city
    ckpt = shutil.copytree(micro_checkpoint, tmp_path / "ckpt")
    rc = cli.main(["calibrate", "--checkpoint", str(ckpt), "--data", str(city_dir.parent), "--cities", city_dir.name,
                   "--work", str(tmp_path / "work"), "--json", str(tmp_path / "cal.json"), "--write",
                   "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "cal.json").read_text())
    n = len(list((city_dir / "panorama").iterdir()))
    assert report["queries"] == n and "max PL m" in out and (ckpt / CALIBRATION_FILE).is_file()
    cal = load_calibration(ckpt)
    assert cal.to_json() == report["calibration"] and cal.fitted_on.startswith(f"{n} panoramas")
    assert report["reports"]["calibrated"]["inf"]["frames"] == n
    assert cli.main(["calibrate", "--checkpoint", str(ckpt), "--data", str(city_dir.parent), "--cities", "Nowhere",
                     "--device", "cpu"]) == 1
    assert "no VIGOR-layout city Nowhere" in capsys.readouterr().err


def test_calibration_queries_can_see_the_scene_through_another_view(vigor_city, micro_checkpoint, tmp_path):
    """``calibrate.collect(view=...)`` localizes what ``view`` makes of each panorama (bench_fov_trust.py: a rig's
    stitched images), with the panorama's index within its city, and keeps each query's truth: an identity view
    gives the same evidence as none, a view that blanks the eastern half changes it."""
    from unifygeo_ros.model.handle import load_model

    city_dir, _ = vigor_city
    handle = load_model(micro_checkpoint, device="cpu")
    seen: list[int] = []

    def same(pano, i):
        seen.append(i)
        return pano

    def half(pano, i):
        out = pano.copy()
        out[:, pano.shape[1] // 2:] = 0
        return out

    plain = C.collect(handle, [city_dir], tmp_path, limit=3, progress=False)
    again = C.collect(handle, [city_dir], tmp_path, limit=3, progress=False, view=same)
    halved = C.collect(handle, [city_dir], tmp_path, limit=3, progress=False, view=half)
    assert seen == [0, 1, 2]
    assert [q.name for q in again] == [q.name for q in plain] == [q.name for q in halved]
    for a, b, h in zip(plain, again, halved):
        np.testing.assert_array_equal(a.truth_en_m, h.truth_en_m)
        np.testing.assert_allclose(a.evidence.scores, b.evidence.scores)
    assert any(not np.allclose(a.evidence.scores, h.evidence.scores) for a, h in zip(plain, halved))
    assert all(q.fix is not None and q.fix.evidence is q.evidence for q in plain)  # what bench_fov_trust gates


def test_camera_image_check_measures_only_what_a_stitched_rig_sees():
    """A single 90 deg camera stitched onto the panorama leaves three quarters of the columns (and the rows above
    and below its vertical field of view) exactly black: the check judges the seen part, so a muted but real scene
    is not called colourless (its colour was diluted four-fold), while a seen part of noise or grey still is."""
    y, x = np.mgrid[0:128, 0:256]
    shade = 110 + 50 * np.sin(x / 6.0) * np.cos(y / 9.0)  # structure everywhere, smooth at the pixel scale
    muted = np.clip(shade[..., None] + np.array([2.0, 0.0, -2.0]), 0, 255).astype(np.uint8)  # chroma about 4
    rig = np.zeros_like(muted)
    rig[32:96, 96:160] = muted[32:96, 96:160]  # 90 deg of 360, the middle half of the rows
    assert camera_image_problem(muted) == "" and camera_image_problem(rig) == ""
    noise = np.random.default_rng(4).integers(1, 256, muted.shape, dtype=np.uint8)
    rig_noise = np.zeros_like(muted)
    rig_noise[32:96, 96:160] = noise[32:96, 96:160]
    assert "noise" in camera_image_problem(rig_noise)
    grey = np.repeat(muted.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    rig_grey = np.zeros_like(muted)
    rig_grey[32:96, 96:160] = grey[32:96, 96:160]
    assert "colour" in camera_image_problem(rig_grey)
    assert "blank" in camera_image_problem(np.zeros_like(muted))
