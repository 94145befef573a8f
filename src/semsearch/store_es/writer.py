"""Bulk writes to the store index: chunks sent by ``streaming_bulk`` (429/502/503/504
retried with exponential backoff) from a few threads in parallel, and every document the
server rejects reported by id and reason -- never dropped silently.

Documents refused because their index is write-blocked by a rebuild (the ``write`` index
block that :meth:`ElasticsearchCollection.rebuild` sets while it catches up) are sent again
until the block is gone or the alias points at the new index (at most ``block_wait`` s)."""

from __future__ import annotations

import logging
import time
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


def write_blocked(item: dict[str, Any]) -> bool:
    """Whether a bulk item was refused by the index ``write`` block (``PUT <index>/_block/write``
    or ``index.blocks.write``), the one a rebuild sets: ``FORBIDDEN/8/index write (api)``.
    Other blocks (read-only, disk flood stage) are not waited for."""
    err = item.get("error")
    return (isinstance(err, dict) and err.get("type") == "cluster_block_exception"
            and "index write (api)" in str(err.get("reason")))


class BulkWriter:
    def __init__(self, conn: EsConnection, settings: StoreElasticsearchSettings) -> None:
        self.conn = conn
        self.settings = settings

    def _send(self, client: Any, chunk: list[dict[str, Any]], refresh: Any) -> BulkOutcome:
        s = self.settings
        out = BulkOutcome()
        deadline: float | None = None
        attempt = 0
        while True:
            blocked = self._send_once(client, chunk, refresh, out)
            if not blocked:
                return out
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + s.block_wait
            if now >= deadline:
                out.failures += [(i, f"{r} -- still write-blocked after {s.block_wait:g} s (a "
                                  "rebuild in progress, or one that was interrupted: lift it with "
                                  "PUT <index>/_settings {\"index.blocks.write\": false})")
                                 for i, r in blocked]
                return out
            if attempt == 0:
                logger.info("%d document(s) refused by a write block (a rebuild is catching up); "
                            "retrying for up to %g s", len(blocked), s.block_wait)
            time.sleep(min(1.0, 0.05 * 2**attempt, max(0.0, deadline - now)))
            attempt += 1
            by_id = {str(a.get("_id")): a for a in chunk}
            chunk = [by_id[i] for i, _ in blocked]

    def _send_once(self, client: Any, chunk: list[dict[str, Any]], refresh: Any,
                   out: BulkOutcome) -> list[tuple[str, str]]:
        """One ``streaming_bulk`` of ``chunk`` into ``out``; returns the ``(id, reason)`` of
        the documents refused by an index write block (not counted as failures)."""
        from elasticsearch.helpers import streaming_bulk

        s = self.settings
        blocked: list[tuple[str, str]] = []
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
            elif write_blocked(op):
                blocked.append((doc_id, item_reason(op)))
            else:
                out.failures.append((doc_id, item_reason(op)))
        return blocked

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
