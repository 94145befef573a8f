"""ElasticsearchCollection against a real server (SEMSEARCH_TEST_ES_URL): the same public
API as the local Collection with one Elasticsearch index as the system of record."""

from __future__ import annotations

import pytest

from semsearch.collection import Collection, SearchRequest
from semsearch.documents import Document
from semsearch.errors import (
    BackendUnavailable,
    BadInput,
    BulkIndexError,
    DocumentNotFound,
    IndexIncompatible,
    IndexNotFound,
)
from semsearch.store_es import ElasticsearchCollection
from tests.conftest import HashingEncoder, store_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def store(es_url, es_names, tiny_docs):
    """(settings, collection) with the tiny documents written and searchable."""
    s = store_settings(es_url, es_names("store"))
    col = Collection.create(None, s, encoder=HashingEncoder())
    res = col.upsert(tiny_docs, wait_for=True)
    assert res.searchable and res.ids == [d.id for d in tiny_docs]
    yield s, col
    col.close()


def _count_requests(col, name: str) -> list:
    calls: list = []
    client = col.conn.client
    orig = getattr(client, name)

    def spy(*a, **kw):
        calls.append(kw)
        return orig(*a, **kw)

    setattr(client, name, spy)
    return calls


def test_create_dispatches_and_reads_its_writes(store, tiny_docs):
    s, col = store
    assert isinstance(col, ElasticsearchCollection) and col.path is None
    for mode in ("lexical", "dense", "hybrid"):
        res = col.search("bees pollinate crops", k=3, mode=mode)
        assert res.hits[0].id == "d11" and not res.degraded
        assert res.hits[0].document.title == "Honeybees"
    assert col.get("d3") == tiny_docs[2]
    assert set(col.get(["d3", "nope"])) == {"d3"}
    with pytest.raises(DocumentNotFound):
        col.get("nope")
    st = col.stats()
    assert st["documents"] == 12 and st["channels"]["dense"]["dim"] == 64
    assert col.channels == tuple(st["channels"]) == ("dense",)
    assert col.ready()["index"] in ("green", "yellow")


def _bodies(call) -> list[dict]:
    return call["searches"][1::2]


@pytest.mark.parametrize("passages", [True, False], ids=["passages", "one-vector"])
def test_hybrid_is_one_request_with_both_channels_explained(es_url, es_names, tiny_docs, passages):
    s = store_settings(es_url, es_names("rt"))
    s.text_encoder.passages.enabled = passages
    col = Collection.create(None, s, encoder=HashingEncoder())
    col.upsert(tiny_docs, wait_for=True)
    calls = _count_requests(col, "msearch")
    gets = _count_requests(col, "mget")
    res = col.search(SearchRequest(query="sunlight into electricity", k=5, mode="hybrid"))
    # BM25 and kNN in one round trip, candidates without their sources (or inner hits)
    lex, knn = _bodies(calls[0])
    assert "query" in lex and "knn" in knn and "query" not in knn
    assert all(b["_source"] is False and "inner_hits" not in b.get("knn", {}) for b in _bodies(calls[0]))
    # then one round trip for the page once fused: its documents by id (mget), or in the
    # passage layout one body with the page's ids that also names the dense hits' passages
    page = [h.id for h in res.hits]
    if passages:
        assert len(calls) == 2 and not gets
        (body,) = _bodies(calls[1])
        assert body["query"] == {"ids": {"values": page}} and "inner_hits" in body["knn"]
        assert body["knn"]["filter"] == [{"ids": {"values": [h.id for h in res.hits if "dense" in h.channels]}}]
    else:
        assert len(calls) == 1 and len(gets) == 1 and gets[0]["ids"] == page
    top = res.hits[0]
    assert top.id == "d8" and set(top.channels) == {"lexical", "dense"}
    assert top.document is not None and top.document.title.startswith("Solar")
    assert top.passage is None  # one passage: nothing to name
    # a batch of queries with equal options is still one request, and one for their pages
    before = len(calls), len(gets)
    out = col.search_batch([SearchRequest(query=q, mode="hybrid") for q in ("bees", "magma rises through the crust", "chess openings")])
    assert [r.hits[0].id for r in out] == ["d11", "d5", "d7"]
    assert all(r.hits[0].document.id == r.hits[0].id for r in out)
    assert (len(calls) - before[0], len(gets) - before[1]) == ((2, 0) if passages else (1, 1))
    col.close()


def test_filters_apply_to_both_channels(store):
    _, col = store
    for mode in ("dense", "hybrid", "lexical"):
        res = col.search("sunlight", k=10, mode=mode, filters={"topic": ["energy"], "year": {"gte": 2021}})
        assert [h.id for h in res.hits] == ["d8"], mode
    calls = _count_requests(col, "msearch")
    col.search("sunlight", k=10, mode="dense", filters={"topic": "energy"})
    (knn,) = [s["knn"] for s in calls[0]["searches"] if "knn" in s]
    assert knn["filter"] == [{"term": {"metadata.topic": "energy"}}]
    # candidates per shard: the settings' factor and floor (a page of 10 explores the floor)
    e = col.settings.store.elasticsearch
    assert knn["k"] == 10 and knn["num_candidates"] == e.num_candidates(10) == max(10, e.min_num_candidates,
                                                                                    int(e.num_candidates_factor * 10))


def test_fusion_options_and_paging(store):
    _, col = store
    full = col.search("the", k=10, mode="hybrid", fusion="rrf")
    page = col.search("the", k=3, offset=2, mode="hybrid", fusion="rrf")
    assert [h.id for h in page.hits] == [h.id for h in full.hits[2:5]]
    assert [h.rank for h in page.hits] == [3, 4, 5]
    lex = col.search("bacteria", k=1, offset=1, mode="lexical")
    assert lex.hits[0].rank == 2 and lex.hits[0].channels["lexical"].rank == 2
    with pytest.raises(BadInput, match="mode"):
        col.search("x", mode="image")


def test_every_rejected_document_is_reported(store):
    _, col = store
    bad = [Document(id=f"bad{i}", title="t", text="x", metadata={"year": "unknown"}) for i in range(3)]
    good = Document(id="good", title="fine", text="a fine document", metadata={"year": 2000})
    with pytest.raises(BulkIndexError) as ei:
        col.upsert([bad[0], good, bad[1], bad[2]], wait_for=True)
    assert sorted(i for i, _ in ei.value.failures) == ["bad0", "bad1", "bad2"]
    assert all("year" in reason for _, reason in ei.value.failures)
    assert col.get("good").title == "fine"  # the others were written


def test_add_delete_semantics(store, tiny_docs):
    _, col = store
    with pytest.raises(BadInput, match="already in the index"):
        col.add([tiny_docs[0]])
    with pytest.raises(DocumentNotFound):
        col.delete(["nope"])
    assert col.delete(["nope"], missing_ok=True).ids == ["nope"]
    col.delete("d11", wait_for=True)
    assert "d11" not in [h.id for h in col.search("bees", k=5, mode="hybrid").hits]
    new = Document(id="n1", title="Beekeeping", text="Keepers harvest honey from hives of bees.")
    assert col.add([new], wait_for=True).searchable
    assert col.search("bees", k=1, mode="lexical").hits[0].id == "n1"


def test_open_checks_the_manifest(store, es_url, es_names):
    s, col = store
    ro = Collection.open(None, s, encoder=HashingEncoder())
    assert ro.search("bees", k=1).hits[0].id == "d11"
    with pytest.raises(BadInput, match="read-only"):
        ro.upsert([Document(id="x", text="x")])
    other = s.model_copy(deep=True)
    other.store.elasticsearch.k1 = 1.5
    with pytest.raises(IndexIncompatible, match="k1"):
        Collection.open(None, other)
    with pytest.raises(IndexIncompatible, match="text encoder"):
        Collection.open(None, s, encoder=HashingEncoder(dim=32, name="other")).search("bees")
    missing = store_settings(es_url, es_names("missing"))
    with pytest.raises(IndexNotFound, match="does not exist"):
        Collection.open(None, missing)


def test_deep_pages_use_search_after_over_a_point_in_time(es_url, es_names, tiny_docs):
    s = store_settings(es_url, es_names("deep"), max_result_window=5)
    with Collection.create(None, s, encoder=HashingEncoder()) as col:
        col.upsert(tiny_docs, wait_for=True)
        calls = _count_requests(col, "open_point_in_time")
        deep = col.search("immune bacteria plants gravity magma yeast chess sunlight marathon books bees lithium", k=12, mode="lexical")
        assert len(calls) == 1 and len(deep.hits) > 5
        shallow = col.search("immune bacteria plants gravity magma yeast chess sunlight marathon books bees lithium", k=5, mode="lexical")
        assert [h.id for h in shallow.hits] == [h.id for h in deep.hits[:5]]
        mid = col.search("immune bacteria plants gravity magma yeast chess sunlight marathon books bees lithium", k=4, offset=3, mode="lexical")
        assert [h.id for h in mid.hits] == [h.id for h in deep.hits[3:7]]
        assert [h.rank for h in mid.hits] == [4, 5, 6, 7]
        docs = list(col.documents(page=5))
        assert sorted(d.id for d in docs) == sorted(d.id for d in tiny_docs)
        assert {d.id: d for d in docs}["d3"] == tiny_docs[2]


def test_documents_are_every_acknowledged_write(es_url, es_names, tiny_docs):
    # as the local Collection.documents(): written, not yet refreshed, is included
    s = store_settings(es_url, es_names("docs-acked"), refresh_interval="-1")
    with Collection.create(None, s, encoder=HashingEncoder()) as col:
        col.upsert(tiny_docs, wait_for=True)
        col.upsert([Document(id="late", title="Late", text="written, not refreshed")])
        col.delete(["d3"])
        ids = [d.id for d in col.documents()]
        assert sorted(ids) == sorted({d.id for d in tiny_docs} - {"d3"} | {"late"})


def test_rebuild_swaps_the_alias_and_keeps_vectors(store):
    s, col = store
    before = col.search("bees", k=3, mode="dense")
    old = col.aliased.current()
    info = col.rebuild()
    assert info["documents"] == 12 and col.aliased.current() == info["index"] != old
    assert col.aliased.versions() == {int(info["index"].rsplit("-v", 1)[1]): info["index"]}
    after = col.search("bees", k=3, mode="dense")
    assert [h.id for h in after.hits] == [h.id for h in before.hits]


def test_a_rebuild_deletes_only_its_own_versions(es_url, es_names, tiny_docs):
    """Two aliases whose physical names share a prefix ("x" and "x-vault": "x-vault-v1"
    matches the glob "x-v*"), and a version of "x" that is not behind its alias (another
    rebuild still filling it): a swap of "x" deletes neither."""
    base = es_names("pfx")
    a = Collection.create(None, store_settings(es_url, base), encoder=HashingEncoder())
    b = Collection.create(None, store_settings(es_url, base + "-vault"), encoder=HashingEncoder())
    try:
        a.upsert(tiny_docs[:3], wait_for=True)
        b.upsert(tiny_docs[3:6], wait_for=True)
        pending = a.aliased.create_next({"settings": {"number_of_replicas": 0}})
        a.rebuild()
        a.rebuild()
        names = set(a.conn.call("list", lambda c: c.indices.get(index=f"{base}*")))
        assert f"{base}-vault-v1" in names and pending in names
        assert a.aliased.current() in names and f"{base}-v1" not in names
        assert b.stats()["documents"] == 3 and a.stats()["documents"] == 3
    finally:
        a.close()
        b.close()


def test_ready_fails_when_the_index_is_missing(store):
    s, col = store
    col.conn.call("drop", lambda c: c.indices.delete(index=f"{col.alias}-v*"))
    with pytest.raises(IndexNotFound):
        col.ready()


def test_ready_fails_when_the_cluster_is_red(store, es_names):
    _, col = store
    red = es_names("red")
    col.conn.call("create red", lambda c: c.indices.create(
        index=red, settings={"number_of_replicas": 0, "index.routing.allocation.require._name": "nowhere"},
        wait_for_active_shards="0"))
    try:
        with pytest.raises(BackendUnavailable, match="is red"):
            col.ready()
    finally:
        col.conn.call("drop red", lambda c: c.indices.delete(index=red))
    assert col.ready()["cluster"] in ("green", "yellow")


def test_rerank_fetches_the_candidates_once_and_orders_by_the_cross_encoder(store, fresh_cross_encoder):
    from semsearch.config import RerankSettings
    from semsearch.rerank.cross_encoder import CrossEncoderReranker

    _, store_col = store
    col = store_col.with_models(reranker=CrossEncoderReranker(RerankSettings(max_length=64, device="cpu"),
                                                             model=fresh_cross_encoder))
    col.settings.rerank.blend = 0.0  # the cross-encoder alone orders the top N
    plain = col.search(SearchRequest(query="sunlight energy", k=12, mode="hybrid"))
    gets = _count_requests(col, "mget")
    calls = _count_requests(col, "msearch")
    rr = col.search(SearchRequest(query="sunlight energy", k=4, mode="hybrid", rerank=True, rerank_depth=6))
    top6 = [h.id for h in plain.hits[:6]]
    expected = col.reranker.score("sunlight energy", [h.document for h in plain.hits[:6]])
    assert [h.id for h in rr.hits] == [top6[i] for i in sorted(range(6), key=lambda i: -expected[i])][:4]
    assert all(h.extra["rerank"]["pre_rank"] <= 6 and h.document is not None for h in rr.hits)
    # the six candidates' documents in one mget; the page's are not fetched again (the
    # passage layout's page request names passages only)
    assert len(gets) == 1 and sorted(gets[0]["ids"]) == sorted(top6)
    assert len(calls) == 2 and "query" not in _bodies(calls[1])[0]


def test_collapse_folds_near_duplicates_as_the_local_collection(store, tiny_docs, tmp_path):
    import numpy as np

    from semsearch.config import Settings

    _, col = store
    d8 = next(d for d in tiny_docs if d.id == "d8")
    dup = d8.model_copy(update={"id": "d8copy", "text": d8.text.replace(".", "!")})  # the same words
    col.upsert([dup], wait_for=True)
    ls = Settings()
    ls.no_progress = True
    with Collection.create(tmp_path / "ix", ls, encoder=HashingEncoder()) as local:
        local.upsert([*tiny_docs, dup], wait_for=True)
        # the stored vectors, as the local collection keeps them (ids without one: zeros)
        ids = ["d8", "d3", "d8copy", "nope"]
        assert np.allclose(col.vectors(ids), local.vectors(ids), atol=1e-6)
        assert not col.vectors(["nope"]).any()
        for c in (col, local):
            plain = c.search(SearchRequest(query="sunlight into electricity", k=5, mode="dense"))
            assert {"d8", "d8copy"} <= {h.id for h in plain.hits}
        got = [c.search(SearchRequest(query="sunlight into electricity", k=4, mode="dense", collapse=True))
               for c in (col, local)]
        for res in got:
            assert [h.rank for h in res.hits] == [1, 2, 3, 4] and all(h.document for h in res.hits)
            top = res.hits[0]
            assert top.id == "d8" and top.extra["duplicates"] == ["d8copy"]
            assert "d8copy" not in {h.id for h in res.hits}
        # below the two related documents the hashing encoder's scores are ~0 (ties, int8)
        assert [h.id for h in got[0].hits][:2] == [h.id for h in got[1].hits][:2] == ["d8", "d3"]
