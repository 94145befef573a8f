"""One immutable segment: a group of documents' derived data, written once to its own folder.

::

    seg-000042/
      segment.json        format, n_docs, channels, ordinal -> document id, and the JSON parts
                          of the lexical postings (vocabulary), the metadata index (field
                          types, distinct strings) and the vector channels
      arrays.bin          every array of the segment in one container (segments/container.py):
                          lexical.<field>.* postings (segments/lexical.py), meta.f<i>.* filter
                          columns (segments/meta.py), vectors.<channel>.{rows,present,owners}
                          (segments/vectors.py), vectors.<hash channel>.{codes,present}
      metadata.jsonl      one metadata object per ordinal (read only by merges)
      dense.faiss         per vector channel, the ANN index of a segment large enough to have one

so a one-document refresh writes (and fsyncs) three files. A segment is built in a temporary
folder and renamed into place; the commit point (``manifest.json``) names the segments that
are live and their deletion files. Deletions never touch a segment: they are bitmaps beside it
(``deletes/``), applied at query time and purged when segments merge.
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
from semsearch.indexer.segments.container import ARRAYS, ArrayFile, ArrayWriter
from semsearch.indexer.segments.lexical import LexicalSegment
from semsearch.indexer.segments.meta import MetadataIndex
from semsearch.indexer.segments.vectors import VectorSegment, pack_passages

logger = logging.getLogger(__name__)

#: 2: one array container and one JSON file (format 1: a file per array, ``ids.json``,
#: ``lexical/`` and ``meta/`` folders)
SEGMENT_FORMAT = 2
INFO = "segment.json"
METADATA = "metadata.jsonl"


class Segment:
    """A loaded segment. Its arrays are memory-mapped or in memory; nothing in it changes."""

    def __init__(self, name: str, path: Path, ids: list[str], lexical: LexicalSegment | None,
                 meta: MetadataIndex, vectors: dict[str, VectorSegment], binary: dict[str, np.ndarray],
                 binary_present: dict[str, np.ndarray], arrays: ArrayFile | None = None) -> None:
        self.name = name
        self.path = path
        self.ids = ids
        self.lexical = lexical
        self.meta = meta
        self.vectors = vectors  # float channels
        self.binary = binary  # binary (hash) channels: (n_docs, bytes) uint8 codes, zero rows absent
        self.binary_present = binary_present
        #: the mapped container the arrays are views of (``check()``: their checksums)
        self.arrays = arrays

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
        with open(tmp / METADATA, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(m) + "\n" for m in metas)
        arrays = ArrayWriter()
        info: dict[str, Any] = {
            "format": SEGMENT_FORMAT, "n_docs": len(ids),
            "channels": sorted(c for c in vectors if c not in binary_channels),
            "binary": sorted(c for c in vectors if c in binary_channels),
            "meta": MetadataIndex.build(metas).save(arrays),
            "lexical": None if lexical is None else lexical.save(arrays),
            "vectors": {},
        }
        for ch, (rows, present) in vectors.items():
            if ch in binary_channels:
                arrays.add(f"vectors.{ch}.codes", np.ascontiguousarray(rows, dtype=np.uint8))
                arrays.add(f"vectors.{ch}.present", np.asarray(present, dtype=bool))
            else:
                vs = VectorSegment.build(rows, present, faiss[ch], templates.get(ch), owners.get(ch))
                info["vectors"][ch] = vs.save(arrays, tmp, ch)
        info["ids"] = ids
        arrays.write(tmp / ARRAYS)
        (tmp / INFO).write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
        fsync_tree(tmp)
        final = folder / name
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        return cls.load(final)

    @classmethod
    def load(cls, path: Path) -> Segment:
        path = Path(path)
        info = read_info(path)
        try:
            arrays = ArrayFile.open(path / ARRAYS)
            ids = info["ids"]
            lexical = None if info["lexical"] is None else LexicalSegment.load(arrays, info["lexical"])
            meta = MetadataIndex.load(arrays, info["meta"])
            vectors = {c: VectorSegment.load(arrays, path, c, info["vectors"][c]) for c in info["channels"]}
            binary = {c: np.array(arrays[f"vectors.{c}.codes"]) for c in info["binary"]}
            binary_present = {c: np.array(arrays[f"vectors.{c}.present"]) for c in info["binary"]}
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IndexIncompatible(f"segment {path} is unreadable: {e}") from e
        return cls(path.name, path, ids, lexical, meta, vectors, binary, binary_present, arrays)

    def metadata(self) -> Iterator[dict[str, Any]]:
        with open(self.path / METADATA, encoding="utf-8") as fh:
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


def read_info(path: Path) -> dict[str, Any]:
    """The ``segment.json`` of the segment folder ``path``, checked to be of this format
    (FileNotFoundError when it is missing)."""
    try:
        info = json.loads((Path(path) / INFO).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise IndexIncompatible(f"segment {path} is unreadable: {e}") from e
    fmt = info.get("format") if isinstance(info, dict) else None
    if fmt != SEGMENT_FORMAT:
        raise IndexIncompatible(
            f"segment {path} has format {fmt}; this semsearch reads segment format {SEGMENT_FORMAT} "
            f"(written by an older semsearch?): rebuild the index from its document store with "
            f"`semsearch reindex --index {Path(path).parent.parent}`")
    return info


def read_ids(path: Path) -> list[str]:
    """Ordinal -> document id of the segment folder ``path``."""
    return list(read_info(path)["ids"])


def read_deletes(path: Path, n_docs: int) -> np.ndarray:
    """A deletion file as a bool array (True = deleted)."""
    bits = np.load(path, allow_pickle=False)
    return np.unpackbits(bits, count=n_docs, bitorder="little").astype(bool)


def write_deletes(path: Path, deleted: np.ndarray) -> None:
    save_npy(path, np.packbits(deleted, bitorder="little"), fsync=True)
