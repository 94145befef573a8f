"""Backups of an index directory: :func:`snapshot` (one archive file of a live index),
:func:`restore` (an archive back into a new directory) and :func:`verify` (see verify.py).

A snapshot is consistent without stopping the writer, and takes no lock it holds:

1. the manifest is read (the commit point: the live segments, their deletion files, the
   trained FAISS templates, ``synced_seq``);
2. every file it names is staged: hard-linked (or copied, across file systems) into a
   folder beside the archive. The files are immutable, so a file that could be opened is
   whole; a merge may remove a segment meanwhile, so the manifest is read again afterwards,
   and if a segment it named is gone (or a file vanished under the staging) the staging
   goes on with the newer manifest (already staged files are kept): a segment the manifest
   names both before and after its staging was never removed in between, so it was staged
   whole;
3. the document store is copied with SQLite's online backup API, after the manifest was read
   and after the snapshot began: it holds every write acknowledged before, and at least the
   changes up to the manifest's ``synced_seq``. A restored index replays the changes after
   ``synced_seq`` on its first writable open, as after a crash;
4. a refresh that committed meanwhile may have purged deleted rows from the store (their
   deletion is in the newer commit only): each document live in the copied segments that the
   copied store no longer holds gets a deletion row after the store's last change, so the
   replay deletes it too;
5. everything goes into one tar (``.tar.gz`` / ``.tgz``: compressed), written to a temporary
   name, fsynced and renamed.

The archive holds ``snapshot.json`` (what was taken), ``manifest.json``, ``docs.sqlite``,
``segments/``, ``deletes/`` and ``templates/``. Indexes whose lexical index or a vector channel
live in Elasticsearch are not snapshotted here (use Elasticsearch's snapshots).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

from semsearch.errors import BadInput, IndexIncompatible, IndexNotFound, SemsearchError
from semsearch.indexer.index import DELETES, LOCAL_BACKENDS, SEGMENTS, TEMPLATES, IndexLocked
from semsearch.indexer.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    Manifest,
    fsync_dir,
    fsync_tree,
    library_versions,
)
from semsearch.indexer.segments.segment import INFO as SEGMENT_INFO
from semsearch.indexer.segments.segment import read_deletes, read_ids
from semsearch.indexer.store import DocStore
from semsearch.indexer.verify import VerifyReport, verify

__all__ = ["ARCHIVE_FORMAT", "INFO", "VerifyReport", "restore", "snapshot", "verify"]

logger = logging.getLogger(__name__)

STORE = "docs.sqlite"
#: what an archive holds besides the index files
INFO = "snapshot.json"
ARCHIVE_FORMAT = 1
#: the entries an archive may hold at its root
ARCHIVE_ROOT = (INFO, MANIFEST, STORE, SEGMENTS, DELETES, TEMPLATES)
#: times the staging starts over with a newer manifest before giving up
ATTEMPTS = 50


class SnapshotFailed(SemsearchError):
    """A snapshot could not be taken (the index changed faster than it could be staged)."""


# -- snapshot ---------------------------------------------------------------------------
def snapshot(index_path: Path | str, out_path: Path | str) -> dict[str, Any]:
    """Write a consistent snapshot of the index at ``index_path`` (which another process may
    be writing, refreshing and merging meanwhile) to the archive ``out_path``."""
    t0 = time.perf_counter()
    src, out = Path(index_path), Path(out_path)
    raw, m = _read(src)
    _check_snapshottable(src, m)
    if out.exists() and out.is_dir():
        raise BadInput(f"snapshot output {out} is a directory: give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.stage-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        raw, m, attempts = _stage_commit(src, stage, raw, m)
        (stage / MANIFEST).write_bytes(raw)
        _backup_store(src / STORE, stage / STORE)
        store_seq, tombstoned = _tombstone_purged(stage, m)
        if store_seq < m.synced_seq:  # cannot happen: the store is copied after the manifest
            raise SnapshotFailed(f"the copied store (seq {store_seq}) is older than the copied "
                                 f"commit (synced_seq {m.synced_seq})")
        names = _named_files(stage, m)
        info = {"format": ARCHIVE_FORMAT, "source": str(src.resolve()), "created_at": time.time(),
                "generation": m.generation, "synced_seq": m.synced_seq, "store_seq": store_seq,
                "segments": len(m.segments), "documents": m.counts.get("docs", 0),
                "tombstoned": tombstoned, "attempts": attempts, "files": len(names) + 2,
                "versions": library_versions()}
        (stage / INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
        size = _write_archive(stage, [INFO, MANIFEST, STORE, *names], out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    took = time.perf_counter() - t0
    logger.info("snapshot of %s (generation %d, %d segments) written to %s in %.2f s",
                src, m.generation, len(m.segments), out, took)
    return {**{k: v for k, v in info.items() if k != "versions"}, "archive": str(out), "bytes": size,
            "seconds": took}


def _read(path: Path) -> tuple[bytes, Manifest]:
    """The manifest's bytes (archived as they are) and its parsed form."""
    f = path / MANIFEST
    try:
        raw = f.read_bytes()
    except FileNotFoundError as e:
        if not path.is_dir():
            raise IndexNotFound(f"no index at {path}: the directory does not exist") from e
        raise IndexNotFound(f"no index at {path}: {MANIFEST} is missing") from e
    try:
        data = json.loads(raw)
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise IndexIncompatible(
                f"index at {path} has format version {version}; this semsearch snapshots and restores "
                f"version {FORMAT_VERSION} (open an older index for writing once, e.g. `semsearch "
                "reindex --index DIR`, to upgrade it)")
        return raw, Manifest.model_validate(data)
    except ValueError as e:
        raise IndexIncompatible(f"{f} is unreadable: {e}") from e


def _check_snapshottable(path: Path, m: Manifest) -> None:
    external = [n for n, s in m.channels.items() if s.backend not in LOCAL_BACKENDS]
    if m.lexical_backend != "embedded" or external:
        what = ["the lexical index"] if m.lexical_backend != "embedded" else []
        what += [f"channel {n!r}" for n in external]
        raise BadInput(f"index at {path} keeps {', '.join(what)} in Elasticsearch: a snapshot here "
                       "would not hold it; back it up with Elasticsearch's snapshot API")
    if not (path / STORE).is_file():
        raise IndexNotFound(f"no index at {path}: {STORE} is missing")


def _stage_commit(src: Path, stage: Path, raw: bytes, m: Manifest) -> tuple[bytes, Manifest, int]:
    """Stage the files of a commit whose segments were all named by the manifest before and
    after their staging (so none was being removed while it was listed)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _stage_files(src, stage, m)
        except FileNotFoundError as e:
            logger.debug("snapshot: %s of generation %d vanished, reading the manifest again",
                         e.filename, m.generation)
            time.sleep(0.01 * min(attempt, 10))
            raw, m = _read(src)
            _check_snapshottable(src, m)
            continue
        raw2, m2 = _read(src)
        gone = {r.name for r in m.segments} - {r.name for r in m2.segments}
        if not gone:
            return raw, m, attempt
        logger.debug("snapshot: segments %s were merged away while staged, staging generation %d",
                     sorted(gone), m2.generation)
        raw, m = raw2, m2
        _check_snapshottable(src, m)
    raise SnapshotFailed(f"index at {src} changed faster than it could be staged ({ATTEMPTS} attempts): "
                         "try again when fewer merges run")


def _stage_files(src: Path, stage: Path, m: Manifest) -> None:
    """Hard-link (or copy) every file ``m`` names into ``stage``; raise FileNotFoundError when
    one was removed meanwhile. Files staged by an earlier attempt are kept (immutable)."""
    for ref in m.segments:
        _stage_tree(src / SEGMENTS / ref.name, stage / SEGMENTS / ref.name)
        if ref.deletes:
            _link_or_copy(src / DELETES / ref.deletes, stage / DELETES / ref.deletes)
    for rec in m.templates.values():
        _link_or_copy(src / TEMPLATES / rec["file"], stage / TEMPLATES / rec["file"])


def _stage_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    with os.scandir(src) as it:  # FileNotFoundError if the folder is gone (os.walk would hide it)
        entries = list(it)
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            _stage_tree(src / e.name, dst / e.name)
        else:
            _link_or_copy(src / e.name, dst / e.name)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except FileNotFoundError:
        raise
    except OSError as e:  # another file system (EXDEV), or links not allowed: copy
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP):
            raise
        tmp = dst.with_name(dst.name + ".part")
        shutil.copyfile(src, tmp)  # an open immutable file reads whole even if unlinked
        os.replace(tmp, dst)


def _backup_store(src: Path, dst: Path) -> None:
    """Copy the live document store with SQLite's online backup API (one consistent read
    transaction; the writer is not blocked in WAL mode) into a self-contained file."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        source.execute("PRAGMA busy_timeout=10000")
        target = sqlite3.connect(str(dst))
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one file; a writable open turns WAL on
        finally:
            target.close()
    finally:
        source.close()


def _tombstone_purged(stage: Path, m: Manifest) -> tuple[int, int]:
    """Give each document live in the staged segments that the staged store no longer holds
    (deleted and purged by a refresh after the manifest was read) a deletion row, so that the
    replay after ``synced_seq`` deletes it. Returns (the store's last seq, rows added)."""
    conn = sqlite3.connect(str(stage / STORE), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TEMP TABLE live_ids (id TEXT PRIMARY KEY)")
        for ref in m.segments:
            folder = stage / SEGMENTS / ref.name
            ids = read_ids(folder)
            if ref.deletes:
                dead = read_deletes(stage / DELETES / ref.deletes, len(ids))
                ids = [i for i, d in zip(ids, dead.tolist()) if not d]
            conn.executemany("INSERT OR IGNORE INTO live_ids VALUES (?)", [(i,) for i in ids])
        missing = [r[0] for r in conn.execute(
            "SELECT id FROM live_ids WHERE id NOT IN (SELECT id FROM docs) ORDER BY id")]
        seq = DocStore._last_seq(conn)
        if missing:
            seq += 1
            conn.executemany(
                "INSERT INTO docs(id,title,text,metadata,image,hash,seq,deleted) VALUES (?,'','','{}',NULL,'',?,1)",
                [(i, seq) for i in missing])
            logger.info("snapshot: %d document(s) deleted after the copied commit get a deletion row",
                        len(missing))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return seq, len(missing)


def _named_files(stage: Path, m: Manifest) -> list[str]:
    """The staged files of commit ``m`` (relative paths); files staged for segments an earlier
    attempt saw but ``m`` no longer names are left out."""
    out: list[str] = []
    for ref in m.segments:
        folder = stage / SEGMENTS / ref.name
        out.extend(p.relative_to(stage).as_posix() for p in sorted(folder.rglob("*")) if p.is_file())
        if ref.deletes:
            out.append(f"{DELETES}/{ref.deletes}")
    out.extend(f"{TEMPLATES}/{rec['file']}" for rec in m.templates.values())
    return out


def _write_archive(stage: Path, names: list[str], out: Path) -> int:
    mode = "w:gz" if out.name.endswith((".tar.gz", ".tgz")) else "w"
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            with tarfile.open(fileobj=fh, mode=mode) as tar:  # type: ignore[call-overload]
                for name in names:
                    ti = tar.gettarinfo(str(stage / name), arcname=name)
                    ti.uid = ti.gid = 0
                    ti.uname = ti.gname = ""
                    with open(stage / name, "rb") as f:
                        tar.addfile(ti, f)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)
    return out.stat().st_size


# -- restore ----------------------------------------------------------------------------
def restore(archive: Path | str, index_path: Path | str, *, force: bool = False) -> dict[str, Any]:
    """Unpack a snapshot into ``index_path``, which must be absent or empty (``force``:
    replace what is there, unless a process is writing to it). The files are unpacked beside
    it and renamed into place, so a failed restore leaves nothing half-written."""
    t0 = time.perf_counter()
    archive, target = Path(archive), Path(index_path)
    if not archive.is_file():
        raise BadInput(f"snapshot archive {archive} does not exist or is not a file")
    if target.exists() and not target.is_dir():
        raise BadInput(f"restore target {target} exists and is not a directory")
    occupied = target.is_dir() and any(target.iterdir())
    if occupied and not force:
        raise BadInput(f"restore target {target} is not empty: restore into a new directory, or "
                       "pass --force to replace what is there")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.restore-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        info, n_files, n_bytes = _unpack(archive, tmp)
        raw, m = _read(tmp)  # IndexIncompatible for a format this semsearch does not read
        for name in _missing(tmp, m):
            raise BadInput(f"snapshot archive {archive} is incomplete: the manifest names {name}, "
                           "which it does not hold")
        conn = sqlite3.connect(f"file:{tmp / STORE}?mode=ro", uri=True)
        try:
            store_seq = DocStore._last_seq(conn)
            docs = int(conn.execute("SELECT COUNT(*) FROM docs WHERE deleted=0").fetchone()[0])
        finally:
            conn.close()
        fsync_tree(tmp)
        _swap_in(tmp, target, occupied)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"index": str(target), "archive": str(archive), "taken_at": info.get("created_at"),
            "source": info.get("source"), "generation": m.generation, "synced_seq": m.synced_seq,
            "store_seq": store_seq, "pending_changes": store_seq - m.synced_seq, "documents": docs,
            "segments": len(m.segments), "files": n_files, "bytes": n_bytes,
            "seconds": time.perf_counter() - t0}


def _unpack(archive: Path, dest: Path) -> tuple[dict[str, Any], int, int]:
    """Check every member (plain files and folders under the known root entries, no absolute
    or ``..`` paths, no links) and unpack them; returns the archive's info."""
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise BadInput(f"{archive} is not a semsearch snapshot (not a readable tar): {e}") from e
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise BadInput(f"snapshot archive {archive} is damaged: {e}") from e
        for ti in members:
            p = PurePosixPath(ti.name)
            if (p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] not in ARCHIVE_ROOT
                    or not (ti.isfile() or ti.isdir())):
                raise BadInput(f"snapshot archive {archive} holds an unexpected entry {ti.name!r}: "
                               "it was not written by `semsearch snapshot`")
        names = {ti.name for ti in members}
        for need in (INFO, MANIFEST, STORE):
            if need not in names:
                raise BadInput(f"snapshot archive {archive} has no {need}: it was not written by "
                               "`semsearch snapshot`")
        fh = tar.extractfile(INFO)
        info = json.loads(fh.read()) if fh is not None else {}
        if info.get("format") != ARCHIVE_FORMAT:
            raise IndexIncompatible(f"snapshot archive {archive} has format {info.get('format')}; "
                                    f"this semsearch reads format {ARCHIVE_FORMAT}")
        files = [ti for ti in members if ti.isfile() and ti.name != INFO]
        try:
            tar.extractall(dest, members=files, filter="data")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise BadInput(f"snapshot archive {archive} is damaged: {e}") from e
    return info, len(files), sum(ti.size for ti in files)


def _missing(path: Path, m: Manifest) -> list[str]:
    names = [f"{SEGMENTS}/{r.name}/{SEGMENT_INFO}" for r in m.segments]
    names += [f"{DELETES}/{r.deletes}" for r in m.segments if r.deletes]
    names += [f"{TEMPLATES}/{rec['file']}" for rec in m.templates.values()]
    names.append(STORE)
    return [n for n in names if not (path / n).is_file()]


def _swap_in(tmp: Path, target: Path, occupied: bool) -> None:
    """Rename the unpacked index into place; an occupied target (``force``) is moved aside
    while its writer lock is held (so no writer opens it meanwhile) and then removed."""
    if not target.exists():
        os.rename(tmp, target)
    elif not occupied:
        target.rmdir()
        os.rename(tmp, target)
    else:
        old = target.parent / f".{target.name}.replaced-{os.getpid()}"
        lock = open(target / ".lock", "a+") if target.is_dir() else None
        try:
            if lock is not None:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as e:
                    raise IndexLocked(f"index at {target} is being written by another process: "
                                      "stop it before restoring over it") from e
            os.rename(target, old)
            os.rename(tmp, target)
        finally:
            if lock is not None:
                lock.close()
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(target.parent)
