"""The index directory format.

::

    INDEX_DIR/
      manifest.json        the commit point (see :class:`Manifest`); replaced atomically
      docs.sqlite          the document store (source of truth, see store.py)
      segments/seg-000042/ immutable segments (see segments/segment.py)
      deletes/             per-segment deletion bitmaps, one file per segment and commit
      templates/           trained, empty FAISS indexes (IVF/PQ) cloned by new segments
      .lock                held by the one writer

A refresh or a merge writes its new files first (temporary name, fsync, rename) and then
the manifest (written to ``manifest.json.tmp`` and renamed over the old one): a crash at any
moment leaves the previous commit intact and readable. Files the manifest no longer names
are removed once no open snapshot of this process uses them.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from pydantic import BaseModel, Field

from semsearch.errors import IndexIncompatible, IndexNotFound

#: 3: a segment is one array container plus segment.json (2: a file per array)
FORMAT_VERSION = 3
#: older formats this version opens for writing and upgrades (derived data is rebuilt from
#: the document store, which every format shares)
UPGRADABLE = (1, 2)
MANIFEST = "manifest.json"


class ChannelSpec(BaseModel):
    """A vector channel: which backend stores it, its dimension and what feeds it."""

    backend: str = "faiss"
    dim: int
    metric: str = "inner_product"
    #: the encoder that produces the vectors (recorded so a mismatch is caught on open)
    encoder: str
    settings: dict[str, Any] = Field(default_factory=dict)
    #: how long documents were split into passages (``encoders.passages.PassagePlan``:
    #: window, overlap, max_passages); None: one vector per document
    passages: dict[str, Any] | None = None


class SegmentRef(BaseModel):
    """A live segment of a commit: its folder name, size and current deletion file."""

    name: str
    n_docs: int
    deletes: str | None = None
    n_deleted: int = 0

    @property
    def live(self) -> int:
        return self.n_docs - self.n_deleted


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    #: commit counter: +1 for every refresh or merge that changed the index
    generation: int = 0
    synced_seq: int = 0
    segments: list[SegmentRef] = Field(default_factory=list)
    next_segment: int = 1
    #: channel -> {"file": ..., "trained_on": n} for FAISS factories that need training
    templates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    lexical_backend: str = "embedded"
    lexical_settings: dict[str, Any] = Field(default_factory=dict)
    channels: dict[str, ChannelSpec] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    build: dict[str, Any] = Field(default_factory=dict)
    #: search defaults chosen for this corpus by ``semsearch adapt`` (semsearch/adapt/): a
    #: ``fusion`` / ``rerank`` section (settings field -> value) and ``dense_encoder`` (a
    #: fine-tuned model folder, relative to the index). Settings the user sets explicitly and
    #: a request's own options win over them.
    tuned: dict[str, Any] = Field(default_factory=dict)

    def segment_name(self) -> str:
        """Allocate the next segment folder name."""
        name = f"seg-{self.next_segment:06d}"
        self.next_segment += 1
        return name


def read_manifest(path: Path) -> Manifest:
    path = Path(path)
    f = path / MANIFEST
    if not f.exists():
        if not path.exists():
            raise IndexNotFound(f"no index at {path}: the directory does not exist")
        raise IndexNotFound(f"no index at {path}: {MANIFEST} is missing")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise IndexIncompatible(f"{f} is unreadable: {e}") from e
    version = data.get("format_version")
    if version in UPGRADABLE:
        # the derived data of older formats is rebuilt from the document store on the first
        # writable open; its channels, settings and tuned search defaults carry over
        # (next_segment too: the new segments do not reuse the names of the old ones)
        keep = {k: data[k] for k in ("created_at", "lexical_backend", "lexical_settings", "channels",
                                     "versions", "build", "next_segment", "tuned") if k in data}
        return Manifest.model_validate({**keep, "format_version": version})
    if version != FORMAT_VERSION:
        raise IndexIncompatible(
            f"index at {path} has format version {version}; this semsearch reads version "
            f"{FORMAT_VERSION}: rebuild it with `semsearch index`"
        )
    return Manifest.model_validate(data)


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (temp file, fsync, rename, fsync the directory)."""
    path = Path(path)
    tmp = path / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(manifest.model_dump_json(indent=2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path / MANIFEST)
    fsync_dir(path)


def write_atomic(dest: Path, write: Callable[[BinaryIO], object], *, fsync: bool = False) -> None:
    """``write(file)`` into ``dest`` whole or not at all: a temp file beside it, renamed over
    it (fsynced first with ``fsync``), so a reader or an interrupted run never sees half."""
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, dest)


def save_npy(dest: Path, arr: np.ndarray, *, fsync: bool = False) -> None:
    """``arr`` as ``dest`` (.npy, no pickles), written atomically (:func:`write_atomic`)."""
    write_atomic(dest, lambda fh: np.save(fh, arr, allow_pickle=False), fsync=fsync)


def fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    from importlib import metadata

    out = []
    for pkg in ("semsearch", "faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "bm25s", "sentence-transformers",
                "torch", "transformers", "elasticsearch", "open_clip_torch", "numpy"):
        try:
            out.append((pkg, metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(out)


def library_versions() -> dict[str, str]:
    """Versions of the libraries an index's files depend on (read once per process)."""
    return dict(_versions())
