"""Congruence of the Elasticsearch store with the embedded engine on SciFact test (nDCG@10,
Recall@100, top-10 overlap): the same documents and the same MiniLM document vectors
(encoded once, cached under .cache/bench), the same query encoder, searched through the
embedded index (bm25s + FAISS Flat) and through ElasticsearchCollection (BM25 with the
``semsearch_en`` analyzer + int8 HNSW kNN, fused client-side), in one run.

    python benchmarks/eval_es_store_scifact.py --url http://127.0.0.1:9201,... [--shards 3 --replicas 1]

Not a test: it reads ../shared/data/scifact. Target: hybrid nDCG@10 within 0.02 of embedded.
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

from common import CACHE, load_jsonl, load_queries, require_scifact, save, table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203")
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--vector-index", default="int8_hnsw")
    ap.add_argument("--index", default="semsearch-eval-scifact")
    ap.add_argument("--split", default="test", help="queries and qrels: test (report) or train (choosing settings)")
    ap.add_argument("--factors", default=None,
                    help="also search the store at these num_candidates_factor values, e.g. 4,2,1.5 "
                         "(kNN candidates per shard = factor x k); the first row is the settings' value")
    args = ap.parse_args()

    from semsearch.collection import SearchRequest
    from semsearch.config import Settings
    from semsearch.documents import Document
    from semsearch.encoders import make_text_encoder
    from semsearch.eval.metrics import means, per_query
    from semsearch.indexer.index import Index
    from semsearch.search import Searcher
    from semsearch.store_es import ElasticsearchCollection

    corpus = load_jsonl(require_scifact() / "corpus.jsonl")
    docs = [Document(id=d["_id"], title=d.get("title", ""), text=d.get("text", "")) for d in corpus]
    vf = CACHE / "scifact-minilm.npy"
    settings = Settings()
    settings.no_progress = True
    settings.text_encoder.device = "cpu"
    qenc = make_text_encoder(settings.text_encoder, for_queries=True)
    if vf.exists() and np.load(vf).shape[0] == len(docs):
        vecs = np.load(vf).astype(np.float32)
    else:
        from semsearch.encoders.sbert import SentenceTransformerEncoder

        vecs = SentenceTransformerEncoder(settings.text_encoder).encode([f"{d.title} {d.text}" for d in docs])
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(vf, vecs)
    qids, queries, qrels = load_queries(args.split)

    # embedded
    tmp = Path(tempfile.mkdtemp())
    with Index.create(tmp / "ix", settings) as idx:
        idx.ensure_channel("dense", dim=vecs.shape[1], encoder=qenc.name)
        idx.write(docs, {"dense": vecs})
        idx.sync()
    idx = Index.open(tmp / "ix", settings)
    searcher = Searcher(idx, settings, encoder=qenc)

    # Elasticsearch store
    es_settings = settings.model_copy(deep=True)
    es_settings.store.backend = "elasticsearch"
    e = es_settings.store.elasticsearch
    e.url, e.index, e.analyzer = args.url, args.index, "semsearch_en"
    e.shards, e.replicas, e.vector_index = args.shards, args.replicas, args.vector_index
    probe = ElasticsearchCollection(es_settings)
    probe.conn.call("drop", lambda c: c.options(ignore_status=404).indices.delete(index=f"{args.index}-v*"))
    probe.close()
    col = ElasticsearchCollection.create(es_settings, encoder=qenc)
    t = time.perf_counter()
    col.bulk_load(docs, vecs, encoder_name=qenc.name, refresh=True)
    load_s = time.perf_counter() - t

    rows, runs = [], {}
    for mode in ("lexical", "dense", "hybrid"):
        emb = searcher.search_batch(queries, k=100, mode=mode, with_documents=False)
        es = col.search_batch([SearchRequest(query=q, k=100, mode=mode, with_documents=False) for q in queries])
        for name, res in (("embedded", emb), ("elasticsearch", es)):
            run = {qid: {h.id: float(h.score) for h in r.hits} for qid, r in zip(qids, res)}
            runs[(name, mode)] = run
            m = means(per_query(qrels, run, ["ndcg@10", "recall@100"]))
            rows.append({"mode": mode, "engine": name, "ndcg@10": round(m["ndcg@10"], 4),
                         "recall@100": round(m["recall@100"], 4)})
        overlap = np.mean([len(set(list(runs[("embedded", mode)][q])[:10]) & set(list(runs[("elasticsearch", mode)][q])[:10])) / 10
                           for q in qids])
        rows[-1]["top10_overlap"] = round(float(overlap), 3)
        rows[-2]["top10_overlap"] = ""
    by_factor = {}
    for f in [float(x) for x in args.factors.split(",")] if args.factors else []:
        e.num_candidates_factor = f
        fcol = ElasticsearchCollection(es_settings, encoder=qenc)
        for mode in ("dense", "hybrid"):
            t = time.perf_counter()
            res = fcol.search_batch([SearchRequest(query=q, k=100, mode=mode, with_documents=False) for q in queries])
            secs = time.perf_counter() - t
            run = {qid: {h.id: float(h.score) for h in r.hits} for qid, r in zip(qids, res)}
            m = means(per_query(qrels, run, ["ndcg@10", "recall@100"]))
            by_factor[f"{f:g}/{mode}"] = {"ndcg@10": round(m["ndcg@10"], 4), "recall@100": round(m["recall@100"], 4),
                                          "ms_per_query_batched": round(1000 * secs / len(queries), 2)}
        fcol.close()
    diff = {m: round(next(r["ndcg@10"] for r in rows if r["mode"] == m and r["engine"] == "elasticsearch")
                     - next(r["ndcg@10"] for r in rows if r["mode"] == m and r["engine"] == "embedded"), 4)
            for m in ("lexical", "dense", "hybrid")}
    result = {"docs": len(docs), "split": args.split, "queries": len(queries), "shards": args.shards, "replicas": args.replicas,
              "vector_index": args.vector_index, "analyzer": "semsearch_en", "fusion": "convex z-score 0.5/0.5 depth 100 (client-side)",
              "bulk_load_s": round(load_s, 2), "rows": rows, "ndcg10_es_minus_embedded": diff,
              "target": "hybrid |diff| <= 0.02", "met": abs(diff["hybrid"]) <= 0.02,
              "by_num_candidates_factor": by_factor}
    col.conn.call("drop", lambda c: c.indices.delete(index=f"{args.index}-v*"))
    col.close()
    idx.close()
    shutil.rmtree(tmp)
    suffix = "" if args.split == "test" else f"_{args.split}"
    out = save(f"es_store_scifact_{args.shards}x{args.replicas}_{args.vector_index}{suffix}", result)
    if by_factor:
        table([{"factor/mode": k, **v} for k, v in by_factor.items()], "the store at other num_candidates_factor values")
    table(rows, f"SciFact {args.split}, embedded vs Elasticsearch store ({args.shards} shards, {args.replicas} replica, {args.vector_index})")
    print(f"nDCG@10 ES - embedded: {diff}; target met: {result['met']}; saved {out}")


if __name__ == "__main__":
    main()
