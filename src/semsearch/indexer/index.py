"""An index directory opened for reading and writing: the document store plus the derived
lexical and vector indexes, kept in step by :meth:`Index.sync`."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.config import Settings
from semsearch.documents import Document
from semsearch.errors import (
    BadInput,
    BulkIndexError,
    IndexIncompatible,
    IndexNotFound,
    SemsearchError,
)
from semsearch.indexer.lexical import LexicalIndex, create_lexical, open_lexical
from semsearch.indexer.manifest import (
    ChannelSpec,
    Manifest,
    fsync_tree,
    library_versions,
    read_manifest,
    write_manifest,
)
from semsearch.indexer.store import DocStore
from semsearch.indexer.vector.base import VectorIndex
from semsearch.indexer.vector.registry import create_vector, open_vector

logger = logging.getLogger(__name__)


class IndexLocked(SemsearchError):
    """Another process is writing to this index."""


class Index:
    """Use :meth:`open` (existing index) or :meth:`create` (new or existing, for writing)."""

    def __init__(self, path: Path, settings: Settings, manifest: Manifest, *, writable: bool):
        self.path = Path(path)
        self.settings = settings
        self.manifest = manifest
        self.writable = writable
        self._lock_fh = None
        if writable:
            self._acquire_lock()
            self._cleanup_stale()
        self.store = DocStore(self.path / "docs.sqlite")
        self.lexical: LexicalIndex = self._open_lexical()
        self.vectors: dict[str, VectorIndex] = {
            name: self._open_channel(name, spec) for name, spec in manifest.channels.items()
        }

    # -- lifecycle ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, settings: Settings | None = None, *, writable: bool = False) -> Index:
        settings = settings or Settings()
        manifest = read_manifest(Path(path))
        return cls(Path(path), settings, manifest, writable=writable)

    @classmethod
    def create(cls, path: Path | str, settings: Settings | None = None) -> Index:
        """Open the index at ``path`` for writing, creating an empty one if there is none."""
        settings = settings or Settings()
        path = Path(path)
        try:
            return cls.open(path, settings, writable=True)
        except IndexNotFound:
            pass
        if path.exists() and not path.is_dir():
            raise BadInput(f"index path {path} exists and is not a directory")
        if path.exists() and any(p.name != ".lock" for p in path.iterdir()) and not (path / "docs.sqlite").exists():
            raise BadInput(f"index path {path} is a non-empty directory that holds no index")
        path.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(
            lexical_backend=settings.lexical.backend,
            lexical_settings=settings.lexical.model_dump(mode="json", exclude={"elasticsearch": {"api_key", "password"}}),
            versions=library_versions(),
        )
        index = cls(path, settings, manifest, writable=True)
        return index

    def close(self) -> None:
        self.lexical.close()
        self.store.close()
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _acquire_lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            fh.close()
            raise IndexLocked(f"index at {self.path} is being written by another process") from e
        self._lock_fh = fh

    def _cleanup_stale(self) -> None:
        """Remove generations the manifest does not point to (left by a crash)."""
        current = self.manifest.generation_dir
        for p in self.path.iterdir():
            if p.name.startswith(".tmp-gen-") or (p.name.startswith("gen-") and p.name != current):
                shutil.rmtree(p, ignore_errors=True)

    def _gen_path(self) -> Path:
        return self.path / self.manifest.generation_dir

    def _open_lexical(self) -> LexicalIndex:
        if self.manifest.generation == 0:
            return create_lexical(self.settings.lexical)
        return open_lexical(self._gen_path() / "lexical", self.settings.lexical, self.manifest.lexical_backend)

    def _open_channel(self, name: str, spec: ChannelSpec) -> VectorIndex:
        p = self._gen_path() / name
        if self.manifest.generation == 0 or not p.exists():
            return create_vector(spec, self.settings)
        return open_vector(p, spec, self.settings)

    # -- channels -----------------------------------------------------------------------
    def ensure_channel(self, name: str, *, dim: int, encoder: str, backend: str = "faiss",
                       settings: dict[str, Any] | None = None) -> VectorIndex:
        """Declare a vector channel (on first write) or check it matches the index."""
        spec = self.manifest.channels.get(name)
        if spec is None:
            if settings is None and backend == "faiss":
                settings = {"factory": self.settings.vector.faiss.factory}
            if settings is None and backend == "elasticsearch":
                settings = {"index": f"{self.settings.lexical.elasticsearch.index}-vec-{name}"}
            spec = ChannelSpec(backend=backend, dim=dim, encoder=encoder, settings=settings or {})
            self.manifest.channels[name] = spec
            self.vectors[name] = create_vector(spec, self.settings)
        elif spec.encoder != encoder or spec.dim != dim:
            raise IndexIncompatible(
                f"index at {self.path} channel {name!r} was built with encoder {spec.encoder!r} "
                f"(dim {spec.dim}) but the configured encoder is {encoder!r} (dim {dim}): use "
                "the same encoder or build a new index"
            )
        return self.vectors[name]

    # -- writes -------------------------------------------------------------------------
    def write(self, docs: Sequence[Document], vectors: dict[str, np.ndarray] | None = None) -> int:
        """Durably record documents (and their channel vectors); searchable after :meth:`sync`."""
        if not self.writable:
            raise BadInput(f"index at {self.path} was opened read-only")
        for name in vectors or {}:
            if name not in self.manifest.channels:
                raise BadInput(f"unknown channel {name!r}: call ensure_channel() first")
        return self.store.write(docs, vectors)

    def delete(self, ids: Sequence[str]) -> int:
        if not self.writable:
            raise BadInput(f"index at {self.path} was opened read-only")
        return self.store.mark_deleted(list(ids))

    def pending(self) -> bool:
        return self.store.last_seq() > self.manifest.synced_seq

    def sync(self) -> dict[str, Any]:
        """Apply every stored change after the manifest's ``synced_seq`` to the derived
        indexes, write them as a new generation and switch the manifest to it."""
        if not self.writable:
            raise BadInput(f"index at {self.path} was opened read-only")
        t0 = time.perf_counter()
        target = self.store.last_seq()
        if target <= self.manifest.synced_seq and self.manifest.generation > 0:
            return {"changed": 0, "deleted": 0, "seconds": 0.0, "lexical": {"rebuilt": False},
                    "failed": []}
        changed = deleted = 0
        for ups, dels in self.store.changes_since(self.manifest.synced_seq):
            if dels:
                deleted += self.lexical.delete(dels)
                for vi in self.vectors.values():
                    vi.delete(dels)
            if ups:
                changed += len(ups)
                self.lexical.upsert(ups)
                ids = [d.id for d in ups]
                for name, vi in self.vectors.items():
                    spec = self.manifest.channels[name]
                    have = self.store.has_vectors(ids, name)
                    with_vec = [i for i in ids if i in have]
                    without = [i for i in ids if i not in have and i in vi]
                    if without:
                        vi.delete(without)
                    if with_vec:
                        dtype = np.uint8 if spec.backend.endswith("binary") else np.float32
                        vi.upsert(with_vec, self.store.vectors(with_vec, name, spec.dim, dtype))
        failed: list[dict[str, str]] = []
        try:
            lex_info = self.lexical.commit()
        except BulkIndexError as e:
            failed = [{"id": i, "reason": r} for i, r in e.failures]
            lex_info, target = self._drop_rejected([i for i, _ in e.failures])
            changed -= len({f["id"] for f in failed})
        self._write_generation(target)
        self.store.purge_deleted(target)
        took = time.perf_counter() - t0
        return {"changed": changed, "deleted": deleted, "seconds": took, "lexical": lex_info,
                "failed": failed}

    def _drop_rejected(self, ids: list[str]) -> tuple[dict[str, Any], int]:
        """Documents the lexical backend rejected leave the index everywhere (store, vector
        channels, any older version in the lexical index), so that nothing half-indexed
        stays and re-running the same input indexes exactly them again."""
        ids = list(dict.fromkeys(ids))
        logger.warning("lexical backend rejected %d document(s): %s", len(ids), ids[:10])
        self.store.mark_deleted(ids)
        for vi in self.vectors.values():
            vi.delete(ids)
        self.lexical.delete(ids)
        return self.lexical.commit(), self.store.last_seq()

    def rebuild_lexical(self) -> dict[str, Any]:
        """Rebuild the lexical index from every stored document (e.g. after changing the
        analyzer or BM25 parameters), as a new generation."""
        if not self.writable:
            raise BadInput(f"index at {self.path} was opened read-only")
        t0 = time.perf_counter()
        self.sync()
        fresh = create_lexical(self.settings.lexical)
        batch: list[Document] = []
        for doc in self.store.iter_docs():
            batch.append(doc)
            if len(batch) >= 2048:
                fresh.upsert(batch)
                batch = []
        fresh.upsert(batch)
        fresh.commit()
        old, self.lexical = self.lexical, fresh
        self.manifest.lexical_backend = self.settings.lexical.backend
        self._write_generation(self.manifest.synced_seq)
        old.close()
        return {"docs": fresh.count(), "seconds": time.perf_counter() - t0}

    def _write_generation(self, synced_seq: int) -> None:
        m = self.manifest.model_copy(deep=True)
        m.generation += 1
        tmp = self.path / f".tmp-{m.generation_dir}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self.lexical.save(tmp / "lexical")
        for name, vi in self.vectors.items():
            vi.save(tmp / name)
        fsync_tree(tmp)
        final = self.path / m.generation_dir
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        old = self._gen_path() if self.manifest.generation > 0 else None
        m.synced_seq = synced_seq
        m.updated_at = time.time()
        m.versions = library_versions()
        m.counts = {"docs": self.store.count(), "lexical": self.lexical.count()}
        m.counts.update({name: vi.count() for name, vi in self.vectors.items()})
        write_manifest(self.path, m)
        self.manifest = m
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    # -- reads --------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> dict[str, Document]:
        return self.store.get(ids)

    def info(self) -> dict[str, Any]:
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return {
            "path": str(self.path),
            "format_version": self.manifest.format_version,
            "generation": self.manifest.generation,
            "documents": self.store.count(),
            "pending_changes": self.pending(),
            "lexical": {"backend": self.manifest.lexical_backend, "count": self.lexical.count()},
            "channels": {
                name: {**spec.model_dump(), **self.vectors[name].info()}
                for name, spec in self.manifest.channels.items()
            },
            "size_bytes": size,
            "versions": self.manifest.versions,
            "updated_at": self.manifest.updated_at,
        }
