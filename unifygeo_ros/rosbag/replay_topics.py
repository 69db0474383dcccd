"""Which topics of a bag ``unifygeo replay`` reads, when not told: where a bag holds exactly one topic of a needed
type it is taken, and the choice is said in one line; with several candidates one line names them and the flag that
chooses. So ``unifygeo replay BAG --index DIR --track --out OUT`` works on a bag from ``unifygeo bag synth``.

* **camera**: a pinhole rig when image topics have a ``sensor_msgs/CameraInfo`` beside them (image_transport's
  layout: ``<ns>/image`` or ``<ns>/image/compressed`` with ``<ns>/camera_info``; every such camera is part of the
  rig, with one stream per CameraInfo: :func:`one_image_per_camera`), else the one ``sensor_msgs/Image`` or
  ``CompressedImage`` topic (a panorama). ``--image-topic`` (a panorama) and ``--camera-topics`` (a rig) choose.
* **rig mounting** per camera: ``/tf_static`` (the transform from the bag's base frame to the camera's CameraInfo
  frame: the optical z axis gives yaw and pitch), else the bag's ``unifygeo.bag_synth`` metadata, else the node's
  defaults for a camera of that name (``cameras.names``/``cameras.yaw_deg``), else ``--camera-yaw NAME=DEG``.
  Images are stitched exactly as the node's ``input_mode: cameras`` does (``image.rig.RigFrame``).
* **ground truth**: the most informative type present - ``GeoPose[WithCovariance]Stamped`` (WGS84 with
  orientation), then ``NavSatFix``, then a local ``Odometry`` / ``Pose[WithCovariance]Stamped`` under ``/gt/`` -
  when exactly one topic has it (``--gt-topic``).
* **odometry, IMU** (``--track``, ``--fuse``, the IMU heading): :func:`~unifygeo_ros.rosbag.fusion_inputs.
  pick_topics` - the one ``nav_msgs/Odometry`` not under ``/gt/`` and the one ``sensor_msgs/Imu``.
* **kidnap**: ``/gt/kidnap`` (``std_msgs/Header`` stamped at the teleport), else the metadata's ``kidnap_at_s``
  after the bag's start.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.image.rig import RigSettings, rectified_mismatch
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag.fusion_config import FusionConfig
from unifygeo_ros.rosbag.fusion_inputs import GT_PREFIX, pick_topics
from unifygeo_ros.rosbag.msgtypes import IMU
from unifygeo_ros.rosbag.synth_topics import CAMERA_INFO, HEADER, KIDNAP_TOPIC, METADATA_KEY, TF_MESSAGE, TF_STATIC_TOPIC

#: ground-truth types, most informative first (replay_types.GT_TYPES lists what is readable)
GT_PREFERENCE = ((bags.GEOPOSE_STAMPED, bags.GEOPOSE_COV_STAMPED), (bags.NAVSATFIX,),
                 (bags.ODOMETRY, "geometry_msgs/msg/PoseStamped", bags.POSE_COV_STAMPED))


@dataclass(frozen=True)
class RigCamera:
    """One camera of a rig: its name, topics and mounting (REP-103 yaw, pitch up, deg) and where that came from."""

    name: str
    image_topic: str
    info_topic: str
    yaw_deg: float
    pitch_deg: float
    mounting_from: str  # tf_static | metadata | node defaults | --camera-yaw


@dataclass
class ReplayTopics:
    """What replay reads: a panorama topic or a rig, GT, and (optional) odometry, IMU and the kidnap."""

    image: str | None = None  # the panorama's topic (None for a rig)
    image_type: str = bags.IMAGE  # the panorama's message type, or every rig camera's
    rig: tuple[RigCamera, ...] = ()
    gt: str = ""
    gt_type: str = ""
    odometry: str | None = None
    imu: str | None = None
    kidnap_topic: str | None = None
    kidnap_ns: int | None = None  # from the metadata (the topic's message gives it while reading)
    rectified: bool = False  # the rig's images are rectified (--cameras-rectified: the node's cameras.rectified)
    description: dict = field(default_factory=dict)  # the bag's unifygeo.bag_synth metadata ({} without)
    lines: list[str] = field(default_factory=list)  # what was taken and why (printed by the CLI)

    @property
    def image_topics(self) -> list[str]:
        return [c.image_topic for c in self.rig] if self.rig else [self.image]

    def rig_settings(self, base: RigSettings | None = None) -> RigSettings:
        """The node's rig settings for this rig (panorama width and sync tolerance: the node's defaults)."""
        b = base or RigSettings()
        return RigSettings(tuple(c.name for c in self.rig), tuple(c.yaw_deg for c in self.rig),
                           tuple(c.pitch_deg for c in self.rig), b.panorama_width, b.sync_tolerance_s,
                           "compressed" if self.image_type == bags.COMPRESSED_IMAGE else "raw", self.rectified)


#: a ``kidnap_at_s`` beyond this (seconds after the bag's start, 31 years) is no time in a recording
MAX_KIDNAP_AT_S = 1e9


def _mapping(value: Any) -> dict:
    """``value`` when it is a mapping, else ``{}`` (a damaged ``metadata.yaml`` holds anything anywhere)."""
    return value if isinstance(value, dict) else {}


def _finite(value: Any) -> bool:
    """A real, finite number (JSON/YAML ``true`` is no number, ``NaN``/``Infinity`` are not finite)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _camera_problem(cam: Any) -> str:
    """Why one entry of the description's ``cameras`` is unusable ("" when it is fine)."""
    if not isinstance(cam, dict):
        return f"entry {cam!r:.40} is not a mapping"
    for key in ("name", "image_topic"):
        if not isinstance(cam.get(key), str) or not cam[key]:
            return f"an entry's {key} {cam.get(key)!r:.40} is not a name"
    bad = [k for k in ("yaw_deg", "pitch_deg") if k in cam and not _finite(cam[k])]
    return f"camera {cam['name']!r}: {bad[0]} {cam[bad[0]]!r:.40} is not a finite number" if bad else ""


def checked_description(desc: dict, warnings: list[str] | None = None) -> dict:
    """``desc`` (the ``unifygeo.bag_synth`` description) less each field replay reads that holds the wrong kind of
    value - ``kidnap_at_s`` (a finite number of seconds in [0, :data:`MAX_KIDNAP_AT_S`] or null), ``north_aligned``
    (true/false, not the string "false"), ``kidnap_topic`` / ``base_frame`` (names), ``cameras`` (a list of
    mappings with a ``name``, an ``image_topic`` and finite ``yaw_deg``/``pitch_deg``): a dropped field is said in
    one line in ``warnings``. None of them is essential (replay reads bags without a description): replay goes on
    as for a bag without that field."""
    out = dict(desc)
    problems: dict[str, str] = {}
    kid = out.get("kidnap_at_s")
    if kid is not None and not (_finite(kid) and 0.0 <= kid <= MAX_KIDNAP_AT_S):
        problems["kidnap_at_s"] = f"{kid!r:.40} is not a number of seconds in [0, {MAX_KIDNAP_AT_S:g}]"
    if "north_aligned" in out and not isinstance(out["north_aligned"], bool):
        problems["north_aligned"] = f"{out['north_aligned']!r:.40} is not a boolean (true or false)"
    for key in ("kidnap_topic", "base_frame"):
        if out.get(key) is not None and not (isinstance(out[key], str) and out[key]):
            problems[key] = f"{out[key]!r:.40} is not a name"
    cams = out.get("cameras")
    if cams is not None:
        why = (next((p for p in map(_camera_problem, cams) if p), "") if isinstance(cams, list)
               else f"{cams!r:.40} is not a list")
        if why:
            problems["cameras"] = why
    for key, why in problems.items():
        del out[key]
        if warnings is not None:
            warnings.append(f"bag metadata {METADATA_KEY}: {key} ignored ({why})")
    return out


def bag_description(bag: str | Path, warnings: list[str] | None = None) -> tuple[dict, int | None]:
    """(the ``unifygeo.bag_synth`` description in the bag's ``metadata.yaml`` ({} without one), the bag's starting
    time in ns (None when unknown)). A damaged ``metadata.yaml`` (cut short, not YAML, not the layout of rosbag2's)
    gives ({}, None): :func:`~unifygeo_ros.rosbag.io.open_bag` says the bag is damaged. A description that is no
    JSON object is ignored, a field of the wrong kind dropped (:func:`checked_description`), each with a line in
    ``warnings``."""
    import yaml

    p = Path(bag)
    meta = (p if p.is_dir() else p.parent) / "metadata.yaml"
    try:
        doc = yaml.safe_load(meta.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}, None
    info = _mapping(_mapping(doc).get("rosbag2_bagfile_information"))
    start = _mapping(info.get("starting_time")).get("nanoseconds_since_epoch")
    try:
        start_ns = int(start) if start is not None and not isinstance(start, bool) else None
    except (TypeError, ValueError, OverflowError):
        start_ns = None
    text = _mapping(info.get("custom_data")).get(METADATA_KEY)
    if text in (None, ""):
        return {}, start_ns
    try:
        desc = json.loads(text)
    except (TypeError, ValueError):  # json.JSONDecodeError is a ValueError
        desc = None
    if not isinstance(desc, dict):
        if warnings is not None:
            warnings.append(f"bag metadata {METADATA_KEY} is not a JSON object: ignored")
        return {}, start_ns
    return checked_description(desc, warnings), start_ns


def _info_sibling(image_topic: str) -> str:
    """``<ns>/camera_info`` of ``<ns>/<image>`` or ``<ns>/<image>/compressed`` (image_transport's layout)."""
    t = image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic
    return t.rsplit("/", 1)[0] + "/camera_info"


def one_image_per_camera(images: list, rectified: bool) -> tuple[list, list[str]]:
    """A bag often holds several streams of one camera beside its one CameraInfo (``image_raw``, ``image_rect``,
    their ``/compressed``): one per camera, preferring what ``rectified`` (the node's ``cameras.rectified``) expects
    (``image_rect`` or not) and then the uncompressed one; (the chosen topics in the bag's order, the others' names)."""
    groups: dict[str, list] = {}
    for t in images:
        groups.setdefault(_info_sibling(t.topic), []).append(t)
    best = {info: min(ts, key=lambda t: (("image_rect" in t.topic) != rectified, t.msgtype == bags.COMPRESSED_IMAGE,
                                         t.topic)) for info, ts in groups.items()}
    chosen = [t for t in images if best[_info_sibling(t.topic)] is t]
    return chosen, [t.topic for t in images if best[_info_sibling(t.topic)] is not t]


def _camera_name(image_topic: str, description: dict) -> str:
    for c in description.get("cameras") or []:
        if image_topic in (c.get("image_topic"), str(c.get("image_topic", "")) + "/compressed"):
            return str(c.get("name"))
    ns = _info_sibling(image_topic).rsplit("/", 1)[0]
    return ns.rsplit("/", 1)[-1] or image_topic


def _yaw_pitch_from_quaternion(x: float, y: float, z: float, w: float) -> tuple[float, float]:
    """The optical z axis (forward) of a camera frame rotated by (x, y, z, w) in the base frame -> (yaw, pitch) deg."""
    fwd = np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])
    return math.degrees(math.atan2(fwd[1], fwd[0])), math.degrees(math.asin(max(-1.0, min(1.0, fwd[2]))))


def _read_mountings(reader: Any, infos: list[str], base_frame: str, warnings: list[str]) -> dict[str, tuple]:
    """info topic -> (yaw, pitch) from ``/tf_static`` (the transform base frame -> the CameraInfo's frame)."""
    tf_conns = [c for c in reader.connections if c.topic == TF_STATIC_TOPIC and c.msgtype == TF_MESSAGE]
    info_conns = [c for c in reader.connections if c.topic in infos and c.msgtype == CAMERA_INFO]
    if not tf_conns or not info_conns:
        return {}
    frames: dict[str, str] = {}
    mount: dict[str, tuple[float, float]] = {}
    for conn, _, msg in bags.iter_messages(reader, tf_conns + info_conns, warnings):
        if conn.topic == TF_STATIC_TOPIC:
            for tf in msg.transforms:
                if tf.header.frame_id.lstrip("/") == base_frame:
                    q = tf.transform.rotation
                    mount[tf.child_frame_id.lstrip("/")] = _yaw_pitch_from_quaternion(q.x, q.y, q.z, q.w)
        else:
            frames.setdefault(conn.topic, msg.header.frame_id.lstrip("/"))
        if len(frames) == len(infos) and mount:
            break
    return {t: mount[f] for t, f in frames.items() if f in mount}


def _rig(reader: Any, images: list[str], description: dict, camera_yaw: dict[str, float],
         warnings: list[str]) -> tuple[RigCamera, ...]:
    infos = [_info_sibling(t) for t in images]
    tf = _read_mountings(reader, infos, str(description.get("base_frame", "base_link")), warnings)
    meta = {str(c.get("name")): c for c in description.get("cameras") or []}
    defaults = RigSettings()
    out = []
    for topic, info in zip(images, infos):
        name = _camera_name(topic, description)
        if name in camera_yaw:
            yaw, pitch, src = float(camera_yaw[name]), 0.0, "--camera-yaw"
        elif info in tf:
            (yaw, pitch), src = tf[info], "tf_static"
        elif name in meta and "yaw_deg" in meta[name]:
            yaw, pitch, src = float(meta[name]["yaw_deg"]), float(meta[name].get("pitch_deg", 0.0)), "metadata"
        elif defaults.default_mounting(name) is not None:
            (yaw, pitch), src = defaults.default_mounting(name), "node defaults"
        else:
            raise UnifyGeoError(f"camera {name!r} ({topic}): its mounting is not in /tf_static, the bag's metadata or "
                                f"the node's default rig: pass --camera-yaw {name}=DEG")
        out.append(RigCamera(name, topic, info, round(yaw, 6), round(pitch, 6), src))
    return tuple(out)


def _one(cands: list[bags.TopicInfo], what: str, flag: str, avail: str) -> bags.TopicInfo:
    if not cands:
        raise bags.BagError(f"no {what} in the bag; topics found: {avail}")
    if len(cands) > 1:
        raise bags.BagError(f"several {what} topics ({', '.join(c.topic for c in cands)}): choose one with {flag}")
    return cands[0]


def choose_topics(reader: Any, bag: str | Path, *, image_topic: str | None = None,
                  camera_topics: tuple[str, ...] = (), gt_topic: str | None = None, odom_topic: str | None = None,
                  imu_topic: str | None = None, need_odometry: bool = False,
                  camera_yaw: dict[str, float] | None = None, warnings: list[str] | None = None,
                  cameras_rectified: bool = False) -> ReplayTopics:
    """The topics replay reads (module doc); :class:`~unifygeo_ros.rosbag.io.BagError` (one line) when a needed
    topic is missing or ambiguous."""
    warnings = warnings if warnings is not None else []
    topics = bags.list_topics(reader)
    avail = bags.describe_topics(topics)
    by_name = {t.topic: t for t in topics}
    description, start_ns = bag_description(bag, warnings)
    out = ReplayTopics(description=description, rectified=bool(cameras_rectified))
    images = [t for t in topics if t.msgtype in bags.IMAGE_TYPES]
    if image_topic:
        out.image = image_topic
        out.image_type = bags.connections_for(reader, image_topic, bags.IMAGE_TYPES)[0].msgtype
    elif camera_topics:
        for t in camera_topics:
            bags.connections_for(reader, t, bags.IMAGE_TYPES)
        out.rig = _rig(reader, list(camera_topics), description, camera_yaw or {}, warnings)
    else:
        with_info = [t for t in images if by_name.get(_info_sibling(t.topic), None) is not None
                     and by_name[_info_sibling(t.topic)].msgtype == CAMERA_INFO]
        with_info, also = one_image_per_camera(with_info, out.rectified)
        if also:
            prefer = "image_rect" if out.rectified else "not image_rect"
            out.lines.append(f"camera: one image topic per CameraInfo (prefer {prefer}, then uncompressed): also in "
                             f"the bag {', '.join(also)} (--camera-topics chooses)")
        if with_info:
            order = [str(c.get("image_topic")) for c in description.get("cameras") or []]
            defaults = RigSettings().camera_names

            def rank(t: bags.TopicInfo) -> tuple:  # the bag's own order, else the node's default rig's, else name
                name = _camera_name(t.topic, description)
                return (order.index(t.topic) if t.topic in order else len(order),
                        defaults.index(name) if name in defaults else len(defaults), t.topic)

            out.rig = _rig(reader, [t.topic for t in sorted(with_info, key=rank)], description, camera_yaw or {},
                           warnings)
            cams = ", ".join(f"{c.name} {c.image_topic} (yaw {c.yaw_deg:g} deg, from {c.mounting_from})"
                             for c in out.rig)
            out.lines.append(f"camera: a rig of {len(out.rig)} pinhole camera(s) with CameraInfo: {cams} "
                             "(--image-topic / --camera-topics choose)")
        else:
            one = _one(images, "image (sensor_msgs/Image or CompressedImage)", "--image-topic", avail)
            out.image, out.image_type = one.topic, one.msgtype
            out.lines.append(f"camera: {one.topic} ({one.msgtype}, the only image topic)")
    kinds = {by_name[c.image_topic].msgtype if c.image_topic in by_name else bags.IMAGE for c in out.rig}
    if len(kinds) > 1:  # the node's cameras.transport is one setting for the whole rig
        raise UnifyGeoError(f"the rig's cameras mix {' and '.join(sorted(kinds))}: the node subscribes one "
                            "transport for every camera (cameras.transport raw or compressed)")
    for cam in out.rig:
        bags.connections_for(reader, cam.info_topic, (CAMERA_INFO,))
    if out.rig:
        out.image_type = kinds.pop()
        if out.image_type == bags.COMPRESSED_IMAGE:
            out.lines.append("camera transport: compressed (the node's cameras.transport: compressed)")
        out.lines.append("camera lens: " + ("rectified images, CameraInfo's P (the node's cameras.rectified: true)"
                                            if out.rectified else "raw images, CameraInfo's K and distortion model "
                                            "(--cameras-rectified for image_rect topics)"))
        if (line := rectified_mismatch([c.image_topic for c in out.rig], out.rectified)) is not None:
            warnings.append(line)
    _choose_gt(out, topics, gt_topic, reader, avail)
    fcfg = FusionConfig(odom_topic=odom_topic, imu_topic=imu_topic)
    try:
        out.odometry, out.imu = pick_topics(topics, fcfg, out.gt, purpose="--track" if need_odometry else "replay")
    except bags.BagError:
        if need_odometry:
            raise
        out.odometry = None
        imus = [t.topic for t in topics if t.msgtype == IMU]
        out.imu = imu_topic or (imus[0] if len(imus) == 1 else None)
    if need_odometry or out.odometry:
        out.lines.append(f"odometry: {out.odometry}" + ("" if odom_topic else " (the only nav_msgs/Odometry not under "
                                                        f"{GT_PREFIX}; --odom-topic chooses)"))
    if out.imu:
        out.lines.append(f"IMU: {out.imu}" + ("" if imu_topic else " (the only sensor_msgs/Imu; --imu-topic chooses)"))
    kid = by_name.get(str(description.get("kidnap_topic") or KIDNAP_TOPIC))
    if kid is not None and kid.msgtype == HEADER:
        out.kidnap_topic = kid.topic
    elif description.get("kidnap_at_s") is not None:
        if start_ns is None:
            warnings.append(f"bag metadata {METADATA_KEY}: kidnap_at_s ignored (the bag's starting_time is unknown)")
        else:
            out.kidnap_ns = start_ns + int(round(float(description["kidnap_at_s"]) * 1e9))
    return out


def _choose_gt(out: ReplayTopics, topics: list[bags.TopicInfo], gt_topic: str | None, reader: Any,
               avail: str) -> None:
    from unifygeo_ros.rosbag.replay_types import GT_TYPES

    if gt_topic:
        out.gt, out.gt_type = gt_topic, bags.connections_for(reader, gt_topic, GT_TYPES)[0].msgtype
        return
    every = []
    for tier in GT_PREFERENCE:
        local = tier[0] == bags.ODOMETRY
        cands = [t for t in topics if t.msgtype in tier and (not local or t.topic.startswith(GT_PREFIX))]
        every += cands
        if cands and not out.gt:
            one = _one(cands, f"ground-truth {'/'.join(c.rsplit('/', 1)[-1] for c in tier)}", "--gt-topic", avail)
            out.gt, out.gt_type = one.topic, one.msgtype
    if not out.gt:
        raise bags.BagError("no ground truth in the bag (GeoPoseStamped, NavSatFix, or a local Odometry/Pose under "
                            f"{GT_PREFIX}): pass --gt-topic; topics found: {avail}")
    others = [t.topic for t in every if t.topic != out.gt]
    out.lines.append(f"ground truth: {out.gt} ({out.gt_type}" + (f"; also in the bag: {', '.join(others)}; --gt-topic "
                                                                 "chooses)" if others else ", the only one)"))
