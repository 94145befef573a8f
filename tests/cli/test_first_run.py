"""What a new user sees: the README's first commands print results and summaries only (no
library warnings or debug lines), the query encoder is exported by ``semsearch index``, and
logs can be JSON lines configured from a settings file."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import TINY_DOCS, semsearch_cmd, subprocess_env


def run(*args, **env):
    p = subprocess.run(semsearch_cmd(*args), env=subprocess_env(**env), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}"
    return p


def noisy(text: str) -> list[str]:
    return [line for line in text.splitlines() if "Warning" in line or "DEBUG" in line or "warn(" in line]


def test_first_index_and_search_print_no_warnings_or_debug_lines(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in TINY_DOCS))
    cache = tmp_path / "cache"  # a fresh cache: the ONNX export happens in this run
    # on CPU (the README's machine): queries run on ONNX Runtime, exported by `index`
    env = {"XDG_CACHE_HOME": str(cache), "SEMSEARCH_TEXT_ENCODER__DEVICE": "cpu"}
    p = run("index", "--input", str(src), "--index", str(tmp_path / "ix"), **env)
    assert noisy(p.stdout + p.stderr) == [], p.stderr
    assert "indexed 12 docs" in p.stderr
    # the query encoder was exported by `index`, not left to the first search
    assert list((cache / "semsearch" / "onnx").glob("*/model.onnx"))
    p = run("search", "--index", str(tmp_path / "ix"), "how do plants make food from light", **env)
    assert p.stderr == "" and noisy(p.stdout) == []
    assert "hybrid search" in p.stdout and "d3" in p.stdout


def test_json_logs_from_a_settings_file(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in TINY_DOCS))
    cfg = tmp_path / "semsearch.toml"
    cfg.write_text('[log]\nlevel = "INFO"\nformat = "json"\n')
    p = run("--config", str(cfg), "index", "--input", str(src), "--index", str(tmp_path / "ix"), "--no-dense")
    lines = [json.loads(line) for line in p.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    assert any(e["logger"].startswith("semsearch") and e["level"] == "INFO" for e in lines)
    assert not any(e["level"] == "DEBUG" for e in lines)  # bm25s's debug lines stay out


def test_a_missing_settings_file_is_a_clear_error(tmp_path):
    p = subprocess.run(semsearch_cmd("--config", str(tmp_path / "nope.toml"), "info", "--index", str(tmp_path)),
                       env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "nope.toml" in p.stderr and "does not exist" in p.stderr
    assert "Traceback" not in p.stderr
