"""``unifygeo localize``: one fix per panorama, printed or as JSON, with the node's integrity gate applied, and
with ``--truth FILE.csv`` scored against the panoramas' true positions.

Each JSON object is :meth:`Fix.to_json <unifygeo_ros.localization.fix.Fix.to_json>` plus ``accepted`` (the node's
gate, :func:`~unifygeo_ros.localization.pipeline.gate_fix`, with the node's default parameters), ``withheld_reason``
and ``withheld_message`` ("" when accepted); ``yaw_deg`` there is the ENU yaw (0 = east), ``compass_heading_deg``
the compass heading, ``heading_deg`` a deprecated alias of ``yaw_deg``. With ``--truth`` each object also has
``error_m`` (and ``heading_error_deg`` when the truth has ``yaw_deg`` and the model estimated the heading), and
a summary follows the fixes (on stderr with ``--json``, so stdout stays one JSON list):
:mod:`unifygeo_ros.offline.truth_scoring`.
"""
from __future__ import annotations

import argparse
import json
import sys

from unifygeo_ros.data.truth_csv import TruthRow
from unifygeo_ros.errors import ImageError, UnifyGeoError
from unifygeo_ros.image.preprocess import load_image
from unifygeo_ros.image.lens import parse_distortion
from unifygeo_ros.image.rig import RigSettings
from unifygeo_ros.image.stitch import check_hfov, photo_to_panorama
from unifygeo_ros.localization.fix import PRIOR_MAX_M, Fix, Prior
from unifygeo_ros.localization.localizer import Localizer
from unifygeo_ros.localization.pipeline import PipelineSettings, gate_fix
from unifygeo_ros.model.backends import add_backend_arguments, backend_from_args
from unifygeo_ros.offline.truth_scoring import FixScore, load_truth_for, score_fix, summarize


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="equirectangular panoramas (JPEG/PNG), or pinhole photos with --hfov")
    parser.add_argument("--index", required=True, metavar="DIR", help="aerial index folder (unifygeo index build)")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the one the index records)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--prior", default=None, metavar="E,N,SIGMA",
                        help="position prior in the index's ENU frame: east_m,north_m,sigma_m")
    parser.add_argument("--heading", type=float, default=None, metavar="DEG",
                        help="compass heading of the panoramas' centre column (0 = north, clockwise), for models "
                             "trained with known orientation; omitted: the panoramas are north-aligned")
    parser.add_argument("--truth", default=None, metavar="FILE.csv",
                        help="score the fixes against the panoramas' true positions: a CSV with "
                             "panorama,latitude,longitude[,yaw_deg] (panorama = the image's file name); prints "
                             "each error_m and a summary (unifygeo synth writes <City>/map/panoramas.csv)")
    parser.add_argument("--hfov", type=float, default=None, metavar="DEG",
                        help="the images are pinhole photos (square pixels, principal point at the centre) with this "
                             "horizontal field of view: each is stitched as the node's input_mode cameras stitches a "
                             "front camera (cameras.panorama_width 512) and --heading is the camera's compass "
                             "heading; use a limited-field-of-view model (models/fov)")
    parser.add_argument("--distortion", default=None, metavar="MODEL:c1,c2,...",
                        help="with --hfov: the photos' lens distortion as CameraInfo states it (plumb_bob, "
                             "rational_polynomial or equidistant and its D, e.g. plumb_bob:-0.3,0.1,0,0,0)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image (a JSON list)")
    add_backend_arguments(parser)


def _format_fix(name: str, fix: Fix) -> str:
    se, sn = fix.std_en_m
    return (f"{name}: lat {fix.latitude_deg:.7f} lon {fix.longitude_deg:.7f}  "
            f"E {fix.east_m:.2f} N {fix.north_m:.2f} m (+-{se:.1f}/{sn:.1f} m)  "
            f"heading {fix.heading_deg:.1f} deg (yaw {fix.yaw_deg:.1f}, +-{fix.heading_std_deg:.0f})  "
            f"score {fix.score:.2f}  PL {fix.protection_level_m:.1f} m  tile {fix.tile_id} "
            f"(rank {fix.tile_rank_before_rerank}->1)"
            + ("  prior" if fix.used_prior else "  prior rejected" if fix.prior_rejected else "")
            + f"  {fix.timings_ms['total']:.0f} ms")


def _parse_prior(text: str | None) -> Prior | None:
    if not text:
        return None
    try:
        e, n, s = (float(v) for v in text.split(","))
        return Prior(e, n, s)  # the one check of a prior: finite, |E|, |N| and sigma within PRIOR_MAX_M
    except ValueError:
        raise UnifyGeoError(f"--prior must be east_m,north_m,sigma_m with |east_m|, |north_m| <= {PRIOR_MAX_M:g} "
                            f"and 0 < sigma_m <= {PRIOR_MAX_M:g}, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    prior = _parse_prior(args.prior)
    if args.hfov is not None:
        check_hfov(args.hfov, "--hfov")  # before the model: fail fast
    elif args.distortion:
        raise UnifyGeoError("--distortion describes a pinhole photo's lens: use it with --hfov")
    lens = parse_distortion(args.distortion)
    truth = load_truth_for(args.images, args.truth) if args.truth else None  # before the model: fail fast
    settings = PipelineSettings()  # the node's gate with its default parameters
    loc = Localizer.from_paths(args.index, args.checkpoint, device=args.device, backend=backend_from_args(args),
                               aspect_tolerance=settings.aspect_tolerance)
    if not args.json:  # the frame of E/N and --prior, once (--json: `unifygeo index info` shows it)
        print(f"index origin: lat {loc.index.origin.lat0_deg:.7f} lon {loc.index.origin.lon0_deg:.7f} "
              "(E/N and --prior are metres east/north of it)")
    results, scores, accepted, failed = [], [], [], 0
    for k, path in enumerate(args.images):
        try:
            rgb = load_image(path)
            if args.hfov is not None:  # a pinhole photo: the node's one-camera rig panorama
                rgb = photo_to_panorama(rgb, args.hfov, RigSettings().panorama_width, path, lens)
            fix = loc.localize(rgb, prior, heading_deg=args.heading)
        except ImageError as exc:
            failed += 1
            print(f"unifygeo localize: error: {exc}", file=sys.stderr)
            results.append({"image": path, "error": str(exc)})
            continue
        obj, line, score = _report_fix(path, fix, settings, None if truth is None else truth[k], loc)
        results.append(obj)
        if score is not None:
            scores.append(score)
            accepted.append(obj["accepted"])
        if not args.json:
            print(line)
    if args.json:
        print(json.dumps(results, indent=1))
    if truth is not None:
        for line in summarize(args.truth, scores, accepted, failed).lines():
            print(line, file=sys.stderr if args.json else sys.stdout)
    return 1 if failed else 0


def _report_fix(path: str, fix: Fix, settings: PipelineSettings, truth: TruthRow | None,
                loc: Localizer) -> tuple[dict, str, FixScore | None]:
    """The JSON object, the printed line and the score of one fix: gated, and scored when ``truth`` is given."""
    reason, message = gate_fix(fix, settings.min_score, settings.max_protection_level_m)
    obj = {**fix.to_json(path), "accepted": not reason, "withheld_reason": reason, "withheld_message": message}
    line, score = _format_fix(path, fix), None
    if truth is not None:
        score = score_fix(fix, truth, loc.index.origin)
        obj.update(score.to_json())
        line += f"  error {score.error_m:.1f} m"
    return obj, line + ("" if not reason else f"  WITHHELD: {message}"), score
