"""The ground the rosbag2 modules stand on: message type names, a rosbags typestore that knows
``geographic_msgs``, ``builtin_interfaces/Time`` <-> nanoseconds, and :class:`BagError`.

* ``geographic_msgs`` is not in rosbags' built-in stores. Its definitions are registered from the upstream
  ``.msg`` text (ros-geographic-info/geographic_info, ``geographic_msgs/msg/``), kept verbatim in
  :data:`GEOGRAPHIC_MSGS_DEFS` so an installed package needs no source checkout; a test compares them with
  ``third_party/geographic_msgs/msg/`` when that folder exists. Bags written with :func:`make_typestore` embed
  every definition (sqlite3: ``message_definitions`` table; MCAP: ``ros2msg`` schemas), so ``ros2 bag`` and
  rosbags read them back without this module.

Everything here is re-exported by :mod:`unifygeo_ros.rosbag.io`, the module the rest of the project imports.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from unifygeo_ros.errors import UnifyGeoError


#: rosbags store the project writes with and falls back to for bags without embedded definitions.
ROS_DISTRO_STORE = "ROS2_KILTED"

#: Upstream ``geographic_msgs`` definitions (ros2 branch, release 1.0.6; the subset the project publishes or
#: reads), verbatim: ``third_party/geographic_msgs/msg/<Name>.msg``.
GEOGRAPHIC_MSGS_DEFS: dict[str, str] = {
    "geographic_msgs/msg/GeoPoint": (
        '# Geographic point, using the WGS 84 reference ellipsoid.\n'
        '\n'
        '# Latitude [degrees]. Positive is north of equator; negative is south\n'
        '# (-90 <= latitude <= +90).\n'
        'float64 latitude\n'
        '\n'
        '# Longitude [degrees]. Positive is east of prime meridian; negative is\n'
        '# west (-180 <= longitude <= +180). At the poles, latitude is -90 or\n'
        '# +90, and longitude is irrelevant, but must be in range.\n'
        'float64 longitude\n'
        '\n'
        '# Altitude [m]. Positive is above the WGS 84 ellipsoid (NaN if unspecified).\n'
        'float64 altitude\n'
    ),
    "geographic_msgs/msg/GeoPose": (
        '# Geographic pose, using the WGS 84 reference ellipsoid.\n'
        '#\n'
        '# Orientation uses the East-North-Up (ENU) frame of reference.\n'
        '# (But, what about singularities at the poles?)\n'
        '\n'
        'GeoPoint position\n'
        'geometry_msgs/Quaternion orientation\n'
    ),
    "geographic_msgs/msg/GeoPoseStamped": (
        'std_msgs/Header header\n'
        'geographic_msgs/GeoPose pose\n'
    ),
    "geographic_msgs/msg/GeoPoseWithCovariance": (
        '# Geographic pose, using the WGS 84 reference ellipsoid.\n'
        '#\n'
        '# Orientation uses the East-North-Up (ENU) frame of reference.\n'
        '# (But, what about singularities at the poles?)\n'
        '\n'
        'GeoPose pose\n'
        '\n'
        '# Row-major representation of the 6x6 covariance matrix\n'
        '# The orientation parameters use a fixed-axis representation.\n'
        '# In order, the parameters are:\n'
        '# (Lat, Lon, Alt, rotation about E (East) axis, rotation about N (North) axis, rotation about U (Up) axis)\n'
        'float64[36] covariance'
    ),
    "geographic_msgs/msg/GeoPoseWithCovarianceStamped": (
        'std_msgs/Header header\n'
        'geographic_msgs/GeoPoseWithCovariance pose\n'
    ),
}

# message type names used across replay / bag synthesis
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
NAVSATFIX = "sensor_msgs/msg/NavSatFix"
ODOMETRY = "nav_msgs/msg/Odometry"
IMU = "sensor_msgs/msg/Imu"
GEOPOSE_STAMPED = "geographic_msgs/msg/GeoPoseStamped"
GEOPOSE_COV_STAMPED = "geographic_msgs/msg/GeoPoseWithCovarianceStamped"
POSE_COV_STAMPED = "geometry_msgs/msg/PoseWithCovarianceStamped"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)


class BagError(UnifyGeoError):
    """A bag is missing, truncated, corrupt, or lacks the topics asked for."""


# ------------------------------------------------------------------------------------------------ typestore
def geographic_msgs_defs(third_party_dir: str | Path | None = None) -> dict[str, str]:
    """Definitions to register: the embedded upstream text, or the ``.msg`` files of ``third_party_dir``
    (``<dir>/<Name>.msg``) for the same types when given."""
    if third_party_dir is None:
        return dict(GEOGRAPHIC_MSGS_DEFS)
    d = Path(third_party_dir)
    return {name: (d / f"{name.rsplit('/', 1)[1]}.msg").read_text() for name in GEOGRAPHIC_MSGS_DEFS}


def make_typestore(third_party_dir: str | Path | None = None) -> Any:
    """A rosbags typestore (ROS 2 Kilted) with the ``geographic_msgs`` types registered."""
    # rosbags is an optional extra (``pip install .[bags]``): imported where a typestore is made
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(getattr(Stores, ROS_DISTRO_STORE))
    types: dict[str, Any] = {}
    for name, text in geographic_msgs_defs(third_party_dir).items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


# ---------------------------------------------------------------------------------------------------- stamps
def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (anything with ``sec``/``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_or_log_time(msg: Any, log_ns: int) -> int:
    """A message's header stamp (ns), or its log time when the stamp is zero or the message has no header."""
    h = getattr(msg, "header", None)
    t = stamp_to_ns(h.stamp) if h is not None else 0
    return t if t > 0 else int(log_ns)


def ns_to_stamp(store: Any, t_ns: int) -> Any:
    """Integer nanoseconds -> ``builtin_interfaces/msg/Time`` of ``store``."""
    t_ns = int(t_ns)
    return store.types["builtin_interfaces/msg/Time"](sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)


def header(store: Any, t_ns: int, frame_id: str) -> Any:
    """``std_msgs/msg/Header`` of ``store`` stamped ``t_ns`` (integer nanoseconds) in ``frame_id``."""
    return store.types["std_msgs/msg/Header"](stamp=ns_to_stamp(store, t_ns), frame_id=frame_id)

