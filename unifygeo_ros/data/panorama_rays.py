"""Ray marching for the street-level views: one ray per azimuth, sampled over the city's height field; each
pixel finds the first sample on its ray that rises above its elevation (:func:`first_hits`), and
:func:`hit_geometry` works out where exactly it meets the world (the top of a thing or its side).

A view is a :class:`Rays`: the marched rays (compass azimuths) and, per pixel, the ray it lies on and the tangent
of its elevation. An equirectangular panorama has one ray per column and one elevation per row
(:func:`panorama_rays`); a level pinhole camera one ray per column and an elevation per pixel
(:mod:`.pinhole`). Per ray: sample along it, running maximum of the elevation angles of the tops,
``searchsorted`` of the pixel elevations into it on one flattened array.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HORIZON_SAMPLE_M = 3000.0  # one far sample beyond max_distance_m for the horizon
#: elevation keys of different rays are this far apart in :func:`first_hits` (> pi: elevations span [-pi/2, pi/2])
_RAY_KEY_STRIDE = 4.0


@dataclass
class Rays:
    """A view's rays: camera position (ENU metres) and height, per marched ray the compass azimuth, the sample
    distances along every ray (metres); per pixel (in the order the renderer returns colours) its ray and the
    tangent of its elevation. ``pano_size`` (width, height) and ``pix_row`` are set for an equirectangular
    panorama (its sky comes from the tabulated panorama sky), None for other projections (the sky is evaluated
    at each pixel's direction)."""

    e0: float
    n0: float
    cam_h: float
    az_deg: np.ndarray  # (R,)
    az: np.ndarray  # (R,) radians
    dist: np.ndarray  # (K,)
    pix_ray: np.ndarray  # (N,) int64: index into az
    pix_tan_el: np.ndarray  # (N,)
    pano_size: tuple[int, int] | None = None
    pix_row: np.ndarray | None = None  # (N,) panorama row of each pixel


def panorama_rays(position_en: tuple[float, float], heading_deg: float, width: int, height: int,
                  camera_height_m: float, cell_m: float, max_distance_m: float) -> Rays:
    """Column ``u`` looks at azimuth ``heading_deg + ((u + 0.5)/width - 0.5) * 360``, row ``r`` at elevation
    ``90 - (r + 0.5) * 180 / height`` degrees; pixels in column-major order (column u, row r)."""
    u = np.arange(width)
    az_deg = np.mod(heading_deg + ((u + 0.5) / width - 0.5) * 360.0, 360.0)
    el_deg = 90.0 - (np.arange(height) + 0.5) * 180.0 / height
    rows = np.tile(np.arange(height), width)
    return Rays(e0=float(position_en[0]), n0=float(position_en[1]), cam_h=float(camera_height_m), az_deg=az_deg,
                az=np.radians(az_deg), dist=ray_distances(2 * math.pi / width, cell_m, max_distance_m),
                pix_ray=np.repeat(np.arange(width), height), pix_tan_el=np.tan(np.radians(el_deg))[rows],
                pano_size=(int(width), int(height)), pix_row=rows)


def ray_distances(pixel_rad: float, cell_m: float, max_m: float) -> np.ndarray:
    """Sample distances along a ray: a cell apart near the camera, one pixel's footprint (``pixel_rad``, the
    angle between neighbouring pixels) apart far away, plus one far sample for the horizon."""
    d, out = 0.25, []
    step_min = 0.8 * cell_m
    while d < max_m:
        out.append(d)
        d += max(step_min, d * pixel_rad * 0.9)
    out.append(HORIZON_SAMPLE_M)
    return np.asarray(out, np.float64)


def march(h_flat, shape, cell, e0, n0, az, dist):
    """Heights along every ray: (W, K) float32, the flat indices (clipped) and the inside mask."""
    rows, cols = shape
    se, cn = np.sin(az)[:, None], np.cos(az)[:, None]
    pe = e0 + dist[None] * se
    pn = n0 + dist[None] * cn
    ri = np.floor(pn / cell).astype(np.int64)
    ci = np.floor(pe / cell).astype(np.int64)
    inside = (ri >= 0) & (ri < rows) & (ci >= 0) & (ci < cols)
    idx = np.clip(ri, 0, rows - 1) * cols + np.clip(ci, 0, cols - 1)
    hs = np.where(inside, h_flat[idx], np.float32(0.0))
    return hs, idx, inside


def first_hits(hs, dist, tan_el_q, rays_q, cam_h):
    """For pixels on rays ``rays_q`` (rows of the marched ``hs``) with elevation tangents ``tan_el_q``, the first
    sample index whose top is at or above the pixel's elevation (K where none: sky)."""
    n_w, k = hs.shape
    ang = np.arctan2(hs - np.float32(cam_h), dist[None].astype(np.float32))
    cm = np.maximum.accumulate(ang, axis=1)
    off = np.arange(n_w, dtype=np.float64)[:, None] * _RAY_KEY_STRIDE
    keys = (cm + off).ravel()
    q = np.arctan(tan_el_q) + rays_q * _RAY_KEY_STRIDE
    g = np.searchsorted(keys, q, side="left")
    return g - rays_q * k


@dataclass
class RayHits:
    """Where each hit pixel's ray meets the world. ``on_top``: it comes down on a top (roof, ground, canopy)
    rather than into a side; ``d_hit``, ``z_hit``: distance and height of the hit point, ``(pe, pn)`` its
    ENU position, ``cidx`` its flat cell index, ``ins`` whether that is inside the grid; ``dk``, ``Hk`` the
    distance and top height of the hit sample, ``dprev``, ``Hprev`` those of the sample before it."""

    on_top: np.ndarray
    d_hit: np.ndarray
    z_hit: np.ndarray
    dk: np.ndarray
    dprev: np.ndarray
    Hk: np.ndarray
    Hprev: np.ndarray
    pe: np.ndarray
    pn: np.ndarray
    cidx: np.ndarray
    ins: np.ndarray

    def update(self, sel: np.ndarray, other: "RayHits"):
        """Overwrite the pixels ``sel`` with ``other`` (hits of the same pixels, e.g. seen again below the tree
        canopies)."""
        for name in self.__dataclass_fields__:
            getattr(self, name)[sel] = getattr(other, name)


def hit_geometry(hs, idx, inside, col, kk, te, rays: Rays, se, cn_, cell: float, shape) -> RayHits:
    """The hits of pixels whose rays (rows ``col`` of the marched ``hs``, ``idx``, ``inside``) first rise
    above them at sample ``kk``; ``te`` the tangent of each pixel's elevation, ``(se, cn_)`` the sine and
    cosine of its azimuth. A ray that comes down between the samples hits the top, else the side."""
    dist, cam_h = rays.dist, rays.cam_h
    dk = dist[kk]
    dprev = np.where(kk > 0, dist[np.maximum(kk - 1, 0)], 0.0)
    Hk = hs[col, kk]
    Hprev = np.where(kk > 0, hs[col, np.maximum(kk - 1, 0)], 0.0)
    z_prev = cam_h + dprev * te
    on_top = z_prev >= Hk
    with np.errstate(divide="ignore", invalid="ignore"):
        d_top = np.where(te < 0, (cam_h - Hk) / -te, dk)
    d_hit = np.where(on_top, np.clip(d_top, dprev, dk), dprev)
    z_hit = np.where(on_top, Hk, np.clip(cam_h + dprev * te, 0.0, Hk))
    pe, pn = rays.e0 + d_hit * se, rays.n0 + d_hit * cn_
    rows, cols = shape
    ri = np.floor(pn / cell).astype(np.int64)
    ci = np.floor(pe / cell).astype(np.int64)
    ins = (ri >= 0) & (ri < rows) & (ci >= 0) & (ci < cols)
    cidx = np.where(on_top, np.clip(ri, 0, rows - 1) * cols + np.clip(ci, 0, cols - 1), idx[col, kk])
    ins = np.where(on_top, ins, inside[col, kk])
    return RayHits(on_top, d_hit, z_hit, dk, dprev, Hk, Hprev, pe, pn, cidx, ins)
