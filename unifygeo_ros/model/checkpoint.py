"""Model checkpoints: a directory with ``model.safetensors`` + ``config.json`` + ``meta.json``.

* ``model.safetensors``: the weights (float32, or float16 to halve the size; loaded back as the model's dtype).
* ``config.json``: the full resolved :class:`~unifygeo_ros.config.Config` the model was built from.
* ``meta.json``: ``{"format": "unifygeo-checkpoint", "version": 1, "step", "metrics", "dtype", "model_hash",
  "backbone"}``; ``model_hash`` is the SHA-256 of the canonical model config plus every stored tensor (name,
  dtype, shape, bytes): the model's identity (an aerial index records it, so features from another model are
  refused).

Loading never unpickles: safetensors for weights, JSON for the rest, and never reaches for the network: the
network is built without the backbone's pretrained weights (``model.pretrained`` / ``pretrained_file`` say where
training started, not what loading needs). A missing file, a ``meta.json`` that is not a JSON object or whose
``model_hash`` is not a SHA-256, a ``config.json`` with an unknown key or a value outside its range
(:func:`~unifygeo_ros.config.validate_model`), a truncated or corrupt weights file, a hash mismatch, or weights
that do not fit the configuration (missing / unexpected keys, shape mismatch, another backbone) each give one
:class:`CheckpointError` line naming the first few problems.
The training state for ``--resume`` (optimizer, scheduler, RNG) lives beside it in ``train_state.pt``, written
with ``torch.save`` and read with ``torch.load(weights_only=True)`` (tensors and plain containers only).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unifygeo_ros.config import Config, ConfigError
from unifygeo_ros.errors import CheckpointError
from unifygeo_ros.model.encoder import one_line

FORMAT = "unifygeo-checkpoint"
VERSION = 1
WEIGHTS, CONFIG, META, TRAIN_STATE = "model.safetensors", "config.json", "meta.json", "train_state.pt"
_MAX_LISTED = 5
#: model keys that do not change the network a checkpoint holds (where its initial weights came from)
_NOT_ARCHITECTURE = ("pretrained", "pretrained_file")


@dataclass
class CheckpointMeta:
    step: int = 0
    metrics: dict = field(default_factory=dict)
    dtype: str = "float32"
    model_hash: str = ""
    backbone: str = ""


def _listed(items: list[str]) -> str:
    more = f" (and {len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def model_hash(model_cfg: dict, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 identity of a model: canonical JSON of its model config section *as saved* + every tensor (sorted
    by name). Hashing the saved section (not the dataclass re-serialised with today's defaults) keeps a
    checkpoint's identity stable when later versions add configuration fields."""
    h = hashlib.sha256()
    h.update(json.dumps(model_cfg, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checkpoint(directory: str | os.PathLike, model: torch.nn.Module, cfg: Config, step: int = 0,
                    metrics: dict | None = None, dtype: str | None = None) -> CheckpointMeta:
    """Write ``model`` (unwrapped from DDP if needed) and ``cfg`` to ``directory``; returns the meta written."""
    from safetensors.torch import save as st_save

    model = getattr(model, "module", model)
    dtype = dtype or cfg.train.save_dtype
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        if dtype == "float16" and t.is_floating_point():
            t = t.to(torch.float16)
        tensors[name] = t
    meta = CheckpointMeta(step=int(step), metrics=dict(metrics or {}), dtype=dtype,
                          model_hash=model_hash(cfg.to_dict()["model"], tensors), backbone=cfg.model.backbone)
    _atomic_write(out / WEIGHTS, st_save(tensors, metadata={"format": FORMAT, "model_hash": meta.model_hash}))
    _atomic_write(out / CONFIG, cfg.dump_json().encode())
    _atomic_write(out / META, json.dumps({"format": FORMAT, "version": VERSION, **meta.__dict__},
                                         indent=2, sort_keys=True).encode())
    return meta


def read_meta(directory: str | os.PathLike) -> CheckpointMeta:
    """The checkpoint's ``meta.json``, checked: a JSON object of this format and version whose ``model_hash`` is a
    SHA-256 (64 hex digits; what ties the weights to ``config.json``, so it is never optional)."""
    p = Path(directory) / META
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {directory}: {META} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {directory}: cannot read {META} ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {directory}: {META} must be a JSON object ({{\"format\": \"{FORMAT}\", "
                              f"\"model_hash\": ...}}), got a {type(data).__name__}: restore the {META} saved "
                              "with this checkpoint")
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {directory}: {META} is format {data.get('format')!r} version "
                              f"{data.get('version')!r}, expected {FORMAT!r} version {VERSION}")
    problem = _meta_problem(data)
    if problem:
        raise CheckpointError(f"checkpoint {directory}: {META} {problem}: restore the {META} saved with this "
                              "checkpoint")
    return CheckpointMeta(**{k: data[k] for k in CheckpointMeta.__dataclass_fields__ if k in data})


def _meta_problem(data: dict) -> str:
    """What is wrong with the fields of a meta.json object ("" when nothing is)."""
    digest = data.get("model_hash")
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return (f"has model_hash {digest!r}; it must be the SHA-256 (64 lowercase hex digits) of the weights and "
                "the model configuration, which ties them together")
    step = data.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"has step {step!r}; it must be an integer >= 0"
    if not isinstance(data.get("metrics", {}), dict):
        return f"has metrics {data.get('metrics')!r}; it must be a JSON object"
    if data.get("dtype", "float32") not in ("float32", "float16"):
        return f"has dtype {data.get('dtype')!r}; it must be float32 or float16"
    if not isinstance(data.get("backbone", ""), str):
        return f"has backbone {data.get('backbone')!r}; it must be a string"
    return ""


def _read_config_json(directory: str | os.PathLike) -> tuple[Config, dict]:
    """(the validated Config, the raw JSON as written) of a checkpoint's config.json."""
    p = Path(directory) / CONFIG
    if not p.is_file():
        raise CheckpointError(f"checkpoint {directory}: {CONFIG} not found")
    try:
        raw = json.loads(p.read_text())
        return Config.from_dict(raw), raw
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ConfigError) as exc:
        raise CheckpointError(f"checkpoint {directory}: bad {CONFIG} ({exc})") from None


def read_config(directory: str | os.PathLike) -> Config:
    return _read_config_json(directory)[0]


def read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load as st_load

    p = Path(directory) / WEIGHTS
    if not p.is_file():
        raise CheckpointError(f"checkpoint {directory}: {WEIGHTS} not found")
    try:
        tensors = st_load(p.read_bytes())
    except Exception as exc:  # safetensors raises its own error types for truncated/corrupt headers and data
        raise CheckpointError(f"checkpoint {directory}: {WEIGHTS} is truncated or corrupt ({exc})") from None
    bad = next((k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is not None:  # a diverged run saves NaN weights with a valid hash: every fix would be NaN or a crash
        raise CheckpointError(f"checkpoint {directory}: {WEIGHTS} holds NaN or infinite weights ({bad}): a diverged "
                              "training run; use an earlier checkpoint")
    return tensors


def check_compatible(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise one CheckpointError listing the first missing / unexpected keys and shape mismatches."""
    _check_state(model.state_dict(), tensors, where)


def _check_state(state: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], where: str) -> None:
    expected = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = [f"{k} {tuple(tensors[k].shape)} vs model {expected[k]}" for k in sorted(set(expected) & set(tensors))
              if tuple(tensors[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_listed(shapes)}")
    if problems:
        raise CheckpointError(f"checkpoint {where} does not match the model: " + "; ".join(problems))


def _verify_hash(directory: str | os.PathLike, raw_cfg: dict, tensors: dict[str, torch.Tensor],
                 meta: CheckpointMeta) -> None:
    """The weights and the model section of config.json *as saved* (not re-serialised with today's defaults, which
    keeps old checkpoints' identity) must hash to meta.json's model_hash."""
    model_cfg = raw_cfg.get("model", {}) if isinstance(raw_cfg, dict) else {}
    if model_hash(model_cfg, tensors) != meta.model_hash:
        raise CheckpointError(f"checkpoint {directory}: weights and {CONFIG} do not match the model_hash in {META} "
                              "(corrupt, edited or replaced file): use the three files saved together")


def load_checkpoint(directory: str | os.PathLike, cfg: Config | None = None, map_location: str = "cpu",
                    verify_hash: bool = True):
    """Build the model from the checkpoint's config (or check it against ``cfg``) and load its weights.

    Returns ``(model, cfg, meta)``; the model is float32 on ``map_location``, in eval mode.
    """
    from unifygeo_ros.model.unifygeo import build_model

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    meta = read_meta(directory)
    saved_cfg, raw_cfg = _read_config_json(directory)
    if cfg is not None:
        a, b = cfg.to_dict()["model"], saved_cfg.to_dict()["model"]
        diff = [f"{k}={b[k]!r} (config says {a[k]!r})" for k in sorted(a)
                if a[k] != b[k] and k not in _NOT_ARCHITECTURE]
        if diff:
            raise CheckpointError(f"checkpoint {directory} was trained with another model configuration: "
                                  f"{_listed(diff)}")
    else:
        cfg = saved_cfg
    tensors = read_weights(directory)
    if verify_hash:
        _verify_hash(directory, raw_cfg, tensors, meta)
    try:  # the weights come from the checkpoint: never the backbone's pretrained weights (nor the network)
        model = build_model(cfg, load_pretrained=False)
    except Exception as exc:  # ConfigError, or whatever torch/timm raise for a configuration validation missed
        raise CheckpointError(f"checkpoint {directory}: cannot build its model ({one_line(exc)})") from None
    check_compatible(model, tensors, str(directory))
    state = model.state_dict()
    model.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items()})
    return model.to(map_location).eval(), cfg, meta


def load_weights_into(model: torch.nn.Module, directory: str | os.PathLike,
                      skip: Sequence[str] = ()) -> CheckpointMeta:
    """Load a checkpoint's weights into an existing model (same architecture); returns its meta.

    ``skip``: parameter-name prefixes (e.g. ``"reranker."``) left as they are in ``model`` - neither taken from
    the checkpoint nor required to match it (a changed re-ranker on a trained network). Everything else must
    match exactly.
    """
    meta = read_meta(directory)
    tensors = read_weights(directory)
    _verify_hash(directory, _read_config_json(directory)[1], tensors, meta)
    target = getattr(model, "module", model)
    skip = tuple(skip)
    kept = {k: v for k, v in tensors.items() if not k.startswith(skip)}  # startswith(()) is False: all kept
    if skip and not kept:
        raise CheckpointError(f"checkpoint {directory}: skipping {list(skip)} leaves nothing to load")
    state = target.state_dict()
    expected = {k: v for k, v in state.items() if not k.startswith(skip)}
    _check_state(expected, kept, str(directory))  # every key outside ``skip`` present, same shape
    target.load_state_dict({k: v.to(state[k].dtype) for k, v in kept.items()}, strict=not skip)
    return meta


def save_train_state(directory: str | os.PathLike, state: dict) -> None:
    """Optimizer / scheduler / scaler / RNG state for --resume (plain containers of tensors and numbers)."""
    path = Path(directory) / TRAIN_STATE
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_train_state(directory: str | os.PathLike) -> dict:
    path = Path(directory) / TRAIN_STATE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory}: {TRAIN_STATE} not found (cannot resume)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {directory}: {TRAIN_STATE} is truncated or corrupt ({exc})") from None
