from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from semsearch.config import LexicalSettings
from semsearch.documents import Document
from semsearch.errors import BadInput, IndexIncompatible
from semsearch.filters import FilterInput

#: a metadata filter: its JSON form or a parsed tree; the language (equality, any-of, ranges,
#: exists, not/and/or) and its semantics are in :mod:`semsearch.filters`
Filters = FilterInput


@runtime_checkable
class LexicalIndex(Protocol):
    """A BM25 inverted index over the ``title`` and ``text`` fields of documents, plus
    ``all`` (both as one field). Boosts weight the fields' scores."""

    backend: str

    def upsert(self, docs: Sequence[Document]) -> None:
        """Add documents, replacing any with the same id. Visible after :meth:`commit`."""
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many existed. Visible after :meth:`commit`."""
        ...

    def commit(self) -> dict[str, Any]:
        """Make pending changes searchable; returns what it did (e.g. ``{"rebuilt": True}``)."""
        ...

    def search(
        self,
        query: str,
        k: int,
        *,
        boosts: dict[str, float] | None = None,
        filters: Filters | None = None,
    ) -> list[tuple[str, float]]:
        """Return up to ``k`` ``(id, score)`` pairs, best first; documents matching no
        query term are not returned."""
        ...

    def count(self) -> int: ...

    def save(self, path: Path) -> None:
        """Persist into the (new, empty) directory ``path``."""
        ...

    def close(self) -> None: ...


def create_lexical(settings: LexicalSettings) -> LexicalIndex:
    """A new, empty lexical index on a server (Elasticsearch). The embedded lexical channel
    is not a separate index: its postings live in the index's segments
    (:mod:`semsearch.indexer.segments.lexical`)."""
    if settings.backend == "elasticsearch":
        from semsearch.indexer.lexical.elasticsearch import ElasticsearchLexicalIndex

        return ElasticsearchLexicalIndex(settings)
    raise BadInput(f"lexical backend {settings.backend!r} has no separate index")


def open_lexical(path: Path, settings: LexicalSettings, backend: str) -> LexicalIndex:
    """Open a server lexical index saved by :meth:`LexicalIndex.save`."""
    if backend != settings.backend:
        raise IndexIncompatible(
            f"index at {path} was built with lexical backend {backend!r} but settings ask "
            f"for {settings.backend!r}; rebuild the index or set "
            f"SEMSEARCH_LEXICAL__BACKEND={backend}"
        )
    if backend == "elasticsearch":
        from semsearch.indexer.lexical.elasticsearch import ElasticsearchLexicalIndex

        return ElasticsearchLexicalIndex.open(path, settings)
    raise IndexIncompatible(f"index at {path} uses unknown lexical backend {backend!r}")
