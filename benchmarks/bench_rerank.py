"""Rerank latency for the top-N on CPU (p50/p95) and the quality cost of each latency lever.

Configs: PyTorch fp32 at max_length 256/128, ONNX Runtime fp32 and int8 (dynamic
quantisation) at 128 and 96, against the peer baseline: plain sentence-transformers
``CrossEncoder.predict`` on "title text" with its own truncation at 256 tokens. Quality: reranking
nDCG@10 of the hybrid top-N over the held-out *train-split* dev queries (from a stage-2
training.json), so no test data is used to choose a lever.

    python benchmarks/bench_rerank.py --model /work/cache/reranker/s12/stage2 \
        --dev-card /work/cache/reranker/s12/stage2/training.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eval_rerank_scifact import DATA, ndcg  # noqa: E402

CONFIGS = [  # name, backend, max_length, onnx file
    ("torch fp32 @256", "torch", 256, None),
    ("torch fp32 @128", "torch", 128, None),
    ("onnx fp32 @128", "onnx", 128, "model.onnx"),
    ("onnx int8 @128", "onnx", 128, "model_int8.onnx"),
    ("onnx int8 @96", "onnx", 96, "model_int8.onnx"),
    ("onnx int8 @80", "onnx", 80, "model_int8.onnx"),
    ("onnx int8 @72", "onnx", 72, "model_int8.onnx"),
    ("onnx int8 @64", "onnx", 64, "model_int8.onnx"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, default=Path("/work/cache/scifact-index"))
    ap.add_argument("--model", required=True)
    ap.add_argument("--dev-card", type=Path, required=True)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--configs", default="", help="comma-separated config names to run (default: all + the peer)")
    ap.add_argument("--out", type=Path, default=REPO / "bench-results" / "bench_rerank.json")
    a = ap.parse_args()
    wanted = [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = sorted(set(wanted) - {c[0] for c in CONFIGS} - {"peer"})
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}; choose from {['peer'] + [c[0] for c in CONFIGS]}")
    import torch
    from sentence_transformers import CrossEncoder

    from semsearch.config import RerankSettings, Settings
    from semsearch.eval.datasets import read_beir_queries, read_qrels
    from semsearch.indexer.index import Index
    from semsearch.rerank.cross_encoder import CrossEncoderReranker
    from semsearch.search import Searcher

    texts = read_beir_queries(DATA / "queries.jsonl")
    train_q = read_qrels(DATA / "qrels" / "train.tsv")
    dev = {q: train_q[q] for q in json.loads(a.dev_card.read_text())["dev_qids"]}
    test_ids = list(read_qrels(DATA / "qrels" / "test.tsv"))[: a.reps]
    settings = Settings(no_progress=True)
    settings.text_encoder.device = "cpu"
    with Index.open(a.index, settings) as idx:
        searcher = Searcher(idx, settings)
        qids = list(dev) + test_ids
        res = searcher.search_batch([texts[q] for q in qids], k=a.top, mode="hybrid", with_documents=False)
        cands = {q: [h.id for h in r.hits] for q, r in zip(qids, res, strict=True)}
        docs = idx.get(sorted({d for ids in cands.values() for d in ids}))
    rows = []

    def measure(name: str, score) -> None:  # noqa: ANN001 - score(query, docs) -> scores
        score(texts[test_ids[0]], [docs[d] for d in cands[test_ids[0]]])  # warm up
        lat = []
        for q in test_ids:
            t0 = time.perf_counter()
            score(texts[q], [docs[d] for d in cands[q]])
            lat.append((time.perf_counter() - t0) * 1000)
        run = {}
        for q in dev:
            s = score(texts[q], [docs[d] for d in cands[q]])
            run[q] = {d: float(x) for d, x in zip(cands[q], s, strict=True)}
        rows.append({"config": name, "p50_ms": round(float(np.percentile(lat, 50)), 1),
                     "p95_ms": round(float(np.percentile(lat, 95)), 1),
                     "dev_ndcg@10": round(ndcg(dev, run), 4)})
        print(f"{name:28} p50 {rows[-1]['p50_ms']:8.1f} ms  p95 {rows[-1]['p95_ms']:8.1f} ms  "
              f"dev nDCG@10 {rows[-1]['dev_ndcg@10']:.4f}", flush=True)

    if not wanted or "peer" in wanted:
        peer = CrossEncoder(a.model, device="cpu", max_length=256)
        measure("peer: CrossEncoder @256", lambda q, ds: peer.predict(
            [(q, f"{d.title} {d.text}") for d in ds], batch_size=32, show_progress_bar=False))
    for name, backend, max_len, onnx_file in CONFIGS:
        if wanted and name not in wanted:
            continue
        rr = CrossEncoderReranker(RerankSettings(model=a.model, backend=backend, max_length=max_len,
                                                 onnx_file=onnx_file, device="cpu", batch_size=32))
        measure(name, rr.score)
    out = {"top": a.top, "reps": len(test_ids), "dev_queries": len(dev), "model": a.model,
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "platform": platform.platform(), "load_avg": os.getloadavg()},
           "rows": rows}
    a.out.parent.mkdir(exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
