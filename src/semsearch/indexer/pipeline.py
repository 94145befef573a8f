"""Bulk indexing: read records, validate, encode in batches, store durably, then sync.

Resumable by construction: each batch is committed to the document store in one transaction
together with its vectors, and a re-run skips records whose content is already stored
unchanged. Killing the process at any point and running the same command again ends with
every record indexed exactly once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from semsearch.config import PassageSettings, Settings
from semsearch.documents import Document
from semsearch.encoders.base import TextEncoder
from semsearch.encoders.passages import PassagePlan
from semsearch.indexer.index import Index
from semsearch.indexer.readers import Record, Rejected, iter_records

logger = logging.getLogger(__name__)


class ChannelEncoder(Protocol):
    """Turns the documents a channel applies to into vectors for that channel."""

    name: str
    backend: str

    @property
    def encoder_name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def applies(self, doc: Document) -> bool: ...

    def encode(self, docs: Sequence[Document]) -> tuple[np.ndarray, list[tuple[Document, str]]]:
        """Vectors for the docs it could encode, plus ``(doc, reason)`` for those it could not
        (e.g. an unreadable image). The rows match the docs given minus the failures."""
        ...


class EncoderChannel:
    """What channels backed by one encoder share: its name (for the manifest) and dimension."""

    backend = "faiss"  # the vector backend of a new channel

    def __init__(self, encoder: Any) -> None:  # a TextEncoder or ImageEncoder
        self.encoder = encoder

    @property
    def encoder_name(self) -> str:
        return self.encoder.name

    @property
    def dim(self) -> int:
        return self.encoder.dim


#: (encoder, backend) pairs whose truncation was reported in this process
_TRUNCATION_WARNED: set[tuple[str, str]] = set()


class TextChannel(EncoderChannel):
    """The ``dense`` channel: sentence embeddings of the document's title and text; with
    ``passages`` (FAISS backend only; the Elasticsearch store splits passages itself, into a
    nested field), a long document's overlapping passages, each embedded
    (encoders/passages.py), and :meth:`encode` gives a list of per-document matrices."""

    name = "dense"

    def __init__(self, encoder: TextEncoder, template: str = "{title} {text}", backend: str = "faiss",
                 passages: PassageSettings | None = None) -> None:
        super().__init__(encoder)
        self.template = template
        self.backend = backend  # faiss or elasticsearch
        self._passages = passages if backend == "faiss" else None
        #: the passage plan in force: the index's recorded one once :meth:`declare` ran
        self.plan: PassagePlan | None = None

    def declare(self, ensure: Callable[..., Any]) -> None:
        """Declare the channel through ``ensure`` (``Index.ensure_channel`` or a wrapper) with
        the passage plan the settings ask for, then use the plan the index records."""
        from semsearch.encoders import passages as P

        wanted = P.plan_for(self._passages, self.encoder) if self._passages is not None else None
        spec = ensure(self.name, dim=self.dim, encoder=self.encoder_name, backend=self.backend,
                      passages=wanted.record() if wanted else None,
                      passages_explicit=self._passages is not None and P.explicit(self._passages))
        self.plan = P.PassagePlan.from_record(spec.passages)

    def applies(self, doc: Document) -> bool:
        return bool(doc.title.strip() or doc.text.strip())

    def text_of(self, doc: Document) -> str:
        return self.template.format(title=doc.title, text=doc.text).strip()

    def encode(self, docs: Sequence[Document]) -> tuple[Any, list[tuple[Document, str]]]:
        if self.plan is not None:
            from semsearch.encoders import passages as P

            return P.encode(self.encoder, self.template, docs, self.plan), []
        texts = [self.text_of(d) for d in docs]
        if (self.encoder_name, self.backend) not in _TRUNCATION_WARNED:
            self._warn_truncation(texts)
        return self.encoder.encode(texts), []

    def _warn_truncation(self, texts: list[str]) -> None:
        """Say once per process (and encoder) that documents are embedded from their start only."""
        from semsearch.encoders import passages as P

        n = P.count_truncated(self.encoder, texts)
        if n:
            _TRUNCATION_WARNED.add((self.encoder_name, self.backend))
            how = ("an index built with text_encoder.passages.enabled (SEMSEARCH_TEXT_ENCODER__PASSAGES__ENABLED=true,"
                   " the default) embeds them whole as passages" if self.backend == "faiss" else
                   "this Elasticsearch index keeps one vector per document (passages are split by "
                   "the FAISS channel and by a store index created with passages on)")
            logger.warning("%d of %d documents in this batch are longer than the text encoder's window "
                           "(%d word pieces): the dense channel embeds only their start; %s",
                           n, len(texts), P.window_of(self.encoder), how)


def select(mat: Any, rows: Sequence[int]) -> Any:
    """Rows of a channel's vectors: a matrix, or a list of per-document passage matrices."""
    return [mat[r] for r in rows] if isinstance(mat, list) else mat[list(rows)]


@dataclass
class IndexReport:
    read: int = 0
    indexed: int = 0
    unchanged: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    seconds: float = 0.0
    encode_seconds: float = 0.0
    sync: dict[str, Any] = field(default_factory=dict)
    merges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def docs_per_s(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "rejected": len(self.rejected),
            "seconds": round(self.seconds, 3),
            "docs_per_s": round(self.docs_per_s, 1),
            "sync": self.sync,
            "merges": self.merges,
        }


def write_errors(path: Path, rejected: Iterable[Rejected]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rejected:
            fh.write(json.dumps(r.as_dict()) + "\n")


class Pipeline:
    def __init__(
        self,
        index: Index,
        channels: Sequence[ChannelEncoder],
        settings: Settings | None = None,
        *,
        on_progress: Callable[[int], None] | None = None,
        on_phase: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """``on_progress(n)``: ``n`` more records read and encoded. ``on_phase(phase, n,
        total)``: the phases after it, ``"refresh"`` (``n`` more documents written into
        segments, of ``total``) and ``"merge"`` (``n`` more documents merged, of ``total``: the
        merged so far plus the policy's next candidates)."""
        self.index = index
        self.settings = settings or index.settings
        self.channels = list(channels)
        self.on_progress = on_progress
        self.on_phase = on_phase
        for ch in self.channels:
            if isinstance(ch, TextChannel):
                ch.declare(index.ensure_channel)
            else:
                index.ensure_channel(ch.name, dim=ch.dim, encoder=ch.encoder_name, backend=ch.backend)

    def run(self, inputs: Sequence[Path]) -> IndexReport:
        report = IndexReport()
        t0 = time.perf_counter()
        seen: dict[str, str] = {}
        batch: list[Record] = []
        size = self.settings.indexing.batch_size
        policy = self.settings.indexing.on_duplicate
        for path in inputs:
            for item in iter_records(
                Path(path),
                max_text_chars=self.settings.indexing.max_text_chars,
                image_extensions=self.settings.images.extensions,
            ):
                report.read += 1
                if isinstance(item, Rejected):
                    report.rejected.append(item)
                    continue
                where = f"{item.source}:{item.line}"
                first = seen.get(item.doc.id)
                if first is not None:
                    if policy == "reject":
                        report.rejected.append(
                            Rejected(item.source, item.line, f"duplicate id {item.doc.id!r} (first seen at {first})", item.doc.id)
                        )
                        continue
                    # policy "last": a later record replaces an earlier one still in the batch
                    batch = [r for r in batch if r.doc.id != item.doc.id]
                seen[item.doc.id] = where
                batch.append(item)
                if len(batch) >= size:
                    self._flush(batch, report)
                    batch = []
        if batch:
            self._flush(batch, report)
        report.encode_seconds = round(report.encode_seconds, 3)
        phase = self.on_phase
        report.sync = self.index.sync(None if phase is None else lambda n, total: phase("refresh", n, total))
        # documents a backend rejected at sync time (e.g. an Elasticsearch mapping conflict)
        # were taken out of the index again: report each one; a re-run retries exactly them
        for f in report.sync.get("failed", []):
            source, _, line = seen.get(f["id"], ":0").rpartition(":")
            report.rejected.append(Rejected(source, int(line or 0), f"lexical backend: {f['reason']}", f["id"]))
            report.indexed -= f["id"] in seen
        if self.settings.indexing.merge_after_load:
            merged = 0
            while True:
                if phase is not None:
                    live = {r.name: r.live for r in self.index.manifest.segments}
                    nxt = sum(live.get(n, 0) for n in self.index.merge_candidates())
                    if nxt:
                        phase("merge", 0, merged + nxt)
                m = self.index.maybe_merge()
                if m is None:
                    break
                merged += m["docs"]
                if phase is not None:
                    phase("merge", m["docs"], merged)
                report.merges.append({k: m[k] for k in ("into", "docs", "seconds")})
        report.seconds = time.perf_counter() - t0
        return report

    def _flush(self, batch: list[Record], report: IndexReport) -> None:
        docs = [r.doc for r in batch]
        stored = self.index.store.hashes([d.id for d in docs])
        todo = [r for r in batch if stored.get(r.doc.id) != r.doc.content_hash()]
        report.unchanged += len(batch) - len(todo)
        vectors: dict[str, np.ndarray] = {}
        failed: dict[str, str] = {}
        for ch in self.channels:
            targets = [r.doc for r in todo if ch.applies(r.doc) and r.doc.id not in failed]
            if not targets:
                continue
            t = time.perf_counter()
            mat, bad = ch.encode(targets)
            report.encode_seconds += time.perf_counter() - t
            for doc, reason in bad:
                failed[doc.id] = f"{ch.name}: {reason}"
            ok_ids = [d.id for d in targets if d.id not in {b.id for b, _ in bad}]
            full: Any
            if isinstance(mat, list):  # passages: a matrix per document
                full = [None] * len(todo)
            else:
                full = np.zeros((len(todo), mat.shape[1] if mat.ndim == 2 else ch.dim), dtype=mat.dtype)
            pos = {r.doc.id: i for i, r in enumerate(todo)}
            for row, doc_id in enumerate(ok_ids):
                full[pos[doc_id]] = mat[row]
            vectors[ch.name] = (full, set(ok_ids))  # type: ignore[assignment]
        keep = [r for r in todo if r.doc.id not in failed]
        for r in todo:
            if r.doc.id in failed:
                report.rejected.append(Rejected(r.source, r.line, failed[r.doc.id], r.doc.id))
        if keep:
            self._write(keep, todo, vectors)
        report.indexed += len(keep)
        if self.on_progress:
            self.on_progress(len(batch))

    def _write(self, keep: list[Record], todo: list[Record], vectors: dict[str, Any]) -> None:
        pos = {r.doc.id: i for i, r in enumerate(todo)}
        docs = [r.doc for r in keep]
        # documents with a vector in a channel are written with it; a channel that does not
        # apply to a document (e.g. an image-only record in the text channel) has no row
        groups: dict[frozenset[str], list[Document]] = {}
        for d in docs:
            chans = frozenset(n for n, (_, ok) in vectors.items() if d.id in ok)
            groups.setdefault(chans, []).append(d)
        for chans, group in groups.items():
            rows = [pos[d.id] for d in group]
            self.index.write(group, {n: select(vectors[n][0], rows) for n in chans})
