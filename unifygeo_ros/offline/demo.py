"""``unifygeo demo``: the whole chain on the embedded demo, end to end, with figures and a picture.

1. the demo model (``models/demo/``, or ``--checkpoint``);
2. a demo city rendered by ``unifygeo synth`` from a fixed seed that training never uses (cached under
   ``OUT/data``);
3. an aerial index of the city's tiles (``unifygeo index build``; cached under ``OUT/index``, rebuilt when the
   model or the city changed);
4. its panoramas localized one at a time by :class:`~unifygeo_ros.localization.localizer.Localizer`;
5. accuracy - median position error, recall within 1/5/10 m, retrieval R@1 (the descriptor top-1 is the positive
   tile) and after re-ranking (the fix's ``tile_id``; before the tile assignment: its ``evidence_tile_id``, the
   candidate whose map gave the fix - the re-ranker's top-1, or the consensus' choice),
   heading error - and latency (p50/p95 per fix), the covariance check (share of
   true positions inside the 1-sigma and 2-sigma ellipses; 39.3 % and 86.5 % for a calibrated Gaussian), the
   integrity (the node's gate: the share it accepts, their coverage, NEES, protection levels and HMI - error above
   the protection level -, :mod:`unifygeo_ros.localization.integrity`);
6. a picture of the fixes over the aerial map (``OUT/demo_fixes.png``) and the figures as JSON
   (``OUT/demo_report.json``).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from matplotlib.patches import Ellipse

from unifygeo_ros import cli, geo
from unifygeo_ros.data import vigor
from unifygeo_ros.data.height import HEIGHT_DIR
from unifygeo_ros.errors import CheckpointError, DataFormatError, IndexFormatError, UnifyGeoError
from unifygeo_ros.image.preprocess import load_image
from unifygeo_ros.index import build as index_build
from unifygeo_ros.index import store
from unifygeo_ros.index.portable import recorded_source
from unifygeo_ros.index.tiles import vigor_tiles
from unifygeo_ros.localization.integrity import nees, trust_report
from unifygeo_ros.localization.localizer import Localizer
from unifygeo_ros.localization.pipeline import PipelineSettings, gate_fix
from unifygeo_ros.model.handle import load_model
from unifygeo_ros.plots import plt  # pyplot with the Agg backend, set up once there
from unifygeo_ros.resources import DEMO_CHECKPOINT_REL, find_resource
from unifygeo_ros.rosbag.replay import ReplayConfig, replay
from unifygeo_ros.rosbag.synth import GEOPOSE_TOPIC, SynthBagConfig, synth_bag

DEMO_CITY = "DemoCity"
#: the demo city's seed; training streams draw their cities from other seeds (see docs/INDEX.md)
DEMO_SEED = 2026
CHI2_1SIGMA, CHI2_2SIGMA = 1.0, 4.0  # squared Mahalanobis radius of the 1- and 2-sigma ellipses (2 dof)


@dataclass
class DemoQuery:
    name: str
    path: Path
    true_en: np.ndarray  # (2,) index ENU
    positive: str  # tile id of the positive


@dataclass
class DemoReport:
    """Everything ``unifygeo demo`` measured; definitions in the module docstring."""

    city: str
    tiles: int
    queries: int
    checkpoint: str
    median_error_m: float
    mean_error_m: float
    recall_1m: float
    recall_5m: float
    recall_10m: float
    retrieval_r1: float
    rerank_r1: float
    rerank_r1_evidence: float  # the tile whose map gave the fix (evidence tile) is the positive, before the assignment
    median_heading_error_deg: float
    inside_1sigma: float
    inside_2sigma: float
    share_accepted: float  # the node's integrity gate (defaults) lets these out
    recall_5m_accepted: float
    recall_5m_withheld: float
    trust: dict = field(default_factory=dict)  # localization.integrity.TrustReport of the accepted fixes
    latency_ms: dict = field(default_factory=dict)  # stage -> {"p50", "p95"}
    picture: str = ""
    replay: dict = field(default_factory=dict)  # the recorded drive's replay: metrics and where its outputs are


def demo_queries(city_dir: Path, origin: geo.LocalENU, limit: int | None) -> list[DemoQuery]:
    """The city's panoramas with their true positions (from the file names) and positive tiles (labels)."""
    root, city = city_dir.parent, city_dir.name
    path, _ = vigor.label_file_path(root, city, "all", True)
    records = vigor.read_label_file(path)
    queries = []
    for rec in records[: limit or None]:
        _, lat, lon = vigor.parse_pano_name(rec.pano)
        e, n = origin.to_en(lat, lon)
        queries.append(DemoQuery(rec.pano, city_dir / "panorama" / rec.pano, np.array([float(e), float(n)]),
                                 Path(rec.positive).stem))
    return queries


def _progress(line: str) -> None:
    """A progress line of the demo, on stderr (stdout holds the report: ``--json`` stays JSON)."""
    print(f"[demo] {line}", file=sys.stderr, flush=True)


def ensure_city(data_root: Path, seed: int, size_m: float, panos: int) -> Path:
    """Render the demo city with ``unifygeo synth`` unless it is already there (same seed and size, with the
    surface heights of its tiles)."""
    city_dir = data_root / DEMO_CITY
    geo_json = city_dir / "geo.json"
    if geo_json.exists():
        try:
            meta = json.loads(geo_json.read_text())
            if int(meta.get("seed", -1)) == seed and float(meta.get("size_m", [0])[0]) == float(size_m) \
                    and int(meta.get("n_panoramas", 0)) >= panos and (city_dir / HEIGHT_DIR).is_dir():
                return city_dir
        except (ValueError, OSError, TypeError, IndexError):
            pass
    _progress(f"rendering {DEMO_CITY} (seed {seed}, {size_m:g} m, {panos} panoramas) with `unifygeo synth`")
    rc = cli.main(["synth", "--out", str(data_root), "--city", DEMO_CITY, "--seed", str(seed),
                   "--size-m", str(size_m), "--panos", str(panos), "--overwrite"])
    if rc != 0 or not geo_json.exists():
        raise DataFormatError(f"`unifygeo synth` could not render the demo city into {data_root}")
    return city_dir


def ensure_index(handle, city_dir: Path, index_dir: Path, batch_size: int):
    """Load the cached index when it was built by this model from this city, else (re)build it."""
    try:
        meta = store.read_meta(index_dir)
        if meta["model"].get("identity") == handle.identity and recorded_source(index_dir) == city_dir.resolve():
            index = store.load_index(index_dir, device=handle.device.type)
            _progress(f"index: {index_dir} (cached, {len(index)} tiles)")
            return index
    except IndexFormatError:
        pass
    t0 = time.perf_counter()
    source = vigor_tiles(city_dir, height=handle.aerial_channels == 4)
    meta = index_build.build_index(handle, source, index_dir, batch_size=batch_size)
    _progress(f"index: built {index_dir} ({meta['count']} tiles, {meta['aerial']['mode']}, "
              f"{time.perf_counter() - t0:.1f} s)")
    return store.load_index(index_dir, device=handle.device.type)


def aerial_mosaic(city_dir: Path, index, m_per_px: float = 0.5) -> tuple[np.ndarray, list[float]]:
    """The city's aerial map assembled from its tiles' central stride-sized parts; (image, extent e0,e1,n0,n1)."""
    tile_m = index.tile_m
    en = index.en_m
    e0, n0 = en[:, 0].min() - tile_m / 2, en[:, 1].min() - tile_m / 2
    e1, n1 = en[:, 0].max() + tile_m / 2, en[:, 1].max() + tile_m / 2
    w, h = int(math.ceil((e1 - e0) / m_per_px)), int(math.ceil((n1 - n0) / m_per_px))
    canvas = np.zeros((h, w, 3), np.uint8)
    px = int(round(tile_m / m_per_px))
    # paste larger tiles first so that every pixel ends up from the tile whose centre is nearest (Voronoi-ish):
    # paste the whole tile, then each tile's central half over it
    for crop in (1.0, 0.5):
        for tid, (e, n) in zip(index.tile_ids, en):
            p = city_dir / "satellite" / f"{tid}.png"
            if not p.exists():
                continue
            img = cv2.resize(load_image(p), (px, px), interpolation=cv2.INTER_AREA)
            c = int(round(px * crop))
            off = (px - c) // 2
            img = img[off:off + c, off:off + c]
            col = int(round((e - e0) / m_per_px - c / 2))
            row = int(round((n1 - n) / m_per_px - c / 2))
            r0, c0 = max(row, 0), max(col, 0)
            r1, c1 = min(row + c, h), min(col + c, w)
            if r1 > r0 and c1 > c0:
                canvas[r0:r1, c0:c1] = img[r0 - row:r1 - row, c0 - col:c1 - col]
    return canvas, [float(e0), float(e1), float(n0), float(n1)]


def plot_fixes(path: Path, mosaic: np.ndarray, extent: list[float], queries: list[DemoQuery], fixes,
               title: str) -> Path:
    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    ax.imshow(mosaic, extent=extent, origin="upper", interpolation="bilinear")
    for q, f in zip(queries, fixes):
        if f is None:
            continue
        good = math.hypot(f.east_m - q.true_en[0], f.north_m - q.true_en[1]) <= 5.0
        colour = "#ffd400" if good else "#ff3b30"
        ax.plot([q.true_en[0], f.east_m], [q.true_en[1], f.north_m], "-", color="white", lw=0.6, alpha=0.8)
        vals, vecs = np.linalg.eigh(np.asarray(f.covariance_en_m2, float))
        angle = math.degrees(math.atan2(vecs[1, 1], vecs[0, 1]))
        ax.add_patch(Ellipse((f.east_m, f.north_m), 4 * math.sqrt(max(vals[1], 1e-9)),
                             4 * math.sqrt(max(vals[0], 1e-9)), angle=angle, fill=False, ec=colour, lw=0.8,
                             alpha=0.9))
        ax.plot(f.east_m, f.north_m, "x", color=colour, ms=5, mew=1.4)
        ax.plot(*q.true_en, "o", color="#34c759", ms=3.5, mec="black", mew=0.4)
    ax.plot([], [], "o", color="#34c759", label="true position")
    ax.plot([], [], "x", color="#ffd400", label="fix within 5 m (2-sigma ellipse)")
    ax.plot([], [], "x", color="#ff3b30", label="fix off by more than 5 m")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.85)
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def summarise(queries: list[DemoQuery], fixes, city: str, tiles: int, checkpoint: str,
              settings: PipelineSettings = PipelineSettings()) -> DemoReport:
    """The demo's figures (definitions in the module docstring); "published" = what the node's gate
    (:func:`~unifygeo_ros.localization.pipeline.gate_fix` with ``settings``, the node's defaults) lets out."""
    ok = [(q, f) for q, f in zip(queries, fixes) if f is not None]
    if not ok:
        raise DataFormatError("the demo localized no panorama")
    err = np.array([math.hypot(f.east_m - q.true_en[0], f.north_m - q.true_en[1]) for q, f in ok])
    heading_err = np.array([float(geo.angle_diff_deg(f.heading_deg, 0.0)) for _, f in ok])  # north-aligned panos
    err_en = np.array([[f.east_m - q.true_en[0], f.north_m - q.true_en[1]] for q, f in ok])
    cov = np.array([np.asarray(f.covariance_en_m2, float) for _, f in ok])
    d2 = nees(err_en, cov)
    above = np.array([not gate_fix(f, settings.min_score, settings.max_protection_level_m)[0] for _, f in ok])
    trust = trust_report(err_en, cov, np.array([f.protection_level_m for _, f in ok]), above)
    r1 = np.array([bool(f.candidate_tile_ids) and f.candidate_tile_ids[0] == q.positive for q, f in ok])
    rr1 = np.array([f.tile_id == q.positive for q, f in ok])
    rr1_evidence = np.array([(f.evidence_tile_id or f.tile_id) == q.positive for q, f in ok])
    stages = ok[0][1].timings_ms.keys()
    latency = {k: {"p50": float(np.percentile([f.timings_ms[k] for _, f in ok], 50)),
                   "p95": float(np.percentile([f.timings_ms[k] for _, f in ok], 95))} for k in stages}
    within5 = err <= 5.0
    return DemoReport(
        city=city, tiles=tiles, queries=len(ok), checkpoint=checkpoint, median_error_m=float(np.median(err)),
        mean_error_m=float(err.mean()), recall_1m=float((err <= 1).mean()), recall_5m=float(within5.mean()),
        recall_10m=float((err <= 10).mean()), retrieval_r1=float(r1.mean()), rerank_r1=float(rr1.mean()),
        rerank_r1_evidence=float(rr1_evidence.mean()),
        median_heading_error_deg=float(np.median(heading_err)),
        inside_1sigma=float((d2 <= CHI2_1SIGMA).mean()), inside_2sigma=float((d2 <= CHI2_2SIGMA).mean()),
        share_accepted=float(above.mean()),
        recall_5m_accepted=float(within5[above].mean()) if above.any() else float("nan"),
        recall_5m_withheld=float(within5[~above].mean()) if (~above).any() else float("nan"),
        trust=trust.to_json(), latency_ms=latency)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _num(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def format_report(r: DemoReport) -> str:
    lat, t = r.latency_ms, r.trust
    lines = [
        f"UnifyGeo demo: {r.queries} panoramas of {r.city} ({r.tiles} aerial tiles), model {r.checkpoint}",
        f"  position    median {r.median_error_m:.2f} m, mean {r.mean_error_m:.2f} m; within 1 m {r.recall_1m:.1%}, "
        f"5 m {r.recall_5m:.1%}, 10 m {r.recall_10m:.1%}",
        f"  retrieval   R@1 {r.retrieval_r1:.1%} (descriptors), {r.rerank_r1:.1%} after re-ranking "
        f"({r.rerank_r1_evidence:.1%} for the tile whose map gave the fix, before the tile assignment)",
        f"  heading     median error {r.median_heading_error_deg:.1f} deg",
        f"  covariance  truth inside 1-sigma ellipse {r.inside_1sigma:.1%} (Gaussian: 39.3 %), "
        f"2-sigma {r.inside_2sigma:.1%} (86.5 %), all fixes",
        f"  integrity   the node's gate accepts {r.share_accepted:.0%} (within 5 m {r.recall_5m_accepted:.1%}; of the "
        f"withheld {r.recall_5m_withheld:.1%}); accepted: 1-sigma {_pct(t['inside_1sigma'])}, 2-sigma "
        f"{_pct(t['inside_2sigma'])}, mean NEES {_num(t['nees_mean'])}, median PL {_num(t['protection_level_median_m'])} m,"
        f" HMI {t['hmi']} ({_pct(t['hmi_rate'])})",
        "  latency     per fix p50 {:.0f} ms, p95 {:.0f} ms  (".format(lat["total"]["p50"], lat["total"]["p95"])
        + ", ".join(f"{k} {v['p50']:.0f}" for k, v in lat.items() if k != "total") + " ms p50)",
    ]
    if r.picture:
        lines.append(f"  picture     {r.picture}")
    if r.replay:
        pe = r.replay["position_error"]
        fmt = (lambda v: "n/a" if v is None else f"{v:.1f} m")  # noqa: E731
        lines.append(f"  replay      {r.replay['scored']}/{r.replay['frames']} frames of a recorded drive scored: "
                     f"median {fmt(pe.get('median_m'))}, RMSE {fmt(pe.get('rmse_m'))}, "
                     f"{100 * r.replay['frames_without_fix']:.0f} % without fix -> {r.replay['outputs']}")
        t = r.replay.get("tracked")
        if t:
            pe, tk = t["position_error"], t["tracking"] or {}
            conv = tk.get("converged_after_s")
            lines.append(f"  tracking    the same drive with the sequential localizer (wheel odometry + IMU): "
                         f"{t['scored']}/{t['frames']} frames published, median {fmt(pe.get('median_m'))}, RMSE "
                         f"{fmt(pe.get('rmse_m'))}, converged after "
                         f"{'never' if conv is None else f'{conv:.1f} s'} -> {t['outputs']}")
    return "\n".join(lines)


def run_demo(checkpoint: str | Path | None = None, out: str | Path = "out/demo", cache: str | Path | None = None,
             seed: int = DEMO_SEED, size_m: float = 300.0, panos: int = 100, device: str = "auto",
             batch_size: int = 32, replay_frames: int = 120) -> DemoReport:
    """The whole chain (see the module docstring); returns the report and writes the picture and the JSON."""
    out = Path(out)
    ckpt = Path(checkpoint) if checkpoint else find_resource(DEMO_CHECKPOINT_REL)
    if ckpt is None or not ckpt.exists():
        raise CheckpointError(f"demo model not found ({ckpt or DEMO_CHECKPOINT_REL}): pass --checkpoint DIR (a "
                              "`unifygeo train` checkpoint folder)")
    handle = load_model(ckpt, device=device)
    _progress(f"model: {ckpt} ({handle.identity[:12]}, {handle.device}, {str(handle.dtype).replace('torch.', '')})")
    city_dir = ensure_city(out / "data", seed, size_m, panos)
    index = ensure_index(handle, city_dir, Path(cache) if cache else out / "index", batch_size)
    loc = Localizer(index, handle)
    queries = demo_queries(city_dir, index.origin, panos)
    fixes = []
    loc.localize(load_image(queries[0].path))  # warm-up (first-call allocations are not latency)
    t0 = time.perf_counter()
    for q in queries:
        fixes.append(loc.localize(load_image(q.path)))
    _progress(f"localized {len(queries)} panoramas in {time.perf_counter() - t0:.1f} s")
    report = summarise(queries, fixes, city_dir.name, len(index), str(ckpt))
    mosaic, extent = aerial_mosaic(city_dir, index)
    title = (f"{city_dir.name}: {report.queries} fixes, median {report.median_error_m:.1f} m, "
             f"<= 5 m {report.recall_5m:.0%}, R@1 {report.rerank_r1:.0%}")
    report.picture = str(plot_fixes(out / "demo_fixes.png", mosaic, extent, queries, fixes, title))
    if replay_frames:
        report.replay = replay_drive(loc, city_dir, out, replay_frames)
    (out / "demo_report.json").write_text(report_json(report))
    return report


def report_json(report: DemoReport) -> str:
    """The report as strict JSON: figures that do not exist (NaN, e.g. no fix above the threshold) are null."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(report.__dict__), indent=1, allow_nan=False)


def replay_drive(loc, city_dir: Path, out: Path, frames: int) -> dict:
    """Record a drive through the demo city as a rosbag2 (MCAP) and replay it with the same localizer, in the
    node's two modes: single frames, and tracking (the sequential localizer on the bag's wheel odometry and IMU).

    The panoramas are north-aligned (what ``heading_source: imu`` makes of a vehicle's panorama before the
    network sees it), so known-orientation models replay too; ground truth is ``/gt/geopose`` (the camera pose).
    """
    bag = out / "drive"
    if bag.exists():  # the previous demo's recording is replaced; anything else there is the user's
        meta = bag / "metadata.yaml"
        ours = bag.is_dir() and meta.is_file() and "unifygeo.bag_synth" in meta.read_text(errors="replace") and all(
            p.name == "metadata.yaml" or p.suffix == ".mcap" for p in bag.iterdir())
        if not ours:
            raise UnifyGeoError(f"{bag} exists and is not a recording of a previous demo: not replaced (move it, or "
                                "choose another --out)")
        shutil.rmtree(bag)
    rec = synth_bag(SynthBagConfig(data=str(city_dir), out=str(bag), storage="mcap", frames=frames, seed=1,
                                   north_aligned=True))
    _progress(f"recorded {rec.frames} panoramas over {rec.route_length_m:.0f} m into {rec.bag}; replaying")
    runs = {}
    for mode, folder in (("single", "replay"), ("tracking", "replay_track")):  # the node's two modes, same drive
        rep = replay(ReplayConfig(bag=str(rec.bag), index=None, out=str(out / folder), image_topic=rec.image_topic,
                                  gt_topic=GEOPOSE_TOPIC, pipeline=PipelineSettings(mode=mode),
                                  map_dir=str(city_dir)),
                     localizer=loc, origin=loc.index.origin)
        runs[mode] = {"outputs": str(out / folder), "frames": rep.frames, "scored": rep.count,
                      "frames_without_fix": rep.frames_without_fix, "position_error": rep.position_error,
                      "heading_error": rep.heading_error, "covariance": rep.covariance, "tracking": rep.tracking}
    return {"bag": str(rec.bag), **runs["single"], "tracked": runs["tracking"]}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the embedded demo model, models/demo)")
    parser.add_argument("--out", default="out/demo", help="output folder (city, index cache, picture, report)")
    parser.add_argument("--cache", default=None, help="index cache folder (default OUT/index)")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="demo city seed (held out of training)")
    parser.add_argument("--size-m", type=float, default=300.0, help="demo city side in metres")
    parser.add_argument("--panos", type=int, default=100, help="panoramas to localize")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=32, help="index build batch size")
    parser.add_argument("--replay-frames", type=int, default=120,
                        help="panoramas of the recorded drive replayed after the demo (0: skip the replay)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    report = run_demo(args.checkpoint, args.out, args.cache, args.seed, args.size_m, args.panos, args.device,
                      args.batch_size, args.replay_frames)
    print(report_json(report) if args.json else format_report(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from unifygeo_ros.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
