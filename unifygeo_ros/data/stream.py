"""Training data rendered on the fly: a brand-new city every ``samples_per_city`` samples.

Why: a fixed set of synthetic cities is memorised (training loss near zero, poor on unseen cities), while
ever-new cities generalise (docs/SYNTHETIC_WORLD.md; the project's shared PAPER.md, "Measured here").
Rendering is cheap, so data is unlimited.

Seeds: the stream's ``k``-th city (counting from ``start_city``) has seed ``base_seed + k``. With a
``DataLoader`` of ``n`` workers, worker ``w`` renders cities ``k = w, w + n, w + 2n, ...``, so no two workers
ever render the same city; iterating again restarts from the same seeds (deterministic). Keep the seed ranges
of training and validation streams disjoint (e.g. ``base_seed`` 0 for training, 10**9 for validation).

Positives follow VIGOR (:func:`unifygeo_ros.data.tiling.positive_and_semi`): tiles lie on a half-tile-stride
grid and the positive tile is the one whose central quarter holds the camera, so ``offset_en_m`` is within
+-tile_m/4 on each axis. With ``semi_fraction`` > 0 a sample's tile is instead, with that probability, one of
the three semi-positives (the overlapping neighbours that hold the camera off-centre, up to +-tile_m/2): pairs
for the metric head only (``train.trainable: metric``), which otherwise never sees a camera outside a tile's
central quarter and learns that the outer ring never holds one - while at run time the fix is read from
whichever candidate the re-ranker puts first, often such a neighbour. Cameras stand on the driving lanes of
roads, never in buildings, cars or trees.

Limited fields of view (``fov_*`` keys, :mod:`unifygeo_ros.data.fov_views`): with ``fov_probability`` > 0 a sample's
panorama is, with that probability, replaced by what a drawn rig of pinhole cameras gives the node (the cameras' views
cut from it, stitched back by the node's stitcher, the unseen part zero); ``"fov_deg"`` in the item is the sector the
rig covers (360 for a whole panorama). Those draws come from a generator of their own, so the rest of the stream is
the same, draw for draw, with or without them. ``fov_curriculum_steps`` counts training steps of
``samples_per_step`` samples; the stream knows the step of a sample from its position (the ``k``-th city's ``j``-th
sample is sample ``(start_city + k) * samples_per_city + j``). ``fov_render_scale`` > 1 renders a rig's panorama
that many times larger, then resizes the stitched image to ``pano_size`` (as the node stitches camera images at
``panorama_width`` and the model resizes).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch  # a torch IterableDataset; unifygeo_ros.data imports this module lazily, the rest stays torch-free
from torch.utils.data import IterableDataset, get_worker_info

from unifygeo_ros.data.aerial import render_aerial, render_aerial_height
from unifygeo_ros.data.city_schema import STYLES
from unifygeo_ros.data.fov_views import FovViews, stitched_view
from unifygeo_ros.data.lighting import AerialLighting, GroundLighting
from unifygeo_ros.data.panorama import render_panorama
from unifygeo_ros.data.tiling import positive_and_semi, sample_camera_positions, tile_grid
from unifygeo_ros.data.world import generate_city
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.image.preprocess import resize_image, with_height


class CityStream(IterableDataset):
    """Endless (or ``num_cities``-long) stream of ``(panorama, positive aerial tile)`` pairs.

    Each item is a dict::

        {"ground": uint8 (H, W, 3) panorama, "aerial": uint8 (px, px, 3 or 4) positive tile (north-up),
         "offset_en_m": float32[2] camera east/north from the tile centre (within +-tile_m/4 on a positive),
         "tile_center_en_m": float64[2] the tile centre in the city's ENU frame (for checks and plots),
         "heading_deg": float32 compass heading of the panorama's centre column,
         "tile_m": float32, "city_seed": int, "positive": bool (False: a semi-positive tile)}

    Args:
        base_seed: seed of the first city.
        samples_per_city: samples drawn from a city before the next one is generated.
        city_size_m: side of each city (metres).
        tile_m: aerial tile side (metres); VIGOR's is about 70 m.
        aerial_px: tile side in pixels.
        pano_size: (width, height) of the panoramas (width = 2 * height).
        style: "centre", "suburb", "mixed", or "any" (each city draws one of the three).
        random_heading: uniform random heading (the model must learn orientation) instead of north-aligned.
        cell_m: world raster cell; ``None`` picks 0.5 m when the tile has >= 0.5 m pixels, else 0.25 m.
        num_cities: stop after this many cities (over all workers); ``None`` = endless.
        start_city: index of the first city (resume a stream, or give each epoch fresh cities).
        ground_lightings: number of street-level lighting variants per city (another sun each).
        camera_height_m: panorama camera height.
        aerial_height: the tile carries a 4th channel, the surface height above ground packed by
            :func:`unifygeo_ros.image.preprocess.pack_height` (for models with ``model.aerial_height``).
        semi_fraction: probability (0..1) that a sample's tile is a random semi-positive instead of the
            positive (``"positive"`` in the item says which); 0 = VIGOR positives only (the stream is then
            the same, draw for draw, as without the option).
        fov_probability, fov_deg_range, fov_camera_deg_range, fov_aspects, fov_curriculum_steps, fov_oversample:
            the limited-field-of-view augmentation (:class:`~unifygeo_ros.data.fov_views.FovViews`; probability 0 =
            off, the stream unchanged).
        fov_render_scale: a rig's panorama is rendered this many times larger, stitched, then resized.
        samples_per_step: samples per training step (``fov_curriculum_steps`` is in steps).
    """

    def __init__(self, base_seed: int = 0, samples_per_city: int = 64, city_size_m: float = 280.0,
                 tile_m: float = 70.0, aerial_px: int = 128, pano_size: tuple[int, int] = (256, 128),
                 style: str = "any", random_heading: bool = True, cell_m: float | None = None,
                 num_cities: int | None = None, start_city: int = 0, ground_lightings: int = 2,
                 camera_height_m: float = 2.0, aerial_height: bool = False, semi_fraction: float = 0.0,
                 fov_probability: float = 0.0, fov_deg_range=(70.0, 360.0), fov_camera_deg_range=(60.0, 120.0),
                 fov_aspects=(4.0 / 3.0, 16.0 / 9.0), fov_curriculum_steps: int = 0, fov_oversample: float = 2.0,
                 fov_render_scale: int = 1, samples_per_step: int = 64):
        super().__init__()
        self.fov = FovViews.from_stream_keys(fov_probability, fov_deg_range, fov_camera_deg_range, fov_aspects,
                                             fov_curriculum_steps, fov_oversample)
        if int(fov_render_scale) < 1 or int(samples_per_step) < 1:
            raise ValueError(f"fov_render_scale and samples_per_step must be >= 1, got {fov_render_scale!r} and "
                             f"{samples_per_step!r}")
        self.fov_render_scale = int(fov_render_scale)
        self.samples_per_step = int(samples_per_step)
        if not 0.0 <= float(semi_fraction) <= 1.0:
            raise ValueError(f"semi_fraction must be in [0, 1], got {semi_fraction!r}")
        if style not in (*STYLES, "any"):
            raise ValueError(f"style must be one of {STYLES + ('any',)}, got {style!r}")
        if samples_per_city < 1:
            raise ValueError("samples_per_city must be >= 1")
        tile_grid(city_size_m, tile_m)  # raises if the city is too small for the tiles
        self.base_seed = int(base_seed)
        self.samples_per_city = int(samples_per_city)
        self.city_size_m = float(city_size_m)
        self.tile_m = float(tile_m)
        self.aerial_px = int(aerial_px)
        self.pano_size = (int(pano_size[0]), int(pano_size[1]))
        self.style = style
        self.random_heading = bool(random_heading)
        if cell_m is None:
            cell_m = 0.5 if self.tile_m / self.aerial_px >= 0.5 else 0.25
        self.cell_m = float(cell_m)
        self.num_cities = num_cities
        self.start_city = int(start_city)
        self.ground_lightings = max(1, int(ground_lightings))
        self.camera_height_m = float(camera_height_m)
        self.aerial_height = bool(aerial_height)
        self.semi_fraction = float(semi_fraction)

    # ------------------------------------------------------------------------------------------------
    def city_seed(self, k: int) -> int:
        """Seed of the stream's ``k``-th city."""
        return self.base_seed + self.start_city + k

    def _city_indices(self) -> Iterator[int]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        k = wid
        while self.num_cities is None or k < self.num_cities:
            yield k
            k += nw

    def city_samples(self, seed: int, first_sample: int = 0) -> Iterator[dict]:
        """The ``samples_per_city`` samples of the city with this seed (deterministic); ``first_sample``: the
        stream position of the first (for the field-of-view curriculum)."""
        rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x57EA])
        fov_rng = np.random.default_rng([seed & 0xFFFFFFFF, 0xF0F])
        style = self.style if self.style != "any" else STYLES[int(rng.integers(len(STYLES)))]
        city = generate_city(seed, self.city_size_m, style, self.cell_m)
        grid = tile_grid(self.city_size_m, self.tile_m)
        a_light = AerialLighting.for_city(city)
        g_lights = [GroundLighting.for_city(city, v) for v in range(self.ground_lightings)]
        try:
            pos = sample_camera_positions(city, grid, self.samples_per_city, rng, balanced=False)
        except UnifyGeoError:  # no road inside the tiled area (never seen at 280 m; possible in tiny cities)
            return
        for k in range(self.samples_per_city):
            e, n = float(pos[k, 0]), float(pos[k, 1])
            tiles = positive_and_semi(grid, e, n)
            slot = 0
            if self.semi_fraction > 0 and rng.random() < self.semi_fraction:
                slot = 1 + int(rng.integers(3))
            i, j = tiles[slot]
            ce, cn = i * grid.stride_m, j * grid.stride_m
            heading = float(rng.uniform(0.0, 360.0)) if self.random_heading else 0.0
            lt = g_lights[int(rng.integers(len(g_lights)))]
            pano, fov_deg = self._ground_view(city, (e, n), heading, lt, fov_rng, first_sample + k)
            tile = render_aerial(city, (ce, cn), self.tile_m, self.aerial_px, a_light)
            if self.aerial_height:
                tile = with_height(tile, render_aerial_height(city, (ce, cn), self.tile_m, self.aerial_px))
            yield {
                "ground": pano,
                "aerial": tile,
                "offset_en_m": np.array([e - ce, n - cn], np.float32),
                "tile_center_en_m": np.array([ce, cn], np.float64),
                "heading_deg": np.float32(heading),
                "tile_m": np.float32(self.tile_m),
                "city_seed": int(seed),
                "positive": slot == 0,
                "fov_deg": np.float32(fov_deg),
            }

    def _ground_view(self, city, position_en_m, heading_deg: float, lighting, fov_rng: np.random.Generator,
                     sample_index: int) -> tuple[np.ndarray, float]:
        """The sample's panorama, whole or as a drawn rig of pinhole cameras gives it; and the sector seen, deg."""
        w, h = self.pano_size
        scale = self.fov_render_scale
        rig = self.fov.draw(fov_rng, sample_index // self.samples_per_step, w * scale, not self.random_heading)
        if rig is None:
            return render_panorama(city, position_en_m, heading_deg, w, h, self.camera_height_m, lighting), 360.0
        pano = render_panorama(city, position_en_m, heading_deg, w * scale, h * scale, self.camera_height_m, lighting)
        return resize_image(stitched_view(pano, rig)[0], (h, w)), rig.fov_deg

    def __iter__(self) -> Iterator[dict]:
        for k in self._city_indices():
            yield from self.city_samples(self.city_seed(k), (self.start_city + k) * self.samples_per_city)

    def __len__(self):  # only defined for finite streams (a city without any road yields nothing)
        if self.num_cities is None:
            raise TypeError("an endless CityStream has no length")
        return self.num_cities * self.samples_per_city


def to_tensors(batch: dict) -> dict:
    """Convenience for a collated batch: images uint8 (B, H, W, C) -> float32 (B, C, H, W) in [0, 1]."""
    out = dict(batch)
    for key in ("ground", "aerial"):
        x = batch[key]
        if not torch.is_tensor(x):
            x = torch.as_tensor(np.asarray(x))
        out[key] = x.permute(0, 3, 1, 2).float().div_(255.0)
    return out


__all__ = ["CityStream", "to_tensors"]
