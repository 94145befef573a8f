"""Metrics and significance tests, computed by ranx (not by hand).

Choices that change the figures, all explicit here and printed in every report
(:data:`EVAL_CHOICES`):

- a document is relevant when its qrels score is > 0 (ranx's rule); graded scores feed nDCG;
- documents whose id equals the query id are NOT dropped (BEIR's ``ignore_identical_ids``
  is not applied);
- every judged query counts: one with no results scores 0 (ranx ``make_comparable=True``);
- runs are cut at their depth (100 by default) before scoring.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from semsearch.errors import BadInput, require

logger = logging.getLogger(__name__)

#: the summary metrics, in ranx names
METRICS = ["ndcg@10", "mrr@10", "map@100", "recall@10", "recall@100", "precision@10"]
#: fraction of queries with no relevant document in the top 100 (= 1 - ranx hit_rate@100)
NO_RELEVANT = "no_relevant@100"
RECALL_CURVE_KS = [1, 2, 3, 5, 10, 20, 30, 50, 100]

EVAL_CHOICES = [
    "relevant = qrels score > 0; nDCG gain = the qrels score (linear, as trec_eval and BEIR)",
    "ranking = the engine's order: ties in score keep the engine's order (TREC files carry it in the rank column)",
    "documents whose id equals the query id are kept (no ignore_identical_ids)",
    "every judged query is scored; a query with no results scores 0 (ranx make_comparable=True)",
    "queries without judgements in the split are not run",
    f"{NO_RELEVANT} = 1 - ranx hit_rate@100",
]


def _ranx():  # noqa: ANN202
    return require("ranx", "eval")


def to_ranx(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], name: str):  # noqa: ANN201
    """ranx Qrels and Run. A run lists each query's documents best first; ranx gets
    rank-derived scores (n, n-1, ...), so ties in the engine's scores keep the engine's order
    (ranx's own tie order is arbitrary) and every metric here depends on ranks only."""
    ranx = _ranx()
    q = ranx.Qrels({k: dict(v) for k, v in qrels.items()})
    # ranx refuses empty result lists; a query with no results simply does not appear and
    # make_comparable=True scores it 0
    r = ranx.Run({k: {d: float(len(v) - i) for i, d in enumerate(v)} for k, v in run.items() if v}, name=name)
    return q, r


def per_query(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] = METRICS,
) -> dict[str, dict[str, float]]:
    """``{metric: {qid: value}}`` for every judged query, plus :data:`NO_RELEVANT`."""
    if not qrels:
        raise BadInput("no relevance judgements to evaluate against")
    ranx = _ranx()
    names = list(dict.fromkeys([*metrics, "hit_rate@100"]))
    q, r = to_ranx(qrels, run, "run")
    scores = ranx.evaluate(q, r, names, return_mean=False, make_comparable=True, save_results_in_run=False)
    if len(names) == 1:  # pragma: no cover - ranx returns a bare array for one metric
        scores = {names[0]: scores}
    qids = list(q.keys())
    out = {m: dict(zip(qids, map(float, scores[m]), strict=True)) for m in metrics}
    out[NO_RELEVANT] = {qid: 1.0 - float(v) for qid, v in zip(qids, scores["hit_rate@100"], strict=True)}
    return out


def means(pq: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {m: float(np.mean(list(v.values()))) if v else 0.0 for m, v in pq.items()}


def recall_curve(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
                 ks: Sequence[int] = RECALL_CURVE_KS) -> dict[int, float]:
    ranx = _ranx()
    q, r = to_ranx(qrels, run, "run")
    vals = ranx.evaluate(q, r, [f"recall@{k}" for k in ks], make_comparable=True, save_results_in_run=False)
    return {k: float(vals[f"recall@{k}"]) for k in ks}


def holm(pvalues: Mapping[Any, float]) -> dict[Any, float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    items = sorted(pvalues.items(), key=lambda kv: kv[1])
    m = len(items)
    out: dict[Any, float] = {}
    running = 0.0
    for i, (key, p) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        out[key] = running
    return out


def significance(
    qrels: Mapping[str, Mapping[str, int]],
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    baseline: str,
    metrics: Sequence[str] = METRICS,
    *,
    test: str = "student",
    alpha: float = 0.05,
    n_permutations: int = 1000,
    seed: int = 42,
) -> dict[str, dict[str, dict[str, float | bool]]]:
    """Paired tests of every run against ``baseline`` (ranx ``compare``: ``student`` =
    two-sided paired t-test, ``fisher`` = randomisation test), Holm-corrected over all
    (run, metric) pairs. Returns ``{run: {metric: {p, p_holm, significant}}}``."""
    if baseline not in runs:
        raise BadInput(f"baseline {baseline!r} is not among the runs {sorted(runs)}")
    if test not in ("student", "fisher"):
        raise BadInput(f"unknown significance test {test!r}; use 'student' or 'fisher'")
    others = [n for n in runs if n != baseline]
    if not others:
        return {}
    ranx = _ranx()
    q = ranx.Qrels({k: dict(v) for k, v in qrels.items()})
    rx = [to_ranx(qrels, runs[n], n)[1] for n in [baseline, *others]]
    rep = ranx.compare(q, rx, list(metrics), stat_test=test, n_permutations=n_permutations,
                       max_p=alpha, random_seed=seed, make_comparable=True)
    raw = {(n, m): float(rep.comparisons[baseline, n][m]["p_value"]) for n in others for m in metrics}
    raw = {k: (1.0 if np.isnan(v) else v) for k, v in raw.items()}  # identical runs: no evidence
    adj = holm(raw)
    return {
        n: {m: {"p": raw[n, m], "p_holm": adj[n, m], "significant": adj[n, m] <= alpha} for m in metrics}
        for n in others
    }
