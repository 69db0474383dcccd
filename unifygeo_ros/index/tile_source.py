"""What a tile source is: a list of :class:`TileSpec` (id, centre in lat/lon and in a local ENU frame) plus a way
to read each tile as a north-up ``uint8`` image (see :mod:`unifygeo_ros.index.tiles` for the sources)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.index.map_checks import TileCounts


@dataclass(frozen=True)
class TileSpec:
    """One aerial tile: its id, its centre (WGS84 and local ENU of the source's origin)."""

    tile_id: str
    lat_deg: float
    lon_deg: float
    east_m: float
    north_m: float


@dataclass
class TileSource:
    """A list of tiles of one map, all ``tile_m`` metres a side, readable as ``tile_px`` square RGB images."""

    kind: str  # "vigor" | "orthophoto"
    path: str  # the city folder or orthophoto file, absolute (an index records only its name + a relative hint)
    origin: geo.LocalENU
    tile_m: float
    tile_px: int
    tiles: list[TileSpec]
    reader: Callable[[int], np.ndarray] = field(repr=False)
    params: dict = field(default_factory=dict)  # what, besides path/kind, defines the tiling
    channels: int = 3  # 3 = RGB, 4 = RGB + packed surface height (preprocess.with_height)
    native_gsd_m: float | None = None  # metres per pixel of the source imagery (before resampling to tile_px)
    counts: TileCounts | None = None  # an orthophoto's grid: tiles kept and left out, and why
    origin_note: str = ""  # how the ENU origin was chosen, for the build's output

    @property
    def gsd_m(self) -> float:
        return self.tile_m / self.tile_px

    def __len__(self) -> int:
        return len(self.tiles)

    def read(self, i: int) -> np.ndarray:
        """Tile ``i`` as a north-up ``(tile_px, tile_px, channels)`` uint8 array (RGB [+ packed height])."""
        return self.reader(i)

    def describe(self) -> dict:
        """What identifies the tiling (shards must agree on it); an index records it through
        :func:`unifygeo_ros.index.portable.source_record`, which replaces the paths."""
        return {"kind": self.kind, "path": self.path, "tile_m": self.tile_m, "tile_px": self.tile_px,
                "gsd_m": self.gsd_m, "count": len(self.tiles), "channels": self.channels, **self.params}


__all__ = ["TileSource", "TileSpec"]
