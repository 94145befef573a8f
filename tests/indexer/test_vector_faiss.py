"""The FAISS vector channel of the segment core, through the shared vector conformance suite:
Flat, HNSW, IVF and IVF-PQ segments (ANN structures forced with exact_below=0), written,
deleted and reopened through a real Index."""

import numpy as np
import pytest

from semsearch.config import Settings
from semsearch.documents import Document
from semsearch.errors import BackendUnavailable, BadInput
from semsearch.indexer.index import Index
from semsearch.indexer.segments.vectors import gpu_count, probe_gpu
from tests.conformance.vector_suite import DIM, VectorIndexSuite, vectors


class SegmentedVectors:
    """A vector channel of a real Index seen through the VectorIndex protocol: upserts and
    deletes are stored and refreshed (new segments, tombstones), searches read the snapshot."""

    backend = "faiss"

    def __init__(self, path, dim: int, factory: str, **faiss) -> None:
        self.path, self.factory, self.faiss = path, factory, faiss
        s = Settings()
        s.vector.faiss.exact_below = 0
        s.vector.faiss.gpu = "never"
        for k, v in faiss.items():
            setattr(s.vector.faiss, k, v)
        self.index = Index.create(path, s)
        self.index.ensure_channel("dense", dim=dim, encoder="test/vectors", settings={"factory": factory})
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def _channel(self):
        return self.index.snapshot().vectors["dense"]

    def upsert(self, ids, vecs) -> None:
        self.index.write([Document(id=i, text=i) for i in ids], {"dense": vecs})
        self.index.sync()

    def delete(self, ids) -> int:
        n = len(self.index.store.hashes(list(ids)))
        self.index.delete(list(ids))
        self.index.sync()
        return n

    def search(self, queries, k, *, allowed=None):
        snap = self.index.snapshot()
        masks = None
        if allowed is not None:
            masks = [np.isin(np.array(seg.ids, dtype=object), list(allowed)) for seg in snap.segments]
        return snap.vectors["dense"].search(queries, k, masks=masks)

    def count(self) -> int:
        return self._channel().count()

    def __contains__(self, doc_id) -> bool:
        return doc_id in self._channel()

    def save(self, path) -> None:
        self.index.sync()

    def info(self):
        return self._channel().info()

    def close(self) -> None:
        self.index.close()


class FaissSuite(VectorIndexSuite):
    factory = "Flat"
    extra: dict = {}

    @pytest.fixture
    def make(self, tmp_path):
        made = []

        def _make(dim):
            made.append(SegmentedVectors(tmp_path / f"ix{len(made)}", dim, self.factory, **self.extra))
            return made[-1]

        yield _make
        for m in made:
            m.close()

    @pytest.fixture
    def reopen(self):
        def _reopen(idx):
            idx.close()
            return SegmentedVectors(idx.path, idx.dim, idx.factory, **idx.faiss)

        return _reopen


class TestFlat(FaissSuite):
    factory = "Flat"


class TestHNSW(FaissSuite):
    factory = "HNSW16"

    def test_segments_have_graphs_and_deletes_are_masked(self, index, data):
        ids, vecs = data
        assert all(s.vectors["dense"].ann is not None for s in index.index.snapshot().segments)
        index.delete(ids[:100])  # tombstones, pushed into the graph search as a selector
        res = index.search(vecs[100:105], 1)
        assert [r[0][0] for r in res] == ids[100:105]


class TestIVF(FaissSuite):
    factory = "IVF8,Flat"
    extra = {"nprobe": 8}

    def test_too_few_vectors_to_train_are_searched_exactly(self, tmp_path):
        idx = SegmentedVectors(tmp_path / "few", DIM, "IVF64,Flat")
        idx.upsert(["a", "b"], vectors(2))  # an untrainable IVF64 never blocks the write
        assert [d for d, _ in idx.search(vectors(2)[:1], 1)[0]] == ["a"]
        assert idx.index.snapshot().segments[0].vectors["dense"].ann is None
        idx.close()


class TestIVFPQ(FaissSuite):
    """PQ is lossy: the self-match still comes first, but scores are approximate."""

    factory = "IVF4,PQ8x4"
    extra = {"nprobe": 4}

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

    def test_persist_and_reopen(self, index, data, reopen):
        ids, vecs = data
        index.delete(["doc1"])
        before = index.search(vecs[:5], 4)
        again = reopen(index)
        assert again.count() == self.N - 1 and again.search(vecs[:5], 4) == before


def test_invalid_factory_string_is_refused_before_any_write(tmp_path):
    with pytest.raises(BadInput, match="invalid FAISS factory string 'Bogus12'"):
        SegmentedVectors(tmp_path / "bad", DIM, "Bogus12")
    ok = SegmentedVectors(tmp_path / "ok", DIM, "Flat")
    ok.upsert(["a"], vectors(1))
    with pytest.raises(BadInput, match="invalid FAISS factory string 'Bogus12'"):
        ok.index.reindex(factory="Bogus12")
    assert ok.count() == 1
    ok.index.close()


@pytest.mark.gpu
def test_gpu_search_matches_cpu(tmp_path):
    if gpu_count() == 0:
        pytest.skip("no GPU visible to FAISS (faiss.get_num_gpus() == 0)")
    ids = [f"d{i}" for i in range(2000)]
    vecs = vectors(2000, seed=3)
    cpu = SegmentedVectors(tmp_path / "cpu", DIM, "IVF16,Flat", gpu="never", nprobe=16)
    gpu = SegmentedVectors(tmp_path / "gpu", DIM, "IVF16,Flat", gpu="always", nprobe=16)
    for idx in (cpu, gpu):
        idx.upsert(ids, vecs)
    assert gpu.info()["gpu"]
    q = vectors(50, seed=4)
    a, b = cpu.search(q, 10), gpu.search(q, 10)
    assert [[d for d, _ in r] for r in a] == [[d for d, _ in r] for r in b]
    gpu.delete(ids[:100])
    assert all(d not in set(ids[:100]) for r in gpu.search(vecs[:100], 5) for d, _ in r)


def test_gpu_probe_reports_a_faiss_build_that_aborts():
    # faiss-gpu-cu12 1.14.1 on an H200 aborts the process at the first GPU search (CUDA
    # error 209): the check runs in a child process and says so instead of dying with it
    why = probe_gpu("import os; os.abort()")
    assert why.startswith("the FAISS GPU check failed (killed by SIGABRT)")
    why = probe_gpu("import sys; print('Faiss assertion failed; details: CUDA error 209 no kernel image is "
                    "available for execution on the device', file=sys.stderr); sys.exit(3)")
    assert why.startswith("the FAISS GPU check failed (exit status 3): Faiss assertion failed; details: CUDA error 209")


def test_gpu_probe_fails_where_faiss_has_no_gpu_search():
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        pytest.skip("this FAISS build has a GPU to search on (test_gpu_probe_passes_on_a_gpu covers it)")
    why = probe_gpu()
    assert why.startswith("the FAISS GPU check failed (exit status 1)")
    assert "StandardGpuResources" in why or "CUDA" in why


def test_gpu_always_without_a_usable_gpu_is_refused_not_run_on_the_cpu(tmp_path):
    if gpu_count() > 0:
        pytest.skip("FAISS can search on a GPU here")
    idx = SegmentedVectors(tmp_path, DIM, "IVF16,Flat", gpu="always", nprobe=16)
    idx.upsert([f"d{i}" for i in range(500)], vectors(500, seed=5))
    with pytest.raises(BackendUnavailable, match=r"vector.faiss.gpu is 'always' but FAISS cannot search on a GPU "
                       r"here: (this FAISS build has no GPU support|FAISS sees no CUDA GPU|the FAISS GPU check failed)"):
        idx.search(vectors(3, seed=6), 5)
    assert idx.info()["gpu"] is False  # the status report does not raise
    idx.close()
    # a Collection (what a server opens) refuses at warm-up, before any search
    from semsearch.collection import Collection

    s = Settings()
    s.vector.faiss.gpu = "always"
    col = Collection.open(tmp_path, s)
    try:
        with pytest.raises(BackendUnavailable, match=r"vector.faiss.gpu is 'always'"):
            col.warm_up()
    finally:
        col.close()


@pytest.mark.gpu
def test_gpu_probe_passes_on_a_gpu():
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        pytest.skip("no GPU visible to FAISS (faiss.get_num_gpus() == 0)")
    assert probe_gpu() == ""
