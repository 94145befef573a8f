"""Keep-alive connections balanced over the worker processes of one server
(:mod:`semsearch.search_api.balance`)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from semsearch import metrics
from semsearch.search_api.balance import ConnectionBalancer
from semsearch.search_api.middleware import RequestContextMiddleware


def _window(b: ConnectionBalancer, clients: range | list[int], now: float) -> list[int]:
    """One request from each client at ``now``; the clients told to close."""
    return [c for c in clients if b.should_close(("127.0.0.1", c), now)]


def _other_process_reports(path, count: int, now: float) -> None:
    """Another worker process (a real one: its own pid) publishes ``count`` connections."""
    code = ("import sys; from semsearch.search_api.balance import ConnectionBalancer as B; "
            "b = B(sys.argv[1], 2, window_s=1.0); "
            "[b.should_close(('10.0.0.1', c), float(sys.argv[3])) for c in range(int(sys.argv[2]))]; "
            "b.should_close(('10.0.0.1', 0), float(sys.argv[3]) + 1.0)")
    subprocess.run([sys.executable, "-c", code, str(path), str(count), str(now)], check=True)


def test_a_process_over_its_share_closes_the_surplus_once_each(tmp_path):
    path = tmp_path / "connections"
    b = ConnectionBalancer(path, 2, window_s=1.0, slack=1)
    assert _window(b, range(29), 0.0) == []  # nothing known yet: nothing closed
    _other_process_reports(path, 21, 0.0)  # the other worker: 21 connections, counted at t=1
    # the end of the first window: 29 of 50 here, fair share 25 (+1 slack): 3 close
    closed = _window(b, range(29), 1.0) + _window(b, range(29), 1.5)
    assert len(closed) == 3 and len(set(closed)) == 3
    assert b.closed == 3
    b.close()


def test_an_even_split_closes_nothing(tmp_path):
    path = tmp_path / "connections"
    b = ConnectionBalancer(path, 2, window_s=1.0, slack=1)
    _window(b, range(26), 0.0)
    _other_process_reports(path, 24, 0.0)
    assert _window(b, range(26), 1.0) == []  # 26 <= 25 + 1
    b.close()


def test_a_silent_process_counts_as_none(tmp_path):
    path = tmp_path / "connections"
    b = ConnectionBalancer(path, 2, window_s=1.0, slack=1)
    _window(b, range(50), 0.5)
    _other_process_reports(path, 25, 0.0)  # counted at t=1, then silent
    # at t=1.5 the other count is fresh: 75 in all, fair share 38 (+1): 11 close
    assert len(_window(b, range(50), 1.5)) == 11
    # at t=11 it is 10 s old and read as 0: the 39 left here are all, fair share 20 (+1): 18
    assert len(_window(b, range(50), 11.0)) == 18
    b.close()


def test_a_dead_process_slot_is_reused(tmp_path):
    path = tmp_path / "connections"
    _other_process_reports(path, 3, 0.0)
    b = ConnectionBalancer(path, 2, slots=1)  # the one slot belonged to a process that exited
    b.close()


def test_workers_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="workers must be >= 1"):
        ConnectionBalancer(tmp_path / "c", 0)


def _app(balancer: ConnectionBalancer | None) -> RequestContextMiddleware:
    async def ok(request):  # noqa: ANN001, ANN202
        return JSONResponse({"ok": True})

    return RequestContextMiddleware(Starlette(routes=[Route("/x", ok)]), max_body_bytes=1024,
                                    balancer=balancer)


def test_the_middleware_closes_the_connections_the_balancer_names(tmp_path):
    path = tmp_path / "connections"
    b = ConnectionBalancer(path, 2, window_s=0.05, slack=0)
    with TestClient(_app(b)) as client:  # one client address: one connection
        first = client.get("/x")
        assert first.status_code == 200 and "connection" not in first.headers
        # the other worker reported nothing: this process has 1 of 1, fair share 1: none closed
        time.sleep(0.06)
        assert "connection" not in client.get("/x").headers
    assert b.closed == 0
    # a process that holds 2 of 2 connections, fair share 1: one response closes
    b2 = ConnectionBalancer(tmp_path / "c2", 2, window_s=0.05, slack=0)
    app = _app(b2)
    before = metrics.snapshot("semsearch_connections_rebalanced_total") or 0.0
    with TestClient(app, client=("10.1.1.1", 1000)) as c1, TestClient(app, client=("10.1.1.1", 1001)) as c2:
        c1.get("/x"), c2.get("/x")
        time.sleep(0.06)
        answers = [c1.get("/x"), c2.get("/x"), c1.get("/x"), c2.get("/x")]
    closing = [r for r in answers if r.headers.get("connection") == "close"]
    assert len(closing) == 1 and closing[0].status_code == 200 and closing[0].json() == {"ok": True}
    assert b2.closed == 1
    if metrics.ENABLED:  # counted in /metrics
        assert metrics.snapshot("semsearch_connections_rebalanced_total") == before + 1
    b.close(), b2.close()
