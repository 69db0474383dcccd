"""The aerial index: the map side of the pipeline, kept apart from the model.

* :mod:`~unifygeo_ros.index.tiles` - tile sources (VIGOR satellite folder; geo-referenced orthophoto:
  :mod:`~unifygeo_ros.index.orthophoto`, :mod:`~unifygeo_ros.index.rasters`).
* :mod:`~unifygeo_ros.index.store` - the on-disk format (metadata, arrays, checks, shards, merge), gathered from
  :mod:`~unifygeo_ros.index.layout`, :mod:`~unifygeo_ros.index.data`, :mod:`~unifygeo_ros.index.disk`,
  :mod:`~unifygeo_ros.index.shards` and :mod:`~unifygeo_ros.index.portable` (no absolute path recorded;
  :func:`recorded_checkpoint`).
* :mod:`~unifygeo_ros.index.search` - faiss exact / IVF / HNSW search (GPU faiss when present), numpy fallback.
* :mod:`~unifygeo_ros.model.handle` - the model as the index and the localizer run it (device, precision).
* :mod:`~unifygeo_ros.index.build` - ``unifygeo index build|merge|info``.

Importing this package does not import torch; :func:`load_index` needs only numpy (and faiss when present).
"""
from unifygeo_ros.index.store import FORMAT_VERSION, AerialIndex, load_index, recorded_checkpoint

__all__ = ["FORMAT_VERSION", "AerialIndex", "load_index", "recorded_checkpoint"]
