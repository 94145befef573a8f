"""A refresh that commits while a merge builds its segment must not remove that segment as
unreferenced (it was, and the merge then committed a segment that no longer existed on disk:
the index did not open again)."""

from __future__ import annotations

import threading

from semsearch.config import Settings
from semsearch.documents import Document
from semsearch.indexer.index import SEGMENTS, Index
from semsearch.indexer.segments.segment import Segment
from tests.conftest import HashingEncoder


def test_a_refresh_during_a_merge_keeps_the_segment_being_built(tmp_path, monkeypatch):
    s = Settings()
    s.indexing.merge_factor = 3
    enc = HashingEncoder()
    path = tmp_path / "ix"
    with Index.create(path, s) as idx:
        idx.ensure_channel("dense", dim=enc.dim, encoder=enc.name)
        for b in range(3):
            docs = [Document(id=f"d{b}-{i}", text=f"doc {b} {i}") for i in range(5)]
            idx.write(docs, {"dense": enc.encode([d.text for d in docs])})
            idx.sync()
        real_merge = Segment.merge.__func__

        def merge_then_refresh(cls, *args, **kw):
            seg = real_merge(cls, *args, **kw)
            late = [Document(id="late", text="written while the merge ran")]
            idx.write(late, {"dense": enc.encode([late[0].text])})
            idx.sync()  # commits, then removes what no commit names
            return seg

        monkeypatch.setattr(Segment, "merge", classmethod(merge_then_refresh))
        info = idx.maybe_merge()
        assert info is not None and (path / SEGMENTS / info["into"] / "segment.json").is_file()
    monkeypatch.undo()
    with Index.open(path, s) as idx:
        assert idx.snapshot().count() == 16


def test_a_background_merge_cannot_take_the_segments_a_force_merge_picked(tmp_path):
    s = Settings()
    s.indexing.merge_factor = 2
    enc = HashingEncoder()
    with Index.create(tmp_path / "ix", s) as idx:
        idx.ensure_channel("dense", dim=enc.dim, encoder=enc.name)
        for b in range(4):
            docs = [Document(id=f"d{b}-{i}", text=f"doc {b} {i}") for i in range(5)]
            idx.write(docs, {"dense": enc.encode([d.text for d in docs])})
            idx.sync()
        real = idx.maybe_merge
        racers: list[threading.Thread] = []

        def picked_then_raced(names=None):
            if names is not None:  # force_merge picked: a background merge runs now
                t = threading.Thread(target=real)
                racers.append(t)
                t.start()
                t.join(timeout=0.5)  # it waits for the merge lock (before: took the picked segments)
            return real(names)

        idx.maybe_merge = picked_then_raced
        merges = idx.force_merge(1)
        for t in racers:
            t.join()
        assert merges and len(idx.manifest.segments) == 1 and idx.snapshot().count() == 20
