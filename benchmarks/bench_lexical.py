"""Lexical query throughput: semsearch's embedded backend vs bm25s and rank-bm25, same
corpus, same analyzer, same queries, in one process; plus nDCG@10 on SciFact test.

Targets: >= 0.8x bm25s and >= 10x rank-bm25 queries/s, on SciFact and on 100k documents.

    python benchmarks/bench_lexical.py [--sizes scifact,100000] [--rank-bm25-queries 30]
"""

from __future__ import annotations

import argparse
import gc
import time

from common import (
    embedded_lexical,
    load_jsonl,
    load_queries,
    require_scifact,
    save,
    synth_corpus,
    table,
)


def qps(fn, queries) -> float:
    t = time.perf_counter()
    for q in queries:
        fn(q)
    return len(queries) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="scifact,100000")
    ap.add_argument("--rank-bm25-queries", type=int, default=30, help="rank-bm25 is slow: time it on this many queries")
    args = ap.parse_args()

    import bm25s
    from rank_bm25 import BM25Okapi
    from ranx import Qrels, Run, evaluate

    from semsearch.documents import Document
    from semsearch.indexer.lexical.analysis import Analyzer

    qids, queries, qrels = load_queries("test")
    analyzer = Analyzer()
    rows, results = [], {}
    for size in args.sizes.split(","):
        corpus = load_jsonl(require_scifact() / "corpus.jsonl") if size == "scifact" else synth_corpus(int(size))
        texts = [f"{d['title']} {d['text']}" for d in corpus]
        ids = [d["_id"] for d in corpus]

        t = time.perf_counter()
        ours = embedded_lexical([Document(id=d["_id"], title=d["title"], text=d["text"]) for d in corpus])
        ours_build = time.perf_counter() - t

        t = time.perf_counter()
        tokens = analyzer(texts)
        peer = bm25s.BM25(k1=0.9, b=0.4)
        peer.index(tokens, show_progress=False)
        peer_build = time.perf_counter() - t

        def peer_search(q, peer=peer):
            qt = analyzer([q])
            return peer.retrieve(qt, k=10, show_progress=False, n_threads=1)

        ref = BM25Okapi(tokens, k1=0.9, b=0.4)

        def ref_search(q, ref=ref):
            s = ref.get_scores(analyzer([q])[0])
            return sorted(range(len(s)), key=s.__getitem__, reverse=True)[:10]

        ours_qps = qps(lambda q, ours=ours: ours.search(q, 10), queries)
        peer_qps = qps(peer_search, queries)
        ref_qps = qps(ref_search, queries[: args.rank_bm25_queries])
        entry = {
            "docs": len(corpus),
            "queries": len(queries),
            "semsearch_qps": ours_qps,
            "bm25s_qps": peer_qps,
            "rank_bm25_qps": ref_qps,
            "ratio_vs_bm25s": ours_qps / peer_qps,
            "ratio_vs_rank_bm25": ours_qps / ref_qps,
            "semsearch_build_s": ours_build,
            "bm25s_build_s": peer_build,
        }
        if size == "scifact":
            run = {q: dict(ours.search(text, 100)) for q, text in zip(qids, queries)}
            entry["semsearch_ndcg@10"] = float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))
            docs, scores = peer.retrieve(analyzer(queries), k=100, show_progress=False)
            run = {q: {ids[i]: float(s) for i, s in zip(docs[j], scores[j])} for j, q in enumerate(qids)}
            entry["bm25s_ndcg@10"] = float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))
        results[size] = entry
        rows.append({
            "corpus": size, "docs": len(corpus), "semsearch q/s": ours_qps, "bm25s q/s": peer_qps,
            "rank-bm25 q/s": ref_qps, "vs bm25s": ours_qps / peer_qps, "vs rank-bm25": ours_qps / ref_qps,
        })
        gc.collect()
    path = save("lexical", {"results": results, "targets": {"vs_bm25s": 0.8, "vs_rank_bm25": 10}})
    table(rows, "lexical queries/s, k=10, one query at a time (targets: >= 0.8x bm25s, >= 10x rank-bm25)")
    for e in results.values():
        if "semsearch_ndcg@10" in e:
            print(f"SciFact test nDCG@10: semsearch {e['semsearch_ndcg@10']:.4f}  bm25s {e['bm25s_ndcg@10']:.4f}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
