"""The colours of the panorama pixels that hit something: tops (roofs, ground, canopies) in their top colour
under the ground-level sun and its shadow map; facades with their own colour, windows by storey and light by
facade orientation; the sides of roof boxes, canopies, trunks, cars and hedges.
"""
from __future__ import annotations

import math

import numpy as np

from unifygeo_ros.data.city import City
from unifygeo_ros.data.city_schema import (
    SURFACE_BUILDING,
    SURFACE_CAR,
    SURFACE_HEDGE,
    SURFACE_ROOF_DETAIL,
    SURFACE_TREE,
    WINDOW_HOUSE,
    WINDOW_NONE,
    WINDOW_RIBBON,
)
from unifygeo_ros.data.lighting import GroundLighting
from unifygeo_ros.data.panorama_rays import RayHits

#: surface markers of the panorama renderer (beyond the SURFACE_* classes): a pixel that sees the sky after
#: all (below a canopy), a tree trunk seen from the side
SKY_MARK, TRUNK_MARK = 255, 254
TRUNK_RGB = (0.30, 0.24, 0.18)
TYRE_RGB = (0.07, 0.07, 0.08)
CAR_GLASS_RGB = (0.13, 0.15, 0.19)


def shade_hits(city: City, v: dict, lt: GroundLighting, hits: RayHits, top_px: np.ndarray, surf: np.ndarray,
               oid: np.ndarray, se: np.ndarray, cn_: np.ndarray) -> np.ndarray:
    """Colours (float32 RGB in [0, 1]) of the hit pixels: ``top_px``, ``surf``, ``oid`` what the hit cells
    hold, ``(se, cn_)`` the sine and cosine of each ray's azimuth, ``v`` the renderer's view cache."""
    top = np.where(hits.ins[:, None], top_px, np.asarray(city.outside_rgb, np.uint8)[None]).astype(np.float32)
    top *= np.float32(1 / 255.0)
    col = top * _top_light(v, lt, hits)[:, None].astype(np.float32)

    # side hits whose step from the previous sample is small are sloped roofs / canopies: top colour
    side = ~hits.on_top & (surf < TRUNK_MARK)
    wall = side & ((hits.Hk - hits.Hprev) > 0.3 + 0.9 * (hits.dk - hits.dprev))
    sloped = side & ~wall
    if sloped.any():
        col[sloped] = top[sloped] * np.float32(0.85)
    fac = wall & (surf == SURFACE_BUILDING) & (oid > 0)
    if fac.any():
        col[fac] = _facade_colours(city, v, lt, hits, fac, oid[fac], se, cn_)
    _paint_object_sides(col, top, hits, surf, side, wall)
    return col


def _top_light(v: dict, lt: GroundLighting, hits: RayHits) -> np.ndarray:
    """Light on the tops: ambient plus direct sun, less in cast shadow."""
    amb = lt.ambient
    shadow = np.where(hits.ins, v["shadow"][hits.cidx], 0).astype(np.float32) / 255.0
    return amb + (1 - amb) * (1.0 - lt.shadow_strength / max(1 - amb, 1e-3) * shadow).clip(0, 1)


def _facade_colours(city: City, v: dict, lt: GroundLighting, hits: RayHits, fac: np.ndarray, b: np.ndarray,
                    se: np.ndarray, cn_: np.ndarray) -> np.ndarray:
    """float32 RGB of the facade pixels ``fac`` of buildings ``b``: windows or wall, darker cornice, lit by
    how much the facade faces the sun."""
    base = city.facade_rgb[b].astype(np.float32) / 255.0
    win = city.window_rgb[b].astype(np.float32) / 255.0
    z = hits.z_hit[fac]
    ne, nn = _facade_normals(v, hits.cidx[fac], se[fac], cn_[fac])
    t = hits.pe[fac] * (-nn) + hits.pn[fac] * ne  # along the facade
    is_win = _windows(city.window_style[b], z, city.floor_m[b], t, hits.Hk[fac])
    c = np.where(is_win[:, None], win, base)
    cornice = (hits.Hk[fac] - z) < 0.8
    c = np.where(cornice[:, None], c * 0.82, c)
    saz, sel = math.radians(lt.sun_azimuth_deg), math.radians(lt.sun_elevation_deg)
    sun_h = np.array([math.sin(saz), math.cos(saz)]) * math.cos(sel)
    amb = lt.ambient
    lam = np.clip(ne * sun_h[0] + nn * sun_h[1], 0.0, 1.0)
    light = amb + (1.0 - amb) * 1.25 * lam * (1.0 - 0.6 * lt.shadow_strength * (z < 3.0))
    return c * light[:, None].astype(np.float32)


def _facade_normals(v: dict, cidx: np.ndarray, se: np.ndarray, cn_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward facade normals (east, north) from the normal map; facing the camera where it is undefined."""
    nq = v["normal"][cidx].astype(np.float32) * (2 * np.pi / 256)
    nok = v["normal_ok"][cidx]
    ne, nn = np.cos(nq), np.sin(nq)
    ne = np.where(nok, ne, -se)
    nn = np.where(nok, nn, -cn_)
    return ne, nn


def _windows(style: np.ndarray, z: np.ndarray, fl: np.ndarray, t: np.ndarray, roof_z: np.ndarray) -> np.ndarray:
    """bool: whether facade points at height ``z`` and position ``t`` along the facade are a window, for each
    building's window style and storey height ``fl`` (shop windows on the ground floor of punched facades; no
    window in the parapet or on blank walls)."""
    fz = z / fl
    fr = fz - np.floor(fz)
    ft = (t / 2.7) - np.floor(t / 2.7)
    punched = (fr > 0.32) & (fr < 0.78) & (ft > 0.22) & (ft < 0.78)
    ribbon = (fr > 0.12) & (fr < 0.9) & ((t / 1.5 - np.floor(t / 1.5)) > 0.08)
    ft_h = (t / 3.6) - np.floor(t / 3.6)
    house = (fr > 0.38) & (fr < 0.72) & (ft_h > 0.35) & (ft_h < 0.65) & (z > 0.6)
    shop = (z < fl * 0.85) & (z > 0.2) & (ft > 0.08) & (ft < 0.92)
    is_win = np.where(style == WINDOW_RIBBON, ribbon,
                      np.where(style == WINDOW_HOUSE, house, np.where(fz < 1.0, shop, punched)))
    is_win &= ((roof_z - z) > 0.8) & (style != WINDOW_NONE)  # parapet; blank walls
    return is_win


def _paint_object_sides(col: np.ndarray, top: np.ndarray, hits: RayHits, surf: np.ndarray, side: np.ndarray,
                        wall: np.ndarray):
    """In place: roof boxes, canopies, trunks, cars and hedges seen from the side."""
    # roof details (HVAC boxes) seen from the side: grey, shaded by camera-facing side
    det = wall & (surf == SURFACE_ROOF_DETAIL)
    if det.any():
        col[det] = top[det] * np.float32(0.75)

    # tree canopies from the side: darker, slightly bluer at the bottom
    tr = side & (surf == SURFACE_TREE)
    if tr.any():
        pe, pn, z_hit, Hk = hits.pe[tr], hits.pn[tr], hits.z_hit[tr], hits.Hk[tr]
        tex = 0.75 + 0.25 * ((np.floor(pe * 2.0) + np.floor(pn * 2.0) + np.floor(z_hit * 2.0)) % 3) / 2
        col[tr] = top[tr] * (0.55 + 0.25 * np.clip(z_hit / np.maximum(Hk, 1.0), 0, 1))[:, None] * \
            tex[:, None].astype(np.float32)

    trunk = surf == TRUNK_MARK
    if trunk.any():
        col[trunk] = np.array(TRUNK_RGB, np.float32)

    # cars from the side: tyres, body, windows
    car = side & (surf == SURFACE_CAR)
    if car.any():
        z = hits.z_hit[car]
        hc = hits.Hk[car]
        cabin = hc > 1.15  # lower body cells are about 0.9 m high, the cabin about 1.5 m
        c = np.where((z < 0.36)[:, None], np.array(TYRE_RGB, np.float32), top[car])
        glass = cabin & (z < hc - 0.1)
        c = np.where(glass[:, None], np.array(CAR_GLASS_RGB, np.float32), c)
        col[car] = c * np.float32(0.92)

    # hedges and other low walls
    hed = wall & (surf == SURFACE_HEDGE)
    if hed.any():
        col[hed] = top[hed] * np.float32(0.7)
