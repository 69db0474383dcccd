"""Colours and textures of a synthetic city: the base palettes, each city's own draw of them
(:class:`Materials`), and the grain and patches added to every surface seen from above (:func:`apply_texture`).

Roofs, facades and cars are drawn independently: a roof colour says nothing of its facade. All colours RGB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


# ---------------------------------------------------------------------------------------------- base palettes
FLAT_ROOFS = np.array([(150, 150, 146), (118, 116, 112), (92, 93, 96), (66, 66, 70), (186, 182, 172),
                       (212, 209, 200), (160, 148, 130), (112, 124, 118), (134, 108, 94), (100, 108, 122)])
PITCHED_ROOFS = np.array([(164, 86, 64), (128, 70, 54), (96, 76, 66), (82, 84, 90), (58, 60, 66),
                          (142, 120, 98), (112, 58, 48), (88, 100, 112), (70, 90, 72)])
FACADES = np.array([(168, 82, 60), (150, 98, 72), (206, 190, 164), (226, 221, 206), (160, 160, 156),
                    (108, 130, 152), (202, 166, 100), (120, 94, 74), (184, 200, 212), (212, 200, 138),
                    (178, 196, 168), (212, 174, 168), (92, 96, 104)])
HOUSE_FACADES = np.array([(232, 228, 214), (212, 200, 138), (184, 200, 212), (178, 196, 168), (212, 174, 168),
                          (206, 190, 164), (168, 82, 60), (150, 150, 146), (120, 94, 74)])
WINDOWS = np.array([(38, 46, 58), (64, 78, 96), (110, 130, 150), (30, 34, 36), (80, 92, 84), (140, 150, 160)])
CAR_PAINTS = np.array([(235, 235, 235), (30, 30, 32), (170, 172, 176), (110, 112, 116), (170, 30, 30),
                       (30, 60, 140), (20, 30, 70), (40, 90, 60), (220, 180, 30), (200, 200, 190), (120, 20, 30)])

# texture amplitude (grey levels) per surface class (index = SURFACE_*): fine grain, large patches
_FINE = np.array([6, 5, 4, 6, 12, 7, 5, 5, 4, 26, 3, 6, 12, 0, 5, 20], np.float32)
_PATCH = np.array([14, 7, 3, 9, 18, 8, 8, 5, 2, 10, 4, 8, 12, 0, 5, 8], np.float32)


# ---------------------------------------------------------------------------------------------- per city
@dataclass
class Materials:
    """One city's colours. The ``*_roofs`` and ``*_pal`` fields are ``(colours (k, 3), weights (k,))`` palettes
    to draw from with :func:`pick_colour`; the others are single float RGB colours (``outside`` and
    ``marking_y`` int tuples)."""

    flat_roofs: tuple[np.ndarray, np.ndarray]
    pitched_roofs: tuple[np.ndarray, np.ndarray]
    facade_pal: tuple[np.ndarray, np.ndarray]
    house_pal: tuple[np.ndarray, np.ndarray]
    window_pal: tuple[np.ndarray, np.ndarray]
    asphalt: np.ndarray
    parking_asphalt: np.ndarray
    sidewalk: np.ndarray
    grass: np.ndarray
    garden: np.ndarray
    tree_green: np.ndarray
    path: np.ndarray
    plaza: np.ndarray
    water: np.ndarray
    yard: np.ndarray
    outside: tuple[int, int, int]  # the ground outside the city and between things
    marking_y: tuple[int, int, int]  # the centre-line colour: yellow in most cities, white in some

    @classmethod
    def draw(cls, r: np.random.Generator) -> "Materials":
        """A city's materials: a weighted subset of each base palette with a colour shift, and jittered
        ground colours."""

        def subset(pal, k):
            idx = r.choice(len(pal), size=min(k, len(pal)), replace=False)
            w = r.dirichlet(np.ones(len(idx)) * 1.5)
            shift = r.normal(0, 8, 3)
            return np.clip(pal[idx] + shift, 0, 255), w

        flat_roofs = subset(FLAT_ROOFS, int(r.integers(4, 8)))
        pitched_roofs = subset(PITCHED_ROOFS, int(r.integers(3, 6)))
        facade_pal = subset(FACADES, int(r.integers(5, 10)))
        house_pal = subset(HOUSE_FACADES, int(r.integers(4, 8)))
        window_pal = subset(WINDOWS, int(r.integers(2, 5)))
        g = r.uniform(0.85, 1.1)
        asphalt = np.clip(np.array([78, 80, 84]) * r.uniform(0.8, 1.25) + r.normal(0, 3, 3), 30, 150)
        parking_asphalt = np.clip(asphalt * r.uniform(0.9, 1.2), 30, 170)
        sidewalk = np.clip(np.array([168, 164, 156]) * r.uniform(0.85, 1.1) + r.normal(0, 5, 3), 90, 230)
        grass = np.clip(np.array([92, 132, 62]) * g + r.normal(0, 7, 3), 30, 200)
        garden = np.clip(grass * r.uniform(0.9, 1.1) + np.array([6, 4, -2]), 30, 210)
        tree_green = np.clip(np.array([58, 92, 46]) * r.uniform(0.85, 1.15) + r.normal(0, 6, 3), 20, 160)
        path = np.clip(np.array([186, 170, 138]) + r.normal(0, 8, 3), 90, 240)
        plaza = np.clip(np.array([196, 186, 168]) + r.normal(0, 10, 3), 100, 240)
        water = np.clip(np.array([52, 98, 120]) + r.normal(0, 8, 3), 20, 200)
        yard = np.clip(np.array([120, 118, 112]) + r.normal(0, 8, 3), 60, 200)
        outside = tuple(int(v) for v in np.clip(np.array([140, 132, 104]) + r.normal(0, 8, 3), 60, 220))
        marking_y = (226, 186, 40) if r.random() < 0.7 else (235, 235, 230)
        return cls(flat_roofs, pitched_roofs, facade_pal, house_pal, window_pal, asphalt, parking_asphalt, sidewalk,
                   grass, garden, tree_green, path, plaza, water, yard, outside, marking_y)


def pick_colour(pal_w: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One colour of a weighted palette ``(colours, weights)``."""
    pal, w = pal_w
    return pal[rng.choice(len(pal), p=w)]


# ---------------------------------------------------------------------------------------------- texture
def value_noise(rng: np.random.Generator, shape, scale_cells: float) -> np.ndarray:
    """Smooth noise in [-1, 1] with features about ``scale_cells`` wide (float32)."""
    gh = max(2, int(math.ceil(shape[0] / scale_cells)) + 2)
    gw = max(2, int(math.ceil(shape[1] / scale_cells)) + 2)
    g = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    big = cv2.resize(g, (int(gw * scale_cells), int(gh * scale_cells)), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[: shape[0], : shape[1]], -1, 1)


def apply_texture(top: np.ndarray, surface: np.ndarray, rng: np.random.Generator, cell_m: float) -> None:
    """Add grain (a few cells wide) and ~12 m patches to the top colours ``top`` (rows, cols, 3; uint8, in place),
    with amplitudes per surface class of ``surface`` (rows, cols), drawn from ``rng``; ``cell_m``: the cell side."""
    rows, cols = surface.shape
    patches = value_noise(rng, (rows, cols), 12.0 / cell_m)  # ~12 m patches
    # fine grain: white noise blurred over a few cells, in chunks of rows
    chunk = 512
    fine_a = _FINE[surface]
    patch_a = _PATCH[surface]
    for r0 in range(0, rows, chunk):
        r1 = min(rows, r0 + chunk)
        fine = rng.standard_normal((r1 - r0, cols), dtype=np.float32)
        fine = cv2.GaussianBlur(fine, (0, 0), 0.8) * np.float32(2.2)  # grain a few cells wide, not per cell
        delta = fine * fine_a[r0:r1] + patches[r0:r1] * patch_a[r0:r1]
        t = top[r0:r1].astype(np.int16) + delta[..., None].astype(np.int16)
        top[r0:r1] = np.clip(t, 0, 255).astype(np.uint8)
