"""Training batches for ``unifygeo train``: the data sources (synthetic cities on the fly, VIGOR, toy pairs) and
the conversion of a collated sample dict into model tensors with the view-consistent augmentations.

A source is a :data:`BatchFactory`: ``(cfg, start_step, rank, world_size)`` -> an endless iterator of collated
batches, one per micro-step, that depends only on the seed, the rank and the step (so ``--resume`` continues the
same stream).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from unifygeo_ros.config import VIGOR_SPLITS, Config, ConfigError
from unifygeo_ros.data.vigor import VigorDataset
from unifygeo_ros.data.vigor_layout import CROSS_TEST_CITIES, CROSS_TRAIN_CITIES, check_city_folders, resolve_cities
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.image.preprocess import normalize_uint8_tensor
from unifygeo_ros.model.losses import exclusion_mask

#: (cfg, start_step, rank, world_size) -> an endless iterator of collated batches (one per micro-step)
BatchFactory = Callable[[Config, int, int, int], Iterator[dict]]


def mix_seed(*parts: int) -> int:
    """One 32-bit seed from several integers (numpy's SeedSequence: distinct tuples give unrelated seeds)."""
    return int(np.random.SeedSequence([int(p) % (2**32) for p in parts]).generate_state(1)[0])


def to_model_input(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
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


def _batch_tile_m(batch: dict, cfg: Config, b: int) -> torch.Tensor:
    """(B,) tile side in metres: the batch's ``tile_m``, VIGOR's metres per pixel x delivered size, or the config's."""
    if "tile_m" in batch:
        return torch.as_tensor(batch["tile_m"], dtype=torch.float32).reshape(b)
    if "mpp" in batch:  # VIGOR: metres per pixel of the aerial tensor as delivered
        return torch.as_tensor(batch["mpp"], dtype=torch.float32).reshape(b) * torch.as_tensor(batch["aerial"]).shape[-1]
    return torch.full((b,), float(cfg.data.tile_m))


def _roll_panoramas(ground: torch.Tensor, heading_deg: torch.Tensor, gen: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each panorama rolled by a random k columns; its heading changes by ``-k * 360 / W`` (geo.py's convention)."""
    b, w = ground.shape[0], ground.shape[-1]
    k = torch.randint(0, w, (b,), generator=gen)
    ground = torch.stack([torch.roll(ground[i], int(k[i]), dims=-1) for i in range(b)])
    return ground, heading_deg - k.float() * 360.0 / w


def _rot90_world(aerial: torch.Tensor, offset_en_m: torch.Tensor, heading_deg: torch.Tensor, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each tile rotated q x 90 deg counter-clockwise (q random), its offset (e, n) -> (-n, e) and its heading
    -90 deg per quarter turn (the panorama itself does not change). ``offset_en_m``/``heading_deg`` in place."""
    b = aerial.shape[0]
    q = torch.randint(0, 4, (b,), generator=gen)
    aerial = torch.stack([torch.rot90(aerial[i], int(q[i]), dims=(-2, -1)) for i in range(b)])
    for _ in range(3):
        turn = q > 0
        offset_en_m[turn] = torch.stack([-offset_en_m[turn, 1], offset_en_m[turn, 0]], dim=-1)
        heading_deg[turn] -= 90.0
        q = q - turn.long()
    return aerial, offset_en_m, heading_deg


def prepare_batch(batch: dict, cfg: Config, device: torch.device, gen: torch.Generator) -> TrainBatch:
    """Collated sample dict -> model tensors, with the view-consistent augmentations of ``cfg.data``.

    * panorama roll by k columns: heading changes by ``-k * 360 / W`` (geo.py's convention);
    * rot90 of the world (``rot90_aerial``): tile rotated q x 90 deg counter-clockwise, offset (e, n) -> (-n, e)
      per quarter turn, heading - 90 per quarter turn (the panorama itself does not change).
    """
    m = cfg.model
    ground = to_model_input(torch.as_tensor(batch["ground"]), tuple(m.ground_hw))
    aerial = to_model_input(torch.as_tensor(batch["aerial"]), (m.aerial_px, m.aerial_px))
    b = ground.shape[0]
    offset = torch.as_tensor(batch["offset_en_m"], dtype=torch.float32).reshape(b, 2).clone()
    heading = torch.as_tensor(batch.get("heading_deg", torch.zeros(b)), dtype=torch.float32).reshape(b).clone()
    tile_m = _batch_tile_m(batch, cfg, b)
    exclude = exclusion_mask(batch, tile_m)
    if cfg.data.roll_ground and cfg.data.orientation == "unknown":
        ground, heading = _roll_panoramas(ground, heading, gen)
    if cfg.data.rot90_aerial:
        aerial, offset, heading = _rot90_world(aerial, offset, heading, gen)
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
        """The pairs ``idx`` as a collated sample dict."""
        return {"ground": self.ground[idx], "aerial": self.aerial[idx], "offset_en_m": self.offset[idx],
                "heading_deg": self.heading[idx], "tile_m": self.tile_m[idx], "tile_index": idx}


def toy_batches(cfg: Config, start_step: int, rank: int, world: int) -> Iterator[dict]:
    """Endless batches drawn from :class:`ToyPairs`; micro-step ``i``'s batch depends only on (seed, rank, i)."""
    pairs = ToyPairs(cfg.data.toy_samples, cfg.model.ground_hw, cfg.model.aerial_px, cfg.data.tile_m, cfg.train.seed,
                     cfg.model.aerial_height)
    bs = min(cfg.data.batch_size, pairs.n)
    i = start_step * cfg.train.accum_steps
    while True:
        g = torch.Generator().manual_seed(mix_seed(cfg.train.seed, rank, i, 0xB47C))
        yield pairs.batch(torch.randperm(pairs.n, generator=g)[:bs])
        i += 1


def synth_batches(cfg: Config, start_step: int, rank: int, world: int) -> Iterator[dict]:
    """Batches from :class:`~unifygeo_ros.data.stream.CityStream`: new cities forever, never reused.

    Rank ``r`` draws cities from its own seed range (``train.seed`` and ``r`` mixed, below the 10**9 that
    validation streams use); on resume the stream skips the cities the finished steps consumed. Panoramas are
    rendered 2:1 at the model's width and resized to ``model.ground_hw`` like any panorama at inference.
    """
    try:  # the whole synthetic world (generator, renderers): only --data synth needs it
        from unifygeo_ros.data.stream import CityStream
    except ImportError as exc:
        raise UnifyGeoError(f"synthetic data stream not available ({exc}); use --data toy or vigor") from None

    kwargs = dict(tile_m=cfg.data.tile_m, aerial_px=cfg.model.aerial_px,
                  pano_size=(cfg.model.ground_hw[1], cfg.model.ground_hw[1] // 2),
                  random_heading=cfg.data.orientation == "unknown", aerial_height=cfg.model.aerial_height)
    kwargs["samples_per_step"] = cfg.data.batch_size * max(1, cfg.train.accum_steps)  # the fov_* curriculum's unit
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


def vigor_training_set(cfg: Config) -> VigorDataset:
    """The VIGOR training set of ``cfg.data``: its split (``vigor_split``, mapped exactly), cities
    (``vigor_cities``, default the split's standard ones), labels (``vigor_corrected``: true, false or auto) and
    scale (``vigor_original_mpp``)."""
    d = cfg.data
    if not d.vigor_root:
        raise ConfigError("data.vigor_root (or --vigor-root) is required for --data vigor")
    split = VIGOR_SPLITS[d.vigor_split]
    cities = resolve_cities(split, True, d.vigor_cities or None, CROSS_TRAIN_CITIES, CROSS_TEST_CITIES)
    check_city_folders(d.vigor_root, cities, "--vigor-cities A,B or --set 'data.vigor_cities=[A, B]'")
    return VigorDataset(d.vigor_root, cities, split=split, train=True, ground_size_hw=tuple(cfg.model.ground_hw),
                        aerial_px=cfg.model.aerial_px, orientation=d.orientation, corrected=d.vigor_corrected,
                        seed=cfg.train.seed, original_mpp=d.vigor_original_mpp,
                        aerial_height=cfg.model.aerial_height)


def vigor_batches(cfg: Config, start_step: int, rank: int, world: int) -> Iterator[dict]:
    """Shuffled VIGOR training batches (rank-disjoint shards of each epoch's permutation)."""
    ds = vigor_training_set(cfg)
    per_epoch = len(ds) // (cfg.data.batch_size * world)
    if per_epoch == 0:
        raise ConfigError(f"VIGOR training set of {len(ds)} panoramas is smaller than one global batch")
    micro = start_step * cfg.train.accum_steps
    epoch, skip = divmod(micro, per_epoch)
    while True:
        perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(mix_seed(cfg.train.seed, epoch)))
        shard = perm[rank::world][: per_epoch * cfg.data.batch_size][skip * cfg.data.batch_size:]
        sampler = shard.tolist()
        loader = torch.utils.data.DataLoader(ds, batch_size=cfg.data.batch_size, sampler=sampler,
                                             num_workers=cfg.data.num_workers, drop_last=True)
        yield from loader
        epoch, skip = epoch + 1, 0


FACTORIES: dict[str, BatchFactory] = {"synth": synth_batches, "vigor": vigor_batches, "toy": toy_batches}

__all__ = ["FACTORIES", "BatchFactory", "ToyPairs", "TrainBatch", "mix_seed", "prepare_batch", "synth_batches",
           "to_model_input", "toy_batches", "vigor_batches", "vigor_training_set"]
