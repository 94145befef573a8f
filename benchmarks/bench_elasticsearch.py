"""Elasticsearch vs the embedded backend, same corpus, same queries, in one run: bulk
indexing docs/s (until searchable: bulk + refresh vs bm25s build) and single-query latency
p50/p95 (sequential, one query per request), plus nDCG@10 on SciFact test.

Needs a running Elasticsearch (bash .ci/elasticsearch.sh start) and the SciFact data.

    python benchmarks/bench_elasticsearch.py [--url http://127.0.0.1:9200] [--sizes scifact,100000]
"""

from __future__ import annotations

import argparse
import time

from common import (
    embedded_lexical,
    load_jsonl,
    load_queries,
    percentiles,
    require_scifact,
    save,
    synth_corpus,
    table,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:9200")
    ap.add_argument("--sizes", default="scifact,100000")
    ap.add_argument("--analyzer", default="semsearch_en")
    ap.add_argument("--chunk-size", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300, help="timed queries per backend")
    args = ap.parse_args()

    from ranx import Qrels, Run, evaluate

    from semsearch.config import LexicalSettings
    from semsearch.documents import Document
    from semsearch.indexer.lexical.elasticsearch import ElasticsearchLexicalIndex

    qids, queries, qrels = load_queries("test")
    timed = queries[: args.queries]
    rows, results = [], {}
    for size in args.sizes.split(","):
        corpus = load_jsonl(require_scifact() / "corpus.jsonl") if size == "scifact" else synth_corpus(int(size))
        docs = [Document(id=d["_id"], title=d["title"], text=d["text"]) for d in corpus]
        backends = {}
        t = time.perf_counter()
        emb = embedded_lexical(docs)
        backends["embedded"] = (emb, time.perf_counter() - t)

        s = LexicalSettings(backend="elasticsearch")
        s.elasticsearch.url, s.elasticsearch.index = args.url, f"semsearch-bench-{size}"
        s.elasticsearch.analyzer, s.elasticsearch.chunk_size = args.analyzer, args.chunk_size
        es = ElasticsearchLexicalIndex(s)
        t = time.perf_counter()
        es.upsert(docs)
        es.commit()
        backends["elasticsearch"] = (es, time.perf_counter() - t)
        assert es.count() == len(docs), (es.count(), len(docs))

        for name, (idx, build_s) in backends.items():
            idx.search(timed[0], 10)  # warm-up
            lat = []
            for q in timed:
                t = time.perf_counter()
                idx.search(q, 10)
                lat.append(time.perf_counter() - t)
            row = {"corpus": size, "docs": len(docs), "backend": name,
                   "index_docs_per_s": round(len(docs) / build_s, 1), "index_s": round(build_s, 2),
                   **{k: v for k, v in percentiles(lat).items() if k in ("p50_ms", "p95_ms")}}
            if size == "scifact":
                hits = idx.search_many(queries, 100)
                run = {q: {d: sc for d, sc in h} or {"-": 0.0} for q, h in zip(qids, hits)}
                row["ndcg@10"] = round(float(evaluate(Qrels(qrels), Run(run), "ndcg@10")), 4)
            rows.append(row)
        results[size] = [r for r in rows if r["corpus"] == size]
        es.conn.call("drop bench index", lambda c, n=s.elasticsearch.index: c.indices.delete(
            index=f"{n}-v*", expand_wildcards="all"))
        es.close()
    path = save("elasticsearch", {"url": args.url, "analyzer": args.analyzer,
                                  "chunk_size": args.chunk_size, "timed_queries": len(timed),
                                  "rows": rows})
    table(rows, "Elasticsearch vs embedded BM25 (indexing until searchable; single-query latency)")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
