import pytest

from semsearch.errors import BadInput
from semsearch.search import Searcher


def test_dense_search_finds_meaning_without_shared_words(tiny_index, minilm):
    s = Searcher(tiny_index, encoder=minilm)
    res = s.search("how do plants make food from light", k=3, mode="dense")
    assert res.hits[0].id == "d3"


def test_lexical_search_finds_words(tiny_index, minilm):
    s = Searcher(tiny_index, encoder=minilm)
    res = s.search("sourdough yeast", k=3, mode="lexical")
    assert res.hits[0].id == "d6"
    assert set(res.hits[0].channels) == {"lexical"}


def test_hybrid_hits_explain_each_channel(tiny_index, minilm):
    s = Searcher(tiny_index, encoder=minilm)
    res = s.search("bees pollinate crops", k=5, mode="hybrid")
    top = res.hits[0]
    assert top.id == "d11"
    assert top.channels["lexical"].rank == 1 and top.channels["dense"].rank == 1
    assert [h.rank for h in res.hits] == list(range(1, len(res.hits) + 1))
    assert top.document is not None and top.document.title == "Honeybees"


def test_pagination_is_consistent_with_the_fused_list(tiny_index, minilm):
    s = Searcher(tiny_index, encoder=minilm)
    full = [h.id for h in s.search("energy from sunlight", k=6).hits]
    page2 = s.search("energy from sunlight", k=3, offset=3).hits
    assert [h.id for h in page2] == full[3:6]
    assert [h.rank for h in page2] == [4, 5, 6]


def test_filters_restrict_every_channel(tiny_index, minilm):
    s = Searcher(tiny_index, encoder=minilm)
    res = s.search("sunlight", k=10, filters={"topic": "energy"})
    assert {h.id for h in res.hits} <= {"d8", "d12"}
    assert "d8" in {h.id for h in res.hits}
    res = s.search("sunlight", k=10, mode="dense", filters={"year": {"gte": 2020}})
    assert all(h.document.metadata["year"] >= 2020 for h in res.hits)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be between"),
        ({"mode": "fuzzy"}, "unknown mode"),
        ({"offset": -1}, "offset must be"),
    ],
)
def test_bad_search_arguments_name_the_problem(tiny_index, minilm, kwargs, match):
    s = Searcher(tiny_index, encoder=minilm)
    with pytest.raises(BadInput, match=match):
        s.search("bees", **kwargs)


def test_empty_query_is_rejected(tiny_index, minilm):
    with pytest.raises(BadInput, match="query is empty"):
        Searcher(tiny_index, encoder=minilm).search("   ")
