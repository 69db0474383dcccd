"""The aerial index: the map side of the pipeline, kept apart from the model.

* :mod:`~unifygeo_ros.index.tiles` - tile sources (VIGOR satellite folder; geo-referenced orthophoto).
* :mod:`~unifygeo_ros.index.store` - the on-disk format (metadata, arrays, checks, shards, merge).
* :mod:`~unifygeo_ros.index.search` - faiss exact / IVF / HNSW search (GPU faiss when present), numpy fallback.
* :mod:`~unifygeo_ros.model.handle` - the model as the index and the localizer run it (device, precision).
* :mod:`~unifygeo_ros.index.build` - ``unifygeo index build|merge|info``.

Importing this package does not import torch; :func:`load_index` needs only numpy (and faiss when present).
"""
from unifygeo_ros.index.store import FORMAT_VERSION, AerialIndex, load_index

__all__ = ["FORMAT_VERSION", "AerialIndex", "load_index"]
