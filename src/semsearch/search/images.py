"""Image search: text-to-image through the CLIP text tower and search by example image (CLIP
and perceptual hashes). Collapsing near-duplicate hits is :mod:`semsearch.search.collapse`.

Hash channels score by **Hamming distance** (lower is closer): their hits carry the
distance in ``Hit.channels[name].score`` and in ``Hit.extra["hamming"]``, plus which rule
matched (``direct`` or ``mirrored``) in ``Hit.extra["rule"]``. Several channels are fused by
reciprocal rank fusion, which only uses ranks, so distances and cosines never mix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semsearch.documents import ChannelScore, Hit, SearchResult
from semsearch.errors import BadInput, IndexIncompatible
from semsearch.images import hashing
from semsearch.search.fusion import Fused, rrf

if TYPE_CHECKING:
    from PIL import Image

    from semsearch.search.engine import Searcher

logger = logging.getLogger(__name__)

HASH_CHANNELS = ("phash", "dhash")


def clip_encoder(searcher: Searcher):  # noqa: ANN201 - ClipEncoder
    """The CLIP encoder of the index's ``image`` channel, created once per searcher."""
    enc = searcher.clip
    if enc is None:
        from semsearch.encoders.clip import ClipEncoder

        searcher.share_models(clip=ClipEncoder(searcher.settings.clip))
        enc = searcher.clip
    built = searcher.index.channel_encoder("image")
    if built is not None and built != enc.name:
        raise IndexIncompatible(
            f"index at {searcher.index.path} was built with CLIP {built!r} but the "
            f"configured one is {enc.name!r}; set SEMSEARCH_CLIP__ARCHITECTURE / "
            "SEMSEARCH_CLIP__PRETRAINED to match or rebuild"
        )
    return enc


def as_image(image: Image.Image | str | Path, max_pixels: int) -> Image.Image:
    from PIL import Image

    if isinstance(image, Image.Image):
        from semsearch.images.io import _to_rgb

        return _to_rgb(image)
    from semsearch.images.io import load_image

    return load_image(Path(image), max_pixels=max_pixels)


def hash_query(index: Any, name: str, img: Image.Image, k: int | None, max_distance: int | None):  # noqa: ANN201
    """Hash ``img`` directly and mirrored; per id the smaller distance and its rule."""
    vi = index.vectors[name]
    found: dict[str, list[tuple[str, int]]] = {}
    for rule, q in query_hashes(name, img).items():
        if max_distance is not None:
            found[rule] = [(i, int(d)) for i, d in vi.range_search(q, max_distance)[0]]
        else:
            found[rule] = [(i, int(d)) for i, d in vi.search(q, k)[0]]
    return best_rule(found, k)


def query_hashes(name: str, img: Image.Image) -> dict[str, np.ndarray]:
    """The hashes a query image is searched by, per rule: ``direct`` (the image's) and
    ``mirrored`` (its horizontal flip's, to find flipped copies), each shape (1, 8) uint8."""
    inputs = [hashing.hash_inputs(img)]
    return {rule: hashing.compute(name, inputs, mirrored=mirrored)
            for rule, mirrored in (("direct", False), ("mirrored", True))}


def best_rule(found: dict[str, list[tuple[str, int]]], k: int | None) -> list[tuple[str, tuple[int, str]]]:
    """Per id, the smaller distance of the rules that found it and that rule, nearest first
    (``direct`` before ``mirrored`` on a tie); the first ``k`` (None: all)."""
    best: dict[str, tuple[int, str]] = {}
    for rule, hits in found.items():
        for doc_id, d in hits:
            if doc_id not in best or d < best[doc_id][0]:
                best[doc_id] = (d, rule)
    ranked = sorted(best.items(), key=lambda kv: (kv[1][0], kv[1][1] != "direct"))
    return ranked if k is None else ranked[:k]


def record_hash_hits(name: str, hits: list[tuple[str, tuple[int, str]]], ranked: dict[str, list[tuple[str, float]]],
                     hamming: dict[str, dict[str, int]], rules: dict[str, dict[str, str]]) -> None:
    """Add a hash channel's :func:`best_rule` list to the lists fused by :func:`image_hits`."""
    ranked[name] = [(i, float(d)) for i, (d, _) in hits]
    for i, (d, rule) in hits:
        hamming.setdefault(i, {})[name] = d
        rules.setdefault(i, {})[name] = rule


def image_hits(ranked: dict[str, list[tuple[str, float]]], hamming: dict[str, dict[str, int]],
               rules: dict[str, dict[str, str]], k: int, rrf_k: int) -> list[Hit]:
    """The top ``k`` of the image channels' lists (one channel: its order, a hash channel
    scored minus its distance; several: reciprocal rank fusion), hash hits explained by their
    distances and rules."""
    channels = list(ranked)
    if len(channels) == 1:
        fused = [Fused(d, -s if channels[0] != "image" else s, {channels[0]: (r, s)})
                 for r, (d, s) in enumerate(ranked[channels[0]], 1)]
    else:
        fused = rrf(ranked, k=rrf_k)
    hits = []
    for n, f in enumerate(fused[:k], 1):
        extra: dict[str, Any] = {}
        if f.id in hamming:
            extra = {"hamming": hamming[f.id], "rule": rules[f.id]}
        hits.append(Hit(id=f.id, score=f.score, rank=n, extra=extra,
                        channels={c: ChannelScore(rank=r, score=s) for c, (r, s) in f.channels.items()}))
    return hits


def search_by_image(
    searcher: Searcher,
    image: Image.Image | str | Path,
    *,
    k: int = 10,
    channels: Sequence[str] | None = None,
    max_distance: int | None = None,
    with_documents: bool = True,
) -> SearchResult:
    t0 = time.perf_counter()
    index = searcher.index
    if k < 1 or k > searcher.settings.search.max_k:
        raise BadInput(f"k must be between 1 and {searcher.settings.search.max_k}, got {k}")
    if channels is None:
        channels = [c for c in ("image", "phash") if c in index.vectors]
    channels = list(channels)
    for c in channels:
        if c not in index.vectors or (c != "image" and c not in HASH_CHANNELS):
            have = [n for n in index.vectors if n == "image" or n in HASH_CHANNELS]
            raise BadInput(f"index at {index.path} has no image channel {c!r}; it has {have}")
    if not channels:
        raise BadInput(f"index at {index.path} has no image channels")
    img = as_image(image, searcher.settings.images.max_pixels)
    depth = max(k, searcher.settings.fusion.depth)
    ranked: dict[str, list[tuple[str, float]]] = {}
    hamming: dict[str, dict[str, int]] = {}
    rules: dict[str, dict[str, str]] = {}
    for c in channels:
        if c == "image":
            qv = clip_encoder(searcher).encode_images([img])
            ranked[c] = index.vectors[c].search(qv, depth)[0]
        else:
            hits = hash_query(index, c, img, None if max_distance is not None else depth, max_distance)
            record_hash_hits(c, hits, ranked, hamming, rules)
    hits = image_hits(ranked, hamming, rules, k, searcher.settings.fusion.rrf_k)
    if with_documents and hits:
        docs = index.get([h.id for h in hits])
        for h in hits:
            h.document = docs.get(h.id)
    took = (time.perf_counter() - t0) * 1000
    label = str(image) if not hasattr(image, "size") else "<image>"
    return SearchResult(query=label, mode="by-image", hits=hits, took_ms=round(took, 3))
