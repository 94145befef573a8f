"""Lexical segments: parity with one bm25s index over the live documents, for every method.

The reference is what the old bm25s-backed lexical index did: one ``bm25s.BM25`` per field built
over the live documents (in segment, ordinal order), scores summed with the boosts, hits with
a score > 0, ties by position."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from semsearch.config import EmbeddedLexicalSettings
from semsearch.errors import BadInput, IndexIncompatible
from semsearch.indexer.segments.container import ArrayFile, ArrayWriter, is_mapped
from semsearch.indexer.segments.lexical import BM25Searcher, LexicalSegment

METHODS = ["lucene", "robertson", "atire", "bm25l", "bm25+"]
WORDS = [f"w{i}" for i in range(60)]


def _doc(rng: random.Random, n_max: int) -> list[str]:
    # skewed draws: some terms are in most documents (negative robertson idf), many are rare
    return [
        WORDS[min(int(rng.expovariate(0.12)), len(WORDS) - 1)] for _ in range(rng.randint(0, n_max))
    ]


def _reference(docs, queries, k, settings, boosts):
    """The old bm25s-backed index's scoring: list of (position, score) per query."""
    import bm25s

    fields = {
        "title": [t for t, _ in docs],
        "text": [x for _, x in docs],
        "all": [t + x for t, x in docs],
    }
    models = {}
    for name, toks in fields.items():
        if any(toks):
            m = bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method)
            m.index(toks, show_progress=False)
            models[name] = m
    out = []
    for q in queries:
        total = None
        for name, w in boosts.items():
            m = models.get(name)
            if w <= 0 or m is None:
                continue
            ids = [m.vocab_dict[t] for t in q if t in m.vocab_dict]
            if not ids:
                continue
            s = m.get_scores_from_ids(ids)
            total = s * w if total is None else total + s * w
        if total is None:
            out.append([])
            continue
        pos = np.flatnonzero(total > 0)
        pos = pos[np.lexsort((pos, -total[pos]))][:k]
        out.append([(int(p), float(total[p])) for p in pos])
    return out


class Corpus:
    """Segments built from batches, with upserts (old version tombstoned, new version in a
    later segment) and deletes; ``live_docs`` are the live documents in (segment, ordinal)
    order, with their addresses."""

    def __init__(self, seed: int, n_batches: int = 5, batch: int = 40) -> None:
        rng = random.Random(seed)
        self.segments: list[LexicalSegment] = []
        self.docs: list[list[tuple[list[str], list[str]]]] = []
        self.live: list[np.ndarray] = []
        where: dict[int, tuple[int, int]] = {}  # doc id -> (segment, ordinal)
        next_id = 0
        for _ in range(n_batches):
            ids = []
            for _ in range(batch):
                if where and rng.random() < 0.25:  # upsert an existing document
                    ids.append(rng.choice(sorted(where)))
                else:
                    ids.append(next_id)
                    next_id += 1
            ids = list(dict.fromkeys(ids))
            batch_docs = [(_doc(rng, 4), _doc(rng, 30)) for _ in ids]
            # a few documents without a title, one empty document
            batch_docs[0] = ([], batch_docs[0][1])
            if len(batch_docs) > 3:
                batch_docs[3] = ([], [])
            si = len(self.segments)
            self.segments.append(
                LexicalSegment.build([t for t, _ in batch_docs], [x for _, x in batch_docs])
            )
            self.docs.append(batch_docs)
            self.live.append(np.ones(len(ids), dtype=bool))
            for o, d in enumerate(ids):
                if d in where:
                    s, old = where[d]
                    self.live[s][old] = False
                where[d] = (si, o)
            for d in rng.sample(sorted(where), 5):  # deletes
                s, o = where.pop(d)
                self.live[s][o] = False
        self.queries = [_doc(rng, 8) for _ in range(40)] + [["w1", "w1", "w7"], ["zz", "w3"]]

    def live_docs(self):
        addrs = [(s, o) for s, lv in enumerate(self.live) for o in np.flatnonzero(lv)]
        return addrs, [self.docs[s][o] for s, o in addrs]


def _check(searcher, corpus, settings, boosts, k=15):
    addrs, docs = corpus.live_docs()
    ref = _reference(docs, corpus.queries, k, settings, boosts)
    got = searcher.search_many(corpus.queries, k, boosts=boosts)
    assert searcher.doc_count() == len(docs)
    for q, r, g in zip(corpus.queries, ref, got):
        assert [(s, o) for s, o, _ in g] == [addrs[p] for p, _ in r], q
        assert [sc for *_, sc in g] == [sc for _, sc in r], q  # bitwise equal


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "boosts", [{"all": 1.0}, {"title": 2.0, "text": 1.0}, {"all": 1.0, "title": 0.5, "text": 0.0}]
)
def test_parity_with_bm25s_over_live_docs(method, boosts):
    settings = EmbeddedLexicalSettings(method=method, k1=1.2, b=0.75)
    for seed, k in ((1, 15), (2, 1000)):  # the top of the ranking, and all of it
        c = Corpus(seed)
        _check(BM25Searcher(c.segments, c.live, settings), c, settings, boosts, k=k)


@pytest.mark.parametrize("method", ["lucene", "robertson"])
def test_parity_default_parameters(method):
    settings = EmbeddedLexicalSettings(method=method)  # k1=0.9, b=0.4
    c = Corpus(3, n_batches=7)
    _check(BM25Searcher(c.segments, c.live, settings), c, settings, {"all": 1.0})


@pytest.mark.parametrize("method", METHODS)
def test_merge_keeps_scores(method):
    settings = EmbeddedLexicalSettings(method=method)
    c = Corpus(4)
    before = BM25Searcher(c.segments, c.live, settings)
    # merge segments 1..3 keeping their live documents; the searcher over the result
    # scores each document exactly as before
    keep = [np.flatnonzero(lv) for lv in c.live[1:4]]
    merged = LexicalSegment.merge(c.segments[1:4], keep)
    assert merged.n_docs == sum(kp.size for kp in keep)
    segs = [c.segments[0], merged, *c.segments[4:]]
    live = [c.live[0], None, *c.live[4:]]
    after = BM25Searcher(segs, live, settings)
    # map old addresses to new ones
    new_addr = {}
    off = 0
    for j, kp in enumerate(keep):
        for o in kp:
            new_addr[(1 + j, int(o))] = (1, off)
            off += 1
    for s in (0, 4):
        for o in range(c.segments[s].n_docs):
            new_addr[(s, o)] = (s if s == 0 else 2, o)
    k = 1000
    for name_boosts in ({"all": 1.0}, {"title": 1.5, "text": 1.0}):
        b = before.search_many(c.queries, k, boosts=name_boosts)
        a = after.search_many(c.queries, k, boosts=name_boosts)
        for hb, ha in zip(b, a):
            assert sorted((new_addr[(s, o)], sc) for s, o, sc in hb) == sorted(
                ((s, o), sc) for s, o, sc in ha
            )
    # the merged segment equals one built from the kept documents directly
    kept_docs = [c.docs[1 + j][o] for j, kp in enumerate(keep) for o in kp]
    direct = LexicalSegment.build([t for t, _ in kept_docs], [x for _, x in kept_docs])
    assert merged.terms == direct.terms
    for name in ("all", "title", "text"):
        for attr in ("indptr", "indices", "data", "doc_len"):
            np.testing.assert_array_equal(
                getattr(merged.fields[name], attr), getattr(direct.fields[name], attr)
            )


def test_merge_drops_terms_only_in_deleted_docs():
    seg = LexicalSegment.build([[], []], [["a", "b"], ["b", "c"]])
    merged = LexicalSegment.merge([seg], [np.array([1])])
    assert merged.terms == ["b", "c"]
    assert merged.n_docs == 1
    empty = LexicalSegment.merge([seg], [np.array([], dtype=np.int64)])
    assert empty.n_docs == 0 and empty.terms == []
    with pytest.raises(BadInput, match="sorted"):
        LexicalSegment.merge([seg], [np.array([1, 0])])


def _saved(seg: LexicalSegment, path) -> tuple[ArrayFile, dict]:
    """``seg`` saved as a segment saves it: arrays into a container, the rest through JSON."""
    w = ArrayWriter()
    info = json.loads(json.dumps(seg.save(w)))
    w.write(path)
    return ArrayFile.open(path), info


def test_save_load_round_trip(tmp_path):
    settings = EmbeddedLexicalSettings(method="lucene")
    c = Corpus(5)
    saved = [_saved(seg, tmp_path / f"seg{i}.bin") for i, seg in enumerate(c.segments)]
    assert not list(tmp_path.rglob("*.pkl"))
    loaded = [LexicalSegment.load(arrays, info) for arrays, info in saved]
    in_memory = [LexicalSegment.load(arrays, info, mmap=False) for arrays, info in saved]
    for a, b, m in zip(c.segments, loaded, in_memory):
        assert a.n_docs == b.n_docs == m.n_docs and a.terms == b.terms == m.terms
        assert is_mapped(b.fields["all"].indices) and is_mapped(b.fields["all"].data)
        assert not is_mapped(m.fields["all"].indices) and not is_mapped(m.fields["all"].data)
        # small arrays touched by every query are in memory either way
        assert not is_mapped(b.fields["all"].indptr)
        assert not is_mapped(b.fields["all"].doc_len)
        for name in ("all", "title", "text"):
            for attr in ("indptr", "indices", "data", "doc_len"):
                assert not isinstance(getattr(m.fields[name], attr), np.memmap)
                np.testing.assert_array_equal(
                    getattr(a.fields[name], attr), getattr(b.fields[name], attr)
                )
                np.testing.assert_array_equal(
                    getattr(a.fields[name], attr), getattr(m.fields[name], attr)
                )
    _check(BM25Searcher(loaded, c.live, settings), c, settings, {"all": 1.0})
    _check(BM25Searcher(in_memory, c.live, settings), c, settings, {"all": 1.0})
    # merging memory-mapped segments works too
    merged = LexicalSegment.merge(loaded, [np.flatnonzero(lv) for lv in c.live])
    assert merged.n_docs == sum(int(lv.sum()) for lv in c.live)
    w = ArrayWriter()
    c.segments[0].save(w)
    with pytest.raises(BadInput, match="already holds"):
        c.segments[0].save(w)
    c.segments[1].save(w, prefix="other")  # another prefix: a second segment in the container


def test_load_rejects_other_formats(tmp_path):
    arrays, info = _saved(LexicalSegment.build([["a"]], [["b"]]), tmp_path / "s.bin")
    assert info["format_version"] == 2
    with pytest.raises(IndexIncompatible, match="v99"):
        LexicalSegment.load(arrays, {**info, "format_version": 99})
    with pytest.raises(IndexIncompatible, match="v1; this version reads"):
        LexicalSegment.load(arrays, {**info, "format_version": 1})
    with pytest.raises(IndexIncompatible, match="unreadable"):
        LexicalSegment.load(arrays, {k: v for k, v in info.items() if k != "terms"})
    with pytest.raises(IndexIncompatible, match="does not match its term count"):
        LexicalSegment.load(arrays, {**info, "terms": ["a"]})
    with pytest.raises(IndexIncompatible, match="wrong array sizes"):
        LexicalSegment.load(arrays, {**info, "n_docs": 2})
    with pytest.raises(IndexIncompatible, match=r"s\.bin holds no array 'other\.all\.indptr'"):
        LexicalSegment.load(arrays, info, prefix="other")


def test_masks_and_live_bitmaps():
    settings = EmbeddedLexicalSettings()
    segs = [
        LexicalSegment.build([[], []], [["apple", "pie"], ["apple"]]),
        LexicalSegment.build([["apple"], []], [["apple", "apple"], ["pear"]]),
    ]
    live = [np.array([True, False]), None]
    s = BM25Searcher(segs, live, settings)
    assert s.doc_count() == 3
    hits = s.search_many([["apple"]], 10, boosts={"all": 1.0})[0]
    assert {(g, o) for g, o, _ in hits} == {(0, 0), (1, 0)}  # (0, 1) is deleted
    masks = [np.array([False, True]), np.array([True, True])]
    hits = s.search_many([["apple"]], 10, boosts={"all": 1.0}, masks=masks)[0]
    assert [(g, o) for g, o, _ in hits] == [(1, 0)]  # (0, 0) filtered, (0, 1) still deleted
    hits = s.search_many(
        [["apple"]], 10, boosts={"all": 1.0}, masks=[None, np.array([False, True])]
    )[0]
    assert [(g, o) for g, o, _ in hits] == [(0, 0)]
    with pytest.raises(BadInput, match="mask"):
        s.search_many([["apple"]], 10, boosts={"all": 1.0}, masks=[np.ones(3, bool), None])
    with pytest.raises(BadInput, match="live bitmap"):
        BM25Searcher(segs, [np.ones(5, bool), None], settings)


def test_deleted_docs_do_not_count_in_statistics():
    """A term only deleted documents hold is unknown; deleted lengths leave avgdl alone."""
    settings = EmbeddedLexicalSettings()
    seg = LexicalSegment.build([[], [], []], [["x", "y"], ["x"], ["z", "z", "z", "z"]])
    s = BM25Searcher([seg], [np.array([True, True, False])], settings)
    assert s.search_many([["z"]], 5, boosts={"all": 1.0}) == [[]]
    assert s.avgdl["all"] == 1.5
    ref = BM25Searcher([LexicalSegment.build([[], []], [["x", "y"], ["x"]])], [None], settings)
    assert s.search_many([["x", "y"]], 5, boosts={"all": 1.0}) == ref.search_many(
        [["x", "y"]], 5, boosts={"all": 1.0}
    )


def test_empty_segments_queries_and_unknown_terms():
    settings = EmbeddedLexicalSettings()
    empty = LexicalSegment.build([], [])
    assert empty.n_docs == 0 and empty.terms == []
    assert BM25Searcher([], [], settings).search_many([["a"]], 3, boosts={"all": 1.0}) == [[]]
    assert BM25Searcher([empty], [None], settings).search_many([["a"]], 3, boosts={"all": 1.0}) == [
        []
    ]
    seg = LexicalSegment.build([[], []], [["a", "b"], []])
    s = BM25Searcher([empty, seg, empty], [None, None, None], settings)
    assert s.search_many([[], ["nope"], ["a"]], 3, boosts={"all": 1.0})[:2] == [[], []]
    assert [(g, o) for g, o, _ in s.search_many([["a"]], 3, boosts={"all": 1.0})[0]] == [(1, 0)]
    # no document has a title: the title field scores nothing
    assert s.search_many([["a"]], 3, boosts={"title": 1.0}) == [[]]
    # everything deleted
    dead = BM25Searcher([seg], [np.zeros(2, bool)], settings)
    assert dead.doc_count() == 0
    assert dead.search_many([["a"]], 3, boosts={"all": 1.0}) == [[]]
    with pytest.raises(BadInput, match="k must be"):
        s.search_many([["a"]], 0, boosts={"all": 1.0})
    with pytest.raises(BadInput, match="unknown boost"):
        s.search_many([["a"]], 3, boosts={"body": 1.0})
    with pytest.raises(BadInput, match="differ in length"):
        LexicalSegment.build([[]], [])


def test_top_k_ties_are_broken_by_position():
    settings = EmbeddedLexicalSettings()
    segs = [LexicalSegment.build([[]] * 4, [["t"]] * 4) for _ in range(3)]
    s = BM25Searcher(segs, [None, np.array([True, False, True, True]), None], settings)
    hits = s.search_many([["t"]], 5, boosts={"all": 1.0})[0]
    assert [(g, o) for g, o, _ in hits] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert len({sc for *_, sc in hits}) == 1


def test_nbytes_counts_the_arrays():
    seg = LexicalSegment.build([["a"]] * 10, [["b", "c"]] * 10)
    assert seg.nbytes() >= sum(fp.nbytes() for fp in seg.fields.values()) > 0


def test_searcher_is_shared_between_threads():
    from concurrent.futures import ThreadPoolExecutor

    settings = EmbeddedLexicalSettings(method="bm25+")
    c = Corpus(6)
    s = BM25Searcher(c.segments, c.live, settings)
    boosts = {"title": 1.0, "all": 0.5}
    want = s.search_many(c.queries, 10, boosts=boosts)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: s.search_many([q], 10, boosts=boosts)[0], c.queries * 3))
    assert got == want * 3


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("share", [0.1, 0.6])  # pushed into the scoring / applied after it
def test_filters_give_the_unfiltered_ranking_of_the_allowed_documents(method, share, monkeypatch):
    """A filter changes which documents are returned, never their scores or order (the
    statistics stay those of every live document); a selective one also spares the
    arithmetic of the postings it excludes."""
    settings = EmbeddedLexicalSettings(method=method, k1=1.2, b=0.75)
    c = Corpus(4, n_batches=6)
    rng = np.random.default_rng(7)
    masks = [rng.random(seg.n_docs) < share for seg in c.segments]
    s = BM25Searcher(c.segments, c.live, settings)
    scored = []
    real = s._posting_scores
    monkeypatch.setattr(s, "_posting_scores", lambda ords, *a: scored.append(ords.size) or real(ords, *a))
    for boosts in ({"all": 1.0}, {"title": 2.0, "text": 1.0}):
        everything = s.search_many(c.queries, 10_000, boosts=boosts)
        n_unfiltered = sum(scored)
        scored.clear()
        got = s.search_many(c.queries, 7, boosts=boosts, masks=masks)
        for q, full, hits in zip(c.queries, everything, got):
            want = [h for h in full if masks[h[0]][h[1]]][:7]
            assert hits == want, q  # same scores, bit for bit, and the same order
        assert sum(scored) < n_unfiltered if share < 0.25 else sum(scored) == n_unfiltered
        scored.clear()
