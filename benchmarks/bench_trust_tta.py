"""Does a second look at a perturbed copy of the panorama tell a gross error from a good fix? (issue #15)

    python benchmarks/bench_trust_tta.py [--checkpoint models/demo] [--perturb roll5,gamma,crop]

The single-panorama availability target (>= 50 %) is limited by the model's ranking: bench_trust_ceiling.py finds
that no protection level accepts more than ~30 % of the cross-area panoramas before the first fix > 20 m off. A
right tile's fix should be stable under a small change of the input that keeps the scene (a few degrees of heading,
another exposure, a little less sky and ground), a wrong tile's confident fix less so. Per perturbation, each
panorama of bench_trust.py's three sets is localized again (the network runs twice) and the gate's ranking is
tried with the disagreement between the two fixes:

* ``PL``: the stored calibration's protection level of the original fix (the shipped gate's ranking; the ceiling);
* ``max PL``: the larger of the two fixes' protection levels;
* ``PL, agree <= D m``: the original's protection level, infinite when the two fixes are more than D m apart;
* ``PL + d``: the protection level plus the distance between the fixes.

Per set and ranking: the share accepted before the first fix more than ``--gross-m`` off (``zero_gross``) and before
their rate exceeds 1 %, and at the shipped 50 m limit the availability and gross errors. Writes
``<out>/trust_tta.json``. Figures only; nothing is asserted.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from bench_trust import cpu_model, gross_parser, set_fixes  # noqa: E402
from bench_trust_ceiling import ceiling, ceiling_figures, write_result  # noqa: E402
from unifygeo_ros.image.preprocess import roll_panorama  # noqa: E402
from unifygeo_ros.localization.posterior import load_calibration  # noqa: E402
from unifygeo_ros.offline import calibrate as C  # noqa: E402


def _roll(deg: float):
    return lambda img, i: roll_panorama(img, deg)[0]


def _gamma(g: float):
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g, 0, 255).astype(np.uint8)
    return lambda img, i: lut[img]


def _crop(share: float):
    def view(img, i):
        h, w = img.shape[:2]
        cut = int(round(h * share / 2))
        return cv2.resize(img[cut:h - cut], (w, h), interpolation=cv2.INTER_AREA)
    return view


PERTURBATIONS = {"roll5": _roll(5.0), "roll-5": _roll(-5.0), "gamma": _gamma(0.7), "crop": _crop(0.1)}
AGREE_M = (3.0, 5.0, 10.0)


def rankings(pl: np.ndarray, pl2: np.ndarray, d: np.ndarray) -> dict[str, np.ndarray]:
    out = {"PL": pl, "max PL": np.maximum(pl, pl2), "PL + d": pl + d}
    for a in AGREE_M:
        out[f"PL, agree <= {a:g} m"] = np.where(d <= a, pl, np.inf)
    return out


def main(argv=None) -> int:
    ap = gross_parser(__doc__)
    ap.add_argument("--perturb", default="roll5,gamma,crop", help=f"comma-separated, of {sorted(PERTURBATIONS)}")
    args = ap.parse_args(argv)
    t_start = time.time()
    handle = cpu_model(args.checkpoint)
    cal = load_calibration(args.checkpoint)
    work = Path(args.data) / "_calib"
    result = {"checkpoint": args.checkpoint, "gross_m": args.gross_m, "sets": {}}
    for set_name, cities, base, e, pl in set_fixes(handle, args):
        fix_en = np.array([q.evidence.fix_en_m for q in base])
        result["sets"][set_name] = {"panoramas": len(base), "perturbations": {}}
        print(f"\n{set_name} ({len(base)} panoramas): zero gross / gross <= 1 % / at 50 m: accepted % (gross)")
        for name in args.perturb.split(","):
            other = C.collect(handle, cities, work, progress=False, view=PERTURBATIONS[name])
            _, _, pl2 = C.posterior_figures(other, cal)
            d = np.hypot(*(np.array([q.evidence.fix_en_m for q in other]) - fix_en).T)
            rows = {}
            for rname, score in rankings(pl, pl2, d).items():
                c = ceiling(e, score, args.gross_m)
                rows[rname] = c
                print(f"  {name:7s} {rname:20s} {ceiling_figures(c)}", flush=True)
            gross = e > args.gross_m
            rows["disagreement_m"] = {"good_median": float(np.median(d[~gross])) if (~gross).any() else None,
                                      "gross_median": float(np.median(d[gross])) if gross.any() else None}
            result["sets"][set_name]["perturbations"][name] = rows
    write_result(ROOT / args.out, "trust_tta.json", result, t_start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
