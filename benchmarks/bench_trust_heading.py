"""Does the heading a wrong tile implies tell a gross error from a good fix? (issue #15)

    python benchmarks/bench_trust_heading.py [--checkpoint models/demo]

The single-panorama availability target (>= 50 %) is limited by the model's ranking: bench_trust_ceiling.py finds
that no protection level accepts more than ~30 % of the cross-area panoramas before the first fix > 20 m off. The
demo model is a known-orientation model: its panoramas arrive north-aligned and its metric head keeps only the
heading hypotheses within one bin of north (``model.heading_window`` 1). A wrong tile might match the panorama
best under another rotation; the right tile should not. Per panorama of bench_trust.py's three sets: the fix as the
node makes it, then the chosen tile evaluated again by the same network with every heading hypothesis
(``heading_window`` -1: the head was trained that way) and the heading read at the fix's cell (north-aligned:
should be 0). The gate's ranking is tried with fixes whose heading is more than X deg from north excluded.

Per set: the median |heading| of good fixes and of gross errors, and per X the share accepted before the first fix
more than ``--gross-m`` off (``zero_gross``), before their rate exceeds 1 %, and at the shipped 50 m limit. Writes
``<out>/trust_heading.json``. Figures only; nothing is asserted.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from bench_trust import cpu_model, gross_parser, set_fixes  # noqa: E402
from bench_trust_ceiling import ceiling, ceiling_figures, write_result  # noqa: E402
from unifygeo_ros.image.preprocess import load_image  # noqa: E402
from unifygeo_ros.index import store  # noqa: E402
from unifygeo_ros.localization.localizer import Localizer  # noqa: E402
from unifygeo_ros.localization.posterior import load_calibration  # noqa: E402
from unifygeo_ros.model.handle import load_model  # noqa: E402
from unifygeo_ros.offline import calibrate as C  # noqa: E402

LIMITS_DEG = (10.0, 15.0, 22.5, 30.0, 45.0)


def every_heading(handle) -> None:
    """Let the handle's metric head weigh every heading hypothesis (as in training), not only those near north."""
    import torch

    head = handle.model.metric
    angles = torch.arange(head.bins, dtype=torch.float32) * (2 * math.pi / head.bins)
    head.restricted = False
    head.hyp_index = torch.arange(head.bins)
    head.hyp_vectors = torch.stack([torch.sin(angles), torch.cos(angles)], 0)


def headings_at_fixes(handle, queries, cities: list[Path], work: Path, cal) -> np.ndarray:
    """|heading| (deg from north) the unrestricted head reads at each query's fix, on the fix's own tile."""
    from unifygeo_ros.model.metric_head import offset_to_cell
    import torch

    by_city: dict[str, list] = {}
    for q in queries:
        by_city.setdefault(q.city, []).append(q)
    out = []
    for city_dir in cities:
        index = store.load_index(C.index_dir_for(work, city_dir.name, handle.identity), device="cpu")
        loc = Localizer(index, handle, calibration=cal)
        for q in by_city[city_dir.name]:
            ev = q.evidence
            centre = ev.centres_en_m[ev.evidence_slot]
            row = int(np.argmin(np.hypot(*(index.en_m - centre).T)))
            _, maps = loc.localize_with_maps(load_image(city_dir / "panorama" / q.name), np.array([row]),
                                             global_search=False)
            vec = maps.heading_vectors_en[0]
            h, w = vec.shape[-2:]
            rc = offset_to_cell(torch.tensor(ev.fix_en_m - centre), float(maps.tile_m), (h, w)).numpy()
            i, j = int(np.clip(round(rc[0]), 0, h - 1)), int(np.clip(round(rc[1]), 0, w - 1))
            out.append(abs(math.degrees(math.atan2(vec[0, i, j], vec[1, i, j]))))
    return np.array(out)


def main(argv=None) -> int:
    args = gross_parser(__doc__).parse_args(argv)
    t_start = time.time()
    handle = cpu_model(args.checkpoint)
    free = load_model(args.checkpoint, device="cpu")
    every_heading(free)
    cal = load_calibration(args.checkpoint)
    result = {"checkpoint": args.checkpoint, "gross_m": args.gross_m, "sets": {}}
    for set_name, cities, queries, e, pl in set_fixes(handle, args):
        heading = headings_at_fixes(free, queries, cities, Path(args.data) / "_calib", cal)
        gross = e > args.gross_m
        row = {"panoramas": len(e), "gross": int(gross.sum()),
               "heading_median_good_deg": float(np.median(heading[~gross])),
               "heading_median_gross_deg": float(np.median(heading[gross])) if gross.any() else None,
               "share_beyond_30deg_good": float(np.mean(heading[~gross] > 30)),
               "share_beyond_30deg_gross": float(np.mean(heading[gross] > 30)) if gross.any() else None,
               "rankings": {"PL": ceiling(e, pl, args.gross_m)}}
        for lim in LIMITS_DEG:
            row["rankings"][f"PL, |heading| <= {lim:g} deg"] = ceiling(e, np.where(heading <= lim, pl, np.inf),
                                                                        args.gross_m)
        result["sets"][set_name] = row
        print(f"\n{set_name}: {len(e)} panoramas, {row['gross']} > {args.gross_m:g} m off; |heading| median good "
              f"{row['heading_median_good_deg']:.1f} deg, gross {row['heading_median_gross_deg'] or float('nan'):.1f}"
              f" deg; zero gross / gross <= 1 % / at 50 m: accepted % (gross)")
        for name, c in row["rankings"].items():
            print(f"  {name:26s} {ceiling_figures(c)}", flush=True)
    write_result(ROOT / args.out, "trust_heading.json", result, t_start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
