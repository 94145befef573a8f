"""semsearch: a semantic search and retrieval engine.

The public API is :class:`Collection` (open or create an index, write, search) with
:class:`SearchRequest`, :class:`Document` and :class:`SearchResult`. Heavy dependencies
(torch, faiss, sentence-transformers, elasticsearch) are imported lazily, so
``import semsearch`` is cheap and loads no model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Collection", "Document", "Hit", "SearchRequest", "SearchResult", "Settings",
           "WriteResult", "__version__"]

_EXPORTS = {
    "Collection": "semsearch.collection", "SearchRequest": "semsearch.collection",
    "WriteResult": "semsearch.collection", "Document": "semsearch.documents",
    "Hit": "semsearch.documents", "SearchResult": "semsearch.documents",
    "Settings": "semsearch.config",
}

if TYPE_CHECKING:
    from semsearch.collection import Collection, SearchRequest, WriteResult
    from semsearch.config import Settings
    from semsearch.documents import Document, Hit, SearchResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'semsearch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
