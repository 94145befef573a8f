"""A real ``semsearch serve`` process on 127.0.0.1: end to end, concurrency, and SIGKILL."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from tests.search_api.conftest import WRITE

pytestmark = pytest.mark.slow  # real server processes with the real model


def test_serve_end_to_end(index_dir, start_server):
    srv = start_server(index_dir)
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = c.post("/v1/search", json={"query": "black hole gravity", "k": 2},
                   headers={"X-Request-ID": "e2e-1"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "e2e-1"
        assert r.json()["hits"][0]["id"] == "d4"
        w = c.post("/v1/documents", headers=WRITE, json={"documents": [
            {"id": "new1", "title": "Coral reefs", "text": "Warming oceans bleach coral reefs."}]})
        assert w.status_code == 200 and w.json()["searchable"] is True
        assert c.post("/v1/search", json={"query": "coral bleaching", "k": 1}).json()["hits"][0]["id"] == "new1"
        assert c.post("/v1/documents", json={"documents": []}).status_code in (401, 422)
    srv.stop()
    lines = [json.loads(x) for x in srv.log.read_text().splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("event") == "access"]
    hit = next(x for x in access if x["request_id"] == "e2e-1")
    assert hit["path"] == "/v1/search" and hit["status"] == 200 and hit["latency_ms"] > 0
    # the search's own figures are on its access line: one line per search
    assert hit["mode"] == "hybrid" and hit["k"] == 2 and hit["hits"] == 2 and hit["degraded"] is False
    assert 0 < hit["took_ms"] <= hit["latency_ms"]
    assert [x for x in lines if x.get("request_id") == "e2e-1"] == [hit]


def test_killed_server_loses_no_acknowledged_write(index_dir, start_server):
    srv = start_server(index_dir)
    acked: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            for i in range(10_000):
                if stop.is_set():
                    return
                doc = {"id": f"k{i}", "title": f"kill test {i}", "text": f"uniqueword{i} durability"}
                try:
                    # wait=false: acknowledged once durable, before any sync makes it searchable
                    r = c.post("/v1/documents", headers=WRITE, json={"documents": [doc], "wait": False})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acked.append(doc["id"])

    t = threading.Thread(target=writer)
    t.start()
    while len(acked) < 15 and t.is_alive():
        threading.Event().wait(0.05)
    srv.kill()  # SIGKILL mid-stream
    stop.set()
    t.join(30)
    assert len(acked) >= 15

    srv2 = start_server(index_dir)  # the startup sync applies what the dead server stored
    with httpx.Client(base_url=srv2.url, timeout=60) as c:
        for doc_id in acked:
            assert c.get(f"/v1/documents/{doc_id}").status_code == 200, doc_id
            n = doc_id[1:]
            hits = c.post("/v1/search", json={"query": f"uniqueword{n}", "mode": "lexical", "k": 1}).json()["hits"]
            assert hits and hits[0]["id"] == doc_id
        assert c.get("/v1/stats").json()["pending_changes"] is False


def test_searches_stay_consistent_while_writes_sync(index_dir, start_server):
    srv = start_server(index_dir)
    errors: list[str] = []
    done = threading.Event()

    def reader() -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            while not done.is_set():
                r = c.post("/v1/search", json={"query": "sunlight energy batteries", "k": 20})
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                for h in r.json()["hits"]:
                    if not h["title"]:  # every hit must resolve to a stored document
                        errors.append(f"hit without document: {h}")

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        for i in range(8):
            docs = [{"id": f"s{i}-{j}", "title": f"Solar energy {i}-{j}", "text": "sunlight batteries"} for j in range(5)]
            assert c.post("/v1/documents", headers=WRITE, json={"documents": docs}).status_code == 200
            assert c.delete(f"/v1/documents/s{i}-0", headers=WRITE).status_code == 200
        stats = c.get("/v1/stats").json()
    done.set()
    for t in readers:
        t.join(60)
    assert errors == []
    assert stats["documents"] == 12 + 8 * 4 and stats["channels"]["dense"]["count"] == 12 + 8 * 4
