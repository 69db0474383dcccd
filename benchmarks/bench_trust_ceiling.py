"""How many single panoramas can an integrity gate accept before it lets a gross error through? (issue #15)

    python benchmarks/bench_trust_ceiling.py [--checkpoint models/demo] [--data out/bench_data]

The availability target (>= 50 % of single panoramas accepted) and the consistency targets (mean NEES <= 2.6 over
the accepted fixes) pull against each other: one accepted fix 100 m off with a metre-scale covariance adds about
2500 / N to the mean NEES. This measures the ceiling the demo model leaves any gate that ranks panoramas by a
protection level: per posterior variant, the panoramas sorted by their protection level (alpha 0.01), the share
accepted before the first fix more than ``--gross-m`` off ("zero gross errors"), and before their rate exceeds 1 %,
and the share accepted and gross errors at fixed limits. Variants: the uncalibrated posterior (the model's own
probabilities), the same with the consensus term (weight 1 and 2), and the checkpoint's stored calibration.
Cities as in bench_trust.py (fit = same-area, cross-area, DemoCity; the network runs once per panorama, cached
indexes in ``DATA/_calib``). Writes ``benchmarks/results/trust_ceiling.json`` and ``trust_ceiling.png`` (gross
errors against availability). Figures only; nothing is asserted.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from bench_trust import collect_sets, cpu_model, gross_parser  # noqa: E402
from unifygeo_ros.localization.posterior import Calibration, load_calibration  # noqa: E402
from unifygeo_ros.offline import calibrate as C  # noqa: E402

LIMITS_M = (30.0, 50.0, 75.0, 100.0, 150.0)


def ceiling(error_m: np.ndarray, pl_m: np.ndarray, gross_m: float) -> dict:
    """Availability before the first gross error and before the gross-error rate passes 1 %, panoramas ranked by
    their protection level (ties in input order)."""
    order = np.argsort(pl_m, kind="stable")
    gross = error_m[order] > gross_m
    n = len(order)
    clean = int(np.argmax(gross)) if gross.any() else n
    rate = np.cumsum(gross) / np.arange(1, n + 1)
    within = np.nonzero(rate <= 0.01)[0]
    return {"zero_gross": clean / n, "gross_at_most_1pct": (int(within.max()) + 1) / n if within.size else 0.0,
            "limits": {f"{lim:g}": {"availability": float(np.mean(pl_m <= lim)),
                                    "gross": int(np.sum((pl_m <= lim) & (error_m > gross_m)))} for lim in LIMITS_M}}


def ceiling_figures(c: dict) -> str:
    """``zero gross / gross <= 1 % / at 50 m: accepted % (gross)`` of one :func:`ceiling` result."""
    lim = c["limits"]["50"]
    return (f"{100 * c['zero_gross']:5.1f} / {100 * c['gross_at_most_1pct']:5.1f} / {100 * lim['availability']:5.1f}"
            f" ({lim['gross']})")


def write_result(out_dir: Path, name: str, result: dict, t_start: float) -> None:
    """``result`` with its wall time as ``out_dir/name`` (JSON)."""
    result["wall_s"] = round(time.time() - t_start, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / name).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out_dir / name} ({result['wall_s']} s)")


def main(argv=None) -> int:
    args = gross_parser(__doc__).parse_args(argv)
    handle = cpu_model(args.checkpoint)
    _, fit_q, held_q, demo_q = collect_sets(handle, Path(args.data), Path(args.demo_data))
    sets = {"fit cities": fit_q, "cross-area cities": held_q, "DemoCity": demo_q}
    stored = load_calibration(args.checkpoint)
    variants = {"uncalibrated": Calibration(), "uncalibrated + consensus 1": Calibration(consensus_weight=1.0),
                "uncalibrated + consensus 2": Calibration(consensus_weight=2.0),
                f"stored calibration (consensus {stored.consensus_weight:g})": replace(stored)}
    result, curves = {"gross_m": args.gross_m, "checkpoint": args.checkpoint, "sets": {}}, {}
    for set_name, queries in sets.items():
        result["sets"][set_name] = {}
        print(f"\n{set_name} ({len(queries)} panoramas): share accepted before the first fix > {args.gross_m:g} m off"
              f" / before 1 % of them are; per limit: accepted % / gross errors")
        for name, cal in variants.items():
            err, _, pl = C.posterior_figures(queries, cal)
            e = np.hypot(err[:, 0], err[:, 1])
            c = ceiling(e, pl, args.gross_m)
            result["sets"][set_name][name] = c
            order = np.argsort(pl, kind="stable")
            curves[(set_name, name)] = (np.arange(1, len(e) + 1) / len(e), np.cumsum(e[order] > args.gross_m))
            lim = "  ".join(f"{k}: {100 * v['availability']:.0f} % / {v['gross']}" for k, v in c["limits"].items())
            print(f"  {name:34s} {100 * c['zero_gross']:5.1f} % / {100 * c['gross_at_most_1pct']:5.1f} %   {lim}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trust_ceiling.json").write_text(json.dumps(result, indent=1) + "\n")
    _plot(curves, list(sets), list(variants), out / "trust_ceiling.png", args.gross_m)
    print(f"\nwritten {out / 'trust_ceiling.json'} and {out / 'trust_ceiling.png'}")
    return 0


def _plot(curves, set_names, variant_names, path: Path, gross_m: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(set_names), figsize=(5 * len(set_names), 4), sharey=False)
    for ax, s in zip(np.atleast_1d(axes), set_names):
        for v in variant_names:
            x, y = curves[(s, v)]
            ax.plot(100 * x, y, label=v)
        ax.axvline(50, color="grey", ls="--", lw=0.8)
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 15)
        ax.set_title(s)
        ax.set_xlabel("panoramas accepted, lowest protection level first (%)")
        ax.set_ylabel(f"accepted fixes > {gross_m:g} m off")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
