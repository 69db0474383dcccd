"""Checkpoints: safetensors + JSON, never pickle; mismatches and damage give one clear CheckpointError."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unifygeo_ros.config import load_config
from unifygeo_ros.errors import CheckpointError
from unifygeo_ros.model import build_model
from unifygeo_ros.model.checkpoint import load_checkpoint, load_train_state, save_checkpoint, save_train_state

from conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]


def _outputs(model):
    g = torch.Generator().manual_seed(1)
    x_g, x_a = torch.randn(2, 3, 32, 128, generator=g), torch.randn(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        gf, af = model.encode_ground(x_g), model.encode_aerial(x_a)
        return gf.descriptor, model.localize(gf, af).logits


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg).eval()
    d = tmp_path_factory.mktemp("ckpt") / "ckpt"
    meta = save_checkpoint(d, model, cfg, step=7, metrics={"r1": 0.5})
    return cfg, model, d, meta


def test_round_trip_gives_identical_outputs_and_meta(saved):
    cfg, model, d, meta = saved
    assert {p.name for p in d.iterdir()} >= {"model.safetensors", "config.json", "meta.json"}
    assert (d / "model.safetensors").read_bytes()[8:9] == b"{"  # safetensors header, not a pickle
    loaded, cfg2, meta2 = load_checkpoint(d)
    assert cfg2.to_dict() == cfg.to_dict()
    assert meta2.step == 7 and meta2.metrics == {"r1": 0.5} and meta2.model_hash == meta.model_hash
    for a, b in zip(_outputs(model), _outputs(loaded)):
        assert torch.equal(a, b)


def test_float16_checkpoint_is_half_the_size_and_close(saved, tmp_path):
    cfg, model, d, _ = saved
    save_checkpoint(tmp_path / "h", model, cfg, dtype="float16")
    assert (tmp_path / "h" / "model.safetensors").stat().st_size < 0.6 * (d / "model.safetensors").stat().st_size
    loaded, _, meta = load_checkpoint(tmp_path / "h")
    assert meta.dtype == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert torch.allclose(_outputs(model)[0], _outputs(loaded)[0], atol=2e-2)


def test_other_backbone_in_config_is_refused_by_name(saved):
    _, _, d, _ = saved
    other = tiny_config(backbone="convnext_femto")
    with pytest.raises(CheckpointError, match="backbone"):
        load_checkpoint(d, cfg=other)


def test_weights_that_do_not_fit_the_model_name_the_mismatches(saved, tmp_path):
    cfg, model, _, _ = saved
    bigger = tiny_config(descriptor_dim=48)
    d = tmp_path / "c"
    save_checkpoint(d, build_model(bigger), bigger)
    # config.json says descriptor 48; make it claim 32 so the weights no longer fit the model it builds
    data = json.loads((d / "config.json").read_text())
    data["model"]["descriptor_dim"] = 32
    (d / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*proj\.weight"):
        load_checkpoint(d, verify_hash=False)
    # unexpected / missing keys
    shared = tiny_config(share_views=True)
    d2 = tmp_path / "s"
    save_checkpoint(d2, build_model(shared), shared)
    data = json.loads((d2 / "config.json").read_text())
    data["model"]["share_views"] = False
    (d2 / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"missing key\(s\): aerial_"):
        load_checkpoint(d2, verify_hash=False)


def test_truncated_or_tampered_weights_give_a_clear_error(saved, tmp_path):
    cfg, model, _, _ = saved
    d = tmp_path / "t"
    save_checkpoint(d, model, cfg)
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(d)
    b = bytearray(data)
    b[-10] ^= 0xFF
    f.write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match="model_hash"):
        load_checkpoint(d)
    (d / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="meta.json not found"):
        load_checkpoint(d)


def test_checkpoint_written_before_a_config_field_existed_still_loads(saved, tmp_path):
    """Identity is hashed over the model section as saved: a later version adding a defaulted field (here
    simulated by removing one from an old checkpoint) neither breaks the hash nor changes the model."""
    from unifygeo_ros.model.checkpoint import model_hash, read_weights

    cfg, model, _, _ = saved
    d = tmp_path / "old"
    save_checkpoint(d, model, cfg)
    raw = json.loads((d / "config.json").read_text())
    del raw["model"]["aerial_layout_hw"]  # an "old" checkpoint: written before the field existed
    (d / "config.json").write_text(json.dumps(raw))
    meta = json.loads((d / "meta.json").read_text())
    meta["model_hash"] = model_hash(raw["model"], read_weights(d))
    (d / "meta.json").write_text(json.dumps(meta))
    loaded, loaded_cfg, _ = load_checkpoint(d)
    assert list(loaded_cfg.model.aerial_layout_hw) == list(cfg.model.aerial_layout_hw)  # the default
    assert all(torch.equal(a, b) for a, b in zip(_outputs(loaded), _outputs(model)))


def test_train_state_round_trips_without_pickle(tmp_path):
    state = {"step": 3, "rng": [{"torch": torch.get_rng_state(), "python": [1, 2, 3]}], "x": torch.ones(2)}
    save_train_state(tmp_path, state)
    back = load_train_state(tmp_path)
    assert back["step"] == 3 and torch.equal(back["x"], state["x"])
    (tmp_path / "train_state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="train_state"):
        load_train_state(tmp_path)


def test_demo_model_from_tiny_yaml_stays_under_20_mb(tmp_path):
    cfg = load_config(REPO / "config" / "tiny.yaml")
    save_checkpoint(tmp_path / "demo", build_model(cfg), cfg)  # tiny.yaml saves float16
    assert (tmp_path / "demo" / "model.safetensors").stat().st_size < 20e6


def test_init_skip_loads_the_network_and_leaves_a_changed_reranker(saved, tmp_path):
    from unifygeo_ros.config import Config, ConfigError
    from unifygeo_ros.model.checkpoint import load_weights_into

    src, directory = saved[1], saved[2]
    torch.manual_seed(1)
    dst = build_model(tiny_config(rerank_centre=True))  # re-ranker with 5 inputs instead of 4
    fresh = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError, match="reranker.mlp.0.weight"):
        load_weights_into(dst, directory)
    load_weights_into(dst, directory, skip=("reranker.",))
    got, want = dst.state_dict(), src.state_dict()
    for k in got:
        if k.startswith("reranker."):
            assert torch.equal(got[k], fresh[k]), k  # left as initialised
        else:
            assert torch.equal(got[k], want[k].to(got[k].dtype)), k
    with pytest.raises(CheckpointError, match="nothing to load"):
        load_weights_into(dst, directory, skip=("",))
    with pytest.raises(ConfigError, match="init_from"):
        Config.from_dict({"train": {"init_skip": ["reranker."]}})
