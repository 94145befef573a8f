from semsearch.documents import Document
from semsearch.indexer.index import Index


def test_write_after_a_purged_delete_is_synced(tmp_path, settings):
    """A delete's sequence number is purged with the row at sync; the next write must still
    get a number above the synced one, or the sync would never apply it."""
    with Index.create(tmp_path / "i", settings) as idx:
        idx.write([Document(id="a", text="alpha"), Document(id="b", text="beta")])
        idx.sync()
        idx.delete(["b"])
        idx.sync()
        idx.write([Document(id="c", text="gamma")])
        assert idx.pending()
        idx.sync()
        assert [d for d, _ in idx.lexical.search("gamma", 5)] == ["c"]


def test_titleless_documents_index_and_search(tmp_path, settings):
    with Index.create(tmp_path / "i", settings) as idx:
        idx.write([Document(id="a", text="alpha particles"), Document(id="b", text="beta decay")])
        idx.sync()
        assert [d for d, _ in idx.lexical.search("decay", 5)] == ["b"]


def test_the_refresh_purges_tombstones_without_reading_live_rows(tmp_path, settings):
    """The purge after each refresh finds deleted rows through their own partial index, so
    its cost follows the deletes, not the corpus (a scan of docs_seq read every row)."""
    import sqlite3

    with Index.create(tmp_path / "i", settings) as idx:
        idx.write([Document(id=f"d{i}", text=f"doc {i}") for i in range(50)])
        idx.sync()
        idx.delete(["d3", "d7"])
        idx.sync()
        assert len(idx.get([f"d{i}" for i in range(50)])) == 48
    conn = sqlite3.connect(tmp_path / "i" / "docs.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM docs WHERE deleted=1").fetchone()[0] == 0  # purged
    plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN DELETE FROM docs WHERE deleted=1 AND seq<=?", (10**9,)))
    assert "docs_deleted" in plan, plan
