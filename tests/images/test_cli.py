"""`semsearch index` on an image directory, then `similar`, `search --mode image`, `dedup`,
each in a real subprocess."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import semsearch_cmd, subprocess_env
from tests.images.conftest import TINY_CLIP


def run(*args, env):
    return subprocess.run(semsearch_cmd(*args), capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_cli_index_similar_search_dedup(tmp_path, image_tree):
    (image_tree / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    env = subprocess_env(
        SEMSEARCH_CLIP__ARCHITECTURE=str(TINY_CLIP), SEMSEARCH_CLIP__DEVICE="cpu",
        SEMSEARCH_TEXT_ENCODER__DEVICE="cpu",
    )
    idx = tmp_path / "idx"
    r = run("index", "--input", str(image_tree), "--index", str(idx), "--no-dense", "--json", env=env)
    assert r.returncode == 1, r.stderr  # one rejected file -> exit 1, the rest indexed
    summary = json.loads(r.stdout)
    assert summary["indexed"] == 14 and summary["rejected"] == 1
    err = [json.loads(line) for line in open(summary["errors_file"])]
    assert err[0]["id"] == "broken.jpg" and "image" in err[0]["reason"]

    r = run("similar", str(image_tree / "photos" / "clock.jpg"), "--index", str(idx), "-k", "3", env=env)
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)["hits"]
    assert hits[0]["id"] == "photos/clock.jpg" and hits[0]["hamming"]["phash"] == 0

    r = run("search", "a cup of coffee", "--index", str(idx), "--mode", "image", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["hits"]) == 10

    rep = tmp_path / "report"
    r = run("dedup", "--index", str(idx), "--max-distance", "10", "--out", str(rep), "--json", env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads((rep / "duplicates.json").read_text())
    assert data["groups"] == [["photos/astronaut.jpg", "photos/astronaut_flip.png", "photos/astronaut_small.jpg"]]
    assert (rep / "duplicates.html").stat().st_size > 1000 and (rep / "pairs.csv").exists()
