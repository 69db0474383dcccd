"""Metric-localization metrics, pure numpy: position errors in metres, heading errors in degrees, their summary
(mean / median, recall within d metres) and the hierarchical (retrieve, localize, re-rank) figures, with the
strict hierarchical recall (:func:`strict_recall_m`: the selected tile is the positive *and* the error is within d,
UnifyGeo's rule) beside the lenient one (any selected tile). Definitions in :mod:`unifygeo_ros.offline.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from unifygeo_ros.geo import angle_diff_deg

#: Metre thresholds for recall within d (the JSON carries 1/3/5; 10/20 go to the extended tables).
DISTANCE_THRESHOLDS_M = (1.0, 3.0, 5.0, 10.0, 20.0)
#: The thresholds of the JSON contract (``recall_1m``, ``recall_3m``, ``recall_5m``).
JSON_THRESHOLDS_M = (1.0, 3.0, 5.0)


# ----------------------------------------------------------------------------------------------- metric
def position_errors_m(pred_en: np.ndarray, true_en: np.ndarray) -> np.ndarray:
    """Euclidean distance (metres) between predicted and true (east, north) positions, shape (N,)."""
    pred = np.asarray(pred_en, dtype=np.float64).reshape(-1, 2)
    true = np.asarray(true_en, dtype=np.float64).reshape(-1, 2)
    assert pred.shape == true.shape, f"{pred.shape} predictions for {true.shape} labels"
    return np.hypot(pred[:, 0] - true[:, 0], pred[:, 1] - true[:, 1])


def heading_errors_deg(pred_heading_deg: np.ndarray, true_heading_deg: np.ndarray) -> np.ndarray:
    """Absolute smallest difference between predicted and true compass headings, in [0, 180] deg."""
    err = np.atleast_1d(angle_diff_deg(pred_heading_deg, true_heading_deg))
    assert np.all((err >= 0.0) & (err <= 180.0))
    return err


@dataclass
class MetricLocMetrics:
    """Metric localization summary: metres and degrees, recalls as fractions in [0, 1].

    ``recall_m[d]`` = fraction of queries with error <= d metres. Heading fields are None when no heading
    was predicted (e.g. a position-only model).
    """

    mean_m: float
    median_m: float
    recall_m: dict[float, float]
    heading_median_deg: float | None
    heading_mean_deg: float | None
    count: int

    def __post_init__(self) -> None:
        assert self.mean_m >= 0.0 and self.median_m >= 0.0
        vals = [self.recall_m[d] for d in sorted(self.recall_m)]
        assert all(0.0 <= v <= 1.0 for v in vals)
        assert all(a <= b for a, b in zip(vals, vals[1:])), "recall within d must grow with d"
        if self.heading_median_deg is not None:
            assert 0.0 <= self.heading_median_deg <= 180.0 and 0.0 <= self.heading_mean_deg <= 180.0

    def recall(self, d_m: float) -> float:
        return self.recall_m[float(d_m)]

    def to_dict(self) -> dict[str, float | None]:
        """The JSON block: mean/median metres, recall within 1/3/5 m, heading median degrees."""
        out: dict[str, float | None] = {"mean_m": self.mean_m, "median_m": self.median_m}
        for d in JSON_THRESHOLDS_M:
            out[f"recall_{d:g}m"] = self.recall_m[d]
        out["heading_median_deg"] = self.heading_median_deg
        return out

    def to_extended_dict(self) -> dict[str, float | None]:
        """Every figure: also recall within 10/20 m, the heading mean and the query count."""
        out = {"mean_m": self.mean_m, "median_m": self.median_m}
        for d in sorted(self.recall_m):
            out[f"recall_{d:g}m"] = self.recall_m[d]
        out["heading_median_deg"] = self.heading_median_deg
        out["heading_mean_deg"] = self.heading_mean_deg
        out["count"] = self.count
        return out


def metric_loc_metrics(
    errors_m: np.ndarray,
    heading_errors: np.ndarray | None = None,
    thresholds_m: tuple[float, ...] = DISTANCE_THRESHOLDS_M,
) -> MetricLocMetrics:
    """Summarise per-query position errors (metres) and, optionally, heading errors (degrees in [0, 180])."""
    err = np.asarray(errors_m, dtype=np.float64).reshape(-1)
    assert err.size > 0, "no errors to summarise"
    assert np.all(np.isfinite(err)) and np.all(err >= 0.0), "errors must be finite distances"
    thresholds = tuple(sorted(set(float(t) for t in thresholds_m) | set(JSON_THRESHOLDS_M)))
    recall = {d: float(np.mean(err <= d)) for d in thresholds}
    h_med = h_mean = None
    if heading_errors is not None:
        h = np.asarray(heading_errors, dtype=np.float64).reshape(-1)
        assert h.shape == err.shape, "one heading error per position error"
        assert np.all((h >= 0.0) & (h <= 180.0)), "heading errors must lie in [0, 180] deg"
        h_med, h_mean = float(np.median(h)), float(np.mean(h))
    return MetricLocMetrics(float(err.mean()), float(np.median(err)), recall, h_med, h_mean, int(err.size))


def strict_recall_m(errors_m: np.ndarray, selected_is_positive: np.ndarray,
                    thresholds_m: tuple[float, ...] = DISTANCE_THRESHOLDS_M) -> dict[float, float]:
    """Strict hierarchical recall within d: the fraction of queries whose selected tile IS the positive and whose
    position error is <= d metres (UnifyGeo's official rule, after LF-CVGL: a fix from a neighbouring or
    semi-positive tile is a miss however close it is). Never above the lenient recall (``err <= d``, any
    selected tile) nor above the hierarchy's r1 (the share of positives selected)."""
    err = np.asarray(errors_m, dtype=np.float64).reshape(-1)
    right = np.asarray(selected_is_positive, dtype=bool).reshape(-1)
    assert err.size > 0 and right.shape == err.shape, "one selected-tile flag per error"
    assert np.all(np.isfinite(err)) and np.all(err >= 0.0), "errors must be finite distances"
    thresholds = tuple(sorted(set(float(t) for t in thresholds_m) | set(JSON_THRESHOLDS_M)))
    return {d: float(np.mean(right & (err <= d))) for d in thresholds}


def strict_key(d_m: float) -> str:
    """The JSON name of the strict recall within ``d_m`` metres (``recall_strict_1m``)."""
    return f"recall_strict_{d_m:g}m"


@dataclass
class HierarchicalMetrics:
    """One hierarchy variant (with or without re-ranking): localization in the city frame + selected-tile R@1.

    ``loc.recall_m[d]`` is the **lenient** recall (error <= d, whichever tile was selected: the error is measured
    in the city frame, so a neighbouring tile can still count); ``recall_strict_m[d]`` (None when not computed)
    is the **strict** one (:func:`strict_recall_m`: the selected tile is the positive and error <= d), the
    figure comparable with UnifyGeo's published hierarchical recall.
    """

    r1: float
    loc: MetricLocMetrics
    recall_strict_m: dict[float, float] | None = None

    def __post_init__(self) -> None:
        assert 0.0 <= self.r1 <= 1.0
        if self.recall_strict_m is not None:
            vals = [self.recall_strict_m[d] for d in sorted(self.recall_strict_m)]
            assert all(a <= b for a, b in zip(vals, vals[1:])), "strict recall within d must grow with d"
            for d, v in self.recall_strict_m.items():
                assert 0.0 <= v <= self.r1 + 1e-12, "strict recall counts only queries whose top-1 is the positive"
                if d in self.loc.recall_m:
                    assert v <= self.loc.recall_m[d] + 1e-12, "strict recall above the lenient one"

    def to_dict(self) -> dict[str, Any]:
        return {**self.loc.to_dict(), "r1": self.r1}

    def to_extended_dict(self) -> dict[str, Any]:
        return {**self.loc.to_extended_dict(), "r1": self.r1}

    def strict_dict(self, extended: bool = False) -> dict[str, float]:
        """``{recall_strict_1m, recall_strict_3m, recall_strict_5m}`` (``extended``: also 10/20 m)."""
        assert self.recall_strict_m is not None, "no strict recall computed"
        keys = sorted(self.recall_strict_m) if extended else JSON_THRESHOLDS_M
        return {strict_key(d): self.recall_strict_m[d] for d in keys}

    def recall_strict(self, d_m: float) -> float:
        assert self.recall_strict_m is not None, "no strict recall computed"
        return self.recall_strict_m[float(d_m)]


__all__ = ["DISTANCE_THRESHOLDS_M", "JSON_THRESHOLDS_M", "HierarchicalMetrics", "MetricLocMetrics",
           "heading_errors_deg", "metric_loc_metrics", "position_errors_m", "strict_key", "strict_recall_m"]
