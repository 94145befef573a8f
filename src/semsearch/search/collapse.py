"""Collapse near-duplicate hits (``SearchRequest(collapse=True)``): keep the best-ranked hit
of each group of near-duplicates and list the others under it. Which hits are near-duplicates
depends on what they are: text by dense cosine similarity (:func:`near_by_cosine`), images by
perceptual-hash Hamming distance, direct or mirrored (:func:`near_by_hash`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semsearch.documents import Hit
from semsearch.images import hashing


def collapse(hits: Sequence[Hit], near: np.ndarray) -> list[Hit]:
    """``near[i, j]``: hits ``i`` and ``j`` are near-duplicates. Each hit joins the first kept
    hit it is near (so a kept hit is the best-ranked of its group), else is kept. Kept hits get
    ``extra["duplicates"]``: the ids collapsed into them, best first."""
    kept: list[int] = []
    groups: dict[int, list[str]] = {}
    for i in range(len(hits)):
        owner = next((j for j in kept if near[i, j]), None)
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


def near_by_cosine(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """``vectors``: one L2-normalised row per hit; a zero row (no vector) is near nothing."""
    has = np.any(vectors, axis=1)
    return (vectors @ vectors.T >= threshold) & has[:, None] & has[None, :]


def near_by_hash(codes: np.ndarray, mirrored: np.ndarray | None, max_distance: int) -> np.ndarray:
    """``codes``: one packed 64-bit hash per hit; ``mirrored``: the hashes of the mirrored
    images (a flipped copy is then a near-duplicate too). Hamming distance <= ``max_distance``."""
    d = hashing.hamming(codes[:, None, :], codes[None, :, :])
    if mirrored is not None:
        d = np.minimum(d, hashing.hamming(codes[:, None, :], mirrored[None, :, :]))
    return d <= max_distance
