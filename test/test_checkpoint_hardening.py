"""Checkpoints and model configurations from the outside world: each bad one is one CheckpointError (or ConfigError)
line - through load_checkpoint / load_model, the CLI and the node's start-up - and nothing reaches the network."""
from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unifygeo_ros.config import ConfigError, ModelConfig, load_config
from unifygeo_ros.errors import CheckpointError, UnifyGeoError
from unifygeo_ros.model import build_model
from unifygeo_ros.model.checkpoint import (load_checkpoint, load_weights_into, model_hash, read_weights,
                                           save_checkpoint)
from unifygeo_ros.model.handle import load_model

from conftest import TINY_MODEL, random_checkpoint, tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to resolve a host name or open a connection fails at once and is recorded."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def empty_weight_caches(monkeypatch, tmp_path):
    """Empty Hugging Face and torch.hub caches (whatever this machine has cached); returns torch.hub's dir."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny checkpoint (random weights). Tests copy it before damaging it."""
    return random_checkpoint(tmp_path_factory.mktemp("hard") / "ckpt", tiny_config(), seed=3)


def _copy(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "ckpt"))


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(edit(data) if callable(edit) else edit))


def _rehash(d: Path) -> None:
    """Make meta.json's model_hash that of the (edited) config.json and the weights: a consistent checkpoint."""
    raw = json.loads((d / "config.json").read_text())
    _edit_json(d / "meta.json", lambda m: {**m, "model_hash": model_hash(raw["model"], read_weights(d))})


def _one_line_error(call, match: str, error=CheckpointError) -> str:
    with pytest.raises(error, match=match) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def _descriptor(model) -> torch.Tensor:
    x = torch.randn(1, 3, 32, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.encode_ground(x).descriptor


# ------------------------------------------------------------------------------------ 1. never the network


def _pretrained_checkpoint(tmp_path: Path, pretrained_file: str) -> tuple[Path, torch.nn.Module]:
    """A checkpoint whose config says where training's ImageNet weights came from (not on this machine)."""
    torch.manual_seed(5)
    model = build_model(tiny_config()).eval()
    cfg = tiny_config()
    cfg.model = dataclasses.replace(cfg.model, pretrained=True, pretrained_file=pretrained_file)
    d = tmp_path / "pretrained_ckpt"
    save_checkpoint(d, model, cfg)
    return d, model


@pytest.mark.parametrize("pretrained_file", ["", "weights/convnext_atto_in1k.safetensors"])
def test_checkpoint_trained_from_pretrained_weights_loads_offline_with_its_own_weights(
        tmp_path, no_network, empty_weight_caches, pretrained_file):
    """pretrained: true (with or without a pretrained_file that is not on this machine) says how training
    started; loading builds the network without them and takes every weight from the checkpoint, at once."""
    d, model = _pretrained_checkpoint(tmp_path, pretrained_file)
    t0 = time.perf_counter()
    loaded, cfg, _ = load_checkpoint(d)
    handle = load_model(d, device="cpu")
    assert time.perf_counter() - t0 < 10.0
    assert no_network == []  # not even a name lookup
    assert cfg.model.pretrained and cfg.model.pretrained_file == pretrained_file  # the record is kept
    assert torch.equal(_descriptor(loaded), _descriptor(model))
    assert torch.equal(_descriptor(handle.model), _descriptor(model))


def test_index_build_from_a_pretrained_checkpoint_runs_offline(tmp_path, no_network, empty_weight_caches,
                                                               vigor_city):
    from unifygeo_ros.cli import main

    d, _ = _pretrained_checkpoint(tmp_path, "")
    rc = main(["index", "build", "--checkpoint", str(d), "--out", str(tmp_path / "ix"), "--vigor",
               str(vigor_city[0]), "--device", "cpu", "--no-progress"])
    assert rc == 0 and (tmp_path / "ix" / "index.json").is_file()
    assert no_network == []


def test_training_with_pretrained_and_no_local_weights_fails_at_once_with_one_line(
        tmp_path, no_network, empty_weight_caches, capsys):
    cfg = tiny_config(pretrained=True)
    t0 = time.perf_counter()
    text = _one_line_error(lambda: build_model(cfg), "no network", ConfigError)
    assert "model.pretrained_file" in text and "pretrained: false" in text
    assert time.perf_counter() - t0 < 5.0 and no_network == []
    # the same through `unifygeo train` (the config it builds the network from)
    from unifygeo_ros.cli import main

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(json.dumps({"model": {**TINY_MODEL, "pretrained": True}, "data": {"source": "toy"}}))
    rc = main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "run"), "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "no network" in err[0], err
    assert no_network == []


def test_training_pretrained_file_must_exist_and_needs_pretrained_true(tmp_path, no_network):
    text = _one_line_error(lambda: build_model(tiny_config(pretrained=True, pretrained_file=str(tmp_path / "x.pth"))),
                           "not found", ConfigError)
    assert "model.pretrained_file" in text
    (tmp_path / "w.safetensors").write_bytes(b"x")
    _one_line_error(lambda: build_model(tiny_config(pretrained_file=str(tmp_path / "w.safetensors"))),
                    "model.pretrained is false", ConfigError)
    # a file that is not weights: one line naming it
    text = _one_line_error(lambda: build_model(tiny_config(pretrained=True,
                                                           pretrained_file=str(tmp_path / "w.safetensors"))),
                           "cannot build backbone", ConfigError)
    assert "w.safetensors" in text and no_network == []


def _timm_weights(tmp_path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """A full timm model of TINY_MODEL's backbone (what an ImageNet release holds), saved as safetensors."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(11)
    net = timm.create_model(TINY_MODEL["backbone"], pretrained=False, **TINY_MODEL["backbone_kwargs"])
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    path = tmp_path / "atto.safetensors"
    save_file(state, str(path))
    return state, path


def test_training_starts_from_a_local_pretrained_file(tmp_path, no_network):
    state, path = _timm_weights(tmp_path)
    model = build_model(tiny_config(pretrained=True, pretrained_file=str(path)))
    got = model.ground_encoder.trunk.body.state_dict()
    assert torch.equal(got["stem_0.weight"], state["stem.0.weight"])
    assert torch.equal(model.aerial_encoder.trunk.body.state_dict()["stem_0.weight"], state["stem.0.weight"])
    assert no_network == []


def test_training_takes_pretrained_weights_already_in_the_torch_hub_cache(tmp_path, no_network,
                                                                          empty_weight_caches):
    import os
    from urllib.parse import urlparse

    import timm.models

    state, _ = _timm_weights(tmp_path)
    url = timm.models.get_pretrained_cfg(TINY_MODEL["backbone"]).url
    cached = empty_weight_caches / "checkpoints" / os.path.basename(urlparse(url).path)
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    model = build_model(tiny_config(pretrained=True))
    assert torch.equal(model.ground_encoder.trunk.body.state_dict()["stem_0.weight"], state["stem.0.weight"])
    assert no_network == []


@pytest.mark.parametrize("backbone", ["hf-hub:timm/convnext_atto.d2_in1k", "local-dir:/models/atto"])
def test_backbones_named_by_source_are_refused(backbone, no_network):
    text = _one_line_error(lambda: tiny_config(backbone=backbone), "model.backbone must be", ConfigError)
    assert "pretrained_file" in text and no_network == []


def test_backbone_kwargs_may_not_override_the_weights(saved, tmp_path):
    d = _copy(saved, tmp_path)
    _edit_json(d / "config.json", lambda c: {**c, "model": {**c["model"], "backbone_kwargs": {
        **c["model"]["backbone_kwargs"], "pretrained_cfg_overlay": {"url": "https://example.invalid/w.pth"}}}})
    _one_line_error(lambda: load_checkpoint(d), "backbone_kwargs may not set pretrained_cfg_overlay")


def test_nan_weights_with_a_valid_hash_are_refused_in_one_line(saved, tmp_path):
    """A diverged training run saves NaN weights whose hash is consistent: refused when loaded (it crashed eval)."""
    from safetensors.torch import load_file, save_file

    d = _copy(saved, tmp_path)
    tensors = load_file(d / "model.safetensors")
    name = next(k for k, t in tensors.items() if t.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, d / "model.safetensors")
    raw = json.loads((d / "config.json").read_text())  # a consistent hash, as the diverged run wrote it
    _edit_json(d / "meta.json", lambda m: {**m, "model_hash": model_hash(raw["model"], tensors)})
    _one_line_error(lambda: load_checkpoint(d), f"NaN or infinite weights \\({name}\\)")


# ------------------------------------------------------------------------------ 2. nonsense model numbers

BAD_MODEL_VALUES = [
    ("orientation_bins", 0, ">= 1"), ("semantic_dim", -1, ">= 1"), ("descriptor_dim", 0, ">= 1"),
    ("decoder_dim", 2.5, ">= 1"), ("match_dim", "8", ">= 1"), ("aerial_px", True, ">= 1"),
    ("aggregator_heads", 0, ">= 1"), ("aggregator_layers", -1, ">= 0"), ("ground_elevation_bins", None, ">= 1"),
    ("rerank_hidden", float("nan"), ">= 1"), ("heading_window", -5, ">= -1"), ("refine_window", 4, "odd"),
    ("gem_p", float("nan"), "finite number > 0"), ("gem_p", -1.0, "> 0"),
    ("consensus_temperature", 0.0, "> 0"), ("consensus_radius_m", float("inf"), ">= 0"),
    ("ground_hw", [32], "two integers"), ("ground_hw", [0, 128], "two integers"),
    ("aerial_layout_hw", [4, "4"], "two integers"), ("metric_strides", [], "descending"),
    ("metric_strides", [4, 8], "descending"), ("metric_strides", [8, 8], "distinct"),
    ("decoder_dim", 12, "multiple of 8"), ("semantic_dim", 30, "multiple of 8"),
    ("backbone", "", "timm architecture"), ("backbone_kwargs", [1, 2], "mapping"),
]


@pytest.mark.parametrize("key, value, allowed", BAD_MODEL_VALUES)
def test_nonsense_model_value_in_a_checkpoint_is_one_line_naming_key_and_range(saved, tmp_path, key, value,
                                                                               allowed):
    d = _copy(saved, tmp_path)
    _edit_json(d / "config.json", lambda c: {**c, "model": {**c["model"], key: value}})
    text = _one_line_error(lambda: load_model(d, device="cpu"), f"model\\.{key}")
    assert allowed in text, text


@pytest.mark.parametrize("key, value, allowed", BAD_MODEL_VALUES[:6] + BAD_MODEL_VALUES[-6:])
def test_training_validates_the_model_with_the_same_rules(key, value, allowed):
    text = _one_line_error(lambda: load_config(None, {"model": {**TINY_MODEL, key: value}}), f"model\\.{key}",
                           ConfigError)
    assert allowed in text, text


def test_a_model_config_built_in_code_is_validated_too():
    with pytest.raises(ConfigError, match=r"model\.orientation_bins must be an integer >= 1, got 0"):
        build_model(ModelConfig(orientation_bins=0))
    with pytest.raises(ConfigError, match=r"semantic_dim \(24\) must be a multiple of model.aggregator_heads \(5\)"):
        build_model(ModelConfig(semantic_dim=24, aggregator_heads=5))


def test_inputs_smaller_than_the_coarsest_stride_are_refused_at_load(saved, tmp_path):
    """Valid numbers that this backbone cannot take (a 16-row panorama through a stride-32 trunk) are refused when
    the network is built, not at the first panorama."""
    d = _copy(saved, tmp_path)
    _edit_json(d / "config.json", lambda c: {**c, "model": {**c["model"], "ground_hw": [16, 128]}})
    _rehash(d)
    text = _one_line_error(lambda: load_checkpoint(d), r"model\.ground_hw must be at least 32 px")
    assert "cannot build its model" in text


def test_the_shipped_configurations_and_the_demo_model_pass_validation():
    for name in ("tiny", "demo", "vigor"):
        load_config(REPO / "config" / f"{name}.yaml")
    load_checkpoint(REPO / "models" / "demo")


# ------------------------------------------------------------------------------------------ 3. meta.json


@pytest.mark.parametrize("content, match", [
    ([1, 2], "must be a JSON object.*got a list"), ("text", "must be a JSON object.*got a str"),
    (None, "must be a JSON object.*got a NoneType"), ({}, "format None version None"),
    ({"format": "unifygeo-checkpoint", "version": 1}, "model_hash None"),
])
def test_meta_json_that_is_not_a_checkpoint_object_is_one_line(saved, tmp_path, content, match):
    d = _copy(saved, tmp_path)
    (d / "meta.json").write_text(json.dumps(content))
    text = _one_line_error(lambda: load_model(d, device="cpu"), match)
    assert "meta.json" in text


@pytest.mark.parametrize("key, value, match", [
    ("step", "7", "step '7'"), ("step", -1, "step -1"), ("metrics", [0.5], "metrics"),
    ("dtype", "int8", "dtype 'int8'"), ("backbone", 3, "backbone 3"),
])
def test_meta_json_fields_of_the_wrong_kind_are_one_line(saved, tmp_path, key, value, match):
    d = _copy(saved, tmp_path)
    _edit_json(d / "meta.json", lambda m: {**m, key: value})
    _one_line_error(lambda: load_checkpoint(d), match)


def test_meta_json_that_is_not_utf8_is_one_line(saved, tmp_path):
    d = _copy(saved, tmp_path)
    (d / "meta.json").write_bytes(b"\xff\xfe{")
    _one_line_error(lambda: load_checkpoint(d), "cannot read meta.json")


# --------------------------------------------------------------------------------------------- 5. model_hash


@pytest.mark.parametrize("digest", ["", "xyz", "0" * 63, "g" * 64, 12, None])
def test_a_model_hash_that_is_not_a_sha256_is_refused_not_skipped(saved, tmp_path, digest):
    d = _copy(saved, tmp_path)
    _edit_json(d / "meta.json", lambda m: {**m, "model_hash": digest})
    text = _one_line_error(lambda: load_checkpoint(d), "model_hash")
    assert "64 lowercase hex digits" in text
    _one_line_error(lambda: load_model(d, device="cpu"), "model_hash")


def test_empty_model_hash_no_longer_hides_replaced_weights(saved, tmp_path):
    """The attack the empty hash allowed: other weights of the same shapes, meta.json's hash blanked."""
    d = _copy(saved, tmp_path)
    other = random_checkpoint(tmp_path / "other", tiny_config(), seed=9)
    shutil.copy(other / "model.safetensors", d / "model.safetensors")
    _edit_json(d / "meta.json", lambda m: {**m, "model_hash": ""})
    _one_line_error(lambda: load_checkpoint(d), "model_hash")


def test_init_from_checks_the_weights_against_their_hash(saved, tmp_path):
    """train.init_from reads a checkpoint's weights too: replaced weights are refused there as well."""
    d = _copy(saved, tmp_path)
    other = random_checkpoint(tmp_path / "other", tiny_config(), seed=9)
    shutil.copy(other / "model.safetensors", d / "model.safetensors")
    target = build_model(tiny_config())
    _one_line_error(lambda: load_weights_into(target, d), "do not match the model_hash")
    load_weights_into(target, saved)  # the intact one loads
    assert torch.equal(_descriptor(target.eval()), _descriptor(load_checkpoint(saved)[0]))


# ------------------------------------------------------------------------------------ the user's entry points


def test_pretrained_file_of_another_machine_does_not_block_loading(saved, tmp_path, no_network):
    """4. config.json names a pretrained_file that does not exist here (and an absolute path of the training
    box): loading does not need it."""
    d = _copy(saved, tmp_path)
    _edit_json(d / "config.json", lambda c: {**c, "model": {**c["model"], "pretrained": True,
                                                            "pretrained_file": "/data/in1k/atto.pth"}})
    _rehash(d)
    model, cfg, _ = load_checkpoint(d)
    assert cfg.model.pretrained_file == "/data/in1k/atto.pth" and no_network == []
    assert torch.equal(_descriptor(model), _descriptor(load_checkpoint(saved)[0]))


def test_localize_with_a_bad_checkpoint_exits_1_with_one_line_and_no_traceback(saved, tmp_path, vigor_city):
    d = _copy(saved, tmp_path)
    (d / "meta.json").write_text("[]")
    city, fx = vigor_city
    pano = city / "panorama" / fx.pano_names[0]
    p = subprocess.run([sys.executable, "-m", "unifygeo_ros.cli", "localize", str(pano), "--index",
                        str(tmp_path / "no_index"), "--checkpoint", str(d), "--device", "cpu"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith("unifygeo localize: error: checkpoint") and "meta.json must be a JSON object" in lines[0]


@pytest.mark.parametrize("damage", ["orientation_bins", "model_hash"])
def test_index_build_with_a_bad_checkpoint_exits_1_with_one_line(saved, tmp_path, vigor_city, capsys, damage):
    from unifygeo_ros.cli import main

    d = _copy(saved, tmp_path)
    if damage == "orientation_bins":
        _edit_json(d / "config.json", lambda c: {**c, "model": {**c["model"], "orientation_bins": 0}})
    else:
        _edit_json(d / "meta.json", lambda m: {**m, "model_hash": ""})
    rc = main(["index", "build", "--checkpoint", str(d), "--out", str(tmp_path / "ix"), "--vigor",
               str(vigor_city[0]), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and damage in err[0], err
    assert not (tmp_path / "ix" / "index.json").exists()


def test_node_startup_with_a_bad_checkpoint_raises_one_checkpoint_error(saved, tmp_path):
    """The node's start-up path (worker.load_pipeline) surfaces it as the one UnifyGeoError the node prints."""
    from unifygeo_ros.ros.params import NodeSettings
    from unifygeo_ros.ros.worker import load_pipeline

    d = _copy(saved, tmp_path)
    _edit_json(d / "config.json", lambda c: {**c, "model": {**c["model"], "semantic_dim": -1}})
    settings = NodeSettings.from_params({"checkpoint": str(d), "index": str(tmp_path), "device": "cpu"})
    with pytest.raises(UnifyGeoError) as info:
        load_pipeline(settings)
    assert isinstance(info.value, CheckpointError) and "model.semantic_dim must be an integer >= 1" in str(info.value)
    assert "\n" not in str(info.value)


def test_nan_in_config_json_is_named(saved, tmp_path):
    d = _copy(saved, tmp_path)
    raw = (d / "config.json").read_text().replace('"gem_p": 3.0', '"gem_p": NaN')
    assert "NaN" in raw
    (d / "config.json").write_text(raw)
    text = _one_line_error(lambda: load_checkpoint(d), r"model\.gem_p must be a finite number > 0, got nan")
    assert "config.json" in text
