"""Guard rails: server-side caps on what one search may ask for, and a per-client token
bucket. Every cap is a setting (``api.*``) and a request over one gets a 400 whose message
names the setting, whatever the request body asks."""

from __future__ import annotations

import hashlib
import math
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any

from semsearch import metrics
from semsearch.config import Settings
from semsearch.search_api.errors import LimitExceeded
from semsearch.sharedmem import map_shared_file

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows; SharedRateLimiter needs it
    fcntl = None  # type: ignore[assignment]


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


class SharedRateLimiter:
    """:class:`RateLimiter`'s token buckets in a memory-mapped file that every worker process
    of one server maps (``semsearch serve --workers N`` puts it in the server's private run
    directory), so that a client gets ``rate`` requests a second from the server, whichever
    worker answers, not ``rate`` from each.

    The file is a fixed open-addressing table of ``slots`` buckets (32 bytes each: the key's
    64-bit hash, tokens, last time); a client's bucket is one of ``PROBE`` slots after its
    hash. A take locks the file (``flock``, held for a few microseconds), refills, takes and
    writes back: O(1), no allocation, a few microseconds (a SQLite row per client took
    70-100 us). Time is ``time.monotonic()``, one clock for every process of the machine. A
    slot whose bucket has refilled completely is free again (a full bucket is the same as no
    bucket); with more than ~``slots`` clients active at once, the least recently seen of
    ``PROBE`` neighbours is recycled, and that client starts again from a full bucket."""

    PROBE = 8
    _SLOT = struct.Struct("<Qdd8x")  # key hash (0 = empty), tokens, last

    def __init__(self, path: Path | str, rate: float, burst: int, *, slots: int = 65536) -> None:
        self.rate, self.burst, self.path, self.slots = rate, burst, Path(path), slots
        self._full_after = burst / rate
        size = slots * self._SLOT.size
        self._lock = threading.Lock()  # flock does not exclude threads sharing one descriptor
        self._fd, self._map = map_shared_file(self.path, size)  # zeros: every slot empty

    client_key = staticmethod(RateLimiter.client_key)

    def take(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1
        slot, m, rec = self._SLOT, self._map, self._SLOT.size
        first = h % self.slots
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                found = free = victim = -1
                victim_at = float("inf")
                for i in range(self.PROBE):
                    off = ((first + i) % self.slots) * rec
                    kh, t, at = slot.unpack_from(m, off)
                    if kh == h:
                        found = off
                        break
                    if kh == 0 or now - at >= self._full_after:  # free, or as good as free
                        if free < 0:
                            free = off
                    elif at < victim_at:
                        victim, victim_at = off, at
                if found >= 0:
                    pos, tokens = found, min(float(self.burst), t + max(0.0, now - at) * self.rate)
                else:
                    pos, tokens, at = (free if free >= 0 else victim), float(self.burst), now
                wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
                slot.pack_into(m, pos, h, tokens - 1 if wait == 0 else tokens, max(now, at))
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return wait

    def close(self) -> None:
        with self._lock:
            self._map.close()
            os.close(self._fd)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
