"""The Elasticsearch store at scale, against the embedded engine in the same run: bulk
ingest docs/s into the cluster (encoding excluded: vectors are given), index size, and query
latency p50/p95 for lexical, dense and hybrid at 100k documents (query encoding included
in both, one query at a time, k=10, documents returned).

Corpus and vectors as in bench_hybrid.py: common.synth_corpus (SciFact abstracts with a
third of their words swapped) and SciFact MiniLM vectors plus small noise (cached under
.cache/bench). The embedded engine uses FAISS HNSW32 (the approximate index one would use
at this size); Elasticsearch uses its default int8 HNSW (m 16, ef_construction 100).

    python benchmarks/bench_es_store.py --url http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203 \\
        [--docs 100000] [--queries 200] [--shards 3] [--replicas 1] [--bulk-recipe]

``--bulk-recipe`` loads as Elasticsearch advises for bulk loads (``number_of_replicas: 0``,
``refresh_interval: -1``), then restores the replicas (recovered by copying segment files,
not by indexing again) and the refresh interval; ingest time then runs until green.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import dir_size_mb, load_queries, percentiles, save, synth_corpus, table, time_each  # noqa: E402


def vectors(n: int, corpus: list[dict], encoder, random_base: bool = False) -> np.ndarray:
    base_n = min(5183, n)
    rng = np.random.default_rng(0)
    if random_base:  # no SciFact encoding: 5,183 random unit vectors as the base
        base = rng.normal(size=(base_n, 384)).astype(np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
    else:
        from bench_hybrid import scifact_vectors

        base = scifact_vectors([f"{d['title']} {d['text']}" for d in corpus[:base_n]], encoder)
    v = np.tile(base, (-(-n // base_n), 1))[:n] + rng.normal(scale=0.02, size=(n, base.shape[1])).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


def store_settings(settings, args):  # noqa: ANN001, ANN201 - (Settings, argparse.Namespace) -> Settings
    """``settings`` with the Elasticsearch store of the command line (url, index, shards,
    replicas, vector index, bulk threads and chunk size)."""
    es_settings = settings.model_copy(deep=True)
    es_settings.store.backend = "elasticsearch"
    e = es_settings.store.elasticsearch
    e.url, e.index, e.analyzer = args.url, args.index, "semsearch_en"
    e.shards, e.replicas, e.vector_index = args.shards, args.replicas, args.vector_index
    e.bulk_threads, e.chunk_size, e.request_timeout = args.bulk_threads, args.chunk, 120.0
    return es_settings


def bulk_load(col, docs: list, vecs: np.ndarray, encoder_name: str, *, refresh_off: bool,  # noqa: ANN001
              replicas_after: int | None = None) -> tuple[float, float]:
    """Loads ``docs`` into the store in chunks of 10,000, printing progress, then refreshes and
    waits for green. ``refresh_off``: no refresh while loading (Elasticsearch's bulk-load
    advice); ``replicas_after``: no replica while loading either, then this many (they recover
    by copying segment files, not by indexing again). Returns the seconds until every
    document was acknowledged and until the index was green."""
    e = col.settings.store.elasticsearch
    load = {"refresh_interval": "-1"} if refresh_off else {}
    if replicas_after is not None:
        load["number_of_replicas"] = 0
    if load:
        col.conn.call("load settings", lambda c: c.indices.put_settings(index=e.index, settings=load))
    t = time.perf_counter()
    for s in range(0, len(docs), 10_000):
        col.bulk_load(docs[s : s + 10_000], vecs[s : s + 10_000], encoder_name=encoder_name)
        n = min(len(docs), s + 10_000)
        print(f"{time.strftime('%H:%M:%S')} {n} documents acknowledged "
              f"({n / (time.perf_counter() - t):.0f} docs/s)", flush=True)
    ack_s = time.perf_counter() - t
    if load:  # back to the serving settings
        serving = {"refresh_interval": e.refresh_interval} if refresh_off else {}
        if replicas_after is not None:
            serving["number_of_replicas"] = replicas_after
        col.conn.call("serving settings", lambda c: c.indices.put_settings(index=e.index, settings=serving))
    col.refresh()
    # until searchable on every copy: replicas restored after the load are only green later
    col.conn.call("green", lambda c: c.options(request_timeout=1900).cluster.health(
        index=e.index, wait_for_status="green", timeout="1800s"))
    return ack_s, time.perf_counter() - t


class LoadSampler:
    """Samples ``os.getloadavg()[0]`` every ``every`` seconds on a daemon thread."""

    def __init__(self, every: float = 15.0) -> None:
        import threading

        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._every = every
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        self._stop.set()
        xs = self.samples + [os.getloadavg()[0]]
        return {"min": round(min(xs), 2), "mean": round(sum(xs) / len(xs), 2), "max": round(max(xs), 2),
                "samples": len(xs), "cpus": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203")
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--vector-index", default="int8_hnsw")
    ap.add_argument("--bulk-threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--factory", default="HNSW32", help="FAISS factory of the embedded engine")
    ap.add_argument("--index", default="semsearch-bench-store")
    ap.add_argument("--keep", action="store_true", help="keep the Elasticsearch index")
    ap.add_argument("--random-base", action="store_true",
                    help="random base vectors instead of the (cached) SciFact MiniLM vectors")
    ap.add_argument("--bulk-recipe", action="store_true",
                    help="load with 0 replicas and refresh off, then restore them; the ingest "
                         "time runs until the index is green with its replicas")
    ap.add_argument("--forcemerge", action="store_true", help="also measure hybrid after a force merge")
    args = ap.parse_args()
    load = LoadSampler()  # the machine's 1-minute load average every 15 s, for the report

    from semsearch.collection import SearchRequest
    from semsearch.config import Settings
    from semsearch.documents import Document
    from semsearch.encoders import make_text_encoder
    from semsearch.encoders.sbert import SentenceTransformerEncoder
    from semsearch.indexer.index import Index
    from semsearch.search import Searcher
    from semsearch.store_es import ElasticsearchCollection

    settings = Settings()
    settings.no_progress = True
    settings.text_encoder.device = "cpu"
    settings.vector.faiss.factory = args.factory
    corpus = synth_corpus(args.docs)
    vecs = vectors(args.docs, corpus, None if args.random_base else SentenceTransformerEncoder(settings.text_encoder),
                   args.random_base)
    docs = [Document(id=d["_id"], title=d["title"], text=d["text"]) for d in corpus]
    qenc = make_text_encoder(settings.text_encoder, for_queries=True)  # ONNX Runtime on CPU
    qenc.encode(["warm up"])
    _, queries, _ = load_queries("test")
    queries = queries[: args.queries]

    # -- Elasticsearch store -------------------------------------------------------------
    es_settings = store_settings(settings, args)
    probe = ElasticsearchCollection(es_settings)
    probe.conn.call("drop", lambda c: c.options(ignore_status=404).indices.delete(index=f"{args.index}-v*"))
    probe.close()
    col = ElasticsearchCollection.create(es_settings, encoder=qenc)
    ack_s, ingest_s = bulk_load(col, docs, vecs, qenc.name, refresh_off=args.bulk_recipe,
                                replicas_after=args.replicas if args.bulk_recipe else None)
    st = col.stats()
    assert st["documents"] == args.docs, st
    stats_all = col.conn.call("stats", lambda c: c.indices.stats(index=args.index, metric="store,segments"))
    primary_mb = stats_all["_all"]["primaries"]["store"]["size_in_bytes"] / 1e6
    total_mb = stats_all["_all"]["total"]["store"]["size_in_bytes"] / 1e6
    col.search("warm up", k=10, mode="hybrid")
    es_lat = {}
    for mode in ("lexical", "dense", "hybrid"):
        col.search(queries[0], k=10, mode=mode)
        es_lat[mode] = time_each(lambda q, m=mode: col.search(SearchRequest(query=q, k=10, mode=m)), queries)
    merged_hybrid, merged_mb = [], None
    if args.forcemerge:  # one segment per shard: a read-mostly index after a merge
        col.conn.call("forcemerge", lambda c: c.indices.forcemerge(
            index=args.index, max_num_segments=1, request_timeout=1800))
        merged_hybrid = time_each(lambda q: col.search(SearchRequest(query=q, k=10, mode="hybrid")), queries)
        segs = col.conn.call("stats", lambda c: c.indices.stats(index=args.index, metric="store"))
        merged_mb = round(segs["_all"]["primaries"]["store"]["size_in_bytes"] / 1e6, 1)
    segments = col.conn.call("segments", lambda c: c.indices.stats(index=args.index, metric="segments"))
    n_segments = segments["_all"]["primaries"]["segments"]["count"]
    if not args.keep:
        col.conn.call("drop", lambda c: c.indices.delete(index=f"{args.index}-v*"))
    col.close()

    # -- embedded engine -----------------------------------------------------------------
    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    with Index.create(tmp / "ix", settings) as idx:
        idx.ensure_channel("dense", dim=vecs.shape[1], encoder=qenc.name)
        for s in range(0, args.docs, 5000):
            idx.write(docs[s : s + 5000], {"dense": vecs[s : s + 5000]})
        idx.sync()
    emb_s = time.perf_counter() - t
    emb_mb = dir_size_mb(tmp / "ix")
    idx = Index.open(tmp / "ix", settings)
    searcher = Searcher(idx, settings, encoder=qenc)
    emb_lat = {}
    for mode in ("lexical", "dense", "hybrid"):
        searcher.search(queries[0], k=10, mode=mode)
        emb_lat[mode] = time_each(lambda q, m=mode: searcher.search(q, k=10, mode=m, with_documents=True), queries)
    idx.close()
    shutil.rmtree(tmp)

    rows = []
    for mode in ("lexical", "dense", "hybrid"):
        rows.append({"engine": f"Elasticsearch store ({args.shards}x{args.replicas + 1} copies)", "mode": mode, **percentiles(es_lat[mode])})
        rows.append({"engine": f"embedded (bm25s + FAISS {args.factory})", "mode": mode, **percentiles(emb_lat[mode])})
    if merged_hybrid:
        rows.append({"engine": "Elasticsearch store, force-merged", "mode": "hybrid", **percentiles(merged_hybrid)})
    result = {
        "docs": args.docs, "queries": len(queries), "url_nodes": len(args.url.split(",")),
        "shards": args.shards, "replicas": args.replicas, "vector_index": args.vector_index,
        "base_vectors": "random" if args.random_base else "SciFact MiniLM", "bulk_threads": args.bulk_threads, "chunk": args.chunk, "dims": int(vecs.shape[1]),
        "es_ingest_docs_per_s": round(args.docs / ingest_s, 1), "bulk_recipe": args.bulk_recipe,
        "es_ingest_s": round(ingest_s, 2), "es_acknowledged_s": round(ack_s, 2),
        "es_primary_store_mb": round(primary_mb, 1), "es_total_store_mb": round(total_mb, 1),
        "es_primary_store_mb_after_forcemerge": merged_mb, "es_primary_segments": n_segments,
        "embedded_build_s": round(emb_s, 2), "embedded_docs_per_s": round(args.docs / emb_s, 1),
        "embedded_size_mb": round(emb_mb, 1),
        "load_avg_1m": load.summary(),
        "latency": {f"{r['engine']} / {r['mode']}": {k: v for k, v in r.items() if k not in ("engine", "mode")} for r in rows},
    }
    out = save(f"es_store_{args.docs}_{args.shards}x{args.replicas}_{args.vector_index}", result)
    table(rows, f"query latency at {args.docs} docs, k=10, query encoding included")
    print(f"Elasticsearch bulk ingest {result['es_ingest_docs_per_s']} docs/s ({ingest_s:.1f} s, encoding excluded); "
          f"store {primary_mb:.0f} MB primaries / {total_mb:.0f} MB with replicas, {n_segments} segments; "
          f"embedded build {result['embedded_docs_per_s']} docs/s, {emb_mb:.0f} MB; "
          f"load average (1 min) during the run {result['load_avg_1m']}")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
