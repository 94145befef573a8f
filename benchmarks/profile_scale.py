"""Where one hybrid query's time goes at scale (issue #13): query encoding, lexical (and its
per-segment share), dense per segment, filter masks, fusion, document fetch.

    python benchmarks/profile_scale.py --docs 300000 [--queries 50] [--keep] [--merge policy|N]

The index is built as ``bench_scale.py`` builds semsearch's (the same synthetic corpus and
vectors, ``Index.write`` + ``sync()``, FAISS HNSW32, efSearch 128) under
``--cache``/profile-<docs>, or reopened when it is there already (``--keep`` leaves it).
``--merge policy`` runs the tiered policy's merges after the load (as bench_scale does);
``--merge N`` force-merges to at most N segments; ``--merge none`` keeps the bulk load's
segments. Each stage is timed by calling the code the search path calls, in the same order,
over one snapshot; the total is ``Collection.search(mode="hybrid")`` itself. Prints a table
and saves bench-results/profile_<docs>_<segments>seg.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEMSEARCH_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scale  # noqa: E402
from common import load_queries, save  # noqa: E402


def ms(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"mean": round(1000 * statistics.fmean(xs), 2), "p50": round(1000 * xs[len(xs) // 2], 2),
            "p95": round(1000 * xs[min(len(xs) - 1, int(0.95 * len(xs)))], 2)}


def build(path: Path, docs: int, cache: Path, merge: str, base_from: Path | None) -> dict[str, Any]:
    from semsearch.config import Settings
    from semsearch.encoders import make_text_encoder
    from semsearch.indexer.index import Index

    vec_file = bench_scale.doc_vectors(docs, cache, base_from)
    vecs = np.load(vec_file, mmap_mode="r")
    info: dict[str, Any] = {}
    if not (path / "manifest.json").exists():
        bench_scale.SKIP_MERGES = True
        qenc = make_text_encoder(Settings().text_encoder, for_queries=True)
        eng = bench_scale.SemsearchEngine(path, docs, vecs, qenc)
        t = time.perf_counter()
        info["ingest"] = eng.ingest()
        print(f"built {docs} docs in {time.perf_counter() - t:.0f}s: {info['ingest']['segments']}", flush=True)
    if merge != "none":
        s = bench_scale.SemsearchEngine(path, docs, vecs, None).settings()
        with Index.open(path, s, writable=True) as idx:
            t = time.perf_counter()
            if merge == "policy":
                while idx.maybe_merge() is not None:
                    pass
            else:
                idx.force_merge(int(merge))
            info["merge_s"] = time.perf_counter() - t
            print(f"merged ({merge}) in {info['merge_s']:.0f}s: {[r.n_docs for r in idx.manifest.segments]}",
                  flush=True)
    return info


def profile(path: Path, n_queries: int) -> dict[str, Any]:
    from semsearch.collection import Collection
    from semsearch.filters import parse_filter
    from semsearch.search.fusion import fuse

    s = bench_scale.SemsearchEngine(path, 0, None, None).settings()
    s.indexing.background_merges = False
    col = Collection.open(path, s)
    searcher = col.searcher
    _, queries, _ = load_queries("test")
    queries = queries[:n_queries]
    col.search("warm up", k=10, mode="hybrid")
    snap = col.index.snapshot()
    segs = snap.segments
    depth = s.fusion.depth
    enc = searcher.encoder
    lex = snap.lexical
    dense = snap.vectors["dense"]
    out: dict[str, Any] = {"docs": snap.count(), "segments": [sg.n_docs for sg in segs],
                           "segments_with_ann": sum(1 for sg in segs if sg.vectors["dense"].ann is not None),
                           "ef_search": dense.settings.ef_search, "depth": depth}
    filters = {"none": None, "1pct": {"bucket": 7}, "50pct": {"bucket": {"lt": 50}}}
    for fname, fdict in filters.items():
        flt = parse_filter(fdict) if fdict else None
        t_enc, t_lex, t_dense, t_mask, t_fuse, t_get, t_total = [], [], [], [], [], [], []
        per_seg = np.zeros(len(segs))
        for q in queries:
            t = time.perf_counter()
            masks = snap.masks(flt) if flt is not None else None
            t_mask.append(time.perf_counter() - t)
            t = time.perf_counter()
            qv = enc.encode([q])
            t_enc.append(time.perf_counter() - t)
            t = time.perf_counter()
            lres = lex.search_many([q], depth, boosts=s.lexical.boosts, masks=masks)
            t_lex.append(time.perf_counter() - t)
            t = time.perf_counter()
            dres = dense.search(qv, depth, masks=masks)
            t_dense.append(time.perf_counter() - t)
            for i, (sg, m) in enumerate(zip(segs, masks or [None] * len(segs))):
                t = time.perf_counter()
                sg.vectors["dense"].search(qv, depth, m if m is not None else snap.live(i), dense.settings)
                per_seg[i] += time.perf_counter() - t
            t = time.perf_counter()
            fused = fuse({"lexical": lres[0], "dense": dres[0]}, method=s.fusion.method, weights=s.fusion.weights,
                         rrf_k=s.fusion.rrf_k, normalization=s.fusion.normalization)
            t_fuse.append(time.perf_counter() - t)
            t = time.perf_counter()
            col.index.get([f.id for f in fused[:10]])
            t_get.append(time.perf_counter() - t)
            t = time.perf_counter()
            col.search(q, k=10, mode="hybrid", filters=fdict)
            t_total.append(time.perf_counter() - t)
        out[fname] = {"filter_masks": ms(t_mask), "encode": ms(t_enc), "lexical": ms(t_lex),
                      "dense": ms(t_dense), "fusion": ms(t_fuse), "fetch_docs": ms(t_get),
                      "search_total": ms(t_total),
                      "dense_per_segment_mean_ms": [round(1000 * x / len(queries), 2) for x in per_seg]}
    col.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=300_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--merge", default="none", help="none | policy | N (force-merge to N segments)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/semsearch-bench-scale"))
    ap.add_argument("--base-from-index", type=Path, default=None)
    ap.add_argument("--index", type=Path, default=None, help="default: <cache>/profile-<docs>")
    ap.add_argument("--profile-only", action="store_true", help="do not build or merge")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    bench_scale.EXTRA_TEXTS.append("")
    path = args.index or args.cache / f"profile-{args.docs}"
    info = {} if args.profile_only else build(path, args.docs, args.cache, args.merge, args.base_from_index)
    res = profile(path, args.queries)
    res["build"] = info
    res["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(f"{res['docs']} docs, segments {res['segments']}, load {res['load_average']}")
    print(f"{'stage (ms mean/p50/p95)':<26}" + "".join(f"{f:>22}" for f in ("none", "1pct", "50pct")))
    for stage in ("encode", "filter_masks", "lexical", "dense", "fusion", "fetch_docs", "search_total"):
        print(f"{stage:<26}" + "".join(f"{'{mean}/{p50}/{p95}'.format(**res[f][stage]):>22}"
                                       for f in ("none", "1pct", "50pct")))
    for f in ("none", "1pct", "50pct"):
        print(f"dense per segment ({f}): {res[f]['dense_per_segment_mean_ms']}")
    print("saved", save(f"profile_{res['docs']}_{len(res['segments'])}seg", res))


if __name__ == "__main__":
    main()
