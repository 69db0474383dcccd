"""Does a second model's fix tell a gross error from a good one? (issue #15, single-panorama availability)

    python benchmarks/bench_trust_two_models.py [--checkpoint models/demo] [--second models/fov]

bench_trust_ceiling.py: ranked by any protection level, no gate accepts more than ~30 % of the cross-area panoramas
before the first fix > 20 m off; bench_trust_tta.py: a perturbed second look at the same panorama does not raise
that ceiling (a confident wrong tile is as stable under small changes as a right one). A second, differently trained
model (``models/fov``: trained on rigs of any field of view, its own descriptors, metric head and calibration) may err
elsewhere: each panorama of bench_trust.py's three sets is localized by both (each against its own index of the
city, each with its own stored calibration), and the gate's ranking is tried with their disagreement, as
bench_trust_tta.py does (``PL``, ``max PL``, ``PL + d``, ``PL, agree <= D m``). Writes
``<out>/trust_two_models.json``. Figures only; nothing is asserted.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from bench_trust import cpu_model, gross_parser, set_fixes  # noqa: E402
from bench_trust_ceiling import ceiling, ceiling_figures, write_result  # noqa: E402
from bench_trust_tta import rankings  # noqa: E402
from unifygeo_ros.localization.posterior import load_calibration  # noqa: E402
from unifygeo_ros.offline import calibrate as C  # noqa: E402


def main(argv=None) -> int:
    ap = gross_parser(__doc__)
    ap.add_argument("--second", default="models/fov", help="the second checkpoint (its own stored calibration)")
    args = ap.parse_args(argv)
    t_start = time.time()
    handle, second = cpu_model(args.checkpoint), cpu_model(args.second)
    cal2 = load_calibration(args.second)
    work = Path(args.data) / "_calib"
    result = {"checkpoint": args.checkpoint, "second": args.second, "gross_m": args.gross_m, "sets": {}}
    for set_name, cities, base, e, pl in set_fixes(handle, args):
        fix_en = np.array([q.evidence.fix_en_m for q in base])
        other = C.collect(second, cities, work, progress=False, calibration=cal2)
        err2, _, pl2 = C.posterior_figures(other, cal2)
        e2 = np.hypot(err2[:, 0], err2[:, 1])
        d = np.hypot(*(np.array([q.evidence.fix_en_m for q in other]) - fix_en).T)
        gross, gross2 = e > args.gross_m, e2 > args.gross_m
        rows = {"both_gross": int(np.sum(gross & gross2)), "first_gross": int(gross.sum()),
                "second_gross": int(gross2.sum()),
                "disagreement_m": {"good_median": float(np.median(d[~gross])) if (~gross).any() else None,
                                   "gross_median": float(np.median(d[gross])) if gross.any() else None},
                "second_alone": ceiling(e2, pl2, args.gross_m)}
        print(f"\n{set_name} ({len(base)} panoramas): gross {gross.sum()} / {gross2.sum()} (first / second model), "
              f"both {rows['both_gross']}; zero gross / gross <= 1 % / at 50 m: accepted % (gross)")
        print(f"  {'second model alone':28s} {ceiling_figures(rows['second_alone'])}", flush=True)
        for rname, score in rankings(pl, pl2, d).items():
            rows[rname] = ceiling(e, score, args.gross_m)
            print(f"  {rname:28s} {ceiling_figures(rows[rname])}", flush=True)
        result["sets"][set_name] = {"panoramas": len(base), **rows}
    write_result(ROOT / args.out, "trust_two_models.json", result, t_start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
