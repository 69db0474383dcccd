"""Why the published covariance is the fix's mode and not the whole posterior's second moment (issue #15, item 1).

    python benchmarks/bench_trust_mixture.py [--checkpoint models/demo] [--data out/bench_data]

The posterior is a mixture over the K candidates (posterior.py). Its second moment about the fix
(``Posterior.mixture_covariance_en_m2``) carries the other places the camera may be; the published covariance
(``covariance_en_m2``) carries only the mode's, and the protection level the rest. This measures, on the panoramas
of bench_trust.py (fit = same-area, cross-area, DemoCity; the stored calibration), what a filter would be told
with ``C = mode + lam * (mixture - mode)`` for ``lam`` from 0 (shipped) to 1 (the whole mixture), at gate limits
from 50 m to none: availability, truth inside the 1 / 2-sigma ellipses, mean / median NEES, HMI, against issue
#15's targets (1-sigma 34-45 %, 2-sigma 82-91 %, NEES 1.5-2.6, HMI <= 1 %, availability >= 50 %). Writes
``benchmarks/results/trust_mixture.json`` and ``trust_mixture.png`` (1-sigma coverage against mean NEES per
``lam``, one point per limit, the target box drawn). Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from bench_trust import add_set_arguments, collect_sets  # noqa: E402
from unifygeo_ros.localization.integrity import finite_or_none, trust_report  # noqa: E402
from unifygeo_ros.localization.posterior import load_calibration  # noqa: E402
from unifygeo_ros.model.handle import load_model  # noqa: E402
from unifygeo_ros.offline import calibrate as C  # noqa: E402

LAMBDAS = (0.0, 0.01, 0.05, 0.2, 1.0)
LIMITS_M = (50.0, 75.0, 100.0, 150.0, 250.0, math.inf)
TARGETS = {"availability": (0.5, 1.0), "inside_1sigma": (0.34, 0.45), "inside_2sigma": (0.82, 0.91),
           "nees_mean": (1.5, 2.6), "hmi_rate": (0.0, 0.01)}


def posteriors(queries, cal) -> tuple[np.ndarray, ...]:
    """(errors (N, 2), mode covariances, mixture covariances (N, 2, 2), protection levels (N,))."""
    err, posts = C.query_posteriors(queries, cal, mixture=True)
    return (err, np.array([p.covariance_en_m2 for p in posts]), np.array([p.mixture_covariance_en_m2 for p in posts]),
            np.array([p.protection_level_m for p in posts]))


def meets(report: dict) -> bool:
    return all(report[k] is not None and lo <= report[k] <= hi for k, (lo, hi) in TARGETS.items())


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = list(result["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4.2), squeeze=False)
    for ax, name in zip(axes[0], sets):
        for lam, rows in result["sets"][name].items():
            pts = [(r["nees_mean"], 100 * r["inside_1sigma"]) for r in rows.values() if r["nees_mean"] is not None]
            ax.plot(*zip(*pts), "o-", label=f"lam {lam}")
            for (lim, r), (x, y) in zip(rows.items(), pts):
                ax.annotate(f"{lim}", (x, y), fontsize=6, alpha=0.7)
        ax.add_patch(plt.Rectangle((1.5, 34.0), 1.1, 11.0, fill=False, ec="k", ls="--", label="targets"))
        ax.set_xscale("log")
        ax.set_xlabel("mean NEES (2 = consistent)")
        ax.set_ylabel("truth inside the 1-sigma ellipse, %")
        ax.set_title(f"{name} (labels: gate limit, m)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_set_arguments(ap)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    handle = load_model(args.checkpoint, device="cpu")
    _, fit_q, held_q, demo_q = collect_sets(handle, Path(args.data), Path(args.demo_data))
    cal = load_calibration(args.checkpoint)
    result = {"checkpoint": args.checkpoint, "lambdas": LAMBDAS, "targets": TARGETS, "sets": {}}
    for name, queries in {"fit cities": fit_q, "cross-area cities": held_q, "DemoCity": demo_q}.items():
        err, mode, mix, pl = posteriors(queries, cal)
        result["sets"][name] = {}
        print(f"\n{name} ({len(queries)} panoramas): lam | limit m | availability | 1 / 2-sigma | NEES mean / median | "
              f"HMI   (* = every issue #15 target met)")
        for lam in LAMBDAS:
            rows = result["sets"][name][f"{lam:g}"] = {}
            for lim in LIMITS_M:
                r = trust_report(err, mode + lam * (mix - mode), pl, pl <= lim).to_json()
                r.pop("reliability")
                rows[f"{lim:g}"] = r
                print(f"  {lam:4g} | {lim:5g} | {100 * r['availability']:5.1f} % | "
                      f"{100 * (r['inside_1sigma'] or 0):5.1f} / {100 * (r['inside_2sigma'] or 0):5.1f} % | "
                      f"{r['nees_mean'] or 0:8.2f} / {r['nees_median'] or 0:5.2f} | {r['hmi']}{' *' if meets(r) else ''}")
    result["wall_s"] = round(time.time() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trust_mixture.json").write_text(json.dumps(finite_or_none(result), indent=1) + "\n")
    plot(result, out / "trust_mixture.png")
    print(f"\nwrote {out / 'trust_mixture.json'} and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
