"""The ``semsearch`` command end to end, in subprocesses, with the real MiniLM model."""

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.conftest import TINY_DOCS, semsearch_cmd, subprocess_env, to_format_2_layout


def run(*args, check=True):
    p = subprocess.run(semsearch_cmd(*args), env=subprocess_env(), capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}")
    return p


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    src = d / "docs.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in TINY_DOCS))
    p = run("index", "--input", str(src), "--index", str(d / "ix"), "--json")
    return d / "ix", json.loads(p.stdout)


def test_index_summary(cli_index):
    _, summary = cli_index
    assert summary["indexed"] == 12 and summary["rejected"] == 0 and summary["read"] == 12
    assert summary["docs_per_s"] > 0


def test_search_json_output(cli_index):
    ix, _ = cli_index
    p = run("search", "--index", str(ix), "how do plants make sugar from light", "--k", "3", "--json")
    out = json.loads(p.stdout)
    assert out["query"] == "how do plants make sugar from light" and out["mode"] == "hybrid"
    assert out["hits"][0]["id"] == "d3"
    assert [h["rank"] for h in out["hits"]] == [1, 2, 3]
    assert set(out["hits"][0]["channels"]) <= {"lexical", "dense"} and out["hits"][0]["channels"]


def test_search_modes_and_table(cli_index):
    ix, _ = cli_index
    p = run("search", "--index", str(ix), "sourdough", "--mode", "lexical", "--json")
    assert [h["id"] for h in json.loads(p.stdout)["hits"]] == ["d6"]
    p = run("search", "--index", str(ix), "bees", "--k", "2")
    assert "Honeybees" in p.stdout


def test_batch_search_writes_trec_run(cli_index, tmp_path):
    ix, _ = cli_index
    q = tmp_path / "queries.jsonl"
    q.write_text(json.dumps({"_id": "q1", "text": "bees and pollen"}) + "\n" + json.dumps({"_id": "q2", "text": "electricity from sunlight"}) + "\n")
    run_file = tmp_path / "run.trec"
    run("search", "--index", str(ix), "--queries", str(q), "--output", str(run_file), "--k", "5", "--mode", "hybrid")
    lines = [ln.split() for ln in run_file.read_text().splitlines()]
    assert len(lines) == 10
    assert all(len(ln) == 6 and ln[1] == "Q0" and ln[5] == "semsearch" for ln in lines)
    assert lines[0][0] == "q1" and lines[0][2] == "d11" and lines[0][3] == "1"
    assert [int(ln[3]) for ln in lines if ln[0] == "q2"] == [1, 2, 3, 4, 5]
    tsv = tmp_path / "q.tsv"
    tsv.write_text("x1\tchess openings\n")
    run("search", "--index", str(ix), "--queries", str(tsv), "--output", str(run_file), "--k", "1")
    assert run_file.read_text().split()[:3] == ["x1", "Q0", "d7"]


def test_info(cli_index):
    ix, _ = cli_index
    info = json.loads(run("info", "--index", str(ix), "--json").stdout)
    assert info["documents"] == 12 and info["channels"]["dense"]["dim"] == 384
    assert info["channels"]["dense"]["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["tuned"] == {}
    assert "search defaults" not in run("info", "--index", str(ix)).stdout


def test_info_shows_what_adapt_recorded(cli_index, tmp_path):
    import shutil

    from semsearch.indexer.index import Index

    ix = tmp_path / "ix"
    shutil.copytree(cli_index[0], ix)
    tuned = {"fusion": {"method": "rrf", "weights": {"lexical": 0.3, "dense": 0.7}, "depth": 200, "rrf_k": 20},
             "rerank": {"enabled": True, "model": "models/reranker/stage1", "blend": 0.6, "depth": 20},
             "dense_encoder": "models/dense-adapted", "by": "semsearch adapt", "at": 1796400000.0}
    with Index.open(ix, writable=True) as index:
        index.set_tuned(tuned)
    assert json.loads(run("info", "--index", str(ix), "--json").stdout)["tuned"] == tuned
    from semsearch.cli.info_cmd import describe_tuned

    assert describe_tuned(tuned) == ("fusion rrf lexical=0.3, dense=0.7, k=20, depth 200; rerank on (blend 0.6, top 20); "
                                     "dense encoder models/dense-adapted (by semsearch adapt, 2026-12-04 16:00 UTC)")
    assert "search defaults" in run("info", "--index", str(ix)).stdout


def test_rejected_records_exit_nonzero_and_are_written(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"_id": "ok", "text": "fine document"}) + "\n{oops\n" + json.dumps({"_id": "e", "text": " "}) + "\n")
    p = run("index", "--input", str(src), "--index", str(tmp_path / "ix"), "--no-dense", check=False)
    assert p.returncode == 1
    assert "indexed 1 docs" in p.stderr and "2 rejected" in p.stderr
    errors = [json.loads(x) for x in (tmp_path / "ix" / "errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["source"]) for e in errors] == [(2, str(src)), (3, str(src))]
    assert errors[0]["reason"].startswith("bad JSON") and "empty text" in errors[1]["reason"]
    p = run("search", "--index", str(tmp_path / "ix"), "fine", "--mode", "lexical", "--json")
    assert json.loads(p.stdout)["hits"][0]["id"] == "ok"


def test_clear_errors_without_traceback(tmp_path):
    p = run("search", "--index", str(tmp_path / "missing"), "q", check=False)
    assert p.returncode == 2 and "no index at" in p.stderr and "Traceback" not in p.stderr
    p = run("index", "--input", str(tmp_path / "nope.jsonl"), "--index", str(tmp_path / "ix"), check=False)
    assert p.returncode == 2 and "does not exist" in p.stderr
    p = run("index", "--input", str(tmp_path), "--index", str(tmp_path / "ix2"), "--factory", "NotAnIndex", check=False)
    assert p.returncode == 2 and "NotAnIndex" in p.stderr


@pytest.mark.parametrize("args, instead", [
    (["compact", "--index", "ix"], "merges the store index's segments itself"),
    (["verify", "--index", "ix"], "_cluster/health"),
    (["train-reranker", "--index", "ix", "--out", "rr", "--stage", "1"], "SEMSEARCH_RERANK__MODEL"),
])
def test_local_only_commands_say_what_to_do_with_the_elasticsearch_store(tmp_path, args, instead):
    # before, compact died on a missing method; snapshot, verify and train-reranker
    # looked for a local directory of that name and said "no index at ix"
    env = subprocess_env(SEMSEARCH_STORE__BACKEND="elasticsearch",
                         SEMSEARCH_STORE__ELASTICSEARCH__URL="http://127.0.0.1:1")  # never contacted
    p = subprocess.run(semsearch_cmd(*args), env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert f"`semsearch {args[0]}` works on a local index directory" in p.stderr and instead in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, said", [
    (["snapshot", "--index", "ix", "--out", "x.tar"], "--index and --out are for a local index"),
    (["snapshot"], "`semsearch snapshot` needs --repository"),
    (["restore", "--from", "x.tar", "--index", "ix"], "--from and --index are for a local index"),
    (["restore", "--repository", "backups"], "--snapshot is required with --repository"),
])
def test_backups_of_the_elasticsearch_store_take_a_snapshot_repository(tmp_path, args, said):
    env = subprocess_env(SEMSEARCH_STORE__BACKEND="elasticsearch",
                         SEMSEARCH_STORE__ELASTICSEARCH__URL="http://127.0.0.1:1")  # never contacted
    p = subprocess.run(semsearch_cmd(*args), env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and said in p.stderr, p.stderr[-2000:]
    assert sorted(x.name for x in tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, said", [
    (["snapshot", "--index", "ix", "--out", "x.tar", "--repository", "r"], "--repository is for the Elasticsearch store"),
    (["snapshot", "--index", "ix"], "needs --out"),
    (["restore", "--index", "ix"], "needs --from"),
])
def test_backups_of_a_local_index_take_files(tmp_path, args, said):
    p = subprocess.run(semsearch_cmd(*args), env=subprocess_env(), capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and said in p.stderr, p.stderr[-2000:]


def test_killed_run_resumes_and_indexes_every_record_exactly_once(tmp_path):
    n = 400
    src = tmp_path / "many.jsonl"
    src.write_text("".join(json.dumps({"_id": f"doc{i}", "title": f"Document {i}", "text": f"record number {i} about topic {i % 7}"}) + "\n" for i in range(n)))
    ix = tmp_path / "ix"
    args = semsearch_cmd("index", "--input", str(src), "--index", str(ix), "--batch-size", "4")
    env = subprocess_env()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stored = 0
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (ix / "docs.sqlite").exists():
            try:
                with sqlite3.connect(ix / "docs.sqlite", timeout=1) as c:
                    stored = c.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
            except sqlite3.OperationalError:
                stored = 0
            if stored >= 40:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < stored < n
    # killed before its first sync of data (opening an empty index commits generation 1, empty)
    m = json.loads((ix / "manifest.json").read_text()) if (ix / "manifest.json").exists() else {}
    assert m.get("synced_seq", 0) == 0 and not m.get("segments")
    p = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    # what the killed run committed is skipped, the rest is indexed: nothing twice
    assert summary["unchanged"] >= stored and summary["indexed"] + summary["unchanged"] == n
    with sqlite3.connect(ix / "docs.sqlite") as c:
        assert c.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM docs").fetchone() == (n, n)
        assert c.execute("SELECT COUNT(*) FROM vectors WHERE channel='dense'").fetchone()[0] == n
    info = json.loads(run("info", "--index", str(ix), "--json").stdout)
    assert info["documents"] == n and info["lexical"]["count"] == n
    assert info["channels"]["dense"]["count"] == n and sum(s["docs"] - s["deleted"] for s in info["segments"]) == n
    hits = json.loads(run("search", "--index", str(ix), "record number 123", "--mode", "lexical", "--k", "1", "--json").stdout)["hits"]
    assert hits[0]["id"] == "doc123"


def test_reindex_applies_new_bm25_settings(tmp_path):
    """An index opened with other BM25 settings is refused until `semsearch reindex --lexical`
    rebuilds the lexical channel with them (from stored tokens: nothing is re-encoded)."""
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in TINY_DOCS))
    ix = tmp_path / "ix"
    run("index", "--input", str(src), "--index", str(ix), "--no-dense", "--json")
    env = subprocess_env(SEMSEARCH_LEXICAL__EMBEDDED__K1="1.5")

    def cli(*args):
        return subprocess.run(semsearch_cmd(*args), env=env, capture_output=True, text=True, timeout=600)

    refused = cli("search", "--index", str(ix), "sourdough", "--mode", "lexical", "--json")
    assert refused.returncode != 0 and "k1" in refused.stderr + refused.stdout
    done = cli("reindex", "--index", str(ix), "--lexical", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["seconds"] >= 0
    after = cli("search", "--index", str(ix), "sourdough", "--mode", "lexical", "--json")
    assert after.returncode == 0, after.stderr
    assert [h["id"] for h in json.loads(after.stdout)["hits"]] == ["d6"]
    # the old settings are now the ones refused
    old = run("search", "--index", str(ix), "sourdough", "--mode", "lexical", "--json", check=False)
    assert old.returncode != 0 and "k1" in old.stderr + old.stdout


def test_reindex_upgrades_an_index_of_the_file_per_array_layout(tmp_path):
    """An index written before the segments' array container (index format 2) is refused by
    a search, with the command that upgrades it; `semsearch reindex` rebuilds its segments
    from the document store."""
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in TINY_DOCS))
    ix = tmp_path / "ix"
    run("index", "--input", str(src), "--index", str(ix), "--no-dense", "--json")
    to_format_2_layout(ix)
    refused = run("search", "--index", str(ix), "sourdough", "--mode", "lexical", "--json", check=False)
    assert refused.returncode != 0
    assert "format 2" in refused.stderr + refused.stdout and f"semsearch reindex --index {ix}" in refused.stderr + refused.stdout
    run("reindex", "--index", str(ix), "--json")
    after = run("search", "--index", str(ix), "sourdough", "--mode", "lexical", "--json")
    assert [h["id"] for h in json.loads(after.stdout)["hits"]] == ["d6"]
    assert json.loads(run("verify", "--index", str(ix), "--json").stdout)["ok"]


def test_brackets_in_documents_and_errors_are_printed_as_they_are(tmp_path):
    # Rich reads "[word]" as markup: a title, an id or a path with one must not lose it
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"id": "[n1]", "title": "[draft] Bracketed beekeeping notes",
                               "text": "hives and honey"}) + "\n")
    run("index", "--input", str(src), "--index", str(tmp_path / "ix"))
    p = run("search", "--index", str(tmp_path / "ix"), "[draft] beekeeping", "--mode", "lexical")
    assert "[draft] Bracketed beekeeping notes" in p.stdout and "[n1]" in p.stdout
    assert "'[draft] beekeeping'" in p.stdout
    p = run("search", "--index", str(tmp_path / "[old]" / "ix"), "q", check=False)
    assert p.returncode == 2 and "[old]" in p.stderr, p.stderr
