"""The network's contract: shapes, the geometry of its maps, orientation, views, re-ranking within the top K."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unifygeo_ros.config import Config
from unifygeo_ros.model import MetricOutput, build_model, cell_to_offset, offset_to_cell, rerank_candidates
from unifygeo_ros.model.metric_head import heading_to_vector, rotation_volume, vector_to_heading
from unifygeo_ros.model.rerank import (EVIDENCE_NAMES, Reranker, assign_tile, centrality, consensus_slot,
                                       consensus_support)

# the tiny architecture lives in conftest.py; test_checkpoint.py and test_train.py import it from here
from conftest import TINY_MODEL, tiny_config  # noqa: F401


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_config()).eval()


@pytest.mark.parametrize("b", [1, 3])
def test_shapes_for_batch_sizes_1_and_3(model, b):
    with torch.no_grad():
        g = model.encode_ground(torch.randn(b, 3, 32, 128))
        a = model.encode_aerial(torch.randn(b, 3, 64, 64))
        m = model.localize(g, a)
    assert g.descriptor.shape == (b, 32) and a.descriptor.shape == (b, 32)
    assert torch.allclose(g.descriptor.norm(dim=-1), torch.ones(b), atol=1e-5)
    assert [c.shape[-1] for c in a.cells] == [8, 16]
    assert m.logits.shape == (b, 16, 16) and m.heading_vectors.shape == (b, 2, 16, 16)
    assert torch.allclose(m.probabilities.sum((1, 2)), torch.ones(b), atol=1e-5)
    assert m.peak_offset_en_m(70.0).shape == (b, 2) and m.expected_offset_en_m(70.0).shape == (b, 2)
    assert m.heading_deg().shape == (b,) and m.covariance_m2(70.0).shape == (b, 2, 2)
    assert model.similarity(g, a).shape == (b, b)


def test_one_query_against_k_candidates_equals_pairwise(model):
    with torch.no_grad():
        g = model.encode_ground(torch.randn(1, 3, 32, 128))
        a = model.encode_aerial(torch.randn(4, 3, 64, 64))
        broadcast = model.localize(g, a)
        pairwise = model.localize(g.select([0, 0, 0, 0]), a)
        scores = model.rerank_scores(g, a)
        one_by_one = torch.cat([model.rerank_scores(g, a.select([i])) for i in range(4)])
    assert torch.allclose(broadcast.logits, pairwise.logits, atol=1e-5)
    assert scores.shape == (4,)
    # each candidate's score is its own pair's: no candidate changes another's score
    torch.testing.assert_close(scores, one_by_one, atol=1e-5, rtol=1e-5)


def test_ground_descriptor_ignores_a_panorama_roll_and_sectors_roll_with_it(model):
    x = torch.randn(2, 3, 32, 128)
    with torch.no_grad():
        g = model.encode_ground(x)
        g2 = model.encode_ground(torch.roll(x, 32, dims=-1))  # 32 px = 2 of 8 sectors, a multiple of stride 32
    assert torch.allclose(g.descriptor, g2.descriptor, atol=1e-5)
    for s, s2 in zip(g.sectors, g2.sectors):
        assert torch.allclose(torch.roll(s, 2, dims=1), s2, atol=1e-5)


def test_geometry_east_is_right_north_is_up_and_round_trips():
    hw, tile = (32, 32), 70.0
    east = offset_to_cell(torch.tensor([[10.0, 0.0]]), tile, hw)[0]
    north = offset_to_cell(torch.tensor([[0.0, 10.0]]), tile, hw)[0]
    centre = (hw[0] - 1) / 2
    assert east[1] > centre and abs(east[0] - centre) < 1e-6      # right of centre, same row
    assert north[0] < centre and abs(north[1] - centre) < 1e-6    # above centre, same column
    off = torch.tensor([[10.0, -7.5], [-17.0, 17.0], [0.3, 0.0]])
    assert torch.allclose(cell_to_offset(offset_to_cell(off, tile, hw), tile, hw), off, atol=1e-4)
    # readout of a map peaked at the target's cell lands within a cell of the offset
    rc = offset_to_cell(off, tile, hw).round().long()
    logits = torch.full((3, *hw), -20.0)
    logits[torch.arange(3), rc[:, 0], rc[:, 1]] = 20.0
    m = MetricOutput(logits, torch.zeros(3, 2, *hw), [logits], torch.zeros(3))
    assert ((m.peak_offset_en_m(tile) - off).abs() <= tile / hw[0] / 2 + 1e-4).all()
    assert ((m.expected_offset_en_m(tile) - off).abs() <= tile / hw[0] / 2 + 1e-4).all()


def test_sub_cell_refinement_interpolates_between_two_cells():
    hw, tile = (16, 16), 64.0  # 4 m cells
    logits = torch.full((1, *hw), -30.0)
    logits[0, 8, 8] = logits[0, 8, 9] = 5.0  # equal mass in two east-west neighbours
    m = MetricOutput(logits, torch.zeros(1, 2, *hw), [logits], torch.zeros(1), refine_window=3)
    e, n = m.peak_offset_en_m(tile)[0].tolist()
    assert abs(e - 4.0) < 1e-3 and abs(n - (-2.0)) < 1e-3  # halfway between cell centres 2 m and 6 m east


def test_covariance_is_small_for_one_peak_and_wide_along_two_modes():
    hw, tile = (32, 32), 64.0
    one = torch.full((1, *hw), -30.0)
    one[0, 16, 16] = 30.0
    two = one.clone()
    two[0, 16, 4] = 30.0  # a second mode 24 m west
    cov1 = MetricOutput(one, torch.zeros(1, 2, *hw), [one], torch.zeros(1)).covariance_m2(tile)[0]
    cov2 = MetricOutput(two, torch.zeros(1, 2, *hw), [two], torch.zeros(1)).covariance_m2(tile)[0]
    assert cov1[0, 0] < 1.0 and cov1[1, 1] < 1.0  # only the cell's own variance (2 m cells: 1/3 m^2)
    assert cov2[0, 0] > 100.0 and cov2[1, 1] < 1.0


def test_heading_hypotheses_follow_geo_convention():
    s, d = 8, 4
    g = torch.nn.functional.normalize(torch.randn(1, s, d).flatten(1), dim=1).view(1, s, d)
    r0 = 3  # aerial direction k holds what sector k - r0 sees: heading = r0 * 360 / S
    a = torch.roll(g, r0, dims=1).reshape(1, s * d, 1, 1).expand(1, s * d, 2, 2)
    vol = rotation_volume(g, a)
    assert int(vol[0, :, 0, 0].argmax()) == r0
    # rolling the panorama right by one sector changes the heading by -360/S (geo.py): best r becomes r0 - 1
    vol2 = rotation_volume(torch.roll(g, 1, dims=1), a)
    assert int(vol2[0, :, 0, 0].argmax()) == r0 - 1
    # and the readout of a heading vector is the compass heading
    for h in (0.0, 90.0, -135.0, 135.0):
        v = heading_to_vector(torch.tensor([h]))
        assert abs(float(vector_to_heading(v)[0]) - h) < 1e-4
    hv = heading_to_vector(torch.tensor([135.0]))[:, :, None, None].expand(1, 2, 4, 4)
    m = MetricOutput(torch.zeros(1, 4, 4), hv, [], torch.zeros(1))
    assert abs(float(m.heading_deg()[0]) - 135.0) < 1e-3


def test_heading_window_keeps_only_the_hypotheses_near_the_given_heading():
    from unifygeo_ros.config import ConfigError
    from unifygeo_ros.model.metric_head import MetricHead

    s, d = 8, 4
    torch.manual_seed(1)
    g = torch.nn.functional.normalize(torch.randn(2, s, d).flatten(1), dim=1).view(2, s, d)
    # cell (0, 0) of each tile matches the panorama rotated by 3 bins, cell (1, 1) matches it unrotated (r = 0)
    cells = torch.nn.functional.normalize(torch.randn(2, s * d, 2, 2), dim=1)
    cells[:, :, 0, 0] = torch.roll(g, 3, dims=1).flatten(1)
    cells[:, :, 1, 1] = 0.9 * g.flatten(1)
    full, known = MetricHead(s, 1, -1), MetricHead(s, 1, 0)
    out_full, out_known = full([g], [cells]), known([g], [cells])
    # all hypotheses: the rotated match wins; the known heading alone: the unrotated one, heading exactly north
    assert (out_full.probabilities[:, 0, 0] > out_full.probabilities[:, 1, 1]).all()
    assert (out_known.probabilities[:, 1, 1] > 0.5).all()
    torch.testing.assert_close(out_known.logits, known.log_match_scale.exp() * rotation_volume(g, cells)[:, 0])
    torch.testing.assert_close(out_known.heading_deg(), torch.zeros(2))
    assert (out_known.local_score < out_full.local_score).all()  # the rotated match no longer counts
    # +-1 bin keeps r = 7, 0, 1; -1 is the unchanged head of every earlier model
    assert MetricHead(s, 1, 1).hyp_index.tolist() == [0, 1, 7]
    assert full.hyp_index.tolist() == list(range(s)) and not full.restricted and known.restricted
    with pytest.raises(ConfigError, match="heading_window"):
        Config.from_dict({"model": {"heading_window": 0}, "data": {"orientation": "unknown"}})
    with pytest.raises(ConfigError, match="heading_window"):
        Config.from_dict({"model": {"heading_window": -2}, "data": {"orientation": "known"}})
    m = build_model(Config.from_dict({"model": {**TINY_MODEL, "heading_window": 1}, "data": {"orientation": "known"}}))
    assert "metric.hyp_index" not in m.state_dict()  # not a weight: checkpoints load either way


def test_share_views_registers_one_encoder():
    shared = build_model(tiny_config(share_views=True))
    split = build_model(tiny_config(share_views=False))
    n_shared = sum(p.numel() for p in shared.parameters())
    n_split = sum(p.numel() for p in split.parameters())
    assert n_shared < 0.7 * n_split
    assert shared.aerial_encoder is shared.ground_encoder
    assert not any(k.startswith("aerial_encoder") for k in shared.state_dict())


def test_split_last_stage_gives_the_semantic_head_its_own_copy():
    torch.manual_seed(0)
    m = build_model(tiny_config(split_last_stage=True)).eval()
    trunk = m.ground_encoder.trunk
    copy, last = trunk.semantic_last, trunk.body[trunk._last_name]
    assert copy is not None and copy is not last
    assert not {id(p) for p in copy.parameters()} & {id(p) for p in last.parameters()}  # no shared weight
    for p, q in zip(copy.parameters(), last.parameters(), strict=True):
        assert torch.equal(p, q)  # a copy: it starts from the same weights
    x, tiles = torch.randn(2, 3, 32, 128), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = m.encode_ground(x)
        out = m.localize(before, m.encode_aerial(tiles))
        for p in copy.parameters():
            p.add_(0.5 * torch.randn_like(p))
        after = m.encode_ground(x)
    assert out.logits.shape == (2, 16, 16)
    # the semantic head (global descriptor) reads the copy; the fine features (sectors) never do
    assert not torch.allclose(before.descriptor, after.descriptor, atol=1e-3)
    for s, s2 in zip(before.sectors, after.sectors, strict=True):
        assert torch.equal(s, s2)


def test_rerank_reorders_only_the_top_k():
    ranking = torch.tensor([[10, 11, 12, 13, 14, 15, 16]])
    scores = torch.tensor([[0.1, 0.2, 0.9, 0.3, 0.0]])  # K = 5: candidate at rank 3 is best
    out = rerank_candidates(ranking, scores)
    assert out[0, 0] == 12
    assert sorted(out[0, :5].tolist()) == [10, 11, 12, 13, 14]
    assert out[0, 5:].tolist() == [15, 16]  # never reordered beyond K


def test_centrality_in_half_tile_sides():
    centres = np.array([[0.0, 0.0], [35.0, 0.0], [0.0, -35.0]])
    c = centrality(centres, 70.0, np.array([17.5, -3.0]))
    assert c == pytest.approx([0.5, 0.5, 32.0 / 35.0])  # on the boundary of two central quarters
    assert centrality(centres[:1], 70.0, np.zeros(2))[0] == 0.0
    # per-tile sides: the same 10 m is twice as central in a tile twice as large
    assert centrality(centres[:2], np.array([40.0, 80.0]), np.array([10.0, 0.0])) == pytest.approx([0.5, 1.25 / 2])


def test_tile_assignment_moves_the_candidate_holding_the_fix_centrally_first():
    # candidates in slot order: a 70 m tile grid with half-tile stride; the learned order is 2, 0, 3, 1
    centres = np.array([[0.0, 0.0], [35.0, 0.0], [35.0, 35.0], [70.0, 0.0]])
    order = np.array([2, 0, 3, 1])
    # the re-ranker's top-1 (slot 2, centre (35, 35)) placed the camera at (31, 12): 23 m south of its centre,
    # outside its central quarter; slot 1 (35, 0) holds it 12 m from its centre
    out = assign_tile(order, centres, 70.0, np.array([31.0, 12.0]))
    assert out.tolist() == [1, 2, 0, 3]
    # a fix in the top-1's own central quarter: nothing moves
    assert assign_tile(order, centres, 70.0, np.array([30.0, 40.0])).tolist() == order.tolist()
    # a tie (exactly between two centres) keeps the re-ranked top-1
    assert assign_tile(np.array([0, 1, 2, 3]), centres, 70.0, np.array([17.5, 0.0])).tolist() == [0, 1, 2, 3]
    # the input is never modified and a single candidate stays
    assert order.tolist() == [2, 0, 3, 1]
    assert assign_tile(np.array([0]), centres[:1], 70.0, np.array([50.0, 50.0])).tolist() == [0]


def test_learned_reranker_moves_the_positive_from_rank_2_to_k_to_rank_1():
    torch.manual_seed(0)
    k, n = 5, 256
    # retrieval alone puts the positive at a random rank 2..K; its local evidence is stronger
    ev = torch.rand(n, k, len(EVIDENCE_NAMES)) * 0.2
    ev[..., 0] = torch.linspace(0.6, 0.5, k)  # global cosine decreasing with rank
    pos = torch.randint(1, k, (n,))
    ev[torch.arange(n), pos, 1] += 0.5        # local matching score
    ev[torch.arange(n), pos, 3] -= 0.1        # lower entropy
    rr = Reranker(16)
    before = rr(ev).argmax(1)
    assert (before == pos).float().mean() < 0.05
    opt = torch.optim.Adam(rr.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(rr(ev), pos)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ranking = torch.arange(k + 3).repeat(n, 1)
    out = rerank_candidates(ranking, rr(ev).detach())
    assert (out[:, 0] == pos).float().mean() > 0.95
    assert (out[:, k:] == ranking[:, k:]).all()


def _metric_with_peak(rows: list[int], cols: list[int], hw=(12, 12)) -> MetricOutput:
    b = len(rows)
    logits = torch.full((b, *hw), -30.0)
    logits[torch.arange(b), torch.tensor(rows), torch.tensor(cols)] = 30.0
    return MetricOutput(logits=logits, heading_vectors=torch.zeros(b, 2, *hw), level_logits=[logits],
                        local_score=torch.zeros(b))


def test_centre_evidence_is_zero_at_the_tile_centre_half_at_the_central_quarter_and_one_at_the_edge():
    from unifygeo_ros.model.rerank import peak_centre_distance, rerank_evidence

    # 12 x 12 cells: the centre lies between cells 5 and 6; cell 8's centre is 2.5 cells (of 6) off; cell 0 / 11
    # centres are 5.5 cells off (the edge is 6)
    m = _metric_with_peak([5, 8, 0, 6], [6, 5, 11, 2])
    d = peak_centre_distance(m)
    assert torch.allclose(d, torch.tensor([0.5 / 6, 2.5 / 6, 5.5 / 6, 3.5 / 6]), atol=1e-4)
    assert rerank_evidence(torch.zeros(4), m).shape == (4, len(EVIDENCE_NAMES))
    ev = rerank_evidence(torch.zeros(4), m, centre=True)
    assert ev.shape == (4, len(EVIDENCE_NAMES) + 1) and torch.equal(ev[:, -1], d)


def test_model_with_centre_evidence_scores_candidates_and_prefers_nothing_before_training():
    torch.manual_seed(0)
    m = build_model(tiny_config(rerank_centre=True)).eval()
    assert m.reranker.mlp[0].in_features == len(EVIDENCE_NAMES) + 1
    with torch.no_grad():
        g = m.encode_ground(torch.randn(1, 3, 32, 128))
        a = m.encode_aerial(torch.randn(4, 3, 64, 64))
        s = m.rerank_scores(g, a)
        cos = a.descriptor @ g.descriptor[0]
    assert s.shape == (4,)
    # the MLP starts near zero: the initial order is the retrieval order
    assert torch.equal(torch.argsort(s, descending=True), torch.argsort(cos, descending=True))


def test_consensus_support_is_the_weight_of_the_agreeing_fixes():
    fixes = np.array([[0.0, 0.0], [3.0, 4.0], [100.0, 0.0], [0.0, 4.9]])
    scores = np.array([1.0, 0.0, 0.0, 0.0])
    w = np.exp(scores / 2.0) / np.exp(scores / 2.0).sum()
    s = consensus_support(fixes, scores, 5.0, 2.0)
    # 0 agrees with 1 (5 m: inclusive) and 3; 1 with 0 and 3 (distance 3.0); 2 is alone
    assert s == pytest.approx([w[0] + w[1] + w[3], w[0] + w[1] + w[3], w[2], w[0] + w[1] + w[3]])
    assert consensus_support(fixes, scores, 0.0, 2.0) == pytest.approx(w)  # radius 0: each its own weight


def test_consensus_slot_prefers_agreement_over_a_lone_top_score_and_keeps_ties_in_order():
    fixes = np.array([[50.0, 0.0], [0.0, 0.0], [1.0, 1.0], [80.0, 0.0]])
    order = np.array([0, 3, 1, 2])  # learned order: slot 0 best
    scores = np.array([2.0, 1.0, 1.0, 1.5])
    # T 1: slot 0 alone (e^2 = 7.4) beats slots 1 + 2 together (2 e = 5.4)
    assert consensus_slot(order, fixes, scores, 5.0, 1.0) == 0
    # T 4: e^0.5 = 1.65 < 2 e^0.25 = 2.57: the agreeing pair wins; of the two, slot 1 ranks first in ``order``
    assert consensus_slot(order, fixes, scores, 5.0, 4.0) == 1
    assert consensus_slot(np.array([0, 3, 2, 1]), fixes, scores, 5.0, 4.0) == 2
