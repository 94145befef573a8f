"""`semsearch serve --workers 2` over one local index: one worker holds the writer lock,
the other searches read-only and commits the writes it receives to the document store;
the writer's refresh makes every write searchable through both."""

from __future__ import annotations

import os
import re
import signal
import time

import httpx

from tests.search_api.conftest import WRITE


def _ask_until_both(url: str, path: str, tries: int = 300, *, strict: bool = True) -> dict[str, str]:
    """pid -> role of the workers that answered (fresh connections until both did);
    ``strict=False`` skips answers other than 200 (a worker starting up)."""
    seen: dict[str, str] = {}
    for _ in range(tries):
        r = httpx.get(url + path, timeout=30)
        if r.status_code != 200 and not strict:
            continue
        assert r.status_code == 200, r.text
        pid, role = r.headers["x-semsearch-worker"].split()
        seen[pid] = role
        if len(seen) == 2 and "starting" not in seen.values():
            break
    return seen


def test_two_workers_share_one_index(index_dir, start_server):
    server = start_server(index_dir, "--workers", "2", SEMSEARCH_INDEXING__REFRESH_INTERVAL="0.2")
    url = server.url
    workers = _ask_until_both(url, "/readyz")
    assert sorted(workers.values()) == ["reader", "writer"], workers
    stats = httpx.get(url + "/v1/stats", timeout=30).json()
    assert stats["process"]["role"] in ("reader", "writer")

    writes_by: dict[str, list[str]] = {}  # pid -> ids written through it
    for i in range(40):
        doc = {"_id": f"w{i}", "title": f"Beekeeping note {i}",
               "text": f"Keepers harvest honey from hive number {i}."}
        r = httpx.post(url + "/v1/documents", json={"documents": [doc], "wait": True},
                       headers=WRITE, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["searchable"], r.json()
        writes_by.setdefault(r.headers["x-semsearch-worker"].split()[0], []).append(f"w{i}")
        if len(writes_by) == 2 and i >= 5:
            break
    assert set(writes_by) == set(workers), writes_by  # both workers took writes
    reader_pid = next(p for p, role in workers.items() if role == "reader")
    assert writes_by[reader_pid]  # ...which the writer process refreshed

    written = [i for ids in writes_by.values() for i in ids]
    answered: set[str] = set()
    for _ in range(60):  # every write is searchable through whichever worker answers
        r = httpx.post(url + "/v1/search", json={"query": "beekeeping honey hive", "k": 50,
                                                  "mode": "lexical"}, timeout=30)
        assert r.status_code == 200, r.text
        assert set(written) <= {h["id"] for h in r.json()["hits"]}
        answered.add(r.headers["x-semsearch-worker"].split()[0])
        if answered == set(workers):
            break
    assert answered == set(workers)
    d = httpx.delete(url + f"/v1/documents/{written[0]}", headers=WRITE, timeout=60)
    assert d.status_code == 200 and d.json()["searchable"]
    deadline = time.monotonic() + 10
    for _ in range(20):
        r = httpx.post(url + "/v1/search", json={"query": "beekeeping honey hive", "k": 50,
                                                  "mode": "lexical"}, timeout=30)
        assert written[0] not in {h["id"] for h in r.json()["hits"]}
        assert time.monotonic() < deadline
    server.stop()
    log = server.log.read_text()
    assert "IndexLocked" not in log and "being written by another process" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_a_reader_becomes_the_writer_when_the_writer_process_dies(index_dir, start_server, tmp_path):
    server = start_server(index_dir, "--workers", "2", SEMSEARCH_INDEXING__REFRESH_INTERVAL="0.2",
                          TMPDIR=str(tmp_path))
    workers = _ask_until_both(server.url, "/readyz")
    writer_pid = next(int(p) for p, role in workers.items() if role == "writer")
    os.kill(writer_pid, signal.SIGKILL)  # no shutdown code runs; the kernel drops its flock
    deadline = time.monotonic() + 120
    roles: dict[str, str] = {}
    while time.monotonic() < deadline:  # uvicorn starts a new worker; one of the two takes the lock
        try:
            roles = _ask_until_both(server.url, "/readyz", tries=50, strict=False)
        except httpx.TransportError:
            continue
        if str(writer_pid) not in roles and sorted(roles.values()) == ["reader", "writer"]:
            break
        time.sleep(0.2)
    assert str(writer_pid) not in roles and sorted(roles.values()) == ["reader", "writer"], roles
    doc = {"_id": "after", "title": "Swarming", "text": "A swarm leaves the hive with the old queen."}
    r = httpx.post(server.url + "/v1/documents", json={"documents": [doc], "wait": True},
                   headers=WRITE, timeout=60)
    assert r.status_code == 200 and r.json()["searchable"], r.text
    hits = httpx.post(server.url + "/v1/search", json={"query": "swarm old queen", "k": 1, "mode": "lexical"},
                      timeout=30).json()["hits"]
    assert hits[0]["id"] == "after"
    # /metrics forgets the killed worker's gauges and keeps its counts
    (metrics_dir,) = tmp_path.glob("semsearch-serve-*/metrics")
    assert list(metrics_dir.glob(f"gauge_live*_{writer_pid}.db"))
    assert httpx.get(server.url + "/metrics", timeout=30).status_code == 200
    assert not list(metrics_dir.glob(f"gauge_live*_{writer_pid}.db"))
    assert list(metrics_dir.glob(f"counter_{writer_pid}.db"))


def _count(text: str, name: str, labels: str) -> float:
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    assert m, f"{name}{{{labels}}} not in /metrics:\n{text[:3000]}"
    return float(m.group(1))


def test_metrics_count_the_requests_of_every_worker(index_dir, start_server, tmp_path):
    server = start_server(index_dir, "--workers", "2", TMPDIR=str(tmp_path))
    workers = _ask_until_both(server.url, "/readyz")
    sent: dict[str, int] = {}
    while len(sent) < 2 or min(sent.values()) < 3:  # fresh connections: both workers answer
        r = httpx.get(server.url + "/healthz", timeout=30)
        assert r.status_code == 200
        pid = r.headers["x-semsearch-worker"].split()[0]
        sent[pid] = sent.get(pid, 0) + 1
        assert sum(sent.values()) < 300, sent
    assert set(sent) == set(workers)
    scraped: set[str] = set()
    for _ in range(300):  # whichever worker answers the scrape counts both workers' requests
        r = httpx.get(server.url + "/metrics", timeout=30)
        assert r.status_code == 200
        scraped.add(r.headers["x-semsearch-worker"].split()[0])
        labels = 'endpoint="/healthz",method="GET",mode="-",status="200"'
        assert _count(r.text, "semsearch_requests_total", labels) == sum(sent.values())
        assert _count(r.text, "semsearch_request_seconds_count", 'endpoint="/healthz",mode="-"') == sum(sent.values())
        # the index gauges are one series each (the shared index), not one per worker
        assert len(re.findall(r"^semsearch_documents(\{.*\})? ", r.text, re.M)) == 1
        assert re.search(r"^semsearch_documents (\S+)$", r.text, re.M).group(1) != "0.0"
        if scraped == set(workers):
            break
    assert scraped == set(workers)
    run_dirs = list(tmp_path.glob("semsearch-serve-*"))
    assert len(run_dirs) == 1 and (run_dirs[0] / "metrics").is_dir()
    server.stop()
    assert not run_dirs[0].exists()  # the server's private directory goes with it


def test_a_client_over_its_rate_limit_gets_429_from_every_worker(index_dir, start_server):
    burst = 4
    server = start_server(index_dir, "--workers", "2", SEMSEARCH_API__RATE_LIMIT_PER_S="0.001",
                          SEMSEARCH_API__RATE_LIMIT_BURST=str(burst))
    _ask_until_both(server.url, "/readyz")  # probes are not limited
    answers: dict[int, set[str]] = {}
    for _ in range(300):  # fresh connections, so both workers answer
        r = httpx.get(server.url + "/v1/stats", timeout=30)
        answers.setdefault(r.status_code, set()).add(r.headers["x-semsearch-worker"].split()[0])
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["type"] == "too_many_requests"
        if len(answers.get(429, ())) == 2:
            break
    assert set(answers) == {200, 429}, answers
    assert len(answers[429]) == 2, answers  # both workers refuse the client...
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    # ...after the server as a whole let its burst through, not a burst per worker
    assert _count(metrics, "semsearch_requests_total",
                  'endpoint="/v1/stats",method="GET",mode="-",status="200"') == burst


def test_each_worker_takes_its_share_of_the_cores_for_onnx_unless_told(monkeypatch):
    from semsearch.config import Settings
    from semsearch.search_api.app import worker_settings

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    base = Settings()
    assert worker_settings(base, 1) is base and base.text_encoder.onnx_threads is None
    four = worker_settings(base, 4)
    assert four.text_encoder.onnx_threads == 2 and base.text_encoder.onnx_threads is None  # a copy
    assert worker_settings(base, 16).text_encoder.onnx_threads == 1  # never none
    told = Settings(text_encoder={"onnx_threads": 3})
    assert worker_settings(told, 4).text_encoder.onnx_threads == 3
