"""The segment core: refreshes write small segments, deletes are tombstones, merges fold
segments together without changing a score, snapshots isolate searches, and what a writer
acknowledged survives anything. Vectors come from the hashing encoder (FAISS bookkeeping is
the point here, not embedding quality)."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from semsearch.config import Settings
from semsearch.documents import Document
from semsearch.errors import BadInput, IndexIncompatible
from semsearch.filters import parse_filter
from semsearch.indexer.index import Index
from semsearch.indexer.manifest import FORMAT_VERSION, Manifest
from semsearch.indexer.segments.segment import Segment
from semsearch.indexer.store import DocStore
from semsearch.indexer.verify import verify
from tests.conftest import HashingEncoder, to_format_2_layout

WORDS = ("bees honey pollen flowers crops solar panels wind turbines bread yeast dough river lake "
         "ocean mountain glacier volcano magma crust planet star galaxy comet chess knight").split()


def doc(i: int, rng: random.Random, **meta) -> Document:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
    return Document(id=f"d{i}", title=rng.choice(WORDS), text=text,
                    metadata={"n": i, "topic": rng.choice(["a", "b", "c"]), **meta})


@pytest.fixture
def settings():
    s = Settings()
    s.no_progress = True
    s.indexing.merge_factor = 3
    s.vector.faiss.exact_below = 40
    return s


def write(idx: Index, docs: list[Document], enc: HashingEncoder) -> None:
    idx.ensure_channel("dense", dim=enc.dim, encoder=enc.name)
    idx.write(docs, {"dense": enc.encode([f"{d.title} {d.text}" for d in docs])})


def lexical(idx: Index, q: str, k: int = 50, **kw) -> list[tuple[str, float]]:
    return idx.snapshot().lexical.search(q, k, **kw)


def test_each_refresh_writes_one_small_segment_and_deletes_are_tombstones(tmp_path, settings):
    enc, rng = HashingEncoder(), random.Random(1)
    with Index.create(tmp_path / "ix", settings) as idx:
        write(idx, [doc(i, rng) for i in range(30)], enc)
        idx.sync()
        write(idx, [Document(id="new", text="zeppelin airship")], enc)
        info = idx.sync()
        assert info["segments"] == 1 and [r.n_docs for r in idx.manifest.segments] == [30, 1]
        assert lexical(idx, "zeppelin")[0][0] == "new"
        idx.delete(["d3"])
        write(idx, [Document(id="d4", text="zeppelin hangar")], enc)  # an update
        idx.sync()
        refs = idx.manifest.segments
        assert refs[0].n_deleted == 2 and refs[0].deletes  # d3 deleted, d4's old version
        assert [d for d, _ in lexical(idx, "zeppelin")] == ["d4", "new"] or \
            [d for d, _ in lexical(idx, "zeppelin")] == ["new", "d4"]
        assert idx.snapshot().count() == 30
        dense = idx.snapshot().vectors["dense"]
        assert "d3" not in dense and dense.count() == 30


def test_lexical_scores_across_segments_equal_one_index_over_the_live_docs(tmp_path, settings):
    rng = random.Random(7)
    live: dict[str, Document] = {}
    with Index.create(tmp_path / "ix", settings) as idx:
        settings.indexing.background_merges = False
        for step in range(8):
            batch = [doc(rng.randint(0, 80), rng) for _ in range(15)]
            batch = list({d.id: d for d in batch}.values())
            idx.write(batch)
            live.update({d.id: d for d in batch})
            gone = rng.sample(sorted(live), 3)
            idx.delete(gone)
            for g in gone:
                live.pop(g)
            idx.sync()
            if step == 4:
                idx.maybe_merge()
        assert len(idx.manifest.segments) > 1
        with Index.create(tmp_path / "one", settings) as one:
            one.write(list(live.values()))
            one.sync()
            assert len(one.manifest.segments) == 1
            for q in ("bees honey", "solar wind turbines", "chess knight planet", "magma"):
                for boosts in (None, {"title": 2.0, "text": 1.0}):
                    got = lexical(idx, q, 100, boosts=boosts)
                    want = lexical(one, q, 100, boosts=boosts)
                    assert dict(got) == pytest.approx(dict(want), rel=1e-6), q
                    assert len(got) == len(want)


def test_merge_keeps_every_score_and_purges_deletes(tmp_path, settings):
    enc, rng = HashingEncoder(), random.Random(3)
    with Index.create(tmp_path / "ix", settings) as idx:
        for start in range(0, 60, 10):
            write(idx, [doc(i, rng) for i in range(start, start + 10)], enc)
            idx.sync()
        idx.delete(["d1", "d12", "d55"])
        idx.sync()
        qv = enc.encode(["bees honey flowers"])
        before_lex = lexical(idx, "bees honey flowers")
        before_vec = idx.snapshot().vectors["dense"].search(qv, 20)[0]
        assert idx.merge_candidates()  # six segments of 10 with merge_factor 3
        while idx.maybe_merge() is not None:
            pass
        refs = idx.manifest.segments
        assert len(refs) < 6 and sum(r.live for r in refs) == 57
        assert dict(lexical(idx, "bees honey flowers")) == pytest.approx(dict(before_lex), rel=1e-6)
        after_vec = idx.snapshot().vectors["dense"].search(qv, 20)[0]
        # the same scores (ties at the cut may swap ids: hashing vectors tie often)
        assert [s for _, s in after_vec] == pytest.approx([s for _, s in before_vec], rel=1e-5)
        cut = before_vec[-1][1]
        assert {d for d, s in after_vec if s > cut + 1e-6} == {d for d, s in before_vec if s > cut + 1e-6}
        on_disk = {p.name for p in (tmp_path / "ix" / "segments").iterdir()}
        assert on_disk == {r.name for r in refs}  # merged-away segments are removed


def test_deletes_during_a_merge_are_carried_into_the_merged_segment(tmp_path, settings, monkeypatch):
    enc, rng = HashingEncoder(), random.Random(5)
    from semsearch.indexer.segments import segment as segment_mod

    with Index.create(tmp_path / "ix", settings) as idx:
        for start in range(0, 30, 10):
            write(idx, [doc(i, rng) for i in range(start, start + 10)], enc)
            idx.sync()
        real = segment_mod.Segment.merge.__func__

        def merge_then_write(cls, *a, **kw):
            merged = real(cls, *a, **kw)
            idx.delete(["d2", "d25"])  # arrive while the merged segment was being built
            write(idx, [Document(id="d7", title="zeppelin", text="zeppelin")], enc)
            idx.sync()
            return merged

        monkeypatch.setattr(segment_mod.Segment, "merge", classmethod(merge_then_write))
        info = idx.maybe_merge()
        assert info is not None and info["docs"] == 30
        snap = idx.snapshot()
        assert snap.count() == 28 and snap.locate("d2") is None and snap.locate("d25") is None
        assert [d for d, _ in lexical(idx, "zeppelin")] == ["d7"]
        ids = [seg.ids[o] for i, seg in enumerate(snap.segments)
               for o in range(seg.n_docs) if snap.live(i) is None or snap.live(i)[o]]
        assert sorted(ids) == sorted(set(ids))  # every live document exactly once


def test_a_snapshot_is_a_point_in_time_view(tmp_path, settings):
    enc, rng = HashingEncoder(), random.Random(2)
    with Index.create(tmp_path / "ix", settings) as idx:
        write(idx, [doc(i, rng) for i in range(20)], enc)
        idx.sync()
        old = idx.snapshot()
        write(idx, [Document(id="z", text="zeppelin")], enc)
        idx.delete(["d0"])
        idx.sync()
        idx.force_merge()
        assert old.lexical.search("zeppelin", 5) == [] and old.locate("d0") is not None
        assert idx.snapshot().lexical.search("zeppelin", 5)[0][0] == "z"


def test_a_document_that_loses_a_channel_loses_its_vector(tmp_path, settings):
    enc = HashingEncoder()
    with Index.create(tmp_path / "ix", settings) as idx:
        write(idx, [Document(id="a", text="solar panels"), Document(id="b", text="wind turbines")], enc)
        idx.sync()
        idx.write([Document(id="a", image="a.jpg")], {})  # now an image-only document
        idx.sync()
        assert not idx.store.has_vectors(["a"], "dense")
        dense = idx.snapshot().vectors["dense"]
        assert "a" not in dense and dense.count() == 1
        assert [d for d, _ in dense.search(enc.encode(["solar panels"]), 5)[0]] == ["b"]


def test_a_vector_that_can_never_be_indexed_is_refused_before_it_is_acknowledged(tmp_path, settings):
    enc = HashingEncoder()
    with Index.create(tmp_path / "ix", settings) as idx:
        idx.ensure_channel("dense", dim=enc.dim, encoder=enc.name)
        bad = enc.encode(["x", "y"])
        bad[1, 3] = np.nan
        with pytest.raises(BadInput, match=r"\['b'\] have vectors with NaN or infinity"):
            idx.write([Document(id="a", text="x"), Document(id="b", text="y")], {"dense": bad})
        assert idx.store.count() == 0
        write(idx, [Document(id="c", text="fine")], enc)  # later writes are not blocked
        idx.sync()
        assert idx.snapshot().count() == 1


def test_ivf_is_trained_on_a_sample_of_the_store_with_nlist_from_its_size(tmp_path, settings):
    enc, rng = HashingEncoder(), random.Random(4)
    settings.vector.faiss.factory = "IVF{nlist},Flat"
    with Index.create(tmp_path / "ix", settings) as idx:
        write(idx, [doc(i, rng) for i in range(300)], enc)
        idx.sync()
        tpl = idx.manifest.templates["dense"]
        assert tpl["trained_on"] == 300 and tpl["factory"] == "IVF64,Flat"
        seg = idx.snapshot().segments[0]
        assert seg.vectors["dense"].ann is not None
        q = enc.encode([f"{d.title} {d.text}" for d in [doc(5, random.Random(4))]])
        hits = idx.snapshot().vectors["dense"].search(q, 3)[0]
        assert len(hits) == 3


def test_ivf_is_retrained_once_the_channel_has_grown_tenfold(tmp_path, settings):
    enc, rng = HashingEncoder(), random.Random(5)
    settings.vector.faiss.factory = "IVF{nlist},Flat"
    with Index.create(tmp_path / "ix", settings) as idx:
        write(idx, [doc(i, rng) for i in range(300)], enc)
        idx.sync()
        first = dict(idx.manifest.templates["dense"])
        assert first["trained_on"] == 300 and first["factory"] == "IVF64,Flat"
        write(idx, [doc(i, rng) for i in range(300, 2900)], enc)  # 2,900 < 10 x 300: kept
        idx.sync()
        assert idx.manifest.templates["dense"] == first
        write(idx, [doc(i, rng) for i in range(2900, 3000)], enc)  # 3,000 = 10 x 300: retrained
        idx.sync()
        again = idx.manifest.templates["dense"]
        # on a sample of the whole store, with nlist from its size (4 sqrt(3000) ~ 219 -> 256)
        assert again["trained_on"] == 3000 and again["factory"] == "IVF256,Flat"
        assert again["file"] != first["file"]
        newest = idx.snapshot().segments[-1]
        import faiss

        assert faiss.extract_index_ivf(newest.vectors["dense"].ann).nlist == 256  # cloned from the new one
        q = enc.encode([f"{d.title} {d.text}" for d in [doc(2950, random.Random(5))]])
        assert len(idx.snapshot().vectors["dense"].search(q, 3)[0]) == 3


def test_filters_are_pushed_into_every_segment_and_channel(tmp_path, settings):
    enc, rng = HashingEncoder(), random.Random(6)
    settings.vector.faiss.factory = "HNSW16"
    with Index.create(tmp_path / "ix", settings) as idx:
        write(idx, [doc(i, rng) for i in range(100)], enc)  # an HNSW segment
        idx.sync()
        write(idx, [doc(i, rng) for i in range(100, 110)], enc)  # a small exact one
        idx.sync()
        assert idx.snapshot().segments[0].vectors["dense"].ann is not None
        snap = idx.snapshot()
        flt = parse_filter({"n": {"gte": 95, "lt": 105}})
        masks = snap.masks(flt)
        dense = snap.vectors["dense"].search(enc.encode(["bees"]), 50, masks=masks)[0]
        assert sorted(int(d[1:]) for d, _ in dense) == list(range(95, 105))
        lex = snap.lexical.search_many(["bees honey pollen flowers crops"], 50, masks=masks)[0]
        assert {int(d[1:]) for d, _ in lex} <= set(range(95, 105))


def test_reindex_changes_the_faiss_factory_from_stored_vectors(tmp_path, settings):
    enc, rng = HashingEncoder(), random.Random(8)
    with Index.create(tmp_path / "ix", settings) as idx:
        write(idx, [doc(i, rng) for i in range(80)], enc)
        idx.sync()
        q = enc.encode(["river lake ocean"])
        before = idx.snapshot().vectors["dense"].search(q, 5)[0]
        calls = enc.calls
        idx.reindex(factory="HNSW16")
        assert enc.calls == calls  # nothing re-encoded
        assert idx.manifest.channels["dense"].settings["factory"] == "HNSW16"
        assert idx.snapshot().segments[0].vectors["dense"].ann is not None
        after = idx.snapshot().vectors["dense"].search(q, 5)[0]
        assert [d for d, _ in after][:3] == [d for d, _ in before][:3]


def test_the_manifest_is_read_after_the_writer_lock(tmp_path, settings, monkeypatch):
    enc, rng = HashingEncoder(), random.Random(9)
    with Index.create(tmp_path / "ix", settings) as idx:
        write(idx, [doc(i, rng) for i in range(5)], enc)
        idx.sync()
    real = Index._acquire_lock

    def another_writer_first(self):
        # a writer that committed between this open's start and its lock
        monkeypatch.setattr(Index, "_acquire_lock", real)
        with Index.create(tmp_path / "ix", settings) as other:
            write(other, [Document(id="late", text="late arrival")], enc)
            other.sync()
        real(self)

    monkeypatch.setattr(Index, "_acquire_lock", another_writer_first)
    with Index.create(tmp_path / "ix", settings) as idx:
        assert [d for d, _ in lexical(idx, "late arrival")] == ["late"]
        assert idx.snapshot().count() == 6


def test_a_format_1_index_is_upgraded_from_its_document_store(tmp_path, settings):
    ix = tmp_path / "ix"
    ix.mkdir()
    store = DocStore(ix / "docs.sqlite")
    store.write([Document(id="a", text="old bees"), Document(id="b", text="old wind")])
    store.close()
    old = Manifest(lexical_settings={"embedded": {"k1": 0.9, "b": 0.4}}).model_dump(mode="json")
    old["format_version"] = 1
    (ix / "gen-000003").mkdir()  # the old layout's derived indexes
    (ix / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(Exception, match="older semsearch"):
        Index.open(ix, settings)
    with Index.create(ix, settings) as idx:
        idx.sync()
        assert idx.manifest.format_version == FORMAT_VERSION and not (ix / "gen-000003").exists()
        assert [d for d, _ in lexical(idx, "bees")] == ["a"]
    with Index.open(ix, settings) as idx:
        assert idx.snapshot().count() == 2


def test_an_index_of_the_file_per_array_layout_is_refused_read_only_and_upgraded_for_writing(tmp_path, settings):
    enc, rng = HashingEncoder(), random.Random(4)
    ix = tmp_path / "ix"
    docs = [doc(i, rng) for i in range(12)]
    with Index.create(ix, settings) as idx:
        write(idx, docs[:7], enc)
        idx.sync()
        write(idx, docs[7:], enc)
        idx.sync()
        idx.delete(["d2"])
        idx.sync()
        want = lexical(idx, "bees honey")
        tuned = {"fusion": {"method": "rrf"}, "dense_encoder": "models/dense-adapted"}
        idx.set_tuned(tuned)  # what `semsearch adapt` chose for this corpus
    to_format_2_layout(ix)
    seg = min((ix / "segments").iterdir())
    assert (seg / "ids.json").is_file() and (seg / "lexical" / "vocab.json").is_file()
    with pytest.raises(IndexIncompatible, match=rf"segment {re.escape(str(seg))} has format 1; this semsearch "
                       rf"reads segment format 2 .*rebuild .* `semsearch reindex --index {re.escape(str(ix))}`"):
        Segment.load(seg)
    with pytest.raises(IndexIncompatible, match=rf"older semsearch \(format 2\).*`semsearch reindex --index {re.escape(str(ix))}`"):
        Index.open(ix, settings)
    with Index.create(ix, settings, reindex=True) as idx:  # what `semsearch reindex` does
        idx.sync()
        assert idx.manifest.format_version == FORMAT_VERSION
        assert lexical(idx, "bees honey") == want and idx.snapshot().count() == 11
        assert idx.snapshot().vectors["dense"].count() == 11
        assert idx.manifest.tuned == tuned  # the upgrade had dropped adapt's choices
        names = {r.name for r in idx.manifest.segments}
        assert {p.name for p in (ix / "segments").iterdir()} == names and seg.name not in names
    with Index.open(ix, settings) as idx:
        assert idx.snapshot().count() == 11 and lexical(idx, "bees honey") == want


def test_an_hnsw_segment_keeps_its_vectors_once_and_merges_and_reopens_from_them(tmp_path, settings):
    enc, rng = HashingEncoder(), random.Random(9)
    settings.vector.faiss.factory = "HNSW16"
    docs = [doc(i, rng) for i in range(120)]
    with Index.create(tmp_path / "ix", settings) as idx:
        write(idx, docs[:60], enc)
        idx.sync()
        write(idx, docs[60:], enc)
        idx.sync()
        for seg in idx.snapshot().segments:  # the raw rows are the HNSW index's own storage
            assert {p.name for p in seg.path.iterdir()} == {"segment.json", "arrays.bin", "metadata.jsonl", "dense.faiss"}
            assert [n for n in seg.arrays if n.startswith("vectors.")] == ["vectors.dense.present"]
        idx.force_merge(1)
    with Index.open(tmp_path / "ix", settings) as idx:
        (seg,) = idx.snapshot().segments
        assert "vectors.dense.rows" not in seg.arrays and (seg.path / "dense.faiss").is_file()
        vs = seg.vectors["dense"]
        stored = enc.encode([f"{d.title} {d.text}" for d in docs])
        np.testing.assert_array_equal(vs.vectors[[seg.ids.index(d.id) for d in docs]], stored)
        # an exact (filtered) search reads the same rows
        snap = idx.snapshot()
        masks = snap.masks(parse_filter({"n": {"lt": 5}}))
        hits = snap.vectors["dense"].search(stored[:1], 3, masks=masks)[0]
        assert hits[0][0] == "d0" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    # without its ANN index (the only copy of its rows) the segment is incomplete, not exact
    assert verify(tmp_path / "ix").ok
    (seg.path / "dense.faiss").unlink()
    with pytest.raises(FileNotFoundError, match="dense.faiss"):
        Segment.load(seg.path)
    assert [p.message for p in verify(tmp_path / "ix").errors] == [
        f"segment {seg.name} is incomplete: {seg.path / 'dense.faiss'} is missing"]


def test_filter_masks_equal_the_ordinals_they_select(tmp_path, settings):
    enc, rng = HashingEncoder(), random.Random(10)
    with Index.create(tmp_path / "ix", settings) as idx:
        write(idx, [doc(i, rng) for i in range(200)], enc)
        idx.sync()
        meta = idx.snapshot().segments[0].meta
        for f in ({"n": {"lt": 100}}, {"topic": ["a", "c"]}, {"not": {"n": {"gte": 50}}},
                  {"and": [{"n": {"gte": 20}}, {"topic": "b"}]}, {"or": [{"n": 3}, {"topic": "a"}]},
                  {"missing": 1}):
            flt = parse_filter(f)
            assert np.array_equal(np.flatnonzero(meta.mask(flt)), meta.ordinals(flt)), f


def test_index_size_skips_files_a_merge_removes_during_the_walk(tmp_path, monkeypatch):
    import semsearch.indexer.index as index_mod

    (tmp_path / "a").write_bytes(b"12345")
    walk = index_mod.os.walk
    monkeypatch.setattr(index_mod.os, "walk", lambda p: [(str(tmp_path), [], ["a", "gone"])] if p == tmp_path else walk(p))
    assert index_mod.dir_size(tmp_path) == 5
