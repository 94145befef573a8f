"""The public Python API: semsearch.Collection owns concurrency (tests of behaviour, with the
real MiniLM model where ranking matters)."""

from __future__ import annotations

import threading

import pytest

import semsearch
from semsearch.errors import BadInput, DocumentNotFound


def test_readme_example(tmp_path, minilm, settings):
    # the README's Python example, as a user writes it
    docs = [semsearch.Document(id="p", title="Photosynthesis", text="Plants turn sunlight into sugar."),
            semsearch.Document(id="v", title="Volcanoes", text="Magma rises through the crust.")]
    with semsearch.Collection.create(tmp_path / "ix", settings, encoder=minilm) as col:
        res = col.upsert(docs, wait_for=True)
        assert res.searchable and res.ids == ["p", "v"]
        hits = col.search("how do plants make food", k=1).hits
        assert hits[0].id == "p" and hits[0].document.title == "Photosynthesis"
        req = semsearch.SearchRequest(query="molten rock", mode="dense", k=2)
        assert col.search_batch([req, req.model_copy(update={"query": "sugar from light"})])[1].hits[0].id == "p"


def test_writes_are_durable_before_searchable_and_refresh_makes_them_visible(tmp_path, minilm, settings):
    settings.indexing.refresh_interval = 3600  # no background refresh within the test
    with semsearch.Collection.create(tmp_path / "ix", settings, encoder=minilm) as col:
        col.upsert([semsearch.Document(id="a", text="alpha particles")], wait_for=True)
        res = col.upsert([semsearch.Document(id="b", text="beta decay")])
        assert res.searchable is False
        assert col.get("b").text == "beta decay"  # durable and readable by id at once
        assert col.search("beta decay", mode="lexical").hits == []
        col.refresh()
        assert col.search("beta decay", mode="lexical").hits[0].id == "b"
        col.delete("b")
        assert col.search("beta decay", mode="lexical").hits == []  # an acknowledged delete hides it
        with pytest.raises(DocumentNotFound, match="not in the index"):
            col.delete("b")
        with pytest.raises(BadInput, match="already in the index"):
            col.add([semsearch.Document(id="a", text="again")])


def test_read_only_open_refuses_writes_and_searches(tmp_path, minilm, settings):
    with semsearch.Collection.create(tmp_path / "ix", settings, encoder=minilm) as col:
        col.upsert([semsearch.Document(id="a", text="alpha particles")], wait_for=True)
    with semsearch.Collection.open(tmp_path / "ix", settings, encoder=minilm) as ro:
        assert ro.search("alpha", mode="lexical").hits[0].id == "a"
        with pytest.raises(BadInput, match="read-only"):
            ro.upsert([semsearch.Document(id="c", text="gamma")])


def test_concurrent_searches_during_writes_never_fail(tmp_path, minilm, settings):
    settings.indexing.refresh_interval = 0.05
    errors: list[BaseException] = []
    with semsearch.Collection.create(tmp_path / "ix", settings, encoder=minilm) as col:
        col.upsert([semsearch.Document(id="seed", text="seed document about rivers")], wait_for=True)
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                try:
                    assert col.search("rivers", mode="lexical").hits
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)
                    return

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(10):
            col.upsert([semsearch.Document(id=f"w{i}", text=f"rivers and lakes number {i}")])
        col.refresh()
        stop.set()
        for t in threads:
            t.join()
        assert not errors
        assert len(col.search("rivers lakes", mode="lexical", k=20).hits) == 11


DOCS = [("p", "Photosynthesis", "Plants turn sunlight into sugar."),
        ("v", "Volcanoes", "Magma rises through the crust and erupts."),
        ("b", "Honeybees", "Bees carry pollen between flowers.")]


@pytest.fixture
def three_docs(tmp_path, minilm, settings):
    """An index of three documents, closed; its path."""
    with semsearch.Collection.create(tmp_path / "ix", settings, encoder=minilm) as col:
        col.upsert([semsearch.Document(id=i, title=t, text=x) for i, t, x in DOCS], wait_for=True)
    return tmp_path / "ix"


def test_channel_results_are_each_channels_candidates_before_fusion(three_docs, minilm, settings):
    with semsearch.Collection.open(three_docs, settings, encoder=minilm) as col:
        (per,), failed = col.channel_results(["plants turn sunlight into sugar"], 2, "hybrid")
        assert failed == {} and set(per) == {"lexical", "dense"}
        assert [d for d, _ in per["lexical"]] == ["p"]  # the only one sharing a term
        assert len(per["dense"]) == 2 and per["dense"][0][0] == "p"  # the top 2, best first
        assert per["dense"][0][1] >= per["dense"][1][1]
        # the dense scores are inner products of the query with the stored vectors
        q = minilm.encode(["plants turn sunlight into sugar"])[0]
        ids = [d for d, _ in per["dense"]]
        assert [s for _, s in per["dense"]] == pytest.approx(list(col.vectors(ids) @ q), abs=1e-5)
        (magma, bees), _ = col.channel_results(["magma", "bees pollen"], 5, "lexical")
        assert set(magma) == {"lexical"}  # the channels of the mode only
        assert [d for d, _ in magma["lexical"]] == ["v"] and [d for d, _ in bees["lexical"]] == ["b"]


def test_stored_vectors_and_documents_are_read_from_the_store(three_docs, minilm, settings):
    with semsearch.Collection.create(three_docs, settings, encoder=minilm) as col:
        vecs = col.vectors(["b", "nope", "p"])
        assert vecs.shape == (3, minilm.dim) and not vecs[1].any()  # no vector: zeros
        want = minilm.encode([f"{t} {x}" for i, t, x in DOCS if i in ("b", "p")])
        assert vecs[[0, 2]] == pytest.approx(want[[1, 0]], abs=1e-5)
        with pytest.raises(BadInput, match="no 'image' channel"):
            col.vectors(["p"], "image")
        assert col.channels == tuple(col.stats()["channels"]) == ("dense",)
        assert [(d.id, d.title) for d in col.documents()] == [(i, t) for i, t, _ in DOCS]
        col.delete("v")  # an acknowledged delete, not yet refreshed
        assert [d.id for d in col.documents()] == ["p", "b"]


class _Counting:
    """A query encoder that counts the texts it encodes."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner, self.name, self.dim, self.texts = inner, inner.name, inner.dim, 0

    def encode(self, texts, *, batch_size=None):  # noqa: ANN001, ANN201
        self.texts += len(texts)
        return self.inner.encode(texts)


class _ShortestFirst:
    name = "shortest-first"

    def score(self, query, documents):  # noqa: ANN001, ANN201
        return [-float(len(d.text)) for d in documents]


def test_with_models_searches_the_same_index_with_other_models(three_docs, minilm, settings):
    settings.rerank.blend = 0.0  # the reranker alone orders the candidates
    with semsearch.Collection.open(three_docs, settings, encoder=minilm) as col:
        counting = _Counting(minilm)
        view = col.with_models(encoder=counting, reranker=_ShortestFirst())
        hits = view.search("plants sunlight sugar", mode="dense", k=3, rerank=True).hits
        assert [h.id for h in hits] == ["p", "b", "v"]  # by text length, as the reranker says
        assert counting.texts == 1
        with pytest.raises(BadInput, match="SEMSEARCH_RERANK__MODEL"):
            col.search("plants", rerank=True)  # the collection itself has no reranker
        assert col.with_models().search("plants sunlight", mode="dense", k=1).hits[0].id == "p"
        with pytest.raises(BadInput, match="only searches"):
            view.upsert([semsearch.Document(id="x", text="x")])
        view.close()  # leaves the collection's index open
        assert col.search("magma", mode="lexical").hits[0].id == "v"


def test_open_directory_opens_the_local_index_whatever_the_store_setting(three_docs, minilm, settings):
    settings.store.backend = "elasticsearch"  # not contacted: a directory is given
    from semsearch.collection import open_directory

    with open_directory(three_docs, settings, encoder=minilm) as col:
        assert isinstance(col, semsearch.Collection) and not col.writable
        assert col.search("magma", mode="lexical").hits[0].id == "v"
    assert settings.store.backend == "elasticsearch"


def test_a_waiting_write_is_refreshed_soon_and_others_keep_the_schedule(tmp_path, minilm, settings):
    import time

    # a busy spell: the refresh of "a" sets the schedule's clock, so with an hour's interval
    # only a waiting write (refresh_min_interval after the last refresh) gets refreshed
    settings.indexing.refresh_interval = 3600
    settings.indexing.refresh_min_interval = 0.1
    with semsearch.Collection.create(tmp_path / "ix", settings, encoder=minilm) as col:
        col.upsert([semsearch.Document(id="a", text="alpha particles")])
        col.refresh()
        res = col.upsert([semsearch.Document(id="b", text="beta decay")])
        time.sleep(0.5)
        assert not res.searchable and col.search("beta decay", mode="lexical").hits == []
        t0 = time.monotonic()
        res = col.upsert([semsearch.Document(id="c", text="gamma rays")], wait_for=True, timeout=30)
        assert res.searchable and time.monotonic() - t0 < 10
        # the refresh it asked for took every write committed before it, "b" too
        assert {h.id for h in col.search("beta decay gamma rays", mode="lexical").hits} == {"b", "c"}
        res = col.upsert([semsearch.Document(id="d", text="delta waves")])
        time.sleep(0.5)
        assert not res.searchable and col.search("delta waves", mode="lexical").hits == []


class SlowEncoder:
    """The hashing encoder, slowed down per batch: a bulk load long enough for the refresh
    loop (every 10 ms here) to have published a part of it, had it been allowed to."""

    def __init__(self, inner, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds
        self.name, self.dim = inner.name, inner.dim

    def encode(self, texts, **kw):
        import time

        time.sleep(self.seconds)
        return self.inner.encode(texts, **kw)


def _watch(col, stop: threading.Event, seen: set) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            seen.add(col.searchable_seq)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_bulk_index_loads_files_in_one_commit_reports_rejects_and_resumes(tmp_path, settings, hashing_encoder):
    import json

    from semsearch.indexer.pipeline import TextChannel

    settings.indexing.refresh_interval = 0.01
    settings.indexing.batch_size = 4
    rows = [{"_id": f"b{i}", "title": f"bulk {i}", "text": f"bulkword{i} shared"} for i in range(20)]
    src = tmp_path / "bulk.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"_id": "bad"}\n', encoding="utf-8")
    with semsearch.Collection.create(tmp_path / "ix", settings, encoder=hashing_encoder) as col:
        col.upsert([semsearch.Document(id="seed", text="seed shared")], wait_for=True)
        before = col.searchable_seq
        seen: set[int] = set()
        stop = threading.Event()
        watcher = _watch(col, stop, seen)
        report = col.bulk_index([src], [TextChannel(SlowEncoder(hashing_encoder, 0.05))])
        stop.set()
        watcher.join()
        assert report.indexed == 20 and [r.line for r in report.rejected] == [21]
        # five batches over >= 250 ms, a refresh loop every 10 ms: still one commit
        assert col.searchable_seq > before and seen <= {before, col.searchable_seq}
        assert col.search("bulkword7", mode="lexical", k=1).hits[0].id == "b7"
        assert col.search("bulkword7", mode="dense", k=1).hits[0].id == "b7"
        again = col.bulk_index([src], [TextChannel(hashing_encoder)])
        assert again.indexed == 0 and again.unchanged == 20  # a re-run resumes: nothing re-encoded


def test_replace_vectors_switches_encoder_and_vectors_in_one_commit(tmp_path, settings, hashing_encoder,
                                                                    monkeypatch):
    import time

    import numpy as np

    from tests.conftest import HashingEncoder

    settings.indexing.refresh_interval = 0.01
    docs = [semsearch.Document(id=f"r{i}", text=f"replace word{i}") for i in range(12)]
    with semsearch.Collection.create(tmp_path / "ix", settings, encoder=hashing_encoder) as col:
        col.upsert(docs, wait_for=True)
        before = col.searchable_seq
        other = HashingEncoder(name="test/other-encoder")
        new = -other.encode([d.text for d in docs])
        real_write = col.index.write

        def slow_write(*a, **kw):  # one document per batch, slowly: the refresh loop runs between
            time.sleep(0.02)
            return real_write(*a, **kw)

        monkeypatch.setattr(col.index, "write", slow_write)
        seen: set[int] = set()
        stop = threading.Event()
        watcher = _watch(col, stop, seen)
        info = col.replace_vectors([d.id for d in docs], new, "test/other-encoder", tuned={"fusion": {"method": "rrf"}},
                                   batch=1)
        stop.set()
        watcher.join()
        assert info["docs"] == 12 and info["encoder"] == "test/other-encoder"
        assert col.searchable_seq > before and seen <= {before, col.searchable_seq}
        assert np.allclose(col.vectors([d.id for d in docs]), new)
        assert col.index.snapshot().channels["dense"].encoder == "test/other-encoder"
    with semsearch.Collection.open(tmp_path / "ix", settings) as ro:  # committed, with the tuned defaults
        assert ro.index.manifest.channels["dense"].encoder == "test/other-encoder"
        assert ro.index.manifest.tuned == {"fusion": {"method": "rrf"}}


def test_set_tuned_is_a_commit_that_other_processes_see(tmp_path, settings, hashing_encoder):
    with semsearch.Collection.create(tmp_path / "ix", settings, encoder=hashing_encoder) as col:
        col.upsert([semsearch.Document(id="a", text="alpha")], wait_for=True)
        gen = col.index.manifest.generation
        col.set_tuned({"fusion": {"method": "linear", "weights": {"lexical": 0.3, "dense": 0.7}}})
        assert col.index.manifest.generation == gen + 1
        assert col.search("alpha", mode="lexical").hits[0].id == "a"
    with semsearch.Collection.open(tmp_path / "ix", settings) as ro:
        assert ro.index.manifest.tuned["fusion"]["method"] == "linear"


def test_vectors_acknowledged_before_a_crash_are_indexed_after_it(tmp_path, settings, hashing_encoder):
    """The first write to a new channel declares it; that declaration is committed before the
    write is acknowledged. Before, it lived in memory until the next refresh: a process that
    died first left vectors in the store that the refresh after the restart indexed without
    their channel (the documents were searchable by words, never by meaning)."""
    settings.indexing.refresh_interval = 3600  # no refresh before the "crash"
    docs = [semsearch.Document(id=f"c{i}", text=f"crashword{i} ocean") for i in range(5)]
    col = semsearch.Collection.create(tmp_path / "ix", settings, encoder=hashing_encoder)
    assert col.upsert(docs).searchable is False  # acknowledged: durable, not yet searchable
    col.close()  # stops without a refresh, as a killed process would
    with semsearch.Collection.open(tmp_path / "ix", settings, writable=True, encoder=hashing_encoder) as col:
        assert col.stats()["channels"]["dense"]["count"] == 5
        assert col.search("crashword3 ocean", mode="dense", k=1).hits[0].id == "c3"
        assert col.search("crashword3", mode="lexical", k=1).hits[0].id == "c3"


def test_a_failed_replace_vectors_leaves_the_old_encoder_in_place(tmp_path, settings, hashing_encoder, monkeypatch):
    docs = [semsearch.Document(id=f"f{i}", text=f"fail word{i}") for i in range(6)]
    with semsearch.Collection.create(tmp_path / "ix", settings, encoder=hashing_encoder) as col:
        col.upsert(docs, wait_for=True)
        real_write, calls = col.index.write, []

        def failing_write(*a, **kw):
            calls.append(1)
            if len(calls) == 3:
                raise OSError("disk full")
            return real_write(*a, **kw)

        monkeypatch.setattr(col.index, "write", failing_write)
        with pytest.raises(OSError, match="disk full"):
            col.replace_vectors([d.id for d in docs], hashing_encoder.encode([d.text for d in docs]), "test/other",
                                tuned={"fusion": {"method": "rrf"}}, batch=1)
        col.refresh()  # a later refresh publishes the two rewritten documents, not the new spec
        assert col.index.snapshot().channels["dense"].encoder == hashing_encoder.name
    with semsearch.Collection.open(tmp_path / "ix", settings) as ro:
        assert ro.index.manifest.channels["dense"].encoder == hashing_encoder.name
        assert ro.index.manifest.tuned == {}
