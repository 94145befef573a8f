"""Long documents in the Elasticsearch store: one ``nested`` passage per window of the text
(the embedded engine's plan, encoders/passages.py), ranked by Elasticsearch's nested kNN and
named by ``inner_hits``; checked against the embedded engine over the same documents."""

from __future__ import annotations

import random

import pytest

from semsearch.collection import Collection, SearchRequest
from semsearch.config import PassageSettings, Settings
from semsearch.errors import IndexIncompatible
from semsearch.store_es import mapping
from tests.conftest import HashingEncoder, long_doc, store_settings

pytestmark = pytest.mark.integration

PLAN = {"window": 16, "overlap": 4, "max_passages": 256}


def passage_settings(s, **kw):
    s.text_encoder.passages = PassageSettings(enabled=True, window=16, overlap=4, **kw)
    s.indexing.background_merges = False
    return s


@pytest.fixture
def docs():
    rng = random.Random(1)
    return [long_doc(i, rng) for i in range(12)]


@pytest.fixture
def both(es_url, es_names, docs, tmp_path):
    """(embedded, store) over the same long documents with the same passage plan; the store
    keeps float vectors so that scores can be compared with the embedded engine's."""
    plain = Settings()
    plain.no_progress = True
    local = Collection.create(tmp_path / "ix", passage_settings(plain), encoder=HashingEncoder(dim=512))
    store = Collection.create(None, passage_settings(store_settings(es_url, es_names("pass"), vector_index="hnsw")),
                              encoder=HashingEncoder(dim=512))
    for col in (local, store):
        col.upsert(docs, wait_for=True)
    yield local, store
    local.close()
    store.close()


def dense(col, q, k=5, **kw):
    return col.search(SearchRequest(query=q, k=k, mode="dense", **kw)).hits


def test_a_marker_past_the_first_window_is_found_in_its_passage_as_embedded(both, docs):
    local, store = both
    meta = store.manifest["dense"]
    assert meta["passages"] == PLAN
    got = store.conn.call("mapping", lambda c: c.indices.get_mapping(index=store.alias))
    props = next(iter(got.values()))["mappings"]["properties"]
    assert props["passages"]["type"] == "nested" and "embedding" not in props
    for i in (0, 5, 11):
        ours, theirs = dense(store, f"m{i}")[0], dense(local, f"m{i}")[0]
        assert ours.id == theirs.id == f"d{i}"
        p = ours.passage
        assert p is not None and p.count > 1 and p.index >= 1
        assert (p.index, p.count, p.start, p.end) == (theirs.passage.index, theirs.passage.count,
                                                     theirs.passage.start, theirs.passage.end)
        assert f"m{i}" in ours.document.text[p.start : p.end].split()
        assert ours.score == pytest.approx(theirs.score, abs=1e-4)
        # hybrid hits found by the dense channel say which passage too, without their documents
        hyb = store.search(SearchRequest(query=f"m{i}", k=3, mode="hybrid", with_documents=False)).hits[0]
        assert hyb.id == f"d{i}" and hyb.passage == p
    # the passages are never sent back with a document
    assert store.get("d0") == docs[0]
    assert [d.id for d in store.documents()] and all(d.text for d in store.documents())


def test_sum_top_rescores_the_best_passages_as_embedded(both):
    local, store = both
    local.searcher.settings = local.settings.model_copy(deep=True)
    for s in (local.searcher.settings, store.settings):
        s.text_encoder.passages.aggregation = "sum_top"
        s.text_encoder.passages.top_n = 2
    best = dense(local, "bees honey", k=6)
    ours = dense(store, "bees honey", k=6)
    assert [h.id for h in ours] == [h.id for h in best]
    assert [h.score for h in ours] == pytest.approx([h.score for h in best], abs=1e-4)
    store.settings.text_encoder.passages.aggregation = "max"
    single = dense(store, "bees honey", k=6)
    assert ours[0].score > single[0].score  # two passages' scores
    # a page of a re-sorted list is cut here, not by the server
    page = dense(store, "bees honey", k=2, offset=2)
    store.settings.text_encoder.passages.aggregation = "sum_top"
    assert [h.id for h in dense(store, "bees honey", k=2, offset=2)] == [h.id for h in ours[2:4]]
    assert len(page) == 2


def test_a_collapsed_search_names_the_passages_of_its_page_only(both, monkeypatch):
    """collapse searches a window of candidates without their passages, folds duplicates,
    cuts the page, and only then asks for the page's best passages (a kNN restricted to
    its ids): as the plain search names them, and as the embedded engine does."""
    local, store = both
    bodies = []
    real = store._msearch
    monkeypatch.setattr(store, "_msearch", lambda bs: bodies.append(bs) or real(bs))
    encoded = []
    encode = store.encoder.encode
    monkeypatch.setattr(store.encoder, "encode", lambda qs, **kw: encoded.append(list(qs)) or encode(qs, **kw))
    for mode in ("dense", "hybrid"):
        for i in (0, 5):
            bodies.clear()
            plain = store.search(SearchRequest(query=f"m{i}", k=3, mode=mode)).hits
            encoded.clear()
            res = store.search(SearchRequest(query=f"m{i}", k=3, mode=mode, collapse=True))
            folded = res.hits
            assert encoded == [[f"m{i}"]]  # the page's passages reuse the window's query vector
            assert res._query_vector is None  # and it is not left on the result
            window, page = bodies[-2], bodies[-1]  # the collapsed search's two round trips
            assert not any("inner_hits" in str(b) for b in window)  # none for the window
            assert [b["knn"]["filter"][0]["ids"]["values"] for b in page] == [
                [h.id for h in folded if "dense" in h.channels]]
            assert folded[0].id == plain[0].id == f"d{i}"
            assert folded[0].passage == plain[0].passage and folded[0].passage.start is not None
            theirs = local.search(SearchRequest(query=f"m{i}", k=3, mode=mode, collapse=True)).hits
            assert [(h.id, h.passage) for h in theirs] == [(h.id, h.passage) for h in folded]


def test_filters_rebuild_and_bulk_load_keep_the_passage_layout(both, docs):
    _, store = both
    res = dense(store, "m4 m5 m6", k=12, filters={"topic": "even"})
    assert res and all(int(h.id[1:]) % 2 == 0 for h in res)  # knn.filter on top-level metadata
    assert res[0].id in ("d4", "d6") and res[0].passage.count > 1
    before = [(h.id, h.passage) for h in dense(store, "m7")]
    out = store.rebuild()
    assert out["documents"] == len(docs) and store.manifest["dense"]["passages"] == PLAN
    assert [(h.id, h.passage) for h in dense(store, "m7")] == before
    # precomputed vectors go in as one passage per document
    from semsearch.documents import Document

    extra = Document(id="v1", title="", text="vectors made elsewhere")
    vec = HashingEncoder(dim=512).encode(["m99 precomputed"])
    store.bulk_load([extra], vec, encoder_name=store.manifest["dense"]["encoder"], refresh=True)
    top = dense(store, "m99 precomputed")[0]
    assert top.id == "v1" and top.passage is None


def test_one_vector_layout_when_passages_are_off_and_a_changed_plan_is_refused(es_url, es_names, docs):
    name = es_names("flat")
    s = store_settings(es_url, name)
    s.text_encoder.passages = PassageSettings(enabled=False)
    with Collection.create(None, s, encoder=HashingEncoder(dim=512)) as col:
        col.upsert(docs[:4], wait_for=True)
        assert col.manifest["dense"]["passages"] is None
        assert mapping.vector_field(col.manifest["dense"]) == "embedding"
        assert dense(col, "m1")[0].passage is None
    # settings that leave passages unset use the index's layout
    with Collection.create(None, store_settings(es_url, name), encoder=HashingEncoder(dim=512)) as col:
        col.upsert(docs[4:6], wait_for=True)
        assert col.manifest["dense"]["passages"] is None
        # one vector of the whole text (a passage of 16 words would score about 0.5; int8)
        top = dense(col, f"doc {docs[5].text}")[0]
        assert top.id == "d5" and top.score > 0.95
    # asking for passages explicitly is refused, naming the setting
    with Collection.create(None, passage_settings(store_settings(es_url, name)),
                           encoder=HashingEncoder(dim=512)) as col:
        with pytest.raises(IndexIncompatible, match="text_encoder.passages"):
            col.upsert(docs[6:7])
