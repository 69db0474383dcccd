"""The cameras of ``unifygeo bag synth``: one panorama camera, or a rig of pinhole cameras around the vehicle,
each rendered by the world's own renderer (:func:`unifygeo_ros.data.render.render_panorama`,
:func:`unifygeo_ros.data.pinhole.render_pinhole`: pinhole projection, not a crop of a panorama).

A rig of ``N`` pinhole cameras is evenly spaced in yaw: camera ``k`` has yaw ``k * 360 / N`` (REP-103,
counter-clockwise from the vehicle's forward axis, wrapped to (-180, 180]), pitch 0, no roll; all share the
optical centre ``camera_height_m`` above the ground at the vehicle's position, the field of view ``hfov_deg``
and the intrinsics of :func:`unifygeo_ros.image.stitch.intrinsics_for_fov` (square pixels, centred principal
point, no distortion) for an image ``width_px`` x ``width_px * 3 / 4``. Names are the node's defaults
(``cameras.names``/``cameras.yaw_deg`` in :mod:`unifygeo_ros.ros.params`): ``front`` for one camera;
``front, left, back, right`` (yaw 0, 90, 180, -90) for four; ``cam0 .. cam<N-1>`` otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from unifygeo_ros.data import render
from unifygeo_ros.data.pinhole import render_pinhole
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.image.lens import parse_distortion
from unifygeo_ros.image.stitch import PinholeCamera, camera_axes, check_hfov, intrinsics_for_fov
from unifygeo_ros.rosbag.synth_topics import camera_frame, camera_image_topic, camera_info_topic

CAMERA_KINDS = ("panorama", "pinhole")
DEFAULT_HFOV_DEG = 90.0
DEFAULT_PINHOLE_WIDTH_PX = 320
PINHOLE_ASPECT = 0.75  # height / width (4:3)
MAX_CAMERAS = 16
RIG4_NAMES = ("front", "left", "back", "right")


@dataclass(frozen=True)
class CameraRig:
    """What the bag's camera messages show: ``kind`` panorama (``cameras`` empty; ``width_px`` x ``width_px / 2``)
    or pinhole (one :class:`PinholeCamera` per camera, with its intrinsics and mounting)."""

    kind: str
    width_px: int
    cameras: tuple[PinholeCamera, ...] = ()
    hfov_deg: float | None = None

    def render(self, city: Any, position_en: tuple[float, float], heading_deg: float,
               camera_height_m: float) -> list[np.ndarray]:
        """One uint8 RGB image per camera (the panorama: one) of the vehicle at ``position_en`` heading
        ``heading_deg`` (compass; for the panorama the heading of its centre column)."""
        if self.kind == "panorama":
            return [render.render_panorama(city, position_en, heading_deg, self.width_px, self.width_px // 2,
                                           camera_height_m=camera_height_m)]
        return [render_pinhole(city, position_en, heading_deg, cam, camera_height_m=camera_height_m)
                for cam in self.cameras]

    def describe(self, camera_height_m: float) -> dict:
        """The rig as the bag's metadata records it (JSON-ready)."""
        out: dict = {"camera": self.kind, "camera_height_m": camera_height_m}
        if self.kind == "pinhole":
            out["hfov_deg"] = self.hfov_deg
            out["cameras"] = [{"name": c.name, "image_topic": camera_image_topic(c.name),
                               "camera_info_topic": camera_info_topic(c.name), "frame_id": camera_frame(c.name),
                               "yaw_deg": c.yaw_deg, "pitch_deg": c.pitch_deg, "width": c.width,
                               "height": c.height, "k": list(c.K), "distortion_model": c.distortion_model,
                               "d": list(c.D)} for c in self.cameras]
        return out


def camera_names(n: int) -> tuple[str, ...]:
    """The node's names for a rig of ``n`` cameras (module docstring)."""
    if n == 1:
        return ("front",)
    if n == 4:
        return RIG4_NAMES
    return tuple(f"cam{k}" for k in range(n))


def rig_yaws_deg(n: int) -> tuple[float, ...]:
    """Yaw of each of ``n`` evenly spaced cameras: ``k * 360 / n`` wrapped to (-180, 180] (REP-103)."""
    return tuple(float(y - 360.0 if y > 180.0 else y) for y in (k * 360.0 / n for k in range(n)))


def make_rig(kind: str, n_cameras: int = 1, hfov_deg: float | None = None,
             width_px: int | None = None, panorama_width_px: int = 512, distortion: str | None = None) -> CameraRig:
    """The rig of ``kind`` (:data:`CAMERA_KINDS`); :class:`UnifyGeoError` for options that do not fit it.
    ``width_px``: the image width (pinhole default :data:`DEFAULT_PINHOLE_WIDTH_PX`, panorama default
    ``panorama_width_px``); ``distortion``: pinhole lens distortion ``MODEL:c1,c2,...`` (:func:`parse_distortion`;
    ``hfov_deg`` sets ``K``, the lens bends what the image sees around it)."""
    if kind not in CAMERA_KINDS:
        raise UnifyGeoError(f"--camera must be panorama or pinhole, got {kind!r}")
    if kind == "panorama":
        if n_cameras != 1 or hfov_deg is not None or distortion:
            raise UnifyGeoError("--cameras, --hfov and --distortion describe pinhole cameras: use them with "
                                "--camera pinhole")
        width = int(width_px or panorama_width_px)
        if width < 16 or width % 2:
            raise UnifyGeoError(f"--image-width must be an even number >= 16, got {width}")
        return CameraRig("panorama", width)
    hfov = DEFAULT_HFOV_DEG if hfov_deg is None else float(hfov_deg)
    check_hfov(hfov, "--hfov")
    if not 1 <= int(n_cameras) <= MAX_CAMERAS:
        raise UnifyGeoError(f"--cameras must be 1 to {MAX_CAMERAS}, got {n_cameras}")
    width = int(width_px or DEFAULT_PINHOLE_WIDTH_PX)
    height = int(round(width * PINHOLE_ASPECT / 2.0)) * 2
    if width < 16 or width % 2:
        raise UnifyGeoError(f"--image-width must be an even number >= 16, got {width}")
    k = intrinsics_for_fov(width, height, hfov)
    model, d = parse_distortion(distortion)
    cams = tuple(PinholeCamera(name, k, width, height, yaw, 0.0, model, d)
                 for name, yaw in zip(camera_names(int(n_cameras)), rig_yaws_deg(int(n_cameras))))
    return CameraRig("pinhole", width, cams, hfov)


def mount_quaternion_xyzw(camera: PinholeCamera) -> tuple[float, float, float, float]:
    """The rotation of ``camera``'s optical frame in the vehicle frame (``base_link``), as a quaternion: its
    columns are the optical x (right), y (down), z (forward) axes in the vehicle frame."""
    return _matrix_to_quaternion_xyzw(camera_axes(camera.yaw_deg, camera.pitch_deg).T)


def _matrix_to_quaternion_xyzw(m: np.ndarray) -> tuple[float, float, float, float]:
    """A rotation matrix -> unit quaternion (x, y, z, w), w >= 0 (Shepperd's method)."""
    tr = float(np.trace(m))
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        v = [0.0, 0.0, 0.0]
        v[i], v[j], v[k] = 0.25 * s, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
        q = (v[0], v[1], v[2], (m[k, j] - m[j, k]) / s)
    q = np.asarray(q, float)
    q = q / np.linalg.norm(q) * (1.0 if q[3] >= 0 else -1.0)
    return tuple(float(x) for x in q)
