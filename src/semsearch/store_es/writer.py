"""Bulk writes to the store index: chunks sent by ``streaming_bulk`` (429/502/503/504
retried with exponential backoff) from a few threads in parallel, and every document the
server rejects reported by id and reason -- never dropped silently."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from semsearch.config import StoreElasticsearchSettings
from semsearch.indexer.es_common import RETRY_STATUSES, EsConnection, item_reason

logger = logging.getLogger(__name__)


@dataclass
class BulkOutcome:
    """What one bulk write did: ids written (or deleted), ids absent (deletes of missing
    documents), rejected ``(id, reason)`` pairs, and the largest ``_seq_no`` seen."""

    ok: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    max_seq_no: int = -1

    def merge(self, other: BulkOutcome) -> None:
        self.ok += other.ok
        self.missing += other.missing
        self.failures += other.failures
        self.max_seq_no = max(self.max_seq_no, other.max_seq_no)


def _chunks(actions: Iterable[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(actions)
    while chunk := list(islice(it, n)):
        yield chunk


class BulkWriter:
    def __init__(self, conn: EsConnection, settings: StoreElasticsearchSettings) -> None:
        self.conn = conn
        self.settings = settings

    def _send(self, client: Any, chunk: list[dict[str, Any]], refresh: Any) -> BulkOutcome:
        from elasticsearch.helpers import streaming_bulk

        s = self.settings
        out = BulkOutcome()
        kw = {"refresh": refresh} if refresh else {}
        for ok, item in streaming_bulk(
            client, chunk, chunk_size=len(chunk), max_retries=s.max_retries,
            initial_backoff=s.initial_backoff, retry_on_status=RETRY_STATUSES,
            raise_on_error=False, raise_on_exception=True, **kw,
        ):
            ((op_type, op),) = item.items()
            doc_id = str(op.get("_id"))
            if ok:
                out.ok.append(doc_id)
                out.max_seq_no = max(out.max_seq_no, int(op.get("_seq_no", -1)))
            elif op_type == "delete" and op.get("status") == 404:
                out.missing.append(doc_id)
            else:
                out.failures.append((doc_id, item_reason(op)))
        return out

    def write(self, actions: Iterable[dict[str, Any]], what: str, *,
              refresh: Any = False) -> BulkOutcome:
        """Send ``actions`` in chunks of ``chunk_size`` on ``bulk_threads`` threads.
        ``refresh="wait_for"`` returns once every chunk is searchable."""
        s = self.settings
        total = BulkOutcome()

        def run(client: Any) -> BulkOutcome:
            chunks = _chunks(actions, s.chunk_size)
            if s.bulk_threads == 1:
                for chunk in chunks:
                    total.merge(self._send(client, chunk, refresh))
                return total
            with ThreadPoolExecutor(s.bulk_threads, thread_name_prefix="semsearch-bulk") as pool:
                # at most 2 chunks per thread in flight: bounded memory for any input size
                pending: list[Any] = []
                for chunk in chunks:
                    pending.append(pool.submit(self._send, client, chunk, refresh))
                    if len(pending) >= 2 * s.bulk_threads:
                        total.merge(pending.pop(0).result())
                for f in pending:
                    total.merge(f.result())
            return total

        out = self.conn.call(what, run)
        if out.failures:
            logger.warning("%s: %d document(s) rejected, e.g. %s", what, len(out.failures),
                           out.failures[0])
        return out
