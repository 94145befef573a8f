"""Near-duplicate groups: connected components of the Hamming graph of the pHashes.

Edges come from FAISS binary range searches (never an N x N matrix): ``direct`` edges join
images whose pHashes are within ``max_distance``; ``mirrored`` edges join an image whose
mirrored pHash is within ``max_distance`` of another's pHash (horizontal flips). Optionally
every edge must also have a CLIP cosine of at least ``min_cosine`` (only meaningful with
real CLIP weights).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semsearch.errors import BadInput

logger = logging.getLogger(__name__)


@dataclass
class DedupResult:
    groups: list[list[str]]
    pairs: list[tuple[str, str, int, str]]  # (a, b, distance, rule)
    max_distance: int
    images: int
    seconds: float = 0.0
    confirmed_by_clip: float | None = None
    rejected_by_clip: int = 0
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "pairs": [[a, b, d] for a, b, d, _ in self.pairs],
            "rules": [r for *_, r in self.pairs],
            "max_distance": self.max_distance,
            "images": self.images,
            "seconds": round(self.seconds, 3),
            "confirmed_by_clip_min_cosine": self.confirmed_by_clip,
            "rejected_by_clip": self.rejected_by_clip,
            "notes": self.notes,
        }


def components(n: int, edges: np.ndarray) -> list[list[int]]:
    """Connected components (size >= 2) of an undirected graph given as (m, 2) row pairs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0 or len(edges) == 0:
        return []
    g = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    order = np.argsort(labels, kind="stable")
    splits = np.flatnonzero(np.diff(labels[order])) + 1
    return [g.tolist() for g in np.split(order, splits) if len(g) > 1]


def _local_clip_vectors(index: Any) -> Callable[[list[str]], np.ndarray]:
    if "image" not in index.vectors:
        raise BadInput(f"index at {index.path} has no CLIP image channel to confirm pairs with")
    dim = index.manifest.channels["image"].dim
    return lambda ids: index.store.vectors(ids, "image", dim)


def find_duplicates(index: Any, max_distance: int, *, mirrored: bool = True, min_cosine: float | None = None,
                    clip_vectors: Callable[[list[str]], np.ndarray] | None = None) -> DedupResult:
    """``clip_vectors``: reads the CLIP embeddings of ids for ``min_cosine`` (default: the
    local index's ``image`` channel)."""
    t0 = time.perf_counter()
    if "phash" not in index.vectors:
        raise BadInput(f"index at {index.path} has no phash channel: index images first")
    vi = index.vectors["phash"]
    vi._compact()  # rows 0..n-1 are the live ids
    ids = vi.ids()
    best: dict[tuple[int, int], tuple[int, str]] = {}
    for a, b, d in vi.pairs_within(max_distance).tolist():
        best[(a, b)] = (d, "direct")
    notes = []
    mirror = index.vectors.get("phash_mirror")
    if mirrored and mirror is not None:
        for qrow, row, d in vi.cross_pairs(mirror.codes_of(ids), max_distance).tolist():
            if qrow == row:
                continue
            key = (min(qrow, row), max(qrow, row))
            if key not in best or d < best[key][0]:
                best[key] = (d, "mirrored")
    elif mirrored:
        notes.append("index has no phash_mirror channel: flips are not detected")
    rejected = 0
    if min_cosine is not None and best:
        read = clip_vectors or _local_clip_vectors(index)
        keys = list(best)
        rows = sorted({r for k in keys for r in k})
        vecs = read([ids[r] for r in rows])
        at = {r: i for i, r in enumerate(rows)}
        cos = np.array([float(vecs[at[a]] @ vecs[at[b]]) for a, b in keys])
        for k, c in zip(keys, cos, strict=False):
            if c < min_cosine:
                del best[k]
                rejected += 1
    edges = np.array(list(best), dtype=np.int64).reshape(-1, 2)
    groups = [[ids[r] for r in g] for g in components(len(ids), edges)]
    groups.sort(key=lambda g: (-len(g), g[0]))
    pairs = sorted(((ids[a], ids[b], d, rule) for (a, b), (d, rule) in best.items()), key=lambda p: (p[2], p[0], p[1]))
    return DedupResult(groups, pairs, max_distance, len(ids), time.perf_counter() - t0,
                       min_cosine, rejected, notes)
