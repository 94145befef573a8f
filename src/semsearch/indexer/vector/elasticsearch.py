"""Vectors in Elasticsearch: ``dense_vector`` (``index: true``, ``dot_product`` over the
L2-normalised vectors, HNSW with the configured ``m``/``ef_construction``) searched with
approximate kNN. The scale-out path: shards and replicas spread the vectors over a cluster,
where FAISS stays the single-node fast path.

Connection, shards and replicas come from ``settings.lexical.elasticsearch``; the physical
index ``<name>-vN`` sits behind the alias ``<name>`` like the lexical index. Scores are
inner products (Elasticsearch's ``(1 + dot) / 2`` mapped back). Writes are refreshed
lazily, before the next read."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.config import ElasticsearchSettings
from semsearch.errors import BadInput, BulkIndexError, IndexIncompatible
from semsearch.indexer.es_common import AliasedIndex, EsConnection, item_reason

logger = logging.getLogger(__name__)


def vector_body(dim: int, s: ElasticsearchSettings) -> dict[str, Any]:
    return {
        "settings": {"number_of_shards": s.shards, "number_of_replicas": s.replicas},
        "mappings": {"dynamic": "strict", "properties": {"vector": {
            "type": "dense_vector", "dims": dim, "index": True, "similarity": "dot_product",
            "index_options": {"type": "hnsw", "m": s.hnsw_m,
                              "ef_construction": s.hnsw_ef_construction},
        }}},
    }


class ElasticsearchVectorIndex:
    backend = "elasticsearch"

    def __init__(self, dim: int, settings: ElasticsearchSettings, name: str) -> None:
        self._dim = dim
        self.settings = settings
        self.conn = EsConnection(settings)
        self.aliased = AliasedIndex(self.conn, name)
        self._ready = False  # the alias points at a physical index
        self._dirty = False

    @property
    def dim(self) -> int:
        return self._dim

    def _target(self) -> str:
        if not self._ready:
            self.aliased.swap(self.aliased.create_next(vector_body(self._dim, self.settings)))
            self._ready = True
        return self.aliased.alias

    def _refresh(self) -> str:
        target = self._target()
        if self._dirty:
            self.conn.call(f"refresh {target}", lambda c: c.indices.refresh(index=target))
            self._dirty = False
        return target

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self._dim:
            raise BadInput(f"vectors have shape {v.shape}; expected (n, {self._dim})")
        if not np.isfinite(v).all():
            raise BadInput("vectors contain NaN or infinite values")
        return v

    # -- writes -------------------------------------------------------------------------
    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        v = self._check(vectors)
        if len(ids) != len(v):
            raise BadInput(f"{len(ids)} ids but {len(v)} vectors")
        if not len(ids):
            return
        target = self._target()
        actions = ({"_op_type": "index", "_index": target, "_id": i,
                    "_source": {"vector": row.tolist()}} for i, row in zip(ids, v))
        failures = [(i, item_reason(item)) for ok, i, item in
                    self.conn.bulk(actions, f"bulk index vectors into {target}") if not ok]
        self._dirty = True
        if failures:
            raise BulkIndexError(f"Elasticsearch at {self.conn.url} (index {target})", failures)

    def delete(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        target = self._target()
        actions = ({"_op_type": "delete", "_index": target, "_id": i} for i in ids)
        results = self.conn.bulk(actions, f"bulk delete vectors from {target}")
        self._dirty = True
        failures = [(i, item_reason(it)) for ok, i, it in results if not ok and it.get("status") != 404]
        if failures:
            raise BulkIndexError(f"Elasticsearch at {self.conn.url} (index {target})", failures)
        return sum(ok for ok, _, _ in results)

    # -- reads --------------------------------------------------------------------------
    def count(self) -> int:
        target = self._refresh()
        return int(self.conn.call(f"count {target}", lambda c: c.count(index=target))["count"])

    def __contains__(self, doc_id: object) -> bool:
        if not isinstance(doc_id, str):
            return False
        target = self._target()
        return bool(self.conn.call(f"get {doc_id!r} from {target}",
                                   lambda c: c.exists(index=target, id=doc_id)))

    def search(self, queries: np.ndarray, k: int, *,
               allowed: Collection[str] | None = None) -> list[list[tuple[str, float]]]:
        if k < 1:
            raise BadInput(f"k must be >= 1, got {k}")
        q = self._check(queries)
        if allowed is not None and not allowed:
            return [[] for _ in q]
        target = self._refresh()
        k = min(k, 10_000)
        num_candidates = self.settings.num_candidates(k)
        searches: list[dict[str, Any]] = []
        for row in q:
            knn: dict[str, Any] = {"field": "vector", "query_vector": row.tolist(), "k": k,
                                   "num_candidates": num_candidates}
            if allowed is not None:
                knn["filter"] = {"terms": {"_id": list(allowed)}}
            searches += [{"index": target}, {"knn": knn, "size": k, "_source": False}]
        resp = self.conn.call(f"kNN search {target}", lambda c: c.msearch(searches=searches))
        out = []
        for r in resp["responses"]:
            if "error" in r:
                raise IndexIncompatible(
                    f"Elasticsearch at {self.conn.url} failed a kNN search on {target}: {item_reason(r)}")
            out.append([(h["_id"], 2.0 * float(h["_score"]) - 1.0) for h in r["hits"]["hits"]])
        return out

    # -- persistence --------------------------------------------------------------------
    def save(self, path: Path) -> None:
        self._refresh()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        info = {"backend": self.backend, "dim": self._dim, "alias": self.aliased.alias,
                "url": self.conn.url}
        (path / "elasticsearch.json").write_text(json.dumps(info, indent=1), encoding="utf-8")

    @classmethod
    def open(cls, path: Path, settings: ElasticsearchSettings) -> ElasticsearchVectorIndex:
        try:
            info = json.loads((Path(path) / "elasticsearch.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise IndexIncompatible(f"Elasticsearch vector index at {path} is unreadable: {e}") from e
        self = cls(int(info["dim"]), settings, info["alias"])
        self._ready = True
        return self

    def info(self) -> dict[str, Any]:
        s = self.settings
        return {"index": self.aliased.alias, "url": self.conn.url, "shards": s.shards,
                "replicas": s.replicas, "hnsw_m": s.hnsw_m,
                "hnsw_ef_construction": s.hnsw_ef_construction}

    def close(self) -> None:
        self.conn.close()
