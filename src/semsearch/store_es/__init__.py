"""Elasticsearch as the system of record (``SEMSEARCH_STORE__BACKEND=elasticsearch``): one
index behind an alias holds every document, its text embedding and its image hashes; no
local directory is needed to search or write, so API replicas are stateless.

- :mod:`.mapping` -- the index's settings, mappings and the ``_meta`` manifest (checked on open)
- :mod:`.writer` -- bulk writes (parallel chunks, retries, every rejected document reported)
- :mod:`.query` -- request bodies: BM25, kNN with the filter inside, hybrid (retrievers or
  one ``_msearch``), filters
- :mod:`.rebuild` -- zero-downtime rebuild (alias swap) that keeps the writes made meanwhile
- :mod:`.collection` -- :class:`ElasticsearchCollection`, the public API of
  :class:`semsearch.collection.Collection` on Elasticsearch
"""

from semsearch.store_es.collection import ElasticsearchCollection

__all__ = ["ElasticsearchCollection"]
