"""The index directory format.

::

    INDEX_DIR/
      manifest.json        what the index is (see :class:`Manifest`); replaced atomically
      docs.sqlite          the document store (source of truth, see store.py)
      gen-000007/          the derived indexes of the current generation
        lexical/           the lexical backend's files
        dense/             one folder per vector channel (vectors.faiss, ids.json)
      .lock                held by the one writer

A new generation is written to ``.tmp-gen-*``, renamed to ``gen-*``, and only then does the
manifest (written to ``manifest.json.tmp`` and renamed over the old one) point at it: a crash
at any moment leaves the previous generation intact and readable.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from semsearch.errors import IndexIncompatible, IndexNotFound

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ChannelSpec(BaseModel):
    """A vector channel: which backend stores it, its dimension and what feeds it."""

    backend: str = "faiss"
    dim: int
    metric: str = "inner_product"
    #: the encoder that produces the vectors (recorded so a mismatch is caught on open)
    encoder: str
    settings: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    generation: int = 0
    synced_seq: int = 0
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

    @property
    def generation_dir(self) -> str:
        return f"gen-{self.generation:06d}"


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


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("semsearch", "faiss-cpu", "faiss-gpu-cu12", "bm25s", "sentence-transformers",
                "torch", "transformers", "elasticsearch", "open_clip_torch", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out
