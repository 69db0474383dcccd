"""Figures shared by evaluation, replay and training (matplotlib, Agg backend, files only): error CDFs and
query/tile/heat-map examples.

Conventions (:mod:`unifygeo_ros.geo`): aerial tiles and probability maps are north-up arrays (row 0 = north
edge, column 0 = west edge) drawn in metres about the tile centre (east right, north up); headings are
compass degrees (0 = north, clockwise), drawn as arrows pointing ``(sin h, cos h)`` in (east, north).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: Distances marked on the CDF (metres).
CDF_MARKS_M = (1.0, 3.0, 5.0, 10.0, 20.0)
#: Right end of the CDF's x axis unless asked otherwise (larger errors mean a far wrong tile; they stay off-axis).
DEFAULT_CDF_MAX_M = 50.0


def plot_error_cdf(errors_m: dict[str, np.ndarray], path: str | Path, max_m: float | None = None,
                   title: str = "Localization error CDF") -> Path:
    """Cumulative fraction of queries with error <= d for each named error array; saves a PNG.

    An error of +inf is a query that never counts (the strict hierarchical curves: wrong top-1 tile); such a
    curve ends below 1. The x axis ends at ``max_m`` (default: the 95th percentile of the finite errors, between
    25 and :data:`DEFAULT_CDF_MAX_M` m)."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.0, 4.2), dpi=110)
    finite_max = 0.0
    styles = ("-", "--", ":", "-.")
    for n, (name, err) in enumerate(errors_m.items()):
        e = np.sort(np.asarray(err, dtype=np.float64).reshape(-1))
        if e.size == 0:
            continue
        counted = e[np.isfinite(e)]
        if counted.size:
            finite_max = max(finite_max, float(np.percentile(counted, 95)))
        frac = np.arange(1, counted.size + 1) / e.size
        r1 = float(np.mean(e <= 1.0))
        ax.step(np.concatenate([[0.0], counted]), np.concatenate([[0.0], frac]), where="post", lw=1.6,
                ls=styles[n % len(styles)],  # identical curves stay visible
                label=f"{name} (median {np.median(e):.3g} m, <=1 m {100 * r1:.1f} %)")
    x_max = float(max_m) if max_m else min(DEFAULT_CDF_MAX_M, max(25.0, 1.1 * finite_max))
    for d in CDF_MARKS_M:
        if d <= x_max:
            ax.axvline(d, color="0.8", lw=0.8, zorder=0)
    ax.set_xlim(0.0, x_max)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("position error (m)")
    ax.set_ylabel("fraction of queries")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


@dataclass
class LocalizationExample:
    """One query drawn against one tile: images, heat map and positions relative to that tile's centre."""

    panorama: np.ndarray  # uint8 H x W x 3 RGB, equirectangular
    tile: np.ndarray  # uint8 S x S x 3 RGB, north-up
    tile_m: float  # tile side in metres
    prob_map: np.ndarray | None  # (h, w) north-up probabilities over the tile, or None
    true_en_m: tuple[float, float]  # camera (east, north) relative to the tile centre
    pred_en_m: tuple[float, float] | None
    true_heading_deg: float | None = None
    pred_heading_deg: float | None = None
    title: str = ""


def _arrow(ax, en, heading_deg, length, color):
    h = math.radians(heading_deg)
    ax.annotate("", xy=(en[0] + length * math.sin(h), en[1] + length * math.cos(h)), xytext=(en[0], en[1]),
                arrowprops=dict(arrowstyle="->", color=color, lw=1.8))


def plot_localization_example(ex: LocalizationExample, path: str | Path) -> Path:
    """Panorama on top; below it the tile in metres with the heat map, true (green) and predicted (red)
    positions and headings."""
    path = Path(path)
    fig = plt.figure(figsize=(7.0, 8.0), dpi=100)
    ax_p = fig.add_axes([0.06, 0.72, 0.88, 0.24])
    ax_t = fig.add_axes([0.1, 0.05, 0.8, 0.6])
    ax_p.imshow(ex.panorama, aspect="auto", extent=(-180, 180, -90, 90))
    ax_p.set_xlabel("azimuth relative to the panorama heading (deg)", fontsize=8)
    ax_p.set_yticks([])
    ax_p.set_title(ex.title or "query", fontsize=9)
    half = ex.tile_m / 2.0
    extent = (-half, half, -half, half)
    ax_t.imshow(ex.tile, extent=extent, origin="upper")
    if ex.prob_map is not None:
        p = np.asarray(ex.prob_map, dtype=np.float64)
        p = p / p.max() if p.max() > 0 else p
        ax_t.imshow(p, extent=extent, origin="upper", cmap="inferno", alpha=0.5, interpolation="nearest")
    arrow_len = ex.tile_m * 0.08
    inside = max(abs(ex.true_en_m[0]), abs(ex.true_en_m[1])) <= half
    true_label = "true" if inside else f"true: off this tile, ({ex.true_en_m[0]:.0f}, {ex.true_en_m[1]:.0f}) m"
    ax_t.plot(*ex.true_en_m, "o", color="lime", ms=8, mec="k", label=true_label)
    if ex.true_heading_deg is not None:
        _arrow(ax_t, ex.true_en_m, ex.true_heading_deg, arrow_len, "lime")
    if ex.pred_en_m is not None:
        err = math.hypot(ex.pred_en_m[0] - ex.true_en_m[0], ex.pred_en_m[1] - ex.true_en_m[1])
        ax_t.plot(*ex.pred_en_m, "x", color="red", ms=10, mew=2.5, label=f"predicted ({err:.2f} m)")
        if ex.pred_heading_deg is not None:
            _arrow(ax_t, ex.pred_en_m, ex.pred_heading_deg, arrow_len, "red")
    ax_t.set_xlim(-half, half)
    ax_t.set_ylim(-half, half)
    ax_t.set_xlabel("east of tile centre (m)")
    ax_t.set_ylabel("north of tile centre (m)")
    ax_t.legend(loc="upper right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_eval_plots(errors_m: dict[str, np.ndarray], examples: Sequence[LocalizationExample],
                    out_dir: str | Path) -> list[Path]:
    """The figure set of ``unifygeo eval --plots DIR``: ``error_cdf.png`` and ``example_XX.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_error_cdf(errors_m, out / "error_cdf.png")]
    for i, ex in enumerate(examples):
        paths.append(plot_localization_example(ex, out / f"example_{i:02d}.png"))
    return paths


def plot_training_log(log_csv: str | Path, path: str | Path, window: int = 8) -> Path:
    """Training curves from ``unifygeo train``'s log.csv: the losses, in-batch retrieval R@1 (before and after
    re-ranking) and the in-batch position error, each with a running mean over ``window`` log rows."""
    import csv

    rows = list(csv.DictReader(open(log_csv)))
    if not rows:
        raise ValueError(f"{log_csv} has no rows")
    step = np.array([float(r["step"]) for r in rows])

    def col(name):
        return np.array([float(r[name]) for r in rows])

    def smooth(v):
        k = max(1, min(window, len(v)))
        return np.convolve(v, np.ones(k) / k, mode="valid"), step[k - 1:]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in ("infonce", "position", "orientation", "rerank"):
        y, x = smooth(col(name))
        axes[0].plot(x, y, label=name)
    axes[0].set(title="losses", xlabel="step")
    axes[0].legend()
    for name, label in (("batch_r1", "retrieval R@1 in batch"), ("rerank_r1", "after re-ranking")):
        y, x = smooth(col(name))
        axes[1].plot(x, 100 * y, label=label)
    axes[1].set(title="in-batch retrieval (32 tiles of one city)", xlabel="step", ylabel="%")
    axes[1].legend()
    y, x = smooth(col("position_err_m"))
    axes[2].plot(x, y)
    axes[2].set(title="in-batch position error (true tile)", xlabel="step", ylabel="m")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_reliability(observed: dict[str, dict[float, float | None]], path: str | Path,
                     title: str = "Covariance reliability") -> Path:
    """Reliability diagram: for each named set, the observed share of truths inside the 2-D Gaussian's p-ellipse
    against p (:mod:`unifygeo_ros.localization.integrity`); a calibrated covariance lies on the diagonal."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(4.8, 4.6), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1.0, ls="--", label="calibrated")
    for name, curve in observed.items():
        pts = sorted((p, v) for p, v in curve.items() if v is not None)
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, lw=1.4, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("expected coverage (Gaussian p-ellipse)")
    ax.set_ylabel("observed share of truths inside")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    return _save_figure(fig, path)


def plot_stanford(error_m: np.ndarray, protection_level_m: np.ndarray, accepted: np.ndarray, path: str | Path,
                  alert_limit_m: float | None = None, title: str = "Stanford plot") -> Path:
    """Satellite navigation's integrity plot: each fix's error against its protection level (log-log; infinite
    levels drawn at the right edge). Above the diagonal: hazardously misleading (error > protection level);
    withheld fixes in grey; the gate's limit (``alert_limit_m``) as a vertical line."""
    path = Path(path)
    err = np.maximum(np.asarray(error_m, np.float64), 1e-2)
    pl = np.asarray(protection_level_m, np.float64)
    acc = np.asarray(accepted, bool)
    finite = pl[np.isfinite(pl)]
    right = 10.0 ** np.ceil(np.log10(max(float(finite.max()) if finite.size else 10.0,
                                         float(err.max()) if err.size else 10.0, 10.0)))
    pl = np.where(np.isfinite(pl), np.maximum(pl, 1e-2), right)
    fig, ax = plt.subplots(figsize=(5.2, 4.8), dpi=110)
    lo = 1e-1
    ax.plot([lo, right], [lo, right], color="k", lw=1.0)
    ax.scatter(pl[~acc], err[~acc], s=8, color="0.7", label=f"withheld ({int((~acc).sum())})")
    hmi = acc & (err > pl)
    ax.scatter(pl[acc & ~hmi], err[acc & ~hmi], s=8, color="tab:blue", label=f"accepted ({int((acc & ~hmi).sum())})")
    ax.scatter(pl[hmi], err[hmi], s=14, color="tab:red", marker="x", label=f"HMI: error > PL ({int(hmi.sum())})")
    if alert_limit_m is not None and math.isfinite(alert_limit_m):
        ax.axvline(alert_limit_m, color="tab:orange", lw=1.0, ls="--", label=f"gate: PL <= {alert_limit_m:g} m")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, right * 1.2)
    ax.set_ylim(1e-2, right * 1.2)
    ax.set_xlabel("protection level (m)")
    ax.set_ylabel("position error (m)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=7)
    return _save_figure(fig, path)


def _save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
