"""The hierarchy at run time: panorama -> preprocessing -> network -> index search -> metric localization ->
re-ranking -> a geo-referenced :class:`Fix`. ROS-free; the ROS node and ``unifygeo localize`` call it.

Definitions (what each field of a :class:`Fix` means):

* Position = centre of the chosen tile + the metric head's refined peak offset (metres east/north), expressed in
  the index's local ENU frame (``east_m``, ``north_m``) and in WGS84 (``latitude_deg``, ``longitude_deg``).
* ``covariance_en_m2`` = second moment, about the fix, of the posterior over the whole hierarchy: the mixture of
  the K candidates' probability maps weighted by their calibrated probabilities
  (:mod:`~unifygeo_ros.localization.posterior`; wide or elongated when the candidates disagree).
  ``protection_level_m`` = the radius around the fix that holds the truth with probability ``1 - alpha`` under that
  posterior (``inf`` when more than ``alpha`` of it lies outside the K candidates: ``outside_probability``).
  ``descriptor_cosine`` = the best global-descriptor cosine of the query against the searched tiles;
  ``input_problem`` = why the image looks unlike a camera image of the map (:mod:`~unifygeo_ros.localization.
  input_check`; "" when it does not): the integrity gate withholds such a fix.
* ``heading_deg`` = compass heading of the panorama's centre column (0 = north, clockwise); ``yaw_deg`` = the same
  as ENU yaw (0 = east, counter-clockwise, ``geo.heading_to_yaw_deg``). ``heading_std_deg`` = circular standard
  deviation ``sqrt(-2 ln R)`` of the heading hypotheses at the peak cell, R = length of their mean unit vector.
* Orientation. A model trained with ``data.orientation: unknown`` estimates the heading from the panorama
  (``heading_source = "model"``). A model trained with ``data.orientation: known`` (VIGOR's standard, north-aligned
  panoramas) needs the heading as an input - from an IMU or compass - and the caller passes ``heading_deg``
  (compass heading of the panorama's centre column): the panorama is rolled to north before the network sees it,
  and the fix reports that heading with ``heading_std_deg`` = the given ``heading_std_deg``
  (``heading_source = "input"``). Without ``heading_deg`` such a model assumes a north-aligned panorama.
* ``score`` = softmax over the K candidates of the re-ranker's scores, at the chosen tile: the model's probability
  (the re-ranker is trained with a listwise cross-entropy over the top K) that the chosen tile contains the camera.
* ``tile_id``: the tile the fix is *in*. With ``tile_assignment`` (default) that is the candidate holding the fix
  most centrally (in its central quarter on VIGOR's half-stride grid: :func:`~unifygeo_ros.model.rerank.assign_tile`),
  which can be an overlapping neighbour of ``evidence_tile_id``, the candidate whose probability map gave
  the position, heading and covariance: the re-ranker's top-1, or with ``model.consensus_radius_m`` > 0 the
  candidate whose fix the others agree with most (:func:`~unifygeo_ros.model.rerank.consensus_slot`); without
  the assignment, ``tile_id`` is that candidate too.
* ``tile_rank_before_rerank`` / ``tile_rank_after_rerank``: 1-based rank of the chosen tile by descriptor
  similarity among the searched tiles, and after re-ranking the top K (1 for the chosen tile).
  ``candidate_tile_ids``: the K re-ranked candidates in descriptor order (``[0]`` is retrieval's top-1).
* Prior: with ``Prior(east_m, north_m, sigma_m)`` the tiles whose centre lies within
  ``prior_sigmas * sigma_m + tile_m / sqrt(2)`` of the prior are searched (a k-d tree on tile centres) *and*, every
  frame, the whole index. The prior-restricted fix is kept (``used_prior``) unless it scores below
  ``prior_min_score``, lies more than ``prior_sigmas * sigma_m`` from the prior, or the global search's posterior
  excludes the prior's circle (its protection level around its fix does not reach the circle: a kidnapped robot);
  then the global fix is returned with ``prior_rejected = True``. So a prior can narrow the answer but never
  lock it: the global evidence is weighed against it every frame. The metric head and the re-ranker run once per
  query, on the union of both passes' candidates (and of the tracking filter's tiles in :meth:`Localizer.
  localize_with_maps`): each pair's output is its own, so every pass reads its candidates' from that one run.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from unifygeo_ros import geo
from unifygeo_ros.errors import ImageError
from unifygeo_ros.image.preprocess import roll_panorama, validate_panorama
from unifygeo_ros.index import store
from unifygeo_ros.index.portable import recorded_checkpoint
from unifygeo_ros.localization.choice import Candidates, choose_fix
from unifygeo_ros.localization.fix import Fix, Prior, QueryEvidence
from unifygeo_ros.localization.input_check import camera_image_problem, descriptor_problem
from unifygeo_ros.localization.posterior import DEFAULT_ALPHA, Calibration, hierarchy_posterior, load_calibration
from unifygeo_ros.model.backends import BackendSettings, handle_with_backend
from unifygeo_ros.model.handle import ModelHandle, arrays_to_aerial, load_model
from unifygeo_ros.model.rerank import consensus_params

STAGES = ("preprocess", "encode", "search", "localize", "rerank", "total")


@dataclass
class TileMaps:
    """The metric head's output for one query over chosen index tiles (:meth:`Localizer.localize_with_maps`).

    ``maps[k]`` is tile k's probability map (softmax over its cells, row 0 = north, column 0 = west; geometry of
    :mod:`~unifygeo_ros.model.metric_head`), conditional on the camera being in that tile; ``scores[k]`` the
    re-ranker's score of the tile (calibrated by :class:`~unifygeo_ros.localization.posterior.Calibration`);
    ``heading_vectors_en[k]`` the (east, north) heading vector of each cell (its length is the confidence).
    """

    rows: np.ndarray  # (K,) index rows
    centres_en_m: np.ndarray  # (K, 2) tile centres, the index's local ENU
    tile_m: float
    maps: np.ndarray  # (K, h, w) float32
    scores: np.ndarray  # (K,) float64
    heading_vectors_en: np.ndarray  # (K, 2, h, w) float32
    timings_ms: dict = field(default_factory=dict)


@dataclass
class _Query:
    """Intermediate state of one query through the stages."""

    cand: np.ndarray  # (k,) tile rows, retrieval order
    sims: np.ndarray  # (k,) descriptor cosines
    searched: int


@dataclass
class _RowOutputs:
    """The metric head and the re-ranker run once on a set of index rows for one query (numpy, by row): what
    every pass of that query (prior, global) and the tracking filter's tiles read."""

    slot: dict  # index row -> position in the arrays
    scores: np.ndarray  # (N,) re-ranking scores
    offsets_en_m: np.ndarray  # (N, 2) refined peak from the tile centre
    maps: np.ndarray  # (N, h, w) float32 probability maps
    heading_vectors: np.ndarray  # (N, 2, h, w) float32 (east, north) heading vectors
    peak_vectors: np.ndarray  # (N, 2) heading vector at the refined peak's nearest cell
    heading_deg: np.ndarray  # (N,) compass heading at the peak

    def at(self, rows: np.ndarray) -> np.ndarray:
        return np.array([self.slot[int(r)] for r in rows], dtype=np.int64)


class Localizer:
    """Localizes panoramas against one aerial index with one model.

    ``k``: candidates re-ranked (default: the model's ``loss.rerank_k``, 5). ``calibration``: the posterior's
    (default: the checkpoint's ``calibration.json``, else uncalibrated); ``alpha``: the protection level's risk.
    ``tile_assignment``: report the candidate that holds the fix most centrally as ``tile_id`` (default; see the
    module doc). ``aspect_tolerance``: accepted relative deviation of a panorama's width/height from 2 (the one
    panorama check of the pipeline). ``record_evidence``: keep each query's candidates in ``Fix.evidence``
    (calibration). Not thread-safe (one model, one device).
    """

    def __init__(self, index: store.AerialIndex, handle: ModelHandle, k: int | None = None,
                 prior_sigmas: float = 3.0, prior_min_score: float = 0.3, calibration: Calibration | None = None,
                 alpha: float = DEFAULT_ALPHA, tile_assignment: bool = True, aspect_tolerance: float = 0.05,
                 record_evidence: bool = False):
        index.check_model(handle.identity, handle.descriptor_dim)
        self.index = index
        self.handle = handle
        self.k = int(k or handle.rerank_k)
        self.prior_sigmas = float(prior_sigmas)
        self.prior_min_score = float(prior_min_score)
        self.calibration = calibration if calibration is not None else load_calibration(handle.checkpoint)
        self.alpha = float(alpha)
        self.record_evidence = bool(record_evidence)
        self.tile_assignment = bool(tile_assignment)
        self.aspect_tolerance = float(aspect_tolerance)
        self.consensus = consensus_params(getattr(handle.model, "cfg", None))
        self.tile_m = index.tile_m
        index.tiles_within(0.0, 0.0, 0.0)  # build the spatial filter now, not on the first prior

    # ---- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_paths(cls, index_dir: str | Path, checkpoint: str | Path | None = None, device: str = "auto",
                   backend: BackendSettings | None = None, **kwargs) -> "Localizer":
        """Load an index and a model (default: the checkpoint recorded in the index) on ``device``, its encoders
        run by ``backend`` (None: torch, threads untouched; :mod:`unifygeo_ros.model.backends`).

        Raises :class:`IndexFormatError` when the index is damaged or was built with another model (checked
        before any ONNX export is made or loaded; an export of another model is refused by the backend).
        """
        if checkpoint is None:
            checkpoint = recorded_checkpoint(index_dir)  # relative to the index, identity checked
        handle = load_model(checkpoint, device=device)
        index = store.load_index(index_dir, device=handle.device.type)
        index.check_model(handle.identity, handle.descriptor_dim)
        if backend is not None:
            handle = handle_with_backend(handle, backend)
        return cls(index, handle, **kwargs)

    # ---- stages -----------------------------------------------------------------------------------------------
    def _candidates(self, descriptor: np.ndarray, prior: Prior | None) -> _Query:
        if prior is None:
            s, i = self.index.searcher.search(descriptor[None], self.k)
            keep = i[0] >= 0  # an approximate index may return fewer than k (-1 padded)
            return _Query(i[0][keep], s[0][keep], len(self.index))
        subset = self.index.tiles_within(prior.east_m, prior.north_m, self.prior_radius_m(prior))
        s, i = self.index.searcher.search(descriptor[None], self.k, subset=subset)
        return _Query(i[0], s[0], int(subset.size))

    def prior_radius_m(self, prior: Prior) -> float:
        """Tiles whose centre lies within this distance of the prior are searched."""
        return self.prior_sigmas * prior.sigma_m + self.tile_m / math.sqrt(2.0)

    def _aerial(self, rows: np.ndarray):
        """The candidates' aerial features: from the index's cached features, or encoded from its tiles."""
        h = self.handle
        if self.index.aerial_mode == "features":
            return arrays_to_aerial(self.index.descriptors[rows], self.index.aerial_rows(rows), h.device, h.dtype)
        return h.encode_aerial(list(self.index.aerial_rows(rows)["tiles"]))

    @torch.inference_mode()
    def _metric_rows(self, ground, rows: np.ndarray, times: dict) -> _RowOutputs:
        """The metric head and the re-ranking scores of one encoded query on the index ``rows``, once (each pass
        and the filter's tiles take theirs from it; both are per pair, so a row's outputs do not depend on the
        others). Adds to the ``localize`` and ``rerank`` stage times."""
        h = self.handle
        t0 = time.perf_counter()
        aerial = self._aerial(rows)
        metric = h.model.localize(ground, aerial)
        h.synchronize()
        times["localize"] = times.get("localize", 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = h.model.rerank_scores(ground, aerial, metric).double().cpu().numpy()
        peak = metric.peak_cell()
        hh, ww = metric.grid_hw
        rr = peak[:, 0].round().long().clamp(0, hh - 1)
        cc = peak[:, 1].round().long().clamp(0, ww - 1)
        heading_vectors = metric.heading_vectors.float()
        out = _RowOutputs({int(r): j for j, r in enumerate(rows)}, scores,
                          metric.peak_offset_en_m(self.tile_m).double().cpu().numpy(),
                          metric.probabilities.float().cpu().numpy(), heading_vectors.cpu().numpy(),
                          heading_vectors[torch.arange(len(rows)), :, rr, cc].double().cpu().numpy(),
                          metric.heading_deg().double().cpu().numpy())
        h.synchronize()
        times["rerank"] = times.get("rerank", 0.0) + time.perf_counter() - t0
        return out

    def _decide(self, q: _Query, rows_out: _RowOutputs, times: dict) -> Fix:
        """Re-rank one pass's candidates and choose its fix (choice, posterior, heading) from the rows' outputs."""
        t0 = time.perf_counter()
        at = rows_out.at(q.cand)
        scores = rows_out.scores[at]
        centres, tile_m = self.index.en_m[q.cand], np.full(len(q.cand), self.tile_m)
        choice = choose_fix(Candidates(centres_en_m=centres, tile_m=tile_m, offsets_en_m=rows_out.offsets_en_m[at],
                                       scores=scores), self.consensus, self.tile_assignment)
        maps = rows_out.maps[at]
        post = hierarchy_posterior(choice.position_en_m, centres, tile_m, maps, scores, self.calibration,
                                   self.alpha)
        best = choice.evidence_slot
        vec = rows_out.peak_vectors[at[best]]
        heading = float(rows_out.heading_deg[at[best]])
        length = float(np.clip(np.hypot(vec[0], vec[1]), 1e-9, 1.0))
        east, north = (float(v) for v in choice.position_en_m)
        lat, lon = self.index.origin.from_en(east, north)
        tile_ids = self.index.tile_ids
        fix = Fix(latitude_deg=float(lat), longitude_deg=float(lon), east_m=east, north_m=north,
                  heading_deg=geo.wrap_deg(heading), yaw_deg=float(geo.heading_to_yaw_deg(heading)),
                  covariance_en_m2=post.covariance_en_m2,
                  heading_std_deg=float(math.degrees(math.sqrt(-2.0 * math.log(length)))),
                  score=choice.probability, tile_id=tile_ids[int(q.cand[choice.tile_slot])],
                  tile_rank_before_rerank=choice.tile_slot + 1, tile_rank_after_rerank=1, used_prior=False,
                  tiles_searched=q.searched, candidate_tile_ids=tuple(tile_ids[int(r)] for r in q.cand),
                  evidence_tile_id=tile_ids[int(q.cand[best])], protection_level_m=post.protection_level_m,
                  outside_probability=post.outside_probability,
                  descriptor_cosine=float(q.sims.max()) if q.sims.size else math.nan)
        if self.record_evidence:
            fix.evidence = QueryEvidence(choice.position_en_m, centres, tile_m, maps, scores, best)
        times["rerank"] = times.get("rerank", 0.0) + time.perf_counter() - t0
        return fix

    def _prior_ok(self, fix: Fix, prior: Prior) -> bool:
        far = math.hypot(fix.east_m - prior.east_m, fix.north_m - prior.north_m) > self.prior_sigmas * prior.sigma_m
        return fix.score >= self.prior_min_score and not far

    def _global_excludes_prior(self, fix: Fix, prior: Prior) -> bool:
        """The global search's posterior excludes the prior's circle: its protection level (risk alpha) around its
        fix does not reach the circle of ``prior_sigmas * sigma_m`` (the robot was moved or kidnapped)."""
        gap = math.hypot(fix.east_m - prior.east_m, fix.north_m - prior.north_m) - self.prior_sigmas * prior.sigma_m
        return fix.protection_level_m < gap

    def _one(self, ground, descriptor: np.ndarray, prior: Prior | None, times: dict,
             extra_rows: np.ndarray | None = None) -> tuple[Fix, _RowOutputs]:
        """The global search every frame; with a prior, also the prior-restricted search, whose fix is kept unless
        it fails :meth:`_prior_ok` or the global evidence excludes the prior (:meth:`_global_excludes_prior`). The
        metric head runs once on the union of both passes' candidates and ``extra_rows`` (the filter's tiles)."""
        t0 = time.perf_counter()
        q = self._candidates(descriptor, None)
        local_q = self._candidates(descriptor, prior) if prior is not None else None
        times["search"] = times.get("search", 0.0) + time.perf_counter() - t0
        rows = [q.cand] + ([local_q.cand] if local_q is not None else []) + \
            ([np.asarray(extra_rows, np.int64)] if extra_rows is not None else [])
        outs = self._metric_rows(ground, np.unique(np.concatenate(rows)), times)
        local = self._decide(local_q, outs, times) if local_q is not None and local_q.cand.size else None
        fix = self._decide(q, outs, times)
        if local is not None and self._prior_ok(local, prior) and not self._global_excludes_prior(fix, prior):
            local.used_prior = True
            return local, outs
        fix.prior_rejected = prior is not None
        return fix, outs

    # ---- public -----------------------------------------------------------------------------------------------
    @property
    def known_orientation(self) -> bool:
        """The model needs the heading as an input (trained on north-aligned panoramas)."""
        return self.handle.known_orientation

    def localize(self, image: np.ndarray, prior: Prior | None = None, heading_deg: float | None = None,
                 heading_std_deg: float = 5.0) -> Fix:
        """Localize one RGB ``uint8`` equirectangular panorama.

        ``heading_deg``: compass heading of the panorama's centre column when known (IMU, compass); required
        by known-orientation models unless the panorama is north-aligned, ignored by the others.
        Raises :class:`ImageError` for an unusable image.
        """
        return self.localize_batch([image], [prior], None if heading_deg is None else [heading_deg],
                                   heading_std_deg=heading_std_deg)[0]

    def _checked(self, images: list[np.ndarray], headings: list[float | None]) -> list[np.ndarray]:
        """Each panorama validated (once, with ``aspect_tolerance``) and, for known-orientation models, rolled so
        its centre column looks north (unchanged when the heading is None or 0; unknown-orientation models
        estimate the heading themselves)."""
        out = []
        for img, h in zip(images, headings):
            validate_panorama(img, tol=self.aspect_tolerance)
            if not self.known_orientation or h is None or h == 0.0:
                out.append(img)
                continue
            if not math.isfinite(h):
                raise ImageError(f"heading {h} is not a finite number")
            out.append(roll_panorama(img, -float(h))[0])
        return out

    def localize_batch(self, images: list[np.ndarray], priors: list[Prior | None] | None = None,
                       headings: list[float | None] | None = None, batch_size: int = 16,
                       heading_std_deg: float = 5.0) -> list[Fix]:
        """Localize several panoramas; the network encodes them in batches of ``batch_size``.

        ``headings``: per image, the compass heading of the centre column or None (see :meth:`localize`).
        Timings of a batched call are per image: shared stages (preprocess, encode) are divided by the batch.
        """
        priors = list(priors) if priors is not None else [None] * len(images)
        if len(priors) != len(images):
            raise ValueError(f"{len(priors)} priors for {len(images)} images")
        if headings is not None and len(headings) != len(images):
            raise ValueError(f"{len(headings)} headings for {len(images)} images")
        given = list(headings) if headings is not None else [None] * len(images)
        fixes: list[Fix] = []
        h = self.handle
        for start in range(0, len(images), batch_size):
            t_start = time.perf_counter()
            chunk = self._checked(images[start:start + batch_size], given[start:start + batch_size])
            x = h.ground_batch(chunk)
            h.synchronize()
            t_pre = (time.perf_counter() - t_start) / len(chunk)
            t0 = time.perf_counter()
            ground = h.encode_ground_tensor(x)
            desc = ground.descriptor.float().cpu().numpy()
            h.synchronize()
            t_enc = (time.perf_counter() - t0) / len(chunk)
            for j in range(len(chunk)):
                t1 = time.perf_counter()
                times = {"preprocess": t_pre, "encode": t_enc}
                fix, _ = self._one(ground.select(slice(j, j + 1)), desc[j], priors[start + j], times)
                fixes.append(self._finish(fix, chunk[j], given[start + j], heading_std_deg, times, t1))
        return fixes

    def _finish(self, fix: Fix, image: np.ndarray, heading_deg: float | None, heading_std_deg: float,
                times: dict, t1: float) -> Fix:
        """The fix's input check, its heading when it was given (known orientation) and its stage timings."""
        fix.input_problem = camera_image_problem(image) or descriptor_problem(
            fix.descriptor_cosine, self.calibration.min_descriptor_cosine)
        if self.known_orientation:
            heading = float(heading_deg or 0.0)
            fix.heading_deg = geo.wrap_deg(heading)
            fix.yaw_deg = float(geo.heading_to_yaw_deg(heading))
            fix.heading_std_deg = float(heading_std_deg)
            fix.heading_source = "input"
        times["total"] = times["preprocess"] + times["encode"] + (time.perf_counter() - t1)
        fix.timings_ms = {k: round(1000.0 * times.get(k, 0.0), 3) for k in STAGES}
        return fix

    @torch.inference_mode()
    def localize_with_maps(self, image: np.ndarray, rows: np.ndarray, heading_deg: float | None = None,
                           heading_std_deg: float = 5.0, global_search: bool = True) -> tuple[Fix | None, TileMaps]:
        """One panorama encoded once: its global fix (exactly :meth:`localize` without a prior, with its
        ``evidence`` kept; None when ``global_search`` is False) and the metric head's output over the index tiles
        ``rows`` (the sequential localizer's measurement: :mod:`~unifygeo_ros.localization.tracking`).
        ``heading_deg`` as in :meth:`localize`. ``TileMaps.timings_ms``: ``maps`` (metric head and re-ranking scores
        of ``rows``) and the fix's stages."""
        h = self.handle
        t_start = time.perf_counter()
        chunk = self._checked([image], [heading_deg])
        x = h.ground_batch(chunk)
        t_pre = time.perf_counter() - t_start
        t0 = time.perf_counter()
        ground = h.encode_ground_tensor(x)
        desc = ground.descriptor.float().cpu().numpy()
        h.synchronize()
        times = {"preprocess": t_pre, "encode": time.perf_counter() - t0}
        fix = None
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        t0 = time.perf_counter()
        if global_search:
            t1 = time.perf_counter()
            keep, self.record_evidence = self.record_evidence, True  # the fix's posterior seeds a filter
            try:
                fix, outs = self._one(ground, desc[0], None, times, extra_rows=rows)
            finally:
                self.record_evidence = keep
            fix = self._finish(fix, chunk[0], heading_deg, heading_std_deg, times, t1)
            t0 = time.perf_counter()
        else:
            outs = self._metric_rows(ground, rows, {}) if rows.size else None
        maps = self._tile_maps(rows, outs)
        maps.timings_ms = {"maps": round(1000.0 * (time.perf_counter() - t0), 3),
                           **(fix.timings_ms if fix is not None else
                              {k: round(1000.0 * v, 3) for k, v in times.items()})}
        return fix, maps

    def _tile_maps(self, rows: np.ndarray, outs: _RowOutputs | None) -> TileMaps:
        """The metric head's maps and the re-ranker's scores of one encoded query over the tiles ``rows``."""
        hw = (0, 0)
        if not rows.size:
            return TileMaps(rows, np.zeros((0, 2)), self.tile_m, np.zeros((0, *hw), np.float32), np.zeros(0),
                            np.zeros((0, 2, *hw), np.float32))
        at = outs.at(rows)
        return TileMaps(rows, np.asarray(self.index.en_m[rows], np.float64), self.tile_m, outs.maps[at],
                        outs.scores[at], outs.heading_vectors[at])
