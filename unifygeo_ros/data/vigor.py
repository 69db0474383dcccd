"""VIGOR (Zhu et al., CVPR 2021) reader: the data sets :class:`VigorDataset` (panorama, aerial tile, offset
samples) and :class:`VigorGallery` (every tile), on real VIGOR and ``unifygeo synth`` output alike.

File names and label lines live in :mod:`.vigor_labels`, the folder layout, label-file resolution and per-city
scale in :mod:`.vigor_layout`; their public names are re-exported here (``vigor.parse_pano_name``,
``vigor.city_mpp``, ``vigor.label_file_path``...).

Global tile indexing: the tiles of the given cities, city by city in the order given, each city in the order of
its ``satellite_list.txt``. :class:`VigorDataset` and :class:`VigorGallery` built on the same root and cities
share it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch  # the data sets are torch Datasets
from torch.utils.data import Dataset

from unifygeo_ros import geo
from unifygeo_ros.data.height import load_aerial
from unifygeo_ros.data.vigor_labels import (
    LABEL_COLUMNS,
    PANO_EXTENSIONS,
    SAT_EXTENSIONS,
    LabelRecord,
    en_to_latlon,
    format_label_line,
    format_pano_name,
    format_sat_name,
    label_camera_latlon,
    parse_label_line,
    parse_pano_name,
    parse_sat_name,
    read_label_file,
    read_satellite_list,
    tile_offset_en_m,
)
from unifygeo_ros.data.vigor_layout import (
    CORRECTED_SPLIT_DIR,
    CROSS_TEST_CITIES,
    CROSS_TRAIN_CITIES,
    GEO_JSON_FORMAT,
    LABEL_FILE_STEMS,
    SATELLITE_LIST,
    SPLIT_DIR,
    VIGOR_CITIES,
    Corrected,
    VigorCity,
    VigorTiles,
    city_mpp,
    label_file_path,
    load_cities,
    native_tile_px,
    read_geo_json,
    resolve_cities,
    satellite_list_path,
)
from unifygeo_ros.image.preprocess import (
    aerial_tensor,
    load_image,
    normalize_to_tensor,
    resize_image,
    roll_panorama,
    validate_panorama,
)

__all__ = [
    "CORRECTED_SPLIT_DIR", "CROSS_TEST_CITIES", "CROSS_TRAIN_CITIES", "GEO_JSON_FORMAT", "LABEL_COLUMNS",
    "LABEL_FILE_STEMS", "PANO_EXTENSIONS", "SATELLITE_LIST", "SAT_EXTENSIONS", "SPLIT_DIR", "VIGOR_CITIES",
    "Corrected", "LabelRecord", "VigorCity", "VigorDataset", "VigorGallery", "VigorTiles", "city_mpp",
    "en_to_latlon", "format_label_line", "format_pano_name", "format_sat_name", "label_camera_latlon",
    "label_file_path", "native_tile_px", "parse_label_line", "parse_pano_name", "parse_sat_name",
    "read_geo_json", "read_label_file", "read_satellite_list", "satellite_list_path", "tile_offset_en_m",
]


class VigorDataset(Dataset):
    """VIGOR (panorama, aerial tile, offset) samples.

    Same-area (``split="same"``): ``same_area_balanced_{train,test}.txt`` of every city. Cross-area: training
    reads ``pano_label_balanced.txt`` of ``cross_train_cities``, testing reads every panorama of
    ``cross_test_cities``. An explicit ``cities`` overrides the default city set in both settings.

    An item is a dict:

    * ``ground``: float32 ``3 x H x W`` (``ground_size_hw``), rolled in the unknown-orientation setting;
    * ``aerial``: float32 ``3 x A x A`` (``aerial_px``): the positive tile, or (training with
      ``positives_only=False``) one of the four tiles containing the camera drawn uniformly, as CCVPE does;
    * ``offset_en_m``: float32 ``[east, north]`` of the camera relative to that tile's centre (from the label);
    * ``heading_deg``: float32 compass heading of the returned panorama: 0 (north-aligned) for known
      orientation; the applied rotation for unknown orientation (random when training, fixed per index from
      ``seed`` when testing);
    * ``tile_index`` (the returned tile), ``positive_index``, ``semi_indices`` (int64 ``[3]``): global tile
      indices (see :class:`VigorGallery`); ``pano_index``; ``city``; ``mpp`` (float32, metres per pixel of the
      returned aerial tensor).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        cities: Sequence[str] | None = None,
        split: Literal["same", "cross"] = "same",
        train: bool = True,
        ground_size_hw: tuple[int, int] = (320, 640),
        aerial_px: int = 320,
        orientation: Literal["known", "unknown"] = "known",
        positives_only: bool = True,
        corrected: Corrected = True,
        cross_train_cities: Sequence[str] = CROSS_TRAIN_CITIES,
        cross_test_cities: Sequence[str] = CROSS_TEST_CITIES,
        seed: int = 0,
        original_mpp: bool = False,
        check_files: bool = True,
        aerial_height: bool = False,
    ) -> None:
        if orientation not in ("known", "unknown"):
            raise ValueError(f"orientation must be 'known' or 'unknown', got {orientation!r}")
        if aerial_px <= 0 or min(ground_size_hw) <= 0:
            raise ValueError(f"sizes must be positive: ground {ground_size_hw}, aerial {aerial_px}")
        self.root = Path(root)
        self.split = split
        self.train = bool(train)
        self.ground_size_hw = (int(ground_size_hw[0]), int(ground_size_hw[1]))
        self.aerial_px = int(aerial_px)
        self.aerial_height = bool(aerial_height)
        self.orientation = orientation
        self.positives_only = bool(positives_only)
        self.seed = int(seed)
        self.cities: tuple[str, ...] = resolve_cities(split, train, cities, cross_train_cities, cross_test_cities)
        city_objs = load_cities(self.root, self.cities, original_mpp, check_files, corrected)
        self.tiles = VigorTiles.build(city_objs)
        kind = ("same_train" if self.train else "same_test") if split == "same" else "all"
        self._index_labels(city_objs, kind, corrected, check_files)
        #: metres per pixel of the aerial tensors, per city
        self.city_mpp_aerial = np.array([c.mpp * c.tile_px / self.aerial_px for c in city_objs], dtype=np.float64)
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, int] | None = None

    def _index_labels(self, city_objs: list[VigorCity], kind: str, corrected: Corrected, check_files: bool):
        """Read the label files of ``kind`` of every city and index them: records, panorama cities, paths and
        lat/lon, global tile indices, and the camera offsets from each of the four tiles."""
        records: list[LabelRecord] = []
        pano_city: list[int] = []
        for ci, c in enumerate(city_objs):
            recs = c.labels(kind, corrected, check_files)
            records += recs
            pano_city += [ci] * len(recs)
        self.records: list[LabelRecord] = records
        #: (N,) index into ``self.cities`` of each panorama
        self.pano_city = np.asarray(pano_city, dtype=np.int64)
        self.pano_paths: list[Path] = [city_objs[ci].pano_dir / r.pano for r, ci in zip(records, pano_city)]
        #: (N, 2) lat/lon from the panorama file names
        self.pano_latlon = np.array([parse_pano_name(r.pano)[1:] for r in records], dtype=np.float64).reshape(-1, 2)
        #: (N, 4) global tile indices, positive first
        self.sat_indices = np.array([[self.tiles.global_index(ci, s) for s in r.sats]
                                     for r, ci in zip(records, pano_city)], dtype=np.int64).reshape(-1, 4)
        #: native metres per pixel of each city (the labels' scale)
        self.city_mpp_native = np.array([c.mpp for c in city_objs], dtype=np.float64)
        #: (N, 4, 2) camera east/north relative to each of the four tiles (metres, from the labels)
        mpp = self.city_mpp_native[self.pano_city][:, None]
        d_row = np.array([r.d_row for r in records], dtype=np.float64).reshape(-1, 4)
        d_col = np.array([r.d_col for r in records], dtype=np.float64).reshape(-1, 4)
        east, north = geo.vigor_offset_to_en(d_row, d_col, mpp)
        self.offsets_en_m = np.stack([east, north], axis=-1)

    # ---------------------------------------------------------------------------------------- indexing
    def __len__(self) -> int:
        return len(self.records)

    @property
    def positive_indices(self) -> np.ndarray:
        """(N,) global index of each panorama's positive tile."""
        return self.sat_indices[:, 0]

    @property
    def semi_positive_indices(self) -> np.ndarray:
        """(N, 3) global indices of each panorama's semi-positive tiles."""
        return self.sat_indices[:, 1:]

    @property
    def tile_latlon(self) -> np.ndarray:
        """(M, 2) centres of the gallery tiles."""
        return self.tiles.tile_latlon

    def gallery(self) -> "VigorGallery":
        """The gallery of this dataset's cities, with the same tile indexing and aerial size."""
        return VigorGallery.from_tiles(self.tiles, self.aerial_px, self.aerial_height)

    def camera_en_relative_to(self, pano_index: int, tile_index: int) -> tuple[float, float]:
        """Labelled camera position ``(east_m, north_m)`` relative to any gallery tile's centre (for metric
        errors after retrieval picked ``tile_index``)."""
        pos = int(self.sat_indices[pano_index, 0])
        e0, n0 = self.offsets_en_m[pano_index, 0]
        if tile_index == pos:
            return float(e0), float(n0)
        de, dn = tile_offset_en_m(self.tiles.tile_latlon[tile_index], self.tiles.tile_latlon[pos])
        return float(e0 + de), float(n0 + dn)

    def camera_latlon(self, pano_index: int) -> tuple[float, float]:
        """Labelled camera lat/lon: positive tile centre plus the label's offset."""
        e, n = self.offsets_en_m[pano_index, 0]
        return en_to_latlon(self.tiles.tile_latlon[self.sat_indices[pano_index, 0]], float(e), float(n))

    # ------------------------------------------------------------------------------------ randomness
    def _train_rng(self) -> np.random.Generator:
        """A generator per process / DataLoader worker, seeded from ``seed`` and torch's per-worker seed, so
        workers differ and runs with the same torch seed repeat."""
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), -1 if info is None else info.id)
        if self._rng is None or self._rng_owner != owner:
            self._rng = np.random.default_rng([self.seed, torch.initial_seed() % (2**63), owner[1] + 1])
            self._rng_owner = owner
        return self._rng

    def _test_heading(self, index: int) -> float:
        return float(np.random.default_rng([self.seed, 0x0E1E7, index]).uniform(-180.0, 180.0))

    # ------------------------------------------------------------------------------------------- items
    def load_ground(self, index: int, delta_heading_deg: float = 0.0) -> tuple[torch.Tensor, float]:
        """Ground tensor of panorama ``index`` rotated by about ``delta_heading_deg`` (whole columns of the
        resized panorama); returns ``(tensor, applied heading change)``."""
        img = validate_panorama(load_image(self.pano_paths[index]))
        img = resize_image(img, self.ground_size_hw)
        applied = 0.0
        if delta_heading_deg != 0.0:
            img, applied = roll_panorama(img, delta_heading_deg)
        return normalize_to_tensor(img), applied

    def load_aerial(self, tile_index: int) -> torch.Tensor:
        """Aerial tensor of gallery tile ``tile_index`` (4 channels with its surface height when
        ``aerial_height``, read from ``satellite_height/``)."""
        return aerial_tensor(load_aerial(self.tiles.tile_paths[tile_index], self.aerial_height), self.aerial_px)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} panoramas")
        rng = self._train_rng() if self.train else None
        slot = 0
        if self.train and not self.positives_only:
            slot = int(rng.integers(0, 4))
        delta = 0.0
        if self.orientation == "unknown":
            delta = float(rng.uniform(-180.0, 180.0)) if self.train else self._test_heading(index)
        ground, heading = self.load_ground(index, delta)
        tile = int(self.sat_indices[index, slot])
        ci = int(self.pano_city[index])
        return {
            "ground": ground,
            "aerial": self.load_aerial(tile),
            "offset_en_m": self.offsets_en_m[index, slot].astype(np.float32),
            "heading_deg": np.float32(heading),
            "tile_index": tile,
            "positive_index": int(self.sat_indices[index, 0]),
            "semi_indices": self.sat_indices[index, 1:].copy(),
            "pano_index": int(index),
            "city": self.cities[ci],
            "mpp": np.float32(self.city_mpp_aerial[ci]),
        }


class VigorGallery(Dataset):
    """Every satellite tile of the given cities, indexed like :class:`VigorDataset` on the same cities.

    Item: ``{"aerial": float32 C x A x A (C = 4 with aerial_height: RGB + surface height), "tile_index": int,
    "center_latlon": float64[2], "city": str, "mpp": float32 (metres per pixel of the tensor)}``.
    """

    def __init__(self, root: str | os.PathLike, cities: Sequence[str], aerial_px: int = 320,
                 corrected: Corrected = True, original_mpp: bool = False, check_files: bool = True,
                 aerial_height: bool = False) -> None:
        if isinstance(cities, str):
            cities = (cities,)
        if not cities or len(set(cities)) != len(cities):
            raise ValueError(f"cities must be non-empty and distinct, got {cities!r}")
        tiles = VigorTiles.build(load_cities(Path(root), list(cities), original_mpp, check_files, corrected))
        self._init(tiles, aerial_px, aerial_height)

    @classmethod
    def from_tiles(cls, tiles: VigorTiles, aerial_px: int, aerial_height: bool = False) -> "VigorGallery":
        obj = cls.__new__(cls)
        obj._init(tiles, aerial_px, aerial_height)
        return obj

    def _init(self, tiles: VigorTiles, aerial_px: int, aerial_height: bool = False) -> None:
        if aerial_px <= 0:
            raise ValueError(f"aerial_px must be positive, got {aerial_px}")
        self.tiles = tiles
        self.aerial_px = int(aerial_px)
        self.aerial_height = bool(aerial_height)
        self.cities: tuple[str, ...] = tuple(c.name for c in tiles.cities)
        self.city_mpp_aerial = np.array([c.mpp * c.tile_px / self.aerial_px for c in tiles.cities])

    @property
    def tile_latlon(self) -> np.ndarray:
        return self.tiles.tile_latlon

    @property
    def tile_paths(self) -> list[Path]:
        return self.tiles.tile_paths

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"tile index {index} out of range for {len(self)} tiles")
        ci = int(self.tiles.tile_city[index])
        return {
            "aerial": aerial_tensor(load_aerial(self.tiles.tile_paths[index], self.aerial_height), self.aerial_px),
            "tile_index": int(index),
            "center_latlon": self.tiles.tile_latlon[index].copy(),
            "city": self.cities[ci],
            "mpp": np.float32(self.city_mpp_aerial[ci]),
        }
