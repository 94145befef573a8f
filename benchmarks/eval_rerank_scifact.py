"""SciFact ablation: hybrid search without reranking vs hybrid + each trained reranker.

nDCG@10 (ranx) on the test split; the blend weight with the fusion score is chosen on the
held-out dev queries of the *train* split (the stage-2 dev split, from its training.json),
never on test. Writes bench-results/rerank_scifact.json (entries merged across runs).

    python benchmarks/eval_rerank_scifact.py --index /work/cache/scifact-index \
        --model stage1+2=/work/cache/reranker/s12/stage2 --dev-card /work/cache/reranker/s2/stage2/training.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = Path(os.environ.get("SEMSEARCH_SCIFACT", REPO.parent / "shared" / "data" / "scifact"))
BLENDS = [round(0.1 * i, 1) for i in range(11)]


def ndcg(qrels: dict, run: dict) -> float:
    from ranx import Qrels, Run, evaluate

    run = {q: r for q, r in run.items() if q in qrels}
    return float(evaluate(Qrels.from_dict(qrels), Run.from_dict(run), "ndcg@10"))


def runs_for(fused: dict, ce: dict, depth: int, blend: float) -> dict[str, dict[str, float]]:
    """The final ranking per query exactly as ``rerank_candidates`` would produce it."""
    from semsearch.rerank.apply import rerank_candidates

    class Cached:
        name = "cached"

        def __init__(self, scores):
            self.scores = scores

        def score(self, query, docs):
            return [self.scores[d.id] for d in docs]

    from semsearch.documents import Document

    out = {}
    for qid, items in fused.items():
        ranked = rerank_candidates(qid, items, Cached(ce[qid]), lambda ids: {i: Document(id=i) for i in ids},
                                   depth=depth, blend=blend)
        n = len(ranked)
        out[qid] = {r.item.id: float(n - i) for i, r in enumerate(ranked)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, default=Path("/work/cache/scifact-index"))
    ap.add_argument("--model", action="append", default=[], help="name=DIR (repeatable)")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--dev-card", type=Path, help="stage-2 training.json whose dev_qids pick the blend")
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    ap.add_argument("--onnx-file", default="model_int8.onnx", help="with --backend onnx (the reranker exports it on first use)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="first N test queries only (smoke runs)")
    ap.add_argument("--out", type=Path, default=REPO / "bench-results" / "rerank_scifact.json")
    a = ap.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from semsearch.config import RerankSettings, Settings
    from semsearch.eval.datasets import read_beir_queries, read_qrels
    from semsearch.indexer.index import Index
    from semsearch.rerank.cross_encoder import CrossEncoderReranker
    from semsearch.search import Searcher

    texts = read_beir_queries(DATA / "queries.jsonl")
    test_q = read_qrels(DATA / "qrels" / "test.tsv")
    if a.limit:
        test_q = dict(list(test_q.items())[: a.limit])
    train_q = read_qrels(DATA / "qrels" / "train.tsv")
    dev_ids = json.loads(a.dev_card.read_text())["dev_qids"] if a.dev_card else []
    dev_q = {q: train_q[q] for q in dev_ids}
    settings = Settings(no_progress=True)
    settings.text_encoder.device = "cpu"
    results = json.loads(a.out.read_text()) if a.out.exists() else {}
    with Index.open(a.index, settings) as idx:
        searcher = Searcher(idx, settings)
        qids = list(test_q) + list(dev_q)
        res = searcher.search_batch([texts[q] for q in qids], k=100, mode="hybrid", with_documents=False)

        class F:  # the fused candidates, as rerank_candidates sees them
            def __init__(self, h):
                self.id, self.score, self.channels = h.id, h.score, {}

        fused = {q: [F(h) for h in r.hits] for q, r in zip(qids, res, strict=True)}
        hybrid = {q: {f.id: f.score for f in fs} for q, fs in fused.items()}
        results["hybrid (no rerank)"] = {"test_ndcg@10": round(ndcg(test_q, hybrid), 4),
                                         "dev_ndcg@10": round(ndcg(dev_q, hybrid), 4) if dev_q else None}
        for spec in a.model:
            name, _, path = spec.partition("=")
            rr = CrossEncoderReranker(RerankSettings(model=path, max_length=a.max_length, device="cpu", batch_size=64,
                                                     backend=a.backend, onnx_file=a.onnx_file))
            docs = idx.get(sorted({f.id for fs in fused.values() for f in fs[: a.depth]}))
            t0 = time.perf_counter()
            ce = {}
            for q, fs in fused.items():
                head = [f.id for f in fs[: a.depth]]
                ce[q] = dict(zip(head, rr.score(texts[q], [docs[i] for i in head]), strict=True))
            secs = time.perf_counter() - t0
            per_blend = {}
            for b in BLENDS:
                run = runs_for(fused, ce, a.depth, b)
                per_blend[b] = {"test": ndcg(test_q, {q: run[q] for q in test_q}),
                                "dev": ndcg(dev_q, {q: run[q] for q in dev_q}) if dev_q else None}
            best = max(BLENDS, key=lambda b: per_blend[b]["dev"] or 0) if dev_q else 0.0
            results[name] = {
                "model": path, "depth": a.depth, "max_length": a.max_length,
                "backend": a.backend if a.backend == "torch" else f"onnx ({a.onnx_file})",
                "test_ndcg@10_rerank_only": round(per_blend[0.0]["test"], 4),
                "blend_chosen_on_dev": best,
                "test_ndcg@10_blend": round(per_blend[best]["test"], 4),
                "dev_ndcg@10_by_blend": {str(b): round(v["dev"], 4) for b, v in per_blend.items() if v["dev"] is not None},
                "test_ndcg@10_by_blend (for reference, not used to choose)": {str(b): round(v["test"], 4) for b, v in per_blend.items()},
                "scoring_seconds": round(secs, 1), "pairs": sum(len(v) for v in ce.values()),
            }
            a.out.parent.mkdir(exist_ok=True)
            a.out.write_text(json.dumps(results, indent=2))
    a.out.parent.mkdir(exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))
    print(f"{'run':28} {'test nDCG@10':>13} {'blend (dev)':>12} {'test blended':>13}")
    for name, r in results.items():
        if "test_ndcg@10" in r:
            print(f"{name:28} {r['test_ndcg@10']:>13.4f}")
        else:
            print(f"{name:28} {r['test_ndcg@10_rerank_only']:>13.4f} {r['blend_chosen_on_dev']:>12} {r['test_ndcg@10_blend']:>13.4f}")


if __name__ == "__main__":
    main()
