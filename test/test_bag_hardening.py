"""Issue #16, bags: replay never scores garbage. Ground truth that is not a position, ground truth that contradicts
itself, image stamps that repeat or go back, and MCAP chunks damaged inside (CRC) are each excluded, counted in
``metrics.json`` ``data_quality`` and said in one warning line (docs/REPLAY.md, "What is not scored")."""
from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from unifygeo_ros import cli, geo
from unifygeo_ros.localization.pipeline import PipelineSettings, PriorSettings
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.mcap_check import check_mcap, write_chunk_crcs
from unifygeo_ros.rosbag.replay import ReplayConfig, replay

S = 1_000_000_000
T0 = 1_704_067_200 * S
CAM, GT = "/cam/image_raw", "/gt/geopose"
IMG_PERIOD_S, GT_PERIOD_S, PHASE_S = 0.5, 0.1, 0.013  # camera stamps between GT stamps: replay interpolates
A, B = np.array([12.0, 20.0]), np.array([84.0, 74.0])  # a straight drive across the fixture city (ENU m)


@pytest.fixture(scope="module")
def localizer(micro_index):
    from unifygeo_ros.localization.localizer import Localizer

    return Localizer.from_paths(micro_index, device="cpu")


def _truth_en(t_s: float, duration_s: float) -> np.ndarray:
    return A + (B - A) * (t_s / duration_s)


def write_bag(path: Path, origin: geo.LocalENU, image_stamps_s: list[float], gt: list[tuple[float, float, float]],
              storage: str = "sqlite3", filler_bytes: int = 0) -> Path:
    """Images at ``image_stamps_s`` (header stamps; written in list order, log time increasing) and GeoPose GT
    ``(t_s, lat, lon)``, merged by log time. ``filler_bytes``: a large message on ``/filler`` after each image,
    so that an MCAP chunk (closed past 1 MiB) holds about one image each."""
    ts = bags.make_typestore()
    T = ts.types
    q = geo.yaw_to_quaternion_xyzw(30.0)
    quat = T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])
    rng = np.random.default_rng(3)
    events = [(t, 0, k, "gt") for k, (t, _, _) in enumerate(gt)]
    events += [(max(image_stamps_s[: j + 1]), 1, j, "img") for j in range(len(image_stamps_s))]  # log order
    events.sort()
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_img = w.add_connection(CAM, bags.IMAGE, typestore=ts)
        c_gt = w.add_connection(GT, bags.GEOPOSE_STAMPED, typestore=ts)
        c_fill = w.add_connection("/filler", bags.IMAGE, typestore=ts) if filler_bytes else None
        for log_s, _order, k, kind in events:
            log_ns = T0 + int(round(log_s * S)) + k  # distinct log times, in the order written
            if kind == "img":
                img = np.repeat(np.repeat(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8), 8, 0), 8, 1)
                stamp = T0 + int(round(image_stamps_s[k] * S))
                w.write(c_img, log_ns, ts.serialize_cdr(bags.rgb_to_image_msg(ts, img, stamp, "cam"), bags.IMAGE))
                if c_fill is not None:
                    side = int(math.sqrt(filler_bytes / 3))
                    big = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                    w.write(c_fill, log_ns, ts.serialize_cdr(bags.rgb_to_image_msg(ts, big, log_ns, "x"), bags.IMAGE))
                continue
            t_s, lat, lon = gt[k]
            msg = T[bags.GEOPOSE_STAMPED](
                header=bags.header(ts, T0 + int(round(t_s * S)), "map"),
                pose=T["geographic_msgs/msg/GeoPose"](position=T["geographic_msgs/msg/GeoPoint"](
                    latitude=float(lat), longitude=float(lon), altitude=0.0), orientation=quat))
            w.write(c_gt, log_ns, ts.serialize_cdr(msg, bags.GEOPOSE_STAMPED))
    return path


def drive(origin: geo.LocalENU, n_images: int) -> tuple[list[float], list[tuple[float, float, float]], float]:
    """(image stamps s, GT (t_s, lat, lon) at 10 Hz, duration s) of the straight drive."""
    img = [PHASE_S + j * IMG_PERIOD_S for j in range(n_images)]
    duration = img[-1] + 0.5
    gt = []
    for k in range(int(round(duration / GT_PERIOD_S)) + 1):
        t = k * GT_PERIOD_S
        lat, lon = origin.from_en(*_truth_en(t, duration))
        gt.append((t, float(lat), float(lon)))
    return img, gt, duration


def _cfg(bag: Path, index: Path, out: Path) -> ReplayConfig:
    return ReplayConfig(bag=str(bag), index=str(index), out=str(out), image_topic=CAM, gt_topic=GT, device="cpu",
                        plots=False, pipeline=PipelineSettings(min_score=0.0, max_protection_level_m=math.inf,
                                                               prior=PriorSettings(enabled=False)))


def _on_the_drive(out: Path, origin_city: geo.LocalENU, duration: float) -> float:
    """The largest distance of groundtruth.tum's points from the true drive at their stamps (m)."""
    gt = trajectory.read_tum(out / "groundtruth.tum")
    truth = np.array([_truth_en(t - T0 / S, duration) for t in gt.t_s]).reshape(-1, 2)
    return float(np.max(np.hypot(*(gt.xyz[:, :2] - truth).T))) if len(truth) else 0.0


# ------------------------------------------------------------------------------------------- ground truth
def test_nan_infinite_and_out_of_range_ground_truth_is_excluded_and_counted_never_scored(
        vigor_city, micro_index, localizer, tmp_path):
    origin = geo.LocalENU(*vigor_city[1].origin)
    img, gt, duration = drive(origin, 5)
    bad = {}
    for k, (t, lat, lon) in enumerate(gt):
        if abs(t - img[3]) < 0.65:  # no usable GT within 0.5 s of image 3: it cannot be scored
            bad[k] = (t, math.nan, lon)
    bad[5] = (gt[5][0], gt[5][1], math.inf)  # brackets image 1 (0.513 s): its neighbours still do
    bad[7] = (gt[7][0], 123.0, gt[7][2])
    n_nonfinite = len(bad) - 1
    gt = [bad.get(k, g) for k, g in enumerate(gt)]
    bag = write_bag(tmp_path / "bag", origin, img, gt)
    rep = replay(_cfg(bag, micro_index, tmp_path / "out"), localizer=localizer)
    assert rep.position_error["count"] == rep.count  # every scored pair has a finite error
    assert rep.frames == 5 and rep.count == 4 and rep.frames_without_gt == 1
    assert all(math.isfinite(v) for v in (rep.position_error["rmse_m"], rep.position_error["max_m"]))
    assert _on_the_drive(tmp_path / "out", origin, duration) < 1e-3
    dq = rep.data_quality
    assert dq["gt_excluded"]["non_finite"] == n_nonfinite and dq["gt_excluded"]["out_of_range"] == 1
    lines = [w for w in rep.warnings if w.startswith(f"GT on {GT}")]
    assert len(lines) == 1 and f"non_finite {n_nonfinite}" in lines[0] and "out_of_range 1" in lines[0]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["data_quality"] == dq


def test_conflicting_duplicate_ground_truth_leaves_the_frames_it_brackets_unscored(
        vigor_city, micro_index, localizer, tmp_path):
    """Two GT messages at t = 1.0 s 555 m apart (the wrong one first): the truth there is unknown, image 2
    (1.013 s, bracketed by 1.0 and 1.1 s) is not scored; an agreeing duplicate (2 cm) at 1.5 s is merged."""
    origin = geo.LocalENU(*vigor_city[1].origin)
    img, gt, duration = drive(origin, 5)
    k_conflict, k_same = 10, 15
    t, lat, lon = gt[k_conflict]
    wrong = origin.from_en(*(_truth_en(t, duration) + [555.0, 0.0]))
    same = origin.from_en(*(_truth_en(gt[k_same][0], duration) + [0.02, 0.0]))
    gt = gt[:k_conflict] + [(t, float(wrong[0]), float(wrong[1]))] + gt[k_conflict:]
    gt = gt + [(gt[k_same + 1][0], float(same[0]), float(same[1]))]
    bag = write_bag(tmp_path / "bag", origin, img, gt)
    out = tmp_path / "out"
    rep = replay(_cfg(bag, micro_index, out), localizer=localizer)
    assert _on_the_drive(out, origin, duration) < 1e-3  # no wild truth was interpolated
    assert rep.frames == 5 and rep.count == 4 and rep.frames_without_gt == 0
    dq = rep.data_quality
    assert dq["gt_excluded"]["conflicting_duplicate"] == 2 and dq["gt_duplicates_merged"] == 1
    assert dq["frames_not_scored"]["conflicting_gt"] == 1 and dq["gt_largest_conflict_m"] == pytest.approx(555, 0.01)
    with open(out / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[2]["error_m"] == "" and "GT contradicts itself" in rows[2]["note"]
    lines = [w for w in rep.warnings if "contradicting" in w]
    assert len(lines) == 1 and "555.0 m apart" in lines[0] and "1 frames around them not scored" in lines[0]


# ------------------------------------------------------------------------------------------- image stamps
def test_repeated_and_backward_image_stamps_are_dropped_counted_and_warned_once(
        vigor_city, micro_index, localizer, tmp_path):
    origin = geo.LocalENU(*vigor_city[1].origin)
    img, gt, _ = drive(origin, 4)
    stamps = [img[0], img[1], img[1], img[2], img[1] + 0.2, img[3]]  # a repeat, then one going back
    bag = write_bag(tmp_path / "bag", origin, stamps, gt)
    rep = replay(_cfg(bag, micro_index, tmp_path / "out"), localizer=localizer)
    assert rep.frames == 4 and rep.data_quality["images_dropped"] == {"duplicate_stamp": 1, "backward_stamp": 1}
    lines = [w for w in rep.warnings if "repeat or go back" in w]
    assert len(lines) == 1 and "1 images with the previous image's stamp, 1 earlier than it" in lines[0]
    t = trajectory.read_tum(tmp_path / "out" / "estimate.tum").t_s
    assert len(t) == rep.count == 4 and np.all(np.diff(t) > 0)


# ------------------------------------------------------------------------------------------------- MCAP
def _chunks(mcap: Path) -> list[tuple[int, int]]:
    """(offset of the chunk record, offset of its records data) of every top-level chunk."""
    data, off, out = mcap.read_bytes(), 8, []
    while off + 9 <= len(data) and data[off] != 0x02:
        op, n = struct.unpack_from("<BQ", data, off)
        if op == 0x06:
            (clen,) = struct.unpack_from("<I", data, off + 9 + 28)
            out.append((off, off + 9 + 32 + clen + 8))
        off += 9 + n
    return out


def _garbage(mcap: Path, chunk: int, at: int = 200, size: int = 4096) -> None:
    """``size`` random bytes written inside the records of chunk number ``chunk``."""
    _, data_off = _chunks(mcap)[chunk]
    with open(mcap, "r+b") as fh:
        fh.seek(data_off + at)
        fh.write(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())


def _mcap_bag(tmp_path: Path, origin: geo.LocalENU, crcs: bool) -> tuple[Path, Path]:
    img, gt, _ = drive(origin, 6)
    bag = write_bag(tmp_path / "bag", origin, img, gt, storage="mcap", filler_bytes=1_100_000)
    mcap = next(bag.glob("*.mcap"))
    if crcs:
        assert write_chunk_crcs(mcap) == len(_chunks(mcap))
    return bag, mcap


def test_chunk_crcs_written_for_a_rosbags_bag_are_the_ones_rosbags_verifies(vigor_city, tmp_path):
    bag, mcap = _mcap_bag(tmp_path, geo.LocalENU(*vigor_city[1].origin), crcs=False)
    before = check_mcap(mcap)
    assert before.chunks >= 6 and before.without_crc == before.chunks and not before.corrupt
    assert write_chunk_crcs(mcap) == before.chunks
    after = check_mcap(mcap)
    assert after.without_crc == 0 and not after.corrupt
    with AnyReader([bag], default_typestore=bags.make_typestore()) as r:  # rosbags checks a non-zero CRC
        assert sum(1 for _ in r.messages()) == sum(c.msgcount for c in r.connections)


def test_garbage_inside_a_crc_checked_chunk_skips_that_chunk_alone_with_one_warning(vigor_city, tmp_path):
    bag, mcap = _mcap_bag(tmp_path, geo.LocalENU(*vigor_city[1].origin), crcs=True)
    with bags.open_bag(bag, []) as r:
        total = {c.topic: c.msgcount for c in r.connections}
    _garbage(mcap, 2)
    check = check_mcap(mcap)
    assert [c.reason for c in check.corrupt] == ["CRC mismatch"] and check.corrupt[0].offset == _chunks(mcap)[2][0]
    lost = check.lost_by_topic()
    assert lost[CAM] >= 1 and lost["/filler"] >= 1
    warnings: list[str] = []
    with bags.open_bag(bag, warnings) as r:
        got: dict[str, int] = {}
        for c, _t, _m in bags.iter_messages(r, r.connections, warnings):
            got[c.topic] = got.get(c.topic, 0) + 1
    assert got == {t: total[t] - lost.get(t, 0) for t in total}  # every other chunk, after the bad one too
    assert len(warnings) == 1 and "1 of" in warnings[0] and "CRC mismatch" in warnings[0]
    assert f"{check.messages_lost} messages in them" in warnings[0] and "skipped, their messages lost" in warnings[0]
    with pytest.raises(bags.BagError, match="corrupt.*refused"):
        with bags.open_bag(bag, warnings, salvage=False):
            pass


@pytest.mark.parametrize("crcs", [True, False])
def test_replay_reports_damaged_or_unverifiable_mcap_chunks_in_metrics_and_summary(
        vigor_city, micro_index, tmp_path, capsys, crcs):
    bag, mcap = _mcap_bag(tmp_path, geo.LocalENU(*vigor_city[1].origin), crcs=crcs)
    if crcs:
        _garbage(mcap, 2)
    out = tmp_path / "out"
    rc = cli.main(["replay", str(bag), "--index", str(micro_index), "--image-topic", CAM, "--gt-topic", GT, "--out",
                   str(out), "--device", "cpu", "--min-score", "0", "--no-prior", "--no-plots", "--every", "2"])
    printed = capsys.readouterr().out
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    (mc,) = m["data_quality"]["mcap"]
    assert mc["chunks"] == len(_chunks(mcap))
    summary = [ln for ln in printed.splitlines() if ln.startswith("data quality:")]
    assert len(summary) == 1
    if crcs:
        assert mc["chunks_corrupt"] == 1 and mc["chunks_without_crc"] == 0 and mc["messages_lost"] >= 3
        assert "corrupt 1" in summary[0] and sum("CRC mismatch" in w for w in m["warnings"]) == 1
    else:
        assert mc["chunks_without_crc"] == mc["chunks"] and mc["chunks_corrupt"] == 0
        assert sum("carry no CRC" in w for w in m["warnings"]) == 1
        assert f"without CRC {mc['chunks']}" in summary[0]
    assert sum(ln.startswith("warning:") for ln in printed.splitlines()) == len(m["warnings"])


def test_bag_synth_writes_mcap_chunk_crcs_so_damage_inside_a_chunk_is_detected(tmp_path):
    from unifygeo_ros.rosbag.synth import SynthBagConfig, synth_bag

    city_dir = tmp_path / "City"
    city_dir.mkdir()
    (city_dir / "geo.json").write_text(json.dumps({
        "format": "unifygeo-city", "version": 1, "city": "City", "seed": 2026, "style": "mixed",
        "origin": {"lat_deg": 47.6, "lon_deg": -122.3}, "size_m": [300.0, 300.0], "tile_m": 70.0,
        "stride_m": 35.0, "tile_px": 320, "mpp": 0.21875, "pano_px": [512, 256], "camera_height_m": 2.0}))
    synth_bag(SynthBagConfig(data=str(city_dir), out=str(tmp_path / "bag"), storage="mcap", frames=3, rate_hz=2.0,
                             image_width=64, seed=3, sensors=False))
    mcap = next((tmp_path / "bag").glob("*.mcap"))
    check = check_mcap(mcap)
    assert check.chunks >= 1 and check.without_crc == 0 and not check.corrupt
    _garbage(mcap, 0, at=2000, size=64)
    assert [c.reason for c in check_mcap(mcap).corrupt] == ["CRC mismatch"]
