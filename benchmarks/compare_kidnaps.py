"""What a change does around the kidnaps of tracking replays: the same drives replayed by two variants, side by side.

    python benchmarks/compare_kidnaps.py --pair BASE_RUNS CAND_RUNS [--pair ...] --name NAME [--out DIR]

Each ``--pair`` is two folders of ``unifygeo replay --track`` outputs (``<run>/frames.csv`` and ``metrics.json``, as
``bench_tracking_defaults.py`` and ``bench_tracking_stops.py`` leave them) of the same drives: the variant before and
the variant after a change (the runs both hold). Per rig (the run name's second part:
``DemoCity_pinhole1_fov_tracking`` -> pinhole1, or its first: ``rig5_5151`` -> rig5): replays that differ, and whether
any differs before its kidnap (frame for frame: ``bench_tracking_defaults.DECISION_COLUMNS``); kidnaps recovered
within 30 s and the median recovery; frames published after the kidnap more than 50 m off, beyond their protection
level within 50 m, and in all. Writes ``DIR/NAME.json`` and ``DIR/NAME.png`` (the published frames' error against the
time since the kidnap, before in grey, after in colour). Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from bench_tracking_defaults import DECISION_COLUMNS  # noqa: E402


def rig_of(run: str) -> str:
    parts = run.split("_")
    return parts[1] if parts[0].startswith(("Synth", "DemoCity")) and len(parts) > 1 else parts[0]


def load(run_dir: Path) -> dict:
    """One replay: its frames, the kidnap's time since the first frame and the recovery (metrics.json)."""
    rows = list(csv.DictReader(open(run_dir / "frames.csv")))
    tracking = json.loads((run_dir / "metrics.json").read_text())["tracking"]
    t0 = float(rows[0]["t_s"])
    kidnap = tracking.get("kidnap_at_s")
    after = [(float(r["t_s"]) - t0 - kidnap, float(r["error_m"]), float(r["protection_level_m"])) for r in rows
             if kidnap is not None and r["status"] == "fix" and r["error_m"] and float(r["t_s"]) - t0 >= kidnap]
    return {"rows": rows, "t0": t0, "kidnap_s": kidnap, "after": after,
            "recovered_s": tracking.get("recovered_after_kidnap_s")}


def first_difference_s(a: dict, b: dict) -> float | None:
    """Seconds from the kidnap to the first frame that differs (None: none does)."""
    for x, y in zip(a["rows"], b["rows"]):
        if any(x[k] != y[k] for k in DECISION_COLUMNS):
            return float(x["t_s"]) - a["t0"] - (a["kidnap_s"] or 0.0)
    return None if len(a["rows"]) == len(b["rows"]) else 0.0


def figures(replays: list[dict]) -> dict:
    rec = [r["recovered_s"] for r in replays]
    after = [f for r in replays for f in r["after"]]
    return {"replays": len(replays),
            "recovered_within_30_s": sum(x is not None and x <= 30.0 for x in rec),
            "recovery_median_s": statistics.median([x if x is not None else float("inf") for x in rec]),
            "published_after_kidnap": len(after),
            "after_kidnap_more_than_50_m_off": sum(e > 50.0 for _, e, _ in after),
            "after_kidnap_beyond_pl_within_50_m": sum(pl < e <= 50.0 for _, e, pl in after)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", nargs=2, action="append", required=True, metavar=("BASE", "CAND"),
                    help="two folders of replay runs of the same drives: before and after")
    ap.add_argument("--name", required=True, help="output name (NAME.json, NAME.png)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    by_rig: dict[str, dict[str, list]] = {}
    changed: dict[str, list] = {}
    for base_dir, cand_dir in args.pair:
        for frames in sorted(Path(base_dir).glob("*/frames.csv")):
            run = frames.parent.name
            if not (Path(cand_dir) / run / "frames.csv").is_file():  # the candidate replayed some rigs only
                continue
            a, b = load(frames.parent), load(Path(cand_dir) / run)
            rig = rig_of(run)
            by_rig.setdefault(rig, {"before": [], "after": []})
            by_rig[rig]["before"].append(a)
            by_rig[rig]["after"].append(b)
            diff = first_difference_s(a, b)
            changed.setdefault(rig, []).append(diff)
            kidnap = "-" if a["kidnap_s"] is None else f"{a['kidnap_s']:.1f} s"
            rec = ["-" if r["recovered_s"] is None else f"{r['recovered_s']:.1f} s" for r in (a, b)]
            print(f"{run:40s} kidnap {kidnap:>8}, first difference {'none' if diff is None else f'{diff:+.1f} s'}; "
                  f"recovered {rec[0]} -> {rec[1]}")
    result = {"pairs": [[str(Path(p).resolve().relative_to(ROOT)) if Path(p).resolve().is_relative_to(ROOT) else p
                         for p in pair] for pair in args.pair], "rigs": {}}
    print("| rig | variant | replays changed (any before its kidnap) | recovered <= 30 s | median recovery | published "
          "after the kidnap | > 50 m off | beyond PL within 50 m |")
    for rig, v in by_rig.items():
        diffs = changed[rig]
        n_changed = sum(d is not None for d in diffs)
        early = sum(d is not None and d < 0 for d in diffs)
        result["rigs"][rig] = {"replays_changed": n_changed, "changed_before_kidnap": early,
                               "before": figures(v["before"]), "after": figures(v["after"])}
        for tag in ("before", "after"):
            f = result["rigs"][rig][tag]
            print(f"| {rig} | {tag} | {n_changed} ({early}) | {f['recovered_within_30_s']}/{f['replays']} | "
                  f"{f['recovery_median_s']:.1f} s | {f['published_after_kidnap']} | "
                  f"{f['after_kidnap_more_than_50_m_off']} | {f['after_kidnap_beyond_pl_within_50_m']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(by_rig, args.out / f"{args.name}.png")
    print(f"wrote {args.out / args.name}.json and .png")
    return 0


def plot(by_rig: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(by_rig), figsize=(5.0 * len(by_rig), 4.2), dpi=100, squeeze=False)
    for ax, (rig, v) in zip(axes[0], by_rig.items()):
        for tag, style in (("before", dict(color="0.6", s=6, label="before")),
                           ("after", dict(color="tab:red", s=4, label="after"))):
            pts = [f for r in v[tag] for f in r["after"]]
            ax.scatter([p[0] for p in pts], [max(p[1], 0.05) for p in pts], alpha=0.6, **style)
        ax.axhline(50.0, color="k", lw=0.6, ls="--")
        ax.set_yscale("log")
        ax.set_ylim(0.05, 1000.0)
        ax.set_xlim(-1, 60)
        ax.set_title(f"{rig}: {len(v['before'])} replays")
        ax.set_xlabel("time since the kidnap (s)")
        ax.set_ylabel("published error (m)")
        ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
