"""The metadata filter language: one typed tree, parsed and validated once, with the
reference semantics in Python (:func:`matches`), a per-segment index that evaluates it with
array operations (:class:`semsearch.indexer.segments.meta.MetadataIndex`) and a compiler to
an Elasticsearch ``bool`` query (:func:`to_elasticsearch`). Every backend answers a filter
with the same documents.

JSON syntax (backward compatible with the earlier ``{"field": value}`` form)::

    {"topic": "energy"}                     equality
    {"topic": ["bio", "food"]}              any of ({"topic": {"in": [...]}} too)
    {"year": {"gte": 2019, "lt": 2022}}     range (gt, gte, lt, lte; open bounds allowed)
    {"year": {"ne": 2020}}                  not equal (documents without the field match)
    {"isbn": {"exists": true}}              has a value (false: has none)
    {"not": {...}}                          negation
    {"or": [{...}, {...}]}                  any of the sub-filters
    {"and": [{...}, {...}]}                 all of them (also implicit between fields)

``not``, ``and`` and ``or`` are reserved at the top level of a filter object (a metadata
field of that name cannot be filtered).

Values and their types:

* strings compare exactly; numbers (int and float) compare numerically; booleans are their
  own type (``true`` is not ``1``); a JSON string is a string even when it looks like a
  number (``"2020"`` is not ``2020``);
* dates: a metadata string in ISO-8601 form (``YYYY-MM``, ``YYYY-MM-DD``, optionally
  ``THH[:MM[:SS[.fff]]]`` and ``Z``/``+HH:MM``: Elasticsearch's ``strict_date_optional_time``)
  is a date; times without a zone are UTC. In a filter a bare year (``"2019"``) is a date
  too. A date in a filter is read as Elasticsearch reads it: a missing month or day is 01,
  and missing time fields make it stand for the whole period: ``{"day": "2020-01-05"}``
  matches any time that day, ``{"gt": "2020-01-05"}`` starts the day after,
  ``{"lte": "2020-01-05T10:00"}`` includes 10:00:59.999; but ``{"lte": "2020-01"}`` ends
  with January the 1st (``{"lt": "2020-02"}`` is "up to the end of January"). Against string
  values the same filter compares strings (exactly, or lexicographically for ranges);
* a list value matches when any element matches; ``exists`` is true for a non-empty list;
  ``null`` and ``[]`` count as no value; nested objects are not filterable.

A filter whose value type cannot occur in a field (e.g. a number range on a field that holds
only strings) is a :class:`BadInput` naming the field (:func:`check_types`), not an empty
result. A field no document has matches nothing (``exists: false`` matches everything).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from semsearch.errors import BadInput

Scalar = str | int | float | bool
#: the value types a field can hold
ValueType = Literal["string", "number", "bool", "date"]
TYPE_WORDS = {"string": "strings", "number": "numbers", "bool": "booleans", "date": "dates"}
RANGE_OPS = ("gt", "gte", "lt", "lte")
OPERATORS = (*RANGE_OPS, "in", "ne", "eq", "exists")
COMBINATORS = ("not", "and", "or")
DEFAULT_MAX_VALUES = 1024


# -- the tree -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Eq:
    field: str
    value: Scalar


@dataclass(frozen=True)
class AnyOf:
    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    """Bounds are all numbers, or all strings (then ``kind`` is ``date`` when every bound is
    an ISO date, else ``string``: lexicographic)."""

    field: str
    gt: Scalar | None = None
    gte: Scalar | None = None
    lt: Scalar | None = None
    lte: Scalar | None = None

    def bounds(self) -> dict[str, Scalar]:
        return {op: v for op in RANGE_OPS if (v := getattr(self, op)) is not None}

    @property
    def kind(self) -> Literal["number", "date", "string"]:
        b = list(self.bounds().values())
        if isinstance(b[0], (int, float)):
            return "number"
        return "date" if all(parse_date(x, year=True) is not None for x in b) else "string"  # type: ignore[arg-type]


@dataclass(frozen=True)
class Exists:
    field: str


@dataclass(frozen=True)
class Not:
    child: Filter


@dataclass(frozen=True)
class And:
    children: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Filter, ...]


Filter = Eq | AnyOf | Range | Exists | Not | And | Or
_NODES = (Eq, AnyOf, Range, Exists, Not, And, Or)
#: what search methods accept: a parsed :data:`Filter` or its JSON form
FilterInput = Filter | Mapping[str, Any]


# -- dates --------------------------------------------------------------------------------
_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$"
)


def parse_date(s: str, *, year: bool = False) -> tuple[int, int] | None:
    """``(first, last)`` millisecond since the epoch of the period an ISO date string names,
    or None when ``s`` is not one: Elasticsearch's round-down / round-up parsing (missing
    month and day are 01, missing time fields span their range: ``"2020-02"`` is
    2020-02-01T00:00:00.000 to 2020-02-01T23:59:59.999). A bare
    year (``"2019"``) is a date only with ``year=True``: in a filter's bounds and values, as
    Elasticsearch reads them on a date field, never as a stored value (Elasticsearch maps a
    ``"2019"`` string as a keyword)."""
    if len(s) < 4 or not s[:4].isdigit():  # fast path for most strings
        return None
    m = _DATE.match(s)
    if m is None:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    if mo is None and not year:
        return None
    try:
        offset = timezone.utc
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            digits = tz[1:].replace(":", "")
            offset = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0)))
        ms = int((frac or "0").ljust(3, "0")[:3])
        start = datetime(int(y), int(mo or 1), int(d or 1), int(hh or 0), int(mi or 0), int(ss or 0),
                         ms * 1000, tzinfo=offset)
    except ValueError:  # month 13, hour 25, ...
        return None
    if hh is None:  # also a bare year or month: Elasticsearch fills month and day with 01
        span = timedelta(days=1)
    elif mi is None:
        span = timedelta(hours=1)
    elif ss is None:
        span = timedelta(minutes=1)
    elif frac is None:
        span = timedelta(seconds=1)
    else:
        span = timedelta(milliseconds=1)
    first = (start - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)
    return first, first + span // timedelta(milliseconds=1) - 1


# -- value typing -------------------------------------------------------------------------
def value_type(v: Any) -> ValueType | None:
    """The filter type of one metadata value; None for what is not filterable (None,
    nested objects, NaN)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number" if not (isinstance(v, float) and math.isnan(v)) else None
    if isinstance(v, str):
        return "date" if parse_date(v) is not None else "string"
    return None


def field_values(metadata: Mapping[str, Any], field: str) -> Iterator[tuple[ValueType, Any]]:
    """The typed values of ``field`` in one document (a list gives its elements)."""
    raw = metadata.get(field)
    for v in raw if isinstance(raw, list) else (raw,):
        t = value_type(v)
        if t is not None:
            yield t, v


def field_types(metas: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """The value types each field holds across ``metas`` (a reference for
    :meth:`MetadataIndex.field_types`; a full scan)."""
    out: dict[str, set[str]] = {}
    for m in metas:
        for f in m:
            for t, _ in field_values(m, f):
                out.setdefault(f, set()).add(t)
    return out


def compat(v: Scalar) -> set[str]:
    """The field value types an equality value can match: a string that names a date (a
    bare year included) matches dates (as a period) and strings (exactly)."""
    if isinstance(v, bool):
        return {"bool"}
    if isinstance(v, (int, float)):
        return {"number"}
    return {"string", "date"} if parse_date(v, year=True) is not None else {"string"}


# -- parsing ------------------------------------------------------------------------------
def _scalar(field: str, v: Any, what: str) -> Scalar:
    if isinstance(v, bool) or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise BadInput(f"filter on {field!r}: {what} {v!r} is not a finite number")
        return v
    raise BadInput(
        f"filter on {field!r}: {what} must be a string, number or boolean, got "
        f"{type(v).__name__} {v!r}"[:300]
    )


def _any_of(field: str, values: Any) -> Filter:
    if not isinstance(values, list):
        raise BadInput(f"filter on {field!r}: 'in' takes a list, got {type(values).__name__}")
    if not values:
        raise BadInput(f"filter on {field!r}: empty list of values (any-of needs at least one)")
    vals = tuple(dict.fromkeys(_scalar(field, v, "list value") for v in values))
    return Eq(field, vals[0]) if len(vals) == 1 else AnyOf(field, vals)


def _operators(field: str, cond: dict[str, Any]) -> Filter:
    if not cond:
        raise BadInput(f"filter on {field!r}: empty operator object; use one of {list(OPERATORS)}")
    unknown = [k for k in cond if k not in OPERATORS]
    if unknown:
        raise BadInput(f"filter on {field!r}: unknown operator(s) {unknown}; use {', '.join(OPERATORS)}")
    parts: list[Filter] = []
    bounds = {op: _scalar(field, cond[op], f"bound {op!r}") for op in RANGE_OPS if op in cond}
    if bounds:
        if any(isinstance(b, bool) for b in bounds.values()):
            raise BadInput(f"filter on {field!r}: a range bound cannot be a boolean: {bounds}")
        kinds = {"number" if isinstance(b, (int, float)) else "string" for b in bounds.values()}
        if len(kinds) > 1:
            raise BadInput(f"filter on {field!r}: range bounds mix numbers and strings: {bounds}")
        if "gt" in bounds and "gte" in bounds or "lt" in bounds and "lte" in bounds:
            raise BadInput(f"filter on {field!r}: give at most one lower (gt/gte) and one upper (lt/lte) bound")
        r = Range(field, **bounds)  # type: ignore[arg-type]
        if kinds == {"string"} and r.kind == "string" and any(parse_date(b, year=True) for b in bounds.values()):  # type: ignore[arg-type]
            raise BadInput(f"filter on {field!r}: range bounds mix ISO dates and other strings: {bounds}")
        parts.append(r)
    if "eq" in cond:
        parts.append(Eq(field, _scalar(field, cond["eq"], "value")))
    if "in" in cond:
        parts.append(_any_of(field, cond["in"]))
    if "ne" in cond:
        parts.append(Not(Eq(field, _scalar(field, cond["ne"], "'ne' value"))))
    if "exists" in cond:
        e = cond["exists"]
        if not isinstance(e, bool):
            raise BadInput(f"filter on {field!r}: 'exists' takes true or false, got {e!r}")
        parts.append(Exists(field) if e else Not(Exists(field)))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse(obj: Any, where: str) -> Filter:
    if not isinstance(obj, Mapping):
        raise BadInput(f"{where} must be a JSON object, got {type(obj).__name__}")
    if not obj:
        raise BadInput(f"{where} is an empty object")
    parts: list[Filter] = []
    for key, cond in obj.items():
        if not isinstance(key, str) or not key:
            raise BadInput(f"{where}: field names must be non-empty strings, got {key!r}")
        if key == "not":
            parts.append(Not(_parse(cond, "'not' filter")))
        elif key in ("and", "or"):
            if not isinstance(cond, list) or not cond:
                raise BadInput(f"'{key}' takes a non-empty list of filter objects, got {cond!r}"[:300])
            kids = tuple(_parse(c, f"'{key}' item") for c in cond)
            parts.append(kids[0] if len(kids) == 1 else (And(kids) if key == "and" else Or(kids)))
        elif isinstance(cond, list):
            parts.append(_any_of(key, cond))
        elif isinstance(cond, Mapping):
            parts.append(_operators(key, dict(cond)))
        else:
            parts.append(Eq(key, _scalar(key, cond, "value")))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def size(f: Filter) -> int:
    """Nodes and values in a filter (what ``search.max_filter_values`` caps)."""
    if isinstance(f, AnyOf):
        return len(f.values)
    if isinstance(f, Not):
        return 1 + size(f.child)
    if isinstance(f, (And, Or)):
        return 1 + sum(size(c) for c in f.children)
    return 1


def parse_filter(obj: FilterInput | None, *, max_values: int = DEFAULT_MAX_VALUES) -> Filter | None:
    """Parse and validate a filter's JSON form (a parsed :data:`Filter` is returned as is);
    None or ``{}`` means no filter. Raises :class:`BadInput` naming the field and problem."""
    if obj is None:
        return None
    if isinstance(obj, _NODES):
        return obj
    if isinstance(obj, Mapping) and not obj:
        return None
    f = _parse(obj, "filter")
    n = size(f)
    if n > max_values:
        raise BadInput(f"filter has {n} values and clauses (max {max_values}: search.max_filter_values)")
    return f


# -- type checks --------------------------------------------------------------------------
def _words(types: Iterable[str]) -> str:
    return " and ".join(TYPE_WORDS.get(t, t) for t in sorted(types))


def _hint(v: Scalar, types: set[str]) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and "string" in types:
        return " (numbers in strings stay strings; filter with a string, or index numbers as numbers)"
    if isinstance(v, str) and "number" in types:
        return " (use a JSON number, not a string)"
    return ""


def check_types(f: Filter | None, types: Mapping[str, Iterable[str]]) -> None:
    """Raise :class:`BadInput` where a clause cannot match the value types its field holds
    (``types``: field -> types, the union over all segments). Fields absent from ``types``
    pass: they match nothing."""
    if f is None:
        return
    if isinstance(f, Not):
        check_types(f.child, types)
    elif isinstance(f, (And, Or)):
        for c in f.children:
            check_types(c, types)
    elif isinstance(f, (Eq, AnyOf, Range)) and f.field in types:
        have = set(types[f.field])
        if not have:
            return
        if isinstance(f, Range):
            kind = f.kind
            ok = {"number": {"number"}, "date": {"date", "string"}, "string": {"string"}}[kind]
            if not have & ok:
                b = next(iter(f.bounds().values()))
                raise BadInput(
                    f"filter on {f.field!r}: a range with {TYPE_WORDS[kind][:-1]} bounds "
                    f"{f.bounds()} cannot match: the field holds {_words(have)}{_hint(b, have)}"
                )
            return
        values = (f.value,) if isinstance(f, Eq) else f.values
        if not any(compat(v) & have for v in values):
            shown = values[0] if len(values) == 1 else list(values)
            kinds = _words(set().union(*(compat(v) for v in values)))
            raise BadInput(
                f"filter on {f.field!r}: {shown!r} ({kinds}) cannot match: the field holds "
                f"{_words(have)}{_hint(values[0], have)}"
            )


# -- reference semantics ------------------------------------------------------------------
def _eq(t: ValueType, v: Any, want: Scalar) -> bool:
    if t not in compat(want):
        return False
    if t == "date":
        lo, hi = parse_date(want, year=True)  # type: ignore[arg-type,misc]
        return lo <= parse_date(v)[0] <= hi  # type: ignore[index]
    return bool(v == want)


def _in_range(t: ValueType, v: Any, r: Range) -> bool:
    kind = r.kind
    if kind == "number":
        if t != "number":
            return False
        x: Any = v
        conv = float
    elif kind == "date" and t == "date":
        x = parse_date(v)[0]  # type: ignore[index]

        def lo_hi(b: str) -> tuple[int, int]:  # bounds round down for gte/lt and up for gt/lte
            return parse_date(b, year=True)  # type: ignore[return-value]

        return all(
            (op == "gt" and x > lo_hi(b)[1]) or (op == "gte" and x >= lo_hi(b)[0])  # type: ignore[arg-type,index]
            or (op == "lt" and x < lo_hi(b)[0]) or (op == "lte" and x <= lo_hi(b)[1])  # type: ignore[arg-type,index]
            for op, b in r.bounds().items()
        )
    elif t == "string":
        x, conv = v, str
    else:
        return False
    for op, b in r.bounds().items():
        b = conv(b)
        if not ((op == "gt" and x > b) or (op == "gte" and x >= b) or (op == "lt" and x < b)
                or (op == "lte" and x <= b)):
            return False
    return True


def matches(f: Filter | None, metadata: Mapping[str, Any]) -> bool:
    """Whether one document's metadata satisfies ``f`` (the reference semantics)."""
    if f is None:
        return True
    if isinstance(f, And):
        return all(matches(c, metadata) for c in f.children)
    if isinstance(f, Or):
        return any(matches(c, metadata) for c in f.children)
    if isinstance(f, Not):
        return not matches(f.child, metadata)
    if isinstance(f, Exists):
        return any(True for _ in field_values(metadata, f.field))
    if isinstance(f, Eq):
        return any(_eq(t, v, f.value) for t, v in field_values(metadata, f.field))
    if isinstance(f, AnyOf):
        return any(_eq(t, v, w) for t, v in field_values(metadata, f.field) for w in f.values)
    if isinstance(f, Range):
        return any(_in_range(t, v, f) for t, v in field_values(metadata, f.field))
    raise TypeError(f"not a filter: {f!r}")  # pragma: no cover


# -- Elasticsearch ------------------------------------------------------------------------
#: Elasticsearch field types -> filter value types (see ``metadata_mapping``)
ES_TYPES: dict[str, ValueType] = {
    "keyword": "string", "text": "string", "date": "date", "boolean": "bool",
    **{t: "number" for t in ("double", "float", "half_float", "scaled_float", "long",
                             "integer", "short", "byte", "unsigned_long")},
}


def metadata_mapping() -> dict[str, Any]:
    """The mapping pieces that make Elasticsearch agree with :func:`matches`: strings as
    ``keyword`` (exact), every number as ``double`` (no truncation of a later 1.5 into a
    field first seen as 2) that does not coerce (a later ``"2021"`` string is rejected at
    indexing, where embedded it would stay a string), ISO dates (and only those: not
    ``2020/01/05``, not ``"2020"``) as ``date``. Elasticsearch maps a field once: a value of
    another type than the field's first is rejected (a bulk failure naming the document),
    except that a keyword field takes numbers and booleans as strings. Returns ``{"dynamic_date_formats": ..., "dynamic_templates": [...]}`` to
    merge into an index's ``mappings``."""
    return {
        "dynamic_date_formats": ["strict_date_optional_time"],
        "dynamic_templates": [
            {"metadata_dates": {"path_match": "metadata.*", "match_mapping_type": "date",
                                "mapping": {"type": "date", "format": "strict_date_optional_time"}}},
            {"metadata_strings": {"path_match": "metadata.*", "match_mapping_type": "string",
                                  "mapping": {"type": "keyword"}}},
            {"metadata_longs": {"path_match": "metadata.*", "match_mapping_type": "long",
                                "mapping": {"type": "double", "coerce": False}}},
            {"metadata_doubles": {"path_match": "metadata.*", "match_mapping_type": "double",
                                  "mapping": {"type": "double", "coerce": False}}},
        ],
    }


def es_field_types(properties: Mapping[str, Any]) -> dict[str, set[str]]:
    """Filter value types from the ``properties`` of the ``metadata`` object's mapping."""
    out: dict[str, set[str]] = {}
    for name, spec in properties.items():
        t = ES_TYPES.get(spec.get("type", "object"))
        if t is not None:
            out[name] = {t}
    return out


def to_elasticsearch(
    f: Filter, *, prefix: str = "metadata.", types: Mapping[str, Iterable[str]] | None = None
) -> dict[str, Any]:
    """Compile ``f`` to one Elasticsearch query (use it in a ``bool`` ``filter``). With
    ``types`` (from the index's mapping), any-of values of a type the field cannot hold are
    dropped: Elasticsearch would coerce ``5`` to ``"5"`` on a keyword field."""

    def go(f: Filter) -> dict[str, Any]:
        if isinstance(f, And):
            return {"bool": {"filter": [go(c) for c in f.children]}}
        if isinstance(f, Or):
            return {"bool": {"should": [go(c) for c in f.children], "minimum_should_match": 1}}
        if isinstance(f, Not):
            return {"bool": {"must_not": [go(f.child)]}}
        name = prefix + f.field
        if isinstance(f, Exists):
            return {"exists": {"field": name}}
        if isinstance(f, Range):
            return {"range": {name: f.bounds()}}
        values = (f.value,) if isinstance(f, Eq) else f.values
        if types is not None and f.field in types:
            have = set(types[f.field])
            values = tuple(v for v in values if compat(v) & have)
        if not values:
            return {"match_none": {}}
        if len(values) == 1:
            return {"term": {name: values[0]}}
        return {"terms": {name: list(values)}}

    return go(f)
