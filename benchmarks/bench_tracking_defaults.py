"""The tracking filter's cold start, side by side over several particle seeds (issue #17; docs/TRACKING.md, 'The
default'): the same recorded drives as ``bench_tracking_replay.py``, replayed in ``mode: tracking`` with each
``cold_start`` and each seed, then summarised per rig.

    nice .venv/bin/python benchmarks/bench_tracking_defaults.py [--cold-starts candidates,accepted_fix]
        [--seeds 0,1,2] [--work out/bench_tracking_defaults] [--stage replay|summary] [--track-set KEY=VALUE ...]

Drives (``bench_tracking_replay.py --stage bags`` records them once, under its own ``--work``; this script links
them): six 150 s panorama drives (the five cross-area cities and DemoCity, models/demo) and, in four of those cities,
one 90 deg camera and a 4 x 90 deg rig (models/fov), each with a >= 200 m kidnap at ~75 s. Each (cold start, seed)
is two ``bench_tracking_replay.py --stage replay --modes tracking`` runs into ``<work>/seed<S>_<cold start>``;
``--stage summary`` only reads them again.

Per rig and cold start, over drives x seeds: how many converged (first time after which every frame for 10 s is
published within 5 m), how many met issue #17's target (panorama: converged within 10 s, median <= 1 m and p95 <=
3 m after; one 90 deg camera: within 60 s, 3 m, 8 m), median / p95 after convergence, kidnaps recovered within 30 s,
availability, published frames, and published frames whose error exceeds their protection level - within 50 m (a
belief a little too tight) and beyond (a wrong place). Writes ``<out>/<tag>.json`` and ``.png`` (tag ``tracking_defaults``). Figures
only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RIGS = {"panorama": ("demo", None), "pinhole1": ("fov", "Synth1000001,Synth1000002,Synth1000003,DemoCity"),
        "pinhole4": ("fov", "Synth1000001,Synth1000002,Synth1000003,DemoCity")}
#: issue #17's targets per rig: converged within (s), median after (m), p95 after (m); None: no tracking target
TARGETS = {"panorama": (10.0, 1.0, 3.0), "pinhole1": (60.0, 3.0, 8.0), "pinhole4": None}
FAR_M = 50.0


def replay_set(work: Path, drives: Path, cold_start: str, seed: int, extra: list[str]) -> Path:
    """The replays of one (cold start, seed) into ``<work>/seed<S>_<cold start>``."""
    out = work / f"seed{seed}_{cold_start}"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("bags", "index"):
        link = out / name
        if not link.exists():
            link.symlink_to(os.path.relpath(drives / name, out))
    sets = [("demo", "panorama", None), ("fov", "pinhole1,pinhole4", RIGS["pinhole1"][1])]
    for model, rigs, cities in sets:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_tracking_replay.py"), "--models", model, "--rigs", rigs,
               "--stage", "replay", "--modes", "tracking", "--track-set", f"cold_start={cold_start}",
               "--track-set", f"seed={seed}", "--work", str(out), "--out", os.path.relpath(out / "results", ROOT),
               "--tag", f"{model}_{rigs.replace(',', '_')}"]
        cmd += [a for kv in extra for a in ("--track-set", kv)]
        if cities:
            cmd += ["--cities", cities]
        print(f"[{cold_start} seed {seed}] {model} on {rigs}", flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    return out


def summarise(runs: list[Path]) -> dict:
    """Per rig: the figures of the module doc over every drive of ``runs``."""
    rigs: dict[str, dict] = {}
    for run_dir in runs:
        for frames in sorted(run_dir.glob("runs/*_tracking/frames.csv")):
            city, rig = frames.parent.name.split("_")[:2]
            a = rigs.setdefault(rig, dict(drives=[], frames=0, published=0, beyond_pl_near=0, beyond_pl_far=0))
            with open(frames, newline="") as f:
                for row in csv.DictReader(f):
                    a["frames"] += 1
                    if row["status"] != "fix" or not row["error_m"]:
                        continue
                    err, pl = float(row["error_m"]), float(row["protection_level_m"])
                    a["published"] += 1
                    a["beyond_pl_near"] += int(pl < err <= FAR_M)
                    a["beyond_pl_far"] += int(err > FAR_M)
            t = json.loads((frames.parent / "metrics.json").read_text())["tracking"]
            after = t.get("after_convergence") or {}
            converged = t.get("converged_after_s")
            target = TARGETS[rig]
            met = (target is not None and converged is not None and after.get("median_m") is not None
                   and converged <= target[0] and after["median_m"] <= target[1] and after["p95_m"] <= target[2])
            a["drives"].append({"run": str(run_dir.name), "city": city, "converged_after_s": converged,
                                "median_m": after.get("median_m") if converged is not None else None,
                                "p95_m": after.get("p95_m") if converged is not None else None,
                                "recovered_after_kidnap_s": t.get("recovered_after_kidnap_s"),
                                "availability": t.get("availability"), "target_met": met if target else None})
    for a in rigs.values():
        d = a["drives"]
        a["runs"] = len(d)
        a["converged"] = sum(x["converged_after_s"] is not None for x in d)
        a["target_met"] = sum(bool(x["target_met"]) for x in d) if any(x["target_met"] is not None for x in d) else None
        a["recovered_within_30s"] = sum(x["recovered_after_kidnap_s"] is not None
                                        and x["recovered_after_kidnap_s"] <= 30.0 for x in d)
        a["availability_mean"] = sum(x["availability"] for x in d) / max(len(d), 1)
    return rigs


def _range(values, digits=1) -> str:
    v = [x for x in values if x is not None]
    return f"{min(v):.{digits}f}-{max(v):.{digits}f}" if v else "-"


def table(summary: dict) -> str:
    lines = ["| rig | cold start | converged | target met | median / p95 after (m) | recovered <= 30 s | availability "
             "| published / frames | beyond PL, <= 50 m | > 50 m off |", "|" + "---|" * 10]
    for rig in RIGS:
        for cold, s in summary.items():
            a = s.get(rig)
            if not a:
                continue
            d = a["drives"]
            pub = max(a["published"], 1)
            met = "-" if a["target_met"] is None else f"{a['target_met']}/{a['runs']}"
            lines.append(
                f"| {rig} | {cold} | {a['converged']}/{a['runs']} ({_range([x['converged_after_s'] for x in d])} s) | "
                f"{met} | "
                f"{_range([x['median_m'] for x in d], 2)} / {_range([x['p95_m'] for x in d], 2)} | "
                f"{a['recovered_within_30s']}/{a['runs']} | "
                f"{_range([100 * x['availability'] for x in d], 0)} % | {a['published']} / {a['frames']} | "
                f"{a['beyond_pl_near']} ({100 * a['beyond_pl_near'] / pub:.1f} %) | "
                f"{a['beyond_pl_far']} ({100 * a['beyond_pl_far'] / pub:.1f} %) |")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figures = [("availability_mean", "availability", 1.0), ("converged", "converged", None),
               ("recovered_within_30s", "kidnap recovered <= 30 s", None),
               ("beyond_pl_near", "published beyond PL (<= 50 m)", "published"),
               ("beyond_pl_far", "published > 50 m off", "published")]
    fig, axes = plt.subplots(1, len(RIGS), figsize=(4.2 * len(RIGS), 3.6), sharey=True)
    colds = list(summary)
    for ax, rig in zip(axes, RIGS):
        for j, cold in enumerate(colds):
            a = summary[cold].get(rig)
            if not a:
                continue
            vals = []
            for key, _, norm in figures:
                den = a[norm] if isinstance(norm, str) else (norm or a["runs"])
                vals.append(a[key] / max(den, 1))
            xs = [i + (j - (len(colds) - 1) / 2) * 0.8 / len(colds) for i in range(len(figures))]
            ax.bar(xs, vals, width=0.8 / len(colds), label=cold)
        ax.set_xticks(range(len(figures)), [f[1] for f in figures], rotation=35, ha="right", fontsize=7)
        ax.set_title(rig)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("share")
    axes[0].legend(fontsize=7)
    fig.suptitle("tracking cold start over drives x particle seeds (bench_tracking_defaults.py)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold-starts", default="candidates,accepted_fix")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--drives", default="out/bench_tracking_replay", help="bench_tracking_replay.py's --work")
    ap.add_argument("--work", default="out/bench_tracking_defaults")
    ap.add_argument("--stage", choices=("replay", "summary"), default="replay")
    ap.add_argument("--track-set", action="append", default=[], metavar="KEY=VALUE",
                    help="more tracking settings for every replay")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", default="tracking_defaults", help="name of the JSON and PNG written")
    args = ap.parse_args(argv)
    work, drives = ROOT / args.work, ROOT / args.drives
    colds = [c for c in args.cold_starts.split(",") if c]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    t0, load0 = time.time(), os.getloadavg()[0]
    runs = {c: [work / f"seed{s}_{c}" for s in seeds] for c in colds}
    if args.stage == "replay":
        for s in seeds:
            for c in colds:
                replay_set(work, drives, c, s, args.track_set)
    summary = {c: summarise(r) for c, r in runs.items()}
    print(table(summary))
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    record = {"machine": {"cpu": platform.machine(), "cores": os.cpu_count(), "threads": 1,
                          "load_avg_1min": [load0, os.getloadavg()[0]]},
              "date": time.strftime("%Y-%m-%d %H:%M"), "stage": args.stage, "wall_s": time.time() - t0, "seeds": seeds,
              "track_set": args.track_set, "summary": summary}
    (out / f"{args.tag}.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(summary, out / f"{args.tag}.png")
    print(f"wrote {out / args.tag}.json and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
