"""The gallery side of ``unifygeo eval``: every tile's global descriptor, its dense features in a byte-bounded
cache (tiles evicted from it are re-encoded on demand), the gallery's metric frame, and the cosine against it.

The model interface used: ``encode_aerial(x)`` returning a feature dataclass with a ``descriptor`` (B, D) field
(other fields tensors or lists of tensors with the batch first).
"""
from __future__ import annotations

import dataclasses
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from unifygeo_ros import geo
from unifygeo_ros.model.unifygeo import cat_features

DEFAULT_CACHE_BYTES = 2 * 1024**3


# ---------------------------------------------------------------------------------------- feature bundles
def map_features(feat, fn):
    """Apply ``fn`` to every tensor of a feature dataclass (fields: tensors or lists of tensors)."""
    kwargs = {}
    for f in dataclasses.fields(feat):
        v = getattr(feat, f.name)
        kwargs[f.name] = [fn(t) for t in v] if isinstance(v, list) else fn(v)
    return type(feat)(**kwargs)


def _feature_bytes(feat) -> int:
    total = 0
    for f in dataclasses.fields(feat):
        v = getattr(feat, f.name)
        for t in (v if isinstance(v, list) else [v]):
            total += t.numel() * t.element_size()
    return total


def model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def progress_bar(iterable, enabled: bool, desc: str, total: int | None = None):
    if not enabled:
        return iterable
    return tqdm(iterable, desc=desc, total=total, unit="batch", leave=False, file=sys.stderr)



# ------------------------------------------------------------------------------------------- gallery side
class AerialFeatureCache:
    """Dense aerial features per gallery tile, kept on the CPU up to ``budget_bytes`` (oldest evicted first);
    a tile not held is re-encoded from the gallery on demand (so a large city never needs them all at once)."""

    def __init__(self, model, gallery_ds, device: torch.device, dtype: torch.dtype, batch_size: int = 32,
                 budget_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.model, self.gallery = model, gallery_ds
        self.device, self.dtype = device, dtype
        self.batch_size = max(1, int(batch_size))
        self.budget_bytes = int(budget_bytes)
        self._store: OrderedDict[int, Any] = OrderedDict()
        self._bytes = 0
        self.encoded = 0  # tiles encoded on demand (misses), for the report

    def put(self, index: int, feat_1) -> None:
        """Hold one tile's features (batch of 1, on the CPU) while the budget allows."""
        size = _feature_bytes(feat_1)
        if size > self.budget_bytes:
            return
        while self._store and self._bytes + size > self.budget_bytes:
            _, old = self._store.popitem(last=False)
            self._bytes -= _feature_bytes(old)
        self._store[int(index)] = feat_1
        self._bytes += size

    def put_batch(self, indices: Sequence[int], feats) -> None:
        cpu = map_features(feats, lambda t: t.detach().to("cpu"))
        for j, idx in enumerate(indices):
            if self._bytes >= self.budget_bytes:
                break
            self.put(int(idx), map_features(cpu, lambda t, j=j: t[j:j + 1].clone()))

    @torch.inference_mode()
    def get(self, indices: Sequence[int]):
        """Features of tiles ``indices`` (repeats allowed), batched in that order, on the model's device."""
        indices = [int(i) for i in indices]
        missing = sorted({i for i in indices if i not in self._store})
        fresh: dict[int, Any] = {}
        for start in range(0, len(missing), self.batch_size):
            rows = missing[start:start + self.batch_size]
            x = torch.stack([self.gallery[i]["aerial"] for i in rows]).to(self.device, self.dtype)
            feats = map_features(self.model.encode_aerial(x), lambda t: t.detach().to("cpu"))
            for j, i in enumerate(rows):
                fresh[i] = map_features(feats, lambda t, j=j: t[j:j + 1].clone())
                self.put(i, fresh[i])
            self.encoded += len(rows)
        parts = [self._store[i] if i in self._store else fresh[i] for i in indices]
        return map_features(cat_features(parts), lambda t: t.to(self.device))


@dataclass
class GalleryEncoding:
    descriptors: torch.Tensor  # (R, D) float32 on the model's device, for the similarity
    tile_m: np.ndarray  # (R,) side of each tile in metres (mpp of the tensor x its size)
    cache: AerialFeatureCache
    tile_latlon: np.ndarray | None = None  # (R, 2) tile centres (None: the gallery has no tile positions)

    def local_frame(self, tiles: np.ndarray) -> tuple[geo.LocalENU, np.ndarray]:
        """A local ENU frame at the first of ``tiles`` and their centres in it, (K, 2) metres (a gallery may span
        several cities, so each query gets the frame of its own candidates)."""
        latlon = self.tile_latlon[np.asarray(tiles, np.int64)]
        frame = geo.LocalENU(float(latlon[0, 0]), float(latlon[0, 1]))
        east, north = frame.to_en(latlon[:, 0], latlon[:, 1])
        return frame, np.stack([np.asarray(east, np.float64), np.asarray(north, np.float64)], axis=-1)


@torch.inference_mode()
def encode_gallery(model, gallery_ds, *, batch_size: int = 32, num_workers: int = 0,
                   device: torch.device | None = None, dtype: torch.dtype | None = None,
                   cache_bytes: int = DEFAULT_CACHE_BYTES, progress: bool = False) -> GalleryEncoding:
    """Global descriptors of every tile (batched, in gallery order) and a cache of their dense features."""
    dev, dt = model_device_dtype(model)
    device, dtype = device or dev, dtype or dt
    cache = AerialFeatureCache(model, gallery_ds, device, dtype, batch_size, cache_bytes)
    loader = torch.utils.data.DataLoader(gallery_ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    descs, tile_m, seen = [], [], 0
    for batch in progress_bar(loader, progress, "gallery", len(loader)):
        x = batch["aerial"].to(device, dtype)
        feats = model.encode_aerial(x)
        descs.append(feats.descriptor.float())
        tile_m.append(batch["mpp"].double().numpy() * x.shape[-1])
        idx = batch["tile_index"].tolist()
        assert idx == list(range(seen, seen + len(idx))), "gallery items must come in index order"
        cache.put_batch(idx, feats)
        seen += len(idx)
    assert seen == len(gallery_ds) and seen > 0, "empty gallery"
    latlon = getattr(gallery_ds, "tile_latlon", None)
    return GalleryEncoding(torch.cat(descs), np.concatenate(tile_m), cache,
                           None if latlon is None else np.asarray(latlon, np.float64))
