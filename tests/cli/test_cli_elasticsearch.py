"""`semsearch index` / `semsearch search` with SEMSEARCH_LEXICAL__BACKEND=elasticsearch,
through the CLI against the real server."""

import json
import subprocess

import pytest

from tests.conftest import TINY_DOCS, semsearch_cmd, subprocess_env

pytestmark = pytest.mark.integration


def _run(env, *args):
    return subprocess.run(semsearch_cmd(*args), env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def es_env(es_url, es_names):
    return subprocess_env(
        SEMSEARCH_LEXICAL__BACKEND="elasticsearch",
        SEMSEARCH_LEXICAL__ELASTICSEARCH__URL=es_url,
        SEMSEARCH_LEXICAL__ELASTICSEARCH__INDEX=es_names("cli"),
        SEMSEARCH_LEXICAL__ELASTICSEARCH__ANALYZER="semsearch_en",
    )


def test_index_and_search_through_the_cli(tmp_path, es_env):
    bad = dict(TINY_DOCS[3], metadata={"topic": "physics", "year": "unknown"})
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in [*TINY_DOCS[:3], bad, *TINY_DOCS[4:]]))
    ix = tmp_path / "ix"
    p = _run(es_env, "index", "--input", str(src), "--index", str(ix), "--no-dense", "--json")
    assert p.returncode == 1, p.stderr
    summary = json.loads(p.stdout)
    assert summary["rejected"] == 1 and summary["indexed"] == len(TINY_DOCS) - 1
    errors = [json.loads(line) for line in (ix / "errors.jsonl").read_text().splitlines()]
    assert [(e["id"], e["line"]) for e in errors] == [("d4", 4)]
    assert "year" in errors[0]["reason"]

    p = _run(es_env, "search", "--index", str(ix), "--mode", "lexical", "--json", "bees pollinate crops")
    assert p.returncode == 0, p.stderr
    hits = json.loads(p.stdout)["hits"]
    assert hits[0]["id"] == "d11" and hits[0]["channels"]["lexical"]["rank"] == 1

    src.write_text("".join(json.dumps(d) + "\n" for d in TINY_DOCS))  # the fixed input
    p = _run(es_env, "index", "--input", str(src), "--index", str(ix), "--no-dense", "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert (summary["indexed"], summary["unchanged"], summary["rejected"]) == (1, len(TINY_DOCS) - 1, 0)
    p = _run(es_env, "search", "--index", str(ix), "--mode", "lexical", "--json",
             "--filter", '{"year": {"gte": 2019}, "topic": "physics"}', "black hole gravity")
    assert [h["id"] for h in json.loads(p.stdout)["hits"]] == ["d4"]


def test_server_down_at_start_names_the_url(tmp_path, es_env):
    env = dict(es_env, SEMSEARCH_LEXICAL__ELASTICSEARCH__URL="http://127.0.0.1:9")
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in TINY_DOCS))
    p = _run(env, "index", "--input", str(src), "--index", str(tmp_path / "ix"), "--no-dense")
    assert p.returncode == 2
    assert "http://127.0.0.1:9" in p.stderr and "unreachable" in p.stderr
    assert "Traceback" not in p.stderr
