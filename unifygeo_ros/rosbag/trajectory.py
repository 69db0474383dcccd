"""Trajectories in a local ENU frame: timestamp association, interpolation, TUM files, error statistics.

Pure numpy, no ROS, no I/O besides the TUM reader/writer. Conventions (:mod:`unifygeo_ros.geo`): positions are
ENU metres (x east, y north, z up); ``yaw_deg`` is the REP-103 yaw (0 = east, counter-clockwise), NaN where
unknown; timestamps are integer nanoseconds (``t_ns``), written to TUM files as seconds.

Definitions (what each number of ``metrics.json`` means):

* **association**: an estimate at time ``t`` is compared with the ground truth *interpolated* at ``t``:
  linear in east/north between the two GT samples that bracket ``t``; yaw along the shorter arc. It is
  rejected (counted as "without GT") when ``t`` lies outside the GT time span or when the nearest GT sample
  is more than ``max_gap_s`` away. A GT sample whose position is NaN marks a time where the truth is unknown
  (replay's conflicting duplicate GT): a query it brackets is rejected too (``Association.unknown``), never
  interpolated.
* **position error** of a pair = horizontal Euclidean distance (east/north) in metres.
* **mean / median / RMSE** = mean, median, sqrt(mean of squares) of the position errors (evo's unaligned
  APE translation part reports the same three for the same files, z = 0).
* **recall within d** = share of scored pairs with error <= d metres.
* **heading error** = absolute smallest angle between estimated and GT yaw, in [0, 180] deg (pairs with a GT
  orientation only).
* **NEES** of a pair = ``e^T C^-1 e`` with ``e`` the (east, north) error and ``C`` the estimate's 2x2
  covariance. For a consistent Gaussian estimate NEES follows chi-square with 2 degrees of freedom: mean 2,
  ``P(NEES <= 1) = 1 - exp(-1/2) = 39.3 %`` (inside the 1-sigma ellipse), ``P(NEES <= 4) = 86.5 %`` (2-sigma).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from unifygeo_ros import geo

#: Recall thresholds (metres) reported by replay.
RECALL_THRESHOLDS_M = (1.0, 3.0, 5.0, 10.0)
#: Expected share of a consistent 2-D Gaussian error inside its k-sigma ellipse: 1 - exp(-k^2 / 2).
EXPECTED_INSIDE_1SIGMA = 1.0 - math.exp(-0.5)
EXPECTED_INSIDE_2SIGMA = 1.0 - math.exp(-2.0)
#: Default maximum distance in time from a query to its nearest GT sample.
DEFAULT_MAX_GAP_S = 0.5


@dataclass
class Trajectory:
    """Time-stamped planar poses (sorted by time on construction through :func:`make_trajectory`)."""

    t_ns: np.ndarray  # int64 (N,)
    east_m: np.ndarray  # float64 (N,)
    north_m: np.ndarray  # float64 (N,)
    yaw_deg: np.ndarray  # float64 (N,), NaN where unknown

    def __len__(self) -> int:
        return int(self.t_ns.size)


def make_trajectory(t_ns: ArrayLike, east_m: ArrayLike, north_m: ArrayLike, yaw_deg: ArrayLike | None = None
                    ) -> Trajectory:
    """Build a :class:`Trajectory` sorted by time; duplicate stamps keep their first sample."""
    t = np.asarray(t_ns, dtype=np.int64).reshape(-1)
    e = np.asarray(east_m, dtype=np.float64).reshape(-1)
    n = np.asarray(north_m, dtype=np.float64).reshape(-1)
    y = np.full(t.shape, np.nan) if yaw_deg is None else np.asarray(yaw_deg, dtype=np.float64).reshape(-1)
    if not (t.size == e.size == n.size == y.size):
        raise ValueError(f"trajectory arrays differ in length: t {t.size}, east {e.size}, north {n.size}, "
                         f"yaw {y.size}")
    order = np.argsort(t, kind="stable")
    t, e, n, y = t[order], e[order], n[order], y[order]
    keep = np.ones(t.size, dtype=bool)
    keep[1:] = t[1:] != t[:-1]
    return Trajectory(t[keep], e[keep], n[keep], y[keep])


@dataclass
class Association:
    """Ground truth at query times: ``valid[i]`` says whether query ``i`` has a GT value."""

    east_m: np.ndarray
    north_m: np.ndarray
    yaw_deg: np.ndarray  # NaN where GT has no orientation (or no GT)
    valid: np.ndarray  # bool
    gap_s: np.ndarray  # distance in time to the nearest GT sample (inf outside the span)
    unknown: np.ndarray | None = None  # bool: inside the span and the gap, but a bracketing GT position is NaN


def interpolate_yaw_deg(yaw0_deg: ArrayLike, yaw1_deg: ArrayLike, w: ArrayLike) -> np.ndarray:
    """Yaw at fraction ``w`` from ``yaw0`` to ``yaw1`` along the shorter arc, wrapped into [-180, 180)."""
    y0 = np.asarray(yaw0_deg, dtype=np.float64)
    d = geo.wrap_deg(np.asarray(yaw1_deg, dtype=np.float64) - y0)
    return geo.wrap_deg(y0 + np.asarray(w, dtype=np.float64) * d)


def associate(gt: Trajectory, t_query_ns: ArrayLike, max_gap_s: float = DEFAULT_MAX_GAP_S) -> Association:
    """Ground truth interpolated at each query time (see the module docstring for the rule).

    ``t_query_ns`` need not be sorted. A query equal to a GT stamp gets that sample exactly.
    """
    tq = np.asarray(t_query_ns, dtype=np.int64).reshape(-1)
    m = tq.size
    out = Association(np.full(m, np.nan), np.full(m, np.nan), np.full(m, np.nan), np.zeros(m, bool),
                      np.full(m, np.inf), np.zeros(m, bool))
    if len(gt) == 0 or m == 0:
        return out
    t = gt.t_ns
    hi = np.searchsorted(t, tq, side="left")  # first GT stamp >= query
    inside = (tq >= t[0]) & (tq <= t[-1])
    hi_c = np.clip(hi, 0, t.size - 1)
    lo_c = np.clip(hi - 1, 0, t.size - 1)
    exact = t[hi_c] == tq
    lo_c = np.where(exact, hi_c, lo_c)
    d_lo = np.abs(tq - t[lo_c]).astype(np.float64) * 1e-9
    d_hi = np.abs(t[hi_c] - tq).astype(np.float64) * 1e-9
    gap = np.where(inside, np.minimum(d_lo, d_hi), np.inf)
    near = inside & (gap <= max_gap_s)
    span = (t[hi_c] - t[lo_c]).astype(np.float64)
    w = np.where(span > 0, (tq - t[lo_c]).astype(np.float64) / np.where(span > 0, span, 1.0), 0.0)
    east = gt.east_m[lo_c] + w * (gt.east_m[hi_c] - gt.east_m[lo_c])
    north = gt.north_m[lo_c] + w * (gt.north_m[hi_c] - gt.north_m[lo_c])
    yaw = interpolate_yaw_deg(gt.yaw_deg[lo_c], gt.yaw_deg[hi_c], w)  # NaN propagates
    known = np.isfinite(gt.east_m[lo_c]) & np.isfinite(gt.north_m[lo_c]) & np.isfinite(gt.east_m[hi_c]) \
        & np.isfinite(gt.north_m[hi_c])
    valid = near & known
    out.unknown = near & ~known
    out.east_m = np.where(valid, east, np.nan)
    out.north_m = np.where(valid, north, np.nan)
    out.yaw_deg = np.where(valid, yaw, np.nan)
    out.valid = valid
    out.gap_s = gap
    return out


# ------------------------------------------------------------------------------------------------------ TUM
def format_tum_time(t_ns: int) -> str:
    """Seconds with nanosecond digits, from the integer (no float rounding): ``1700000000.123456789``."""
    t_ns = int(t_ns)
    sign = "-" if t_ns < 0 else ""
    s, ns = divmod(abs(t_ns), 1_000_000_000)
    return f"{sign}{s}.{ns:09d}"


def write_tum(path: str | Path, t_ns: ArrayLike, east_m: ArrayLike, north_m: ArrayLike, yaw_deg: ArrayLike,
              up_m: ArrayLike | None = None) -> Path:
    """Write a TUM trajectory: one line ``t tx ty tz qx qy qz qw`` per pose (ENU metres; the quaternion is a
    rotation by ``yaw_deg`` about +z, identity where the yaw is NaN). A ``#`` header line names the columns."""
    path = Path(path)
    t_ns = np.asarray(t_ns, dtype=np.int64).reshape(-1)
    e = np.asarray(east_m, np.float64).reshape(-1)
    n = np.asarray(north_m, np.float64).reshape(-1)
    y = np.asarray(yaw_deg, np.float64).reshape(-1)
    u = np.zeros_like(e) if up_m is None else np.asarray(up_m, np.float64).reshape(-1)
    lines = ["# timestamp tx ty tz qx qy qz qw  (local ENU metres; yaw about +z, REP-103)"]
    for ti, ei, ni, ui, yi in zip(t_ns, e, n, u, y):
        qx, qy, qz, qw = geo.yaw_to_quaternion_xyzw(float(yi) if np.isfinite(yi) else 0.0)
        lines.append(f"{format_tum_time(ti)} {ei:.6f} {ni:.6f} {ui:.6f} {qx:.9f} {qy:.9f} {qz:.9f} {qw:.9f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class TumTrajectory:
    """The columns of a TUM file as read back (what evo sees)."""

    t_s: np.ndarray  # float64 seconds (as evo reads them)
    xyz: np.ndarray  # (N, 3)
    quat_xyzw: np.ndarray  # (N, 4)

    @property
    def yaw_deg(self) -> np.ndarray:
        """Yaw about +z (deg, REP-103) of each quaternion."""
        return np.array([geo.quaternion_xyzw_to_yaw_deg(*q) for q in self.quat_xyzw])


def read_tum(path: str | Path) -> TumTrajectory:
    """Read a TUM file (comments ``#`` and blank lines skipped; ``,`` or whitespace separated, 8 columns)."""
    rows = []
    for k, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 8:
            raise ValueError(f"{path}:{k}: expected 8 fields 't tx ty tz qx qy qz qw', got {len(parts)}")
        rows.append([float(p) for p in parts])
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    return TumTrajectory(a[:, 0], a[:, 1:4], a[:, 4:8])


# --------------------------------------------------------------------------------------------------- errors
def error_stats(errors_m: ArrayLike, thresholds_m: tuple[float, ...] = RECALL_THRESHOLDS_M) -> dict:
    """mean / median / RMSE / max (m) and recall within each threshold of an error array (NaNs ignored);
    ``None`` figures for an empty array."""
    e = np.asarray(errors_m, dtype=np.float64).reshape(-1)
    e = e[np.isfinite(e)]
    out: dict = {"count": int(e.size)}
    if e.size == 0:
        out.update(mean_m=None, median_m=None, rmse_m=None, max_m=None,
                   recall={f"{d:g}m": None for d in thresholds_m})
        return out
    out.update(mean_m=float(e.mean()), median_m=float(np.median(e)), rmse_m=float(np.sqrt(np.mean(e ** 2))),
               max_m=float(e.max()), recall={f"{d:g}m": float(np.mean(e <= d)) for d in thresholds_m})
    assert out["median_m"] <= out["max_m"] + 1e-9 and out["mean_m"] <= out["rmse_m"] + 1e-9
    return out


def heading_stats(est_yaw_deg: ArrayLike, gt_yaw_deg: ArrayLike) -> dict:
    """Median / mean absolute heading error (deg) over pairs where both yaws are known."""
    d = np.asarray(geo.angle_diff_deg(np.asarray(est_yaw_deg, float), np.asarray(gt_yaw_deg, float)))
    d = np.atleast_1d(d)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"count": 0, "median_deg": None, "mean_deg": None}
    return {"count": int(d.size), "median_deg": float(np.median(d)), "mean_deg": float(d.mean())}


def nees_2d(err_en_m: ArrayLike, cov_en_m2: ArrayLike) -> np.ndarray:
    """NEES ``e^T C^-1 e`` per pair for (N, 2) errors and (N, 2, 2) covariances; NaN where C is not positive
    definite or not finite."""
    e = np.asarray(err_en_m, dtype=np.float64).reshape(-1, 2)
    c = np.asarray(cov_en_m2, dtype=np.float64).reshape(-1, 2, 2)
    out = np.full(e.shape[0], np.nan)
    a, b, d = c[:, 0, 0], 0.5 * (c[:, 0, 1] + c[:, 1, 0]), c[:, 1, 1]
    det = a * d - b * b
    ok = np.isfinite(det) & (det > 0) & (a > 0) & np.all(np.isfinite(e), axis=1)
    # inverse of [[a, b], [b, d]] = [[d, -b], [-b, a]] / det
    x, y = e[:, 0], e[:, 1]
    q = (d * x * x - 2.0 * b * x * y + a * y * y) / np.where(ok, det, 1.0)
    out[ok] = q[ok]
    return out


def covariance_stats(err_en_m: ArrayLike, cov_en_m2: ArrayLike) -> dict:
    """Covariance consistency: share of errors inside the 1-sigma / 2-sigma ellipses and mean NEES, with the
    values a consistent Gaussian estimate would give."""
    q = nees_2d(err_en_m, cov_en_m2)
    q = q[np.isfinite(q)]
    expected = {"inside_1sigma": EXPECTED_INSIDE_1SIGMA, "inside_2sigma": EXPECTED_INSIDE_2SIGMA, "nees_mean": 2.0}
    if q.size == 0:
        return {"count": 0, "inside_1sigma": None, "inside_2sigma": None, "nees_mean": None,
                "nees_median": None, "expected": expected}
    return {"count": int(q.size), "inside_1sigma": float(np.mean(q <= 1.0)), "inside_2sigma": float(np.mean(q <= 4.0)),
            "nees_mean": float(q.mean()), "nees_median": float(np.median(q)), "expected": expected}


def latency_stats(latency_ms: ArrayLike) -> dict:
    """Median, 95th percentile, mean and max of the latencies (ms; NaNs ignored)."""
    lat = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
    lat = lat[np.isfinite(lat)]
    if lat.size == 0:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "mean_ms": None, "max_ms": None}
    return {"count": int(lat.size), "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "mean_ms": float(lat.mean()), "max_ms": float(lat.max())}
