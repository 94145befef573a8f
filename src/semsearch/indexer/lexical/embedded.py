"""Embedded BM25 backend on bm25s (no server).

bm25s stores the BM25 index as sparse matrices with scores precomputed at index time, which
makes queries very fast but means the matrices cannot be patched in place: an upsert or a
delete marks the index dirty, and :meth:`commit` rebuilds the matrices of every field from
the stored token lists (no re-tokenisation). The rebuild takes about 1 s per 20k documents
on 2 cores; the CLI says when it happens and how long it took.

Files: ``fields.json`` (ids and per-doc metadata), ``tokens.jsonl`` (token lists per field,
used for rebuilds), and one bm25s directory per field (``bm25_title/``, ``bm25_text/``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.config import LexicalSettings
from semsearch.documents import Document
from semsearch.errors import BadInput, IndexIncompatible
from semsearch.filters import check_types, parse_filter
from semsearch.indexer.lexical.base import Filters
from semsearch.indexer.segments.meta import MetadataIndex

logger = logging.getLogger(__name__)

#: ``all`` is the title and the text together (like Elasticsearch's ``copy_to``): BM25 over
#: one field is what BEIR-style evaluations use and scores best on SciFact; ``title`` and
#: ``text`` are there for per-field boosts.
FIELDS = ("all", "title", "text")
#: the fields whose token lists are stored; ``all`` is their concatenation (the analyzer
#: works token by token, so analysing "title text" gives title tokens + text tokens)
STORED = ("title", "text")


class Analyzer:
    """Lowercase, split on word characters, drop English stopwords, Snowball-stem: the same
    analysis bm25s's own tokenizer does, applied identically to documents and queries."""

    def __init__(self, stemmer: str = "english", stopwords: str = "en") -> None:
        import bm25s  # noqa: F401 - fail early when missing
        import Stemmer

        self._stemmer = Stemmer.Stemmer(stemmer) if stemmer != "none" else None
        self._stopwords = stopwords if stopwords != "none" else None

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        import bm25s

        if not texts:
            return []
        toks = bm25s.tokenize(
            list(texts),
            stopwords=self._stopwords or [],
            stemmer=self._stemmer.stemWords if self._stemmer else None,
            return_ids=False,
            show_progress=False,
        )
        return [list(t) for t in toks]


class EmbeddedLexicalIndex:
    backend = "embedded"

    def __init__(self, settings: LexicalSettings | None = None) -> None:
        self.settings = settings or LexicalSettings()
        emb = self.settings.embedded
        self.analyzer = Analyzer(emb.stemmer, emb.stopwords)
        self._ids: list[str] = []
        self._meta: list[dict[str, Any]] = []
        self._tokens: dict[str, list[list[str]]] | None = {f: [] for f in STORED}
        self._pos: dict[str, int] = {}
        self._models: dict[str, Any] = {}
        self._metaidx: MetadataIndex | None = None  # built on the first filtered search
        self._dirty = False
        self._path: Path | None = None

    # -- writes -------------------------------------------------------------------------
    def _ensure_tokens(self) -> dict[str, list[list[str]]]:
        if self._tokens is None:
            assert self._path is not None
            tokens: dict[str, list[list[str]]] = {f: [] for f in STORED}
            with open(self._path / "tokens.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    for f, toks in zip(STORED, row):
                        tokens[f].append(toks)
            self._tokens = tokens
        return self._tokens

    def upsert(self, docs: Sequence[Document]) -> None:
        if not docs:
            return
        tokens = self._ensure_tokens()
        analyzed = {f: self.analyzer([getattr(d, f) for d in docs]) for f in STORED}
        for i, d in enumerate(docs):
            pos = self._pos.get(d.id)
            if pos is None:
                self._pos[d.id] = len(self._ids)
                self._ids.append(d.id)
                self._meta.append(dict(d.metadata))
                for f in STORED:
                    tokens[f].append(analyzed[f][i])
            else:
                self._meta[pos] = dict(d.metadata)
                for f in STORED:
                    tokens[f][pos] = analyzed[f][i]
        self._dirty = True
        self._metaidx = None

    def delete(self, ids: Sequence[str]) -> int:
        drop = {self._pos[i] for i in ids if i in self._pos}
        if not drop:
            return 0
        tokens = self._ensure_tokens()
        keep = [p for p in range(len(self._ids)) if p not in drop]
        self._ids = [self._ids[p] for p in keep]
        self._meta = [self._meta[p] for p in keep]
        for f in STORED:
            tokens[f] = [tokens[f][p] for p in keep]
        self._pos = {d: p for p, d in enumerate(self._ids)}
        self._dirty = True
        self._metaidx = None
        return len(drop)

    def commit(self) -> dict[str, Any]:
        if not self._dirty:
            return {"rebuilt": False, "docs": len(self._ids)}
        t0 = time.perf_counter()
        tokens = self._ensure_tokens()
        fields = {**tokens, "all": [a + b for a, b in zip(tokens["title"], tokens["text"])]}
        built = {f: self._build(fields[f]) for f in FIELDS}
        self._models = {f: m for f, m in built.items() if m is not None}
        self._dirty = False
        took = time.perf_counter() - t0
        logger.info("rebuilt bm25s matrices for %d docs in %.2fs", len(self._ids), took)
        return {"rebuilt": True, "docs": len(self._ids), "seconds": took}

    def _build(self, corpus_tokens: list[list[str]]):  # noqa: ANN202
        import bm25s

        emb = self.settings.embedded
        if not any(corpus_tokens):
            return None  # e.g. no document has a title: the field scores nothing
        model = bm25s.BM25(k1=emb.k1, b=emb.b, method=emb.method)
        model.index(corpus_tokens, show_progress=False)
        return model

    # -- reads --------------------------------------------------------------------------
    def count(self) -> int:
        return len(self._ids)

    def _field_scores(self, field: str, qtokens: list[str]) -> np.ndarray | None:
        model = self._models.get(field)
        if model is None or not qtokens:
            return None
        ids = [model.vocab_dict[t] for t in qtokens if t in model.vocab_dict]
        if not ids:
            return None
        return model.get_scores_from_ids(ids)

    def search(
        self,
        query: str,
        k: int,
        *,
        boosts: dict[str, float] | None = None,
        filters: Filters | None = None,
    ) -> list[tuple[str, float]]:
        return self.search_many([query], k, boosts=boosts, filters=filters)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int,
        *,
        boosts: dict[str, float] | None = None,
        filters: Filters | None = None,
    ) -> list[list[tuple[str, float]]]:
        if k < 1:
            raise BadInput(f"k must be >= 1, got {k}")
        if self._dirty:
            self.commit()
        boosts = boosts or self.settings.boosts
        unknown = set(boosts) - set(FIELDS)
        if unknown:
            raise BadInput(f"unknown boost field(s) {sorted(unknown)}; fields are {FIELDS}")
        mask = self._filter_mask(filters)
        out: list[list[tuple[str, float]]] = []
        for qtokens in self.analyzer(list(queries)):
            total: np.ndarray | None = None
            for field, weight in boosts.items():
                if weight <= 0:
                    continue
                s = self._field_scores(field, qtokens)
                if s is None:
                    continue
                total = s * weight if total is None else total + s * weight
            out.append(self._top(total, k, mask))
        return out

    def _filter_mask(self, filters: Filters | None) -> np.ndarray | None:
        flt = parse_filter(filters)
        if flt is None:
            return None
        if self._metaidx is None:
            self._metaidx = MetadataIndex.build(self._meta)
        check_types(flt, self._metaidx.field_types())
        return self._metaidx.mask(flt)

    def _top(self, scores: np.ndarray | None, k: int, mask: np.ndarray | None):  # noqa: ANN202
        if scores is None:
            return []
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        n = min(k, int(np.count_nonzero(scores > 0)))
        if n == 0:
            return []
        idx = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        idx = idx[np.lexsort((idx, -scores[idx]))][:n]
        return [(self._ids[i], float(scores[i])) for i in idx]

    # -- persistence --------------------------------------------------------------------
    def save(self, path: Path) -> None:
        if self._dirty:
            self.commit()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tokens = self._ensure_tokens()
        with open(path / "fields.json", "w", encoding="utf-8") as fh:
            json.dump({"backend": self.backend, "ids": self._ids, "metadata": self._meta}, fh)
        with open(path / "tokens.jsonl", "w", encoding="utf-8") as fh:
            for p in range(len(self._ids)):
                fh.write(json.dumps([tokens[f][p] for f in STORED]) + "\n")
        for f, model in self._models.items():
            if model is not None and len(self._ids):
                model.save(str(path / f"bm25_{f}"), show_progress=False)

    @classmethod
    def open(cls, path: Path, settings: LexicalSettings) -> EmbeddedLexicalIndex:
        import bm25s

        path = Path(path)
        self = cls(settings)
        try:
            with open(path / "fields.json", encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            raise IndexIncompatible(f"embedded lexical index at {path} is unreadable: {e}") from e
        self._ids = data["ids"]
        self._meta = data["metadata"]
        self._pos = {d: p for p, d in enumerate(self._ids)}
        self._tokens = None  # loaded on the first write
        self._path = path
        for f in FIELDS:
            if (path / f"bm25_{f}").exists():
                self._models[f] = bm25s.BM25.load(
                    str(path / f"bm25_{f}"), mmap=False, show_progress=False
                )
        return self

    def close(self) -> None:
        self._models = {}
