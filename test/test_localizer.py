"""The localizer: image -> preprocessing -> network -> index search -> metric localization -> re-rank -> Fix.

Two models: an *oracle* whose answers are written into the images (so every stage's bookkeeping - tile centre,
offset, lat/lon, heading/yaw, covariance, re-ranking, the prior - can be checked exactly), and a tiny randomly
initialised UnifyGeo (types, units, errors, CLI; no accuracy expected).
"""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from unifygeo_ros import cli, geo
from unifygeo_ros.errors import ImageError, IndexFormatError
from unifygeo_ros.index import build as index_build
from unifygeo_ros.index import store, tiles
from unifygeo_ros.model.handle import from_model
from unifygeo_ros.localization.localizer import Fix, Localizer, Prior
from unifygeo_ros.model import AerialFeatures, GroundFeatures, MetricOutput
from unifygeo_ros.image.preprocess import denormalize

from vigor_fixture import write_one_city

GRID = 64  # oracle metric map cells per tile side
OFFSET_STEP_M = 0.25  # oracle panorama code: metres per grey level
PANO_HW = (16, 32)


class Oracle(nn.Module):
    """A stand-in network that reads the answer from its inputs.

    Aerial tiles are uniform colours (the fixture's); a panorama's rows 0-5 hold the colour of the tile the
    camera is in, rows 6-9 a decoy colour the descriptor prefers (the re-ranker must undo that), rows 10-15 the
    code (east offset, north offset, heading). The probability map is a Gaussian of one cell around the coded
    offset in the right tile and uniform elsewhere.
    """

    def __init__(self, colors: np.ndarray, tile_m: float):
        super().__init__()
        self.colors = torch.as_tensor(colors.astype(np.int64))
        self.tile_m = tile_m
        self.cfg = SimpleNamespace(aerial_px=16, ground_hw=list(PANO_HW), descriptor_dim=len(colors),
                                   orientation_bins=1, match_dim=3, metric_strides=[16])

    def _onehot(self, rgb: torch.Tensor) -> torch.Tensor:
        match = (rgb[:, None, :].long() == self.colors[None]).all(-1).float()  # (B, M)
        return match

    def encode_aerial(self, x):
        rgb = torch.from_numpy(denormalize(x.float())[:, 2, 2].astype(np.int64))
        return AerialFeatures(self._onehot(rgb).to(x.dtype), [rgb.float()[:, :, None, None].to(x.dtype)])

    def encode_ground(self, x):
        img = torch.from_numpy(denormalize(x.float()).astype(np.int64))  # (B, H, W, 3)
        target, decoy, code = img[:, 2, 2], img[:, 8, 2], img[:, 12, 2].float()
        desc = 0.6 * self._onehot(target) + 0.8 * self._onehot(decoy) * (decoy != target).any(-1, keepdim=True)
        desc = torch.nn.functional.normalize(desc + 1e-6, dim=-1)
        east = (code[:, 0] - 128) * OFFSET_STEP_M
        north = (code[:, 1] - 128) * OFFSET_STEP_M
        heading = code[:, 2] / 256.0 * 360.0 - 180.0
        info = torch.cat([target.float(), torch.stack([east, north, heading], -1)], -1)
        return GroundFeatures(desc.to(x.dtype), [info.to(x.dtype)])

    def localize(self, ground, aerial):
        info = ground.sectors[0].float().expand(len(aerial), -1)
        match = (aerial.cells[0][:, :, 0, 0].float() == info[:, :3]).all(-1)
        col0 = (info[:, 3] / self.tile_m + 0.5) * GRID - 0.5
        row0 = (0.5 - info[:, 4] / self.tile_m) * GRID - 0.5
        rows, cols = torch.meshgrid(torch.arange(GRID).float(), torch.arange(GRID).float(), indexing="ij")
        logits = -((rows[None] - row0[:, None, None]) ** 2 + (cols[None] - col0[:, None, None]) ** 2) / 2.0
        logits = torch.where(match[:, None, None], logits, torch.zeros_like(logits))
        h = torch.deg2rad(info[:, 5])
        vec = 0.95 * torch.stack([torch.sin(h), torch.cos(h)], -1)[:, :, None, None].expand(-1, 2, GRID, GRID)
        return MetricOutput(logits, vec.contiguous(), [logits], match.float(), refine_window=5)

    def rerank_scores(self, ground, aerial, metric=None):
        metric = metric if metric is not None else self.localize(ground, aerial)
        return 10.0 * metric.local_score + (aerial.descriptor.float() @ ground.descriptor[0].float())


def oracle_panorama(target_rgb, east_m, north_m, heading_deg, decoy_rgb=None) -> np.ndarray:
    img = np.zeros(PANO_HW + (3,), np.uint8)
    img[0:6] = target_rgb
    img[6:10] = target_rgb if decoy_rgb is None else decoy_rgb
    img[10:16] = (round(east_m / OFFSET_STEP_M) + 128, round(north_m / OFFSET_STEP_M) + 128,
                  round((heading_deg + 180.0) / 360.0 * 256.0) % 256)
    return img


def tiny_handle(seed: int = 0):
    from unifygeo_ros.config import Config
    from unifygeo_ros.model import build_model

    cfg = Config.from_dict({"model": {
        "backbone_kwargs": {"dims": [8, 16, 24, 32], "depths": [1, 1, 1, 1]}, "ground_hw": [64, 128],
        "aerial_px": 64, "semantic_dim": 16, "descriptor_dim": 16, "decoder_dim": 8,
        "orientation_bins": 8, "match_dim": 2}})
    torch.manual_seed(seed)
    return from_model(build_model(cfg), cfg.to_dict(), device="cpu"), cfg


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    return write_one_city(tmp_path_factory.mktemp("vigor"), grid=5, seed=2)


@pytest.fixture(scope="module")
def oracle(world, tmp_path_factory):
    city_dir, truth = world
    src = tiles.vigor_tiles(city_dir)
    colors = np.stack([src.read(i)[0, 0] for i in range(len(src))])
    model = Oracle(colors, src.tile_m)
    handle = from_model(model, {"model": vars(model.cfg), "loss": {"rerank_k": 3}}, device="cpu")
    out = {}
    for mode in ("features", "tiles"):
        d = tmp_path_factory.mktemp("oracle") / mode
        index_build.build_index(handle, src, d, aerial_mode=mode, progress=False)
        out[mode] = Localizer(store.load_index(d), handle)
    return out, src, colors


def _truth_fix(src, colors, tile: int, east_off: float, north_off: float):
    t = src.tiles[tile]
    return t, t.east_m + east_off, t.north_m + north_off


# ------------------------------------------------------------------------------------------------- oracle


@pytest.mark.parametrize("mode", ["features", "tiles"])
def test_oracle_fix_is_the_coded_position_heading_and_tile(oracle, mode):
    locs, src, colors = oracle
    loc = locs[mode]
    tile, de, dn, heading = 7, 6.5, -11.25, 120.0
    fix = loc.localize(oracle_panorama(colors[tile], de, dn, heading))
    t, east, north = _truth_fix(src, colors, tile, de, dn)
    assert fix.tile_id == t.tile_id and fix.tile_rank_before_rerank == 1 and fix.tile_rank_after_rerank == 1
    assert fix.east_m == pytest.approx(east, abs=0.2) and fix.north_m == pytest.approx(north, abs=0.2)
    lat, lon = src.origin.from_en(fix.east_m, fix.north_m)
    assert (fix.latitude_deg, fix.longitude_deg) == pytest.approx((float(lat), float(lon)), abs=1e-10)
    # the same point from the tile centre's own frame (how VIGOR labels are defined): within 0.2 m
    e2, n2 = geo.LocalENU(t.lat_deg, t.lon_deg).to_en(fix.latitude_deg, fix.longitude_deg)
    assert math.hypot(e2 - de, n2 - dn) < 0.2
    assert fix.heading_deg == pytest.approx(120.0, abs=1.5)
    assert fix.yaw_deg == pytest.approx(geo.heading_to_yaw_deg(fix.heading_deg)) == pytest.approx(-30.0, abs=1.5)
    assert fix.heading_std_deg == pytest.approx(math.degrees(math.sqrt(-2 * math.log(0.95))), abs=0.5)
    cell = src.tile_m / GRID
    cov = fix.covariance_en_m2
    assert cov.shape == (2, 2) and np.allclose(cov, cov.T)
    assert np.allclose(np.diag(cov), cell**2 * (1 + 1 / 12), rtol=0.15) and abs(cov[0, 1]) < 0.05 * cell**2
    assert fix.score > 0.99 and not fix.used_prior and fix.tiles_searched == len(src)


def test_oracle_reranking_fixes_a_wrong_retrieval(oracle):
    locs, src, colors = oracle
    fix = locs["features"].localize(oracle_panorama(colors[12], -3.0, 4.0, -45.0, decoy_rgb=colors[3]))
    assert fix.tile_id == src.tiles[12].tile_id
    assert fix.tile_rank_before_rerank == 2 and fix.tile_rank_after_rerank == 1


def test_oracle_tile_assignment_reports_the_tile_holding_the_fix_centrally(oracle):
    locs, src, colors = oracle
    loc = locs["features"]
    # the camera is coded 26 m east of tile 12's centre (0.81 half sides: outside its central quarter) and the
    # re-ranker trusts tile 12's map; tile 11, 32.3 m east, holds that point 6.3 m from its centre (0.19)
    assert src.tiles[11].east_m - src.tiles[12].east_m == pytest.approx(src.tile_m / 2)
    pano = oracle_panorama(colors[12], 26.0, 0.0, 0.0, decoy_rgb=colors[11])
    fix = loc.localize(pano)
    t, east, north = _truth_fix(src, colors, 12, 26.0, 0.0)
    assert fix.evidence_tile_id == t.tile_id and fix.tile_id == src.tiles[11].tile_id
    assert fix.tile_rank_before_rerank == 1  # tile 11 was the descriptor's top-1 (the decoy)
    assert fix.east_m == pytest.approx(east, abs=0.2) and fix.north_m == pytest.approx(north, abs=0.2)
    plain = Localizer(loc.index, loc.handle, tile_assignment=False).localize(pano)
    assert plain.tile_id == plain.evidence_tile_id == t.tile_id and plain.tile_rank_before_rerank == 2
    assert (plain.east_m, plain.north_m, plain.score) == (fix.east_m, fix.north_m, fix.score)
    # a fix inside its own tile's central quarter stays there, whatever the descriptor preferred
    fix = loc.localize(oracle_panorama(colors[12], 10.0, -5.0, 0.0, decoy_rgb=colors[11]))
    assert fix.tile_id == fix.evidence_tile_id == t.tile_id


def test_oracle_prior_narrows_the_search(oracle):
    locs, src, colors = oracle
    loc = locs["features"]
    tile = 12
    t, east, north = _truth_fix(src, colors, tile, 2.0, 1.0)
    fix = loc.localize(oracle_panorama(colors[tile], 2.0, 1.0, 10.0), Prior(east + 3.0, north - 2.0, 5.0))
    radius = loc.prior_radius_m(Prior(0, 0, 5.0))
    near = np.hypot(loc.index.en_m[:, 0] - east - 3.0, loc.index.en_m[:, 1] - north + 2.0) <= radius
    assert fix.used_prior and not fix.prior_rejected
    assert fix.tiles_searched == int(near.sum()) < len(src)
    assert fix.tile_id == t.tile_id and fix.east_m == pytest.approx(east, abs=0.2)


def test_oracle_wrong_prior_falls_back_to_the_global_search(oracle):
    locs, src, colors = oracle
    loc = locs["features"]
    tile = 0  # south-west corner; the prior sits at the north-east corner
    far = src.tiles[int(np.argmax([t.east_m + t.north_m for t in src.tiles]))]
    fix = loc.localize(oracle_panorama(colors[tile], 1.0, 1.0, 0.0), Prior(far.east_m, far.north_m, 3.0))
    assert fix.prior_rejected and not fix.used_prior
    assert fix.tile_id == src.tiles[tile].tile_id and fix.tiles_searched == len(src)
    # a prior off the map: nothing to search near it, global answer
    fix = loc.localize(oracle_panorama(colors[tile], 1.0, 1.0, 0.0), Prior(5000.0, 5000.0, 10.0))
    assert fix.prior_rejected and fix.tile_id == src.tiles[tile].tile_id


def test_oracle_batch_equals_single(oracle):
    locs, src, colors = oracle
    loc = locs["tiles"]
    panos = [oracle_panorama(colors[i], 2.0 * i - 10, 5.0 - i, 30.0 * i - 170) for i in (1, 4, 9, 16)]
    batch = loc.localize_batch(panos, batch_size=3)
    for p, b in zip(panos, batch):
        s = loc.localize(p)
        assert (s.tile_id, round(s.east_m, 4), round(s.north_m, 4)) == (b.tile_id, round(b.east_m, 4),
                                                                          round(b.north_m, 4))


# ---------------------------------------------------------------------------------------- tiny real model


@pytest.fixture(scope="module")
def tiny(world, tmp_path_factory):
    handle, cfg = tiny_handle()
    d = tmp_path_factory.mktemp("tiny") / "ix"
    index_build.build_index(handle, tiles.vigor_tiles(world[0]), d, progress=False)
    return Localizer(store.load_index(d), handle), handle, cfg


def test_fix_types_and_units(tiny, world):
    loc, _, _ = tiny
    pano = cv2.imread(str(next((world[0] / "panorama").iterdir())))[:, :, ::-1].copy()
    fix = loc.localize(pano)
    assert isinstance(fix, Fix)
    for name in ("latitude_deg", "longitude_deg", "east_m", "north_m", "heading_deg", "yaw_deg", "heading_std_deg",
                 "score"):
        assert isinstance(getattr(fix, name), float) and math.isfinite(getattr(fix, name)), name
    assert -180.0 <= fix.heading_deg < 180.0 and fix.yaw_deg == pytest.approx(geo.heading_to_yaw_deg(fix.heading_deg))
    assert 0.0 <= fix.score <= 1.0 and 0.0 <= fix.heading_std_deg
    cov = fix.covariance_en_m2
    assert cov.shape == (2, 2) and np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    assert fix.tile_id in loc.index.tile_ids and 1 <= fix.tile_rank_before_rerank <= loc.k
    assert set(fix.timings_ms) == {"preprocess", "encode", "search", "localize", "rerank", "total"}
    assert fix.timings_ms["total"] >= fix.timings_ms["encode"] > 0
    lat, lon = loc.index.origin.from_en(fix.east_m, fix.north_m)
    assert fix.latitude_deg == pytest.approx(float(lat)) and fix.longitude_deg == pytest.approx(float(lon))
    json.dumps(fix.to_json("x.jpg"))  # serialisable


def test_bad_images_raise_image_errors(tiny, tmp_path):
    from unifygeo_ros.image.preprocess import load_image

    loc, _, _ = tiny
    with pytest.raises(ImageError, match="width/height"):
        loc.localize(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ImageError):
        loc.localize(np.zeros((32, 64), np.uint8))
    ok, data = cv2.imencode(".jpg", np.zeros((32, 64, 3), np.uint8))
    (tmp_path / "cut.jpg").write_bytes(data.tobytes()[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        loc.localize(load_image(tmp_path / "cut.jpg"))


def test_localizer_refuses_an_index_of_another_model(tiny):
    loc, _, _ = tiny
    other, _ = tiny_handle(seed=3)
    with pytest.raises(IndexFormatError, match="built with model"):
        Localizer(loc.index, other)


def test_cli_index_build_info_and_localize(tiny, world, tmp_path, capsys):
    from unifygeo_ros.model.checkpoint import save_checkpoint

    _, handle, cfg = tiny
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, handle.model, cfg)
    ix = tmp_path / "ix"
    assert cli.main(["index", "build", "--checkpoint", str(ckpt), "--out", str(ix), "--vigor", str(world[0]),
                     "--device", "cpu", "--no-progress"]) == 0
    assert cli.main(["index", "info", str(ix), "--verify"]) == 0
    assert "25" in capsys.readouterr().out
    pano = next((world[0] / "panorama").iterdir())
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    capsys.readouterr()
    rc = cli.main(["localize", str(pano), str(bad), str(pano), "--index", str(ix), "--json", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 1 and "bad.jpg" in err
    objs = json.loads(out)
    assert len(objs) == 3 and "error" in objs[1]
    good = objs[0]
    assert set(good) >= {"image", "latitude", "longitude", "heading_deg", "covariance_m2", "score", "tile",
                         "timings_ms"}
    assert good["heading_deg"] == pytest.approx(geo.heading_to_yaw_deg(good["compass_heading_deg"]))
    # the index refuses a checkpoint it was not built with
    other, other_cfg = tiny_handle(seed=5)
    save_checkpoint(tmp_path / "other", other.model, other_cfg)
    assert cli.main(["localize", str(pano), "--index", str(ix), "--checkpoint", str(tmp_path / "other")]) == 1
    assert "built with model" in capsys.readouterr().err


def test_demo_runs_the_whole_chain(tiny, tmp_path):
    """``unifygeo demo`` on a small synthetic city: figures, picture, report, and a cached index the second time."""
    from unifygeo_ros.offline import demo
    from unifygeo_ros.model.checkpoint import save_checkpoint

    _, handle, cfg = tiny
    save_checkpoint(tmp_path / "ckpt", handle.model, cfg)
    report = demo.run_demo(tmp_path / "ckpt", tmp_path / "out", size_m=150.0, panos=4, device="cpu")
    assert report.queries == 4 and report.tiles == 9
    assert 0.0 <= report.retrieval_r1 <= 1.0 and report.median_error_m >= 0.0
    assert set(report.latency_ms) == {"preprocess", "encode", "search", "localize", "rerank", "total"}
    assert (tmp_path / "out" / "demo_fixes.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "out" / "demo_report.json").read_text())["queries"] == 4
    stamp = (tmp_path / "out" / "index" / "index.json").stat().st_mtime_ns
    demo.run_demo(tmp_path / "ckpt", tmp_path / "out", size_m=150.0, panos=4, device="cpu")
    assert (tmp_path / "out" / "index" / "index.json").stat().st_mtime_ns == stamp  # index reused
    assert "median" in demo.format_report(report)


def test_known_orientation_model_gets_the_panorama_rolled_to_north():
    """A model trained on north-aligned panoramas is given the heading (IMU/compass): the panorama rendered at
    heading 90 deg, rolled by the localizer, equals the north-aligned rendering; unknown-orientation models
    see the panorama unchanged."""
    from unifygeo_ros.data.render import render_panorama
    from unifygeo_ros.data.world import generate_city

    city = generate_city(3, 120.0)
    north = render_panorama(city, (60.0, 60.0), 0.0, 128, 64)
    turned = render_panorama(city, (60.0, 60.0), 90.0, 128, 64)
    loc = Localizer.__new__(Localizer)
    loc.handle = SimpleNamespace(known_orientation=True)
    loc.aspect_tolerance = 0.05
    rolled = loc._checked([turned], [90.0])[0]
    assert np.abs(rolled.astype(int) - north.astype(int)).mean() < 1.0
    assert np.abs(turned.astype(int) - north.astype(int)).mean() > 10.0
    with pytest.raises(ImageError):
        loc._checked([turned], [float("nan")])
    loc.handle = SimpleNamespace(known_orientation=False)
    assert loc._checked([turned], [90.0])[0] is turned


def test_consensus_slot_chooses_the_map_that_gives_the_fix(oracle, monkeypatch):
    """With model.consensus_radius_m > 0 the localizer's fix choice hands every candidate's fix (index frame) and
    re-rank score to consensus_slot, and the slot it returns gives the position, heading and evidence tile."""
    import unifygeo_ros.localization.choice as C

    locs, src, colors = oracle
    base = locs["features"]
    seen = {}

    def pick_last(order, fixes, scores, radius_m, temperature):
        seen.update(order=np.asarray(order), fixes=np.asarray(fixes), scores=np.asarray(scores),
                    radius=radius_m, temperature=temperature)
        return int(np.asarray(order)[-1])  # the candidate the re-ranker likes least

    monkeypatch.setattr(C, "consensus_slot", pick_last)
    pano = oracle_panorama(colors[12], -3.0, 4.0, 30.0, decoy_rgb=colors[3])
    plain = base.localize(pano)
    assert not seen  # the oracle's config has no consensus: never called
    loc = Localizer(base.index, base.handle)
    loc.consensus = (5.0, 2.0)
    fix = loc.localize(pano)
    assert seen["radius"] == 5.0 and seen["temperature"] == 2.0 and len(seen["fixes"]) == 3
    top, last = int(seen["order"][0]), int(seen["order"][-1])
    t, east, north = _truth_fix(src, colors, 12, -3.0, 4.0)
    assert seen["fixes"][top] == pytest.approx([east, north], abs=0.2)  # the re-ranker's top-1 fix, index frame
    assert plain.evidence_tile_id == t.tile_id != fix.evidence_tile_id
    assert (fix.east_m, fix.north_m) == pytest.approx(tuple(seen["fixes"][last]))
