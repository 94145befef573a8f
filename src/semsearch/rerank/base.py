"""The ``Reranker`` protocol: score (query, document) pairs, higher is more relevant."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from semsearch.documents import Document


@runtime_checkable
class Reranker(Protocol):
    @property
    def name(self) -> str: ...

    def score(self, query: str, documents: Sequence[Document]) -> list[float]:
        """One relevance score per document, in the order given."""
        ...
