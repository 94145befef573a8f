"""Conformance suite of the metadata filter language (:mod:`semsearch.filters`).

One small, fixed metadata corpus, filter cases with the ids they must return, and type
errors every implementation must raise. An implementation's tests subclass
:class:`FilterSuite` and provide the ``search`` fixture: a callable taking a filter's JSON
form and returning the set of matching ids (raising :class:`BadInput` for the type errors).
Implementations: the Python reference and the MetadataIndex (tests/test_filters.py), the
embedded and Elasticsearch lexical backends (through :class:`LexicalIndexSuite`) and the
compiled Elasticsearch query on the backends' real mapping (tests/test_filters.py).

Each field has one value type across the corpus (Elasticsearch maps a field once); mixed
types within a field are covered by the reference/MetadataIndex tests only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from semsearch.documents import Document
from semsearch.errors import BadInput
from semsearch.indexer.readers import csv_value

#: metadata of document "g" as read from a CSV row (cells arrive as strings)
CSV_ROW = {"topic": "Bio", "year": "2021", "code": "0042", "open": "true", "score": "2.5"}

META: dict[str, dict[str, Any]] = {
    "a": {"topic": "bio", "year": 2020, "tags": ["bees", "flowers"], "published": "2020-01-05",
          "open": True, "code": "2020", "score": 1.5},
    "b": {"topic": "energy", "year": 2022, "tags": ["solar"], "published": "2022-06-30T12:00:00Z",
          "open": False, "code": "007", "score": 3},
    "c": {"topic": "energy", "year": 2018, "tags": [], "published": "2018-12-31T23:30:00-02:00",
          "open": False, "code": "2018"},
    "d": {"topic": "food", "year": 2019, "tags": ["bread", "yeast"], "published": "2019-03",
          "rating": 4.5},
    "e": {"topic": "bio", "year": 2015, "tags": "bees", "note": None},
    "f": {},
    "g": {k: csv_value(v) for k, v in CSV_ROW.items()},
}
ALL = set(META)

#: documents for the lexical backends: every one matches the query "common"
FILTER_DOCS = [Document(id=i, title="", text=f"common words of {i}", metadata=m) for i, m in META.items()]
QUERY = "common"

#: (name, filter, expected ids)
CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("eq-string", {"topic": "energy"}, {"b", "c"}),
    ("eq-is-case-sensitive", {"topic": "bio"}, {"a", "e"}),
    ("any-of", {"topic": ["bio", "food"]}, {"a", "d", "e"}),
    ("in-operator", {"topic": {"in": ["food", "nothing"]}}, {"d"}),
    ("numeric-looking-string-is-a-string", {"code": "2020"}, {"a"}),
    ("leading-zeros-stay", {"code": ["0042", "007"]}, {"b", "g"}),
    ("string-range-is-lexicographic", {"code": {"gte": "2000", "lt": "2100"}}, {"a", "c"}),
    ("eq-number", {"year": 2020}, {"a"}),
    ("int-equals-float", {"score": 3.0}, {"b"}),
    ("range-number-gt", {"score": {"gt": 1.5}}, {"b", "g"}),
    ("range-int-and-float", {"score": {"gte": 1.5, "lt": 3}}, {"a", "g"}),
    ("range-open-upper", {"year": {"gte": 2020}}, {"a", "b", "g"}),
    ("range-open-lower", {"year": {"lt": 2018}}, {"e"}),
    ("range-both", {"year": {"gt": 2018, "lte": 2020}}, {"a", "d"}),
    ("list-any-element", {"tags": "bees"}, {"a", "e"}),
    ("list-any-of", {"tags": ["solar", "yeast"]}, {"b", "d"}),
    ("exists-list", {"tags": {"exists": True}}, {"a", "b", "d", "e"}),
    ("not-exists-empty-list", {"tags": {"exists": False}}, {"c", "f", "g"}),
    ("missing-field-range", {"rating": {"lt": 10}}, {"d"}),
    ("not-on-missing-field", {"not": {"rating": 4.5}}, ALL - {"d"}),
    ("ne-keeps-missing", {"topic": {"ne": "energy"}}, {"a", "d", "e", "f", "g"}),
    ("bool-true", {"open": True}, {"a", "g"}),
    ("bool-false", {"open": False}, {"b", "c"}),
    ("not-bool", {"not": {"open": True}}, {"b", "c", "d", "e", "f"}),
    ("date-gte", {"published": {"gte": "2019-01-01"}}, {"a", "b", "c", "d"}),
    ("date-zone-moves-day", {"published": "2019-01-01"}, {"c"}),
    ("date-eq-whole-day", {"published": "2022-06-30"}, {"b"}),
    ("date-gt-day-rounds-up", {"published": {"gt": "2020-01-05"}}, {"b"}),
    ("date-month-period", {"published": {"gte": "2019-03", "lte": "2019-03"}}, {"d"}),
    # Elasticsearch reads a bare year or month as its first day: lte "2019" ends 2019-01-01
    ("date-year-bound", {"published": {"lte": "2019"}}, {"c"}),
    ("date-month-bound", {"published": {"lt": "2019-04"}}, {"c", "d"}),
    ("date-datetime-bound", {"published": {"lt": "2022-06-30T12:00:00Z"}}, {"a", "c", "d"}),
    ("or", {"or": [{"topic": "food"}, {"open": True}]}, {"a", "d", "g"}),
    ("and", {"and": [{"topic": "energy"}, {"year": {"gt": 2019}}]}, {"b"}),
    ("implicit-and", {"topic": "bio", "year": {"lt": 2020}}, {"e"}),
    ("not-any-of", {"not": {"topic": ["bio", "energy"]}}, {"d", "f", "g"}),
    ("any-of-mixed-types-number-field", {"year": [2020, "2022"]}, {"a"}),
    ("any-of-mixed-types-string-field", {"code": ["2020", 2018]}, {"a"}),
    ("csv-number", {"year": 2021}, {"g"}),
    ("csv-float-range", {"score": {"gte": 2.5}}, {"b", "g"}),
    ("csv-leading-zeros-string", {"code": "0042"}, {"g"}),
    ("exists-number", {"rating": {"exists": True}}, {"d"}),
    ("null-is-no-value", {"note": {"exists": True}}, set()),
    ("unknown-field-eq", {"nosuch": 1}, set()),
    ("unknown-field-not-exists", {"nosuch": {"exists": False}}, ALL),
]

#: (name, filter, regex of the BadInput message)
TYPE_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("string-bound-on-numbers", {"year": {"gte": "2019"}}, r"filter on 'year'.*holds numbers.*JSON number"),
    ("number-bound-on-strings", {"topic": {"gt": 5}}, r"filter on 'topic'.*holds strings"),
    ("number-on-strings", {"code": 2020}, r"filter on 'code'.*holds strings.*numbers in strings"),
    ("string-on-numbers", {"year": "2020"}, r"filter on 'year'.*holds numbers"),
    ("bool-is-not-a-number", {"open": 1}, r"filter on 'open'.*holds booleans"),
    ("number-is-not-a-bool", {"score": True}, r"filter on 'score'.*holds numbers"),
    ("word-bound-on-dates", {"published": {"gte": "yesterday"}}, r"filter on 'published'.*holds dates"),
]

#: a few cases the backend conformance suites run (one of each kind)
BACKEND_CASES = [c for c in CASES if c[0] in {
    "eq-string", "any-of", "numeric-looking-string-is-a-string", "range-int-and-float",
    "list-any-element", "not-exists-empty-list", "ne-keeps-missing", "bool-true",
    "date-gt-day-rounds-up", "or", "any-of-mixed-types-string-field", "csv-number"}]


def mismatches(search: Callable[[dict[str, Any]], set[str]],
               cases: list[tuple[str, dict[str, Any], set[str]]] = CASES) -> list[str]:
    """Run ``cases`` through ``search``; a readable line per case that went wrong."""
    out = []
    for name, flt, want in cases:
        try:
            got = search(flt)
        except Exception as e:  # noqa: BLE001 - reported with the case
            out.append(f"{name}: {flt} raised {type(e).__name__}: {e}")
            continue
        if got != want:
            out.append(f"{name}: {flt} gave {sorted(got)}, expected {sorted(want)}")
    return out


class FilterSuite:
    """Subclasses provide ``search``: filter JSON -> set of matching ids."""

    @pytest.mark.parametrize(("name", "flt", "want"), CASES, ids=[c[0] for c in CASES])
    def test_case(self, search, name, flt, want):
        assert search(flt) == want

    @pytest.mark.parametrize(("name", "flt", "match"), TYPE_ERRORS, ids=[c[0] for c in TYPE_ERRORS])
    def test_type_error(self, search, name, flt, match):
        with pytest.raises(BadInput, match=match):
            search(flt)
