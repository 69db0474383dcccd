"""The posterior over the hierarchy: candidates' probabilities, covariance about the fix, protection level."""
import json
import math

import numpy as np
import pytest

from unifygeo_ros.errors import CheckpointError
from unifygeo_ros.localization.posterior import (CALIBRATION_FILE, Calibration, candidate_probabilities,
                                                 cell_offsets_en_m, hierarchy_posterior, load_calibration,
                                                 protection_level_m, save_calibration)

TILE = 40.0  # 4 x 4 cells of 10 m


def _peaked(r, c, hw=(4, 4), mass=1.0):
    m = np.full(hw, (1.0 - mass) / (hw[0] * hw[1] - 1))
    m[r, c] = mass
    return m


def test_cell_offsets_follow_the_maps_convention():
    off = cell_offsets_en_m((4, 4), TILE)
    assert off[0, 0].tolist() == [-15.0, 15.0]  # row 0 = north edge, col 0 = west edge
    assert off[3, 3].tolist() == [15.0, -15.0]


def test_one_certain_candidate_gives_the_cell_variance_and_a_cell_sized_protection_level():
    post = hierarchy_posterior(np.array([-15.0, 15.0]), np.zeros((1, 2)), np.array([TILE]), _peaked(0, 0)[None],
                               np.array([3.0]), Calibration())
    np.testing.assert_allclose(post.covariance_en_m2, np.eye(2) * 100.0 / 12.0, atol=1e-9)
    assert post.protection_level_m == pytest.approx(0.5 * math.hypot(10.0, 10.0))
    assert post.outside_probability == 0.0 and post.candidate_probabilities.tolist() == [1.0]


def test_a_far_candidate_widens_the_protection_level_not_the_modes_covariance():
    maps = np.stack([_peaked(0, 0), _peaked(0, 0)])
    centres = np.array([[0.0, 0.0], [300.0, 0.0]])  # the second candidate puts the camera 300 m east
    fix = np.array([-15.0, 15.0])
    agree = hierarchy_posterior(fix, centres, np.full(2, TILE), maps, np.array([10.0, -10.0]), Calibration())
    split = hierarchy_posterior(fix, centres, np.full(2, TILE), maps, np.array([0.0, 0.0]), Calibration(),
                                mixture=True)
    # equal scores: half the mass 300 m away - the bound must reach it; the fix's mode is unchanged
    assert split.protection_level_m == pytest.approx(300.0 + 0.5 * math.hypot(10, 10))
    np.testing.assert_allclose(split.covariance_en_m2, np.eye(2) * 100.0 / 12.0, atol=1e-9)
    assert agree.protection_level_m < 10.0
    # the whole mixture's second moment (not published) does carry the far place: half the mass 300 m east
    assert split.mixture_covariance_en_m2[0, 0] == pytest.approx(0.5 * 300.0 ** 2 + 100.0 / 12.0)
    assert split.mixture_covariance_en_m2[1, 1] == pytest.approx(100.0 / 12.0)
    assert agree.mixture_covariance_en_m2 is None  # only when asked for


def test_overlapping_candidates_that_disagree_widen_the_covariance():
    # two overlapping tiles (centres 5 m apart) both hold the fix; the second puts the camera 25 m east of it
    fix = np.array([-15.0, 15.0])
    maps = np.stack([_peaked(0, 0), _peaked(0, 2)])  # cell (0, 2) of a tile centred at (0, 0) is at (5, 15)
    centres = np.array([[0.0, 0.0], [5.0, 0.0]])  # -> (10, 15) for the second: 25 m east of the fix
    post = hierarchy_posterior(fix, centres, np.full(2, TILE), maps, np.zeros(2), Calibration())
    assert post.covariance_en_m2[0, 0] == pytest.approx(0.5 * 25.0 ** 2 + 100.0 / 12.0)
    assert post.covariance_en_m2[1, 1] == pytest.approx(100.0 / 12.0)
    assert post.protection_level_m == pytest.approx(25.0 + 0.5 * math.hypot(10, 10))


def test_calibration_temperatures_and_the_outside_mass():
    scores = np.array([2.0, 0.0])
    pi, pi0 = candidate_probabilities(scores, Calibration())
    assert pi0 == 0.0 and pi[0] == pytest.approx(1 / (1 + math.exp(-2)))
    pi, pi0 = candidate_probabilities(scores, Calibration(score_temperature=2.0, outside_logit=1.0))
    z = np.array([1.0, 0.0, 1.0])
    assert pi.tolist() == pytest.approx((np.exp(z) / np.exp(z).sum())[:2].tolist())
    assert pi0 == pytest.approx(math.exp(1) / np.exp(z).sum())
    # more than alpha outside: the fix cannot be bounded
    post = hierarchy_posterior(np.zeros(2), np.zeros((2, 2)), np.full(2, TILE), np.stack([_peaked(1, 1)] * 2),
                               scores, Calibration(outside_logit=1.0))
    assert post.protection_level_m == math.inf and post.outside_probability > 0.01
    # a map temperature > 1 flattens the map: more spread about the peak
    flat = hierarchy_posterior(np.array([-5.0, 5.0]), np.zeros((1, 2)), np.array([TILE]),
                               _peaked(1, 1, mass=0.9)[None], np.zeros(1), Calibration(map_temperature=3.0))
    sharp = hierarchy_posterior(np.array([-5.0, 5.0]), np.zeros((1, 2)), np.array([TILE]),
                                _peaked(1, 1, mass=0.9)[None], np.zeros(1), Calibration())
    assert flat.covariance_en_m2[0, 0] > sharp.covariance_en_m2[0, 0]


def test_protection_level_is_the_smallest_radius_holding_one_minus_alpha():
    far = np.array([1.0, 2.0, 3.0, 100.0])
    w = np.array([0.5, 0.3, 0.195, 0.005])
    assert protection_level_m(far, w, 0.0, 0.01) == 3.0  # 0.995 within 3 m
    assert protection_level_m(far, w, 0.0, 0.001) == 100.0
    assert protection_level_m(far, w * 0.98, 0.02, 0.01) == math.inf
    with pytest.raises(ValueError):
        protection_level_m(far, w, 0.0, 0.0)


def test_calibration_file_round_trip_and_refusals(tmp_path):
    assert load_calibration(tmp_path) == Calibration()  # none stored: uncalibrated
    cal = Calibration(score_temperature=2.5, outside_logit=-1.5, map_temperature=1.7, fitted_on="bench")
    save_calibration(tmp_path, cal)
    assert load_calibration(tmp_path) == cal
    save_calibration(tmp_path, Calibration())
    assert json.loads((tmp_path / CALIBRATION_FILE).read_text())["outside_logit"] is None
    assert load_calibration(tmp_path).outside_logit == -math.inf
    for bad in ('{"score_temperature": 0}', '{"map_temperature": "x"}', '[1, 2]', '{"unknown": 1}', "not json",
                '{"outside_logit": NaN}'):
        (tmp_path / CALIBRATION_FILE).write_text(bad)
        with pytest.raises(CheckpointError):
            load_calibration(tmp_path)


def test_agreement_counts_the_candidates_whose_map_peaks_meet():
    from unifygeo_ros.localization.posterior import agreement_counts, map_peaks_en_m

    maps = np.stack([_peaked(0, 0), _peaked(0, 0), _peaked(3, 3)])
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 0.0]])  # peaks (-15, 15), (-12, 15), (15, -15)
    peaks = map_peaks_en_m(centres, np.full(3, TILE), maps)
    np.testing.assert_allclose(peaks, [[-15.0, 15.0], [-12.0, 15.0], [15.0, -15.0]])
    assert agreement_counts(peaks, 5.0).tolist() == [2.0, 2.0, 1.0]
    assert agreement_counts(peaks, 1.0).tolist() == [1.0, 1.0, 1.0]


def test_consensus_weight_favours_candidates_that_agree_and_changes_the_protection_level():
    # three candidates with equal scores: two overlapping tiles put the camera at one place, a third elsewhere
    maps = np.stack([_peaked(0, 0), _peaked(0, 0), _peaked(0, 0)])
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [300.0, 0.0]])
    fix = np.array([-15.0, 15.0])
    scores = np.zeros(3)
    off = hierarchy_posterior(fix, centres, np.full(3, TILE), maps, scores, Calibration())
    on = hierarchy_posterior(fix, centres, np.full(3, TILE), maps, scores, Calibration(consensus_weight=1.0))
    np.testing.assert_allclose(off.candidate_probabilities, [1 / 3] * 3)
    np.testing.assert_allclose(on.candidate_probabilities, [0.4, 0.4, 0.2])  # exp(ln 2) : exp(ln 2) : 1
    strong = hierarchy_posterior(fix, centres, np.full(3, TILE), maps, np.array([0.0, 0.0, -6.0]),
                                 Calibration(consensus_weight=2.0))
    assert strong.protection_level_m < 10.0 < on.protection_level_m  # the lone far peak's mass fell under alpha
    with pytest.raises(CheckpointError, match="consensus_weight"):
        Calibration(consensus_weight=-1.0)
    with pytest.raises(ValueError, match="consensus weight needs"):
        candidate_probabilities(scores, Calibration(consensus_weight=1.0))


def test_a_calibration_stored_before_the_consensus_weight_loads_with_it_off(tmp_path):
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"score_temperature": 1.4, "outside_logit": 3.0,
                                                         "map_temperature": 0.1, "pl_map_temperature": 0.2}))
    cal = load_calibration(tmp_path)
    assert cal.consensus_weight == 0.0 and cal.consensus_radius_m == 5.0
    save_calibration(tmp_path, Calibration(consensus_weight=1.5, consensus_radius_m=4.0))
    assert load_calibration(tmp_path).consensus_weight == 1.5 and load_calibration(tmp_path).consensus_radius_m == 4.0
