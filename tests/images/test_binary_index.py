"""The faiss-binary vector backend: exact Hamming k-NN/radius against a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.errors import BadInput
from semsearch.images.hashing import hamming
from semsearch.indexer.vector.faiss_binary import FaissBinaryIndex


@pytest.fixture
def codes():
    rng = np.random.default_rng(7)
    c = rng.integers(0, 256, (3000, 8), dtype=np.uint8)
    c[1] = c[0] ^ np.array([1, 0, 0, 0, 0, 0, 0, 3], np.uint8)  # 3 bits from row 0
    return c


def reference_range(codes, q, r):
    d = hamming(codes, q[None, :])
    return {(str(i), int(d[i])) for i in np.flatnonzero(d <= r)}


@pytest.mark.parametrize("kind", ["flat", "multihash"])
def test_range_search_is_exact(codes, kind):
    b = FaissBinaryIndex(8, kind=kind)
    b.upsert([str(i) for i in range(len(codes))], codes)
    for r in (0, 3, 8, 12, 16):
        for q in codes[:5]:
            got = b.range_search(q, r)[0]
            assert set(got) == reference_range(codes, q, r)
            assert [d for _, d in got] == sorted(d for _, d in got)


@pytest.mark.parametrize("kind", ["flat", "multihash"])
def test_knn_is_exact(codes, kind):
    b = FaissBinaryIndex(8, kind=kind)
    b.upsert([str(i) for i in range(len(codes))], codes)
    hits = b.search(codes[:3], 5)
    for q, row in zip(codes[:3], hits, strict=False):
        d = hamming(codes, q[None, :])
        assert [s for _, s in row] == sorted(d)[:5]
    assert hits[0][:2] == [("0", 0.0), ("1", 3.0)]


def test_upsert_delete_persist(tmp_path, codes):
    b = FaissBinaryIndex(8)
    b.upsert(["a", "b", "c"], codes[:3])
    b.upsert(["a"], codes[1:2])  # replace a's hash
    assert b.count() == 3 and b.search(codes[1:2], 2)[0][0][1] == 0.0
    assert b.delete(["b", "zz"]) == 1 and "b" not in b
    b.save(tmp_path / "bin")
    c = FaissBinaryIndex.open(tmp_path / "bin")
    assert c.count() == 2 and set(c.ids()) == {"a", "c"}
    assert c.search(codes[1:2], 1)[0] == [("a", 0.0)]
    assert c.search(codes[1:2], 5, allowed={"c"})[0][0][0] == "c"


def test_pairs_within_matches_brute_force(codes):
    codes = codes[:800]  # the reference below is a dense N x N matrix
    b = FaissBinaryIndex(8)
    b.upsert([str(i) for i in range(len(codes))], codes)
    got = {tuple(p) for p in b.pairs_within(14).tolist()}
    d = hamming(codes[:, None, :], codes[None, :, :])
    ii, jj = np.nonzero(np.triu(d <= 14, 1))
    assert got == {(int(i), int(j), int(d[i, j])) for i, j in zip(ii, jj, strict=False)}
    assert (0, 1, 3) in got


def test_bad_vectors_are_rejected():
    b = FaissBinaryIndex(8)
    with pytest.raises(BadInput, match="uint8"):
        b.upsert(["a"], np.zeros((1, 8), np.float32))
    with pytest.raises(BadInput, match=r"shape \(n, 8\)"):
        b.upsert(["a"], np.zeros((1, 4), np.uint8))
    with pytest.raises(BadInput, match="max distance"):
        b.range_search(np.zeros((1, 8), np.uint8), 65)


@pytest.mark.gpu
def test_gpu_binary_flat_matches_cpu(codes):
    from semsearch.indexer.segments.vectors import gpu_count

    if gpu_count() == 0:
        pytest.skip("no GPU visible to faiss (faiss-cpu build or no CUDA device)")
    cpu, gpu = FaissBinaryIndex(8, gpu="never"), FaissBinaryIndex(8, gpu="auto")
    for b in (cpu, gpu):
        b.upsert([str(i) for i in range(len(codes))], codes)
    assert gpu.info()["gpu"] is True
    assert [[d for _, d in r] for r in gpu.search(codes[:20], 5)] == [[d for _, d in r] for r in cpu.search(codes[:20], 5)]
