"""``POST /v1/search``: text search in the lexical, dense or hybrid mode."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from semsearch import metrics
from semsearch.config import Settings
from semsearch.documents import Document, Hit, SearchResult
from semsearch.search.highlight import matches, query_terms, snippet
from semsearch.search_api.batching import QueryBatcher
from semsearch.search_api.deps import get_batcher, get_settings, require_json, require_read_key
from semsearch.search_api.errors import DeadlineExceeded
from semsearch.search_api.limits import check_search
from semsearch.search_api.schemas import (
    HitOut,
    SearchRequest,
    SearchResponse,
    Snippet,
    error_responses,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[Depends(require_read_key)])

#: above this many characters of hit text in one answer its snippets are built in a worker
#: thread rather than on the event loop (a thread hop costs more than a few short snippets)
INLINE_SNIPPET_CHARS = 20_000


def search_options(req: SearchRequest, settings: Settings) -> dict[str, Any]:
    """The :class:`~semsearch.collection.SearchRequest` options of a request, after the
    server's caps (:func:`~semsearch.search_api.limits.check_search`)."""
    check_search(req, settings)
    filters = req.filters or None
    return {
        "k": req.k, "offset": req.offset, "mode": req.mode, "filters": filters,
        "fusion": req.fusion, "weights": req.weights, "rrf_k": req.rrf_k,
        "normalization": req.normalization, "depth": req.depth,
        "rerank": req.rerank, "rerank_depth": req.rerank_depth, "collapse": req.collapse,
    }


def image_url(doc: Document | None) -> str | None:
    """Where the page fetches a document's image thumbnail (only indexed documents)."""
    if doc is None or doc.image is None:
        return None
    return "/v1/images/" + quote(doc.id, safe="/")


def hit_out(hit: Hit, req: SearchRequest, terms: set[str], settings: Settings) -> HitOut:
    doc = hit.document
    fields: dict[str, Any] = {}  # one model construction (each attribute set validates)
    if doc is not None:
        stem = settings.lexical.embedded.stemmer
        fields.update(title=doc.title, metadata=doc.metadata, image=doc.image, image_url=image_url(doc))
        if req.snippets:
            fields["title_highlights"] = matches(doc.title, terms, stemmer=stem)
            # a long document's snippet comes from the passage the dense channel matched
            p = hit.passage
            start, end = (p.start, p.end) if p is not None and p.start is not None else (0, len(doc.text))
            text = doc.text[start : min(end, start + settings.api.max_snippet_source_chars)]
            s = snippet(text, terms, max_chars=settings.api.snippet_chars, stemmer=stem)
            fields["snippet"] = Snippet(text=s.text, highlights=s.highlights,
                                        truncated_start=s.truncated_start or start > 0,
                                        truncated_end=s.truncated_end or start + len(text) < len(doc.text))
    return HitOut(id=hit.id, rank=hit.rank, score=hit.score,
                  channels=hit.channels if req.explain else None,
                  duplicates=list(hit.extra.get("duplicates", [])), passage=hit.passage, **fields)


@router.post(
    "/search",
    response_model=SearchResponse,
    dependencies=[Depends(require_json)],
    responses=error_responses(400, 401, 403, 413, 415, 422, 503),
    summary="Search documents by a text query (mode image: images by text)",
)
async def search(
    req: SearchRequest,
    request: Request,
    settings: Settings = Depends(get_settings),
    batcher: QueryBatcher[SearchResult] = Depends(get_batcher),
) -> SearchResponse:
    """Limits: ``k``, ``offset``, ``depth``, ``rerank_depth``, the filter's size and the
    query's length are capped by the server (``api.max_*``; 400 naming the setting), and a
    search that runs longer than ``api.request_timeout_s`` is answered 503."""
    opts = search_options(req, settings)
    request.state.mode = req.mode or settings.search.default_mode
    timeout = settings.api.request_timeout_s or None
    try:
        result = await asyncio.wait_for(batcher.submit(req.query, opts), timeout)
    except asyncio.TimeoutError:
        metrics.count_rejected("deadline")
        raise DeadlineExceeded(
            f"the search did not finish within {settings.api.request_timeout_s:g} s "
            "(api.request_timeout_s); try a smaller k or depth, or later") from None
    response = await build_response(req, result, settings)
    # reported on the request's one access line (middleware); a line of its own at DEBUG only
    request.state.search = {"k": req.k, "offset": req.offset, "hits": len(result.hits),
                            "took_ms": round(result.took_ms, 1), "degraded": result.degraded}
    logger.debug("search mode=%s k=%d offset=%d hits=%d took_ms=%.1f degraded=%s", result.mode,
                 req.k, req.offset, len(result.hits), result.took_ms, result.degraded)
    return response


async def build_response(req: SearchRequest, result: SearchResult, settings: Settings) -> SearchResponse:
    """The answer, with snippets; built in a worker thread when the hits' texts are long."""
    if req.snippets and sum(min(len(h.document.text), settings.api.max_snippet_source_chars)
                            for h in result.hits if h.document is not None) > INLINE_SNIPPET_CHARS:
        return await run_in_threadpool(_response, req, result, settings)
    return _response(req, result, settings)


def _response(req: SearchRequest, result: SearchResult, settings: Settings) -> SearchResponse:
    emb = settings.lexical.embedded
    terms = query_terms(req.query, stemmer=emb.stemmer, stopwords=emb.stopwords) if req.snippets else set()
    return SearchResponse(
        query=result.query, mode=result.mode, k=req.k, offset=req.offset,
        hits=[hit_out(h, req, terms, settings) for h in result.hits],
        degraded=result.degraded, failed_channels=result.failed_channels, took_ms=result.took_ms,
    )
