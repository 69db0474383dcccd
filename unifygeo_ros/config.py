"""Every default of the model, the losses, the data and the training loop, in one place.

A configuration is four dataclasses (:class:`ModelConfig`, :class:`LossConfig`, :class:`DataConfig`,
:class:`TrainConfig`) under :class:`Config`. A YAML file only states what differs from these defaults; it is
deep-merged over them, and a key that is not a field is an error (a typo must not silently train the wrong
model). ``Config.to_dict()`` / ``dump_yaml`` / ``dump_json`` write the full, resolved configuration back.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from unifygeo_ros.errors import UnifyGeoError


class ConfigError(UnifyGeoError):
    """A configuration file or dict has an unknown key, a value of the wrong type, or an impossible value."""


@dataclass
class ModelConfig:
    """The network: backbone, the two task heads of each view, the metric head and the re-ranker."""

    backbone: str = "convnext_atto"          #: any timm model that supports ``features_only=True``
    backbone_kwargs: dict = field(default_factory=dict)  #: extra timm kwargs, e.g. {"dims": [16, 32, 64, 128]}
    pretrained: bool = False                 #: training starts from ImageNet weights: pretrained_file or the local
                                             #: timm cache, never downloaded; loading a checkpoint ignores it
    pretrained_file: str = ""                #: local weights file of the backbone (needs pretrained: true)
    share_views: bool = False                #: one encoder for both views (pseudo-Siamese when False)
    split_last_stage: bool = False           #: each task head gets its own copy of the last backbone stage
    circular_ground: bool = True             #: wrap convolution padding along the panorama's azimuth
    ground_hw: list = field(default_factory=lambda: [64, 256])  #: panorama input (height, width) px
    aerial_px: int = 128                     #: aerial tile input side, px
    aerial_height: bool = False              #: aerial input = RGB + surface height (nDSM) channel; needs a DSM
    semantic_dim: int = 128                  #: token width of the semantic extractor / aggregator
    aggregator_layers: int = 1               #: self-attention blocks over the semantic tokens
    aggregator_heads: int = 4
    gem_p: float = 3.0                       #: initial GeM exponent (learned)
    descriptor_layout: bool = False          #: layout-aware descriptor (known orientation only; needs separate views)
    ground_layout_hw: list = field(default_factory=lambda: [2, 8])  #: token grid of the ground layout descriptor
    aerial_layout_hw: list = field(default_factory=lambda: [4, 4])  #: token grid of the aerial layout descriptor
    descriptor_dim: int = 128                #: global descriptor size (retrieval)
    decoder_dim: int = 64                    #: channels of the fine-grained extractor (FPN decoder)
    metric_strides: list = field(default_factory=lambda: [16, 8, 4])  #: matching levels, coarse to fine
    orientation_bins: int = 16               #: heading hypotheses S (360/S deg apart)
    heading_window: int = -1                 #: known orientation: only hypotheses within +-N bins of the given
                                             #: heading (0 = that heading alone); -1 = all S (unknown orientation)
    match_dim: int = 8                       #: channels per orientation bin of a matching descriptor
    ground_elevation_bins: int = 2           #: elevation bands pooled per azimuth sector of the panorama
    refine_window: int = 5                   #: odd window (cells) for the sub-cell soft-argmax around the peak
    rerank_hidden: int = 16                  #: hidden units of the re-ranking MLP
    rerank_centre: bool = False              #: re-ranker also sees how far the map's peak lies from the tile centre
    consensus_radius_m: float = 0.0          #: > 0: the fix the re-ranked candidates agree on within this radius
    consensus_temperature: float = 2.0       #: softmax temperature of the re-rank scores weighting that agreement


@dataclass
class LossConfig:
    """Weights and parameters of the joint objective (retrieval + metric localization + re-ranking)."""

    infonce_weight: float = 1.0
    label_smoothing: float = 0.1
    init_temperature: float = 0.07           #: InfoNCE temperature at start (learned: CLIP-style logit scale)
    learn_temperature: bool = True
    position_weight: float = 1.0             #: cross-entropy of the position map vs a Gaussian target
    position_sigma_m: float = 3.0            #: Gaussian target sigma in metres (at least half a cell per level)
    orientation_weight: float = 1.0          #: 1 - cos(heading error) at the true cell
    rerank_weight: float = 0.5               #: listwise cross-entropy over the top-K candidates
    rerank_k: int = 5
    rerank_detach: bool = False              #: True: the re-rank loss trains only the re-ranker
    rerank_semi: bool = False                #: semi-positives stay candidates and count as targets (multi-positive)


#: data.vigor_split -> the VIGOR reader's split
VIGOR_SPLITS: dict[str, str] = {"same_area": "same", "cross_area": "cross"}


@dataclass
class DataConfig:
    """Where batches come from and the augmentations applied to them (always consistent across views)."""

    source: str = "synth"                    #: synth (CityStream, new cities forever) | vigor | toy
    toy_samples: int = 8                     #: toy: a fixed set of this many random-texture pairs (tests, smoke)
    orientation: str = "unknown"             #: unknown (random panorama heading) | known (north-aligned)
    vigor_root: str = ""
    vigor_split: str = "same_area"           #: same_area | cross_area (VIGOR_SPLITS)
    vigor_cities: list = field(default_factory=list)  #: city folders to train on; [] = the split's standard cities
    vigor_corrected: bool | str = True       #: true: corrected (HC-Net) labels | false: original | auto: either
    vigor_original_mpp: bool = False         #: 0.114 m/px at 640 px for every city (original VIGOR), not per city
    batch_size: int = 32
    num_workers: int = 1
    tile_m: float = 70.0                     #: synthetic aerial tile side, metres
    roll_ground: bool = True                 #: random panorama roll (heading label follows)
    rot90_aerial: bool = False               #: random 90-degree rotation of the world (tile, offset, heading)
    stream: dict = field(default_factory=dict)  #: extra keyword arguments for CityStream


@dataclass
class TrainConfig:
    """The optimisation loop."""

    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05               #: cosine schedule ends at lr * min_lr_ratio
    grad_clip: float = 1.0                   #: max global grad norm; 0 disables
    accum_steps: int = 1                     #: gradient accumulation (InfoNCE negatives stay per micro-batch)
    amp: str = "auto"                        #: auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | off
    device: str = "auto"                     #: auto | cpu | cuda
    seed: int = 0
    threads: int = 0                         #: torch CPU threads per process; 0 = cores / processes
    log_every: int = 10
    ckpt_every: int = 250
    save_dtype: str = "float32"              #: float32 | float16 (weights on disk)
    tensorboard: bool = True
    init_from: str = ""                      #: checkpoint folder whose weights start the run (not a resume)
    trainable: str = "all"                   #: all | reranker | metric | retrieval | ground (train_setup.TRAINABLE)
    init_skip: list = field(default_factory=list)  #: name prefixes NOT taken from init_from (left at init)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ---- conversions ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def dump_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def dump_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, overrides: dict | None) -> "Config":
        """Defaults deep-merged with ``overrides``; unknown keys and wrong types raise :class:`ConfigError`."""
        cfg = _build(cls, overrides or {}, "")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        m = self.model
        validate_model(m)
        if m.heading_window >= 0 and self.data.orientation != "known":
            raise ConfigError("model.heading_window restricts the heading hypotheses around a given heading, so "
                              "it needs data.orientation: known (use -1 when the network estimates the heading)")
        if self.data.source not in ("synth", "vigor", "toy"):
            raise ConfigError(f"data.source must be synth, vigor or toy, got {self.data.source!r}")
        if self.data.orientation not in ("known", "unknown"):
            raise ConfigError(f"data.orientation must be known or unknown, got {self.data.orientation!r}")
        d = self.data
        if d.vigor_split not in VIGOR_SPLITS:  # a mistyped split once trained cross-area silently
            raise ConfigError(f"data.vigor_split must be {' or '.join(VIGOR_SPLITS)}, got {d.vigor_split!r}")
        if not (isinstance(d.vigor_corrected, bool) or d.vigor_corrected == "auto"):
            raise ConfigError(f"data.vigor_corrected must be true, false or auto, got {d.vigor_corrected!r}")
        plain = all(isinstance(c, str) and c.strip() and not set(c) & set("/\\") for c in d.vigor_cities)
        if not plain or len(set(d.vigor_cities)) != len(d.vigor_cities):
            raise ConfigError(f"data.vigor_cities must be a list of distinct city folder names, got {d.vigor_cities!r}")
        if self.train.amp not in ("auto", "bf16", "fp16", "off"):
            raise ConfigError(f"train.amp must be auto, bf16, fp16 or off, got {self.train.amp!r}")
        if self.train.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.train.device!r}")
        if self.train.save_dtype not in ("float32", "float16"):
            raise ConfigError(f"train.save_dtype must be float32 or float16, got {self.train.save_dtype!r}")
        if self.train.trainable not in ("all", "reranker", "metric", "retrieval", "ground"):
            raise ConfigError("train.trainable must be all, reranker, metric, retrieval or ground, "
                              f"got {self.train.trainable!r}")
        if self.train.trainable == "metric" and self.loss.position_weight <= 0:
            raise ConfigError("train.trainable: metric needs loss.position_weight > 0")
        if self.train.trainable == "retrieval" and self.loss.infonce_weight <= 0:
            raise ConfigError("train.trainable: retrieval needs loss.infonce_weight > 0")
        semi = self.data.stream.get("semi_fraction", 0.0) if isinstance(self.data.stream, dict) else 0.0
        if semi and self.train.trainable != "metric":
            raise ConfigError("data.stream.semi_fraction > 0 pairs panoramas with semi-positive tiles, which the "
                              "retrieval and re-ranking losses would take for positives: use it with "
                              "train.trainable: metric (descriptors and re-ranker frozen)")
        if self.train.trainable == "reranker" and (self.loss.rerank_weight <= 0 or self.loss.rerank_k < 2):
            raise ConfigError("train.trainable: reranker needs loss.rerank_weight > 0 and loss.rerank_k >= 2")
        if self.loss.rerank_k < 1:
            raise ConfigError("loss.rerank_k must be >= 1")
        if self.train.init_skip and not self.train.init_from:
            raise ConfigError("train.init_skip names weights not taken from train.init_from, which is not set")
        if not all(isinstance(x, str) and x for x in self.train.init_skip):
            raise ConfigError("train.init_skip must be a list of parameter-name prefixes, "
                              f"got {self.train.init_skip!r}")
        if m.aerial_height and m.share_views:
            raise ConfigError("model.aerial_height gives the aerial branch a 4th input channel, so it needs "
                              "model.share_views: false")
        if m.descriptor_layout:
            if m.share_views:
                raise ConfigError("model.descriptor_layout needs model.share_views: false (one layout per view)")
            if self.data.orientation != "known":
                raise ConfigError("model.descriptor_layout encodes where patterns sit around the camera, so it "
                                  "needs data.orientation: known (north-aligned panoramas)")


# ---- the model section's allowed values: one function, called by Config.validate (every loader, training) and by
# the network's constructor -------------------------------------------------------------------------------------

#: integer model keys -> their smallest allowed value
_MODEL_INT_MIN = {
    "aerial_px": 1, "semantic_dim": 1, "aggregator_layers": 0, "aggregator_heads": 1, "descriptor_dim": 1,
    "decoder_dim": 1, "orientation_bins": 1, "heading_window": -1, "match_dim": 1, "ground_elevation_bins": 1,
    "refine_window": 1, "rerank_hidden": 1,
}
#: [height, width] model keys (positive integers)
_MODEL_PAIRS = ("ground_hw", "ground_layout_hw", "aerial_layout_hw")
#: number model keys -> (lower bound, bound excluded)
_MODEL_FLOAT_MIN = {"gem_p": (0.0, True), "consensus_temperature": (0.0, True), "consensus_radius_m": (0.0, False)}
#: timm keyword arguments the model sets itself (weights come from model.pretrained / pretrained_file or a checkpoint)
_RESERVED_BACKBONE_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict",
                             "features_only", "in_chans", "cache_dir", "checkpoint_path")


def _allowed(key: str) -> str:
    """What the value of model key ``key`` must be, in words (for error messages)."""
    name = key.rpartition(".")[2]
    if name in _MODEL_INT_MIN:
        return f"an integer >= {_MODEL_INT_MIN[name]}"
    if name in _MODEL_PAIRS:
        return "[height, width], two integers >= 1"
    if name in _MODEL_FLOAT_MIN:
        low, strict = _MODEL_FLOAT_MIN[name]
        return f"a finite number {'>' if strict else '>='} {low:g}"
    return ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bad(key: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"model.{key} must be {allowed}, got {value!r}")


def validate_model(m: ModelConfig) -> None:
    """Raise one :class:`ConfigError` naming the first model key outside its allowed values (and those values)."""
    for key, low in _MODEL_INT_MIN.items():
        value = getattr(m, key)
        if not _is_int(value) or value < low:
            raise _bad(key, _allowed(key), value)
    for key in _MODEL_PAIRS:
        value = getattr(m, key)
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_int(v) and v >= 1 for v in value):
            raise _bad(key, _allowed(key), value)
    strides = m.metric_strides
    if (not isinstance(strides, (list, tuple)) or not strides or not all(_is_int(s) and s >= 1 for s in strides)
            or sorted(set(strides), reverse=True) != list(strides)):
        raise _bad("metric_strides", "backbone strides from coarse to fine (distinct integers >= 1, descending)",
                   strides)
    if m.refine_window % 2 == 0:
        raise _bad("refine_window", "a positive odd number", m.refine_window)
    for key in ("semantic_dim", "decoder_dim"):  # GroupNorm(min(8, dim), dim) needs whole groups
        value = getattr(m, key)
        if value >= 8 and value % 8:
            raise _bad(key, "below 8 or a multiple of 8 (8 normalisation groups)", value)
    if m.semantic_dim % m.aggregator_heads:
        raise ConfigError(f"model.semantic_dim ({m.semantic_dim}) must be a multiple of model.aggregator_heads "
                          f"({m.aggregator_heads}): each attention head takes an equal share")
    for key, (low, strict) in _MODEL_FLOAT_MIN.items():
        value = getattr(m, key)
        if not _is_finite(value) or value < low or (strict and value == low):
            raise _bad(key, _allowed(key), value)
    _validate_backbone(m)


def _validate_backbone(m: ModelConfig) -> None:
    """A timm registry name (nothing fetched by name: no ``hf-hub:``, no ``local-dir:``) and plain extra kwargs."""
    name = m.backbone
    if not isinstance(name, str) or not name or any(c in name for c in ":/\\"):
        raise _bad("backbone", "a timm architecture name such as convnext_tiny or convnext_tiny.fb_in22k "
                   "(hf-hub: and local-dir: names are not supported: nothing is fetched; give weights with "
                   "model.pretrained_file)", name)
    kwargs = m.backbone_kwargs
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise _bad("backbone_kwargs", "a mapping of timm keyword arguments", kwargs)
    reserved = sorted(set(kwargs) & set(_RESERVED_BACKBONE_KWARGS))
    if reserved:
        raise ConfigError(f"model.backbone_kwargs may not set {', '.join(reserved)}: the model sets them itself "
                          "(pretrained weights: model.pretrained and model.pretrained_file)")
    if not isinstance(m.pretrained_file, str):
        raise _bad("pretrained_file", "the path of a local weights file, or empty", m.pretrained_file)


def _build(cls, overrides: dict, prefix: str):
    if not isinstance(overrides, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(overrides).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)} "
                          f"(valid at {where}: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in overrides:
            continue
        value, typ, key = overrides[f.name], hints[f.name], prefix + f.name
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = _build(typ, value, key + ".")
        else:
            kwargs[f.name] = _coerce(value, typ, key)
    return cls(**kwargs)


def _type_error(key: str, expected: str, value: Any) -> ConfigError:
    """A value of the wrong type: the model's keys say their allowed values, the others the type expected."""
    allowed = _allowed(key) if key.startswith("model.") else ""
    if allowed:
        return ConfigError(f"{key} must be {allowed}, got {value!r}")
    return ConfigError(f"{key}: expected {expected}, got {value!r}")


def _coerce(value: Any, typ, key: str):
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(key, "an integer", value)
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(key, "a number", value)
        return float(value)
    if typ is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if typ is list:
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, "a list", value)
        return list(value)
    if typ is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Read a YAML (or JSON) file, deep-merge it over the defaults, then ``overrides`` (a nested dict) over that."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {path}: top level must be a mapping")
    if overrides:
        data = deep_merge(data, overrides)
    try:
        return Config.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None


def deep_merge(base: dict, over: dict) -> dict:
    """A new dict: ``base`` with ``over`` merged in recursively (``over`` wins)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
