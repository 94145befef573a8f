"""Elasticsearch lexical backend: BM25 on a real server, the production inverted index.

Fields ``title`` and ``text`` are copied into ``all`` (``copy_to``), all three analysed by
the configured analyzer and scored by a custom BM25 similarity (``k1``/``b`` from the
settings). Boosts become a ``multi_match`` of type ``most_fields`` (``field^boost``), which
sums the fields' scores like the embedded backend. Metadata lives under ``metadata`` with
dynamic mapping (strings as ``keyword``, numbers and ISO dates typed by Elasticsearch);
filters become ``term``/``terms``/``range`` clauses of a ``bool`` filter.

Writes go out immediately through ``streaming_bulk``; rejected documents are collected and
:meth:`commit` (a refresh, never a sleep) raises :class:`BulkIndexError` listing every one.
The index is a versioned physical index behind an alias: a new index (or :meth:`rebuild`)
fills ``<name>-vN`` and swaps the alias atomically on commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from semsearch.config import ElasticsearchSettings, LexicalSettings
from semsearch.documents import Document
from semsearch.errors import BadInput, BulkIndexError, IndexIncompatible
from semsearch.filters import (
    check_types,
    es_field_types,
    metadata_mapping,
    parse_filter,
    to_elasticsearch,
)
from semsearch.indexer.es_common import AliasedIndex, EsConnection, item_reason
from semsearch.indexer.lexical.base import Filters

logger = logging.getLogger(__name__)

FIELDS = ("all", "title", "text")
CUSTOM_ANALYZER = "semsearch_en"
SIMILARITY = "semsearch_bm25"


def index_body(s: ElasticsearchSettings) -> dict[str, Any]:
    """Settings and mappings of a physical index."""
    analysis: dict[str, Any] = {}
    if s.analyzer == CUSTOM_ANALYZER:
        filters: dict[str, Any] = {"semsearch_stop": {"type": "stop", "stopwords": "_english_"}}
        chain = ["lowercase", "semsearch_stop"]
        if s.hunspell_locale:
            filters["semsearch_stem"] = {"type": "hunspell", "locale": s.hunspell_locale,
                                         "dedup": True}
            chain.append("semsearch_stem")
        analysis = {"filter": filters, "analyzer": {CUSTOM_ANALYZER: {
            "type": "custom", "tokenizer": "standard", "filter": chain}}}
    text = {"type": "text", "analyzer": s.analyzer, "similarity": SIMILARITY}
    return {
        "settings": {
            "number_of_shards": s.shards,
            "number_of_replicas": s.replicas,
            "similarity": {SIMILARITY: {"type": "BM25", "k1": s.k1, "b": s.b}},
            **({"analysis": analysis} if analysis else {}),
        },
        "mappings": {
            "dynamic": "strict",
            **metadata_mapping(),
            "properties": {
                "title": {**text, "copy_to": "all"},
                "text": {**text, "copy_to": "all"},
                "all": text,
                "metadata": {"type": "object", "dynamic": True},
            },
        },
    }


def bm25_query(query: str, boosts: dict[str, float],
               filter_clauses: list[dict[str, Any]]) -> dict[str, Any]:
    """The BM25 query of both Elasticsearch backends (this lexical index and the store,
    :mod:`semsearch.store_es.query`): a ``multi_match`` of type ``most_fields`` over the
    boosted fields (``field^boost``, fields with boost 0 left out) in a ``bool`` whose
    ``filter`` holds ``filter_clauses``. Unknown fields and all-zero boosts are
    :class:`BadInput`."""
    unknown = set(boosts) - set(FIELDS)
    if unknown:
        raise BadInput(f"unknown boost field(s) {sorted(unknown)}; fields are {FIELDS}")
    fields = [f"{f}^{w}" for f, w in boosts.items() if w > 0]
    if not fields:
        raise BadInput(f"boosts must have at least one field > 0, got {boosts}")
    must = {"multi_match": {"query": query, "type": "most_fields", "fields": fields}}
    return {"bool": {"must": [must], "filter": filter_clauses}}


class ElasticsearchLexicalIndex:
    backend = "elasticsearch"

    def __init__(self, settings: LexicalSettings | None = None) -> None:
        self.settings = settings or LexicalSettings()
        self.es = self.settings.elasticsearch
        self.conn = EsConnection(self.es)
        self.aliased = AliasedIndex(self.conn, self.es.index)
        #: the physical index this object writes (a new one until the alias points to it);
        #: None for an opened index, which reads and writes through the alias
        self._physical: str | None = None
        self._fresh = True
        self._failures: list[tuple[str, str]] = []
        #: filter value types per metadata field, from the mapping (reset by writes)
        self._types: dict[str, set[str]] | None = None

    @property
    def url(self) -> str:
        return self.conn.url

    def _target(self) -> str:
        if self._fresh and self._physical is None:
            self._physical = self.aliased.create_next(index_body(self.es))
        return self._physical or self.aliased.alias

    # -- writes -------------------------------------------------------------------------
    def upsert(self, docs: Sequence[Document]) -> None:
        if not docs:
            return
        target = self._target()
        self._types = None
        actions = (
            {"_op_type": "index", "_index": target, "_id": d.id,
             "_source": {"title": d.title, "text": d.text, "metadata": d.metadata}}
            for d in docs
        )
        for ok, doc_id, item in self.conn.bulk(actions, f"bulk index into {target}"):
            if not ok:
                self._failures.append((doc_id, item_reason(item)))

    def delete(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        target = self._target()
        actions = ({"_op_type": "delete", "_index": target, "_id": i} for i in ids)
        existed = 0
        for ok, doc_id, item in self.conn.bulk(actions, f"bulk delete from {target}"):
            if ok:
                existed += 1
            elif item.get("status") != 404:  # 404: the document did not exist
                self._failures.append((doc_id, item_reason(item)))
        return existed

    def commit(self) -> dict[str, Any]:
        """Refresh (make writes searchable); a new physical index goes behind the alias.
        Raises :class:`BulkIndexError` listing the documents rejected since the last commit
        (the others are written and searchable)."""
        target = self._target()
        self.conn.call(f"refresh {target}", lambda c: c.indices.refresh(index=target))
        swapped = False
        if self._fresh:
            self.aliased.swap(target)
            self._fresh, swapped = False, True
        failures, self._failures = self._failures, []
        if failures:
            raise BulkIndexError(f"Elasticsearch at {self.url} (index {target})", failures)
        return {"rebuilt": False, "refreshed": True, "alias_swapped": swapped,
                "index": target, "docs": self.count()}

    def rebuild(self, docs: Iterable[Document], batch: int = 2000) -> dict[str, Any]:
        """Write ``docs`` into a new physical index and swap the alias to it atomically;
        searches see the old index until the swap. On rejected documents the new index is
        dropped, the alias is left alone and :class:`BulkIndexError` is raised."""
        new = self.aliased.create_next(index_body(self.es))
        old_state = (self._physical, self._fresh, self._failures)
        self._physical, self._fresh, self._failures = new, True, []
        self._types = None
        try:
            chunk: list[Document] = []
            for d in docs:
                chunk.append(d)
                if len(chunk) >= batch:
                    self.upsert(chunk)
                    chunk = []
            self.upsert(chunk)
            if self._failures:
                failures = self._failures
                raise BulkIndexError(f"Elasticsearch at {self.url} (index {new})", failures)
            return self.commit()
        except BaseException:
            self.aliased.drop(new)
            self._physical, self._fresh, self._failures = old_state
            self._types = None
            raise

    # -- reads --------------------------------------------------------------------------
    def count(self) -> int:
        target = self._physical or self.aliased.alias
        return int(self.conn.call(f"count {target}", lambda c: c.count(index=target))["count"])

    def field_types(self) -> dict[str, set[str]]:
        """Filter value types of the metadata fields, from the index's mapping (cached until
        the next write)."""
        if self._types is None:
            target = self._physical or self.aliased.alias
            got = self.conn.call(f"get mapping of {target}",
                                 lambda c: c.indices.get_mapping(index=target))
            types: dict[str, set[str]] = {}
            for m in got.values():
                props = m["mappings"].get("properties", {}).get("metadata", {}).get("properties", {})
                for f, ts in es_field_types(props).items():
                    types.setdefault(f, set()).update(ts)
            self._types = types
        return self._types

    def _filter(self, filters: Filters | None) -> list[dict[str, Any]]:
        flt = parse_filter(filters)
        if flt is None:
            return []
        types = self.field_types()
        check_types(flt, types)
        return [to_elasticsearch(flt, types=types)]

    def search(self, query: str, k: int, *, boosts: dict[str, float] | None = None,
               filters: Filters | None = None) -> list[tuple[str, float]]:
        return self.search_many([query], k, boosts=boosts, filters=filters)[0]

    def search_many(self, queries: Sequence[str], k: int, *, boosts: dict[str, float] | None = None,
                    filters: Filters | None = None) -> list[list[tuple[str, float]]]:
        """One ``_msearch`` for a batch of queries."""
        if k < 1:
            raise BadInput(f"k must be >= 1, got {k}")
        if not queries:
            return []
        target = self._physical or self.aliased.alias
        clauses = self._filter(filters)
        searches: list[dict[str, Any]] = []
        for q in queries:
            searches += [{"index": target},
                         {"size": k, "_source": False, "track_total_hits": False,
                          "query": bm25_query(q, boosts or self.settings.boosts, clauses)}]
        resp = self.conn.call(f"search {target}", lambda c: c.msearch(searches=searches))
        out = []
        for q, r in zip(queries, resp["responses"]):
            if "error" in r:
                from semsearch.errors import BackendUnavailable

                raise BackendUnavailable(
                    f"Elasticsearch at {self.url} failed the search {q!r} on {target}: "
                    f"{item_reason(r)}"
                )
            out.append([(h["_id"], float(h["_score"])) for h in r["hits"]["hits"]])
        return out

    def ping(self) -> None:
        self.conn.ping()

    # -- persistence --------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        info = {"backend": self.backend, "url": self.url, "alias": self.aliased.alias,
                "analyzer": self.es.analyzer, "k1": self.es.k1, "b": self.es.b}
        (path / "elasticsearch.json").write_text(json.dumps(info, indent=1), encoding="utf-8")

    @classmethod
    def open(cls, path: Path, settings: LexicalSettings) -> ElasticsearchLexicalIndex:
        path = Path(path)
        try:
            info = json.loads((path / "elasticsearch.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise IndexIncompatible(f"Elasticsearch lexical index at {path} is unreadable: {e}") from e
        if info.get("alias") != settings.elasticsearch.index:
            raise IndexIncompatible(
                f"index at {path} uses Elasticsearch index {info.get('alias')!r} but settings "
                f"name {settings.elasticsearch.index!r}; set "
                f"SEMSEARCH_LEXICAL__ELASTICSEARCH__INDEX={info.get('alias')}"
            )
        self = cls(settings)
        self._fresh = False  # reads and writes go through the alias
        return self

    def close(self) -> None:
        self.conn.close()
