"""``semsearch snapshot`` / ``restore`` / ``verify`` in subprocesses: a snapshot taken by
another process while this one writes, restored, verified, and damage that verify reports."""

from __future__ import annotations

import json
import subprocess

from semsearch.collection import Collection
from semsearch.config import Settings
from semsearch.documents import Document
from semsearch.indexer.manifest import read_manifest
from tests.conftest import HashingEncoder, semsearch_cmd, subprocess_env


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(semsearch_cmd(*args), env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)


def test_snapshot_restore_and_verify_commands(tmp_path):
    s = Settings()
    s.no_progress = True
    s.indexing.refresh_interval = 0.02
    ix, snap, restored = tmp_path / "ix", tmp_path / "ix.tar.gz", tmp_path / "restored"
    with Collection.create(ix, s, encoder=HashingEncoder()) as col:
        for b in range(3):
            col.upsert([Document(id=f"d{b}-{i}", text=f"doc {b} {i}") for i in range(10)], wait_for=True)
        col.delete(["d1-1"], wait_for=True)
        acked = col.upsert([Document(id="last", text="acknowledged, not yet searchable")])
        p = run("snapshot", "--index", str(ix), "--out", str(snap), "--json")  # this process writes on
        col.upsert([Document(id="after", text="written after the snapshot")])
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["store_seq"] >= acked.seq and snap.is_file()

    p = run("restore", "--from", str(snap), "--index", str(restored))
    assert p.returncode == 0, p.stderr
    assert "restored" in p.stderr
    p = run("restore", "--from", str(snap), "--index", str(restored))
    assert p.returncode == 2 and "is not empty" in p.stderr and "--force" in p.stderr

    p = run("verify", "--index", str(restored), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    assert report["ok"] and report["errors"] == []
    with Collection.open(restored, s) as col:
        assert "last" in col.get(["last"]) and col.get(["after"]) == {}

    ref = next(r for r in read_manifest(restored).segments if r.deletes)
    f = restored / "deletes" / ref.deletes
    f.write_bytes(f.read_bytes()[:-1])
    p = run("verify", "--index", str(restored))
    assert p.returncode == 1 and ref.deletes in p.stderr and "error" in p.stderr
