"""`semsearch eval` on the Elasticsearch store: the store index is evaluated (built from the
corpus when its alias is missing), with the local engine's report."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import semsearch_cmd, subprocess_env
from tests.eval.conftest import write_beir

pytestmark = pytest.mark.integration


def test_eval_reports_on_the_store_index(tmp_path, es_url, es_names):
    name = es_names("eval")
    env = subprocess_env(SEMSEARCH_STORE__BACKEND="elasticsearch", SEMSEARCH_STORE__ELASTICSEARCH__URL=es_url,
                         SEMSEARCH_STORE__ELASTICSEARCH__INDEX=name,
                         SEMSEARCH_STORE__ELASTICSEARCH__ANALYZER="semsearch_en",
                         SEMSEARCH_STORE__ELASTICSEARCH__REPLICAS="0", SEMSEARCH_TEXT_ENCODER__DEVICE="cpu")
    ds = write_beir(tmp_path / "tinybeir")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(semsearch_cmd("eval", "--dataset", str(ds), *args), env=env, capture_output=True,
                              text=True, timeout=600, cwd=tmp_path)

    p = run("--out", "r1", "--configs", "lexical,dense,hybrid-convex", "--latency-queries", "2")
    assert p.returncode == 0, p.stderr[-3000:]
    first = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert list(first["configs"]) == ["lexical", "dense", "hybrid-convex"]
    assert first["index"]["path"].startswith(f"Elasticsearch index {name!r}")
    assert first["index"]["lexical_backend"] == "elasticsearch" and first["index"]["documents"] == 12
    assert first["index"]["reused"] is False and first["index"]["missing_judged"] == 0
    # real MiniLM over the store's kNN finds the vaccine/antibiotic/... documents
    assert first["configs"]["dense"]["recall@10"] >= 0.8 and first["configs"]["lexical"]["ndcg@10"] > 0.5
    assert not (tmp_path / "r1" / "index").exists()  # nothing local: the store is the index
    # again: the store index is reused, with the same figures
    p = run("--out", "r2", "--configs", "lexical,dense,hybrid-convex", "--latency-queries", "0")
    assert p.returncode == 0, p.stderr[-3000:]
    again = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert again["index"]["reused"] is True
    for cfg in first["configs"]:
        assert again["configs"][cfg]["ndcg@10"] == pytest.approx(first["configs"][cfg]["ndcg@10"])
    for args, what in ((["--tune-on", "train"], "--tune-on"), (["--compare-index", "x=ix"], "--compare-index")):
        p = run("--out", "r3", *args)
        assert p.returncode == 2 and f"{what} works with local indexes" in p.stderr
