"""``unifygeo train``: train UnifyGeo jointly for retrieval, metric localization and re-ranking.

    unifygeo train --config config/tiny.yaml --out runs/X [--data synth|vigor|toy --vigor-root DIR] [--steps N]
                   [--vigor-cities A,B] [--resume]
    torchrun --nproc_per_node 2 -m unifygeo_ros.offline.train --config ... --out ...      # DistributedDataParallel

Data: by default synthetic cities rendered on the fly (``CityStream``: a new city every few batches, never
reused; the lesson of PAPER.md), VIGOR with ``--data vigor`` (``data.vigor_split``, ``data.vigor_cities``,
``data.vigor_corrected``, ``data.vigor_original_mpp``), or ``toy`` (a fixed set of random-texture pairs, for
tests and smoke runs). Per step: encode both views, symmetric InfoNCE on the global descriptors, position +
heading losses on the (panorama, positive tile) maps, and the re-ranking loss over each query's top-K batch
tiles (positive forced in). Writes ``OUT/config.yaml``, ``OUT/log.csv`` (+ TensorBoard under ``OUT/tb`` when
available) and ``OUT/ckpt/`` (model.safetensors, config.json, meta.json, train_state.pt) every
``train.ckpt_every`` steps and at the end; ``--resume`` continues from ``OUT/ckpt`` (model, optimizer,
scheduler, scaler, step, RNG; the data stream is re-seeded from the step). Only rank 0 writes.

The loop is here (:func:`train`); the batches come from :mod:`unifygeo_ros.offline.train_data`, the set-up
(trainable parts, optimizer and schedule, device, RNG, checkpoints, logs) from
:mod:`unifygeo_ros.offline.train_setup`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from unifygeo_ros.config import Config, load_config
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.model import build_model
from unifygeo_ros.model.checkpoint import load_weights_into
from unifygeo_ros.model.losses import JointObjective
from unifygeo_ros.offline.train_data import (FACTORIES, BatchFactory, ToyPairs, TrainBatch, mix_seed, prepare_batch,
                                             synth_batches, to_model_input, toy_batches, vigor_batches)
from unifygeo_ros.offline.train_setup import (LOG_FIELDS, TRAINABLE, Checkpointer, Optimization, RunLog,
                                              freeze_for_stage, is_trainable, resolve_device, restore_train_state,
                                              seed_process, set_train_modes)

#: the names under which benchmarks/bench_semi_metric.py and the tests import it
_to_model_input = to_model_input


# ============================================================================================ training
@dataclass
class TrainResult:
    step: int
    history: list = field(default_factory=list)  #: the logged rows (dicts of LOG_FIELDS)
    checkpoint: str = ""
    model: torch.nn.Module | None = None  #: the trained model (unwrapped), in train mode


@dataclass
class _Run:
    """What every step of one process's run needs."""

    cfg: Config
    device: torch.device
    rank: int
    world_size: int
    model: torch.nn.Module  # unwrapped
    wrapped: torch.nn.Module  # the objective, DDP-wrapped when world_size > 1
    opt: Optimization


def _build_model(cfg: Config, device: torch.device, resume: bool) -> torch.nn.Module:
    """The network on ``device``: ``train.init_from`` weights (unless resuming), frozen outside ``train.trainable``."""
    model = build_model(cfg).to(device)
    if cfg.train.init_from and not resume:
        load_weights_into(model, cfg.train.init_from, skip=cfg.train.init_skip)
    freeze_for_stage(model, cfg.train.trainable)
    return model


def _distributed(objective: torch.nn.Module, device: torch.device, world_size: int) -> torch.nn.Module:
    """The objective wrapped for DistributedDataParallel when there are several processes."""
    if world_size == 1:
        return objective
    return DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)


def _micro_step(run: _Run, batch: dict, step: int, micro: int, accum: int) -> tuple[dict[str, float], int]:
    """Forward and backward of one micro-batch (gradients synchronised on the last one): (loss scalars, samples)."""
    cfg = run.cfg
    gen = torch.Generator().manual_seed(mix_seed(cfg.train.seed, run.rank, step, micro, 0xA06))
    tb: TrainBatch = prepare_batch(batch, cfg, run.device, gen)
    sync = contextlib.nullcontext() if (run.world_size == 1 or micro == accum - 1) else run.wrapped.no_sync()
    with sync:
        amp_dtype = run.opt.amp_dtype
        with torch.autocast(run.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            lo = run.wrapped(tb.ground, tb.aerial, tb.offset_en_m, tb.heading_deg, tb.tile_m, tb.exclude)
        if not torch.isfinite(lo.total):
            raise UnifyGeoError(f"non-finite loss at step {step}: {lo.scalars()}")
        if lo.total.requires_grad:  # a frozen network with no usable re-rank list has nothing to learn
            run.opt.scaler.scale(lo.total / accum).backward()
    return lo.scalars(), int(tb.ground.shape[0])


def _optimizer_step(run: _Run, data: Iterator[dict], step: int) -> tuple[dict[str, float], int]:
    """One optimizer step over ``train.accum_steps`` micro-batches: (mean loss scalars, samples seen)."""
    opt, cfg = run.opt, run.cfg
    accum = max(1, cfg.train.accum_steps)
    opt.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    n_samples = 0
    for micro in range(accum):
        scalars, n = _micro_step(run, next(data), step, micro, accum)
        n_samples += n
        for k, v in scalars.items():
            sums[k] = sums.get(k, 0.0) + v / accum
    opt.scaler.unscale_(opt.optimizer)
    if cfg.train.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.train.grad_clip)
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    opt.scheduler.step()
    return sums, n_samples


def _report(cfg: Config, bar, log: RunLog, history: list[dict], last: dict, step: int, start_step: int) -> None:
    """Rank 0 after a step: the progress bar, and every ``train.log_every`` steps (and the first and last) a log
    row."""
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{last['total']:.3f}", r1=f"{last['batch_r1']:.2f}",
                        err=f"{last['position_err_m']:.1f}m")
    if step % cfg.train.log_every == 0 or step == cfg.train.steps or step == start_step + 1:
        row = {k: last[k] for k in LOG_FIELDS}
        log.write(row, step)
        history.append(row)


def train(cfg: Config, out_dir: str | os.PathLike, *, resume: bool = False, batches: BatchFactory | None = None,
          rank: int = 0, world_size: int = 1, local_rank: int = 0, progress: bool = True) -> TrainResult:
    """Train ``cfg.train.steps`` optimizer steps (total, counting resumed ones); rank 0 writes ``out_dir``.

    With ``world_size > 1`` the default process group must already be initialised (see :func:`run`).
    """
    out = Path(out_dir)
    ckpt_dir = out / "ckpt"
    is_main = rank == 0
    device = resolve_device(cfg, local_rank)
    seed_process(cfg, device, rank, world_size)
    model = _build_model(cfg, device, resume)
    objective = JointObjective(model, cfg.loss).to(device)
    opt = Optimization.create(model, cfg, device)
    start_step = restore_train_state(ckpt_dir, model, opt, rank) if resume else 0
    torch.manual_seed(mix_seed(cfg.train.seed, rank, start_step))  # per-rank randomness from here on
    run = _Run(cfg, device, rank, world_size, model, _distributed(objective, device, world_size), opt)
    log = RunLog(out, cfg, resume) if is_main else None
    data = (batches or FACTORIES[cfg.data.source])(cfg, start_step, rank, world_size)
    history: list[dict] = []
    result = TrainResult(step=start_step)
    bar = None
    if is_main and progress:
        bar = tqdm(total=cfg.train.steps, initial=start_step, desc="train", dynamic_ncols=True, file=sys.stderr)
    saver = Checkpointer(ckpt_dir, model, cfg, opt, rank, world_size)
    step, last = start_step, {}
    set_train_modes(model, cfg.train.trainable)
    try:
        while step < cfg.train.steps:
            t0 = time.perf_counter()
            sums, n_samples = _optimizer_step(run, data, step)
            step += 1
            dt = time.perf_counter() - t0
            last = {"step": step, "lr": opt.scheduler.get_last_lr()[0], **sums, "sec_per_step": dt,
                    "samples_per_s": n_samples * world_size / dt}
            if is_main:
                _report(cfg, bar, log, history, last, step, start_step)
            if step % cfg.train.ckpt_every == 0 and step < cfg.train.steps:
                result.checkpoint = saver.save(step, last) or result.checkpoint
        if step > start_step or not (ckpt_dir / "meta.json").exists():
            result.checkpoint = saver.save(step, last) or result.checkpoint
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    result.step = step
    result.history = history
    result.model = model
    return result


# ================================================================================================= CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The ``unifygeo train`` arguments."""
    parser.add_argument("--config", default=None, help="YAML config (deep-merged over the defaults)")
    parser.add_argument("--out", required=True, help="run directory: config.yaml, log.csv, tb/, ckpt/")
    parser.add_argument("--data", choices=sorted(FACTORIES), default=None, help="data source (config: data.source)")
    parser.add_argument("--vigor-root", default=None, help="VIGOR root directory (with --data vigor)")
    parser.add_argument("--vigor-cities", default=None, metavar="A,B",
                        help="comma-separated city folders to train on with --data vigor (config: data.vigor_cities; "
                             "default: all four VIGOR cities same-area, NewYork,Seattle cross-area)")
    parser.add_argument("--steps", type=int, default=None, help="total optimizer steps (config: train.steps)")
    parser.add_argument("--batch-size", type=int, default=None, help="per-process batch (config: data.batch_size)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/ckpt")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set loss.position_weight=0 (repeatable; "
                             "VALUE is parsed as YAML; nested mappings: --set data.stream.semi_fraction=0.5)")


def config_from_args(args: argparse.Namespace) -> Config:
    """``--config`` with the command-line overrides (``--data``, ``--steps``, ..., every ``--set``) applied."""
    over: dict = {"data": {}, "train": {}}
    if args.data:
        over["data"]["source"] = args.data
    if args.vigor_root:
        over["data"]["vigor_root"] = args.vigor_root
    if getattr(args, "vigor_cities", None):
        over["data"]["vigor_cities"] = [c.strip() for c in args.vigor_cities.split(",") if c.strip()]
    if args.batch_size:
        over["data"]["batch_size"] = args.batch_size
    for name in ("steps", "device", "seed"):
        if getattr(args, name) is not None:
            over["train"][name] = getattr(args, name)
    for item in getattr(args, "set", []) or []:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise UnifyGeoError(f"--set expects SECTION.KEY=VALUE (or SECTION.KEY.SUBKEY=VALUE), got {item!r}")
        node = over
        for part in parts[:-1]:  # data.stream.semi_fraction -> over["data"]["stream"]["semi_fraction"]
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UnifyGeoError(f"--set {item!r}: {part} was already set to a value")
        node[parts[-1]] = yaml.safe_load(value)
    return load_config(args.config, over)


def run(args: argparse.Namespace) -> int:
    """``unifygeo train``: one process of a run (torchrun's environment gives the rank and world size)."""
    cfg = config_from_args(args)
    out = Path(args.out)
    if args.resume and not (out / "ckpt" / "meta.json").exists():
        raise UnifyGeoError(f"--resume: no checkpoint in {out / 'ckpt'}")
    if not args.resume and (out / "ckpt" / "meta.json").exists():  # a finished or stopped run: never overwritten
        raise UnifyGeoError(f"{out / 'ckpt'} already holds a trained checkpoint: --resume to continue that run, or "
                            "another --out")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        device = resolve_device(cfg, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        res = train(cfg, out, resume=args.resume, rank=rank, world_size=world, local_rank=local_rank,
                    progress=not args.no_progress)
    finally:
        if world > 1:
            dist.destroy_process_group()
    if rank == 0:
        last = res.history[-1] if res.history else {}
        print(f"trained to step {res.step}; checkpoint {res.checkpoint or '-'}; "
              + ", ".join(f"{k}={last[k]:.4g}" for k in ("total", "batch_r1", "position_err_m") if k in last))
        if (out / "log.csv").is_file() and res.history:
            from unifygeo_ros.plots import plot_training_log  # imports matplotlib: only for the picture

            print(f"training curves: {plot_training_log(out / 'log.csv', out / 'training.png')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m unifygeo_ros.offline.train`` (what torchrun starts): exit code 1 with one line on a user error."""
    parser = argparse.ArgumentParser(prog="python -m unifygeo_ros.offline.train", description=__doc__.splitlines()[0])
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UnifyGeoError as exc:
        print(f"unifygeo train: error: {exc}", file=sys.stderr)
        return 1


__all__ = ["FACTORIES", "LOG_FIELDS", "TRAINABLE", "BatchFactory", "ToyPairs", "TrainBatch", "TrainResult",
           "config_from_args", "configure_parser", "is_trainable", "main", "prepare_batch", "run", "synth_batches",
           "toy_batches", "train", "vigor_batches"]


if __name__ == "__main__":
    sys.exit(main())
