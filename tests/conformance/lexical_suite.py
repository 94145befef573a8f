"""Conformance suite every LexicalIndex backend's tests inherit.

A backend's test module subclasses :class:`LexicalIndexSuite` and provides the ``make``
fixture: a callable returning a new, empty index of that backend, and ``reopen``: persist
and open again."""

from __future__ import annotations

import pytest

from semsearch.documents import Document
from semsearch.errors import BadInput
from semsearch.indexer.lexical.base import LexicalIndex
from tests.conformance.filters import BACKEND_CASES, FILTER_DOCS, QUERY, TYPE_ERRORS, mismatches


def D(i, title, text, **meta):  # noqa: N802
    return Document(id=i, title=title, text=text, metadata=meta)


CORPUS = [
    D("a", "Honeybees", "Bees pollinate flowers and crops", topic="bio", year=2020),
    D("b", "Solar power", "Photovoltaic panels turn sunlight into electricity", topic="energy", year=2022),
    D("c", "Wind power", "Turbines turn moving air into electricity", topic="energy", year=2018),
    D("d", "Bread", "Yeast makes bread dough rise", topic="food", year=2019),
    D("e", "Bees and wasps", "Wasps and bees both sting", topic="bio", year=2015),
]


class LexicalIndexSuite:
    @pytest.fixture
    def index(self, make) -> LexicalIndex:
        idx = make()
        idx.upsert(CORPUS)
        idx.commit()
        return idx

    def test_is_a_lexical_index(self, index):
        assert isinstance(index, LexicalIndex)

    def test_count(self, index):
        assert index.count() == 5

    def test_search_ranks_matching_docs_and_skips_the_rest(self, index):
        hits = index.search("electricity", 10)
        assert {h for h, _ in hits} == {"b", "c"}
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)

    def test_k_limits_results(self, index):
        assert len(index.search("bees electricity bread", 2)) == 2

    def test_no_match_gives_no_hits(self, index):
        assert index.search("zeppelin", 10) == []

    def test_stemming_matches_word_forms(self, index):
        assert index.search("pollinating", 3)[0][0] == "a"

    def test_field_boosts(self, index):
        # "bees" is in e's title and in the text of a and e ("Honeybees" is another word)
        title_only = index.search("bees", 5, boosts={"title": 1.0, "text": 0.0})
        text_only = index.search("bees", 5, boosts={"title": 0.0, "text": 1.0})
        both = index.search("bees", 5, boosts={"title": 3.0, "text": 1.0})
        assert [d for d, _ in title_only] == ["e"]
        assert {d for d, _ in text_only} == {"a", "e"}
        assert both[0][0] == "e"
        assert dict(both)["e"] > dict(text_only)["e"]

    def test_upsert_replaces(self, index):
        index.upsert([D("d", "Bread", "Sourdough starter with wild yeast")])
        index.commit()
        assert index.count() == 5
        assert index.search("sourdough", 3)[0][0] == "d"
        assert index.search("dough", 3) == []

    def test_delete(self, index):
        assert index.delete(["b", "zz"]) == 1
        index.commit()
        assert index.count() == 4
        assert [d for d, _ in index.search("electricity", 5)] == ["c"]

    def test_filters(self, index):
        hits = index.search("bees electricity", 10, filters={"topic": "energy"})
        assert {d for d, _ in hits} == {"b", "c"}
        hits = index.search("bees electricity", 10, filters={"year": {"gte": 2019}})
        assert {d for d, _ in hits} == {"a", "b"}
        hits = index.search("bees electricity", 10, filters={"topic": ["bio", "food"]})
        assert {d for d, _ in hits} == {"a", "e"}

    def test_filter_language_conformance(self, make):
        """A few cases of the shared filter suite (tests/conformance/filters.py) through this
        backend's search, and its type errors."""
        idx = make()
        idx.upsert(FILTER_DOCS)
        idx.commit()
        assert mismatches(lambda f: {d for d, _ in idx.search(QUERY, 100, filters=f)}, BACKEND_CASES) == []
        for _, flt, match in TYPE_ERRORS[:3]:
            with pytest.raises(BadInput, match=match):
                idx.search(QUERY, 10, filters=flt)

    def test_persist_and_reopen(self, index, reopen):
        before = index.search("bees", 5)
        again = reopen(index)
        assert again.count() == 5
        after = again.search("bees", 5)
        assert [d for d, _ in after] == [d for d, _ in before]
        assert [s for _, s in after] == pytest.approx([s for _, s in before])
        again.upsert([D("f", "More bees", "A hive of bees")])
        again.commit()
        assert again.count() == 6
        assert "f" in {d for d, _ in again.search("hive", 5)}
