"""Inference off the executor on the newest frame only; the prior; the outcome of every kind of frame; the loader."""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from unifygeo_ros.errors import ImageError, IndexFormatError, UnifyGeoError
from unifygeo_ros.localization.localizer import Prior
from unifygeo_ros.ros.params import NodeSettings
from unifygeo_ros.localization.pipeline import (Frame, LocalizationPipeline, PipelineStats, PriorSettings,
                                                PriorTracker, gate_fix)
from unifygeo_ros.ros.worker import LatestFrameWorker, Throttle, error_kind, load_pipeline

PANO = np.zeros((32, 64, 3), np.uint8)


@dataclass
class FakeFix:
    east_m: float = 10.0
    north_m: float = 20.0
    score: float = 0.9
    latitude_deg: float = 47.0
    longitude_deg: float = 8.0
    yaw_deg: float = 45.0
    heading_std_deg: float = 5.0
    covariance_en_m2: np.ndarray = field(default_factory=lambda: np.eye(2) * 4.0)
    prior_rejected: bool = False
    used_prior: bool = False
    protection_level_m: float = 6.0
    input_problem: str = ""


class ScriptedLocalizer:
    """Answers with the next scripted fix and records the priors it was given; optionally slow."""

    def __init__(self, fixes=None, delay_s: float = 0.0):
        self.fixes = list(fixes or [])
        self.delay_s = delay_s
        self.priors = []
        self.images = 0

    def localize(self, image, prior=None, heading_deg=None, heading_std_deg=5.0):
        self.images += 1
        self.priors.append(prior)
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.fixes.pop(0) if self.fixes else FakeFix()


def frame(t_s: float = 0.0, image=PANO) -> Frame:
    return Frame(stamp=t_s, stamp_s=t_s, decode=lambda: image if not callable(image) else image())


# ------------------------------------------------------------------------------------------------- worker


def test_worker_drops_stale_frames_and_processes_the_newest():
    gate = threading.Event()
    seen = []

    def handler(f):
        gate.wait(5)
        seen.append(f.stamp)

    w = LatestFrameWorker(handler).start()
    try:
        w.submit(frame(0))  # taken into work, blocks on the gate
        deadline = time.monotonic() + 2
        while not w.busy and time.monotonic() < deadline:
            time.sleep(0.001)
        t0 = time.perf_counter()
        replaced = [w.submit(frame(i)) for i in range(1, 11)]
        assert time.perf_counter() - t0 < 0.05  # submit never waits for the busy handler
        assert replaced == [False] + [True] * 9 and w.pending == 1
        gate.set()
        assert w.wait_idle(5)
    finally:
        w.stop()
    assert seen == [0, 10]  # frames 1..9 were stale: dropped, counted
    assert w.dropped == 9 and w.submitted == 11 and w.handled == 2


def test_worker_survives_handler_exceptions_and_reports_them():
    errors = []

    def handler(f):
        if f.stamp == 1:
            raise RuntimeError("boom")

    w = LatestFrameWorker(handler, on_exception=lambda f, e: errors.append((f.stamp, str(e)))).start()
    try:
        for i in range(3):
            w.submit(frame(i))
            assert w.wait_idle(5)
    finally:
        assert w.stop()
    assert errors == [(1, "boom")] and w.handled == 3


def test_flood_keeps_memory_flat_and_latency_one_inference():
    """Frames at ~200 Hz into a 20 ms network: at most one waiting frame, the rest dropped."""
    loc = ScriptedLocalizer(delay_s=0.02)
    pipe = LocalizationPipeline(loc, 0.5)
    w = LatestFrameWorker(pipe.process).start()
    try:
        for i in range(100):
            w.submit(frame(i * 0.005))
            assert w.pending <= 1
            time.sleep(0.005)
        assert w.wait_idle(5)
    finally:
        w.stop()
    assert w.dropped > 50 and loc.images == w.handled == 100 - w.dropped
    assert pipe.stats.counts["published"] == loc.images


# ------------------------------------------------------------------------------------------------ outcomes


def test_outcomes_published_withheld_bad_input_error():
    loc = ScriptedLocalizer([FakeFix(score=0.9), FakeFix(score=0.2)])
    pipe = LocalizationPipeline(loc, min_score=0.5)
    assert pipe.process(frame(0)).status == "published"
    low = pipe.process(frame(1))
    assert low.status == "withheld" and "below min_score" in low.message and low.fix.score == 0.2

    def bad():
        raise ImageError("image: truncated data: 10 B")

    out = pipe.process(frame(2, bad))
    assert out.status == "bad_input" and "truncated" in out.message

    class Broken:
        def localize(self, image, prior=None, heading_deg=None, heading_std_deg=5.0):
            raise RuntimeError("CUDA out of memory")

    pipe.localizer = Broken()
    err = pipe.process(frame(5))
    assert err.status == "error" and "CUDA out of memory" in err.message
    snap = pipe.stats.snapshot()
    assert (snap["processed"], snap["published"], snap["withheld"], snap["bad_input"], snap["error"]) == (4, 1, 1, 1, 1)
    assert snap["last_score"] == 0.2 and "CUDA" in snap["last_error"]
    assert snap["withheld_by_reason"] == {"low_score": 1} and low.reason == "low_score"


def test_non_finite_fixes_are_withheld():
    pipe = LocalizationPipeline(ScriptedLocalizer([FakeFix(latitude_deg=math.nan)]), 0.0)
    out = pipe.process(frame())
    assert out.status == "withheld" and out.reason == "not_finite"
    assert pipe.stats.snapshot()["withheld_by_reason"] == {"not_finite": 1}


# --------------------------------------------------------------------------------------------------- prior


def test_prior_follows_the_last_published_fix_and_grows_with_time():
    tracker = PriorTracker(PriorSettings(sigma_floor_m=5.0, growth_m_per_s=2.0))
    loc = ScriptedLocalizer([FakeFix(east_m=10, north_m=20, covariance_en_m2=np.diag([1.0, 49.0])), FakeFix()])
    pipe = LocalizationPipeline(loc, 0.5, tracker)
    pipe.process(frame(100.0))
    assert loc.priors[0] is None  # cold start: global search
    out = pipe.process(frame(103.0))
    p = loc.priors[1]
    assert isinstance(p, Prior) and (p.east_m, p.north_m) == (10, 20)
    assert p.sigma_m == pytest.approx(7.0 + 2.0 * 3.0)  # own 1-sigma (sqrt 49) + growth * age
    assert out.prior_sigma_m == p.sigma_m


def test_prior_resets_when_kidnapped_withheld_old_or_time_goes_back():
    s = PriorSettings(reset_after=2, max_age_s=10.0, max_sigma_m=100.0)
    t = PriorTracker(s)
    t.update(FakeFix(), True, 0.0)
    assert t.prior(1.0) == Prior(10.0, 20.0, 5.0 + 3.0 * 1.0)  # the fix, floor 5 m (own 2 m) + 3 m/s * 1 s
    # the localizer rejected the prior and the global fix was confident: the prior jumps there (kidnapped)
    t.update(FakeFix(east_m=500.0, prior_rejected=True), True, 2.0)
    assert t.prior(2.5).east_m == 500.0 and t.resets == 1 and "kidnapped" in t.last_reset_reason
    t.update(FakeFix(score=0.1), False, 3.0)
    assert t.active
    t.update(FakeFix(score=0.1), False, 4.0)  # reset_after consecutive withheld fixes
    assert not t.active and t.prior(5.0) is None and t.resets == 2
    t.update(FakeFix(), True, 10.0)
    assert t.prior(25.0) is None and "old" in t.last_reset_reason  # too old
    t.update(FakeFix(), True, 30.0)
    assert t.prior(10.0) is None and "backwards" in t.last_reset_reason  # bag restarted
    wide = PriorTracker(PriorSettings(sigma_floor_m=5.0, growth_m_per_s=3.0, max_sigma_m=20.0, max_age_s=100.0))
    wide.update(FakeFix(), True, 0.0)
    assert wide.prior(4.0) == Prior(10.0, 20.0, 17.0)  # 5 + 3 * 4 = 17 m
    assert wide.prior(6.0) is None and wide.active  # 23 m > max_sigma_m: global search, the fix is kept
    assert PriorTracker(PriorSettings(enabled=False)).prior(0.0) is None


def test_a_prior_beyond_its_bounds_is_refused_and_the_tracker_gives_none_instead():
    """Prior is the one check of a prior (``unifygeo localize --prior`` too): finite but huge east/north overflow the
    tile search's squared distances. A fix or a radius beyond the bounds gives the global search, never an error."""
    from unifygeo_ros.localization.fix import PRIOR_MAX_M

    for bad in ((1e308, 0.0, 10.0), (0.0, -1e308, 10.0), (0.0, 0.0, 1e308), (PRIOR_MAX_M * 1.01, 0.0, 10.0)):
        with pytest.raises(ValueError, match="within"):
            Prior(*bad)
    assert Prior(-PRIOR_MAX_M, PRIOR_MAX_M, PRIOR_MAX_M).sigma_m == PRIOR_MAX_M
    far = PriorTracker(PriorSettings())
    far.update(FakeFix(east_m=1e300), True, 0.0)
    assert far.prior(1.0) is None and far.active
    fast = PriorTracker(PriorSettings(growth_m_per_s=1e300, max_sigma_m=1e308))  # absurd node parameters
    fast.update(FakeFix(), True, 0.0)
    assert fast.prior(1.0) is None


def test_bad_input_leaves_the_prior_alone():
    t = PriorTracker(PriorSettings())
    t.update(FakeFix(), True, 0.0)
    t.update(None, False, 1.0)
    assert t.active and t.prior(2.0) == Prior(10.0, 20.0, 5.0 + 3.0 * 2.0)  # the fix of t = 0 s, unchanged


# ---------------------------------------------------------------------------------------------- helpers


def test_throttle_and_error_kinds():
    now = [0.0]
    th = Throttle(5.0, clock=lambda: now[0])
    assert th.ready("a") and not th.ready("a") and th.ready("b")
    now[0] = 5.1
    assert th.ready("a") and th.suppressed["a"] == 1
    assert error_kind("image: truncated data: 10 B for 4 x 4") == error_kind("image: truncated data: 99 B for 8 x 8")
    assert error_kind("image: unsupported encoding 'x'") != error_kind("image: zero size (0 x 0 px)")


def test_stats_rates_and_latency():
    now = [0.0]
    st = PipelineStats(clock=lambda: now[0])
    for i in range(21):
        now[0] = i * 0.1
        st.received()
        st.published(latency_ms=50.0 + i)
    snap = st.snapshot()
    assert snap["input_rate_hz"] == pytest.approx(10.5, rel=0.1) and snap["latency_ms_p50"] == pytest.approx(60.0)


# ----------------------------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def tiny_model_and_index(micro_checkpoint, other_micro_checkpoint, micro_index):
    """conftest's micro checkpoints {0: the index's model, 1: another model} and its index of 25 tiles."""
    return {0: micro_checkpoint, 1: other_micro_checkpoint}, micro_index


def test_load_pipeline_loads_once_and_localizes(tiny_model_and_index, vigor_city):
    from unifygeo_ros.localization.localizer import Localizer
    from unifygeo_ros.model.checkpoint import read_meta

    ckpts, ix = tiny_model_and_index
    s = NodeSettings.from_params({"checkpoint": str(ckpts[0]), "index": str(ix), "device": "cpu",
                                  "min_score": 0.0})
    pipe, info = load_pipeline(s)
    assert info.index_tiles == 25 and info.device == "cpu" and info.load_s > 0
    assert (info.checkpoint, info.index) == (str(ckpts[0]), str(ix))
    assert (info.index_origin_lat_deg, info.index_origin_lon_deg) == pytest.approx(vigor_city[1].origin, abs=1e-9)
    assert info.model_identity == read_meta(ckpts[0]).model_hash and len(info.model_identity) == 64
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, ::7] = (200, 40, 90)
    out = pipe.process(frame(0.0, image))
    # the pipeline's fix is the Localizer's for the same image, model and index
    ref = Localizer.from_paths(ix, ckpts[0], device="cpu").localize(image)
    reason, _ = gate_fix(ref, 0.0, s.max_protection_level_m)  # the node's gate decides, as for the Localizer's fix
    assert out.status == ("withheld" if reason else "published") and out.reason == reason
    assert out.fix.tile_id == ref.tile_id
    assert (out.fix.east_m, out.fix.north_m, out.fix.score) == pytest.approx((ref.east_m, ref.north_m, ref.score),
                                                                             abs=1e-9)


def test_load_pipeline_fails_with_one_clear_error(tiny_model_and_index, tmp_path):
    ckpts, ix = tiny_model_and_index
    with pytest.raises(UnifyGeoError, match="aerial index not found"):
        load_pipeline(NodeSettings.from_params({"checkpoint": str(ckpts[0]), "index": str(tmp_path / "nope")}))
    with pytest.raises(IndexFormatError, match="built with model"):
        load_pipeline(NodeSettings.from_params({"checkpoint": str(ckpts[1]), "index": str(ix), "device": "cpu"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="index.json is missing"):
        load_pipeline(NodeSettings.from_params({"checkpoint": str(ckpts[0]), "index": str(tmp_path / "empty")}))


@pytest.mark.parametrize("tolerance, width, accepted", [
    (0.05, 208, True), (0.05, 216, False),   # the default: 4 % off passes, 8 % off does not
    (0.10, 216, True), (0.10, 224, False),   # loosened: 8 % passes, 12 % does not
    (0.01, 204, False), (0.01, 201, True),   # tightened: 2 % off is refused
])
def test_aspect_tolerance_loosens_and_tightens_the_one_panorama_check(tiny_model_and_index, tolerance, width,
                                                                      accepted):
    """The node's aspect_tolerance reaches the one validation of the pipeline (in the Localizer), both ways, and
    a refusal names the configured tolerance."""
    ckpts, ix = tiny_model_and_index
    pipe, _ = load_pipeline(NodeSettings.from_params({"checkpoint": str(ckpts[0]), "index": str(ix),
                                                      "device": "cpu", "min_score": 0.0,
                                                      "aspect_tolerance": tolerance}))
    out = pipe.process(frame(0.0, np.zeros((100, width, 3), np.uint8)))
    if accepted:  # past the panorama check: localized (published or withheld by the integrity gate)
        assert out.status in ("published", "withheld") and out.fix is not None
    else:
        assert out.status == "bad_input" and f"tolerance {tolerance:.0%}" in out.message


def test_pipeline_refuses_non_uint8_panoramas(tiny_model_and_index):
    ckpts, ix = tiny_model_and_index
    pipe, _ = load_pipeline(NodeSettings.from_params({"checkpoint": str(ckpts[0]), "index": str(ix),
                                                      "device": "cpu", "min_score": 0.0}))
    out = pipe.process(frame(0.0, np.zeros((40, 80, 3), np.float32)))
    assert out.status == "bad_input" and "uint8" in out.message
