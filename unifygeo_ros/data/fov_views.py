"""Limited fields of view for training: a panorama turned into what a rig of pinhole cameras gives the node.

At run time a robot's pinhole cameras reach the model through one path (``input_mode: cameras``): their images are
stitched onto the panorama's cylinder by :class:`unifygeo_ros.image.stitch.PanoramaStitcher` in the robot's frame
(the unseen part zero, the vertical extent limited by the cameras' vertical field of view), and a known-orientation
model's :class:`~unifygeo_ros.localization.localizer.Localizer` rolls that panorama by the heading so it looks north.
:class:`FovViews` does exactly that to a rendered panorama: it draws a rig (a contiguous sector of ``F`` degrees
split among ``N`` pinhole cameras of one aspect ratio, each of ``F / N`` degrees), cuts each camera's image from the
panorama with :func:`~unifygeo_ros.image.stitch.pinhole_view`, stitches them back with the node's stitcher and
rolls the result as the Localizer does. A model trained on it sees the node's input; pinhole images from any other
source (a real camera, another renderer) reach the model the same way.

Draws (one :class:`RigDraw` per sample, from the caller's generator):

* with probability ``1 - probability`` the panorama is left unchanged (full panoramas stay in the mix);
* the sector ``F`` is uniform in ``[lowest_fov_deg(step), fov_deg_range[1]]``: without a curriculum
  ``lowest_fov_deg`` is ``fov_deg_range[0]``; with ``curriculum_steps`` > 0 it shrinks linearly from the upper to
  the lower bound over those steps (wide views first, then narrower and narrower ones: SinGeo's curriculum);
* ``N`` uniform among the camera counts whose per-camera field ``F / N`` lies in ``camera_deg_range`` (at least
  ``ceil(F / camera_deg_range[1])``: a pinhole camera cannot see 180 deg), the aspect (width / height) uniform in
  ``aspects``; the camera images sample the panorama at ``oversample`` times its angular resolution at their centre;
* the robot's forward direction: uniform around the panorama for a north-aligned panorama (known orientation: the
  robot faces anywhere), the panorama's centre column otherwise (an unknown-orientation model gets the stitched
  panorama in the robot's frame, as from the node).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unifygeo_ros.image.preprocess import roll_panorama
from unifygeo_ros.image.stitch import (PINHOLE_HFOV_RANGE_DEG, PanoramaStitcher, PinholeCamera, intrinsics_for_fov,
                                      pinhole_view)

#: smallest sector a rig may cover, deg (below it a camera sees a few columns of the model's input)
MIN_FOV_DEG = 10.0


@dataclass(frozen=True)
class RigDraw:
    """One drawn rig: its sector, cameras (yaw in the robot's frame, REP-103) and the robot's forward direction."""

    fov_deg: float                       #: horizontal sector covered by the cameras together
    cameras: tuple[PinholeCamera, ...]
    forward_deg: float                   #: robot forward, clockwise from the panorama's centre column


@dataclass(frozen=True)
class FovViews:
    """The limited-field-of-view augmentation (module docstring). ``probability`` 0: off (nothing is drawn)."""

    probability: float = 0.0
    fov_deg_range: tuple[float, float] = (70.0, 360.0)
    camera_deg_range: tuple[float, float] = (60.0, 120.0)
    aspects: tuple[float, ...] = (4.0 / 3.0, 16.0 / 9.0)
    curriculum_steps: int = 0
    oversample: float = 2.0

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.fov_deg_range)
        cam_lo, cam_hi = (float(v) for v in self.camera_deg_range)
        if not 0.0 <= float(self.probability) <= 1.0:
            raise ValueError(f"fov_probability must be in [0, 1], got {self.probability!r}")
        if not MIN_FOV_DEG <= lo <= hi <= 360.0:
            raise ValueError(f"fov_deg_range must be [low, high] with {MIN_FOV_DEG:g} <= low <= high <= 360, "
                             f"got {list(self.fov_deg_range)}")
        h_lo, h_hi = PINHOLE_HFOV_RANGE_DEG
        if not h_lo <= cam_lo <= cam_hi <= h_hi:
            raise ValueError(f"fov_camera_deg_range must be [low, high] with {h_lo:g} <= low <= high <= {h_hi:g} (a "
                             f"pinhole camera), got {list(self.camera_deg_range)}")
        if not self.aspects or any(not 0.2 <= float(a) <= 5.0 for a in self.aspects):
            raise ValueError(f"fov_aspects must be widths / heights between 0.2 and 5, got {list(self.aspects)}")
        if int(self.curriculum_steps) < 0 or float(self.oversample) <= 0:
            raise ValueError(f"fov_curriculum_steps must be >= 0 and fov_oversample > 0, got "
                             f"{self.curriculum_steps!r} and {self.oversample!r}")

    # ------------------------------------------------------------------------------------------- the draws
    def lowest_fov_deg(self, step: int) -> float:
        """The narrowest sector drawn at training step ``step`` (the curriculum; constant without one)."""
        lo, hi = float(self.fov_deg_range[0]), float(self.fov_deg_range[1])
        if self.curriculum_steps <= 0:
            return lo
        progress = min(1.0, max(0.0, step / float(self.curriculum_steps)))
        return hi - (hi - lo) * progress

    def camera_counts(self, fov_deg: float) -> list[int]:
        """The rig sizes that cover ``fov_deg`` with cameras of ``camera_deg_range`` (never empty)."""
        cam_lo, cam_hi = float(self.camera_deg_range[0]), float(self.camera_deg_range[1])
        fewest = max(1, math.ceil(fov_deg / cam_hi - 1e-9))
        most = max(fewest, math.floor(fov_deg / cam_lo + 1e-9))
        return list(range(fewest, most + 1))

    def draw(self, rng: np.random.Generator, step: int, pano_width: int, north_aligned: bool) -> RigDraw | None:
        """One sample's rig, or None (the panorama stays whole). Always the same number of draws from ``rng``."""
        u_keep, u_fov, u_n, u_aspect, u_forward = rng.random(5)
        if self.probability <= 0.0 or u_keep >= self.probability:
            return None
        lo, hi = self.lowest_fov_deg(step), float(self.fov_deg_range[1])
        fov = lo + (hi - lo) * float(u_fov)
        counts = self.camera_counts(fov)
        n = counts[min(len(counts) - 1, int(u_n * len(counts)))]
        aspect = float(self.aspects[min(len(self.aspects) - 1, int(u_aspect * len(self.aspects)))])
        cams = rig_cameras(fov, n, aspect, pano_width, self.oversample)
        forward = 360.0 * float(u_forward) - 180.0 if north_aligned else 0.0
        return RigDraw(fov, tuple(cams), forward)

    @classmethod
    def from_stream_keys(cls, probability: float = 0.0, deg_range=(70.0, 360.0), camera_deg_range=(60.0, 120.0),
                         aspects=(4.0 / 3.0, 16.0 / 9.0), curriculum_steps: int = 0,
                         oversample: float = 2.0) -> "FovViews":
        """From the ``data.stream`` keys (``fov_probability``, ``fov_deg_range``, ...; lists from YAML)."""
        return cls(float(probability), tuple(float(v) for v in deg_range),
                   tuple(float(v) for v in camera_deg_range), tuple(float(a) for a in aspects),
                   int(curriculum_steps), float(oversample))


# ------------------------------------------------------------------------------------------------ geometry
def rig_cameras(fov_deg: float, n_cameras: int, aspect: float, pano_width: int,
                oversample: float = 2.0) -> list[PinholeCamera]:
    """``n_cameras`` pinhole cameras side by side covering the ``fov_deg`` sector centred on the robot's forward
    axis (each ``fov_deg / n_cameras`` wide, square pixels, ``aspect`` = width / height), sampling
    ``oversample`` times the angular resolution of a ``pano_width`` panorama at their centre."""
    hfov = fov_deg / n_cameras
    focal_px = oversample * pano_width / (2.0 * math.pi)
    width = max(8, int(round(2.0 * focal_px * math.tan(math.radians(hfov) / 2.0))))
    height = max(4, int(round(width / aspect)))
    cams = []
    for i in range(n_cameras):
        azimuth = -fov_deg / 2.0 + (i + 0.5) * hfov  # clockwise from forward
        cams.append(PinholeCamera(f"cam{i}", intrinsics_for_fov(width, height, hfov), width, height,
                                  yaw_deg=-azimuth))
    return cams


def stitched_view(panorama: np.ndarray, rig: RigDraw) -> tuple[np.ndarray, PanoramaStitcher]:
    """What the node and the Localizer make of ``rig``'s images of the scene of ``panorama``: the panorama rolled
    into the robot's frame, each camera's view cut from it, stitched back by the node's stitcher at the panorama's
    width, then rolled back by the heading as the Localizer does. Returns ``(image, stitcher)``; the image has the
    input's size and heading, zero where no camera sees (``np.roll(stitcher.pixel_mask, -k)`` with ``k`` the
    robot-frame roll)."""
    h, w = panorama.shape[:2]
    if w % 2 or h != w // 2:
        raise ValueError(f"panorama must be W x W/2 (W even) for the stitcher, got {w} x {h}")
    robot_frame, applied = roll_panorama(panorama, rig.forward_deg)
    stitcher = PanoramaStitcher(list(rig.cameras), w)
    stitched = stitcher.stitch([pinhole_view(robot_frame, cam) for cam in rig.cameras])
    return roll_panorama(stitched, -applied)[0], stitcher


__all__ = ["FovViews", "MIN_FOV_DEG", "RigDraw", "rig_cameras", "stitched_view"]
