"""The store index's settings and mappings, and the manifest kept in its ``_meta``.

One document per semsearch document: ``title``/``text`` (copied into ``all``, analysed,
scored by a BM25 similarity with the configured k1/b), ``metadata`` (dynamic: strings as
``keyword``), ``image`` (the path, a keyword), ``embedding`` (``dense_vector``, added by the
first write that has an encoder, like the local index's channels) and the 64-bit perceptual
hashes as ``bit`` vectors (``phash``, ``dhash``, ``phash_mirror``; Hamming distance).

The manifest (format version, encoder and dimension, analyzer, BM25 and vector settings)
lives in ``mappings._meta.semsearch`` and is checked whenever the index is opened.
"""

from __future__ import annotations

from typing import Any

from semsearch import __version__
from semsearch.config import StoreElasticsearchSettings
from semsearch.errors import IndexIncompatible
from semsearch.indexer.lexical.elasticsearch import index_body as lexical_body

FORMAT_VERSION = 1
VECTOR_FIELD = "embedding"
HASH_FIELDS = ("phash", "dhash", "phash_mirror")
#: source fields never sent back with hits or documents
SOURCE_EXCLUDES = [VECTOR_FIELD, *HASH_FIELDS]


def manifest(s: StoreElasticsearchSettings) -> dict[str, Any]:
    """The manifest of a new index (no dense channel until the first encoded write)."""
    return {
        "format_version": FORMAT_VERSION,
        "created_by": f"semsearch {__version__}",
        "analyzer": s.analyzer,
        "hunspell_locale": s.hunspell_locale,
        "k1": s.k1,
        "b": s.b,
        "vector_index": s.vector_index,
        "dense": None,
        "hashes": [],
    }


def vector_mapping(dim: int, s: StoreElasticsearchSettings) -> dict[str, Any]:
    opts: dict[str, Any] = {"type": s.vector_index}
    if s.vector_index.endswith("hnsw"):
        opts.update(m=s.hnsw_m, ef_construction=s.hnsw_ef_construction)
    return {"type": "dense_vector", "dims": dim, "index": True, "similarity": "dot_product",
            "index_options": opts}


def hash_mapping() -> dict[str, Any]:
    # 64 bits as a bit vector: kNN by Hamming distance (l2_norm on bits is Hamming)
    return {"type": "dense_vector", "element_type": "bit", "dims": 64, "index": True,
            "similarity": "l2_norm"}


def index_body(s: StoreElasticsearchSettings) -> dict[str, Any]:
    """Settings and mappings of a new physical index."""
    body = lexical_body(s)
    body["settings"]["refresh_interval"] = s.refresh_interval
    body["settings"]["max_result_window"] = s.max_result_window
    props = body["mappings"]["properties"]
    props["image"] = {"type": "keyword"}
    body["mappings"]["_meta"] = {"semsearch": manifest(s)}
    return body


def read_manifest(mapping: dict[str, Any], where: str) -> dict[str, Any]:
    """The manifest from a ``get_mapping`` answer for one index."""
    meta = ((mapping.get("mappings") or {}).get("_meta") or {}).get("semsearch")
    if not isinstance(meta, dict):
        raise IndexIncompatible(
            f"{where} is not a semsearch store index (no _meta.semsearch manifest in its mapping)"
        )
    return meta


def check_manifest(meta: dict[str, Any], s: StoreElasticsearchSettings, where: str) -> None:
    """Refuse an index whose format or index-time settings differ from ``s``, saying what
    differs and which setting would match it."""
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexIncompatible(
            f"{where} has store format version {meta.get('format_version')!r}; this semsearch "
            f"reads version {FORMAT_VERSION}: rebuild the index"
        )
    wanted = {"analyzer": s.analyzer, "k1": s.k1, "b": s.b, "vector_index": s.vector_index}
    diff = {k: (meta.get(k), v) for k, v in wanted.items() if meta.get(k) != v}
    if diff:
        fix = ", ".join(f"SEMSEARCH_STORE__ELASTICSEARCH__{k.upper()}={have}"
                        for k, (have, _) in diff.items())
        what = "; ".join(f"{k}: index {have!r}, settings {want!r}" for k, (have, want) in diff.items())
        raise IndexIncompatible(f"{where} was built with other settings ({what}); set {fix} "
                                "or rebuild the index with the new settings")


def check_encoder(meta: dict[str, Any], name: str, dim: int, where: str) -> None:
    dense = meta.get("dense")
    if dense and (dense.get("encoder") != name or int(dense.get("dim", -1)) != dim):
        raise IndexIncompatible(
            f"{where} was built with text encoder {dense.get('encoder')!r} ({dense.get('dim')} "
            f"dims) but the configured one is {name!r} ({dim} dims); set "
            f"SEMSEARCH_TEXT_ENCODER__MODEL={dense.get('encoder')}"
        )
