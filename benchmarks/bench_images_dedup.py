"""Near-duplicate detection quality on flickr500: our pHash/dHash (with and without the
mirrored rule) vs imagededup's PHash, on the same pairs, in one run.

For every original and every transformation, (original, its transformed copy) is a
positive pair and (original, another image's transformed copy) a negative pair, so each
transformation has 500 positives and 500*499 negatives. A pair is predicted duplicate when
the Hamming distance is <= the threshold. Prints P/R/F1 per transformation and threshold
and saves bench-results/images_dedup.json.

    python benchmarks/bench_images_dedup.py [--limit N] [--thresholds 4,6,8,10,12]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _images_common import RESULTS, TRANSFORMS, hash_files, machine, make_variants, originals, save  # noqa: E402

from semsearch.images import hashing  # noqa: E402


def imagededup_hashes(files: list[Path]) -> np.ndarray:
    from imagededup.methods import PHash

    ph = PHash(verbose=False)
    return hashing.from_hex([ph.encode_image(image_file=str(f)) for f in files])


def dist_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, n) Hamming distances; n = 500 here, so the dense matrix is fine for evaluation."""
    lut = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1)
    return lut[a[:, None, :] ^ b[None, :, :]].sum(-1)


def prf(d: np.ndarray, t: int) -> dict[str, float]:
    n = len(d)
    pos = np.diag(d) <= t
    neg = (d <= t) & ~np.eye(n, dtype=bool)
    tp, fp = int(pos.sum()), int(neg.sum())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / n
    return {"precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0, "tp": tp, "fp": fp}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--thresholds", default="2,4,6,8,10,12,14")
    args = ap.parse_args()
    thresholds = [int(t) for t in args.thresholds.split(",")]
    files = originals(args.limit)
    t0 = time.perf_counter()
    variants = make_variants(files, RESULTS / "flickr500-variants")
    print(f"{len(files)} originals x {len(TRANSFORMS)} transformations ready in {time.perf_counter() - t0:.0f}s")
    base_ours, base_dd = hash_files(files), imagededup_hashes(files)
    base_fast = hash_files(files, fast_decode=True)
    results: dict = {}
    for t in TRANSFORMS:
        ours, dd = hash_files(variants[t]), imagededup_hashes(variants[t])
        fast = hash_files(variants[t], fast_decode=True)
        methods = {
            "ours-phash": dist_matrix(base_ours["phash"], ours["phash"]),
            "ours-phash+mirror": np.minimum(dist_matrix(base_ours["phash"], ours["phash"]),
                                            dist_matrix(base_ours["phash_mirror"], ours["phash"])),
            "ours-dhash": dist_matrix(base_ours["dhash"], ours["dhash"]),
            # images.fast_decode (hashes only): luma decoded at 1/2-1/8 scale, not bit-identical
            "ours-phash fast": dist_matrix(base_fast["phash"], fast["phash"]),
            "ours-phash+mirror fast": np.minimum(dist_matrix(base_fast["phash"], fast["phash"]),
                                                 dist_matrix(base_fast["phash_mirror"], fast["phash"])),
            "ours-dhash fast": dist_matrix(base_fast["dhash"], fast["dhash"]),
            "imagededup-phash": dist_matrix(base_dd, dd),
        }
        results[t] = {m: {str(th): prf(d, th) for th in thresholds} for m, d in methods.items()}
        print(f"  {t}: done")
    # the headline: the four 'easy' transformations together, per method and threshold
    easy = ["resize50", "jpeg30", "bright+20", "bright-20", "grayscale"]
    summary = {}
    for m in results[TRANSFORMS[0]]:
        summary[m] = {}
        for th in thresholds:
            tp = sum(results[t][m][str(th)]["tp"] for t in easy)
            fp = sum(results[t][m][str(th)]["fp"] for t in easy)
            p, r = tp / (tp + fp) if tp + fp else 1.0, tp / (len(files) * len(easy))
            summary[m][str(th)] = {"precision": round(p, 4), "recall": round(r, 4)}
    data = {"machine": machine(), "images": len(files), "transforms": TRANSFORMS, "thresholds": thresholds,
            "pairs_per_transform": {"positives": len(files), "negatives": len(files) * (len(files) - 1)},
            "results": results, "easy_transforms": easy, "easy_summary": summary}
    path = save("images_dedup", data)
    show = [t for t in thresholds if t in (4, 8, 10, 12)] or thresholds
    print(f"\nP/R/F1 per transformation (positives {len(files)}, negatives {len(files) * (len(files) - 1)} each)")
    print(f"{'transform':<11} {'method':<22} " + " ".join(f"{'t<=' + str(t):>17}" for t in show))
    for t in TRANSFORMS:
        for m, per in results[t].items():
            cells = " ".join(f"{per[str(th)]['precision']:.3f}/{per[str(th)]['recall']:.3f}/{per[str(th)]['f1']:.3f}" for th in show)
            print(f"{t:<11} {m:<22} {cells}")
    print("\nresize+jpeg30+brightness+-20+grayscale pooled (precision/recall):")
    for m, per in summary.items():
        print(f"  {m:<22} " + " ".join(f"t<={th}: {v['precision']:.4f}/{v['recall']:.4f}" for th, v in per.items()))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
