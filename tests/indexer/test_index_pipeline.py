import json

import pytest

from semsearch.documents import Document
from semsearch.errors import IndexIncompatible, IndexNotFound
from semsearch.indexer.index import Index, IndexLocked
from semsearch.indexer.manifest import FORMAT_VERSION, read_manifest
from semsearch.indexer.pipeline import Pipeline, TextChannel
from tests.conftest import HashingEncoder


def build(path, settings, inputs, encoder=None):
    with Index.create(path, settings) as idx:
        return Pipeline(idx, [TextChannel(encoder or HashingEncoder())], settings).run(inputs)


def test_manifest_records_what_the_index_is(tmp_path, tiny_jsonl, settings):
    build(tmp_path / "ix", settings, [tiny_jsonl])
    m = read_manifest(tmp_path / "ix")
    assert m.format_version == FORMAT_VERSION
    assert m.channels["dense"].encoder == "test/hashing-encoder" and m.channels["dense"].dim == 64
    assert m.channels["dense"].settings["factory"] == "Flat"
    assert m.counts == {"docs": 12, "lexical": 12, "dense": 12, "segments": 1}
    assert "faiss-cpu" in m.versions and "bm25s" in m.versions
    files = {p.name for p in (tmp_path / "ix").iterdir()}
    assert {"manifest.json", "docs.sqlite", "segments"} <= files
    assert [p.name for p in (tmp_path / "ix" / "segments").iterdir()] == [r.name for r in m.segments]
    assert not [f for f in files if f.startswith(".tmp")]


def test_rerun_is_idempotent_and_updates_changed_records(tmp_path, tiny_jsonl, settings):
    enc = HashingEncoder()
    r1 = build(tmp_path / "ix", settings, [tiny_jsonl], enc)
    assert (r1.indexed, r1.unchanged) == (12, 0)
    r2 = build(tmp_path / "ix", settings, [tiny_jsonl], enc)
    assert (r2.indexed, r2.unchanged) == (0, 12)
    changed = tmp_path / "changed.jsonl"
    changed.write_text(json.dumps({"_id": "d3", "title": "Zeppelins", "text": "Airships float on hydrogen"}) + "\n")
    r3 = build(tmp_path / "ix", settings, [changed], enc)
    assert r3.indexed == 1
    with Index.open(tmp_path / "ix", settings) as idx:
        assert idx.lexical.count() == 12 and idx.vectors["dense"].count() == 12
        assert idx.lexical.search("zeppelins", 3)[0][0] == "d3"
        assert idx.lexical.search("photosynthesis", 3) == []


def test_rejected_records_are_reported_and_accepted_ones_kept(tmp_path, settings):
    p = tmp_path / "mixed.jsonl"
    p.write_text(
        "\n".join([
            json.dumps({"_id": "a", "text": "alpha"}),
            "{broken",
            json.dumps({"_id": "b", "text": "beta"}),
            json.dumps({"_id": "a", "text": "alpha again"}),
            json.dumps({"_id": "c", "text": ""}),
        ]) + "\n"
    )
    r = build(tmp_path / "ix", settings, [p])
    assert r.indexed == 2 and r.read == 5
    reasons = {x.line: x.reason for x in r.rejected}
    assert set(reasons) == {2, 4, 5}
    assert "duplicate id 'a' (first seen at" in reasons[4] and ":1)" in reasons[4]
    with Index.open(tmp_path / "ix", settings) as idx:
        assert set(idx.get(["a", "b", "c"])) == {"a", "b"}
        assert idx.get(["a"])["a"].text == "alpha"


def test_duplicate_policy_last(tmp_path, settings):
    settings.indexing.on_duplicate = "last"
    p = tmp_path / "dups.jsonl"
    p.write_text(json.dumps({"_id": "a", "text": "first"}) + "\n" + json.dumps({"_id": "a", "text": "second"}) + "\n")
    r = build(tmp_path / "ix", settings, [p])
    assert not r.rejected
    with Index.open(tmp_path / "ix", settings) as idx:
        assert idx.get(["a"])["a"].text == "second" and idx.lexical.count() == 1


def test_delete_and_sync(tmp_path, tiny_jsonl, settings):
    build(tmp_path / "ix", settings, [tiny_jsonl])
    with Index.open(tmp_path / "ix", settings, writable=True) as idx:
        assert idx.delete(["d1", "nope"]) == 1
        idx.sync()
    with Index.open(tmp_path / "ix", settings) as idx:
        assert "d1" not in idx.vectors["dense"] and idx.lexical.count() == 11
        assert idx.get(["d1"]) == {}
        assert idx.manifest.counts["docs"] == 11


def test_open_errors(tmp_path, tiny_jsonl, settings):
    with pytest.raises(IndexNotFound, match="does not exist"):
        Index.open(tmp_path / "nothing", settings)
    # opening for writing (compact, reindex) a path that holds no index leaves nothing behind
    with pytest.raises(IndexNotFound, match="does not exist"):
        Index.open(tmp_path / "typo", settings, writable=True)
    assert not (tmp_path / "typo").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFound, match="manifest.json is missing"):
        Index.open(tmp_path / "empty", settings, writable=True)
    assert list((tmp_path / "empty").iterdir()) == []
    build(tmp_path / "ix", settings, [tiny_jsonl])
    m = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    with Index.create(tmp_path / "ix", settings) as idx:
        with pytest.raises(IndexIncompatible, match="encoder 'test/hashing-encoder'.*configured encoder is 'other'"):
            idx.ensure_channel("dense", dim=64, encoder="other")
    m["format_version"] = 99
    (tmp_path / "ix" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexIncompatible, match="format version 99"):
        Index.open(tmp_path / "ix", settings)


def test_single_writer_lock(tmp_path, settings):
    with Index.create(tmp_path / "ix", settings):
        with pytest.raises(IndexLocked, match="being written by another process"):
            Index.create(tmp_path / "ix", settings)


def test_crash_between_segment_and_manifest_keeps_the_old_commit(tmp_path, tiny_jsonl, settings, monkeypatch):
    build(tmp_path / "ix", settings, [tiny_jsonl])
    import semsearch.indexer.index as index_mod

    def boom(*a, **k):
        raise KeyboardInterrupt("killed")

    with Index.create(tmp_path / "ix", settings) as idx:
        idx.write([Document(id="new", text="brand new zeppelin")], {"dense": HashingEncoder().encode(["brand new zeppelin"])})
        monkeypatch.setattr(index_mod, "write_manifest", boom)
        with pytest.raises(KeyboardInterrupt):
            idx.sync()
        monkeypatch.undo()
    # the manifest still points at the intact previous commit; the new doc is pending and
    # the segment written for it is an orphan
    assert len(list((tmp_path / "ix" / "segments").iterdir())) == 2
    with Index.open(tmp_path / "ix", settings) as idx:
        assert idx.lexical.count() == 12 and idx.pending()
    with Index.create(tmp_path / "ix", settings) as idx:  # the next writer replays it
        idx.sync()
        on_disk = sorted(p.name for p in (tmp_path / "ix" / "segments").iterdir())
        assert on_disk == sorted(r.name for r in idx.manifest.segments) and len(on_disk) == 2
        assert not [p for p in (tmp_path / "ix").iterdir() if p.name.startswith(".tmp")]
    with Index.open(tmp_path / "ix", settings) as idx:
        assert idx.lexical.count() == 13 and idx.vectors["dense"].count() == 13 and not idx.pending()


def test_rebuild_lexical_applies_new_settings(tmp_path, tiny_jsonl, settings):
    build(tmp_path / "ix", settings, [tiny_jsonl])
    settings.lexical.embedded.stemmer = "none"
    # the analysis an index was built with is recorded: another one is refused on open...
    with pytest.raises(IndexIncompatible, match="stemmer='english'.*semsearch reindex"):
        Index.create(tmp_path / "ix", settings)
    # ...until a reindex applies it
    with Index.create(tmp_path / "ix", settings, reindex=True) as idx:
        assert idx.lexical.search("pollinating", 3)[0][0] == "d11"  # still the old analysis
        info = idx.rebuild_lexical()
        assert info["docs"] == 12
    with Index.open(tmp_path / "ix", settings) as idx:
        assert idx.lexical.search("pollinate", 3)[0][0] == "d11"
        assert idx.lexical.search("pollinating", 3) == []


@pytest.mark.parametrize("merge_after_load", [True, False])
def test_a_bulk_load_runs_the_merge_policy_before_it_returns(tmp_path, settings, merge_after_load):
    p = tmp_path / "many.jsonl"
    p.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"doc {i} about item{i % 7}"}) + "\n"
                         for i in range(6144)))
    # a refresh reads the store 2,048 changes at a time: three segments of 2,048
    settings.indexing.segment_docs = 2048
    settings.indexing.merge_factor = 2
    settings.indexing.merge_after_load = merge_after_load
    r = build(tmp_path / "ix", settings, [p])
    assert r.sync["segments"] == 3
    m = read_manifest(tmp_path / "ix")
    if merge_after_load:  # two of the same tier merge; the third is alone in its tier
        assert sorted(s.n_docs for s in m.segments) == [2048, 4096]
        assert r.as_dict()["merges"] == [{"into": r.merges[0]["into"], "docs": 4096, "seconds": r.merges[0]["seconds"]}]
    else:
        assert [s.n_docs for s in m.segments] == [2048] * 3 and r.merges == []
    with Index.open(tmp_path / "ix", settings) as idx:
        assert idx.lexical.count() == 6144 and idx.lexical.search("item3", 1)


def test_a_bulk_load_reports_progress_of_its_refresh_and_merges(tmp_path, settings):
    """What `semsearch index`'s progress bars show after reading + encoding: documents
    written into segments (of the total) and documents merged (of the known total)."""
    p = tmp_path / "many.jsonl"
    p.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"doc {i} about item{i % 7}"}) + "\n"
                         for i in range(6144)))
    settings.indexing.segment_docs = 2048
    settings.indexing.merge_factor = 2
    calls: list[tuple[str, int, int]] = []
    encoded: list[int] = []
    with Index.create(tmp_path / "ix", settings) as idx:
        r = Pipeline(idx, [TextChannel(HashingEncoder())], settings, on_progress=encoded.append,
                     on_phase=lambda *a: calls.append(a)).run([p])
    assert sum(encoded) == 6144
    refresh = [c for c in calls if c[0] == "refresh"]
    assert refresh == [("refresh", 2048, 6144)] * 3  # one call per segment written, of all 6,144
    merge = [c for c in calls if c[0] == "merge"]
    # the total is announced before the merge (4,096 docs of two segments), then advanced
    assert merge == [("merge", 0, 4096), ("merge", 4096, 4096)] and r.merges[0]["docs"] == 4096
