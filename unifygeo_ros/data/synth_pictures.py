"""Pictures of a synthetic city for people: a tile with the camera marked (:func:`mark_camera`), the whole city
with its tile grid and cameras (:func:`city_overview`), the ``preview.png`` ``unifygeo synth`` writes
(:func:`preview_image`) and the pictures of docs/SYNTHETIC_WORLD.md (:func:`write_doc_images`).
"""
from __future__ import annotations

import math
import os

import cv2
import numpy as np

from unifygeo_ros.data.aerial import aerial_orthophoto, render_aerial
from unifygeo_ros.data.city import City
from unifygeo_ros.data.lighting import AerialLighting
from unifygeo_ros.data.panorama import render_panorama
from unifygeo_ros.data.synth_files import write_png
from unifygeo_ros.data.tiling import TileGrid, positive_and_semi, sample_camera_positions, tile_grid
from unifygeo_ros.data.world import generate_city


def mark_camera(tile: np.ndarray, offset_en_m: tuple[float, float], tile_m: float, heading_deg: float = 0.0,
                colour=(255, 0, 255)) -> np.ndarray:
    """A copy of a north-up tile with the camera drawn at ``offset_en_m`` from the tile centre, with an arrow
    along ``heading_deg`` (the panorama's centre column)."""
    img = np.ascontiguousarray(tile.copy())
    px = img.shape[0]
    c = px / 2 + offset_en_m[0] / tile_m * px - 0.5
    r = px / 2 - offset_en_m[1] / tile_m * px - 0.5
    rad = max(4, px // 45)
    h = math.radians(heading_deg)
    tip = (c + 3 * rad * math.sin(h), r - 3 * rad * math.cos(h))
    th = max(1, px // 200)
    cv2.arrowedLine(img, (int(round(c)), int(round(r))), (int(round(tip[0])), int(round(tip[1]))), colour, th + 1,
                    cv2.LINE_AA, tipLength=0.35)
    cv2.circle(img, (int(round(c)), int(round(r))), rad, colour, th + 1, cv2.LINE_AA)
    return img


def city_overview(city: City, grid: TileGrid | None, positions: np.ndarray | None,
                  lighting: AerialLighting | None = None, max_px: int = 1000,
                  highlight_tile: tuple[float, float] | None = None,
                  highlight_pos: tuple[float, float] | None = None) -> np.ndarray:
    """The whole city from above (north-up), with the tile grid (central-quarter boundaries), the camera
    positions and optionally one tile and camera highlighted."""
    lighting = lighting or AerialLighting.for_city(city)
    level = max(0, int(math.ceil(math.log2(max(city.shape) / max_px))))
    ortho = aerial_orthophoto(city, lighting, "aerial", level)
    img = np.ascontiguousarray(ortho[::-1])
    cell = city.cell_m * city.shape[0] / ortho.shape[0]
    hgt = img.shape[0]

    def to_px(e, n):
        return int(round(e / cell - 0.5)), int(round(hgt - n / cell - 0.5))

    if grid is not None:
        s = grid.stride_m
        e0, e1, n0, n1 = grid.camera_bounds()
        over = img.copy()
        for i in range(1, grid.n_east):
            for x in (i * s - s / 2, i * s + s / 2):
                cv2.line(over, to_px(x, n0 - s / 2), to_px(x, n1 + s / 2), (255, 255, 255), 1)
        for j in range(1, grid.n_north):
            for y in (j * s - s / 2, j * s + s / 2):
                cv2.line(over, to_px(e0 - s / 2, y), to_px(e1 + s / 2, y), (255, 255, 255), 1)
        img = cv2.addWeighted(img, 0.65, over, 0.35, 0)
        cv2.rectangle(img, to_px(e0, n1), to_px(e1, n0), (255, 255, 0), 1)
    if positions is not None:
        for e, n in positions:
            cv2.circle(img, to_px(e, n), 2, (255, 40, 40), -1)
    if highlight_tile is not None:
        ce, cn = highlight_tile
        t = grid.tile_m if grid is not None else 70.0
        cv2.rectangle(img, to_px(ce - t / 2, cn + t / 2), to_px(ce + t / 2, cn - t / 2), (255, 0, 255), 2)
    if highlight_pos is not None:
        cv2.circle(img, to_px(*highlight_pos), 5, (255, 0, 255), 2)
    return img


def preview_image(city: City, grid: TileGrid, positions: np.ndarray, pos: tuple[float, float],
                  pano: np.ndarray | None, tile_m: float, tile_px: int,
                  lighting: AerialLighting | None = None) -> np.ndarray:
    """Overview on the left; on the right the positive tile of ``pos`` (camera marked) above its panorama."""
    (i, j) = positive_and_semi(grid, pos[0], pos[1])[0]
    ce, cn = i * grid.stride_m, j * grid.stride_m
    ov = city_overview(city, grid, positions, lighting, 900, (ce, cn), pos)
    tile = render_aerial(city, (ce, cn), tile_m, tile_px, lighting)
    if tile_px < 320:  # enlarged for viewing only
        tile = cv2.resize(tile, (320, 320), interpolation=cv2.INTER_NEAREST)
    tile = mark_camera(tile, (pos[0] - ce, pos[1] - cn), tile_m, 0.0)
    if pano is None:
        pano = render_panorama(city, pos, 0.0, 512, 256)
    right_w = max(tile.shape[1], min(pano.shape[1], 640))
    pano_r = cv2.resize(pano, (right_w, right_w // 2), interpolation=cv2.INTER_AREA)
    right = np.full((tile.shape[0] + 8 + pano_r.shape[0], right_w, 3), 255, np.uint8)
    right[: tile.shape[0], : tile.shape[1]] = tile
    right[tile.shape[0] + 8:] = pano_r
    h = max(ov.shape[0], right.shape[0])
    out = np.full((h, ov.shape[1] + 8 + right_w, 3), 255, np.uint8)
    out[: ov.shape[0], : ov.shape[1]] = ov
    out[: right.shape[0], ov.shape[1] + 8:] = right
    return out


def write_doc_images(out_dir: str = "docs/images", seed: int = 9, style: str = "mixed", size_m: float = 420.0,
                     tile_m: float = 70.0, tile_px: int = 320, pano_width: int = 1024) -> list[str]:
    """The pictures of docs/SYNTHETIC_WORLD.md: a tile with the camera marked, its panorama, a city overview.

    ``python -c "from unifygeo_ros.data.synth_pictures import write_doc_images; write_doc_images()"``
    """
    os.makedirs(out_dir, exist_ok=True)
    city = generate_city(seed, size_m, style)
    grid = tile_grid(size_m, tile_m)
    rng = np.random.default_rng([seed, 0xD0C])
    pos_all = sample_camera_positions(city, grid, 60, rng)
    # a camera near the middle, with buildings around: the one whose panorama has the least sky
    mid = np.array(city.size_m) / 2
    near = np.argsort(np.hypot(*(pos_all - mid).T))[:12]
    best, best_sky = None, 2.0
    for k in near:
        p = render_panorama(city, tuple(pos_all[k]), 0.0, 256, 128)
        sky = float((p[:64].astype(int).sum(-1) > 480).mean())
        if sky < best_sky:
            best, best_sky = k, sky
    pos = tuple(float(v) for v in pos_all[best])
    pano = render_panorama(city, pos, 0.0, pano_width, pano_width // 2)
    (i, j) = positive_and_semi(grid, *pos)[0]
    ce, cn = i * grid.stride_m, j * grid.stride_m
    tile = mark_camera(render_aerial(city, (ce, cn), tile_m, tile_px), (pos[0] - ce, pos[1] - cn), tile_m)
    ov = city_overview(city, grid, pos_all, None, 900, (ce, cn), pos)
    paths = []
    for name, img in (("synth_aerial_tile.png", tile), ("synth_panorama.png", pano), ("synth_city_overview.png", ov)):
        p = os.path.join(out_dir, name)
        write_png(p, img)
        paths.append(p)
    return paths

