"""Prometheus metrics: every metric object lives here, behind small functions that the core
calls (``observe_refresh(seconds)``, ``set_pending(n)``, ...), so core code never touches
prometheus-client itself and the index core can report merges and segments later.

The metrics are registered on :data:`REGISTRY` (not the global default one), which
``GET /metrics`` exposes. When prometheus-client is not installed every function is a
no-op: the library works without the ``api`` extra.

Several processes (``semsearch serve --workers N``): the serve command points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh private directory before the workers start, so
prometheus-client keeps every value in a memory-mapped file per process and
:func:`exposition` sums them over all workers (prometheus-client's multiprocess mode):
counters and histograms add up, dead workers' counts included (a counter never goes
down); the index gauges show the value last set by a live worker (``livemostrecent``: they
describe the one shared index, not a process). Files of dead workers' gauges are removed
(:func:`forget_dead_workers`).
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

from semsearch.sharedmem import process_alive

try:
    from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
except ImportError:  # pragma: no cover - the api extra brings it
    CollectorRegistry = None  # type: ignore[assignment,misc]
    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ENABLED = CollectorRegistry is not None
#: the environment variable of prometheus-client's multiprocess mode (read when it is imported)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: latency buckets from 1 ms to 30 s
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

if ENABLED:
    REGISTRY = CollectorRegistry(auto_describe=True)
    REQUESTS = Counter("semsearch_requests_total", "HTTP requests answered",
                       ["endpoint", "method", "status", "mode"], registry=REGISTRY)
    REQUEST_SECONDS = Histogram("semsearch_request_seconds", "HTTP request latency",
                                ["endpoint", "mode"], buckets=_LATENCY, registry=REGISTRY)
    CHANNEL_SECONDS = Histogram("semsearch_channel_seconds", "one retrieval channel's time for a batch of queries",
                                ["channel"], buckets=_LATENCY, registry=REGISTRY)
    CHANNEL_FAILURES = Counter("semsearch_channel_failures_total", "retrieval channel failures",
                               ["channel"], registry=REGISTRY)
    ENCODER_BATCH = Histogram("semsearch_encoder_batch_size", "queries per query-encoder call",
                              ["channel"], buckets=_SIZES, registry=REGISTRY)
    RERANK_BATCH = Histogram("semsearch_rerank_batch_size", "query-document pairs per rerank call",
                             buckets=_SIZES, registry=REGISTRY)
    SEARCH_BATCH = Histogram("semsearch_search_batch_size", "queries per micro-batch of the API",
                             buckets=_SIZES, registry=REGISTRY)
    #: gauges of the shared index: with several workers, the value a live worker set last
    _INDEX_GAUGE: dict[str, Any] = {"registry": REGISTRY, "multiprocess_mode": "livemostrecent"}
    PENDING = Gauge("semsearch_pending_writes", "acknowledged changes not yet searchable", **_INDEX_GAUGE)
    REFRESH_SECONDS = Histogram("semsearch_refresh_seconds", "time of a refresh that makes writes searchable",
                                buckets=_LATENCY, registry=REGISTRY)
    REFRESH_FAILURES = Counter("semsearch_refresh_failures_total", "failed refreshes", registry=REGISTRY)
    MERGE_SECONDS = Histogram("semsearch_merge_seconds", "time of a segment merge", buckets=_LATENCY,
                              registry=REGISTRY)
    SEGMENTS = Gauge("semsearch_segments", "live index segments", **_INDEX_GAUGE)
    DOCUMENTS = Gauge("semsearch_documents", "documents in the index", **_INDEX_GAUGE)
    INDEX_BYTES = Gauge("semsearch_index_size_bytes", "bytes of the index directory", **_INDEX_GAUGE)
    REJECTED = Counter("semsearch_rejected_total", "requests refused by a guard rail",
                       ["reason"], registry=REGISTRY)
    REBALANCED = Counter("semsearch_connections_rebalanced_total",
                         "keep-alive connections a worker closed because it held more than its share",
                         registry=REGISTRY)


def observe_request(endpoint: str, method: str, status: int, mode: str, seconds: float) -> None:
    if ENABLED:
        REQUESTS.labels(endpoint, method, str(status), mode).inc()
        REQUEST_SECONDS.labels(endpoint, mode).observe(seconds)


def observe_channel(channel: str, seconds: float, *, failed: bool = False) -> None:
    if ENABLED:
        CHANNEL_SECONDS.labels(channel).observe(seconds)
        if failed:
            CHANNEL_FAILURES.labels(channel).inc()


def observe_encoder_batch(channel: str, n: int) -> None:
    if ENABLED:
        ENCODER_BATCH.labels(channel).observe(n)


def observe_rerank_batch(n: int) -> None:
    if ENABLED:
        RERANK_BATCH.observe(n)


def observe_search_batch(n: int) -> None:
    if ENABLED:
        SEARCH_BATCH.observe(n)


def observe_refresh(seconds: float, *, failed: bool = False) -> None:
    if ENABLED:
        if failed:
            REFRESH_FAILURES.inc()
        else:
            REFRESH_SECONDS.observe(seconds)


def observe_merge(seconds: float) -> None:
    if ENABLED:
        MERGE_SECONDS.observe(seconds)


def set_segments(n: int) -> None:
    if ENABLED:
        SEGMENTS.set(n)


def set_pending(n: int) -> None:
    if ENABLED:
        PENDING.set(max(0, n))


def set_index_size(documents: int, size_bytes: int) -> None:
    if ENABLED:
        DOCUMENTS.set(documents)
        INDEX_BYTES.set(size_bytes)


def count_rejected(reason: str) -> None:
    """A request refused by a guard rail: ``limit``, ``rate_limit``, ``deadline``."""
    if ENABLED:
        REJECTED.labels(reason).inc()


def count_rebalanced() -> None:
    if ENABLED:
        REBALANCED.inc()


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, when this process is in it."""
    path = os.environ.get(MULTIPROC_ENV)
    return path if ENABLED and path and os.path.isdir(path) else None


_PID_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def forget_dead_workers(path: str) -> list[int]:
    """Remove the live-gauge files of processes that no longer run (a worker that was
    killed, or exited, and was replaced); their counters and histograms stay counted. Returns
    the pids forgotten."""
    from prometheus_client import multiprocess

    dead = set()
    for f in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        m = _PID_FILE.match(os.path.basename(f))
        if m and not process_alive(int(m.group(1))):
            dead.add(int(m.group(1)))
    for pid in dead:
        try:
            multiprocess.mark_process_dead(pid, path)
        except FileNotFoundError:  # another worker's scrape removed it first
            pass
    return sorted(dead)


def worker_exiting() -> None:
    """A worker process shuts down: its live gauges stop counting (multiprocess mode)."""
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), path)


def exposition() -> tuple[bytes, str]:
    """The Prometheus text format of every metric, and its content type; in multiprocess
    mode, summed over every worker process."""
    if not ENABLED:
        return b"# prometheus-client is not installed (pip install 'semsearch[api]')\n", CONTENT_TYPE
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY), CONTENT_TYPE
    from prometheus_client import multiprocess

    forget_dead_workers(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)
    return generate_latest(registry), CONTENT_TYPE


def snapshot(name: str, **labels: Any) -> float | None:
    """The current value of one sample (tests and benchmarks)."""
    if not ENABLED:
        return None
    return REGISTRY.get_sample_value(name, labels or None)
