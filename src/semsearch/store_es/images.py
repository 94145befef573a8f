"""Images in the Elasticsearch store: search by example image over the CLIP embeddings
(``dense_vector``) and the perceptual hashes (``bit`` vectors, kNN by Hamming distance), and
near-duplicate groups.

The channels are searched as the embedded engine searches them
(:mod:`semsearch.search.images`): CLIP by the query image's embedding; a hash channel by the
query image's hash and its mirror's, the nearer rule kept per document; several channels
fused by reciprocal rank fusion. Elasticsearch scores a ``bit`` vector by
``(64 - hamming) / 64``, and a radius (``max_distance``) is the kNN's ``similarity`` (for
``l2_norm`` on bits: the largest Hamming distance).

Near-duplicate groups read every stored pHash (and mirrored pHash) once, through a point in
time, and group them in memory exactly as the local index does
(:func:`semsearch.images.dedup.find_duplicates` over FAISS binary indexes): 16 bytes per
image, a scan of 1M images is 16 MB.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from semsearch.documents import SearchResult
from semsearch.errors import BackendUnavailable, BadInput
from semsearch.images.hashing import HASH_BYTES
from semsearch.indexer.es_common import item_reason
from semsearch.search import images as I
from semsearch.store_es import mapping, query

BITS = HASH_BYTES * 8


def search_by_image(col: Any, image: Any, *, k: int = 10, channels: Sequence[str] | None = None,
                    max_distance: int | None = None, with_documents: bool = True) -> SearchResult:
    t0 = time.perf_counter()
    have = [c for c in col.channels if c == "image" or c in I.HASH_CHANNELS]
    if k < 1 or k > col.settings.search.max_k:
        raise BadInput(f"k must be between 1 and {col.settings.search.max_k}, got {k}")
    channels = list(channels) if channels is not None else [c for c in ("image", "phash") if c in have]
    for c in channels:
        if c not in have:
            raise BadInput(f"{col.location} has no image channel {c!r}; it has {have}")
    if not channels:
        raise BadInput(f"{col.location} has no image channels (no image document indexed)")
    if max_distance is not None and not 0 <= max_distance <= BITS:
        raise BadInput(f"max_distance must be between 0 and {BITS}, got {max_distance}")
    img = I.as_image(image, col.settings.images.max_pixels)
    depth = max(k, col.settings.fusion.depth)
    bodies, keys = [], []
    for c in channels:
        if c == "image":
            qv = col.clip.encode_images([img])[0]
            bodies.append(query.dense_body(qv.tolist(), size=depth, num_candidates=col.es.num_candidates(depth),
                                           filters=None, with_documents=False, field=mapping.CLIP_FIELD))
            keys.append((c, "clip"))
            continue
        for rule, code in I.query_hashes(c, img).items():
            knn: dict[str, Any] = {"field": c, "query_vector": bytes(code[0]).hex(), "k": depth,
                                   "num_candidates": col.es.num_candidates(depth)}
            if max_distance is not None:
                knn["similarity"] = max_distance
            bodies.append({"knn": knn, "size": depth, "_source": False, "track_total_hits": False})
            keys.append((c, rule))
    found: dict[str, dict[str, list[tuple[str, int]]]] = {c: {} for c in channels}
    ranked: dict[str, list[tuple[str, float]]] = {}
    for (c, rule), resp in zip(keys, col._msearch(bodies)):
        if "error" in resp:
            raise BackendUnavailable(f"{col.location}: {c} search failed: {item_reason(resp)}")
        if c == "image":
            ranked[c] = [(h["_id"], query.dense_score(h["_score"])) for h in resp["hits"]["hits"]]
            continue
        found[c][rule] = [(h["_id"], round(BITS * (1.0 - float(h["_score"])))) for h in resp["hits"]["hits"]]
    hamming: dict[str, dict[str, int]] = {}
    rules: dict[str, dict[str, str]] = {}
    for c in channels:
        if c == "image":
            continue
        I.record_hash_hits(c, I.best_rule(found[c], None if max_distance is not None else depth),
                           ranked, hamming, rules)
    hits = I.image_hits(ranked, hamming, rules, k, col.settings.fusion.rrf_k)
    if with_documents and hits:
        docs = col.get([h.id for h in hits])
        for h in hits:
            h.document = docs.get(h.id)
    label = str(image) if not hasattr(image, "size") else "<image>"
    return SearchResult(query=label, mode="by-image", hits=hits,
                        took_ms=round((time.perf_counter() - t0) * 1000, 3))


class _HashView:
    """What :func:`~semsearch.images.dedup.find_duplicates` reads from an index: its hash
    channels (in-memory FAISS binary indexes of the stored codes) and where it is."""

    def __init__(self, path: str, vectors: dict[str, Any]) -> None:
        self.path = path
        self.vectors = vectors


def duplicates(col: Any, max_distance: int, *, mirrored: bool = True,
               min_cosine: float | None = None) -> Any:
    from semsearch.images.dedup import find_duplicates
    from semsearch.indexer.vector.faiss_binary import FaissBinaryIndex

    if not 0 <= max_distance <= BITS:
        raise BadInput(f"max_distance must be between 0 and {BITS}, got {max_distance}")
    names = [n for n in ("phash", "phash_mirror") if n in col.manifest.get("hashes", [])]
    if min_cosine is not None and "image" not in col.channels:
        raise BadInput(f"{col.location} has no CLIP image channel to confirm pairs with")
    vectors: dict[str, Any] = {}
    if names:
        ids: list[str] = []
        codes: dict[str, list[bytes]] = {n: [] for n in names}
        body = {"query": {"exists": {"field": "phash"}}, "_source": {"includes": names}}
        col.refresh()  # every acknowledged write
        for batch in col.pit_pages(body, ["_shard_doc"]):
            for h in batch:
                src = h["_source"]
                ids.append(h["_id"])
                for n in names:
                    codes[n].append(bytes.fromhex(src[n]))
        for n in names:
            vi = FaissBinaryIndex(HASH_BYTES)
            vi.upsert(ids, np.frombuffer(b"".join(codes[n]), np.uint8).reshape(-1, HASH_BYTES))
            vectors[n] = vi
    return find_duplicates(_HashView(col.location, vectors), max_distance, mirrored=mirrored, min_cosine=min_cosine,
                           clip_vectors=lambda ids: col.vectors(ids, "image"))
