"""The losses behave as their definitions say, and the joint loss trains every parameter."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unifygeo_ros.model import MetricOutput, build_model, offset_to_cell
from unifygeo_ros.model.losses import (JointObjective, exclusion_mask, gaussian_target, heading_loss, info_nce,
                                       position_loss, rerank_loss)
from unifygeo_ros.model.metric_head import heading_to_vector

from conftest import tiny_config


def _pairs(b=8, d=16, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(b, d, generator=g), dim=1)
    q = F.normalize(a + noise * torch.randn(b, d, generator=g), dim=1)
    return q, a


def test_infonce_is_lower_for_matched_than_shuffled_pairs_and_symmetric():
    q, a = _pairs()
    scale = torch.tensor(10.0)
    matched = info_nce(q, a, scale, 0.1)
    shuffled = info_nce(q, a[torch.roll(torch.arange(8), 1)], scale, 0.1)
    assert matched < shuffled
    assert torch.allclose(info_nce(q, a, scale, 0.1), info_nce(a, q, scale, 0.1), atol=1e-6)


def test_infonce_masks_duplicate_tiles():
    q, a = _pairs(b=4)
    a = a.clone()
    a[1] = a[0]  # the same tile twice in the batch
    q = q.clone()
    q[1] = q[0]
    exclude = exclusion_mask({"tile_index": torch.tensor([5, 5, 6, 7])}, 70.0)
    assert exclude[0, 1] and exclude[1, 0] and not exclude[0, 0] and exclude.sum() == 2
    masked = info_nce(q, a, torch.tensor(20.0), 0.0, exclude)
    unmasked = info_nce(q, a, torch.tensor(20.0), 0.0)
    assert masked < unmasked
    # the definition: symmetric cross-entropy of the scaled cosines, the excluded pairs left out of both softmaxes
    logits = 20.0 * q @ a.t()
    target = torch.arange(4)
    want = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    torch.testing.assert_close(unmasked, want)
    cut = logits.masked_fill(exclude, float("-inf"))
    torch.testing.assert_close(masked, 0.5 * (F.cross_entropy(cut, target) + F.cross_entropy(cut.t(), target)))


def test_exclusion_from_world_positions_catches_overlapping_tiles():
    batch = {"tile_center_en_m": torch.tensor([[0.0, 0.0], [35.0, 0.0], [500.0, 0.0]]),
             "offset_en_m": torch.tensor([[20.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),
             "city_seed": torch.tensor([1, 1, 1])}
    m = exclusion_mask(batch, 70.0)
    assert m[0, 1]            # camera 0 (x = 20 m) is inside tile 1 (centre 35 m, half-side 35 m)
    assert not m[1, 2] and not m[0, 2]
    batch["city_seed"] = torch.tensor([1, 2, 1])
    assert not exclusion_mask(batch, 70.0)[0, 1]  # another city


def test_position_ce_is_minimal_when_logits_peak_at_the_true_cell():
    hw, tile = (16, 16), 70.0
    off = torch.tensor([[10.0, 10.0]])
    rc = offset_to_cell(off, tile, hw)[0].round().long()
    losses = {}
    for name, (r, c) in {"true": (rc[0], rc[1]), "next": (rc[0], rc[1] + 1), "far": (2, 2)}.items():
        logits = torch.zeros(1, *hw)
        logits[0, r, c] = 8.0
        losses[name] = float(position_loss(logits, off, tile, 3.0))
    assert losses["true"] < losses["next"] < losses["far"]


def test_gaussian_target_geometry():
    hw, tile = (32, 32), 70.0
    t = gaussian_target(torch.tensor([[10.0, 0.0], [0.0, 10.0]]), tile, hw, 3.0)
    r_e, c_e = divmod(int(t[0].argmax()), 32)
    r_n, c_n = divmod(int(t[1].argmax()), 32)
    assert c_e > 16 and r_e in (15, 16)  # +10 m east: right of centre
    assert r_n < 15 and c_n in (15, 16)  # +10 m north: above centre
    assert torch.allclose(t.sum((1, 2)), torch.ones(2))


def test_heading_loss_is_zero_at_the_correct_angle():
    hw = (8, 8)
    for h in (0.0, 73.0, -160.0):
        vec = heading_to_vector(torch.tensor([h]))[:, :, None, None].expand(1, 2, *hw).clone()
        m = MetricOutput(torch.zeros(1, *hw), vec, [], torch.zeros(1))
        off = torch.tensor([[3.0, -5.0]])
        assert float(heading_loss(m, off, 70.0, torch.tensor([h]))) < 1e-6
        assert abs(float(heading_loss(m, off, 70.0, torch.tensor([h + 180.0]))) - 2.0) < 1e-5
        assert abs(float(heading_loss(m, off, 70.0, torch.tensor([h + 90.0]))) - 1.0) < 1e-5


def test_rerank_loss_decreases_when_the_positive_score_rises():
    scores = torch.tensor([[1.0, 0.5, 0.2, 0.0, -0.3]])
    target = torch.tensor([2])
    values = []
    for bump in (0.0, 0.5, 1.0, 2.0):
        s = scores.clone()
        s[0, 2] += bump
        values.append(float(rerank_loss(s, target)))
    assert all(x > y for x, y in zip(values, values[1:]))


def _batch(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 3, 32, 128, generator=g), torch.randn(b, 3, 64, 64, generator=g),
            (torch.rand(b, 2, generator=g) - 0.5) * 30, torch.rand(b, generator=g) * 360 - 180,
            torch.full((b,), 70.0))


def test_joint_loss_reaches_every_parameter():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg)
    out = JointObjective(model, cfg.loss)(*_batch(3))
    out.total.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    # the re-ranker's output bias adds one constant to every candidate's score, which the listwise softmax ignores:
    # its gradient is zero up to rounding (exactly zero on some CPUs' summation order), by construction
    invariant = {"reranker.mlp.2.bias"}
    params = dict(model.named_parameters())
    assert all(float(params[n].grad.abs().sum()) < 1e-6 for n in invariant)
    zero = [n for n, p in params.items() if p.grad is not None and n not in invariant
            and float(p.grad.abs().sum()) == 0.0]
    assert not zero, zero
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert float(out.rerank) > 0


def test_joint_loss_runs_for_batch_size_1():
    cfg = tiny_config()
    out = JointObjective(build_model(cfg), cfg.loss)(*_batch(1))
    # one pair: InfoNCE's softmax has a single entry (loss 0) and nothing to re-rank
    assert float(out.infonce) == 0.0 and float(out.rerank) == 0.0
    assert float(out.position) > 0.0 and float(out.orientation) > 0.0
    w = cfg.loss
    want = w.position_weight * float(out.position) + w.orientation_weight * float(out.orientation)
    assert float(out.total.detach()) == pytest.approx(want, rel=1e-6)


def _with_descriptors(model, ground_desc, aerial_desc):
    """Make the model's global descriptors these (the dense features stay the network's)."""
    enc_g, enc_a = model.encode_ground, model.encode_aerial

    def g(x):
        f = enc_g(x)
        return type(f)(ground_desc.to(f.descriptor.dtype), f.sectors)

    def a(x):
        f = enc_a(x)
        return type(f)(aerial_desc.to(f.descriptor.dtype), f.cells)

    model.encode_ground, model.encode_aerial = g, a
    return model


def test_rerank_loss_only_uses_queries_whose_positive_was_retrieved():
    """At test time a re-ranker only sees the retrieved top K; a positive forced into the list in training would
    teach it that a low cosine marks the right tile."""
    from unifygeo_ros.config import Config

    cfg = Config.from_dict({**tiny_config().to_dict(), "loss": {"rerank_k": 2}})
    b = 4
    eye = torch.eye(b)
    aerial = eye

    def objective(ground_desc):  # the same weights every time: only the descriptors differ
        torch.manual_seed(0)
        return JointObjective(_with_descriptors(build_model(cfg), ground_desc, aerial), cfg.loss)(*_batch(b))

    missed = F.normalize(0.9 * eye.roll(1, 1) + 0.4 * eye.roll(2, 1) - 0.1 * eye, dim=1)  # positive ranks last
    out = objective(missed)
    assert float(out.rerank) == 0.0 and out.rerank_r1 == 0.0 and out.batch_r1 == 0.0
    hit = F.normalize(eye + 0.3 * eye.roll(1, 1), dim=1)  # positive first, a neighbour second
    out = objective(hit)
    assert float(out.rerank) > 0.0 and out.batch_r1 == 1.0
    # queries 0, 1 retrieve their positive, 2, 3 do not (and the other way round): each query adds its own
    # term, per query of the batch, and a query that missed its positive adds nothing
    first, second = objective(torch.cat([hit[:2], missed[2:]])), objective(torch.cat([missed[:2], hit[2:]]))
    assert first.batch_r1 == second.batch_r1 == 0.5
    assert float(first.rerank) > 0.0 and float(second.rerank) > 0.0
    assert float(first.rerank) + float(second.rerank) == pytest.approx(float(out.rerank), rel=1e-5)
    assert first.rerank_r1 + second.rerank_r1 == pytest.approx(out.rerank_r1)
    assert first.rerank_r1 in (0.0, 0.25, 0.5)


def test_multi_positive_rerank_loss_counts_every_acceptable_candidate():
    scores = torch.tensor([[2.0, 0.5, 1.0, -1.0]])
    one = torch.tensor([[False, False, True, False]])
    assert torch.allclose(rerank_loss(scores, one), rerank_loss(scores, torch.tensor([2])))
    two = torch.tensor([[True, False, True, False]])
    p = torch.softmax(scores, -1)[0]
    assert torch.allclose(rerank_loss(scores, two), -torch.log(p[0] + p[2]))
    assert float(rerank_loss(scores, two)) < float(rerank_loss(scores, one))


def test_rerank_semi_makes_tiles_holding_the_camera_targets():
    """loss.rerank_semi: candidates are the plain top K (semi-positives included, as at test time) and each tile
    that holds the camera is a right answer; without it, those tiles are never candidates."""
    from unifygeo_ros.config import Config

    torch.manual_seed(0)
    b = 4
    eye = torch.eye(b)
    desc = F.normalize(eye + 0.3 * eye.roll(1, 1), dim=1)  # positive first, a neighbour second
    batch = _batch(b)
    every = ~torch.eye(b, dtype=torch.bool)  # every camera also lies in every other tile of the batch
    for semi in (False, True):
        cfg = Config.from_dict({**tiny_config().to_dict(), "loss": {"rerank_k": 2, "rerank_semi": semi}})
        model = _with_descriptors(build_model(cfg), desc, eye)
        plain = JointObjective(model, cfg.loss)(*batch)
        held = JointObjective(model, cfg.loss)(*batch, exclude=every)
        assert float(plain.rerank) > 0.0
        if semi:  # both candidates hold the camera: nothing to learn, and any top-1 is right
            assert float(held.rerank) == 0.0 and held.rerank_r1 == 1.0
        else:  # the neighbours are removed from the candidates: the loss is still the positive's
            assert float(held.rerank) > 0.0
