"""An index directory: the document store (source of truth) plus immutable segments of derived
data (lexical postings, vectors, metadata columns), listed by the commit point.

* :meth:`Index.write` / :meth:`Index.delete` commit to the document store: durable at once.
* :meth:`Index.sync` (a *refresh*) turns the changes since the last commit into one new small
  segment (a few documents cost a few documents' work) plus deletion bitmaps for the
  segments that held older versions, and publishes a new :class:`Snapshot`.
* :meth:`Index.maybe_merge` (run in the background by :class:`~semsearch.collection.Collection`)
  folds segments of similar size together with a tiered policy and purges deleted rows; the
  slow part runs without any lock, and only the final swap takes the commit lock.
* Searches take :meth:`Index.snapshot` once and never wait for writes, refreshes or merges.

One process writes (it holds ``.lock``); any number of processes may open the index
read-only: they pick up new commits on their own (:meth:`snapshot` re-reads the manifest
when it changed). Segment files are removed only when the current commit does not name them
and no snapshot of the writing process still uses them; readers of other processes map a
segment's files when they open it (files stay readable after unlinking) and retry the manifest
if a segment they were about to open was merged away.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.config import FaissSettings, Settings
from semsearch.documents import Document
from semsearch.errors import (
    BadInput,
    BulkIndexError,
    IndexIncompatible,
    SemsearchError,
)
from semsearch.indexer.manifest import (
    MANIFEST,
    ChannelSpec,
    Manifest,
    SegmentRef,
    fsync_dir,
    library_versions,
    read_manifest,
    write_manifest,
)
from semsearch.indexer.segments.segment import Segment, read_deletes, write_deletes
from semsearch.indexer.segments.snapshot import Snapshot
from semsearch.indexer.segments.vectors import pack_passages
from semsearch.indexer.store import DocStore

logger = logging.getLogger(__name__)

SEGMENTS = "segments"
DELETES = "deletes"
TEMPLATES = "templates"
#: lexical settings that change how text is analysed: a difference needs a reindex
ANALYSIS_KEYS = ("stemmer", "stopwords")
#: local channel backends (in segments); others (elasticsearch) are external indexes
LOCAL_BACKENDS = ("faiss", "faiss-binary")


class IndexLocked(SemsearchError):
    """Another process is writing to this index."""


def lexical_record(settings: Settings) -> dict[str, Any]:
    return settings.lexical.model_dump(mode="json", exclude={"elasticsearch": {"api_key", "password"}})


def dir_size(path: Path) -> int:
    """Bytes of the files under ``path``; a file or folder that a merge or refresh removes
    during the walk is skipped (``Path.rglob`` raised FileNotFoundError for it)."""
    total = 0
    for root, _, files in os.walk(path):  # os.walk skips folders that vanish
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return total


class Index:
    """Use :meth:`open` (existing index) or :meth:`create` (new or existing, for writing)."""

    #: seconds between a read-only open's checks (one stat) that the manifest changed; 0
    #: checks at every snapshot, so a write another process acknowledged is seen at once
    recheck_s = 0.1

    def __init__(self, path: Path, settings: Settings, *, writable: bool, create: bool = False,
                 reindex: bool = False, store_writes: bool = False) -> None:
        self.path = Path(path)
        self.settings = settings
        self.writable = writable
        #: :meth:`write` / :meth:`delete` allowed: the writer, or a read-only open with
        #: ``store_writes`` (it commits to the document store; the writer makes it searchable)
        self.accepts_writes = writable or store_writes
        self._lock_fh = None
        if not create and not (self.path / MANIFEST).exists():
            read_manifest(self.path)  # no index here: say so before a lock file is left behind
        if writable:
            self._acquire_lock()
        try:
            # read after the writer lock is taken: another writer may have just committed
            if create and not (self.path / MANIFEST).exists():
                self.manifest = Manifest(lexical_backend=settings.lexical.backend,
                                         lexical_settings=lexical_record(settings),
                                         versions=library_versions())
            else:
                self.manifest = read_manifest(self.path)
            self._upgrading = self.manifest.format_version != Manifest.model_fields["format_version"].default
            if self._upgrading and not writable:
                raise IndexIncompatible(
                    f"index at {self.path} was written by an older semsearch (format "
                    f"{self.manifest.format_version}): open it once for writing (e.g. `semsearch "
                    f"reindex --index {self.path}`) to upgrade it from its document store")
            if not reindex:
                self._check_lexical_settings()
            self.store = DocStore(self.path / "docs.sqlite", readonly=not self.accepts_writes)
            self._commit_lock = threading.RLock()
            self._merge_lock = threading.RLock()  # force_merge holds it across its merges
            self._snap_lock = threading.Lock()
            self._open_snapshots: weakref.WeakSet[Snapshot] = weakref.WeakSet()
            #: segments a merge or reindex is building (not yet named by a commit): a refresh
            #: that commits meanwhile must not remove them as unreferenced
            self._building: set[str] = set()
            self._segments: dict[str, Segment] = {}
            self._templates: dict[str, Any] = {}
            self._where: dict[str, tuple[str, int]] | None = None
            self._external: dict[str, Any] = {}
            self.lexical_external = self._open_es_lexical()
            for name, spec in self.manifest.channels.items():
                if spec.backend not in LOCAL_BACKENDS:
                    self._external[name] = self._open_external_channel(name, spec)
            self._stamp = self._manifest_stamp()
            self._checked = time.monotonic()
            self._snapshot = self._load_snapshot(self.manifest)
            if writable:
                self._remove_unreferenced()
        except BaseException:
            self._release_lock()
            raise

    # -- lifecycle ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, settings: Settings | None = None, *, writable: bool = False,
             reindex: bool = False, store_writes: bool = False) -> Index:
        """``reindex``: open although the settings' analysis differs from the index's (for
        :meth:`reindex`, which applies the new one; until then the recorded one is used).
        ``store_writes`` (read-only opens): :meth:`write` and :meth:`delete` still commit to
        the document store, whose transactions serialise writers of every process and number
        their changes; the process holding the lock makes them searchable."""
        return cls(Path(path), settings or Settings(), writable=writable, reindex=reindex,
                   store_writes=store_writes)

    @classmethod
    def create(cls, path: Path | str, settings: Settings | None = None, *, reindex: bool = False) -> Index:
        """Open the index at ``path`` for writing, creating an empty one if there is none."""
        settings = settings or Settings()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise BadInput(f"index path {path} exists and is not a directory")
        if (path.exists() and not (path / MANIFEST).exists() and not (path / "docs.sqlite").exists()
                and any(p.name != ".lock" for p in path.iterdir())):
            raise BadInput(f"index path {path} is a non-empty directory that holds no index")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, settings, writable=True, create=True, reindex=reindex)

    def close(self) -> None:
        if self.lexical_external is not None:
            self.lexical_external.close()
        self.store.close()
        self._release_lock()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _acquire_lock(self) -> None:
        fh = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            fh.close()
            raise IndexLocked(f"index at {self.path} is being written by another process") from e
        self._lock_fh = fh

    def _release_lock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _check_lexical_settings(self) -> None:
        """The analysis an index was built with is recorded; another one needs a reindex.
        BM25 parameters are applied at query time from the recorded values."""
        rec = self.manifest.lexical_settings
        if not rec or self.manifest.lexical_backend != self.settings.lexical.backend:
            if rec and self.manifest.lexical_backend != self.settings.lexical.backend:
                raise IndexIncompatible(
                    f"index at {self.path} was built with lexical backend {self.manifest.lexical_backend!r} "
                    f"but settings ask for {self.settings.lexical.backend!r}; set "
                    f"SEMSEARCH_LEXICAL__BACKEND={self.manifest.lexical_backend} or run `semsearch reindex`")
            return
        if self.settings.lexical.backend != "embedded":
            return
        built = rec.get("embedded", {})
        now = self.settings.lexical.embedded.model_dump(mode="json")
        for key in (*ANALYSIS_KEYS, "k1", "b", "method"):
            if key in built and built[key] != now[key]:
                raise IndexIncompatible(
                    f"index at {self.path} was built with lexical.embedded.{key}={built[key]!r} but "
                    f"the settings say {now[key]!r}: use the index's value or run `semsearch reindex "
                    f"--index {self.path} --lexical` to rebuild the lexical channel with the new one")

    @property
    def lexical_params(self) -> Any:
        """The embedded lexical settings the index was built with (analysis, BM25)."""
        return self._lexical_params(self.manifest)

    def _lexical_params(self, m: Manifest) -> Any:
        from semsearch.config import EmbeddedLexicalSettings

        rec = m.lexical_settings.get("embedded")
        return EmbeddedLexicalSettings.model_validate(rec) if rec else self.settings.lexical.embedded

    def _open_es_lexical(self) -> Any:
        if self.manifest.lexical_backend != "elasticsearch":
            return None
        from semsearch.indexer.lexical.elasticsearch import ElasticsearchLexicalIndex

        state = self.path / "lexical-es"
        if (state / "elasticsearch.json").exists():
            return ElasticsearchLexicalIndex.open(state, self.settings.lexical)
        return ElasticsearchLexicalIndex(self.settings.lexical)

    def _open_external_channel(self, name: str, spec: ChannelSpec) -> Any:
        from semsearch.indexer.vector.registry import create_vector, open_vector

        state = self.path / f"channel-{name}"
        return open_vector(state, spec, self.settings) if state.exists() else create_vector(spec, self.settings)

    # -- snapshots ----------------------------------------------------------------------
    def _manifest_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path / MANIFEST)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def _segment(self, name: str) -> Segment:
        seg = self._segments.get(name)
        if seg is None:
            seg = self._segments[name] = Segment.load(self.path / SEGMENTS / name)
        return seg

    def _load_snapshot(self, m: Manifest) -> Snapshot:
        segs, deleted = [], []
        for ref in m.segments:
            seg = self._segment(ref.name)
            segs.append(seg)
            deleted.append(read_deletes(self.path / DELETES / ref.deletes, seg.n_docs) if ref.deletes else None)
        self._segments = {s.name: s for s in segs}  # drop segments this commit no longer names
        snap = Snapshot(segs, deleted, m.synced_seq, self.settings, dict(m.channels),
                        es_lexical=self.lexical_external, lexical_params=self._lexical_params(m))
        return snap

    def snapshot(self) -> Snapshot:
        """The current point-in-time view (a read-only open re-reads the manifest when another
        process committed since, at most every 100 ms)."""
        if not self.writable and time.monotonic() - self._checked > self.recheck_s:
            self._reload()
        with self._snap_lock:
            snap = self._snapshot
        self._open_snapshots.add(snap)
        return snap

    def _reload(self) -> None:
        self._checked = time.monotonic()
        stamp = self._manifest_stamp()
        if stamp == self._stamp:
            return
        for attempt in range(8):
            try:
                m = read_manifest(self.path)
                snap = self._load_snapshot(m)
                break
            except (FileNotFoundError, IndexIncompatible) as e:
                # a segment merged away between reading the manifest and opening it: the
                # writer has committed since, so read the newer manifest
                missing = isinstance(e, FileNotFoundError) or isinstance(e.__cause__, FileNotFoundError)
                if not missing or attempt == 7:
                    raise
                time.sleep(0.02 * (attempt + 1))
                stamp = self._manifest_stamp()
        with self._snap_lock:
            self.manifest, self._snapshot, self._stamp = m, snap, stamp

    def _publish(self, m: Manifest) -> None:
        snap = self._load_snapshot(m)
        m.counts = {"docs": snap.count(), "segments": len(m.segments),
                    **{name: ch.count() for name, ch in snap.vectors.items()}}
        if self.lexical_external is None:
            m.counts["lexical"] = m.counts["docs"]
        write_manifest(self.path, m)
        with self._snap_lock:
            self.manifest, self._snapshot = m, snap
            self._stamp = self._manifest_stamp()
        self._remove_unreferenced()

    # the search path's view of the current commit
    @property
    def lexical(self) -> Any:
        return self.snapshot().lexical

    @property
    def vectors(self) -> dict[str, Any]:
        snap = self.snapshot()
        return {**snap.vectors, **self._external}

    def _remove_unreferenced(self) -> None:
        """Delete segment, deletion and template files that neither the current commit nor an
        open snapshot of this process uses (and leftovers of interrupted writes)."""
        if not self.writable:
            return
        keep_segs = {r.name for r in self.manifest.segments}
        keep_dels = {r.deletes for r in self.manifest.segments if r.deletes}
        for snap in list(self._open_snapshots):  # deletion bitmaps are read into memory
            keep_segs.update(snap.names)
        keep_segs.update(self._building)
        keep_segs.update(p.name for p in (self.path / SEGMENTS).glob(".tmp-*")
                         if p.name[5:].rsplit("-", 1)[0] in self._building)
        keep_tpl = {t["file"] for t in self.manifest.templates.values()}
        for folder, keep in ((SEGMENTS, keep_segs), (DELETES, keep_dels), (TEMPLATES, keep_tpl)):
            d = self.path / folder
            if not d.is_dir():
                continue
            for p in d.iterdir():
                if p.name not in keep:
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        for p in self.path.iterdir():  # the single-generation layout of format 1
            if p.name.startswith(("gen-", ".tmp-gen-")) and not self._upgrading:
                shutil.rmtree(p, ignore_errors=True)

    # -- channels -----------------------------------------------------------------------
    def record_encoder(self, name: str) -> str:
        """How a channel spec records the encoder ``name``: a model directory inside the
        index directory (``adapt``'s fine-tuned encoder) as ``./`` + its path relative to
        it, so that an index moved, copied or restored elsewhere still names its own model;
        any other name as given."""
        if not Path(name).is_absolute():
            return name
        try:
            return "./" + Path(name).resolve().relative_to(self.path.resolve()).as_posix()
        except ValueError:
            return name

    def channel_encoder(self, channel: str) -> str | None:
        """The encoder that produced ``channel``'s vectors (None: no such channel), with a
        model directory recorded inside the index resolved to where the index is now: what
        a configured encoder's name must equal."""
        spec = self.manifest.channels.get(channel)
        if spec is None:
            return None
        if spec.encoder.startswith("./"):
            return str((self.path / spec.encoder[2:]).resolve())
        return spec.encoder

    def ensure_channel(self, name: str, *, dim: int, encoder: str, backend: str = "faiss",
                       settings: dict[str, Any] | None = None, passages: dict[str, Any] | None = None,
                       passages_explicit: bool = False) -> ChannelSpec:
        """Declare a vector channel (on first write) or check it matches the index; returns
        its spec. ``passages``: the passage plan the caller would use (recorded for a new
        channel); an existing channel keeps its recorded plan, and one the user asked for
        explicitly (``passages_explicit``) that differs from it is an error (re-encode)."""
        spec = self.manifest.channels.get(name)
        if spec is not None and passages_explicit and spec.passages != passages:
            raise IndexIncompatible(
                f"index at {self.path} channel {name!r} was encoded with passages {spec.passages} but "
                f"the settings ask for {passages} (text_encoder.passages): changing how documents are "
                "split needs a re-encode: use the index's values (unset the passage settings) or "
                "build a new index")
        if spec is None:
            if settings is None and backend == "faiss":
                settings = {"factory": self.settings.vector.faiss.factory}
            if settings is None and backend == "elasticsearch":
                settings = {"index": f"{self.settings.lexical.elasticsearch.index}-vec-{name}"}
            spec = ChannelSpec(backend=backend, dim=dim, encoder=self.record_encoder(encoder), settings=settings or {},
                               passages=passages)
            if backend == "faiss":
                from semsearch.indexer.segments.vectors import check_factory

                check_factory(dim, spec.settings.get("factory", self.settings.vector.faiss.factory))
            with self._commit_lock:
                if backend not in LOCAL_BACKENDS:
                    from semsearch.indexer.vector.registry import create_vector

                    self._external[name] = create_vector(spec, self.settings)
                if self.writable and not self._upgrading:
                    # a commit of its own: the declaration is durable before any vector of the
                    # channel is acknowledged, so a process killed before its next refresh
                    # leaves stored vectors that the refresh after a restart indexes (with the
                    # declaration only in memory, that refresh ran without the channel and the
                    # vectors were never indexed)
                    m = self.manifest.model_copy(deep=True)
                    m.channels[name] = spec
                    self._commit(m, m.synced_seq)
                else:
                    self.manifest.channels[name] = spec
        elif (built := self.channel_encoder(name)) != encoder or spec.dim != dim:
            raise IndexIncompatible(
                f"index at {self.path} channel {name!r} was built with encoder {built!r} "
                f"(dim {spec.dim}) but the configured encoder is {encoder!r} (dim {dim}): use "
                "the same encoder or build a new index"
            )
        return spec

    def _faiss_settings(self, name: str) -> FaissSettings:
        spec = self.manifest.channels[name]
        fs = self.settings.vector.faiss
        return FaissSettings.model_validate({**fs.model_dump(), **spec.settings}) if spec.settings else fs

    # -- writes -------------------------------------------------------------------------
    def write(self, docs: Sequence[Document], vectors: dict[str, np.ndarray] | None = None) -> int:
        """Durably record documents (and their channel vectors); searchable after :meth:`sync`.
        Vectors are checked first (shape, finite values): a document that could never be
        indexed is refused here, before anything is acknowledged."""
        if not self.accepts_writes:
            raise BadInput(f"index at {self.path} was opened read-only")
        for name, mat in (vectors or {}).items():
            spec = self.manifest.channels.get(name)
            if spec is None:
                raise BadInput(f"unknown channel {name!r}: call ensure_channel() first")
            if isinstance(mat, list):  # per document, its passages' vectors
                self._check_passages(name, docs, mat, spec.dim)
                continue
            mat = np.asarray(mat)
            if mat.ndim == 2 and mat.shape[0] != len(docs):
                raise BadInput(f"channel {name!r}: got {len(docs)} ids but {mat.shape[0]} vectors")
            if mat.ndim != 2 or mat.shape != (len(docs), spec.dim):
                raise BadInput(f"channel {name!r}: vectors must have shape ({len(docs)}, {spec.dim}), got {mat.shape}")
            if mat.dtype.kind == "f":
                bad = ~np.isfinite(mat).all(axis=1)
                if bad.any():
                    ids = [docs[i].id for i in np.flatnonzero(bad)[:10]]
                    raise BadInput(f"channel {name!r}: document(s) {ids} have vectors with NaN or infinity")
        return self.store.write(docs, vectors)

    @staticmethod
    def _check_passages(name: str, docs: Sequence[Document], mats: list[np.ndarray], dim: int) -> None:
        if len(mats) != len(docs):
            raise BadInput(f"channel {name!r}: got {len(docs)} ids but {len(mats)} passage lists")
        for d, m in zip(docs, mats):
            m = np.asarray(m)
            if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] != dim or m.dtype != np.float32:
                raise BadInput(f"channel {name!r}: document {d.id!r}: passage vectors must be float32 of "
                               f"shape (n >= 1, {dim}), got {m.dtype} {m.shape}")
            if not np.isfinite(m).all():
                raise BadInput(f"channel {name!r}: document(s) {[d.id]} have vectors with NaN or infinity")

    def delete(self, ids: Sequence[str]) -> int:
        if not self.accepts_writes:
            raise BadInput(f"index at {self.path} was opened read-only")
        return self.store.mark_deleted(list(ids))

    def pending(self) -> bool:
        return self.store.last_seq() > self.manifest.synced_seq

    def _locations(self) -> dict[str, tuple[str, int]]:
        """Writer only: id -> (segment, ordinal) of every live document version."""
        if self._where is None:
            snap = self._snapshot
            where: dict[str, tuple[str, int]] = {}
            for seg, dead in zip(snap.segments, snap.deleted):
                for o, doc_id in enumerate(seg.ids):
                    if dead is None or not dead[o]:
                        where[doc_id] = (seg.name, o)
            self._where = where
        return self._where

    def sync(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Refresh: make every stored change after the last commit searchable, as one new
        segment (several for a bulk load, ``indexing.segment_docs`` documents each) plus
        deletion bitmaps, in one new commit. ``progress(docs, total)`` is called after each
        new segment is written (a bulk load's progress bar)."""
        if not self.writable:
            raise BadInput(f"index at {self.path} was opened read-only")
        with self._commit_lock:
            return self._refresh(progress)

    def _refresh(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        m = self.manifest.model_copy(deep=True)
        upgrading = self._upgrading
        if self.store.last_seq() <= m.synced_seq and not upgrading and m.generation > 0:
            return {"changed": 0, "deleted": 0, "seconds": 0.0, "segments": 0, "failed": []}
        if upgrading:
            m.format_version = Manifest.model_fields["format_version"].default
            m.synced_seq, m.segments = 0, []
            self._where = {}
        where = self._locations()
        dead: dict[str, set[int]] = {}
        restore: dict[str, tuple[str, int]] = {}  # id -> location it had before this refresh
        new_refs: list[SegmentRef] = []
        new_where: dict[str, tuple[str, int]] = {}
        seqs: dict[str, int] = {}
        changed = deleted = 0
        batch: list[Document] = []

        def tombstone(doc_id: str) -> bool:
            loc = where.pop(doc_id, None)
            if loc is None:
                return False
            restore.setdefault(doc_id, loc)
            dead.setdefault(loc[0], set()).add(loc[1])
            return True

        def flush() -> None:
            if batch:
                ref = self._flush(m, batch)
                new_refs.append(ref)
                new_where.update({d.id: (ref.name, o) for o, d in enumerate(batch)})
                if progress is not None:
                    progress(len(batch), total)
                batch.clear()

        # documents and their vectors are read as of one instant; writes go on meanwhile
        # and are the next refresh's (their sequence numbers are past ``target``)
        with self.store.read_snapshot():
            target = self.store.last_seq()
            total = self.store.count_since(m.synced_seq, target) if progress is not None else 0
            for ups, dels in self.store.changes_since(m.synced_seq, upto=target):
                for doc_id in dels:
                    deleted += tombstone(doc_id)
                if dels:
                    self._external_delete(dels)
                for d in ups:
                    tombstone(d.id)
                self._external_upsert(ups)
                changed += len(ups)
                batch.extend(ups)
                if len(batch) >= self.settings.indexing.segment_docs:
                    flush()
            flush()
        failed = self._external_commit()
        if failed:
            # a document a backend refused stays as it was searchable before: its new version
            # is tombstoned in the new segment, its old one (if any) is live again, and the
            # store gets the old version back (a re-run of the same input retries it)
            seq_of = self.store.seqs(list(failed))
            for doc_id in failed:
                seqs[doc_id] = seq_of.get(doc_id, target)
                loc = new_where.pop(doc_id, None)
                if loc is not None:
                    dead.setdefault(loc[0], set()).add(loc[1])
                old = restore.get(doc_id)
                if old is not None:
                    dead[old[0]].discard(old[1])
                    where[doc_id] = old
            self.store.record_rejected([(i, seqs[i], r) for i, r in failed.items()])
            self.store.restore_previous(list(failed))
            if self._external:  # the external vector channels get the old vectors back too
                restored = list(self.store.get(list(failed)).values())
                self._external_delete([i for i in failed if i not in {d.id for d in restored}], lexical=False)
                self._external_upsert(restored, lexical=False)
            changed -= len(failed)
        where.update(new_where)
        m.segments = self._with_deletes(m.segments + new_refs, dead, m.generation + 1)
        self._upgrading = False
        self._commit(m, target)
        self.store.purge_deleted(target)
        self.store.drop_previous(target)
        took = time.perf_counter() - t0
        logger.info("refresh: %d changed, %d deleted, %d new segment(s), %d refused, in %.3f s",
                    changed, deleted, len(new_refs), len(failed), took)
        return {"changed": changed, "deleted": deleted, "seconds": took, "segments": len(new_refs),
                "failed": [{"id": i, "reason": r, "seq": seqs[i]} for i, r in failed.items()]}

    def _with_deletes(self, refs: list[SegmentRef], dead: dict[str, set[int]], gen: int) -> list[SegmentRef]:
        """``refs`` with new deletion files for the segments in ``dead``; fully deleted
        segments are dropped from the commit."""
        out = []
        for ref in refs:
            ords = dead.get(ref.name)
            if ords:
                prev = (read_deletes(self.path / DELETES / ref.deletes, ref.n_docs) if ref.deletes
                        else np.zeros(ref.n_docs, bool))
                prev[list(ords)] = True
                name = f"{ref.name}.{gen}.del.npy"
                (self.path / DELETES).mkdir(exist_ok=True)
                write_deletes(self.path / DELETES / name, prev)
                ref = SegmentRef(name=ref.name, n_docs=ref.n_docs, deletes=name, n_deleted=int(prev.sum()))
            if ref.live > 0:
                out.append(ref)
        if dead:
            fsync_dir(self.path / DELETES)
        return out

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off every other thread's refresh, commit and merge (waiting for a merge under
        way) while a change of several steps is made that must land in one commit: a bulk
        load, a channel's vectors replaced. Searches and store writes go on."""
        if not self.writable:
            raise BadInput(f"index at {self.path} was opened read-only")
        with self._merge_lock, self._commit_lock:
            yield

    def set_tuned(self, tuned: dict[str, Any]) -> None:
        """Record search defaults chosen for this index (``adapt``) in a new commit."""
        if not self.writable:
            raise BadInput(f"index at {self.path} was opened read-only")
        with self._commit_lock:
            m = self.manifest.model_copy(deep=True)
            m.tuned = tuned
            self._commit(m, m.synced_seq)

    def _commit(self, m: Manifest, synced_seq: int) -> None:
        m.synced_seq = synced_seq
        m.generation += 1
        m.updated_at = time.time()
        m.versions = library_versions()
        if self.lexical_external is not None:
            self.lexical_external.save(self.path / "lexical-es")
        for name, ext in self._external.items():
            ext.save(self.path / f"channel-{name}")
        self._publish(m)

    def _flush(self, m: Manifest, docs: list[Document]) -> SegmentRef:
        """Write one new segment of ``docs`` (their current stored vectors)."""
        ids = [d.id for d in docs]
        vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        owners: dict[str, np.ndarray] = {}
        binary: set[str] = set()
        faiss: dict[str, FaissSettings] = {}
        templates: dict[str, Any] = {}
        for name, spec in m.channels.items():
            if spec.backend not in LOCAL_BACKENDS:
                continue
            if spec.backend == "faiss-binary":
                binary.add(name)
                have = self.store.has_vectors(ids, name)
                present = np.array([i in have for i in ids], dtype=bool)
                rows = self.store.vectors(ids, name, spec.dim, np.uint8)
            else:
                rows, present, own = pack_passages(self.store.passage_vectors(ids, name, spec.dim), spec.dim)
                if own is not None:
                    owners[name] = own
                faiss[name] = self._faiss_settings(name)
                if (len(rows) if own is not None else int(present.sum())) >= faiss[name].exact_below:
                    templates[name] = self._template(m, name)
            vectors[name] = (rows, present)
        tokens = None
        if m.lexical_backend == "embedded":
            from semsearch.indexer.lexical.analysis import Analyzer

            p = self.lexical_params
            analyzer = Analyzer(p.stemmer, p.stopwords)
            tokens = (analyzer([d.title for d in docs]), analyzer([d.text for d in docs]))
        (self.path / SEGMENTS).mkdir(exist_ok=True)
        seg = Segment.write(self.path / SEGMENTS, m.segment_name(), docs, tokens, vectors, binary, faiss, templates,
                            owners)
        fsync_dir(self.path / SEGMENTS)
        self._segments[seg.name] = seg
        return SegmentRef(name=seg.name, n_docs=seg.n_docs)

    def _template(self, m: Manifest, name: str) -> Any:
        """The trained empty FAISS index a channel's new segments clone (IVF/PQ factories),
        trained on a sample of every stored vector of the channel and retrained once the
        channel has grown tenfold since; None for factories that need no training (or when
        too few vectors exist yet: those segments are searched exactly)."""
        from semsearch.indexer.segments.vectors import (
            needs_training,
            resolve_factory,
            train_template,
        )

        fs = self._faiss_settings(name)
        if not needs_training(fs.factory):
            return None
        n = self.store.count_vectors(name)
        rec = m.templates.get(name)
        if rec is not None and n < 10 * rec["trained_on"]:
            tpl = self._templates.get(rec["file"])
            if tpl is None:
                import faiss

                tpl = self._templates[rec["file"]] = faiss.read_index(str(self.path / TEMPLATES / rec["file"]))
            return tpl
        import faiss

        factory = resolve_factory(fs.factory, n)
        sample = self.store.sample_vectors(name, min(n, 100_000), m.channels[name].dim)
        try:
            tpl = train_template(m.channels[name].dim, factory, sample)
        except BadInput as e:
            logger.warning("channel %s: %s; its segments are searched exactly until then", name, e)
            return None
        file = f"{name}.{m.generation + 1}.faiss"
        (self.path / TEMPLATES).mkdir(exist_ok=True)
        faiss.write_index(tpl, str(self.path / TEMPLATES / file))
        m.templates[name] = {"file": file, "trained_on": len(sample), "factory": factory}
        self._templates[file] = tpl
        logger.info("trained FAISS %s for channel %s on %d vectors", factory, name, len(sample))
        return tpl

    # -- external backends (Elasticsearch lexical / vectors) -------------------------------
    def _external_upsert(self, ups: list[Document], *, lexical: bool = True) -> None:
        if not ups:
            return
        if lexical and self.lexical_external is not None:
            self.lexical_external.upsert(ups)
        if self._external:
            ids = [d.id for d in ups]
            for name, vi in self._external.items():
                spec = self.manifest.channels[name]
                have = self.store.has_vectors(ids, name)
                with_vec = [i for i in ids if i in have]
                without = [i for i in ids if i not in have and i in vi]
                if without:
                    vi.delete(without)
                if with_vec:
                    vi.upsert(with_vec, self.store.vectors(with_vec, name, spec.dim))

    def _external_delete(self, ids: list[str], *, lexical: bool = True) -> None:
        if not ids:
            return
        if lexical and self.lexical_external is not None:
            self.lexical_external.delete(ids)
        for vi in self._external.values():
            vi.delete(ids)

    def _external_commit(self) -> dict[str, str]:
        """Refresh the external indexes; the documents one refused, with the reason."""
        if self.lexical_external is None:
            return {}
        try:
            self.lexical_external.commit()
        except BulkIndexError as e:
            logger.warning("lexical backend rejected %d document(s): %s", len(e.failures), e.failures[:10])
            return dict(e.failures)
        return {}

    # -- merges -------------------------------------------------------------------------
    def merge_candidates(self, refs: Sequence[SegmentRef] | None = None) -> list[str]:
        """The tiered policy: segments bucketed by live size (powers of ``merge_factor``);
        a bucket holding ``merge_factor`` segments merges its smallest ones; a segment more
        than half deleted is rewritten alone."""
        refs = list(self.manifest.segments if refs is None else refs)
        factor = self.settings.indexing.merge_factor
        for r in refs:
            if r.n_deleted * 2 > r.n_docs and r.n_docs >= 64:
                return [r.name]
        tiers: dict[int, list[SegmentRef]] = {}
        for r in refs:
            tiers.setdefault(int(math.log(max(r.live, 1), factor)), []).append(r)
        for tier in sorted(tiers):
            group = sorted(tiers[tier], key=lambda r: r.live)
            if len(group) >= factor:
                return [r.name for r in group[:factor]]
        return []

    def maybe_merge(self, names: Sequence[str] | None = None) -> dict[str, Any] | None:
        """Merge the policy's candidates (or ``names``) into one segment. The new segment is
        built without any lock held; only the swap takes the commit lock, and deletions that
        reached the merged segments meanwhile are carried over."""
        if not self.writable:
            raise BadInput(f"index at {self.path} was opened read-only")
        with self._merge_lock:
            with self._commit_lock:
                picked = list(names) if names is not None else self.merge_candidates()
                if not picked:
                    return None
                snap = self._snapshot
                pos = {s.name: i for i, s in enumerate(snap.segments)}
                missing = [n for n in picked if n not in pos]
                if missing:
                    raise BadInput(f"no such segment(s) in the current commit: {missing}")
                segs = [snap.segments[pos[n]] for n in picked]
                keep = [np.flatnonzero(~snap.deleted[pos[n]]) if snap.deleted[pos[n]] is not None
                        else np.arange(snap.segments[pos[n]].n_docs) for n in picked]
                name = self.manifest.segment_name()  # persisted by the next commit
                self._building.add(name)
                faiss = {c: self._faiss_settings(c) for c, s in self.manifest.channels.items() if s.backend == "faiss"}
                templates = {c: self._template(self.manifest, c) for c in faiss}
            return self._merge_into(name, segs, keep, faiss, templates, lexical=True)

    def _merge_into(self, name: str, segs: list[Segment], keep: list[np.ndarray],
                    faiss: dict[str, FaissSettings], templates: dict[str, Any], *, lexical: Any,
                    manifest_update: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            return self._build_and_swap(name, segs, keep, faiss, templates, lexical=lexical,
                                        manifest_update=manifest_update)
        finally:
            with self._commit_lock:
                self._building.discard(name)

    def _build_and_swap(self, name: str, segs: list[Segment], keep: list[np.ndarray],
                        faiss: dict[str, FaissSettings], templates: dict[str, Any], *, lexical: Any,
                        manifest_update: dict[str, Any] | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        merged = Segment.merge(self.path / SEGMENTS, name, segs, keep, faiss, templates, lexical=lexical)
        fsync_dir(self.path / SEGMENTS)
        build_s = time.perf_counter() - t0
        with self._commit_lock:
            m = self.manifest.model_copy(deep=True)
            current = {r.name: r for r in m.segments}
            dead_now: set[int] = set()
            where = self._locations()
            offset = 0
            for seg, rows in zip(segs, keep):
                ref = current.get(seg.name)
                now = (read_deletes(self.path / DELETES / ref.deletes, seg.n_docs)
                       if ref is not None and ref.deletes else np.zeros(seg.n_docs, bool))
                if ref is None:
                    now[:] = True  # the whole segment was deleted meanwhile
                for j, o in enumerate(rows.tolist()):
                    doc_id = seg.ids[o]
                    if now[o]:
                        dead_now.add(offset + j)
                    elif where.get(doc_id) == (seg.name, o):
                        where[doc_id] = (name, offset + j)
                offset += len(rows)
            picked = {s.name for s in segs}
            refs = [r for r in m.segments if r.name not in picked]
            refs.append(SegmentRef(name=name, n_docs=merged.n_docs))
            m.segments = self._with_deletes(refs, {name: dead_now} if dead_now else {}, m.generation + 1)
            for key, value in (manifest_update or {}).items():
                setattr(m, key, value)
            self._segments[name] = merged
            self._commit(m, m.synced_seq)
        took = time.perf_counter() - t0
        logger.info("merged %d segments (%d docs) into %s in %.2f s", len(segs), merged.n_docs, name, took)
        return {"merged": [s.name for s in segs], "into": name, "docs": merged.n_docs,
                "deleted_purged": sum(s.n_docs for s in segs) - sum(len(k) for k in keep),
                "seconds": took, "build_seconds": build_s}

    def force_merge(self, max_segments: int = 1) -> list[dict[str, Any]]:
        """Merge until at most ``max_segments`` remain (``semsearch compact``)."""
        out = []
        with self._merge_lock:  # a background merge must not take the segments picked here
            while len(self.manifest.segments) > max_segments or any(r.n_deleted for r in self.manifest.segments):
                refs = sorted(self.manifest.segments, key=lambda r: r.live)
                n = max(2, len(refs) - max_segments + 1) if len(refs) > max_segments else 1
                info = self.maybe_merge([r.name for r in refs[:n]])
                if info is None:
                    break
                out.append(info)
                if len(refs) <= max_segments:
                    break
        return out

    def reindex(self, *, lexical: bool = False, factory: str | None = None, channel: str = "dense") -> dict[str, Any]:
        """Rebuild derived data with the current settings from what is stored, without
        re-encoding, while searches go on: ``lexical`` re-analyses every document's text with
        the configured analyzer and BM25 parameters; ``factory`` rebuilds a vector channel's
        FAISS index with another factory string (from the stored vectors)."""
        if not self.writable:
            raise BadInput(f"index at {self.path} was opened read-only")
        with self._merge_lock:
            with self._commit_lock:
                self._refresh()
                update: dict[str, Any] = {}
                channels = {n: s.model_copy(deep=True) for n, s in self.manifest.channels.items()}
                if factory is not None:
                    if channel not in channels or channels[channel].backend != "faiss":
                        raise BadInput(f"index at {self.path} has no FAISS channel {channel!r}")
                    from semsearch.indexer.segments.vectors import check_factory

                    check_factory(channels[channel].dim, factory)
                    channels[channel].settings = {**channels[channel].settings, "factory": factory}
                    update["channels"] = channels
                    update["templates"] = {k: v for k, v in self.manifest.templates.items() if k != channel}
                if lexical:
                    update["lexical_settings"] = lexical_record(self.settings)
                    update["lexical_backend"] = self.settings.lexical.backend
                snap = self._snapshot
                segs = list(snap.segments)
                keep = [np.flatnonzero(~d) if d is not None else np.arange(s.n_docs)
                        for s, d in zip(segs, snap.deleted)]
                saved = self.manifest
                self.manifest = saved.model_copy(update=update)
                try:
                    faiss = {c: self._faiss_settings(c) for c, s in channels.items() if s.backend == "faiss"}
                    templates = {c: self._template(self.manifest, c) for c in faiss}
                    update["templates"] = self.manifest.templates
                    name = self.manifest.segment_name()
                    update["next_segment"] = self.manifest.next_segment
                    self._building.add(name)
                finally:
                    self.manifest = saved
            lex: Any = True
            if lexical and self.settings.lexical.backend == "embedded":
                lex = self._reanalyse(segs, keep)
            t0 = time.perf_counter()
            if not segs:
                with self._commit_lock:
                    self._building.discard(name)
                    m = self.manifest.model_copy(update=update, deep=True)
                    self._commit(m, m.synced_seq)
                return {"docs": 0, "seconds": time.perf_counter() - t0}
            info = self._merge_into(name, segs, keep, faiss, templates, lexical=lex, manifest_update=update)
            return {"docs": info["docs"], "seconds": info["seconds"]}

    def _reanalyse(self, segs: list[Segment], keep: list[np.ndarray]) -> Any:
        from semsearch.indexer.lexical.analysis import Analyzer
        from semsearch.indexer.segments.lexical import LexicalSegment

        emb = self.settings.lexical.embedded
        analyzer = Analyzer(emb.stemmer, emb.stopwords)
        ids = [seg.ids[o] for seg, rows in zip(segs, keep) for o in rows.tolist()]
        titles: list[list[str]] = []
        texts: list[list[str]] = []
        for start in range(0, len(ids), 4096):
            chunk = ids[start : start + 4096]
            docs = self.store.get(chunk)
            # a document changed since is tombstoned in the merged segment by the swap
            rows = [docs.get(i) or Document(id=i) for i in chunk]
            titles.extend(analyzer([d.title for d in rows]))
            texts.extend(analyzer([d.text for d in rows]))
        return LexicalSegment.build(titles, texts)

    def rebuild_lexical(self) -> dict[str, Any]:
        """Rebuild the lexical channel with the configured analyzer and BM25 parameters."""
        if self.lexical_external is not None:
            with self._commit_lock:
                self._refresh()
                info = self.lexical_external.rebuild(self.store.iter_docs())
                m = self.manifest.model_copy(deep=True)
                m.lexical_settings = lexical_record(self.settings)
                self._commit(m, m.synced_seq)
            return {"docs": info.get("docs", self.lexical_external.count()), "seconds": info.get("seconds", 0.0)}
        return self.reindex(lexical=True)

    # -- reads --------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> dict[str, Document]:
        return self.store.get(ids)

    def info(self) -> dict[str, Any]:
        snap = self.snapshot()
        m = self.manifest
        size = dir_size(self.path)
        vectors = {**snap.vectors, **self._external}
        return {
            "path": str(self.path),
            "format_version": m.format_version,
            "generation": m.generation,
            "documents": snap.count() if self.lexical_external is None else self.store.count(),
            "pending_changes": self.pending(),
            "segments": [{"name": r.name, "docs": r.n_docs, "deleted": r.n_deleted} for r in m.segments],
            "lexical": {"backend": m.lexical_backend, "count": snap.lexical.count()},
            "channels": {
                name: {**spec.model_dump(), **vectors[name].info()}
                for name, spec in m.channels.items() if name in vectors
            },
            "size_bytes": size,
            "tuned": m.tuned,  # the search defaults `semsearch adapt` recorded ({} when none)
            "versions": m.versions,
            "updated_at": m.updated_at,
        }
