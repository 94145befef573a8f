"""A capacity plan for the Elasticsearch store at 10M and 100M documents, computed from a
bench_es_store.py result (bytes per document, ingest rate, latency measured here) plus
Elasticsearch's published memory formulas for kNN (the vectors must fit the page cache).

    python benchmarks/capacity_plan.py bench-results/es_store_20000_3x1_int8_hnsw.json

Assumptions are printed with the plan: they are choices, not measurements.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from common import save, table


#: off-heap bytes per vector that kNN search wants in the page cache, by index type
#: (Elasticsearch "Tune approximate kNN search": int8 d+4, bbq d/8+14, float 4d) + the HNSW
#: graph, about 4 * m bytes per vector
def vector_ram_bytes(kind: str, dims: int, m: int = 16) -> float:
    per = {"int8_hnsw": dims + 4, "bbq_hnsw": dims / 8 + 14, "hnsw": 4 * dims}[kind]
    return per + 4 * m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("result", type=Path)
    ap.add_argument("--node-ram-gb", type=float, default=64, help="RAM of one data node")
    ap.add_argument("--node-cores", type=int, default=16)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--shard-gb", type=float, default=30, help="target primary shard size")
    args = ap.parse_args()
    r = json.loads(args.result.read_text())
    docs, dims = r["docs"], r["dims"]
    disk_per_doc = r["es_primary_store_mb"] * 1e6 / docs
    cores_measured = 2  # the whole 3-node cluster shared the 2-core development machine
    ingest_per_core = r["es_ingest_docs_per_s"] / cores_measured
    heap_gb = 31  # compressed oops limit; the rest of the node's RAM is page cache
    cache_gb = args.node_ram_gb - heap_gb if args.node_ram_gb > 2 * heap_gb else args.node_ram_gb / 2
    rows = []
    for n in (10_000_000, 100_000_000):
        for kind in ("int8_hnsw", "bbq_hnsw"):
            primary_disk_gb = disk_per_doc * n / 1e9
            total_disk_gb = primary_disk_gb * (1 + args.replicas)
            vec_gb = vector_ram_bytes(kind, dims) * n / 1e9 * (1 + args.replicas)
            shards = max(1, math.ceil(primary_disk_gb / args.shard_gb))
            nodes_ram = math.ceil(1.3 * vec_gb / cache_gb)  # 30% headroom: merges, queries, growth
            nodes_disk = math.ceil(1.3 * total_disk_gb / (0.85 * 2000))  # 2 TB disks, 85% watermark, merge headroom
            nodes = max(3, nodes_ram, nodes_disk)
            ingest_h = n / (ingest_per_core * nodes * args.node_cores) / 3600
            rows.append({
                "documents": f"{n // 1_000_000}M", "vector_index": kind,
                "primary_disk_gb": round(primary_disk_gb), "disk_with_replicas_gb": round(total_disk_gb),
                "vector_page_cache_gb": round(vec_gb, 1), "primary_shards": shards,
                "data_nodes": nodes, "bulk_ingest_hours": round(ingest_h, 1),
            })
    plan = {"source": str(args.result), "measured": {
        "docs": docs, "disk_bytes_per_doc_primary": round(disk_per_doc), "ingest_docs_per_s": r["es_ingest_docs_per_s"],
        "ingest_docs_per_s_per_core": round(ingest_per_core, 1), "latency": r["latency"]},
        "assumptions": {"node_ram_gb": args.node_ram_gb, "node_cores": args.node_cores, "heap_gb": heap_gb,
                        "page_cache_gb_per_node": cache_gb, "replicas": args.replicas, "shard_gb": args.shard_gb,
                        "disk_per_node_tb": 2, "ingest_scales_with_cores": True,
                        "disk_per_doc_as_measured_with_int8": True}, "plan": rows}
    out = save(f"capacity_plan_{args.result.stem}", plan)
    table(rows, f"capacity plan from {args.result.name} ({disk_per_doc:.0f} B/doc on disk, {ingest_per_core:.0f} docs/s per core)")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
