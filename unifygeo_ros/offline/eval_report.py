"""``unifygeo eval``'s outputs: the per-query arrays -> an :class:`~unifygeo_ros.offline.metrics.EvalReport`
(invariants asserted), its table, its plots, its JSON and the per-query CSV (``--per-query``)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from unifygeo_ros.image.preprocess import denormalize
from unifygeo_ros.offline import metrics as M
from unifygeo_ros.plots import LocalizationExample, save_eval_plots

#: the header of ``unifygeo eval --per-query FILE.csv`` (``positive_tile``: the query's positive; ``top1_is_positive``:
#: 1 when ``tile``, the re-ranked top-1, is it - the condition of the strict hierarchical recall)
PER_QUERY_HEADER = ("panorama", "latitude", "longitude", "error_m", "score", "tile", "positive_tile",
                    "top1_is_positive")
#: the hierarchy variants, in the order of ``hier_err_m``'s columns: (table row name, per-query top-K list)
_VARIANTS = (("no-rerank", "topk"), ("re-rank", "topk_reranked"))


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
    for v in range(len(_VARIANTS)):
        right = top1_is_positive(per, v)
        variants.append(M.HierarchicalMetrics(
            float(np.mean(right)), M.metric_loc_metrics(per["hier_err_m"][:, v], per["hier_heading_err_deg"][:, v]),
            M.strict_recall_m(per["hier_err_m"][:, v], right)))
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
    tile = denormalize(gallery_ds[e["tile_index"]]["aerial"])
    verdict = "right tile" if e["correct"] else "wrong tile"
    return LocalizationExample(
        panorama=denormalize(e["ground"]), tile=tile, tile_m=e["tile_m"], prob_map=e["prob_map"],
        true_en_m=tuple(map(float, e["true_en_m"])), pred_en_m=tuple(map(float, e["pred_en_m"])),
        true_heading_deg=e["true_heading_deg"], pred_heading_deg=e["pred_heading_deg"],
        title=f"query {e['pano_index']}: positive at rank {e['rank']}; re-ranked top-1 tile "
              f"{e['tile_index']} ({verdict})")


def top1_is_positive(per: dict[str, np.ndarray], variant: int) -> np.ndarray:
    """Per query: whether ``variant``'s (0: no re-rank, 1: re-rank) selected top-1 tile is the positive - the
    condition of the strict hierarchical recall."""
    return M.selected_is_positive(per[_VARIANTS[variant][1]][:, 0], per["positive"])


def strict_errors_m(per: dict[str, np.ndarray], variant: int) -> np.ndarray:
    """Hierarchical errors of ``variant`` (0: no re-rank, 1: re-rank) with +inf where the selected tile is not the
    positive: the fraction within d of these is the strict recall (the CDF of UnifyGeo's rule)."""
    return np.where(top1_is_positive(per, variant), per["hier_err_m"][:, variant], np.inf)


def save_report_plots(report: M.EvalReport, out_dir: str | Path) -> list[Path]:
    """The error CDF (hierarchical with / without re-rank, lenient and strict; isolated) and the kept examples.
    The strict curves count a query only when its selected tile is the positive (they end below 1)."""
    p = report.per_query
    errors = {"hierarchical + re-rank": p["hier_err_m"][:, 1], "hierarchical, no re-rank": p["hier_err_m"][:, 0],
              "isolated (true tile)": p["iso_err_m"],
              "hierarchical + re-rank, strict (top-1 = positive)": strict_errors_m(p, 1),
              "hierarchical, no re-rank, strict": strict_errors_m(p, 0)}
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
    lines.append(f"{'':16s} {'R@1':>6s} {'mean m':>8s} {'median m':>8s} {'<=1m':>6s} {'<=3m':>6s} {'<=5m':>6s} "
                 f"{'<=10m':>6s} {'<=20m':>6s} {'hdg med':>8s}")
    for name, r1, m in rows:
        r1s = "" if r1 is None else f"{100 * r1:6.2f}"
        hd = "-" if m.heading_median_deg is None else f"{m.heading_median_deg:8.2f}"
        lines.append(f"{name:16s} {r1s:>6s} {_fmt_m(m.mean_m)} {_fmt_m(m.median_m)} "
                     + " ".join(f"{100 * m.recall(d):6.2f}" for d in (1, 3, 5, 10, 20)) + f" {hd:>8s}")
    strict = [(f"strict {row}", h) for (row, _), h in zip(_VARIANTS, (report.hier_no_rerank, report.hier_rerank))
              if h.recall_strict_m is not None]
    for name, h in strict:
        lines.append(f"{name:16s} {100 * h.r1:6.2f} {'-':>8s} {'-':>8s} "
                     + " ".join(f"{100 * h.recall_strict(d):6.2f}" for d in (1, 3, 5, 10, 20)) + f" {'-':>8s}")
    if strict:
        lines.append("<=d of the hier rows: error <= d, whichever tile was selected (lenient)")
        lines.append("<=d of the strict rows: the selected tile is the positive and error <= d (UnifyGeo's rule: "
                     "the figure to compare with its published recall)")
    detail = report.extra.get("rerank_detail")
    if detail and detail["tile_assignment"]:
        step = "the tile assignment"
        if detail.get("consensus_radius_m", 0.0) > 0:
            step = (f"the consensus ({detail['consensus_radius_m']:g} m, T {detail['consensus_temperature']:g}) "
                    "and the tile assignment")
        lines.append(f"re-rank R@1: {100 * detail['r1_learned_order']:.2f} by the learned scores, "
                     f"{100 * detail['r1_after_tile_assignment']:.2f} after {step}")
    return "\n".join(lines)


def json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_per_query_csv(report: M.EvalReport, path: str | Path) -> Path:
    """One row per query (:data:`PER_QUERY_HEADER`): the panorama's file name, latitude/longitude of the
    hierarchical re-ranked fix (the Localizer's fix choice), its error (m), its score, the tile it is in (the
    re-ranked top-1), the query's positive tile and whether they are the same (1/0). The strict recall within d
    is the share of rows with ``top1_is_positive`` 1 and ``error_m`` <= d."""
    p = report.per_query
    right = top1_is_positive(p, 1)
    positive = p.get("positive_tile", np.array([str(int(i)) for i in p["positive"]]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PER_QUERY_HEADER)
        for name, lat, lon, err, score, tile, pos, ok in zip(
                p["panorama"], p["fix_latlon"][:, 0], p["fix_latlon"][:, 1], p["hier_err_m"][:, 1], p["fix_score"],
                p["fix_tile"], positive, right):
            w.writerow([name, f"{lat:.9f}", f"{lon:.9f}", f"{err:.4f}", f"{score:.6f}", tile, pos, int(ok)])
    return path
