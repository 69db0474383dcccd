"""What the test modules share: the thread budget, the tiny architectures, and the small worlds, checkpoints and
indexes built from them.

* torch runs one intra-op thread in the whole suite (with ``OMP_NUM_THREADS=1``: timings and the CPU budget of
  the suite assume it; the node processes set their own ``cpu_threads``).
* Two tiny architectures, as plain dicts and :class:`Config` factories (importable: ``from conftest import
  tiny_config``):

  - :data:`TINY_MODEL` / :func:`tiny_config`: the network's contract (two metric levels, 32-d descriptors):
    test_model, test_losses, test_height, test_checkpoint, test_train;
  - :data:`MICRO_MODEL` / :func:`micro_config`: the smallest model that localizes against an index
    (one metric level, 16-d descriptors, 64 x 128 panoramas): test_localizer, test_pipeline_worker, test_replay.

* Builders: :func:`random_checkpoint` (a config's randomly initialised model, saved), :func:`random_handle` (the
  same in memory), :func:`index_city` (an aerial index of a VIGOR-layout city folder).
* Read-only session fixtures (never write into them): ``vigor_city`` (a 5 x 5-tile geo.json city, 25 tiles),
  ``micro_checkpoint`` (:data:`MICRO_MODEL`, seed 0), ``other_micro_checkpoint`` (the same architecture, seed 1:
  "an index of another model"), ``micro_index`` (``vigor_city`` indexed with ``micro_checkpoint``, features).
* Function fixture, writable: ``small_city`` (a fresh 3 x 3-tile city under ``tmp_path``; tests add files to it).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unifygeo_ros.config import Config

torch.set_num_threads(1)

TINY_MODEL = {
    "backbone": "convnext_atto", "backbone_kwargs": {"dims": [16, 24, 32, 48], "depths": [1, 1, 1, 1]},
    "ground_hw": [32, 128], "aerial_px": 64, "semantic_dim": 32, "descriptor_dim": 32, "decoder_dim": 16,
    "metric_strides": [8, 4], "orientation_bins": 8, "match_dim": 4, "aggregator_heads": 2,
}

MICRO_MODEL = {
    "backbone_kwargs": {"dims": [8, 16, 24, 32], "depths": [1, 1, 1, 1]}, "ground_hw": [64, 128],
    "aerial_px": 64, "semantic_dim": 16, "descriptor_dim": 16, "decoder_dim": 8, "orientation_bins": 8,
    "match_dim": 2,
}

#: the city of ``vigor_city``: (grid, seed) of :func:`vigor_fixture.write_one_city`
VIGOR_CITY_GRID, VIGOR_CITY_SEED = 5, 2


def tiny_config(**model_over) -> Config:
    """:data:`TINY_MODEL` with ``model_over`` applied."""
    return Config.from_dict({"model": {**TINY_MODEL, **model_over}})


def micro_config(**model_over) -> Config:
    """:data:`MICRO_MODEL` with ``model_over`` applied."""
    return Config.from_dict({"model": {**MICRO_MODEL, **model_over}})


def random_checkpoint(folder: Path, cfg: Config, seed: int = 0, **save_kw) -> Path:
    """Save ``cfg``'s model, initialised with ``torch.manual_seed(seed)``, to ``folder``; returns ``folder``."""
    from unifygeo_ros.model import build_model
    from unifygeo_ros.model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    save_checkpoint(folder, build_model(cfg), cfg, **save_kw)
    return Path(folder)


def random_handle(cfg: Config, seed: int = 0):
    """A :class:`ModelHandle` (CPU) of ``cfg``'s model initialised with ``torch.manual_seed(seed)``."""
    from unifygeo_ros.model import build_model
    from unifygeo_ros.model.handle import from_model

    torch.manual_seed(seed)
    return from_model(build_model(cfg), cfg.to_dict(), device="cpu")


def index_city(handle, city_dir: Path, out: Path, **build_kw) -> Path:
    """Index the tiles of the VIGOR-layout city folder ``city_dir`` with ``handle`` into ``out``; returns ``out``."""
    from unifygeo_ros.index import build as index_build
    from unifygeo_ros.index import tiles

    index_build.build_index(handle, tiles.vigor_tiles(city_dir), out, progress=False, **build_kw)
    return Path(out)


# ------------------------------------------------------------------------------------- read-only, session


@pytest.fixture(scope="session")
def vigor_city(tmp_path_factory):
    """(city folder, :class:`vigor_fixture.FixtureCity`) of a 5 x 5-tile geo.json city (32 px tiles). Read-only."""
    from vigor_fixture import write_one_city

    return write_one_city(tmp_path_factory.mktemp("vigor_city"), grid=VIGOR_CITY_GRID, seed=VIGOR_CITY_SEED)


@pytest.fixture(scope="session")
def micro_checkpoint(tmp_path_factory) -> Path:
    """A :data:`MICRO_MODEL` checkpoint (random weights, seed 0). Read-only."""
    return random_checkpoint(tmp_path_factory.mktemp("micro") / "ckpt", micro_config(), seed=0)


@pytest.fixture(scope="session")
def other_micro_checkpoint(tmp_path_factory) -> Path:
    """The same architecture as ``micro_checkpoint`` with other weights (seed 1). Read-only."""
    return random_checkpoint(tmp_path_factory.mktemp("micro_other") / "ckpt", micro_config(), seed=1)


@pytest.fixture(scope="session")
def micro_index(vigor_city, micro_checkpoint) -> Path:
    """``vigor_city`` indexed with ``micro_checkpoint`` (the index records it). Read-only."""
    from unifygeo_ros.model.handle import load_model

    # beside the checkpoint (MICRO/ckpt, MICRO/ix): the index records it, Localizer.from_paths(index) finds it
    return index_city(load_model(micro_checkpoint, "cpu"), vigor_city[0], micro_checkpoint.parent / "ix")


# -------------------------------------------------------------------------------------- writable, per test


@pytest.fixture
def small_city(tmp_path):
    """(city folder, truth) of a fresh 3 x 3-tile geo.json city "Seattle" under ``tmp_path`` (seed 0)."""
    from vigor_fixture import write_one_city

    return write_one_city(tmp_path, grid=3, seed=0)
