"""Fine-tune the bi-encoder on mined pairs and re-encode the index with it.

Training: sentence-transformers' ``SentenceTransformerTrainer`` with
``MultipleNegativesRankingLoss`` over (pseudo-query, positive without the query span, one
mined hard negative), in-batch negatives on top. The result is kept only if it beats the
base encoder on the held-out pseudo-queries (judged by :class:`~semsearch.adapt.heldout.HeldOutCopy`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from semsearch.documents import Document
from semsearch.indexer.manifest import write_atomic
from semsearch.rerank.train.mining import Example

logger = logging.getLogger(__name__)

ADAPTED_DIR = "models/dense-adapted"


#: fewest training pairs :func:`finetune` accepts (in-batch negatives need two)
MIN_PAIRS = 2


@dataclass
class DenseTrainConfig:
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    #: tokens per text while training (documents longer than this are cut)
    max_seq_length: int = 192
    #: stop after this many optimiser steps (-1: the epochs decide)
    max_steps: int = -1
    seed: int = 12


def training_columns(examples: Sequence[Example], docs: dict[str, Document], template: str) -> dict[str, list[str]]:
    """``anchor``, ``positive``, ``negative`` columns (one row per query with a negative;
    queries without a mined negative are dropped, as the column must be complete)."""
    from semsearch.adapt.heldout import doc_text

    cols: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    for e in examples:
        pos = next((e.positive_docs.get(d) or docs.get(d) for d in e.positives if (e.positive_docs.get(d) or docs.get(d))), None)
        neg = next((docs[d] for d in e.negatives if d in docs), None)
        if pos is None or neg is None:
            continue
        cols["anchor"].append(e.query)
        cols["positive"].append(doc_text(pos, template))
        cols["negative"].append(doc_text(neg, template))
    return cols


def finetune(base: str, examples: Sequence[Example], docs: dict[str, Document], out: Path, *,
             template: str, config: DenseTrainConfig | None = None,
             say: Any = None) -> dict[str, Any]:
    """Train from ``base`` (a model folder) and save the model to ``out``; returns a card.
    ``say`` gets a line per logged step (else they are logged)."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers
    from transformers import set_seed

    from semsearch.encoders.sbert import resolve_device
    from semsearch.encoders.trainer_log import report_progress

    cfg = config or DenseTrainConfig()
    set_seed(cfg.seed)
    t0 = time.perf_counter()
    cols = training_columns(examples, docs, template)
    if len(cols["anchor"]) < MIN_PAIRS:
        from semsearch.errors import BadInput

        raise BadInput(f"too few mined pairs to fine-tune the dense encoder (need {MIN_PAIRS} or more)")
    model = SentenceTransformer(base, device=resolve_device("auto"))
    model.max_seq_length = cfg.max_seq_length
    ds = Dataset.from_dict(cols).shuffle(seed=cfg.seed)
    steps = max(1, -(-len(ds) // cfg.batch_size))
    total = cfg.max_steps if cfg.max_steps > 0 else int(steps * cfg.epochs)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out.parent / (out.name + ".checkpoints")),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=int(cfg.warmup_ratio * total),
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        logging_steps=max(1, total // 10),
        seed=cfg.seed,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds,
                                         loss=MultipleNegativesRankingLoss(model))
    report_progress(trainer, "dense", say)
    trainer.train()
    # encode at the base model's length; training used a shorter one for speed
    model.max_seq_length = SentenceTransformer(base, device="cpu").max_seq_length
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return {"base": base, "pairs": len(ds), "steps": trainer.state.global_step,
            "loss": [r["loss"] for r in trainer.state.log_history if "loss" in r],
            "config": vars(cfg), "seconds": round(time.perf_counter() - t0, 1)}


def encode_corpus(encoder: Any, docs: Sequence[Document], template: str, cache: Path | None = None,
                  *, progress: Any = None) -> np.ndarray:
    """One vector per document of ``docs``, in order (each document's first window), cached
    chunk by chunk under the folder ``cache`` (see :func:`encode_chunked`)."""
    from semsearch.adapt.heldout import doc_text

    def one(part: Sequence[Document]) -> tuple[np.ndarray, np.ndarray]:
        return encoder.encode([doc_text(d, template) for d in part]), np.ones(len(part), np.int64)

    return encode_chunked(one, docs, cache, progress=progress).vectors


def encode_passages(encoder: Any, docs: Sequence[Document], template: str, plan: Any,
                    cache: Path | None = None, *, progress: Any = None) -> list[np.ndarray]:
    """Per document of ``docs``, its passages' vectors ``(n_passages, dim)`` as ``plan``
    splits it, cached chunk by chunk under the folder ``cache``. Each matrix carries its
    passages' character spans (:class:`~semsearch.encoders.passages.PassageVectors`, cached
    with the vectors), so the store keeps them beside the new vectors."""
    from semsearch.encoders import passages as P

    def chunk(part: Sequence[Document]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cuts, per = P.encode_split(encoder, template, part, plan)
        return (np.concatenate(per), np.array([len(m) for m in per], np.int64),
                np.array([s for c in cuts for s in c], np.int64).reshape(-1, 2))

    got = encode_chunked(chunk, docs, cache, progress=progress)
    mats = got.by_document(got.vectors)
    if got.spans is None:  # a chunk cached before spans were
        return mats
    return [P.with_cuts(m, s) for m, s in zip(mats, got.by_document(got.spans))]


class Encoded(NamedTuple):
    """What :func:`encode_chunked` gives: every chunk's rows concatenated, the rows of each
    document, and each row's ``(start, end)`` character span when every chunk has them."""

    vectors: np.ndarray
    counts: np.ndarray
    spans: np.ndarray | None

    def by_document(self, rows: np.ndarray) -> list[np.ndarray]:
        """``rows`` (the vectors or the spans) cut into each document's rows."""
        return np.split(rows, np.cumsum(self.counts)[:-1]) if len(self.counts) else []


def encode_chunked(encode: Any, docs: Sequence[Document], cache: Path | None, *, chunk: int = 2048,
                   progress: Any = None) -> Encoded:
    """``encode(part) -> (vectors, rows per document[, (start, end) span per row])`` over
    ``docs`` in chunks. With ``cache`` (a folder), each chunk is saved on its own (written
    whole, then renamed, with a digest of its ids), so an interrupted run resumes at the first
    chunk not saved, and a chunk of other documents (the corpus changed) is encoded again
    instead of being used. Spans are cached with their chunk; ``spans`` is None when
    ``encode`` gives none or a chunk was cached without them (by an older version)."""
    vecs: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    spans: list[np.ndarray | None] = []
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    for c, start in enumerate(range(0, len(docs), chunk)):
        part = docs[start : start + chunk]
        digest = hashlib.sha1("\0".join(d.id for d in part).encode()).hexdigest()
        f = cache / f"part-{c:06d}.npz" if cache is not None else None
        got = _load_part(f, digest) if f is not None else None
        if got is None:
            out = encode(part)
            got = (np.asarray(out[0], np.float32), np.asarray(out[1], np.int64),
                   np.asarray(out[2], np.int64) if len(out) > 2 else None)
            if f is not None:
                _save_part(f, digest, *got)
        vecs.append(got[0])
        counts.append(got[1])
        spans.append(got[2])
        if progress:
            progress(start + len(part), len(docs))
    if not vecs:
        return Encoded(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), None)
    every = None if any(s is None for s in spans) else np.concatenate(spans)  # type: ignore[arg-type]
    return Encoded(np.concatenate(vecs), np.concatenate(counts), every)


def _load_part(f: Path, digest: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    if not f.exists():
        return None
    with np.load(f, allow_pickle=False) as z:
        if str(z["ids"]) != digest:
            return None
        return z["vectors"], z["counts"], z["spans"] if "spans" in z.files else None


def _save_part(f: Path, digest: str, vectors: np.ndarray, counts: np.ndarray, spans: np.ndarray | None) -> None:
    extra = {} if spans is None else {"spans": spans}
    write_atomic(f, lambda fh: np.savez(fh, vectors=vectors, counts=counts, ids=np.array(digest), **extra))
