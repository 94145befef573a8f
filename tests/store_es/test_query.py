"""Request bodies, mapping and manifest checks of the Elasticsearch store (no server)."""

import pytest

from semsearch.config import Settings, StoreElasticsearchSettings
from semsearch.errors import BadInput, IndexIncompatible
from semsearch.store_es import mapping, query


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SEMSEARCH_STORE__BACKEND", "elasticsearch")
    monkeypatch.setenv("SEMSEARCH_STORE__ELASTICSEARCH__URL", "http://a:9200,http://b:9200")
    monkeypatch.setenv("SEMSEARCH_STORE__ELASTICSEARCH__SHARDS", "3")
    monkeypatch.setenv("SEMSEARCH_STORE__ELASTICSEARCH__VECTOR_INDEX", "bbq_hnsw")
    s = Settings()
    assert s.store.backend == "elasticsearch" and s.store.elasticsearch.shards == 3
    assert s.store.elasticsearch.vector_index == "bbq_hnsw"
    monkeypatch.setenv("SEMSEARCH_STORE__ELASTICSEARCH__VECTOR_INDEX", "ivf")
    with pytest.raises(ValueError, match="vector_index"):
        Settings()


def test_num_candidates_has_a_factor_a_floor_and_a_cap():
    s = StoreElasticsearchSettings(num_candidates_factor=4, min_num_candidates=100)
    assert s.num_candidates(10) == 100  # the floor: a small page explores 100
    assert s.num_candidates(100) == 400  # the factor
    assert s.num_candidates(5000) == 10_000  # Elasticsearch's limit
    assert StoreElasticsearchSettings(num_candidates_factor=1, min_num_candidates=1).num_candidates(7) == 7
    with pytest.raises(ValueError):
        StoreElasticsearchSettings(min_num_candidates=0)


def test_filters_go_inside_knn_not_as_an_id_list():
    knn = query.knn_clause([0.1, 0.2], 10, 40, {"topic": ["a", "b"], "year": {"gte": 2020}})
    # the one filter language's compiled query: the filter runs inside the kNN search
    assert knn["filter"] == [{"bool": {"filter": [{"terms": {"metadata.topic": ["a", "b"]}},
                                                  {"range": {"metadata.year": {"gte": 2020}}}]}}]
    assert "_id" not in str(knn)
    assert "filter" not in query.knn_clause([0.1], 5, 20, None)
    assert query.es_filter({"topic": "x"}) == [{"term": {"metadata.topic": "x"}}]


def test_lexical_and_dense_bodies():
    body = query.lexical_body("q", size=10, offset=20, boosts={"title": 2, "text": 1},
                              filters={"topic": "x"}, with_documents=True)
    mm = body["query"]["bool"]["must"][0]["multi_match"]
    assert mm["fields"] == ["title^2", "text^1"] and body["from"] == 20
    assert body["_source"] == {"excludes": mapping.SOURCE_EXCLUDES}
    with pytest.raises(BadInput, match="boost"):
        query.lexical_body("q", size=1, boosts={"body": 1}, filters=None, with_documents=False)
    d = query.dense_body([1.0], size=10, offset=20, num_candidates=100, filters=None,
                         with_documents=False)
    assert d["knn"]["k"] == 30 and d["_source"] is False


def test_retriever_bodies():
    kw = dict(depth=100, size=10, offset=0, num_candidates=400, boosts={"all": 1.0},
              filters={"topic": "x"}, weights={"lexical": 0.3, "dense": 0.7}, rrf_k=60,
              with_documents=False)
    rrf = query.retriever_body("q", [0.5], method="rrf", **kw)["retriever"]["rrf"]
    assert rrf["rank_constant"] == 60 and rrf["rank_window_size"] == 100
    assert rrf["retrievers"][1]["knn"]["filter"] == [{"term": {"metadata.topic": "x"}}]
    lin = query.retriever_body("q", [0.5], method="convex", **kw)["retriever"]["linear"]
    assert [r["weight"] for r in lin["retrievers"]] == [0.3, 0.7]
    assert {r["normalizer"] for r in lin["retrievers"]} == {"minmax"}


@pytest.mark.parametrize("kind", ["int8_hnsw", "bbq_hnsw", "hnsw", "flat"])
def test_vector_mapping(kind):
    s = StoreElasticsearchSettings(vector_index=kind, hnsw_m=24)
    m = mapping.vector_mapping(384, s)
    assert m["index_options"]["type"] == kind and m["similarity"] == "dot_product"
    assert ("m" in m["index_options"]) == kind.endswith("hnsw")


def test_index_body_carries_the_manifest():
    s = StoreElasticsearchSettings(shards=3, replicas=1, refresh_interval="5s")
    body = mapping.index_body(s)
    assert body["settings"]["number_of_shards"] == 3 and body["settings"]["refresh_interval"] == "5s"
    meta = body["mappings"]["_meta"]["semsearch"]
    assert meta["format_version"] == mapping.FORMAT_VERSION and meta["dense"] is None
    mapping.check_manifest(meta, s, "ix")


def test_manifest_check_says_what_differs():
    s = StoreElasticsearchSettings()
    meta = mapping.manifest(s)
    with pytest.raises(IndexIncompatible, match=r"k1: index 0.9, settings 1.2.*K1=0.9"):
        mapping.check_manifest(meta, StoreElasticsearchSettings(k1=1.2), "ix")
    with pytest.raises(IndexIncompatible, match="format version 99"):
        mapping.check_manifest({**meta, "format_version": 99}, s, "ix")
    with pytest.raises(IndexIncompatible, match="not a semsearch store index"):
        mapping.read_manifest({"mappings": {}}, "ix")
    meta["dense"] = {"encoder": "minilm", "dim": 384}
    mapping.check_encoder(meta, "minilm", 384, "ix")
    with pytest.raises(IndexIncompatible, match="SEMSEARCH_TEXT_ENCODER__MODEL=minilm"):
        mapping.check_encoder(meta, "other", 768, "ix")


def test_alias_names_that_look_like_versions_are_refused():
    from semsearch.indexer.es_common import AliasedIndex, EsConnection

    conn = EsConnection(StoreElasticsearchSettings())
    with pytest.raises(BadInput, match="physical version"):
        AliasedIndex(conn, "docs-v2")
    a = AliasedIndex(conn, "docs")
    assert a.owns("docs-v12") and not a.owns("docs-vault-v1") and not a.owns("docs-v1-x")


def test_local_collection_needs_a_path(settings):
    from semsearch.collection import Collection

    with pytest.raises(BadInput, match="needs a path"):
        Collection.create(None, settings)


def test_one_bm25_query_for_the_store_and_the_lexical_backend():
    """Both Elasticsearch backends send the body of ``bm25_query`` (duplicate D5)."""
    from semsearch.config import LexicalSettings
    from semsearch.indexer.lexical.elasticsearch import ElasticsearchLexicalIndex, bm25_query

    boosts = {"title": 2.0, "text": 1.0, "all": 0.0}
    expected = bm25_query("q", boosts, query.es_filter({"topic": "x"}))
    assert expected["bool"]["must"][0]["multi_match"] == {
        "query": "q", "type": "most_fields", "fields": ["title^2.0", "text^1.0"]}
    assert query.lexical_body("q", size=10, boosts=boosts, filters={"topic": "x"},
                              with_documents=False)["query"] == expected

    idx = ElasticsearchLexicalIndex(LexicalSettings())
    idx._types = {"topic": {"string"}}  # the mapping's field types, as read from the server
    sent: list = []

    class FakeConn:
        url = "http://fake"

        def call(self, what, fn):
            class Client:
                def msearch(self, searches):
                    sent.extend(searches)
                    return {"responses": [{"hits": {"hits": []}}]}
            return fn(Client())

    idx.conn = FakeConn()
    assert idx.search("q", 7, boosts=boosts, filters={"topic": "x"}) == []
    assert sent[1] == {"size": 7, "_source": False, "track_total_hits": False, "query": expected}
    with pytest.raises(BadInput, match="at least one field"):
        bm25_query("q", {"title": 0.0}, [])


def test_only_the_index_write_block_is_waited_for():
    from semsearch.store_es.writer import write_blocked

    blocked = {"status": 403, "error": {"type": "cluster_block_exception",
                                        "reason": "index [x-v1] blocked by: [FORBIDDEN/8/index write (api)];"}}
    flood = {"status": 429, "error": {"type": "cluster_block_exception", "reason":
             "index [x-v1] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark];"}}
    assert write_blocked(blocked) and not write_blocked(flood)
    assert not write_blocked({"status": 400, "error": {"type": "mapper_parsing_exception"}})


def test_a_store_refuses_another_text_or_clip_model_than_it_was_built_with():
    meta = {**mapping.manifest(StoreElasticsearchSettings()), "dense": {"encoder": "minilm", "dim": 384},
            "clip": {"encoder": "open_clip/ViT-B-32/x", "dim": 512}}
    mapping.check_encoder(meta, "minilm", 384, "ix")
    mapping.check_clip(meta, "open_clip/ViT-B-32/x", 512, "ix")
    with pytest.raises(IndexIncompatible, match="text encoder 'minilm'.*SEMSEARCH_TEXT_ENCODER__MODEL=minilm"):
        mapping.check_encoder(meta, "other", 384, "ix")
    with pytest.raises(IndexIncompatible, match="CLIP 'open_clip/ViT-B-32/x' \\(512 dims\\).*SEMSEARCH_CLIP__"):
        mapping.check_clip(meta, "open_clip/ViT-B-32/x", 256, "ix")
    # an index without that channel yet accepts any model (the first write declares it)
    mapping.check_clip({**meta, "clip": None}, "anything", 8, "ix")
    assert list(mapping.channels(meta)) == ["dense", "image"]
    assert set(mapping.channel_properties(meta, StoreElasticsearchSettings())) == {"embedding", "clip"}
