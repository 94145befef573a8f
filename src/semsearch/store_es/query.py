"""Request bodies for the store index: BM25, kNN with the filter pushed into ``knn.filter``,
and hybrid search as ONE request -- either an Elasticsearch retriever (``rrf``, or
``linear`` with min-max normalisation) or one ``_msearch`` with both channels whose answers
semsearch fuses itself (:mod:`semsearch.search.fusion`, which keeps per-channel ranks).

Filters go through :func:`es_filter`, the one place that turns semsearch's filter language
into Elasticsearch clauses (to be replaced by ``semsearch.filters.to_elasticsearch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from semsearch.filters import parse_filter, to_elasticsearch
from semsearch.indexer.lexical.elasticsearch import bm25_query
from semsearch.store_es.mapping import PASSAGE_FIELD, SOURCE_EXCLUDES, VECTOR_FIELD


def es_filter(filters: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Metadata filters (the one filter language, :mod:`semsearch.filters`) as Elasticsearch
    filter clauses (``bool.filter`` / ``knn.filter``)."""
    flt = parse_filter(filters)
    return [] if flt is None else [to_elasticsearch(flt)]


def source(with_documents: bool) -> Any:
    return {"excludes": SOURCE_EXCLUDES} if with_documents else False


def knn_clause(vector: Sequence[float], k: int, num_candidates: int,
               filters: dict[str, Any] | None, *, field: str = VECTOR_FIELD,
               passages: int = 0) -> dict[str, Any]:
    """``field``: the vector field (``passages.vector`` for the passage layout, whose kNN
    ranks documents by their best passage); ``passages``: with it, name each hit's best
    ``passages`` passages (``inner_hits``: offset, score, span, count)."""
    knn: dict[str, Any] = {"field": field, "query_vector": list(vector), "k": k,
                           "num_candidates": max(k, num_candidates)}
    clauses = es_filter(filters)
    if clauses:
        knn["filter"] = clauses  # applied during the graph search, not after it
    if passages and field.startswith(f"{PASSAGE_FIELD}."):
        knn["inner_hits"] = {"size": passages, "_source": {"excludes": [f"{PASSAGE_FIELD}.vector"]}}
    return knn


def lexical_body(query: str, *, size: int, offset: int = 0, boosts: dict[str, float],
                 filters: dict[str, Any] | None, with_documents: bool) -> dict[str, Any]:
    return {"query": bm25_query(query, boosts, es_filter(filters)), "size": size, "from": offset,
            "_source": source(with_documents), "track_total_hits": False}


def dense_body(vector: Sequence[float], *, size: int, offset: int = 0, num_candidates: int,
               filters: dict[str, Any] | None, with_documents: bool, field: str = VECTOR_FIELD,
               passages: int = 0) -> dict[str, Any]:
    knn = knn_clause(vector, offset + size, num_candidates, filters, field=field, passages=passages)
    return {"knn": knn, "size": size, "from": offset, "_source": source(with_documents),
            "track_total_hits": False}


def retriever_body(query: str, vector: Sequence[float], *, method: str, depth: int, size: int,
                   offset: int, num_candidates: int, boosts: dict[str, float],
                   filters: dict[str, Any] | None, weights: dict[str, float], rrf_k: int,
                   with_documents: bool, field: str = VECTOR_FIELD) -> dict[str, Any]:
    """Hybrid search fused by the server: ``rrf`` or ``linear`` (min-max normalised). A
    passage-layout document is ranked by its best passage; which one is not reported."""
    std = {"standard": {"query": bm25_query(query, boosts, es_filter(filters))}}
    knn = {"knn": knn_clause(vector, depth, num_candidates, filters, field=field)}
    if method == "rrf":
        retr: dict[str, Any] = {"rrf": {"retrievers": [std, knn], "rank_constant": rrf_k,
                                        "rank_window_size": depth}}
        # rrf has no per-retriever weights in 8.x; unequal weights need the client path
    else:
        retr = {"linear": {"retrievers": [
            {"retriever": std, "weight": weights.get("lexical", 1.0), "normalizer": "minmax"},
            {"retriever": knn, "weight": weights.get("dense", 1.0), "normalizer": "minmax"},
        ], "rank_window_size": depth}}
    return {"retriever": retr, "size": size, "from": offset, "_source": source(with_documents),
            "track_total_hits": False}


def dense_score(es_score: float) -> float:
    """Elasticsearch's ``dot_product`` score ``(1 + dot) / 2`` mapped back to the dot product."""
    return 2.0 * float(es_score) - 1.0


def best_passages(hit: dict[str, Any]) -> list[tuple[int, float, dict[str, Any]]]:
    """A passage-layout kNN hit's ``inner_hits``, best first: ``(passage number, dot
    product, {start, end, count})``."""
    inner = ((hit.get("inner_hits") or {}).get(PASSAGE_FIELD) or {}).get("hits", {}).get("hits", [])
    return [(int(h["_nested"]["offset"]), dense_score(h["_score"] or 0.0), h.get("_source") or {})
            for h in inner]
