"""Vector indexes behind the :class:`VectorIndex` protocol, one module per backend."""

from semsearch.indexer.vector.base import VectorIndex

__all__ = ["VectorIndex"]
