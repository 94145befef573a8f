"""Behaviour of the API through FastAPI's TestClient, on a tiny real index."""

from __future__ import annotations

import json
import re

import pytest

from tests.search_api.conftest import API_KEY, WRITE


def search(client, **body):
    r = client.post("/v1/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_hybrid_search_explains_channels_and_highlights(client):
    res = search(client, query="bees pollinate crops", k=3)
    assert res["mode"] == "hybrid"
    top = res["hits"][0]
    assert top["id"] == "d11" and top["title"] == "Honeybees"
    assert top["channels"]["lexical"]["rank"] == 1 and top["channels"]["dense"]["rank"] == 1
    snip = top["snippet"]
    marked = [snip["text"][a:b] for a, b in snip["highlights"]]
    assert marked == ["Bees", "pollinate", "crops"]


def test_modes_and_explain_off(client):
    res = search(client, query="sourdough yeast", mode="lexical", k=2, explain=False)
    assert res["hits"][0]["id"] == "d6"
    assert res["hits"][0]["channels"] is None
    dense = search(client, query="how do plants make food from light", mode="dense", k=1)
    assert dense["hits"][0]["id"] == "d3"
    assert set(dense["hits"][0]["channels"]) == {"dense"}


def test_pages_are_slices_of_the_fused_list(client):
    full = [h["id"] for h in search(client, query="energy from sunlight", k=6)["hits"]]
    page2 = search(client, query="energy from sunlight", k=3, offset=3)["hits"]
    assert [h["id"] for h in page2] == full[3:6]
    assert [h["rank"] for h in page2] == [4, 5, 6]


def test_filters_fusion_and_weights(client):
    res = search(client, query="sunlight", k=10, filters={"topic": "energy"})
    assert {h["id"] for h in res["hits"]} <= {"d8", "d12"} and res["hits"]
    res = search(client, query="sunlight", k=10, filters={"year": {"gte": 2020}}, fusion="rrf")
    assert all(h["metadata"]["year"] >= 2020 for h in res["hits"])
    # the whole filter language: not, exists, in
    res = search(client, query="sunlight", k=10, filters={"not": {"topic": "energy"}, "year": {"exists": True}})
    assert res["hits"] and not {h["id"] for h in res["hits"]} & {"d8", "d12"}
    res = search(client, query="sunlight", k=10, filters={"topic": {"in": ["energy", "food"]}}, mode="lexical")
    assert {h["id"] for h in res["hits"]} == {"d8"}
    lex_only = search(client, query="sunlight electricity", k=3, weights={"lexical": 1, "dense": 0})
    lexical = search(client, query="sunlight electricity", k=3, mode="lexical")
    # with the dense weight at 0 the lexical hits come first, in lexical order
    n = len(lexical["hits"])
    assert [h["id"] for h in lex_only["hits"][:n]] == [h["id"] for h in lexical["hits"]]


def test_collapse_folds_near_duplicates(client):
    twin = {"id": "d11-copy", "title": "Honeybees", "text": "Bees carry pollen between flowers and pollinate many crops!"}
    assert client.post("/v1/documents", json={"documents": [twin]}, headers=WRITE).status_code == 200
    plain = search(client, query="bees pollinate crops", k=3)
    assert {h["id"] for h in plain["hits"][:2]} == {"d11", "d11-copy"}
    collapsed = search(client, query="bees pollinate crops", k=3, collapse=True)
    ids = [h["id"] for h in collapsed["hits"]]
    assert len(ids) == 3 and len({"d11", "d11-copy"} & set(ids)) == 1
    assert collapsed["hits"][0]["duplicates"] in (["d11"], ["d11-copy"])
    assert [h["rank"] for h in collapsed["hits"]] == [1, 2, 3]


def test_rerank_request_without_a_trained_model_is_refused(client):
    r = client.post("/v1/search", json={"query": "bees", "rerank": True})
    assert r.status_code == 400 and "train-reranker" in r.json()["error"]["message"]
    assert client.post("/v1/search", json={"query": "bees", "rerank": False}).status_code == 200


def test_upsert_get_replace_delete(client):
    doc = {"id": "q1", "title": "Quantum computers", "text": "Qubits exploit superposition and entanglement.",
           "metadata": {"topic": "physics"}}
    r = client.post("/v1/documents", json={"documents": [doc]}, headers=WRITE)
    assert r.status_code == 200 and r.json()["searchable"] is True
    assert search(client, query="qubits entanglement", mode="lexical", k=1)["hits"][0]["id"] == "q1"
    assert search(client, query="machines that compute with quantum bits", mode="dense", k=1)["hits"][0]["id"] == "q1"
    got = client.get("/v1/documents/q1").json()
    assert got["title"] == "Quantum computers" and got["metadata"] == {"topic": "physics"}
    doc["text"] = "Completely rewritten: a recipe for pancakes with maple syrup."
    client.post("/v1/documents", json={"documents": [doc]}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert search(client, query="pancakes maple", mode="lexical", k=1)["hits"][0]["id"] == "q1"
    assert all(h["id"] != "q1" for h in search(client, query="qubits entanglement", mode="lexical")["hits"])
    assert client.delete("/v1/documents/q1", headers=WRITE).status_code == 200
    assert client.get("/v1/documents/q1").status_code == 404
    assert all(h["id"] != "q1" for h in search(client, query="pancakes maple", k=20)["hits"])
    # a write after a purged delete is still applied (its sequence number is not reused)
    client.post("/v1/documents", json={"documents": [{"id": "q2", "text": "zebra stripes"}]}, headers=WRITE)
    assert search(client, query="zebra", mode="lexical")["hits"][0]["id"] == "q2"


def test_bad_records_reject_the_batch_and_name_each_problem(client):
    docs = [{"id": "ok1", "text": "fine"}, {"text": "no id"}, {"id": "x", "text": 5}, {"id": "ok1", "text": "again"}]
    r = client.post("/v1/documents", json={"documents": docs}, headers=WRITE)
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert "documents[1]: missing id" in msg and "documents[2]: field 'text' must be a string" in msg
    assert "documents[3]: duplicate id 'ok1'" in msg
    assert client.get("/v1/documents/ok1").status_code == 404


def test_image_paths_are_not_read_without_image_roots(client):
    r = client.post("/v1/documents", json={"documents": [{"id": "i1", "image": "/etc/passwd"}]}, headers=WRITE)
    assert r.status_code == 400 and "no image roots" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "headers, status",
    [({}, 401), ({"X-API-Key": "wrong"}, 403), ({"Authorization": "Bearer wrong"}, 403),
     ({"Authorization": "Basic " + API_KEY}, 401)],
)
def test_writes_need_the_api_key(client, headers, status):
    r = client.post("/v1/documents", json={"documents": [{"id": "a", "text": "b"}]}, headers=headers)
    assert r.status_code == status
    assert r.json()["error"]["status"] == status
    assert client.delete("/v1/documents/d1", headers=headers).status_code == status
    assert client.get("/v1/documents/d1").status_code == 200  # nothing was deleted


def test_reads_need_the_key_when_configured(index_dir, api_settings, minilm):
    from fastapi.testclient import TestClient

    from semsearch.search_api.app import create_app

    api_settings.api.auth_reads = True
    with TestClient(create_app(index_dir, api_settings, encoder=minilm)) as c:
        assert c.post("/v1/search", json={"query": "bees"}).status_code == 401
        assert c.get("/v1/stats").status_code == 401
        assert c.post("/v1/search", json={"query": "bees"}, headers=WRITE).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_writes_are_disabled_without_a_configured_key(index_dir, settings, minilm):
    from fastapi.testclient import TestClient

    from semsearch.search_api.app import create_app

    with TestClient(create_app(index_dir, settings, encoder=minilm)) as c:
        r = c.post("/v1/documents", json={"documents": [{"id": "a", "text": "b"}]}, headers=WRITE)
        assert r.status_code == 403 and "SEMSEARCH_API_KEY" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "body, status, match",
    [
        ({"query": "bees", "k": 0}, 422, "body.k"),
        ({"query": "bees", "k": 101}, 400, "max_k"),
        ({"query": ""}, 422, "body.query"),
        ({"query": "bees", "mode": "fuzzy"}, 422, "body.mode"),
        ({"query": "bees", "weights": {"lexical": -1}}, 422, "weights must be >= 0"),
        ({"query": "bees", "filters": {"year": {"near": 3}}}, 400, r"filter on 'year': unknown operator\(s\) \['near'\]"),
        ({"query": "bees", "filters": {"year": {"gte": "2020"}}}, 400, "field holds numbers"),
        ({"query": "bees", "unknown": 1}, 422, "body.unknown"),
        ({"query": "bees", "offset": 995, "k": 10}, 400, "offset \\+ k"),
    ],
)
def test_bad_search_requests_say_what_is_wrong(client, body, status, match):
    r = client.post("/v1/search", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and err["request_id"]
    assert re.search(match, err["message"]), err


def test_media_type_and_body_limits(index_dir, api_settings, minilm):
    from fastapi.testclient import TestClient

    from semsearch.search_api.app import create_app

    api_settings.api.max_body_bytes = 2048
    with TestClient(create_app(index_dir, api_settings, encoder=minilm)) as c:
        r = c.post("/v1/search", content=b"query=bees", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]
        big = {"documents": [{"id": "big", "text": "word " * 1000}]}
        r = c.post("/v1/documents", json=big, headers=WRITE)
        assert r.status_code == 413 and "limit of 2048 bytes" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield json.dumps(big).encode()[:500]

        r = c.post("/v1/documents", content=chunks(), headers={**WRITE, "Content-Type": "application/json"})
        assert r.status_code == 413
        assert c.get("/v1/documents/big").status_code == 404


def test_new_request_ids_are_unique_and_a_forked_child_draws_its_own_prefix():
    import os

    from semsearch.search_api.middleware import new_request_id

    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, then out without running the parent's cleanups
        os.write(w, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 64).decode()
    os.close(r)
    os.close(w)
    assert len(child) == 32 and child[:16] != new_request_id()[:16]


def test_request_ids_and_access_log(client, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="semsearch.access"):
        r = client.get("/v1/documents/d1", headers={"X-Request-ID": "abc-123"})
        r2 = client.get("/v1/documents/nope", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] == "abc-123"
    assert r2.headers["x-request-id"] != "bad id with spaces" and len(r2.headers["x-request-id"]) == 32
    assert r2.json()["error"]["request_id"] == r2.headers["x-request-id"]
    entries = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "semsearch.access"]
    first = next(e for e in entries if e["request_id"] == "abc-123")
    assert first["status"] == 200 and first["path"] == "/v1/documents/d1" and first["latency_ms"] > 0
    assert any(e["status"] == 404 for e in entries)


def test_health_ready_stats_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["generation"] >= 1
    stats = client.get("/v1/stats").json()
    assert stats["documents"] == 12 and stats["channels"]["dense"]["count"] == 12
    assert stats["models"]["text_encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "https://" not in page.text and "http://" not in client.get("/static/app.js").text
    schema = client.get("/openapi.json").json()
    assert {"/v1/search", "/v1/documents", "/v1/documents/{doc_id}", "/v1/stats", "/healthz", "/readyz"} <= set(schema["paths"])


def test_concurrent_searches_are_batched(index_dir, api_settings, minilm):
    """Concurrent requests with the same options reach the encoder as one batch."""
    import asyncio

    import httpx

    from semsearch.search_api.app import create_app

    calls: list[int] = []

    class Counting:
        name, dim = minilm.name, minilm.dim

        def encode(self, texts, *, batch_size=None):
            calls.append(len(texts))
            return minilm.encode(texts)

    api_settings.api.batch_window_ms = 50
    app = create_app(index_dir, api_settings, encoder=Counting())

    async def run():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                calls.clear()
                qs = ["bees", "black holes", "bread", "chess", "marathon", "volcano"]
                rs = await asyncio.gather(*(c.post("/v1/search", json={"query": q, "mode": "dense", "k": 1}) for q in qs))
                return [r.json()["hits"][0]["id"] for r in rs]

    top = asyncio.run(run())
    assert top == ["d11", "d4", "d6", "d7", "d9", "d5"]
    assert calls == [6]


def test_a_delete_takes_effect_before_its_sync(client):
    r = client.delete("/v1/documents/d6", params={"wait": "false"}, headers=WRITE)
    assert r.status_code == 200
    hits = search(client, query="sourdough yeast", mode="lexical", k=5)["hits"]
    assert "d6" not in [h["id"] for h in hits]


def test_ids_with_slashes_and_spaces_round_trip(client):
    doc = {"id": "paper/2021 v2", "title": "Slashes", "text": "an id with a slash and a space"}
    assert client.post("/v1/documents", json={"documents": [doc]}, headers=WRITE).status_code == 200
    assert client.get("/v1/documents/paper/2021%20v2").json()["title"] == "Slashes"
    assert client.delete("/v1/documents/paper/2021%20v2", headers=WRITE).status_code == 200
    assert client.get("/v1/documents/paper/2021%20v2").status_code == 404


def test_request_dependencies_run_on_the_event_loop(client, monkeypatch):
    """FastAPI runs a plain ``def`` dependency in its thread pool: a thread hop per request
    (9% of a lexical search's CPU under load). Every dependency of the read and write paths
    is a coroutine, so a search or a stats call makes no hop for them."""
    import fastapi.dependencies.utils as deps_utils

    hops = []
    real = deps_utils.run_in_threadpool

    async def spy(fn, *a, **kw):
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *a, **kw)

    monkeypatch.setattr(deps_utils, "run_in_threadpool", spy)
    search(client, query="bees pollinate crops", k=3)
    assert client.get("/v1/stats").status_code == 200
    assert client.get("/v1/documents/d11").status_code == 200
    r = client.post("/v1/documents", json={"documents": [{"id": "d99", "text": "new text"}]}, headers=WRITE)
    assert r.status_code == 200
    assert hops == []


def test_the_server_runs_numpy_blas_on_one_thread_while_it_serves(index_dir):
    """api.blas_threads (default 1): a search's exact vector scan is one small matrix product,
    which OpenBLAS splits over threads that then spin (a hybrid request cost 23-25 ms of CPU
    instead of 14-16). Held for the app's life, restored after; None leaves numpy alone.

    Checked in a fresh process, as a server runs: this OpenBLAS ignores a thread count set
    from a second thread once the main thread has set one (which earlier tests of this
    session do), and TestClient runs the app's lifespan in a second thread."""
    import subprocess
    import sys

    pytest.importorskip("threadpoolctl")
    script = f"""
import threadpoolctl
from fastapi.testclient import TestClient
from semsearch.config import Settings
from semsearch.search_api.app import create_app

def numpy_blas():
    return [i["num_threads"] for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas" and "numpy" in i["filepath"]]

before = numpy_blas()
if not before or before == [1] * len(before):
    print("SKIP")
    raise SystemExit(0)
s = Settings()
s.no_progress = True
with TestClient(create_app({str(index_dir)!r}, s)) as c:
    assert numpy_blas() == [1] * len(before), numpy_blas()
    assert c.post("/v1/search", json={{"query": "bees", "k": 1}}).status_code == 200
assert numpy_blas() == before, (numpy_blas(), before)
s.api.blas_threads = None
with TestClient(create_app({str(index_dir)!r}, s)):
    assert numpy_blas() == before, numpy_blas()
print("OK", before)
"""
    from tests.conftest import subprocess_env

    p = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    if p.stdout.strip() == "SKIP":
        pytest.skip("numpy's BLAS is not a separate multi-threaded library here")
    assert p.stdout.strip().startswith("OK")


def test_the_server_keeps_what_it_loaded_out_of_garbage_collections(index_dir, settings, minilm):
    """While an app serves, what was loaded before (index, models, libraries) is in CPython's
    permanent generation and the youngest generation is collected less often; a search's own
    garbage is still collected, and the process is as before once the app stops. Under wrk
    the full collections had rescanned the whole loaded heap every few seconds (up to 104 ms
    each, every request in flight waiting)."""
    import gc

    from fastapi.testclient import TestClient

    from semsearch.search_api.app import SERVING_GC_THRESHOLD0, create_app

    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(index_dir, settings, encoder=minilm)) as c:
        assert gc.get_freeze_count() > 10_000  # the loaded index, its models and libraries
        assert gc.get_threshold() == (SERVING_GC_THRESHOLD0, *before[1:])
        assert c.post("/v1/search", json={"query": "bees", "k": 1}).status_code == 200
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # objects made while serving are still collected
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
