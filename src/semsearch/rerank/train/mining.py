"""Training examples for the reranker: pseudo-queries mined from an indexed corpus (stage 1),
judged BEIR qrels (stage 2) and users' weak pairs, each with hard negatives from the engine's
own BM25 and dense retrieval and false-negative filtering."""

from __future__ import annotations

import itertools
import json
import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semsearch.documents import Document
from semsearch.errors import BadInput

if TYPE_CHECKING:
    from semsearch.collection import Collection

logger = logging.getLogger(__name__)

#: a sentence ends at . ! ? followed by whitespace and a capital or digit, or directly by a
#: capitalised word after a lower-case letter or digit ("volume.Integral"): SciFact's abstracts
#: join their sentences without a space, which left 91% of the mined queries titles
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])|(?<=[a-z0-9)][.!?])(?=[A-Z][a-z])")


@dataclass
class Example:
    """One training query: its positives and hard negatives (document ids), and for mined
    pseudo-queries the positive's text with the query removed from it (``positive_docs``)."""

    qid: str
    query: str
    positives: list[str]
    negatives: list[str] = field(default_factory=list)
    positive_docs: dict[str, Document] = field(default_factory=dict)


def pseudo_query(
    doc: Document, rng: random.Random, *, min_words: int = 4, max_words: int = 40
) -> tuple[str, Document] | None:
    """A pseudo-query for ``doc`` and the positive it should retrieve.

    Half the time the title (the positive is then the text alone), otherwise one sentence of
    the text (the positive is the document without that sentence: an inverse-cloze task, so
    the model cannot win by string matching)."""
    sentences = _SENTENCE.split(doc.text.strip())
    usable = [i for i, s in enumerate(sentences) if min_words <= len(s.split()) <= max_words]
    use_title = min_words <= len(doc.title.split()) <= max_words and (rng.random() < 0.5 or len(sentences) < 3 or not usable)
    if use_title:
        return doc.title, Document(id=doc.id, title="", text=doc.text)
    if len(sentences) < 3 or not usable:
        return None
    i = rng.choice(usable)
    rest = " ".join(s for j, s in enumerate(sentences) if j != i)
    return sentences[i], Document(id=doc.id, title=doc.title, text=rest)


class NegativeMiner:
    """Hard negatives from the collection's lexical and dense channels.

    A candidate is dropped when it is a known positive, or when the dense similarity of the
    query to it is at least ``fn_ratio`` times the similarity to the positive (likely an
    unlabelled relevant document: the false-negative filter; ``fn_ratio=None`` turns it off)."""

    def __init__(self, col: Collection, *, pool: int = 30, fn_ratio: float | None = 0.95, seed: int = 0) -> None:
        self.col = col
        self.pool = pool
        self.fn_ratio = fn_ratio
        self.rng = random.Random(seed)
        self.dropped_false_negatives = 0
        self.dense = "dense" in col.channels

    def _dense_sims(self, queries: Sequence[str], ids: list[list[str]]) -> list[np.ndarray] | None:
        if not self.dense or self.fn_ratio is None:
            return None
        qv = self.col.encoder.encode(list(queries))
        flat = sorted({d for row in ids for d in row})
        mat = self.col.vectors(flat, "dense")
        pos = {d: i for i, d in enumerate(flat)}
        return [mat[[pos[d] for d in row]] @ qv[i] if row else np.zeros(0) for i, row in enumerate(ids)]

    def mine(self, examples: list[Example], n_negatives: int, *, batch: int = 128) -> list[Example]:
        modes = ["lexical", "dense"] if self.dense else ["lexical"]
        mode = "hybrid" if len(modes) == 2 else modes[0]
        for start in range(0, len(examples), batch):
            chunk = examples[start : start + batch]
            per_query, _ = self.col.channel_results([e.query for e in chunk], self.pool, mode)
            pools: list[list[str]] = []
            for e, channels in zip(chunk, per_query, strict=True):
                seen: dict[str, None] = {}
                lists = [channels.get(c, []) for c in modes]
                for ranked in itertools.zip_longest(*lists):  # interleave the channels
                    for doc_id, _ in filter(None, ranked):
                        if doc_id not in e.positives:
                            seen.setdefault(doc_id)
                pools.append(list(seen))
            sims = self._dense_sims([e.query for e in chunk], [e.positives + p for e, p in zip(chunk, pools, strict=True)])
            for i, (e, cands) in enumerate(zip(chunk, pools, strict=True)):
                if sims is not None and cands:
                    s = sims[i]
                    threshold = float(self.fn_ratio or 0) * float(s[: len(e.positives)].min())
                    keep = [d for d, v in zip(cands, s[len(e.positives) :], strict=True) if v < threshold]
                    self.dropped_false_negatives += len(cands) - len(keep)
                    cands = keep
                explicit = [d for d in e.negatives if d not in e.positives]
                cands = [d for d in cands if d not in explicit]
                k = min(n_negatives, len(cands))
                e.negatives = explicit + (self.rng.sample(cands, k) if k else [])
        return examples


def mine_pseudo_queries(docs: Iterable[Document], *, sample: int, seed: int = 0) -> list[Example]:
    """Stage-1 queries: up to ``sample`` documents drawn at random, one pseudo-query each."""
    rng = random.Random(seed)
    pool = [d for d in docs if d.text.strip()]
    rng.shuffle(pool)
    out: list[Example] = []
    for d in pool:
        made = pseudo_query(d, rng)
        if made is None:
            continue
        q, positive = made
        out.append(Example(qid=f"pq-{d.id}", query=q, positives=[d.id], positive_docs={d.id: positive}))
        if len(out) >= sample:
            break
    return out


def read_qrels(queries_path: Path, qrels_path: Path) -> list[Example]:
    """Judged examples from BEIR ``queries.jsonl`` and a ``query-id corpus-id score`` TSV
    (score > 0 is relevant)."""
    from semsearch.eval.datasets import read_beir_queries
    from semsearch.eval.datasets import read_qrels as read_judgements

    texts = read_beir_queries(Path(queries_path))
    rel: dict[str, list[str]] = {}
    for qid, docs in read_judgements(Path(qrels_path)).items():
        positives = [d for d, score in docs.items() if score > 0]
        if positives:
            rel[qid] = positives
    missing = [q for q in rel if q not in texts]
    if missing:
        raise BadInput(f"qrels {qrels_path} name {len(missing)} queries not in {queries_path}, e.g. {missing[0]!r}")
    return [Example(qid=q, query=texts[q], positives=ids) for q, ids in rel.items()]


def read_weak_pairs(path: Path) -> list[Example]:
    """A user's weak pairs, JSONL lines ``{"query": ..., "doc_id": ..., "label": 1}`` (clicks,
    say). Label > 0 pairs are positives; label 0 pairs are added as negatives."""
    if not Path(path).exists():
        raise BadInput(f"weak pairs file {path} does not exist")
    by_query: dict[str, Example] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                q, doc_id, label = str(obj["query"]), str(obj["doc_id"]), float(obj.get("label", 1))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise BadInput(f"weak pairs {path} line {n}: expected {{'query', 'doc_id', 'label'}} ({e})") from e
            ex = by_query.setdefault(q, Example(qid=f"weak-{len(by_query)}", query=q, positives=[]))
            (ex.positives if label > 0 else ex.negatives).append(doc_id)
    return [e for e in by_query.values() if e.positives]


def split_dev(examples: list[Example], fraction: float, *, max_dev: int, seed: int) -> tuple[list[Example], list[Example]]:
    """A held-out dev split of whole queries."""
    rng = random.Random(seed)
    order = list(examples)
    rng.shuffle(order)
    n_dev = min(max_dev, max(1, int(len(order) * fraction))) if len(order) > 1 else 0
    return order[n_dev:], order[:n_dev]
