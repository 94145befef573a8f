"""The public Python API: a :class:`Collection` is one index opened for searching (and, by
one process at a time, for writing). It owns concurrency: any number of threads may search
while one writes; writes are durable when they return and become searchable after a
refresh (every ``indexing.refresh_interval`` seconds in the background, on :meth:`refresh`,
or before a write returns when it asks ``wait_for=True``).

::

    import semsearch

    with semsearch.Collection.create("my-index") as col:
        col.upsert([semsearch.Document(id="1", title="Photosynthesis", text="Plants ...")],
                   wait_for=True)
        for hit in col.search("how do plants make food", k=5).hits:
            print(hit.id, hit.score)

Read-only opens (``Collection.open(path)``) take no lock: several processes may search one
index while another writes to it. :meth:`Collection.open_shared` is for several processes
serving one index (``semsearch serve --workers N``): the first takes the writer lock, the
others open read-only but still accept writes (they commit them to the document store; the
writer's refresh makes them searchable) and take the lock over if the writer goes away.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from semsearch import metrics
from semsearch.config import Settings
from semsearch.documents import Document, SearchResult
from semsearch.encoders.base import TextEncoder
from semsearch.errors import BackendUnavailable, BadInput, DocumentNotFound
from semsearch.indexer.index import Index, IndexLocked
from semsearch.search.collapse import collapse, near_by_cosine, near_by_hash

if TYPE_CHECKING:
    from semsearch.images.dedup import DedupResult
    from semsearch.indexer.pipeline import ChannelEncoder, IndexReport
    from semsearch.rerank.base import Reranker

logger = logging.getLogger(__name__)

#: image channels written from a document's ``image`` (CLIP and perceptual hashes)
HASH_CHANNELS = ("phash", "dhash", "phash_mirror")


#: what :meth:`Collection.warm_up` asks a cross-encoder to score
WARM_UP_DOC = Document(id="warm-up", title="warm up", text="warm up")


class SearchRequest(BaseModel):
    """One search. Every option left as None takes the index's (or the settings') default."""

    model_config = ConfigDict(extra="forbid")

    query: str
    k: int = Field(10, ge=1)
    offset: int = Field(0, ge=0)
    mode: Literal["lexical", "dense", "hybrid", "image"] | None = None
    #: metadata filter (see :mod:`semsearch.filters` for the language)
    filters: dict[str, Any] | None = None
    #: lexical field boosts, e.g. {"title": 2, "text": 1}
    boosts: dict[str, float] | None = None
    fusion: Literal["rrf", "convex"] | None = None
    weights: dict[str, float] | None = None
    rrf_k: int | None = Field(None, ge=1)
    normalization: Literal["minmax", "zscore"] | None = None
    #: candidates each channel contributes before fusion
    depth: int | None = Field(None, ge=1)
    rerank: bool | None = None
    rerank_depth: int | None = Field(None, ge=1)
    with_documents: bool = True
    #: collapse near-duplicate hits into the best-ranked one: images (mode "image") by pHash
    #: Hamming distance <= images.max_distance, text by dense cosine >= api.duplicate_threshold
    collapse: bool = False

    def options(self) -> dict[str, Any]:
        """Everything but the query: requests with equal options are searched as one batch."""
        return self.model_dump(exclude={"query"})


class BatchedSearch:
    """The request handling every collection shares (the local :class:`Collection` and
    :class:`~semsearch.store_es.ElasticsearchCollection`): requests with equal options are
    searched as one batch by the backend's ``_search_same``."""

    settings: Settings
    #: the names of the index's vector and hash channels
    channels: tuple[str, ...]

    def get(self, ids: Any) -> Any:  # pragma: no cover - each backend has its own
        raise NotImplementedError

    def vectors(self, ids: Sequence[str], channel: str = "dense") -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def vectors_of(self, ids: Sequence[str], channels: Sequence[str]) -> dict[str, np.ndarray]:
        """:meth:`vectors` of several channels (a backend may read them in one request)."""
        return {ch: self.vectors(ids, ch) for ch in channels}

    def search(self, request: SearchRequest | str, **options: Any) -> SearchResult:
        """Search with a :class:`SearchRequest`, or a query string plus its options."""
        if isinstance(request, str):
            request = SearchRequest(query=request, **options)
        elif options:
            request = request.model_copy(update=options)
        return self.search_batch([request])[0]

    def search_batch(self, requests: Sequence[SearchRequest]) -> list[SearchResult]:
        """Search several requests; those with equal options run as one batch (locally one
        encoder call and one lexical pass; with Elasticsearch one ``_msearch``). Results come
        back in the order of ``requests``."""
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(repr(sorted(r.options().items())), []).append(i)
        out: list[SearchResult | None] = [None] * len(requests)
        for idx in groups.values():
            r = requests[idx[0]]
            queries = [requests[i].query for i in idx]
            results = self._search_collapsed(queries, r) if r.collapse else self._search_same(queries, r)
            for i, res in zip(idx, results):
                out[i] = res
        return out  # type: ignore[return-value]

    def _near_duplicates(self, images: bool) -> Callable[[list[str]], np.ndarray]:
        """Which of a list of hits are near-duplicates of which, from their stored vectors."""
        if images:
            if "phash" not in self.channels:
                raise BadInput("collapsing near-duplicate images needs a phash channel; this index has none")
            mirrored = "phash_mirror" in self.channels
            max_distance = self.settings.images.max_distance

            def near(ids: list[str]) -> np.ndarray:
                got = self.vectors_of(ids, ("phash", "phash_mirror") if mirrored else ("phash",))
                return near_by_hash(got["phash"], got.get("phash_mirror"), max_distance)
            return near
        if "dense" not in self.channels:
            raise BadInput("collapsing near-duplicates needs a dense channel; this index has none")
        threshold = self.settings.api.duplicate_threshold
        return lambda ids: near_by_cosine(self.vectors(ids, "dense"), threshold)

    def _search_same(self, queries: list[str], request: SearchRequest, *,
                     passages: bool = True) -> list[SearchResult]:
        """Search ``queries``, all with the options of ``request`` (``collapse`` excepted).
        ``passages=False``: the hits' matched passages may be left to :meth:`_page_passages`
        (a collapsed search's window is cut to a page first)."""
        raise NotImplementedError  # pragma: no cover - each backend has its own

    def _page_passages(self, results: list[SearchResult], request: SearchRequest) -> None:
        """Complete the matched passages of the (cut) pages of a ``passages=False`` search."""
        raise NotImplementedError  # pragma: no cover - each backend has its own

    def _search_collapsed(self, queries: list[str], r: SearchRequest) -> list[SearchResult]:
        """``collapse``: search the fusion depth without documents, fold near-duplicate hits
        into the best-ranked one (:mod:`semsearch.search.collapse`; images, ``mode="image"``:
        pHash Hamming distance <= ``images.max_distance``, direct or mirrored, as ``dedup``;
        text: dense cosine >= ``api.duplicate_threshold``), then cut and fill the page."""
        settings = self.settings
        window = min(max(r.depth or settings.fusion.depth, r.offset + r.k), settings.search.max_k)
        near = self._near_duplicates(r.mode == "image")
        results = self._search_same(queries, r.model_copy(update={
            "collapse": False, "k": window, "offset": 0, "with_documents": False}), passages=False)
        for res in results:
            page = collapse(res.hits, near([h.id for h in res.hits]))[r.offset : r.offset + r.k]
            docs = self.get([h.id for h in page]) if r.with_documents and page else {}
            for rank, h in enumerate(page, start=r.offset + 1):
                h.rank = rank
                h.document = docs.get(h.id)
            # a document deleted since the search is not returned
            res.hits = [h for h in page if h.document is not None] if r.with_documents else page
        self._page_passages(results, r)  # for the page's hits only, not the whole window
        return results


class WriteResult(BaseModel):
    """What a write did: the ids it touched, its change sequence number, and whether it is
    already searchable (always durable: it is committed to the document store)."""

    ids: list[str]
    seq: int
    searchable: bool


class Collection(BatchedSearch):
    """Use :meth:`create` (open for writing, creating an empty index if there is none) or
    :meth:`open` (an existing index; read-only unless ``writable=True``)."""

    def __init__(self, index: Index, settings: Settings, *, encoder: TextEncoder | None = None) -> None:
        from semsearch.search import Searcher

        self.index = index
        self.settings = settings
        self.writable = index.writable
        self._writer = threading.Lock()  # store writes and refreshes, one at a time
        self._synced = threading.Condition()
        self._sync_error: BaseException | None = None
        self._dirty = threading.Event()
        self._urgent = threading.Event()  # a write waits for the next refresh (wait_for)
        self._stop = threading.Event()
        self._encoder = encoder
        self._image_channels: list | None = None
        self._image_init = threading.Lock()
        self._image_encoding = threading.Lock()  # one image batch at a time per loader
        self.searcher = Searcher(index, settings, encoder=encoder)
        self._worker: threading.Thread | None = None
        self._merger: threading.Thread | None = None
        self._merge_wanted = threading.Event()
        self._last_refresh = time.monotonic()  # of the last refresh (opening syncs too)
        self.merge_error: BaseException | None = None
        self._promoter: threading.Thread | None = None
        self._retired: list[Index] = []  # read-only opens replaced by a promotion
        self._view_of: Collection | None = None  # see with_models

    # -- lifecycle ----------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path | str | None, settings: Settings | None = None, *,
               encoder: TextEncoder | None = None) -> Collection:
        """Open the index at ``path`` for writing, creating an empty one if there is none.
        With ``settings.store.backend == "elasticsearch"`` the index is the store's
        Elasticsearch alias and ``path`` is not used (see :mod:`semsearch.store_es`)."""
        settings = settings or Settings()
        if settings.store.backend == "elasticsearch":
            from semsearch.store_es import ElasticsearchCollection

            return ElasticsearchCollection.create(settings, encoder=encoder)  # type: ignore[return-value]
        if path is None:
            raise BadInput("a local index needs a path (or set SEMSEARCH_STORE__BACKEND=elasticsearch)")
        return cls._start(Index.create(path, settings), settings, encoder)

    @classmethod
    def open(cls, path: Path | str | None, settings: Settings | None = None, *, writable: bool = False,
             encoder: TextEncoder | None = None, reindex: bool = False) -> Collection:
        """Open an existing index (:class:`~semsearch.errors.IndexNotFound` if there is none);
        the Elasticsearch store when ``settings.store.backend == "elasticsearch"``.
        ``reindex=True`` (a writable open) accepts analysis settings that differ from the
        index's, for :meth:`reindex` (the store: ``rebuild``) to apply; until it does, the
        recorded ones are used."""
        settings = settings or Settings()
        if settings.store.backend == "elasticsearch":
            from semsearch.store_es import ElasticsearchCollection

            return ElasticsearchCollection.open(settings, writable=writable,  # type: ignore[return-value]
                                                encoder=encoder, rebuild=reindex)
        if path is None:
            raise BadInput("a local index needs a path (or set SEMSEARCH_STORE__BACKEND=elasticsearch)")
        return cls._start(Index.open(path, settings, writable=writable, reindex=reindex), settings, encoder)

    @classmethod
    def open_shared(cls, path: Path | str, settings: Settings | None = None, *,
                    encoder: TextEncoder | None = None) -> Collection:
        """Open a local index that several processes serve together (``semsearch serve
        --workers N``). The process that takes the writer lock is the *writer*: it refreshes
        and merges, and also makes searchable the writes other processes committed. The
        others are *readers* that follow the writer's commits; they still accept writes:
        encoded here and committed to the document store (SQLite serialises the writers of
        every process and numbers their changes), searchable after the writer's next refresh.
        A reader tries the lock at each refresh interval and becomes the writer when the
        writer process has gone (:attr:`role` says which it is now)."""
        settings = settings or Settings()
        try:
            return cls.open(path, settings, writable=True, encoder=encoder)
        except IndexLocked:
            logger.info("index at %s has a writer in another process: opening it read-only", path)
        for attempt in range(5):
            try:
                index = Index.open(path, settings, writable=False, store_writes=True)  # type: ignore[arg-type]
                break
            except FileNotFoundError:  # a segment merged away between manifest and open
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        # one stat per search: a write the writer process acknowledged is searchable here too
        index.recheck_s = 0.0
        col = cls._start(index, settings, encoder)
        col._promoter = threading.Thread(target=col._promote_loop, name="semsearch-promote", daemon=True)
        col._promoter.start()
        return col

    @property
    def role(self) -> str:
        """``writer`` (holds the lock), ``reader`` (read-only but commits writes to the
        document store, see :meth:`open_shared`) or ``read-only``."""
        if self.writable:
            return "writer"
        return "reader" if getattr(self.index, "accepts_writes", False) else "read-only"

    @classmethod
    def _start(cls, index: Index, settings: Settings, encoder: TextEncoder | None) -> Collection:
        try:
            col = cls(index, settings, encoder=encoder)
            if index.writable:
                col._start_writer()
            return col
        except BaseException:
            index.close()
            raise

    def _start_writer(self) -> None:
        index = self.index
        if index.pending() or index.manifest.generation == 0:
            info = index.sync()  # apply writes acknowledged before a crash
            logger.info("startup sync applied %s changes", info["changed"] + info["deleted"])
        self._worker = threading.Thread(target=self._sync_loop, name="semsearch-refresh", daemon=True)
        self._worker.start()
        if self.settings.indexing.background_merges:
            self._merger = threading.Thread(target=self._merge_loop, name="semsearch-merge", daemon=True)
            self._merger.start()
            self._merge_wanted.set()

    def _promote_loop(self) -> None:
        """A reader of :meth:`open_shared`: take the writer lock once its holder has gone."""
        interval = self.settings.indexing.refresh_interval
        while not self._stop.wait(interval):
            try:
                index = Index.open(self.index.path, self.settings, writable=True)
            except IndexLocked:
                continue
            except Exception:  # noqa: BLE001 - e.g. a transient I/O error: try again later
                logger.exception("taking over the writer lock failed")
                continue
            with self._writer:
                if self._stop.is_set():
                    index.close()
                    return
                # searches in flight keep the snapshot they took; the old open is closed
                # with the collection (its connections may still serve them meanwhile)
                self._retired.append(self.index)
                self.index = self.searcher.index = index
                try:
                    self._start_writer()
                except Exception:  # noqa: BLE001 - the refresh loop retries the sync
                    logger.exception("startup sync after taking over the writer lock failed")
                    if self._worker is None:
                        self._worker = threading.Thread(target=self._sync_loop, name="semsearch-refresh",
                                                        daemon=True)
                        self._worker.start()
                self.writable = True  # with its refresh thread running: readyz stays ready
            logger.warning("the writer process of %s has gone: this process (pid %s) is the writer now",
                           index.path, os.getpid())
            return

    def close(self) -> None:
        if self._view_of is not None:
            return  # a view from with_models: the collection it came from owns the index
        self._stop.set()
        self._dirty.set()
        self._urgent.set()
        self._merge_wanted.set()
        for t in (self._promoter, self._worker, self._merger):
            if t is not None and t.is_alive():
                t.join(timeout=600)
        if self._image_channels:
            from semsearch.images.channels import close_channels

            close_channels(self._image_channels)  # worker threads, numpy's BLAS thread limit
        with self._writer:
            self.index.close()
            for old in self._retired:
                old.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self.index.path

    @property
    def encoder(self) -> TextEncoder:
        """The query/document text encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = self.searcher.encoder  # loads it and checks it against the index
        return self._encoder

    def warm_up(self) -> None:
        """Load the models searches use now rather than on the first query: the text
        encoder, CLIP (an index with images), the cross-encoder (when one is configured; on
        CPU its ONNX export happens here), and FAISS's GPU check (a child process, seconds)
        unless ``vector.faiss.gpu`` is "never": with "always" where no GPU can search, this
        raises :class:`BackendUnavailable` now, so a server fails at start, not at its first
        search."""
        from semsearch.indexer.segments.vectors import require_gpu
        from semsearch.search.images import clip_encoder

        if self.settings.vector.faiss.gpu != "never" and self.channels:
            require_gpu(self.settings.vector.faiss)
        if "dense" in self.channels:
            self.encoder.encode(["warm up"])
        if "image" in self.channels:
            clip_encoder(self.searcher).encode(["warm up"])
        if self.settings.rerank.model:
            self.searcher.reranker.score("warm up", [WARM_UP_DOC])

    # -- reads --------------------------------------------------------------------------
    def _page_passages(self, results: list[SearchResult], request: SearchRequest) -> None:
        """The character offsets of the passages the hits matched (their documents are
        attached now; the window's were searched without them)."""
        self.searcher.locate_passages([h for res in results for h in res.hits])

    def _search_same(self, queries: list[str], request: SearchRequest, *,
                     passages: bool = True) -> list[SearchResult]:
        # the passage each hit matched is marked cheaply here (its offsets need the document)
        opts = request.options()
        opts.pop("collapse", False)  # BatchedSearch._search_collapsed
        # no lock: the searcher reads one snapshot of the index
        results = self.searcher.search_batch(queries, **opts)
        if opts.get("with_documents", True):
            for res in results:
                # a document deleted (durably) but not yet synced out of the derived indexes
                # is not returned: an acknowledged delete takes effect at once
                res.hits = [h for h in res.hits if h.document is not None]
        return results

    def search_by_image(self, image: Any, *, k: int = 10, channels: Sequence[str] | None = None,
                        max_distance: int | None = None) -> SearchResult:
        """Images like ``image`` (a path or PIL image) by CLIP and/or perceptual hashes."""
        res = self.searcher.search_by_image(image, k=k, channels=channels, max_distance=max_distance)
        res.hits = [h for h in res.hits if h.document is not None]  # deleted, not yet synced
        return res

    def duplicates(self, max_distance: int, *, mirrored: bool = True,
                   min_cosine: float | None = None) -> DedupResult:
        """Groups of near-duplicate images (perceptual-hash Hamming distance; pairs also
        confirmed by CLIP cosine >= ``min_cosine`` when given)."""
        from semsearch.images.dedup import find_duplicates

        # reads one snapshot's hash channels: writes and refreshes go on meanwhile
        return find_duplicates(self.index, max_distance, mirrored=mirrored, min_cosine=min_cosine)

    def get(self, ids: str | Iterable[str]) -> Any:
        """One document by id (:class:`DocumentNotFound` if absent), or a dict for several."""
        if isinstance(ids, str):
            doc = self.index.get([ids]).get(ids)
            if doc is None:
                raise DocumentNotFound(f"document {ids!r} is not in the index")
            return doc
        return self.index.get(list(ids))

    def channel_results(self, queries: Sequence[str], depth: int, mode: str = "hybrid", *,
                        filters: dict[str, Any] | None = None, boosts: dict[str, float] | None = None,
                        ) -> tuple[list[dict[str, list[tuple[str, float]]]], dict[str, str]]:
        """The candidates each channel of ``mode`` finds before fusion, for tuning fusion or
        mining training pairs: per query ``{channel: [(id, score), ...]}`` (the top ``depth``,
        best first), and the channels that failed (``{channel: reason}``; with
        ``search.on_channel_failure = "fail"`` a failure raises instead). Every channel reads
        the same snapshot."""
        return self.searcher.channel_results(queries, depth, mode, filters=filters, boosts=boosts)

    def vectors(self, ids: Sequence[str], channel: str = "dense") -> np.ndarray:
        """The stored vectors of ``ids`` in a vector channel, one row per id in that order
        (a row of zeros for an id without one). Read from the document store: writes are
        seen once acknowledged."""
        spec = self.index.manifest.channels.get(channel)
        if spec is None:
            raise BadInput(f"index at {self.index.path} has no {channel!r} channel")
        dtype = np.uint8 if spec.backend == "faiss-binary" else np.float32  # hash codes as bytes
        return self.index.store.vectors(list(ids), channel, spec.dim, dtype)

    def documents(self) -> Iterator[Document]:
        """Every stored document, in the order they were first written (read from the
        document store: acknowledged writes included, deleted documents not)."""
        return self.index.store.iter_docs()

    def with_models(self, *, encoder: TextEncoder | None = None, reranker: Reranker | None = None) -> Collection:
        """This collection searching with other models: ``encoder`` for queries (e.g. one
        that caches query vectors) and/or ``reranker`` (instead of ``settings.rerank.model``);
        what is not given is this collection's (its text encoder is loaded now when the index
        has a dense channel, so the two share it). The result shares this collection's open
        index and is for reads only: writes through it are refused, closing it does nothing,
        and it is usable while this collection is open."""
        if encoder is None and "dense" in self.index.manifest.channels:
            encoder = self.encoder
        view = type(self)(self.index, self.settings, encoder=encoder if encoder is not None else self._encoder)
        view.searcher = self.searcher.with_models(encoder=view._encoder, reranker=reranker)
        view.writable = False
        view._view_of = self
        return view

    @property
    def channels(self) -> tuple[str, ...]:
        """The names of the index's vector and hash channels (``"dense"``, ``"image"``, hash
        channels), from the manifest: no directory walk, unlike :meth:`stats`."""
        return tuple(self.index.manifest.channels)

    def gauges(self) -> dict[str, int]:
        """What ``/metrics`` reports of the index: ``documents``, ``size_bytes`` (the
        directory), ``segments`` and ``pending`` (acknowledged changes not yet searchable)."""
        idx = self.index
        return {"documents": int(idx.manifest.counts.get("docs", 0)),
                "size_bytes": sum(f.stat().st_size for f in idx.path.rglob("*") if f.is_file()),
                "segments": len(idx.manifest.segments),
                "pending": max(0, idx.store.last_seq() - self.searchable_seq)}

    def stats(self) -> dict[str, Any]:
        info = self.index.info()
        info["models"] = {"text_encoder": getattr(self._encoder, "name", None),
                          "clip": (info.get("channels", {}).get("image") or {}).get("encoder")}
        return info

    def ready(self) -> dict[str, Any]:
        """Raises :class:`BackendUnavailable` when the index cannot answer."""
        checks: dict[str, Any] = {"generation": self.index.manifest.generation}
        if self.writable and (self._worker is None or not self._worker.is_alive()):
            raise BackendUnavailable("the index refresh worker is not running")
        ping = getattr(self.index.lexical, "ping", None)
        if ping is not None:
            ping()  # e.g. Elasticsearch: raises BackendUnavailable naming the URL
            checks["lexical"] = "reachable"
        return checks

    # -- writes -------------------------------------------------------------------------
    def _check_writable(self, *, store: bool = False) -> None:
        """``store``: a write to the document store, which a reader of :meth:`open_shared`
        may make too."""
        if self._view_of is not None:
            raise BadInput("a collection from with_models() only searches: write through the one it came from")
        if not self.writable and not (store and self.index.accepts_writes):
            raise BadInput(f"index at {self.index.path} was opened read-only")

    def _ensure_channel(self, name: str, *, dim: int, encoder: str, backend: str = "faiss",
                        **passages: Any) -> Any:
        """Declare a channel (the writer) or check that the writer has declared it (a reader
        cannot change the manifest: it answers 503 until the writer's commit names it).
        ``passages``: the passage plan options of ``Index.ensure_channel``; returns the spec."""
        if not self.writable and name not in self.index.snapshot().channels:
            raise BackendUnavailable(
                f"channel {name!r} is not declared in index at {self.index.path} yet and this "
                "process is not its writer: retry in a moment (a write through the writer "
                "process declares it), or write through the writer")
        with self._writer:
            return self.index.ensure_channel(name, dim=dim, encoder=encoder, backend=backend, **passages)

    def add(self, docs: Sequence[Document], *, wait_for: bool = False) -> WriteResult:
        """Add new documents; an id already in the index is an error (nothing is written)."""
        self._check_writable(store=True)
        taken = sorted(self.index.store.hashes([d.id for d in docs]))
        if taken:
            raise BadInput(f"{len(taken)} id(s) already in the index (use upsert to replace): {taken[:10]}")
        return self.upsert(docs, wait_for=wait_for)

    def upsert(self, docs: Sequence[Document], *, wait_for: bool = False,
               timeout: float = 60.0) -> WriteResult:
        """Encode and durably store ``docs`` (text and image documents), replacing any with
        the same ids. With ``wait_for`` the call returns once they are searchable (or after
        ``timeout`` seconds, with ``searchable=False``)."""
        self._check_writable(store=True)
        docs = list(docs)
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            raise BadInput("a batch repeats a document id")
        chans: dict[str, tuple[np.ndarray, list[Document]]] = {}
        with_text = [d for d in docs if d.title.strip() or d.text.strip()]
        # the dense channel: an index that has one, or a new index (its first write declares it)
        have = self.index.snapshot().channels if not self.writable else self.index.manifest.channels
        first_write = self.index.store.last_seq() == 0 and not have
        if with_text and ("dense" in have or self._encoder is not None or first_write):
            from semsearch.indexer.pipeline import TextChannel

            te = self.settings.text_encoder
            channel = TextChannel(self.encoder, te.doc_template, passages=te.passages)
            channel.declare(self._ensure_channel)
            chans["dense"] = (channel.encode(with_text)[0], with_text)
        chans.update(self._encode_images(docs))
        rows = {name: {d.id: i for i, d in enumerate(ds)} for name, (_, ds) in chans.items()}
        groups: dict[frozenset[str], list[Document]] = {}  # documents with the same channels
        for d in docs:
            groups.setdefault(frozenset(n for n in chans if d.id in rows[n]), []).append(d)
        from semsearch.indexer.pipeline import select

        seq = self.index.store.last_seq()
        with self._writer:
            for names, group in groups.items():
                seq = self.index.write(group, {n: select(chans[n][0], [rows[n][d.id] for d in group]) for n in names})
        self._dirty.set()
        metrics.set_pending(seq - self.searchable_seq)
        return WriteResult(ids=ids, seq=seq, searchable=self.wait_for(seq, timeout if wait_for else 0.0))

    def delete(self, ids: str | Sequence[str], *, wait_for: bool = False, missing_ok: bool = False,
               timeout: float = 60.0) -> WriteResult:
        """Delete documents by id; an id not in the index is an error unless ``missing_ok``."""
        self._check_writable(store=True)
        ids = [ids] if isinstance(ids, str) else list(ids)
        with self._writer:
            if not missing_ok:
                absent = sorted(set(ids) - set(self.index.store.hashes(ids)))
                if absent:
                    raise DocumentNotFound(f"document(s) not in the index: {absent[:10]}")
            self.index.delete(ids)
            seq = self.index.store.last_seq()
        self._dirty.set()
        return WriteResult(ids=ids, seq=seq, searchable=self.wait_for(seq, timeout if wait_for else 0.0))

    def refresh(self) -> dict[str, Any]:
        """Make every acknowledged write searchable now (a reader of :meth:`open_shared`
        waits, up to a minute, for the writer process to do it)."""
        if not self.writable and self.index.accepts_writes:
            return self._await_writer(self.index.store.last_seq(), 60.0)
        self._check_writable()
        info = self.index.sync()
        metrics.observe_refresh(info["seconds"])
        metrics.set_pending(0)
        with self._synced:
            self._synced.notify_all()
        self._merge_wanted.set()
        return info

    def rejected(self, seq: int = 0) -> list[tuple[str, int, str]]:
        """Documents a backend refused while making writes after ``seq - 1`` searchable:
        ``(id, seq, reason)``; their previous version (if any) stayed searchable."""
        return self.index.store.rejected(max(seq - 1, 0))

    @property
    def searchable_seq(self) -> int:
        """The last change sequence number that searches see."""
        return self.index.manifest.synced_seq

    def _await_writer(self, seq: int, timeout: float) -> dict[str, Any]:
        t0 = time.monotonic()
        if not self.wait_for(seq, timeout):
            raise BackendUnavailable(
                f"the writer process of {self.index.path} has not made change {seq} searchable "
                f"within {timeout:g} s (the writes are stored); is it running?")
        return {"changed": 0, "deleted": 0, "seconds": time.monotonic() - t0}

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Block until change ``seq`` is searchable (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        # a read-only open: the writer is another process, its commits are polled for
        while not self.writable:
            if self.index.snapshot().seq >= seq:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.05, left))
        with self._synced:
            while self.index.manifest.synced_seq < seq:
                if timeout > 0:
                    self._urgent.set()  # refresh soon rather than at the next tick
                if self._sync_error is not None:
                    raise BackendUnavailable(
                        f"the write is stored but not yet searchable: refresh failed: {self._sync_error}"
                    ) from self._sync_error
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._synced.wait(left)
        return True

    def _merge_loop(self) -> None:
        """Background merges: after each refresh, merge while the policy finds candidates.
        A merge builds its segment with no lock held; searches never wait for it."""
        while not self._stop.is_set():
            self._merge_wanted.wait()
            self._merge_wanted.clear()
            while not self._stop.is_set():
                try:
                    info = self.index.maybe_merge()
                except Exception as e:  # noqa: BLE001 - kept for stats; the next refresh retries
                    logger.exception("background merge failed")
                    self.merge_error = e
                    break
                self.merge_error = None
                if info is None:
                    break
                metrics.observe_merge(info["seconds"])
                metrics.set_segments(len(self.index.manifest.segments))
                logger.info("merged %s into %s (%d docs) in %.2f s", info["merged"], info["into"],
                            info["docs"], info["seconds"])

    def bulk_index(self, inputs: Sequence[Path | str], channels: Sequence[ChannelEncoder], *,
                   on_progress: Callable[[int], None] | None = None,
                   on_phase: Callable[[str, int, int], None] | None = None) -> IndexReport:
        """Bulk-load JSONL/CSV files and image folders (``semsearch index``, the eval's
        index build) through the indexing pipeline: records read in batches, encoded by
        ``channels`` (a :class:`~semsearch.indexer.pipeline.TextChannel`, image channels),
        every rejected record reported, documents whose content is already stored skipped
        (a re-run resumes an interrupted load), then one refresh and the merges the policy
        wants. Searches go on over the snapshot from before the load; no refresh publishes
        a part of it (a write that waits for searchability meanwhile waits for its end).
        ``on_progress`` / ``on_phase``: see :class:`~semsearch.indexer.pipeline.Pipeline`."""
        from semsearch.indexer.pipeline import Pipeline

        self._check_writable()
        with self.index.exclusive():
            report = Pipeline(self.index, channels, self.settings, on_progress=on_progress, on_phase=on_phase).run(
                [Path(p) for p in inputs])
        metrics.set_pending(self.index.store.last_seq() - self.searchable_seq)
        with self._synced:
            self._synced.notify_all()
        return report

    def replace_vectors(self, ids: Sequence[str], matrix: np.ndarray | list[np.ndarray], encoder_name: str, *,
                        channel: str = "dense", tuned: dict[str, Any] | None = None,
                        batch: int = 1024) -> dict[str, Any]:
        """Replace a vector channel's vectors and encoder in one commit (``adapt`` switching
        to a fine-tuned encoder). The channel spec gets the new encoder, the documents are
        rewritten with their new vectors into the store, the manifest's ``tuned`` defaults
        are set (when given), and one refresh writes them as new segments and tombstones
        every old row: searches see the old vectors and encoder until that commit, then only
        the new ones (background merges then drop the old rows). ``matrix`` is one row per
        id, or for a channel split into passages one ``(n_passages, dim)`` matrix per id."""
        from semsearch.indexer.pipeline import select

        self._check_writable()
        t0 = time.perf_counter()
        index = self.index
        with index.exclusive():
            spec, old_tuned = index.manifest.channels[channel], index.manifest.tuned
            dim = int(matrix[0].shape[1] if isinstance(matrix, list) else matrix.shape[1])
            index.manifest.channels[channel] = spec.model_copy(
                update={"encoder": index.record_encoder(encoder_name), "dim": dim})
            if tuned is not None:
                index.manifest.tuned = tuned
            try:
                pos = {d: i for i, d in enumerate(ids)}
                for start in range(0, len(ids), batch):
                    chunk = list(ids[start : start + batch])
                    docs = index.get(chunk)
                    have = [d for d in chunk if d in docs]
                    index.write([docs[d] for d in have], {channel: select(matrix, [pos[d] for d in have])})
                info = index.sync()
            except BaseException:
                # not committed: the next refresh must not publish the new spec (the vectors
                # already rewritten keep the old one until a re-run completes the switch)
                index.manifest.channels[channel], index.manifest.tuned = spec, old_tuned
                raise
        with self._synced:
            self._synced.notify_all()
        self._merge_wanted.set()
        return {"docs": len(ids), "encoder": encoder_name, "dim": dim, "sync_seconds": round(info["seconds"], 2),
                "seconds": round(time.perf_counter() - t0, 2)}

    def passage_plan(self, channel: str = "dense") -> Any:
        """How ``channel`` splits long documents into passages (a
        :class:`~semsearch.encoders.passages.PassagePlan`), or None: one vector per document."""
        from semsearch.encoders.passages import PassagePlan

        spec = self.index.snapshot().channels.get(channel)
        return None if spec is None else PassagePlan.from_record(spec.passages)

    def passage_vectors(self, ids: Sequence[str], channel: str = "dense") -> list[np.ndarray | None]:
        """Per id, all its stored vectors in ``channel``, ``(n_passages, dim)`` (one row for a
        document embedded whole); None for an id without one."""
        spec = self.index.manifest.channels.get(channel)
        if spec is None:
            raise BadInput(f"index at {self.index.path} has no {channel!r} channel")
        return self.index.store.passage_vectors(list(ids), channel, spec.dim)

    def set_tuned(self, tuned: dict[str, Any]) -> dict[str, Any]:
        """Record the search defaults ``adapt`` chose (fusion, reranking) in the manifest;
        searches that do not override them use them from the next search on. Returns what
        was recorded."""
        self._check_writable()
        self.index.set_tuned(tuned)
        return tuned

    def compact(self) -> list[dict[str, Any]]:
        """Refresh, then merge every segment into one and purge every deleted row."""
        self.refresh()
        return self.index.force_merge(1)

    def reindex(self, *, lexical: bool = False, factory: str | None = None,
                channel: str = "dense") -> dict[str, Any]:
        """Rebuild the lexical channel (new analyzer or BM25 settings) and/or a vector
        channel's FAISS index (``factory``) from stored tokens and vectors, without
        re-encoding, while searches go on."""
        self._check_writable()
        with self._writer:
            if lexical and self.index.lexical_external is not None:
                return self.index.rebuild_lexical()
            return self.index.reindex(lexical=lexical, factory=factory, channel=channel)

    def _sync_loop(self) -> None:
        interval = self.settings.indexing.refresh_interval
        while not self._stop.is_set():
            if not self._dirty.wait(interval):
                # none of ours: did another process commit to the store (open_shared)?
                if self._stop.is_set() or not self._foreign_changes():
                    continue
            elif self._stop.is_set():
                return
            else:
                self._wait_for_tick(interval)
            self._dirty.clear()
            # cleared before the refresh reads the store: a waiting write committed before
            # this point is in this refresh, a later one sets it again for the next
            self._urgent.clear()
            self._last_refresh = time.monotonic()
            try:
                # no writer lock: the refresh takes the changes committed before it starts
                # and never blocks writes (the index serialises its own commits)
                info = self.index.sync()
                self._merge_wanted.set()
                err = None
                metrics.observe_refresh(info["seconds"])
                metrics.set_pending(self.index.store.last_seq() - self.searchable_seq)
                logger.info("refreshed %s changes in %.3f s", info["changed"] + info["deleted"], info["seconds"])
            except Exception as e:  # noqa: BLE001 - reported to waiting writers and readyz
                logger.exception("index refresh failed")
                metrics.observe_refresh(0.0, failed=True)
                err = e
            with self._synced:
                self._sync_error = err
                self._synced.notify_all()

    def _wait_for_tick(self, interval: float) -> None:
        """At most one refresh per ``refresh_interval``, on a fixed schedule (as
        Elasticsearch's): a write after a quiet spell is refreshed at once, one in a busy spell
        waits for the next tick -- unless a write waits for it (``wait_for``): then the refresh
        comes ``refresh_min_interval`` after the last one, as Lucene's
        ControlledRealTimeReopenThread reopens at ``targetMinStaleSec`` for a waiter."""
        min_gap = min(interval, self.settings.indexing.refresh_min_interval)
        while not self._stop.is_set():
            urgent = self._urgent.is_set()
            left = self._last_refresh + (min_gap if urgent else interval) - time.monotonic()
            if left <= 0:
                return
            # woken early by a writer that starts waiting; once one waits, sleep out the gap
            (self._stop if urgent else self._urgent).wait(left)

    def _foreign_changes(self) -> bool:
        """Changes in the store past the last commit that this process did not signal (a
        cheap MAX(seq) query)."""
        try:
            return self.index.store.last_seq() > self.searchable_seq
        except Exception:  # noqa: BLE001 - e.g. the store is busy: the next interval asks again
            logger.debug("checking the store for changes failed", exc_info=True)
            return False

    # -- images -------------------------------------------------------------------------
    def _image_roots(self) -> list[Path]:
        roots = self.settings.images.roots
        if not roots:
            raise BadInput("no image roots are set (SEMSEARCH_IMAGES__ROOTS): image files are not read")
        return list(roots)

    def image_channels(self) -> list:
        """The bulk pipeline's image channels (CLIP when the index has a CLIP channel or no
        image channel yet, as ``semsearch index`` does), declared on the index."""
        with self._image_init:
            if self._image_channels is None:
                from semsearch.images.channels import image_channels

                have = self.index.manifest.channels
                clip = "image" in have or not any(h in have for h in HASH_CHANNELS)
                chans = image_channels(self.settings, roots=self._image_roots(), clip=clip,
                                       clip_encoder=self.searcher.clip)  # the searches' model, if loaded
                for ch in chans:
                    self._ensure_channel(ch.name, dim=ch.dim, encoder=ch.encoder_name, backend=ch.backend)
                clip_enc = next((c.encoder for c in chans if c.name == "image"), None)
                self.searcher.share_models(clip=clip_enc)  # one CLIP model for writes and searches
                self._image_channels = chans
            return self._image_channels

    def _encode_images(self, docs: Sequence[Document]) -> dict[str, tuple[np.ndarray, list[Document]]]:
        """Vectors of the image documents among ``docs`` in every image channel; a file that
        cannot be used rejects the batch with a message naming each document and problem."""
        with_image = [d for d in docs if d.image is not None]
        if not with_image:
            return {}
        self._image_roots()
        from semsearch.images.channels import encode_documents

        return encode_documents(self.image_channels(), with_image, self._image_encoding)

    # -- backups ------------------------------------------------------------------------
    def snapshot(self, out: Path | str) -> dict[str, Any]:
        """Write a consistent snapshot of this index to the archive ``out`` while writes,
        refreshes and searches go on (see :mod:`semsearch.indexer.backup`)."""
        from semsearch.indexer.backup import snapshot

        return snapshot(self.path, out)


def open_directory(path: Path | str, settings: Settings | None = None, *,
                   encoder: TextEncoder | None = None) -> Collection:
    """The local index directory at ``path``, read-only, whatever ``settings.store.backend``
    says: for the tools that are given an index directory (``eval``, ``train-reranker``,
    ``adapt``)."""
    settings = settings or Settings()
    if settings.store.backend != "local":
        settings = settings.model_copy(update={"store": settings.store.model_copy(update={"backend": "local"})})
    return Collection.open(path, settings, encoder=encoder)
