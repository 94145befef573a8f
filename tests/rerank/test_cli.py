from __future__ import annotations

import subprocess

from tests.conftest import semsearch_cmd, subprocess_env


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(semsearch_cmd(*args), env=subprocess_env(), capture_output=True, text=True, timeout=300)


def test_train_reranker_rejects_a_bad_stage(tmp_path) -> None:
    r = _run("train-reranker", "--index", str(tmp_path), "--out", str(tmp_path / "o"), "--stage", "3")
    assert r.returncode == 2 and "--stage must be 1, 2 or both" in r.stderr


def test_train_reranker_stage2_needs_qrels(tiny_index, tmp_path) -> None:
    r = _run("train-reranker", "--index", str(tiny_index.path), "--out", str(tmp_path / "o"), "--stage", "2")
    assert r.returncode == 2 and "needs --queries and --qrels" in r.stderr
