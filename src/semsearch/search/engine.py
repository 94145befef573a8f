"""The search path: run the channels a mode needs, fuse them, attach documents."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, Literal

import numpy as np

from semsearch import metrics
from semsearch.config import Settings
from semsearch.documents import ChannelScore, Hit, PassageMatch, SearchResult
from semsearch.encoders.base import TextEncoder
from semsearch.errors import BadInput, ChannelFailed
from semsearch.filters import Filter, parse_filter
from semsearch.indexer.index import Index
from semsearch.indexer.lexical.base import Filters
from semsearch.indexer.segments.snapshot import Masks, SegmentLexical, Snapshot
from semsearch.rerank.apply import Reranked, rerank_candidates
from semsearch.rerank.base import Reranker
from semsearch.search.fusion import Fused, fuse

logger = logging.getLogger(__name__)

Mode = Literal["lexical", "dense", "hybrid"]
MODES: dict[str, tuple[str, ...]] = {
    "lexical": ("lexical",),
    "dense": ("dense",),
    "hybrid": ("lexical", "dense"),
    "image": ("image",),  # text-to-image through the CLIP text tower (search/images.py)
}


class _Scope:
    """What every channel of one search shares: the snapshot and the parsed filter, whose
    per-segment masks are computed once (after a type check against the indexed values)."""

    def __init__(self, snap: Snapshot, flt: Filter | None) -> None:
        self.snap = snap
        self.flt = flt
        self._masks: Masks | None = None
        #: per query, the dense channel's multi-passage hits: id -> (best passage, passages)
        self.passages: list[dict[str, tuple[int, int]]] | None = None

    def masks(self) -> Masks | None:
        if self.flt is None:
            return None
        if self._masks is None:
            self._masks = self.snap.masks(self.flt)
        return self._masks

    def allowed_ids(self) -> set[str] | None:
        masks = self.masks()
        if masks is None:
            return None
        return {seg.ids[o] for seg, m in zip(self.snap.segments, masks)
                for o in (np.flatnonzero(m).tolist() if m is not None else range(seg.n_docs))}


_CHANNEL_POOL: ThreadPoolExecutor | None = None
_CHANNEL_POOL_LOCK = threading.Lock()


def _side_by_side(runs: Sequence[Callable[[], Any]]) -> list[Future[Any]]:
    """Start ``runs`` in a thread pool, so that a hybrid search's channels (BM25 in numpy,
    query encoding in ONNX Runtime, FAISS graph walks: all release the GIL for their heavy
    parts) run side by side with the one the calling thread runs, on machines with several
    cores. On one core they just run in turn."""
    global _CHANNEL_POOL
    if (os.cpu_count() or 1) < 2:
        done: list[Future[Any]] = []
        for fn in runs:
            f: Future[Any] = Future()
            try:
                f.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - re-raised by result(), as from the pool
                f.set_exception(e)
            done.append(f)
        return done
    with _CHANNEL_POOL_LOCK:
        if _CHANNEL_POOL is None:
            _CHANNEL_POOL = ThreadPoolExecutor(8, thread_name_prefix="semsearch-channel")
    return [_CHANNEL_POOL.submit(fn) for fn in runs]


class Searcher:
    """Searches one index. The text encoder is created lazily on the first dense query."""

    def __init__(
        self,
        index: Index,
        settings: Settings | None = None,
        *,
        encoder: TextEncoder | None = None,
        clip: Any = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.index = index
        #: the configured settings; :attr:`settings` adds the index's tuned defaults
        self.base_settings = settings or index.settings
        self._effective: tuple[int, Settings] | None = None
        self._encoder = encoder
        self._clip = clip  # an ImageEncoder for the "image" channel, created lazily
        self._reranker = reranker
        #: the caller gave the reranker (never replaced); else it is loaded on first use, and
        #: again when the index's defaults name another model (``semsearch adapt``)
        self._given_reranker = reranker is not None
        self._cuts: Any = None  # a passages.SplitCache, made on first use

    def share_models(self, *, encoder: TextEncoder | None = None, clip: Any = None) -> None:
        """Use models loaded elsewhere (the collection's text encoder, the CLIP encoder its
        image writes loaded) instead of loading them again; a model already set stays."""
        if self._encoder is None:
            self._encoder = encoder
        if self._clip is None:
            self._clip = clip

    def with_models(self, *, encoder: TextEncoder | None = None,
                    reranker: Reranker | None = None) -> Searcher:
        """A searcher of the same index and settings with ``encoder`` and/or ``reranker``
        instead of this one's; it shares every model of this one that is not replaced."""
        view = Searcher(self.index, self.base_settings,
                        encoder=encoder if encoder is not None else self._encoder, clip=self._clip,
                        reranker=reranker if reranker is not None else self._reranker)
        view._given_reranker = reranker is not None or self._given_reranker
        return view

    @property
    def clip(self) -> Any:
        """The CLIP encoder of the ``image`` channel once loaded (by
        :func:`semsearch.search.images.clip_encoder` or shared), else None."""
        return self._clip

    @property
    def settings(self) -> Settings:
        """The settings searches use: the configured ones plus the defaults ``semsearch adapt``
        recorded in the index (``Manifest.tuned``) for whatever the user did not set."""
        from semsearch.adapt.tuned import effective_settings

        m = self.index.manifest
        if self._effective is None or self._effective[0] != id(m):
            self._effective = (id(m), effective_settings(self.base_settings, m.tuned, self.index.path))
        return self._effective[1]

    @settings.setter
    def settings(self, value: Settings) -> None:
        self.base_settings = value
        self._effective = None

    @property
    def reranker(self) -> Reranker:
        """The cross-encoder from ``settings.rerank.model``, loaded on the first reranked query
        (and again when the index's defaults name another model)."""
        from semsearch.rerank.cross_encoder import current_reranker

        self._reranker = current_reranker(
            self.settings.rerank, self._reranker, given=self._given_reranker,
            missing="reranking needs a trained cross-encoder: run `semsearch train-reranker` and "
                    "set SEMSEARCH_RERANK__MODEL to its output directory")
        return self._reranker

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            from semsearch.encoders import make_text_encoder

            self._encoder = make_text_encoder(self.settings.text_encoder, for_queries=True)
            built = self.index.channel_encoder("dense")
            if built is not None and built != self._encoder.name:
                from semsearch.errors import IndexIncompatible

                raise IndexIncompatible(
                    f"index at {self.index.path} was built with text encoder {built!r} "
                    f"but the configured one is {self._encoder.name!r}; set "
                    f"SEMSEARCH_TEXT_ENCODER__MODEL={built} or rebuild"
                )
        return self._encoder

    def _query_encoder(self, channel: str) -> TextEncoder:
        if channel == "image":
            from semsearch.search.images import clip_encoder

            return clip_encoder(self)
        return self.encoder

    def search_by_image(self, image: Any, *, k: int = 10, channels: Sequence[str] | None = None, **kw: Any) -> SearchResult:
        """Find images like ``image`` (a path or PIL image): CLIP and/or hash channels;
        hash hits carry Hamming distances in ``Hit.extra`` (see search/images.py)."""
        from semsearch.search.images import search_by_image

        return search_by_image(self, image, k=k, channels=channels, **kw)

    def _mark_passages(self, hits: list[Hit], found: dict[str, tuple[int, int]], snap: Snapshot) -> None:
        """Say which passage of a long document the dense channel matched, with its
        character offsets when the document is attached (:meth:`locate_passages`)."""
        for h in hits:
            if h.id in found:
                h.passage = PassageMatch(index=found[h.id][0], count=found[h.id][1])
        self.locate_passages(hits, snap)

    def locate_passages(self, hits: list[Hit], snap: Snapshot | None = None) -> None:
        """Fill in the character offsets of the passages ``hits`` matched (those with a
        passage and a document): as stored when the document was written, else (a document
        written before spans were stored) cut again with the recorded plan, or taken from
        the cache of recent cuts (encoders/passages.py)."""
        from semsearch.encoders import passages as P

        todo = [h for h in hits if h.passage is not None and h.passage.start is None and h.document is not None]
        if not todo:
            return
        stored = self.index.store.passage_spans([h.document for h in todo], "dense")
        rest = []
        for h in todo:
            spans = stored.get(h.id)
            if spans is not None and len(spans) == h.passage.count and h.passage.index < len(spans):
                h.passage.start, h.passage.end = int(spans[h.passage.index, 0]), int(spans[h.passage.index, 1])
            else:
                rest.append(h)
        todo = rest
        if not todo:
            return
        snap = snap or self.index.snapshot()
        spec = snap.channels.get("dense")
        plan = P.PassagePlan.from_record(spec.passages if spec is not None else None)
        if plan is None:
            return
        if self._cuts is None:
            self._cuts = P.SplitCache(self.settings.search.passage_cut_cache)
        cuts = self._cuts.split(self.encoder, self.settings.text_encoder.doc_template,
                                [h.document for h in todo], plan)
        for h, c in zip(todo, cuts):
            if h.passage.index < len(c):
                h.passage.start, h.passage.end = c[h.passage.index]

    # -- channels -----------------------------------------------------------------------
    def _check(self, queries: Sequence[str], k: int, offset: int, mode: str) -> None:
        if mode not in MODES:
            raise BadInput(f"unknown mode {mode!r}; use one of {sorted(MODES)}")
        if k < 1 or k > self.settings.search.max_k:
            raise BadInput(f"k must be between 1 and {self.settings.search.max_k}, got {k}")
        if offset < 0:
            raise BadInput(f"offset must be >= 0, got {offset}")
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise BadInput("query is empty")
        for ch in MODES[mode]:
            if ch != "lexical" and ch not in self.index.manifest.channels:
                raise BadInput(f"index at {self.index.path} has no {ch} channel; use mode 'lexical'")

    def _channel(
        self, name: str, queries: Sequence[str], depth: int, scope: _Scope,
        boosts: dict[str, float] | None,
    ) -> list[list[tuple[str, float]]]:
        """One channel's ranked lists for a batch of queries, within one snapshot."""
        if name == "lexical":
            lex = scope.snap.lexical
            if isinstance(lex, SegmentLexical):
                return lex.search_many(list(queries), depth, boosts=boosts, masks=scope.masks())
            return lex.search_many(list(queries), depth, boosts=boosts, filters=scope.flt)
        metrics.observe_encoder_batch(name, len(queries))
        qv = self._query_encoder(name).encode(list(queries))
        local = scope.snap.vectors.get(name)
        if local is not None:
            ps = self.settings.text_encoder.passages
            res, passages = local.search_passages(qv, depth, masks=scope.masks() if scope.flt is not None else None,
                                                  aggregation=ps.aggregation, top_n=ps.top_n)
            if name == "dense":
                scope.passages = passages
            return res
        # an external vector index (Elasticsearch): the filter as the ids it allows
        return self.index.vectors[name].search(qv, depth, allowed=scope.allowed_ids())

    def _run_channel(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            out = fn()
        except BadInput:
            raise
        except Exception as e:  # noqa: BLE001 - any backend failure is a channel failure
            metrics.observe_channel(name, time.perf_counter() - t0, failed=True)
            raise ChannelFailed(name, e) from e
        metrics.observe_channel(name, time.perf_counter() - t0)
        return out

    def channel_results(
        self,
        queries: Sequence[str],
        depth: int,
        mode: str,
        *,
        filters: Filters | None = None,
        boosts: dict[str, float] | None = None,
        snapshot: Snapshot | None = None,
        scope: _Scope | None = None,
    ) -> tuple[list[dict[str, list[tuple[str, float]]]], dict[str, str]]:
        """Per query, each channel's ranked ``(id, score)`` list; plus failed channels. Every
        channel reads the same snapshot (``snapshot``, or the index's current one; or the
        one of ``scope``, which collects the dense channel's passages)."""
        scope = scope or _Scope(snapshot or self.index.snapshot(),
                                parse_filter(filters, max_values=self.settings.search.max_filter_values))
        out: list[dict[str, list[tuple[str, float]]]] = [{} for _ in queries]
        failed: dict[str, str] = {}
        names = MODES[mode]
        if len(names) > 1:
            scope.masks()  # computed once, before the channels share it
        runs = [partial(self._run_channel, name, partial(self._channel, name, queries, depth, scope, boosts))
                for name in names]
        pending = _side_by_side(runs[1:]) if len(runs) > 1 else []
        for c, name in enumerate(names):
            try:
                res = runs[0]() if c == 0 else pending[c - 1].result()
            except ChannelFailed as e:
                if self.settings.search.on_channel_failure == "fail" or len(MODES[mode]) == 1:
                    raise
                logger.warning("channel %s failed, answering from the others: %s", name, e.cause)
                failed[name] = str(e.cause)
                continue
            for i, r in enumerate(res):
                out[i][name] = r
        return out, failed

    # -- public API ---------------------------------------------------------------------
    def search(self, query: str, *, k: int = 10, mode: str | None = None, **kw: Any) -> SearchResult:
        return self.search_batch([query], k=k, mode=mode, **kw)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        *,
        k: int = 10,
        mode: str | None = None,
        offset: int = 0,
        filters: Filters | None = None,
        boosts: dict[str, float] | None = None,
        fusion: str | None = None,
        weights: dict[str, float] | None = None,
        rrf_k: int | None = None,
        normalization: str | None = None,
        depth: int | None = None,
        with_documents: bool = True,
        rerank: bool | None = None,
        rerank_depth: int | None = None,
    ) -> list[SearchResult]:
        t0 = time.perf_counter()
        mode = mode or self.settings.search.default_mode
        self._check(queries, k, offset, mode)
        fs, rs = self.settings.fusion, self.settings.rerank
        rerank = rs.enabled if rerank is None else rerank
        rerank_depth = rerank_depth or rs.depth
        if rerank_depth < 1:
            raise BadInput(f"rerank_depth must be >= 1, got {rerank_depth}")
        depth = max(depth or fs.depth, k + offset, rerank_depth if rerank else 0)
        if len(MODES[mode]) == 1 and not (rerank or filters):
            # one channel and nothing that looks past the page: its top offset + k are the
            # answer, whatever the fusion depth (filtered vector searches may drop rows, so
            # they keep the full depth)
            depth = k + offset
        scope = _Scope(self.index.snapshot(), parse_filter(filters, max_values=self.settings.search.max_filter_values))
        per_query, failed = self.channel_results(queries, depth, mode, boosts=boosts, scope=scope)
        results = []
        for qi, (q, channels) in enumerate(zip(queries, per_query)):
            if len(MODES[mode]) == 1:
                (name,) = MODES[mode]
                fused = [Fused(d, s, {name: (r, s)}) for r, (d, s) in enumerate(channels.get(name, []), 1)]
            else:
                fused = fuse(
                    channels,
                    method=fusion or fs.method,  # type: ignore[arg-type]
                    weights=weights if weights is not None else fs.weights,
                    rrf_k=rrf_k or fs.rrf_k,
                    normalization=normalization or fs.normalization,  # type: ignore[arg-type]
                )
            ranked = [Reranked(f, f.score) for f in fused]
            if rerank:
                metrics.observe_rerank_batch(min(rerank_depth, len(fused)))
                ranked = rerank_candidates(q, fused, self.reranker, self.index.get, depth=rerank_depth, blend=rs.blend)
            hits = [
                Hit(
                    id=r.item.id,
                    score=r.score,
                    rank=offset + i + 1,
                    channels={c: ChannelScore(rank=cr, score=cs) for c, (cr, cs) in r.item.channels.items()},
                    extra={"rerank": r.rerank} if r.rerank else {},
                )
                for i, r in enumerate(ranked[offset : offset + k])
            ]
            if with_documents and hits:
                docs = self.index.get([h.id for h in hits])
                for h in hits:
                    h.document = docs.get(h.id)
            if scope.passages and scope.passages[qi]:
                self._mark_passages(hits, scope.passages[qi], scope.snap)
            results.append(
                SearchResult(query=q, mode=mode, hits=hits, degraded=bool(failed), failed_channels=failed)
            )
        took = (time.perf_counter() - t0) * 1000 / max(1, len(queries))
        for r in results:
            r.took_ms = round(took, 3)
        return results
