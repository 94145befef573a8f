"""Hamming search over random 64-bit hashes with the faiss-binary backend: per-query
k-NN and radius latency over 1M hashes (flat and multi-index hashing), and all-pairs
near-duplicate grouping time for 100k hashes (chunked range search + connected components,
no N x N matrix), side by side with imagededup's grouping (BK-tree) on a subset.

Random hashes have almost no neighbours within small radii, so some queries are planted
near-duplicates of stored hashes (a few flipped bits) to make the radius results non-empty.
Saves bench-results/hamming.json.

    python benchmarks/bench_hamming.py [--n 1000000] [--pairs-n 100000] [--peer-n 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _images_common import machine, save  # noqa: E402

from semsearch.images import hashing  # noqa: E402
from semsearch.images.dedup import components  # noqa: E402
from semsearch.indexer.vector.faiss_binary import FaissBinaryIndex  # noqa: E402


def planted(rng, codes: np.ndarray, n: int, flips: int) -> np.ndarray:
    q = codes[rng.integers(0, len(codes), n)].copy()
    bits = np.unpackbits(q, axis=1)
    for row in bits:
        row[rng.choice(64, flips, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def latencies(fn, queries) -> dict:
    ts = []
    for q in queries:
        t = time.perf_counter()
        fn(q[None, :])
        ts.append((time.perf_counter() - t) * 1000)
    a = np.array(ts)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3),
            "mean_ms": round(float(a.mean()), 3), "queries": len(a)}


def with_duplicates(rng, n: int, dup_frac: float = 0.05) -> np.ndarray:
    codes = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    k = int(n * dup_frac)
    codes[-k:] = planted(rng, codes[: n - k], k, 3)
    return codes[rng.permutation(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--pairs-n", type=int, default=100_000)
    ap.add_argument("--peer-n", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    import faiss

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (args.n, 8), dtype=np.uint8)
    ids = [str(i) for i in range(args.n)]
    out: dict = {"machine": machine(), "faiss_threads": faiss.omp_get_max_threads(), "n": args.n, "knn": {}, "radius": {}}
    for kind in ("flat", "multihash"):
        idx = FaissBinaryIndex(8, kind=kind)
        t = time.perf_counter()
        idx.upsert(ids, codes)
        idx._index()
        out.setdefault("build_s", {})[kind] = round(time.perf_counter() - t, 2)
        q = planted(rng, codes, args.queries, 4)
        out["knn"][kind] = latencies(lambda x, idx=idx: idx.search(x, 10), q)
        for r in (4, 8, 10, 12):
            lat = latencies(lambda x, r=r, idx=idx: idx.range_search(x, r), q)
            lat["mean_hits"] = round(float(np.mean([len(h) for h in idx.range_search(q[:50], r)])), 2)
            out["radius"].setdefault(kind, {})[str(r)] = lat
        print(f"  {kind}: knn {out['knn'][kind]}, radius {out['radius'][kind]}")
        del idx

    pc = with_duplicates(rng, args.pairs_n)
    out["pairs"] = {"n": args.pairs_n, "planted_duplicates": int(args.pairs_n * 0.05)}
    for kind in ("flat", "multihash"):
        idx = FaissBinaryIndex(8, kind=kind)
        idx.upsert([str(i) for i in range(len(pc))], pc)
        t = time.perf_counter()
        pairs = idx.pairs_within(10)
        groups = components(len(pc), pairs[:, :2])
        out["pairs"][kind] = {"seconds": round(time.perf_counter() - t, 2), "pairs": len(pairs), "groups": len(groups)}
        print(f"  all-pairs {args.pairs_n} {kind}: {out['pairs'][kind]}")

    # the peer on a subset: imagededup's find_duplicates over hex hashes (BK-tree search)
    from imagededup.methods import PHash

    sub = pc[: args.peer_n]
    enc = dict(zip([str(i) for i in range(len(sub))], hashing.to_hex(sub), strict=False))
    t = time.perf_counter()
    dups = PHash(verbose=False).find_duplicates(encoding_map=enc, max_distance_threshold=10)
    peer_s = time.perf_counter() - t
    idx = FaissBinaryIndex(8)
    idx.upsert(list(enc), sub)
    t = time.perf_counter()
    ours_pairs = idx.pairs_within(10)
    components(len(sub), ours_pairs[:, :2])
    ours_s = time.perf_counter() - t
    peer_pairs = sum(len(v) for v in dups.values()) // 2
    out["peer"] = {"n": args.peer_n, "imagededup_find_duplicates_s": round(peer_s, 2), "imagededup_pairs": peer_pairs,
                   "ours_flat_s": round(ours_s, 3), "ours_pairs": len(ours_pairs)}
    print(f"  peer on {args.peer_n}: {out['peer']}")
    path = save("hamming", out)
    print(f"\n1M-hash latency (ms, p50/p95), faiss threads = {out['faiss_threads']}")
    print(f"{'index':<10} {'kNN k=10':>14} " + " ".join(f"{'r<=' + r:>14}" for r in ("4", "8", "10", "12")))
    for kind in ("flat", "multihash"):
        k = out["knn"][kind]
        cells = " ".join(f"{v['p50_ms']:>6.2f}/{v['p95_ms']:<7.2f}" for v in out["radius"][kind].values())
        print(f"{kind:<10} {k['p50_ms']:>6.2f}/{k['p95_ms']:<7.2f} {cells}")
    print(f"all-pairs grouping of {args.pairs_n} hashes at d<=10: " + ", ".join(
        f"{k} {out['pairs'][k]['seconds']}s" for k in ("flat", "multihash")))
    print(f"vs imagededup on {args.peer_n}: imagededup {peer_s:.2f}s, ours {ours_s:.3f}s (pairs {peer_pairs} vs {len(ours_pairs)})")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
