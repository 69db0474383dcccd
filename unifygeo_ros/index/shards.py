"""Sharded builds: which tiles shard ``i/N`` builds, and the merge of the shards into one index identical to an
unsharded build (``unifygeo index build --shard i/N`` and ``unifygeo index merge``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from unifygeo_ros.errors import IndexFormatError
from unifygeo_ros.index.data import AerialIndex, IndexData
from unifygeo_ros.index.disk import index_data, load_index, write_index
from unifygeo_ros.index.portable import rebased_meta, relative_hint, tiling_identity

#: metadata blocks that every shard of one build shares (the model is compared by identity, the source by its
#: tiling: location hints may differ between shard folders)
SHARD_INVARIANT = ("model", "tile_m", "tile_px", "gsd_m", "origin", "source", "descriptor_dim")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``; None stays None."""
    if text in (None, ""):
        return None
    try:
        i_s, n_s = str(text).split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ValueError(f"--shard must be I/N with integers (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def shard_rows(count: int, shard: tuple[int, int] | None) -> np.ndarray:
    """The deterministic subset of ``count`` tiles that shard ``(i, N)`` builds: rows ``i, i+N, i+2N, ...``
    (interleaved, so shards of a city are balanced and spatially spread)."""
    if shard is None:
        return np.arange(count, dtype=np.int64)
    i, n = shard
    return np.arange(i, count, n, dtype=np.int64)


def _check_same_build(loaded: list[AerialIndex]) -> None:
    """Every shard was built by the same model from the same source and tiling."""
    first = loaded[0]
    for other in loaded[1:]:
        if other.model_identity != first.model_identity:
            raise IndexFormatError(
                f"cannot merge {other.path} with {first.path}: built with different models "
                f"({other.model_identity[:16]} vs {first.model_identity[:16]})")
        for key in SHARD_INVARIANT[1:]:
            a, b = first.meta.get(key), other.meta.get(key)
            if key == "source" and isinstance(a, dict) and isinstance(b, dict):
                a, b = tiling_identity(a), tiling_identity(b)
            if a != b:
                raise IndexFormatError(f"cannot merge {other.path} with {first.path}: their {key} differs "
                                       f"({b!r} vs {a!r})")


def _check_shard_set(loaded: list[AerialIndex]) -> None:
    """The folders are shards ``0..N-1`` of one ``N``, each exactly once (a single whole index passes)."""
    shards = [ix.meta.get("shard") for ix in loaded]
    if any(s is None for s in shards):
        if len(loaded) == 1:
            return
        whole = [str(ix.path) for ix, s in zip(loaded, shards) if s is None]
        raise IndexFormatError(f"cannot merge: {', '.join(whole)} is a whole index, not a shard")
    counts = {int(s["count"]) for s in shards}
    if len(counts) != 1:
        raise IndexFormatError(f"cannot merge shards of different splits (N = {sorted(counts)})")
    total = counts.pop()
    got = sorted(int(s["index"]) for s in shards)
    if got != list(range(total)):
        missing = sorted(set(range(total)) - set(got))
        dup = sorted({g for g in got if got.count(g) > 1})
        raise IndexFormatError(f"cannot merge: shards of {total} needed exactly once; "
                               f"missing {missing}, repeated {dup}")


def _merged_data(loaded: list[AerialIndex]) -> IndexData:
    """The shards' tiles in their unsharded order (no tile twice, all the source's tiles)."""
    data = IndexData.concatenate([index_data(ix) for ix in loaded])
    order = np.argsort(data.ordinal, kind="stable")
    if len(np.unique(data.ordinal)) != len(order):
        raise IndexFormatError("cannot merge: shards overlap (a tile appears in two shards)")
    expected = loaded[0].meta["source"].get("count")
    if expected is not None and len(order) != int(expected):
        raise IndexFormatError(f"merged shards hold {len(order)} tiles, the source has {expected}")
    return data.take(order)


def merge_indexes(shard_dirs: list[str | Path], out_dir: str | Path, search_kind: str | None = None) -> dict:
    """Combine the shards of one build into one index, identical to an unsharded build.

    Checks (each failure an :class:`IndexFormatError`): every folder is a complete index of this format, all
    were built by the same model (identity hash) from the same source and tiling, they are shards ``0..N-1``
    of the same ``N``, each present exactly once. Tiles are put back in their unsharded order; the search
    structure is rebuilt (``search_kind``: default the shards' kind). Relative paths in the metadata are
    re-expressed from the first shard's folder to ``out_dir``.
    """
    if not shard_dirs:
        raise IndexFormatError("index merge: no shard folders given")
    loaded = [load_index(p, verify="sha256", load_search=False) for p in shard_dirs]
    _check_same_build(loaded)
    _check_shard_set(loaded)
    data = _merged_data(loaded)
    first = loaded[0]
    rebased = rebased_meta(first.meta, first.path, out_dir)
    meta = {k: rebased[k] for k in SHARD_INVARIANT if k in rebased}
    meta["shard"] = None
    meta["aerial"] = {k: v for k, v in first.meta["aerial"].items() if k != "fields"}
    meta["merged_from"] = [relative_hint(p, out_dir) for p in shard_dirs]
    kind = search_kind or first.meta["search"].get("requested", first.meta["search"].get("kind", "auto"))
    return write_index(out_dir, data, meta, search_kind=kind)


__all__ = ["SHARD_INVARIANT", "merge_indexes", "parse_shard", "shard_rows"]
