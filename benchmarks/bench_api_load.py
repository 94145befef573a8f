"""Load benchmark of the REST API: N concurrent clients for D seconds against a real
``semsearch serve`` process on 127.0.0.1, per search mode (lexical, hybrid, and
hybrid+rerank when the build has a reranker). Reports requests/s, p50/p95/p99 latency and
errors; writes JSON to bench-results/api_load.json and prints a table.

The server opens its index for writing, so it serves a COPY of the given index.

    python benchmarks/bench_api_load.py --index /work/cache/scifact-index \\
        --queries ../shared/data/scifact/queries.jsonl --clients 50 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data"))
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_queries(path: Path, limit: int) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line)["text"])
    return out[:limit]


def start_server(index: Path, port: int, log: Path, env_extra: dict[str, str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", SEMSEARCH_API_KEY=KEY,
               SEMSEARCH_NO_PROGRESS="1", TOKENIZERS_PARALLELISM="false", **env_extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "semsearch", "serve", "--index", str(index), "--port", str(port),
         "--log-level", "WARNING"],
        env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not become ready")


async def run_load(url: str, body: dict, queries: list[str], clients: int, duration: float,
                   warmup: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = 0
    first_errors: list[str] = []
    t_start = time.perf_counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker(stop_at: float, record: bool) -> None:
            nonlocal counter
            while time.perf_counter() < stop_at:
                q = queries[counter % len(queries)]
                counter += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/search", json={**body, "query": q})
                    status = str(r.status_code) if r.status_code != 200 else None
                except httpx.HTTPError as e:
                    status = type(e).__name__
                    if record and len(first_errors) < 5:
                        first_errors.append(f"{time.perf_counter() - t_start:.2f}s {e!r}")
                if record:
                    if status is None:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors[status] = errors.get(status, 0) + 1

        if warmup > 0:
            end = time.perf_counter() + warmup
            await asyncio.gather(*(worker(end, False) for _ in range(clients)))
        t0 = time.perf_counter()
        end = t0 + duration
        await asyncio.gather(*(worker(end, True) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "first_errors": first_errors,
        "seconds": round(elapsed, 2),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "mean_ms": round(float(np.mean(lat)), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, default=Path(os.environ.get("SEMSEARCH_BENCH_INDEX", "/work/cache/scifact-index")))
    ap.add_argument("--queries", type=Path, default=DATA / "scifact" / "queries.jsonl")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-queries", type=int, default=1000)
    ap.add_argument("--batch-window-ms", type=float, default=None,
                    help="server's SEMSEARCH_API__BATCH_WINDOW_MS (default: the server default)")
    ap.add_argument("--scenarios", default="lexical,hybrid,hybrid+rerank",
                    help="comma-separated; hybrid+rerank runs only when the server has a reranker")
    ap.add_argument("--out", type=Path, default=REPO / "bench-results" / "api_load.json")
    args = ap.parse_args()
    if not (args.index / "manifest.json").exists():
        raise SystemExit(f"no index at {args.index}")
    queries = load_queries(args.queries, args.max_queries)
    env_extra = {} if args.batch_window_ms is None else {"SEMSEARCH_API__BATCH_WINDOW_MS": str(args.batch_window_ms)}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        copy = Path(tmp) / "index"
        shutil.copytree(args.index, copy, ignore=shutil.ignore_patterns(".lock"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(copy, port, Path(tmp) / "server.log", env_extra)
        try:
            stats = httpx.get(url + "/v1/stats", timeout=30).json()
            scenarios = {"lexical": {"mode": "lexical"}, "hybrid": {"mode": "hybrid"}}
            if stats["features"].get("rerank"):
                scenarios["hybrid+rerank"] = {"mode": "hybrid", "rerank": True}
            wanted = args.scenarios.split(",")
            scenarios = {k: v for k, v in scenarios.items() if k in wanted}
            results = {}
            for name, body in scenarios.items():
                print(f"running {name}: {args.clients} clients x {args.duration:.0f}s ...", file=sys.stderr)
                results[name] = asyncio.run(run_load(url, {**body, "k": args.k}, queries,
                                                     args.clients, args.duration, args.warmup))
        finally:
            proc.terminate()
            proc.wait(30)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(tmp) / "server.log", args.out.with_suffix(".server.log"))
    report = {
        "benchmark": "api_load",
        "index": str(args.index),
        "documents": stats["documents"],
        "queries": len(queries),
        "clients": args.clients,
        "duration_s": args.duration,
        "k": args.k,
        "batch_window_ms": args.batch_window_ms,
        "rerank_available": bool(stats["features"].get("rerank")),
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "python": platform.python_version()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{'scenario':<15}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}{'requests':>10}")
    for name, r in results.items():
        print(f"{name:<15}{r['rps']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}{r['requests']:>10}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
