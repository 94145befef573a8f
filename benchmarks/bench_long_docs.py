"""Long documents: dense and hybrid nDCG@10 with passages vs without (the encoder truncates),
and the peer pipeline (sentence-transformers MiniLM truncating + FAISS flat, bm25s for
hybrid with the same fusion), on documents made from SciFact.

Documents: the SciFact corpus shuffled (``--seed``) and cut into documents of ``--per-doc``
abstracts each (title line, then abstract, abstracts separated by a blank line); a document
is relevant to a test query when it holds an abstract relevant to it (its grade: the best
one's). Queries: SciFact test (qrels/test.tsv). Also measured: dense on the original short
SciFact documents, with and without passages (the 0.9x target's reference, and whether
passages change short-document quality).

Vectors are cached by text under .cache/bench (``CachedEncoder``): the first run encodes
about 25k texts of up to 256 word pieces (most of an hour on 2 busy cores); later runs
encode nothing. ``--warm`` only fills the cache.

    python benchmarks/bench_long_docs.py [--per-doc 8] [--seed 0] [--warm] [--es URL]

``--es URL`` also indexes the documents into the Elasticsearch store (passages in a nested
field, and one vector per document) and scores it beside the embedded engine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEMSEARCH_NO_PROGRESS", "1")

from common import REPO, CachedEncoder, load_jsonl, load_queries, require_scifact, table  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
TEMPLATE = "{title} {text}"


def long_docs(per_doc: int, seed: int) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The long documents and, per SciFact abstract id, the long document holding it."""
    corpus = load_jsonl(require_scifact() / "corpus.jsonl")
    random.Random(seed).shuffle(corpus)
    docs, where = [], {}
    for n, start in enumerate(range(0, len(corpus), per_doc)):
        doc_id = f"L{n:05d}"
        part = corpus[start : start + per_doc]
        for a in part:
            where[a["_id"]] = doc_id
        docs.append({"_id": doc_id, "title": "", "text": "\n\n".join(f"{a['title']}\n{a['text']}" for a in part)})
    return docs, where


def long_qrels(qrels: dict[str, dict[str, int]], where: dict[str, str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for q, rel in qrels.items():
        for d, g in rel.items():
            if g > 0 and d in where:
                out.setdefault(q, {})[where[d]] = max(g, out.get(q, {}).get(where[d], 0))
    return out


def make_encoder() -> CachedEncoder:
    from semsearch.config import TextEncoderSettings
    from semsearch.encoders.sbert import SentenceTransformerEncoder

    return CachedEncoder(SentenceTransformerEncoder(TextEncoderSettings(device="cpu")), "long-docs-minilm")


def documents(rows: list[dict[str, Any]]) -> list[Any]:
    from semsearch.documents import Document

    return [Document(id=r["_id"], title=r.get("title", ""), text=r["text"]) for r in rows]


def warm(enc: CachedEncoder, per_doc: int, seed: int) -> None:
    """Encode every text the benchmark needs, most needed first."""
    from semsearch.config import PassageSettings
    from semsearch.encoders import passages as P

    plan = P.plan_for(PassageSettings(enabled=True), enc)
    _, queries, _ = load_queries("test")
    longs = documents(long_docs(per_doc, seed)[0])
    short = documents(load_jsonl(require_scifact() / "corpus.jsonl"))
    steps = [("queries", lambda: enc.encode(queries)),
             ("long documents, truncated", lambda: enc.encode([TEMPLATE.format(title=d.title, text=d.text).strip() for d in longs])),
             ("long documents, passages", lambda: P.encode(enc, TEMPLATE, longs, plan)),
             ("SciFact documents", lambda: enc.encode([TEMPLATE.format(title=d.title, text=d.text).strip() for d in short])),
             ("SciFact passages", lambda: P.encode(enc, TEMPLATE, short, plan))]
    for name, fn in steps:
        t = time.perf_counter()
        before = enc.encoded
        fn()
        print(f"{name}: {enc.encoded - before} encoded in {time.perf_counter() - t:.0f} s", flush=True)


def ours(rows: list[dict[str, Any]], passages: bool, enc: CachedEncoder, queries: list[str],
         batch: int = 256) -> dict[str, list[list[str]]]:
    """semsearch's dense and hybrid top 10 per query over ``rows``, with passages or not."""
    from semsearch.collection import Collection
    from semsearch.config import PassageSettings, Settings

    settings = Settings()
    settings.no_progress = True
    settings.indexing.background_merges = False
    settings.text_encoder.passages = PassageSettings(enabled=passages)
    docs = documents(rows)
    with tempfile.TemporaryDirectory(prefix="semsearch-long-") as tmp, \
            Collection.create(Path(tmp) / "ix", settings, encoder=enc) as col:
        t = time.perf_counter()
        for start in range(0, len(docs), batch):
            col.upsert(docs[start : start + batch])
        col.compact()
        build = time.perf_counter() - t
        vs = col.index.snapshot().segments[0].vectors["dense"]
        out: dict[str, Any] = {"rows": int(len(vs.vectors)), "build_s": round(build, 1)}
        for mode in ("dense", "hybrid"):
            res = col.searcher.search_batch(queries, k=10, mode=mode, with_documents=False)
            out[mode] = [[h.id for h in r.hits] for r in res]
    return out


def ours_es(rows: list[dict[str, Any]], passages: bool, enc: CachedEncoder, queries: list[str], url: str,
            batch: int = 256) -> dict[str, Any]:
    """The same through the Elasticsearch store (one index, int8 HNSW; with passages: the
    nested ``passages`` field), searched with the store's defaults (client-side fusion)."""
    from semsearch.collection import Collection, SearchRequest
    from semsearch.config import PassageSettings, Settings

    settings = Settings()
    settings.no_progress = True
    settings.store.backend = "elasticsearch"
    e = settings.store.elasticsearch
    e.url, e.index, e.analyzer, e.replicas = url, f"semsearch-bench-long-{'p' if passages else 't'}", "semsearch_en", 0
    settings.text_encoder.passages = PassageSettings(enabled=passages)
    docs = documents(rows)
    from elasticsearch import Elasticsearch

    client = Elasticsearch(url.split(","), request_timeout=60)
    client.options(ignore_status=404).indices.delete(index=f"{e.index}*", expand_wildcards="all")
    try:
        with Collection.create(None, settings, encoder=enc) as col:
            t = time.perf_counter()
            for start in range(0, len(docs), batch):
                col.upsert(docs[start : start + batch])
            col.refresh()
            build = time.perf_counter() - t
            out: dict[str, Any] = {"build_s": round(build, 1), "layout": col.manifest["dense"].get("passages")}
            for mode in ("dense", "hybrid"):
                t = time.perf_counter()
                res = [x for start in range(0, len(queries), 50) for x in col.search_batch(
                    [SearchRequest(query=q, k=10, mode=mode, with_documents=False) for q in queries[start : start + 50]])]
                out[f"{mode}_ms_per_query"] = round((time.perf_counter() - t) * 1000 / len(queries), 1)
                out[mode] = [[h.id for h in r.hits] for r in res]
                out[f"{mode}_passages_named"] = sum(1 for r in res for h in r.hits if h.passage is not None)
    finally:
        client.options(ignore_status=404).indices.delete(index=f"{e.index}*", expand_wildcards="all")
        client.close()
    return out


def peer(rows: list[dict[str, Any]], enc: CachedEncoder, queries: list[str]) -> dict[str, list[list[str]]]:
    """The peer pipeline: sentence-transformers MiniLM over the whole text (it truncates at
    256 word pieces) in a FAISS IndexFlatIP, bm25s (k1=0.9, b=0.4, the same analyzer) for
    the lexical side, fused as semsearch fuses by default (convex, z-score, 0.5/0.5, depth
    100). Its vectors are the sentence-transformers model's (cached by text, shared with our
    no-passage run, which embeds the same texts with the same model)."""
    import bm25s
    import faiss

    from semsearch.config import Settings
    from semsearch.indexer.lexical.analysis import Analyzer
    from semsearch.search.fusion import fuse

    fs = Settings().fusion
    texts = [TEMPLATE.format(title=r.get("title", ""), text=r["text"]).strip() for r in rows]
    ids = [r["_id"] for r in rows]
    flat = faiss.IndexFlatIP(enc.dim)
    flat.add(enc.encode(texts))
    analyzer = Analyzer()
    bm = bm25s.BM25(k1=0.9, b=0.4)
    bm.index(analyzer(texts), show_progress=False)
    qv = enc.encode(queries)
    depth = min(fs.depth, len(rows))
    ds, di = flat.search(qv, depth)
    ld, ls = bm.retrieve(analyzer(queries), k=depth, show_progress=False, n_threads=1)
    dense, hybrid = [], []
    for i in range(len(queries)):
        d = [(ids[j], float(s)) for j, s in zip(di[i], ds[i]) if j >= 0]
        lex = [(ids[j], float(s)) for j, s in zip(ld[i], ls[i]) if s > 0]
        dense.append([x for x, _ in d[:10]])
        fused = fuse({"lexical": lex, "dense": d}, method=fs.method, weights=fs.weights,
                     normalization=fs.normalization)
        hybrid.append([f.id for f in fused[:10]])
    return {"dense": dense, "hybrid": hybrid}


def ndcg(qids: list[str], ranked: list[list[str]], qrels: dict[str, dict[str, int]], k: int = 10) -> dict[str, float]:
    """Per judged query, nDCG@k with the grade as gain (ranx's ``ndcg``; SciFact's grades
    are all 1); a judged query without results scores 0."""
    run = dict(zip(qids, ranked))
    out = {}
    for q, rel in qrels.items():
        gains = [rel.get(d, 0) for d in run.get(q, [])[:k]]
        dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
        ideal = sum(g / np.log2(i + 2) for i, g in enumerate(sorted(rel.values(), reverse=True)[:k]))
        out[q] = float(dcg / ideal) if ideal > 0 else 0.0
    return out


def paired(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    from scipy.stats import ttest_rel

    qs = sorted(a)
    x, y = np.array([a[q] for q in qs]), np.array([b[q] for q in qs])
    t = ttest_rel(x, y)
    return {"delta": round(float(x.mean() - y.mean()), 4), "t": round(float(t.statistic), 3),
            "p": float(t.pvalue), "n": len(qs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-doc", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warm", action="store_true", help="only encode what the benchmark needs into the cache")
    ap.add_argument("--es", default=None, metavar="URL",
                    help="also through the Elasticsearch store at URL (with and without passages)")
    ap.add_argument("--scifact", action="store_true",
                    help="also measure dense on the original SciFact documents with and without passages")
    args = ap.parse_args()
    enc = make_encoder()
    if args.warm:
        warm(enc, args.per_doc, args.seed)
        return
    qids, queries, qrels = load_queries("test")
    rows, where = long_docs(args.per_doc, args.seed)
    lq = long_qrels(qrels, where)
    from semsearch.config import PassageSettings
    from semsearch.encoders import passages as P

    plan = P.plan_for(PassageSettings(enabled=True), enc)
    n_passages = [len(c) for c in P.split(enc, TEMPLATE, documents(rows), plan)]
    runs: dict[str, list[list[str]]] = {}
    info: dict[str, Any] = {}
    for name, on in (("passages", True), ("truncated", False)):
        t = time.perf_counter()
        r = ours(rows, on, enc, queries)
        runs[f"semsearch dense, {name}"], runs[f"semsearch hybrid, {name}"] = r["dense"], r["hybrid"]
        info[name] = {"dense_rows": r["rows"], "build_s": r["build_s"], "seconds": round(time.perf_counter() - t, 1)}
        print(f"semsearch {name}: {info[name]}", flush=True)
    if args.es:
        for name, on in (("passages", True), ("truncated", False)):
            t = time.perf_counter()
            r = ours_es(rows, on, enc, queries, args.es)
            runs[f"ES store dense, {name}"], runs[f"ES store hybrid, {name}"] = r.pop("dense"), r.pop("hybrid")
            info[f"es_{name}"] = {**r, "seconds": round(time.perf_counter() - t, 1)}
            print(f"ES store {name}: {info[f'es_{name}']}", flush=True)
    p = peer(rows, enc, queries)
    runs["peer dense (ST truncating + FAISS flat)"], runs["peer hybrid (+ bm25s, same fusion)"] = p["dense"], p["hybrid"]
    scores = {name: ndcg(qids, r, lq) for name, r in runs.items()}
    short: dict[str, Any] = {}
    if args.scifact:
        corpus = load_jsonl(require_scifact() / "corpus.jsonl")
        for name, on in (("passages", True), ("truncated", False)):
            r = ours(corpus, on, enc, queries)
            key = f"SciFact short documents, dense, {name}"
            scores[key] = ndcg(qids, r["dense"], qrels)
            short[name] = round(float(np.mean(list(scores[key].values()))), 4)
            if on:
                scores["SciFact, hybrid, passages"] = ndcg(qids, r["hybrid"], qrels)
        if args.es:  # the congruence of the store with the embedded default (both with passages)
            r = ours_es(corpus, True, enc, queries, args.es)
            for mode in ("dense", "hybrid"):
                scores[f"SciFact, ES store {mode}, passages"] = ndcg(qids, r.pop(mode), qrels)
            info["es_scifact_passages"] = r
    reference = short.get("truncated", 0.645)  # README: dense on the short documents
    comparisons = {
        "dense: passages vs truncated": paired(scores["semsearch dense, passages"], scores["semsearch dense, truncated"]),
        "hybrid: passages vs truncated": paired(scores["semsearch hybrid, passages"], scores["semsearch hybrid, truncated"]),
        "dense: passages vs peer": paired(scores["semsearch dense, passages"], scores["peer dense (ST truncating + FAISS flat)"]),
        "hybrid: passages vs peer": paired(scores["semsearch hybrid, passages"], scores["peer hybrid (+ bm25s, same fusion)"]),
    }
    if args.es:
        for mode in ("dense", "hybrid"):
            comparisons[f"ES store {mode}: passages vs truncated"] = paired(
                scores[f"ES store {mode}, passages"], scores[f"ES store {mode}, truncated"])
            comparisons[f"ES store vs embedded, {mode}, passages"] = paired(
                scores[f"ES store {mode}, passages"], scores[f"semsearch {mode}, passages"])
    if args.scifact:
        comparisons["SciFact dense: passages vs truncated"] = paired(
            scores["SciFact short documents, dense, passages"], scores["SciFact short documents, dense, truncated"])
        if args.es:
            comparisons["SciFact: ES store vs embedded, hybrid, passages"] = paired(
                scores["SciFact, ES store hybrid, passages"], scores["SciFact, hybrid, passages"])
    means = {name: round(float(np.mean(list(v.values()))), 4) for name, v in scores.items()}
    dense_p = means["semsearch dense, passages"]
    targets = {
        "dense with passages >= 0.9 x short-document dense": {
            "value": dense_p, "reference": reference, "ratio": round(dense_p / reference, 3), "met": dense_p >= 0.9 * reference},
        "dense and hybrid beat no-passages (paired t-test p < 0.05, positive delta)": {
            "met": all(c["delta"] > 0 and c["p"] < 0.05 for k, c in comparisons.items() if "vs truncated" in k and "SciFact" not in k)},
    }
    if args.es and args.scifact:
        targets["SciFact: ES store hybrid with passages within 0.02 of embedded"] = {
            "value": means["SciFact, ES store hybrid, passages"], "embedded": means["SciFact, hybrid, passages"],
            "met": abs(means["SciFact, ES store hybrid, passages"] - means["SciFact, hybrid, passages"]) <= 0.02}
    if args.es:
        es_p = means["ES store dense, passages"]
        targets["ES store dense with passages >= 0.9 x short-document dense"] = {
            "value": es_p, "reference": reference, "ratio": round(es_p / reference, 3), "met": es_p >= 0.9 * reference}
        targets["ES store hybrid with passages within 0.02 of embedded"] = {
            "value": means["ES store hybrid, passages"], "embedded": means["semsearch hybrid, passages"],
            "met": abs(means["ES store hybrid, passages"] - means["semsearch hybrid, passages"]) <= 0.02}
    table([{"run": k, "nDCG@10": v} for k, v in means.items()], f"Long documents (SciFact, {args.per_doc} abstracts per document)")
    table([{"comparison": k, **c} for k, c in comparisons.items()], "Paired t-tests on per-query nDCG@10")
    for k, v in targets.items():
        print(f"target: {k}: {v}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "long_docs.json"
    payload = {
        "benchmark": "long_docs", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count()},
        "data": {"per_doc": args.per_doc, "seed": args.seed, "documents": len(rows), "queries": len(lq),
                 "passages": {"plan": plan.record(), "total": int(sum(n_passages)),
                              "per_document_mean": round(float(np.mean(n_passages)), 2),
                              "per_document_max": int(max(n_passages))},
                 "relevance": "a document is relevant to a query when it holds an abstract relevant to it "
                              "(grade: the highest); queries: SciFact test with a relevant abstract"},
        "ndcg@10": means, "comparisons": comparisons, "targets": targets, "index": info,
        "reference_short_dense": {"value": reference, "source": "measured (--scifact)" if short else "README (SciFact test, dense)"},
        "command": "python benchmarks/bench_long_docs.py" + (" --scifact" if args.scifact else "")
                   + (f" --es {args.es}" if args.es else ""),
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
