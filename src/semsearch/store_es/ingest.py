"""``semsearch index`` into the Elasticsearch store: records read and validated like the
local pipeline (every rejected record reported with its file, line and reason), encoded in
batches and bulk-written; documents the server rejects are reported the same way."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from semsearch.config import Settings
from semsearch.errors import BulkIndexError
from semsearch.indexer.readers import Record, Rejected, iter_records


def ingest(col: Any, inputs: Sequence[Path], settings: Settings) -> dict[str, Any]:
    """Index every record of ``inputs`` into ``col`` (an ElasticsearchCollection)."""
    t0 = time.perf_counter()
    rejected: list[Rejected] = []
    read = indexed = 0
    seen: set[str] = set()
    batch: list[Record] = []

    def flush() -> None:
        nonlocal indexed, batch
        if not batch:
            return
        by_id = {r.doc.id: r for r in batch}
        try:
            col.upsert([r.doc for r in batch])
            indexed += len(batch)
        except BulkIndexError as e:
            for doc_id, reason in e.failures:
                r = by_id[doc_id]
                rejected.append(Rejected(r.source, r.line, f"rejected by Elasticsearch: {reason}", doc_id))
            indexed += len(batch) - len(e.failures)
        batch = []

    for path in inputs:
        for rec in iter_records(path, max_text_chars=settings.indexing.max_text_chars,
                                image_extensions=settings.images.extensions):
            read += 1
            if isinstance(rec, Rejected):
                rejected.append(rec)
                continue
            if rec.doc.id in seen or any(r.doc.id == rec.doc.id for r in batch):
                if settings.indexing.on_duplicate != "last":
                    rejected.append(Rejected(rec.source, rec.line, f"id {rec.doc.id!r} repeated in the input", rec.doc.id))
                    continue
                if any(r.doc.id == rec.doc.id for r in batch):
                    flush()  # the later record replaces the earlier one
            seen.add(rec.doc.id)
            batch.append(rec)
            if len(batch) >= settings.indexing.batch_size:
                flush()
    flush()
    col.refresh()
    secs = time.perf_counter() - t0
    return {"read": read, "indexed": indexed, "rejected": rejected, "seconds": secs,
            "docs_per_s": indexed / secs if secs else 0.0}
