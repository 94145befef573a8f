"""The server's view of one index: searches under a read lock, durable writes, and a sync
worker that makes acknowledged writes searchable.

The server is the index's single writer (``Index.open(..., writable=True)`` holds the
index's file lock). A write is acknowledged only after :meth:`Index.write` has committed it
to SQLite (``synchronous=FULL``), so a killed server loses nothing it acknowledged: the next
start replays the pending changes with :meth:`Index.sync`. The derived indexes (BM25, FAISS)
are changed in place by a sync, so a sync holds the write side of a readers-writer lock and
searches the read side: a search sees the index before or after a sync, never half of one.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.config import Settings
from semsearch.documents import Document, Hit, SearchResult
from semsearch.encoders.base import TextEncoder
from semsearch.errors import BackendUnavailable, BadInput, DocumentNotFound, IndexIncompatible
from semsearch.indexer.index import Index
from semsearch.search import Searcher
from semsearch.search.collapse import collapse
from semsearch.search_api.imaging import ImageSide
from semsearch.search_api.locks import RWLock

logger = logging.getLogger(__name__)


def searcher_accepts(name: str) -> bool:
    """Whether this build's :meth:`Searcher.search_batch` takes keyword ``name`` (features
    from other branches, such as reranking, are detected rather than assumed)."""
    return name in inspect.signature(Searcher.search_batch).parameters


class IndexService:
    def __init__(self, index: Index, settings: Settings, encoder: TextEncoder | None = None) -> None:
        self.index = index
        self.settings = settings
        self.rw = RWLock()
        self._writer = threading.Lock()  # store writes and syncs, one at a time
        self._synced = threading.Condition()
        self._sync_error: BaseException | None = None
        self._dirty = threading.Event()
        self._stop = False
        self.encoder = encoder or self._default_encoder()
        self.searcher = Searcher(index, settings, encoder=self.encoder)
        self.images = ImageSide(self)
        self._worker = threading.Thread(target=self._sync_loop, name="semsearch-sync", daemon=True)

    @classmethod
    def open(cls, path: Path, settings: Settings, encoder: TextEncoder | None = None) -> IndexService:
        index = Index.open(path, settings, writable=True)
        try:
            svc = cls(index, settings, encoder)
            if index.pending() or index.manifest.generation == 0:
                info = index.sync()  # apply writes acknowledged before a crash
                logger.info("startup sync applied %s changes", info["changed"] + info["deleted"])
            svc._worker.start()
            return svc
        except BaseException:
            index.close()
            raise

    def _default_encoder(self) -> TextEncoder:
        from semsearch.encoders import make_text_encoder

        enc = make_text_encoder(self.settings.text_encoder, for_queries=True)
        spec = self.index.manifest.channels.get("dense")
        if spec is not None and spec.encoder != enc.name:
            raise IndexIncompatible(
                f"index at {self.index.path} was built with text encoder {spec.encoder!r} but the "
                f"configured one is {enc.name!r}; set SEMSEARCH_TEXT_ENCODER__MODEL={spec.encoder}"
            )
        return enc

    def warm_up(self) -> None:
        """Load the text model now rather than on the first query."""
        if "dense" in self.index.manifest.channels:
            self.encoder.encode(["warm up"])

    def close(self) -> None:
        self._stop = True
        self._dirty.set()
        if self._worker.is_alive():
            self._worker.join(timeout=60)
        with self._writer:
            self.index.close()

    # -- reads --------------------------------------------------------------------------
    def search(self, queries: Sequence[str], opts: dict[str, Any]) -> list[SearchResult]:
        """Run :meth:`Searcher.search_batch` with ``opts`` plus the API's own options:
        ``collapse`` (near-duplicates, over the fused window so pages stay consistent)."""
        opts = dict(opts)
        do_collapse = opts.pop("collapse", False)
        if opts.get("rerank") and not searcher_accepts("rerank"):
            raise BadInput("reranking is not available in this build (no reranker installed)")
        for name in ("rerank", "rerank_depth"):  # passed through only when asked for
            if opts.get(name) is None or not searcher_accepts(name):
                opts.pop(name, None)
        with self.rw.read():
            if not do_collapse:
                results = self.searcher.search_batch(list(queries), **opts)
            else:
                k, offset = opts.pop("k"), opts.pop("offset", 0)
                window = min(max(opts.get("depth") or self.settings.fusion.depth, offset + k),
                             self.settings.search.max_k)
                results = self.searcher.search_batch(list(queries), k=window, offset=0,
                                                     with_documents=False, **opts)
                for res in results:
                    res.hits = self._collapse_page(res.hits, k, offset)
        for res in results:
            # a document deleted (durably) but not yet synced out of the derived indexes is
            # not returned: an acknowledged delete takes effect at once
            res.hits = [h for h in res.hits if h.document is not None]
        return results

    def _collapse_page(self, hits: list[Hit], k: int, offset: int) -> list[Hit]:
        spec = self.index.manifest.channels.get("dense")
        if spec is None:
            raise BadInput("collapsing near-duplicates needs a dense channel; this index has none")
        vecs = self.index.store.vectors([h.id for h in hits], "dense", spec.dim)
        kept = collapse(hits, vecs, self.settings.api.duplicate_threshold)
        page = kept[offset : offset + k]
        docs = self.index.get([h.id for h in page])
        for rank, h in enumerate(page, start=offset + 1):
            h.rank = rank
            h.document = docs.get(h.id)
        return page

    def get(self, doc_id: str) -> Document:
        doc = self.index.get([doc_id]).get(doc_id)
        if doc is None:
            raise DocumentNotFound(f"document {doc_id!r} is not in the index")
        return doc

    def stats(self) -> dict[str, Any]:
        with self.rw.read():
            info = self.index.info()
        info["models"] = {"text_encoder": getattr(self.encoder, "name", None)}
        rerank_settings = getattr(self.settings, "rerank", None)
        info["features"] = {
            # the Searcher takes rerank options and a cross-encoder is configured
            "rerank": searcher_accepts("rerank") and bool(getattr(rerank_settings, "model", None)),
            **self.images.features(),
        }
        info["models"]["clip"] = (info.get("channels", {}).get("image") or {}).get("encoder")
        return info

    def ready(self) -> dict[str, Any]:
        """Raises :class:`BackendUnavailable` when the index cannot answer."""
        checks: dict[str, Any] = {"index": str(self.index.path), "generation": self.index.manifest.generation}
        if not self._worker.is_alive():
            raise BackendUnavailable("the index sync worker is not running")
        ping = getattr(self.index.lexical, "ping", None)
        if ping is not None:
            ping()  # e.g. Elasticsearch: raises BackendUnavailable naming the URL
            checks["lexical"] = "reachable"
        self.index.store.count()
        return checks

    # -- writes -------------------------------------------------------------------------
    def upsert(self, docs: Sequence[Document]) -> int:
        """Encode and durably store ``docs`` (text and image documents, through the bulk
        pipeline's channels); returns the change sequence to wait for."""
        chans: dict[str, tuple[np.ndarray, list[Document]]] = {}
        if "dense" in self.index.manifest.channels:
            from semsearch.indexer.pipeline import TextChannel

            channel = TextChannel(self.encoder, self.settings.text_encoder.doc_template)
            with_text = [d for d in docs if channel.applies(d)]
            if with_text:
                chans["dense"] = (channel.encode(with_text)[0], with_text)
        chans.update(self.images.encode(docs))
        rows = {name: {d.id: i for i, d in enumerate(ds)} for name, (_, ds) in chans.items()}
        groups: dict[frozenset[str], list[Document]] = {}  # documents with the same channels
        for d in docs:
            groups.setdefault(frozenset(n for n in chans if d.id in rows[n]), []).append(d)
        with self._writer:
            for names, group in groups.items():
                seq = self.index.write(group, {n: chans[n][0][[rows[n][d.id] for d in group]] for n in names})
        self._dirty.set()
        return seq

    def delete(self, doc_id: str) -> int:
        with self._writer:
            if self.index.delete([doc_id]) == 0:
                raise DocumentNotFound(f"document {doc_id!r} is not in the index")
            seq = self.index.store.last_seq()
        self._dirty.set()
        return seq

    def wait_searchable(self, seq: int, timeout: float) -> bool:
        """Block until a sync has applied change ``seq`` (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._synced:
            while self.index.manifest.synced_seq < seq:
                if self._sync_error is not None:
                    raise BackendUnavailable(
                        f"the write is stored but not yet searchable: sync failed: {self._sync_error}"
                    ) from self._sync_error
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._synced.wait(left)
        return True

    def _sync_loop(self) -> None:
        while True:
            self._dirty.wait()
            self._dirty.clear()
            if self._stop:
                return
            try:
                with self._writer, self.rw.write():
                    info = self.index.sync()
                err = None
                logger.info("synced %s changes in %.3f s", info["changed"] + info["deleted"], info["seconds"])
            except Exception as e:  # noqa: BLE001 - reported to waiting writers and readyz
                logger.exception("index sync failed")
                err = e
            with self._synced:
                self._sync_error = err
                self._synced.notify_all()
