"""Hybrid search at scale: latency (query encoding included, no rerank), index size on disk
and peak memory for a 100k-document index, vs the same pipeline assembled by hand from the
peer libraries (bm25s + FAISS IndexFlatIP + SentenceTransformer + min-max fusion). Our queries
are encoded with the default query backend (ONNX Runtime on CPU, see encoders/onnx.py) and,
for comparison, with PyTorch as the peer does.

The 100k texts are SciFact abstracts with a third of their words swapped (common.synth_corpus).
Encoding 100k abstracts takes most of an hour on 2 cores, so document vectors are the
SciFact MiniLM vectors plus small Gaussian noise, re-normalised (cached under .cache/bench):
brute-force FAISS latency depends only on the count and dimension, not on the values. Query
vectors are encoded for real, inside the timed region.

    python benchmarks/bench_hybrid.py [--docs 100000] [--queries 200]
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

from common import (  # noqa: E402
    CACHE,
    dir_size_mb,
    load_queries,
    peak_rss_mb,
    percentiles,
    save,
    synth_corpus,
    table,
    time_each,
)


def scifact_vectors(texts: list[str], encoder) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    f = CACHE / "scifact-minilm.npy"
    if f.exists():
        v = np.load(f)
        if v.shape[0] >= len(texts):  # the whole corpus in order: a smaller run takes a prefix
            return v[: len(texts)]
    v = encoder.encode(texts)
    np.save(f, v)  # only ever replaces a smaller cache
    return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--keep", type=Path, default=None, help="keep the built index here")
    ap.add_argument("--factory", default="Flat", help="FAISS factory string of the dense channel (e.g. HNSW32)")
    args = ap.parse_args()

    import bm25s
    import faiss

    from semsearch.config import Settings
    from semsearch.encoders.sbert import SentenceTransformerEncoder
    from semsearch.indexer.index import Index
    from semsearch.search import Searcher
    from semsearch.search.fusion import convex

    settings = Settings()
    settings.no_progress = True
    settings.vector.faiss.factory = args.factory
    enc = SentenceTransformerEncoder(settings.text_encoder)
    corpus = synth_corpus(args.docs)
    base_n = min(5183, args.docs)
    base = scifact_vectors([f"{d['title']} {d['text']}" for d in corpus[:base_n]], enc)
    rng = np.random.default_rng(0)
    reps = -(-args.docs // base_n)
    vecs = np.tile(base, (reps, 1))[: args.docs] + rng.normal(scale=0.02, size=(args.docs, base.shape[1])).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = vecs.astype(np.float32)
    _, queries, _ = load_queries("test")
    queries = queries[: args.queries]

    from semsearch.documents import Document

    rss0 = peak_rss_mb()
    tmp = Path(tempfile.mkdtemp())
    path = args.keep or tmp / "ix"
    t = time.perf_counter()
    with Index.create(path, settings) as idx:
        idx.ensure_channel("dense", dim=vecs.shape[1], encoder=enc.name)
        for s in range(0, args.docs, 5000):
            chunk = corpus[s : s + 5000]
            idx.write([Document(id=d["_id"], title=d["title"], text=d["text"]) for d in chunk], {"dense": vecs[s : s + 5000]})
        idx.sync()
    build_s = time.perf_counter() - t
    size_mb = dir_size_mb(path)
    idx = Index.open(path, settings)
    searcher = Searcher(idx, settings)  # default query encoder: ONNX Runtime on CPU
    searcher.search(queries[0], k=10)  # warm-up (and the one-time ONNX export, if not cached)
    backend = getattr(searcher.encoder, "backend", "torch")
    ours = time_each(lambda q: searcher.search(q, k=10, mode="hybrid", with_documents=True), queries)
    ours_lex = time_each(lambda q: searcher.search(q, k=10, mode="lexical"), queries)
    ours_dense = time_each(lambda q: searcher.search(q, k=10, mode="dense"), queries)
    torch_searcher = Searcher(idx, settings, encoder=enc)  # query_backend=torch, for comparison
    torch_searcher.search(queries[0], k=10)
    ours_torch = time_each(lambda q: torch_searcher.search(q, k=10, mode="hybrid", with_documents=True), queries)
    rss_ours = peak_rss_mb()

    # the peer pipeline, assembled by hand from the same libraries
    from semsearch.indexer.lexical.analysis import Analyzer

    analyzer = Analyzer()
    peer_bm25 = bm25s.BM25(k1=0.9, b=0.4)
    peer_bm25.index(analyzer([f"{d['title']} {d['text']}" for d in corpus]), show_progress=False)
    flat = faiss.index_factory(vecs.shape[1], args.factory, faiss.METRIC_INNER_PRODUCT)
    flat.add(vecs)
    if hasattr(flat, "hnsw"):
        flat.hnsw.efSearch = settings.vector.faiss.ef_search  # the same search effort as ours
    model = enc.model
    ids = [d["_id"] for d in corpus]

    def peer(q: str):
        docs, scores = peer_bm25.retrieve(analyzer([q]), k=100, show_progress=False, n_threads=1)
        qv = model.encode([q], normalize_embeddings=True, convert_to_numpy=True)
        ds, di = flat.search(qv, 100)
        return convex({"lexical": [(ids[i], float(s)) for i, s in zip(docs[0], scores[0])],
                       "dense": [(ids[i], float(s)) for i, s in zip(di[0], ds[0])]})[:10]

    peer(queries[0])
    theirs = time_each(peer, queries)
    rows = [
        {"pipeline": f"semsearch hybrid (queries on {backend})", **percentiles(ours)},
        {"pipeline": "semsearch lexical", **percentiles(ours_lex)},
        {"pipeline": f"semsearch dense (queries on {backend})", **percentiles(ours_dense)},
        {"pipeline": "semsearch hybrid (query_backend=torch)", **percentiles(ours_torch)},
        {"pipeline": "peer hybrid (bm25s+faiss+ST)", **percentiles(theirs)},
    ]
    result = {
        "docs": args.docs,
        "queries": len(queries),
        "latency": {r["pipeline"]: {k: v for k, v in r.items() if k != "pipeline"} for r in rows},
        "index_build_s": build_s,
        "index_size_mb": size_mb,
        "index_size_mb_per_100k": size_mb * 100_000 / args.docs,
        "peak_rss_mb_after_semsearch": rss_ours,
        "peak_rss_mb_before": rss0,
        "target_p95_ms": 30,
    }
    idx.close()
    if not args.keep:
        shutil.rmtree(tmp)
    result["factory"] = args.factory
    out = save(f"hybrid_{args.docs}_{args.factory.replace(',', '_')}", result)
    table(rows, f"search latency at {args.docs} docs, FAISS {args.factory}, k=10, query encoding included (target hybrid p95 <= 30 ms)")
    print(f"index on disk {size_mb:.0f} MB ({result['index_size_mb_per_100k']:.0f} MB per 100k docs), built in {build_s:.0f}s; peak RSS {rss_ours:.0f} MB")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
