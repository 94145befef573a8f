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
