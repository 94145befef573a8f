"""Guard rails and operations endpoints: caps (400 naming the setting), the per-client rate
limit (429 + Retry-After), request deadlines (503), background jobs, writes' searchability,
/metrics, /v1/stats redaction, /readyz."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.conftest import subprocess_env
from tests.search_api.conftest import API_KEY, WRITE


@pytest.fixture
def make_client(index_dir, api_settings, minilm) -> Iterator:
    """A TestClient on the tiny index with some settings changed: make_client(api__max_k=5)."""
    from fastapi.testclient import TestClient

    from semsearch.search_api.app import create_app

    clients = []

    def make(encoder=minilm, **changes):
        for dotted, value in changes.items():
            section, _, key = dotted.partition("__")
            setattr(getattr(api_settings, section), key, value)
        c = TestClient(create_app(index_dir, api_settings, encoder=encoder))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.mark.parametrize(
    "body, setting",
    [
        ({"k": 101}, "api.max_k"),
        ({"offset": 1001}, "api.max_offset"),
        ({"depth": 5000}, "api.max_depth"),
        ({"rerank_depth": 500}, "api.max_rerank_depth"),
        ({"filters": {"topic": [f"t{i}" for i in range(100)]}}, "api.max_filter_terms"),
        ({"query": "bees " * 500}, "api.max_query_chars"),
    ],
)
def test_caps_answer_400_naming_the_setting(client, body, setting):
    r = client.post("/v1/search", json={"query": "bees", **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "limit_exceeded" and setting in err["message"], err


def test_caps_follow_the_settings(make_client):
    c = make_client(api__max_k=3, api__max_depth=20)
    assert c.post("/v1/search", json={"query": "bees", "k": 3, "depth": 20}).status_code == 200
    r = c.post("/v1/search", json={"query": "bees", "k": 4})
    assert r.status_code == 400 and re.search(r"k must be <= 3 .*api\.max_k", r.json()["error"]["message"])
    assert "api.max_depth" in c.post("/v1/search", json={"query": "bees", "k": 1, "depth": 21}).json()["error"]["message"]


def test_rate_limit_answers_429_with_retry_after(make_client):
    c = make_client(api__rate_limit_per_s=0.01, api__rate_limit_burst=2)
    body = {"query": "bees", "mode": "lexical", "k": 1}
    assert [c.post("/v1/search", json=body).status_code for _ in range(2)] == [200, 200]
    r = c.post("/v1/search", json=body)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    err = r.json()["error"]
    assert err["type"] == "too_many_requests" and "api.rate_limit_per_s" in err["message"] and err["request_id"]
    # probes are never limited; a client with an API key has its own bucket
    assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
    assert c.post("/v1/search", json=body, headers=WRITE).status_code == 200


def test_rate_limiter_refills():
    from semsearch.search_api.limits import RateLimiter

    rl = RateLimiter(rate=2.0, burst=1)
    assert rl.take("a", now=0.0) == 0.0
    assert rl.take("a", now=0.1) == pytest.approx(0.4)
    assert rl.take("b", now=0.1) == 0.0  # one bucket per client
    assert rl.take("a", now=0.6) == 0.0
    assert RateLimiter.client_key(API_KEY, "1.2.3.4") != RateLimiter.client_key(None, "1.2.3.4")
    assert API_KEY not in RateLimiter.client_key(API_KEY, None)


@pytest.mark.parametrize("limiter", ["local", "shared"])
def test_shared_rate_limiter_matches_the_local_one(tmp_path, limiter):
    from semsearch.search_api.limits import RateLimiter, SharedRateLimiter

    rl = RateLimiter(rate=2.0, burst=3) if limiter == "local" else SharedRateLimiter(tmp_path / "rl", 2.0, 3)
    assert [rl.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.take("a", now=0.0) == pytest.approx(0.5)
    assert rl.take("a", now=0.1) == pytest.approx(0.4)
    assert rl.take("b", now=0.1) == 0.0  # one bucket per client
    assert rl.take("a", now=0.6) == 0.0
    assert rl.take("a", now=0.6) == pytest.approx(0.4)  # 0.2 left after the refill to 1.2
    assert [rl.take("a", now=10.0) for _ in range(4)][-2:] == [0.0, pytest.approx(0.5)]  # refilled to burst


def test_shared_rate_limiter_is_one_bucket_for_every_process(tmp_path):
    """Two limiters on one file (two workers) draw from the same bucket, also when another
    process takes from it (a real process, not just a second mapping)."""
    import subprocess
    import sys

    from semsearch.search_api.limits import SharedRateLimiter

    a, b = SharedRateLimiter(tmp_path / "rl", 0.001, 4), SharedRateLimiter(tmp_path / "rl", 0.001, 4)
    assert [a.take("c", now=5.0), b.take("c", now=5.0)] == [0.0, 0.0]
    code = ("import sys; from semsearch.search_api.limits import SharedRateLimiter as S; "
            f"r = S({str(tmp_path / 'rl')!r}, 0.001, 4); print(r.take('c', now=5.0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=subprocess_env()).stdout
    assert float(out) == 0.0
    assert a.take("c", now=5.0) == 0.0
    assert b.take("c", now=5.0) > 0 and a.take("c", now=5.0) > 0  # 4 taken: empty for both
    assert a.take("d", now=5.0) == 0.0


def test_shared_rate_limiter_recycles_slots_when_the_table_is_full(tmp_path):
    from semsearch.search_api.limits import SharedRateLimiter

    rl = SharedRateLimiter(tmp_path / "rl", 1.0, 1, slots=16)
    assert all(rl.take(f"c{i}", now=0.0) == 0.0 for i in range(100))  # more clients than slots
    assert rl.take("c99", now=0.0) == pytest.approx(1.0)  # the last one still has its bucket
    assert rl.take("c0", now=5.0) == 0.0  # full buckets free their slots


def test_a_search_over_the_deadline_is_503(make_client, minilm):
    class Slow:
        name, dim = minilm.name, minilm.dim

        def encode(self, texts, *, batch_size=None):
            if texts != ["warm up"]:
                time.sleep(1.0)
            return minilm.encode(texts)

    c = make_client(encoder=Slow(), api__request_timeout_s=0.05)
    r = c.post("/v1/search", json={"query": "bees", "mode": "dense"})
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["type"] == "deadline_exceeded" and "api.request_timeout_s" in err["message"]
    assert c.post("/v1/search", json={"query": "bees", "mode": "lexical"}).status_code == 200


def test_writes_are_acknowledged_durable_and_refreshed_on_demand(make_client):
    c = make_client(indexing__refresh_interval=3600)  # no background refresh during the test
    doc = {"id": "new1", "title": "Axolotl", "text": "The axolotl regrows its limbs."}
    r = c.post("/v1/documents", json={"documents": [doc], "wait": False}, headers=WRITE)
    assert r.status_code == 200
    w = r.json()
    assert w["durable"] and not w["searchable"] and w["seq"] > 0
    status = c.get(f"/v1/writes/{w['seq']}").json()
    assert status == {"seq": w["seq"], "searchable": False, "searchable_seq": status["searchable_seq"],
                      "rejected": []}
    assert status["searchable_seq"] < w["seq"]
    assert c.get("/v1/documents/new1").json()["title"] == "Axolotl"  # durable: readable by id
    assert c.post("/v1/refresh").status_code == 401  # needs the write key
    r = c.post("/v1/refresh", headers=WRITE)
    assert r.status_code == 200 and r.json()["searchable_seq"] >= w["seq"] and r.json()["changed"] >= 1
    assert c.get(f"/v1/writes/{w['seq']}").json()["searchable"] is True
    hits = c.post("/v1/search", json={"query": "axolotl limbs", "mode": "lexical"}).json()["hits"]
    assert hits[0]["id"] == "new1"


def test_wait_is_capped_by_max_wait_s(make_client):
    c = make_client(indexing__refresh_interval=3600, api__max_wait_s=0.0)
    r = c.post("/v1/documents", json={"documents": [{"id": "w", "text": "waiting"}]}, headers=WRITE)
    assert r.status_code == 200 and r.json()["searchable"] is False


def test_metrics_after_requests(client):
    client.post("/v1/search", json={"query": "bees", "mode": "lexical"})
    client.post("/v1/search", json={"query": "bees", "mode": "hybrid"})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert re.search(r'semsearch_requests_total\{endpoint="/v1/search",method="POST",mode="lexical",status="200"\} [1-9]', text)
    assert re.search(r'semsearch_request_seconds_count\{endpoint="/v1/search",mode="hybrid"\} [1-9]', text)
    for channel in ("lexical", "dense"):
        assert re.search(rf'semsearch_channel_seconds_count\{{channel="{channel}"\}} [1-9]', text)
    assert re.search(r'semsearch_encoder_batch_size_count\{channel="dense"\} [1-9]', text)
    assert "semsearch_documents 12.0" in text
    assert re.search(r"semsearch_index_size_bytes [1-9]", text)
    for name in ("semsearch_pending_writes", "semsearch_refresh_seconds", "semsearch_channel_failures_total",
                 "semsearch_rerank_batch_size", "semsearch_segments", "semsearch_merge_seconds"):
        assert name in text


def test_refresh_is_measured(make_client):
    from semsearch import metrics

    c = make_client(indexing__refresh_interval=3600)
    before = metrics.snapshot("semsearch_refresh_seconds_count") or 0
    c.post("/v1/documents", json={"documents": [{"id": "m", "text": "metered"}], "wait": False}, headers=WRITE)
    assert metrics.snapshot("semsearch_pending_writes") >= 1
    c.post("/v1/refresh", headers=WRITE)
    assert metrics.snapshot("semsearch_refresh_seconds_count") == before + 1
    assert metrics.snapshot("semsearch_pending_writes") == 0


def test_stats_hide_paths_and_urls_without_the_key(client, index_dir):
    anon = client.get("/v1/stats")
    assert anon.status_code == 200
    assert str(index_dir) not in anon.text and "://" not in anon.text
    assert anon.json()["path"] == "[redacted]" and anon.json()["documents"] == 12
    admin = client.get("/v1/stats", headers=WRITE).json()
    assert admin["path"] == str(index_dir)


def test_redact():
    from semsearch.search_api.routes.stats import redact

    out = redact({"path": "rel/dir", "n": 3, "m": {"encoder": "/models/x", "name": "minilm",
                                                   "es": ["http://10.0.0.1:9200"]}})
    assert out == {"path": "[redacted]", "n": 3,
                   "m": {"encoder": "[redacted]", "name": "minilm", "es": ["[redacted]"]}}


def test_readyz_does_not_count_documents(client):
    svc = client.app.state.service

    def no_count():
        raise AssertionError("readyz must not COUNT the documents")

    svc.index.store.count = no_count
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_snippets_of_huge_texts_read_a_capped_prefix(make_client):
    c = make_client(api__max_snippet_source_chars=1000)
    text = "Bees visit flowers. " + "filler words here. " * 52_600 + "The word zebra appears only at the end."
    assert 990_000 < len(text) <= 1_000_000
    r = c.post("/v1/documents", json={"documents": [{"id": "huge", "title": "Huge", "text": text}]}, headers=WRITE)
    assert r.status_code == 200, r.text
    hit = next(h for h in c.post("/v1/search", json={"query": "zebra", "mode": "lexical", "k": 3}).json()["hits"]
               if h["id"] == "huge")
    snip = hit["snippet"]
    assert snip["truncated_end"] and "zebra" not in snip["text"] and len(snip["text"]) <= 1000


def test_search_log_lines_carry_the_request_id(client, caplog):
    import logging

    from semsearch.logs import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())
    # the search's own line is at DEBUG (at INFO its figures are on the one access line)
    with caplog.at_level(logging.DEBUG, logger="semsearch.search_api"):
        client.post("/v1/search", json={"query": "bees"}, headers={"X-Request-ID": "rid-42"})
    lines = [r for r in caplog.records if r.name == "semsearch.search_api.routes.search"]
    assert lines and all(getattr(r, "request_id", None) == "rid-42" for r in lines)
    assert "mode=hybrid" in lines[0].getMessage()
