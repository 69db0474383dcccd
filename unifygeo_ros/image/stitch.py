"""Several pinhole cameras -> one partial equirectangular panorama, the unseen part masked. ROS-free.

Geometry (REP-103 body frame: x forward, y left, z up; the panorama convention of :mod:`unifygeo_ros.geo`):

* Panorama column ``u`` (of ``W``) looks at the azimuth ``a = ((u + 0.5) / W - 0.5) * 360`` deg **clockwise**
  from the body's forward axis (the centre column looks forward: the panorama's heading is the robot's
  heading); row ``r`` (of ``H = W / 2``) at the elevation ``90 - (r + 0.5) * 180 / H`` deg.
* A camera is mounted with ``yaw_deg`` (REP-103: counter-clockwise about z from the forward axis, so a
  left-looking camera has +90) and ``pitch_deg`` (up positive), no roll; its optical frame is the ROS one
  (x right, y down, z forward) and ``K`` its (rectified) intrinsics. A camera with yaw ``psi`` fills the
  columns around azimuth ``-psi``.
* Where cameras overlap, each panorama pixel takes the camera whose optical axis is closest to its ray.
  Pixels no camera sees are zero (black), as :func:`unifygeo_ros.image.preprocess.mask_fov` zeroes the columns
  outside a limited field of view; :attr:`PanoramaStitcher.pixel_mask` / ``column_mask`` say which are seen.

Lens distortion: a camera's ``CameraInfo`` distortion model and ``D`` (plumb_bob, rational_polynomial, equidistant:
:mod:`unifygeo_ros.image.lens`) for raw images; rectified ones (``image_rect``, ``cameras.rectified``) use its ``P``
(:func:`unifygeo_ros.image.rig.camera_from_info`, which also turns the rig's ROS messages into sets).
The remap tables are computed once per camera layout (a few ms) and reused for every frame.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from unifygeo_ros.errors import ImageError
from unifygeo_ros.image import lens


#: smallest focal length accepted, px: below it a camera would see more than 179 deg across a few pixels (fx = 1e-9
#: got a fix before); a real camera's is hundreds of pixels
MIN_FOCAL_PX = 1.0


@dataclass(frozen=True)
class PinholeCamera:
    """One camera of the rig: intrinsics (3 x 3 ``K`` for a ``width`` x ``height`` image) and mounting."""

    name: str
    K: tuple  # 9 floats, row-major (CameraInfo.k)
    width: int
    height: int
    yaw_deg: float
    pitch_deg: float = 0.0
    #: lens distortion (CameraInfo.distortion_model and .d; :mod:`unifygeo_ros.image.lens`): "" and () for none
    distortion_model: str = ""
    D: tuple = ()

    def __post_init__(self):
        k = np.asarray(self.K, float).reshape(-1)
        if k.size != 9 or not np.all(np.isfinite(k)) or k[0] < MIN_FOCAL_PX or k[4] < MIN_FOCAL_PX:
            raise ImageError(f"camera {self.name!r}: unusable intrinsics K={k.tolist()} (focal lengths must be at "
                             f"least {MIN_FOCAL_PX:g} px; uncalibrated camera?)")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ImageError(f"camera {self.name!r}: zero image size {self.width} x {self.height}")
        model, d = lens.check_distortion(self.name, self.distortion_model, self.D)
        object.__setattr__(self, "distortion_model", model)
        object.__setattr__(self, "D", d)

    @property
    def k_matrix(self) -> np.ndarray:
        return np.asarray(self.K, float).reshape(3, 3)

    def horizontal_fov_deg(self) -> float:
        k = self.k_matrix
        return math.degrees(math.atan2(k[0, 2] + 0.5, k[0, 0]) + math.atan2(self.width - k[0, 2] - 0.5, k[0, 0]))

    def scaled_to(self, width: int, height: int) -> "PinholeCamera":
        """The same camera for an image of another size (K scaled), e.g. a binned stream."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        k = self.k_matrix.copy()
        k[0] *= sx
        k[1] *= sy
        return dataclasses.replace(self, K=tuple(k.reshape(-1)), width=int(width), height=int(height))

    def optical_rays(self) -> np.ndarray:
        """(H, W, 3) optical-frame direction of every pixel (x right, y down, z = 1), undistorted."""
        return lens.optical_rays(self.k_matrix, self.distortion_model, self.D, self.width, self.height)


def panorama_rays(width: int, height: int) -> np.ndarray:
    """Unit ray (body frame x fwd, y left, z up) of every panorama pixel: (H, W, 3) float64."""
    az = np.radians(((np.arange(width) + 0.5) / width - 0.5) * 360.0)  # clockwise from forward
    el = np.radians(90.0 - (np.arange(height) + 0.5) * 180.0 / height)
    ce = np.cos(el)[:, None]
    return np.stack(np.broadcast_arrays(ce * np.cos(az)[None], -ce * np.sin(az)[None], np.sin(el)[:, None]),
                    axis=-1)


def camera_axes(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """Rows: the camera's optical x (right), y (down), z (forward) axes in the body frame."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    fwd = np.array([math.cos(y) * math.cos(p), math.sin(y) * math.cos(p), math.sin(p)])
    right = np.array([math.sin(y), -math.cos(y), 0.0])
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd])


class PanoramaStitcher:
    """Maps the images of a fixed camera rig into a ``width`` x ``width / 2`` panorama (module docstring)."""

    def __init__(self, cameras: list[PinholeCamera], width: int = 512):
        if not cameras:
            raise ImageError("no cameras to stitch")
        if width < 8 or width % 2:
            raise ValueError(f"panorama width must be even and >= 8, got {width}")
        self.cameras = list(cameras)
        self.width, self.height = int(width), int(width) // 2
        rays = panorama_rays(self.width, self.height)
        best = np.full((self.height, self.width), -np.inf)
        owner = np.full((self.height, self.width), -1, np.int32)
        maps = []
        for i, cam in enumerate(self.cameras):
            axes = camera_axes(cam.yaw_deg, cam.pitch_deg)
            c = rays @ axes.T  # (H, W, 3) in the optical frame
            z = c[..., 2]
            u, v, seen = lens.project(cam.k_matrix, cam.distortion_model, cam.D, c)
            inside = seen & (u >= -0.5) & (u <= cam.width - 0.5) & (v >= -0.5) & (v <= cam.height - 0.5)
            take = inside & (z > best)
            owner[take] = i
            best[take] = z[take]
            maps.append((np.where(inside, u, -1.0).astype(np.float32), np.where(inside, v, -1.0).astype(np.float32)))
        self.owner = owner
        self.pixel_mask = owner >= 0
        self.column_mask = self.pixel_mask.any(axis=0)
        self._maps = maps

    @property
    def coverage(self) -> float:
        """Share of panorama columns that some camera sees."""
        return float(self.column_mask.mean())

    def stitch(self, images: list[np.ndarray]) -> np.ndarray:
        """One RGB ``uint8`` image per camera (same order) -> the ``H x W x 3`` panorama, unseen pixels zero."""
        if len(images) != len(self.cameras):
            raise ImageError(f"{len(images)} images for {len(self.cameras)} cameras")
        pano = np.zeros((self.height, self.width, 3), np.uint8)
        for i, (cam, img) in enumerate(zip(self.cameras, images)):
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ImageError(f"camera {cam.name!r}: expected uint8 H x W x 3, got "
                                 f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}")
            if img.shape[0] != cam.height or img.shape[1] != cam.width:
                raise ImageError(f"camera {cam.name!r}: image is {img.shape[1]} x {img.shape[0]} px but its "
                                 f"CameraInfo says {cam.width} x {cam.height}")
            sel = self.owner == i
            if not sel.any():
                continue
            mx, my = self._maps[i]
            warped = cv2.remap(img, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            pano[sel] = warped[sel]
        return pano


def pinhole_view(panorama: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """The image ``camera`` would take from the centre of an equirectangular ``panorama`` whose centre column
    looks forward (the inverse of stitching; used to make test and benchmark rigs from panoramas)."""
    h, w = panorama.shape[:2]
    body = camera.optical_rays() @ camera_axes(camera.yaw_deg, camera.pitch_deg)  # rows of axes: optical axes in body
    body /= np.linalg.norm(body, axis=-1, keepdims=True)
    az = np.degrees(np.arctan2(-body[..., 1], body[..., 0]))  # clockwise from forward
    el = np.degrees(np.arcsin(np.clip(body[..., 2], -1, 1)))
    mx = ((az / 360.0 + 0.5) * w - 0.5) % w
    my = (90.0 - el) / 180.0 * h - 0.5
    # wrap horizontally: pad one column each side so remap interpolates across the seam
    padded = np.concatenate([panorama[:, -1:], panorama, panorama[:, :1]], axis=1)
    return cv2.remap(padded, (mx + 1).astype(np.float32), my.astype(np.float32), interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def intrinsics_for_fov(width: int, height: int, hfov_deg: float) -> tuple:
    """A centred pinhole ``K`` (square pixels) with horizontal field of view ``hfov_deg``."""
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return (f, 0.0, width / 2.0 - 0.5, 0.0, f, height / 2.0 - 0.5, 0.0, 0.0, 1.0)


#: the horizontal fields of view (deg) of a pinhole camera that the project draws, renders or stitches from a bare
#: field of view (``unifygeo localize --hfov``, ``unifygeo bag synth --hfov``, training's ``fov_camera_deg_range``):
#: a pinhole image cannot reach 180 deg, and beyond ~170 it is almost all border
PINHOLE_HFOV_RANGE_DEG = (1.0, 170.0)


def check_hfov(hfov_deg: float, what: str) -> None:
    """An ImageError unless ``hfov_deg`` is a pinhole camera's horizontal field of view within
    :data:`PINHOLE_HFOV_RANGE_DEG`."""
    lo, hi = PINHOLE_HFOV_RANGE_DEG
    if not (math.isfinite(hfov_deg) and lo <= hfov_deg <= hi):
        raise ImageError(f"{what} must be within [{lo:g}, {hi:g}] deg, got {hfov_deg}")


def photo_to_panorama(rgb: np.ndarray, hfov_deg: float, width: int = 512, name: str = "photo",
                      distortion: tuple[str, tuple] = ("", ())) -> np.ndarray:
    """A pinhole photo without a CameraInfo (square pixels, principal point at the centre, horizontal field of
    view ``hfov_deg`` of ``K``, lens ``distortion`` = (model, D) as :func:`~unifygeo_ros.image.lens.parse_distortion`
    gives it) on the panorama's cylinder as the node stitches a one-camera rig looking forward: the centre column is
    the photo's optical axis, the rest zero (``unifygeo localize --hfov [--distortion]``). The stitcher checks the
    image."""
    check_hfov(hfov_deg, f"{name}: a pinhole camera's horizontal field of view")
    h, w = rgb.shape[:2]
    cam = PinholeCamera(name, intrinsics_for_fov(w, h, hfov_deg), w, h, 0.0, 0.0, *distortion)
    return stitcher_for([cam], width).stitch([rgb])


# ------------------------------------------------------------------------------------------ rig frames (node)
_STITCHERS: dict[tuple, PanoramaStitcher] = {}


def stitcher_for(cameras: list[PinholeCamera], width: int) -> PanoramaStitcher:
    """A cached :class:`PanoramaStitcher` per rig layout (the remap tables are computed once)."""
    key = (tuple(cameras), int(width))
    st = _STITCHERS.get(key)
    if st is None:
        if len(_STITCHERS) >= 4:  # a rig whose CameraInfo keeps changing must not grow memory
            _STITCHERS.clear()
        st = _STITCHERS[key] = PanoramaStitcher(cameras, width)
    return st
