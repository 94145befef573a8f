"""Choose fusion for this corpus on held-out pseudo-queries.

Candidates: every point of the tuning grid (method rrf/convex, normalisation, lexical
weight 0.1..0.9, RRF k, candidate depth) plus each channel alone. The best by mean
nDCG@10 wins if it beats the default significantly (paired t-test, ``alpha``; else the
default stays: a held-out set of a few hundred pseudo-queries is noisy), and hybrid never ends below the best single channel on the held-out set: if
a channel alone is best, its weights are chosen (that channel 1, the other 0)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from semsearch.eval import metrics as M
from semsearch.eval.tune import GRID, TUNE_METRIC, _grid, _run

logger = logging.getLogger(__name__)

PerQuery = Mapping[str, Mapping[str, list[tuple[str, float]]]]


def single_channel_run(per_query: PerQuery, channel: str, k: int = 100) -> dict[str, dict[str, float]]:
    return {q: {d: s for d, s in ch.get(channel, [])[:k]} for q, ch in per_query.items()}


def score(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> float:
    return M.means(M.per_query(qrels, run, [TUNE_METRIC]))[TUNE_METRIC]


def fusion_params(method: str, p: dict[str, Any]) -> dict[str, Any]:
    """A grid point as FusionSettings fields."""
    out: dict[str, Any] = {"method": method, "weights": dict(p["weights"]), "depth": p["depth"]}
    if method == "rrf":
        out["rrf_k"] = p["rrf_k"]
    else:
        out["normalization"] = p["normalization"]
    return out


def select_fusion(per_query: PerQuery, qrels: Mapping[str, Mapping[str, int]], *,
                  default: dict[str, Any], grid: dict[str, Any] | None = None,
                  alpha: float | None = 0.05, on: str = "held-out pseudo-queries") -> dict[str, Any]:
    """The chosen fusion settings with the evidence: ``{"chosen", "score", "default_score",
    "channels": {name: score}, "best": {method: {...}}, "why"}`` (``on`` names the queries
    in ``why``)."""
    grid = grid or GRID
    singles = {c: score(qrels, single_channel_run(per_query, c)) for c in ("lexical", "dense")}
    d = {k: default[k] for k in ("method", "weights", "depth", "rrf_k", "normalization")}
    default_score = score(qrels, _run(per_query, d["method"], d))
    best: dict[str, dict[str, Any]] = {}
    for method in ("rrf", "convex"):
        for p in _grid(method, grid):
            s = score(qrels, _run(per_query, method, p))
            if method not in best or s > best[method]["score"] + 1e-12:
                best[method] = {"params": fusion_params(method, p), "score": s}
    top_method = max(best, key=lambda m: best[m]["score"])
    chosen, chosen_score = best[top_method]["params"], best[top_method]["score"]
    why = (f"{top_method} ({describe_fusion(chosen)}) scored nDCG@10 {chosen_score:.4f} on the {on}, "
           f"vs {default_score:.4f} for the default ({describe_fusion(d)}), "
           f"lexical alone {singles['lexical']:.4f}, dense alone {singles['dense']:.4f}")
    verdict = ""
    if chosen_score <= default_score + 1e-12:  # a tie (a tiny corpus, every ranking perfect) is no reason
        verdict = "no better"
    elif alpha is not None:
        from semsearch.adapt.runner import _paired_p

        p = _paired_p(qrels, _run(per_query, top_method, _grid_point(chosen)), _run(per_query, d["method"], d))
        if p >= alpha:
            verdict = f"not significantly better (paired t-test p={p:.3f} >= {alpha})"
    if verdict:
        why = (f"the best grid point, {top_method} ({describe_fusion(chosen)}), scored {chosen_score:.4f} vs "
               f"{default_score:.4f} for the default ({describe_fusion(d)}), {verdict}: the default stays; "
               f"lexical alone {singles['lexical']:.4f}, dense alone {singles['dense']:.4f}")
        chosen, chosen_score = fusion_params(d["method"], _grid_point(d)), default_score
    top_channel = max(singles, key=lambda c: singles[c])
    if singles[top_channel] > chosen_score + 1e-12:
        other = "dense" if top_channel == "lexical" else "lexical"
        chosen = {**d, "method": "convex", "normalization": d.get("normalization") or "zscore",
                  "weights": {top_channel: 1.0, other: 0.0}}
        chosen_score = singles[top_channel]
        why = (f"{top_channel} alone (nDCG@10 {chosen_score:.4f}) beat every fusion on the {on} "
               f"(best {best[top_method]['score']:.4f}); hybrid searches use its "
               f"weight only ({other} weight 0)")
    logger.info("fusion: %s", why)
    return {"chosen": chosen, "score": chosen_score, "default_score": default_score, "channels": singles,
            "best": best, "why": why, "queries": len(qrels)}


def _grid_point(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"depth": p["depth"], "weights": dict(p["weights"]), "rrf_k": p.get("rrf_k") or 60,
            "normalization": p.get("normalization") or "zscore"}


def describe_fusion(p: Mapping[str, Any]) -> str:
    """Fusion settings in words: weights, RRF k or normalisation, depth (``adapt``'s reasons,
    ``semsearch info``)."""
    w = ", ".join(f"{c}={v:g}" for c, v in p["weights"].items())
    extra = f"k={p['rrf_k']}" if p["method"] == "rrf" else p.get("normalization")
    return f"{w}, {extra}, depth {p['depth']}"
