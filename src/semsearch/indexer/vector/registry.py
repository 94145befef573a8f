"""Vector indexes kept as one object per channel (hash channels of a snapshot, Elasticsearch
channels); FAISS float channels live in segments (indexer/segments/vectors.py)."""

from __future__ import annotations

from pathlib import Path

from semsearch.config import Settings
from semsearch.errors import IndexIncompatible
from semsearch.indexer.manifest import ChannelSpec
from semsearch.indexer.vector.base import VectorIndex


def create_vector(spec: ChannelSpec, settings: Settings) -> VectorIndex:
    if spec.backend == "faiss-binary":
        from semsearch.indexer.vector.faiss_binary import FaissBinaryIndex

        kind = spec.settings.get("kind", settings.images.binary_index)
        return FaissBinaryIndex(spec.dim, kind=kind, gpu=settings.images.gpu)
    if spec.backend == "elasticsearch":
        from semsearch.indexer.vector.elasticsearch import ElasticsearchVectorIndex

        es = settings.lexical.elasticsearch
        return ElasticsearchVectorIndex(spec.dim, es, spec.settings.get("index", f"{es.index}-vectors"))
    raise IndexIncompatible(f"unknown vector backend {spec.backend!r}")


def open_vector(path: Path, spec: ChannelSpec, settings: Settings) -> VectorIndex:
    if spec.backend == "faiss-binary":
        from semsearch.indexer.vector.faiss_binary import FaissBinaryIndex

        return FaissBinaryIndex.open(path, gpu=settings.images.gpu)
    if spec.backend == "elasticsearch":
        from semsearch.indexer.vector.elasticsearch import ElasticsearchVectorIndex

        return ElasticsearchVectorIndex.open(path, settings.lexical.elasticsearch)
    raise IndexIncompatible(f"index channel at {path} uses unknown vector backend {spec.backend!r}")
