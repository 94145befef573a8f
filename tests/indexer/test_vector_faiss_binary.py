"""The faiss-binary backend under the shared VectorIndex conformance suite, with packed
64-bit codes instead of float vectors and Hamming distance (lower = closer) as the score."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.errors import BadInput
from semsearch.indexer.vector.base import VectorIndex
from semsearch.indexer.vector.faiss_binary import FaissBinaryIndex
from tests.conformance.vector_suite import VectorIndexSuite

BYTES = 8


def codes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, BYTES), dtype=np.uint8)


class BinarySuite(VectorIndexSuite):
    kind = "flat"

    @pytest.fixture
    def data(self):
        return [f"doc{i}" for i in range(self.N)], codes(self.N)

    @pytest.fixture
    def index(self, make, data) -> VectorIndex:
        idx = make(BYTES)
        idx.upsert(*data)
        return idx

    @pytest.fixture
    def make(self):
        return lambda dim: FaissBinaryIndex(dim, kind=self.kind, gpu="never")

    @pytest.fixture
    def reopen(self, tmp_path):
        def _reopen(idx):
            idx.save(tmp_path / "bin")
            return FaissBinaryIndex.open(tmp_path / "bin", gpu="never")

        return _reopen

    # -- metric-specific versions of the suite's float tests -----------------------------
    def test_is_a_vector_index(self, index):
        assert isinstance(index, VectorIndex)
        assert index.dim == BYTES and index.count() == self.N

    def test_each_vector_finds_itself_first(self, index, data):
        ids, vecs = data
        res = index.search(vecs[:20], 3)
        assert [r[0][0] for r in res] == ids[:20]
        for r in res:
            assert r[0][1] == 0.0
            assert [s for _, s in r] == sorted(s for _, s in r)  # distances ascend

    def test_bad_vectors_are_rejected(self, index):
        with pytest.raises(BadInput, match="shape"):
            index.upsert(["x"], np.zeros((1, BYTES + 1), np.uint8))
        with pytest.raises(BadInput, match="2 ids but 1 vectors"):
            index.upsert(["x", "y"], codes(1))
        with pytest.raises(BadInput, match="uint8"):
            index.upsert(["x"], np.zeros((1, BYTES), np.float32))
        with pytest.raises(BadInput, match="k must be"):
            index.search(codes(1), 0)


class TestBinaryFlat(BinarySuite):
    kind = "flat"


class TestBinaryMultiHash(BinarySuite):
    kind = "multihash"
