"""Pseudo-queries mined from the index and an informative judge for the held-out share.

A pseudo-query is a sentence (or the title) of a document, and that document is its
positive. Scored against the index as it is, the verbatim span is still in the positive's
indexed text, so BM25 and the encoder find it almost always (dev nDCG@10 ~0.98: nothing can
be chosen on that). :class:`HeldOutCopy` scores held-out queries against a leave-one-out copy
of the corpus instead: each held-out positive is replaced by its text *without* the query
span (title dropped for a title query, sentence dropped for a sentence query), in the
lexical index and in the dense vectors alike. Every other document is as indexed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.documents import Document
from semsearch.rerank.train.mining import Example, mine_pseudo_queries, split_dev

logger = logging.getLogger(__name__)

Channels = dict[str, list[tuple[str, float]]]


def mine_split(docs: Sequence[Document], *, sample: int, dev: int, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """``sample`` pseudo-queries (one per document drawn), ``dev`` of them held out. A corpus
    that gives fewer than ``sample`` holds out the same share of what it gives (it held out
    ``dev`` whatever was mined, and a corpus of 32 documents kept none to train on)."""
    examples = mine_pseudo_queries(docs, sample=sample, seed=seed)
    n_dev = min(dev, round(len(examples) * dev / max(1, sample)))
    return split_dev(examples, 1.0, max_dev=n_dev, seed=seed)


def save_examples(path: Path, examples: Sequence[Example]) -> None:
    rows = []
    for e in examples:
        d = asdict(e)
        d["positive_docs"] = {k: v.model_dump() if hasattr(v, "model_dump") else asdict(v) for k, v in e.positive_docs.items()}
        rows.append(d)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def load_examples(path: Path) -> list[Example]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            d["positive_docs"] = {k: Document(**v) for k, v in d.get("positive_docs", {}).items()}
            out.append(Example(**d))
    return out


def qrels_of(examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    return {e.qid: dict.fromkeys(e.positives, 1) for e in examples}


def doc_text(doc: Document, template: str) -> str:
    return template.format(title=doc.title, text=doc.text).strip()


class HeldOutCopy:
    """Channel results for held-out queries against a leave-one-out copy of the corpus
    (``informative=True``), or against the corpus as indexed (``informative=False``, the
    trivial judge, kept to show the difference).

    The lexical copy is one in-memory lexical segment with the index's analyzer and BM25
    parameters (the same scoring as the index's own segments); the dense copy is the
    documents' vectors (their passages' for a channel of passages) searched exactly (inner
    product), the same ranking as a Flat FAISS index."""

    def __init__(self, docs: Sequence[Document], dev: Sequence[Example], lexical_settings: Any,
                 *, informative: bool = True) -> None:
        from semsearch.indexer.lexical.analysis import Analyzer
        from semsearch.indexer.segments.lexical import BM25Searcher, LexicalSegment

        self.informative = informative
        self.replaced: dict[str, Document] = {}
        if informative:
            for e in dev:
                self.replaced.update(e.positive_docs)
        self.ids = [d.id for d in docs]
        self.pos = {d: i for i, d in enumerate(self.ids)}
        emb = lexical_settings.embedded
        self.analyzer = Analyzer(emb.stemmer, emb.stopwords)
        copy = [self.replaced.get(d.id, d) for d in docs]
        seg = LexicalSegment.build(self.analyzer([d.title for d in copy]), self.analyzer([d.text for d in copy]))
        self.lexical = BM25Searcher([seg], [None], emb)
        self.boosts = dict(lexical_settings.boosts)

    def dense_matrix(self, base: np.ndarray | list[np.ndarray], encoder: Any, template: str,
                     plan: Any = None) -> np.ndarray | list[np.ndarray]:
        """``base`` (rows in :attr:`ids` order: one vector per document, or for a channel of
        passages each document's ``(n_passages, dim)`` matrix) with the replaced documents
        re-encoded (split into passages by ``plan``, as the index splits them)."""
        ids = [d for d in self.replaced if d in self.pos]
        if isinstance(base, list):
            from semsearch.encoders import passages as P

            mats = list(base)
            if ids:
                for d, m in zip(ids, P.encode(encoder, template, [self.replaced[d] for d in ids], plan)):
                    mats[self.pos[d]] = np.asarray(m)
            return mats
        mat = np.array(base, dtype=np.float32, copy=True)
        if ids:
            vec = encoder.encode([doc_text(self.replaced[d], template) for d in ids])
            mat[[self.pos[d] for d in ids]] = vec
        return mat

    def dense_results(self, qv: np.ndarray, matrix: np.ndarray | list[np.ndarray], depth: int, *,
                      aggregation: str = "max", top_n: int = 3) -> list[list[tuple[str, float]]]:
        """Exact inner-product search; over passages, a document scores as the index's
        search scores it (its best passage, or the sum of its ``top_n``)."""
        owners = None
        if isinstance(matrix, list):
            from semsearch.indexer.segments.vectors import aggregate, pack_passages

            n_docs = len(matrix)
            matrix, _, owners = pack_passages(matrix, int(qv.shape[1]))
            if owners is not None:
                starts = np.searchsorted(owners, np.arange(n_docs + 1)).astype(np.int64)
                every = np.arange(len(matrix))
        out = []
        for b in range(0, len(qv), 64):  # a block of queries at a time: scores stay small
            for row in qv[b : b + 64] @ matrix.T:
                if owners is not None:
                    s, o, _ = aggregate(row, every, owners, starts, min(depth, n_docs),
                                        aggregation, top_n)
                    out.append([(self.ids[i], float(x)) for x, i in zip(s, o)])
                    continue
                k = min(depth, len(row))
                top = np.argpartition(-row, k - 1)[:k]
                top = top[np.argsort(-row[top], kind="stable")]
                out.append([(self.ids[i], float(row[i])) for i in top])
        return out

    def lexical_results(self, queries: Sequence[str], depth: int) -> list[list[tuple[str, float]]]:
        hits = self.lexical.search_many(self.analyzer(list(queries)), depth, boosts=self.boosts)
        return [[(self.ids[o], s) for _, o, s in row] for row in hits]

    def channels(self, queries: Sequence[str], qv: np.ndarray | None, matrix: np.ndarray | list[np.ndarray] | None,
                 depth: int, **aggregation: Any) -> list[Channels]:
        lex = self.lexical_results(queries, depth)
        dense = (self.dense_results(qv, matrix, depth, **aggregation)
                 if matrix is not None and qv is not None else None)
        return [{"lexical": lex[i], **({"dense": dense[i]} if dense is not None else {})} for i in range(len(queries))]

    def documents(self, ids: Sequence[str], col: Any) -> dict[str, Document]:
        """Documents as this copy holds them (for the reranker)."""
        got = col.get([d for d in ids if d not in self.replaced])
        got.update({d: self.replaced[d] for d in ids if d in self.replaced})
        return got
