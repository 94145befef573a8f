"""Conformance suite every VectorIndex backend's tests inherit (fixtures ``make(dim)`` and
``reopen(index)``)."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.encoders.base import l2_normalize
from semsearch.errors import BadInput
from semsearch.indexer.vector.base import VectorIndex

DIM = 16


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).normal(size=(n, DIM)))


class VectorIndexSuite:
    N = 300

    @pytest.fixture
    def data(self):
        return [f"doc{i}" for i in range(self.N)], vectors(self.N)

    @pytest.fixture
    def index(self, make, data) -> VectorIndex:
        idx = make(DIM)
        ids, vecs = data
        idx.upsert(ids, vecs)
        return idx

    def test_is_a_vector_index(self, index):
        assert isinstance(index, VectorIndex)
        assert index.dim == DIM and index.count() == self.N

    def test_each_vector_finds_itself_first(self, index, data):
        ids, vecs = data
        res = index.search(vecs[:20], 3)
        assert [r[0][0] for r in res] == ids[:20]
        for r in res:
            assert r[0][1] == pytest.approx(1.0, abs=1e-4)
            assert [s for _, s in r] == sorted((s for _, s in r), reverse=True)

    def test_upsert_replaces_the_vector(self, index, data):
        ids, vecs = data
        index.upsert(["doc5"], vecs[7:8])
        assert index.count() == self.N
        top2 = [d for d, _ in index.search(vecs[7:8], 2)[0]]
        assert set(top2) == {"doc5", "doc7"}
        assert "doc5" not in [d for d, _ in index.search(vecs[5:6], 5)[0]][:1]

    def test_delete(self, index, data):
        ids, vecs = data
        assert index.delete(["doc3", "nope"]) == 1
        assert index.count() == self.N - 1
        assert "doc3" not in index
        assert all(d != "doc3" for d, _ in index.search(vecs[3:4], 10)[0])

    def test_many_deletes_then_search(self, index, data):
        ids, vecs = data
        index.delete(ids[: self.N // 2])
        res = index.search(vecs[self.N // 2 : self.N // 2 + 5], 5)
        assert [r[0][0] for r in res] == ids[self.N // 2 : self.N // 2 + 5]
        assert all(d not in set(ids[: self.N // 2]) for r in res for d, _ in r)

    def test_allowed_restricts_results(self, index, data):
        ids, vecs = data
        allowed = {"doc10", "doc20", "doc30"}
        res = index.search(vecs[10:11], 5, allowed=allowed)[0]
        assert [d for d, _ in res][0] == "doc10"
        assert {d for d, _ in res} == allowed

    def test_persist_and_reopen(self, index, data, reopen):
        ids, vecs = data
        index.delete(["doc1"])
        before = index.search(vecs[:5], 4)
        again = reopen(index)
        assert again.count() == self.N - 1
        assert again.search(vecs[:5], 4) == before
        again.upsert(["new"], vecs[1:2])
        assert again.search(vecs[1:2], 1)[0][0][0] == "new"

    def test_bad_vectors_are_rejected(self, index):
        with pytest.raises(BadInput, match="shape"):
            index.upsert(["x"], np.zeros((1, DIM + 1), np.float32))
        with pytest.raises(BadInput, match="2 ids but 1 vectors"):
            index.upsert(["x", "y"], vectors(1))
        with pytest.raises(BadInput, match="NaN"):
            index.upsert(["x"], np.full((1, DIM), np.nan, np.float32))
        with pytest.raises(BadInput, match="k must be"):
            index.search(vectors(1), 0)
