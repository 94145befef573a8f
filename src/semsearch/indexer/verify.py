"""``semsearch verify``: check an index directory and say what is wrong with it.

Errors (the index is damaged or inconsistent):

* the manifest is missing, unreadable or of an unsupported format;
* a segment it names is missing or does not load (its ``segment.json``, its array container
  ``arrays.bin`` truncated or with a damaged table, an ANN index file), an array of its
  container fails its checksum, it holds a different number of documents than the manifest
  says, repeats an id, or has channel data of the wrong shape;
* a deletion file is missing, unreadable or of the wrong length, or deletes another number of
  rows than the manifest says; a trained FAISS template is missing or unreadable;
* the manifest's counts (documents, segments, per channel) differ from what the segments hold;
* the document store is damaged (SQLite ``quick_check``) or older than the commit;
* store against derived data: a live stored document whose change the commit has applied
  (``seq <= synced_seq``) is live in no segment or in more than one; a live segment row has no
  live stored document (and no change pending for its id); a segment has a vector where the
  store has none (or the other way round), or a different one.

Warnings: files the commit does not name (left over by an interrupted write, or still used by
a writer's open snapshot), parts kept in Elasticsearch (not checked), an older index format.

Changes written after the commit (``seq > synced_seq``) are pending: the next refresh (or the
first writable open) applies them, so their ids are not held against the segments. On an index
another process is writing, the check is repeated when a commit landed while it ran.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from semsearch.errors import IndexIncompatible, IndexNotFound
from semsearch.indexer.index import DELETES, LOCAL_BACKENDS, SEGMENTS, TEMPLATES
from semsearch.indexer.manifest import FORMAT_VERSION, MANIFEST, Manifest, read_manifest
from semsearch.indexer.segments.container import ARRAYS
from semsearch.indexer.segments.segment import METADATA, Segment
from semsearch.indexer.store import DocStore

logger = logging.getLogger(__name__)

STORE = "docs.sqlite"
#: ids named in one message at most
SHOWN = 10


@dataclass
class Problem:
    level: Literal["error", "warning"]
    check: str
    message: str


@dataclass
class VerifyReport:
    path: str
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def error(self, check: str, message: str) -> None:
        self.problems.append(Problem("error", check, message))

    def warn(self, check: str, message: str) -> None:
        self.problems.append(Problem("warning", check, message))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        def rows(ps: list[Problem]) -> list[dict[str, str]]:
            return [{"check": p.check, "message": p.message} for p in ps]

        return {"path": self.path, "ok": self.ok, "errors": rows(self.errors),
                "warnings": rows(self.warnings), "stats": self.stats}


def _listed(ids: list[str]) -> str:
    shown = ", ".join(repr(i) for i in sorted(ids)[:SHOWN])
    return shown + (f" (and {len(ids) - SHOWN} more)" if len(ids) > SHOWN else "")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = (path / MANIFEST).stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino)


def verify(index_path: Path | str, *, attempts: int = 3) -> VerifyReport:
    """Check the index at ``index_path``; ``report.ok`` is False when anything is wrong."""
    path = Path(index_path)
    report = VerifyReport(str(path))
    for _ in range(attempts):
        before = _stamp(path)
        report = _Check(path).run()
        if _stamp(path) == before:
            return report
    report.warn("live", "the index was committed to while it was checked (another process is writing "
                "it): a mismatch between store and segments may be a change in flight; check a "
                "snapshot of it, or check again")
    return report


class _Check:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.r = VerifyReport(str(path))
        self.segs: dict[str, Segment] = {}
        self.dead: dict[str, np.ndarray | None] = {}

    def run(self) -> VerifyReport:
        m = self._manifest()
        if m is None:
            return self.r
        conn = self._open_store()
        try:
            rows = self._store_rows(conn) if conn is not None else None
            complete = self._segments(m)
            self._templates(m)
            if complete:
                self._counts(m)
                if rows is not None and conn is not None:
                    self._store_vs_segments(m, conn, rows)
            else:
                self.r.warn("skipped", "counts and store against segments were not checked: a segment or its deletion file is unusable")
        finally:
            if conn is not None:
                conn.close()
        self._unreferenced(m)
        return self.r

    # -- manifest -----------------------------------------------------------------------
    def _manifest(self) -> Manifest | None:
        if not self.path.is_dir():
            self.r.error("manifest", f"no index at {self.path}: the directory does not exist")
            return None
        try:
            m = read_manifest(self.path)
        except (IndexNotFound, IndexIncompatible, ValueError) as e:
            self.r.error("manifest", str(e))
            return None
        self.r.stats.update(format_version=m.format_version, generation=m.generation,
                            synced_seq=m.synced_seq, segments=len(m.segments))
        if m.format_version != FORMAT_VERSION:
            self.r.warn("format", f"format version {m.format_version}: derived data is rebuilt (and then "
                        "checked) when the index is first opened for writing")
            return None
        if m.lexical_backend != "embedded":
            self.r.warn("external", f"the lexical index lives in {m.lexical_backend}: not checked")
        for name, spec in m.channels.items():
            if spec.backend not in LOCAL_BACKENDS:
                self.r.warn("external", f"channel {name!r} lives in {spec.backend}: not checked")
        return m

    # -- store --------------------------------------------------------------------------
    def _open_store(self) -> sqlite3.Connection | None:
        f = self.path / STORE
        if not f.is_file():
            self.r.error("store", f"the document store {STORE} is missing")
            return None
        try:
            conn = sqlite3.connect(f"file:{f}?mode=ro", uri=True, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=10000")
            bad = [r[0] for r in conn.execute("PRAGMA quick_check")]
            if bad != ["ok"]:
                self.r.error("store", f"the document store is damaged: {'; '.join(bad[:SHOWN])}")
                conn.close()
                return None
            conn.execute("BEGIN")  # one read transaction: every store read sees the same state
        except sqlite3.Error as e:
            self.r.error("store", f"the document store is unreadable: {e}")
            return None
        return conn

    def _store_rows(self, conn: sqlite3.Connection) -> dict[str, tuple[int, bool]] | None:
        try:
            rows = {i: (int(s), bool(d)) for i, s, d in conn.execute("SELECT id, seq, deleted FROM docs")}
            last = DocStore._last_seq(conn)
        except sqlite3.Error as e:
            self.r.error("store", f"the document store is unreadable: {e}")
            return None
        self.r.stats.update(store_seq=last, stored_documents=sum(not d for _, d in rows.values()))
        return rows

    # -- segments -----------------------------------------------------------------------
    def _segments(self, m: Manifest) -> bool:
        complete = True
        seen: set[str] = set()
        for ref in m.segments:
            if ref.name in seen:
                self.r.error("segments", f"the manifest names segment {ref.name} twice")
                continue
            seen.add(ref.name)
            seg = self._load(ref.name)
            if seg is None:
                complete = False
                continue
            n = seg.n_docs
            if n != ref.n_docs:
                self.r.error("segments", f"segment {ref.name} holds {n} documents, the manifest says {ref.n_docs}")
            if len(set(seg.ids)) != n:
                dups = [i for i, c in Counter(seg.ids).items() if c > 1]
                self.r.error("segments", f"segment {ref.name} repeats ids: {_listed(dups)}")
            self._segment_parts(m, seg)
            dead = self._deletes(ref.name, ref.deletes, ref.n_deleted, n)
            if dead is False:
                complete = False
                continue
            self.segs[ref.name] = seg
            self.dead[ref.name] = dead
        return complete

    def _load(self, name: str) -> Segment | None:
        folder = self.path / SEGMENTS / name
        if not folder.is_dir():
            self.r.error("segments", f"segment {name} named by the manifest is missing")
            return None
        try:
            seg = Segment.load(folder)
        except FileNotFoundError as e:
            self.r.error("segments", f"segment {name} is incomplete: {e.filename or e} is missing")
            return None
        except Exception as e:  # noqa: BLE001 - whatever a damaged file raises is reported
            self.r.error("segments", f"segment {name} does not load: {e}")
            return None
        if not (folder / METADATA).is_file():
            self.r.error("segments", f"segment {name} is incomplete: {METADATA} is missing")
        bad = seg.arrays.check() if seg.arrays is not None else []
        if bad:
            self.r.error("segments", f"segment {name}: {ARRAYS} is damaged: {len(bad)} array(s) differ "
                         f"from their checksum: {', '.join(bad[:SHOWN])}")
        return seg

    def _segment_parts(self, m: Manifest, seg: Segment) -> None:
        n, name = seg.n_docs, seg.name
        if m.lexical_backend == "embedded":
            if seg.lexical is None:
                self.r.error("segments", f"segment {name} has no lexical postings")
            elif seg.lexical.n_docs != n:
                self.r.error("segments", f"segment {name}: lexical postings of {seg.lexical.n_docs} documents, not {n}")
        if seg.meta.n_docs != n:
            self.r.error("segments", f"segment {name}: metadata index of {seg.meta.n_docs} documents, not {n}")
        for ch in set(seg.vectors) | set(seg.binary):
            spec = m.channels.get(ch)
            if spec is None:
                self.r.error("segments", f"segment {name} holds channel {ch!r}, which the manifest does not declare")
                continue
            rows = n
            if ch in seg.vectors:
                vs = seg.vectors[ch]
                shape, present = vs.vectors.shape, vs.present.shape
                if vs.owners is not None:  # passages: one row per passage of a present document
                    own = np.asarray(vs.owners)
                    rows = len(own)
                    in_order = not (np.diff(own) < 0).any()
                    if not (in_order and np.array_equal(np.unique(own), np.flatnonzero(vs.present))):
                        self.r.error("segments", f"segment {name}: channel {ch!r} maps its passage rows to "
                                     "ordinals out of order, out of range or not the present ones")
                want = int(vs.present.sum()) if vs.owners is None else rows
                if vs.ann is not None and vs.ann.ntotal != want:
                    self.r.error("segments", f"segment {name}: the {ch} ANN index holds {vs.ann.ntotal} "
                                 f"vectors, the segment {want}")
            else:
                shape, present = seg.binary[ch].shape, seg.binary_present[ch].shape
            if shape != (rows, spec.dim) or present != (n,):
                self.r.error("segments", f"segment {name}: channel {ch!r} has shape {shape} (present "
                             f"{present}), expected ({rows}, {spec.dim})")

    def _deletes(self, seg: str, file: str | None, n_deleted: int, n: int) -> np.ndarray | None | bool:
        """The segment's deletion bitmap (None: nothing deleted; False: unusable)."""
        if not file:
            if n_deleted:
                self.r.error("deletes", f"segment {seg}: the manifest counts {n_deleted} deleted rows but names no deletion file")
            return None
        f = self.path / DELETES / file
        if not f.is_file():
            self.r.error("deletes", f"deletion file {file} of segment {seg} is missing")
            return False
        try:
            bits = np.load(f, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - a truncated or damaged .npy
            self.r.error("deletes", f"deletion file {file} of segment {seg} is unreadable (truncated?): {e}")
            return False
        want = (n + 7) // 8
        if bits.dtype != np.uint8 or bits.shape != (want,):
            self.r.error("deletes", f"deletion file {file} of segment {seg} holds {bits.size} {bits.dtype} "
                         f"values, expected {want} bytes for {n} documents")
            return False
        dead = np.unpackbits(bits, count=n, bitorder="little").astype(bool)
        if int(dead.sum()) != n_deleted:
            self.r.error("deletes", f"deletion file {file} deletes {int(dead.sum())} rows of segment {seg}, "
                         f"the manifest says {n_deleted}")
        return dead

    def _templates(self, m: Manifest) -> None:
        for ch, rec in m.templates.items():
            f = self.path / TEMPLATES / rec.get("file", "")
            if not f.is_file():
                self.r.error("templates", f"the trained FAISS template {rec.get('file')} of channel {ch!r} is missing")
                continue
            try:
                import faiss

                faiss.read_index(str(f))
            except Exception as e:  # noqa: BLE001 - a damaged FAISS file raises RuntimeError
                self.r.error("templates", f"the trained FAISS template {f.name} of channel {ch!r} is unreadable: {e}")

    # -- counts -------------------------------------------------------------------------
    def _live(self, name: str) -> np.ndarray:
        d = self.dead[name]
        return np.ones(self.segs[name].n_docs, bool) if d is None else ~d

    def _present(self, seg: Segment, ch: str) -> np.ndarray:
        if ch in seg.vectors:
            return np.asarray(seg.vectors[ch].present, bool)
        if ch in seg.binary:
            return np.asarray(seg.binary_present[ch], bool)
        return np.zeros(seg.n_docs, bool)

    def _local_channels(self, m: Manifest) -> list[str]:
        return [n for n, s in m.channels.items() if s.backend in LOCAL_BACKENDS]

    def _counts(self, m: Manifest) -> None:
        docs = sum(int(self._live(n).sum()) for n in self.segs)
        want = {"docs": docs, "segments": len(m.segments)}
        if m.lexical_backend == "embedded":
            want["lexical"] = docs
        for ch in self._local_channels(m):
            want[ch] = sum(int((self._present(s, ch) & self._live(n)).sum()) for n, s in self.segs.items())
        self.r.stats.update(documents=docs, channels={c: want[c] for c in self._local_channels(m)})
        for key, n in want.items():
            if key in m.counts and m.counts[key] != n:
                self.r.error("counts", f"the manifest counts {m.counts[key]} for {key!r}, the segments hold {n}")

    # -- store against derived data -----------------------------------------------------
    def _store_vs_segments(self, m: Manifest, conn: sqlite3.Connection,
                           rows: dict[str, tuple[int, bool]]) -> None:
        synced = m.synced_seq
        last = self.r.stats.get("store_seq", 0)
        if last < synced:
            self.r.error("store", f"the store's last change is {last} but the commit has applied changes up "
                         f"to {synced}: acknowledged changes are missing from the store (or it belongs "
                         "to another index)")
        pending = {i for i, (seq, _) in rows.items() if seq > synced}
        self.r.stats["pending_changes"] = max(last - synced, 0)
        where: dict[str, tuple[str, int]] = {}
        twice: set[str] = set()
        for name, seg in self.segs.items():
            for o in np.flatnonzero(self._live(name)).tolist():
                i = seg.ids[o]
                if i in where:
                    twice.add(i)
                where[i] = (name, o)
        if twice:
            self.r.error("store-vs-segments", f"{len(twice)} document(s) are live in more than one segment: {_listed(list(twice))}")
        unsearchable = [i for i, (seq, gone) in rows.items() if not gone and seq <= synced and i not in where]
        if unsearchable:
            self.r.error("store-vs-segments", f"{len(unsearchable)} stored document(s) are live in no segment "
                         f"although the commit applied their change: {_listed(unsearchable)}")
        orphans = [i for i in where if i not in pending and (i not in rows or rows[i][1])]
        if orphans:
            self.r.error("store-vs-segments", f"{len(orphans)} live segment row(s) have no live stored "
                         f"document: {_listed(orphans)}")
        checked = {i: loc for i, loc in where.items() if i not in pending and i in rows and not rows[i][1]}
        for ch in self._local_channels(m):
            self._vectors(m, conn, ch, checked)

    def _vectors(self, m: Manifest, conn: sqlite3.Connection, ch: str, where: dict[str, tuple[str, int]]) -> None:
        dtype = np.uint8 if m.channels[ch].backend == "faiss-binary" else np.float32
        present = {n: self._present(s, ch) for n, s in self.segs.items()}
        stored: set[str] = set()
        differ: list[str] = []
        try:
            for i, blob in conn.execute("SELECT id, vec FROM vectors WHERE channel=?", (ch,)):
                loc = where.get(i)
                if loc is None:
                    continue
                stored.add(i)
                name, o = loc
                if not present[name][o]:
                    continue
                seg = self.segs[name]
                row = seg.vectors[ch].rows_of(o) if ch in seg.vectors else seg.binary[ch][o]
                if not np.array_equal(np.frombuffer(blob, dtype=dtype), np.asarray(row).ravel()):
                    differ.append(i)
        except sqlite3.Error as e:
            self.r.error("store", f"the store's vectors are unreadable: {e}")
            return
        in_seg = {i for i, (n, o) in where.items() if present[n][o]}
        if stored - in_seg:
            lacking = sorted(stored - in_seg)
            self.r.error("vectors", f"channel {ch!r}: {len(lacking)} stored vector(s) are missing from the "
                         f"segments: {_listed(lacking)}")
        if in_seg - stored:
            extra = sorted(in_seg - stored)
            self.r.error("vectors", f"channel {ch!r}: {len(extra)} segment vector(s) have none in the store: "
                         f"{_listed(extra)}")
        if differ:
            self.r.error("vectors", f"channel {ch!r}: {len(differ)} segment vector(s) differ from the stored "
                         f"ones: {_listed(differ)}")

    # -- files nobody names -------------------------------------------------------------
    def _unreferenced(self, m: Manifest | None) -> None:
        if m is None or not self.path.is_dir():
            return
        top = {MANIFEST, STORE, f"{STORE}-wal", f"{STORE}-shm", ".lock", SEGMENTS, DELETES, TEMPLATES}
        if m.lexical_backend != "embedded":
            top.add("lexical-es")
        top.update(f"channel-{n}" for n, s in m.channels.items() if s.backend not in LOCAL_BACKENDS)
        named = {SEGMENTS: {r.name for r in m.segments},
                 DELETES: {r.deletes for r in m.segments if r.deletes},
                 TEMPLATES: {rec.get("file") for rec in m.templates.values()}}
        extra = sorted(p.name for p in self.path.iterdir() if p.name not in top)
        for folder, keep in named.items():
            d = self.path / folder
            if d.is_dir():
                extra += [f"{folder}/{p.name}" for p in sorted(d.iterdir()) if p.name not in keep]
        if extra:
            self.r.warn("unreferenced", f"{len(extra)} file(s) or folder(s) are not part of the commit "
                        f"(left over by an interrupted write, or still read by a writer's open search; "
                        f"the next writable open removes those under segments/, deletes/, templates/): "
                        f"{_listed(extra)}")
