"""``unifygeo export``: a checkpoint's encoders as ONNX graphs, checked against torch.

    unifygeo export --checkpoint CKPT --format onnx --out DIR

Writes ``ground.onnx``, ``aerial.onnx``, ``parity.npz`` and ``export.json`` (the checkpoint's identity, the graphs'
SHA-256; :mod:`unifygeo_ros.model.export`) and prints, per graph and output, the largest difference between
onnxruntime and torch over random batches of 1 and 3 inputs. ``--backend onnxruntime --export DIR`` of
``unifygeo localize`` / ``replay`` / ``eval`` (and the node's ``onnx_export``) load it; they refuse an export of
another model. Without ``--export`` they export into a cache folder on first use (docs/DEPLOYMENT.md).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from unifygeo_ros.model.export import DEFAULT_OPSET, MANIFEST, PARITY_ATOL, PARITY_BATCHES, export_onnx

FORMATS = ("onnx",)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="model checkpoint folder")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (the only format)")
    parser.add_argument("--out", required=True, metavar="DIR", help="export folder (created; an export there is "
                                                                    "replaced)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")


def run(args: argparse.Namespace) -> int:
    from unifygeo_ros.model.onnx_sessions import require_onnxruntime
    from unifygeo_ros.model.handle import load_model

    require_onnxruntime()
    handle = load_model(args.checkpoint, device="cpu")
    t0 = time.perf_counter()
    manifest = export_onnx(handle.model, handle.identity, args.out, Path(args.checkpoint).resolve().name,
                           opset=args.opset)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    print(f"exported {Path(args.checkpoint)} (model {handle.identity[:12]}) to {out} in {seconds:.1f} s "
          f"(opset {manifest.opset}, dynamic batch)")
    for name, spec in manifest.graphs.items():
        size_mb = (out / spec.file).stat().st_size / 2**20
        print(f"  {spec.file}: {spec.input} (B, {', '.join(map(str, spec.input_shape))}) -> "
              f"{', '.join(spec.outputs)}; {size_mb:.1f} MiB")
    batches = " and ".join(str(b) for b in PARITY_BATCHES)
    print(f"parity with torch (max |onnxruntime - torch| over random batches of {batches}; accepted "
          f"{PARITY_ATOL:g}):")
    for name, outputs in manifest.parity_max_abs.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.2g}" for k, v in outputs.items()))
    print(f"manifest: {out / MANIFEST}")
    return 0
