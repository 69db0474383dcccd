"""An index in memory: :class:`IndexData` (the arrays a build produces and a merge combines) and
:class:`AerialIndex` (a loaded index folder: metadata, tile table, descriptors, searcher, aerial arrays).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import IndexFormatError
from unifygeo_ros.index import search as search_mod
from unifygeo_ros.index.portable import checkpoint_hint


@dataclass
class IndexData:
    """The arrays of an index in memory (what a build produces and a merge combines)."""

    tile_ids: list[str]
    latlon_deg: np.ndarray  # (N, 2) float64
    en_m: np.ndarray  # (N, 2) float64, local ENU of the index origin
    ordinal: np.ndarray  # (N,) int64, position in the unsharded tiling
    descriptors: np.ndarray  # (N, D) float32
    aerial: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, ...) array

    def __len__(self) -> int:
        return len(self.tile_ids)

    def take(self, rows: np.ndarray) -> "IndexData":
        """The tiles ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return IndexData([self.tile_ids[i] for i in rows], self.latlon_deg[rows], self.en_m[rows],
                         self.ordinal[rows], self.descriptors[rows], {k: v[rows] for k, v in self.aerial.items()})

    @staticmethod
    def concatenate(parts: list["IndexData"]) -> "IndexData":
        """The tiles of ``parts`` one after the other (aerial fields: those of the first part)."""
        names = sorted(parts[0].aerial)
        return IndexData(
            [t for p in parts for t in p.tile_ids],
            np.concatenate([p.latlon_deg for p in parts]).reshape(-1, 2),
            np.concatenate([p.en_m for p in parts]).reshape(-1, 2),
            np.concatenate([p.ordinal for p in parts]).astype(np.int64),
            np.concatenate([np.asarray(p.descriptors, np.float32) for p in parts]),
            {k: np.concatenate([np.asarray(p.aerial[k]) for p in parts]) for k in names},
        )


@dataclass
class AerialIndex:
    """A loaded index: metadata, tile table, descriptors, searcher, and per-tile aerial data for the metric step."""

    path: Path
    meta: dict
    tile_ids: list[str]
    latlon_deg: np.ndarray  # (N, 2)
    en_m: np.ndarray  # (N, 2)
    ordinal: np.ndarray  # (N,)
    descriptors: np.ndarray  # (N, D) float32
    aerial: dict[str, np.ndarray]  # name -> (N, ...) (memory-mapped)
    searcher: search_mod.Searcher
    _kdtree: object = field(default=None, repr=False)

    # ---- facts --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tile_ids)

    @property
    def descriptor_dim(self) -> int:
        return int(self.meta["descriptor_dim"])

    @property
    def model_identity(self) -> str:
        return str(self.meta["model"].get("identity"))

    @property
    def tile_m(self) -> float:
        return float(self.meta["tile_m"])

    @property
    def aerial_mode(self) -> str:
        return str(self.meta["aerial"]["mode"])

    @property
    def origin(self) -> geo.LocalENU:
        o = self.meta["origin"]
        return geo.LocalENU(float(o["lat_deg"]), float(o["lon_deg"]))

    def aerial_rows(self, rows) -> dict[str, np.ndarray]:
        """The aerial arrays (features or tile images) of tiles ``rows``, read into memory."""
        rows = np.asarray(rows, dtype=np.int64)
        return {k: np.asarray(v[rows]) for k, v in self.aerial.items()}

    # ---- checks -------------------------------------------------------------------------------------------
    def check_model(self, identity: str | None, descriptor_dim: int | None) -> None:
        """Raise :class:`IndexFormatError` unless the index was built by this model (identity and dimension)."""
        if descriptor_dim is not None and int(descriptor_dim) != self.descriptor_dim:
            raise IndexFormatError(
                f"index {self.path} holds {self.descriptor_dim}-d descriptors but the model makes "
                f"{descriptor_dim}-d ones: rebuild the index with this model (`unifygeo index build`)")
        if identity is not None and str(identity) != self.model_identity:
            raise IndexFormatError(
                f"index {self.path} was built with model {self.model_identity[:16]} but the model loaded is "
                f"{str(identity)[:16]}: rebuild the index with this checkpoint, or pass the checkpoint the index "
                f"was built with ({checkpoint_hint(self.meta)})")

    # ---- spatial filter -----------------------------------------------------------------------------------
    def tiles_within(self, east_m: float, north_m: float, radius_m: float) -> np.ndarray:
        """Indices (sorted) of the tiles whose centre lies within ``radius_m`` of ``(east_m, north_m)``."""
        if self._kdtree is None:
            # scipy.spatial takes ~0.3 s to import and only the prior-restricted search needs it
            from scipy.spatial import cKDTree

            self._kdtree = cKDTree(self.en_m)
        idx = self._kdtree.query_ball_point([float(east_m), float(north_m)], r=float(radius_m))
        return np.sort(np.asarray(idx, dtype=np.int64))


__all__ = ["AerialIndex", "IndexData"]
