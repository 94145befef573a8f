"""One-document writes until a search finds them, on a copy of an existing index (for
example `profile_scale.py`'s or bench_scale's with ``--keep``): ``upsert(wait_for=True)``
and ``upsert()`` + ``refresh()``, through ``semsearch.Collection`` with the default refresh
settings. The copy is written to and removed; the source index is not touched.

    python benchmarks/bench_write_visible.py --index /tmp/semsearch-bench-scale/profile-300000 --writes 40

Vectors: the index's documents were encoded elsewhere, so new documents get a cached vector
(bench_scale's ``vectors-100000.npy``) looked up by their text; encoding is not timed."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_scale as B  # noqa: E402
from common import save, table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, required=True, help="an index built with all-MiniLM-L6-v2 vectors (dim 384)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/semsearch-write-visible"))
    ap.add_argument("--writes", type=int, default=40)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/semsearch-bench-scale"))
    args = ap.parse_args()

    from semsearch.collection import Collection
    from semsearch.config import Settings
    from semsearch.documents import Document

    B.EXTRA_TEXTS.extend(d["text"] for d in B.load_jsonl(B.require_scifact() / "corpus.jsonl")[:200])
    vecs = np.load(B.doc_vectors(100_000, args.cache), mmap_mode="r")
    shutil.rmtree(args.work, ignore_errors=True)
    shutil.copytree(args.index, args.work)
    s = Settings()
    s.no_progress = True

    class Enc:
        name, dim = "sentence-transformers/all-MiniLM-L6-v2", B.DIM

        def encode(self, texts, batch_size=None):
            return np.stack([np.asarray(vecs[hash(t) % vecs.shape[0]], np.float32) for t in texts])

    out: dict[str, dict[str, float]] = {}
    with Collection.open(args.work, s, writable=True, encoder=Enc()) as col:
        docs = col.stats()["documents"]
        for mode in ("wait_for", "refresh"):
            lat = []
            for i in range(args.writes):
                d, _ = B.extra_doc(i + (0 if mode == "wait_for" else 5000), vecs, mode[0])
                doc = Document(id=d["_id"], title=d["title"], text=d["text"], metadata={"bucket": d["bucket"]})
                t = time.perf_counter()
                if mode == "wait_for":
                    col.upsert([doc], wait_for=True)
                else:
                    col.upsert([doc])
                    col.refresh()
                while not any(h.id == d["_id"] for h in col.search(d["token"], k=10, mode="lexical",
                                                                   with_documents=False).hits):
                    pass
                lat.append(time.perf_counter() - t)
                time.sleep(0.05)
            out[mode] = B.pct(lat)
    shutil.rmtree(args.work, ignore_errors=True)
    path = save("write_visible", {"index": str(args.index), "docs": docs, "writes": args.writes, "results": out,
                                  "load_average": list(os.getloadavg())})
    table([{"mode": m, "p50 ms": r["p50_ms"], "p95 ms": r["p95_ms"], "max ms": r["max_ms"]} for m, r in out.items()],
          f"one-document write to searchable, {docs} documents")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
