"""Cross-encoder reranking of fused hits (inference). Training lives in ``rerank.train``."""

from semsearch.rerank.base import Reranker
from semsearch.rerank.fields import FieldLayout

__all__ = ["FieldLayout", "Reranker"]
