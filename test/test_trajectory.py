"""Trajectory association, interpolation, TUM files and error statistics, on hand-made data."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unifygeo_ros import geo
from unifygeo_ros.rosbag import trajectory as tr

S = 1_000_000_000  # ns per second


def _gt():
    # 0..4 s, 1 Hz, moving 10 m/s east then turning north; yaw crosses the +-180 wrap between 3 s and 4 s
    t = np.arange(5) * S + 1_700_000_000 * S
    e = np.array([0.0, 10.0, 20.0, 20.0, 20.0])
    n = np.array([0.0, 0.0, 0.0, 10.0, 20.0])
    yaw = np.array([0.0, 0.0, 90.0, 170.0, -170.0])
    return tr.make_trajectory(t, e, n, yaw)


def test_association_interpolates_linearly_between_bracketing_samples():
    gt = _gt()
    t0 = int(gt.t_ns[0])
    a = tr.associate(gt, [t0 + S // 2, t0 + int(2.25 * S)], max_gap_s=0.6)
    assert a.valid.tolist() == [True, True]
    np.testing.assert_allclose(a.east_m, [5.0, 20.0])
    np.testing.assert_allclose(a.north_m, [0.0, 2.5])
    np.testing.assert_allclose(a.yaw_deg, [0.0, 110.0])


def test_association_at_a_gt_stamp_returns_that_sample_exactly():
    gt = _gt()
    a = tr.associate(gt, gt.t_ns, max_gap_s=0.0)
    assert a.valid.all()
    np.testing.assert_array_equal(a.east_m, gt.east_m)
    np.testing.assert_array_equal(a.north_m, gt.north_m)
    np.testing.assert_allclose(a.gap_s, 0.0)


def test_yaw_interpolation_takes_the_short_way_across_the_wrap():
    gt = _gt()
    a = tr.associate(gt, [int(gt.t_ns[3]) + S // 2], max_gap_s=1.0)
    # 170 -> -170 (= 190): halfway is 180 (wrapped to -180), not 0
    assert geo.angle_diff_deg(a.yaw_deg[0], 180.0) < 1e-9
    assert tr.interpolate_yaw_deg(-170.0, 170.0, 0.25) == pytest.approx(-175.0)


def test_association_rejects_queries_far_from_gt_and_outside_its_span():
    gt = tr.make_trajectory([0, 1 * S, 5 * S, 6 * S], [0, 1, 5, 6], [0, 0, 0, 0])
    q = [int(0.5 * S), int(3 * S), int(1.4 * S), -S // 10, int(6.05 * S)]
    a = tr.associate(gt, q, max_gap_s=0.5)
    # 0.5 s: gap 0.5 ok; 3 s: nearest GT 2 s away; 1.4 s: 0.4 s ok; before/after the span: rejected
    assert a.valid.tolist() == [True, False, True, False, False]
    assert np.isnan(a.east_m[1]) and np.isinf(a.gap_s[3])
    assert a.east_m[2] == pytest.approx(1.4)  # 0.4 s into the 1 s -> 5 s segment, which goes 1 m -> 5 m


def test_gt_without_orientation_gives_nan_yaw_and_unsorted_input_is_sorted():
    gt = tr.make_trajectory([2 * S, 0, S], [2.0, 0.0, 1.0], [0.0, 0.0, 0.0])
    assert gt.t_ns.tolist() == [0, S, 2 * S]
    a = tr.associate(gt, [S // 2], max_gap_s=1.0)
    assert a.valid[0] and a.east_m[0] == pytest.approx(0.5) and np.isnan(a.yaw_deg[0])


def test_tum_round_trip_keeps_nanosecond_stamps_and_yaw(tmp_path):
    t = [1_700_000_000_123_456_789, 1_700_000_000_223_456_789]
    p = tr.write_tum(tmp_path / "x.tum", t, [1.5, -2.25], [3.0, 4.0], [90.0, -135.0])
    lines = [ln for ln in p.read_text().splitlines() if not ln.startswith("#")]
    assert lines[0].split()[0] == "1700000000.123456789"
    assert all(len(ln.split()) == 8 for ln in lines)
    back = tr.read_tum(p)
    np.testing.assert_allclose(back.xyz[:, :2], [[1.5, 3.0], [-2.25, 4.0]])
    np.testing.assert_allclose(back.yaw_deg, [90.0, -135.0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(back.quat_xyzw, axis=1), 1.0)
    # yaw 90 deg (north, REP-103) is the compass heading 0
    assert geo.yaw_to_heading_deg(back.yaw_deg[0]) == pytest.approx(0.0, abs=1e-6)


def test_tum_reader_rejects_malformed_lines(tmp_path):
    p = tmp_path / "bad.tum"
    p.write_text("1.0 2 3 4 0 0 0\n")
    with pytest.raises(ValueError, match="expected 8 fields"):
        tr.read_tum(p)


def test_error_stats_match_an_independent_computation():
    rng = np.random.default_rng(0)
    e = np.abs(rng.normal(0, 4, 200))
    s = tr.error_stats(e)
    assert s["count"] == 200
    assert s["rmse_m"] == pytest.approx(math.sqrt(sum(x * x for x in e) / len(e)))
    assert s["mean_m"] == pytest.approx(sum(e) / len(e))
    assert s["median_m"] == pytest.approx(sorted(e)[99] / 2 + sorted(e)[100] / 2)
    assert s["recall"]["3m"] == pytest.approx(sum(x <= 3 for x in e) / 200)
    assert s["recall"]["1m"] <= s["recall"]["3m"] <= s["recall"]["5m"] <= s["recall"]["10m"]
    assert tr.error_stats([])["rmse_m"] is None


def test_nees_and_ellipse_shares_of_a_consistent_gaussian_match_chi_square_2():
    rng = np.random.default_rng(1)
    cov = np.array([[4.0, 1.5], [1.5, 2.0]])
    err = rng.multivariate_normal([0, 0], cov, size=20000)
    s = tr.covariance_stats(err, np.broadcast_to(cov, (err.shape[0], 2, 2)))
    assert s["nees_mean"] == pytest.approx(2.0, abs=0.06)
    assert s["inside_1sigma"] == pytest.approx(tr.EXPECTED_INSIDE_1SIGMA, abs=0.015)
    assert s["inside_2sigma"] == pytest.approx(tr.EXPECTED_INSIDE_2SIGMA, abs=0.015)
    # hand-checked NEES: e = (2, 0), C = diag(4, 1) -> 1; singular covariance -> NaN
    q = tr.nees_2d([[2.0, 0.0], [1.0, 1.0]], [np.diag([4.0, 1.0]), np.zeros((2, 2))])
    assert q[0] == pytest.approx(1.0) and np.isnan(q[1])


def test_heading_and_latency_stats():
    h = tr.heading_stats([10.0, 179.0, np.nan], [350.0, -179.0, 0.0])
    assert h["count"] == 2 and h["median_deg"] == pytest.approx(11.0) and h["mean_deg"] == pytest.approx(11.0)
    lat = tr.latency_stats([10.0, 20.0, 30.0, np.nan])
    assert lat["p50_ms"] == pytest.approx(20.0) and lat["count"] == 3
