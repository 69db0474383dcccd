"""The localizer: image -> preprocessing -> network -> index search -> metric localization -> re-rank -> Fix.

Two models: an *oracle* whose answers are written into the images (so every stage's bookkeeping - tile centre,
offset, lat/lon, heading/yaw, covariance, re-ranking, the prior - can be checked exactly), and a tiny randomly
initialised UnifyGeo (types, units, errors, CLI; no accuracy expected).
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
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
from unifygeo_ros.model.handle import arrays_to_aerial, from_model, load_model
from unifygeo_ros.localization.pipeline import (Frame, LocalizationPipeline, PipelineSettings, PriorSettings,
                                                PriorTracker, gate_fix)
from unifygeo_ros.localization.localizer import Fix, Localizer, Prior
from unifygeo_ros.model import AerialFeatures, GroundFeatures, MetricOutput
from unifygeo_ros.image.preprocess import denormalize, load_image

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


@pytest.fixture(scope="module")
def world(vigor_city):
    """conftest's 5 x 5-tile city (25 tiles; the oracle tests name tiles 0..24 of it)."""
    return vigor_city


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


@pytest.mark.parametrize("mode", ["features", "tiles"])
def test_oracle_prior_and_global_passes_share_one_metric_head_run(oracle, mode, monkeypatch):
    """With a prior the metric head runs once, on the union of both passes' candidates (each pair's output does not
    depend on the others), and each pass decides from its own candidates as before."""
    locs, src, colors = oracle
    loc = locs[mode]
    tile = 12
    t, east, north = _truth_fix(src, colors, tile, 2.0, 1.0)
    pano, prior = oracle_panorama(colors[tile], 2.0, 1.0, 10.0), Prior(east + 3.0, north - 2.0, 5.0)
    calls = []
    run = loc.handle.model.localize
    monkeypatch.setattr(loc.handle.model, "localize", lambda g, a: calls.append(len(a)) or run(g, a))
    fix = loc.localize(pano, prior)
    ground, desc = _encoded(loc, pano)
    q_local, q_global = loc._candidates(desc, prior), loc._candidates(desc, None)
    assert calls == [len(np.union1d(q_local.cand, q_global.cand))]
    alone = loc._decide(q_local, loc._metric_rows(ground, q_local.cand, {}), {})  # the prior pass by itself
    assert fix.used_prior and (fix.east_m, fix.north_m, fix.tile_id) == (alone.east_m, alone.north_m, alone.tile_id)


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


def test_oracle_kidnap_a_plausible_prior_cannot_lock_on(oracle):
    """The camera is at the south-west corner; the prior (sigma 16 m) sits at the north-east corner, where a decoy
    tile (the descriptor's favourite) makes the prior-restricted answer look acceptable on its own (score above
    prior_min_score, within the prior's circle). The global search, run every frame, puts the camera elsewhere with
    a protection level far smaller than its distance to the prior's circle: the prior is rejected at once."""
    locs, src, colors = oracle
    loc = locs["features"]
    ne = int(np.argmax([t.east_m + t.north_m for t in src.tiles]))
    sw = int(np.argmin([t.east_m + t.north_m for t in src.tiles]))
    prior = Prior(src.tiles[ne].east_m, src.tiles[ne].north_m, 16.0)
    pano = oracle_panorama(colors[sw], 1.0, 1.0, 0.0, decoy_rgb=colors[ne])
    ground, desc = _encoded(loc, pano)
    q = loc._candidates(desc, prior)
    local = loc._decide(q, loc._metric_rows(ground, q.cand, {}), {})  # the prior-restricted pass alone
    assert local.evidence_tile_id == src.tiles[ne].tile_id and loc._prior_ok(local, prior)  # it would lock on
    fix = loc.localize(pano, prior)
    t, east, north = _truth_fix(src, colors, sw, 1.0, 1.0)
    assert fix.prior_rejected and not fix.used_prior and fix.tile_id == t.tile_id
    assert fix.protection_level_m < math.hypot(fix.east_m - prior.east_m, fix.north_m - prior.north_m) - 48.0
    # the pipeline: a robot tracked at the north-east corner is carried to the south-west corner
    tracker = PriorTracker(PriorSettings())
    pipe = LocalizationPipeline(loc, min_score=0.0, prior=tracker)
    at_ne = oracle_panorama(colors[ne], 0.0, 0.0, 0.0)
    assert pipe.process(Frame(0.0, 0.0, lambda: at_ne)).published
    out = pipe.process(Frame(1.0, 1.0, lambda: pano))  # the first frame after the kidnap
    assert out.published and out.fix.prior_rejected
    assert math.hypot(out.fix.east_m - east, out.fix.north_m - north) < 0.5


def _encoded(loc, pano):
    with torch.inference_mode():
        ground = loc.handle.encode_ground_tensor(loc.handle.ground_batch([pano]))
    return ground, ground.descriptor.float().numpy()[0]


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
def tiny(micro_index, micro_checkpoint):
    """conftest's micro model (random weights) and its index of the city."""
    return Localizer(store.load_index(micro_index), load_model(micro_checkpoint, "cpu"))


def test_fix_types_and_units(tiny, world):
    """Every field of a fix of the random model, against the definitions (module docstring of the localizer)
    evaluated here with the model's own heads: retrieval = the top K tiles by descriptor cosine, score = the
    softmax of the re-ranker's K scores at the evidence tile, position = evidence tile centre + peak offset."""
    loc = tiny
    pano = cv2.imread(str(next((world[0] / "panorama").iterdir())))[:, :, ::-1].copy()
    fix = loc.localize(pano)
    assert isinstance(fix, Fix)
    for name in ("latitude_deg", "longitude_deg", "east_m", "north_m", "heading_deg", "yaw_deg", "heading_std_deg",
                 "score"):
        assert isinstance(getattr(fix, name), float) and math.isfinite(getattr(fix, name)), name
    h, ix = loc.handle, loc.index
    with torch.inference_mode():
        ground = h.encode_ground_tensor(h.ground_batch([pano]))
        order = np.argsort(-(ix.descriptors @ ground.descriptor.float().numpy()[0]), kind="stable")[:loc.k]
        aerial = arrays_to_aerial(ix.descriptors[order], ix.aerial_rows(order), h.device, h.dtype)
        metric = h.model.localize(ground, aerial)
        scores = h.model.rerank_scores(ground, aerial, metric).double().numpy()
    cands = [ix.tile_ids[int(r)] for r in order]
    assert list(fix.candidate_tile_ids) == cands and loc.k == 5 and fix.tiles_searched == 25
    assert fix.tile_id == cands[fix.tile_rank_before_rerank - 1]
    best = int(np.argmax(scores))  # no consensus in this config: the re-ranker's top-1 gives the evidence
    assert fix.evidence_tile_id == cands[best]
    assert fix.score == pytest.approx(float(np.exp(scores[best]) / np.exp(scores).sum()), rel=1e-6)
    offset = metric.peak_offset_en_m(loc.tile_m)[best].double().numpy()
    assert (fix.east_m, fix.north_m) == pytest.approx(tuple(ix.en_m[order[best]] + offset), abs=1e-4)
    heading = float(metric.heading_deg()[best])
    assert -180.0 <= fix.heading_deg < 180.0 and fix.heading_deg == pytest.approx(geo.wrap_deg(heading), abs=1e-4)
    assert fix.yaw_deg == pytest.approx(geo.heading_to_yaw_deg(fix.heading_deg))
    r, c = (int(v) for v in metric.peak_cell()[best].round())
    length = float(torch.linalg.vector_norm(metric.heading_vectors[best, :, r, c]))
    assert fix.heading_std_deg == pytest.approx(math.degrees(math.sqrt(-2.0 * math.log(min(length, 1.0)))), rel=1e-4)
    # the posterior (no calibration stored with this checkpoint: the model's own probabilities): every cell of every
    # candidate's map at its ground position, weighted by softmax(scores) x the map; the covariance is the second
    # moment about the fix of the candidates whose tiles hold the fix, the protection level uses them all
    prob = metric.probabilities.double().numpy()
    kk, hh, ww = prob.shape
    rows, cols = np.meshgrid(np.arange(hh), np.arange(ww), indexing="ij")
    cell_en = np.stack([((cols + 0.5) / ww - 0.5) * loc.tile_m, (0.5 - (rows + 0.5) / hh) * loc.tile_m], -1)
    pos = ix.en_m[order][:, None, None, :] + cell_en[None]  # (K, h, w, 2)
    w = (np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum())[:, None, None] * prob
    d = (pos - np.array([fix.east_m, fix.north_m])).reshape(-1, 2)
    holds = np.abs(ix.en_m[order] - np.array([fix.east_m, fix.north_m])).max(axis=1) <= loc.tile_m / 2
    assert holds[best] and not holds.all()
    wl = (w * holds[:, None, None]).reshape(-1)
    expected = np.einsum("n,ni,nj->ij", wl, d, d) / wl.sum() + np.eye(2) * (loc.tile_m / ww) ** 2 / 12.0
    cov = fix.covariance_en_m2
    assert cov.shape == (2, 2) and np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    np.testing.assert_allclose(cov, expected, rtol=1e-4)
    far = np.hypot(d[:, 0], d[:, 1]) + 0.5 * math.hypot(loc.tile_m / ww, loc.tile_m / hh)
    inside = far <= fix.protection_level_m
    assert w.reshape(-1)[inside].sum() >= 0.99 > w.reshape(-1)[far < fix.protection_level_m].sum()
    assert fix.outside_probability == 0.0
    assert set(fix.timings_ms) == {"preprocess", "encode", "search", "localize", "rerank", "total"}
    assert fix.timings_ms["total"] >= fix.timings_ms["encode"] > 0
    lat, lon = loc.index.origin.from_en(fix.east_m, fix.north_m)
    assert fix.latitude_deg == pytest.approx(float(lat)) and fix.longitude_deg == pytest.approx(float(lon))
    assert json.loads(json.dumps(fix.to_json("x.jpg")))["score"] == fix.score  # serialisable, values kept


def test_bad_images_raise_image_errors(tiny, tmp_path):
    loc = tiny
    with pytest.raises(ImageError, match="width/height"):
        loc.localize(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ImageError):
        loc.localize(np.zeros((32, 64), np.uint8))
    ok, data = cv2.imencode(".jpg", np.zeros((32, 64, 3), np.uint8))
    (tmp_path / "cut.jpg").write_bytes(data.tobytes()[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        loc.localize(load_image(tmp_path / "cut.jpg"))


def test_localizer_refuses_an_index_of_another_model(tiny, other_micro_checkpoint):
    loc = tiny
    with pytest.raises(IndexFormatError, match="built with model"):
        Localizer(loc.index, load_model(other_micro_checkpoint, "cpu"))


def test_cli_index_build_info_and_localize(tiny, world, micro_checkpoint, other_micro_checkpoint, tmp_path,
                                           capsys):
    ckpt = Path(shutil.copytree(micro_checkpoint, tmp_path / "ckpt"))  # beside the index: localize finds it
    ix = tmp_path / "ix"
    assert cli.main(["index", "build", "--checkpoint", str(ckpt), "--out", str(ix), "--vigor", str(world[0]),
                     "--device", "cpu", "--no-progress"]) == 0
    assert cli.main(["index", "info", str(ix), "--verify"]) == 0
    info = capsys.readouterr().out
    assert re.search(r"^tiles\s+25\s", info, re.M), info
    assert re.search(r"^model\s+" + tiny.handle.identity[:16] + r"\s", info, re.M), info
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
    # the CLI's fix is the Localizer's (same model, an index of the same tiles), and the same image twice
    # gives the same fix
    ref = tiny.localize(load_image(pano))
    assert (good["latitude"], good["longitude"]) == pytest.approx((ref.latitude_deg, ref.longitude_deg), abs=1e-9)
    assert (good["compass_heading_deg"], good["score"]) == pytest.approx((ref.heading_deg, ref.score), abs=1e-6)
    assert good["tile"] == ref.tile_id and good["image"] == objs[2]["image"] == str(pano)
    # the node's gate with its default parameters decides "accepted"; the protection level is the Localizer's
    reason, message = gate_fix(ref, PipelineSettings().min_score, PipelineSettings().max_protection_level_m)
    assert good["accepted"] is (not reason) and good["withheld_reason"] == reason
    assert good["withheld_message"] == message
    pl = good["protection_level_m"]
    assert (pl is None and ref.protection_level_m == math.inf) or pl == pytest.approx(ref.protection_level_m)
    assert {k: v for k, v in objs[2].items() if k != "timings_ms"} == {k: v for k, v in good.items()
                                                                      if k != "timings_ms"}
    # the index refuses a checkpoint it was not built with
    assert cli.main(["localize", str(pano), "--index", str(ix), "--checkpoint", str(other_micro_checkpoint)]) == 1
    assert "built with model" in capsys.readouterr().err


def test_demo_runs_the_whole_chain(micro_checkpoint, tmp_path):
    """``unifygeo demo`` on a small synthetic city: figures, picture, report, and a cached index the second time."""
    from unifygeo_ros.offline import demo

    report = demo.run_demo(micro_checkpoint, tmp_path / "out", size_m=150.0, panos=4, device="cpu")
    assert report.queries == 4 and report.tiles == 9
    # the report's figures are those of its panoramas: localize them again (same model, the demo's index) and
    # score them here - position error against the true position, R@1 of the descriptors against the positive
    index = store.load_index(tmp_path / "out" / "index")
    loc = Localizer(index, load_model(micro_checkpoint, "cpu"))
    queries = demo.demo_queries(tmp_path / "out" / "data" / report.city, index.origin, 4)
    images = [load_image(q.path) for q in queries]
    errors = [math.hypot(f.east_m - q.true_en[0], f.north_m - q.true_en[1])
              for q, f in zip(queries, map(loc.localize, images))]
    assert report.median_error_m == pytest.approx(float(np.median(errors)), abs=1e-6)
    assert report.mean_error_m == pytest.approx(float(np.mean(errors)), abs=1e-6)
    with torch.inference_mode():
        desc = loc.handle.encode_ground_tensor(loc.handle.ground_batch(images)).descriptor.float().numpy()
    top1 = [index.tile_ids[int(i)] for i in np.argmax(desc @ index.descriptors.T, axis=1)]
    assert report.retrieval_r1 == pytest.approx(np.mean([t == q.positive for t, q in zip(top1, queries)]))
    assert set(report.latency_ms) == {"preprocess", "encode", "search", "localize", "rerank", "total"}
    assert (tmp_path / "out" / "demo_fixes.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "out" / "demo_report.json").read_text())["queries"] == 4
    stamp = (tmp_path / "out" / "index" / "index.json").stat().st_mtime_ns
    demo.run_demo(micro_checkpoint, tmp_path / "out", size_m=150.0, panos=4, device="cpu")
    assert (tmp_path / "out" / "index" / "index.json").stat().st_mtime_ns == stamp  # index reused
    assert "median" in demo.format_report(report)
    # the recorded drive is replayed in the node's two modes: single frames and the sequential localizer
    single, tracked = report.replay, report.replay["tracked"]
    assert tracked["frames"] == single["frames"] > 0 and tracked["tracking"]["mode"] == "tracking"
    track_metrics = json.loads((tmp_path / "out" / "replay_track" / "metrics.json").read_text())
    assert track_metrics["tracking"]["mode"] == "tracking" and track_metrics["count"] == tracked["scored"]
    assert "tracking    the same drive" in demo.format_report(report)


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
