"""Every default of the model, the losses, the data and the training loop, in one place.

A configuration is four dataclasses (:class:`ModelConfig`, :class:`LossConfig`, :class:`DataConfig`,
:class:`TrainConfig`) under :class:`Config`. A YAML file only states what differs from these defaults; it is
deep-merged over them, and a key that is not a field is an error (a typo must not silently train the wrong
model). ``Config.to_dict()`` / ``dump_yaml`` / ``dump_json`` write the full, resolved configuration back.
"""
from __future__ import annotations

import dataclasses
import json
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
    pretrained: bool = False                 #: timm ``pretrained=``; only with weights the user supplied/cached
    pretrained_file: str = ""                #: local weights file for timm's ``pretrained_cfg_overlay``
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


@dataclass
class DataConfig:
    """Where batches come from and the augmentations applied to them (always consistent across views)."""

    source: str = "synth"                    #: synth (CityStream, new cities forever) | vigor | toy
    toy_samples: int = 8                     #: toy: a fixed set of this many random-texture pairs (tests, smoke)
    orientation: str = "unknown"             #: unknown (random panorama heading) | known (north-aligned)
    vigor_root: str = ""
    vigor_split: str = "same_area"           #: same_area | cross_area
    vigor_corrected: bool = True             #: corrected (HC-Net) labels
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
    trainable: str = "all"                   #: all | reranker | metric | retrieval (see TRAINABLE in train.py)
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
        if m.refine_window < 1 or m.refine_window % 2 == 0:
            raise ConfigError(f"model.refine_window must be a positive odd number, got {m.refine_window}")
        if m.consensus_radius_m < 0 or m.consensus_temperature <= 0:
            raise ConfigError("model.consensus_radius_m must be >= 0 (0 = off) and model.consensus_temperature > 0, "
                              f"got {m.consensus_radius_m} and {m.consensus_temperature}")
        if m.heading_window < -1:
            raise ConfigError(f"model.heading_window must be -1 (all hypotheses) or >= 0, got {m.heading_window}")
        if m.heading_window >= 0 and self.data.orientation != "known":
            raise ConfigError("model.heading_window restricts the heading hypotheses around a given heading, so "
                              "it needs data.orientation: known (use -1 when the network estimates the heading)")
        if len(m.ground_hw) != 2:
            raise ConfigError(f"model.ground_hw must be [height, width], got {m.ground_hw}")
        if sorted(m.metric_strides, reverse=True) != list(m.metric_strides) or not m.metric_strides:
            raise ConfigError(f"model.metric_strides must be coarse to fine (descending), got {m.metric_strides}")
        if self.data.source not in ("synth", "vigor", "toy"):
            raise ConfigError(f"data.source must be synth, vigor or toy, got {self.data.source!r}")
        if self.data.orientation not in ("known", "unknown"):
            raise ConfigError(f"data.orientation must be known or unknown, got {self.data.orientation!r}")
        if self.train.amp not in ("auto", "bf16", "fp16", "off"):
            raise ConfigError(f"train.amp must be auto, bf16, fp16 or off, got {self.train.amp!r}")
        if self.train.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.train.device!r}")
        if self.train.save_dtype not in ("float32", "float16"):
            raise ConfigError(f"train.save_dtype must be float32 or float16, got {self.train.save_dtype!r}")
        if self.train.trainable not in ("all", "reranker", "metric", "retrieval"):
            raise ConfigError("train.trainable must be all, reranker, metric or retrieval, "
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
            raise ConfigError(f"train.init_skip must be a list of parameter-name prefixes, got {self.train.init_skip!r}")
        if m.aerial_height and m.share_views:
            raise ConfigError("model.aerial_height gives the aerial branch a 4th input channel, so it needs "
                              "model.share_views: false")
        if m.descriptor_layout:
            if m.share_views:
                raise ConfigError("model.descriptor_layout needs model.share_views: false (one layout per view)")
            if self.data.orientation != "known":
                raise ConfigError("model.descriptor_layout encodes where patterns sit around the camera, so it "
                                  "needs data.orientation: known (north-aligned panoramas)")


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


def _coerce(value: Any, typ, key: str):
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if typ is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
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
