"""Where a search on the Elasticsearch store spends its time, per mode: the client's wall
time, and inside it the query encoder, the one ``_msearch`` round trip (with the server's
own ``took`` of each search in it) and the ``mget`` of the page's documents. Runs against
an index that ``bench_es_store.py --keep`` left behind; prints a table and saves JSON.

    PYTHONPATH=src:benchmarks python benchmarks/profile_es_store.py \\
        --url http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203 [--queries 100]
"""

from __future__ import annotations

import argparse
import os
import statistics as st
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import load_queries, save, table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203")
    ap.add_argument("--index", default="semsearch-bench-store")
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()

    from semsearch.collection import SearchRequest
    from semsearch.config import Settings
    from semsearch.encoders import make_text_encoder
    from semsearch.store_es import ElasticsearchCollection

    s = Settings()
    s.no_progress = True
    s.text_encoder.device = "cpu"
    s.store.backend = "elasticsearch"
    e = s.store.elasticsearch
    e.url, e.index, e.analyzer, e.shards, e.replicas = args.url, args.index, "semsearch_en", args.shards, args.replicas
    qenc = make_text_encoder(s.text_encoder, for_queries=True)
    qenc.encode(["warm up"])
    col = ElasticsearchCollection(s, encoder=qenc)
    _, queries, _ = load_queries("test")
    queries = queries[: args.queries]

    calls: list[tuple[str, float, list[Any] | None]] = []

    def spy(name: str, fn: Any, took: bool = False) -> Any:
        def wrapped(arg: Any) -> Any:
            t = time.perf_counter()
            out = fn(arg)
            calls.append((name, time.perf_counter() - t, [r.get("took") for r in out] if took else None))
            return out
        return wrapped

    col._msearch = spy("msearch", col._msearch, took=True)
    col.get = spy("mget", col.get)
    qenc.encode = spy("encode", qenc.encode)

    rows, result = [], {"docs": col.stats()["documents"], "queries": len(queries),
                        "num_candidates_factor": e.num_candidates_factor, "modes": {}}
    for mode in ("lexical", "dense", "hybrid"):
        for q in queries[:5]:  # warm-up
            col.search(SearchRequest(query=q, k=10, mode=mode))
        calls.clear()
        wall = []
        for q in queries:
            t = time.perf_counter()
            col.search(SearchRequest(query=q, k=10, mode=mode))
            wall.append(time.perf_counter() - t)
        parts: dict[str, Any] = {}
        for name, sec, took in calls:
            p = parts.setdefault(name, {"calls": 0, "seconds": 0.0, "took": []})
            p["calls"] += 1
            p["seconds"] += sec
            if took:
                p["took"].append(took)
        row: dict[str, Any] = {"mode": mode, "wall p50": round(1000 * st.median(wall), 1),
                               "wall mean": round(1000 * st.mean(wall), 1)}
        for name in ("encode", "msearch", "mget"):  # mean per search
            p = parts.get(name)
            row[name] = round(1000 * p["seconds"] / len(queries), 1) if p else 0.0
        took = parts.get("msearch", {}).get("took") or []
        row["server took p50"] = "/".join(f"{st.median(x):.0f}" for x in zip(*took))
        rows.append(row)
        result["modes"][mode] = row
    col.close()
    out = save("profile_es_store", result)
    table(rows, "a search on the Elasticsearch store, by part (ms; took = server time per search in the _msearch)")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
