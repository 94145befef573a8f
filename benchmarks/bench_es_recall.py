"""Recall of the Elasticsearch store's approximate kNN (int8 HNSW) against exact search, at
several values of ``store.elasticsearch.num_candidates_factor`` and
``min_num_candidates`` (kNN candidates per shard = max(k, factor x k, floor)), for k = 10
(a dense page) and k = 100 (the hybrid fusion depth).

Corpus and vectors as in bench_es_store.py: common.synth_corpus and SciFact MiniLM vectors
(cached under .cache/bench; set SEMSEARCH_BENCH_CACHE to share a checkout's cache) plus
small noise, tiled to ``--docs``. Queries: SciFact queries of ``--split`` (test; choose
settings on train) encoded once with the
query encoder; the collection is given those vectors through a lookup encoder, so the
timings are the store's dense search alone (no query encoding), one query at a time
through ``ElasticsearchCollection.search_batch`` (the engine's own code path), with the
server's ``took`` from the ``_msearch`` answer beside the wall time.

Exact top-k: inner product of the same float32 vectors (the mapping's similarity is
``dot_product`` over L2-normalised vectors, so this is cosine), brute force in numpy.
recall@k = |approximate top-k & exact top-k| / k, averaged over queries; recall_tol also
counts a hit whose exact cosine is within ``--tol`` (0.01) of the exact k-th one (the tiled
corpus has ~39 noisy copies of each SciFact vector, so near-ties at the k-th place are
common and int8 scoring reorders them; a miss by more than tol is a real miss). The configurations
are interleaved query by query, so load from elsewhere falls on all of them alike.

    SEMSEARCH_BENCH_CACHE=/work/main/.cache/bench PYTHONPATH=src:benchmarks \\
      python benchmarks/bench_es_recall.py --url http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203 \\
      [--docs 200000] [--queries 300] [--shards 2] [--replicas 0] [--factors 1,1.5,2,4,8] [--floors 1,100]
      [--split train] [--forcemerge]

``--forcemerge`` measures again after merging every shard into one segment: a shard of
several segments searches each segment's graph for ``num_candidates`` and merges, which
explores more than one graph of the whole shard does, so the merged index is the harder case.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_es_store import bulk_load, store_settings, vectors  # noqa: E402
from common import load_queries, percentiles, save, synth_corpus, table  # noqa: E402


class LookupEncoder:
    """The query encoder's vectors for a fixed set of texts, computed once: the collection's
    ``encoder.encode`` becomes a lookup, so exact and approximate search see the same
    vectors and the timings exclude encoding."""

    def __init__(self, encoder, texts: list[str]) -> None:  # noqa: ANN001
        self._enc = encoder
        self.vecs = np.ascontiguousarray(encoder.encode(texts), dtype=np.float32)
        self._row = {t: i for i, t in enumerate(texts)}

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._enc, name)

    def encode(self, texts, **kw) -> np.ndarray:  # noqa: ANN001, ANN003
        return self.vecs[[self._row[t] for t in texts]]


def exact_topk(q: np.ndarray, v: np.ndarray, k: int, chunk: int = 50_000) -> np.ndarray:
    """Row indices of the exact top-k of each query by inner product, best first."""
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for s in range(0, len(v), chunk):
        sc = q @ v[s : s + chunk].T
        kk = min(k, sc.shape[1])
        part = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(sc, part, 1)], 1)
        best_i = np.concatenate([best_i, part + s], 1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203")
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=0)
    ap.add_argument("--vector-index", default="int8_hnsw")
    ap.add_argument("--factors", default="1,1.5,2,4,8")
    ap.add_argument("--floors", default="1", help="min_num_candidates values, crossed with --factors")
    ap.add_argument("--split", default="test", help="SciFact query split (train to choose settings)")
    ap.add_argument("--ks", default="10,100")
    ap.add_argument("--tol", type=float, default=0.01,
                    help="recall_tol counts a hit whose exact cosine is within tol of the exact k-th as found")
    ap.add_argument("--bulk-threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--index", default="semsearch-bench-recall")
    ap.add_argument("--reuse", action="store_true",
                    help="search the index left by an earlier --keep run if it holds --docs documents")
    ap.add_argument("--keep", action="store_true", help="keep the Elasticsearch index")
    ap.add_argument("--forcemerge", action="store_true",
                    help="also measure after a force merge to one segment per shard")
    args = ap.parse_args()
    factors = [float(x) for x in args.factors.split(",")]
    floors = [int(x) for x in args.floors.split(",")]
    ks = [int(x) for x in args.ks.split(",")]

    from semsearch.collection import SearchRequest
    from semsearch.config import Settings
    from semsearch.documents import Document
    from semsearch.encoders import make_text_encoder
    from semsearch.encoders.sbert import SentenceTransformerEncoder
    from semsearch.store_es import ElasticsearchCollection

    settings = Settings()
    settings.no_progress = True
    settings.text_encoder.device = "cpu"
    corpus = synth_corpus(args.docs)
    vecs = vectors(args.docs, corpus, SentenceTransformerEncoder(settings.text_encoder))
    ids = [d["_id"] for d in corpus]
    assert len(set(ids)) == len(ids), "document ids are not unique"
    row_of = {d: i for i, d in enumerate(ids)}
    _, queries, _ = load_queries(args.split)
    queries = queries[: args.queries]
    qenc = LookupEncoder(make_text_encoder(settings.text_encoder, for_queries=True), queries)
    qv = qenc.vecs
    norms = np.linalg.norm(qv, axis=1)
    assert np.allclose(norms, 1, atol=1e-3), (norms.min(), norms.max())

    t = time.perf_counter()
    exact = exact_topk(qv, vecs, max(ks))
    exact_s = time.perf_counter() - t

    es_settings = store_settings(settings, args)
    e = es_settings.store.elasticsearch
    probe = ElasticsearchCollection(es_settings)
    have = None
    if args.reuse and probe.aliased.targets():
        have = probe.stats()["documents"]
    reused = have == args.docs
    if not reused:
        probe.conn.call("drop", lambda c: c.options(ignore_status=404).indices.delete(index=f"{args.index}-v*"))
    probe.close()
    col = ElasticsearchCollection.create(es_settings, encoder=qenc)
    ingest_s = None
    if not reused:  # no refresh while loading (replicas as asked)
        docs = [Document(id=d["_id"], title=d["title"], text=d["text"]) for d in corpus]
        _, ingest_s = bulk_load(col, docs, vecs, qenc.name, refresh_off=True)
    st = col.stats()
    assert st["documents"] == args.docs, st

    took: list[int] = []  # the server's took of each _msearch answer, in order
    msearch = col._msearch

    def spy(bodies):  # noqa: ANN001, ANN202
        out = msearch(bodies)
        took.extend(int(r.get("took", -1)) for r in out)
        return out

    col._msearch = spy  # type: ignore[method-assign]

    def segments() -> dict[str, int]:
        s = col.conn.call("segments", lambda c: c.indices.stats(index=args.index, metric="segments", level="shards"))
        per = {}
        for idx in s["indices"].values():
            for shard, copies in idx["shards"].items():
                per[shard] = max(c["segments"]["count"] for c in copies if c["routing"]["primary"])
        return per

    def measure(label: str) -> list[dict]:
        configs, seen = [], set()  # (k, factor, floor), one per distinct num_candidates
        for k in ks:
            for f in factors:
                for fl in floors:
                    e.num_candidates_factor, e.min_num_candidates = f, fl
                    if (k, e.num_candidates(k)) not in seen:
                        seen.add((k, e.num_candidates(k)))
                        configs.append((k, f, fl))
        lat: dict = {c: [] for c in configs}
        srv: dict = {c: [] for c in configs}
        hits: dict = {c: [] for c in configs}
        for k, f, fl in configs:  # warm-up: every configuration once
            e.num_candidates_factor, e.min_num_candidates = f, fl
            col.search_batch([SearchRequest(query=queries[0], mode="dense", k=k, with_documents=False)])
        for q in queries:  # interleaved: load from elsewhere falls on every configuration alike
            for c in configs:
                k, f, fl = c
                e.num_candidates_factor, e.min_num_candidates = f, fl
                req = SearchRequest(query=q, mode="dense", k=k, with_documents=False)
                t0 = time.perf_counter()
                (res,) = col.search_batch([req])
                lat[c].append(time.perf_counter() - t0)
                srv[c].append(took[-1])
                if res.degraded:
                    raise SystemExit(f"degraded answer at k={k} factor={f}: {res.failed_channels}")
                hits[c].append([h.id for h in res.hits])
        rows = []
        for c in configs:
            k, f, fl = c
            e.num_candidates_factor, e.min_num_candidates = f, fl
            rec, tol = [], []
            for i, got in enumerate(hits[c]):
                rows_got = [row_of[d] for d in got]
                rec.append(len(set(rows_got) & set(exact[i, :k].tolist())) / k)
                kth = float(qv[i] @ vecs[exact[i, k - 1]])
                tol.append(int(np.sum(vecs[rows_got] @ qv[i] >= kth - args.tol)) / k if got else 0.0)
            short = sum(len(got) < k for got in hits[c])
            p = percentiles(lat[c])
            rows.append({"index": label, "k": k, "factor": f"{f:g}", "floor": fl,
                         "num_candidates": e.num_candidates(k),
                         "recall": round(float(np.mean(rec)), 4),
                         "recall_min": round(float(np.min(rec)), 2),
                         "recall_tol": round(float(np.mean(tol)), 4),
                         "mean_ms": p["mean_ms"], "p95_ms": p["p95_ms"],
                         "took_mean_ms": round(float(np.mean(srv[c])), 1),
                         **({"short_answers": short} if short else {})})
        return rows

    seg_before = segments()
    rows = measure("as loaded")
    merge_s, seg_after = None, None
    if args.forcemerge:
        t = time.perf_counter()
        col.conn.call("forcemerge", lambda c: c.options(request_timeout=7200).indices.forcemerge(
            index=args.index, max_num_segments=1))
        merge_s = time.perf_counter() - t
        seg_after = segments()
        rows += measure("merged")
    if not args.keep:
        col.conn.call("drop", lambda c: c.indices.delete(index=f"{args.index}-v*"))
    col.close()

    result = {
        "docs": args.docs, "queries": len(queries), "split": args.split, "shards": args.shards, "replicas": args.replicas,
        "docs_per_shard": args.docs // args.shards, "vector_index": args.vector_index,
        "hnsw": {"m": e.hnsw_m, "ef_construction": e.hnsw_ef_construction},
        "base_vectors": "SciFact MiniLM + N(0, 0.02) noise, tiled", "dims": int(vecs.shape[1]),
        "exact": "numpy inner product over the same float32 vectors (mapping similarity dot_product)",
        "timing": "one query at a time through ElasticsearchCollection.search_batch, query encoding excluded; "
                  "configurations interleaved per query; took = the server's took",
        "ingest_s": round(ingest_s, 1) if ingest_s else None, "reused_index": reused,
        "exact_s": round(exact_s, 2), "segments_per_shard": seg_before,
        "forcemerge_s": round(merge_s, 1) if merge_s else None, "segments_per_shard_after_merge": seg_after,
        "tol": args.tol, "load_avg": os.getloadavg(), "rows": rows,
    }
    split = "" if args.split == "test" else f"_{args.split}"
    out = save(f"es_recall_{args.docs}_{args.shards}x{args.replicas}_{args.vector_index}{split}", result)
    table(rows, f"kNN recall vs exact at {args.docs} docs ({args.docs // args.shards} per shard), "
                f"{len(queries)} SciFact {args.split} queries")
    print(f"segments per shard {seg_before}" + (f", after merge {seg_after} ({merge_s:.0f} s)" if merge_s else ""))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
