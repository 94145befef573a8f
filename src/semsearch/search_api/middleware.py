"""ASGI middleware: request ids, the per-client rate limit, the request body size limit,
request metrics and structured access logs."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semsearch import metrics
from semsearch.logs import request_id
from semsearch.search_api.balance import ConnectionBalancer
from semsearch.search_api.limits import RateLimiter, SharedRateLimiter, retry_after

access_logger = logging.getLogger("semsearch.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: never rate limited: probes and scrapes
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


class _RequestIds:
    """New request ids: this process's random 64-bit prefix and a counter (32 hex digits, as
    a UUID's). Unique across processes and restarts like ``uuid4`` without its ``getrandom``
    call per request (3% of a lexical search's CPU under load); a forked child draws a new
    prefix."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


new_request_id = _RequestIds()


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


def _api_key(scope: Scope) -> str | None:
    key = _header(scope, b"x-api-key")
    if key:
        return key
    auth = _header(scope, b"authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


class RequestContextMiddleware:
    """Gives every request an id (the client's ``X-Request-ID`` when it is safe, else a new
    one), returns it in the response and sets it in :data:`semsearch.logs.request_id` so that
    every log line of the request carries it; answers 429 with ``Retry-After`` to a client
    over its token bucket (``api.rate_limit_per_s``; the client is its API key, else its
    address); rejects bodies over ``max_body_bytes`` with 413; counts the request in
    ``/metrics`` (by route template and search mode) and logs one JSON line per request on
    the ``semsearch.access`` logger. ``worker``: with several worker processes, a function
    whose answer (the process id and role) goes in an ``X-Semsearch-Worker`` header.
    ``rate_limit_file``: the buckets live in this file, shared by every process that names
    it (several workers), rather than in this process's memory. ``balancer``: with several
    workers, decides which responses close their keep-alive connection so that the workers
    keep even shares of the connections (:mod:`~semsearch.search_api.balance`)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, rate_limit_per_s: float = 0.0,
                 rate_limit_burst: int = 50, rate_limit_file: Path | None = None,
                 worker: Callable[[], str] | None = None,
                 balancer: ConnectionBalancer | None = None) -> None:
        self.app = app
        self.worker = worker
        self.balancer = balancer
        self.max_body_bytes = max_body_bytes
        self.limiter: RateLimiter | SharedRateLimiter | None = None
        if rate_limit_per_s > 0:
            self.limiter = (SharedRateLimiter(rate_limit_file, rate_limit_per_s, rate_limit_burst)
                            if rate_limit_file is not None else RateLimiter(rate_limit_per_s, rate_limit_burst))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        given = _header(scope, b"x-request-id")
        rid = given if given and _SAFE_ID.match(given) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        token = request_id.set(rid)
        status = {"code": 500}
        limit = self.max_body_bytes

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
                if self.worker is not None:
                    message["headers"].append((b"x-semsearch-worker", self.worker().encode()))
                client = scope.get("client")
                if (self.balancer is not None and client
                        and all(k.lower() != b"connection" for k, _ in message["headers"])
                        and self.balancer.should_close(tuple(client))):
                    message["headers"].append((b"connection", b"close"))
                    metrics.count_rebalanced()
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body is larger than the limit of {limit} bytes")
            return message

        try:
            wait = 0.0
            if self.limiter is not None and scope.get("path") not in EXEMPT:
                client = scope.get("client")
                wait = self.limiter.take(RateLimiter.client_key(_api_key(scope), client[0] if client else None))
            length = _header(scope, b"content-length")
            if wait > 0:
                metrics.count_rejected("rate_limit")
                await self._reject(send_wrapper, rid, 429, "too_many_requests",
                                   f"rate limit of {self.limiter.rate:g} requests/s (burst "  # type: ignore[union-attr]
                                   f"{self.limiter.burst}) exceeded (api.rate_limit_per_s); retry "  # type: ignore[union-attr]
                                   f"after {retry_after(wait)} s",
                                   [(b"retry-after", retry_after(wait).encode())], close=False)
            elif length is not None and length.isdigit() and int(length) > limit:
                await self._reject(send_wrapper, rid, 413, "payload_too_large",
                                   f"request body of {length} bytes is larger than the limit of {limit} bytes")
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            request_id.reset(token)
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "other"
            seconds = time.perf_counter() - t0
            metrics.observe_request(endpoint, scope.get("method", ""), status["code"],
                                    state.get("mode") or "-", seconds)
            self._log(scope, rid, status["code"], seconds, received)

    @staticmethod
    async def _reject(send: Send, rid: str, status: int, type_: str, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None, *, close: bool = True) -> None:
        body = json.dumps({"error": {"status": status, "type": type_,
                                     "message": message, "request_id": rid}}).encode()
        hs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
              *(headers or [])]
        if close:
            hs.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": hs})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _log(scope: Scope, rid: str, status: int, seconds: float, received: int) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        entry: dict[str, Any] = {
            "event": "access",
            "request_id": rid,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
            "bytes_in": received,
            "client": f"{client[0]}:{client[1]}" if client else None,
        }
        state = scope.get("state", {})
        if state.get("mode"):
            entry["mode"] = state["mode"]
        entry.update(state.get("search") or {})  # a search's k, offset, hits, took_ms, degraded
        access_logger.info(json.dumps(entry))
