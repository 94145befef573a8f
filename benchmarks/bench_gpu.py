"""CPU against GPU in one run, through the engine's own code paths: text encoding
(SentenceTransformerEncoder, device cpu vs cuda with fp16), the dense vector channel of a
real Index (FAISS with gpu="never" vs gpu="always": refresh time, batch and single-query
search, recall@10 against exact search), and 64-bit Hamming search
(FaissBinaryIndex, gpu="never" vs "auto"). Run it where a CUDA GPU and faiss-gpu are present;
without them it stops with the reason. Saves bench-results/gpu.json and prints a table.

    python benchmarks/bench_gpu.py [--texts 5183] [--n 200000] [--queries 1000] [--factories 'Flat;IVF1024,Flat']
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SCIFACT, load_jsonl, percentiles, save, table, time_each  # noqa: E402

from semsearch.config import Settings, TextEncoderSettings  # noqa: E402
from semsearch.documents import Document  # noqa: E402
from semsearch.encoders.sbert import SentenceTransformerEncoder  # noqa: E402
from semsearch.indexer.index import Index  # noqa: E402
from semsearch.indexer.segments.vectors import gpu_status  # noqa: E402
from semsearch.indexer.vector.faiss_binary import FaissBinaryIndex  # noqa: E402


def texts(n: int) -> list[str]:
    if (SCIFACT / "corpus.jsonl").exists():
        docs = load_jsonl(SCIFACT / "corpus.jsonl")[:n]
        return [f"{d.get('title', '')} {d['text']}" for d in docs]
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    return [" ".join(rng.choice(words, 200)) for _ in range(n)]


def bench_encode(n: int) -> list[dict]:
    xs = texts(n)
    rows, out = [], {}
    for device in ("cpu", "cuda"):
        enc = SentenceTransformerEncoder(TextEncoderSettings(device=device, fp16=True, batch_size=128))
        enc.encode(xs[:64])  # load and warm up
        t = time.perf_counter()
        out[device] = enc.encode(xs)
        s = time.perf_counter() - t
        rows.append({"part": "encode", "path": device, "n": len(xs), "seconds": round(s, 2),
                     "per_second": round(len(xs) / s, 1)})
    cos = (out["cpu"] * out["cuda"]).sum(axis=1)
    rows[-1]["min_cosine_to_cpu"] = round(float(cos.min()), 5)
    return rows


def p50_ms(search, queries: np.ndarray) -> float:
    """Median latency of ``search`` on one query at a time."""
    return percentiles(time_each(lambda q: search(q[None, :]), queries))["p50_ms"]


def bench_dense(n: int, nq: int, factory: str, dim: int = 384) -> list[dict]:
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = vecs[rng.integers(0, n, nq)] + 0.1 * rng.standard_normal((nq, dim), dtype=np.float32)
    docs = [Document(id=f"d{i}", text="x") for i in range(n)]
    exact = [{f"d{j}" for j in row} for row in np.argpartition(-(queries @ vecs.T), 10, axis=1)[:, :10]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for gpu in ("never", "always"):
            s = Settings()
            s.vector.faiss.exact_below, s.vector.faiss.gpu, s.vector.faiss.nprobe = 0, gpu, 32
            index = Index.create(Path(tmp) / gpu, s)
            index.ensure_channel("dense", dim=dim, encoder="bench/random", settings={"factory": factory})
            t = time.perf_counter()
            index.write(docs, {"dense": vecs})
            index.sync()
            build = time.perf_counter() - t
            channel = index.snapshot().vectors["dense"]
            channel.search(queries[:8], 10)  # copies the segments to the GPU on the first search
            t = time.perf_counter()
            hits = channel.search(queries, 10)
            batch = time.perf_counter() - t
            recall = np.mean([len(exact[i] & {d for d, _ in r}) / 10 for i, r in enumerate(hits)])
            rows.append({"part": f"dense {factory}", "path": "cpu" if gpu == "never" else "gpu", "n": n,
                         "refresh_s": round(build, 2), "recall_at_10": round(float(recall), 4), "batch_qps": round(nq / batch, 1),
                         "p50_ms_one_query": p50_ms(lambda q, c=channel: c.search(q, 10), queries[:200]),
                         "on_gpu": bool(channel.info().get("gpu"))})
            index.close()
    return rows


def bench_binary(n: int, nq: int) -> list[dict]:
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    queries = codes[rng.integers(0, n, nq)]
    rows, found = [], {}
    for gpu in ("never", "auto"):
        b = FaissBinaryIndex(8, gpu=gpu)
        b.upsert([str(i) for i in range(n)], codes)
        b.search(queries[:8], 10)
        t = time.perf_counter()
        res = b.search(queries, 10)
        s = time.perf_counter() - t
        found[gpu] = [[d for d, _ in r] for r in res]
        rows.append({"part": "hamming flat", "path": "cpu" if gpu == "never" else "gpu", "n": n,
                     "batch_qps": round(nq / s, 1), "p50_ms_one_query": p50_ms(lambda q, b=b: b.search(q, 10), queries[:200]),
                     "on_gpu": bool(b.info()["gpu"])})
    rows[-1]["same_distances_as_cpu"] = found["never"] == found["auto"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=5183)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--factories", default="Flat;IVF1024,Flat", help="FAISS factory strings, ';'-separated")
    a = ap.parse_args()
    import torch

    n_gpus, why = gpu_status()
    if not torch.cuda.is_available() or n_gpus == 0:
        raise SystemExit(f"needs a CUDA GPU that torch and FAISS can use (torch sees one: {torch.cuda.is_available()}; "
                         f"FAISS: {why or 'ok'})")
    rows = bench_encode(a.texts)
    for factory in a.factories.split(";"):
        rows += bench_dense(a.n, a.queries, factory)
    rows += bench_binary(a.n * 5, a.queries)
    rows = [{"gpu_name": torch.cuda.get_device_name(0), **r} if r["path"] != "cpu" else r for r in rows]
    path = save("gpu", {"args": vars(a), "rows": rows})
    keys = list(dict.fromkeys(k for r in rows for k in r))
    table([{k: r.get(k, "") for k in keys} for r in rows], f"CPU vs GPU ({path})")


if __name__ == "__main__":
    main()
