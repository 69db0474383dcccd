"""The sequential localizer on synthetic drives (issue #17, item 1): particles vs grid vs single frames.

    .venv/bin/python benchmarks/bench_tracking.py [--seeds 1000001,1000002,1000003] [--duration 120]
        [--kidnap-at 60] [--variants particles,grid] [--set KEY=VALUE ...] [--tag tracking] [--out benchmarks/results]

    (benchmarks/results/tracking.json: --variants particles,grid,particles300,particles3000,grid2,noimu)

1. cities: the cross-area benchmark cities (seeds no training run uses; out/bench_data/Synth<seed>, written and
   indexed with the demo model as bench_trust.py does when missing);
2. one drive per city, simulated in-process with the code of ``unifygeo bag synth`` (route on the street graph inside
   the tiles' central quarters, the drive's speed profile, rosbag/sensors.py's wheel odometry at 20 Hz and IMU at
   50 Hz with their default noise, the drive's seed): vehicle-aligned panoramas at ``--rate`` (2 Hz) rendered by
   the world's renderer; with ``--kidnap-at S`` the vehicle is teleported at S seconds to a second drive starting
   at least 200 m away, and the odometry does not see it (it continues with the second drive's own samples);
3. per variant (``particles``: 1000 particles; ``particles300``, ``particles3000``; ``grid``: 1 m cells;
   ``grid2``: 2 m cells; ``noimu``: particles, the IMU heading used for initialisation only, then odometry alone),
   the filter runs over the same frames: odometry chained between frames (:meth:`OdometryDelta.then`), the IMU's
   compass heading at each frame (nearest sample), ``SequentialLocalizer.step`` on the panorama;
4. figures per drive and variant (definitions of issue #17, item 5): ``converged_after_s`` = first time after which
   the error stays within 5 m for 10 s (null if never); ``after_convergence`` = median / p95 / RMSE of the error from
   then on (frames between a kidnap and its recovery left out); ``recovered_after_kidnap_s`` = the same first time
   counted from the kidnap; NEES mean / median over those frames (the belief's 2-D covariance; 2 = consistent);
   HMI = frames after convergence whose error exceeds the protection level; ms per step (the whole step, and the
   part beyond the single-frame localizer) on one torch thread; single frames on the same frames: the global fix's
   error (all fixes, and the gate-accepted ones) and availability.

``--set KEY=VALUE`` overrides a TrackingSettings field in every variant (how the defaults were chosen: docs/
TRACKING.md). Machine, load and thread count are printed and stored. Writes ``<out>/<tag>.json`` and ``<tag>.png``
(error over time per drive, convergence and kidnap marked). Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench_unified_vs_decoupled import prepare  # noqa: E402
from unifygeo_ros import geo  # noqa: E402
from unifygeo_ros.data import render, world  # noqa: E402
from unifygeo_ros.data.synth import tile_grid  # noqa: E402
from unifygeo_ros.errors import UnifyGeoError  # noqa: E402
from unifygeo_ros.index import build as index_build  # noqa: E402
from unifygeo_ros.index import store  # noqa: E402
from unifygeo_ros.index.tiles import vigor_tiles  # noqa: E402
from unifygeo_ros.localization.integrity import nees  # noqa: E402
from unifygeo_ros.localization.localizer import Localizer  # noqa: E402
from unifygeo_ros.localization.tracking import OdometryDelta, SequentialLocalizer, TrackingSettings  # noqa: E402
from unifygeo_ros.offline.calibrate import index_dir_for  # noqa: E402
from unifygeo_ros.model.handle import load_model  # noqa: E402
from unifygeo_ros.rosbag import sensors as sens  # noqa: E402
from unifygeo_ros.rosbag.drive import make_drive  # noqa: E402
from unifygeo_ros.rosbag.route import plan_route, street_graph  # noqa: E402

CONVERGED_M, CONVERGED_FOR_S = 5.0, 10.0  # issue #17's definition
KIDNAP_MIN_M = 200.0
VARIANTS = {
    "particles": TrackingSettings(),
    "particles300": TrackingSettings(particles=300),
    "particles3000": TrackingSettings(particles=3000),
    "grid": TrackingSettings(filter="grid"),
    "grid2": TrackingSettings(filter="grid", grid_cell_m=2.0),
    "noimu": TrackingSettings(),
}


def variant(name: str, overrides: list[str]) -> TrackingSettings:
    """The settings of a variant with ``KEY=VALUE`` overrides (numbers, or None)."""
    kw = {}
    for item in overrides:
        key, value = item.split("=", 1)
        kw[key] = None if value == "None" else type(getattr(TrackingSettings(), key) or 0.0)(value)
    return replace(VARIANTS[name], **kw)


@dataclass
class Frame:
    t_s: float
    truth_en_m: np.ndarray
    truth_heading_deg: float
    image: np.ndarray
    odom: OdometryDelta | None  # since the previous frame
    imu_heading_deg: float
    imu_std_deg: float


# ------------------------------------------------------------------------------------------------ data
def city_and_index(root: Path, seed: int, handle) -> tuple[Path, Path]:
    """The benchmark city (written when missing) and its index with this model (built when missing)."""
    name = prepare(root, [seed], handle.aerial_px, handle.ground_hw[1])[0]
    index_dir = index_dir_for(root / "_calib", name, handle.identity)  # unifygeo calibrate's cache
    if not (index_dir / "index.json").is_file():
        index_build.build_index(handle, vigor_tiles(root / name, height=handle.aerial_channels == 4), index_dir,
                                aerial_mode="features", progress=False)
    return root / name, index_dir


def _odometry(samples: sens.OdomSamples, t_lo: float, t_hi: float, dt: float) -> list[OdometryDelta]:
    """One delta per wheel odometry sample in (t_lo, t_hi] (each reports the interval since the previous one)."""
    keep = (samples.t_s > t_lo + 1e-9) & (samples.t_s <= t_hi + 1e-9)
    return [OdometryDelta.from_twist(float(samples.speed_mps[i]), float(samples.yaw_rate_rps[i]), dt,
                                     float(samples.speed_var[i]), float(samples.yaw_rate_var),
                                     float(samples.lateral_speed_var)) for i in np.nonzero(keep)[0]]


def _kidnap(graph, drive_a, from_s: float, duration_s: float, length_m: float, rng) -> tuple[float, np.ndarray]:
    """The first frame time at or after ``from_s`` (every 0.5 s) from which a route starting at least
    KIDNAP_MIN_M away exists (a small city has such crossings only near its edges), and that route."""
    for t in np.arange(from_s, duration_s - CONVERGED_FOR_S, 0.5):
        at = drive_a.at([t])[0][0]
        try:
            return float(t), plan_route(graph, "random", length_m, rng, far_from_en=tuple(at),
                                        min_distance_m=KIDNAP_MIN_M)
        except UnifyGeoError:
            continue
    raise UnifyGeoError(f"no kidnap of {KIDNAP_MIN_M:.0f} m possible on this drive after {from_s} s")


def simulate(city_dir: Path, seed: int, duration_s: float, rate_hz: float, speed_mps: float,
             kidnap_at_s: float | None) -> tuple[list[Frame], float | None]:
    """The frames of one drive (module doc, step 2) and the kidnap's time (None without one)."""
    meta = json.loads((city_dir / "geo.json").read_text())
    city = world.generate_city(int(meta["seed"]), tuple(meta["size_m"]), meta["style"], cell_m=float(meta["cell_m"]))
    bounds = tile_grid(tuple(meta["size_m"]), float(meta["tile_m"])).camera_bounds()
    graph = street_graph(city.streets, tuple(city.size_m), bounds=bounds)
    rng = np.random.default_rng(seed)
    length = speed_mps * duration_s * 1.6 + 60.0
    settings = sens.SensorSettings(seed=seed)
    drive_a = make_drive(plan_route(graph, "random", length, rng), speed_mps)
    segments = [(0.0, drive_a, sens.simulate_sensors(drive_a, duration_s + 1.0, settings))]
    if kidnap_at_s is not None:
        kidnap_at_s, route_b = _kidnap(graph, drive_a, kidnap_at_s, duration_s, length, rng)
        drive_b = make_drive(route_b, speed_mps)
        segments.append((kidnap_at_s, drive_b, sens.simulate_sensors(drive_b, duration_s + 1.0,
                                                                     replace(settings, seed=seed + 1))))
    dt_odom = 1.0 / settings.odom.rate_hz
    frames, t_prev = [], None
    width = int(meta["pano_px"][0])
    for k in range(int(duration_s * rate_hz) + 1):
        t = k / rate_hz
        start, drive, samples = [s for s in segments if s[0] <= t][-1]
        en, heading, _, _ = (a[0] for a in drive.at([t - start]))
        deltas = []
        if t_prev is not None:  # the odometry of each segment over its part of (t_prev, t]
            for (s0, _, sm), s1 in zip(segments, [s[0] for s in segments[1:]] + [math.inf]):
                lo, hi = max(t_prev, s0), min(t, s1)
                if hi > lo:
                    deltas += _odometry(sm.odom, lo - s0, hi - s0, dt_odom)
        odom = None
        for d in deltas:
            odom = d if odom is None else odom.then(d)
        imu = samples.imu
        i = int(np.argmin(np.abs(imu.t_s - (t - start))))
        imu_heading = float(geo.yaw_to_heading_deg(math.degrees(float(imu.yaw_rad[i]))))
        img = render.render_panorama(city, (float(en[0]), float(en[1])), float(heading), width, width // 2,
                                     camera_height_m=float(meta.get("camera_height_m", 2.0)))
        frames.append(Frame(t, np.asarray(en, float), float(heading), img, odom, imu_heading,
                            math.degrees(math.sqrt(float(imu.yaw_var[i])))))
        t_prev = t
    return frames, kidnap_at_s


# ------------------------------------------------------------------------------------------------ runs
def run(loc: Localizer, frames: list[Frame], name: str, settings: TrackingSettings) -> list[dict]:
    """One pass of the filter over the frames; a record per frame."""
    tracker = SequentialLocalizer(loc, settings)
    out = []
    for k, f in enumerate(frames):
        if f.odom is not None:
            tracker.predict(f.odom)
        imu = name != "noimu" or not tracker.initialised
        est = tracker.step(f.image, f.t_s, heading_deg=f.imu_heading_deg if imu else None,
                           heading_std_deg=f.imu_std_deg)
        fix = est.fix
        out.append({
            "t_s": f.t_s, "truth": f.truth_en_m.tolist(), "est": [est.east_m, est.north_m],
            "cov": np.asarray(est.covariance_en_m2).tolist(), "pl_m": est.protection_level_m,
            "heading_err_deg": float(geo.angle_diff_deg(est.heading_deg, f.truth_heading_deg))
            if est.initialised else None,
            "initialised": est.initialised, "converged": est.converged, "lost": est.lost,
            "reinitialised": est.reinitialised, "log_ratio": est.evidence_log_ratio, "tiles": est.tiles_evaluated,
            "fix": None if fix is None else [fix.east_m, fix.north_m], "fix_accepted": est.fix_accepted,
            "step_ms": est.step_ms, "tracking_ms": est.tracking_ms,
            "single_ms": float(fix.timings_ms.get("total", math.nan)) if fix is not None else None})
    return out


def _first_stable(t: np.ndarray, err: np.ndarray, t_from: float, t_to: float) -> float | None:
    """First time >= t_from after which the error stays <= CONVERGED_M for CONVERGED_FOR_S (within t_to)."""
    for i in np.nonzero((t >= t_from) & (t <= t_to - CONVERGED_FOR_S))[0]:
        window = (t >= t[i]) & (t <= t[i] + CONVERGED_FOR_S)
        if np.all(err[window] <= CONVERGED_M):
            return float(t[i])
    return None


def score(records: list[dict], kidnap_at_s: float | None) -> dict:
    t = np.array([r["t_s"] for r in records])
    truth = np.array([r["truth"] for r in records])
    est = np.array([r["est"] for r in records])
    err = np.hypot(*(est - truth).T)
    err = np.where(np.isfinite(err), err, np.inf)
    end = float(t[-1]) + 1e-9
    k_at = kidnap_at_s if kidnap_at_s is not None else end + 1.0
    conv = _first_stable(t, err, 0.0, min(end, k_at))
    rec = _first_stable(t, err, k_at, end) if kidnap_at_s is not None else None
    use = np.zeros(len(t), bool)
    if conv is not None:
        use |= (t >= conv) & (t < k_at)
    if rec is not None:
        use |= t >= rec
    e = err[use]
    cov = np.array([r["cov"] for r in records])[use]
    d2 = nees(est[use] - truth[use], cov) if use.any() else np.zeros(0)
    pl = np.array([r["pl_m"] for r in records])[use]
    fix = np.array([r["fix"] if r["fix"] is not None else [np.nan, np.nan] for r in records])
    ferr = np.hypot(*(fix - truth).T)
    acc = np.array([r["fix_accepted"] for r in records])
    step = np.array([r["step_ms"] for r in records])
    extra = np.array([r["tracking_ms"] for r in records])
    single = np.array([r["single_ms"] if r["single_ms"] is not None else np.nan for r in records])
    hd = np.array([abs(r["heading_err_deg"]) if r["heading_err_deg"] is not None else np.nan for r in records])[use]

    def stats(v):
        v = v[np.isfinite(v)]
        return {"median_m": float(np.median(v)), "p95_m": float(np.percentile(v, 95)),
                "rmse_m": float(np.sqrt(np.mean(v ** 2))), "count": int(v.size)} if v.size else None

    return {
        "frames": len(t), "converged_after_s": conv,
        "recovered_after_kidnap_s": (rec - kidnap_at_s) if rec is not None else None,
        "after_convergence": stats(e),
        "nees_mean": float(np.mean(d2)) if d2.size else None, "nees_median": float(np.median(d2)) if d2.size else None,
        "hmi": int(np.sum(e > pl)) if e.size else 0,
        "heading_err_median_deg": float(np.nanmedian(hd)) if hd.size else None,
        "reinitialisations": [(r["t_s"], r["reinitialised"]) for r in records if r["reinitialised"]],
        "ms_step_median": float(np.median(step)), "ms_beyond_single_median": float(np.median(extra)),
        "ms_beyond_single_p95": float(np.percentile(extra, 95)), "ms_single_median": float(np.nanmedian(single)),
        "single_frame": {"all": stats(ferr[np.isfinite(ferr)]), "accepted": stats(ferr[acc]),
                         "availability": float(acc.mean()),
                         "same_frames_all": stats(ferr[use & np.isfinite(ferr)])},
    }


# ------------------------------------------------------------------------------------------------ output
def plot(results: dict, kidnaps: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drives = list(results)
    fig, axes = plt.subplots(len(drives), 1, figsize=(10, 3.2 * len(drives)), squeeze=False)
    for ax, drive in zip(axes[:, 0], drives):
        for name, res in results[drive].items():
            t = np.array([r["t_s"] for r in res["records"]])
            e = np.hypot(*(np.array([r["est"] for r in res["records"]]) - np.array([r["truth"] for r in
                                                                                   res["records"]])).T)
            ax.semilogy(t, np.maximum(e, 0.05), lw=1, label=name)
            if res["figures"]["converged_after_s"] is not None:
                ax.axvline(res["figures"]["converged_after_s"], ls=":", lw=0.8)
        first = next(iter(results[drive].values()))["records"]
        fe = [math.hypot(r["fix"][0] - r["truth"][0], r["fix"][1] - r["truth"][1]) if r["fix"] else np.nan
              for r in first]
        ax.semilogy([r["t_s"] for r in first], np.maximum(fe, 0.05), ".", ms=2, color="grey", label="single frame")
        if kidnaps.get(drive) is not None:
            ax.axvline(kidnaps[drive], color="red", lw=1.2, label="kidnap")
        ax.axhline(CONVERGED_M, color="k", lw=0.6, ls="--")
        ax.set_title(drive)
        ax.set_ylabel("error (m)")
        ax.legend(fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(v, d=2):
    return "n/a" if v is None else f"{v:.{d}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="models/demo")
    ap.add_argument("--data", default="out/bench_data")
    ap.add_argument("--seeds", default="1000001,1000002,1000003")
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--rate", type=float, default=2.0)
    ap.add_argument("--speed", type=float, default=8.0)
    ap.add_argument("--kidnap-at", type=float, default=60.0, help="seconds; <= 0: no kidnap")
    ap.add_argument("--variants", default="particles,grid")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a TrackingSettings field in every variant (e.g. evidence_weight=1.0)")
    ap.add_argument("--tag", default="tracking", help="name of the JSON and PNG written")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "load_avg_1min": os.getloadavg()[0], "torch_threads": torch.get_num_threads()}
    print(f"machine: {machine}")
    handle = load_model(args.checkpoint, device="cpu")
    kidnap = args.kidnap_at if args.kidnap_at > 0 else None
    results, kidnaps = {}, {}
    for seed in (int(s) for s in args.seeds.split(",")):
        city_dir, index_dir = city_and_index(Path(args.data), seed, handle)
        loc = Localizer(store.load_index(index_dir), handle)
        t0 = time.perf_counter()
        frames, k_at = simulate(city_dir, seed, args.duration, args.rate, args.speed, kidnap)
        print(f"{city_dir.name}: {len(frames)} frames simulated in {time.perf_counter() - t0:.0f} s, kidnap at "
              f"{_f(k_at, 1)} s", flush=True)
        results[city_dir.name], kidnaps[city_dir.name] = {}, k_at
        for name in args.variants.split(","):
            recs = run(loc, frames, name, variant(name, args.set))
            fig = score(recs, k_at)
            results[city_dir.name][name] = {"figures": fig, "records": recs}
            ac, sf = fig["after_convergence"] or {}, fig["single_frame"]
            print(f"  {name:14s} converged {_f(fig['converged_after_s'], 1)} s, after: median "
                  f"{_f(ac.get('median_m'))} p95 {_f(ac.get('p95_m'))} m (n={ac.get('count', 0)}), NEES "
                  f"{_f(fig['nees_mean'])}/{_f(fig['nees_median'])}, HMI {fig['hmi']}, recovered "
                  f"{_f(fig['recovered_after_kidnap_s'], 1)} s, ms step {fig['ms_step_median']:.1f} "
                  f"(+{fig['ms_beyond_single_median']:.1f} median, {fig['ms_beyond_single_p95']:.1f} p95 beyond "
                  f"single {fig['ms_single_median']:.1f}) | single frames: median "
                  f"{_f((sf['all'] or {}).get('median_m'))} m, accepted {_f((sf['accepted'] or {}).get('median_m'))}"
                  f" m, availability {sf['availability']:.2f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"machine": machine, "args": vars(args),
               "settings": {n: variant(n, args.set).__dict__ for n in args.variants.split(",")},
               "drives": {d: {n: r["figures"] for n, r in v.items()} for d, v in results.items()}}
    (out / f"{args.tag}.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    plot(results, kidnaps, out / f"{args.tag}.png")
    print(f"wrote {out / args.tag}.json and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
