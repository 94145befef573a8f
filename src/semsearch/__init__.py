"""semsearch: a semantic search and retrieval engine.

Heavy dependencies (torch, faiss, sentence-transformers, elasticsearch) are imported lazily,
so ``import semsearch`` is cheap and loads no model.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
