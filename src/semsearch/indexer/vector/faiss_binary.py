"""FAISS binary index for perceptual hashes: exact Hamming k-NN and radius search.

Vectors are packed bit strings (``dim`` bytes, e.g. 8 for a 64-bit hash) stored as uint8
rows. Scores are **Hamming distances** (lower is closer), not similarities.

The master copy is a numpy array of codes plus the row -> id list (saved as ``codes.npy``
and ``ids.json``); the FAISS index is a derived structure rebuilt lazily after writes, which
is cheap (a memcpy for ``IndexBinaryFlat``, one hashing pass for ``IndexBinaryMultiHash``)
and keeps deletes trivial for index types that cannot remove ids. Kinds:

* ``flat``: ``IndexBinaryFlat``, exact brute-force popcount (``GpuIndexBinaryFlat`` on a GPU);
* ``multihash``: ``IndexBinaryMultiHash`` (multi-index hashing: the code is cut into
  ``nhash`` sub-strings, each in its own hash table). By the pigeonhole principle a radius
  search is exact when ``radius < nhash * (nflip + 1)``; ``nflip`` is raised per query to
  keep that true, so results equal the flat index's.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.errors import BadInput, IndexIncompatible

logger = logging.getLogger(__name__)

MULTIHASH_NHASH = 4
#: query batches smaller than this run on one OpenMP thread: a single Hamming scan of 1M
#: codes takes about a millisecond, and OpenMP's thread wake-up/spinning costs more than it
#: saves (measured: p50 1.2 ms with 1 thread vs 219 ms with 2 on a loaded 2-core machine)
SMALL_BATCH = 16


@contextlib.contextmanager
def _omp_threads(nq: int) -> Iterator[None]:
    import faiss

    if nq >= SMALL_BATCH:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class FaissBinaryIndex:
    backend = "faiss-binary"

    def __init__(self, dim: int = 8, *, kind: str = "flat", gpu: str = "auto") -> None:
        if dim < 1:
            raise BadInput(f"binary vector size must be >= 1 byte, got {dim}")
        if kind not in ("flat", "multihash"):
            raise BadInput(f"unknown binary index kind {kind!r}; use 'flat' or 'multihash'")
        self._dim = dim
        self.kind = kind
        self.gpu = gpu
        self._codes = np.zeros((0, dim), np.uint8)
        self._ids: list[str | None] = []  # row -> id; None = deleted row
        self._row: dict[str, int] = {}
        self._faiss = None
        self._flat = None  # exact k-NN companion of a multihash index

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def nbits(self) -> int:
        return self._dim * 8

    # -- writes -------------------------------------------------------------------------
    def _check(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self._dim:
            raise BadInput(f"binary vectors must have shape (n, {self._dim}), got {v.shape}")
        if v.dtype != np.uint8:
            raise BadInput(f"binary vectors must be uint8 packed bits, got dtype {v.dtype}")
        return np.ascontiguousarray(v)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        ids = list(ids)
        if not ids:
            return
        if len(set(ids)) != len(ids):
            raise BadInput("upsert() got the same id more than once in one call")
        v = self._check(vectors)
        if v.shape[0] != len(ids):
            raise BadInput(f"got {len(ids)} ids but {v.shape[0]} vectors")
        self.delete([i for i in ids if i in self._row])
        start = len(self._ids)
        self._codes = np.vstack([self._codes, v])
        self._ids.extend(ids)
        self._row.update({doc_id: start + j for j, doc_id in enumerate(ids)})
        self._faiss = None

    def delete(self, ids: Sequence[str]) -> int:
        n = 0
        for doc_id in ids:
            row = self._row.pop(doc_id, None)
            if row is not None:
                self._ids[row] = None
                n += 1
        if n:
            self._faiss = None
            if len(self._row) < 0.8 * len(self._ids):
                self._compact()
        return n

    def _compact(self) -> None:
        live = [r for r, i in enumerate(self._ids) if i is not None]
        self._codes = np.ascontiguousarray(self._codes[live])
        self._ids = [self._ids[r] for r in live]
        self._row = {doc_id: r for r, doc_id in enumerate(self._ids)}  # type: ignore[misc]
        self._faiss = None

    # -- the FAISS structure --------------------------------------------------------------
    def _use_gpu(self) -> bool:
        from semsearch.indexer.segments.vectors import gpu_count

        return self.gpu != "never" and self.kind == "flat" and gpu_count() > 0

    def _index(self):  # noqa: ANN202
        if self._faiss is not None:
            return self._faiss
        import faiss

        self._flat = None
        if self.kind == "multihash":
            b = self.nbits // MULTIHASH_NHASH
            idx = faiss.IndexBinaryMultiHash(self.nbits, MULTIHASH_NHASH, b)
        else:
            idx = faiss.IndexBinaryFlat(self.nbits)
        if len(self._codes):
            idx.add(self._codes)
        if self._use_gpu():
            res = faiss.StandardGpuResources()
            idx = faiss.GpuIndexBinaryFlat(res, idx)
        self._faiss = idx
        return idx

    # -- reads --------------------------------------------------------------------------
    def count(self) -> int:
        return len(self._row)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._row

    def ids(self) -> list[str]:
        return [i for i in self._ids if i is not None]

    def codes_of(self, ids: Sequence[str]) -> np.ndarray:
        return self._codes[[self._row[i] for i in ids]]

    def search(
        self, queries: np.ndarray, k: int, *, allowed: Collection[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """k nearest by Hamming distance; each hit is ``(id, distance)``, closest first
        (ties in row order)."""
        if k < 1:
            raise BadInput(f"k must be >= 1, got {k}")
        q = self._check(queries)
        if not self._row or not len(q):
            return [[] for _ in range(len(q))]
        if allowed is not None:
            rows = np.array(sorted(self._row[i] for i in allowed if i in self._row), dtype=np.int64)
            from semsearch.images.hashing import hamming

            out = []
            for qq in q:
                d = hamming(self._codes[rows], qq[None, :])
                order = np.argsort(d, kind="stable")[:k]
                out.append([(self._ids[rows[j]], float(d[j])) for j in order])  # type: ignore[misc]
            return out
        dead = len(self._ids) - len(self._row)
        idx = self._index()
        if self.kind == "multihash":  # multi-hash k-NN is approximate; flat scan is exact
            idx = self._flat_view()
        with _omp_threads(len(q)):
            dist, lab = idx.search(q, min(k + dead, len(self._ids)))
        out = []
        for drow, lrow in zip(dist, lab, strict=False):
            hits = []
            for d, r in zip(drow.tolist(), lrow.tolist(), strict=False):
                if r < 0 or self._ids[r] is None:
                    continue
                hits.append((self._ids[r], float(d)))
                if len(hits) == k:
                    break
            out.append(hits)
        return out

    def _flat_view(self):  # noqa: ANN202
        import faiss

        self._index()  # drops a stale companion
        if self._flat is None:
            self._flat = faiss.IndexBinaryFlat(self.nbits)
            self._flat.add(self._codes)
        return self._flat

    def range_search(self, queries: np.ndarray, max_distance: int) -> list[list[tuple[str, int]]]:
        """Every stored id within Hamming distance ``<= max_distance`` of each query,
        closest first."""
        q = self._check(queries)
        out = []
        for lims, dist, lab in self._range_raw(q, max_distance):
            for a, b in zip(lims[:-1], lims[1:], strict=False):
                order = np.argsort(dist[a:b], kind="stable")
                out.append([
                    (self._ids[lab[a + j]], int(dist[a + j])) for j in order
                    if self._ids[lab[a + j]] is not None
                ])
        return out

    def _range_raw(self, q: np.ndarray, max_distance: int, chunk: int = 4096) -> Iterator[tuple[Any, Any, Any]]:
        if max_distance < 0 or max_distance > self.nbits:
            raise BadInput(f"max distance must be between 0 and {self.nbits}, got {max_distance}")
        if not self._row:
            for _ in range(len(q)):
                yield np.zeros(2, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64)
            return
        idx = self._index()
        if self.kind == "multihash":
            import faiss

            faiss.downcast_IndexBinary(idx).nflip = max_distance // MULTIHASH_NHASH
        if self._use_gpu():  # GPU binary index has no range search: use the CPU one
            idx = self._flat_view()
        for s in range(0, len(q), chunk):
            # FAISS binary range search keeps distances strictly below the radius
            with _omp_threads(len(q)):
                lims, dist, lab = idx.range_search(q[s : s + chunk], max_distance + 1)
            yield lims.astype(np.int64), dist.astype(np.int64), lab.astype(np.int64)

    def cross_pairs(self, queries: np.ndarray, max_distance: int, chunk: int = 4096) -> np.ndarray:
        """(m, 3) int64 ``(query_row, stored_row, distance)`` for every stored row within
        ``max_distance`` of each query, by chunked range searches (no N x N matrix)."""
        q = self._check(queries)
        parts = []
        for s in range(0, len(q), chunk):
            for lims, dist, lab in self._range_raw(q[s : s + chunk], max_distance, chunk):
                qrow = np.repeat(np.arange(s, s + len(lims) - 1), np.diff(lims))
                parts.append(np.stack([qrow, lab, dist], axis=1))
        pairs = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
        alive = np.array([i is not None for i in self._ids], dtype=bool)
        return pairs[alive[pairs[:, 1]]] if len(pairs) else pairs

    def pairs_within(self, max_distance: int, chunk: int = 4096) -> np.ndarray:
        """All unordered pairs of stored rows within ``max_distance``: (m, 3) int64
        ``(row_a, row_b, distance)`` with ``row_a < row_b``."""
        pairs = self.cross_pairs(self._codes, max_distance, chunk)
        alive = np.array([i is not None for i in self._ids], dtype=bool)
        return pairs[(pairs[:, 0] < pairs[:, 1]) & alive[pairs[:, 0]]]

    def id_at(self, row: int) -> str:
        doc_id = self._ids[row]
        if doc_id is None:
            raise KeyError(row)
        return doc_id

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "kind": self.kind,
            "bits": self.nbits,
            "count": self.count(),
            "metric": "hamming (score = distance, lower is closer)",
            "gpu": self._use_gpu(),
        }

    # -- persistence --------------------------------------------------------------------
    def save(self, path: Path) -> None:
        self._compact()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "codes.npy", self._codes, allow_pickle=False)
        with open(path / "ids.json", "w", encoding="utf-8") as fh:
            json.dump({"dim": self._dim, "kind": self.kind, "ids": self._ids}, fh)

    @classmethod
    def open(cls, path: Path, *, kind: str | None = None, gpu: str = "auto") -> FaissBinaryIndex:
        path = Path(path)
        try:
            with open(path / "ids.json", encoding="utf-8") as fh:
                meta = json.load(fh)
            codes = np.load(path / "codes.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise IndexIncompatible(f"binary index at {path} is unreadable: {e}") from e
        if codes.shape != (len(meta["ids"]), int(meta["dim"])) or codes.dtype != np.uint8:
            raise IndexIncompatible(
                f"binary index at {path}: codes {codes.shape} {codes.dtype} do not match "
                f"{len(meta['ids'])} ids of {meta['dim']} bytes"
            )
        self = cls(int(meta["dim"]), kind=kind or meta["kind"], gpu=gpu)
        self._codes = codes
        self._ids = list(meta["ids"])
        self._row = {doc_id: r for r, doc_id in enumerate(self._ids)}
        return self
