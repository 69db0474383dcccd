"""Scoring a user's fixes against the panoramas' true positions (``unifygeo localize --truth FILE.csv``; the CSV
format: :mod:`unifygeo_ros.data.truth_csv`). ``unifygeo eval`` reads the VIGOR layout only; this scores any
index - an orthophoto of one's own map included - with the run-time fixes themselves.

Definitions (the metrics are :mod:`~unifygeo_ros.offline.localization_metrics`', as in ``unifygeo eval``):

* an image matches the truth row whose ``panorama`` is its file name (the folder does not count);
* ``error_m`` = Euclidean distance between the fix and the true position, both in the index's local ENU frame
  (the true latitude/longitude projected with the index's origin, the fix's ``east_m``/``north_m``);
* ``heading_error_deg`` = the smallest angle between the fix's and the true yaw, in [0, 180]; only when the truth
  has ``yaw_deg`` and the model estimated the heading (``heading_source == "model"``: a heading given with
  ``--heading`` is the caller's, not a result to score);
* the summary: count, median / mean and the fraction within 1, 5 and 10 m, over all scored fixes and over the
  accepted ones (the node's integrity gate, as ``accepted`` in ``--json``). An image that cannot be read has
  no fix: it is counted apart, not scored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.data.truth_csv import TruthRow, read_truth_csv
from unifygeo_ros.errors import DataFormatError
from unifygeo_ros.localization.fix import Fix
from unifygeo_ros.offline.localization_metrics import MetricLocMetrics, heading_errors_deg, metric_loc_metrics, \
    position_errors_m

SUMMARY_THRESHOLDS_M = (1.0, 5.0, 10.0)
_LISTED = 3  # unmatched names named in the error


def load_truth_for(images: list[str], truth_path: str) -> list[TruthRow]:
    """The truth row of each image, in order; :class:`DataFormatError` (one line) when the file is unreadable,
    two images share a file name, or images have no row (a few of them named)."""
    by_name = {r.panorama: r for r in read_truth_csv(truth_path)}
    names = [os.path.basename(p) for p in images]
    paths_of: dict[str, set[str]] = {}
    for p in images:
        paths_of.setdefault(os.path.basename(p), set()).add(os.path.abspath(p))
    clash = [n for n, paths in paths_of.items() if len(paths) > 1]  # the same file twice is no clash
    if clash:
        raise DataFormatError(f"--truth matches images by file name, and {len(clash)} names are used by images in "
                              f"different folders ({', '.join(clash[:_LISTED])}); score each folder separately")
    missing = [n for n in dict.fromkeys(names) if n not in by_name]
    if missing:
        more = ", ..." if len(missing) > _LISTED else ""
        raise DataFormatError(f"truth file {truth_path} has no row for {len(missing)} of {len(set(names))} images "
                              f"({', '.join(missing[:_LISTED])}{more}); its panorama column must hold the images' "
                              "file names")
    return [by_name[n] for n in names]


@dataclass(frozen=True)
class FixScore:
    """One fix against its truth: position error (m) and, when the truth has a yaw, heading error (deg)."""

    error_m: float
    heading_error_deg: float | None = None

    def to_json(self) -> dict:
        out = {"error_m": self.error_m}
        if self.heading_error_deg is not None:
            out["heading_error_deg"] = self.heading_error_deg
        return out


def score_fix(fix: Fix, truth: TruthRow, origin: geo.LocalENU) -> FixScore:
    """``fix`` against ``truth`` in the ENU frame of ``origin`` (the index's)."""
    true_e, true_n = origin.to_en(truth.latitude_deg, truth.longitude_deg)
    err = position_errors_m(np.array([fix.east_m, fix.north_m]), np.array([float(true_e), float(true_n)]))
    heading = None
    if truth.yaw_deg is not None and fix.heading_source == "model":
        # a difference of yaws is the same angle as the difference of the compass headings
        heading = float(heading_errors_deg(fix.yaw_deg, truth.yaw_deg)[0])
    return FixScore(float(err[0]), heading)


@dataclass
class TruthSummary:
    """The scores of a run: over all scored fixes and over the accepted ones (None when there are none)."""

    truth_file: str
    failed: int  # images that could not be read (no fix, not scored)
    overall: MetricLocMetrics | None
    accepted: MetricLocMetrics | None

    def lines(self) -> list[str]:
        """The summary as printed: one line over all fixes, one over the accepted ones."""
        name = os.path.basename(self.truth_file)
        unread = f" ({self.failed} unreadable, not scored)" if self.failed else ""
        if self.overall is None:
            return [f"truth {name}: no fix to score{unread}"]
        out = [f"truth {name}: {self.overall.count} fixes scored{unread}: {_figures(self.overall)}"]
        n_acc = 0 if self.accepted is None else self.accepted.count
        out.append(f"  accepted {n_acc} of {self.overall.count}" +
                   (f": {_figures(self.accepted)}" if self.accepted is not None else ""))
        return out


def summarize(truth_file: str, scores: list[FixScore], accepted: list[bool], failed: int) -> TruthSummary:
    """Summarise the scores of the fixes (``accepted[i]``: the gate's verdict on fix i)."""
    assert len(scores) == len(accepted)
    acc = np.asarray(accepted, bool)
    return TruthSummary(truth_file, failed, _metrics(scores), _metrics([s for s, a in zip(scores, acc) if a]))


def _metrics(scores: list[FixScore]) -> MetricLocMetrics | None:
    if not scores:
        return None
    heading = [s.heading_error_deg for s in scores]
    return metric_loc_metrics(np.array([s.error_m for s in scores]),
                              None if any(h is None for h in heading) else np.array(heading),
                              thresholds_m=SUMMARY_THRESHOLDS_M)


def _figures(m: MetricLocMetrics) -> str:
    within = "/".join(f"{100 * m.recall(d):.0f}" for d in SUMMARY_THRESHOLDS_M)
    text = f"median {m.median_m:.2f} m, mean {m.mean_m:.2f} m, within 1/5/10 m {within} %"
    if m.heading_median_deg is not None:
        text += f", heading error median {m.heading_median_deg:.1f} deg"
    return text


__all__ = ["SUMMARY_THRESHOLDS_M", "FixScore", "TruthSummary", "load_truth_for", "score_fix", "summarize"]
