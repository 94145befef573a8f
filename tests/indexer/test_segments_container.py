"""The segments' array container: named arrays in one file, read back as zero-copy
memory-mapped views; a short or damaged file is refused naming the array; and a segment of
one document is three files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from semsearch.config import Settings
from semsearch.documents import Document
from semsearch.errors import BadInput, IndexIncompatible
from semsearch.indexer.index import Index
from semsearch.indexer.segments.container import ALIGN, ArrayFile, ArrayWriter, is_mapped
from tests.conftest import HashingEncoder

rng = np.random.default_rng(0)
ARRAYS = {
    "bool": rng.random(13) < 0.5,
    "int8": rng.integers(-100, 100, 7, dtype=np.int8),
    "uint16.2d": rng.integers(0, 60000, (5, 3), dtype=np.uint16),
    "int32": np.arange(1000, dtype=np.int32),
    "int64.empty": np.zeros(0, dtype=np.int64),
    "float16": rng.random(9).astype(np.float16),
    "float32.2d.empty": np.zeros((0, 384), dtype=np.float32),
    "float32.3d": rng.random((2, 3, 4)).astype(np.float32),
    "float64.0d": np.array(2.5),
    "int64.0d": np.array(-7, dtype=np.int64),
    "complex64": (rng.random(4) + 1j * rng.random(4)).astype(np.complex64),
    "big-endian": np.arange(6, dtype=">i4"),
    "unicode": np.array(["a", "zeppelin", "ß"]),
    "bytes": np.array([b"x", b"yz"]),
    "datetime": np.array(["2024-01-02", "1999-12-31"], dtype="datetime64[ms]"),
    "non-contiguous": np.arange(40, dtype=np.float64).reshape(5, 8)[:, ::3],
    "fortran": np.asfortranarray(rng.random((4, 6))),
}


def write(path, arrays) -> ArrayFile:
    w = ArrayWriter()
    for name, a in arrays.items():
        w.add(name, a)
    w.write(path)
    return ArrayFile.open(path)


def test_round_trip_of_dtypes_and_shapes_at_aligned_offsets(tmp_path):
    f = write(tmp_path / "a.bin", ARRAYS)
    assert list(f) == list(ARRAYS) and len(f) == len(ARRAYS)
    raw = (tmp_path / "a.bin").read_bytes()
    for name, want in ARRAYS.items():
        got = f[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want)
        offset, nbytes = f.span(name)
        assert offset % ALIGN == 0 and nbytes == want.nbytes
        assert got.ctypes.data % ALIGN == 0  # the mapping starts on a page
        assert raw[offset : offset + nbytes] == np.ascontiguousarray(want).tobytes()
    assert len(raw) == max(o + n for o, n in map(f.span, f))  # no trailing padding
    assert f.check() == []
    assert f.get("nothing") is None and "int32" in f and "nothing" not in f


def test_views_are_read_only_memory_maps_not_copies(tmp_path):
    big = np.arange(4_000_000, dtype=np.float32).reshape(-1, 400)  # 16 MB
    f = write(tmp_path / "big.bin", {"small": np.arange(3), "big": big})
    a, b = f["big"], f["big"]
    # views of the one mapping, as plain arrays (no memmap subclass cost per slice)
    assert is_mapped(a) and type(a) is np.ndarray and np.shares_memory(a, b)
    assert not a.flags.writeable and a.flags.c_contiguous
    with pytest.raises(ValueError, match="read-only"):
        a[0, 0] = 1
    np.testing.assert_array_equal(a, big)
    # a copy is the caller's choice
    assert not is_mapped(np.array(f["small"]))


def test_an_empty_container(tmp_path):
    ArrayWriter().write(tmp_path / "e.bin")
    f = ArrayFile.open(tmp_path / "e.bin")
    assert list(f) == [] and f.check() == []


def test_unknown_names_raise_naming_the_file_and_the_array(tmp_path):
    f = write(tmp_path / "a.bin", {"x": np.arange(3)})
    with pytest.raises(IndexIncompatible, match=r"a\.bin holds no array 'y'"):
        f["y"]
    with pytest.raises(IndexIncompatible, match="holds no array 'y'"):
        f.span("y")
    with pytest.raises(FileNotFoundError):
        ArrayFile.open(tmp_path / "missing.bin")


def test_the_writer_refuses_objects_structured_dtypes_and_repeated_names():
    w = ArrayWriter()
    w.add("x", np.arange(3))
    with pytest.raises(BadInput, match="already holds an array named 'x'"):
        w.add("x", np.arange(3))
    with pytest.raises(BadInput, match="dtype object"):
        w.add("o", np.array([{"a": 1}], dtype=object))
    with pytest.raises(BadInput, match="no objects"):
        w.add("s", np.zeros(2, dtype=[("a", "i4"), ("b", "f4")]))
    with pytest.raises(BadInput, match="non-empty name"):
        w.add("", np.arange(2))
    assert w.names() == ["x"] and "x" in w


@pytest.mark.parametrize("cut", ["prefix", "table", "array", "last byte"])
def test_a_truncated_file_is_refused_naming_the_array(tmp_path, cut):
    p = tmp_path / "a.bin"
    f = write(p, {"first": np.arange(100, dtype=np.int64), "second": np.ones((10, 10), np.float32)})
    raw = p.read_bytes()
    end = {"prefix": 5, "table": 30, "array": f.span("first")[0] + 17, "last byte": len(raw) - 1}[cut]
    p.write_bytes(raw[:end])
    msg = {"prefix": "a.bin is not a semsearch array container",
           "table": "a.bin: the table of arrays is damaged or truncated",
           "array": r"a.bin is truncated: array 'first' needs bytes \d+ to \d+, the file has \d+",
           "last byte": r"a.bin is truncated: array 'second'"}[cut]
    with pytest.raises(IndexIncompatible, match=msg):
        ArrayFile.open(p)


def test_extra_bytes_a_damaged_table_and_changed_bytes_are_found(tmp_path):
    p = tmp_path / "a.bin"
    f = write(p, {"a": np.arange(10), "b": np.arange(5.0)})
    raw = p.read_bytes()
    p.write_bytes(raw + b"\0")
    with pytest.raises(IndexIncompatible, match=rf"holds {len(raw) + 1} bytes, its table says {len(raw)} \(after array 'b'\)"):
        ArrayFile.open(p)
    p.write_bytes(raw.replace(b'"nbytes":80', b'"nbytes":88'))
    with pytest.raises(IndexIncompatible, match="array 'a' has an inconsistent table entry"):
        ArrayFile.open(p)
    p.write_bytes(raw.replace(b'"format":1', b'"format":7'))
    with pytest.raises(IndexIncompatible, match="array container of format 7"):
        ArrayFile.open(p)
    changed = bytearray(raw)
    changed[f.span("b")[0] + 3] ^= 1
    p.write_bytes(bytes(changed))
    assert ArrayFile.open(p).check() == ["b"]  # opening checks sizes; check() reads the bytes


def test_a_one_document_segment_is_three_files(tmp_path, monkeypatch):
    s = Settings()
    s.no_progress = True
    enc = HashingEncoder()
    with Index.create(tmp_path / "ix", s) as idx:
        idx.ensure_channel("dense", dim=enc.dim, encoder=enc.name)
        docs = [Document(id="a", title="airship", text="zeppelin hangar", metadata={"year": 1900, "tag": "x"})]
        idx.write(docs, {"dense": enc.encode(["airship zeppelin hangar"])})
        synced: list[str] = []
        fsync = os.fsync

        def counting(fd: int) -> None:
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))  # (Linux: fcntl locks, too)
            fsync(fd)

        monkeypatch.setattr(os, "fsync", counting)
        idx.sync()
        monkeypatch.undo()
        (seg,) = idx.snapshot().segments
        assert {p.name for p in seg.path.iterdir()} == {"segment.json", "arrays.bin", "metadata.jsonl"}
        assert {n.split(".")[0] for n in seg.arrays} == {"lexical", "meta", "vectors"}
        # the segment's three files and its folder (then the segments folder, the manifest and
        # the index folder)
        in_segment = [p for p in synced if "/segments/" in p]
        assert len(in_segment) == 4, synced
        np.testing.assert_array_equal(seg.vectors["dense"].vectors, enc.encode(["airship zeppelin hangar"]))
        assert is_mapped(seg.vectors["dense"].vectors)
        assert idx.snapshot().lexical.search("zeppelin", 1)[0][0] == "a"
