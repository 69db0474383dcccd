"""Does the published covariance mean something? Coverage of the 1-sigma / 2-sigma ellipses on held-out data.

    python benchmarks/bench_calibration.py [--checkpoint models/demo] [--data out/bench_data]

The Localizer's 2x2 covariance is the second moment of the chosen tile's probability map about its peak
(plus the cell's own variance): a statement about the position *given the tile*. This measures, on the
cross-area cities of bench_unified_vs_decoupled.py (written there, seeds never used in training), how often the
true position lies inside the 1-sigma and 2-sigma ellipses (Mahalanobis d^2 <= 1 and <= 4; a calibrated 2-D
Gaussian gives 39.3 % and 86.5 %) given the true tile (task-isolated metric localization). For the full
hierarchy, where a wrong tile makes the ellipse meaningless (which is why the score is the publish threshold),
``unifygeo demo`` reports the same coverage over its fixes. It also prints the covariance scale that would
calibrate the 1-sigma coverage given the tile (a diagnostic: the published covariance is calibrated as a whole by
``benchmarks/bench_trust.py`` / ``unifygeo calibrate``, ``calibration.json`` beside the checkpoint).
Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_unified_vs_decoupled import CROSS_AREA_SEEDS, city_name, prepare  # noqa: E402


def mahalanobis2(err: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """(N, 2) errors, (N, 2, 2) covariances -> (N,) squared Mahalanobis distances."""
    return np.einsum("ni,nij,nj->n", err, np.linalg.inv(cov), err)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="models/demo")
    ap.add_argument("--data", default="out/bench_data")
    args = ap.parse_args(argv)

    from unifygeo_ros.data.vigor import VigorDataset
    from unifygeo_ros.offline.evaluate import load_for_eval

    torch.set_num_threads(2)
    model, cfg, meta = load_for_eval(args.checkpoint, "cpu")
    root = Path(args.data)
    prepare(root, CROSS_AREA_SEEDS, int(cfg.model.aerial_px), int(cfg.model.ground_hw[1]))
    ds = VigorDataset(str(root), [city_name(s) for s in CROSS_AREA_SEEDS], split="cross", train=False,
                      ground_size_hw=tuple(cfg.model.ground_hw), aerial_px=int(cfg.model.aerial_px),
                      orientation=cfg.data.orientation, seed=0, aerial_height=bool(cfg.model.aerial_height))
    loader = torch.utils.data.DataLoader(ds, batch_size=32)
    tile_m = float(cfg.data.tile_m)
    d2 = []
    with torch.inference_mode():
        for b in loader:
            g, a = model.encode_ground(b["ground"]), model.encode_aerial(b["aerial"])
            m = model.localize(g, a)
            tile = (b["mpp"].float() * b["aerial"].shape[-1]).numpy()
            off = np.stack([m.peak_offset_en_m(float(t))[i].numpy() for i, t in enumerate(tile)])
            cov = np.stack([m.covariance_m2(float(t))[i].numpy() for i, t in enumerate(tile)])
            err = off - b["offset_en_m"].numpy()
            d2.append(mahalanobis2(err.astype(np.float64), cov.astype(np.float64)))
    d2 = np.concatenate(d2)
    report = {
        "checkpoint": str(args.checkpoint), "step": meta.step, "queries": int(d2.size), "tile_m": tile_m,
        "given_true_tile": {"inside_1sigma": float(np.mean(d2 <= 1.0)), "inside_2sigma": float(np.mean(d2 <= 4.0)),
                            "gaussian_expectation": {"inside_1sigma": 0.393, "inside_2sigma": 0.865},
                            # scale s with P(d2 / s <= 1) = 0.393: the median-like quantile of d2
                            "cov_scale_for_calibrated_1sigma": float(np.quantile(d2, 0.393))},
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
