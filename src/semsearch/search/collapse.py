"""Collapse near-duplicate hits: keep the best-ranked one of each group of hits whose dense
vectors are at least ``threshold`` cosine-similar, and list the others under it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semsearch.documents import Hit


def collapse(hits: Sequence[Hit], vectors: np.ndarray, threshold: float) -> list[Hit]:
    """``vectors`` holds one L2-normalised row per hit (a zero row never matches).
    Kept hits get ``extra["duplicates"]``: the ids collapsed into them, best first."""
    if len(hits) == 0:
        return []
    sims = vectors @ vectors.T
    kept: list[int] = []
    groups: dict[int, list[str]] = {}
    for i in range(len(hits)):
        owner = next((j for j in kept if sims[i, j] >= threshold and np.any(vectors[i])), None)
        if owner is None:
            kept.append(i)
            groups[i] = []
        else:
            groups[owner].append(hits[i].id)
    out = []
    for i in kept:
        h = hits[i].model_copy(deep=True)
        if groups[i]:
            h.extra["duplicates"] = groups[i]
        out.append(h)
    return out
