"""Portable index metadata: an index folder records no absolute path, so it works wherever it is copied or
cloned together with its checkpoint.

What an index records about the files it came from (``index.json``):

* ``model.identity`` - the checkpoint's ``model_hash``: *which* model built the index (always recorded, always
  checked when a model is paired with the index).
* ``model.checkpoint_relpath`` - *where* that checkpoint was, relative to the index folder (POSIX separators),
  recorded only when the layout travels with a copy of the tree (:func:`travels_with_index`): the checkpoint is
  the index folder or one of its ancestors (``".."`` for ``models/demo/index`` -> ``models/demo``), or lies
  inside the index folder's parent (``"../ckpt"`` for ``run/index`` -> ``run/ckpt``). Otherwise ``null``: the
  user names the checkpoint (``--checkpoint``).
* ``source.name`` / ``source.relpath`` - the tile source's folder or file name and a hint relative to the index
  folder (it may climb any number of levels; only tools that look for the map read it, e.g. a trajectory plot);
  an orthophoto's surface model likewise ``dsm_name`` / ``dsm_relpath``.
* ``model.config`` - the model's configuration, with any absolute path in it cut to its last component.

:func:`recorded_checkpoint` turns ``checkpoint_relpath`` back into a folder, checking that the checkpoint there is
the model the index was built with. Indexes written before this (with an absolute ``model.checkpoint``) still
load when the checkpoint is given; without it they get the same one-line error.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from unifygeo_ros.errors import IndexFormatError
from unifygeo_ros.index.layout import read_meta

#: ``index.json`` key (in ``model``) of the checkpoint folder relative to the index folder
CHECKPOINT_KEY = "checkpoint_relpath"
#: ``index.json`` key (in ``model``) of indexes written before portable metadata: an absolute path
LEGACY_CHECKPOINT_KEY = "checkpoint"
#: ``source`` keys that are location hints (relative to the index folder), not part of what defines the tiling
SOURCE_HINT_KEYS = ("relpath", "dsm_relpath")
#: the checkpoint's metadata file (unifygeo_ros.model.checkpoint.META; not imported: that module needs torch)
CHECKPOINT_META_FILE = "meta.json"
_PASS_CHECKPOINT = "pass --checkpoint (the model the index was built with)"


# ------------------------------------------------------------------------------------------ relative paths
def relative_hint(target: str | os.PathLike, index_dir: str | os.PathLike) -> str | None:
    """``target`` relative to ``index_dir`` (both resolved; POSIX separators), or None when there is no
    relative path between them (another drive)."""
    try:
        rel = os.path.relpath(Path(target).resolve(), Path(index_dir).resolve())
    except ValueError:
        return None
    return Path(rel).as_posix()


def travels_with_index(relpath: str) -> bool:
    """Whether a checkpoint at ``relpath`` from the index folder moves with it: the index folder itself or an
    ancestor (``"."``, ``".."``, ``"../.."``), or a folder inside the index folder or its parent (``"../ckpt"``,
    ``"sub/ckpt"``). Absolute paths and climbs past the parent into other branches do not."""
    p = PurePosixPath(relpath)
    if p.is_absolute() or PureWindowsPath(relpath).drive or "\\" in relpath:
        return False
    parts = [part for part in p.parts if part != "."]
    ups = next((i for i, part in enumerate(parts) if part != ".."), len(parts))
    rest = parts[ups:]
    return ".." not in rest and (ups <= 1 or not rest)


def checkpoint_relpath(checkpoint: str | os.PathLike | None, index_dir: str | os.PathLike) -> str | None:
    """What an index at ``index_dir`` records of ``checkpoint``: its relative path when it travels with the index
    (:func:`travels_with_index`), else None."""
    if not checkpoint:
        return None
    rel = relative_hint(checkpoint, index_dir)
    return rel if rel is not None and travels_with_index(rel) else None


def rebase_hint(relpath: str | None, from_dir: str | os.PathLike, to_dir: str | os.PathLike) -> str | None:
    """A hint recorded relative to ``from_dir``, re-expressed relative to ``to_dir`` (a merge writes elsewhere)."""
    if relpath is None:
        return None
    return relative_hint(Path(from_dir).resolve() / relpath, to_dir)


def without_absolute_paths(value: Any) -> Any:
    """``value`` (JSON-like) with every string that is an absolute path cut to its last component."""
    if isinstance(value, dict):
        return {k: without_absolute_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_absolute_paths(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return PurePosixPath(Path(value).as_posix()).name
    return value


# ------------------------------------------------------------------------------------------ what is recorded
def model_record(identity: str, config: dict | None, checkpoint: str | os.PathLike | None,
                 index_dir: str | os.PathLike) -> dict:
    """The ``model`` block of an index written to ``index_dir`` by the model ``identity`` loaded from
    ``checkpoint`` (None for a model built in memory)."""
    return {"identity": identity, "config": without_absolute_paths(config),
            CHECKPOINT_KEY: checkpoint_relpath(checkpoint, index_dir)}


def source_record(described: dict, index_dir: str | os.PathLike) -> dict:
    """The ``source`` block of an index at ``index_dir``: :meth:`TileSource.describe` with its absolute paths
    replaced by a name and a relative hint."""
    out = dict(described)
    for key, name_key, hint_key in (("path", "name", "relpath"), ("dsm", "dsm_name", "dsm_relpath")):
        path = out.pop(key, None)
        if path:
            out[name_key] = Path(path).name
            out[hint_key] = relative_hint(path, index_dir)
    return without_absolute_paths(out)


def tiling_identity(source: dict) -> dict:
    """What defines a tiling (shards of one build must agree on it): the ``source`` block less its hints."""
    return {k: v for k, v in source.items() if k not in SOURCE_HINT_KEYS}


def rebased_meta(meta: dict, from_dir: str | os.PathLike, to_dir: str | os.PathLike) -> dict:
    """``model`` and ``source`` blocks of ``meta`` (an index at ``from_dir``) with their relative paths re-expressed
    for an index at ``to_dir``."""
    model = dict(meta["model"])
    model.pop(LEGACY_CHECKPOINT_KEY, None)
    rel = rebase_hint(model.get(CHECKPOINT_KEY), from_dir, to_dir)
    model[CHECKPOINT_KEY] = rel if rel is not None and travels_with_index(rel) else None
    source = dict(meta["source"])
    for key in SOURCE_HINT_KEYS:
        if key in source:
            source[key] = rebase_hint(source[key], from_dir, to_dir)
    return {**meta, "model": model, "source": source}


def checkpoint_hint(meta: dict) -> str:
    """For messages: where the index says its checkpoint was."""
    model = meta.get("model", {})
    if model.get(CHECKPOINT_KEY):
        return f"{model[CHECKPOINT_KEY]} from the index folder"
    if model.get(LEGACY_CHECKPOINT_KEY):
        return str(model[LEGACY_CHECKPOINT_KEY])
    return "not recorded"


# ------------------------------------------------------------------------------------------ resolving
def checkpoint_identity(checkpoint_dir: Path) -> str | None:
    """The ``model_hash`` in a checkpoint folder's metadata, or None when there is no readable one."""
    try:
        data = json.loads((checkpoint_dir / CHECKPOINT_META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return str(data["model_hash"]) if isinstance(data, dict) and data.get("model_hash") else None


def recorded_checkpoint(index_dir: str | os.PathLike) -> Path:
    """The checkpoint folder an index records (``model.checkpoint_relpath`` resolved against the index folder),
    after checking that the checkpoint there is the model the index was built with (its ``meta.json``
    ``model_hash`` equals the index's ``model.identity``; the weights are not read).

    Raises one one-line :class:`IndexFormatError` ending in "pass --checkpoint ..." when the index records no
    relative checkpoint (built from a checkpoint elsewhere, or by an older version that stored an absolute
    path), records one that does not travel with the index, or the folder is missing or holds another model;
    and the usual one when the index itself is damaged.
    """
    d = Path(index_dir)
    model = read_meta(d)["model"]
    identity = str(model.get("identity"))
    rel = model.get(CHECKPOINT_KEY)
    if not rel:
        if model.get(LEGACY_CHECKPOINT_KEY):
            raise IndexFormatError(f"index {d} records its checkpoint only as an absolute path from an older build "
                                   f"({model[LEGACY_CHECKPOINT_KEY]}): {_PASS_CHECKPOINT}, or rebuild the index")
        raise IndexFormatError(f"index {d} records no checkpoint beside it (model {identity[:16]}): "
                               f"{_PASS_CHECKPOINT}")
    if not isinstance(rel, str) or not travels_with_index(rel):
        raise IndexFormatError(f"index {d} records checkpoint {rel!r}, not a path within the index's folder tree: "
                               f"{_PASS_CHECKPOINT}")
    path = (d.resolve() / rel).resolve()
    found = checkpoint_identity(path)
    if found is None:
        raise IndexFormatError(f"index {d} records checkpoint {rel!r} ({path}), where there is no checkpoint: "
                               f"{_PASS_CHECKPOINT}")
    if found != identity:
        raise IndexFormatError(f"index {d} records checkpoint {rel!r} ({path}), which holds model {found[:16]}, but "
                               f"the index was built with model {identity[:16]}: {_PASS_CHECKPOINT}, or rebuild "
                               "the index")
    return path


def recorded_source(index_dir: str | os.PathLike) -> Path | None:
    """The tile source folder or file the index was built from (``source.relpath`` resolved against the index
    folder) when it is still there, else None (a hint: nothing about it is checked)."""
    d = Path(index_dir)
    rel = read_meta(d).get("source", {}).get("relpath")
    if not isinstance(rel, str) or os.path.isabs(rel):
        return None
    path = (d.resolve() / rel).resolve()
    return path if path.exists() else None


__all__ = ["CHECKPOINT_KEY", "checkpoint_hint", "checkpoint_identity", "checkpoint_relpath", "model_record",
           "rebased_meta", "recorded_checkpoint", "recorded_source", "relative_hint", "source_record",
           "tiling_identity", "travels_with_index", "without_absolute_paths"]
