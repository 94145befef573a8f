"""The document store: each reading thread has its own SQLite connection, so no reader sees a
writer's uncommitted rows; a new version replaces every channel's vector."""

from __future__ import annotations

import threading

import numpy as np

from semsearch.documents import Document
from semsearch.indexer.store import DocStore


def test_a_reader_never_sees_uncommitted_rows(tmp_path):
    store = DocStore(tmp_path / "docs.sqlite")
    store.write([Document(id="a", text="committed")])
    inside = threading.Event()
    release = threading.Event()

    def writer() -> None:
        cur = store._write_conn().cursor()
        cur.execute("BEGIN IMMEDIATE")
        cur.execute("INSERT INTO docs(id,title,text,metadata,image,hash,seq,deleted) "
                    "VALUES ('b','','uncommitted','{}',NULL,'h',99,0)")
        inside.set()
        release.wait(10)
        cur.execute("ROLLBACK")

    t = threading.Thread(target=writer)
    t.start()
    assert inside.wait(10)
    seen: dict[str, object] = {}

    def reader() -> None:
        seen["docs"] = sorted(store.get(["a", "b"]))
        seen["count"] = store.count()
        seen["last_seq"] = store.last_seq()

    r = threading.Thread(target=reader)
    r.start()
    r.join(10)
    release.set()
    t.join(10)
    assert seen == {"docs": ["a"], "count": 1, "last_seq": 1}
    store.close()


def test_a_new_version_without_a_channel_loses_that_channels_vector(tmp_path):
    store = DocStore(tmp_path / "docs.sqlite")
    v = np.ones((1, 4), np.float32)
    store.write([Document(id="a", text="text")], {"dense": v, "other": v})
    assert store.has_vectors(["a"], "dense") == {"a"}
    store.write([Document(id="a", image="a.jpg")], {"other": v})
    assert store.has_vectors(["a"], "dense") == set() and store.has_vectors(["a"], "other") == {"a"}
    store.close()
