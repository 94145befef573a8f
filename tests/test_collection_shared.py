"""Several processes over one local index (``Collection.open_shared``, ``semsearch serve
--workers N``): the writer holds the lock; readers search read-only, commit writes to the
document store, and the writer's refresh loop makes them searchable. Two opens in one test
process stand for two processes (the writer lock is an ``flock`` on its own file handle)."""

from __future__ import annotations

import time

import pytest

from semsearch.collection import Collection
from semsearch.documents import Document
from semsearch.errors import BackendUnavailable, BadInput
from semsearch.indexer.index import Index, IndexLocked


@pytest.fixture
def shared_settings(settings):
    settings.indexing.refresh_interval = 0.2
    settings.indexing.background_merges = False
    return settings


@pytest.fixture
def index_path(tmp_path, tiny_docs, hashing_encoder, shared_settings):
    path = tmp_path / "index"
    with Collection.create(path, shared_settings, encoder=hashing_encoder) as col:
        col.upsert(tiny_docs, wait_for=True)
    return path


def test_the_first_open_is_the_writer_the_next_a_reader(index_path, shared_settings, hashing_encoder):
    with Collection.open_shared(index_path, shared_settings, encoder=hashing_encoder) as writer, \
            Collection.open_shared(index_path, shared_settings, encoder=hashing_encoder) as reader:
        assert (writer.role, reader.role) == ("writer", "reader")
        assert reader.search("bees pollinate crops", mode="lexical", k=1).hits[0].id == "d11"
    with pytest.raises(BadInput, match="read-only"):
        Collection.open(index_path, shared_settings).upsert([Document(id="x", text="y")])


def test_a_reader_commits_writes_that_the_writer_makes_searchable(index_path, shared_settings,
                                                                  hashing_encoder):
    with Collection.open_shared(index_path, shared_settings, encoder=hashing_encoder) as writer, \
            Collection.open_shared(index_path, shared_settings, encoder=hashing_encoder) as reader:
        before = writer.searchable_seq
        res = reader.upsert([Document(id="new1", title="Beekeeping", text="Keepers harvest honey from hives.")],
                            wait_for=True, timeout=30)
        assert res.seq == before + 1 and res.searchable  # the writer's loop refreshed it
        assert writer.searchable_seq >= res.seq
        for col in (writer, reader):
            assert col.search("beekeeping honey hives", mode="lexical", k=1).hits[0].id == "new1"
            assert col.search("beekeeping honey hives", mode="dense", k=1).hits[0].id == "new1"
        # sequence numbers stay global: the writer's next write comes after the reader's
        w = writer.upsert([Document(id="new2", text="Queens lay eggs in the hive.")], wait_for=True)
        assert w.seq == res.seq + 1
        d = reader.delete("new1", wait_for=True, timeout=30)
        assert d.searchable and d.seq == w.seq + 1
        assert all(h.id != "new1" for h in writer.search("beekeeping honey hives", mode="lexical").hits)
        assert reader.refresh()["changed"] == 0  # a reader waits for the writer instead


def test_the_writer_refreshes_changes_it_did_not_make(index_path, shared_settings, hashing_encoder):
    """The refresh loop polls the store (MAX(seq)) at each interval, not only after its own
    writes: here the write comes from a bare read-only Index with store writes."""
    with Collection.open(index_path, shared_settings, writable=True, encoder=hashing_encoder) as writer:
        other = Index.open(index_path, shared_settings, store_writes=True)
        try:
            vec = hashing_encoder.encode(["Bumblebees nest in the ground."])
            seq = other.write([Document(id="foreign", text="Bumblebees nest in the ground.")], {"dense": vec})
        finally:
            other.close()
        assert writer.searchable_seq < seq
        deadline = time.monotonic() + 30
        while writer.searchable_seq < seq and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.searchable_seq >= seq
        assert writer.search("bumblebees nest ground", mode="lexical", k=1).hits[0].id == "foreign"


def test_a_reader_cannot_declare_a_channel(tmp_path, shared_settings, hashing_encoder):
    path = tmp_path / "lexical-only"
    with Collection.create(path, shared_settings) as col:  # no encoder: no dense channel
        col.index.write([Document(id="a", text="alpha")])
        col.refresh()
    with Collection.open_shared(path, shared_settings) as writer, \
            Collection.open_shared(path, shared_settings, encoder=hashing_encoder) as reader:
        assert writer.role == "writer"
        with pytest.raises(BackendUnavailable, match="channel 'dense' is not declared.*retry"):
            reader.upsert([Document(id="b", text="beta")])
        assert reader.index.store.get(["b"]) == {}  # nothing was written


def test_a_reader_takes_over_when_the_writer_goes(index_path, shared_settings, hashing_encoder):
    writer = Collection.open_shared(index_path, shared_settings, encoder=hashing_encoder)
    with Collection.open_shared(index_path, shared_settings, encoder=hashing_encoder) as reader:
        assert reader.role == "reader"
        res = reader.upsert([Document(id="late", text="Written while the writer is closing.")])
        writer.close()  # the lock is released (a dead process releases its flock too)
        deadline = time.monotonic() + 30
        while reader.role != "writer" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.role == "writer"
        assert reader.wait_for(res.seq, 30)
        assert reader.search("written while closing", mode="lexical", k=1).hits[0].id == "late"
        assert reader.ready()["generation"] > 0
        with pytest.raises(IndexLocked):
            Index.open(index_path, shared_settings, writable=True)


def test_a_reader_write_is_durable_but_not_searchable_without_a_refreshing_writer(
        index_path, shared_settings, hashing_encoder):
    shared_settings.indexing.refresh_interval = 60  # the reader does not try the lock meanwhile
    lock_holder = Index.open(index_path, shared_settings, writable=True)  # holds .lock, never refreshes
    try:
        with Collection.open_shared(index_path, shared_settings, encoder=hashing_encoder) as reader:
            assert reader.role == "reader"
            res = reader.upsert([Document(id="parked", text="Stored, not yet searchable.")],
                                wait_for=True, timeout=0.3)
            assert not res.searchable and reader.get("parked").text == "Stored, not yet searchable."
            lock_holder.sync()  # the writer's refresh: now the reader's next search sees it
            assert reader.wait_for(res.seq, 5)
            assert reader.search("stored searchable", mode="lexical", k=1).hits[0].id == "parked"
    finally:
        lock_holder.close()
