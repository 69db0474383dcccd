"""Training: a tiny model overfits a tiny fixed set, --resume is exact, DDP keeps ranks identical, the CLI runs."""
from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from unifygeo_ros.config import Config, ConfigError
from unifygeo_ros.model.checkpoint import load_checkpoint, read_meta, read_weights
from unifygeo_ros.offline.train import ToyPairs, _to_model_input, train

from conftest import TINY_MODEL



def toy_config(steps: int, **train_over) -> Config:
    return Config.from_dict({
        "model": TINY_MODEL,
        "data": {"source": "toy", "toy_samples": 8, "batch_size": 8, "num_workers": 0},
        "train": {"steps": steps, "lr": 3e-3, "warmup_steps": 5, "log_every": 1, "ckpt_every": 1000,
                  "tensorboard": False, "threads": 1, **train_over},
    })


def test_tiny_model_overfits_a_tiny_fixed_set(tmp_path):
    cfg = toy_config(40)
    res = train(cfg, tmp_path / "run", progress=False)
    first, last = res.history[0], res.history[-1]
    assert last["total"] < 0.5 * first["total"]
    assert last["infonce"] < 0.5 * first["infonce"] and last["position"] < 0.5 * first["position"]
    model, _, meta = load_checkpoint(tmp_path / "run" / "ckpt")
    assert meta.step == 40
    pairs = ToyPairs(8, cfg.model.ground_hw, cfg.model.aerial_px, cfg.data.tile_m, cfg.train.seed)
    with torch.no_grad():
        g = model.encode_ground(_to_model_input(pairs.ground, tuple(cfg.model.ground_hw)))
        a = model.encode_aerial(_to_model_input(pairs.aerial, (cfg.model.aerial_px,) * 2))
        r1 = (model.similarity(g, a).argmax(1) == torch.arange(8)).float().mean()
        err_m = (model.localize(g, a).peak_offset_en_m(70.0) - pairs.offset).norm(dim=1).mean()
    assert r1 >= 7 / 8
    assert err_m < 5.0  # from ~17 m for a random guess over the central half of the tile
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,lr,total") and len(rows) == 41


def test_resume_continues_from_the_saved_step_with_identical_state(tmp_path):
    straight = train(toy_config(4), tmp_path / "a", progress=False)
    train(toy_config(2), tmp_path / "b", progress=False)
    resumed = train(toy_config(4), tmp_path / "b", resume=True, progress=False)
    assert straight.step == resumed.step == 4 and read_meta(tmp_path / "b" / "ckpt").step == 4
    wa, wb = read_weights(tmp_path / "a" / "ckpt"), read_weights(tmp_path / "b" / "ckpt")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k
    steps = [int(r.split(",")[0]) for r in (tmp_path / "b" / "log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_rank_weights(rank: int, world: int, port: int, tmp: str) -> None:
    """Train 2 DDP steps; each rank saves its own final weights (only rank 0 writes the run directory)."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        res = train(toy_config(2), Path(tmp) / "run", rank=rank, world_size=world, progress=False)
    finally:
        dist.destroy_process_group()
    torch.save({k: v.detach().clone() for k, v in res.model.state_dict().items()}, Path(tmp) / f"rank{rank}.pt")


def test_ddp_two_processes_on_cpu_end_with_identical_weights(tmp_path):
    mp.spawn(_ddp_rank_weights, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert read_meta(tmp_path / "run" / "ckpt").step == 2
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 3  # header + 2 steps, written once (rank 0)


def test_cli_train_runs_end_to_end(tmp_path):
    from unifygeo_ros.cli import main

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(toy_config(2).to_dict()))
    rc = main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "run"), "--data", "toy", "--steps", "2",
               "--no-progress"])
    assert rc == 0
    assert (tmp_path / "run" / "ckpt" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert (tmp_path / "run" / "training.png").stat().st_size > 1000  # the curves from log.csv
    rc = main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "run"), "--steps", "3", "--resume",
               "--data", "toy", "--no-progress"])
    assert rc == 0 and read_meta(tmp_path / "run" / "ckpt").step == 3
    before = (tmp_path / "run" / "ckpt" / "model.safetensors").read_bytes()
    rc = main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "run"), "--data", "toy", "--steps", "2",
               "--no-progress"])  # the same --out again without --resume: refused, the trained run kept
    assert rc == 1 and (tmp_path / "run" / "ckpt" / "model.safetensors").read_bytes() == before


def test_set_overrides_one_config_value_and_rejects_malformed_ones(tmp_path):
    import argparse

    from unifygeo_ros.errors import UnifyGeoError
    from unifygeo_ros.offline.train import config_from_args, configure_parser

    p = argparse.ArgumentParser()
    configure_parser(p)
    cfg = config_from_args(p.parse_args(["--out", "x", "--set", "loss.position_weight=0",
                                         "--set", "model.ground_hw=[32, 128]"]))
    assert cfg.loss.position_weight == 0.0 and list(cfg.model.ground_hw) == [32, 128]
    with pytest.raises(UnifyGeoError, match="SECTION.KEY=VALUE"):
        config_from_args(p.parse_args(["--out", "x", "--set", "position_weight"]))
    nested = config_from_args(p.parse_args(["--out", "x", "--set", "data.stream.samples_per_city=7",
                                            "--set", "data.stream.style=centre", "--set", "train.trainable=metric",
                                            "--set", "data.stream.semi_fraction=0.5"]))
    assert nested.data.stream == {"samples_per_city": 7, "style": "centre", "semi_fraction": 0.5}
    with pytest.raises(UnifyGeoError, match="already set"):
        config_from_args(p.parse_args(["--out", "x", "--set", "data.stream=3", "--set", "data.stream.x=1"]))


def test_unknown_config_key_is_a_clear_error(tmp_path):
    from unifygeo_ros.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backbon: convnext_atto\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 1


def test_synthetic_stream_smoke(tmp_path):
    cfg = Config.from_dict({"model": TINY_MODEL, "data": {"source": "synth", "batch_size": 4, "num_workers": 0},
                            "train": {"steps": 2, "tensorboard": False, "threads": 1, "ckpt_every": 1000}})
    res = train(cfg, tmp_path / "s", progress=False)
    assert res.step == 2 and (tmp_path / "s" / "ckpt" / "meta.json").is_file()


def test_augmentations_keep_both_views_and_labels_consistent():
    from unifygeo_ros.model import offset_to_cell
    from unifygeo_ros.offline.train import prepare_batch

    cfg = Config.from_dict({"model": TINY_MODEL, "data": {"rot90_aerial": True, "roll_ground": True}})
    a_px = cfg.model.aerial_px
    off = torch.tensor([[12.0, 5.0]] * 8)
    aerial = torch.zeros(8, a_px, a_px, 3, dtype=torch.uint8)
    r, c = offset_to_cell(off[:1], 70.0, (a_px, a_px))[0].round().long().tolist()
    aerial[:, r, c] = 255  # a bright pixel where the camera stands
    ground = torch.zeros(8, *cfg.model.ground_hw, 3, dtype=torch.uint8)
    ground[:, :, cfg.model.ground_hw[1] // 2] = 255  # the column that looks along the heading
    batch = {"ground": ground, "aerial": aerial, "offset_en_m": off, "heading_deg": torch.zeros(8),
             "tile_m": torch.full((8,), 70.0)}
    tb = prepare_batch(batch, cfg, torch.device("cpu"), torch.Generator().manual_seed(3))
    w = cfg.model.ground_hw[1]
    for i in range(8):
        rr, cc = divmod(int(tb.aerial[i].sum(0).argmax()), a_px)
        er, ec = offset_to_cell(tb.offset_en_m[i:i + 1], 70.0, (a_px, a_px))[0].tolist()
        assert abs(rr - er) <= 1 and abs(cc - ec) <= 1  # the rotated label still points at the dot
        # the world turned counter-clockwise by phi (read off the label): the column that looked north must now
        # look at compass azimuth -phi (geo.py: column u looks at heading + ((u + 0.5) / W - 0.5) * 360)
        e, n = tb.offset_en_m[i].tolist()
        phi = math.degrees(math.atan2(n, e) - math.atan2(5.0, 12.0))
        u = int(tb.ground[i].sum((0, 1)).argmax())
        az = float(tb.heading_deg[i]) + ((u + 0.5) / w - 0.5) * 360.0
        assert abs((az + phi + 180.0) % 360.0 - 180.0) < 1.5


def test_reranker_fine_tuning_changes_only_the_reranker(tmp_path):
    from safetensors.torch import load_file

    base = {"model": {**TINY_MODEL, "backbone": "resnet10t",  # BatchNorm: its running statistics must not move
                      "backbone_kwargs": {"channels": [8, 16, 24, 32], "stem_width": 8}}, "data": {"source": "toy", "toy_samples": 6, "batch_size": 6,
                                                          "num_workers": 0},
            "train": {"steps": 2, "log_every": 1, "ckpt_every": 2, "tensorboard": False, "threads": 1}}
    train(Config.from_dict(base), tmp_path / "a", progress=False)
    ft = {**base, "train": {**base["train"], "init_from": str(tmp_path / "a" / "ckpt"), "trainable": "reranker",
                            "lr": 0.05, "warmup_steps": 0}}
    train(Config.from_dict(ft), tmp_path / "b", progress=False)
    before = load_file(str(tmp_path / "a" / "ckpt" / "model.safetensors"))
    after = load_file(str(tmp_path / "b" / "ckpt" / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("reranker.") for k in changed), sorted(changed)[:5]
    with pytest.raises(ConfigError, match="reranker"):
        Config.from_dict({**base, "loss": {"rerank_weight": 0.0}, "train": {"trainable": "reranker"}})


def test_metric_and_retrieval_stages_change_only_their_branch(tmp_path):
    from safetensors.torch import load_file

    from unifygeo_ros.model.checkpoint import load_checkpoint

    base = {"model": {**TINY_MODEL, "backbone": "resnet10t",  # BatchNorm in the trunk: must not move either
                      "backbone_kwargs": {"channels": [8, 16, 24, 32], "stem_width": 8}},
            "data": {"source": "toy", "toy_samples": 6, "batch_size": 6, "num_workers": 0},
            "train": {"steps": 2, "log_every": 1, "ckpt_every": 2, "tensorboard": False, "threads": 1}}
    train(Config.from_dict(base), tmp_path / "a", progress=False)
    before = load_file(str(tmp_path / "a" / "ckpt" / "model.safetensors"))
    g = torch.rand(2, 3, *TINY_MODEL["ground_hw"])

    def stage(name: str, trainable: str, loss: dict):
        """Run the stage from checkpoint a; (changed tensor names, ground features before, after)."""
        cfg = {**base, "loss": loss, "train": {**base["train"], "init_from": str(tmp_path / "a" / "ckpt"),
                                               "trainable": trainable, "lr": 0.05, "warmup_steps": 0}}
        train(Config.from_dict(cfg), tmp_path / name, progress=False)
        after = load_file(str(tmp_path / name / "ckpt" / "model.safetensors"))
        with torch.no_grad():
            feats = [load_checkpoint(tmp_path / d / "ckpt")[0].encode_ground(g) for d in ("a", name)]
        return {k for k in before if not torch.equal(before[k], after[k])}, *feats

    # the dense branch only: identical descriptors, different dense matching features
    changed, fa, fb = stage("b", "metric", {"rerank_weight": 0.0})
    dense = ("ground_match.", "aerial_match.", "metric.")
    assert any(".fine." in k for k in changed) and any(k.startswith(dense) for k in changed), sorted(changed)
    assert all(".fine." in k or k.startswith(dense) for k in changed), sorted(changed)[:5]
    assert torch.equal(fa.descriptor, fb.descriptor)
    assert not torch.equal(fa.sectors[-1], fb.sectors[-1])
    # the opposite stage: descriptor heads only (trunks, dense branch and re-ranker frozen)
    changed, fa, fc = stage("c", "retrieval", {"rerank_weight": 0.0, "position_weight": 0.0,
                                               "orientation_weight": 0.0})
    heads = ("ground_aggregator.", "aerial_aggregator_.", "log_logit_scale")
    assert any(".semantic." in k for k in changed) and any(k.startswith(heads) for k in changed), sorted(changed)
    assert all(".semantic." in k or k.startswith(heads) for k in changed), sorted(changed)[:5]
    assert not torch.equal(fa.descriptor, fc.descriptor)
    assert all(torch.equal(x, y) for x, y in zip(fa.sectors, fc.sectors))  # dense features untouched
    with pytest.raises(ConfigError, match="position_weight"):
        Config.from_dict({**base, "loss": {"position_weight": 0.0}, "train": {"trainable": "metric"}})
    with pytest.raises(ConfigError, match="infonce_weight"):
        Config.from_dict({**base, "loss": {"infonce_weight": 0.0}, "train": {"trainable": "retrieval"}})
    with pytest.raises(ConfigError, match="semi_fraction"):  # semi-positives would poison InfoNCE / re-ranking
        Config.from_dict({**base, "data": {**base["data"], "stream": {"semi_fraction": 0.5}}})
