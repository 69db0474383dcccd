"""``unifygeo eval``: VIGOR-protocol evaluation of a model, task-isolated and hierarchical.

Stages (each a plain function; :func:`evaluate` chains them; the command line is
:mod:`unifygeo_ros.offline.eval_cli`):

1. :func:`~unifygeo_ros.offline.gallery.encode_gallery` - global descriptors of every gallery tile (batched); the tiles' dense matching
   features go to an :class:`AerialFeatureCache` bounded in bytes (tiles evicted from it are re-encoded on demand).
2. Query batches (:func:`evaluate_batch`), so memory is bounded by the batch, never by Q x R:
   a. encode the panoramas;
   b. **retrieval**: descriptor cosines against the gallery (:func:`unifygeo_ros.offline.metrics.rank_queries`, itself
      chunked by a byte budget): rank of the positive, hit flag, top-K list;
   c. **task-isolated metric localization**: localize against the TRUE positive tile; error = distance between
      the predicted offset and the label offset (metres), heading error (degrees, wrap-aware);
   d. **hierarchical**: localize against each of the top-K retrieved tiles (K: the checkpoint's ``loss.rerank_k``,
      what the Localizer re-ranks at run time); (no re-rank) keep the top-1 retrieved tile and its localization;
      (re-rank) choose the fix exactly as the Localizer does (:func:`unifygeo_ros.localization.choice.choose_fix`:
      learned order, consensus, tile assignment) in the gallery's local ENU frame. The position error is measured
      in the city's metric frame: predicted position = evidence tile centre + predicted offset, true position =
      positive tile centre + label offset, both expressed in the local ENU frame of the evidence tile (exact
      through ECEF, :meth:`VigorDataset.camera_en_relative_to`), so a wrong but neighbouring tile can still give a
      small error, and the right tile gives exactly the isolated error. ``r1`` of a hierarchy = its selected tile
      is the positive; the learned order's R@1 is reported beside it. Recall within d is reported both ways:
      lenient (error <= d, any selected tile) and strict (the selected tile is the positive and error <= d,
      UnifyGeo's rule; :mod:`unifygeo_ros.offline.metrics`). ``--per-query`` writes each query's fix (lat/lon,
      error, score, tile) with its positive tile and whether the tile is it.
   Heading errors are reported in both orientation settings (known: the true heading is 0, north-aligned).
3. Summaries (:mod:`unifygeo_ros.offline.metrics`) with their invariants asserted, into an :class:`EvalReport`.

The model interface used: ``encode_ground(x)``, ``encode_aerial(x)`` (feature dataclasses with a ``descriptor``
(B, D) field; other fields tensors or lists of tensors with the batch first), ``localize(ground, aerial)``
(paired) returning an output with ``peak_offset_en_m(tile_m)``, ``heading_deg()`` and ``probabilities``, and
``rerank_scores(ground, aerial, metric)``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.localization.choice import Candidates, FixChoice, choose_fix
from unifygeo_ros.model.backends import BackendSettings, attach_backend
from unifygeo_ros.model.checkpoint import load_checkpoint
from unifygeo_ros.model.handle import DEFAULT_RERANK_K, resolve_device
from unifygeo_ros.model.rerank import consensus_params
from unifygeo_ros.offline import metrics as M
from unifygeo_ros.offline.eval_report import summarise
from unifygeo_ros.offline.gallery import (DEFAULT_CACHE_BYTES, GalleryEncoding, encode_gallery, map_features,
                                          model_device_dtype, progress_bar)

DEFAULT_SIM_CHUNK_BYTES = M.DEFAULT_CHUNK_BYTES


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
    fix_latlon: np.ndarray  # (B, 2) the re-ranked fix (NaN when the gallery has no tile positions)
    fix_score: np.ndarray  # (B,) its probability (softmax of the learned scores at the evidence candidate)
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
        g = map_features(ground, lambda t: t[rows])
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


@torch.inference_mode()
def evaluate_batch(model, batch: dict, query_ds, gallery: GalleryEncoding, *, top_k: int, pair_batch: int,
                   sim_chunk_bytes: int = DEFAULT_SIM_CHUNK_BYTES, num_examples: int = 0,
                   consensus: tuple[float, float] | None = None) -> BatchResult:
    """Retrieval, isolated and hierarchical localization of one batch of queries (see the module docstring).
    ``consensus``: (radius m, temperature) of the model's consensus step, with the tile assignment after it; None:
    the learned order alone (also when the gallery has no tile positions)."""
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

    choices = [_choose(gallery, res.topk_indices[i], off[i, 1:], score[i, 1:], consensus) for i in range(b)]
    reranked_learned = np.take_along_axis(res.topk_indices, np.stack([c.choice.learned_order for c in choices]),
                                          axis=1)
    reranked = np.take_along_axis(res.topk_indices, np.stack([c.choice.order for c in choices]), axis=1)
    M.assert_rerank_within_topk(res.topk_indices, reranked_learned)
    M.assert_rerank_within_topk(res.topk_indices, reranked)
    fix_slot = np.array([c.choice.evidence_slot for c in choices], dtype=np.int64)  # the slot whose map gives the fix
    fix_latlon = np.array([c.latlon for c in choices], dtype=np.float64).reshape(b, 2)
    fix_score = np.array([c.choice.probability for c in choices])

    slots = np.stack([np.zeros(b, np.int64), fix_slot], axis=1)  # candidate slot per variant: no re-rank, re-rank
    hier_err, hier_head = _hierarchical_errors(query_ds, pano, pos, label_en, true_heading, res.topk_indices, slots,
                                               off, head, iso_err)
    examples = [_example(batch, i, query_ds, gallery, res, int(fix_slot[i]), maps, off, head, label_en,
                         true_heading) for i in range(min(num_examples, b))]
    return BatchResult(pano, pos, res.ranks, res.hits, res.topk_indices, reranked, reranked_learned, iso_err,
                       iso_head, hier_err, hier_head, fix_latlon, fix_score, examples)


@dataclass
class _QueryFix:
    choice: FixChoice
    latlon: tuple[float, float]  # of ``choice.position_en_m`` (NaN without tile positions)


def _hierarchical_errors(query_ds, pano: np.ndarray, pos: np.ndarray, label_en: np.ndarray, true_heading: np.ndarray,
                         topk: np.ndarray, slots: np.ndarray, off: np.ndarray, head: np.ndarray,
                         iso_err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, V) position and heading errors of the candidate ``slots`` (B, V) each variant chose, measured in the
    chosen tile's frame against the label (the right tile gives exactly the isolated error)."""
    err, head_err = np.zeros(slots.shape), np.zeros(slots.shape)
    for i, v in np.ndindex(*slots.shape):
        slot = int(slots[i, v])
        t = int(topk[i, slot])
        true_en = _true_en_relative(query_ds, pano[i], t, int(pos[i]), label_en[i])
        err[i, v] = float(np.hypot(*(off[i, 1 + slot] - true_en)))
        head_err[i, v] = float(M.heading_errors_deg(head[i, 1 + slot], true_heading[i])[0])
        if t == pos[i]:
            assert err[i, v] == iso_err[i], "right tile must give the isolated error"
    return err, head_err


def _example(batch: dict, i: int, query_ds, gallery: GalleryEncoding, res, slot: int, maps: dict, off: np.ndarray,
             head: np.ndarray, label_en: np.ndarray, true_heading: np.ndarray) -> dict:
    """Plot material of query ``i`` of the batch: its panorama, the tile whose map gave the fix, that map."""
    k = res.topk_indices.shape[1]
    pano, pos = int(batch["pano_index"][i]), int(batch["positive_index"][i])
    t = int(res.topk_indices[i, slot])
    return dict(pano_index=pano, ground=batch["ground"][i].clone(), tile_index=t, tile_m=float(gallery.tile_m[t]),
                prob_map=maps.get(i * (k + 1) + 1 + slot),
                true_en_m=_true_en_relative(query_ds, pano, t, pos, label_en[i]), pred_en_m=off[i, 1 + slot].copy(),
                true_heading_deg=float(true_heading[i]), pred_heading_deg=float(head[i, 1 + slot]),
                rank=int(res.ranks[i]), correct=bool(t == pos))


def _choose(gallery: GalleryEncoding, cands: np.ndarray, offsets_en_m: np.ndarray, scores: np.ndarray,
            consensus: tuple[float, float] | None) -> _QueryFix:
    """The Localizer's fix choice for one query (:func:`~unifygeo_ros.localization.choice.choose_fix`), in a local
    ENU frame of its candidates. ``consensus`` None: the learned order alone (no tile assignment, no consensus)."""
    if gallery.tile_latlon is None:
        choice = choose_fix(Candidates(np.zeros((len(cands), 2)), gallery.tile_m[cands], offsets_en_m, scores),
                            tile_assignment=False)
        return _QueryFix(choice, (float("nan"), float("nan")))
    frame, centres = gallery.local_frame(cands)
    located = consensus is not None
    choice = choose_fix(Candidates(centres, gallery.tile_m[cands], offsets_en_m, scores),
                        consensus if located else (0.0, 1.0), tile_assignment=located)
    lat, lon = frame.from_en(*choice.position_en_m)
    return _QueryFix(choice, (float(lat), float(lon)))


def _query_loader(query_ds, query_indices, batch_size: int, num_workers: int):
    ds = query_ds if query_indices is None else torch.utils.data.Subset(query_ds, list(map(int, query_indices)))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def _base_dataset(ds):
    while isinstance(ds, torch.utils.data.Subset):
        ds = ds.dataset
    return ds


# ================================================================================================= evaluate
def evaluate(model, query_ds, gallery_ds=None, *, top_k: int | None = None, batch_size: int = 32,
             num_workers: int = 0, query_indices: Sequence[int] | None = None, num_examples: int = 0,
             cache_bytes: int = DEFAULT_CACHE_BYTES, sim_chunk_bytes: int = DEFAULT_SIM_CHUNK_BYTES,
             pair_batch: int | None = None, progress: bool = False, extra: dict | None = None,
             tile_assignment: bool = True) -> M.EvalReport:
    """Evaluate ``model`` on the queries of ``query_ds`` (a :class:`VigorDataset`, ``train=False``) against
    ``gallery_ds`` (default: ``query_ds.gallery()``): retrieval, task-isolated and hierarchical localization.

    The model runs on the device and in the dtype of its parameters. ``query_indices`` restricts the queries
    (``--limit``); the gallery is always complete. ``num_examples`` queries are kept in ``report.examples`` for
    :mod:`unifygeo_ros.plots`. Per-query arrays are in ``report.per_query``. ``top_k``: candidates
    localized and re-ranked (None: :data:`~unifygeo_ros.model.handle.DEFAULT_RERANK_K`; the command line passes the
    checkpoint's ``loss.rerank_k``, what the Localizer re-ranks at run time). ``tile_assignment``: the fix is chosen
    exactly as the Localizer chooses it (:func:`~unifygeo_ros.localization.choice.choose_fix`: consensus, then
    the tile assignment; needs the gallery's ``tile_latlon``); False (or no positions): the learned order alone.
    """
    if gallery_ds is None:
        gallery_ds = query_ds.gallery()
    top_k = DEFAULT_RERANK_K if top_k is None else int(top_k)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    base = _base_dataset(query_ds)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    device, dtype = model_device_dtype(model)
    timing: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        gallery = encode_gallery(model, gallery_ds, batch_size=batch_size, num_workers=num_workers,
                                 device=device, dtype=dtype, cache_bytes=cache_bytes, progress=progress)
        timing["gallery_s"] = time.perf_counter() - t0
        k = min(int(top_k), len(gallery_ds))
        pair_batch = int(pair_batch or max(1, 2 * batch_size))
        consensus = consensus_params(getattr(model, "cfg", None))
        if not tile_assignment or gallery.tile_latlon is None:
            consensus = None
        t0 = time.perf_counter()
        results: list[BatchResult] = []
        loader = _query_loader(query_ds, query_indices, batch_size, num_workers)
        for batch in progress_bar(loader, progress, "queries", len(loader)):
            need = max(0, num_examples - sum(len(r.examples) for r in results))
            results.append(evaluate_batch(model, batch, base, gallery, top_k=k, pair_batch=pair_batch,
                                          sim_chunk_bytes=sim_chunk_bytes, num_examples=need,
                                          consensus=consensus))
        timing["queries_s"] = time.perf_counter() - t0
        timing["per_query_ms"] = 1000.0 * timing["queries_s"] / max(1, sum(len(r.rank) for r in results))
    finally:
        if was_training:
            model.train()
    if not results:
        raise UnifyGeoError("no queries to evaluate")
    per = _per_query(results, base, gallery_ds)
    examples = [e for r in results for e in r.examples]
    return summarise(per, len(gallery_ds), k, gallery_ds=gallery_ds, examples=examples,
                     extra={"timing_s": timing, "gallery": _gallery_info(gallery_ds, gallery),
                            **(extra or {})}, tile_assignment=consensus is not None, consensus=consensus)


def _per_query(results: list[BatchResult], query_ds, gallery_ds) -> dict[str, np.ndarray]:
    """The batches' per-query arrays concatenated, with the file names of the panoramas, of the fixes' tiles and
    of the positive tiles."""
    per = {f.name: np.concatenate([getattr(r, f.name) for r in results])
           for f in dataclasses.fields(BatchResult) if f.name != "examples"}
    per["panorama"] = _names(getattr(query_ds, "pano_paths", None), per["pano_index"])
    per["fix_tile"] = _names(getattr(gallery_ds, "tile_paths", None), per["topk_reranked"][:, 0])
    per["positive_tile"] = _names(getattr(gallery_ds, "tile_paths", None), per["positive"])
    return per


def _names(paths, indices: np.ndarray) -> np.ndarray:
    """File names (the index's tile ids are file stems) of ``indices``, or the indices when there are no files."""
    if paths is None:
        return np.array([str(int(i)) for i in indices])
    return np.array([Path(paths[int(i)]).name for i in indices])


def _gallery_info(gallery_ds, gallery: GalleryEncoding) -> dict:
    return {"tiles": int(len(gallery_ds)), "cities": list(getattr(gallery_ds, "cities", [])),
            "tiles_reencoded": int(gallery.cache.encoded)}


def limit_indices(n: int, limit: int | None) -> np.ndarray | None:
    """``limit`` query indices spread evenly over ``n`` (all when None or >= n)."""
    if limit is None or limit >= n:
        return None
    if limit < 1:
        raise UnifyGeoError(f"--limit must be >= 1, got {limit}")
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def load_for_eval(checkpoint: str | Path, device: str = "auto", backend: BackendSettings | None = None):
    """(model in eval mode, float32, on the device; its Config; its CheckpointMeta) from a checkpoint folder;
    with ``backend``, its encoders run there (:func:`~unifygeo_ros.model.backends.attach_backend`)."""
    dev = resolve_device(device)
    model, cfg, meta = load_checkpoint(checkpoint, map_location="cpu")
    model = model.to(dev, torch.float32).eval()
    if backend is not None:
        model, _ = attach_backend(model, meta.model_hash, backend, Path(checkpoint).resolve().name)
    return model, cfg, meta

