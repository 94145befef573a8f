"""The filter language: parsing and its errors, the reference semantics, the per-segment
MetadataIndex (1 and 3 segments, saved and loaded) and the compiled Elasticsearch query, all
against the shared cases of tests/conformance/filters.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semsearch.errors import BadInput, IndexIncompatible
from semsearch.filters import (
    AnyOf,
    Eq,
    Exists,
    Not,
    Or,
    Range,
    check_types,
    field_types,
    matches,
    parse_date,
    parse_filter,
    to_elasticsearch,
)
from semsearch.indexer.segments.container import ArrayFile, ArrayWriter
from semsearch.indexer.segments.meta import MetadataIndex, union_types
from tests.conformance.filters import META, FilterSuite

IDS = list(META)


# -- implementations of the suite ---------------------------------------------------------
class TestReference(FilterSuite):
    @pytest.fixture
    def search(self):
        types = field_types(META.values())

        def run(obj):
            f = parse_filter(obj)
            check_types(f, types)
            return {i for i, m in META.items() if matches(f, m)}

        return run


def segmented_search(segments: list[tuple[list[str], MetadataIndex]]):
    types = union_types(m for _, m in segments)

    def run(obj):
        f = parse_filter(obj)
        check_types(f, types)
        out = set()
        for ids, m in segments:
            mask = m.mask(f)
            assert mask.dtype == bool and mask.shape == (len(ids),)
            out |= {ids[o] for o in np.flatnonzero(mask)}
        return out

    return run


def split(n_segments: int) -> list[list[str]]:
    return [IDS[i::n_segments] for i in range(n_segments)]


class TestMetadataIndexOneSegment(FilterSuite):
    @pytest.fixture
    def search(self):
        return segmented_search([(IDS, MetadataIndex.build([META[i] for i in IDS]))])


class TestMetadataIndexThreeSegments(FilterSuite):
    @pytest.fixture
    def search(self):
        return segmented_search([(ids, MetadataIndex.build([META[i] for i in ids])) for ids in split(3)])


def saved(index: MetadataIndex, path) -> tuple[ArrayFile, dict]:
    """``index`` saved as a segment saves it: its columns into a container, the rest as JSON."""
    w = ArrayWriter()
    info = json.loads(json.dumps(index.save(w)))
    w.write(path)
    return ArrayFile.open(path), info


class TestMetadataIndexSavedAndLoaded(FilterSuite):
    @pytest.fixture
    def search(self, tmp_path):
        segs = []
        for n, ids in enumerate(split(3)):
            arrays, info = saved(MetadataIndex.build([META[i] for i in ids]), tmp_path / f"seg{n}.bin")
            segs.append((ids, MetadataIndex.load(arrays, info)))
        return segmented_search(segs)


@pytest.mark.integration
class TestElasticsearchCompiledQuery(FilterSuite):
    """The compiled query on an index with the lexical backend's real mapping."""

    @pytest.fixture(scope="class")
    def es_index(self, es_url):
        import uuid

        from elasticsearch import Elasticsearch

        from semsearch.config import ElasticsearchSettings
        from semsearch.indexer.lexical.elasticsearch import index_body

        client = Elasticsearch(es_url, request_timeout=30)
        name = f"semsearch-test-filters-{uuid.uuid4().hex[:10]}"
        s = ElasticsearchSettings(analyzer="standard")
        client.indices.create(index=name, **index_body(s))
        for i, m in META.items():
            client.index(index=name, id=i, document={"title": "", "text": "x", "metadata": m})
        client.indices.refresh(index=name)
        yield client, name
        client.options(ignore_status=404).indices.delete(index=name)
        client.close()

    @pytest.fixture
    def search(self, es_index):
        from semsearch.filters import es_field_types

        client, name = es_index
        props = client.indices.get_mapping(index=name)[name]["mappings"]["properties"]["metadata"]["properties"]
        types = es_field_types(props)

        def run(obj):
            f = parse_filter(obj)
            check_types(f, types)
            q = {"bool": {"filter": [to_elasticsearch(f, types=types)]}}
            hits = client.search(index=name, query=q, size=100, source=False)["hits"]["hits"]
            return {h["_id"] for h in hits}

        return run

    def test_mapping_types(self, es_index):
        client, name = es_index
        props = client.indices.get_mapping(index=name)[name]["mappings"]["properties"]["metadata"]["properties"]
        got = {f: p["type"] for f, p in props.items()}
        assert got == {"topic": "keyword", "year": "double", "tags": "keyword", "published": "date",
                       "open": "boolean", "code": "keyword", "score": "double", "rating": "double"}


# -- parsing ------------------------------------------------------------------------------
def test_parse_backward_compatible_forms():
    assert parse_filter(None) is None and parse_filter({}) is None
    assert parse_filter({"topic": "bio"}) == Eq("topic", "bio")
    assert parse_filter({"topic": ["a", "b", "a"]}) == AnyOf("topic", ("a", "b"))
    assert parse_filter({"year": {"gte": 2019, "lt": 2022}}) == Range("year", gte=2019, lt=2022)
    f = parse_filter({"a": 1, "b": {"exists": False}, "not": {"c": {"ne": 2}}, "or": [{"d": 1}, {"e": 2}]})
    assert f.children == (Eq("a", 1), Not(Exists("b")), Not(Not(Eq("c", 2))), Or((Eq("d", 1), Eq("e", 2))))
    parsed = parse_filter({"a": 1})
    assert parse_filter(parsed) is parsed


@pytest.mark.parametrize(("obj", "match"), [
    ({"year": {"near": 3}}, r"filter on 'year': unknown operator\(s\) \['near'\]"),
    ({"year": {"gte": 1, "lt": "x"}}, r"filter on 'year': range bounds mix numbers and strings"),
    ({"d": {"gte": "2020-01-01", "lt": "zzz"}}, r"filter on 'd': range bounds mix ISO dates and other strings"),
    ({"year": {"gt": 1, "gte": 2}}, r"filter on 'year': give at most one lower"),
    ({"year": {"gte": True}}, r"filter on 'year': a range bound cannot be a boolean"),
    ({"topic": []}, r"filter on 'topic': empty list"),
    ({"topic": {"in": "bio"}}, r"filter on 'topic': 'in' takes a list"),
    ({"topic": {"in": []}}, r"filter on 'topic': empty list"),
    ({"topic": [["bio"]]}, r"filter on 'topic': list value must be a string, number or boolean, got list"),
    ({"topic": None}, r"filter on 'topic': value must be a string, number or boolean, got NoneType"),
    ({"topic": {"eq": {"x": 1}}}, r"filter on 'topic': value must be a string, number or boolean, got dict"),
    ({"year": float("nan")}, r"filter on 'year': value nan is not a finite number"),
    ({"x": {"exists": "yes"}}, r"filter on 'x': 'exists' takes true or false"),
    ({"x": {}}, r"filter on 'x': empty operator object"),
    ({"not": 5}, r"'not' filter must be a JSON object"),
    ({"not": {}}, r"'not' filter is an empty object"),
    ({"or": []}, r"'or' takes a non-empty list"),
    ({"and": [{"a": 1}, 3]}, r"'and' item must be a JSON object"),
    ([1], r"filter must be a JSON object"),
])
def test_parse_errors(obj, match):
    with pytest.raises(BadInput, match=match):
        parse_filter(obj)


def test_size_cap():
    assert parse_filter({"t": list(range(1024))}) is not None
    with pytest.raises(BadInput, match=r"filter has 1025 values and clauses \(max 1024: search.max_filter_values\)"):
        parse_filter({"t": list(range(1025))})
    with pytest.raises(BadInput, match=r"max 3"):
        parse_filter({"a": 1, "b": 2, "c": 3}, max_values=3)


def test_setting_caps_the_searcher(tiny_index, settings):
    from semsearch.search.engine import Searcher

    settings.search.max_filter_values = 3
    searcher = Searcher(tiny_index, settings)
    with pytest.raises(BadInput, match="max 3"):
        searcher.search("vaccines", mode="lexical", filters={"topic": ["a", "b", "c", "d"]})
    hits = searcher.search("bacteria", mode="lexical", filters={"topic": "medicine", "year": {"lt": 2020}}).hits
    assert [h.id for h in hits] == ["d2"]
    with pytest.raises(BadInput, match="filter on 'year'.*holds numbers"):
        searcher.search("bacteria", mode="lexical", filters={"year": "2019"})


# -- semantics details --------------------------------------------------------------------
def test_parse_date_periods():
    day = 86_400_000
    assert parse_date("1970-01-02") == (day, 2 * day - 1)
    assert parse_date("1970-01-01T00:00:01Z") == (1000, 1999)
    assert parse_date("1970-01-01T00:00:00.5") == (500, 500)
    assert parse_date("1970-01-01T02:00:00+02:00") == (0, 999)
    assert parse_date("1970-02") == (31 * day, 32 * day - 1)  # as Elasticsearch: the 1st
    assert parse_date("1970") is None and parse_date("1970", year=True) == (0, day - 1)
    for not_a_date in ("2020/01/05", "2020-13-01", "2020-01-05 10:00", "x2020-01", "2020-1-5"):
        assert parse_date(not_a_date) is None


MIXED = [{"v": 2020}, {"v": "2020"}, {"v": "2020-01-01T08:00:00"}, {"v": True}, {"v": [1, "a"]}, {"v": {"nested": 1}}, {}]


@pytest.mark.parametrize(("obj", "want"), [
    ({"v": 2020}, [0]),
    ({"v": "2020"}, [1, 2]),  # the string exactly, and dates on 2020-01-01 (a bare year is its 1st day)
    ({"v": True}, [3]),
    ({"v": 1}, [4]),  # not True: booleans are not numbers
    ({"v": {"gte": 1}}, [0, 4]),
    ({"v": {"gte": "2020-01"}}, [2, 4]),  # dates by date, strings lexicographically ("2020" < "2020-01" < "a")
    ({"v": {"exists": False}}, [5, 6]),  # a nested object is not a filterable value
    ({"v": ["a", 2020, False]}, [0, 4]),
])
def test_mixed_type_field_reference_and_index_agree(obj, want):
    f = parse_filter(obj)
    assert [i for i, m in enumerate(MIXED) if matches(f, m)] == want
    assert np.flatnonzero(MetadataIndex.build(MIXED).mask(f)).tolist() == want
    check_types(f, MetadataIndex.build(MIXED).field_types())  # every type is there: no error


def test_field_types_and_union():
    a, b = MetadataIndex.build([{"x": 1, "d": "2020-01-01"}]), MetadataIndex.build([{"x": "one", "l": [True]}])
    assert a.field_types() == {"x": {"number"}, "d": {"date"}}
    assert union_types([a, b]) == {"x": {"number", "string"}, "d": {"date"}, "l": {"bool"}}
    check_types(parse_filter({"x": {"gt": 0}}), union_types([a, b]))  # a segment has numbers
    with pytest.raises(BadInput, match="filter on 'l'.*holds booleans"):
        check_types(parse_filter({"l": "yes"}), union_types([a, b]))


def test_not_costs_a_complement_and_none_is_everything():
    m = MetadataIndex.build([{"a": 1}, {"a": 2}, {}])
    assert m.mask(None).tolist() == [True, True, True]
    assert m.mask(parse_filter({"not": {"a": 1}})).tolist() == [False, True, True]
    assert MetadataIndex.build([]).mask(parse_filter({"a": 1})).shape == (0,)


def test_save_writes_named_plain_arrays_and_load_checks_the_format(tmp_path):
    w = ArrayWriter()
    info = MetadataIndex.build(list(META.values())).save(w)
    assert w.names() and all(n.startswith("meta.f") for n in w.names())
    w.write(tmp_path / "m.bin")
    arrays = ArrayFile.open(tmp_path / "m.bin")
    assert all(arrays[n].dtype.kind in "biuf" for n in arrays)  # no objects, no pickles
    assert info["format"] == 2 and json.loads(json.dumps(info)) == info
    with pytest.raises(IndexIncompatible, match="format 99"):
        MetadataIndex.load(arrays, {**info, "format": 99})
    with pytest.raises(IndexIncompatible, match="format 1; .*rebuild the index"):
        MetadataIndex.load(arrays, {**info, "format": 1})
    with pytest.raises(IndexIncompatible, match="damaged"):
        MetadataIndex.load(arrays, {k: v for k, v in info.items() if k != "n_docs"})
    ArrayWriter().write(tmp_path / "empty.bin")
    with pytest.raises(IndexIncompatible, match=r"empty\.bin holds no array 'meta\.f0\.exists'"):
        MetadataIndex.load(ArrayFile.open(tmp_path / "empty.bin"), info)


def test_to_elasticsearch_shapes():
    f = parse_filter({"t": ["a", 5], "not": {"e": {"exists": True}}, "or": [{"y": {"gte": 1}}, {"b": True}]})
    assert to_elasticsearch(f, types={"t": {"string"}}) == {"bool": {"filter": [
        {"term": {"metadata.t": "a"}},
        {"bool": {"must_not": [{"exists": {"field": "metadata.e"}}]}},
        {"bool": {"should": [{"range": {"metadata.y": {"gte": 1}}}, {"term": {"metadata.b": True}}],
                  "minimum_should_match": 1}},
    ]}}
    assert to_elasticsearch(parse_filter({"t": [1, 2]}), types={"t": {"string"}}) == {"match_none": {}}


@pytest.mark.parametrize("obj", [
    {"topic": ["medicine", "energy"]},
    {"year": {"gte": 2020}, "not": {"topic": "energy"}},
    {"or": [{"topic": "biology"}, {"year": {"lt": 2015}}]},
])
def test_searcher_dense_filter_returns_exactly_the_matching_documents(tiny_index, settings, obj):
    from semsearch.search.engine import Searcher
    from tests.conftest import TINY_DOCS

    want = {d["_id"] for d in TINY_DOCS if matches(parse_filter(obj), d["metadata"])}
    hits = Searcher(tiny_index, settings).search("science", k=12, mode="dense", filters=obj).hits
    assert {h.id for h in hits} == want and want
