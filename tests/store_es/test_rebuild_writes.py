"""Writes made while the store index is rebuilt (alias swap) against a real server: every
acknowledged write is in the new index after the swap, whether it landed in the old index
during the copy (caught up) or was refused by the write block and retried (issue #14)."""

from __future__ import annotations

import threading
import time

import pytest

from semsearch.collection import Collection
from semsearch.documents import Document
from semsearch.errors import BulkIndexError
from semsearch.store_es import rebuild as rebuild_mod
from semsearch.store_es import writer as writer_mod
from tests.conftest import HashingEncoder, store_settings

pytestmark = pytest.mark.integration

WRITERS = 2
BASE = 1500


def _doc(i: str, text: str) -> Document:
    return Document(id=i, title=f"title {i}", text=text)


def test_every_write_acknowledged_during_a_rebuild_is_in_the_new_index(es_url, es_names, monkeypatch):
    s = store_settings(es_url, es_names("rebuild-writes"), shards=3, chunk_size=100, bulk_threads=1)
    col = Collection.create(None, s, encoder=HashingEncoder())
    col.upsert([_doc(f"b{i}", f"base document {i}") for i in range(BASE)], wait_for=True)
    #: id -> text of its last acknowledged write (None: deleted)
    expected: dict[str, str | None] = {f"b{i}": f"base document {i}" for i in range(BASE)}
    acks: list[tuple[float, float]] = []  # (start, end) of every acknowledged write
    lock, stop = threading.Lock(), threading.Event()
    errors: list[BaseException] = []
    window: dict[str, float] = {}

    def writer(w: int) -> None:
        # its own connection, as another API replica would have
        c = Collection.open(None, s, writable=True, encoder=HashingEncoder())
        mine = [f"b{i}" for i in range(BASE) if i % WRITERS == w]
        n = 0
        try:
            while not stop.is_set():
                n += 1
                t0 = time.monotonic()
                if n % 3 == 0:  # a new document
                    i, text = f"w{w}-{n}", f"new document {w} {n}"
                    c.upsert([_doc(i, text)])
                elif n % 3 == 1:  # replace one
                    i = mine[(n * 7) % len(mine)]
                    text = f"updated document {w} {n}"
                    c.upsert([_doc(i, text)])
                else:  # delete one
                    i, text = mine[(n * 13) % len(mine)], None
                    c.delete([i], missing_ok=True)
                with lock:
                    expected[i] = text
                    acks.append((t0, time.monotonic()))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
        finally:
            c.close()

    def acked() -> int:
        with lock:
            return len(acks)

    real_block, real_blocked = rebuild_mod.block_writes, writer_mod.write_blocked
    refused: list[float] = []  # when a bulk item was refused by the write block

    def write_blocked(item):  # noqa: ANN001, ANN202
        out = real_blocked(item)
        if out:
            with lock:
                refused.append(time.monotonic())
        return out

    def block_after_writes(c, index):  # noqa: ANN001
        # make the interleaving certain: called once the copy is done, it lets 15 more writes
        # land in the old index (after the copy's point in time: only the catch-up can carry
        # them over), then keeps the block on for 0.5 s so that some writes are refused by
        # it and retried
        n0 = acked()
        deadline = time.monotonic() + 60
        while acked() < n0 + 15 and time.monotonic() < deadline:
            time.sleep(0.02)
        window["blocking"] = time.monotonic()
        real_block(c, index)
        time.sleep(0.5)

    monkeypatch.setattr(rebuild_mod, "block_writes", block_after_writes)
    monkeypatch.setattr(writer_mod, "write_blocked", write_blocked)
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    try:
        for t in threads:
            t.start()
        while acked() < 5 and not errors:
            time.sleep(0.02)
        old = col.aliased.current()
        info = col.rebuild()
        window["swapped"] = time.monotonic()
        time.sleep(0.5)  # writes after the swap, into the new index
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    assert not errors, errors
    assert col.aliased.current() == info["index"] != old
    caught = info["caught_up"]
    assert caught["new"] + caught["changed"] + caught["deleted"] > 0, info  # the catch-up ran
    # some writes were refused by the block (while it was on: from the block request to the
    # swap) and, retried, acknowledged only after the swap. Which write is refused depends on
    # when its bulk request reached the shard, so the check is on the refusal itself, not on
    # when the write started (a write sent just before the block request can be the one)
    assert any(window["blocking"] <= t <= window["swapped"] for t in refused), (window, refused)
    assert any(t0 < window["swapped"] < t1 for t0, t1 in acks), (window, acks[-4:])
    col.refresh()
    present = {i: t for i, t in expected.items() if t is not None}
    got = col.get(list(expected))
    assert set(got) == set(present), (sorted(set(present) - set(got))[:10], sorted(set(got) - set(present))[:10])
    wrong = [i for i, d in got.items() if d.text != present[i]]
    assert not wrong, [(i, got[i].text, present[i]) for i in wrong[:10]]
    assert col.stats()["documents"] == len(present)
    col.close()


def test_a_failed_rebuild_lifts_the_write_block(es_url, es_names, tiny_docs, monkeypatch):
    s = store_settings(es_url, es_names("rebuild-fail"))
    col = Collection.create(None, s, encoder=HashingEncoder())
    col.upsert(tiny_docs, wait_for=True)
    old = col.aliased.current()

    def boom(*a, **kw):  # noqa: ANN002, ANN003
        raise RuntimeError("catch-up failed")

    monkeypatch.setattr(rebuild_mod, "catch_up", boom)
    with pytest.raises(RuntimeError, match="catch-up failed"):
        col.rebuild()
    assert col.aliased.current() == old and list(col.aliased.versions().values()) == [old]
    col.upsert([_doc("after", "written after a failed rebuild")], wait_for=True)  # not blocked
    assert col.get("after").text == "written after a failed rebuild"
    col.close()


def test_a_write_blocked_for_longer_than_block_wait_is_reported(es_url, es_names, tiny_docs):
    s = store_settings(es_url, es_names("blocked"), block_wait=0.3)
    col = Collection.create(None, s, encoder=HashingEncoder())
    col.upsert(tiny_docs, wait_for=True)
    idx = col.aliased.current()
    col.conn.call("block", lambda c: c.indices.add_block(index=idx, block="write"))
    try:
        with pytest.raises(BulkIndexError, match="still write-blocked after 0.3 s") as e:
            col.upsert([_doc("x", "refused")])
        assert [i for i, _ in e.value.failures] == ["x"]
    finally:
        col.conn.call("unblock", lambda c: c.indices.put_settings(
            index=idx, settings={"index.blocks.write": False}))
    col.close()


def test_a_rebuild_keeps_writes_that_were_acknowledged_but_not_yet_refreshed(es_url, es_names):
    # with scheduled refresh off, acknowledged writes are in the translog but invisible to a
    # point in time until something refreshes: the rebuild must not copy only what is visible
    s = store_settings(es_url, es_names("rebuild-unrefreshed"), refresh_interval="-1")
    col = Collection.create(None, s, encoder=HashingEncoder())
    col.upsert([_doc(f"d{i}", f"document {i}") for i in range(40)], wait_for=True)
    col.upsert([_doc(f"late{i}", f"late document {i}") for i in range(5)])  # not refreshed
    col.upsert([_doc("d0", "replaced, not refreshed")])
    col.delete(["d1"])
    info = col.rebuild()
    assert info["documents"] == 44
    got = col.get([f"d{i}" for i in range(40)] + [f"late{i}" for i in range(5)])
    assert len(got) == 44 and "d1" not in got and got["d0"].text == "replaced, not refreshed"
    assert col.stats()["documents"] == 44
    col.close()
