"""Guard rails: server-side caps on what one search may ask for, and a per-client token
bucket. Every cap is a setting (``api.*``) and a request over one gets a 400 whose message
names the setting, whatever the request body asks."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import Any

from semsearch import metrics
from semsearch.config import Settings
from semsearch.search_api.errors import LimitExceeded


def _cap(what: str, value: int, limit: int, setting: str) -> None:
    if value > limit:
        metrics.count_rejected("limit")
        raise LimitExceeded(f"{what} must be <= {limit} (the server's {setting}), got {value}")


def filter_terms(filters: dict[str, Any] | None) -> int:
    """Size of a metadata filter: its nodes and values (:func:`semsearch.filters.size`); a
    filter that does not parse is a 400 naming the problem."""
    from semsearch.filters import parse_filter, size

    f = parse_filter(filters, max_values=2**31)
    return 0 if f is None else size(f)


def check_search(req: Any, settings: Settings) -> None:
    """Raise :class:`LimitExceeded` when a search request is over a cap."""
    api = settings.api
    _cap("k", req.k, api.max_k, "api.max_k")
    _cap("offset", req.offset, api.max_offset, "api.max_offset")
    _cap("offset + k", req.offset + req.k, settings.search.max_k, "search.max_k")
    if req.depth is not None:
        _cap("depth", req.depth, api.max_depth, "api.max_depth")
    if req.rerank_depth is not None:
        _cap("rerank_depth", req.rerank_depth, api.max_rerank_depth, "api.max_rerank_depth")
    _cap("query length", len(req.query), api.max_query_chars, "api.max_query_chars")
    _cap("filter size (fields + list values)", filter_terms(req.filters), api.max_filter_terms,
         "api.max_filter_terms")


class RateLimiter:
    """One token bucket per client: ``rate`` tokens a second up to ``burst``; a request takes
    one. ``take`` returns 0 when the request may go ahead, else the seconds until a token is
    there (the ``Retry-After``). Buckets of idle clients are dropped (they would be full)."""

    def __init__(self, rate: float, burst: int, *, max_clients: int = 100_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    @staticmethod
    def client_key(api_key: str | None, address: str | None) -> str:
        if api_key:  # never keep the key itself in memory longer than the request
            return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
        return "addr:" + (address or "-")

    def take(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                if len(self._buckets) > self.max_clients:
                    self._prune(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate
        for k in [k for k, (_, t) in self._buckets.items() if now - t >= full]:
            del self._buckets[k]


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
