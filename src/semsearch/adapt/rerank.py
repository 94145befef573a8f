"""The reranker step of ``semsearch adapt``: train stage 1 on the mined pairs (and stage 2 on
judged qrels when given), as ``train-reranker`` does, within a pair/step budget; then rerank
the chosen fusion's top-N of the held-out queries (informative judge) at several blends and
turn reranking on only if some blend beats no reranking."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from semsearch.adapt import heldout as H
from semsearch.adapt.fusion import score

logger = logging.getLogger(__name__)

BLENDS = [0.0, 0.2, 0.4, 0.6, 0.8]
DEPTH = 20
MODEL_DIR = "models/reranker"


def adapt_reranker(ad: Any) -> dict[str, Any]:
    from semsearch.eval.tune import _run
    from semsearch.rerank.apply import rerank_candidates
    from semsearch.rerank.cross_encoder import CrossEncoderReranker
    from semsearch.rerank.train.runner import _cap
    from semsearch.rerank.train.stages import StageConfig, train_stage
    from semsearch.search.fusion import Fused

    out = ad.path / MODEL_DIR
    train = ad.examples("train")
    dev = ad.examples("dev")
    judged_train = ad.examples("judged_train")
    cfg = StageConfig(stage=1, out=out / "stage1", negatives=ad.opt.negatives, max_steps=ad.opt.reranker_max_steps,
                      fields=tuple(ad.settings.rerank.fields), separator=ad.settings.rerank.separator)
    cards = []
    with ad.collection() as col:
        small_dev = dev[:50]  # checkpoint choice inside the stage; the decision is made below
        if not (cfg.out / "training.json").exists():
            cards.append(train_stage(cfg, _cap(train, ad.opt.reranker_max_pairs, cfg.negatives), small_dev, col))
        final = cfg.out
        if judged_train:
            cfg2 = dataclasses.replace(cfg, stage=2, out=out / "stage2", base=str(cfg.out), negatives=3, epochs=3.0)
            if not (cfg2.out / "training.json").exists():
                jdev = ad.examples("judged_dev")[:50] or small_dev
                cards.append(train_stage(cfg2, judged_train, jdev, col))
            final = cfg2.out
        reranker = CrossEncoderReranker(ad.settings.rerank.model_copy(update={"model": str(final), "backend": "torch"}))
        fusion = ad.state["fusion"]["result"]["chosen"]
        judged = ad.examples("judged_dev")
        examples, per, copy = (judged, ad._per_query(True), ad.copy(False, [])) if judged else (dev, ad._per_query(), ad.copy(True))
        qrels = H.qrels_of(examples)
        fused_run = _run(per, fusion["method"], fusion)
        base = score(qrels, fused_run)
        text = {e.qid: e.query for e in examples}
        scores: dict[float, dict[str, dict[str, float]]] = {b: {} for b in BLENDS}
        def get(ids: list[str]) -> dict:
            return copy.documents(ids, col)

        for qid, ranked in fused_run.items():
            fused = [Fused(d, s) for d, s in ranked.items()]
            rr = rerank_candidates(text[qid], fused, reranker, get, depth=DEPTH, blend=0.0)
            # the cross-encoder scores are the same at every blend: score once, blend from cache
            cached = _Cached({r.item.id: r.rerank["score"] for r in rr if r.rerank})
            for b in BLENDS:
                rrb = rerank_candidates(text[qid], fused, cached, get, depth=DEPTH, blend=b)
                scores[b][qid] = {r.item.id: r.score for r in rrb}
    by_blend = {b: score(qrels, scores[b]) for b in BLENDS}
    best = max(by_blend, key=lambda b: by_blend[b])
    enabled = by_blend[best] > base
    from semsearch.adapt.runner import _save_json

    _save_json(ad.work / "run-rerank.json", scores[best])
    rel = str(final.relative_to(ad.path))
    why = (f"held-out nDCG@10 without reranking {base:.4f}; with reranking "
           + ", ".join(f"blend {b:g}: {v:.4f}" for b, v in by_blend.items())
           + (f"; enabled at blend {best:g}" if enabled else "; not better, reranking stays off"))
    return {"enabled": enabled, "model": rel, "blend": best, "depth": DEPTH, "no_rerank": base,
            "by_blend": {str(b): v for b, v in by_blend.items()}, "why": why,
            "cards": [{k: c.get(k) for k in ("stage", "counts", "metrics", "train_seconds")} for c in cards]}


class _Cached:
    """A reranker answering from scores already computed for one query's candidates."""

    def __init__(self, by_id: dict[str, float]) -> None:
        self.by_id = by_id

    def score(self, query: str, docs: list) -> list[float]:
        return [self.by_id[d.id] for d in docs]
