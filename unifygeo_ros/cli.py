"""The ``unifygeo`` command: one entry point, one subcommand per offline job.

Each subcommand lives in its own module exposing ``configure_parser(parser)`` and ``run(args) -> int``;
modules are imported only when their subcommand runs, so ``unifygeo synth`` never pays for importing torch.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from unifygeo_ros.errors import UnifyGeoError

#: subcommand -> (module, one-line help). Add a row to add a command.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("unifygeo_ros.info", "print versions, device, and whether ROS 2 / CUDA / faiss-GPU are available"),
    "synth": ("unifygeo_ros.data.synth", "render a synthetic city in the VIGOR on-disk layout"),
    "train": ("unifygeo_ros.offline.train", "train the UnifyGeo model (retrieval + metric localization + re-ranking)"),
    "eval": ("unifygeo_ros.offline.eval_cli",
             "evaluate a checkpoint on VIGOR-layout data: retrieval, metric, hierarchical"),
    "export": ("unifygeo_ros.offline.export_cli",
               "export a checkpoint's encoders to ONNX (onnxruntime backend), with a parity check against torch"),
    "index": ("unifygeo_ros.index.build", "build, merge or describe an aerial index (unifygeo index build|merge|info)"),
    "localize": ("unifygeo_ros.offline.localize_cli", "localize panoramas against an aerial index and print the fixes"),
    "calibrate": ("unifygeo_ros.offline.calibrate",
                  "fit the posterior's calibration (covariance, protection level) on training/benchmark cities"),
    "demo": ("unifygeo_ros.offline.demo", "run the whole chain on the embedded demo city: accuracy, latency, a picture"),
    "bag": ("unifygeo_ros.rosbag.synth_cli", "rosbag2 tools: record a synthetic drive through a city (unifygeo bag synth)"),
    "replay": ("unifygeo_ros.rosbag.replay_cli", "localize a rosbag2 recording and score it against its ground truth"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unifygeo",
        description="UnifyGeo cross-view geo-localization: data, training, evaluation, index, localization.",
    )
    from unifygeo_ros import __version__

    parser.add_argument("--version", action="version", version=f"unifygeo_ros {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        if not argv:
            parser.print_help()
            return 2
        parser.parse_args(argv)  # prints the error or --help/--version and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"unifygeo {name}", description=COMMANDS[name][1])
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UnifyGeoError as exc:  # bad input: one clear line, no traceback
        print(f"unifygeo {name}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, ArithmeticError, FileExistsError, NotADirectoryError) as exc:
        # a value no check caught (a flag given NaN or 0, an --out that is a file): still one line, the traceback
        # on request, so that the check can be added where it belongs
        if os.environ.get("UNIFYGEO_DEBUG"):
            raise
        print(f"unifygeo {name}: error: {type(exc).__name__}: {exc} (check the arguments; UNIFYGEO_DEBUG=1 shows "
              "where it failed)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
