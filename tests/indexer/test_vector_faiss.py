import numpy as np
import pytest

from semsearch.config import FaissSettings
from semsearch.errors import BadInput
from semsearch.indexer.vector.faiss import FaissVectorIndex, gpu_count
from tests.conformance.vector_suite import DIM, VectorIndexSuite, vectors


class FaissSuite(VectorIndexSuite):
    factory = "Flat"
    extra: dict = {}

    @pytest.fixture
    def make(self):
        return lambda dim: FaissVectorIndex(dim, FaissSettings(factory=self.factory, gpu="never", **self.extra))

    @pytest.fixture
    def reopen(self, tmp_path):
        def _reopen(idx):
            idx.save(tmp_path / "vec")
            return FaissVectorIndex.open(tmp_path / "vec", FaissSettings(gpu="never"))

        return _reopen


class TestFlat(FaissSuite):
    factory = "Flat"


class TestHNSW(FaissSuite):
    factory = "HNSW16"
    extra = {"compact_ratio": 0.3}

    def test_hnsw_uses_tombstones_then_compacts(self, index, data):
        ids, vecs = data
        assert not index._can_remove
        index.delete(ids[:10])
        assert index.info()["tombstones"] == 10
        assert index.info()["ntotal"] == self.N
        index.delete(ids[10:100])  # crosses compact_ratio: rebuilt without the tombstones
        info = index.info()
        assert info["tombstones"] == 0 and info["ntotal"] == self.N - 100
        res = index.search(vecs[100:105], 1)
        assert [r[0][0] for r in res] == ids[100:105]


class TestIVF(FaissSuite):
    factory = "IVF8,Flat"
    extra = {"nprobe": 8}

    def test_untrained_ivf_needs_enough_vectors(self):
        idx = FaissVectorIndex(DIM, FaissSettings(factory="IVF64,Flat", gpu="never"))
        with pytest.raises(BadInput, match="at least 64"):
            idx.upsert(["a"], vectors(1))


class TestIVFPQ(VectorIndexSuite):
    """PQ is lossy: the self-match still comes first, but scores are approximate."""

    @pytest.fixture
    def make(self):
        return lambda dim: FaissVectorIndex(dim, FaissSettings(factory="IVF4,PQ8x4", nprobe=4, gpu="never"))

    @pytest.fixture
    def reopen(self, tmp_path):
        def _reopen(idx):
            idx.save(tmp_path / "vec")
            return FaissVectorIndex.open(tmp_path / "vec")

        return _reopen

    def test_each_vector_finds_itself_first(self, index, data):
        ids, vecs = data
        res = index.search(vecs[:20], 5)
        assert sum(r[0][0] == i for r, i in zip(res, ids[:20])) >= 15

    def test_upsert_replaces_the_vector(self, index, data):
        ids, vecs = data
        index.upsert(["doc5"], vecs[7:8])
        assert index.count() == self.N
        assert "doc5" in [d for d, _ in index.search(vecs[7:8], 5)[0]]

    def test_many_deletes_then_search(self, index, data):
        ids, vecs = data
        index.delete(ids[: self.N // 2])
        res = index.search(vecs[self.N // 2 :], 5)
        assert all(d not in set(ids[: self.N // 2]) for r in res for d, _ in r)

    def test_allowed_restricts_results(self, index, data):
        res = index.search(data[1][10:11], 5, allowed={"doc10", "doc20", "doc30"})[0]
        assert {d for d, _ in res} == {"doc10", "doc20", "doc30"}


def test_invalid_factory_string():
    with pytest.raises(BadInput, match="invalid FAISS factory string 'Bogus12'"):
        FaissVectorIndex(DIM, FaissSettings(factory="Bogus12"))


def test_cpu_fallback_is_used_without_gpu():
    idx = FaissVectorIndex(DIM, FaissSettings(gpu="auto"))
    assert idx.uses_gpu == (gpu_count() > 0)


@pytest.mark.gpu
def test_gpu_search_matches_cpu():
    if gpu_count() == 0:
        pytest.skip("no GPU visible to FAISS (faiss.get_num_gpus() == 0)")
    ids = [f"d{i}" for i in range(2000)]
    vecs = vectors(2000, seed=3)
    cpu = FaissVectorIndex(DIM, FaissSettings(gpu="never"))
    gpu = FaissVectorIndex(DIM, FaissSettings(gpu="always"))
    for idx in (cpu, gpu):
        idx.upsert(ids, vecs)
    assert gpu.uses_gpu
    q = vectors(50, seed=4)
    a, b = cpu.search(q, 10), gpu.search(q, 10)
    assert [[d for d, _ in r] for r in a] == [[d for d, _ in r] for r in b]
    gpu.delete(ids[:100])
    assert all(d not in set(ids[:100]) for r in gpu.search(vecs[:100], 5) for d, _ in r)
    np.testing.assert_allclose([[s for _, s in r] for r in a], [[s for _, s in r] for r in cpu.search(q, 10)])
