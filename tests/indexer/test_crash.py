"""kill -9 at random moments during writes, refreshes and merges: the index opens every time,
every acknowledged write is there exactly once, and a second process can read the index while
it is being written and merged."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from semsearch.config import Settings
from semsearch.indexer.index import Index
from tests.conftest import REPO, SRC

pytestmark = pytest.mark.slow

WRITER = textwrap.dedent('''
    import json, os, random, sys
    from semsearch.config import Settings
    from semsearch.documents import Document
    from semsearch.indexer.index import Index
    from tests.conftest import HashingEncoder

    path, log_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    s = Settings()
    s.indexing.merge_factor = 2
    s.indexing.segment_docs = 7
    s.vector.faiss.exact_below = 10
    s.vector.faiss.factory = "HNSW8"
    enc = HashingEncoder()
    log = open(log_path, "a", buffering=1)

    def note(*parts):
        log.write(json.dumps(parts) + "\\n")
        log.flush()
        os.fsync(log.fileno())

    with Index.create(path, s) as idx:
        idx.ensure_channel("dense", dim=enc.dim, encoder=enc.name)
        step = 0
        while True:
            step += 1
            op = rng.random()
            if op < 0.6:
                ids = sorted({f"d{rng.randint(0, 60)}" for _ in range(rng.randint(1, 6))})
                docs = [Document(id=i, text=f"{i} v{seed}x{step} words") for i in ids]
                note("intent", "upsert", ids, f"v{seed}x{step}")
                idx.write(docs, {"dense": enc.encode([d.text for d in docs])})
                note("ack", "upsert", ids, f"v{seed}x{step}")
            elif op < 0.75:
                ids = sorted({f"d{rng.randint(0, 60)}" for _ in range(rng.randint(1, 3))})
                note("intent", "delete", ids, None)
                idx.delete(ids)
                note("ack", "delete", ids, None)
            elif op < 0.92:
                idx.sync()
            else:
                idx.maybe_merge()
''')


def expected_states(log_lines: list[list]) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Per id: the state after the last acknowledged op, and the state the one in-flight op
    (an intent without its ack) would leave, if there is one."""
    acked: dict[str, str | None] = {}
    inflight: dict[str, str | None] = {}
    pending = None
    for kind, op, ids, version in log_lines:
        if kind == "intent":
            pending = (op, ids, version)
        else:
            for i in ids:
                acked[i] = version if op == "upsert" else None
            pending = None
    if pending is not None:
        op, ids, version = pending
        for i in ids:
            inflight[i] = version if op == "upsert" else None
    return acked, inflight


def run_writer(ix, log, seed) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{REPO}", SEMSEARCH_NO_PROGRESS="1")
    return subprocess.Popen([sys.executable, "-c", WRITER, str(ix), str(log), str(seed)],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_kill_9_at_random_points_loses_no_acknowledged_write(tmp_path):
    ix, log = tmp_path / "ix", tmp_path / "log.jsonl"
    rng = random.Random(1234)
    settings = Settings()
    known: dict[str, str | None] = {}  # each id's state as verified after the previous trial
    for trial in range(20):
        proc = run_writer(ix, log, trial)
        deadline = time.monotonic() + 60
        while not log.exists() or log.stat().st_size == 0:  # let it start writing
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        acked, inflight = expected_states(lines)
        with Index.create(ix, settings) as idx:  # opens every time; replays what was pending
            idx.sync()
            stored = {d.id: d for d in idx.store.iter_docs()}
            for doc_id in set(acked) | set(inflight):
                # not acknowledged in this trial: as the previous trial left it
                allowed = {acked[doc_id] if doc_id in acked else known.get(doc_id)}
                if doc_id in inflight:
                    allowed.add(inflight[doc_id])
                have = stored.get(doc_id)
                state = None if have is None else have.text.split()[1]
                assert state in allowed, (trial, doc_id, state, allowed)
            snap = idx.snapshot()
            live = [seg.ids[o] for i, seg in enumerate(snap.segments)
                    for o in range(seg.n_docs) if snap.live(i) is None or snap.live(i)[o]]
            assert sorted(live) == sorted(stored), trial  # every stored doc exactly once
            versions: dict[str, set[str]] = {}
            for doc_id, d in stored.items():
                versions.setdefault(d.text.split()[1], set()).add(doc_id)
            for version, ids in versions.items():  # a batch's documents share its version
                hits = snap.lexical.search(version, 100)
                assert {h for h, _ in hits} == ids, (trial, version)
            assert snap.vectors["dense"].count() == len(stored)
            known = {i: d.text.split()[1] for i, d in stored.items()}
        log.write_text("")  # the next trial's acknowledgements


READER = textwrap.dedent('''
    import os, sys, time
    from semsearch.config import Settings
    from semsearch.indexer.index import Index

    idx = Index.open(sys.argv[1], Settings())
    searches = 0
    while not os.path.exists(sys.argv[2]):  # until the writer is done
        snap = idx.snapshot()
        hits = snap.lexical.search("common", 1000)
        assert len(hits) == snap.count(), (len(hits), snap.count())
        searches += 1
    time.sleep(0.3)  # past the reload interval: the last commit
    print(searches, idx.snapshot().count(), flush=True)
''')


def test_a_reader_process_keeps_working_across_refreshes_and_merges(tmp_path):
    from semsearch.documents import Document

    settings = Settings()
    settings.indexing.merge_factor = 2
    ix = tmp_path / "ix"
    with Index.create(ix, settings) as idx:
        idx.write([Document(id="seed", text="common seed")])
        idx.sync()
        env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{REPO}")
        done = tmp_path / "done"
        reader = subprocess.Popen([sys.executable, "-c", READER, str(ix), str(done)], env=env, cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)  # the reader is up and searching
        merges = 0
        for i in range(40):
            idx.write([Document(id=f"w{i}", text=f"common word {i}")])
            if i % 3 == 0:
                idx.delete([f"w{i - 1}"] if i else [])
            idx.sync()
            merges += idx.maybe_merge() is not None
        done.touch()
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err
        searches, count = map(int, out.split())
        assert merges > 0 and searches > 10
        assert count == idx.snapshot().count()  # it followed the writer's commits
        on_disk = {p.name for p in (ix / "segments").iterdir()}
        assert on_disk == {r.name for r in idx.manifest.segments}
