"""A shallower cross-encoder start for the latency ablation in docs/rerank.md: the bundled
MiniLM's first N transformer layers with a fresh 1-label head, saved where
``semsearch train-reranker --base DIR`` can start from it.

    python benchmarks/make_shallow_cross_encoder.py OUT_DIR --layers 3
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, default=3)
    a = ap.parse_args()
    from sentence_transformers import CrossEncoder

    from semsearch.rerank.cross_encoder import base_model_path

    ce = CrossEncoder(base_model_path(), num_labels=1, device="cpu")
    encoder = ce.model.base_model.encoder
    if not 1 <= a.layers <= len(encoder.layer):
        raise SystemExit(f"--layers must be 1..{len(encoder.layer)}, got {a.layers}")
    encoder.layer = encoder.layer[: a.layers]
    ce.model.config.num_hidden_layers = a.layers
    ce.save(str(a.out))
    params = sum(p.numel() for p in ce.model.parameters())
    print(f"saved {a.out}: {a.layers} layers, {params:,} parameters")


if __name__ == "__main__":
    main()
