"""`semsearch index`, `search`, `similar` and `dedup` with the Elasticsearch store (no --index)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import TINY_DOCS, semsearch_cmd, subprocess_env

pytestmark = pytest.mark.integration


def test_index_and_search_without_a_directory(tmp_path, es_url, es_names):
    name = es_names("cli")
    rows = [*TINY_DOCS, {"_id": "bad", "title": "x", "text": "y", "metadata": {"year": "unknown"}},
            {"_id": "d1", "title": "again", "text": "repeated id"}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    env = subprocess_env(SEMSEARCH_STORE__BACKEND="elasticsearch", SEMSEARCH_STORE__ELASTICSEARCH__URL=es_url,
                         SEMSEARCH_STORE__ELASTICSEARCH__INDEX=name,
                         SEMSEARCH_STORE__ELASTICSEARCH__ANALYZER="semsearch_en",
                         SEMSEARCH_STORE__ELASTICSEARCH__REPLICAS="0",
                         SEMSEARCH_TEXT_ENCODER__DEVICE="cpu", SEMSEARCH_INDEXING__BATCH_SIZE="4")
    errors = tmp_path / "errors.jsonl"
    r = subprocess.run(semsearch_cmd("index", "--input", str(src), "--errors", str(errors), "--json"),
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["indexed"] == 12 and summary["rejected"] == 3 and summary["read"] == 15
    bad = [json.loads(line) for line in errors.read_text().splitlines()]
    reasons = {b["id"]: b["reason"] for b in bad}
    assert "rejected by Elasticsearch" in reasons["bad"] and "year" in reasons["bad"]
    assert "repeated" in reasons["d1"] and any(b["id"] is None and b["line"] == 15 for b in bad)
    s = subprocess.run(semsearch_cmd("search", "bees pollinate crops", "--json", "--k", "3"),
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert s.returncode == 0, s.stderr[-3000:]
    assert json.loads(s.stdout)["hits"][0]["id"] == "d11"


def test_image_commands_without_a_directory(tmp_path, es_url, es_names):
    from tests.images.conftest import PHOTOS, make_image_tree, photo

    tree = make_image_tree(tmp_path, {n: photo(n) for n in PHOTOS})
    env = subprocess_env(SEMSEARCH_STORE__BACKEND="elasticsearch", SEMSEARCH_STORE__ELASTICSEARCH__URL=es_url,
                         SEMSEARCH_STORE__ELASTICSEARCH__INDEX=es_names("cli-img"),
                         SEMSEARCH_STORE__ELASTICSEARCH__ANALYZER="semsearch_en",
                         SEMSEARCH_STORE__ELASTICSEARCH__REPLICAS="0", SEMSEARCH_TEXT_ENCODER__DEVICE="cpu",
                         SEMSEARCH_IMAGES__ROOTS=json.dumps([str(tmp_path)]))
    r = subprocess.run(semsearch_cmd("index", "--input", str(tree), "--json"),
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["indexed"] == 14
    s = subprocess.run(semsearch_cmd("similar", str(tree / "photos" / "astronaut_flip.png"), "--k", "3"),
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert s.returncode == 0, s.stderr[-3000:]
    hits = json.loads(s.stdout)["hits"]
    assert hits[0]["id"] == "photos/astronaut_flip.png" and hits[0]["hamming"]["phash"] == 0
    assert hits[1]["id"] in ("photos/astronaut.jpg", "photos/astronaut_small.jpg")
    assert hits[1]["rule"]["phash"] == "mirrored"
    d = subprocess.run(semsearch_cmd("dedup", "--out", str(tmp_path / "rep"), "--max-distance", "10", "--json"),
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert d.returncode == 0, d.stderr[-3000:]
    assert json.loads(d.stdout)["groups"] == 1
    report = json.loads((tmp_path / "rep" / "duplicates.json").read_text())
    assert sorted(report["groups"][0]) == ["photos/astronaut.jpg", "photos/astronaut_flip.png", "photos/astronaut_small.jpg"]
    assert (tmp_path / "rep" / "duplicates.html").read_text().count("data:image/jpeg;base64,") == 3
    # without the store, --index is still required
    plain = subprocess_env()
    e = subprocess.run(semsearch_cmd("dedup", "--out", str(tmp_path / "rep2")), env=plain,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert e.returncode != 0 and "--index is required" in e.stderr + e.stdout
