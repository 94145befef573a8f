"""Index + Pipeline with the Elasticsearch lexical backend: documents the server rejects are
reported one by one, leave the index (a replaced version comes back as it was searchable),
and a re-run indexes exactly them."""

import json

import pytest

from semsearch.config import Settings
from semsearch.indexer.index import Index
from semsearch.indexer.pipeline import Pipeline, TextChannel
from tests.conftest import es_lexical_settings

pytestmark = pytest.mark.integration


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"_id": "y1", "title": "Mapped first", "text": "year becomes a long field", "metadata": {"year": 2001}},
    {"_id": "y2", "title": "Bad year", "text": "a year that is not a number", "metadata": {"year": "not a number"}},
    {"_id": "y3", "title": "Fine", "text": "another good year", "metadata": {"year": 2003}},
    {"_id": "y4", "title": "Bad too", "text": "an object where a number goes", "metadata": {"year": {"a": 1}}},
    {"_id": "y5", "title": "Last", "text": "the final good document", "metadata": {"year": 2005}},
]


@pytest.fixture
def es_settings(es_url, es_names):
    s = Settings()
    s.no_progress = True
    s.lexical = es_lexical_settings(es_url, es_names("pipe"))
    s.indexing.batch_size = 2
    return s


def test_rejected_docs_are_reported_removed_and_retried(tmp_path, es_settings, hashing_encoder):
    first = _write(tmp_path / "first.jsonl", ROWS[:1])
    rest = _write(tmp_path / "rest.jsonl", ROWS[1:])
    path = tmp_path / "ix"
    with Index.create(path, es_settings) as idx:
        Pipeline(idx, [TextChannel(hashing_encoder)], es_settings).run([first])  # year -> long
        report = Pipeline(idx, [TextChannel(hashing_encoder)], es_settings).run([rest])
        rejected = {r.id: r for r in report.rejected}
        assert set(rejected) == {"y2", "y4"}
        assert rejected["y2"].source == str(rest) and rejected["y2"].line == 1
        assert "year" in rejected["y2"].reason
        assert report.indexed == 2
        assert {f["id"] for f in report.sync["failed"]} == {"y2", "y4"}
        # nothing half-indexed: not in the store, not in the vector channel, not in ES
        assert set(idx.get(["y1", "y2", "y3", "y4", "y5"])) == {"y1", "y3", "y5"}
        assert "y2" not in idx.vectors["dense"] and "y3" in idx.vectors["dense"]
        assert idx.lexical.count() == 3 and idx.vectors["dense"].count() == 3
        assert not idx.pending()
    fixed = [dict(r, metadata={"year": 2002}) if r["_id"] in ("y2", "y4") else r for r in ROWS[1:]]
    _write(rest, fixed)
    with Index.create(path, es_settings) as idx:
        report = Pipeline(idx, [TextChannel(hashing_encoder)], es_settings).run([rest])
        assert report.rejected == []
        assert report.indexed == 2 and report.unchanged == 2  # exactly the missing ones
        assert idx.lexical.count() == 5 and idx.vectors["dense"].count() == 5
        hits = idx.lexical.search("year number", 10, filters={"year": 2002})
        assert {d for d, _ in hits} == {"y2", "y4"}


def test_a_refused_update_keeps_the_version_that_was_searchable(tmp_path, es_settings, hashing_encoder):
    from semsearch.documents import Document

    enc = hashing_encoder
    with Index.create(tmp_path / "ix", es_settings) as idx:
        idx.ensure_channel("dense", dim=enc.dim, encoder=enc.name)
        good = Document(id="u1", text="original zeppelin text", metadata={"year": 2001})
        idx.write([good], {"dense": enc.encode([good.text])})
        idx.sync()
        bad = Document(id="u1", text="replacement airship text", metadata={"year": "not a number"})
        seq = idx.write([bad], {"dense": enc.encode([bad.text])})
        info = idx.sync()
        assert [(f["id"], f["seq"]) for f in info["failed"]] == [("u1", seq)]
        assert "year" in info["failed"][0]["reason"]
        assert idx.store.rejected() == [("u1", seq, info["failed"][0]["reason"])]  # reported
        assert idx.get(["u1"])["u1"] == good  # the store has the searchable version back
        assert [d for d, _ in idx.lexical.search("zeppelin", 5)] == ["u1"]
        assert idx.lexical.search("airship", 5) == []
        assert idx.snapshot().count() == 1 and idx.snapshot().locate("u1") is not None
        q = idx.vectors["dense"].search(enc.encode([good.text]), 1)[0]
        assert q[0][0] == "u1" and q[0][1] == pytest.approx(1.0, abs=1e-5)


def test_rebuild_lexical_swaps_to_a_new_physical_index(tmp_path, es_settings, hashing_encoder):
    src = _write(tmp_path / "ok.jsonl", [ROWS[0], ROWS[2], ROWS[4]])
    with Index.create(tmp_path / "ix", es_settings) as idx:
        Pipeline(idx, [TextChannel(hashing_encoder)], es_settings).run([src])
        alias = es_settings.lexical.elasticsearch.index
        client = idx.lexical.conn.client
        assert list(client.indices.get_alias(name=alias)) == [f"{alias}-v1"]
        info = idx.rebuild_lexical()
        assert info["docs"] == 3
        client = idx.lexical.conn.client  # the old backend object was closed
        assert list(client.indices.get_alias(name=alias)) == [f"{alias}-v2"]
        assert not client.indices.exists(index=f"{alias}-v1")
    with Index.open(tmp_path / "ix", es_settings) as idx:
        assert [d for d, _ in idx.lexical.search("final", 3)] == ["y5"]
