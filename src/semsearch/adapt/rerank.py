"""The reranker step of ``semsearch adapt``: train stage 1 on the mined pairs (and stage 2 on
judged qrels when given), as ``train-reranker`` does, within a pair/step budget; then rerank
the chosen fusion's top-N of the held-out queries (informative judge) at several blends and
turn reranking on only if the best blend beats no reranking significantly (:func:`rerank_decision`)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
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
    from semsearch.rerank.train.stages import StageConfig
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
        cards += _train(cfg, lambda: _cap(train, ad.opt.reranker_max_pairs, cfg.negatives), small_dev, col,
                        say=ad.say)
        final = cfg.out
        if judged_train:
            cfg2 = dataclasses.replace(cfg, stage=2, out=out / "stage2", base=str(cfg.out),
                                       negatives=ad.opt.reranker_stage2_negatives, epochs=ad.opt.reranker_stage2_epochs)
            jdev = ad.examples("judged_dev")[:50] or small_dev
            cards += _train(cfg2, lambda: with_negatives(col, judged_train, cfg2.negatives, seed=ad.opt.seed),
                            jdev, col, retrained=bool(cards), say=ad.say)
            final = cfg2.out
        # scored as searches will score it (the configured backend: on CPU, ONNX int8 by default)
        reranker = CrossEncoderReranker(ad.settings.rerank.model_copy(update={"model": str(final)}))
        fusion = ad.state["fusion"]["result"]["chosen"]
        judged = ad.examples("judged_dev")
        examples, per, copy = (judged, ad._per_query(True), ad.copy(False, [])) if judged else (dev, ad._per_query(), ad.copy(True))
        qrels = H.qrels_of(examples)
        fused_run = _run(per, fusion["method"], fusion)
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
    decision = rerank_decision(qrels, fused_run, scores, min_gain=ad.opt.min_gain, alpha=ad.opt.keep_alpha)
    from semsearch.adapt.runner import _save_json

    _save_json(ad.work / "run-rerank.json", scores[decision["blend"]])
    return {**decision, "model": str(final.relative_to(ad.path)), "depth": DEPTH,
            "cards": [{k: c.get(k) for k in ("stage", "counts", "metrics", "train_seconds")} for c in cards]}


def _train(cfg: Any, examples: Callable[[], list], dev: list, col: Any, *, retrained: bool = False,
           say: Callable[[str], None] | None = None) -> list[dict]:
    """Train the stage into ``cfg.out`` unless a finished one trained as asked (and on an
    unchanged base: ``retrained`` says the stage before it ran again) is there; [its card]
    or []."""
    from semsearch.rerank.train.stages import train_stage, trained_as

    if trained_as(cfg) and not retrained:
        return []
    shutil.rmtree(cfg.out, ignore_errors=True)  # another recipe's model and checkpoints
    return [train_stage(cfg, examples(), dev, col, say=say)]


def with_negatives(col: Any, examples: list, n: int, *, seed: int = 0) -> list:
    """Copies of ``examples`` with ``n`` hard negatives each (fewer where the index has no
    more): the first ``n`` mined before are kept and the rest are drawn as the miner draws them
    (no false-negative filter: the queries are judged)."""
    from semsearch.rerank.train.mining import NegativeMiner

    out = [dataclasses.replace(e, negatives=e.negatives[:n]) for e in examples]
    by_missing: dict[int, list] = {}
    for e in out:
        if len(e.negatives) < n:
            by_missing.setdefault(n - len(e.negatives), []).append(e)
    miner = NegativeMiner(col, fn_ratio=None, seed=seed)
    for missing, group in sorted(by_missing.items()):
        miner.mine(group, missing)
    return out


def rerank_decision(qrels: dict[str, Any], no_rerank: dict[str, Any], by_blend_runs: dict[float, dict[str, Any]],
                    *, min_gain: float = 0.0, alpha: float = 0.05) -> dict[str, Any]:
    """Whether searches rerank, and at which blend: the blend with the best held-out
    nDCG@10, turned on only when it beats no reranking by more than ``min_gain`` with paired
    t-test p below ``alpha`` (the rule that keeps a fine-tuned encoder or a fusion choice:
    reranking costs a cross-encoder pass per query, and the best of several blends looks
    better than it is on the queries that chose it)."""
    from semsearch.adapt.runner import _paired_p, keep_decision

    base = score(qrels, no_rerank)
    by_blend = {b: score(qrels, run) for b, run in by_blend_runs.items()}
    best = max(by_blend, key=lambda b: by_blend[b])
    p = _paired_p(qrels, no_rerank, by_blend_runs[best])
    enabled = keep_decision(base, by_blend[best], p, min_gain=min_gain, alpha=alpha)["kept"]
    why = (f"held-out nDCG@10 without reranking {base:.4f}; with reranking "
           + ", ".join(f"blend {b:g}: {v:.4f}" for b, v in by_blend.items())
           + f"; best blend {best:g}, paired t-test p={p:.3f}"
           + ("; enabled" if enabled else
              f"; {'not significantly ' if by_blend[best] > base else 'not '}better, reranking stays off"))
    return {"enabled": enabled, "blend": best, "no_rerank": base, "p_value": p,
            "by_blend": {str(b): v for b, v in by_blend.items()}, "why": why}


class _Cached:
    """A reranker answering from scores already computed for one query's candidates."""

    def __init__(self, by_id: dict[str, float]) -> None:
        self.by_id = by_id

    def score(self, query: str, docs: list) -> list[float]:
        return [self.by_id[d.id] for d in docs]
