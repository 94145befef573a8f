"""Reranking fused hits: the part of the search path that ``Searcher`` calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from semsearch.documents import Document
from semsearch.rerank.base import Reranker


@dataclass
class Reranked:
    """A fused candidate after reranking: the final score and, for the top-N, how the
    cross-encoder scored it and where fusion had put it."""

    item: Any
    score: float
    rerank: dict[str, Any] | None = None


def _minmax(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    span = hi - lo
    return [((v - lo) / span) if span > 0 else 1.0 for v in values]


def rerank_candidates(
    query: str,
    fused: Sequence[Any],
    reranker: Reranker,
    get_docs: Callable[[list[str]], dict[str, Document]],
    *,
    depth: int,
    blend: float = 0.0,
) -> list[Reranked]:
    """Rescore the top ``depth`` of ``fused`` (items with ``.id`` and ``.score``).

    The final score is the cross-encoder score (``blend=0``) or
    ``blend * minmax(fusion) + (1 - blend) * minmax(cross-encoder)`` over the top-N. Items
    below the top-N keep their fusion order and score after the reranked ones.
    """
    head, tail = list(fused[:depth]), list(fused[depth:])
    docs = get_docs([f.id for f in head])
    head = [f for f in head if f.id in docs]
    ce = reranker.score(query, [docs[f.id] for f in head]) if head else []
    if blend > 0 and head:
        final = [
            blend * a + (1 - blend) * b
            for a, b in zip(_minmax([f.score for f in head]), _minmax(ce), strict=True)
        ]
    else:
        final = list(ce)
    out = [
        Reranked(f, s, {"score": c, "pre_rank": i + 1, "fusion_score": f.score})
        for i, (f, s, c) in enumerate(zip(head, final, ce, strict=True))
    ]
    out.sort(key=lambda r: -r.score)
    return out + [Reranked(f, f.score) for f in tail]
