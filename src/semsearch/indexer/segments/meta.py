"""The metadata index of one immutable segment: evaluates a :mod:`semsearch.filters` filter
into a boolean mask over the segment's ordinals ``0..n-1`` with array operations.

Per field and value type there is one *column*: the (value, ordinal) pairs of every document
that has the field (a list contributes one pair per element), sorted by value. Equality and
ranges are then ``np.searchsorted`` on the sorted values and a slice of ordinals, so a
clause costs ``O(log n + selected)``; ``and``/``or`` intersect/unite sorted ordinal arrays;
only ``not`` costs ``O(n)`` (a complement). Columns:

* ``number``: float64 values (int and float compare numerically);
* ``date``: int64 epoch milliseconds of the ISO date strings (UTC when no zone is given);
* ``bool``: int8 0/1;
* ``string``: the distinct strings, sorted (JSON), with ``offsets`` into an ordinal array
  grouped by string: equality is a dict lookup, a string range is a contiguous slice;
* ``exists``: the sorted ordinals that have at least one value.

Saved (``save``/``load``, no pickles): the arrays ``meta.f<i>.<column>`` per field ``i`` in the
segment's one array container (``arrays.bin``, segments/container.py) and a JSON object
(format, n_docs, per field its types, columns and distinct strings) that the segment keeps in
its ``segment.json``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semsearch.errors import IndexIncompatible
from semsearch.filters import (
    And,
    AnyOf,
    Eq,
    Exists,
    Filter,
    Not,
    Or,
    Range,
    Scalar,
    parse_date,
)
from semsearch.indexer.segments.container import ArrayFile, ArrayWriter

FORMAT = 2  # 2: the columns in the segment's array container, the rest in its JSON
_EMPTY = np.zeros(0, dtype=np.int32)


@dataclass
class _Field:
    types: set[str] = field(default_factory=set)
    #: ``number``/``date``/``bool`` -> (sorted values, ordinals)
    sorted_cols: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: distinct strings, sorted; ``str_ords[str_offsets[i]:str_offsets[i + 1]]`` hold strings[i]
    strings: list[str] = field(default_factory=list)
    str_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    str_ords: np.ndarray = field(default_factory=lambda: _EMPTY)
    exists: np.ndarray = field(default_factory=lambda: _EMPTY)
    _pos: dict[str, int] | None = None

    def string_pos(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = {s: i for i, s in enumerate(self.strings)}
        return self._pos


_DTYPES = {"number": np.float64, "date": np.int64, "bool": np.int8}


def _unique(ords: np.ndarray) -> np.ndarray:
    """Sorted distinct ordinals; O(k) when ``ords`` is already sorted (one value's slice of
    a stably sorted column), a sort otherwise."""
    if len(ords) > 1 and not bool(np.all(ords[1:] >= ords[:-1])):
        return np.unique(ords).astype(np.int32, copy=False)
    if len(ords) > 1:
        ords = ords[np.concatenate(([True], ords[1:] != ords[:-1]))]
    return ords.astype(np.int32, copy=False)


class MetadataIndex:
    """Per-field value columns of one segment's documents (ordinal = position)."""

    def __init__(self, n_docs: int, fields: dict[str, _Field]) -> None:
        self.n_docs = n_docs
        self._fields = fields

    # -- building -----------------------------------------------------------------------
    @classmethod
    def build(cls, metas: Sequence[Mapping[str, Any]]) -> MetadataIndex:
        pairs: dict[str, dict[str, tuple[list[Any], list[int]]]] = {}
        dates: dict[str, tuple[int, int] | None] = {}  # each distinct string parsed once
        for ordinal, meta in enumerate(metas):
            for name, raw in meta.items():
                # the typing of semsearch.filters.field_values, inlined for speed
                for v in raw if isinstance(raw, list) else (raw,):
                    if isinstance(v, str):
                        if v not in dates:
                            dates[v] = parse_date(v)
                        period = dates[v]
                        t, x = ("date", period[0]) if period is not None else ("string", v)
                    elif isinstance(v, bool):
                        t, x = "bool", int(v)
                    elif isinstance(v, (int, float)) and v == v:  # not NaN
                        t, x = "number", v
                    else:
                        continue
                    col = pairs.setdefault(name, {}).setdefault(t, ([], []))
                    col[0].append(x)
                    col[1].append(ordinal)
        fields: dict[str, _Field] = {}
        for name, cols in pairs.items():
            fld = _Field(types=set(cols))
            all_ords: list[np.ndarray] = []
            for t, (vals, ords) in cols.items():
                o = np.asarray(ords, dtype=np.int32)
                all_ords.append(o)
                if t == "string":
                    order = sorted(range(len(vals)), key=vals.__getitem__)
                    svals = [vals[i] for i in order]
                    fld.str_ords = o[np.asarray(order, dtype=np.int64)] if order else _EMPTY
                    starts = [0] + [i for i in range(1, len(svals)) if svals[i] != svals[i - 1]]
                    fld.strings = [svals[i] for i in starts]
                    fld.str_offsets = np.asarray(starts + [len(svals)], dtype=np.int64)
                else:
                    v = np.asarray(vals, dtype=_DTYPES[t])
                    order = np.argsort(v, kind="stable")
                    fld.sorted_cols[t] = (v[order], o[order])
            fld.exists = _unique(np.concatenate(all_ords))
            fields[name] = fld
        return cls(len(metas), fields)

    def field_types(self) -> dict[str, set[str]]:
        """The value types each field holds in this segment (for :func:`check_types`)."""
        return {name: set(f.types) for name, f in self._fields.items()}

    # -- evaluation ---------------------------------------------------------------------
    def mask(self, f: Filter | None) -> np.ndarray:
        """A bool array over the ordinals: which documents satisfy ``f`` (None: all). Built
        as boolean algebra over per-clause masks, so a clause that selects half a large
        segment costs a scatter, not the sort of :meth:`ordinals` (duplicates and order do
        not matter to a mask)."""
        if f is None:
            return np.ones(self.n_docs, dtype=bool)
        if isinstance(f, And):
            out = self.mask(f.children[0]) if f.children else np.ones(self.n_docs, dtype=bool)
            for c in f.children[1:]:
                out &= self.mask(c)
            return out
        if isinstance(f, Or):
            out = np.zeros(self.n_docs, dtype=bool)
            for c in f.children:
                out |= self.mask(c)
            return out
        if isinstance(f, Not):
            return ~self.mask(f.child)
        out = np.zeros(self.n_docs, dtype=bool)
        out[self._leaf(f)] = True
        return out

    def ordinals(self, f: Filter) -> np.ndarray:
        """The sorted distinct ordinals that satisfy ``f``."""
        if isinstance(f, And):
            kids = sorted((self.ordinals(c) for c in f.children), key=len)
            acc = kids[0]
            if len(kids) > 1 and len(acc):
                seen = np.zeros(self.n_docs, dtype=np.int32)
                for k in kids[1:]:
                    seen[k] += 1
                acc = acc[seen[acc] == len(kids) - 1]
            return acc
        if isinstance(f, Or):
            parts = [self.ordinals(c) for c in f.children]
            return _unique(np.concatenate(parts)) if parts else _EMPTY
        if isinstance(f, Not):
            keep = np.ones(self.n_docs, dtype=bool)
            keep[self.ordinals(f.child)] = False
            return np.flatnonzero(keep).astype(np.int32)
        leaf = self._leaf(f)
        return leaf if isinstance(f, Exists) else _unique(leaf)

    def _leaf(self, f: Filter) -> np.ndarray:
        """The ordinals that satisfy a leaf clause, in no order and possibly repeated (an
        ``Exists``: sorted and distinct); :meth:`ordinals` sorts them, :meth:`mask` scatters."""
        fld = self._fields.get(f.field)
        if fld is None:
            return _EMPTY
        if isinstance(f, Exists):
            return fld.exists
        if isinstance(f, Eq):
            return self._eq(fld, f.value)
        if isinstance(f, AnyOf):
            return np.concatenate([self._eq(fld, v) for v in f.values])
        if isinstance(f, Range):
            return self._range(fld, f)
        raise TypeError(f"not a filter: {f!r}")  # pragma: no cover

    @staticmethod
    def _slice(fld: _Field, t: str, lo: Any, hi: Any, lo_side: str, hi_side: str) -> np.ndarray:
        col = fld.sorted_cols.get(t)
        if col is None:
            return _EMPTY
        vals, ords = col
        a = 0 if lo is None else int(np.searchsorted(vals, lo, side=lo_side))
        b = len(vals) if hi is None else int(np.searchsorted(vals, hi, side=hi_side))
        return ords[a:b] if b > a else _EMPTY

    def _eq(self, fld: _Field, v: Scalar) -> np.ndarray:
        if isinstance(v, str):
            i = fld.string_pos().get(v)
            exact = _EMPTY if i is None else fld.str_ords[fld.str_offsets[i]:fld.str_offsets[i + 1]]
            period = parse_date(v, year=True)
            if period is None:
                return exact
            return np.concatenate([exact, self._slice(fld, "date", *period, "left", "right")])
        if isinstance(v, bool):
            return self._slice(fld, "bool", int(v), int(v), "left", "right")
        return self._slice(fld, "number", float(v), float(v), "left", "right")

    def _range(self, fld: _Field, r: Range) -> np.ndarray:
        b = r.bounds()
        kind = r.kind
        lo = hi = None
        lo_side = hi_side = "left"
        if kind == "number":
            if "gte" in b:
                lo, lo_side = float(b["gte"]), "left"
            if "gt" in b:
                lo, lo_side = float(b["gt"]), "right"
            if "lte" in b:
                hi, hi_side = float(b["lte"]), "right"
            if "lt" in b:
                hi, hi_side = float(b["lt"]), "left"
            return self._slice(fld, "number", lo, hi, lo_side, hi_side)
        parts = []
        if kind == "date":  # Elasticsearch's rounding: gte/lt round down, gt/lte up
            if "gte" in b:
                lo, lo_side = parse_date(b["gte"], year=True)[0], "left"  # type: ignore[arg-type,index]
            if "gt" in b:
                lo, lo_side = parse_date(b["gt"], year=True)[1], "right"  # type: ignore[arg-type,index]
            if "lte" in b:
                hi, hi_side = parse_date(b["lte"], year=True)[1], "right"  # type: ignore[arg-type,index]
            if "lt" in b:
                hi, hi_side = parse_date(b["lt"], year=True)[0], "left"  # type: ignore[arg-type,index]
            parts.append(self._slice(fld, "date", lo, hi, lo_side, hi_side))
        # string values compare lexicographically (also with ISO-date bounds)
        s = fld.strings
        a, z = 0, len(s)
        if "gte" in b:
            a = bisect.bisect_left(s, b["gte"])
        if "gt" in b:
            a = bisect.bisect_right(s, b["gt"])
        if "lte" in b:
            z = bisect.bisect_right(s, b["lte"])
        if "lt" in b:
            z = bisect.bisect_left(s, b["lt"])
        if z > a:
            parts.append(fld.str_ords[fld.str_offsets[a]:fld.str_offsets[z]])
        return np.concatenate(parts) if parts else _EMPTY

    # -- persistence --------------------------------------------------------------------
    def save(self, arrays: ArrayWriter, prefix: str = "meta") -> dict[str, Any]:
        """Add the columns to ``arrays`` as ``<prefix>.f<i>.<column>`` and return the rest
        (format, n_docs, per field its types, columns and distinct strings) as JSON for the
        caller to store (the segment's ``segment.json``)."""
        fields: dict[str, Any] = {}
        for i, (name, fld) in enumerate(self._fields.items()):
            cols = {"exists": fld.exists}
            for t, (vals, ords) in fld.sorted_cols.items():
                cols[f"{t}_values"], cols[f"{t}_ords"] = vals, ords
            if fld.strings:
                cols["string_offsets"], cols["string_ords"] = fld.str_offsets, fld.str_ords
            for col, arr in cols.items():
                arrays.add(f"{prefix}.f{i}.{col}", arr)
            fields[name] = {"file": f"f{i}", "types": sorted(fld.types), "columns": sorted(cols),
                            "strings": fld.strings}
        return {"format": FORMAT, "n_docs": self.n_docs, "fields": fields}

    @classmethod
    def load(cls, arrays: ArrayFile, info: dict[str, Any], prefix: str = "meta") -> MetadataIndex:
        """The index :meth:`save` wrote (``info`` is what it returned), its columns copied
        into memory."""
        where = f"metadata index in {arrays.path}"
        if info.get("format") != FORMAT:
            raise IndexIncompatible(
                f"{where} has format {info.get('format')!r}; this version reads "
                f"format {FORMAT}: rebuild the index"
            )
        fields: dict[str, _Field] = {}
        try:
            for name, spec in info["fields"].items():
                arr = {c: np.array(arrays[f"{prefix}.{spec['file']}.{c}"]) for c in spec["columns"]}
                fld = _Field(types=set(spec["types"]), exists=arr["exists"], strings=spec["strings"])
                for t in _DTYPES:
                    if f"{t}_values" in arr:
                        fld.sorted_cols[t] = (arr[f"{t}_values"], arr[f"{t}_ords"])
                if "string_offsets" in arr:
                    fld.str_offsets, fld.str_ords = arr["string_offsets"], arr["string_ords"]
                fields[name] = fld
            n_docs = int(info["n_docs"])
        except (KeyError, TypeError, ValueError) as e:
            raise IndexIncompatible(f"{where} is damaged: {e}") from e
        return cls(n_docs, fields)


def union_types(indexes: Iterable[MetadataIndex]) -> dict[str, set[str]]:
    """The field types across segments (what :func:`check_types` takes)."""
    out: dict[str, set[str]] = {}
    for m in indexes:
        for name, ts in m.field_types().items():
            out.setdefault(name, set()).update(ts)
    return out
