"""Rank fusion of several retrieval channels. Pure functions, no I/O.

Input: ``{channel: [(doc_id, score), ...]}`` with each list ranked best first.
Output: fused hits, best first, each carrying its per-channel rank (1-based) and raw score.

- :func:`rrf` — reciprocal rank fusion: ``sum_c w_c / (k + rank_c(d))``.
- :func:`convex` — normalised convex combination: ``sum_c w_c * norm_c(score_c(d))`` where
  ``norm`` is min-max or z-score over that channel's candidate list; a document a channel did
  not return contributes that channel's minimum (0 after min-max, the lowest z after z-score).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from semsearch.errors import BadInput

Ranked = Sequence[tuple[str, float]]


@dataclass
class Fused:
    id: str
    score: float
    channels: dict[str, tuple[int, float]] = field(default_factory=dict)


def _weights(channels: Mapping[str, Ranked], weights: Mapping[str, float] | None) -> dict[str, float]:
    w = {c: float((weights or {}).get(c, 1.0)) for c in channels}
    bad = {c: v for c, v in w.items() if v < 0 or math.isnan(v)}
    if bad:
        raise BadInput(f"fusion weights must be >= 0, got {bad}")
    return w


def _explain(channels: Mapping[str, Ranked]) -> dict[str, dict[str, tuple[int, float]]]:
    out: dict[str, dict[str, tuple[int, float]]] = {}
    for c, ranked in channels.items():
        for rank, (doc_id, score) in enumerate(ranked, start=1):
            out.setdefault(doc_id, {}).setdefault(c, (rank, float(score)))
    return out


def _sorted(scores: dict[str, float], explain: dict[str, dict[str, tuple[int, float]]]) -> list[Fused]:
    # ties broken by the best rank in any channel, then by id, so results are deterministic
    order = sorted(
        scores,
        key=lambda d: (-scores[d], min(r for r, _ in explain[d].values()), d),
    )
    return [Fused(d, scores[d], explain[d]) for d in order]


def rrf(channels: Mapping[str, Ranked], *, k: int = 60, weights: Mapping[str, float] | None = None) -> list[Fused]:
    if k < 1:
        raise BadInput(f"RRF k must be >= 1, got {k}")
    w = _weights(channels, weights)
    explain = _explain(channels)
    scores: dict[str, float] = {}
    for d, per in explain.items():
        scores[d] = sum(w[c] / (k + rank) for c, (rank, _) in per.items())
    return _sorted(scores, explain)


def _normalise(values: list[float], how: str) -> tuple[list[float], float]:
    """Normalised values and the value a missing document gets."""
    if how == "minmax":
        lo, hi = min(values), max(values)
        if hi == lo:
            return [1.0] * len(values), 0.0
        return [(v - lo) / (hi - lo) for v in values], 0.0
    if how == "zscore":
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        if sd == 0:
            return [0.0] * len(values), 0.0
        z = [(v - mean) / sd for v in values]
        return z, min(z)
    raise BadInput(f"unknown normalisation {how!r}; use 'minmax' or 'zscore'")


def convex(
    channels: Mapping[str, Ranked],
    *,
    weights: Mapping[str, float] | None = None,
    normalization: Literal["minmax", "zscore"] = "minmax",
) -> list[Fused]:
    w = _weights(channels, weights)
    explain = _explain(channels)
    scores: dict[str, float] = dict.fromkeys(explain, 0.0)
    for c, ranked in channels.items():
        if not ranked:
            continue
        seen: dict[str, float] = {}
        for doc_id, s in ranked:
            seen.setdefault(doc_id, float(s))
        norm, missing = _normalise(list(seen.values()), normalization)
        by_id = dict(zip(seen, norm))
        for d in scores:
            scores[d] += w[c] * by_id.get(d, missing)
    return _sorted(scores, explain)


def fuse(
    channels: Mapping[str, Ranked],
    *,
    method: Literal["rrf", "convex"] = "convex",
    weights: Mapping[str, float] | None = None,
    rrf_k: int = 60,
    normalization: Literal["minmax", "zscore"] = "minmax",
) -> list[Fused]:
    if method == "rrf":
        return rrf(channels, k=rrf_k, weights=weights)
    if method == "convex":
        return convex(channels, weights=weights, normalization=normalization)
    raise BadInput(f"unknown fusion method {method!r}; use 'rrf' or 'convex'")
