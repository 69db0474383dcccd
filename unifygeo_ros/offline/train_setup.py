"""Set-up of a ``unifygeo train`` run, around the loop of :mod:`unifygeo_ros.offline.train`: which parameters
learn (``train.trainable``), the device, the optimizer / learning-rate schedule / mixed precision, the RNG state,
the checkpoints (``OUT/ckpt``, with the training state for ``--resume``) and the logs (``OUT/log.csv``, TensorBoard
under ``OUT/tb`` when available).
"""
from __future__ import annotations

import csv
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from unifygeo_ros.config import Config
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.model.checkpoint import load_train_state, load_weights_into, save_checkpoint, save_train_state
from unifygeo_ros.offline.train_data import mix_seed

LOG_FIELDS = ("step", "lr", "total", "infonce", "position", "orientation", "rerank", "batch_r1", "rerank_r1",
              "position_err_m", "heading_err_deg", "temperature", "sec_per_step", "samples_per_s")

#: ``train.trainable`` -> the parameter-name prefixes / parts that learn (everything else frozen, in eval mode).
#: ``metric``: the fine decoders, both match heads and the metric head - the dense branch only, so the global
#: descriptors (trunk, semantic extractor, aggregators) and the re-ranker stay exactly as they are; meant for a
#: stage with ``data.stream.semi_fraction`` > 0 (cameras outside the tile's central quarter).
#: ``retrieval``: the semantic extractors, the aggregators and the InfoNCE temperature - the descriptor heads on
#: frozen trunks (BatchNorm statistics included), so the dense branch and the re-ranker stay exactly as they are.
#: ``ground``: the whole ground branch (trunk, semantic and fine heads, aggregator, match head), the metric head and
#: the InfoNCE temperature - the aerial branch and the re-ranker frozen, so aerial descriptors and dense features stay
#: exactly as they are; meant for a new kind of ground input (``data.stream.fov_*``: pinhole rigs) matched against the
#: same aerial embedding.
TRAINABLE = {
    "reranker": {"prefixes": ("reranker.",), "parts": ()},
    "metric": {"prefixes": ("ground_match.", "aerial_match.", "metric."), "parts": (".fine.",)},
    "retrieval": {"prefixes": ("ground_aggregator.", "aerial_aggregator_.", "log_logit_scale"),
                  "parts": (".semantic.",)},
    "ground": {"prefixes": ("ground_encoder.", "ground_aggregator.", "ground_match.", "metric.", "log_logit_scale"),
               "parts": ()},
}


# ---------------------------------------------------------------------------------------- trainable parts
def is_trainable(name: str, trainable: str) -> bool:
    """Whether parameter (or module name + ".") ``name`` learns under ``train.trainable``."""
    if trainable == "all":
        return True
    spec = TRAINABLE[trainable]
    return name.startswith(spec["prefixes"]) or any(part in "." + name for part in spec["parts"])


def freeze_for_stage(model: torch.nn.Module, trainable: str) -> None:
    """A stage on a frozen network: only the parameters of ``trainable`` require gradients (no graph through the
    frozen parts)."""
    if trainable == "all":
        return
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name, trainable))


def set_train_modes(model: torch.nn.Module, trainable: str) -> None:
    """Train mode for the learning modules; frozen parts stay in eval mode (normalisation statistics as trained)."""
    model.train()
    if trainable == "all":
        return
    model.eval()
    for name, module in model.named_modules():
        if name and is_trainable(name + ".", trainable):
            module.train()


# ------------------------------------------------------------------------------------------ device, RNG
def resolve_device(cfg: Config, local_rank: int) -> torch.device:
    """``train.device`` (auto: CUDA when available) as a device; rank ``local_rank``'s GPU."""
    want = cfg.train.device
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UnifyGeoError("train.device is cuda but CUDA is not available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def seed_process(cfg: Config, device: torch.device, rank: int, world_size: int) -> None:
    """CPU threads (``train.threads``, default the cores shared by the ranks) and the seeds: identical initial
    weights on every rank (torch), per-rank numpy / Python streams."""
    if device.type == "cpu":
        torch.set_num_threads(cfg.train.threads or max(1, (os.cpu_count() or 1) // world_size))
    seed = mix_seed(cfg.train.seed, rank)
    torch.manual_seed(cfg.train.seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


def rng_state() -> dict:
    """torch / numpy / Python (/ CUDA) RNG state as tensors and plain lists (``torch.load(weights_only=True)``)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
             "numpy_pos": int(np_state[2]), "python": list(random.getstate()[1]),
             "python_version": int(random.getstate()[0])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------ optimization
def lr_lambda(cfg: Config) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up over ``train.warmup_steps``, then a cosine down to
    ``train.min_lr_ratio`` at ``train.steps``."""
    t = cfg.train

    def f(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / max(1, t.warmup_steps)
        progress = min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups of the learning parameters: weight decay on matrices / kernels, none on vectors."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class Optimization:
    """What steps the weights: AdamW, its schedule, the gradient scaler (fp16 on CUDA) and the autocast dtype."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None  # None: full precision

    @classmethod
    def create(cls, model: torch.nn.Module, cfg: Config, device: torch.device) -> "Optimization":
        optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
        amp = cfg.train.amp
        if amp == "auto":
            amp = "bf16" if device.type == "cuda" else "off"
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        scaler = torch.amp.GradScaler("cuda", enabled=(amp == "fp16" and device.type == "cuda"))
        return cls(optimizer, scheduler, scaler, amp_dtype)

    def state_dicts(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dicts(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


# ------------------------------------------------------------------------------------------ checkpoints
def restore_train_state(ckpt_dir: Path, model: torch.nn.Module, opt: Optimization, rank: int) -> int:
    """``--resume``: weights, optimizer / schedule / scaler and this rank's RNG state from ``ckpt_dir``; returns
    the step reached."""
    meta = load_weights_into(model, ckpt_dir)
    state = load_train_state(ckpt_dir)
    opt.load_state_dicts(state)
    set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)])
    return int(meta.step)


@dataclass
class Checkpointer:
    """Writes ``OUT/ckpt``: the model checkpoint and the training state, every rank's RNG state gathered."""

    ckpt_dir: Path
    model: torch.nn.Module
    cfg: Config
    opt: Optimization
    rank: int
    world_size: int

    def save(self, step: int, metrics: dict) -> str:
        """Save at ``step`` (all ranks call it: the RNG states are gathered); the folder written, "" off rank 0."""
        rngs = [rng_state()]
        if self.world_size > 1:
            gathered: list = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if self.rank != 0:
            return ""
        save_checkpoint(self.ckpt_dir, self.model, self.cfg, step=step, metrics=metrics)
        save_train_state(self.ckpt_dir, {**self.opt.state_dicts(), "rng": rngs, "step": step})
        return str(self.ckpt_dir)


# ------------------------------------------------------------------------------------------ logs
class RunLog:
    """``OUT/config.yaml`` and ``OUT/log.csv`` (appended on ``--resume``), plus TensorBoard scalars under ``OUT/tb``
    when ``train.tensorboard`` and tensorboard is installed. Rank 0 only."""

    def __init__(self, out: Path, cfg: Config, resume: bool) -> None:
        out.mkdir(parents=True, exist_ok=True)
        cfg.dump_yaml(out / "config.yaml")
        new_log = not (resume and (out / "log.csv").exists())
        self._file = open(out / "log.csv", "w" if new_log else "a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=LOG_FIELDS)
        if new_log:
            self._csv.writeheader()
        self._writer = None
        if cfg.train.tensorboard:
            try:  # optional: tensorboard is not a requirement, the CSV is the log
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(out / "tb"))
            except Exception:  # tensorboard not installed: CSV only
                self._writer = None

    def write(self, row: dict, step: int) -> None:
        """One row of :data:`LOG_FIELDS` (flushed), and its scalars to TensorBoard."""
        self._csv.writerow(row)
        self._file.flush()
        if self._writer is not None:
            for k in LOG_FIELDS[1:]:
                self._writer.add_scalar(f"train/{k}", row[k], step)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


__all__ = ["LOG_FIELDS", "TRAINABLE", "Checkpointer", "Optimization", "RunLog", "freeze_for_stage", "is_trainable",
           "lr_lambda", "param_groups", "resolve_device", "restore_train_state", "rng_state", "seed_process",
           "set_rng_state", "set_train_modes"]
