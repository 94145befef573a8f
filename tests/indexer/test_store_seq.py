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
