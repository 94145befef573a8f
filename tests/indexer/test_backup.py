"""Snapshots of a live index (another thread writing, refreshing and merging), restores, and
``verify`` finding damage made on purpose in copies. Vectors come from the hashing encoder."""

from __future__ import annotations

import random
import shutil
import sqlite3
import tarfile
import threading
import time
import traceback
from pathlib import Path

import pytest

from semsearch.collection import Collection
from semsearch.config import Settings
from semsearch.documents import Document
from semsearch.errors import BadInput, IndexIncompatible
from semsearch.indexer import backup
from semsearch.indexer.index import Index, IndexLocked
from semsearch.indexer.manifest import FORMAT_VERSION, read_manifest
from semsearch.indexer.segments.container import ArrayFile
from tests.conftest import HashingEncoder


@pytest.fixture
def settings():
    s = Settings()
    s.no_progress = True
    s.indexing.refresh_interval = 0.02
    s.indexing.merge_factor = 3
    s.vector.faiss.exact_below = 30
    s.vector.faiss.factory = "HNSW8"
    return s


def text_of(i: str, version: int) -> str:
    return f"doc {i} tok{i.replace('-', 'x')} version v{version}"


def state(col: Collection, ids: list[str]) -> dict[str, str | None]:
    got = col.get(ids)
    return {i: (got[i].text if i in got else None) for i in ids}


def check_restored(path: Path, settings: Settings, must: dict[str, list[str | None]]) -> None:
    """``path`` verifies clean before and after its first writable open, and each id in
    ``must`` holds one of the states listed for it; a live one is found by a search."""
    report = backup.verify(path)
    assert report.ok, report.to_dict()
    with Collection.open(path, settings, writable=True, encoder=HashingEncoder()) as col:
        now = state(col, list(must))
        for i, allowed in must.items():
            assert now[i] in allowed, (i, now[i], allowed)
        live = [i for i in must if now[i] is not None]
        for i in random.Random(0).sample(live, min(len(live), 5)):
            hits = col.search(f"tok{i.replace('-', 'x')}", mode="lexical", k=3).hits
            assert hits and hits[0].id == i
        assert col.index.snapshot().count() == col.index.store.count()
    report = backup.verify(path)
    # segments merged away while that process ran may stay until its snapshots are collected
    assert report.ok and {p.check for p in report.warnings} <= {"unreferenced"}, report.to_dict()


def test_snapshots_of_a_live_index_hold_every_write_acknowledged_before_they_began(tmp_path, settings):
    enc = HashingEncoder()
    history: dict[str, list[str | None]] = {}  # id -> every acknowledged state, in order
    lock, stop, errors = threading.Lock(), threading.Event(), []
    settings.indexing.merge_factor = 2  # a merge after nearly every refresh
    merges: list[dict] = []
    with Collection.create(tmp_path / "ix", settings, encoder=enc) as col:
        real_merge = col.index.maybe_merge

        def maybe_merge(*args, **kw):  # the background merges
            info = real_merge(*args, **kw)
            if info is not None:
                merges.append(info)
            return info

        col.index.maybe_merge = maybe_merge

        def writer() -> None:
            rng, step = random.Random(5), 0
            try:
                while not stop.is_set():
                    step += 1
                    with lock:
                        live = [i for i, h in history.items() if h[-1] is not None]
                    op = rng.random()
                    if op < 0.55 or len(live) < 10:
                        docs = [Document(id=f"n{step}-{j}", text=text_of(f"n{step}-{j}", 0)) for j in range(rng.randint(1, 8))]
                    elif op < 0.8:
                        docs = [Document(id=i, text=text_of(i, step)) for i in rng.sample(live, 3)]
                    else:
                        gone = rng.sample(live, 2)
                        col.delete(gone)
                        with lock:
                            for i in gone:
                                history[i].append(None)
                        continue
                    col.upsert(docs)
                    with lock:
                        for d in docs:
                            history.setdefault(d.id, []).append(d.text)
                    if step % 9 == 0:
                        col.refresh()
                    if step % 40 == 0:
                        col.compact()  # a forced merge of everything, beside the background ones
            except Exception as e:  # noqa: BLE001 - reported by the test
                errors.append((e, traceback.format_exc()))

        t = threading.Thread(target=writer)
        t.start()
        taken = []
        try:
            for n in range(3):
                time.sleep(0.8)
                with lock:  # what was acknowledged before the snapshot began
                    before = {i: len(h) - 1 for i, h in history.items()}
                info = col.snapshot(tmp_path / f"snap{n}.tar")
                assert info["store_seq"] >= info["synced_seq"]
                taken.append(before)
        finally:
            stop.set()
            t.join()
        assert not errors, errors
        assert col.merge_error is None, col.merge_error
    assert merges  # background merges ran while the snapshots were taken (how many depends on timing)
    for n, before in enumerate(taken):
        target = tmp_path / f"restored{n}"
        backup.restore(tmp_path / f"snap{n}.tar", target)
        check_restored(target, settings, {i: history[i][k:] for i, k in before.items()})


def _index(path: Path, settings: Settings) -> None:
    """A quiet index of four segments (one with deletions) and 38 live documents."""
    settings.indexing.background_merges = False
    with Collection.create(path, settings, encoder=HashingEncoder()) as col:
        for b in range(4):
            col.upsert([Document(id=f"d{b}-{i}", text=text_of(f"d{b}-{i}", 0)) for i in range(10)], wait_for=True)
        col.delete(["d0-1", "d2-5"], wait_for=True)


def test_a_merge_that_removes_segments_while_they_are_staged_makes_the_snapshot_start_over(
        tmp_path, settings, monkeypatch):
    _index(tmp_path / "ix", settings)
    with Collection.open(tmp_path / "ix", settings, writable=True, encoder=HashingEncoder()) as col:
        real = backup._stage_tree
        merged = []

        def stage_tree(src, dst):
            if not merged:  # the first segment staged: a merge removes every segment of this commit
                merged.append(col.compact())
            return real(src, dst)

        monkeypatch.setattr(backup, "_stage_tree", stage_tree)
        info = col.snapshot(tmp_path / "snap.tar")
    assert merged[0] and info["attempts"] >= 2 and info["segments"] == 1
    backup.restore(tmp_path / "snap.tar", tmp_path / "restored")
    assert len(list((tmp_path / "restored" / "segments").iterdir())) == 1
    check_restored(tmp_path / "restored", settings,
                   {f"d{b}-{i}": [text_of(f"d{b}-{i}", 0)] for b in range(4) for i in range(10)
                    if f"d{b}-{i}" not in ("d0-1", "d2-5")} | {"d0-1": [None], "d2-5": [None]})


def test_a_deletion_purged_after_the_manifest_was_copied_is_replayed(tmp_path, settings, monkeypatch):
    _index(tmp_path / "ix", settings)
    with Collection.open(tmp_path / "ix", settings, writable=True, encoder=HashingEncoder()) as col:
        real = backup._backup_store

        def backup_store(src, dst):
            # between the manifest and the store copy: deleted, refreshed, purged from the store
            col.delete(["d1-3", "d3-7"])
            col.upsert([Document(id="late", text=text_of("late", 0))])
            col.refresh()
            return real(src, dst)

        monkeypatch.setattr(backup, "_backup_store", backup_store)
        info = col.snapshot(tmp_path / "snap.tar")
    assert info["tombstoned"] == 2
    info = backup.restore(tmp_path / "snap.tar", tmp_path / "restored")
    assert info["pending_changes"] >= 1
    check_restored(tmp_path / "restored", settings,
                   {"d1-3": [None], "d3-7": [None], "late": [text_of("late", 0)], "d1-4": [text_of("d1-4", 0)]})


# -- verify -----------------------------------------------------------------------------
@pytest.fixture
def quiet_index(tmp_path, settings) -> Path:
    _index(tmp_path / "ix", settings)
    report = backup.verify(tmp_path / "ix")
    assert report.ok and not report.warnings, report.to_dict()
    assert report.stats["documents"] == 38 and report.stats["channels"] == {"dense": 38}
    return tmp_path / "ix"


def damaged(src: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def checks(report: backup.VerifyReport) -> set[str]:
    return {p.check for p in report.errors}


def test_verify_finds_a_deleted_segment_file(quiet_index, tmp_path):
    ix = damaged(quiet_index, tmp_path, "a")
    seg = read_manifest(ix).segments[1].name
    (ix / "segments" / seg / "arrays.bin").unlink()
    report = backup.verify(ix)
    assert not report.ok and checks(report) == {"segments"}
    assert report.errors[0].message.startswith(f"segment {seg}") and "arrays.bin" in report.errors[0].message
    assert "is incomplete" in report.errors[0].message

    ix = damaged(quiet_index, tmp_path, "c")
    (ix / "segments" / seg / "segment.json").unlink()
    report = backup.verify(ix)
    assert checks(report) == {"segments"} and "segment.json is missing" in report.errors[0].message

    ix = damaged(quiet_index, tmp_path, "b")
    shutil.rmtree(ix / "segments" / seg)
    assert "named by the manifest is missing" in backup.verify(ix).errors[0].message


def test_verify_finds_a_truncated_or_damaged_array_container(quiet_index, tmp_path):
    ix = damaged(quiet_index, tmp_path, "a")
    seg = read_manifest(ix).segments[1].name
    f = ix / "segments" / seg / "arrays.bin"
    arrays = ArrayFile.open(f)
    last = max(arrays, key=lambda n: arrays.span(n)[0])
    assert last.startswith("vectors.dense.")
    f.write_bytes(f.read_bytes()[:-1])
    report = backup.verify(ix)
    assert not report.ok and checks(report) == {"segments"}
    msg = report.errors[0].message
    assert msg.startswith(f"segment {seg} does not load") and f"arrays.bin is truncated: array {last!r}" in msg

    # a changed byte in the middle: the table still fits the file, the checksum does not
    ix = damaged(quiet_index, tmp_path, "b")
    f = ix / "segments" / seg / "arrays.bin"
    offset, nbytes = ArrayFile.open(f).span("lexical.all.doc_len")
    raw = bytearray(f.read_bytes())
    raw[offset] ^= 0xFF
    f.write_bytes(bytes(raw))
    report = backup.verify(ix)
    assert not report.ok and checks(report) == {"segments"}
    assert report.errors[0].message == (f"segment {seg}: arrays.bin is damaged: 1 array(s) differ from "
                                        "their checksum: lexical.all.doc_len")

    # a damaged table
    ix = damaged(quiet_index, tmp_path, "c")
    f = ix / "segments" / seg / "arrays.bin"
    raw = bytearray(f.read_bytes())
    raw[20] ^= 0xFF
    f.write_bytes(bytes(raw))
    report = backup.verify(ix)
    assert checks(report) == {"segments"} and "table of arrays is damaged" in report.errors[0].message


def test_verify_finds_a_truncated_deletion_file(quiet_index, tmp_path):
    ix = damaged(quiet_index, tmp_path, "a")
    ref = next(r for r in read_manifest(ix).segments if r.deletes)
    f = ix / "deletes" / ref.deletes
    f.write_bytes(f.read_bytes()[:-1])
    report = backup.verify(ix)
    assert not report.ok and checks(report) == {"deletes"}
    assert ref.deletes in report.errors[0].message


def test_verify_finds_the_store_and_the_segments_disagreeing(quiet_index, tmp_path):
    ix = damaged(quiet_index, tmp_path, "a")
    with sqlite3.connect(ix / "docs.sqlite") as conn:
        synced = read_manifest(ix).synced_seq
        # deleted in the store without a change the next refresh would apply; and a stored
        # document the commit claims to have applied that no segment holds; and a lost vector
        conn.execute("UPDATE docs SET deleted=1 WHERE id='d1-1'")
        conn.execute("INSERT INTO docs VALUES ('ghost','','ghost text','{}',NULL,'h',?,0)", (synced,))
        conn.execute("DELETE FROM vectors WHERE id='d3-3'")
    report = backup.verify(ix)
    assert not report.ok and checks(report) == {"store-vs-segments", "vectors"}
    text = " ".join(p.message for p in report.errors)
    assert "'d1-1'" in text and "'ghost'" in text and "'d3-3'" in text

    # a change written after the commit (pending) is not a mismatch
    ix = damaged(quiet_index, tmp_path, "b")
    with Index.open(ix, writable=True) as idx:
        idx.delete(["d1-1"])
        assert idx.pending()
    report = backup.verify(ix)
    assert report.ok and report.stats["pending_changes"] == 1, report.to_dict()


def test_verify_reports_counts_and_unreferenced_files(quiet_index, tmp_path):
    ix = damaged(quiet_index, tmp_path, "a")
    (ix / "segments" / "seg-999999").mkdir()
    (ix / "stray.txt").write_text("x")
    report = backup.verify(ix)
    assert report.ok and [p.check for p in report.warnings] == ["unreferenced"]
    assert "seg-999999" in report.warnings[0].message and "stray.txt" in report.warnings[0].message

    ix = damaged(quiet_index, tmp_path, "b")
    m = (ix / "manifest.json").read_text()
    (ix / "manifest.json").write_text(m.replace('"docs": 38', '"docs": 40'))
    assert checks(backup.verify(ix)) == {"counts"}
    (ix / "manifest.json").write_text("{not json")
    assert checks(backup.verify(ix)) == {"manifest"}


# -- restore ----------------------------------------------------------------------------
def test_restore_refuses_a_non_empty_directory_unless_forced_and_never_a_locked_one(quiet_index, tmp_path):
    backup.snapshot(quiet_index, tmp_path / "snap.tgz")
    target = tmp_path / "target"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(BadInput, match="is not empty"):
        backup.restore(tmp_path / "snap.tgz", target)
    assert (target / "precious.txt").read_text() == "keep me"
    info = backup.restore(tmp_path / "snap.tgz", target, force=True)
    assert info["documents"] == 38 and not (target / "precious.txt").exists()
    with Index.open(target, writable=True):
        with pytest.raises(IndexLocked, match="being written"):
            backup.restore(tmp_path / "snap.tgz", target, force=True)
    assert backup.verify(target).ok
    empty = tmp_path / "empty"
    empty.mkdir()
    assert backup.restore(tmp_path / "snap.tgz", empty)["segments"] == 4


def test_restore_refuses_an_archive_it_did_not_write(tmp_path):
    evil = tmp_path / "evil.tar"
    (tmp_path / "x").write_text("x")
    with tarfile.open(evil, "w") as tar:
        tar.add(tmp_path / "x", arcname="../escape")
    with pytest.raises(BadInput, match="unexpected entry"):
        backup.restore(evil, tmp_path / "r")
    assert not (tmp_path / "r").exists() and not (tmp_path.parent / "escape").exists()


def test_snapshot_refuses_an_index_of_another_format(quiet_index, tmp_path):
    ix = damaged(quiet_index, tmp_path, "old")
    m = (ix / "manifest.json").read_text()
    (ix / "manifest.json").write_text(m.replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 2'))
    with pytest.raises(IndexIncompatible, match="format version 2"):
        backup.snapshot(ix, tmp_path / "snap.tar")
    assert not list(tmp_path.glob("*snap.tar*"))
