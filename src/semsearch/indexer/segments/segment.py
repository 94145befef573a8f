"""One immutable segment: a group of documents' derived data, written once to its own folder.

::

    seg-000042/
      segment.json        n_docs, channels, what it holds
      ids.json            ordinal -> document id
      metadata.jsonl      one metadata object per ordinal (read only by merges)
      meta/               the per-field metadata index (filters; segments/meta.py)
      lexical/            postings of title, text and all (segments/lexical.py)
      dense.npy ...       per vector channel: raw rows, presence, ANN index if large, and
                          row -> ordinal (dense.owners.npy) when documents have passages

A segment is built in a temporary folder and renamed into place; the commit point
(``manifest.json``) names the segments that are live and their deletion files. Deletions never
touch a segment: they are bitmaps beside it (``deletes/``), applied at query time and purged
when segments merge.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.config import FaissSettings
from semsearch.documents import Document
from semsearch.errors import IndexIncompatible
from semsearch.indexer.manifest import fsync_tree, save_npy
from semsearch.indexer.segments.lexical import LexicalSegment
from semsearch.indexer.segments.meta import MetadataIndex
from semsearch.indexer.segments.vectors import VectorSegment, pack_passages

logger = logging.getLogger(__name__)

SEGMENT_FORMAT = 1


class Segment:
    """A loaded segment. Its arrays are memory-mapped or in memory; nothing in it changes."""

    def __init__(self, name: str, path: Path, ids: list[str], lexical: LexicalSegment | None,
                 meta: MetadataIndex, vectors: dict[str, VectorSegment], binary: dict[str, np.ndarray]) -> None:
        self.name = name
        self.path = path
        self.ids = ids
        self.lexical = lexical
        self.meta = meta
        self.vectors = vectors  # float channels
        self.binary = binary  # binary (hash) channels: (n_docs, bytes) uint8 codes, zero rows absent
        self.binary_present = {c: np.load(path / f"{c}.present.npy") for c in binary} if binary else {}

    @property
    def n_docs(self) -> int:
        return len(self.ids)

    # -- build --------------------------------------------------------------------------
    @classmethod
    def write(cls, folder: Path, name: str, docs: Sequence[Document],
              tokens: tuple[list[list[str]], list[list[str]]] | None,
              vectors: dict[str, tuple[np.ndarray, np.ndarray]], binary_channels: set[str],
              faiss: dict[str, FaissSettings], templates: dict[str, Any],
              owners: dict[str, np.ndarray] | None = None) -> Segment:
        """Write a new segment ``folder/name`` from ``docs`` (ordinal = position) and load it.
        ``tokens``: (title tokens, text tokens) per doc, or None without an embedded lexical
        index; ``vectors``: channel -> (rows, present mask); ``owners``: channel -> the
        ordinal of each row, for channels whose documents have several passages."""
        return cls._write(folder, name, [d.id for d in docs], (d.metadata for d in docs),
                          None if tokens is None else LexicalSegment.build(*tokens),
                          vectors, binary_channels, faiss, templates, owners or {})

    @classmethod
    def _write(cls, folder: Path, name: str, ids: list[str], metas: Iterator[dict[str, Any]] | Any,
               lexical: LexicalSegment | None, vectors: dict[str, tuple[np.ndarray, np.ndarray]],
               binary_channels: set[str], faiss: dict[str, FaissSettings],
               templates: dict[str, Any], owners: dict[str, np.ndarray]) -> Segment:
        tmp = folder / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        metas = list(metas)
        with open(tmp / "ids.json", "w", encoding="utf-8") as fh:
            json.dump(ids, fh)
        with open(tmp / "metadata.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(m) + "\n" for m in metas)
        MetadataIndex.build(metas).save(tmp / "meta")
        if lexical is not None:
            lexical.save(tmp / "lexical")
        for ch, (rows, present) in vectors.items():
            if ch in binary_channels:
                np.save(tmp / f"{ch}.codes.npy", np.ascontiguousarray(rows, dtype=np.uint8), allow_pickle=False)
                np.save(tmp / f"{ch}.present.npy", np.asarray(present, dtype=bool), allow_pickle=False)
            else:
                VectorSegment.build(rows, present, faiss[ch], templates.get(ch), owners.get(ch)).save(tmp, ch)
        info = {"format": SEGMENT_FORMAT, "n_docs": len(ids), "lexical": lexical is not None,
                "channels": sorted(c for c in vectors if c not in binary_channels),
                "binary": sorted(c for c in vectors if c in binary_channels)}
        (tmp / "segment.json").write_text(json.dumps(info), encoding="utf-8")
        fsync_tree(tmp)
        final = folder / name
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        return cls.load(final)

    @classmethod
    def load(cls, path: Path) -> Segment:
        path = Path(path)
        try:
            info = json.loads((path / "segment.json").read_text(encoding="utf-8"))
            ids = json.loads((path / "ids.json").read_text(encoding="utf-8"))
            lexical = LexicalSegment.load(path / "lexical") if info["lexical"] else None
            meta = MetadataIndex.load(path / "meta")
            vectors = {c: VectorSegment.load(path, c) for c in info["channels"]}
            binary = {c: np.load(path / f"{c}.codes.npy", allow_pickle=False) for c in info["binary"]}
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError) as e:
            raise IndexIncompatible(f"segment {path} is unreadable: {e}") from e
        if info.get("format") != SEGMENT_FORMAT:
            raise IndexIncompatible(f"segment {path} has format {info.get('format')}, expected {SEGMENT_FORMAT}")
        return cls(path.name, path, ids, lexical, meta, vectors, binary)

    def metadata(self) -> Iterator[dict[str, Any]]:
        with open(self.path / "metadata.jsonl", encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    # -- merge --------------------------------------------------------------------------
    @classmethod
    def merge(cls, folder: Path, name: str, segments: Sequence[Segment], keep: Sequence[np.ndarray],
              faiss: dict[str, FaissSettings], templates: dict[str, Any],
              lexical: LexicalSegment | None | bool = True) -> Segment:
        """A new segment of the rows ``keep[i]`` (sorted ordinals) of each segment, in order.
        ``lexical``: True = merge the segments' postings; a LexicalSegment = use it (a
        re-analysed reindex); False/None = no lexical postings."""
        ids: list[str] = []
        metas: list[dict[str, Any]] = []
        for seg, rows in zip(segments, keep, strict=True):
            ids.extend(seg.ids[r] for r in rows.tolist())
            wanted = set(rows.tolist())
            metas.extend(m for o, m in enumerate(seg.metadata()) if o in wanted)
        if lexical is True:
            have = [s.lexical is not None for s in segments]
            lexical = LexicalSegment.merge([s.lexical for s in segments], keep) if all(have) else None
        vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        owners: dict[str, np.ndarray] = {}
        binary: set[str] = set()
        for ch in sorted({c for s in segments for c in list(s.vectors) + list(s.binary)}):
            if any(ch in s.vectors and s.vectors[ch].owners is not None for s in segments):
                # passages: each kept document's rows, whatever layout its segment has
                per_doc: list[np.ndarray | None] = []
                for seg, rows in zip(segments, keep, strict=True):
                    per_doc.extend(seg.vectors[ch].take(rows) if ch in seg.vectors else [None] * len(rows))
                rows_all, present_all, own = pack_passages(per_doc, cls._shape_of(segments, ch)[0])
                vectors[ch] = (rows_all, present_all)
                if own is not None:
                    owners[ch] = own
                continue
            rows_, present_ = [], []
            for seg, rows in zip(segments, keep, strict=True):
                if ch in seg.vectors:
                    vs = seg.vectors[ch]
                    rows_.append(np.asarray(vs.vectors[rows]))
                    present_.append(vs.present[rows])
                elif ch in seg.binary:
                    binary.add(ch)
                    rows_.append(seg.binary[ch][rows])
                    present_.append(seg.binary_present[ch][rows])
                else:
                    dim, dtype = cls._shape_of(segments, ch)
                    rows_.append(np.zeros((len(rows), dim), dtype))
                    present_.append(np.zeros(len(rows), bool))
            vectors[ch] = (np.concatenate(rows_), np.concatenate(present_))
        return cls._write(folder, name, ids, metas, lexical or None, vectors, binary, faiss, templates, owners)

    @staticmethod
    def _shape_of(segments: Sequence[Segment], ch: str) -> tuple[int, Any]:
        for s in segments:
            if ch in s.vectors:
                return s.vectors[ch].dim, np.float32
            if ch in s.binary:
                return s.binary[ch].shape[1], np.uint8
        raise KeyError(ch)  # pragma: no cover - ch comes from the segments


def read_deletes(path: Path, n_docs: int) -> np.ndarray:
    """A deletion file as a bool array (True = deleted)."""
    bits = np.load(path, allow_pickle=False)
    return np.unpackbits(bits, count=n_docs, bitorder="little").astype(bool)


def write_deletes(path: Path, deleted: np.ndarray) -> None:
    save_npy(path, np.packbits(deleted, bitorder="little"), fsync=True)
