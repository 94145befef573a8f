"""The Elasticsearch vector backend (dense_vector + approximate kNN) against a real server."""

import numpy as np
import pytest

from semsearch.config import ElasticsearchSettings, Settings
from semsearch.indexer.index import Index
from semsearch.indexer.pipeline import Pipeline, TextChannel
from semsearch.indexer.vector.elasticsearch import ElasticsearchVectorIndex
from semsearch.search import Searcher
from tests.conformance.vector_suite import DIM, VectorIndexSuite, vectors
from tests.conftest import es_lexical_settings

pytestmark = pytest.mark.integration


def _es(url, **kw):
    return ElasticsearchSettings(url=url, **kw)


class TestElasticsearchVectors(VectorIndexSuite):
    @pytest.fixture
    def make(self, es_url, es_names):
        name = es_names("vec")
        return lambda dim: ElasticsearchVectorIndex(dim, _es(es_url), name)

    @pytest.fixture
    def reopen(self, tmp_path, es_url):
        def _reopen(idx):
            idx.save(tmp_path / "vec")
            return ElasticsearchVectorIndex.open(tmp_path / "vec", _es(es_url))

        return _reopen


def test_mapping_uses_hnsw_dot_product_and_shard_settings(es_url, es_names):
    name = es_names("vecmap")
    idx = ElasticsearchVectorIndex(DIM, _es(es_url, shards=2, hnsw_m=8, hnsw_ef_construction=50), name)
    idx.upsert(["a"], vectors(1))
    client = idx.conn.client
    (physical,) = client.indices.get_alias(name=name)
    vec = client.indices.get_mapping(index=name)[physical]["mappings"]["properties"]["vector"]
    assert vec["similarity"] == "dot_product" and vec["index"] is True and vec["dims"] == DIM
    assert vec["index_options"] == {"type": "hnsw", "m": 8, "ef_construction": 50}
    assert client.indices.get_settings(index=name)[physical]["settings"]["index"]["number_of_shards"] == "2"


def test_scores_are_inner_products(es_url, es_names):
    idx = ElasticsearchVectorIndex(DIM, _es(es_url), es_names("vecscore"))
    v = vectors(50, seed=3)
    idx.upsert([f"d{i}" for i in range(50)], v)
    got = idx.search(v[:2], 5)
    for row, hits in zip(v[:2], got):
        exact = v @ row
        top = np.argsort(-exact)[:5]
        assert [d for d, _ in hits] == [f"d{i}" for i in top]
        assert [s for _, s in hits] == pytest.approx(exact[top].tolist(), abs=1e-5)


def test_index_with_elasticsearch_vectors_and_lexical(tmp_path, es_url, es_names, tiny_jsonl, minilm):
    """The whole engine on one Elasticsearch: BM25 and the dense channel both live there."""
    s = Settings()
    s.no_progress = True
    s.lexical = es_lexical_settings(es_url, es_names("engine"))
    with Index.create(tmp_path / "ix", s) as idx:
        Pipeline(idx, [TextChannel(minilm, backend="elasticsearch")], s).run([tiny_jsonl])
        assert idx.manifest.channels["dense"].backend == "elasticsearch"
    with Index.open(tmp_path / "ix", s) as idx:
        assert idx.vectors["dense"].count() == 12
        res = Searcher(idx, s, encoder=minilm).search("how do vaccines work", k=3, mode="dense")
        assert res.hits[0].id == "d1"
        res = Searcher(idx, s, encoder=minilm).search(
            "sunlight energy", k=5, mode="hybrid", filters={"topic": "energy"})
        assert {h.id for h in res.hits} <= {"d8", "d12"} and res.hits[0].id == "d8"
