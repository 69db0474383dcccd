"""Metrics on hand-made score matrices and errors whose answers are known."""
import json

import numpy as np
import pytest

from unifygeo_ros.offline import metrics as M


def _rank(scores, pos, semi=None, **kw):
    return M.rank_queries(M.MatrixSimilarity(np.asarray(scores, float)), pos, semi, **kw)


def test_rank_is_one_plus_tiles_strictly_above_and_ties_favour_the_query():
    scores = [
        [0.9, 0.1, 0.2, 0.3],  # positive 0 on top -> rank 1
        [0.5, 0.5, 0.5, 0.1],  # positive 1 tied with two others -> rank 1
        [0.8, 0.7, 0.6, 0.9],  # positive 2 below three tiles -> rank 4
        [0.1, 0.9, 0.9, 0.2],  # positive 3 below two -> rank 3
    ]
    res = _rank(scores, [0, 1, 2, 3])
    assert res.ranks.tolist() == [1, 1, 4, 3]


def test_semi_positives_count_against_rank_but_are_masked_for_hit_rate():
    scores = [
        [0.5, 0.9, 0.8, 0.1, 0.0],  # positive 0, semis 1 and 2 above it, nothing else -> rank 3, hit
        [0.5, 0.9, 0.1, 0.7, 0.0],  # positive 0, semi 1 above, non-semi 3 above -> rank 3, no hit
        [0.9, 0.1, 0.2, 0.3, 0.4],  # positive 0 on top -> rank 1, hit
    ]
    semi = [[1, 2, -1], [1, 2, 4], [1, 2, 3]]
    res = _rank(scores, [0, 0, 0], semi)
    assert res.ranks.tolist() == [3, 3, 1]
    assert res.hits.tolist() == [True, False, True]
    m = M.retrieval_metrics(res.ranks, res.hits, 5)
    assert m.r1 == pytest.approx(1 / 3)
    assert m.hit == pytest.approx(2 / 3)
    assert m.hit >= m.r1


def test_recalls_at_k_from_known_ranks():
    ranks = np.array([1, 2, 5, 6, 10, 11, 100, 1])
    hits = ranks == 1
    m = M.retrieval_metrics(ranks, hits, gallery_size=200)
    assert m.r1 == pytest.approx(2 / 8)
    assert m.r5 == pytest.approx(4 / 8)
    assert m.r10 == pytest.approx(6 / 8)
    assert m.r1pct_k == 2 and m.r1pct == pytest.approx(3 / 8)


@pytest.mark.parametrize("size,cut", [(1, 1), (49, 1), (50, 1), (100, 1), (149, 1), (150, 2), (250, 3),
                                      (1000, 10), (20000, 200)])
def test_one_percent_cut_rounds_half_up_and_is_at_least_one(size, cut):
    assert M.recall_one_percent_cut(size) == cut


def test_r1pct_on_a_gallery_of_150_cuts_at_two():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.0, 0.5, size=(3, 150))
    scores[0, 7] = 1.0                               # rank 1
    scores[1, 7] = 0.9; scores[1, 3] = 1.0           # rank 2 -> inside R@1% (k = 2)
    scores[2, 7] = 0.9; scores[2, 3] = 1.0; scores[2, 4] = 0.95  # rank 3 -> outside
    res = _rank(scores, [7, 7, 7])
    m = M.retrieval_metrics(res.ranks, res.hits, 150)
    assert res.ranks.tolist() == [1, 2, 3]
    assert m.r1pct_k == 2
    assert m.r1pct == pytest.approx(2 / 3)


def test_chunked_pass_equals_the_unchunked_one():
    rng = np.random.default_rng(1)
    q, r = 37, 53
    qd = rng.normal(size=(q, 8)); gd = rng.normal(size=(r, 8))
    gd[5] = gd[6]  # exact ties between two tiles
    pos = rng.integers(0, r, size=q)
    semi = np.stack([(pos + d) % r for d in (1, 2, 3)], axis=1)
    src = M.DescriptorSimilarity(qd, gd)
    full = M.rank_queries(M.MatrixSimilarity(qd @ gd.T), pos, semi, top_k=7, chunk_size=q)
    for chunk in (1, 4, 10):
        part = M.rank_queries(src, pos, semi, top_k=7, chunk_size=chunk)
        np.testing.assert_array_equal(part.ranks, full.ranks)
        np.testing.assert_array_equal(part.hits, full.hits)
        np.testing.assert_array_equal(part.topk_indices, full.topk_indices)
    # a byte budget that allows only a couple of rows per chunk gives the same answer
    tiny = M.rank_queries(src, pos, semi, top_k=7, max_chunk_bytes=2 * r * 8)
    np.testing.assert_array_equal(tiny.ranks, full.ranks)
    assert M.chunk_rows(r, 2 * r * 8) == 2


def test_topk_breaks_ties_by_gallery_index_and_matches_a_full_stable_sort():
    rng = np.random.default_rng(2)
    s = rng.integers(0, 5, size=(20, 30)).astype(float)  # many ties
    idx, vals = M.topk_stable(s, 6)
    ref = np.argsort(-s, axis=1, kind="stable")[:, :6]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(vals, np.take_along_axis(s, ref, axis=1))


def test_retrieval_invariants_are_asserted():
    with pytest.raises(AssertionError):
        M.RetrievalMetrics(r1=0.5, r5=0.4, r10=0.6, r1pct=0.5, hit=0.6, queries=1, gallery_size=10, r1pct_k=1)
    with pytest.raises(AssertionError):
        M.RetrievalMetrics(r1=0.5, r5=0.6, r10=0.7, r1pct=0.5, hit=0.4, queries=1, gallery_size=10, r1pct_k=1)
    with pytest.raises(AssertionError):  # positive listed among its own semi-positives
        _rank([[1.0, 0.0]], [0], [[0]])


def test_rerank_helper_rejects_a_tile_from_outside_the_top_k():
    before = np.array([[3, 1, 2], [0, 4, 5]])
    M.assert_rerank_within_topk(before, np.array([[2, 3, 1], [5, 0, 4]]))
    with pytest.raises(AssertionError):
        M.assert_rerank_within_topk(before, np.array([[2, 3, 1], [7, 0, 4]]))


def test_position_errors_and_recalls_within_metres():
    pred = np.array([[0.0, 0.0], [3.0, 4.0], [0.5, 0.0], [10.0, 0.0], [0.0, -2.0]])
    true = np.zeros((5, 2))
    err = M.position_errors_m(pred, true)
    np.testing.assert_allclose(err, [0.0, 5.0, 0.5, 10.0, 2.0])
    m = M.metric_loc_metrics(err)
    assert m.mean_m == pytest.approx(17.5 / 5)
    assert m.median_m == pytest.approx(2.0)
    assert m.recall(1) == pytest.approx(2 / 5)
    assert m.recall(3) == pytest.approx(3 / 5)
    assert m.recall(5) == pytest.approx(4 / 5)  # 5.0 m counts as within 5 m
    assert m.recall(10) == pytest.approx(1.0)
    assert m.recall(20) == pytest.approx(1.0)
    assert m.heading_median_deg is None


def test_heading_errors_wrap_around_north():
    err = M.heading_errors_deg([359.0, 10.0, -170.0, 90.0], [1.0, 350.0, 170.0, 270.0])
    np.testing.assert_allclose(err, [2.0, 20.0, 20.0, 180.0])
    m = M.metric_loc_metrics(np.zeros(4), err)
    assert m.heading_median_deg == pytest.approx(20.0)
    assert m.heading_mean_deg == pytest.approx(55.5)


def _report(**kw):
    ranks = np.array([1, 1, 3, 7])
    retrieval = M.retrieval_metrics(ranks, ranks <= 3, gallery_size=120)
    loc = M.metric_loc_metrics([0.5, 2.0, 4.0, 30.0], [1.0, 2.0, 3.0, 4.0])
    return M.EvalReport(
        retrieval=retrieval, metric_isolated=loc,
        hier_no_rerank=M.HierarchicalMetrics(kw.get("r1_no", 0.5), loc),
        hier_rerank=M.HierarchicalMetrics(kw.get("r1_re", 0.75), loc),
        queries=4, top_k=5, extra={"gallery": {"tiles": 120}}, per_query={"rank": ranks},
    )


def test_report_json_shape():
    d = json.loads(json.dumps(_report().to_dict()))
    assert set(d["retrieval"]) == {"r1", "r5", "r10", "r1pct", "hit"}
    loc_keys = {"mean_m", "median_m", "recall_1m", "recall_3m", "recall_5m", "heading_median_deg"}
    assert set(d["metric_isolated"]) == loc_keys
    assert set(d["hierarchical"]) == {"no_rerank", "rerank"}
    assert set(d["hierarchical"]["rerank"]) == loc_keys | {"r1"}
    assert d["queries"] == 4 and d["gallery"] == {"tiles": 120}
    assert d["extended"]["metric_isolated"]["recall_20m"] == pytest.approx(0.75)


def test_report_rejects_impossible_hierarchy_figures():
    with pytest.raises(AssertionError):  # no re-rank top-1 cannot beat R@1 (0.5)
        _report(r1_no=0.75)
    with pytest.raises(AssertionError):  # re-ranked top-1 cannot beat R@5 (0.75)
        _report(r1_re=1.0)


# ------------------------------------------------------------------------------ strict hierarchical recall
def test_strict_recall_counts_a_query_only_when_its_top1_is_the_positive():
    """UnifyGeo's rule (PAPER.md): a hit needs the right tile AND the error under the threshold; the lenient recall
    also counts a fix from a neighbouring tile that lands near the camera."""
    err = np.array([0.5, 0.5, 2.0, 10.0])
    right = np.array([True, False, True, True])
    strict = M.strict_recall_m(err, right)
    assert (strict[1.0], strict[3.0], strict[5.0], strict[20.0]) == (0.25, 0.5, 0.5, 0.75)
    lenient = M.metric_loc_metrics(err)
    assert lenient.recall(1.0) == 0.5  # the wrong tile's 0.5 m counts here only
    h = M.HierarchicalMetrics(0.75, lenient, strict)
    assert h.strict_dict() == {"recall_strict_1m": 0.25, "recall_strict_3m": 0.5, "recall_strict_5m": 0.5}
    assert set(h.to_dict()) == {"mean_m", "median_m", "recall_1m", "recall_3m", "recall_5m", "heading_median_deg",
                                "r1"}  # the lenient block keeps its keys and meaning
    with pytest.raises(AssertionError):  # a strict hit needs the positive selected: never above r1
        M.HierarchicalMetrics(0.5, lenient, M.strict_recall_m(err, np.ones(4, bool)))
    with pytest.raises(AssertionError):  # never above the lenient recall
        M.HierarchicalMetrics(1.0, M.metric_loc_metrics(err + 5.0), strict)


def test_report_json_has_the_strict_block_beside_the_lenient_one():
    ranks = np.array([1, 1, 3, 7])
    err = np.array([0.5, 2.0, 4.0, 30.0])
    loc = M.metric_loc_metrics(err)
    right = ranks == 1
    hier = M.HierarchicalMetrics(0.5, loc, M.strict_recall_m(err, right))
    report = M.EvalReport(retrieval=M.retrieval_metrics(ranks, ranks <= 3, gallery_size=120), metric_isolated=loc,
                          hier_no_rerank=hier, hier_rerank=hier, queries=4, top_k=5, per_query={"rank": ranks})
    d = json.loads(json.dumps(report.to_dict()))
    assert set(d["hierarchical"]["rerank"]) == {"mean_m", "median_m", "recall_1m", "recall_3m", "recall_5m",
                                                "heading_median_deg", "r1"}
    assert d["hierarchical"]["rerank"]["recall_5m"] == 0.75
    assert d["hierarchical_strict"] == {v: {"recall_strict_1m": 0.25, "recall_strict_3m": 0.5,
                                            "recall_strict_5m": 0.5} for v in ("no_rerank", "rerank")}
    assert d["extended"]["hierarchical_strict"]["rerank"]["recall_strict_20m"] == 0.5
    assert "hierarchical_strict" not in _report().to_dict()  # hand-made figures without it: no block
