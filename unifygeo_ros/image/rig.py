"""A camera rig's ROS messages -> the stitched panorama, the node's ``input_mode: cameras`` and replay alike. ROS-free
(messages duck-typed).

* :class:`RigSettings`: the rig as the node's ``cameras.*`` parameters describe it.
* :func:`camera_from_info`: a ``sensor_msgs/CameraInfo`` -> a :class:`~unifygeo_ros.image.stitch.PinholeCamera`
  (raw images: ``K`` and the lens distortion; rectified ones: ``P``; ROI and binning as CameraInfo defines them).
* :class:`RigFrame`: one synchronised set of images, stitched on demand (:mod:`unifygeo_ros.image.stitch`);
  :class:`RigCollector`: the camera callbacks' bookkeeping that makes the sets and says why none is made.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unifygeo_ros.errors import ImageError
from unifygeo_ros.image.stitch import PinholeCamera, stitcher_for


def camera_from_info(name: str, info, yaw_deg: float, pitch_deg: float, rectified: bool = False) -> PinholeCamera:
    """The camera a ``sensor_msgs/CameraInfo`` (duck-typed: ``k``, ``p``, ``d``, ``distortion_model``, ``width``,
    ``height``, optional ``binning_x``/``binning_y`` and ``roi``) describes, mounted at ``yaw_deg`` / ``pitch_deg``:
    for raw images its ``K`` and lens distortion (:mod:`~unifygeo_ros.image.lens`); for ``rectified`` ones
    (image_rect) the 3 x 3 part of its projection ``P`` (``K`` when ``P`` is unset) and no distortion, as
    image_proc's rectification leaves them. As CameraInfo defines them, ``K``/``P`` and ``width``/``height`` are the
    full-resolution sensor's: a region of interest (``roi`` with a size) shifts the principal point and is the
    image, binning divides both."""
    if rectified:
        p = getattr(info, "p", None)
        p = np.asarray(() if p is None else p, float).reshape(-1)
        k = p.reshape(3, 4)[:, :3] if p.size == 12 and p[0] > 0 and p[5] > 0 else np.asarray(info.k, float)
        model, d = "", ()
    else:
        k, model, d = info.k, str(getattr(info, "distortion_model", "") or ""), getattr(info, "d", None)
    k = np.array(k, float).reshape(3, 3)
    x0, y0, w, h = 0, 0, int(info.width), int(info.height)
    roi = getattr(info, "roi", None)
    if roi is not None and int(getattr(roi, "width", 0)) > 0 and int(getattr(roi, "height", 0)) > 0:
        x0, y0, w, h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    bx, by = max(1, int(getattr(info, "binning_x", 0) or 0)), max(1, int(getattr(info, "binning_y", 0) or 0))
    k[0, 2] -= x0
    k[1, 2] -= y0
    k[0] /= bx
    k[1] /= by
    return PinholeCamera(name, tuple(float(x) for x in k.reshape(-1)), w // bx, h // by, yaw_deg, pitch_deg, model,
                         () if d is None else tuple(d))


def rectified_mismatch(image_topics: list[str], rectified: bool) -> str | None:
    """A one-line warning when the rig's image topics' names say ``image_rect`` but its images are taken as raw
    (``cameras.rectified`` false: CameraInfo's distortion would be applied a second time), or ``image_raw`` while
    taken as rectified; None when the names say nothing against the setting."""
    rect = [t for t in image_topics if "image_rect" in t]
    raw = [t for t in image_topics if "image_raw" in t]
    if rect and not rectified:
        return (f"{rect[0]} looks rectified but cameras.rectified is false: its CameraInfo's distortion is applied "
                "again (set cameras.rectified true, replay --cameras-rectified)")
    if raw and rectified:
        return (f"{raw[0]} looks raw but cameras.rectified is true: its lens distortion is ignored (set "
                "cameras.rectified false)")
    return None


@dataclass(frozen=True)
class RigSettings:
    """A camera rig as the node's ``cameras.*`` parameters describe it (their defaults; ``unifygeo replay`` builds
    one from a bag's rig): :meth:`RigFrame.collect` reads these names (the node's settings have them too)."""

    camera_names: tuple = ("front", "left", "back", "right")
    camera_yaw_deg: tuple = (0.0, 90.0, 180.0, -90.0)  #: REP-103 yaw of each optical axis (left = +90), deg
    camera_pitch_deg: tuple = (0.0, 0.0, 0.0, 0.0)  #: up positive, deg
    panorama_width: int = 512  #: width of the stitched panorama, px (height = width / 2)
    sync_tolerance_s: float = 0.05  #: images of one set whose stamps differ by more are not stitched
    #: image_transport of the cameras' images: "raw" (sensor_msgs/Image on cameras/<name>/image) or "compressed"
    #: (sensor_msgs/CompressedImage, JPEG or PNG, on cameras/<name>/image/compressed)
    camera_transport: str = "raw"
    #: the images are rectified (image_rect): the projection P's 3 x 3 part is their K and the distortion is gone;
    #: else (image_raw, as the camera took them) CameraInfo's K and its distortion model and D
    camera_rectified: bool = False

    def default_mounting(self, name: str) -> tuple[float, float] | None:
        """(yaw, pitch) of a camera of this name in these settings (the node's defaults), or None."""
        if name not in self.camera_names:
            return None
        i = self.camera_names.index(name)
        return float(self.camera_yaw_deg[i]), float(self.camera_pitch_deg[i])


def _stamp_s(msg) -> float:
    """An image message's header stamp in seconds."""
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


@dataclass
class RigFrame:
    """One synchronised set of the rig's images (ROS messages, duck-typed: ``sensor_msgs/Image`` or
    ``CompressedImage``), stitched on demand."""

    stamp: object  # the newest image's header stamp
    newest_stamp_s: float
    images: list
    infos: list
    names: tuple
    yaw_deg: tuple
    pitch_deg: tuple
    width: int
    rectified: bool = False  #: settings.camera_rectified (:func:`camera_from_info`)

    @classmethod
    def collect(cls, settings, images: dict, infos: dict, last_stamp_s: float) -> "RigFrame | None":
        """A frame when every camera has an image and a CameraInfo, the images' stamps lie within
        ``settings.sync_tolerance_s`` and are newer than the last frame's; else None (wait for more:
        :meth:`waiting_for` says why)."""
        return None if cls.waiting_for(settings, images, infos, last_stamp_s)[0] else cls.of(settings, images, infos)

    @classmethod
    def of(cls, settings, images: dict, infos: dict) -> "RigFrame":
        """The frame of a set :meth:`waiting_for` found complete."""
        names = settings.camera_names
        stamps = [images[n].header.stamp for n in names]
        secs = [_stamp_s(images[n]) for n in names]
        newest = int(np.argmax(secs))
        return cls(stamps[newest], secs[newest], [images[n] for n in names], [infos[n] for n in names],
                   tuple(names), tuple(settings.camera_yaw_deg), tuple(settings.camera_pitch_deg),
                   settings.panorama_width, bool(settings.camera_rectified))

    @staticmethod
    def waiting_for(settings, images: dict, infos: dict, last_stamp_s: float) -> tuple[str, str]:
        """Why :meth:`collect` makes no frame of these images yet: (kind, one line), kind ``missing`` (cameras
        without an image or a CameraInfo), ``out_of_sync`` (images further apart than ``sync_tolerance_s``) or
        ``stale`` (none newer than the last frame); ``("", "")`` when it does make one."""
        names = settings.camera_names
        no_image = [n for n in names if n not in images]
        no_info = [n for n in names if n not in infos]
        if no_image or no_info:
            return "missing", "; ".join(([f"no image from {', '.join(no_image)}"] if no_image else [])
                                        + ([f"no CameraInfo from {', '.join(no_info)}"] if no_info else []))
        secs = {n: _stamp_s(images[n]) for n in names}
        spread = max(secs.values()) - min(secs.values())
        if spread > settings.sync_tolerance_s:
            first, last = min(secs, key=secs.get), max(secs, key=secs.get)
            return "out_of_sync", (f"the images of {first} and {last} are {spread:.3f} s apart, more than "
                                   f"cameras.sync_tolerance_s {settings.sync_tolerance_s:g}")
        if max(secs.values()) <= last_stamp_s:
            return "stale", "no image newer than the last set"
        return "", ""

    def decode(self) -> np.ndarray:
        from unifygeo_ros.image.codec import compressed_fields_to_rgb, image_msg_to_rgb

        cams, rgbs = [], []
        for name, img, info, yaw, pitch in zip(self.names, self.images, self.infos, self.yaw_deg, self.pitch_deg):
            rgb = (image_msg_to_rgb(img, f"camera {name!r} image") if hasattr(img, "encoding")  # sensor_msgs/Image
                   else compressed_fields_to_rgb(img.format, img.data, f"camera {name!r} compressed image"))
            cam = camera_from_info(name, info, yaw, pitch, self.rectified)
            if (cam.width, cam.height) != (rgb.shape[1], rgb.shape[0]):  # a resized stream: K scaled with it
                cam = cam.scaled_to(rgb.shape[1], rgb.shape[0])
            cams.append(cam)
            rgbs.append(rgb)
        return stitcher_for(cams, self.width).stitch(rgbs)


#: an image this much older than the last set's, s, means the clock went back (a bag looped, the simulation was
#: reset): the collector starts again, as the tracker, the odometry and the IMU history do (the same threshold:
#: localization.sensor_feed.TIME_BACK_RESTART_S, not imported here, below it)
TIME_BACK_RESTART_S = 1.0


class RigCollector:
    """The camera callbacks' bookkeeping, the node's and replay's alike: the latest image and CameraInfo of each
    camera; a :class:`RigFrame` when they complete a set (then the images start again, the CameraInfos stay); why
    not and how often, for diagnostics."""

    def __init__(self, settings):
        self.settings = settings
        self.images: dict = {}
        self.infos: dict = {}
        self.last_stamp_s = -1.0
        self.sets = 0  #: sets stitched
        self.restarts = 0  #: times the images' clock went back by more than TIME_BACK_RESTART_S (started again)
        #: times every camera's latest image was there but their stamps further apart than sync_tolerance_s
        self.out_of_sync = 0
        self.waiting = "no image or CameraInfo received yet"  #: why the last message completed no set ("" when it did)
        self.waiting_kind = "missing"  #: its kind (:meth:`RigFrame.waiting_for`)

    def image(self, name: str, msg) -> RigFrame | None:
        """A camera's image (``sensor_msgs/Image`` or ``CompressedImage``)."""
        self.images[name] = msg
        return self._collect()

    def info(self, name: str, msg) -> RigFrame | None:
        """A camera's ``CameraInfo`` (a set waiting only for it goes out now)."""
        self.infos[name] = msg
        return self._collect()

    def lens_summary(self) -> str:
        """How each camera's images are undistorted, from its latest CameraInfo (the node's /diagnostics
        ``rig_lens``): ``front: plumb_bob; left: no distortion; ...``, ``rectified (P)`` with cameras.rectified."""
        parts = []
        for name in self.settings.camera_names:
            info = self.infos.get(name)
            if info is None:
                parts.append(f"{name}: no CameraInfo yet")
                continue
            try:
                cam = camera_from_info(name, info, 0.0, 0.0, bool(self.settings.camera_rectified))
            except ImageError as exc:
                parts.append(f"{name}: unusable ({exc})")
                continue
            what = ("rectified (P)" if self.settings.camera_rectified else cam.distortion_model or "no distortion")
            parts.append(f"{name}: {what}")
        return "; ".join(parts)

    def _collect(self) -> RigFrame | None:
        stamps = [_stamp_s(m) for m in self.images.values()]
        if stamps and max(stamps) < self.last_stamp_s - TIME_BACK_RESTART_S:  # a bag looped, the sim clock reset
            self.last_stamp_s = -1.0  # else every later set is "stale" until the clock passes the old stamp
            self.restarts += 1
        kind, self.waiting = RigFrame.waiting_for(self.settings, self.images, self.infos, self.last_stamp_s)
        self.waiting_kind = kind
        if kind:
            self.out_of_sync += kind == "out_of_sync"
            return None
        frame = RigFrame.of(self.settings, self.images, self.infos)
        self.last_stamp_s, self.images = frame.newest_stamp_s, {}
        self.sets += 1
        return frame
