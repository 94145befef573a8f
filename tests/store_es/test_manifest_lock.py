"""The manifest lock that replicas writing one store index share (store_es/lock.py), against a
real server: ``put_mapping`` replaces ``_meta`` whole, so two replicas declaring different
channels at the same moment must not lose one of them, and replicas that disagree on
``--no-clip`` must end up writing the same image layout."""

from __future__ import annotations

import threading
import time

import pytest

from semsearch.collection import Collection
from semsearch.errors import BackendUnavailable
from semsearch.store_es import ElasticsearchCollection
from semsearch.store_es.lock import LOCK_INDEX, ManifestLock
from tests.conftest import HashingEncoder, store_settings

pytestmark = pytest.mark.integration


def _slow_reads(col: ElasticsearchCollection, seconds: float = 0.3) -> None:
    """Widen the window between reading the manifest and writing it back, as a busy replica
    or a slow network would."""
    read = col.reload_manifest

    def slow():
        meta = read()
        time.sleep(seconds)
        return meta

    col.reload_manifest = slow


def _at_once(*fns) -> list:
    """Run ``fns`` in threads released together; their results (or exceptions)."""
    start = threading.Barrier(len(fns))
    out: list = [None] * len(fns)

    def run(i, fn):
        start.wait()
        try:
            out[i] = fn()
        except Exception as e:  # noqa: BLE001 - returned to the test
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_replicas_declaring_different_channels_at_once_keep_both(es_url, es_names):
    s = store_settings(es_url, es_names("lock"))
    a = Collection.create(None, s, encoder=HashingEncoder())
    b = ElasticsearchCollection.open(s, writable=True)
    try:
        _slow_reads(a)
        _slow_reads(b)
        got = _at_once(lambda: a._ensure_clip("test/clip", 8),
                       lambda: b._ensure_hashes(["phash", "dhash"]),
                       lambda: b._ensure_dense("test/hashing-encoder", 64, passages=None))
        assert got == [None, None, None]
        meta = ElasticsearchCollection.open(s).reload_manifest()
        assert meta["clip"] == {"encoder": "test/clip", "dim": 8}
        assert meta["hashes"] == ["phash", "dhash"]
        assert meta["dense"]["encoder"] == "test/hashing-encoder"
        # the lock was given back
        assert _lock_doc(a.conn, a.alias) is None
    finally:
        a.close()
        b.close()


def test_replicas_that_disagree_on_clip_write_one_layout(es_url, es_names, tmp_path):
    from tests.images.conftest import make_settings

    s = store_settings(es_url, es_names("noclip"))
    local = make_settings(tmp_path)
    s.images.roots, s.clip = [tmp_path], local.clip
    a = Collection.create(None, s)
    b = ElasticsearchCollection.open(s, writable=True)
    try:
        b.clip_images = False  # semsearch index --no-clip on one replica only
        _slow_reads(a)
        _slow_reads(b)
        chans = _at_once(a.image_channels, b.image_channels)
        names = [sorted(ch.name for ch in c) for c in chans]
        assert names[0] == names[1], names  # both follow whichever decided first
        meta = ElasticsearchCollection.open(s).reload_manifest()
        assert bool(meta.get("clip")) == ("image" in names[0])
        assert meta["hashes"] == [ch.name for ch in chans[0] if ch.name != "image"]
    finally:
        a.close()
        b.close()


def _lock_doc(conn, alias):
    got = conn.client.options(ignore_status=404).get(index=LOCK_INDEX, id=alias)
    return got["_source"] if got.meta.status == 200 else None


def test_a_held_lock_is_waited_for_and_a_dead_holders_lock_expires(es_url, es_names):
    s = store_settings(es_url, es_names("lk"))
    with Collection.create(None, s, encoder=HashingEncoder()) as col:
        alias = col.alias
        first = ManifestLock(col.conn, alias)
        order: list[str] = []

        def second():
            with ManifestLock(col.conn, alias).held():
                order.append("second")

        with first.held():
            t = threading.Thread(target=second)
            t.start()
            time.sleep(0.5)
            assert order == [] and t.is_alive()  # waits while the first holds it
            order.append("first done")
        t.join(10)
        assert order == ["first done", "second"]
        assert _lock_doc(col.conn, alias) is None

        # a holder that died (never gave it back) and whose lock expired is taken over
        dead = ManifestLock(col.conn, alias, ttl=0.2)
        version = dead._acquire()
        time.sleep(0.3)
        with ManifestLock(col.conn, alias).held():
            holder = _lock_doc(col.conn, alias)
            # the dead holder coming back does not delete the lock that passed on
            dead._release(version)
            assert _lock_doc(col.conn, alias) == holder
        assert _lock_doc(col.conn, alias) is None

        # a live holder that never gives it back: the waiter gives up with a clear error
        stuck = ManifestLock(col.conn, alias, ttl=60)
        v = stuck._acquire()
        try:
            with pytest.raises(BackendUnavailable, match=r"manifest lock of .* is held by pid \d+ on .* within 1 s"):
                with ManifestLock(col.conn, alias, wait=1).held():
                    pass
        finally:
            stuck._release(v)


def test_the_lock_ttl_and_wait_are_settings(es_url, es_names):
    """``store.elasticsearch.lock_ttl`` is how long a lock this replica takes stays valid;
    ``lock_wait`` how long it waits for another holder before it reports that holder."""
    s = store_settings(es_url, es_names("lkset"), lock_ttl=7.0, lock_wait=1.0)
    with Collection.create(None, s, encoder=HashingEncoder()) as col:
        before = time.time()
        with col._changing_manifest():
            held = _lock_doc(col.conn, col.alias)
            assert before + 7.0 <= held["expires"] <= time.time() + 7.0
        stuck = ManifestLock(col.conn, col.alias, ttl=60)
        v = stuck._acquire()
        try:
            t0 = time.monotonic()
            with pytest.raises(BackendUnavailable, match=r"not given back within 1 s"):
                with col._changing_manifest():
                    pass
            assert time.monotonic() - t0 < 10
        finally:
            stuck._release(v)
