"""Choose fusion parameters on a training split (never on the split that is reported).

The channels are searched once per training query at the deepest candidate depth; each grid
point then only re-fuses those lists (truncated to its depth), so the grid is cheap.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from semsearch.eval import metrics as M
from semsearch.eval.configs import EvalConfig
from semsearch.eval.datasets import EvalDataset, Run
from semsearch.search.fusion import fuse

if TYPE_CHECKING:
    from semsearch.collection import Collection

logger = logging.getLogger(__name__)

TUNE_METRIC = "ndcg@10"
GRID: dict[str, Any] = {
    # candidates per channel; never below the run depth (100), since the Searcher raises the
    # fusion depth to k and the tuned parameters must mean the same thing at test time
    "depth": [100, 200],
    "lexical_weight": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    "rrf_k": [5, 10, 20, 40, 60, 100],
    "normalization": ["minmax", "zscore"],
}


def _grid(method: str, grid: dict[str, Any]) -> list[dict[str, Any]]:
    extra = grid["rrf_k"] if method == "rrf" else grid["normalization"]
    key = "rrf_k" if method == "rrf" else "normalization"
    return [
        {"depth": d, "weights": {"lexical": round(w, 3), "dense": round(1 - w, 3)}, key: x}
        for d, w, x in itertools.product(grid["depth"], grid["lexical_weight"], extra)
    ]


def _run(per_query: dict[str, dict[str, list[tuple[str, float]]]], method: str,
         p: dict[str, Any], k: int = 100) -> Run:
    run: Run = {}
    for qid, chans in per_query.items():
        cut = {c: lst[: p["depth"]] for c, lst in chans.items()}
        fused = fuse(cut, method=method, weights=p["weights"], rrf_k=p.get("rrf_k", 60),  # type: ignore[arg-type]
                     normalization=p.get("normalization", "minmax"))  # type: ignore[arg-type]
        run[qid] = {f.id: f.score for f in fused[:k]}
    return run


def tune_fusion(col: Collection, train: EvalDataset, grid: dict[str, Any] | None = None) -> dict[str, Any]:
    """Best parameters per fusion method on ``train`` by mean nDCG@10 (the channels of
    ``col`` searched once per query, then re-fused at every grid point).

    Returns ``{"split", "metric", "queries", "best": {method: {params, score}}, "grid":
    [{method, params, score}, ...]}``."""
    grid = grid or GRID
    qids = list(train.queries)
    texts = [train.queries[q] for q in qids]
    depth = max(grid["depth"])
    per_query: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for start in range(0, len(texts), 256):
        chunk, _ = col.channel_results(texts[start : start + 256], depth, "hybrid")
        per_query.update(zip(qids[start : start + 256], chunk, strict=True))
    table: list[dict[str, Any]] = []
    best: dict[str, dict[str, Any]] = {}
    for method in ("rrf", "convex"):
        for p in _grid(method, grid):
            score = M.means(M.per_query(train.qrels, _run(per_query, method, p), [TUNE_METRIC]))[TUNE_METRIC]
            table.append({"method": method, "params": p, "score": score})
            if method not in best or score > best[method]["score"] + 1e-12:
                best[method] = {"params": p, "score": score}
        logger.info("tuned %s on %s: %s", method, train.split, best[method])
    return {"split": train.split, "metric": TUNE_METRIC, "queries": len(qids), "best": best, "grid": table}


def tuned_configs(tuning: dict[str, Any]) -> list[EvalConfig]:
    """``hybrid-rrf-tuned`` and ``hybrid-convex-tuned`` with the parameters chosen on train."""
    out = []
    for method, b in tuning["best"].items():
        p = b["params"]
        cfg = EvalConfig(f"hybrid-{method}-tuned", "hybrid", fusion=method, weights=p["weights"],
                         depth=p["depth"], rrf_k=p.get("rrf_k"), normalization=p.get("normalization"))
        out.append(replace(cfg, origin=f"tuned on {tuning['split']} ({tuning['metric']} {b['score']:.4f})"))
    return out
