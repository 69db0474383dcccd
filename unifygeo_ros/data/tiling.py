"""The VIGOR tiling of a synthetic city, shared by ``unifygeo synth`` (:mod:`.synth`) and the training
stream (:mod:`.stream`): tiles of ``tile_m`` on a half-tile stride (:func:`tile_grid`), a camera's positive tile
(whose central quarter holds it) and its three semi-positives (:func:`positive_and_semi`), and camera
positions on the driving lanes (:func:`sample_camera_positions`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unifygeo_ros.data.city import City, as_size
from unifygeo_ros.errors import UnifyGeoError




# ---------------------------------------------------------------------------------------------- VIGOR tiling
@dataclass(frozen=True)
class TileGrid:
    """Tile centres ``(i * stride_m, j * stride_m)`` for ``i in 1..n_east-1``, ``j in 1..n_north-1`` (ENU metres
    from the city's south-west corner); every tile lies inside the city. Cameras belong in
    :meth:`camera_bounds`, where each has a positive tile and three semi-positive neighbours."""

    tile_m: float
    n_east: int  # number of strides across the city (tiles per row = n_east - 1)
    n_north: int

    @property
    def stride_m(self) -> float:
        return self.tile_m / 2.0

    @property
    def shape(self) -> tuple[int, int]:
        """(tiles along north, tiles along east)."""
        return self.n_north - 1, self.n_east - 1

    def centres(self) -> np.ndarray:
        """(n_tiles, 2) east, north of every tile centre, row-major from the south-west (j outer, i inner)."""
        i = np.arange(1, self.n_east)
        j = np.arange(1, self.n_north)
        jj, ii = np.meshgrid(j, i, indexing="ij")
        return np.stack([ii.ravel() * self.stride_m, jj.ravel() * self.stride_m], -1)

    def index(self, i: int, j: int) -> int:
        """Row-major tile index of grid position (i east, j north), both from 1."""
        return (j - 1) * (self.n_east - 1) + (i - 1)

    def camera_bounds(self) -> tuple[float, float, float, float]:
        """(east_min, east_max, north_min, north_max) of the region cameras are placed in."""
        s = self.stride_m
        return s, (self.n_east - 1) * s, s, (self.n_north - 1) * s


def tile_grid(size_m, tile_m: float) -> TileGrid:
    """The VIGOR tiling of a city of ``size_m`` (number or (east, north)) with tiles of ``tile_m``."""
    w, h = as_size(size_m)
    stride = tile_m / 2.0
    n_e, n_n = int(math.floor(w / stride + 1e-9)), int(math.floor(h / stride + 1e-9))
    if n_e < 3 or n_n < 3:
        raise UnifyGeoError(f"a city of {w:g} x {h:g} m is too small for {tile_m:g} m tiles "
                            f"(needs at least {1.5 * tile_m:g} m a side)")
    return TileGrid(float(tile_m), n_e, n_n)


def positive_and_semi(grid: TileGrid, east_m: float, north_m: float) -> list[tuple[int, int]]:
    """Grid positions (i, j) of the positive tile (the one whose central quarter holds the camera) and of the
    three semi-positives (the neighbours that also contain it), positive first."""
    s = grid.stride_m
    i = int(np.clip(np.floor(east_m / s + 0.5), 1, grid.n_east - 1))
    j = int(np.clip(np.floor(north_m / s + 0.5), 1, grid.n_north - 1))
    dx, dy = east_m - i * s, north_m - j * s
    si = 1 if (dx > 0 or (dx == 0 and i == 1)) else -1
    sj = 1 if (dy > 0 or (dy == 0 and j == 1)) else -1
    if not 1 <= i + si <= grid.n_east - 1:
        si = -si
    if not 1 <= j + sj <= grid.n_north - 1:
        sj = -sj
    return [(i, j), (i + si, j), (i, j + sj), (i + si, j + sj)]


def sample_camera_positions(city: City, grid: TileGrid, n: int, rng: np.random.Generator,
                            balanced: bool = True) -> np.ndarray:
    """``n`` camera positions (east, north) on the driving lanes, inside the grid's camera bounds.

    ``balanced``: spread evenly over the central quarters of the tiles that have any road (like VIGOR's
    balanced sampling), else uniformly over all free road cells.
    """
    free = city.free_space()
    e0, e1, n0, n1 = grid.camera_bounds()
    cell = city.cell_m
    r0, r1 = int(math.ceil(n0 / cell)), int(math.floor(n1 / cell))
    c0, c1 = int(math.ceil(e0 / cell)), int(math.floor(e1 / cell))
    sub = free[r0:r1, c0:c1]
    rr, cc = np.nonzero(sub)
    if len(rr) == 0:
        raise UnifyGeoError("the city has no road inside the tiled area; try another seed or a larger size")
    east = (cc + c0 + 0.5) * cell
    north = (rr + r0 + 0.5) * cell
    pick = _balanced_pick(grid, east, north, n, rng) if balanced else rng.integers(0, len(east), n)
    # jitter inside the cell so positions are not on the cell grid
    jit = rng.uniform(-0.5, 0.5, (len(pick), 2)) * cell
    return np.stack([east[pick], north[pick]], -1) + jit


def _balanced_pick(grid: TileGrid, east: np.ndarray, north: np.ndarray, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` of the candidate cells, as evenly as possible over the tiles' central quarters that
    hold any (every quarter gets ``n // m``, a random ``n % m`` of them one more), in random order."""
    s = grid.stride_m
    qi = np.clip(np.floor(east / s + 0.5).astype(np.int64), 1, grid.n_east - 1)
    qj = np.clip(np.floor(north / s + 0.5).astype(np.int64), 1, grid.n_north - 1)
    q = (qj - 1) * (grid.n_east - 1) + (qi - 1)
    order = np.argsort(q, kind="stable")
    qs = q[order]
    uq, start, count = np.unique(qs, return_index=True, return_counts=True)
    m = len(uq)
    per = np.full(m, n // m)
    per[rng.permutation(m)[: n % m]] += 1
    pick = np.concatenate([order[start[k] + rng.integers(0, count[k], per[k])] for k in range(m)])
    return pick[rng.permutation(len(pick))]
