"""``POST /v1/search``: text search in the lexical, dense or hybrid mode."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends

from semsearch.config import Settings
from semsearch.documents import Document, Hit, SearchResult
from semsearch.errors import BadInput
from semsearch.search.highlight import matches, query_terms, snippet
from semsearch.search_api.batching import QueryBatcher
from semsearch.search_api.deps import get_batcher, get_settings, require_json, require_read_key
from semsearch.search_api.schemas import (
    HitOut,
    SearchRequest,
    SearchResponse,
    Snippet,
    error_responses,
)

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[Depends(require_read_key)])


def search_options(req: SearchRequest, settings: Settings) -> dict[str, Any]:
    """The :meth:`IndexService.search` options of a request, after the server's limits."""
    if req.k > settings.api.max_k:
        raise BadInput(f"k must be <= {settings.api.max_k} (the server's max_k), got {req.k}")
    if req.offset + req.k > settings.search.max_k:
        raise BadInput(f"offset + k must be <= {settings.search.max_k}, got {req.offset + req.k}")
    if len(req.query) > settings.api.max_query_chars:
        raise BadInput(f"query is {len(req.query)} characters long (max {settings.api.max_query_chars})")
    filters = None
    if req.filters:
        filters = {f: (v.model_dump(exclude_none=True) if hasattr(v, "model_dump") else v)
                   for f, v in req.filters.items()}
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
    out = HitOut(id=hit.id, rank=hit.rank, score=hit.score,
                 channels=hit.channels if req.explain else None,
                 duplicates=list(hit.extra.get("duplicates", [])))
    if doc is not None:
        stem = settings.lexical.embedded.stemmer
        out.title = doc.title
        out.metadata = doc.metadata
        out.image = doc.image
        out.image_url = image_url(doc)
        if req.snippets:
            out.title_highlights = matches(doc.title, terms, stemmer=stem)
            s = snippet(doc.text, terms, max_chars=settings.api.snippet_chars, stemmer=stem)
            out.snippet = Snippet(text=s.text, highlights=s.highlights,
                                  truncated_start=s.truncated_start, truncated_end=s.truncated_end)
    return out


@router.post(
    "/search",
    response_model=SearchResponse,
    dependencies=[Depends(require_json)],
    responses=error_responses(400, 401, 403, 413, 415, 422, 503),
    summary="Search documents by a text query (mode image: images by text)",
)
async def search(
    req: SearchRequest,
    settings: Settings = Depends(get_settings),
    batcher: QueryBatcher[SearchResult] = Depends(get_batcher),
) -> SearchResponse:
    opts = search_options(req, settings)
    result = await batcher.submit(req.query, opts)
    emb = settings.lexical.embedded
    terms = query_terms(req.query, stemmer=emb.stemmer, stopwords=emb.stopwords) if req.snippets else set()
    return SearchResponse(
        query=result.query, mode=result.mode, k=req.k, offset=req.offset,
        hits=[hit_out(h, req, terms, settings) for h in result.hits],
        degraded=result.degraded, failed_channels=result.failed_channels, took_ms=result.took_ms,
    )
