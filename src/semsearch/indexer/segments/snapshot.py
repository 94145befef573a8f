"""A point-in-time view of an index: the live segments of one commit and their deletions.

A search takes the current snapshot once (an atomic pointer read) and uses only it: a refresh
or a merge that commits meanwhile publishes a new snapshot and never changes this one. The
readers here give the search path the same channel interface whatever the number of segments:
lexical scores use corpus-wide statistics over the live documents of every segment, vector
channels search each segment and merge the per-segment top k.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

import numpy as np

from semsearch.config import Settings
from semsearch.errors import BadInput
from semsearch.filters import Filter
from semsearch.indexer.segments.segment import Segment

#: one search's per-segment allow masks (live documents that pass the filter); None = all live
Masks = list[np.ndarray | None]


class Snapshot:
    def __init__(self, segments: Sequence[Segment], deleted: Sequence[np.ndarray | None], seq: int,
                 settings: Settings, channels: dict[str, Any], es_lexical: Any = None,
                 lexical_params: Any = None) -> None:
        self.segments = list(segments)
        self.deleted = list(deleted)
        self.seq = seq
        self.settings = settings
        self.channels = channels  # name -> ChannelSpec
        self._es_lexical = es_lexical
        self._lexical_params = lexical_params or settings.lexical.embedded
        self._lock = threading.Lock()
        #: what readers build once per snapshot (BM25 statistics, hash indexes). The readers
        #: themselves are cheap wrappers made per access and are not kept here, so a snapshot
        #: is freed (and its files become removable) as soon as no search holds it
        self._cache: dict[Any, Any] = {}

    def cached(self, key: Any, build: Any) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.segments]

    def live(self, i: int) -> np.ndarray | None:
        d = self.deleted[i]
        return None if d is None else ~d

    def count(self) -> int:
        return sum(s.n_docs - (0 if d is None else int(d.sum())) for s, d in zip(self.segments, self.deleted))

    def masks(self, flt: Filter | None) -> Masks:
        """Per segment: live and (when given) passing the filter, after checking the filter's
        value types against the values the segments hold (a clear error on a mismatch)."""
        if flt is not None:
            from semsearch.filters import check_types

            check_types(flt, self.field_types())
        out: Masks = []
        for i, seg in enumerate(self.segments):
            live = self.live(i)
            if flt is None:
                out.append(live)
                continue
            m = seg.meta.mask(flt)
            out.append(m if live is None else (m & live))
        return out

    def field_types(self) -> dict[str, set[str]]:
        """Metadata value types per field across segments (for filter type checks)."""
        types: dict[str, set[str]] = {}
        for seg in self.segments:
            for f, ts in seg.meta.field_types().items():
                types.setdefault(f, set()).update(ts)
        return types

    def locate(self, doc_id: str) -> tuple[int, int] | None:
        """(segment index, ordinal) of a live document."""
        return self._where.get(doc_id)

    @cached_property
    def _where(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for i, seg in enumerate(self.segments):
            dead = self.deleted[i]
            for o, doc_id in enumerate(seg.ids):
                if dead is None or not dead[o]:
                    out[doc_id] = (i, o)
        return out

    # -- channels -----------------------------------------------------------------------
    @property
    def lexical(self) -> Any:
        if self._es_lexical is not None:
            return self._es_lexical
        return SegmentLexical(self)

    @property
    def vectors(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in self.channels.items():  # channels kept in segments (not Elasticsearch)
            if spec.backend == "faiss-binary":
                out[name] = BinaryChannel(self, name, spec)
            elif spec.backend == "faiss":
                out[name] = FloatChannel(self, name, spec)
        return out


class SegmentLexical:
    """BM25 over the snapshot's segments with corpus-wide statistics."""

    backend = "embedded"

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    @property
    def _searcher(self) -> Any:
        def build() -> Any:
            from semsearch.indexer.segments.lexical import BM25Searcher

            segs = [s.lexical for s in self.snap.segments]
            live = [self.snap.live(i) for i in range(len(segs))]
            return BM25Searcher(segs, live, self.snap._lexical_params)

        return self.snap.cached("bm25", build)

    @property
    def analyzer(self) -> Any:
        def build() -> Any:
            from semsearch.indexer.lexical.analysis import Analyzer

            emb = self.snap._lexical_params
            return Analyzer(emb.stemmer, emb.stopwords)

        return self.snap.cached("analyzer", build)

    def count(self) -> int:
        return self.snap.count()

    def search(self, query: str, k: int, **kw: Any) -> list[tuple[str, float]]:
        return self.search_many([query], k, **kw)[0]

    def search_many(self, queries: Sequence[str], k: int, *, boosts: dict[str, float] | None = None,
                    filters: Filter | None = None, masks: Masks | None = None) -> list[list[tuple[str, float]]]:
        if k < 1:
            raise BadInput(f"k must be >= 1, got {k}")
        boosts = boosts or self.snap.settings.lexical.boosts
        if masks is None:
            masks = self.snap.masks(filters) if filters is not None else None
        if not self.snap.segments:
            return [[] for _ in queries]
        res = self._searcher.search_many(self.analyzer(list(queries)), k, boosts=boosts, masks=masks)
        segs = self.snap.segments
        return [[(segs[s].ids[o], float(score)) for s, o, score in hits] for hits in res]


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _map_segments(fn: Any, jobs: list[Any], n_ann: int) -> list[Any]:
    """``fn`` over the per-segment jobs; on several cores, when two or more segments are
    searched through an ANN index (one FAISS graph walk each, single-threaded for one query,
    with the GIL released), in a shared thread pool, so that a few large segments are
    searched side by side rather than one after the other."""
    global _POOL
    cores = os.cpu_count() or 1
    if n_ann < 2 or cores < 2:
        return [fn(j) for j in jobs]
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(min(cores, 8), thread_name_prefix="semsearch-seg")
    return list(_POOL.map(fn, jobs))


class FloatChannel:
    """A float vector channel over the snapshot's segments (inner product)."""

    backend = "faiss"

    def __init__(self, snap: Snapshot, name: str, spec: Any) -> None:
        self.snap = snap
        self.name = name
        self.spec = spec
        from semsearch.config import FaissSettings

        fs = snap.settings.vector.faiss
        self.settings = FaissSettings.model_validate({**fs.model_dump(), **spec.settings}) if spec.settings else fs

    @property
    def dim(self) -> int:
        return self.spec.dim

    def count(self) -> int:
        total = 0
        for i, seg in enumerate(self.snap.segments):
            vs = seg.vectors.get(self.name)
            if vs is not None:
                live = self.snap.live(i)
                total += int((vs.present if live is None else vs.present & live).sum())
        return total

    def __contains__(self, doc_id: object) -> bool:
        at = self.snap.locate(str(doc_id))
        if at is None:
            return False
        vs = self.snap.segments[at[0]].vectors.get(self.name)
        return vs is not None and bool(vs.present[at[1]])

    def search(self, queries: np.ndarray, k: int, *, masks: Masks | None = None,
               filters: Filter | None = None) -> list[list[tuple[str, float]]]:
        return self.search_passages(queries, k, masks=masks, filters=filters)[0]

    def search_passages(self, queries: np.ndarray, k: int, *, masks: Masks | None = None,
                        filters: Filter | None = None, aggregation: str | None = None,
                        top_n: int | None = None) -> tuple[list[list[tuple[str, float]]], list[dict[str, tuple[int, int]]]]:
        """Per query the ranked ``(id, score)`` list and, for the hits that are documents of
        several passages, ``id -> (best passage, passages)``. ``aggregation`` / ``top_n``:
        how passage scores make a document's (default: ``text_encoder.passages``)."""
        if k < 1:
            raise BadInput(f"k must be >= 1, got {k}")
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise BadInput(f"query vectors must have {self.dim} dimensions, got {q.shape[1]}")
        if masks is None:
            masks = self.snap.masks(filters)
        ps = self.snap.settings.text_encoder.passages
        agg = {"aggregation": aggregation or ps.aggregation, "top_n": top_n or ps.top_n}
        jobs = [(seg, seg.vectors[self.name], allow) for seg, allow in zip(self.snap.segments, masks)
                if self.name in seg.vectors]
        found = _map_segments(lambda j: j[1].search(q, k, j[2], self.settings, **agg), jobs,
                              sum(1 for _, vs, _ in jobs if vs.ann is not None))
        parts_s, parts_id, parts_p = [], [], []
        for (seg, vs, _), (scores, ords, best) in zip(jobs, found):
            if scores.shape[1] == 0:
                continue
            # only the hits' ids: an object array of every id costs 12 ms per 500k documents
            ids = seg.ids
            parts_s.append(scores)
            parts_id.append(np.array([[ids[o] if o >= 0 else None for o in row] for row in ords.tolist()],
                                     dtype=object).reshape(ords.shape))
            if vs.owners is not None:
                n = np.diff(vs.starts)[np.maximum(ords, 0)]
                parts_p.append([{i: (int(b), int(c)) for i, b, c in zip(irow, brow, crow) if i is not None and c > 1}
                                for irow, brow, crow in zip(parts_id[-1], best, n)])
        if not parts_s:
            return [[] for _ in range(len(q))], [{} for _ in range(len(q))]
        scores = np.concatenate(parts_s, axis=1)
        ids = np.concatenate(parts_id, axis=1)
        out = []
        for srow, irow in zip(scores, ids):
            order = np.argsort(-srow, kind="stable")
            out.append([(irow[j], float(srow[j])) for j in order if irow[j] is not None][:k])
        passages: list[dict[str, tuple[int, int]]] = [{} for _ in range(len(q))]
        for part in parts_p:
            for i, m in enumerate(part):
                passages[i].update(m)
        return out, passages

    def info(self) -> dict[str, Any]:
        ann = sum(1 for s in self.snap.segments if self.name in s.vectors and s.vectors[self.name].ann is not None)
        from semsearch.indexer.segments.vectors import uses_gpu

        return {"backend": "faiss", "factory": self.settings.factory, "dim": self.dim,
                "count": self.count(), "segments_with_ann": ann, "gpu": uses_gpu(self.settings)}


class BinaryChannel:
    """A perceptual-hash channel: the live codes of every segment in one FAISS binary index,
    built on first use of this snapshot (a copy of 8 bytes per image)."""

    backend = "faiss-binary"

    def __init__(self, snap: Snapshot, name: str, spec: Any) -> None:
        self.snap = snap
        self.name = name
        self.spec = spec

    @property
    def _index(self) -> Any:
        return self.snap.cached(("binary", self.name), self._build)

    def _build(self) -> Any:
        from semsearch.indexer.vector.faiss_binary import FaissBinaryIndex

        kind = self.spec.settings.get("kind", self.snap.settings.images.binary_index)
        idx = FaissBinaryIndex(self.spec.dim, kind=kind, gpu=self.snap.settings.images.gpu)
        for i, seg in enumerate(self.snap.segments):
            codes = seg.binary.get(self.name)
            if codes is None:
                continue
            keep = seg.binary_present[self.name].copy()
            live = self.snap.live(i)
            if live is not None:
                keep &= live
            rows = np.flatnonzero(keep)
            if len(rows):
                idx.upsert([seg.ids[r] for r in rows.tolist()], np.asarray(codes[rows]))
        return idx

    def count(self) -> int:
        total = 0
        for i, seg in enumerate(self.snap.segments):
            present = seg.binary_present.get(self.name)
            if present is not None:
                live = self.snap.live(i)
                total += int((present if live is None else present & live).sum())
        return total

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("snap", "spec"):
            raise AttributeError(name)
        return getattr(self._index, name)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._index

    def search(self, queries: np.ndarray, k: int, *, masks: Masks | None = None,
               filters: Filter | None = None) -> list[list[tuple[str, float]]]:
        """Deleted documents are not in the index; a filter (``filters``, or ``masks`` that
        came from one) restricts the hits to the documents it selects."""
        allowed = None
        if filters is not None or masks is not None:
            masks = self.snap.masks(filters) if masks is None else masks
            allowed = {seg.ids[o] for seg, m in zip(self.snap.segments, masks)
                       for o in (np.flatnonzero(m).tolist() if m is not None else range(seg.n_docs))}
        return self._index.search(queries, k, allowed=allowed)
