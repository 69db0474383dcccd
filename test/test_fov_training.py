"""Training for limited fields of view: the rig augmentation (pinhole views cut from the panorama, stitched back
as the node does), its curriculum, its stream keys, and the ``ground`` training stage."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from unifygeo_ros.config import Config
from unifygeo_ros.data.fov_views import FovViews, RigDraw, rig_cameras, stitched_view
from unifygeo_ros.image.preprocess import column_azimuths_deg, heading_change_to_roll
from unifygeo_ros.image.stitch import PanoramaStitcher, pinhole_view
from unifygeo_ros.offline.train import config_from_args, configure_parser
from unifygeo_ros.offline.train_setup import is_trainable

from conftest import TINY_MODEL

W = 192


def _panorama(seed: int = 0) -> np.ndarray:
    """A random W x W/2 panorama with no zero pixel (so a zero says 'no camera saw it')."""
    return np.random.default_rng(seed).integers(1, 256, (W // 2, W, 3), dtype=np.uint8)


def _rig(fov_deg: float, n: int, forward_deg: float, aspect: float = 4.0 / 3.0) -> RigDraw:
    return RigDraw(fov_deg, tuple(rig_cameras(fov_deg, n, aspect, W)), forward_deg)


@pytest.mark.parametrize("fov_deg,n,forward_deg", [(90.0, 1, 0.0), (120.0, 1, -77.0), (200.0, 2, 135.0),
                                                   (70.0, 1, 179.0), (360.0, 4, 33.0)])
def test_a_rig_view_is_zero_exactly_outside_the_cameras_footprint(fov_deg, n, forward_deg):
    pano = _panorama()
    out, stitcher = stitched_view(pano, _rig(fov_deg, n, forward_deg))
    k = heading_change_to_roll(forward_deg, W)  # the robot-frame roll; the Localizer's roll undoes it
    seen = np.roll(stitcher.pixel_mask, -k, axis=1)
    assert out.shape == pano.shape
    assert np.array_equal(out.any(axis=-1), seen)  # zero exactly where no camera sees, nowhere else
    # geometrically: the columns within the sector (centred on the robot's forward azimuth) are seen at the
    # horizon, the columns beyond it (one column of slack for the rounding of the roll) never
    off = np.abs((column_azimuths_deg(W) - forward_deg + 180.0) % 360.0 - 180.0)
    step = 360.0 / W
    assert seen[W // 4 - 1: W // 4 + 1, off < fov_deg / 2 - 1.5 * step].all()
    assert not seen[:, off > fov_deg / 2 + 1.5 * step].any()
    assert not seen[0].any() and not seen[-1].any()  # a pinhole camera never sees the zenith or the nadir


def test_inside_the_footprint_a_rig_view_is_the_scene_the_cameras_saw():
    """The image in the footprint is the stitched pinhole views (the node's path), not a copy of the panorama:
    rolled back into the robot's frame it equals stitching the cameras' views of the robot-frame panorama."""
    pano = _panorama(1)
    rig = _rig(100.0, 1, -45.0)
    out, _ = stitched_view(pano, rig)
    k = heading_change_to_roll(-45.0, W)
    robot = np.roll(pano, k, axis=1)
    node = PanoramaStitcher(list(rig.cameras), W).stitch([pinhole_view(robot, c) for c in rig.cameras])
    assert np.array_equal(np.roll(out, k, axis=1), node)
    inside = node.any(axis=-1)
    assert np.abs(np.roll(out, k, axis=1)[inside].astype(int) - robot[inside]).mean() > 5  # resampled, not copied


def test_probability_zero_draws_nothing_and_leaves_the_stream_unchanged():
    rng = np.random.default_rng(0)
    assert all(FovViews(0.0, (360.0, 360.0)).draw(rng, s, W, True) is None for s in range(50))
    base = list(_stream())
    off = list(_stream(fov_probability=0.0, fov_deg_range=[360, 360]))
    assert len(base) == len(off) > 0
    for a, b in zip(base, off):
        assert np.array_equal(a["ground"], b["ground"]) and float(b["fov_deg"]) == 360.0
    # rigs on every sample change the panoramas only: tiles, offsets, headings are the same draws
    rigs = list(_stream(fov_probability=1.0, fov_deg_range=[360, 360]))
    for a, b in zip(base, rigs):
        assert np.array_equal(a["aerial"], b["aerial"]) and np.array_equal(a["offset_en_m"], b["offset_en_m"])
        assert not np.array_equal(a["ground"], b["ground"])
        assert not b["ground"][0].any() and not b["ground"][-1].any()  # 360 deg of pinholes: no zenith, no nadir


def test_the_curriculum_narrows_the_field_of_view_monotonically():
    fv = FovViews(1.0, (70.0, 360.0), curriculum_steps=100)
    lows = [fv.lowest_fov_deg(s) for s in range(0, 151)]
    assert lows[0] == 360.0 and lows[100] == lows[150] == 70.0
    assert all(b <= a for a, b in zip(lows, lows[1:])) and lows[50] == pytest.approx(215.0)
    rng = np.random.default_rng(3)
    for s in (0, 25, 50, 99, 140):
        draws = [fv.draw(rng, s, W, True) for _ in range(40)]
        assert all(fv.lowest_fov_deg(s) - 1e-9 <= d.fov_deg <= 360.0 for d in draws)
    assert FovViews(1.0, (70.0, 360.0)).lowest_fov_deg(0) == 70.0  # no curriculum: the whole range from the start


def test_the_stream_knows_the_training_step_of_each_sample():
    """The k-th city's j-th sample is step ((start_city + k) * samples_per_city + j) // samples_per_step."""
    early = [float(it["fov_deg"]) for it in _stream(fov_probability=1.0, fov_curriculum_steps=1000)]
    late = [float(it["fov_deg"]) for it in _stream(fov_probability=1.0, fov_curriculum_steps=4, start_city=2)]
    assert all(f > 359.0 for f in early)  # steps 0..: the sector is still (nearly) the whole circle
    assert min(late) < 300.0 and all(70.0 <= f <= 360.0 for f in late)  # past the curriculum: the whole range


def test_rigs_use_pinhole_cameras_of_the_configured_width():
    fv = FovViews(1.0, (70.0, 360.0), camera_deg_range=(60.0, 120.0))
    for fov in (70.0, 90.0, 119.0, 180.0, 250.0, 360.0):
        for n in fv.camera_counts(fov):
            assert n * 120.0 >= fov - 1e-6
            assert fov / n >= 60.0 - 1e-6 or n == fv.camera_counts(fov)[0]
    assert fv.camera_counts(180.0) == [2, 3]  # no single pinhole camera sees 180 deg
    cams = rig_cameras(90.0, 1, 16.0 / 9.0, W)
    assert cams[0].horizontal_fov_deg() == pytest.approx(90.0, abs=1.0)
    assert cams[0].width / cams[0].height == pytest.approx(16.0 / 9.0, abs=0.05)


def test_stream_keys_come_from_the_command_line_and_bad_values_are_refused():
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--out", "x", "--set", "data.stream.fov_probability=0.75",
                              "--set", "data.stream.fov_deg_range=[90, 360]",
                              "--set", "data.stream.fov_curriculum_steps=300", "--set", "train.trainable=ground"])
    cfg = config_from_args(args)
    assert cfg.data.stream == {"fov_probability": 0.75, "fov_deg_range": [90, 360], "fov_curriculum_steps": 300}
    s = _stream(**cfg.data.stream)
    assert s.fov.probability == 0.75 and s.fov.fov_deg_range == (90.0, 360.0) and s.fov.curriculum_steps == 300
    for bad in ({"fov_probability": 1.5}, {"fov_deg_range": [5, 360]}, {"fov_deg_range": [200, 100]},
                {"fov_camera_deg_range": [60, 180]}, {"fov_render_scale": 0}):
        with pytest.raises(ValueError):
            _stream(**bad)


def test_the_ground_stage_trains_the_ground_branch_and_leaves_the_aerial_one_bit_for_bit(tmp_path):
    """train.trainable: ground - ground trunk (BatchNorm statistics included), heads, aggregator, match head, metric
    head and temperature learn; every aerial tensor and the re-ranker stay exactly as they were."""
    from safetensors.torch import load_file

    from unifygeo_ros.offline.train import train

    base = {"model": {**TINY_MODEL, "backbone": "resnet10t",
                      "backbone_kwargs": {"channels": [8, 16, 24, 32], "stem_width": 8}},
            "data": {"source": "toy", "toy_samples": 6, "batch_size": 6, "num_workers": 0},
            "train": {"steps": 1, "log_every": 1, "ckpt_every": 5, "tensorboard": False, "threads": 1}}
    train(Config.from_dict(base), tmp_path / "a", progress=False)
    cfg = {**base, "loss": {"rerank_weight": 0.0},
           "train": {**base["train"], "steps": 2, "init_from": str(tmp_path / "a" / "ckpt"), "trainable": "ground",
                     "lr": 0.05, "warmup_steps": 0}}
    train(Config.from_dict(cfg), tmp_path / "g", progress=False)
    before = load_file(str(tmp_path / "a" / "ckpt" / "model.safetensors"))
    after = load_file(str(tmp_path / "g" / "ckpt" / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("ground_encoder.trunk.") and k.endswith("running_mean") for k in changed)
    for prefix in ("ground_encoder.semantic.", "ground_encoder.fine.", "ground_aggregator.", "ground_match."):
        assert any(k.startswith(prefix) for k in changed), prefix
    assert not any(k.startswith(("aerial_", "reranker.")) for k in changed), sorted(changed)[:5]
    assert any(k.startswith("aerial_encoder_.trunk.") and k.endswith("running_mean") for k in before)
    assert is_trainable("ground_match.proj.0.weight", "ground") and not is_trainable("aerial_match.proj.0.weight",
                                                                                     "ground")


def _stream(**kw):
    from unifygeo_ros.data.stream import CityStream

    args = dict(base_seed=40, samples_per_city=3, city_size_m=140.0, tile_m=70.0, aerial_px=32, pano_size=(96, 48),
                style="mixed", num_cities=1, random_heading=False, samples_per_step=1)
    args.update(kw)
    return CityStream(**args)


def test_models_fov_is_models_demo_with_a_new_ground_branch():
    """The shipped limited-FOV model: models/demo's network and run-time settings, its aerial trunk and re-ranker bit
    for bit, its ground branch and both descriptor heads retrained (the descriptor stage: an index needs building
    with models/fov), both dense branches (fine decoders, match heads) and the metric head retrained last (the metric
    stage on semi-positive tiles, models/README.md step 6), and a calibration."""
    from pathlib import Path

    from safetensors.torch import load_file

    from unifygeo_ros.model.checkpoint import load_checkpoint

    root = Path(__file__).resolve().parents[1] / "models"
    fov, demo = load_file(str(root / "fov" / "model.safetensors")), load_file(str(root / "demo" / "model.safetensors"))
    assert fov.keys() == demo.keys()
    descriptor = [k for k in fov if k.startswith("aerial_aggregator_.") or ".semantic." in k]
    dense = [k for k in fov if k.startswith(("aerial_match.", "ground_match.", "metric.")) or ".fine." in k]
    frozen = [k for k in fov if k.startswith(("aerial_", "reranker.")) and k not in descriptor + dense]
    assert frozen and all(torch.equal(fov[k], demo[k]) for k in frozen)
    assert not torch.equal(fov["ground_aggregator.proj.weight"], demo["ground_aggregator.proj.weight"])
    assert any(k.startswith("aerial_") and not torch.equal(fov[k], demo[k]) for k in descriptor)
    assert any(k.startswith("aerial_") and not torch.equal(fov[k], demo[k]) for k in dense)
    _, cfg, meta = load_checkpoint(root / "fov")
    assert cfg.data.orientation == "known" and cfg.model.heading_window == 1 and cfg.loss.rerank_k == 15
    assert cfg.model.consensus_radius_m == 5.0 and cfg.data.stream["fov_probability"] > 0 and meta.step == 2000
    assert cfg.train.trainable == "metric" and cfg.data.stream["semi_fraction"] == 0.5  # the last stage
    assert (root / "fov" / "calibration.json").is_file()
    assert (root / "fov" / "model.safetensors").stat().st_size < 20e6


@pytest.mark.parametrize("hfov_deg, ok", [(1.0, True), (170.0, True), (0.5, False), (170.5, False), (180.0, False)])
def test_one_pinhole_field_of_view_range_for_synth_localize_and_training(hfov_deg, ok):
    """`bag synth --hfov`, `localize --hfov` (photo_to_panorama) and training's fov_camera_deg_range accept the same
    fields of view: stitch.PINHOLE_HFOV_RANGE_DEG."""
    from unifygeo_ros.errors import UnifyGeoError
    from unifygeo_ros.image.stitch import photo_to_panorama
    from unifygeo_ros.rosbag.camera_rig import make_rig

    photo = np.full((48, 64, 3), 128, np.uint8)
    checks = (lambda: make_rig("pinhole", 1, hfov_deg, 64), lambda: photo_to_panorama(photo, hfov_deg, 128),
              lambda: FovViews(probability=0.5, camera_deg_range=(min(hfov_deg, 60.0), hfov_deg)))
    for check in checks:
        if ok:
            check()
        else:
            with pytest.raises((UnifyGeoError, ValueError), match="170"):
                check()
