"""Long documents as passages (encoders/passages.py, segments/vectors.py): a document longer
than the encoder's window is several rows of the dense channel that deletes, filters, merges
and reindexes treat as one document; its score aggregates its passages'; hits say which
passage matched. The bookkeeping tests use the hashing encoder (no tokenizer: passages are
cut by words) with a small window; the retrieval test uses the real MiniLM."""

from __future__ import annotations

import random

import numpy as np
import pytest

from semsearch.collection import Collection
from semsearch.config import FaissSettings, PassageSettings, Settings
from semsearch.documents import Document, Hit, PassageMatch
from semsearch.encoders import passages as P
from semsearch.errors import IndexIncompatible
from semsearch.indexer.segments.vectors import VectorSegment
from semsearch.indexer.verify import verify
from tests.conftest import TINY_DOCS, HashingEncoder, long_doc


@pytest.fixture
def settings():
    s = Settings()
    s.no_progress = True
    s.indexing.background_merges = False
    s.text_encoder.passages = PassageSettings(enabled=True, window=16, overlap=4)
    return s


def open_col(path, settings, enc=None) -> Collection:
    return Collection.create(path, settings, encoder=enc or HashingEncoder(dim=512))


def dense(col: Collection, q: str, k: int = 5, **kw) -> list[Hit]:
    return col.search(q, mode="dense", k=k, **kw).hits


def test_split_cuts_overlapping_windows_and_leaves_short_texts_whole():
    enc = HashingEncoder()
    plan = P.PassagePlan(window=11, overlap=3, max_passages=100)  # title "doc": 10 words of text
    text = " ".join(f"w{i}" for i in range(30))
    short = Document(id="s", title="doc", text="a few words")
    (cuts, one) = P.split(enc, "{title} {text}", [Document(id="l", title="doc", text=text), short], plan)
    assert one == [(0, len(short.text))]
    pieces = [text[a:b].split() for a, b in cuts]
    assert pieces[0] == [f"w{i}" for i in range(10)]
    assert pieces[1][:3] == pieces[0][-3:]  # 3 words of overlap
    assert pieces[-1][-1] == "w29" and all(len(p) <= 10 for p in pieces)
    assert P.passage_texts("{title} {text}", short, one) == ["doc a few words"]
    capped = P.split(enc, "{title} {text}", [Document(id="l", text=text)], P.PassagePlan(11, 3, 2))[0]
    assert len(capped) == 2


def test_a_marker_past_the_first_window_is_found_and_the_hit_points_at_its_passage(tmp_path, settings):
    rng = random.Random(1)
    docs = [long_doc(i, rng) for i in range(12)]
    with open_col(tmp_path / "ix", settings) as col:
        col.upsert(docs, wait_for=True)
        seg = col.index.snapshot().segments[0]
        assert seg.vectors["dense"].owners is not None and len(seg.vectors["dense"].owners) > len(docs)
        for i in (0, 5, 11):
            hit = dense(col, f"m{i}")[0]
            assert hit.id == f"d{i}"
            p = hit.passage
            assert p is not None and p.index >= 1 and p.count > 1
            assert f"m{i}" in hit.document.text[p.start : p.end].split()
        assert verify(tmp_path / "ix").ok


class CountingEncoder(HashingEncoder):
    """Counts the texts it tokenizes for passage offsets."""

    def __init__(self) -> None:
        super().__init__(dim=512)
        self.tokenized = 0

    def token_spans(self, texts):
        self.tokenized += len(texts)
        return [np.array([m.span() for m in P._WORD.finditer(t)], dtype=np.int64).reshape(-1, 2) for t in texts]


def test_the_split_cache_gives_splits_cuts_and_misses_a_changed_document():
    enc = CountingEncoder()
    plan = P.PassagePlan(window=11, overlap=3, max_passages=100)
    text = " ".join(f"w{i}" for i in range(30))
    docs = [Document(id="l", title="doc", text=text), Document(id="m", title="doc", text=text + " more")]
    cache = P.SplitCache(2)
    first = cache.split(enc, "{title} {text}", docs, plan)
    assert first == P.split(enc, "{title} {text}", docs, plan)
    enc.tokenized = 0
    assert cache.split(enc, "{title} {text}", docs, plan) == first and enc.tokenized == 0
    assert (cache.hits, cache.misses) == (2, 2)
    # a new version of "l" (same id, other text), another plan, another title: computed again
    changed = Document(id="l", title="doc", text="x " + text)
    assert cache.split(enc, "{title} {text}", [changed], plan) == P.split(enc, "{title} {text}", [changed], plan)
    assert cache.split(enc, "{title} {text}", docs[:1], P.PassagePlan(9, 3, 100)) == \
        P.split(enc, "{title} {text}", docs[:1], P.PassagePlan(9, 3, 100))
    retitled = Document(id="m", title="a much longer title than before", text=docs[1].text)
    assert cache.split(enc, "{title} {text}", [retitled], plan) == P.split(enc, "{title} {text}", [retitled], plan)
    assert len(cache._cuts) == 2  # bounded: the oldest went first
    off = P.SplitCache(0)
    enc.tokenized = 0
    off.split(enc, "{title} {text}", docs, plan)
    off.split(enc, "{title} {text}", docs, plan)
    assert enc.tokenized == 8 and not off._cuts  # titles and texts, twice


def test_passage_spans_are_stored_with_the_vectors_and_searches_read_them(tmp_path, settings):
    rng = random.Random(5)
    docs = [long_doc(i, rng) for i in range(6)]
    enc = CountingEncoder()
    plan = P.plan_for(settings.text_encoder.passages, enc)
    template = settings.text_encoder.doc_template
    with open_col(tmp_path / "ix", settings, enc) as col:
        col.upsert(docs, wait_for=True)
        store = col.index.store
        stored = store.passage_spans(docs, "dense")
        assert [stored[d.id].tolist() for d in docs] == [[list(c) for c in cut] for cut in
                                                         P.split(enc, template, docs, plan)]
        enc.tokenized = 0
        hit = dense(col, "m2")[0]
        p = hit.passage
        assert hit.id == "d2" and p.count == len(stored["d2"]) and p.index >= 1
        assert (p.start, p.end) == tuple(stored["d2"][p.index]) and "m2" in hit.document.text[p.start : p.end].split()
        assert enc.tokenized == 0  # read, not cut again
        # a new version's spans replace the old ones; those of the old text are not used for it
        new = docs[2].model_copy(update={"text": "filler " * 40 + docs[2].text})
        col.upsert([new], wait_for=True)
        assert store.passage_spans([docs[2]], "dense") == {}
        enc.tokenized = 0
        moved = dense(col, "m2")[0]
        assert moved.passage.start > p.start and "m2" in new.text[moved.passage.start : moved.passage.end].split()
        assert enc.tokenized == 0
        # a deleted document takes them with it
        col.delete(["d3"], wait_for=True)
        assert "d3" not in store.passage_spans(docs, "dense") and "d4" in store.passage_spans(docs, "dense")
        assert verify(tmp_path / "ix").ok


def test_documents_written_without_spans_get_offsets_from_the_cache_until_they_change(tmp_path, settings):
    rng = random.Random(3)
    docs = [long_doc(i, rng) for i in range(6)]
    enc = CountingEncoder()
    with open_col(tmp_path / "ix", settings, enc) as col:
        col.upsert(docs, wait_for=True)
        # as in an index written before spans were stored
        col.index.store._write_conn().execute("DELETE FROM vectors WHERE channel='dense:spans'")
        assert col.index.store.passage_spans(docs, "dense") == {}
        enc.tokenized = 0
        hit = dense(col, "m2")[0]
        assert enc.tokenized > 0  # cut again
        p = hit.passage
        assert hit.id == "d2" and p.index >= 1 and "m2" in hit.document.text[p.start : p.end].split()
        before = enc.tokenized
        again = dense(col, "m2")[0]
        assert again.passage == p and enc.tokenized == before  # nothing tokenized again
        # the document changes: its new offsets are computed, not the cached ones returned
        new = docs[2].model_copy(update={"text": "filler " * 40 + docs[2].text})
        col.upsert([new], wait_for=True)
        moved = dense(col, "m2")[0]
        assert moved.id == "d2" and enc.tokenized > before
        assert moved.passage.start > p.start and "m2" in new.text[moved.passage.start : moved.passage.end].split()


def test_a_collapsed_search_gives_its_hits_passage_offsets(tmp_path, settings):
    rng = random.Random(4)
    docs = [long_doc(i, rng) for i in range(8)]
    with open_col(tmp_path / "ix", settings) as col:
        col.upsert(docs, wait_for=True)
        for mode in ("dense", "hybrid"):
            plain = col.search("m3", mode=mode, k=3).hits
            folded = col.search("m3", mode=mode, k=3, collapse=True).hits
            assert folded[0].id == plain[0].id == "d3"
            p = folded[0].passage
            assert p == plain[0].passage and p.start is not None  # offsets, not only the index
            assert "m3" in folded[0].document.text[p.start : p.end].split()


def test_short_documents_are_one_row_exactly_as_without_passages(tmp_path, settings):
    enc = HashingEncoder()
    docs = [Document(id=d["_id"], title=d["title"], text=d["text"]) for d in TINY_DOCS]
    settings.text_encoder.passages = PassageSettings(enabled=True)  # the default window (256 words here)
    with open_col(tmp_path / "ix", settings, enc) as col:
        col.upsert(docs, wait_for=True)
        vs = col.index.snapshot().segments[0].vectors["dense"]
        assert vs.owners is None and "vectors.dense.owners" not in col.index.snapshot().segments[0].arrays
        want = enc.encode([f"{d.title} {d.text}" for d in docs])
        assert np.array_equal(np.asarray(vs.vectors), want)
        assert all(h.passage is None for h in dense(col, "sunlight"))


def test_deletes_filters_merges_and_reindex_treat_a_documents_passages_as_one(tmp_path, settings):
    settings.vector.faiss.exact_below = 20  # the merged segment gets an ANN index
    settings.vector.faiss.factory = "HNSW16"
    rng = random.Random(2)
    docs = [long_doc(i, rng) for i in range(30)]
    with open_col(tmp_path / "ix", settings) as col:
        for start in (0, 10, 20):  # three segments
            col.upsert(docs[start : start + 10], wait_for=True)
        assert len(col.index.manifest.segments) == 3
        col.delete(["d7"], wait_for=True)
        assert all(h.id != "d7" for h in dense(col, "m7", k=30))
        hits = dense(col, "m8 m9", k=30, filters={"topic": "odd"})
        assert hits and all(int(h.id[1:]) % 2 == 1 for h in hits) and hits[0].id == "d9"
        assert len({h.id for h in hits}) == len(hits) == 14  # each document once (d7 deleted)
        before = {i: [(h.id, round(h.score, 5)) for h in dense(col, f"m{i}")] for i in range(0, 30, 3)}
        col.compact()
        (seg,) = col.index.snapshot().segments
        vs = seg.vectors["dense"]
        assert vs.ann is not None and vs.owners is not None and "d7" not in seg.ids
        assert vs.ann.ntotal == len(vs.owners) and int(vs.present.sum()) == 29
        # the HNSW graph's flat storage holds the passage rows: no second copy on disk, and a
        # reader that opens the segment from disk finds the same passages
        assert "vectors.dense.rows" not in seg.arrays and "vectors.dense.owners" in seg.arrays
        with Collection.open(tmp_path / "ix", settings, encoder=HashingEncoder(dim=512)) as ro:
            (ro_seg,) = ro.index.snapshot().segments
            assert np.array_equal(np.asarray(ro_seg.vectors["dense"].vectors), np.asarray(vs.vectors))
            assert [(h.id, h.passage.index) for h in dense(ro, "m12")] == [(h.id, h.passage.index) for h in dense(col, "m12")]
        for i in range(0, 30, 3):
            got = dense(col, f"m{i}")
            assert got[0].id == f"d{i}" and got[0].passage.index >= 1
            assert [(h.id, round(h.score, 5)) for h in got][:1] == before[i][:1]
        assert all(h.id != "d7" for h in dense(col, "m7", k=30))
        hits = dense(col, "m8 m9", k=30, filters={"topic": "odd"})  # a filter through the ANN index
        assert all(int(h.id[1:]) % 2 == 1 for h in hits) and hits[0].id == "d9"
        col.reindex(factory="Flat")
        vs = col.index.snapshot().segments[0].vectors["dense"]
        assert vs.ann is None and vs.owners is not None and len(vs.owners) == len(np.asarray(vs.vectors))
        assert dense(col, "m12")[0].id == "d12"
    report = verify(tmp_path / "ix")
    assert report.ok, report.problems


def test_sum_top_aggregation_favours_a_document_with_several_good_passages():
    # document 0: one passage at 0.9; document 1: three passages at 0.6 each
    q = np.array([[1.0, 0.0]], np.float32)
    rows = np.array([[0.9, 0.44], [0.6, 0.8], [0.6, 0.8], [0.6, 0.8]], np.float32)
    present, owners = np.array([True, True]), np.array([0, 1, 1, 1], np.int32)
    for fs in (FaissSettings(), FaissSettings(factory="HNSW16", exact_below=0)):
        vs = VectorSegment.build(rows, present, fs, owners=owners)
        assert (vs.ann is not None) == (fs.factory != "Flat")
        s, o, p = vs.search(q, 2, None, fs)
        assert o[0].tolist() == [0, 1] and np.allclose(s[0], [0.9, 0.6])
        s, o, p = vs.search(q, 2, None, fs, aggregation="sum_top", top_n=3)
        assert o[0].tolist() == [1, 0] and np.allclose(s[0], [1.8, 0.9])
        s, o, p = vs.search(q, 2, None, fs, aggregation="sum_top", top_n=2)
        assert o[0].tolist() == [1, 0] and np.allclose(s[0], [1.2, 0.9])
        s, o, p = vs.search(q, 2, np.array([True, False]), fs)  # a mask drops every passage
        assert o[0].tolist() == [0]


def test_the_aggregation_setting_applies_at_query_time(tmp_path, settings):
    rng = random.Random(3)
    docs = [long_doc(i, rng) for i in range(6)]
    with open_col(tmp_path / "ix", settings) as col:
        col.upsert(docs, wait_for=True)
        best = dense(col, "bees honey", k=6)
        col.searcher.settings = col.settings.model_copy(deep=True)
        col.searcher.settings.text_encoder.passages.aggregation = "sum_top"
        col.searcher.settings.text_encoder.passages.top_n = 2
        summed = dense(col, "bees honey", k=6)
        assert {h.id for h in summed} == {h.id for h in best}
        assert summed[0].score > best[0].score  # two passages' scores


def test_the_passage_plan_is_recorded_and_checked_on_open(tmp_path, settings):
    rng = random.Random(4)
    with open_col(tmp_path / "ix", settings) as col:
        col.upsert([long_doc(0, rng)], wait_for=True)
        assert col.index.manifest.channels["dense"].passages == {"window": 16, "overlap": 4, "max_passages": 256}
    other = settings.model_copy(deep=True)
    other.text_encoder.passages = PassageSettings(enabled=True, window=32)
    with open_col(tmp_path / "ix", other) as col:
        with pytest.raises(IndexIncompatible, match="re-encode"):
            col.upsert([long_doc(1, rng)])
    plain = settings.model_copy(deep=True)
    plain.text_encoder.passages = PassageSettings()  # nothing set: the index's plan is used
    with open_col(tmp_path / "ix", plain) as col:
        col.upsert([long_doc(2, rng)], wait_for=True)
        assert dense(col, "m2")[0].passage.count > 1
    off = settings.model_copy(deep=True)
    off.text_encoder.passages = PassageSettings(enabled=False)  # an index without passages
    with open_col(tmp_path / "ix2", off) as col:
        col.upsert([long_doc(3, rng)], wait_for=True)
        assert col.index.manifest.channels["dense"].passages is None
        assert col.index.snapshot().segments[0].vectors["dense"].owners is None


def test_the_snippet_is_cut_from_the_matched_passage(settings):
    from semsearch.search_api.routes.search import hit_out
    from semsearch.search_api.schemas import SearchRequest

    text = "Bees make honey. " * 40 + "The knight guards the castle. " + "Bees make honey. " * 40
    start = text.index("The knight")
    doc = Document(id="x", title="t", text=text)
    hit = Hit(id="x", score=1.0, rank=1, document=doc,
              passage=PassageMatch(index=3, count=6, start=start - 20, end=start + 60))
    out = hit_out(hit, SearchRequest(query="knight castle"), {"knight", "castl"}, settings)
    assert "knight" in out.snippet.text and out.snippet.truncated_start and out.snippet.truncated_end
    assert out.passage.index == 3
    a, b = out.snippet.highlights[0]
    assert out.snippet.text[a:b] == "knight"


def test_minilm_finds_a_sentence_past_the_first_window_only_with_passages(tmp_path, minilm, caplog, monkeypatch):
    from semsearch.indexer import pipeline

    monkeypatch.setattr(pipeline, "_TRUNCATION_WARNED", set())  # warned once per process
    filler = ("The history of chess openings fills many volumes. Players study the Sicilian Defence, "
              "the French Defence and the Queen's Gambit for years. ") * 12
    needle = ("Honeybees carry pollen between flowers. Bees pollinate many food crops such as almonds, "
              "apples and blueberries. Beekeepers move their hives into the orchards every spring so "
              "that the bees pollinate the trees.")
    long = Document(id="long", title="Notes", text=filler + needle)
    others = [Document(id=d["_id"], title=d["title"], text=d["text"]) for d in TINY_DOCS if d["_id"] != "d11"]
    ranks = {}
    warned = {}
    for name, ps in (("passages", PassageSettings()), ("truncated", PassageSettings(enabled=False))):
        s = Settings()
        s.no_progress = True
        s.text_encoder.device = "cpu"
        s.text_encoder.passages = ps
        with Collection.create(tmp_path / name, s, encoder=minilm) as col:
            caplog.clear()
            col.upsert([long, *others], wait_for=True)
            warned[name] = [r.getMessage() for r in caplog.records if "longer than the text encoder's window" in r.getMessage()]
            hits = dense(col, "bees pollinating almond orchards", k=len(others) + 1)
            ranks[name] = [h.id for h in hits].index("long") + 1
            if name == "passages":
                p = hits[0].passage
                assert p is not None and p.index >= 1
                assert needle in long.text[p.start : p.end]
    assert ranks["passages"] == 1
    assert ranks["truncated"] > 3, ranks
    # passages are the default; with them off, indexing says what the dense channel misses
    assert warned["passages"] == []
    assert len(warned["truncated"]) == 1 and warned["truncated"][0].startswith(f"1 of {len(others) + 1} documents")
    assert "PASSAGES__ENABLED=true" in warned["truncated"][0]
