"""The on-disk aerial index: format, metadata, checks, shards and merge (one import for all of it).

An index is a folder (format ``unifygeo-index``, version :data:`FORMAT_VERSION`)::

    index.json              metadata (below), written last: its presence marks a complete index
    descriptors.npy         (N, D) float32, L2-normalised global descriptors, row i = tile i
    search.faiss            the faiss search structure (faiss.write_index); absent for numpy search
    aerial_<name>.npy       what metric localization needs for each tile (row i = tile i):
                              mode "features": the model's dense aerial features (float16), one file per field
                              mode "tiles":    aerial_tiles.npy (N, P, P, 3|4) uint8 tile images, re-encoded at query

Arrays are plain ``.npy`` read with ``allow_pickle=False`` (aerial arrays memory-mapped: only the top-K rows are
touched per query); nothing is pickled. ``index.json``::

    {"format": "unifygeo-index", "version": 1, "created_utc": ...,
     "model": {"identity": <hash>, "config": {...}, "checkpoint_relpath": ".." | null},
     "descriptor_dim": D, "count": N, "tile_m": 70.0, "tile_px": 320, "gsd_m": 0.21875,
     "origin": {"lat_deg": ..., "lon_deg": ...},            # the local ENU frame of east_m/north_m
     "source": {"kind": "vigor"|"orthophoto", "name": ..., "relpath": ..., ...tiling parameters},
     "shard": null | {"index": i, "count": n},
     "search": {"kind": "exact"|"ivf"|"hnsw"|"numpy", "params": {...}, "recall_at_10_vs_exact": r},
     "aerial": {"mode": "features"|"tiles", "fields": [names]},
     "tiles": {"ids": [...], "lat_deg": [...], "lon_deg": [...], "east_m": [...], "north_m": [...],
               "ordinal": [...]},                             # ordinal = position in the unsharded tiling
     "arrays": {"descriptors.npy": {"shape": [...], "dtype": "float32", "bytes": b, "sha256": h}, ...}}

No absolute path is recorded (:mod:`unifygeo_ros.index.portable`): the checkpoint by its identity and, when it
travels with the index, a path relative to the index folder (:func:`recorded_checkpoint`); the tile source by its
name and a relative hint. Every problem with an index (missing or truncated file, other format or version, a
metadata value of the wrong kind or range, a file name that leaves the folder, NaN/inf or a shape or dtype that
disagrees with the metadata in an array, model mismatch, shards that do not fit together) raises one one-line
:class:`~unifygeo_ros.errors.IndexFormatError` that says what to do.

Where it lives: :mod:`~unifygeo_ros.index.validate` (format constants, file names, what valid metadata is),
:mod:`~unifygeo_ros.index.layout` (records, per-file checks, the metadata reader),
:mod:`~unifygeo_ros.index.data` (:class:`IndexData`, :class:`AerialIndex`), :mod:`~unifygeo_ros.index.disk`
(write, load), :mod:`~unifygeo_ros.index.shards` (shards, merge), :mod:`~unifygeo_ros.index.portable` (what is
recorded of paths, :func:`recorded_checkpoint`).
"""
from __future__ import annotations

from unifygeo_ros.index.data import AerialIndex, IndexData
from unifygeo_ros.index.disk import index_data, load_index, write_index
from unifygeo_ros.index.layout import (AERIAL_MODES, DESCRIPTORS_FILE, FAISS_FILE, FORMAT, FORMAT_VERSION, META_FILE,
                                       read_meta, sha256_file)
from unifygeo_ros.index.portable import recorded_checkpoint, recorded_source
from unifygeo_ros.index.shards import merge_indexes, parse_shard, shard_rows

__all__ = ["AERIAL_MODES", "DESCRIPTORS_FILE", "FAISS_FILE", "FORMAT", "FORMAT_VERSION", "META_FILE", "AerialIndex",
           "IndexData", "index_data", "load_index", "merge_indexes", "parse_shard", "read_meta",
           "recorded_checkpoint", "recorded_source", "sha256_file", "shard_rows", "write_index"]
