"""The workbench a city is generated on: :class:`CityBuilder` holds the layers being painted, the random
streams, the style's parameters, the city's materials and density field, and the lists of buildings, trees
and cars added so far. :func:`unifygeo_ros.data.world.generate_city` creates one and hands it to each step.

Everything is determined by the seed: one numpy ``SeedSequence`` spawns a ``Generator`` per concern (street
network, blocks, trees, cars, texture, palette, density, markings); no global RNG.
"""
from __future__ import annotations

import numpy as np

from unifygeo_ros.data.city_schema import CARS_AERIAL_ONLY, CARS_BOTH, CARS_GROUND_ONLY, SURFACE_GROUND
from unifygeo_ros.data.materials import CAR_PAINTS, Materials, pick_colour, value_noise

#: per city style: block sizes along the two grid directions (m), street wobble amplitude (m), share of grid
#: street pieces dropped, numbers of diagonal avenues and of curved streets, shares of avenues and lanes,
#: carriageway and sidewalk widths (m), probability of street trees, share of kerb places with a parked car,
#: moving cars per 100 m, building density range (None: a downtown with density falling off), probability of
#: zebra crossings at a crossing
STYLE_PARAMS = {
    "centre": dict(block_a=(55, 95), block_b=(70, 165), wobble=(0.0, 1.5), drop=0.03, diagonals=(0, 2),
                   arcs=(0, 0), avenue_p=0.3, street_w=(11, 15), avenue_w=(18, 24), sidewalk=(3.0, 5.0),
                   lane_p=0.0, street_trees=0.45, parked=0.55, moving=2.0, density=(0.65, 1.0), crosswalk=0.9),
    "suburb": dict(block_a=(72, 120), block_b=(95, 220), wobble=(2.0, 14.0), drop=0.16, diagonals=(0, 1),
                   arcs=(1, 3), avenue_p=0.12, street_w=(8, 11), avenue_w=(14, 18), sidewalk=(1.6, 2.6),
                   lane_p=0.35, street_trees=0.85, parked=0.28, moving=0.8, density=(0.0, 0.25), crosswalk=0.3),
    "mixed": dict(block_a=(60, 112), block_b=(75, 190), wobble=(0.5, 8.0), drop=0.09, diagonals=(0, 2),
                  arcs=(0, 2), avenue_p=0.22, street_w=(9, 14), avenue_w=(16, 22), sidewalk=(2.0, 4.0),
                  lane_p=0.12, street_trees=0.65, parked=0.45, moving=1.4, density=None, crosswalk=0.65),
}


class CityBuilder:
    """Mutable state while a city is generated (layers ``height``, ``surface``, ``top``, ``oid`` with the
    conventions of :class:`~unifygeo_ros.data.city.City`)."""

    def __init__(self, seed: int, size: tuple[float, float], style: str, cell_m: float):
        self.seed, self.style, self.cell = seed, style, cell_m
        ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EED])
        kids = ss.spawn(8)
        self.rng_net, self.rng_blocks, self.rng_trees, self.rng_cars, self.rng_tex, self.rng_pal, \
            self.rng_dens, self.rng_misc = (np.random.default_rng(k) for k in kids)
        self.prm = STYLE_PARAMS[style]
        self.rows, self.cols = int(round(size[1] / cell_m)), int(round(size[0] / cell_m))
        self.size = (self.cols * cell_m, self.rows * cell_m)
        shape = (self.rows, self.cols)
        self.height = np.zeros(shape, np.float32)
        self.surface = np.full(shape, SURFACE_GROUND, np.uint8)
        self.top = np.zeros(shape + (3,), np.uint8)
        self.oid = np.zeros(shape, np.int32)
        self.facades, self.windows, self.floors, self.wstyles = [(0, 0, 0)], [(0, 0, 0)], [3.5], [0]
        self.trees: list[tuple] = []
        self.cars: list[tuple] = []
        self.materials = Materials.draw(self.rng_pal)
        self._density_field()

    # -------------------------------------------------------------------------------- per-city look
    def pick(self, pal_w) -> np.ndarray:
        """A colour of the palette ``pal_w`` (a field of :class:`Materials`), drawn from the block stream."""
        return pick_colour(pal_w, self.rng_blocks)

    def _density_field(self):
        r = self.rng_dens
        shape = (max(2, self.rows // 40), max(2, self.cols // 40))  # 10 m resolution at 0.25 m cells
        yy, xx = np.meshgrid((np.arange(shape[0]) + 0.5) / shape[0] * self.size[1],
                             (np.arange(shape[1]) + 0.5) / shape[1] * self.size[0], indexing="ij")
        noise = value_noise(r, shape, max(2.0, 120.0 / (self.size[0] / shape[1])))
        dens = self.prm["density"]
        if dens is None:  # mixed: a downtown somewhere around, density falls off with distance
            c = r.uniform(-0.3, 1.3, 2) * np.array(self.size)
            sigma = r.uniform(150, 600)
            d2 = (xx - c[0]) ** 2 + (yy - c[1]) ** 2
            p = np.exp(-d2 / (2 * sigma**2)) * r.uniform(0.7, 1.1) + 0.15 * noise
        else:
            p = dens[0] + (dens[1] - dens[0]) * (0.5 + 0.5 * noise)
        self.dens_grid = np.clip(p, 0, 1).astype(np.float32)

    def density(self, e, n) -> float:
        """Building density in [0, 1] at (east, north) metres (1: downtown, 0: suburb)."""
        g = self.dens_grid
        i = min(g.shape[0] - 1, max(0, int(n / self.size[1] * g.shape[0])))
        j = min(g.shape[1] - 1, max(0, int(e / self.size[0] * g.shape[1])))
        return float(g[i, j])

    # -------------------------------------------------------------------------------- objects
    def new_building(self, facade, window, floor, wstyle) -> int:
        """Register a building's facade and window colours, storey height and window style; returns its id."""
        self.facades.append(tuple(int(v) for v in np.clip(facade, 0, 255)))
        self.windows.append(tuple(int(v) for v in np.clip(window, 0, 255)))
        self.floors.append(float(floor))
        self.wstyles.append(int(wstyle))
        return len(self.facades) - 1

    def add_tree(self, e, n, radius, top, base=None, rng=None):
        """A tree at (east, north) with a canopy of ``radius`` from ``base`` (default: a share of ``top``) to
        ``top`` metres; its base and colour come from the tree stream unless ``rng`` is given."""
        rng = rng or self.rng_trees
        base = top * rng.uniform(0.28, 0.42) if base is None else base
        rgb = np.clip(self.materials.tree_green * rng.uniform(0.75, 1.25) + rng.normal(0, 6, 3), 15, 200)
        self.trees.append((e, n, radius, top, base, tuple(int(v) for v in rgb)))

    def add_car(self, e, n, angle, cset, rng, length=None):
        """A car centred at (east, north) heading ``angle`` (rad from east), in car set ``cset``."""
        length = length if length is not None else rng.uniform(4.1, 5.0)
        width = rng.uniform(1.75, 1.95)
        hgt = rng.uniform(1.4, 1.75)
        rgb = CAR_PAINTS[rng.integers(len(CAR_PAINTS))] + rng.normal(0, 6, 3)
        self.cars.append((e, n, length, width, hgt, angle, tuple(int(v) for v in np.clip(rgb, 0, 255)), cset))

    def parked_set(self, rng) -> int:
        """The car set of a parked car: most stay in both views, some left or arrived between them."""
        r = rng.random()
        return CARS_BOTH if r < 0.7 else (CARS_AERIAL_ONLY if r < 0.85 else CARS_GROUND_ONLY)
