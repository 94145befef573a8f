"""Throughput of ``semsearch serve`` under a compiled load generator (wrk): C connections for
D seconds per scenario (lexical, hybrid; optionally Elasticsearch's own ``_search`` on the
same corpus for the lexical case), each after a short warm-up. Reports requests/s,
p50/p95/p99 latency and errors (socket errors and non-2xx answers); writes JSON and prints a
table. The server serves a COPY of the index (it opens its index for writing).

    sudo apt-get install -y wrk
    semsearch index --input ../shared/data/scifact/corpus.jsonl --index /tmp/scifact-index
    nice python benchmarks/bench_api_wrk.py --index /tmp/scifact-index --duration 15 \\
        --es-url http://127.0.0.1:9200 --es-index semsearch-scifact
    nice python benchmarks/bench_api_wrk.py --index /tmp/scifact-index --workers 1,2

``--workers 1,2`` runs every scenario against ``semsearch serve --workers 1``, then
``--workers 2`` (one writer and one reader process over the same index), in the same run;
server CPU then counts every process of the server.

With the Elasticsearch store (``--env SEMSEARCH_STORE__BACKEND=elasticsearch`` plus the
store's URL/index settings) there is no index directory: ``--index`` is left out and the
workers are stateless replicas over the store index (its settings must match the index's
manifest, e.g. shards, replicas and analyzer):

    nice python benchmarks/bench_api_wrk.py --workers 1,2,4 \
        --env SEMSEARCH_STORE__BACKEND=elasticsearch \
        --env SEMSEARCH_STORE__ELASTICSEARCH__URL=http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203 \
        --env SEMSEARCH_STORE__ELASTICSEARCH__INDEX=semsearch-bench-store ...

Request bodies cycle through the SciFact queries: ``{"query": q, "mode": m, "k": 10}`` with
the server's defaults otherwise (snippets and explain on). The Elasticsearch request is the
equivalent lexical search: ``multi_match`` (most_fields) on the ``all`` field, 10 hits with
title and metadata, and a highlighted fragment of the text (as our snippet).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEMSEARCH_SHARED_DATA") or next(
    (p / "shared" / "data" for p in (REPO.parent, REPO.parent.parent) if (p / "shared" / "data").exists()),
    REPO.parent / "shared" / "data"))
KEY = "bench-key"

LUA = r"""
local bodies = {%(bodies)s}
local i = 0
wrk.method = "POST"
wrk.path = "%(path)s"
wrk.headers["Content-Type"] = "application/json"
init = function(args)
  i = tonumber(args[1] or "0") or 0
end
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i %% #bodies) + 1])
end
local non2xx = 0
response = function(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,' ..
    '"p50_us":%%d,"p95_us":%%d,"p99_us":%%d,"mean_us":%%.1f,"max_us":%%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean, latency.max))
end
"""


def lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_script(path: Path, url_path: str, bodies: list[dict[str, Any]]) -> Path:
    text = LUA % {"bodies": ",\n".join(lua_string(json.dumps(b)) for b in bodies), "path": url_path}
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_queries(path: Path, limit: int) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()][:limit]


def server_pythonpath() -> str:
    """The server's PYTHONPATH: this checkout's src, then the caller's (extra packages)."""
    return os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)


def start_server(index: Path | None, port: int, log: Path, env_extra: dict[str, str], log_level: str,
                 workers: int = 1) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=server_pythonpath(), HF_HUB_OFFLINE="1", SEMSEARCH_API_KEY=KEY,
               SEMSEARCH_NO_PROGRESS="1", TOKENIZERS_PARALLELISM="false", **env_extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "semsearch", "serve", *(["--index", str(index)] if index else []),
         "--port", str(port), "--log-level", log_level, "--workers", str(workers)],
        env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200 and (
                    workers == 1 or len(_server_processes(proc.pid)) > workers):
                # every worker has answered (or at least exists): wait a little for the rest
                time.sleep(3 if workers > 1 else 0)
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not become ready")


def run_wrk(url: str, script: Path, connections: int, threads: int, duration: float) -> dict[str, Any]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s",
           "-s", str(script), url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"^WRKJSON (.*)$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout.strip()} {p.stderr.strip()}")
    w = json.loads(m.group(1))
    seconds = w["duration_us"] / 1e6
    socket_errors = w["connect"] + w["read"] + w["write"] + w["timeout"]
    ok = w["requests"] - w["status"]
    return {
        "requests": w["requests"],
        "errors": socket_errors + w["status"],
        "non_2xx": w["status"],
        "socket_errors": {k: w[k] for k in ("connect", "read", "write", "timeout")},
        "seconds": round(seconds, 2),
        "rps": round(ok / seconds, 1),
        "p50_ms": round(w["p50_us"] / 1000, 1),
        "p95_ms": round(w["p95_us"] / 1000, 1),
        "p99_ms": round(w["p99_us"] / 1000, 1),
        "mean_ms": round(w["mean_us"] / 1000, 1),
        "max_ms": round(w["max_us"] / 1000, 1),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_processes(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a server process and of its worker processes."""
    total = 0.0
    for p in _server_processes(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            continue
    return total


def connections_per_process(port: int) -> dict[str, int]:
    """Established client connections on ``port`` per server process (pid -> count), from
    ``ss``: with several workers, how the load generator's keep-alive connections were split
    (each stays with the worker that accepted it)."""
    try:
        out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    counts: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        counts[pid] = counts.get(pid, 0) + 1
    return dict(sorted(counts.items()))


def server_profile(url: str) -> dict[str, Any]:
    """Mean per-channel seconds and batch sizes from the server's /metrics."""
    text = httpx.get(url + "/metrics", timeout=30).text
    out: dict[str, Any] = {}
    for name in ("semsearch_channel_seconds", "semsearch_search_batch_size", "semsearch_encoder_batch_size"):
        for m in re.finditer(rf'^{name}_sum(\{{[^}}]*\}})? (\S+)$', text, re.M):
            labels = m.group(1) or ""
            count = re.search(rf'^{name}_count{re.escape(labels)} (\S+)$', text, re.M)
            n = float(count.group(1)) if count else 0.0
            if n:
                out[f"{name}{labels}"] = {"count": int(n), "mean": round(float(m.group(2)) / n, 5)}
    rebalanced = re.search(r"^semsearch_connections_rebalanced_total (\S+)$", text, re.M)
    if rebalanced:  # since the server started (warm-ups and earlier scenarios included)
        out["connections_rebalanced_total"] = int(float(rebalanced.group(1)))
    return out


def server_http() -> dict[str, bool]:
    """Whether the server's environment has uvloop and httptools (uvicorn uses them if so)."""
    code = "import importlib.util as u; print(*(u.find_spec(m) is not None for m in ('uvloop', 'httptools')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=server_pythonpath())).stdout.split()
    return {"uvloop": out[:1] == ["True"], "httptools": out[1:2] == ["True"]}


def serve_and_load(args: argparse.Namespace, index: Path | None, tmpd: Path, queries: list[str],
                   env_extra: dict[str, str], workers: int, results: dict[str, Any],
                   suffix: str) -> dict[str, Any]:
    """Start ``semsearch serve --workers N`` on ``index``, run every scenario (warm-up, then
    the measured run) into ``results``; returns the server's /v1/stats."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(index, port, tmpd / "server.log", env_extra, args.log_level, workers)
    try:
        stats = httpx.get(url + "/v1/stats", timeout=30).json()
        for mode in args.scenarios.split(","):
            bodies = [{"query": q, "mode": mode, "k": args.k} for q in queries]
            script = write_script(tmpd / f"{mode}.lua", "/v1/search", bodies)
            print(f"{mode}, {workers} worker(s): warm-up {args.warmup:g}s, then {args.connections} "
                  f"connections x {args.duration:g}s ...", file=sys.stderr)
            if args.warmup > 0:
                run_wrk(url, script, args.connections, args.threads, args.warmup)
            cpu0 = tree_cpu_seconds(proc.pid)
            splits: list[list[int]] = []  # connections per worker, every 2 s of the run
            stop = threading.Event()

            def probe(out: list[list[int]] = splits, done: threading.Event = stop) -> None:
                while not done.wait(min(2.0, args.duration / 2)):
                    out.append(sorted(connections_per_process(port).values(), reverse=True))

            prober = threading.Thread(target=probe, daemon=True)
            prober.start()
            res = results[mode + suffix] = run_wrk(url, script, args.connections, args.threads, args.duration)
            cpu = tree_cpu_seconds(proc.pid) - cpu0
            stop.set()
            prober.join()
            # the split 2 s in and at the end (with balancing, the busier worker sheds its
            # surplus in the first seconds), and the busiest worker's mean share
            res["connections_per_worker"] = splits[0] if splits else []
            res["connections_per_worker_end"] = splits[-1] if splits else []
            res["busiest_worker_share"] = round(sum(s[0] / max(1, sum(s)) for s in splits if s)
                                                / max(1, sum(1 for s in splits if s)), 3)
            # server CPU per answered request: what the machine's load does not change
            # much, and 1000 / it is the ceiling of one process that had a core to itself
            res["workers"] = workers
            res["server_cpu_s"] = round(cpu, 2)
            res["server_cpu_ms_per_req"] = round(1000 * cpu / max(1, res["requests"]), 3)
            res["server"] = server_profile(url)  # /metrics: every worker's, summed
    finally:
        proc.terminate()
        proc.wait(30)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmpd / "server.log", args.out.with_suffix(f".server-w{workers}.log"))
    return stats



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, default=None,
                    help="a semsearch index of the corpus (copied); none with the Elasticsearch store")
    ap.add_argument("--queries", type=Path, default=DATA / "scifact" / "queries.jsonl")
    ap.add_argument("--max-queries", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each scenario")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--scenarios", default="lexical,hybrid")
    ap.add_argument("--workers", default="1", help="server worker counts to compare, e.g. 1,2")
    ap.add_argument("--log-level", default="INFO", help="server log level (INFO = one access line per request)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server, repeatable")
    ap.add_argument("--es-url", default=None, help="also load Elasticsearch's _search (lexical)")
    ap.add_argument("--es-index", default="semsearch", help="the ES index holding the same corpus")
    ap.add_argument("--es-pid", type=int, default=None, help="the ES server's pid, to report its CPU per request")
    ap.add_argument("--es-warmup", type=float, default=60,
                    help="seconds of load before Elasticsearch is measured: its JIT takes a minute or more "
                         "to reach steady state (a fresh node answered 28, 137, 242, 289 req/s in its first "
                         "3 + 45 s and over 1,500 req/s once warm)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "api_wrk.json")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    env_extra = dict(e.split("=", 1) for e in args.env)
    es_store = env_extra.get("SEMSEARCH_STORE__BACKEND") == "elasticsearch"
    if not es_store and not (args.index and (args.index / "manifest.json").exists()):
        raise SystemExit(f"no index at {args.index}")
    queries = load_queries(args.queries, args.max_queries)
    load_start = os.getloadavg()
    results: dict[str, Any] = {}
    es_error = None
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        tmpd = Path(tmp)
        copy = None if es_store else tmpd / "index"
        if copy is not None:
            shutil.copytree(args.index, copy, ignore=shutil.ignore_patterns(".lock"))
        counts = [int(n) for n in args.workers.split(",")]
        for workers in counts:
            stats = serve_and_load(args, copy, tmpd, queries, env_extra, workers, results,
                                   suffix="" if len(counts) == 1 else f" w{workers}")
        if args.es_url:
            es = args.es_url.rstrip("/")
            bodies = [{"size": args.k, "track_total_hits": False, "_source": ["title", "metadata"],
                       "query": {"multi_match": {"query": q, "type": "most_fields", "fields": ["all"]}},
                       "highlight": {"fields": {"text": {"fragment_size": 240, "number_of_fragments": 1,
                                                          "no_match_size": 240}}}}
                      for q in queries]
            script = write_script(tmpd / "es.lua", f"/{args.es_index}/_search", bodies)
            print(f"elasticsearch _search: warm-up {args.es_warmup:g}s, then {args.duration:g}s ...", file=sys.stderr)
            try:
                if args.es_warmup > 0:
                    run_wrk(es, script, args.connections, args.threads, args.es_warmup)
                cpu0 = cpu_seconds(args.es_pid) if args.es_pid else None
                res = results["elasticsearch-lexical"] = run_wrk(es, script, args.connections, args.threads,
                                                                 args.duration)
                if cpu0 is not None:
                    res["server_cpu_s"] = round(cpu_seconds(args.es_pid) - cpu0, 2)
                    res["server_cpu_ms_per_req"] = round(1000 * res["server_cpu_s"] / max(1, res["requests"]), 3)
            except RuntimeError as e:  # the semsearch figures are still worth writing
                print(f"elasticsearch run failed: {e}", file=sys.stderr)
                es_error = str(e)
    report = {
        "benchmark": "api_wrk",
        "index": str(args.index) if args.index else f"Elasticsearch store {env_extra.get('SEMSEARCH_STORE__ELASTICSEARCH__INDEX')}",
        "documents": stats.get("documents"),
        "queries": len(queries),
        "connections": args.connections,
        "wrk_threads": args.threads,
        "duration_s": args.duration,
        "es_warmup_s": args.es_warmup if args.es_url else None,
        "k": args.k,
        "server_log_level": args.log_level,
        "server_env": env_extra,
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": load_start, "load_avg_at_end": os.getloadavg(),
                    "python": platform.python_version()},
        "server_http": server_http(),
        "results": results,
        "elasticsearch_error": es_error,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{'scenario':<24}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}{'requests':>10}"
          f"{'cpu ms/req':>12}  connections per worker (2 s in -> end)")
    for name, r in results.items():
        print(f"{name:<24}{r['rps']:>9}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}{r['requests']:>10}"
              f"{r.get('server_cpu_ms_per_req', ''):>12}  {'/'.join(map(str, r.get('connections_per_worker', [])))}"
              + (f" -> {'/'.join(map(str, r['connections_per_worker_end']))}" if r.get("connections_per_worker_end") else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
