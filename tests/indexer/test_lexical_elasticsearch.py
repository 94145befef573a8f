"""The Elasticsearch lexical backend against a real server (SEMSEARCH_TEST_ES_URL)."""

import pytest

from semsearch.documents import Document
from semsearch.errors import BackendUnavailable, BadInput, BulkIndexError, IndexIncompatible
from semsearch.indexer.lexical.base import open_lexical
from semsearch.indexer.lexical.elasticsearch import ElasticsearchLexicalIndex
from tests.conformance.lexical_suite import CORPUS, LexicalIndexSuite
from tests.conftest import es_lexical_settings

pytestmark = pytest.mark.integration


class TestElasticsearchConformance(LexicalIndexSuite):
    @pytest.fixture
    def make(self, es_url, es_names):
        name = es_names("conf")
        return lambda: ElasticsearchLexicalIndex(es_lexical_settings(es_url, name))

    @pytest.fixture
    def reopen(self, tmp_path, es_url):
        def _reopen(idx):
            idx.save(tmp_path / "lex")
            settings = es_lexical_settings(es_url, idx.aliased.alias)
            return open_lexical(tmp_path / "lex", settings, "elasticsearch")

        return _reopen


@pytest.fixture
def es_index(es_url, es_names):
    idx = ElasticsearchLexicalIndex(es_lexical_settings(es_url, es_names("lex")))
    idx.upsert(CORPUS)
    idx.commit()
    yield idx
    idx.close()


def test_physical_index_is_versioned_behind_the_alias(es_index):
    client = es_index.conn.client
    alias = es_index.aliased.alias
    assert list(client.indices.get_alias(name=alias)) == [f"{alias}-v1"]
    mapping = client.indices.get_mapping(index=alias)[f"{alias}-v1"]["mappings"]
    assert mapping["properties"]["metadata"]["properties"]["topic"]["type"] == "keyword"
    assert mapping["properties"]["metadata"]["properties"]["year"]["type"] == "double"
    settings = client.indices.get_settings(index=alias)[f"{alias}-v1"]["settings"]["index"]
    assert settings["similarity"]["semsearch_bm25"] == {"type": "BM25", "k1": "0.9", "b": "0.4"}


def test_filters_translate_to_term_terms_range(es_index):
    assert {d for d, _ in es_index.search("bees electricity bread", 10, filters={"topic": "food"})} == {"d"}
    hits = es_index.search("bees electricity bread", 10, filters={"year": {"gt": 2015, "lt": 2020}})
    assert {d for d, _ in hits} == {"c", "d"}
    hits = es_index.search("bees electricity", 10, filters={"topic": ["bio"], "year": {"lte": 2016}})
    assert {d for d, _ in hits} == {"e"}
    assert es_index.search("bees", 10, filters={"missing_field": 1}) == []
    with pytest.raises(BadInput, match="unknown operator"):
        es_index.search("bees", 3, filters={"year": {"near": 3}})


def test_unknown_boost_field_is_rejected(es_index):
    with pytest.raises(BadInput, match="unknown boost field"):
        es_index.search("bees", 3, boosts={"body": 1.0})


def test_rebuild_swaps_the_alias_atomically(es_index):
    client = es_index.conn.client
    alias = es_index.aliased.alias
    new_docs = [Document(id="z1", title="Zeppelins", text="Airships float on helium")]
    info = es_index.rebuild(iter(new_docs))
    assert info["alias_swapped"] and info["index"] == f"{alias}-v2"
    assert list(client.indices.get_alias(name=alias)) == [f"{alias}-v2"]
    assert not client.indices.exists(index=f"{alias}-v1")
    assert es_index.count() == 1
    assert [d for d, _ in es_index.search("airship", 5)] == ["z1"]
    assert es_index.search("bees", 5) == []


def test_rebuild_with_rejected_docs_keeps_the_old_index(es_index):
    alias = es_index.aliased.alias
    bad = [Document(id="n1", text="one", metadata={"year": 1}),
           Document(id="n2", text="two", metadata={"year": "not a number"})]
    with pytest.raises(BulkIndexError) as ei:
        es_index.rebuild(bad, batch=1)
    assert [i for i, _ in ei.value.failures] == ["n2"]
    client = es_index.conn.client
    assert list(client.indices.get_alias(name=alias)) == [f"{alias}-v1"]
    assert es_index.count() == 5


def test_bulk_failures_are_reported_per_document(es_url, es_names):
    idx = ElasticsearchLexicalIndex(es_lexical_settings(es_url, es_names("bulk"), chunk_size=2))
    idx.upsert([Document(id="ok1", text="first", metadata={"year": 2001})])
    idx.upsert([
        Document(id="bad1", text="second", metadata={"year": "not a number"}),
        Document(id="ok2", text="third", metadata={"year": 2003}),
        Document(id="bad2", text="fourth", metadata={"year": {"nested": "object"}}),
        # a numeric string is a string (as embedded), not coerced into the number field
        Document(id="bad3", text="fifth", metadata={"year": "2005"}),
    ])
    with pytest.raises(BulkIndexError) as ei:
        idx.commit()
    failures = dict(ei.value.failures)
    assert set(failures) == {"bad1", "bad2", "bad3"}
    assert "year" in failures["bad1"] and "parse" in failures["bad1"]
    assert idx.count() == 2  # the good ones were written and are searchable
    assert {d for d, _ in idx.search("first third second", 5)} == {"ok1", "ok2"}
    assert idx.commit()["docs"] == 2  # failures are reported once
    idx.close()


def test_delete_counts_only_existing(es_index):
    assert es_index.delete(["a", "nope1", "nope2"]) == 1
    es_index.commit()
    assert es_index.count() == 4


def test_open_with_another_index_name_is_incompatible(es_index, tmp_path, es_url):
    es_index.save(tmp_path / "lex")
    with pytest.raises(IndexIncompatible, match="SEMSEARCH_LEXICAL__ELASTICSEARCH__INDEX"):
        ElasticsearchLexicalIndex.open(tmp_path / "lex", es_lexical_settings(es_url, "other"))


def test_invalid_index_name_is_bad_input(es_url):
    with pytest.raises(BadInput, match="index name"):
        ElasticsearchLexicalIndex(es_lexical_settings(es_url, "Bad Name"))


def test_unreachable_server_names_the_url():
    idx = ElasticsearchLexicalIndex(es_lexical_settings("http://127.0.0.1:9", "semsearch-x"))
    with pytest.raises(BackendUnavailable, match=r"http://127\.0\.0\.1:9.*unreachable"):
        idx.ping()
    with pytest.raises(BackendUnavailable, match=r"http://127\.0\.0\.1:9"):
        idx.upsert(CORPUS)
