"""Metric values against cases computed by hand (linear-gain nDCG as trec_eval/BEIR)."""

from __future__ import annotations

import math

import pytest

from semsearch.errors import BadInput
from semsearch.eval import metrics as M

QRELS = {
    "q1": {"a": 1, "b": 2},
    "q2": {"c": 1, "n": 0},  # n judged non-relevant
    "q3": {"z": 1},  # nothing retrieved
    "q4": {"r": 1},  # relevant at rank 12
}
RUN = {
    "q1": {"a": 3.0, "x": 2.0, "b": 1.0},
    "q2": {"n": 3.0, "c": 2.0},
    "q3": {},
    "q4": {**{f"o{i}": 100.0 - i for i in range(11)}, "r": 1.0},
}
L3 = 1 / math.log2(3)


def test_per_query_values_match_hand_computation():
    pq = M.per_query(QRELS, RUN)
    # q1: DCG = 1/log2(2) + 2/log2(4) = 2; IDCG = 2 + 1/log2(3)
    assert pq["ndcg@10"]["q1"] == pytest.approx(2 / (2 + L3))
    assert pq["ndcg@10"]["q2"] == pytest.approx(L3)  # c at rank 2, n does not count
    assert pq["ndcg@10"]["q3"] == 0.0
    assert pq["ndcg@10"]["q4"] == 0.0
    assert pq["mrr@10"] == pytest.approx({"q1": 1.0, "q2": 0.5, "q3": 0.0, "q4": 0.0})
    assert pq["map@100"] == pytest.approx({"q1": (1 + 2 / 3) / 2, "q2": 0.5, "q3": 0.0, "q4": 1 / 12})
    assert pq["recall@10"] == pytest.approx({"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 0.0})
    assert pq["recall@100"] == pytest.approx({"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 1.0})
    assert pq["precision@10"] == pytest.approx({"q1": 0.2, "q2": 0.1, "q3": 0.0, "q4": 0.0})
    assert pq[M.NO_RELEVANT] == {"q1": 0.0, "q2": 0.0, "q3": 1.0, "q4": 0.0}
    assert M.means(pq)[M.NO_RELEVANT] == 0.25


def test_query_missing_from_run_scores_zero():
    run = {k: v for k, v in RUN.items() if k != "q1"}
    pq = M.per_query(QRELS, run)
    assert pq["ndcg@10"]["q1"] == 0.0 and pq[M.NO_RELEVANT]["q1"] == 1.0


def test_ties_keep_the_engine_order():
    qrels = {"q": {"rel": 1}}
    assert M.per_query(qrels, {"q": {"x": 1.0, "rel": 1.0}})["mrr@10"]["q"] == 0.5
    assert M.per_query(qrels, {"q": {"rel": 1.0, "x": 1.0}})["mrr@10"]["q"] == 1.0


def test_recall_curve():
    curve = M.recall_curve(QRELS, RUN, [1, 2, 3, 12])
    # per query recall@1: q1 1/2, q2 0, q3 0, q4 0 -> 0.125; @2: q1 .5, q2 1 -> .375
    assert curve == pytest.approx({1: 0.125, 2: 0.375, 3: 0.5, 12: 0.75})


def test_holm_adjustment():
    adj = M.holm({"a": 0.01, "b": 0.04, "c": 0.03})
    # sorted a, c, b: 3*0.01=0.03; 2*0.03=0.06; max(1*0.04, 0.06)=0.06
    assert adj == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert M.holm({"x": 0.9, "y": 0.8}) == pytest.approx({"y": 1.0, "x": 1.0})


def _ranked(rel_rank: int, n: int = 20) -> dict[str, float]:
    docs = [f"o{i}" for i in range(n)]
    docs.insert(rel_rank - 1, "rel")
    return {d: float(len(docs) - i) for i, d in enumerate(docs)}


@pytest.mark.parametrize("test", ["student", "fisher"])
def test_significance_against_baseline(test):
    qrels = {f"q{i}": {"rel": 1} for i in range(30)}
    base = {f"q{i}": _ranked(5 + i % 5) for i in range(30)}
    better = {f"q{i}": _ranked(1 + (i % 7 == 0)) for i in range(30)}
    sig = M.significance(qrels, {"base": base, "better": better, "same": dict(base)}, "base",
                         ["ndcg@10", "mrr@10"], test=test)
    assert set(sig) == {"better", "same"}
    assert sig["better"]["ndcg@10"]["significant"] and sig["better"]["ndcg@10"]["p_holm"] < 0.05
    assert sig["better"]["ndcg@10"]["p_holm"] >= sig["better"]["ndcg@10"]["p"]
    assert not sig["same"]["mrr@10"]["significant"] and sig["same"]["mrr@10"]["p"] == 1.0


def test_bad_inputs_are_named():
    with pytest.raises(BadInput, match="baseline 'nope'"):
        M.significance(QRELS, {"a": RUN}, "nope")
    with pytest.raises(BadInput, match="unknown significance test 'tukey'"):
        M.significance(QRELS, {"a": RUN, "b": RUN}, "a", test="tukey")
    with pytest.raises(BadInput, match="no relevance judgements"):
        M.per_query({}, RUN)


def test_values_stay_with_their_query_whatever_the_order():
    qrels = {"zz": {"a": 1}, "aa": {"b": 1}, "mm": {"c": 1}}
    run = {"mm": {"c": 1.0}, "aa": {"x": 2.0, "b": 1.0}, "zz": {"q": 1.0}}
    assert M.per_query(qrels, run, ["mrr@10"])["mrr@10"] == {"zz": 0.0, "aa": 0.5, "mm": 1.0}
