"""`semsearch eval` as a user runs it (subprocess, real MiniLM on the tiny dataset)."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import semsearch_cmd, subprocess_env
from tests.eval.conftest import write_beir


def test_eval_command_writes_the_report(tmp_path):
    ds = write_beir(tmp_path / "tinybeir")
    out = tmp_path / "report"
    p = subprocess.run(
        semsearch_cmd("eval", "--dataset", str(ds), "--split", "test", "--out", str(out),
                      "--configs", "lexical,dense,hybrid-rrf,hybrid-convex", "--latency-queries", "3"),
        env=subprocess_env(SEMSEARCH_TEXT_ENCODER__DEVICE="cpu"), capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert "hybrid-rrf: nDCG@10" in p.stderr and "wrote" in p.stdout
    data = json.loads((out / "results.json").read_text())
    assert list(data["configs"]) == ["lexical", "dense", "hybrid-rrf", "hybrid-convex"]
    assert data["models"]["dense"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert any(name.endswith(".safetensors") for name in data["models"]["dense"]["sha256"])
    assert data["command"].startswith("semsearch eval --dataset")
    # real MiniLM finds every vaccine/antibiotic query's document in the top 10
    assert data["configs"]["dense"]["recall@10"] >= 0.8
    for name in data["configs"]:
        assert (out / "runs" / f"{name}.trec").exists()
    assert (out / "report.html").exists() and (out / "report.md").exists()
    # the same index again as a compared one: its configs print and report as CONFIG[NAME]
    p = subprocess.run(
        semsearch_cmd("eval", "--dataset", str(ds), "--out", str(tmp_path / "r2"), "--index", str(out / "index"),
                      "--configs", "lexical", "--compare-index", f"again={out / 'index'}", "--latency-queries", "0"),
        env=subprocess_env(SEMSEARCH_TEXT_ENCODER__DEVICE="cpu"), capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert "lexical[again]: nDCG@10" in p.stderr, p.stderr
    again = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert list(again["configs"]) == ["lexical", "lexical[again]"]
    assert again["configs"]["lexical"] == again["configs"]["lexical[again]"]
    # --latency-queries 0: nothing timed, said so (it crashed on an empty percentile before)
    assert "p50 - ms" in p.stderr
    assert again["latency_ms"]["lexical"] == {"p50": None, "p95": None, "mean": None, "queries": 0}
    assert "Latency: not measured" in (tmp_path / "r2" / "report.md").read_text()


def test_eval_command_refuses_to_tune_on_the_reported_split(tmp_path):
    ds = write_beir(tmp_path / "tinybeir")
    p = subprocess.run(
        semsearch_cmd("eval", "--dataset", str(ds), "--out", str(tmp_path / "r"), "--tune-on", "test"),
        env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 2
    assert "--tune-on 'test' is the split being reported" in p.stderr


def test_eval_command_refuses_a_negative_latency_count(tmp_path):
    ds = write_beir(tmp_path / "tinybeir")
    p = subprocess.run(
        semsearch_cmd("eval", "--dataset", str(ds), "--out", str(tmp_path / "r"), "--latency-queries", "-1"),
        env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 2 and "--latency-queries" in p.stderr and not (tmp_path / "r").exists()


def test_eval_command_names_an_unknown_config(tmp_path):
    ds = write_beir(tmp_path / "tinybeir")
    p = subprocess.run(
        semsearch_cmd("eval", "--dataset", str(ds), "--out", str(tmp_path / "r"), "--configs", "lexical,bm99"),
        env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 2
    assert "unknown eval config 'bm99'" in p.stderr
