"""Where the package's installed data lives: the embedded demo model and index, found the same way by the node,
``unifygeo demo`` and the tests - in the ament share directory when the package is installed by colcon (or pip
into a prefix), next to the package in a source checkout."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from unifygeo_ros.errors import UnifyGeoError

PACKAGE = "unifygeo_ros"
#: the embedded demo, relative to the package's share directory (or the source tree)
DEMO_CHECKPOINT_REL = "models/demo"
DEMO_INDEX_REL = "models/demo/index"


def share_dirs() -> list[Path]:
    """Where the package's installed data may be, most specific first: the ament index (colcon install or
    a sourced ROS workspace), ``<sys.prefix>/share/unifygeo_ros`` (pip into a prefix), the source tree."""
    dirs = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            dirs.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, ValueError, LookupError, OSError):
            pass  # OSError: ament_index_python installed (ROS wheels) but no workspace sourced (AMENT_PREFIX_PATH)
    except ImportError:
        pass
    dirs.append(Path(sys.prefix) / "share" / PACKAGE)
    dirs.append(Path(__file__).resolve().parents[1])  # the source tree: <repo>/unifygeo_ros/resources.py
    out = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def find_resource(rel: str) -> Path | None:
    """The first existing ``<share dir>/<rel>`` of :func:`share_dirs`, or None."""
    for d in share_dirs():
        p = d / rel
        if p.exists():
            return p
    return None


def resolve_model_paths(checkpoint: str = "", index: str = "") -> tuple[Path, Path]:
    """(checkpoint folder, index folder): the given paths (``~`` expanded), or the embedded demo's.

    Raises one :class:`UnifyGeoError` naming what is missing and where it was looked for.
    """
    def one(value: str, rel: str, what: str, param: str) -> Path:
        if value:
            p = Path(os.path.expanduser(value))
            if not p.exists():
                raise UnifyGeoError(f"{what} not found: {p} (parameter {param})")
            return p
        found = find_resource(rel)
        if found is None:
            where = ", ".join(str(d / rel) for d in share_dirs())
            raise UnifyGeoError(f"no {param} given and the embedded demo {what} is not installed (looked in "
                                f"{where}); pass -p {param}:=PATH or the launch argument {param}:=PATH")
        return found

    return (one(checkpoint, DEMO_CHECKPOINT_REL, "model checkpoint", "checkpoint"),
            one(index, DEMO_INDEX_REL, "aerial index", "index"))
