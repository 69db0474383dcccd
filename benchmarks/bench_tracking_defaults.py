"""Tracking settings side by side over several particle seeds (issue #17; docs/TRACKING.md, 'The default' and
'Drives never tuned on'): recorded drives replayed in ``mode: tracking`` with each variant and each seed, then
summarised per rig.

    nice .venv/bin/python benchmarks/bench_tracking_defaults.py [--cold-starts candidates,accepted_fix]
        [--variant NAME:KEY=VALUE+KEY=VALUE ...] [--seeds 0,1,2] [--drives out/bench_tracking_replay]
        [--cities C1,C2,...] [--rigs panorama,pinhole1,pinhole4] [--work out/bench_tracking_defaults]
        [--stage replay|summary] [--track-set KEY=VALUE ...] [--tag tracking_defaults]

A variant is a name and tracking settings (``unifygeo replay --track-set``); without ``--variant`` the variants are
the cold starts (``candidates:cold_start=candidates``, ...). Drives (``bench_tracking_replay.py --stage bags``
records them once, under its own ``--work``, given here as ``--drives``; this script links them): by default six
150 s panorama drives (the five cross-area cities and DemoCity, models/demo) and, in four of those cities, one 90 deg
camera and a 4 x 90 deg rig (models/fov), each with a >= 200 m kidnap at ~75 s; ``--cities`` takes every rig in the
cities given instead. Each (variant, seed) is two ``bench_tracking_replay.py --stage replay --modes tracking`` runs
into ``<work>/seed<S>_<variant>``; ``--stage summary`` only reads them again.

Per rig and variant, over drives x seeds: how many converged (first time after which every frame for 10 s is
published within 5 m), how many met issue #17's target (panorama: converged within 10 s, median <= 1 m and p95 <=
3 m after; one 90 deg camera: within 60 s, 3 m, 8 m), median / p95 after convergence, kidnaps recovered within 30 s,
availability, published frames, published frames whose error exceeds their protection level - within 50 m (a
belief a little too tight) and beyond (a wrong place; of those, how many came within 15 s after the kidnap: the
teleport not yet detected, the belief still where the robot was) -, and the mean NEES of the published frames within
50 m.
``--compare RIG=VARIANT,...`` also checks each replay of the variants against the same drive and seed replayed with
another variant (e.g. ``panorama=fs4,pinhole1=wk6``: the runs of an earlier change): how many frames differ in what
was decided (status, position, protection level, tracking state, re-initialisation) - 0 says a change of the
filter's rules did nothing on that drive.
Writes ``<out>/<tag>.json`` and ``.png`` (tag ``tracking_defaults``). Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unifygeo_ros.localization.integrity import nees  # noqa: E402

RIGS = {"panorama": ("demo", None), "pinhole1": ("fov", "Synth1000001,Synth1000002,Synth1000003,DemoCity"),
        "pinhole4": ("fov", "Synth1000001,Synth1000002,Synth1000003,DemoCity")}
#: issue #17's targets per rig: converged within (s), median after (m), p95 after (m); None: no tracking target
TARGETS = {"panorama": (10.0, 1.0, 3.0), "pinhole1": (60.0, 3.0, 8.0), "pinhole4": None}
FAR_M = 50.0
#: published frames > FAR_M off within this long after a kidnap are the teleport not yet detected (the belief still
#: where the robot was), counted apart from a wrong place the filter chose
KIDNAP_WINDOW_S = 15.0


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME:KEY=VALUE+KEY=VALUE`` -> (name, ["KEY=VALUE", ...]); ``NAME`` alone: the defaults."""
    name, _, sets = text.partition(":")
    if not name or "/" in name:
        raise argparse.ArgumentTypeError(f"a variant is NAME:KEY=VALUE+KEY=VALUE, got {text!r}")
    return name, [kv for kv in sets.split("+") if kv]


def replay_set(work: Path, drives: Path, variant: tuple[str, list[str]], seed: int, extra: list[str],
               cities: str | None = None, rigs: str = ",".join(RIGS)) -> Path:
    """The replays of one (variant, seed) into ``<work>/seed<S>_<variant>``."""
    name, sets = variant
    out = work / f"seed{seed}_{name}"
    out.mkdir(parents=True, exist_ok=True)
    for linked in ("bags", "index"):
        link = out / linked
        if not link.exists():
            link.symlink_to(os.path.relpath(drives / linked, out))
    wanted = rigs.split(",")
    groups = [("demo", [r for r in ("panorama",) if r in wanted], cities or RIGS["panorama"][1]),
              ("fov", [r for r in ("pinhole1", "pinhole4") if r in wanted], cities or RIGS["pinhole1"][1])]
    for model, group, group_cities in groups:
        if not group:
            continue
        group_rigs = ",".join(group)
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_tracking_replay.py"), "--models", model,
               "--rigs", group_rigs, "--stage", "replay", "--modes", "tracking", "--track-set", f"seed={seed}",
               "--work", str(out), "--out", os.path.relpath(out / "results", ROOT),
               "--tag", f"{model}_{group_rigs.replace(',', '_')}"]
        cmd += [a for kv in sets + extra for a in ("--track-set", kv)]
        if group_cities:
            cmd += ["--cities", group_cities]
        print(f"[{name} seed {seed}] {model} on {group_rigs}", flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    return out


def summarise(runs: list[Path]) -> dict:
    """Per rig: the figures of the module doc over every drive of ``runs``."""
    rigs: dict[str, dict] = {}
    for run_dir in runs:
        for frames in sorted(run_dir.glob("runs/*_tracking/frames.csv")):
            city, rig = frames.parent.name.split("_")[:2]
            a = rigs.setdefault(rig, dict(drives=[], frames=0, published=0, beyond_pl_near=0, beyond_pl_far=0,
                                          far_after_kidnap=0, nees_sum=0.0, nees_count=0))
            t = json.loads((frames.parent / "metrics.json").read_text())["tracking"]
            kidnap_s = t.get("kidnap_at_s")
            with open(frames, newline="") as f:
                rows = list(csv.DictReader(f))
                t0_s = float(rows[0]["t_s"]) if rows else 0.0  # metrics.json's times count from the first frame
                for row in rows:
                    a["frames"] += 1
                    if row["status"] != "fix" or not row["error_m"]:
                        continue
                    err, pl = float(row["error_m"]), float(row["protection_level_m"])
                    a["published"] += 1
                    a["beyond_pl_near"] += int(pl < err <= FAR_M)
                    a["beyond_pl_far"] += int(err > FAR_M)
                    a["far_after_kidnap"] += int(err > FAR_M and kidnap_s is not None
                                                 and 0.0 <= float(row["t_s"]) - t0_s - kidnap_s <= KIDNAP_WINDOW_S)
                    nees = frame_nees(row)
                    if err <= FAR_M and nees is not None:
                        a["nees_sum"] += nees
                        a["nees_count"] += 1
            after = t.get("after_convergence") or {}
            converged = t.get("converged_after_s")
            target = TARGETS.get(rig)  # none for the other rigs
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
        a["nees_mean_within_50m"] = a["nees_sum"] / a["nees_count"] if a["nees_count"] else None
    return rigs


def frame_nees(row: dict) -> float | None:
    """The NEES of one published frame of frames.csv (its error against its own 2 x 2 covariance; integrity.nees),
    None without a usable covariance."""
    try:
        e = [float(row["east_m"]) - float(row["gt_east_m"]), float(row["north_m"]) - float(row["gt_north_m"])]
        cov = [float(row["cov_ee_m2"]), float(row["cov_en_m2"]), float(row["cov_en_m2"]), float(row["cov_nn_m2"])]
    except (ValueError, KeyError):
        return None
    value = float(nees(np.array(e), np.array(cov))[0])
    return value if math.isfinite(value) else None


def _range(values, digits=1) -> str:
    v = [x for x in values if x is not None]
    return f"{min(v):.{digits}f}-{max(v):.{digits}f}" if v else "-"


def table(summary: dict) -> str:
    lines = ["| rig | variant | converged | target met | median / p95 after (m) | recovered <= 30 s | availability "
             "| published / frames | beyond PL, <= 50 m | > 50 m off (<= 15 s after the kidnap) | NEES mean (<= 50 m) |",
             "|" + "---|" * 11]
    for rig in RIGS:
        for name, s in summary.items():
            a = s.get(rig)
            if not a:
                continue
            d = a["drives"]
            pub = max(a["published"], 1)
            met = "-" if a["target_met"] is None else f"{a['target_met']}/{a['runs']}"
            lines.append(
                f"| {rig} | {name} | {a['converged']}/{a['runs']} ({_range([x['converged_after_s'] for x in d])} s) | "
                f"{met} | "
                f"{_range([x['median_m'] for x in d], 2)} / {_range([x['p95_m'] for x in d], 2)} | "
                f"{a['recovered_within_30s']}/{a['runs']} | "
                f"{_range([100 * x['availability'] for x in d], 0)} % | {a['published']} / {a['frames']} | "
                f"{a['beyond_pl_near']} ({100 * a['beyond_pl_near'] / pub:.1f} %) | "
                f"{a['beyond_pl_far']} ({100 * a['beyond_pl_far'] / pub:.1f} %; {a.get('far_after_kidnap', '-')}) | "
                f"{'-' if a.get('nees_mean_within_50m') is None else format(a['nees_mean_within_50m'], '.2f')} |")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figures = [("availability_mean", "availability", 1.0), ("converged", "converged", None),
               ("recovered_within_30s", "kidnap recovered <= 30 s", None),
               ("beyond_pl_near", "published beyond PL (<= 50 m)", "published"),
               ("beyond_pl_far", "published > 50 m off", "published")]
    rigs = [r for r in RIGS if any(summary[n].get(r) for n in summary)] or list(RIGS)  # the rigs replayed
    fig, axes = plt.subplots(1, len(rigs), figsize=(4.2 * len(rigs) + 1.0, 3.6), sharey=True, squeeze=False)
    axes = axes[0]
    names = list(summary)
    for ax, rig in zip(axes, rigs):
        for j, name in enumerate(names):
            a = summary[name].get(rig)
            if not a:
                continue
            vals = []
            for key, _, norm in figures:
                den = a[norm] if isinstance(norm, str) else (norm or a["runs"])
                vals.append(a[key] / max(den, 1))
            xs = [i + (j - (len(names) - 1) / 2) * 0.8 / len(names) for i in range(len(figures))]
            ax.bar(xs, vals, width=0.8 / len(names), label=name)
        ax.set_xticks(range(len(figures)), [f[1] for f in figures], rotation=35, ha="right", fontsize=7)
        ax.set_title(rig)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("share")
    axes[0].legend(fontsize=7)
    fig.suptitle("tracking variants over drives x particle seeds (bench_tracking_defaults.py)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


DECISION_COLUMNS = ("status", "east_m", "north_m", "protection_level_m", "tracking_state", "reinitialised")


def frames_that_differ(a: Path, b: Path) -> int:
    """Frames of two replays of one drive (``frames.csv``) whose decisions (:data:`DECISION_COLUMNS`) differ."""
    def decisions(path: Path) -> list[tuple]:
        with open(path, newline="") as f:
            return [tuple(row[c] for c in DECISION_COLUMNS) for row in csv.DictReader(f)]

    x, y = decisions(a), decisions(b)
    return sum(p != q for p, q in zip(x, y)) + abs(len(x) - len(y))


def compare(runs: dict[str, list[Path]], work: Path, reference: dict[str, str]) -> dict:
    """Per variant: each replay against the same drive and seed under ``reference[rig]`` (frames that differ)."""
    out: dict[str, dict] = {}
    for name, dirs in runs.items():
        for run_dir in dirs:
            seed = run_dir.name.split("_")[0]
            for frames in sorted(run_dir.glob("runs/*_tracking/frames.csv")):
                rig = frames.parent.name.split("_")[1]
                if rig not in reference:
                    continue
                other = work / f"{seed}_{reference[rig]}" / "runs" / frames.parent.name / "frames.csv"
                key = f"{seed}/{frames.parent.name}"
                out.setdefault(name, {})[key] = frames_that_differ(frames, other) if other.is_file() else None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold-starts", default="candidates,accepted_fix", help="the variants without --variant")
    ap.add_argument("--variant", type=parse_variant, action="append", default=[], metavar="NAME:KEY=VALUE+...",
                    help="a named set of tracking settings (repeat; replaces --cold-starts)")
    ap.add_argument("--cities", default=None, help="every rig in these cities (default: the module doc's drives)")
    ap.add_argument("--rigs", default=",".join(RIGS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--drives", default="out/bench_tracking_replay", help="bench_tracking_replay.py's --work")
    ap.add_argument("--work", default="out/bench_tracking_defaults")
    ap.add_argument("--stage", choices=("replay", "summary"), default="replay")
    ap.add_argument("--track-set", action="append", default=[], metavar="KEY=VALUE",
                    help="more tracking settings for every replay")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", default="tracking_defaults", help="name of the JSON and PNG written")
    ap.add_argument("--compare", default="", metavar="RIG=VARIANT,...",
                    help="check each replay against the same drive replayed with VARIANT (module doc)")
    args = ap.parse_args(argv)
    work, drives = ROOT / args.work, ROOT / args.drives
    variants = args.variant or [(c, [f"cold_start={c}"]) for c in args.cold_starts.split(",") if c]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    t0, load0 = time.time(), os.getloadavg()[0]
    runs = {name: [work / f"seed{s}_{name}" for s in seeds] for name, _ in variants}
    if args.stage == "replay":
        for s in seeds:
            for v in variants:
                replay_set(work, drives, v, s, args.track_set, args.cities, args.rigs)
    summary = {name: summarise(r) for name, r in runs.items()}
    print(table(summary))
    compared = compare(runs, work, dict(kv.split("=", 1) for kv in args.compare.split(",") if kv))
    for name, replays in compared.items():
        same = sum(v == 0 for v in replays.values())
        print(f"{name}: {same} of {len(replays)} replays decided frame for frame as their reference; "
              f"differ: {({k: v for k, v in replays.items() if v != 0}) or 'none'}")
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    record = {"machine": {"cpu": platform.machine(), "cores": os.cpu_count(), "threads": 1,
                          "load_avg_1min": [load0, os.getloadavg()[0]]},
              "date": time.strftime("%Y-%m-%d %H:%M"), "stage": args.stage, "wall_s": time.time() - t0, "seeds": seeds,
              "track_set": args.track_set, "variants": {n: v for n, v in variants}, "drives": args.drives,
              "cities": args.cities, "summary": summary,
              "compared": {"reference": args.compare, "frames_that_differ": compared}}
    (out / f"{args.tag}.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(summary, out / f"{args.tag}.png")
    print(f"wrote {out / args.tag}.json and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
