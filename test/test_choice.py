"""The one fix choice (localization/choice.py): learned order -> consensus -> tile assignment -> position."""
import numpy as np
import pytest

from unifygeo_ros.localization.choice import Candidates, choose_fix, softmax

# four 50 m tiles on a half-stride grid; the camera at (30, 2) lies in tiles 1 (centre 25, 0) and 2 (50, 0)
CENTRES = np.array([[0.0, 0.0], [25.0, 0.0], [50.0, 0.0], [200.0, 0.0]])
TILE_M = np.full(4, 50.0)


def _cands(scores, offsets, cov=None):
    return Candidates(CENTRES, TILE_M, np.asarray(offsets, float), np.asarray(scores, float), cov)


def test_learned_top1_gives_the_fix_without_consensus_or_assignment():
    offsets = [[5.0, 1.0], [5.0, 2.0], [-20.0, 2.0], [0.0, 0.0]]
    cov = np.stack([np.eye(2) * (i + 1) for i in range(4)])
    c = choose_fix(_cands([0.1, 2.0, 1.0, 0.5], offsets, cov), tile_assignment=False)
    assert c.learned_order.tolist() == [1, 2, 3, 0] == c.order.tolist()
    assert c.evidence_slot == c.tile_slot == 1
    assert c.position_en_m.tolist() == [30.0, 2.0]
    assert c.probability == pytest.approx(softmax(np.array([0.1, 2.0, 1.0, 0.5]))[1])
    assert c.covariance_en_m2.tolist() == (np.eye(2) * 2).tolist()


def test_tile_assignment_moves_the_central_tile_first_and_keeps_the_position():
    # the re-ranker prefers tile 2, whose map puts the camera at (30, 2): central in tile 1, not in tile 2
    offsets = [[5.0, 1.0], [5.0, 2.0], [-20.0, 2.0], [0.0, 0.0]]
    c = choose_fix(_cands([0.1, 1.0, 2.0, 0.5], offsets))
    assert c.evidence_slot == 2 and c.tile_slot == 1 and c.order.tolist() == [1, 2, 3, 0]
    assert c.position_en_m.tolist() == [30.0, 2.0]
    assert c.probability == pytest.approx(softmax(np.array([0.1, 1.0, 2.0, 0.5]))[2])


def test_consensus_takes_the_fix_that_overlapping_candidates_agree_on():
    # tile 3 (far away) scores highest alone; tiles 1 and 2 agree on (30, 2)
    offsets = [[40.0, 40.0], [5.0, 2.0], [-20.0, 2.0], [3.0, -3.0]]
    scores = [0.0, 1.0, 1.0, 1.5]
    off = choose_fix(_cands(scores, offsets), consensus=(0.0, 1.0))
    on = choose_fix(_cands(scores, offsets), consensus=(5.0, 4.0))
    assert off.evidence_slot == 3 and off.position_en_m.tolist() == [203.0, -3.0]
    assert on.evidence_slot == 1 and on.position_en_m.tolist() == [30.0, 2.0]
    assert on.learned_order.tolist() == off.learned_order.tolist() == [3, 1, 2, 0]
    assert on.order.tolist() == [1, 3, 2, 0]  # consensus slot first, then the learned order


def test_one_candidate_and_bad_input():
    c = choose_fix(Candidates(CENTRES[:1], TILE_M[:1], np.array([[1.0, 2.0]]), np.array([3.0])), (5.0, 1.0))
    assert c.evidence_slot == 0 and c.probability == 1.0 and c.position_en_m.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="K >= 1"):
        choose_fix(Candidates(CENTRES[:0], TILE_M[:0], np.zeros((0, 2)), np.zeros(0)))
