"""A city seen by a pinhole camera: :func:`render_pinhole`, rendered by the street-level renderer itself
(:func:`.panorama.shade_view`: the same marching, shading, sky and fog), not resampled from a panorama.

The camera is a :class:`unifygeo_ros.image.stitch.PinholeCamera` (intrinsics ``K`` for a ``width`` x ``height``
image, ROS optical frame: x right, y down, z forward, pixel centres at integer coordinates) mounted on a vehicle
with ``yaw_deg`` (REP-103: counter-clockwise from the vehicle's forward axis, so a left-looking camera has +90)
and ``pitch_deg`` (up positive), no roll - the convention the node's ``input_mode: cameras`` stitches with. The
vehicle stands at an ENU position with a compass ``heading_deg``; the camera's optical centre is
``camera_height_m`` above the ground at that position. A camera with lens distortion (its ``distortion_model``
and ``D``: :mod:`unifygeo_ros.image.lens`) is rendered through it: each pixel's ray is the model's inverse of
the pixel (``bag synth --distortion``); without one the image is a rectified pinhole's.

Rays: a level camera (pitch 0, no skew, no distortion) has one azimuth per image column, exactly, and an elevation
per pixel; one ray is marched per column. A pitched or distorted camera's pixels of one column look at different
azimuths: they are grouped into azimuth bins half the smallest angle between neighbouring columns wide (the bins'
mean azimuth is marched; a pixel's azimuth is off by at most a quarter of a column).
"""
from __future__ import annotations

import numpy as np

from unifygeo_ros.data.city import City
from unifygeo_ros.data.lighting import GroundLighting
from unifygeo_ros.data.panorama import graded_u8, shade_view
from unifygeo_ros.data.panorama_rays import Rays, ray_distances
from unifygeo_ros.image.stitch import PinholeCamera, camera_axes


def render_pinhole(city: City, position_en: tuple[float, float], heading_deg: float, camera: PinholeCamera,
                   camera_height_m: float = 2.0, lighting: GroundLighting | None = None, cars: str = "ground",
                   max_distance_m: float = 260.0) -> np.ndarray:
    """The image (``camera.height``, ``camera.width``, 3) uint8 RGB of ``camera`` on a vehicle at ``position_en``
    (ENU metres from the city's south-west corner) heading ``heading_deg`` (compass), ``camera_height_m`` above
    the ground; the lighting, cars and range of :func:`.panorama.render_panorama`."""
    lt = lighting or GroundLighting.for_city(city)
    rays = pinhole_rays(position_en, heading_deg, camera, camera_height_m, city.cell_m, max_distance_m)
    img = shade_view(city, rays, lt, cars).reshape(camera.height, camera.width, 3)  # row-major pixels
    return graded_u8(img, lt)


def pinhole_rays(position_en: tuple[float, float], heading_deg: float, camera: PinholeCamera,
                 camera_height_m: float, cell_m: float, max_distance_m: float) -> Rays:
    """The :class:`Rays` of ``camera``'s pixels in row-major order (module docstring)."""
    body = pixel_directions(camera)  # (H, W, 3): x forward, y left, z up
    cw = np.arctan2(-body[..., 1], body[..., 0])  # azimuth clockwise from the vehicle's forward axis, rad
    with np.errstate(divide="ignore"):
        tan_el = body[..., 2] / np.hypot(body[..., 0], body[..., 1])
    ray_cw, pix_ray = _azimuth_rays(cw)
    az_deg = np.mod(heading_deg + np.degrees(ray_cw), 360.0)
    pixel_rad = 1.0 / max(float(camera.k_matrix[0, 0]), float(camera.k_matrix[1, 1]))  # at the image centre
    return Rays(e0=float(position_en[0]), n0=float(position_en[1]), cam_h=float(camera_height_m), az_deg=az_deg,
                az=np.radians(az_deg), dist=ray_distances(pixel_rad, cell_m, max_distance_m), pix_ray=pix_ray,
                pix_tan_el=tan_el.reshape(-1))


def pixel_directions(camera: PinholeCamera) -> np.ndarray:
    """(H, W, 3) float64 direction (not normalised) of every pixel in the vehicle frame (x forward, y left,
    z up): ``K^-1 (u, v, 1)`` (undistorted when the camera has lens distortion) rotated by the camera's mounting."""
    return camera.optical_rays() @ camera_axes(camera.yaw_deg, camera.pitch_deg)  # rows: optical axes in the body


def _azimuth_rays(cw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth of each marched ray, ray of each pixel in row-major order) for per-pixel azimuths ``cw`` (H, W):
    one ray per column where every column looks at one azimuth, else bins (module docstring)."""
    h, w = cw.shape
    if np.all(cw == cw[:1]):
        return cw[0].copy(), np.tile(np.arange(w), h)
    steps = np.abs(np.diff(np.unwrap(cw, axis=1), axis=1))
    step = max(float(steps.min()) / 2.0 if steps.size else 1e-3, 1e-6)
    _keys, pix_ray = np.unique(np.round(cw.reshape(-1) / step).astype(np.int64), return_inverse=True)
    pix_ray = pix_ray.reshape(-1)
    ray_cw = np.bincount(pix_ray, cw.reshape(-1)) / np.bincount(pix_ray)
    return ray_cw, pix_ray
