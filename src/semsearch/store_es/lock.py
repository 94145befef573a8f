"""A lock that every process writing one store index's manifest shares, kept in Elasticsearch.

The manifest lives in the index mapping's ``_meta``, and ``put_mapping`` replaces ``_meta``
whole: two replicas that each read it, add their channel (one CLIP, the other the hashes, or
one deciding ``--no-clip`` while the other decides CLIP) and write it back would lose one of
the two. Elasticsearch has no conditional mapping update, so the read-change-write runs under
this lock: one document per alias in the index :data:`LOCK_INDEX`, taken with
``op_type=create`` (409 when held) and given back with a delete conditional on its
``_seq_no``/``_primary_term`` (optimistic concurrency control), so that a holder never deletes
a lock that has since passed to someone else.

A holder that died (kill -9) leaves its document behind; it expires after ``ttl`` seconds
and the next waiter takes it over, again conditionally, so only one of several waiters does.
The lock is held only while a manifest changes: the first write of a new channel, and a
rebuild between blocking writes and swapping the alias.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from semsearch.errors import BackendUnavailable
from semsearch.indexer.es_common import EsConnection

logger = logging.getLogger(__name__)

#: the index of the lock documents (one per store alias, id = the alias)
LOCK_INDEX = "semsearch-locks"


class ManifestLock:
    """``with lock.held(): ...`` -- exclusive across every process and machine that uses the
    same cluster and alias."""

    def __init__(self, conn: EsConnection, alias: str, *, ttl: float = 120.0, wait: float = 150.0) -> None:
        self.conn = conn
        self.alias = alias
        self.ttl = ttl
        self.wait = wait
        self._index_ready = False

    @contextmanager
    def held(self) -> Iterator[None]:
        version = self._acquire()
        try:
            yield
        finally:
            self._release(version)

    def _ensure_index(self) -> None:
        if self._index_ready:
            return
        body = {"settings": {"number_of_shards": 1, "auto_expand_replicas": "0-1"},
                "mappings": {"dynamic": False, "properties": {"expires": {"type": "double"}}}}
        # 400 resource_already_exists_exception: made by another process, as wanted
        self.conn.call(f"create index {LOCK_INDEX}", lambda c: c.options(ignore_status=400).indices.create(
            index=LOCK_INDEX, **body))
        self._index_ready = True

    def _acquire(self) -> tuple[int, int]:
        self._ensure_index()
        deadline = time.monotonic() + self.wait
        delay = 0.02
        while True:
            doc = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                   "expires": time.time() + self.ttl}
            got = self.conn.call(f"take the manifest lock of {self.alias}", lambda c, doc=doc: c.options(
                ignore_status=409).create(index=LOCK_INDEX, id=self.alias, document=doc))
            if got.meta.status in (200, 201):
                return int(got["_seq_no"]), int(got["_primary_term"])
            held = self._holder()
            if held is not None and held["_source"].get("expires", 0) < time.time():
                taken = self._take_over(held, doc)
                if taken is not None:
                    return taken
            if time.monotonic() > deadline:
                who = held["_source"] if held is not None else {}
                raise BackendUnavailable(
                    f"Elasticsearch at {self.conn.url}: the manifest lock of {self.alias!r} "
                    f"(document {self.alias!r} in index {LOCK_INDEX!r}) is held by pid "
                    f"{who.get('pid')} on {who.get('host')} and was not given back within "
                    f"{self.wait:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _holder(self) -> dict[str, Any] | None:
        got = self.conn.call(f"read the manifest lock of {self.alias}", lambda c: c.options(
            ignore_status=404).get(index=LOCK_INDEX, id=self.alias))
        return dict(got) if got.meta.status == 200 and got.get("found") else None

    def _take_over(self, held: dict[str, Any], doc: dict[str, Any]) -> tuple[int, int] | None:
        """Replace an expired lock document, unless another waiter replaced it first."""
        got = self.conn.call(f"take over the manifest lock of {self.alias}", lambda c: c.options(
            ignore_status=409).index(index=LOCK_INDEX, id=self.alias, document=doc,
                                     if_seq_no=held["_seq_no"], if_primary_term=held["_primary_term"]))
        if got.meta.status not in (200, 201):
            return None
        src = held["_source"]
        logger.warning("took over the expired manifest lock of %s from pid %s on %s",
                       self.alias, src.get("pid"), src.get("host"))
        return int(got["_seq_no"]), int(got["_primary_term"])

    def _release(self, version: tuple[int, int]) -> None:
        seq_no, term = version
        # 409: it expired and was taken over; 404: it expired and was released by the taker
        got = self.conn.call(f"give back the manifest lock of {self.alias}", lambda c: c.options(
            ignore_status=(404, 409)).delete(index=LOCK_INDEX, id=self.alias,
                                             if_seq_no=seq_no, if_primary_term=term))
        if got.meta.status != 200:
            logger.warning("the manifest lock of %s had expired before it was given back "
                           "(held over %.0f s)", self.alias, self.ttl)
