import subprocess

import numpy as np
import pytest

from semsearch.config import Settings
from semsearch.documents import Document
from semsearch.indexer.index import Index
from semsearch.indexer.segments.vectors import gpu_count
from tests.conftest import semsearch_cmd, subprocess_env


def test_serve_without_an_index_says_so(tmp_path):
    r = subprocess.run(semsearch_cmd("serve", "--index", str(tmp_path / "none"), "--port", "1"),
                       env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "no index at" in r.stderr and "does not exist" in r.stderr


def test_serve_is_listed_in_help():
    r = subprocess.run(semsearch_cmd("--help"), env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "serve" in r.stdout


def test_serve_with_gpu_always_and_no_usable_gpu_fails_at_start(tmp_path):
    if gpu_count() > 0:
        pytest.skip("FAISS can search on a GPU here (test_gpu_search_matches_cpu covers it)")
    index = Index.create(tmp_path / "idx", Settings())
    index.ensure_channel("dense", dim=4, encoder="test/vectors")
    index.write([Document(id="a", text="a")], {"dense": np.ones((1, 4), np.float32)})
    index.sync()
    index.close()
    r = subprocess.run(semsearch_cmd("serve", "--index", str(tmp_path / "idx"), "--port", "1"),
                       env=subprocess_env(SEMSEARCH_VECTOR__FAISS__GPU="always"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "vector.faiss.gpu is 'always' but FAISS cannot search on a GPU here" in r.stderr
    assert "Traceback" not in r.stderr
