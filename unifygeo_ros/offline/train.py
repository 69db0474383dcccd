"""``unifygeo train``: train UnifyGeo jointly for retrieval, metric localization and re-ranking.

    unifygeo train --config config/tiny.yaml --out runs/X [--data synth|vigor|toy --vigor-root DIR] [--steps N]
                   [--resume]
    torchrun --nproc_per_node 2 -m unifygeo_ros.offline.train --config ... --out ...      # DistributedDataParallel

Data: by default synthetic cities rendered on the fly (``CityStream``: a new city every few batches, never
reused; the lesson of PAPER.md), VIGOR with ``--data vigor``, or ``toy`` (a fixed set of random-texture pairs, for
tests and smoke runs). Per step: encode both views, symmetric InfoNCE on the global descriptors, position +
heading losses on the (panorama, positive tile) maps, and the re-ranking loss over each query's top-K batch
tiles (positive forced in). Writes ``OUT/config.yaml``, ``OUT/log.csv`` (+ TensorBoard under ``OUT/tb`` when
available) and ``OUT/ckpt/`` (model.safetensors, config.json, meta.json, train_state.pt) every
``train.ckpt_every`` steps and at the end; ``--resume`` continues from ``OUT/ckpt`` (model, optimizer,
scheduler, scaler, step, RNG; the data stream is re-seeded from the step). Only rank 0 writes.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from unifygeo_ros.config import Config, ConfigError, load_config
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.image.preprocess import normalize_uint8_tensor

LOG_FIELDS = ("step", "lr", "total", "infonce", "position", "orientation", "rerank", "batch_r1", "rerank_r1",
              "position_err_m", "heading_err_deg", "temperature", "sec_per_step", "samples_per_s")

#: (cfg, start_step, rank, world_size) -> an endless iterator of collated batches (one per micro-step)
BatchFactory = Callable[[Config, int, int, int], Iterator[dict]]


# ================================================================================================ data
def _mix_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) % (2**32) for p in parts]).generate_state(1)[0])


def _to_model_input(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """uint8 (B, H, W, C) or normalised float (B, C, H, W) -> normalised float (B, C, *size_hw)
    (C = 3, or 4 for an aerial tile with its packed surface height)."""
    if x.dtype == torch.uint8:
        x = normalize_uint8_tensor(x.permute(0, 3, 1, 2).float())
    x = x.float()
    if tuple(x.shape[-2:]) != tuple(size_hw):
        x = F.interpolate(x, size=tuple(size_hw), mode="bilinear", align_corners=False, antialias=True)
    return x


@dataclass
class TrainBatch:
    ground: torch.Tensor       #: (B, 3, Hg, Wg) normalised
    aerial: torch.Tensor       #: (B, 3, A, A) normalised, north-up
    offset_en_m: torch.Tensor  #: (B, 2) camera east/north of the tile centre, metres
    heading_deg: torch.Tensor  #: (B,) compass heading of the panorama's centre column
    tile_m: torch.Tensor       #: (B,) tile side, metres
    exclude: torch.Tensor | None  #: (B, B) pairs masked from the losses (duplicates / semi-positives)


def prepare_batch(batch: dict, cfg: Config, device: torch.device, gen: torch.Generator) -> TrainBatch:
    """Collated sample dict -> model tensors, with the view-consistent augmentations of ``cfg.data``.

    * panorama roll by k columns: heading changes by ``-k * 360 / W`` (geo.py's convention);
    * rot90 of the world (``rot90_aerial``): tile rotated q x 90 deg counter-clockwise, offset (e, n) -> (-n, e)
      per quarter turn, heading - 90 per quarter turn (the panorama itself does not change).
    """
    from unifygeo_ros.model.losses import exclusion_mask

    m = cfg.model
    ground = _to_model_input(torch.as_tensor(batch["ground"]), tuple(m.ground_hw))
    aerial = _to_model_input(torch.as_tensor(batch["aerial"]), (m.aerial_px, m.aerial_px))
    b = ground.shape[0]
    offset = torch.as_tensor(batch["offset_en_m"], dtype=torch.float32).reshape(b, 2).clone()
    heading = torch.as_tensor(batch.get("heading_deg", torch.zeros(b)), dtype=torch.float32).reshape(b).clone()
    if "tile_m" in batch:
        tile_m = torch.as_tensor(batch["tile_m"], dtype=torch.float32).reshape(b)
    elif "mpp" in batch:  # VIGOR: metres per pixel of the aerial tensor as delivered
        tile_m = torch.as_tensor(batch["mpp"], dtype=torch.float32).reshape(b) * torch.as_tensor(batch["aerial"]).shape[-1]
    else:
        tile_m = torch.full((b,), float(cfg.data.tile_m))
    exclude = exclusion_mask(batch, tile_m)

    if cfg.data.roll_ground and cfg.data.orientation == "unknown":
        w = ground.shape[-1]
        k = torch.randint(0, w, (b,), generator=gen)
        ground = torch.stack([torch.roll(ground[i], int(k[i]), dims=-1) for i in range(b)])
        heading = heading - k.float() * 360.0 / w
    if cfg.data.rot90_aerial:
        q = torch.randint(0, 4, (b,), generator=gen)
        aerial = torch.stack([torch.rot90(aerial[i], int(q[i]), dims=(-2, -1)) for i in range(b)])
        for _ in range(3):
            turn = q > 0
            offset[turn] = torch.stack([-offset[turn, 1], offset[turn, 0]], dim=-1)
            heading[turn] -= 90.0
            q = q - turn.long()
    heading = torch.remainder(heading + 180.0, 360.0) - 180.0
    return TrainBatch(ground.to(device), aerial.to(device), offset.to(device), heading.to(device),
                      tile_m.to(device), None if exclude is None else exclude.to(device))


class ToyPairs:
    """A fixed set of ``n`` (panorama, tile) pairs of random smooth textures; the panorama is a resampling of
    its tile's colours, so the pairs can be learned. For tests and smoke runs, not for a model."""

    def __init__(self, n: int, ground_hw, aerial_px: int, tile_m: float = 70.0, seed: int = 0,
                 aerial_height: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        base = torch.rand(n, 3, 4, 4, generator=g)
        aer = F.interpolate(base, size=(aerial_px, aerial_px), mode="bilinear", align_corners=False)
        aer = aer + 0.15 * torch.rand(n, 3, aerial_px, aerial_px, generator=g)
        if aerial_height:  # a "surface height" channel that follows the colours (a 4-channel toy tile)
            aer = torch.cat([aer, aer.mean(1, keepdim=True)], dim=1)
        gnd = F.interpolate(base.flip(-2), size=tuple(ground_hw), mode="bilinear", align_corners=False)
        gnd = gnd + 0.15 * torch.rand(n, 3, *ground_hw, generator=g)
        self.aerial = (aer.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1)
        self.ground = (gnd.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1)
        self.offset = (torch.rand(n, 2, generator=g) - 0.5) * (tile_m / 2)
        self.heading = torch.zeros(n)
        self.tile_m = torch.full((n,), float(tile_m))
        self.n = n

    def batch(self, idx: torch.Tensor) -> dict:
        return {"ground": self.ground[idx], "aerial": self.aerial[idx], "offset_en_m": self.offset[idx],
                "heading_deg": self.heading[idx], "tile_m": self.tile_m[idx], "tile_index": idx}


def toy_batches(cfg: Config, start_step: int, rank: int, world: int) -> Iterator[dict]:
    """Endless batches drawn from :class:`ToyPairs`; micro-step ``i``'s batch depends only on (seed, rank, i)."""
    pairs = ToyPairs(cfg.data.toy_samples, cfg.model.ground_hw, cfg.model.aerial_px, cfg.data.tile_m, cfg.train.seed,
                     cfg.model.aerial_height)
    bs = min(cfg.data.batch_size, pairs.n)
    i = start_step * cfg.train.accum_steps
    while True:
        g = torch.Generator().manual_seed(_mix_seed(cfg.train.seed, rank, i, 0xB47C))
        yield pairs.batch(torch.randperm(pairs.n, generator=g)[:bs])
        i += 1


def synth_batches(cfg: Config, start_step: int, rank: int, world: int) -> Iterator[dict]:
    """Batches from :class:`~unifygeo_ros.data.stream.CityStream`: new cities forever, never reused.

    Rank ``r`` draws cities from its own seed range (``train.seed`` and ``r`` mixed, below the 10**9 that
    validation streams use); on resume the stream skips the cities the finished steps consumed. Panoramas are
    rendered 2:1 at the model's width and resized to ``model.ground_hw`` like any panorama at inference.
    """
    try:
        from unifygeo_ros.data.stream import CityStream
    except ImportError as exc:
        raise UnifyGeoError(f"synthetic data stream not available ({exc}); use --data toy or vigor") from None

    kwargs = dict(tile_m=cfg.data.tile_m, aerial_px=cfg.model.aerial_px,
                  pano_size=(cfg.model.ground_hw[1], cfg.model.ground_hw[1] // 2),
                  random_heading=cfg.data.orientation == "unknown", aerial_height=cfg.model.aerial_height)
    kwargs.update(cfg.data.stream)
    per_city = int(kwargs.get("samples_per_city", 64))
    consumed = start_step * cfg.train.accum_steps * cfg.data.batch_size
    kwargs["base_seed"] = (cfg.train.seed * 1_000_003 + rank * 100_000_000) % 900_000_000
    kwargs["start_city"] = consumed // per_city
    stream = CityStream(**kwargs)
    loader = torch.utils.data.DataLoader(stream, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                                         persistent_workers=cfg.data.num_workers > 0)
    while True:
        yield from loader


def vigor_batches(cfg: Config, start_step: int, rank: int, world: int) -> Iterator[dict]:
    """Shuffled VIGOR training batches (rank-disjoint shards of each epoch's permutation)."""
    from unifygeo_ros.data.vigor import VigorDataset

    if not cfg.data.vigor_root:
        raise ConfigError("data.vigor_root (or --vigor-root) is required for --data vigor")
    ds = VigorDataset(cfg.data.vigor_root, split="same" if cfg.data.vigor_split.startswith("same") else "cross",
                      train=True, ground_size_hw=tuple(cfg.model.ground_hw), aerial_px=cfg.model.aerial_px,
                      orientation=cfg.data.orientation, corrected=cfg.data.vigor_corrected, seed=cfg.train.seed,
                      aerial_height=cfg.model.aerial_height)
    per_epoch = len(ds) // (cfg.data.batch_size * world)
    if per_epoch == 0:
        raise ConfigError(f"VIGOR training set of {len(ds)} panoramas is smaller than one global batch")
    micro = start_step * cfg.train.accum_steps
    epoch, skip = divmod(micro, per_epoch)
    while True:
        perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(_mix_seed(cfg.train.seed, epoch)))
        shard = perm[rank::world][: per_epoch * cfg.data.batch_size][skip * cfg.data.batch_size:]
        sampler = shard.tolist()
        loader = torch.utils.data.DataLoader(ds, batch_size=cfg.data.batch_size, sampler=sampler,
                                             num_workers=cfg.data.num_workers, drop_last=True)
        yield from loader
        epoch, skip = epoch + 1, 0


FACTORIES: dict[str, BatchFactory] = {"synth": synth_batches, "vigor": vigor_batches, "toy": toy_batches}


# ============================================================================================ training
@dataclass
class TrainResult:
    step: int
    history: list = field(default_factory=list)  #: the logged rows (dicts of LOG_FIELDS)
    checkpoint: str = ""
    model: torch.nn.Module | None = None  #: the trained model (unwrapped), in train mode


#: ``train.trainable`` -> the parameter-name prefixes / parts that learn (everything else frozen, in eval mode).
#: ``metric``: the fine decoders, both match heads and the metric head - the dense branch only, so the global
#: descriptors (trunk, semantic extractor, aggregators) and the re-ranker stay exactly as they are; meant for a
#: stage with ``data.stream.semi_fraction`` > 0 (cameras outside the tile's central quarter).
#: ``retrieval``: the semantic extractors, the aggregators and the InfoNCE temperature - the descriptor heads on
#: frozen trunks (BatchNorm statistics included), so the dense branch and the re-ranker stay exactly as they are.
TRAINABLE = {
    "reranker": {"prefixes": ("reranker.",), "parts": ()},
    "metric": {"prefixes": ("ground_match.", "aerial_match.", "metric."), "parts": (".fine.",)},
    "retrieval": {"prefixes": ("ground_aggregator.", "aerial_aggregator_.", "log_logit_scale"),
                  "parts": (".semantic.",)},
}


def is_trainable(name: str, trainable: str) -> bool:
    """Whether parameter (or module name + ".") ``name`` learns under ``train.trainable``."""
    if trainable == "all":
        return True
    spec = TRAINABLE[trainable]
    return name.startswith(spec["prefixes"]) or any(part in "." + name for part in spec["parts"])


def _lr_lambda(cfg: Config):
    t = cfg.train

    def f(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / max(1, t.warmup_steps)
        progress = min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
             "numpy_pos": int(np_state[2]), "python": list(random.getstate()[1]),
             "python_version": int(random.getstate()[0])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _resolve_device(cfg: Config, local_rank: int) -> torch.device:
    want = cfg.train.device
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UnifyGeoError("train.device is cuda but CUDA is not available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def train(cfg: Config, out_dir: str | os.PathLike, *, resume: bool = False, batches: BatchFactory | None = None,
          rank: int = 0, world_size: int = 1, local_rank: int = 0, progress: bool = True) -> TrainResult:
    """Train ``cfg.train.steps`` optimizer steps (total, counting resumed ones); rank 0 writes ``out_dir``.

    With ``world_size > 1`` the default process group must already be initialised (see :func:`run`).
    """
    from unifygeo_ros.model import build_model
    from unifygeo_ros.model.checkpoint import (load_train_state, load_weights_into, save_checkpoint,
                                               save_train_state)
    from unifygeo_ros.model.losses import JointObjective

    out = Path(out_dir)
    ckpt_dir = out / "ckpt"
    is_main = rank == 0
    device = _resolve_device(cfg, local_rank)
    if device.type == "cpu":
        threads = cfg.train.threads or max(1, (os.cpu_count() or 1) // world_size)
        torch.set_num_threads(threads)
    seed = _mix_seed(cfg.train.seed, rank)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    np.random.seed(seed % (2**32))
    random.seed(seed)

    model = build_model(cfg).to(device)
    if cfg.train.init_from and not resume:
        load_weights_into(model, cfg.train.init_from, skip=cfg.train.init_skip)
    if cfg.train.trainable != "all":  # a stage on a frozen network: no graph through the frozen parts
        for name, p in model.named_parameters():
            p.requires_grad_(is_trainable(name, cfg.train.trainable))
    objective = JointObjective(model, cfg.loss).to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    amp = cfg.train.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler("cuda", enabled=(amp == "fp16" and device.type == "cuda"))

    start_step = 0
    if resume:
        meta = load_weights_into(model, ckpt_dir)
        state = load_train_state(ckpt_dir)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)])
        start_step = int(meta.step)
    torch.manual_seed(_mix_seed(cfg.train.seed, rank, start_step))  # per-rank randomness from here on

    wrapped: torch.nn.Module = objective
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None)

    writer = None
    log_file = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.dump_yaml(out / "config.yaml")
        new_log = not (resume and (out / "log.csv").exists())
        log_file = open(out / "log.csv", "w" if new_log else "a", newline="")
        log = csv.DictWriter(log_file, fieldnames=LOG_FIELDS)
        if new_log:
            log.writeheader()
        if cfg.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(out / "tb"))
            except Exception:  # tensorboard not installed: CSV only
                writer = None

    factory = batches or FACTORIES[cfg.data.source]
    data = factory(cfg, start_step, rank, world_size)
    history: list[dict] = []
    result = TrainResult(step=start_step)
    bar = None
    if is_main and progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.train.steps, initial=start_step, desc="train", dynamic_ncols=True, file=sys.stderr)

    def checkpoint(step: int, metrics: dict) -> None:
        rngs = [_rng_state()]
        if world_size > 1:
            gathered: list = [None] * world_size
            torch.distributed.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if not is_main:
            return
        save_checkpoint(ckpt_dir, model, cfg, step=step, metrics=metrics)
        save_train_state(ckpt_dir, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                    "scaler": scaler.state_dict(), "rng": rngs, "step": step})
        result.checkpoint = str(ckpt_dir)

    step = start_step
    accum = max(1, cfg.train.accum_steps)
    last: dict = {}
    model.train()
    if cfg.train.trainable != "all":  # frozen parts: normalisation statistics stay as trained, too
        model.eval()
        for name, module in model.named_modules():
            if name and is_trainable(name + ".", cfg.train.trainable):
                module.train()
    try:
        while step < cfg.train.steps:
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            n_samples = 0
            for micro in range(accum):
                gen = torch.Generator().manual_seed(_mix_seed(cfg.train.seed, rank, step, micro, 0xA06))
                tb = prepare_batch(next(data), cfg, device, gen)
                n_samples += tb.ground.shape[0]
                sync = contextlib.nullcontext() if (world_size == 1 or micro == accum - 1) else wrapped.no_sync()
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        lo = wrapped(tb.ground, tb.aerial, tb.offset_en_m, tb.heading_deg, tb.tile_m, tb.exclude)
                    if not torch.isfinite(lo.total):
                        raise UnifyGeoError(f"non-finite loss at step {step}: {lo.scalars()}")
                    if lo.total.requires_grad:  # a frozen network with no usable re-rank list has nothing to learn
                        scaler.scale(lo.total / accum).backward()
                for k, v in lo.scalars().items():
                    sums[k] = sums.get(k, 0.0) + v / accum
            scaler.unscale_(optimizer)
            if cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            dt = time.perf_counter() - t0
            last = {"step": step, "lr": scheduler.get_last_lr()[0], **sums, "sec_per_step": dt,
                    "samples_per_s": n_samples * world_size / dt}
            if is_main:
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{sums['total']:.3f}", r1=f"{sums['batch_r1']:.2f}",
                                    err=f"{sums['position_err_m']:.1f}m")
                if step % cfg.train.log_every == 0 or step == cfg.train.steps or step == start_step + 1:
                    row = {k: last[k] for k in LOG_FIELDS}
                    log.writerow(row)
                    log_file.flush()
                    history.append(row)
                    if writer is not None:
                        for k in LOG_FIELDS[1:]:
                            writer.add_scalar(f"train/{k}", row[k], step)
            if step % cfg.train.ckpt_every == 0 and step < cfg.train.steps:
                checkpoint(step, last)
        if step > start_step or not (ckpt_dir / "meta.json").exists():
            checkpoint(step, last)
    finally:
        if bar is not None:
            bar.close()
        if log_file is not None:
            log_file.close()
        if writer is not None:
            writer.close()
    result.step = step
    result.history = history
    result.model = model
    return result


# ================================================================================================= CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML config (deep-merged over the defaults)")
    parser.add_argument("--out", required=True, help="run directory: config.yaml, log.csv, tb/, ckpt/")
    parser.add_argument("--data", choices=sorted(FACTORIES), default=None, help="data source (config: data.source)")
    parser.add_argument("--vigor-root", default=None, help="VIGOR root directory (with --data vigor)")
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
    over: dict = {"data": {}, "train": {}}
    if args.data:
        over["data"]["source"] = args.data
    if args.vigor_root:
        over["data"]["vigor_root"] = args.vigor_root
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
    cfg = config_from_args(args)
    out = Path(args.out)
    if args.resume and not (out / "ckpt" / "meta.json").exists():
        raise UnifyGeoError(f"--resume: no checkpoint in {out / 'ckpt'}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        device = _resolve_device(cfg, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        res = train(cfg, out, resume=args.resume, rank=rank, world_size=world, local_rank=local_rank,
                    progress=not args.no_progress)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank == 0:
        last = res.history[-1] if res.history else {}
        print(f"trained to step {res.step}; checkpoint {res.checkpoint or '-'}; "
              + ", ".join(f"{k}={last[k]:.4g}" for k in ("total", "batch_r1", "position_err_m") if k in last))
        if (out / "log.csv").is_file() and res.history:
            from unifygeo_ros.offline.plots import plot_training_log

            print(f"training curves: {plot_training_log(out / 'log.csv', out / 'training.png')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unifygeo_ros.offline.train", description=__doc__.splitlines()[0])
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UnifyGeoError as exc:
        print(f"unifygeo train: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
