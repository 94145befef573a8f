"""The store index's settings and mappings, and the manifest kept in its ``_meta``.

One document per semsearch document: ``title``/``text`` (copied into ``all``, analysed,
scored by a BM25 similarity with the configured k1/b), ``metadata`` (dynamic: strings as
``keyword``), ``image`` (the path, a keyword), ``embedding`` (``dense_vector``, added by the
first write that has an encoder, like the local index's channels), an image's CLIP embedding
(``clip``, a ``dense_vector``: the ``image`` channel) and its 64-bit perceptual hashes as
``bit`` vectors (``phash``, ``dhash``, ``phash_mirror``; Hamming distance).

The text embedding has one of two layouts, recorded in the manifest (``dense.passages``):

- passages (the default, ``text_encoder.passages``, as the embedded engine): ``passages`` is a
  ``nested`` field with one object per passage of the text (:mod:`semsearch.encoders.passages`):
  its vector, its ``[start, end)`` character span in ``text`` and the passage count. A kNN
  search over ``passages.vector`` ranks documents by their best passage (Elasticsearch's
  nested kNN) and ``inner_hits`` names it;
- one vector per document (``embedding``): passages disabled, an index made by
  :meth:`~semsearch.store_es.collection.ElasticsearchCollection.bulk_load`, or one written
  before passages existed in the store.

The manifest (format version, encoder and dimension, analyzer, BM25 and vector settings)
lives in ``mappings._meta.semsearch`` and is checked whenever the index is opened.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from semsearch import __version__
from semsearch.config import StoreElasticsearchSettings
from semsearch.errors import IndexIncompatible
from semsearch.indexer.lexical.elasticsearch import index_body as lexical_body

FORMAT_VERSION = 1
VECTOR_FIELD = "embedding"
#: the nested field of the passage layout: ``{vector, start, end, count}`` per passage
PASSAGE_FIELD = "passages"
HASH_FIELDS = ("phash", "dhash", "phash_mirror")
#: an image's CLIP embedding (the ``image`` channel, as in the local index)
CLIP_FIELD = "clip"
#: source fields never sent back with hits or documents (and copied as they are by a rebuild)
SOURCE_EXCLUDES = [VECTOR_FIELD, PASSAGE_FIELD, CLIP_FIELD, *HASH_FIELDS]


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
        "clip": None,
        "hashes": [],
    }


def channels(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The vector and hash channels a manifest records, by the local index's channel names:
    ``dense`` (text), ``image`` (CLIP), the hashes."""
    out: dict[str, dict[str, Any]] = {"dense": meta["dense"]} if meta.get("dense") else {}
    if meta.get("clip"):
        out["image"] = meta["clip"]
    out.update({h: {"dim": 64} for h in meta.get("hashes", [])})
    return out


def channel_properties(meta: dict[str, Any], s: StoreElasticsearchSettings) -> dict[str, Any]:
    """The mapping of every channel field a manifest records."""
    props: dict[str, Any] = {h: hash_mapping() for h in meta.get("hashes", [])}
    if meta.get("dense"):
        props.update(dense_properties(meta["dense"], s))
    if meta.get("clip"):
        props[CLIP_FIELD] = vector_mapping(int(meta["clip"]["dim"]), s)
    return props


def vector_mapping(dim: int, s: StoreElasticsearchSettings) -> dict[str, Any]:
    opts: dict[str, Any] = {"type": s.vector_index}
    if s.vector_index.endswith("hnsw"):
        opts.update(m=s.hnsw_m, ef_construction=s.hnsw_ef_construction)
    return {"type": "dense_vector", "dims": dim, "index": True, "similarity": "dot_product",
            "index_options": opts}


def dense_encoder(meta: dict[str, Any]) -> str | None:
    """The text encoder a manifest records (None: no text embedding yet)."""
    return (meta.get("dense") or {}).get("encoder")


def has_passages(dense: dict[str, Any] | None) -> bool:
    """Whether a manifest's ``dense`` entry records the passage layout."""
    return bool(dense and dense.get("passages"))


def vector_field(dense: dict[str, Any] | None) -> str:
    """The field a kNN search of this layout runs on."""
    return f"{PASSAGE_FIELD}.vector" if has_passages(dense) else VECTOR_FIELD


def dense_properties(dense: dict[str, Any], s: StoreElasticsearchSettings) -> dict[str, Any]:
    """The mapping of the text embedding that a manifest's ``dense`` entry records."""
    vec = vector_mapping(int(dense["dim"]), s)
    if not has_passages(dense):
        return {VECTOR_FIELD: vec}
    kept = {"type": "integer", "index": False, "doc_values": False}  # read from _source only
    return {PASSAGE_FIELD: {"type": "nested", "properties": {
        "vector": vec, "start": kept, "end": kept, "count": kept}}}


def json_vectors(vectors: Any) -> list:
    """Vectors as JSON numbers: 7 decimals, float32's precision in a short number."""
    return np.round(np.asarray(vectors, dtype=np.float64), 7).tolist()


def dense_source(dense: dict[str, Any], vectors: Any, cuts: list[tuple[int, int]]) -> dict[str, Any]:
    """A document's embedding fields in this layout: ``vectors`` (one row per passage) and
    the passages' character spans (the one-vector layout takes a single row)."""
    rows = json_vectors(vectors)
    if not has_passages(dense):
        if len(rows) != 1:
            raise ValueError(f"{len(rows)} vectors for a one-vector-per-document index")
        return {VECTOR_FIELD: rows[0]}
    return {PASSAGE_FIELD: [{"vector": row, "start": a, "end": b, "count": len(rows)}
                            for row, (a, b) in zip(rows, cuts)]}


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


def check_manifest(meta: dict[str, Any], s: StoreElasticsearchSettings, where: str, *,
                   settings_too: bool = True) -> None:
    """Refuse an index whose format or (``settings_too``) index-time settings differ from
    ``s``, saying what differs and which setting would match it."""
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexIncompatible(
            f"{where} has store format version {meta.get('format_version')!r}; this semsearch "
            f"reads version {FORMAT_VERSION}: rebuild the index"
        )
    wanted = {"analyzer": s.analyzer, "k1": s.k1, "b": s.b, "vector_index": s.vector_index}
    diff = {k: (meta.get(k), v) for k, v in wanted.items() if meta.get(k) != v}
    if diff and settings_too:
        fix = ", ".join(f"SEMSEARCH_STORE__ELASTICSEARCH__{k.upper()}={have}"
                        for k, (have, _) in diff.items())
        what = "; ".join(f"{k}: index {have!r}, settings {want!r}" for k, (have, want) in diff.items())
        raise IndexIncompatible(f"{where} was built with other settings ({what}); set {fix}, "
                                "or run `semsearch reindex` to rebuild it with the new settings "
                                "(searches and writes go on meanwhile)")


def _check_model(entry: dict[str, Any] | None, what: str, name: str, dim: int, where: str, fix: str) -> None:
    """Refuse a model other than the one a manifest entry (``dense``, ``clip``) records."""
    if entry and (entry.get("encoder") != name or int(entry.get("dim", -1)) != dim):
        raise IndexIncompatible(
            f"{where} was built with {what} {entry.get('encoder')!r} ({entry.get('dim')} dims) but "
            f"the configured one is {name!r} ({dim} dims); {fix}"
        )


def check_clip(meta: dict[str, Any], name: str, dim: int, where: str) -> None:
    _check_model(meta.get("clip"), "CLIP", name, dim, where,
                 "set SEMSEARCH_CLIP__ARCHITECTURE / SEMSEARCH_CLIP__PRETRAINED to match or rebuild")


def check_encoder(meta: dict[str, Any], name: str, dim: int, where: str) -> None:
    dense = meta.get("dense") or {}
    _check_model(dense, "text encoder", name, dim, where, f"set SEMSEARCH_TEXT_ENCODER__MODEL={dense.get('encoder')}")
