"""A city seen from the street: :func:`render_panorama`, an equirectangular panorama whose columns follow the
azimuth convention of :mod:`unifygeo_ros.geo` (the centre column looks along ``heading_deg``), and
:func:`shade_view`, the renderer of any view described by :class:`.panorama_rays.Rays` (the pinhole camera of
:mod:`.pinhole` uses it too).

Rays are marched over the height field with occlusion (:mod:`.panorama_rays`); rays that pass below a tree
canopy are marched again through the world under the canopies (trunks, cars, ground); hit pixels are shaded by
:mod:`.panorama_shading`, the others get the sky (:mod:`.sky`); distance fog and colour grading finish it.
"""
from __future__ import annotations

import cv2
import numpy as np

from unifygeo_ros.data.city import City
from unifygeo_ros.data.city_schema import SURFACE_GROUND, SURFACE_TREE
from unifygeo_ros.data.lighting import GroundLighting, cast_shadows, grade
from unifygeo_ros.data.panorama_rays import Rays, RayHits, first_hits, hit_geometry, march, panorama_rays
from unifygeo_ros.data.panorama_shading import SKY_MARK, TRUNK_MARK, shade_hits
from unifygeo_ros.data.sky import sky_colours, sky_colours_at

MAX_LIGHTINGS_CACHED = 3  # per city: view caches of at most this many lightings are kept


def render_panorama(city: City, position_en: tuple[float, float], heading_deg: float, width: int,
                    height: int, camera_height_m: float = 2.0, lighting: GroundLighting | None = None,
                    cars: str = "ground", max_distance_m: float = 260.0) -> np.ndarray:
    """An equirectangular panorama (height, width, 3) uint8 RGB taken at ``position_en`` (ENU metres from the
    city's south-west corner), ``camera_height_m`` above the ground.

    Column ``u`` looks at compass azimuth ``heading_deg + ((u + 0.5)/width - 0.5) * 360`` (geo.py's convention);
    row ``r`` at elevation ``90 - (r + 0.5) * 180 / height`` degrees.
    """
    lt = lighting or GroundLighting.for_city(city)
    rays = panorama_rays(position_en, heading_deg, width, height, camera_height_m, city.cell_m, max_distance_m)
    img = shade_view(city, rays, lt, cars)  # column-major pixels
    img = img.reshape(width, height, 3).transpose(1, 0, 2)
    return graded_u8(np.ascontiguousarray(img), lt)


def graded_u8(img: np.ndarray, lt: GroundLighting) -> np.ndarray:
    """The lighting's colour grading of a float32 RGB image in [0, 1], as uint8 (in place)."""
    img = grade(img, lt.gain_rgb, lt.exposure, 1.0, lt.saturation)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def shade_view(city: City, rays: Rays, lt: GroundLighting, cars: str = "ground") -> np.ndarray:
    """float32 RGB (N, 3) in [0, 1], before grading, of every pixel of ``rays`` (in their order): what its ray
    meets first (looking again below tree canopies), shaded and fogged, or the sky."""
    v = _view_cache(city, cars, lt)
    hs, idx, inside = march(v["height"], city.shape, city.cell_m, rays.e0, rays.n0, rays.az, rays.dist)
    k = first_hits(hs, rays.dist, rays.pix_tan_el, rays.pix_ray, rays.cam_h)
    hit = k < len(rays.dist)
    img = np.empty((len(rays.pix_ray), 3), np.float32)
    sky = ~hit
    if sky.any():
        img[sky] = _sky(lt, rays, np.nonzero(sky)[0])
    img[hit] = _hit_colours(city, v, lt, rays, (hs, idx, inside), np.nonzero(hit)[0], k[hit])
    return img


def _sky(lt: GroundLighting, rays: Rays, pix: np.ndarray) -> np.ndarray:
    """float32 RGB of the sky seen by pixels ``pix``: the tabulated panorama sky for a panorama, else the sky
    evaluated at each pixel's direction."""
    az_deg = rays.az_deg[rays.pix_ray[pix]]
    if rays.pano_size is not None:
        return sky_colours(lt, rays.pano_size[0], rays.pano_size[1], az_deg, rays.pix_row[pix])
    return sky_colours_at(lt, az_deg, np.degrees(np.arctan(rays.pix_tan_el[pix])))


def _hit_colours(city: City, v: dict, lt: GroundLighting, rays: Rays, marched, pix: np.ndarray,
                 hk: np.ndarray) -> np.ndarray:
    """float32 RGB of the pixels ``pix`` whose ray first rises above them at sample ``hk``: what they hit
    (looking again below tree canopies), shaded, fogged."""
    hs, idx, inside = marched
    hu = rays.pix_ray[pix]
    te = rays.pix_tan_el[pix]
    se, cn_ = np.sin(rays.az[hu]), np.cos(rays.az[hu])
    hits = hit_geometry(hs, idx, inside, hu, hk, te, rays, se, cn_, city.cell_m, city.shape)
    surf, oid, top_px = _cells_hit(v, hits, "")
    _look_under_canopies(city, v, rays, hits, surf, oid, top_px, hu, te, se, cn_)
    col = shade_hits(city, v, lt, hits, top_px, surf, oid, se, cn_)
    # fog
    fog = 1.0 - np.exp(-hits.d_hit / lt.fog_m)
    hor = np.asarray(lt.sky_horizon_rgb, np.float32) / 255.0
    col = col * (1.0 - fog[:, None]).astype(np.float32) + (fog[:, None] * hor).astype(np.float32)
    resky = surf == SKY_MARK
    if resky.any():
        col[resky] = _sky(lt, rays, pix[resky])
    return col


def _cells_hit(v: dict, hits: RayHits, layer_prefix: str):
    """Surface class, object id and top colour of the hit cells, from the view cache's layers
    (``layer_prefix`` ``""``: the world, ``"u_"``: the world below the canopies); ground outside the grid."""
    surf = np.where(hits.ins, v[layer_prefix + "surface"][hits.cidx], SURFACE_GROUND)
    oid = np.where(hits.ins, v[layer_prefix + "oid"][hits.cidx], 0)
    top_px = v[layer_prefix + "top"][hits.cidx]
    return surf, oid, top_px


def _look_under_canopies(city: City, v: dict, rays: Rays, hits: RayHits, surf: np.ndarray, oid: np.ndarray,
                         top_px: np.ndarray, hu: np.ndarray, te: np.ndarray, se: np.ndarray, cn_: np.ndarray):
    """Rays that hit the side of a canopy below its base pass under it: march them again through the world
    below the canopies and overwrite their hits in place (``SKY_MARK`` where they now see the sky,
    ``TRUNK_MARK`` where they hit a trunk from the side)."""
    under = (~hits.on_top) & (surf == SURFACE_TREE)
    if not under.any():
        return
    tree_ix = np.clip(-oid[under] - 1, 0, max(len(city.trees) - 1, 0))
    base = city.trees["base"][tree_ix] if len(city.trees) else np.zeros(0)
    below = hits.z_hit[under] < base
    if not below.any():
        return
    sel = np.nonzero(under)[0][below]
    cols2 = np.unique(hu[sel])
    hs2, idx2, inside2 = march(v["u_height"], city.shape, city.cell_m, rays.e0, rays.n0, rays.az[cols2], rays.dist)
    pos = np.searchsorted(cols2, hu[sel])  # column index within the sub-set
    k2 = first_hits(hs2, rays.dist, te[sel], pos, rays.cam_h)
    ok2 = k2 < len(rays.dist)
    sky_px = sel[~ok2]  # pixels that now see the sky
    if len(sky_px):
        surf[sky_px] = SKY_MARK
    s2, p2, kk = sel[ok2], pos[ok2], k2[ok2]
    hits2 = hit_geometry(hs2, idx2, inside2, p2, kk, te[s2], rays, se[s2], cn_[s2], city.cell_m, city.shape)
    hits.update(s2, hits2)
    surf2, oid2, top2 = _cells_hit(v, hits2, "u_")
    oid[s2], top_px[s2] = oid2, top2
    surf2[~hits2.on_top & (surf2 == SURFACE_TREE)] = TRUNK_MARK
    surf[s2] = surf2


# ---------------------------------------------------------------------------------------------- view cache
def _view_cache(city: City, cars: str, lt: GroundLighting) -> dict:
    """Per (city, cars, lighting) layers the panorama renderer needs, flattened: the world with the car set
    (``height``, ``top``, ``surface``, ``oid``), its shadow map under the lighting's sun (``shadow``, uint8),
    the facade normal map (``normal``, ``normal_ok``) and the world below the canopies (``u_*``)."""
    key = ("pano", cars, lt)
    got = city._cache.get(key)
    if got is not None:
        return got
    lay = city.layers(cars)
    normal, normal_ok = _facade_normal_map(city)
    # the world below the canopies (trunks, cars, ground), for rays that pass under a canopy
    und = city.under_canopy_layers(cars)
    shadow = cast_shadows(lay.height, city.cell_m, lt.sun_azimuth_deg, lt.sun_elevation_deg)
    shadow_u8 = (shadow * 255 + 0.5).astype(np.uint8).ravel()
    got = dict(height=lay.height.ravel(), top=lay.top_rgb.reshape(-1, 3), surface=lay.surface.ravel(),
               oid=lay.object_id.ravel(), shadow=shadow_u8, normal=normal,
               normal_ok=normal_ok, u_height=und.height.ravel(), u_top=und.top_rgb.reshape(-1, 3),
               u_surface=und.surface.ravel(), u_oid=und.object_id.ravel())
    # keep at most a few lighting variants per city
    old = [k for k in city._cache if isinstance(k, tuple) and k and k[0] == "pano"]
    for k in old[:-MAX_LIGHTINGS_CACHED]:
        del city._cache[k]
    city._cache[key] = got
    return got


def _facade_normal_map(city: City) -> tuple[np.ndarray, np.ndarray]:
    """Flattened outward facade normals of the buildings (angle from east in 1/256 turns, uint8) and where
    they are defined; cached on the city."""
    nkey = ("facade_normal",)
    if nkey not in city._cache:
        bm = (city.object_id > 0).astype(np.float32)
        bm = cv2.GaussianBlur(bm, (0, 0), max(1.0, 1.2 / city.cell_m))
        gx = cv2.Sobel(bm, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(bm, cv2.CV_32F, 0, 1, ksize=3)
        ang = np.arctan2(-gy, -gx)  # outward normal (east, north)
        q = np.round(ang / (2 * np.pi) * 256).astype(np.int32) & 255
        q = q.astype(np.uint8)
        q[(gx * gx + gy * gy) < 1e-6] = 0
        valid = (gx * gx + gy * gy) >= 1e-6
        city._cache[nkey] = (q.ravel(), valid.ravel())
    return city._cache[nkey]
