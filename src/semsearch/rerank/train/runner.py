"""``semsearch train-reranker``: stage 1 (mined pseudo-queries and weak pairs), stage 2
(judged qrels), or both in sequence (stage 2 starts from stage 1's best checkpoint)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from semsearch.collection import Collection, open_directory
from semsearch.config import Settings
from semsearch.errors import BadInput
from semsearch.rerank.train.mining import (
    Example,
    NegativeMiner,
    mine_pseudo_queries,
    read_qrels,
    read_weak_pairs,
    split_dev,
)
from semsearch.rerank.train.stages import StageConfig, train_stage

logger = logging.getLogger(__name__)


def _cap(examples: list[Example], max_pairs: int | None, negatives: int) -> list[Example]:
    if not max_pairs:
        return examples
    out, n = [], 0
    for e in examples:
        n += len(e.positives) + negatives
        if n > max_pairs:
            break
        out.append(e)
    return out


def stage_examples(
    stage: int, col: Collection, cfg: StageConfig, *, sample: int, fn_ratio: float | None,
    queries: Path | None, qrels: Path | None, weak_pairs: Path | None,
) -> tuple[list[Example], dict[str, Any]]:
    if stage == 1:
        examples = mine_pseudo_queries(col.documents(), sample=sample, seed=cfg.seed)
        data: dict[str, Any] = {"source": f"pseudo-queries mined from {col.path}", "sample": sample}
        if weak_pairs:
            weak = read_weak_pairs(weak_pairs)
            examples += weak
            data["weak_pairs"] = {"path": str(weak_pairs), "queries": len(weak)}
    else:
        if not (queries and qrels):
            raise BadInput("stage 2 needs --queries and --qrels (BEIR queries.jsonl and qrels TSV)")
        examples = read_qrels(queries, qrels)
        data = {"queries": str(queries), "qrels": str(qrels)}
    miner = NegativeMiner(col, fn_ratio=fn_ratio, seed=cfg.seed)
    miner.mine(examples, cfg.negatives)
    fn_filter = (f"false-negative filter: dense similarity >= {fn_ratio} x the positive's "
                 f"({miner.dropped_false_negatives} dropped)" if fn_ratio is not None else "no false-negative filter")
    data["hard_negatives"] = (
        f"{cfg.negatives}/query sampled from the top-{miner.pool} of the lexical and dense channels; {fn_filter}"
    )
    return examples, data


def train_reranker(
    index_path: Path, out: Path, *, stage: Literal["1", "2", "both"], settings: Settings,
    config: StageConfig, stage1_sample: int = 2000, fn_ratio: float | None = 0.95,
    stage2_fn_ratio: float | None = None, stage2_epochs: float | None = None,
    stage2_negatives: int | None = None,
    queries: Path | None = None, qrels: Path | None = None, weak_pairs: Path | None = None,
    max_pairs: int | None = None, dev_fraction: float = 0.1, max_dev: int = 100,
    resume: bool = False, say: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the stage(s); each writes ``out/stage<N>/`` (model, training.json, README).

    The false-negative filter is for stage 1's mined pseudo-queries (``fn_ratio``), where
    an unlabelled relevant document is likely; stage 2's qrels are judged, and its hardest
    negatives are the ones the reranker must learn, so its filter is off unless
    ``stage2_fn_ratio`` is given (on SciFact the 0.95 filter dropped 7,114 of them and cost
    0.008 nDCG@10 on test: docs/rerank.md)."""
    stages = [1, 2] if stage == "both" else [int(stage)]
    cards = []
    base = config.base
    with open_directory(index_path, settings) as col:
        for n in stages:
            stage2 = {"epochs": stage2_epochs, "negatives": stage2_negatives} if n == 2 else {}
            cfg = dataclasses.replace(config, stage=n, out=out / f"stage{n}", base=base,
                                      **{k: v for k, v in stage2.items() if v is not None})
            examples, data = stage_examples(
                n, col, cfg, sample=stage1_sample, fn_ratio=fn_ratio if n == 1 else stage2_fn_ratio,
                queries=queries, qrels=qrels, weak_pairs=weak_pairs,
            )
            train, dev = split_dev(examples, dev_fraction, max_dev=max_dev, seed=cfg.seed)
            train = _cap(train, max_pairs, cfg.negatives)
            cfg.data = {**data, "index": str(index_path)}
            logger.info("stage %s: %s train / %s dev queries", n, len(train), len(dev))
            cards.append(train_stage(cfg, train, dev, col, resume=resume, say=say))
            base = str(cfg.out)
    return cards
