"""Lexical segments (indexer/segments/lexical.py) against one monolithic bm25s index.

(a) SciFact test: the corpus split into segments, some documents deleted and re-added in a
    later segment; nDCG@10 and scores next to one bm25s index over the same documents
    (k1=0.9, b=0.4, lucene, field ``all``). Expected: identical scores, nDCG@10 0.676.
(b) Synthetic corpora (common.synth_corpus): tokenization time (apart), segment build and
    merge rate, single-query latency p50/p95 (queries pre-tokenized, k=10, field ``all``)
    vs ``bm25s.BM25.retrieve`` on one index, memory and disk.
(c) ``--tantivy``: whether tantivy could give bm25s's scores over the live documents
    (fieldnorm quantisation, statistics after deletes); see :func:`tantivy_check`.

    python benchmarks/bench_lexical_segments.py [--sizes 100000,1000000] [--segments 4]
    python benchmarks/bench_lexical_segments.py --skip-scifact --sizes "" --replicate 100000:10
    python benchmarks/bench_lexical_segments.py --skip-scifact --sizes "" --tantivy \\
        --name lexical_segments_tantivy     # needs `pip install tantivy`
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from common import (
    dir_size_mb,
    load_jsonl,
    load_queries,
    peak_rss_mb,
    percentiles,
    require_scifact,
    save,
    synth_corpus,
    table,
    time_each,
)

K1, B, METHOD = 0.9, 0.4, "lucene"
BOOSTS = {"all": 1.0}


def tokenize(analyzer, corpus):
    titles = analyzer([d["title"] for d in corpus])
    texts = analyzer([d["text"] for d in corpus])
    return titles, texts


def _tie_groups(hits: list[tuple[int, float]]) -> list[set[int]]:
    """The documents of each run of equal scores, the last (cut) run left out."""
    groups: dict[float, set[int]] = {}
    for d, s in hits:
        groups.setdefault(s, set()).add(d)
    return list(groups.values())[:-1]


def scifact(analyzer, settings) -> dict:
    import bm25s
    from ranx import Qrels, Run, evaluate

    from semsearch.indexer.segments.lexical import BM25Searcher, LexicalSegment

    corpus = load_jsonl(require_scifact() / "corpus.jsonl")
    ids = [d["_id"] for d in corpus]
    titles, texts = tokenize(analyzer, corpus)
    qids, queries, qrels = load_queries("test")
    qtok = analyzer(queries)

    # one bm25s index over all documents, in corpus order
    mono = bm25s.BM25(k1=K1, b=B, method=METHOD)
    mono.index([a + b for a, b in zip(titles, texts)], show_progress=False)

    # 7 segments of consecutive documents; 300 random documents deleted in theirs and
    # re-added (same content) in an 8th segment, 100 of which are deleted there again and
    # re-added in a 9th: the live set is the whole corpus, spread over the segments
    rng = random.Random(0)
    n = len(corpus)
    bounds = np.linspace(0, n, 8).astype(int)
    seg_docs = [list(range(bounds[i], bounds[i + 1])) for i in range(7)]
    readd = sorted(rng.sample(range(n), 300))
    seg_docs.append(readd)
    seg_docs.append(sorted(rng.sample(readd, 100)))
    live = [np.ones(len(s), dtype=bool) for s in seg_docs]
    where = {}
    for si, docs in enumerate(seg_docs):
        for o, d in enumerate(docs):
            if d in where:
                ps, po = where[d]
                live[ps][po] = False
            where[d] = (si, o)
    segments = [
        LexicalSegment.build([titles[d] for d in s], [texts[d] for d in s]) for s in seg_docs
    ]
    searcher = BM25Searcher(segments, live, settings)
    assert searcher.doc_count() == n

    hits = searcher.search_many(qtok, 100, boosts=BOOSTS)
    run_seg = {q: {ids[seg_docs[s][o]]: sc for s, o, sc in h} for q, h in zip(qids, hits)}
    docs, scores = mono.retrieve(qtok, k=100, show_progress=False)
    run_mono = {
        q: {ids[i]: float(s) for i, s in zip(docs[j], scores[j]) if s > 0}
        for j, q in enumerate(qids)
    }
    # per query: the same scores in the same order (the documents differ only among equal
    # scores at the cut), and every document in both lists bitwise equal in score
    same_scores = all(
        sorted(run_seg[q].values(), reverse=True) == sorted(run_mono[q].values(), reverse=True)
        and all(run_mono[q][d] == s for d, s in run_seg[q].items() if d in run_mono[q])
        for q in qids
    )
    # the same documents in the same order, ties aside: the two indexes hold the documents
    # in different orders (re-added ones last in the segments), and ties go by position
    same_top10 = sum(
        [d for d, _ in sorted(run_seg[q].items(), key=lambda x: -x[1])[:10]]
        == [ids[i] for i in docs[j][:10]]
        for j, q in enumerate(qids)
    )
    same_top10_scores = sum(
        [s for *_, s in h[:10]] == [float(x) for x in scores[j][:10] if x > 0]
        for j, h in enumerate(hits)
    )
    return {
        "docs": n,
        "segments": len(segments),
        "deleted_and_readded": 300 + 100,
        "queries": len(qids),
        "segments_ndcg@10": float(evaluate(Qrels(qrels), Run(run_seg), "ndcg@10")),
        "bm25s_ndcg@10": float(evaluate(Qrels(qrels), Run(run_mono), "ndcg@10")),
        "bitwise_equal_scores": same_scores,
        "queries_with_identical_top10": same_top10,
        "queries_with_identical_top10_scores": same_top10_scores,
    }


def synthetic(analyzer, settings, n: int, n_segments: int, n_queries: int) -> dict:
    import bm25s

    from semsearch.indexer.segments.container import ArrayFile, ArrayWriter
    from semsearch.indexer.segments.lexical import BM25Searcher, LexicalSegment

    corpus = synth_corpus(n)
    t = time.perf_counter()
    titles, texts = tokenize(analyzer, corpus)
    tok_s = time.perf_counter() - t
    del corpus
    gc.collect()
    n_tokens = sum(map(len, titles)) + sum(map(len, texts))

    bounds = np.linspace(0, n, n_segments + 1).astype(int)
    t = time.perf_counter()
    segments = [
        LexicalSegment.build(titles[a:b], texts[a:b]) for a, b in zip(bounds[:-1], bounds[1:])
    ]
    build_s = time.perf_counter() - t
    searcher = BM25Searcher(segments, [None] * len(segments), settings)
    seg_bytes = sum(s.nbytes() for s in segments)

    t = time.perf_counter()
    merged = LexicalSegment.merge(segments, [np.arange(s.n_docs) for s in segments])
    merge_s = time.perf_counter() - t
    del merged
    gc.collect()

    _, queries, _ = load_queries("test")
    qtok = [q for q in analyzer(queries) if q][:n_queries]
    qlens = [len(q) for q in qtok]

    alltok = [a + b for a, b in zip(titles, texts)]
    del titles, texts
    gc.collect()
    t = time.perf_counter()
    mono = bm25s.BM25(k1=K1, b=B, method=METHOD)
    mono.index(alltok, show_progress=False)
    mono_build_s = time.perf_counter() - t
    del alltok
    gc.collect()
    mono_bytes = sum(mono.scores[a].nbytes for a in ("data", "indices", "indptr"))

    def ours(q):
        return searcher.search_many([q], 10, boosts=BOOSTS)

    def peer(q):
        return mono.retrieve([q], k=10, show_progress=False, n_threads=0)

    for q in qtok[:5]:  # warm up (page cache, lazy per-field normalisation)
        ours(q), peer(q)
    ours_lat = percentiles(time_each(ours, qtok))
    peer_lat = percentiles(time_each(peer, qtok))
    # the top 10 agree: scores bitwise, documents too except among equal scores (bm25s's
    # top-k selection does not order ties by position; ours does)
    agree = agree_scores = 0
    for q in qtok:
        g = searcher.search_many([q], 10, boosts=BOOSTS)[0]
        docs, scores = peer(q)
        want = [(int(d), float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]
        have = [(int(bounds[s] + o), sc) for s, o, sc in g]
        agree += have == want
        agree_scores += [x for _, x in have] == [x for _, x in want] and all(
            a == b for a, b in zip(_tie_groups(have), _tie_groups(want))
        )

    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / ".cache") as tmp:
        t = time.perf_counter()
        infos = []
        for i, s in enumerate(segments):  # as a segment saves them: one container + its JSON
            (Path(tmp) / f"seg{i}").mkdir()
            w = ArrayWriter()
            infos.append(s.save(w))
            w.write(Path(tmp) / f"seg{i}" / "arrays.bin")
            (Path(tmp) / f"seg{i}" / "segment.json").write_text(json.dumps(infos[-1], ensure_ascii=False))
        save_s = time.perf_counter() - t
        seg_disk = dir_size_mb(Path(tmp))
        t = time.perf_counter()
        loaded = [LexicalSegment.load(ArrayFile.open(Path(tmp) / f"seg{i}" / "arrays.bin"),
                                      json.loads((Path(tmp) / f"seg{i}" / "segment.json").read_text()))
                  for i in range(len(segments))]
        load_s = time.perf_counter() - t
        del loaded
        mono.save(str(Path(tmp) / "bm25s"), show_progress=False)
        mono_disk = dir_size_mb(Path(tmp) / "bm25s")

    return {
        "docs": n,
        "segments": n_segments,
        "tokens": n_tokens,
        "queries": len(qtok),
        "query_terms_median": float(np.median(qlens)),
        "tokenize_s": tok_s,
        "tokenize_docs_per_s": n / tok_s,
        "segments_build_s": build_s,
        "segments_build_docs_per_s": n / build_s,
        "merge_all_s": merge_s,
        "merge_docs_per_s": n / merge_s,
        "bm25s_build_s": mono_build_s,
        "bm25s_build_docs_per_s": n / mono_build_s,
        "segments_latency": ours_lat,
        "bm25s_latency": peer_lat,
        "queries_with_identical_top10": agree,
        "queries_with_identical_top10_up_to_ties": agree_scores,
        "segments_mem_mb": seg_bytes / 1e6,
        # the bm25s index has the "all" field only; the segments hold "title" and "text" too
        "segments_mem_mb_all_field": sum(s.fields["all"].nbytes() for s in segments) / 1e6,
        "bm25s_mem_mb": mono_bytes / 1e6,
        "segments_disk_mb": seg_disk,
        "bm25s_disk_mb": mono_disk,
        "segments_save_s": save_s,
        "segments_load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
        "load_average_1m_at_end": os.getloadavg()[0],
    }


def replicated(analyzer, settings, n: int, copies: int, n_segments: int, n_queries: int) -> dict:
    """Query latency at ``n * copies`` documents without tokenizing them: the segments of an
    ``n``-document synthetic corpus merged ``copies`` times over (``n_segments`` segments of
    ``n * copies / n_segments`` documents), against bm25s's score matrix of the ``n``
    documents tiled ``copies`` times (the same postings per term, so the same work per
    query). Scores are not compared (the tiled bm25s matrix keeps the idf of ``n`` docs)."""
    import bm25s

    from semsearch.indexer.segments.lexical import BM25Searcher, LexicalSegment

    titles, texts = tokenize(analyzer, synth_corpus(n))
    bounds = np.linspace(0, n, n_segments + 1).astype(int)
    small = [LexicalSegment.build(titles[a:b], texts[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    t = time.perf_counter()
    segments = [LexicalSegment.merge([s] * copies, [np.arange(s.n_docs)] * copies) for s in small]
    merge_s = time.perf_counter() - t
    del small
    searcher = BM25Searcher(segments, [None] * len(segments), settings)

    mono = bm25s.BM25(k1=K1, b=B, method=METHOD)
    mono.index([a + b for a, b in zip(titles, texts)], show_progress=False)
    del titles, texts
    sc = mono.scores
    counts = np.diff(sc["indptr"])
    col = np.repeat(np.arange(counts.size, dtype=np.int32), counts)
    order = np.argsort(np.tile(col, copies), kind="stable")
    del col
    indices = np.concatenate([sc["indices"] + c * n for c in range(copies)])[order]
    data = np.tile(sc["data"], copies)[order]
    del order
    indptr = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts * copies, out=indptr[1:])
    mono.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": n * copies}
    gc.collect()

    _, queries, _ = load_queries("test")
    qtok = [q for q in analyzer(queries) if q][:n_queries]

    def ours(q):
        return searcher.search_many([q], 10, boosts=BOOSTS)

    def peer(q):
        return mono.retrieve([q], k=10, show_progress=False, n_threads=0)

    for q in qtok[:5]:
        ours(q), peer(q)
    return {
        "docs": n * copies,
        "built_from": f"{copies} copies of {n} synthetic documents",
        "segments": n_segments,
        "postings_all_field": int(sum(s.fields["all"].indices.size for s in segments)),
        "merge_s": merge_s,
        "merge_docs_per_s": n * copies / merge_s,
        "segments_latency": percentiles(time_each(ours, qtok)),
        "bm25s_latency": percentiles(time_each(peer, qtok)),
        "segments_mem_mb": sum(s.nbytes() for s in segments) / 1e6,
        "bm25s_mem_mb": (data.nbytes + indices.nbytes + indptr.nbytes) / 1e6,
        "peak_rss_mb": peak_rss_mb(),
        "load_average_1m_at_end": os.getloadavg()[0],
    }


def tantivy_check(analyzer) -> dict:
    """Could tantivy (PyPI ``tantivy``) give the scores of bm25s over the live documents?
    SciFact, the same tokens (whitespace tokenizer over our analyzer's output), one field,
    unique query terms as SHOULD clauses; 20% of the documents then deleted. tantivy's BM25
    is fixed at k1=1.2, b=0.75 (the Python binding has no setting) and keeps the (k1 + 1)
    factor, so the reference is bm25s lucene k1=1.2 b=0.75 times 2.2."""
    import bm25s
    import tantivy
    from ranx import Qrels, Run, evaluate

    corpus = load_jsonl(require_scifact() / "corpus.jsonl")
    ids = [d["_id"] for d in corpus]
    titles, texts = tokenize(analyzer, corpus)
    toks = [a + b for a, b in zip(titles, texts)]
    qids, queries, qrels = load_queries("test")
    qt = [list(dict.fromkeys(q)) for q in analyzer(queries)]
    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("pos", stored=True, indexed=True, fast=True)
    sb.add_text_field("all", tokenizer_name="ws", index_option="freq")
    schema = sb.build()
    index = tantivy.Index(schema)
    index.register_tokenizer(
        "ws", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()
    )
    writer = index.writer(heap_size=100_000_000, num_threads=1)
    for i, t in enumerate(toks):
        writer.add_document(tantivy.Document(pos=i, all=" ".join(t)))
    writer.commit()
    index.reload()

    def search(q, k):
        if not q:
            return []
        s = index.searcher()
        clauses = [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "all", t)) for t in q]
        return [
            (s.doc(a)["pos"][0], sc)
            for sc, a in s.search(tantivy.Query.boolean_query(clauses), k).hits
        ]

    def compare(live: np.ndarray) -> dict:
        pos = np.flatnonzero(live)
        ref = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
        ref.index([toks[p] for p in pos], show_progress=False)
        same, rel = 0, []
        for q in qt:
            qi = [ref.vocab_dict[t] for t in q if t in ref.vocab_dict]
            if not qi:
                same += not search(q, 10)
                continue
            s = ref.get_scores_from_ids(qi) * 2.2
            got = search(q, 10)
            want = [int(pos[i]) for i in np.argsort(-s, kind="stable")[: len(got)]]
            same += [d for d, _ in got] == want
            rel += [
                abs(sc - s[np.searchsorted(pos, d)]) / s[np.searchsorted(pos, d)] for d, sc in got
            ]
        return {
            "queries_with_identical_top10": same,
            "score_rel_err_median": float(np.median(rel)),
            "score_rel_err_max": float(np.max(rel)),
        }

    out = {"tantivy_version": getattr(tantivy, "__version__", "?")}
    out["all_live"] = compare(np.ones(len(toks), bool))
    run = {q: {ids[d]: float(sc) for d, sc in search(t, 100)} for q, t in zip(qids, qt)}
    out["tantivy_ndcg@10"] = float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))
    ref = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    ref.index(toks, show_progress=False)
    docs, scores = ref.retrieve(qt, k=100, show_progress=False)
    run = {
        q: {ids[i]: float(x) for i, x in zip(docs[j], scores[j]) if x > 0}
        for j, q in enumerate(qids)
    }
    out["bm25s_k1.2_b0.75_ndcg@10"] = float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))
    dead = random.Random(0).sample(range(len(toks)), len(toks) // 5)
    for d in dead:
        writer.delete_documents("pos", d)
    writer.commit()
    index.reload()
    live = np.ones(len(toks), bool)
    live[dead] = False
    out["deleted_20pct"] = compare(live)
    df = Counter(w for d in toks for w in set(d))
    t = df.most_common(1)[0][0]
    out["doc_freq_after_deletes"] = {
        "term": t,
        "tantivy": index.searcher().doc_freq("all", t),
        "live": int(sum(t in set(toks[p]) for p in np.flatnonzero(live))),
        "all_incl_deleted": df[t],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000", help="synthetic corpus sizes, comma-separated")
    ap.add_argument("--segments", type=int, default=4, help="segments of the synthetic corpora")
    ap.add_argument("--queries", type=int, default=300, help="SciFact test queries to time")
    ap.add_argument("--skip-scifact", action="store_true")
    ap.add_argument(
        "--replicate",
        default="",
        help="N:COPIES, e.g. 100000:10: latency at N*COPIES docs from copies (see replicated())",
    )
    ap.add_argument("--name", default="lexical_segments", help="results: bench-results/NAME.json")
    ap.add_argument(
        "--tantivy", action="store_true", help="also measure tantivy (pip install tantivy)"
    )
    args = ap.parse_args()

    from semsearch.config import EmbeddedLexicalSettings
    from semsearch.indexer.lexical.analysis import Analyzer

    settings = EmbeddedLexicalSettings(method=METHOD, k1=K1, b=B)
    analyzer = Analyzer()
    (Path(__file__).resolve().parents[1] / ".cache").mkdir(exist_ok=True)
    out: dict = {"settings": {"k1": K1, "b": B, "method": METHOD, "boosts": BOOSTS}}
    if not args.skip_scifact:
        sf = scifact(analyzer, settings)
        out["scifact"] = sf
        print(
            f"SciFact test nDCG@10: segments {sf['segments_ndcg@10']:.4f}  "
            f"bm25s {sf['bm25s_ndcg@10']:.4f}  bitwise-equal scores: {sf['bitwise_equal_scores']}  "
            f"identical top-10 documents: {sf['queries_with_identical_top10']}/{sf['queries']}, "
            f"scores: {sf['queries_with_identical_top10_scores']}/{sf['queries']}"
        )
    if args.tantivy:
        tv = out["tantivy"] = tantivy_check(analyzer)
        print(f"tantivy {tv['tantivy_version']}: {json.dumps(tv)}")
    rows = []
    out["synthetic"] = {}
    for size in [int(s) for s in args.sizes.split(",") if s]:
        r = synthetic(analyzer, settings, size, args.segments, args.queries)
        out["synthetic"][str(size)] = r
        rows.append(
            {
                "docs": size,
                "tok/s": f"{r['tokenize_docs_per_s']:.0f}",
                "build/s": f"{r['segments_build_docs_per_s']:.0f}|{r['bm25s_build_docs_per_s']:.0f}",
                "merge/s": f"{r['merge_docs_per_s']:.0f}",
                "p50 ms": f"{r['segments_latency']['p50_ms']:.2f}|{r['bm25s_latency']['p50_ms']:.2f}",
                "p95 ms": f"{r['segments_latency']['p95_ms']:.2f}|{r['bm25s_latency']['p95_ms']:.2f}",
                "top10=": f"{r['queries_with_identical_top10_up_to_ties']}/{r['queries']}",
                "MB mem": f"{r['segments_mem_mb']:.0f}|{r['bm25s_mem_mb']:.0f}",
                "MB disk": f"{r['segments_disk_mb']:.0f}|{r['bm25s_disk_mb']:.0f}",
                "RSS MB": f"{r['peak_rss_mb']:.0f}",
            }
        )
        save(args.name, out)  # after each size: a long run keeps what it measured
        gc.collect()
    if args.replicate:
        n, copies = (int(x) for x in args.replicate.split(":"))
        r = out["replicated"] = replicated(
            analyzer, settings, n, copies, args.segments, args.queries
        )
        save(args.name, out)
        lat, peer = r["segments_latency"], r["bm25s_latency"]
        print(
            f"{r['docs']} docs ({r['built_from']}, {r['segments']} segments): "
            f"p50 {lat['p50_ms']:.2f} ms p95 {lat['p95_ms']:.2f} ms; bm25s p50 "
            f"{peer['p50_ms']:.2f} ms p95 {peer['p95_ms']:.2f} ms; merge {r['merge_docs_per_s']:.0f} docs/s"
        )
    path = save(args.name, out)
    if rows:
        table(rows, f"segments ({args.segments}) | one bm25s index; k=10, one query at a time")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
