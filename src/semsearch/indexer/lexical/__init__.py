"""Lexical (BM25) indexes behind the :class:`LexicalIndex` protocol, one module per backend."""

from semsearch.indexer.lexical.base import LexicalIndex, create_lexical, open_lexical

__all__ = ["LexicalIndex", "create_lexical", "open_lexical"]
