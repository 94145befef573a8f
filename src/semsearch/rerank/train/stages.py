"""One fine-tuning stage on ``CrossEncoderTrainer``: pairs built with the shared field layout,
binary cross-entropy over (positive, hard negatives), reranking nDCG@10 of the engine's own
top-N on a held-out dev split, early stopping, the best checkpoint saved with a model card."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semsearch.collection import Collection, SearchRequest
from semsearch.documents import Document
from semsearch.errors import BadInput
from semsearch.rerank.fields import FieldLayout
from semsearch.rerank.train.mining import Example

logger = logging.getLogger(__name__)

METRIC = "ndcg@10"
#: stage 2's recipe on judged qrels, chosen on held-out train-dev queries (docs/rerank.md):
#: 7 hard negatives per query (dev 0.689 against 0.667 with 3), 3 epochs (0.704 with 5, but
#: past the hour on 2 cores). ``train-reranker`` and ``adapt`` both start from it.
STAGE2_NEGATIVES = 7
STAGE2_EPOCHS = 3.0


@dataclass
class StageConfig:
    stage: int
    out: Path
    #: model to start from: a directory or hub name; None = the MiniLM backbone, fresh head
    base: str | None = None
    max_length: int = 128
    negatives: int = 3
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 4e-5
    warmup_ratio: float = 0.1
    #: evaluate and checkpoint every this many steps (None: 4 times per stage)
    eval_steps: int | None = None
    patience: int = 3
    dev_depth: int = 20
    seed: int = 12
    fields: Sequence[str] = ("title", "text")
    separator: str | None = None
    max_steps: int = -1
    data: dict[str, Any] = field(default_factory=dict)


def training_pairs(
    examples: Sequence[Example], docs: dict[str, Document], layout: FieldLayout
) -> dict[str, list]:
    """Columns ``query``, ``document``, ``label`` for BinaryCrossEntropyLoss."""
    cols: dict[str, list] = {"query": [], "document": [], "label": []}
    for e in examples:
        try:
            budget = layout.query_budget(e.query)
        except BadInput as err:
            logger.warning("skipping training query %s: %s", e.qid, err)
            continue
        for ids, label in ((e.positives, 1.0), (e.negatives, 0.0)):
            for d in ids:
                doc = e.positive_docs.get(d) or docs.get(d)
                if doc is None:
                    continue
                cols["query"].append(e.query)
                cols["document"].append(layout.document_text(doc, budget))
                cols["label"].append(label)
    if not cols["label"] or 1.0 not in cols["label"]:
        raise BadInput("no training pairs: every positive is missing from the index")
    return cols


def dev_samples(
    dev: Sequence[Example], col: Collection, docs: Callable[[list[str]], dict[str, Document]],
    layout: FieldLayout, depth: int,
) -> list[dict[str, Any]]:
    """Reranking samples: the engine's own top-``depth`` for each dev query (its default
    mode, never reranked: an index may already rerank with the model being retrained),
    positives marked; positives missing from the candidates count as misses."""
    results = col.search_batch([SearchRequest(query=e.query, k=depth, with_documents=False, rerank=False)
                                for e in dev])
    samples = []
    for e, res in zip(dev, results, strict=True):
        try:
            budget = layout.query_budget(e.query)
        except BadInput as err:
            logger.warning("skipping dev query %s: %s", e.qid, err)
            continue
        ids = [h.id for h in res.hits]
        got = docs(ids + e.positives)
        got.update(e.positive_docs)
        text = {d: layout.document_text(got[d], budget) for d in ids + e.positives if d in got}
        samples.append({
            "query": e.query,
            "positive": [text[d] for d in e.positives if d in text],
            "documents": [text[d] for d in ids if d in text],
        })
    return samples


def hyperparameters(cfg: StageConfig) -> dict[str, Any]:
    """What the model card records of how a stage was trained (JSON types)."""
    hp = {k: v for k, v in asdict(cfg).items() if k not in ("out", "data", "base")}
    hp["fields"] = list(cfg.fields)
    return hp


def trained_as(cfg: StageConfig) -> bool:
    """Whether ``cfg.out`` holds a finished stage trained with these hyperparameters (one
    trained otherwise, or interrupted, is not reused)."""
    card = cfg.out / "training.json"
    if not card.exists():
        return False
    return json.loads(card.read_text(encoding="utf-8")).get("hyperparameters") == hyperparameters(cfg)


def _card(cfg: StageConfig, counts: dict[str, int], metrics: dict[str, float], seconds: float) -> dict[str, Any]:
    from semsearch.rerank.cross_encoder import base_model_path

    hp = hyperparameters(cfg)
    return {
        "stage": cfg.stage,
        "base_model": cfg.base or f"{base_model_path()} (all-MiniLM-L6-v2 backbone, fresh head)",
        "data": cfg.data,
        "counts": counts,
        "hyperparameters": hp,
        "seed": cfg.seed,
        "metrics": metrics,
        "train_seconds": round(seconds, 1),
    }


def train_stage(
    cfg: StageConfig, train: Sequence[Example], dev: Sequence[Example], col: Collection, *, resume: bool = False,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train one stage on documents of ``col`` (dev candidates are its own top results); the
    best checkpoint (dev reranking nDCG@10) is saved to ``cfg.out`` with ``training.json``
    and a README model card. Returns the card."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import EarlyStoppingCallback, set_seed

    from semsearch.encoders.sbert import resolve_device
    from semsearch.encoders.trainer_log import report_progress
    from semsearch.rerank.cross_encoder import load_cross_encoder

    set_seed(cfg.seed)
    t0 = time.perf_counter()
    model = load_cross_encoder(cfg.base, device=resolve_device("auto"), max_length=cfg.max_length)
    model.max_length = cfg.max_length
    layout = FieldLayout(model.tokenizer, max_length=cfg.max_length, fields=cfg.fields, separator=cfg.separator)
    ids = sorted({d for e in train for d in (*e.positives, *e.negatives)})
    cols = training_pairs(train, col.get(ids), layout)
    n_pos = int(sum(cols["label"]))
    n_neg = len(cols["label"]) - n_pos
    train_ds = Dataset.from_dict(cols).shuffle(seed=cfg.seed)
    samples = dev_samples(dev, col, col.get, layout, cfg.dev_depth)
    evaluator = CrossEncoderRerankingEvaluator(
        samples, at_k=10, always_rerank_positives=False, name="dev", batch_size=64, write_csv=False
    )
    steps_per_epoch = max(1, -(-len(train_ds) // cfg.batch_size))
    total = cfg.max_steps if cfg.max_steps > 0 else int(steps_per_epoch * cfg.epochs)
    eval_steps = cfg.eval_steps or max(1, total // 4)
    import torch

    cuda = torch.cuda.is_available()
    args = CrossEncoderTrainingArguments(
        output_dir=str(cfg.out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=int(cfg.warmup_ratio * total),
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=f"eval_dev_{METRIC}",
        greater_is_better=True,
        logging_steps=max(1, min(25, eval_steps // 2)),
        seed=cfg.seed,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        fp16=cuda and not torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=True,
    )
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(max(1.0, n_neg / max(1, n_pos))))
    before = evaluator(model)
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=train_ds, loss=loss, evaluator=evaluator,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)],
    )
    report_progress(trainer, f"stage {cfg.stage}", say)
    resume_from = resume and any((cfg.out / "checkpoints").glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if resume_from else None)
    after = evaluator(model)
    history = [
        {k: v for k, v in row.items() if k in ("step", "loss", f"eval_dev_{METRIC}", "epoch")}
        for row in trainer.state.log_history
    ]
    metrics = {
        f"dev_{METRIC}_base_ranking": round(float(before.get(f"dev_base_{METRIC}", 0.0)), 4),
        f"dev_{METRIC}_before": round(float(before[f"dev_{METRIC}"]), 4),
        f"dev_{METRIC}_best": round(float(after[f"dev_{METRIC}"]), 4),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "steps": trainer.state.global_step,
    }
    counts = {
        "train_queries": len(train), "dev_queries": len(dev),
        "train_pairs": len(cols["label"]), "positive_pairs": n_pos, "negative_pairs": n_neg,
    }
    card = _card(cfg, counts, metrics, time.perf_counter() - t0)
    card["history"] = history
    card["dev_qids"] = [e.qid for e in dev]
    model.save_pretrained(str(cfg.out))
    (cfg.out / "training.json").write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
    _append_card(cfg.out / "README.md", card)
    logger.info("stage %s: dev nDCG@10 %s -> %s (%s)", cfg.stage, metrics[f"dev_{METRIC}_before"],
                metrics[f"dev_{METRIC}_best"], cfg.out)
    return card


def _append_card(path: Path, card: dict[str, Any]) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    keys = ("stage", "base_model", "data", "counts", "hyperparameters", "seed", "metrics", "train_seconds")
    summary = json.dumps({k: card[k] for k in keys}, indent=2, default=str)
    text += f"\n\n## semsearch training (stage {card['stage']})\n\n```json\n{summary}\n```\n"
    path.write_text(text, encoding="utf-8")
