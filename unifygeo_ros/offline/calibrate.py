"""``unifygeo calibrate``: fit the posterior's calibration on cities the model is not evaluated on, and measure it.

    unifygeo calibrate --checkpoint models/demo --data out/bench_data --cities Synth100,Synth101 [--write]

Stages (plain functions):

1. :func:`collect` - for each city (VIGOR layout with ``geo.json``, e.g. ``unifygeo synth`` output): an index of its
   tiles (cached features, built into ``--work``), every panorama localized by the Localizer with its evidence kept
   (the K candidates' maps and scores: :class:`~unifygeo_ros.localization.fix.QueryEvidence`) and its true position
   (from the file name, VIGOR's convention);
2. :func:`fit` - the :class:`~unifygeo_ros.localization.posterior.Calibration`: the score temperature, the "none
   of the K" logit, the consensus weight and the protection level's map temperature that maximise the mean
   log-likelihood of the true positions under the whole posterior (a proper scoring rule; the outside mass spread
   uniformly over the city's tiled area); then the map temperature that makes the published covariance (the
   fix's mode) consistent where it is published - on the fixes the gate (``max_protection_level_m``) accepts:
   1- and 2-sigma coverage closest to a Gaussian's 39.3 / 86.5 %; and the
   out-of-distribution floor of the descriptor cosine (a low quantile of the calibration panoramas', minus a margin);
3. :func:`evaluate_calibration` - coverage, NEES, protection levels, HMI and availability
   (:mod:`~unifygeo_ros.localization.integrity`) for a list of protection-level limits, so the gate's default can be
   chosen by measurement; with ``--write`` the calibration is stored beside the checkpoint (``calibration.json``),
   where the Localizer, the node, replay and eval pick it up.

The fix itself (position, tile) does not depend on the calibration: only its covariance and protection level do, so
the network runs once per panorama and the fit works on the kept evidence.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from unifygeo_ros.data.vigor import parse_pano_name
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.image.preprocess import load_image
from unifygeo_ros.index import build as index_build
from unifygeo_ros.index import store
from unifygeo_ros.index.tiles import vigor_tiles
from unifygeo_ros.localization.fix import Fix, QueryEvidence
from unifygeo_ros.localization.integrity import EXPECTED_COVERAGE, TrustReport, nees, trust_report
from unifygeo_ros.localization.localizer import Localizer
from unifygeo_ros.localization.pipeline import PipelineSettings
from unifygeo_ros.localization.posterior import (DEFAULT_ALPHA, Calibration, Posterior, agreement_counts,
                                                 hierarchy_posterior, logits_from, map_peaks_en_m,
                                                 save_calibration)
from unifygeo_ros.model.handle import ModelHandle, load_model

SCORE_TEMPERATURES = tuple(float(v) for v in np.geomspace(0.25, 16.0, 13))
MAP_TEMPERATURES = tuple(float(v) for v in np.geomspace(0.05, 4.0, 15))
OUTSIDE_LOGITS = (-math.inf,) + tuple(float(v) for v in np.linspace(-8.0, 4.0, 13))
CONSENSUS_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0)
PL_LIMITS_M = (10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, math.inf)
DESCRIPTOR_QUANTILE = 0.005
DESCRIPTOR_MARGIN = 0.05


@dataclass
class CalibrationQuery:
    """One panorama: its evidence, its true position (index frame) and the city's tiled area."""

    name: str
    city: str
    evidence: QueryEvidence
    truth_en_m: np.ndarray  # (2,)
    area_m2: float
    descriptor_cosine: float
    fix: Fix | None = None  #: the Localizer's fix under :func:`collect`'s calibration (what the gate judges)


def _city_area_m2(index: store.AerialIndex) -> float:
    en = index.en_m
    span = (en.max(axis=0) - en.min(axis=0)) + index.tile_m
    return float(span[0] * span[1])


def index_dir_for(work: Path, city: str, identity: str) -> Path:
    """Where a city's index for the model of this identity is cached under ``work`` (one folder per model)."""
    return Path(work) / city / identity[:16]


def collect(handle: ModelHandle, city_dirs: list[Path], work: Path, limit: int | None = None,
            progress: bool = True, view: Callable[[np.ndarray, int], np.ndarray] | None = None,
            calibration: Calibration | None = None) -> list[CalibrationQuery]:
    """Localize every panorama of each city against that city's own index, keeping the evidence (stage 1). The
    indexes are built once per model under ``work/<city>/<model identity[:16]>`` (a re-trained checkpoint gets its
    own, never a stale one). ``view(panorama, i)``: the image localized instead of the ``i``-th panorama of a city
    (e.g. a pinhole rig's stitched view of its scene); ``calibration``: the posterior the fixes are made with (default
    uncalibrated: the fit's starting point; a checkpoint's own to judge its fixes with the node's gate,
    benchmarks/bench_fov_trust.py)."""
    out: list[CalibrationQuery] = []
    for city_dir in city_dirs:
        index_dir = index_dir_for(work, city_dir.name, handle.identity)
        if not (index_dir / "index.json").is_file():
            index_build.build_index(handle, vigor_tiles(city_dir, height=handle.aerial_channels == 4), index_dir,
                                    aerial_mode="features", progress=False)
        index = store.load_index(index_dir, device=handle.device.type)
        loc = Localizer(index, handle, calibration=calibration or Calibration(), record_evidence=True)
        panos = sorted((city_dir / "panorama").iterdir())[: limit or None]
        t0 = time.perf_counter()
        images = [load_image(p) for p in panos]
        fixes = loc.localize_batch(images if view is None else [view(im, i) for i, im in enumerate(images)])
        area = _city_area_m2(index)
        for p, fix in zip(panos, fixes):
            _, lat, lon = parse_pano_name(p.name)
            east, north = index.origin.to_en(lat, lon)
            out.append(CalibrationQuery(p.name, city_dir.name, fix.evidence, np.array([float(east), float(north)]),
                                        area, fix.descriptor_cosine, fix))
        if progress:
            print(f"[calibrate] {city_dir.name}: {len(panos)} panoramas in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    if not out:
        raise UnifyGeoError("no panoramas to calibrate on")
    return out


def _truth_log_cells(queries: list[CalibrationQuery], map_temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) log of each candidate's (tempered) map at the truth's cell, -inf outside its tile; (N, K) log cell
    area."""
    logp, log_area = [], []
    for q in queries:
        ev = q.evidence
        k, h, w = ev.maps.shape
        lm = np.log(np.clip(ev.maps.astype(np.float64), 1e-30, None)).reshape(k, -1) / map_temperature
        lm -= np.logaddexp.reduce(lm, axis=1, keepdims=True)
        d = q.truth_en_m[None] - ev.centres_en_m
        col = np.floor((d[:, 0] / ev.tile_m + 0.5) * w).astype(int)
        row = np.floor((0.5 - d[:, 1] / ev.tile_m) * h).astype(int)
        inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        v = np.full(k, -np.inf)
        v[inside] = lm[np.arange(k)[inside], (row * w + col)[inside]]
        logp.append(v)
        log_area.append(np.log(ev.tile_m / w * ev.tile_m / h))
    return np.stack(logp), np.stack(log_area)


def log_agreement(queries: list[CalibrationQuery], radius_m: float) -> np.ndarray:
    """(N, K) ln of each candidate's agreement count (``posterior.agreement_counts``) per query."""
    return np.stack([np.log(agreement_counts(map_peaks_en_m(q.evidence.centres_en_m, q.evidence.tile_m,
                                                            q.evidence.maps), radius_m)) for q in queries])


def mean_log_likelihood(queries: list[CalibrationQuery], cal: Calibration,
                        cells: tuple[np.ndarray, np.ndarray] | None = None,
                        log_agree: np.ndarray | None = None) -> float:
    """Mean log density (per m^2) of the true positions under the posterior of ``cal`` (its PL map temperature).
    ``cells`` (:func:`_truth_log_cells`) and ``log_agree`` (:func:`log_agreement`) may be given precomputed."""
    logp, log_area = cells if cells is not None else _truth_log_cells(queries, cal.pl_map_temperature)
    if cal.consensus_weight > 0 and log_agree is None:
        log_agree = log_agreement(queries, cal.consensus_radius_m)
    scores = logits_from(np.stack([q.evidence.scores for q in queries]), log_agree, cal)  # (N, K), as at run time
    log_out = np.array([cal.outside_logit - math.log(q.area_m2) for q in queries])  # outside logit + log density
    top = np.maximum(scores.max(axis=1), cal.outside_logit)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_norm = top + np.log(np.exp(scores - top[:, None]).sum(axis=1) + np.exp(cal.outside_logit - top))
        terms = np.concatenate([scores + logp - log_area, log_out[:, None]], axis=1)
    return float(np.mean(np.logaddexp.reduce(terms, axis=1) - log_norm))


def fit_map_temperature(queries: list[CalibrationQuery], cal: Calibration | None = None,
                        limit_m: float | None = None, alpha: float = DEFAULT_ALPHA) -> float:
    """The map temperature whose mode covariance covers the truth like a Gaussian (1- and 2-sigma coverage closest
    to 39.3 / 86.5 %) where it is published: on the fixes the gate accepts (protection level under ``cal`` at most
    ``limit_m``), or without a limit on the fixes in the right mode (error under half a tile)."""
    if limit_m is None:
        chosen = [q for q in queries if np.abs(q.evidence.fix_en_m - q.truth_en_m).max() < q.evidence.tile_m[0] / 2]
    else:
        _, _, pl = posterior_figures(queries, cal, alpha)
        chosen = [q for q, p in zip(queries, pl) if p <= limit_m]
    if not chosen:
        return 1.0
    best, best_gap = 1.0, math.inf
    for tau in MAP_TEMPERATURES:
        err, cov, _ = posterior_figures(chosen, replace(cal or Calibration(), map_temperature=tau))
        d2 = nees(err, cov)
        gap = abs(np.mean(d2 <= 1.0) - EXPECTED_COVERAGE[1]) + abs(np.mean(d2 <= 4.0) - EXPECTED_COVERAGE[2])
        if gap < best_gap:
            best, best_gap = tau, gap
    return best


def descriptor_floor(queries: list[CalibrationQuery]) -> float:
    """The out-of-distribution floor of the best descriptor cosine: the :data:`DESCRIPTOR_QUANTILE` quantile of
    the calibration panoramas' minus :data:`DESCRIPTOR_MARGIN` (real panoramas of unseen cities stay above it)."""
    cos = np.array([q.descriptor_cosine for q in queries], np.float64)
    return float(np.quantile(cos, DESCRIPTOR_QUANTILE) - DESCRIPTOR_MARGIN)


def fit(queries: list[CalibrationQuery], fitted_on: str = "", limit_m: float | None = None,
        alpha: float = DEFAULT_ALPHA) -> tuple[Calibration, float]:
    """The calibration (stage 2: see the module docstring) and its mean log-likelihood. With ``limit_m`` (the gate's
    ``max_protection_level_m``) the covariance's map temperature is fitted again on the fixes that gate accepts."""
    base = Calibration(map_temperature=fit_map_temperature(queries), min_descriptor_cosine=descriptor_floor(queries))
    best, best_ll = base, -math.inf
    log_agree = log_agreement(queries, base.consensus_radius_m)
    for tau in MAP_TEMPERATURES:
        cells = _truth_log_cells(queries, tau)
        for t in SCORE_TEMPERATURES:
            for z0 in OUTSIDE_LOGITS:
                for c in CONSENSUS_WEIGHTS:
                    cal = replace(base, score_temperature=t, outside_logit=z0, pl_map_temperature=tau,
                                  consensus_weight=c)
                    ll = mean_log_likelihood(queries, cal, cells, log_agree)
                    if ll > best_ll:
                        best, best_ll = cal, ll
    if limit_m is not None:  # the covariance's temperature does not change the protection level: no loop
        best = replace(best, map_temperature=fit_map_temperature(queries, best, limit_m, alpha))
    return replace(best, fitted_on=fitted_on), best_ll


def query_posteriors(queries: list[CalibrationQuery], cal: Calibration, alpha: float = DEFAULT_ALPHA,
                     mixture: bool = False) -> tuple[np.ndarray, list[Posterior]]:
    """(errors (N, 2) of the queries' fixes, their posteriors under ``cal``; ``mixture``: with the whole mixture's
    second moment, :func:`~unifygeo_ros.localization.posterior.hierarchy_posterior`)."""
    err, posts = [], []
    for q in queries:
        ev = q.evidence
        posts.append(hierarchy_posterior(ev.fix_en_m, ev.centres_en_m, ev.tile_m, ev.maps, ev.scores, cal, alpha,
                                         mixture))
        err.append(ev.fix_en_m - q.truth_en_m)
    return np.array(err), posts


def posterior_figures(queries: list[CalibrationQuery], cal: Calibration, alpha: float = DEFAULT_ALPHA):
    """(errors (N, 2), covariances (N, 2, 2), protection levels (N,)) of the queries' fixes under ``cal``."""
    err, posts = query_posteriors(queries, cal, alpha)
    return err, np.array([p.covariance_en_m2 for p in posts]), np.array([p.protection_level_m for p in posts])


def evaluate_calibration(queries: list[CalibrationQuery], cal: Calibration, alpha: float = DEFAULT_ALPHA,
                         limits_m=PL_LIMITS_M) -> dict[float, TrustReport]:
    """Trust figures when the gate accepts fixes with protection level <= each limit (stage 3)."""
    err, cov, pl = posterior_figures(queries, cal, alpha)
    return {limit: trust_report(err, cov, pl, pl <= limit) for limit in limits_m}


def format_table(reports: dict[float, TrustReport]) -> str:
    lines = ["max PL m | avail | 1-sigma | 2-sigma | NEES mean/median | HMI rate | median err m | median PL m",
             "---|---|---|---|---|---|---|---"]
    f = (lambda v, fmt: "-" if v is None else format(v, fmt))
    for limit, r in reports.items():
        lines.append(f"{limit:g} | {100 * r.availability:.1f} % | {f(r.inside_1sigma and 100 * r.inside_1sigma, '.1f')}"
                     f" | {f(r.inside_2sigma and 100 * r.inside_2sigma, '.1f')} | {f(r.nees_mean, '.2f')} / "
                     f"{f(r.nees_median, '.2f')} | {f(r.hmi_rate and 100 * r.hmi_rate, '.2f')} % ({r.hmi}) | "
                     f"{f(r.error_median_m, '.2f')} | {f(r.protection_level_median_m, '.2f')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="model checkpoint folder")
    parser.add_argument("--data", required=True, help="folder of VIGOR-layout cities (with geo.json)")
    parser.add_argument("--cities", required=True, help="comma-separated city folders under --data to fit on "
                                                        "(training or benchmark cities, never the evaluation's)")
    parser.add_argument("--work", default=None, help="where the cities' indexes are built (default DATA/_calib)")
    parser.add_argument("--limit", type=int, default=None, help="panoramas per city (default: all)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="protection level risk (default 0.01)")
    parser.add_argument("--max-protection-level", type=float, default=PipelineSettings().max_protection_level_m,
                        help="the gate the covariance is calibrated under: its map temperature is fitted on the fixes "
                             "whose protection level is at most this (m; default: the node's max_protection_level_m)")
    parser.add_argument("--json", default=None, help="write the fit and the trust table here")
    parser.add_argument("--write", action="store_true", help="store the calibration beside the checkpoint "
                                                             "(calibration.json)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def run(args: argparse.Namespace) -> int:
    root = Path(args.data)
    cities = [c.strip() for c in args.cities.split(",") if c.strip()]
    missing = [c for c in cities if not (root / c / "panorama").is_dir()]
    if missing:
        raise UnifyGeoError(f"no VIGOR-layout city {', '.join(missing)} under {root}")
    handle = load_model(args.checkpoint, device=args.device)
    queries = collect(handle, [root / c for c in cities], Path(args.work or root / "_calib"), args.limit)
    cal, ll = fit(queries, fitted_on=f"{len(queries)} panoramas of {','.join(cities)} (unifygeo calibrate)",
                  limit_m=args.max_protection_level, alpha=args.alpha)
    before = mean_log_likelihood(queries, Calibration())
    print(f"calibration: score temperature {cal.score_temperature:.3g}, map temperature {cal.map_temperature:.3g}, "
          f"outside logit {cal.outside_logit:.3g}, consensus weight {cal.consensus_weight:g}; "
          f"mean log-likelihood {ll:.3f} (uncalibrated {before:.3f})")
    reports = {"uncalibrated": evaluate_calibration(queries, Calibration(), args.alpha),
               "calibrated": evaluate_calibration(queries, cal, args.alpha)}
    for name, rep in reports.items():
        print(f"\n{name} (alpha {args.alpha:g}, {len(queries)} panoramas):\n{format_table(rep)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "calibration": cal.to_json(), "mean_log_likelihood": ll, "uncalibrated_log_likelihood": before,
            "alpha": args.alpha, "cities": cities, "queries": len(queries),
            "reports": {n: {str(k): v.to_json() for k, v in r.items()} for n, r in reports.items()}},
            indent=1, default=float) + "\n")
    if args.write:
        print(f"written: {save_calibration(args.checkpoint, cal)}")
    return 0
