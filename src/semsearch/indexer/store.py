"""The document store: the durable source of truth of an index directory (SQLite, WAL).

Every accepted record is written here, with its embeddings, in one transaction per batch,
before any derived index (BM25, FAISS) sees it. Each change gets a sequence number; the
manifest records the last sequence number the derived indexes were built up to, so an
interrupted run resumes by replaying the changes after it, and nothing is applied twice.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.documents import Document
from semsearch.encoders.passages import pack_spans, unpack_spans

#: the pseudo-channel (``<channel>:spans``) of a channel's passage spans in the vectors
#: table: rows written, replaced, kept for restore and deleted with the document's vectors
SPANS = ":spans"

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    image TEXT,
    hash TEXT NOT NULL,
    seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS docs_seq ON docs(seq);
-- tombstones only: a refresh purges the deleted rows it made searchable without reading the
-- live ones (through docs_seq that purge read every row: 125 ms per refresh at 50k documents)
CREATE INDEX IF NOT EXISTS docs_deleted ON docs(seq) WHERE deleted=1;
CREATE TABLE IF NOT EXISTS vectors (
    id TEXT NOT NULL,
    channel TEXT NOT NULL,
    vec BLOB NOT NULL,
    PRIMARY KEY (id, channel)
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- the version a write replaced, kept until a refresh has made the new one searchable: if a
-- backend refuses the new version, the searchable one is restored from here
CREATE TABLE IF NOT EXISTS prev (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL,
    image TEXT, hash TEXT NOT NULL, seq INTEGER NOT NULL, new_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS prev_vectors (
    id TEXT NOT NULL, channel TEXT NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (id, channel)
);
CREATE TABLE IF NOT EXISTS rejected (
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (id, seq)
);
"""


class DocStore:
    """Writes go through one connection under a lock; every reading thread has a connection of
    its own, so a reader never sees a writer's uncommitted rows (SQLite WAL isolation)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._writer: sqlite3.Connection | None = None
        if not readonly:
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.execute("PRAGMA synchronous=FULL")
            self._writer.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                   isolation_level=None)
        else:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=10000")
        with self._lock:
            self._all.append(conn)
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        """This thread's reading connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _write_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            from semsearch.errors import BadInput

            raise BadInput(f"document store {self.path} was opened read-only")
        return self._writer

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
            self._local = threading.local()

    # -- state --------------------------------------------------------------------------
    def last_seq(self) -> int:
        return self._last_seq(self._conn)

    @staticmethod
    def _last_seq(conn: sqlite3.Connection | sqlite3.Cursor) -> int:
        # purged deletions take their sequence numbers with them: the floor keeps numbers
        # growing, so a later write never reuses a number a sync has already passed
        row = conn.execute("SELECT MAX(seq) FROM docs").fetchone()
        floor = conn.execute("SELECT value FROM state WHERE key='seq_floor'").fetchone()
        return max(int(row[0] or 0), int(json.loads(floor[0]) if floor else 0))

    @contextlib.contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """This thread's reads inside see one committed state of the store (a refresh reads
        documents and their vectors as of the same instant, whatever writers do meanwhile)."""
        conn = self._conn
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def record_rejected(self, rejected: Sequence[tuple[str, int, str]]) -> None:
        """Documents a backend refused while they were being made searchable: (id, seq, reason)."""
        with self._lock:
            self._write_conn().executemany(
                "INSERT OR REPLACE INTO rejected(id, seq, reason) VALUES (?,?,?)", list(rejected))

    def rejected(self, since_seq: int = 0) -> list[tuple[str, int, str]]:
        return [tuple(r) for r in self._conn.execute(
            "SELECT id, seq, reason FROM rejected WHERE seq>? ORDER BY seq, id", (since_seq,))]

    def seqs(self, ids: Sequence[str]) -> dict[str, int]:
        """The change sequence number of each stored id (live or deleted, not purged)."""
        out: dict[str, int] = {}
        ids = list(ids)
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            q = ",".join("?" * len(chunk))
            out.update(self._conn.execute(f"SELECT id, seq FROM docs WHERE id IN ({q})", chunk).fetchall())
        return out

    def sample_vectors(self, channel: str, n: int, dim: int) -> np.ndarray:
        """The vectors of up to ``n`` documents of a channel, drawn at random (FAISS
        training; every passage of a document split into passages)."""
        rows = self._conn.execute(
            "SELECT vec FROM vectors WHERE channel=? ORDER BY random() LIMIT ?", (channel, n)).fetchall()
        if not rows:
            return np.zeros((0, dim), np.float32)
        return np.vstack([np.frombuffer(r[0], dtype=np.float32).reshape(-1, dim) for r in rows])

    def count_vectors(self, channel: str) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM vectors WHERE channel=?", (channel,)).fetchone()[0])

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- writes -------------------------------------------------------------------------
    def hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """Content hashes of the live documents among ``ids``."""
        out: dict[str, str] = {}
        ids = list(ids)
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            q = ",".join("?" * len(chunk))
            for doc_id, h in self._conn.execute(
                f"SELECT id, hash FROM docs WHERE deleted=0 AND id IN ({q})", chunk
            ):
                out[doc_id] = h
        return out

    def write(
        self, docs: Sequence[Document], vectors: dict[str, np.ndarray] | None = None
    ) -> int:
        """Upsert documents and their vectors (one row each per channel) atomically. A
        channel's vectors are a matrix (one vector per document) or, for documents split
        into passages, a list of ``(n_passages, dim)`` matrices, stored as one blob per
        document (its passages' vectors in order). Returns the sequence number of the batch."""
        vectors = vectors or {}
        with self._lock:
            cur = self._write_conn().cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                seq = self._last_seq(cur) + 1
                self._keep_previous(cur, [d.id for d in docs], seq)
                cur.executemany(
                    "INSERT INTO docs(id,title,text,metadata,image,hash,seq,deleted) "
                    "VALUES (?,?,?,?,?,?,?,0) ON CONFLICT(id) DO UPDATE SET title=excluded.title,"
                    " text=excluded.text, metadata=excluded.metadata, image=excluded.image,"
                    " hash=excluded.hash, seq=excluded.seq, deleted=0",
                    [
                        (d.id, d.title, d.text, json.dumps(d.metadata), d.image,
                         d.content_hash(), seq)
                        for d in docs
                    ],
                )
                # a new version replaces every channel's vector: one it has no vector for
                # (text replaced by an image, say) is gone
                cur.executemany("DELETE FROM vectors WHERE id=?", [(d.id,) for d in docs])
                for channel, mat in vectors.items():
                    if not isinstance(mat, list):
                        mat = np.ascontiguousarray(mat)
                    cur.executemany(
                        "INSERT OR REPLACE INTO vectors(id, channel, vec) VALUES (?,?,?)",
                        [(d.id, channel, np.ascontiguousarray(mat[i]).tobytes()) for i, d in enumerate(docs)],
                    )
                    if isinstance(mat, list):  # passages: their spans, where the encoder gave them
                        cur.executemany(
                            "INSERT OR REPLACE INTO vectors(id, channel, vec) VALUES (?,?,?)",
                            [(d.id, channel + SPANS, pack_spans(d.text, m.cuts)) for d, m in zip(docs, mat)
                             if getattr(m, "cuts", None) and len(m.cuts) > 1],
                        )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return seq

    @staticmethod
    def _keep_previous(cur: sqlite3.Cursor, ids: Sequence[str], seq: int) -> None:
        """Save the live versions ``ids`` have now (the first replaced since the last refresh
        is the searchable one; later ones are not kept)."""
        for start in range(0, len(ids), 900):
            chunk = list(ids[start : start + 900])
            q = ",".join("?" * len(chunk))
            cur.execute(
                f"INSERT OR IGNORE INTO prev SELECT id,title,text,metadata,image,hash,seq,? FROM docs "
                f"WHERE deleted=0 AND id IN ({q})", [seq, *chunk])
            cur.execute(
                f"INSERT OR IGNORE INTO prev_vectors SELECT id,channel,vec FROM vectors WHERE id IN ({q})",
                chunk)

    def restore_previous(self, ids: Sequence[str]) -> None:
        """Put back the version each id had before its refused write (or remove the id, if
        the refused write created it): the store agrees again with what is searchable."""
        with self._lock:
            cur = self._write_conn().cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for doc_id in ids:
                    row = cur.execute("SELECT title,text,metadata,image,hash,seq FROM prev WHERE id=?",
                                      (doc_id,)).fetchone()
                    cur.execute("DELETE FROM vectors WHERE id=?", (doc_id,))
                    if row is None:
                        cur.execute("DELETE FROM docs WHERE id=?", (doc_id,))
                        continue
                    cur.execute("INSERT OR REPLACE INTO docs(id,title,text,metadata,image,hash,seq,deleted) "
                                "VALUES (?,?,?,?,?,?,?,0)", (doc_id, *row))
                    cur.execute("INSERT INTO vectors SELECT id,channel,vec FROM prev_vectors WHERE id=?", (doc_id,))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def drop_previous(self, up_to_seq: int) -> None:
        """Forget replaced versions whose replacement a refresh has made searchable."""
        with self._lock:
            cur = self._write_conn().cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("DELETE FROM prev_vectors WHERE id IN (SELECT id FROM prev WHERE new_seq<=?)",
                            (up_to_seq,))
                cur.execute("DELETE FROM prev WHERE new_seq<=?", (up_to_seq,))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def mark_deleted(self, ids: Sequence[str]) -> int:
        with self._lock:
            cur = self._write_conn().cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                seq = self._last_seq(cur) + 1
                n = 0
                for doc_id in ids:
                    n += cur.execute(
                        "UPDATE docs SET deleted=1, seq=? WHERE id=? AND deleted=0", (seq, doc_id)
                    ).rowcount
                cur.executemany("DELETE FROM vectors WHERE id=?", [(i,) for i in ids])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return n

    def purge_deleted(self, up_to_seq: int) -> None:
        with self._lock:
            cur = self._write_conn().cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                floor = self._last_seq(cur)
                cur.execute(
                    "INSERT OR REPLACE INTO state(key, value) VALUES ('seq_floor', ?)",
                    (json.dumps(floor),),
                )
                cur.execute("DELETE FROM docs WHERE deleted=1 AND seq<=?", (up_to_seq,))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    # -- reads --------------------------------------------------------------------------
    def count_since(self, seq: int, upto: int) -> int:
        """How many documents changed (written or deleted) with ``seq < sequence <= upto``."""
        return self._conn.execute("SELECT COUNT(*) FROM docs WHERE seq>? AND seq<=?", (seq, upto)).fetchone()[0]

    def changes_since(self, seq: int, batch: int = 2048, *,
                      upto: int | None = None) -> Iterator[tuple[list[Document], list[str]]]:
        """Yield ``(upserted docs, deleted ids)`` for changes with ``seq < sequence <= upto``."""
        cur = self._conn.execute(
            "SELECT id,title,text,metadata,image,deleted FROM docs WHERE seq>? AND seq<=? "
            "ORDER BY seq, rowid",
            (seq, upto if upto is not None else 2**62),
        )
        while True:
            rows = cur.fetchmany(batch)
            if not rows:
                return
            ups = [self._row_doc(r) for r in rows if not r[5]]
            dels = [r[0] for r in rows if r[5]]
            yield ups, dels

    def vectors(
        self, ids: Sequence[str], channel: str, dim: int, dtype: Any = np.float32
    ) -> np.ndarray:
        """The stored vectors of ``ids`` in one channel (rows of zeros for ids without one);
        a document split into passages: its first passage's."""
        out = np.zeros((len(ids), dim), dtype=dtype)
        pos = {d: i for i, d in enumerate(ids)}
        for doc_id, vecs in self._vector_blobs(ids, channel, dim, dtype):
            out[pos[doc_id]] = vecs[0]
        return out

    def passage_vectors(self, ids: Sequence[str], channel: str, dim: int) -> list[np.ndarray | None]:
        """Per id, its stored vectors in one channel, ``(n_passages, dim)``; None without."""
        out: list[np.ndarray | None] = [None] * len(ids)
        pos = {d: i for i, d in enumerate(ids)}
        for doc_id, vecs in self._vector_blobs(ids, channel, dim, np.float32):
            out[pos[doc_id]] = vecs
        return out

    def passage_spans(self, docs: Sequence[Document], channel: str) -> dict[str, np.ndarray]:
        """The stored ``(n_passages, 2)`` character spans of the passages of ``docs`` (those
        split into several, written with their spans) whose text is still the one cut."""
        out = {}
        texts = {d.id: d.text for d in docs}
        for doc_id, blob in self._blobs(list(texts), channel + SPANS):
            spans = unpack_spans(blob, texts[doc_id])
            if spans is not None:
                out[doc_id] = spans
        return out

    def _vector_blobs(self, ids: Sequence[str], channel: str, dim: int,
                      dtype: Any) -> Iterator[tuple[str, np.ndarray]]:
        for doc_id, blob in self._blobs(ids, channel):
            yield doc_id, np.frombuffer(blob, dtype=dtype).reshape(-1, dim)

    def _blobs(self, ids: Sequence[str], channel: str) -> Iterator[tuple[str, bytes]]:
        ids = list(ids)
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            q = ",".join("?" * len(chunk))
            yield from self._conn.execute(
                f"SELECT id, vec FROM vectors WHERE channel=? AND id IN ({q})", [channel, *chunk])

    def has_vectors(self, ids: Sequence[str], channel: str) -> set[str]:
        found: set[str] = set()
        ids = list(ids)
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            q = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self._conn.execute(
                    f"SELECT id FROM vectors WHERE channel=? AND id IN ({q})", [channel, *chunk]
                )
            )
        return found

    @staticmethod
    def _row_doc(r: Iterable[Any]) -> Document:
        doc_id, title, text, metadata, image, *_ = r
        return Document(id=doc_id, title=title, text=text, metadata=json.loads(metadata), image=image)

    def get(self, ids: Sequence[str]) -> dict[str, Document]:
        out: dict[str, Document] = {}
        ids = list(ids)
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            q = ",".join("?" * len(chunk))
            for r in self._conn.execute(
                f"SELECT id,title,text,metadata,image,deleted FROM docs WHERE deleted=0 AND id IN ({q})",
                chunk,
            ):
                out[r[0]] = self._row_doc(r)
        return out

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM docs WHERE deleted=0").fetchone()[0])

    def iter_docs(self, batch: int = 2048) -> Iterator[Document]:
        cur = self._conn.execute(
            "SELECT id,title,text,metadata,image,deleted FROM docs WHERE deleted=0 ORDER BY rowid"
        )
        while rows := cur.fetchmany(batch):
            yield from (self._row_doc(r) for r in rows)
