"""Bulk indexing throughput: semsearch's pipeline vs raw SentenceTransformer.encode on the
same texts, same model, same batch size, in one process (target: >= 0.9x).

    python benchmarks/bench_indexing.py [--docs 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import load_jsonl, require_scifact, save, table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    from semsearch.config import Settings
    from semsearch.encoders.sbert import SentenceTransformerEncoder
    from semsearch.indexer.index import Index
    from semsearch.indexer.pipeline import Pipeline, TextChannel

    docs = load_jsonl(require_scifact() / "corpus.jsonl")[: args.docs]
    settings = Settings()
    settings.no_progress = True
    settings.text_encoder.batch_size = args.batch_size
    settings.indexing.batch_size = 1024
    enc = SentenceTransformerEncoder(settings.text_encoder)
    model = enc.model
    texts = [f"{d['title']} {d['text']}".strip() for d in docs]
    model.encode(texts[:64], batch_size=args.batch_size)  # warm-up

    rows = []
    results = {}
    for rep in range(2):
        t = time.perf_counter()
        model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        raw = time.perf_counter() - t
        tmp = Path(tempfile.mkdtemp())
        src = tmp / "in.jsonl"
        src.write_text("".join(json.dumps(d) + "\n" for d in docs))
        t = time.perf_counter()
        with Index.create(tmp / "ix", settings) as idx:
            report = Pipeline(idx, [TextChannel(enc)], settings).run([src])
        pipe = time.perf_counter() - t
        shutil.rmtree(tmp)
        assert report.indexed == len(docs)
        results[f"run{rep}"] = {
            "raw_encode_docs_per_s": len(docs) / raw,
            "pipeline_docs_per_s": len(docs) / pipe,
            "ratio": raw / pipe,
            "pipeline_encode_seconds": report.encode_seconds,
            "pipeline_total_seconds": pipe,
        }
        rows.append({"run": rep, "raw encode docs/s": len(docs) / raw, "pipeline docs/s": len(docs) / pipe, "pipeline/raw": raw / pipe})
    best = max(results.values(), key=lambda r: r["ratio"])
    path = save("indexing", {"docs": len(docs), "batch_size": args.batch_size, "runs": results, "best_ratio": best["ratio"], "target_ratio": 0.9})
    table(rows, f"bulk indexing, {len(docs)} SciFact docs (target pipeline/raw >= 0.9)")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
