"""Searching the store index (the search half of :class:`ElasticsearchCollection`, kept
apart to keep modules small): one ``_msearch`` per batch of queries with equal options,
fusion by the server's retrievers or by :mod:`semsearch.search.fusion`, reranking in
semsearch, partial results flagged, deep pages with ``search_after`` over a point in time."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from semsearch.collection import BatchedSearch, SearchRequest
from semsearch.documents import ChannelScore, Document, Hit, PassageMatch, SearchResult
from semsearch.errors import BackendUnavailable, BadInput, ChannelFailed, IndexNotFound
from semsearch.indexer.es_common import item_reason
from semsearch.search.engine import MODES
from semsearch.search.fusion import Fused, fuse
from semsearch.store_es import mapping, query

logger = logging.getLogger(__name__)


class StoreSearch(BatchedSearch):
    """Mixed into :class:`~semsearch.store_es.collection.ElasticsearchCollection`, which
    provides ``settings``, ``es``, ``conn``, ``alias``, ``location``, ``manifest``,
    ``encoder``, ``reranker``, ``_server_fusion`` and ``get``."""

    settings: Any
    es: Any
    conn: Any
    alias: str
    location: str
    manifest: dict[str, Any]
    encoder: Any
    clip: Any
    reranker: Any
    _server_fusion: bool | None

    def _check(self, queries: Sequence[str], r: SearchRequest, mode: str) -> None:
        if mode not in MODES:
            raise BadInput(f"mode {mode!r} is not available with the elasticsearch store; "
                           f"use one of {sorted(MODES)}")
        if r.k > self.settings.search.max_k:
            raise BadInput(f"k must be between 1 and {self.settings.search.max_k}, got {r.k}")
        for q in queries:
            if not q.strip():
                raise BadInput("query is empty")
        if "dense" in MODES[mode] and not self.manifest.get("dense"):
            raise BadInput(f"{self.location} has no dense channel (no encoded document yet); "
                           "use mode 'lexical'")
        if "image" in MODES[mode] and not self.manifest.get("clip"):
            raise BadInput(f"{self.location} has no image channel for mode 'image' (no image "
                           "document with a CLIP embedding)")

    def _use_server_fusion(self, method: str, normalization: str, weights: dict[str, float],
                           resort: bool) -> bool:
        if self._server_fusion is False or resort:  # the server ranks passages by "max" only
            return False
        if method == "rrf":
            return len({weights.get("lexical", 1.0), weights.get("dense", 1.0)}) == 1
        return normalization == "minmax"

    def _search_same(self, queries: list[str], r: SearchRequest, *,
                     passages: bool = True, again: bool = False) -> list[SearchResult]:
        t0 = time.perf_counter()
        fs, rs = self.settings.fusion, self.settings.rerank
        mode = r.mode or self.settings.search.default_mode
        self._check(queries, r, mode)
        channels = MODES[mode]
        rerank = rs.enabled if r.rerank is None else r.rerank
        rerank_depth = r.rerank_depth or rs.depth
        boosts = r.boosts or self.settings.lexical.boosts
        method = r.fusion or fs.method
        weights = r.weights if r.weights is not None else fs.weights
        normalization = r.normalization or fs.normalization
        window = r.offset + r.k
        if window > self.es.max_result_window:
            if mode == "lexical" and not rerank:
                return [self._deep_page(q, r, boosts) for q in queries]
            raise BadInput(f"offset + k = {window} is beyond max_result_window "
                           f"({self.es.max_result_window}) for mode {mode!r}")
        depth = max(r.depth or fs.depth, window, rerank_depth if rerank else 0)
        vecs = self.encoder.encode(queries) if "dense" in channels else None
        if "image" in channels:  # text to image through the CLIP text tower
            vecs = self.clip.encode_texts(queries)
        dense = self.manifest.get("dense")
        field = mapping.vector_field(dense)
        ps = self.settings.text_encoder.passages
        # the passage layout: the server ranks a document by its best passage; "sum_top" sums
        # its best top_n (their inner hits), so the dense list is re-sorted here
        layout = self._reads_passages(channels, passages)
        resort = layout and ps.aggregation == "sum_top"
        # the server pages (from/size) one channel, unless it is re-sorted or reranked here
        single = len(channels) == 1 and not rerank and not resort
        # inner hits cost about 0.8 ms per hit (nested fetch): asked for the candidates only
        # when sum_top needs them, else for a page the server cuts; a fused page's best
        # passages are read with its documents (_complete)
        n_passages = (ps.top_n if resort else int(single)) if layout else 0

        bodies: list[tuple[str, dict[str, Any]]] = []  # (channel, body) per query, in order
        server = (len(channels) == 2 and not rerank
                  and self._use_server_fusion(method, normalization, weights, resort))
        for i, q in enumerate(queries):
            if server:
                bodies.append(("hybrid", query.retriever_body(
                    q, vecs[i].tolist(), method=method, depth=depth, size=r.k, offset=r.offset,
                    num_candidates=self.es.num_candidates(depth), boosts=boosts, filters=r.filters,
                    weights=weights, rrf_k=r.rrf_k or fs.rrf_k, with_documents=r.with_documents,
                    field=field)))
                continue
            size, offset = (r.k, r.offset) if single else (depth, 0)
            # fused candidates come without their documents (a depth of 100 per channel would
            # fetch and parse 200 sources to show 10): the page (and the rerank candidates)
            # are fetched by id once fused
            with_docs = r.with_documents and single
            for ch in channels:
                if ch == "lexical":
                    body = query.lexical_body(q, size=size, offset=offset, boosts=boosts,
                                              filters=r.filters, with_documents=with_docs)
                elif ch == "image":
                    body = query.dense_body(vecs[i].tolist(), size=size, offset=offset,
                                            num_candidates=self.es.num_candidates(size + offset), filters=r.filters,
                                            with_documents=with_docs, field=mapping.CLIP_FIELD)
                else:
                    body = query.dense_body(vecs[i].tolist(), size=size, offset=offset,
                                            num_candidates=self.es.num_candidates(size + offset), filters=r.filters,
                                            with_documents=with_docs, field=field, passages=n_passages)
                bodies.append((ch, body))
        try:
            responses = self._msearch([b for _, b in bodies])
        except BackendUnavailable as e:  # ChannelFailed included
            if server and self._server_fusion is None and "retriever" in str(e):
                self._server_fusion = False  # e.g. "unknown retriever [rrf]": fuse here
                logger.info("%s cannot fuse with retrievers; fusing in semsearch", self.location)
                return self._search_same(queries, r, passages=passages)
            raise
        if server:
            self._server_fusion = True
        if "dense" in channels and not again and self._reencoded_since(responses):
            # the alias moved to an index re-encoded with another model since this replica
            # read the manifest (adapt): the query encoder has followed; search again, once
            return self._search_same(queries, r, passages=passages, again=True)

        results, pages = [], []
        per_query = 1 if server else len(channels)
        for i, q in enumerate(queries):
            ranked: dict[str, list[tuple[str, float]]] = {}
            sources: dict[str, dict[str, Any]] = {}
            failed: dict[str, str] = {}
            # the dense channel's best passage per document (None: seen, one passage)
            found: dict[str, PassageMatch | None] = {}
            for j in range(per_query):
                ch, _ = bodies[i * per_query + j]
                resp = responses[i * per_query + j]
                if "error" in resp:
                    err = BackendUnavailable(f"{self.location}: {ch} search failed: {_search_error(resp)}")
                    if self.settings.search.on_channel_failure == "fail" or per_query == 1:
                        raise ChannelFailed(ch, err)
                    failed[ch] = str(err)
                    continue
                shards = resp.get("_shards") or {}
                if shards.get("failed"):
                    reasons = {str((f.get("reason") or {}).get("type")) for f in shards.get("failures", [])}
                    failed[ch] = (f"partial results: {shards['failed']} of {shards.get('total')} "
                                  f"shards failed ({', '.join(sorted(reasons))})")
                hits = resp["hits"]["hits"]
                score = float if ch == "lexical" else query.dense_score
                ranked[ch] = [(h["_id"], score(h["_score"] or 0.0)) for h in hits]
                if ch == "dense" and n_passages:
                    ranked[ch] = self._passages_of(hits, found, ps.top_n if resort else 0)
                for h in hits:
                    if "_source" in h:
                        sources.setdefault(h["_id"], h["_source"])
            results.append(self._assemble(q, mode, r, ranked, sources, failed, single or server,
                                          method, weights, normalization, rerank, rerank_depth))
            if vecs is not None and "dense" in channels and not passages:
                results[-1]._query_vector = vecs[i]  # for _page_passages
            pages.append(_Page(results[-1].hits, sources, found,
                               vecs[i].tolist() if layout and vecs is not None else None))
        self._complete(pages, field, r.with_documents)
        took = (time.perf_counter() - t0) * 1000 / max(1, len(queries))
        for res in results:
            res.took_ms = round(took, 3)
        return results

    def _reencoded_since(self, responses: list[dict[str, Any]]) -> bool:
        """Whether hits came from a physical index other than the one whose manifest this
        replica holds (a rebuild moved the alias); if so the manifest is read again, and True
        when the text encoder changed with it (the query vectors are the old model's)."""
        seen = {h.get("_index") for resp in responses for h in (resp.get("hits") or {}).get("hits", [])}
        if not seen or seen == {self._manifest_index}:
            return False
        before = mapping.dense_encoder(self.manifest)
        self._manifest_read = float("-inf")  # read again now (a failed read keeps the one held, and says so)
        after = mapping.dense_encoder(self.manifest)
        if self._manifest_index not in seen:  # not read: not asked again at every search
            self._manifest_index = sorted(i for i in seen if i)[-1]
        return after != before

    def _reads_passages(self, channels: Sequence[str], passages: bool) -> bool:
        """Whether a search of ``channels`` reads the dense channel's passages itself: the
        passage layout, unless ``passages=False`` (a collapsed search's window, whose page
        :meth:`_page_passages` completes) and "sum_top" does not need them to rank."""
        return (mapping.has_passages(self.manifest.get("dense")) and "dense" in channels
                and (passages or self.settings.text_encoder.passages.aggregation == "sum_top"))

    def _page_passages(self, results: list[SearchResult], r: SearchRequest) -> None:
        """The best passage of each hit of the cut pages that the dense channel found, in
        one round trip (``_complete``: a kNN restricted to each page's ids), with the query
        vectors the window's search kept (or encoded again): ~0.8 ms per candidate is what
        ``inner_hits`` on the whole window would cost."""
        kept = [res._query_vector for res in results]
        for res in results:  # internal: not left on what the caller gets
            res._query_vector = None
        channels = MODES.get(r.mode or self.settings.search.default_mode, ())
        # nothing to do without passages, or when the window read them already
        if not self._reads_passages(channels, True) or self._reads_passages(channels, False):
            return
        todo = [(res, v) for res, v in zip(results, kept) if any("dense" in h.channels for h in res.hits)]
        missing = [res.query for res, v in todo if v is None]
        fresh = iter(self.encoder.encode(missing) if missing else [])
        pages = [_Page(res.hits, {}, {}, (next(fresh) if v is None else v).tolist()) for res, v in todo]
        if pages:
            self._complete(pages, mapping.vector_field(self.manifest.get("dense")), False)

    def _assemble(self, q: str, mode: str, r: SearchRequest, ranked: dict[str, list[tuple[str, float]]],
                  sources: dict[str, dict[str, Any]], failed: dict[str, str], paged: bool,
                  method: str, weights: dict[str, float], normalization: str, rerank: bool,
                  rerank_depth: int) -> SearchResult:
        """Fuse, rerank and cut the page: hits without documents or passages (``_complete``)."""
        fs = self.settings.fusion
        if "hybrid" in ranked:  # fused by the server: no per-channel explanation
            fused = [Fused(d, s, {}) for d, s in ranked["hybrid"]]
        elif len(ranked) == 1:
            ((name, lst),) = ranked.items()
            start = r.offset if paged else 0
            fused = [Fused(d, s, {name: (start + n, s)}) for n, (d, s) in enumerate(lst, 1)]
        else:
            fused = fuse(ranked, method=method, weights=weights,  # type: ignore[arg-type]
                         rrf_k=r.rrf_k or fs.rrf_k, normalization=normalization)  # type: ignore[arg-type]
        from semsearch.rerank.apply import Reranked, rerank_candidates

        items = [Reranked(f, f.score) for f in fused]
        if rerank:
            items = rerank_candidates(q, fused, self.reranker, self._docs_getter(sources),
                                      depth=rerank_depth, blend=self.settings.rerank.blend)
        page = items if paged else items[r.offset : r.offset + r.k]
        hits = [Hit(id=it.item.id, score=it.score, rank=r.offset + n + 1,
                    channels={c: ChannelScore(rank=cr, score=cs) for c, (cr, cs) in it.item.channels.items()},
                    extra={"rerank": it.rerank} if it.rerank else {})
                for n, it in enumerate(page)]
        return SearchResult(query=q, mode=mode, hits=hits, degraded=bool(failed),
                            failed_channels=failed)

    def _complete(self, pages: list[_Page], field: str, with_documents: bool) -> None:
        """Attach the pages' documents (those not sent with the candidates) and, in the
        passage layout, the best passage of each hit the dense channel found, in one round
        trip for the whole batch: an ``mget``, or where passages are missing one ``_msearch``
        with one body per page -- a kNN restricted to the page's ids (exact: a few documents'
        passages) with ``inner_hits``, plus the ids whose documents are missing."""
        need = []
        for pg in pages:
            docs = [h.id for h in pg.hits if h.id not in pg.sources] if with_documents else []
            dense = ([h.id for h in pg.hits if "dense" in h.channels and h.id not in pg.found]
                     if pg.vector is not None else [])
            need.append((docs, dense))
        if any(dense for _, dense in need):
            bodies = []
            for pg, (docs, dense) in zip(pages, need):
                if not dense:  # still one body per page, keeping the answers in order
                    bodies.append({"query": {"ids": {"values": docs}}, "size": len(docs),
                                   "_source": query.source(True), "track_total_hits": False})
                    continue
                knn = query.knn_clause(pg.vector, len(dense), len(dense), None, field=field, passages=1)
                knn["filter"] = [{"ids": {"values": dense}}]
                body = {"knn": knn, "size": len(set(docs) | set(dense)),
                        "_source": query.source(bool(docs)), "track_total_hits": False}
                if docs:
                    body["query"] = {"ids": {"values": docs}}
                bodies.append(body)
            for pg, resp in zip(pages, self._msearch(bodies)):
                hits = (resp.get("hits") or {}).get("hits", [])
                self._passages_of([h for h in hits if "inner_hits" in h], pg.found, 0)
                pg.sources.update({h["_id"]: h["_source"] for h in hits if h.get("_source")})
        elif any(docs for docs, _ in need):
            fetched = {i: document_source(d) for i, d in self.get([i for docs, _ in need for i in docs]).items()}
            for pg, (docs, _) in zip(pages, need):
                pg.sources.update({i: fetched[i] for i in docs if i in fetched})
        for pg in pages:
            for h in pg.hits:
                if "dense" in h.channels:
                    h.passage = pg.found.get(h.id)
                if with_documents and h.id in pg.sources:
                    h.document = stored_document(h.id, pg.sources[h.id])

    @staticmethod
    def _passages_of(hits: list[dict[str, Any]], found: dict[str, PassageMatch | None],
                     sum_top: int) -> list[tuple[str, float]]:
        """The dense list of passage-layout hits: each document's best passage noted in
        ``found`` (documents of several passages); with ``sum_top``, scored by the sum of
        its best ``sum_top`` passages and re-sorted (as the embedded engine's "sum_top")."""
        out = []
        for h in hits:
            best = query.best_passages(h)
            score = query.dense_score(h["_score"] or 0.0)
            if best:
                n, _, span = best[0]
                count = int(span.get("count", 1))
                found[h["_id"]] = (PassageMatch(index=n, count=count, start=span.get("start"),
                                                end=span.get("end")) if count > 1 else None)
                if sum_top:
                    score = sum(s for _, s, _ in best[:sum_top])
            out.append((h["_id"], score))
        if sum_top:
            out.sort(key=lambda x: -x[1])  # stable: ties keep the server's order
        return out

    def _docs_getter(self, sources: dict[str, dict[str, Any]]) -> Any:
        def get(ids: list[str]) -> dict[str, Document]:
            have = {i: stored_document(i, sources[i]) for i in ids if i in sources}
            rest = [i for i in ids if i not in have]
            fetched = self.get(rest) if rest else {}
            sources.update({i: document_source(d) for i, d in fetched.items()})  # not again for the page
            return {**have, **fetched}
        return get

    def _msearch(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        searches: list[dict[str, Any]] = []
        for b in bodies:
            searches += [{"index": self.alias}, b]
        resp = self.conn.call(f"search {self.alias}", lambda c: c.msearch(searches=searches))
        out = resp["responses"]
        errs = [x for x in out if "error" in x]
        if errs and len(errs) == len(out):
            status = errs[0].get("status")
            if status == 404:
                raise IndexNotFound(f"{self.location} does not exist: {item_reason(errs[0])}")
            raise ChannelFailed("elasticsearch", BackendUnavailable(
                f"{self.location}: search failed: {item_reason(errs[0])}"))
        return out

    def _deep_page(self, q: str, r: SearchRequest, boosts: dict[str, float]) -> SearchResult:
        """A lexical page beyond ``max_result_window``: ``search_after`` over a point in time."""
        body = query.lexical_body(q, size=0, boosts=boosts, filters=r.filters, with_documents=False)
        skip, got = r.offset, []
        for batch in self.pit_pages(body, ["_score", "_shard_doc"]):
            if skip >= len(batch):
                skip -= len(batch)
                continue
            got += batch[skip:]
            skip = 0
            if len(got) >= r.k:
                break
        hits = [Hit(id=h["_id"], score=float(h["_score"] or 0.0), rank=r.offset + n + 1,
                    channels={"lexical": ChannelScore(rank=r.offset + n + 1, score=float(h["_score"] or 0.0))})
                for n, h in enumerate(got[: r.k])]
        if r.with_documents and hits:
            docs = self.get([h.id for h in hits])
            for h in hits:
                h.document = docs.get(h.id)
        return SearchResult(query=q, mode="lexical", hits=hits)

    def pit_pages(self, body: dict[str, Any], sort: list[Any], page: int = 1000, *,
                   index: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of hits of ``body`` over a point in time of ``index`` (default: the alias)."""
        index = index or self.alias
        pit = self.conn.call(f"open point in time on {index}", lambda c: c.open_point_in_time(
            index=index, keep_alive=self.es.pit_keep_alive))["id"]
        page = min(page, self.es.max_result_window)  # a page is itself capped by the window
        try:
            after = None
            while True:
                b = {k: v for k, v in body.items() if k not in ("from", "size")}
                b.update(size=page, sort=sort, pit={"id": pit, "keep_alive": self.es.pit_keep_alive})
                if after is not None:
                    b["search_after"] = after
                resp = self.conn.call(f"page {index}", lambda c, b=b: c.search(**b))
                pit = resp.get("pit_id", pit)
                hits = resp["hits"]["hits"]
                if not hits:
                    return
                yield hits
                after = hits[-1]["sort"]
        finally:
            try:
                self.conn.call("close point in time", lambda c: c.close_point_in_time(id=pit))
            except Exception:  # noqa: BLE001 - it expires by itself
                logger.debug("could not close a point in time", exc_info=True)


@dataclass
class _Page:
    """One query's page while it is completed: its hits, the sources known (by id), the
    dense channel's passages seen, and the query vector (the passage layout only)."""

    hits: list[Hit]
    sources: dict[str, dict[str, Any]]
    found: dict[str, PassageMatch | None]
    vector: list[float] | None


def document_source(d: Document) -> dict[str, Any]:
    """A document as its stored ``_source`` (without embeddings or hashes)."""
    src: dict[str, Any] = {"title": d.title, "text": d.text, "metadata": d.metadata}
    if d.image is not None:
        src["image"] = d.image
    return src


def _search_error(resp: dict[str, Any]) -> str:
    """The root cause of a failed search in an ``_msearch`` answer."""
    err = resp.get("error")
    if isinstance(err, dict):
        causes = err.get("root_cause") or []
        if causes and isinstance(causes[0], dict):
            return f"{err.get('type')}: {causes[0].get('type')}: {causes[0].get('reason')}"
    return item_reason(resp)



def stored_document(doc_id: str, src: dict[str, Any]) -> Document:
    return Document(id=doc_id, title=src.get("title") or "", text=src.get("text") or "",
                    metadata=src.get("metadata") or {}, image=src.get("image"))


