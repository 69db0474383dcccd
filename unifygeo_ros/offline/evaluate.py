"""``unifygeo eval``: VIGOR-protocol evaluation of a model, task-isolated and hierarchical.

Stages (each a plain function; :func:`evaluate` chains them, :func:`run` is the command line):

1. :func:`encode_gallery` - global descriptors of every gallery tile (batched); the tiles' dense matching
   features go to an :class:`AerialFeatureCache` bounded in bytes (tiles evicted from it are re-encoded on demand).
2. Query batches (:func:`evaluate_batch`), so memory is bounded by the batch, never by Q x R:
   a. encode the panoramas;
   b. **retrieval**: descriptor cosines against the gallery (:func:`unifygeo_ros.offline.metrics.rank_queries`, itself
      chunked by a byte budget): rank of the positive, hit flag, top-K list;
   c. **task-isolated metric localization**: localize against the TRUE positive tile; error = distance between
      the predicted offset and the label offset (metres), heading error (degrees, wrap-aware);
   d. **hierarchical**: localize against each of the top-K retrieved tiles; (no re-rank) keep the top-1
      retrieved tile and its localization; (re-rank) re-order the K with the model's re-ranker and keep the new
      top-1. The position error is measured in the city's metric frame: predicted position = selected tile
      centre + predicted offset, true position = positive tile centre + label offset, both expressed in the
      local ENU frame of the selected tile (exact through ECEF, :meth:`VigorDataset.camera_en_relative_to`), so a
      wrong but neighbouring tile can still give a small error, and the right tile gives exactly the isolated
      error. ``r1`` of a hierarchy = its selected tile is the positive. With ``tile_assignment`` (default) the
      re-ranked list then puts first the candidate that holds the fix most centrally
      (:func:`unifygeo_ros.model.rerank.assign_tile`; tile centres from the gallery's ``tile_latlon``); the
      position does not change, and the learned order's R@1 is reported beside it. Before the assignment, a model
      with ``model.consensus_radius_m`` > 0 takes the fix from the candidate whose fix the other candidates agree
      with most (:func:`unifygeo_ros.model.rerank.consensus_slot`), not from the learned top-1.
   Heading errors are reported in both orientation settings (known: the true heading is 0, north-aligned).
3. Summaries (:mod:`unifygeo_ros.offline.metrics`) with their invariants asserted, into an :class:`EvalReport`.

The model interface used: ``encode_ground(x)``, ``encode_aerial(x)`` (feature dataclasses with a ``descriptor``
(B, D) field; other fields tensors or lists of tensors with the batch first), ``localize(ground, aerial)``
(paired) returning an output with ``peak_offset_en_m(tile_m)``, ``heading_deg()`` and ``probabilities``, and
``rerank_scores(ground, aerial, metric)``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from unifygeo_ros import geo
from unifygeo_ros.offline import metrics as M
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.model.rerank import assign_tile, consensus_order, consensus_params

DEFAULT_TOP_K = 5
DEFAULT_CACHE_BYTES = 2 * 1024**3
DEFAULT_SIM_CHUNK_BYTES = M.DEFAULT_CHUNK_BYTES


# =========================================================================================== feature bundles
def _map_features(feat, fn):
    """Apply ``fn`` to every tensor of a feature dataclass (fields: tensors or lists of tensors)."""
    kwargs = {}
    for f in dataclasses.fields(feat):
        v = getattr(feat, f.name)
        kwargs[f.name] = [fn(t) for t in v] if isinstance(v, list) else fn(v)
    return type(feat)(**kwargs)


def _cat_features(parts: Sequence[Any]):
    """Concatenate feature dataclasses of the same type along the batch."""
    first = parts[0]
    if len(parts) == 1:
        return first
    kwargs = {}
    for f in dataclasses.fields(first):
        vals = [getattr(p, f.name) for p in parts]
        if isinstance(vals[0], list):
            kwargs[f.name] = [torch.cat([v[level] for v in vals]) for level in range(len(vals[0]))]
        else:
            kwargs[f.name] = torch.cat(vals)
    return type(first)(**kwargs)


def _feature_bytes(feat) -> int:
    total = 0
    for f in dataclasses.fields(feat):
        v = getattr(feat, f.name)
        for t in (v if isinstance(v, list) else [v]):
            total += t.numel() * t.element_size()
    return total


def _model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _progress(iterable, enabled: bool, desc: str, total: int | None = None):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="batch", leave=False, file=sys.stderr)


# ============================================================================================ gallery side
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
        cpu = _map_features(feats, lambda t: t.detach().to("cpu"))
        for j, idx in enumerate(indices):
            if self._bytes >= self.budget_bytes:
                break
            self.put(int(idx), _map_features(cpu, lambda t, j=j: t[j:j + 1].clone()))

    @torch.inference_mode()
    def get(self, indices: Sequence[int]):
        """Features of tiles ``indices`` (repeats allowed), batched in that order, on the model's device."""
        indices = [int(i) for i in indices]
        missing = sorted({i for i in indices if i not in self._store})
        fresh: dict[int, Any] = {}
        for start in range(0, len(missing), self.batch_size):
            rows = missing[start:start + self.batch_size]
            x = torch.stack([self.gallery[i]["aerial"] for i in rows]).to(self.device, self.dtype)
            feats = _map_features(self.model.encode_aerial(x), lambda t: t.detach().to("cpu"))
            for j, i in enumerate(rows):
                fresh[i] = _map_features(feats, lambda t, j=j: t[j:j + 1].clone())
                self.put(i, fresh[i])
            self.encoded += len(rows)
        parts = [self._store[i] if i in self._store else fresh[i] for i in indices]
        return _map_features(_cat_features(parts), lambda t: t.to(self.device))


@dataclass
class GalleryEncoding:
    descriptors: torch.Tensor  # (R, D) float32 on the model's device, for the similarity
    tile_m: np.ndarray  # (R,) side of each tile in metres (mpp of the tensor x its size)
    cache: AerialFeatureCache


@torch.inference_mode()
def encode_gallery(model, gallery_ds, *, batch_size: int = 32, num_workers: int = 0,
                   device: torch.device | None = None, dtype: torch.dtype | None = None,
                   cache_bytes: int = DEFAULT_CACHE_BYTES, progress: bool = False) -> GalleryEncoding:
    """Global descriptors of every tile (batched, in gallery order) and a cache of their dense features."""
    dev, dt = _model_device_dtype(model)
    device, dtype = device or dev, dtype or dt
    cache = AerialFeatureCache(model, gallery_ds, device, dtype, batch_size, cache_bytes)
    loader = torch.utils.data.DataLoader(gallery_ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    descs, tile_m, seen = [], [], 0
    for batch in _progress(loader, progress, "gallery", len(loader)):
        x = batch["aerial"].to(device, dtype)
        feats = model.encode_aerial(x)
        descs.append(feats.descriptor.float())
        tile_m.append(batch["mpp"].double().numpy() * x.shape[-1])
        idx = batch["tile_index"].tolist()
        assert idx == list(range(seen, seen + len(idx))), "gallery items must come in index order"
        cache.put_batch(idx, feats)
        seen += len(idx)
    assert seen == len(gallery_ds) and seen > 0, "empty gallery"
    return GalleryEncoding(torch.cat(descs), np.concatenate(tile_m), cache)


class _TorchSimilarity:
    """Cosine of a query batch's descriptors against the gallery, computed on the device, rows on demand."""

    def __init__(self, query_desc: torch.Tensor, gallery_desc: torch.Tensor) -> None:
        self.q, self.g = query_desc.float(), gallery_desc.float()
        self.num_queries, self.gallery_size = int(self.q.shape[0]), int(self.g.shape[0])

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return (self.q[start:stop] @ self.g.T).double().cpu().numpy()


# ============================================================================================== query side
@dataclass
class BatchResult:
    """Per-query outcome of one query batch (arrays indexed like the batch)."""

    pano_index: np.ndarray  # (B,)
    positive: np.ndarray  # (B,)
    rank: np.ndarray  # (B,)
    hit: np.ndarray  # (B,)
    topk: np.ndarray  # (B, K) retrieval order
    topk_reranked: np.ndarray  # (B, K) re-ranked (learned scores, then tile assignment when enabled)
    topk_reranked_learned: np.ndarray  # (B, K) by the learned scores alone
    iso_err_m: np.ndarray  # (B,)
    iso_heading_err_deg: np.ndarray  # (B,)
    hier_err_m: np.ndarray  # (B, 2): no re-rank, re-rank
    hier_heading_err_deg: np.ndarray  # (B, 2)
    examples: list


def _true_en_relative(query_ds, pano_index: int, tile_index: int, positive: int, label_en: np.ndarray) -> np.ndarray:
    """Labelled camera position relative to a tile's centre, metres (label offset when it is the positive)."""
    if tile_index == positive:
        return label_en
    return np.asarray(query_ds.camera_en_relative_to(int(pano_index), int(tile_index)), dtype=np.float64)


@torch.inference_mode()
def _localize_pairs(model, ground, gallery: GalleryEncoding, q_rows: np.ndarray, tiles: np.ndarray,
                    pair_batch: int, keep_maps: set[int] | None = None):
    """Localize ground[q_rows[i]] in tile tiles[i] for every pair, in batches of ``pair_batch`` pairs.

    Returns (offsets (N, 2) m, headings (N,) deg, rerank scores (N,), {pair: probability map}).
    """
    n = len(tiles)
    offsets, headings, scores, maps = np.zeros((n, 2)), np.zeros(n), np.zeros(n), {}
    for start in range(0, n, pair_batch):
        sl = slice(start, min(n, start + pair_batch))
        rows = torch.as_tensor(q_rows[sl], dtype=torch.long, device=ground.descriptor.device)
        g = _map_features(ground, lambda t: t[rows])
        a = gallery.cache.get(tiles[sl])
        out = model.localize(g, a)
        tile_m = torch.as_tensor(gallery.tile_m[tiles[sl]], dtype=torch.float32, device=g.descriptor.device)
        offsets[sl] = out.peak_offset_en_m(tile_m).double().cpu().numpy()
        headings[sl] = out.heading_deg().double().cpu().numpy()
        scores[sl] = model.rerank_scores(g, a, out).double().cpu().numpy()
        if keep_maps:
            wanted = [i for i in range(sl.start, sl.stop) if i in keep_maps]
            if wanted:
                prob = out.probabilities
                for i in wanted:
                    maps[i] = prob[i - sl.start].float().cpu().numpy()
    assert np.all(np.isfinite(offsets)) and np.all(np.isfinite(scores)), "non-finite localization output"
    return offsets, headings, scores, maps


def _assigned_order(order: np.ndarray, cands: np.ndarray, offsets_en_m: np.ndarray, scores: np.ndarray,
                    tile_latlon: np.ndarray, tile_m: np.ndarray,
                    consensus: tuple[float, float]) -> tuple[np.ndarray, int]:
    """One query's re-ranked candidate slots after the consensus (when ``consensus`` = (radius m, temperature)
    has radius > 0: the slot whose fix the candidates agree on goes first) and the tile assignment, and the slot
    whose map gives the fix. ``offsets_en_m`` (K, 2): each slot's predicted offset in its own tile's ENU frame.
    The consensus compares the fixes as 3-D points (exact, through ECEF: candidates far apart cannot fake an
    agreement); the assignment works in the ENU frame of the tile that gave the fix."""
    def frame(t: int) -> geo.LocalENU:
        return geo.LocalENU(float(tile_latlon[t, 0]), float(tile_latlon[t, 1]))

    if consensus[0] > 0:
        top = frame(int(cands[order[0]]))
        fixes = np.zeros((len(cands), 3))
        for j, t in enumerate(cands):
            lat, lon = frame(int(t)).from_en(*offsets_en_m[j])
            fixes[j] = np.stack(top.to_enu(lat, lon))
        order = consensus_order(order, fixes, scores, *consensus)
    slot = int(order[0])
    e, n = frame(int(cands[slot])).to_en(tile_latlon[cands, 0], tile_latlon[cands, 1])
    return assign_tile(order, np.stack([e, n], axis=1), tile_m[cands], offsets_en_m[slot]), slot


@torch.inference_mode()
def evaluate_batch(model, batch: dict, query_ds, gallery: GalleryEncoding, *, top_k: int, pair_batch: int,
                   sim_chunk_bytes: int = DEFAULT_SIM_CHUNK_BYTES, num_examples: int = 0,
                   tile_latlon: np.ndarray | None = None) -> BatchResult:
    """Retrieval, isolated and hierarchical localization of one batch of queries (see the module docstring).
    ``tile_latlon`` (R, 2): gallery tile centres, for the tile assignment (None: learned order only)."""
    device, dtype = gallery.descriptors.device, gallery.cache.dtype
    ground = model.encode_ground(batch["ground"].to(device, dtype))
    b = len(batch["pano_index"])
    pano = batch["pano_index"].numpy().astype(np.int64)
    pos = batch["positive_index"].numpy().astype(np.int64)
    semi = batch["semi_indices"].numpy().astype(np.int64).reshape(b, -1)
    # label offsets at full precision from the dataset (items carry float32)
    label_en = (np.asarray(query_ds.offsets_en_m[pano, 0], dtype=np.float64) if hasattr(query_ds, "offsets_en_m")
                else batch["offset_en_m"].double().numpy().reshape(b, 2))
    true_heading = batch["heading_deg"].double().numpy().reshape(b)
    assert np.all(batch["tile_index"].numpy() == pos), "evaluation items must carry the positive tile"

    # retrieval (chunked by bytes inside rank_queries)
    res = M.rank_queries(_TorchSimilarity(ground.descriptor, gallery.descriptors), pos, semi, top_k=top_k,
                         max_chunk_bytes=sim_chunk_bytes)
    k = res.topk_indices.shape[1]

    # one localization per (query, tile): the positive first, then the K candidates
    tiles = np.concatenate([pos[:, None], res.topk_indices], axis=1)  # (B, K+1)
    q_rows = np.repeat(np.arange(b), k + 1)
    keep = {int(i) * (k + 1) + j for i in range(min(num_examples, b)) for j in range(k + 1)}
    off, head, score, maps = _localize_pairs(model, ground, gallery, q_rows, tiles.reshape(-1), pair_batch, keep)
    off, head, score = off.reshape(b, k + 1, 2), head.reshape(b, k + 1), score.reshape(b, k + 1)
    # a candidate that is the positive takes the isolated answer (identical up to batching noise)
    same = tiles[:, 1:] == pos[:, None]
    off[:, 1:][same] = np.repeat(off[:, :1], k, axis=1)[same]
    head[:, 1:][same] = np.repeat(head[:, :1], k, axis=1)[same]

    iso_err = M.position_errors_m(off[:, 0], label_en)
    iso_head = M.heading_errors_deg(head[:, 0], true_heading)

    cand_scores = score[:, 1:]
    order = np.argsort(-cand_scores, axis=1, kind="stable")
    reranked_learned = np.take_along_axis(res.topk_indices, order, axis=1)
    M.assert_rerank_within_topk(res.topk_indices, reranked_learned)
    fix_slot = order[:, 0].copy()  # the slot whose map gives the re-ranked fix
    if tile_latlon is not None:
        consensus = consensus_params(getattr(model, "cfg", None))
        assigned = np.zeros_like(order)
        for i in range(b):
            assigned[i], fix_slot[i] = _assigned_order(order[i], res.topk_indices[i], off[i, 1:], cand_scores[i],
                                                       tile_latlon, gallery.tile_m, consensus)
        reranked = np.take_along_axis(res.topk_indices, assigned, axis=1)
        M.assert_rerank_within_topk(res.topk_indices, reranked)
    else:
        reranked = reranked_learned

    hier_err = np.zeros((b, 2))
    hier_head = np.zeros((b, 2))
    chosen_slots = np.stack([np.zeros(b, np.int64), fix_slot], axis=1)  # candidate slot per variant
    for i in range(b):
        for v in range(2):
            slot = int(chosen_slots[i, v])
            t = int(res.topk_indices[i, slot])
            true_en = _true_en_relative(query_ds, pano[i], t, int(pos[i]), label_en[i])
            hier_err[i, v] = float(np.hypot(*(off[i, 1 + slot] - true_en)))
            hier_head[i, v] = float(M.heading_errors_deg(head[i, 1 + slot], true_heading[i])[0])
            if t == pos[i]:
                assert hier_err[i, v] == iso_err[i], "right tile must give the isolated error"

    examples = []
    for i in range(min(num_examples, b)):
        slot = int(fix_slot[i])
        t = int(res.topk_indices[i, slot])
        examples.append(dict(pano_index=int(pano[i]), ground=batch["ground"][i].clone(), tile_index=t,
                             tile_m=float(gallery.tile_m[t]), prob_map=maps.get(i * (k + 1) + 1 + slot),
                             true_en_m=_true_en_relative(query_ds, pano[i], t, int(pos[i]), label_en[i]),
                             pred_en_m=off[i, 1 + slot].copy(), true_heading_deg=float(true_heading[i]),
                             pred_heading_deg=float(head[i, 1 + slot]), rank=int(res.ranks[i]),
                             correct=bool(t == pos[i])))
    return BatchResult(pano, pos, res.ranks, res.hits, res.topk_indices, reranked, reranked_learned, iso_err,
                       iso_head, hier_err, hier_head, examples)


def _query_loader(query_ds, query_indices, batch_size: int, num_workers: int):
    ds = query_ds if query_indices is None else torch.utils.data.Subset(query_ds, list(map(int, query_indices)))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def _base_dataset(ds):
    while isinstance(ds, torch.utils.data.Subset):
        ds = ds.dataset
    return ds


# ================================================================================================= evaluate
def evaluate(model, query_ds, gallery_ds=None, *, top_k: int = DEFAULT_TOP_K, batch_size: int = 32,
             num_workers: int = 0, query_indices: Sequence[int] | None = None, num_examples: int = 0,
             cache_bytes: int = DEFAULT_CACHE_BYTES, sim_chunk_bytes: int = DEFAULT_SIM_CHUNK_BYTES,
             pair_batch: int | None = None, progress: bool = False, extra: dict | None = None,
             tile_assignment: bool = True) -> M.EvalReport:
    """Evaluate ``model`` on the queries of ``query_ds`` (a :class:`VigorDataset`, ``train=False``) against
    ``gallery_ds`` (default: ``query_ds.gallery()``): retrieval, task-isolated and hierarchical localization.

    The model runs on the device and in the dtype of its parameters. ``query_indices`` restricts the queries
    (``--limit``); the gallery is always complete. ``num_examples`` queries are kept in ``report.examples`` for
    :mod:`unifygeo_ros.offline.plots`. Per-query arrays are in ``report.per_query``. ``tile_assignment``: after the
    learned re-ranking, put first the candidate that holds the fix most centrally (needs the gallery's
    ``tile_latlon``; without it, or with False, the learned order is the re-ranked list).
    """
    if gallery_ds is None:
        gallery_ds = query_ds.gallery()
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    base = _base_dataset(query_ds)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    device, dtype = _model_device_dtype(model)
    timing: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        gallery = encode_gallery(model, gallery_ds, batch_size=batch_size, num_workers=num_workers,
                                 device=device, dtype=dtype, cache_bytes=cache_bytes, progress=progress)
        timing["gallery_s"] = time.perf_counter() - t0
        k = min(int(top_k), len(gallery_ds))
        pair_batch = int(pair_batch or max(1, 2 * batch_size))
        latlon = getattr(gallery_ds, "tile_latlon", None) if tile_assignment else None
        latlon = None if latlon is None else np.asarray(latlon, np.float64)
        t0 = time.perf_counter()
        results: list[BatchResult] = []
        loader = _query_loader(query_ds, query_indices, batch_size, num_workers)
        for batch in _progress(loader, progress, "queries", len(loader)):
            need = max(0, num_examples - sum(len(r.examples) for r in results))
            results.append(evaluate_batch(model, batch, base, gallery, top_k=k, pair_batch=pair_batch,
                                          sim_chunk_bytes=sim_chunk_bytes, num_examples=need,
                                          tile_latlon=latlon))
        timing["queries_s"] = time.perf_counter() - t0
        timing["per_query_ms"] = 1000.0 * timing["queries_s"] / max(1, sum(len(r.rank) for r in results))
    finally:
        if was_training:
            model.train()
    if not results:
        raise UnifyGeoError("no queries to evaluate")
    per = {f: np.concatenate([getattr(r, f) for r in results]) for f in
           ("pano_index", "positive", "rank", "hit", "topk", "topk_reranked", "topk_reranked_learned", "iso_err_m",
            "iso_heading_err_deg", "hier_err_m", "hier_heading_err_deg")}
    examples = [e for r in results for e in r.examples]
    return summarise(per, len(gallery_ds), k, gallery_ds=gallery_ds, examples=examples,
                     extra={"timing_s": timing, "gallery": _gallery_info(gallery_ds, gallery),
                            **(extra or {})}, tile_assignment=latlon is not None,
                     consensus=consensus_params(getattr(model, "cfg", None)) if latlon is not None else None)


def _gallery_info(gallery_ds, gallery: GalleryEncoding) -> dict:
    return {"tiles": int(len(gallery_ds)), "cities": list(getattr(gallery_ds, "cities", [])),
            "tiles_reencoded": int(gallery.cache.encoded)}


def summarise(per: dict[str, np.ndarray], gallery_size: int, top_k: int, *, gallery_ds=None,
              examples: list | None = None, extra: dict | None = None,
              tile_assignment: bool | None = None,
              consensus: tuple[float, float] | None = None) -> M.EvalReport:
    """Per-query arrays (see :class:`BatchResult`) -> :class:`EvalReport`, all invariants checked.

    With ``topk_reranked_learned`` among the arrays, the extra key ``rerank_detail`` gives the re-ranked R@1 of
    the learned order alone and after the tile assignment (``tile_assignment``: whether it was applied;
    ``consensus``: the (radius m, temperature) of the consensus step that ran before it, radius 0 = off)."""
    q = int(per["rank"].size)
    retrieval = M.retrieval_metrics(per["rank"], per["hit"], gallery_size)
    iso = M.metric_loc_metrics(per["iso_err_m"], per["iso_heading_err_deg"])
    variants = []
    for v, key in enumerate(("topk", "topk_reranked")):
        selected = per[key][:, 0]
        r1 = float(np.mean(M.selected_is_positive(selected, per["positive"])))
        variants.append(M.HierarchicalMetrics(
            r1, M.metric_loc_metrics(per["hier_err_m"][:, v], per["hier_heading_err_deg"][:, v])))
    M.assert_rerank_within_topk(per["topk"], per["topk_reranked"])
    extra = dict(extra or {})
    if "topk_reranked_learned" in per:
        M.assert_rerank_within_topk(per["topk"], per["topk_reranked_learned"])
        learned = float(np.mean(M.selected_is_positive(per["topk_reranked_learned"][:, 0], per["positive"])))
        radius, temperature = consensus if (tile_assignment and consensus) else (0.0, 0.0)
        extra["rerank_detail"] = {"r1_learned_order": learned, "r1_after_tile_assignment": variants[1].r1,
                                  "tile_assignment": bool(tile_assignment),
                                  "consensus_radius_m": float(radius), "consensus_temperature": float(temperature)}
    report = M.EvalReport(retrieval=retrieval, metric_isolated=iso, hier_no_rerank=variants[0],
                          hier_rerank=variants[1], queries=q, top_k=top_k, extra=extra,
                          per_query={"rank": per["rank"], **{k: v for k, v in per.items() if k != "rank"}})
    report.examples = [_to_plot_example(e, gallery_ds) for e in (examples or [])] if gallery_ds is not None else []
    return report


def _to_plot_example(e: dict, gallery_ds):
    from unifygeo_ros.offline.plots import LocalizationExample
    from unifygeo_ros.image.preprocess import denormalize

    tile = denormalize(gallery_ds[e["tile_index"]]["aerial"])
    verdict = "right tile" if e["correct"] else "wrong tile"
    return LocalizationExample(
        panorama=denormalize(e["ground"]), tile=tile, tile_m=e["tile_m"], prob_map=e["prob_map"],
        true_en_m=tuple(map(float, e["true_en_m"])), pred_en_m=tuple(map(float, e["pred_en_m"])),
        true_heading_deg=e["true_heading_deg"], pred_heading_deg=e["pred_heading_deg"],
        title=f"query {e['pano_index']}: positive at rank {e['rank']}; re-ranked top-1 tile "
              f"{e['tile_index']} ({verdict})")


def save_report_plots(report: M.EvalReport, out_dir: str | Path) -> list[Path]:
    """The error CDF (hierarchical with / without re-rank, isolated) and the kept examples."""
    from unifygeo_ros.offline.plots import save_eval_plots

    p = report.per_query
    errors = {"hierarchical + re-rank": p["hier_err_m"][:, 1], "hierarchical, no re-rank": p["hier_err_m"][:, 0],
              "isolated (true tile)": p["iso_err_m"]}
    return save_eval_plots(errors, report.examples, out_dir)


def _fmt_m(v: float) -> str:
    return f"{v:8.2f}" if v < 1e5 else f"{v:8.2g}"


def format_report(report: M.EvalReport) -> str:
    """A short human-readable table of the report."""
    r = report.retrieval
    lines = [f"queries {report.queries}, gallery {r.gallery_size} tiles, K = {report.top_k}",
             f"retrieval   R@1 {100 * r.r1:6.2f}  R@5 {100 * r.r5:6.2f}  R@10 {100 * r.r10:6.2f}  "
             f"R@1% {100 * r.r1pct:6.2f} (k={r.r1pct_k})  hit {100 * r.hit:6.2f}  [%]"]
    rows = [("isolated", None, report.metric_isolated), ("hier no-rerank", report.hier_no_rerank.r1,
                                                          report.hier_no_rerank.loc),
            ("hier re-rank", report.hier_rerank.r1, report.hier_rerank.loc)]
    lines.append(f"{'':15s} {'R@1':>6s} {'mean m':>8s} {'median m':>8s} {'<=1m':>6s} {'<=3m':>6s} {'<=5m':>6s} "
                 f"{'<=10m':>6s} {'<=20m':>6s} {'hdg med':>8s}")
    for name, r1, m in rows:
        r1s = "" if r1 is None else f"{100 * r1:6.2f}"
        hd = "-" if m.heading_median_deg is None else f"{m.heading_median_deg:8.2f}"
        lines.append(f"{name:15s} {r1s:>6s} {_fmt_m(m.mean_m)} {_fmt_m(m.median_m)} "
                     + " ".join(f"{100 * m.recall(d):6.2f}" for d in (1, 3, 5, 10, 20)) + f" {hd:>8s}")
    detail = report.extra.get("rerank_detail")
    if detail and detail["tile_assignment"]:
        step = "the tile assignment"
        if detail.get("consensus_radius_m", 0.0) > 0:
            step = (f"the consensus ({detail['consensus_radius_m']:g} m, T {detail['consensus_temperature']:g}) "
                    "and the tile assignment")
        lines.append(f"re-rank R@1: {100 * detail['r1_learned_order']:.2f} by the learned scores, "
                     f"{100 * detail['r1_after_tile_assignment']:.2f} after {step}")
    return "\n".join(lines)


# ============================================================================================ command line
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VIGOR-layout root (real VIGOR or `unifygeo synth` output)")
    parser.add_argument("--checkpoint", required=True, help="model checkpoint folder")
    parser.add_argument("--split", choices=("same", "cross"), default="same",
                        help="same: same_area_balanced_test.txt queries; cross: every panorama of the test cities")
    parser.add_argument("--cities", default=None,
                        help="comma-separated cities (default: all four for same, SanFrancisco,Chicago for cross)")
    parser.add_argument("--json", required=True, help="write the report (JSON) here")
    parser.add_argument("--plots", default=None, help="write the error CDF and examples into this folder")
    parser.add_argument("--examples", type=int, default=4, help="example figures with --plots (default 4)")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="candidates localized and re-ranked")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="data loading processes (0: in-process)")
    parser.add_argument("--orientation", choices=("known", "unknown"), default="known",
                        help="unknown: each panorama rotated by a fixed random heading (seeded per query)")
    parser.add_argument("--labels", choices=("corrected", "original", "auto"), default="corrected",
                        help="position labels: corrected (HC-Net, default), original VIGOR, or auto")
    parser.add_argument("--limit", type=int, default=None,
                        help="evaluate N queries spread evenly over the split (the gallery stays complete)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the unknown-orientation headings")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-tile-assignment", action="store_true",
                        help="re-ranked list = the learned order alone (default: the candidate holding the fix "
                             "most centrally goes first)")


def limit_indices(n: int, limit: int | None) -> np.ndarray | None:
    """``limit`` query indices spread evenly over ``n`` (all when None or >= n)."""
    if limit is None or limit >= n:
        return None
    if limit < 1:
        raise UnifyGeoError(f"--limit must be >= 1, got {limit}")
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def load_for_eval(checkpoint: str | Path, device: str = "auto"):
    """(model in eval mode, float32, on the device; its Config; its CheckpointMeta) from a checkpoint folder."""
    from unifygeo_ros.model.handle import resolve_device
    from unifygeo_ros.model.checkpoint import load_checkpoint

    dev = resolve_device(device)
    model, cfg, meta = load_checkpoint(checkpoint, map_location="cpu")
    return model.to(dev, torch.float32).eval(), cfg, meta


def run(args: argparse.Namespace) -> int:
    from unifygeo_ros.data.vigor import VigorDataset

    model, cfg, meta = load_for_eval(args.checkpoint, args.device)
    ground_hw = tuple(int(v) for v in cfg.model.ground_hw)
    aerial_px = int(cfg.model.aerial_px)
    cities = [c.strip() for c in args.cities.split(",") if c.strip()] if args.cities else None
    corrected = {"corrected": True, "original": False, "auto": "auto"}[args.labels]
    query_ds = VigorDataset(args.data, cities, split=args.split, train=False, ground_size_hw=ground_hw,
                            aerial_px=aerial_px, orientation=args.orientation, corrected=corrected,
                            seed=args.seed, aerial_height=bool(cfg.model.aerial_height))
    gallery_ds = query_ds.gallery()
    indices = limit_indices(len(query_ds), args.limit)
    with_plots = bool(args.plots)
    report = evaluate(model, query_ds, gallery_ds, top_k=args.top_k, batch_size=args.batch_size,
                      num_workers=args.workers, query_indices=indices,
                      num_examples=args.examples if with_plots else 0, progress=not args.no_progress,
                      tile_assignment=not args.no_tile_assignment,
                      extra={"checkpoint": {"path": str(args.checkpoint), "step": meta.step,
                                            "model_hash": meta.model_hash},
                             "config": cfg.to_dict(),
                             "data": {"root": str(args.data), "split": args.split, "cities": list(query_ds.cities),
                                      "orientation": args.orientation, "labels": args.labels,
                                      "limit": args.limit, "top_k": args.top_k,
                                      "device": str(next(model.parameters()).device)}})
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_dict(), indent=2, default=_json_default) + "\n")
    print(format_report(report))
    print(f"report: {out}")
    if with_plots:
        paths = save_report_plots(report, args.plots)
        print(f"plots: {len(paths)} figures in {args.plots}")
    return 0


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
