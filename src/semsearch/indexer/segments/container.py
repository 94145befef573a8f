"""One file of named numpy arrays per segment (``arrays.bin``), in the manner of Lucene's
compound files: a refresh of one document writes, and fsyncs, a handful of files instead of
one per array.

Layout::

    0    magic b"SEMSARR1"
    8    uint64, little-endian: length L of the table
    16   the table, UTF-8 JSON: {"format": 1, "size": <file bytes>,
             "arrays": [{"name", "dtype", "shape", "offset", "nbytes", "crc32"}, ...]}
    ...  zero padding, then each array's bytes (C order) at an offset that is a multiple of
         64, zero padding between them

The table is a header of the file itself rather than part of ``segment.json``: the table and
the bytes it describes are written together and cannot come from different builds, the file
can be opened and checked on its own (``semsearch verify``, tests, a one-off look), and being
at the front it survives a truncation, so a short file is reported with the first array it
cut off. The writer knows every array's size before it writes (the arrays of a segment are
built in memory first), so the header needs no second pass over the data.

:class:`ArrayFile` maps the whole file once (one read-only ``np.memmap``) and hands out views
by name: zero-copy, memory-mapped, 64-byte aligned (SIMD loads, FAISS). Callers copy what they
want in RAM (``np.array(view)``). Only plain dtypes are stored (no objects, no pickles).
``crc32`` is per array; :meth:`ArrayFile.check` reads every byte to compare it (``semsearch
verify`` does; opening a segment only checks the table against the file size).

FAISS indexes stay in their own ``<channel>.faiss`` files, beside the container: measured on
30k x 384 float vectors (IDMap over HNSW32 / IVF256,Flat; 54 / 47 MB), ``faiss.serialize_index``
plus a write took 0.23 / 0.17 s against ``faiss.write_index``'s 0.04 / 0.02 s, and
``faiss.deserialize_index`` from a mapped view loaded in 100 / 77 ms with a peak of 3x the index
in memory (it copies the bytes into a ``std::vector`` first) against ``read_index``'s 47 / 36 ms
and 1x; a ``PyCallbackIOReader`` over the mapping matched ``read_index``'s time but left the
index's bytes resident in the mapping for the segment's life (2x). The sizes are the same. An ANN
index exists only in segments of ``vector.faiss.exact_below`` (20,000) vectors or more, where one
more file costs nothing next to writing it; a small segment never has one.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.errors import BadInput, IndexIncompatible

ARRAYS = "arrays.bin"
MAGIC = b"SEMSARR1"
FORMAT = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sQ")
#: dtype kinds stored: bool, signed/unsigned int, float, complex, bytes, str, dates and times
_KINDS = set("biufcSUmM")
_CRC_CHUNK = 1 << 24


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _bytes_of(arr: np.ndarray) -> memoryview:
    """The C-contiguous array's bytes, without a copy (0-d and empty arrays too)."""
    return memoryview(arr.reshape(-1).view(np.uint8))


def _crc32(buf: memoryview) -> int:
    crc = 0
    for s in range(0, len(buf), _CRC_CHUNK):
        crc = zlib.crc32(buf[s : s + _CRC_CHUNK], crc)
    return crc


class ArrayWriter:
    """Collects named arrays (held by reference, copied only to make them C-contiguous) and
    writes them as one file with :meth:`write`."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def add(self, name: str, arr: Any) -> None:
        if not isinstance(name, str) or not name:
            raise BadInput(f"an array needs a non-empty name, got {name!r}")
        if name in self._arrays:
            raise BadInput(f"the container already holds an array named {name!r}")
        a = np.asarray(arr)
        if not a.flags.c_contiguous:  # (not np.ascontiguousarray: it makes 0-d arrays 1-d)
            a = a.copy(order="C")
        if a.dtype.kind not in _KINDS or a.dtype.fields is not None:
            raise BadInput(f"array {name!r} has dtype {a.dtype}: only plain numeric, bool, "
                           "byte-string and str arrays are stored (no objects)")
        self._arrays[name] = a

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    def names(self) -> list[str]:
        return list(self._arrays)

    def _table(self, start: int) -> list[dict[str, Any]]:
        entries, offset = [], start
        for name, a in self._arrays.items():
            entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                            "offset": offset, "nbytes": int(a.nbytes)})
            offset = _align(offset + a.nbytes)
        return entries

    def write(self, path: Path) -> None:
        """Write ``path`` (a new file in a folder that the caller fsyncs and renames)."""
        crcs = [_crc32(_bytes_of(a)) for a in self._arrays.values()]
        # the table's length depends on the offsets it records and they on its length:
        # grow the data's start until the header fits before it
        start = _align(_PREFIX.size + 2)
        while True:
            entries = self._table(start)
            for e, crc in zip(entries, crcs):
                e["crc32"] = crc
            # the file ends with the last array (not its padding), or with the header's
            size = entries[-1]["offset"] + entries[-1]["nbytes"] if entries else start
            table = json.dumps({"format": FORMAT, "size": size, "arrays": entries},
                               separators=(",", ":")).encode()
            if _PREFIX.size + len(table) <= start:
                break
            start = _align(_PREFIX.size + len(table))
        with open(path, "wb") as fh:
            fh.write(_PREFIX.pack(MAGIC, len(table)))
            fh.write(table)
            for e, a in zip(entries, self._arrays.values()):
                fh.write(b"\0" * (e["offset"] - fh.tell()))
                fh.write(_bytes_of(a))
            if fh.tell() < size:  # no arrays at all: the header's padding
                fh.write(b"\0" * (size - fh.tell()))


class ArrayFile:
    """A written container, mapped once; ``arrays[name]`` is a read-only memory-mapped view."""

    def __init__(self, path: Path, table: dict[str, dict[str, Any]], mm: np.memmap) -> None:
        self.path = path
        self._table = table
        self._mm = mm

    @classmethod
    def open(cls, path: Path) -> ArrayFile:
        """Open ``path``; raises :class:`IndexIncompatible` (naming the file, and the array
        when one is cut off) unless the table is whole and agrees with the file's size.
        FileNotFoundError when there is no such file."""
        path = Path(path)
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(_PREFIX.size)
            if len(head) < _PREFIX.size or head[:8] != MAGIC:
                raise IndexIncompatible(f"{path} is not a semsearch array container (truncated or "
                                        "damaged header)")
            _, n = _PREFIX.unpack(head)
            raw = fh.read(n) if n <= size else b""
        try:
            info = json.loads(raw)
            entries = info["arrays"]
            want = int(info["size"])
        except (ValueError, KeyError, TypeError) as e:
            raise IndexIncompatible(f"{path}: the table of arrays is damaged or truncated: {e}") from e
        if info.get("format") != FORMAT:
            raise IndexIncompatible(f"{path} is an array container of format {info.get('format')}; "
                                    f"this semsearch reads format {FORMAT}")
        table: dict[str, dict[str, Any]] = {}
        header_end = _PREFIX.size + n
        for e in entries:
            name = e.get("name")
            try:
                dtype = np.dtype(e["dtype"])
                shape = tuple(int(s) for s in e["shape"])
                offset, nbytes = int(e["offset"]), int(e["nbytes"])
            except (KeyError, TypeError, ValueError) as err:
                raise IndexIncompatible(f"{path}: array {name!r} has a damaged table entry: {err}") from err
            if (nbytes != math.prod(shape) * dtype.itemsize or offset % ALIGN or offset < header_end
                    or dtype.kind not in _KINDS):
                raise IndexIncompatible(f"{path}: array {name!r} has an inconsistent table entry "
                                        f"({e['dtype']} {list(shape)} at {offset}, {nbytes} bytes)")
            if offset + nbytes > size:
                raise IndexIncompatible(f"{path} is truncated: array {name!r} needs bytes {offset} to "
                                        f"{offset + nbytes}, the file has {size}")
            table[name] = {"dtype": dtype, "shape": shape, "offset": offset, "nbytes": nbytes,
                           "crc32": e.get("crc32")}
        if size != want:
            last = max(table, key=lambda k: table[k]["offset"], default=None)
            raise IndexIncompatible(f"{path} holds {size} bytes, its table says {want} (after array "
                                    f"{last!r}): truncated or damaged")
        return cls(path, table, np.memmap(path, dtype=np.uint8, mode="r"))

    def __contains__(self, name: str) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, name: str) -> np.ndarray:
        """A read-only view of the mapped file, as a plain ``np.ndarray``: an ``np.memmap``
        view would run ``memmap.__array_finalize__`` (Python) on every slice a query takes
        of it (5% of a lexical request's CPU). The view keeps the mapping alive."""
        offset, nbytes = self.span(name)
        e = self._table[name]
        raw = self._mm[offset : offset + nbytes].view(type=np.ndarray)
        return raw.view(e["dtype"]).reshape(e["shape"])

    def span(self, name: str) -> tuple[int, int]:
        """``(offset, nbytes)`` of an array in the file."""
        e = self._table.get(name)
        if e is None:
            raise IndexIncompatible(f"{self.path} holds no array {name!r}")
        return e["offset"], e["nbytes"]

    def get(self, name: str) -> np.ndarray | None:
        return self[name] if name in self._table else None

    def check(self) -> list[str]:
        """The arrays whose bytes differ from their checksum (reads the whole file)."""
        bad = []
        for name, e in self._table.items():
            if e["crc32"] is not None:
                raw = self._mm[e["offset"] : e["offset"] + e["nbytes"]]
                if _crc32(memoryview(raw)) != e["crc32"]:
                    bad.append(name)
        return bad


def is_mapped(arr: np.ndarray) -> bool:
    """Whether ``arr`` is a view of a memory-mapped file (not a copy in memory)."""
    base: Any = arr
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return True
        base = getattr(base, "base", None)
    return False
