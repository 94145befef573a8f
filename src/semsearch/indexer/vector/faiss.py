"""FAISS vector index: any index factory string, GPU when faiss sees one, CPU otherwise.

String ids map to int64 FAISS ids. IVF indexes store ids natively (and remove them
correctly); other indexes are wrapped in an ``IndexIDMap2`` (wrapping an IVF index in an
id map would corrupt the map on removal, since IVF does not renumber on ``remove_ids``). Each upsert gets a fresh int
id, so indexes that cannot remove ids (HNSW) stay correct: the old int id is tombstoned and
filtered out of results, and once tombstones exceed ``compact_ratio`` of the index the index
is rebuilt from its own stored vectors (``reconstruct``), which drops them.

The CPU index is the master copy (it is what is saved and mutated); on a GPU a copy is made
for searching and refreshed after writes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.config import FaissSettings
from semsearch.errors import BadInput, IndexIncompatible

logger = logging.getLogger(__name__)


def gpu_count() -> int:
    import faiss

    try:
        return int(faiss.get_num_gpus())
    except AttributeError:  # faiss-cpu builds have no GPU API
        return 0


class FaissVectorIndex:
    backend = "faiss"

    def __init__(self, dim: int, settings: FaissSettings | None = None) -> None:
        import faiss

        if dim < 1:
            raise BadInput(f"vector dimension must be >= 1, got {dim}")
        self.settings = settings or FaissSettings()
        self._dim = dim
        try:
            base = faiss.index_factory(dim, self.settings.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise BadInput(
                f"invalid FAISS factory string {self.settings.factory!r}: {e}"
            ) from e
        self._index = self._wrap(base)
        self._id_of: dict[str, int] = {}
        self._key_of: dict[int, str] = {}
        self._tombstones: set[int] = set()
        self._next = 0
        self._gpu_index = None
        self._can_remove = self._probe_remove()

    # -- helpers ------------------------------------------------------------------------
    @staticmethod
    def _wrap(base):  # noqa: ANN001, ANN205
        import faiss

        return base if faiss.try_extract_index_ivf(base) is not None else faiss.IndexIDMap2(base)

    def _inner(self):  # noqa: ANN202
        import faiss

        return self._index.index if isinstance(self._index, faiss.IndexIDMap2) else self._index

    def _probe_remove(self) -> bool:
        import faiss

        try:
            self._index.remove_ids(faiss.IDSelectorBatch(np.array([-1], dtype=np.int64)))
            return True
        except RuntimeError:
            return False

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def uses_gpu(self) -> bool:
        return self.settings.gpu != "never" and gpu_count() > 0

    def _check(self, vectors: np.ndarray, n: int | None = None) -> np.ndarray:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self._dim:
            raise BadInput(f"vectors must have shape (n, {self._dim}), got {v.shape}")
        if n is not None and v.shape[0] != n:
            raise BadInput(f"got {n} ids but {v.shape[0]} vectors")
        if not np.isfinite(v).all():
            raise BadInput("vectors contain NaN or infinity")
        return v

    def _train_if_needed(self, v: np.ndarray) -> None:
        if self._index.is_trained:
            return
        import faiss

        ivf = faiss.try_extract_index_ivf(self._inner())
        need = ivf.nlist if ivf is not None else 1
        if v.shape[0] < need:
            raise BadInput(
                f"FAISS index {self.settings.factory!r} must be trained on at least {need} "
                f"vectors but the first write has {v.shape[0]}; index more documents at once "
                "or choose a smaller nlist (or 'Flat')"
            )
        logger.info("training FAISS %s on %d vectors", self.settings.factory, v.shape[0])
        self._index.train(v)

    def _apply_search_params(self) -> None:
        import faiss

        inner = self._inner()
        ivf = faiss.try_extract_index_ivf(inner)
        if ivf is not None:
            ivf.nprobe = self.settings.nprobe
        hnsw = getattr(faiss.downcast_index(inner), "hnsw", None)
        if hnsw is not None:
            hnsw.efSearch = self.settings.ef_search

    def _remove_keys(self, keys: list[int]) -> None:
        import faiss

        if not keys:
            return
        if self._can_remove:
            self._index.remove_ids(faiss.IDSelectorBatch(np.array(keys, dtype=np.int64)))
        else:
            self._tombstones.update(keys)

    # -- writes -------------------------------------------------------------------------
    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        ids = list(ids)
        if not ids:
            return
        if len(set(ids)) != len(ids):
            raise BadInput("upsert() got the same id more than once in one call")
        v = self._check(vectors, len(ids))
        self._train_if_needed(v)
        old = [self._id_of[i] for i in ids if i in self._id_of]
        for k in old:
            self._key_of.pop(k, None)
        self._remove_keys(old)
        keys = np.arange(self._next, self._next + len(ids), dtype=np.int64)
        self._next += len(ids)
        self._index.add_with_ids(v, keys)
        for doc_id, key in zip(ids, keys.tolist()):
            self._id_of[doc_id] = key
            self._key_of[key] = doc_id
        self._gpu_index = None
        self._maybe_compact()

    def delete(self, ids: Sequence[str]) -> int:
        keys = [self._id_of.pop(i) for i in ids if i in self._id_of]
        for k in keys:
            self._key_of.pop(k, None)
        self._remove_keys(keys)
        self._gpu_index = None
        self._maybe_compact()
        return len(keys)

    def _maybe_compact(self) -> None:
        total = self._index.ntotal
        if self._tombstones and len(self._tombstones) > self.settings.compact_ratio * total:
            self.compact()

    def compact(self) -> None:
        """Rebuild the index without tombstoned vectors (from the vectors it stores)."""
        import faiss

        live = sorted(self._key_of)
        vecs = (
            np.vstack([self._index.reconstruct(k) for k in live])
            if live
            else np.zeros((0, self._dim), np.float32)
        )
        logger.info("compacting FAISS index: %d live, %d tombstones", len(live), len(self._tombstones))
        base = faiss.index_factory(self._dim, self.settings.factory, faiss.METRIC_INNER_PRODUCT)
        old_inner = faiss.downcast_index(self._inner())
        if not base.is_trained and old_inner.is_trained:
            base = faiss.clone_index(old_inner)
            base.reset()
        fresh = self._wrap(base)
        if len(live):
            if not fresh.is_trained:
                fresh.train(vecs)
            fresh.add_with_ids(vecs, np.array(live, dtype=np.int64))
        self._index = fresh
        self._tombstones.clear()
        self._gpu_index = None

    # -- reads --------------------------------------------------------------------------
    def count(self) -> int:
        return len(self._id_of)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._id_of

    def _searcher(self):  # noqa: ANN202
        if not self.uses_gpu:
            return self._index
        if self._gpu_index is None:
            import faiss

            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
            except RuntimeError as e:  # e.g. HNSW has no GPU implementation
                if self.settings.gpu == "always":
                    raise
                logger.warning("FAISS index %s stays on CPU: %s", self.settings.factory, e)
                self.settings = self.settings.model_copy(update={"gpu": "never"})
                return self._index
        return self._gpu_index

    def search(
        self, queries: np.ndarray, k: int, *, allowed: Collection[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        if k < 1:
            raise BadInput(f"k must be >= 1, got {k}")
        q = self._check(np.atleast_2d(queries))
        total = self._index.ntotal
        if total == 0 or q.shape[0] == 0:
            return [[] for _ in range(q.shape[0])]
        self._apply_search_params()
        allowed_keys = None
        if allowed is not None:
            allowed_keys = {self._id_of[i] for i in allowed if i in self._id_of}
            if not allowed_keys:
                return [[] for _ in range(q.shape[0])]
        fetch = k + len(self._tombstones)
        if allowed_keys is not None:
            fetch = total  # exact filtering: scan all (filters are applied after scoring)
        fetch = min(fetch, total)
        scores, keys = self._searcher().search(q, fetch)
        out = []
        for srow, krow in zip(scores, keys):
            hits: list[tuple[str, float]] = []
            for s, key in zip(srow.tolist(), krow.tolist()):
                if key < 0 or key in self._tombstones:
                    continue
                if allowed_keys is not None and key not in allowed_keys:
                    continue
                doc_id = self._key_of.get(key)
                if doc_id is None:
                    continue
                hits.append((doc_id, float(s)))
                if len(hits) == k:
                    break
            out.append(hits)
        return out

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "factory": self.settings.factory,
            "dim": self._dim,
            "count": self.count(),
            "ntotal": int(self._index.ntotal),
            "tombstones": len(self._tombstones),
            "gpu": self.uses_gpu,
        }

    # -- persistence --------------------------------------------------------------------
    def save(self, path: Path) -> None:
        import faiss

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(path / "vectors.faiss"))
        with open(path / "ids.json", "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "factory": self.settings.factory,
                    "dim": self._dim,
                    "next": self._next,
                    "ids": list(self._id_of.items()),
                    "tombstones": sorted(self._tombstones),
                },
                fh,
            )

    @classmethod
    def open(cls, path: Path, settings: FaissSettings | None = None) -> FaissVectorIndex:
        import faiss

        path = Path(path)
        try:
            with open(path / "ids.json", encoding="utf-8") as fh:
                meta = json.load(fh)
            index = faiss.read_index(str(path / "vectors.faiss"))
        except (OSError, RuntimeError, json.JSONDecodeError) as e:
            raise IndexIncompatible(f"FAISS index at {path} is unreadable: {e}") from e
        settings = (settings or FaissSettings()).model_copy(update={"factory": meta["factory"]})
        self = cls(int(meta["dim"]), settings)
        self._index = index
        self._id_of = {k: int(v) for k, v in meta["ids"]}
        self._key_of = {v: k for k, v in self._id_of.items()}
        self._tombstones = set(meta["tombstones"])
        self._next = int(meta["next"])
        self._can_remove = self._probe_remove()
        return self
