"""Immutable lexical segments, scored with corpus-wide BM25 statistics.

A :class:`LexicalSegment` holds the term frequencies of a group of documents, written once
and never changed: deletes are the caller's live bitmaps (tombstones), an upsert is a delete
plus the new version in a later segment, and :meth:`LexicalSegment.merge` rewrites the live
documents of several segments into one. A :class:`BM25Searcher` is one point-in-time view (a
snapshot) over the live segments; it scores with the statistics of the live documents of all
its segments together, so a document scores the same whichever segment holds it, and the
scores equal, bit for bit, those of one ``bm25s.BM25`` index built over the live documents
(same ``k1``, ``b``, ``method``, bm25s's default ``delta`` = 0.5), summed over fields with the
per-field boosts exactly as the bm25s index it replaced (one ``bm25s.BM25``
per field) does. The tests pin that parity for every method. (Bitwise parity relies on NumPy 2's type
promotion, the one bm25s's arithmetic gets here; under NumPy 1 the scores would agree only
to float32 rounding.)

Why not bm25s's own matrices: bm25s stores ``idf * tf-part`` precomputed at index time, and
both parts depend on the whole corpus (document frequencies, average length), so they go
stale whenever any segment changes. A segment therefore stores raw term frequencies and the
document lengths, and the searcher does the BM25 arithmetic at query time over the postings
of the query terms only (numpy slices of CSC columns, no Python loop over documents).

Interface (the segment manager calls these)::

    seg = LexicalSegment.build(title_tokens, text_tokens)   # token lists from the Analyzer
    seg.n_docs, seg.fields["all" | "title" | "text"], seg.terms, seg.nbytes()
    info = seg.save(arrays)        # arrays into a container.ArrayWriter; info: JSON to keep
    seg = LexicalSegment.load(array_file, info)             # big arrays memory-mapped
    merged = LexicalSegment.merge([seg_a, seg_b], keep=[ords_a, ords_b])
        # keep[i]: sorted ordinals of segments[i] to carry over; the merged ordinals are the
        # kept ones of segments[0], then those of segments[1], ... in order
    searcher = BM25Searcher(segments, live, settings)       # live[i]: bool array or None
    searcher.search_many(queries, k, boosts={"all": 1.0}, masks=None)
        # -> per query, up to k (segment index, ordinal, score), best first; ties broken by
        #    (segment index, ordinal), i.e. the order of the live documents
    searcher.doc_count()

Segment layout: one vocabulary per segment (``terms``, sorted by code point, shared by the
three fields: a term's column is the same in each), and per field a CSC matrix documents x
terms of term frequencies: ``indptr`` (int64, one more than the terms), ``indices`` (int32
document ordinals, increasing within a column), ``data`` (uint16, or uint32 when a frequency
does not fit), plus ``doc_len`` (int32 tokens per document). ``all`` is the title tokens
followed by the text tokens. Sorted vocabularies make a merge a sorted-run merge.

Saved, a segment is the arrays ``lexical.<field>.{indptr,indices,tf,doc_len}`` in its segment's
one array container (``arrays.bin``, segments/container.py) plus a JSON object (format,
document count, dtypes, the terms in column order) that the segment keeps in its
``segment.json``.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semsearch.config import EmbeddedLexicalSettings
from semsearch.errors import BadInput, IndexIncompatible
from semsearch.indexer.segments.container import ArrayFile, ArrayWriter

FIELDS = ("all", "title", "text")
FORMAT = "semsearch-lexical-segment"
FORMAT_VERSION = 2  # 2: the arrays in the segment's container, the vocabulary in its JSON
#: bm25s's default ``delta`` of BM25L and BM25+ (``bm25s.BM25(delta=0.5)``); the embedded
#: index does not change it
BM25S_DELTA = 0.5
_ARRAYS = ("indptr", "indices", "tf", "doc_len")
#: a filter that allows at most this share of a segment's documents is applied to the
#: postings before they are scored (above it, the gather costs about what it saves)
_NARROW = 0.25


@dataclass(frozen=True)
class FieldPostings:
    """Term frequencies of one field: CSC documents x terms, plus per-document lengths.

    ``vocab`` (term -> column) is the segment's vocabulary, shared by its fields."""

    vocab: dict[str, int]
    indptr: np.ndarray  # int64 [n_terms + 1]
    indices: np.ndarray  # int32 [n_postings], document ordinals
    data: np.ndarray  # uint16/uint32 [n_postings], term frequencies
    doc_len: np.ndarray  # int32 [n_docs]

    def column(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(ordinals, frequencies) of the documents holding ``term``, or None."""
        col = self.vocab.get(term)
        if col is None:
            return None
        s, e = int(self.indptr[col]), int(self.indptr[col + 1])
        if s == e:
            return None
        return self.indices[s:e], self.data[s:e]

    def nbytes(self) -> int:
        return int(
            self.indptr.nbytes + self.indices.nbytes + self.data.nbytes + self.doc_len.nbytes
        )


def _tf_dtype(max_tf: int) -> np.dtype:
    return np.dtype(np.uint16) if max_tf <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def _csc(
    cols: np.ndarray, docs: np.ndarray, tf: np.ndarray, n_terms: int
) -> tuple[np.ndarray, ...]:
    """indptr, indices, data from postings already sorted by (column, document)."""
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(np.bincount(cols, minlength=n_terms), out=indptr[1:])
    data = tf.astype(_tf_dtype(int(tf.max(initial=0))), copy=False)
    return indptr, docs.astype(np.int32, copy=False), data


def _count_pairs(ids: np.ndarray, lens: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys ``column * n_docs + ordinal`` with their counts (term frequencies)."""
    if ids.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    docs = np.repeat(np.arange(n_docs, dtype=np.int64), lens)
    return np.unique(ids * n_docs + docs, return_counts=True)


class LexicalSegment:
    """Term frequencies of a group of documents, immutable once built (see module doc)."""

    def __init__(self, n_docs: int, terms: list[str], fields: dict[str, FieldPostings]) -> None:
        self.n_docs = n_docs
        self.terms = terms
        self.fields = fields

    @property
    def vocab(self) -> dict[str, int]:
        return self.fields["all"].vocab

    def __repr__(self) -> str:
        return f"LexicalSegment(n_docs={self.n_docs}, terms={len(self.terms)})"

    # -- building -----------------------------------------------------------------------
    @classmethod
    def build(
        cls, title_tokens: Sequence[list[str]], text_tokens: Sequence[list[str]]
    ) -> LexicalSegment:
        """A segment of ``len(title_tokens)`` documents; ordinal i is document i."""
        if len(title_tokens) != len(text_tokens):
            raise BadInput(
                f"title and text token lists differ in length ({len(title_tokens)} != {len(text_tokens)})"
            )
        n = len(title_tokens)
        first: dict[str, int] = {}
        add = first.setdefault
        raw = {}
        lens = {}
        for name, docs in (("title", title_tokens), ("text", text_tokens)):
            flat = [add(t, len(first)) for t in itertools.chain.from_iterable(docs)]
            raw[name] = np.array(flat, dtype=np.int64)
            lens[name] = np.fromiter(map(len, docs), dtype=np.int64, count=n)
        terms = sorted(first)
        vocab = {t: i for i, t in enumerate(terms)}
        rank = np.empty(len(terms), dtype=np.int64)
        rank[np.fromiter((first[t] for t in terms), dtype=np.int64, count=len(terms))] = np.arange(
            len(terms)
        )
        n_terms = len(terms)
        keys: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in ("title", "text"):
            keys[name] = _count_pairs(rank[raw[name]], lens[name], n)
        # "all": the (column, document) pairs of both fields, frequencies added
        k = np.concatenate([keys["title"][0], keys["text"][0]])
        c = np.concatenate([keys["title"][1], keys["text"][1]])
        order = np.argsort(k, kind="stable")
        k, c = k[order], c[order]
        if k.size:
            starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
            keys["all"] = (k[starts], np.add.reduceat(c, starts))
        else:
            keys["all"] = (k, c)
        lens["all"] = lens["title"] + lens["text"]
        fields = {}
        for name in FIELDS:
            key, tf = keys[name]
            indptr, indices, data = _csc(key // max(n, 1), key % max(n, 1), tf, n_terms)
            fields[name] = FieldPostings(vocab, indptr, indices, data, lens[name].astype(np.int32))
        return cls(n, terms, fields)

    @staticmethod
    def merge(segments: Sequence[LexicalSegment], keep: Sequence[np.ndarray]) -> LexicalSegment:
        """One segment with the documents ``keep[i]`` (sorted ordinals) of each
        ``segments[i]``, in that order; terms left in no kept document are dropped."""
        if len(segments) != len(keep):
            raise BadInput(f"{len(segments)} segments but {len(keep)} keep arrays")
        keep = [np.asarray(kp, dtype=np.int64) for kp in keep]
        for seg, kp in zip(segments, keep):
            if kp.size and (kp[0] < 0 or kp[-1] >= seg.n_docs or np.any(np.diff(kp) <= 0)):
                raise BadInput("keep must hold sorted, unique ordinals of its segment")
        n = int(sum(kp.size for kp in keep))
        all_terms = sorted(set().union(*(seg.terms for seg in segments)))
        new_vocab = {t: i for i, t in enumerate(all_terms)}
        # sorted vocabularies: each old -> new column map is increasing
        tmaps = [
            np.fromiter((new_vocab[t] for t in seg.terms), np.int64, len(seg.terms))
            for seg in segments
        ]
        docmaps, offset = [], 0
        for seg, kp in zip(segments, keep):
            dm = np.full(seg.n_docs, -1, dtype=np.int64)
            dm[kp] = offset + np.arange(kp.size)
            docmaps.append(dm)
            offset += kp.size
        merged: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        used = np.zeros(len(all_terms), dtype=bool)
        for name in FIELDS:
            cols, docs, tfs = [], [], []
            for seg, dm, tm in zip(segments, docmaps, tmaps):
                fp = seg.fields[name]
                nd = dm[fp.indices]
                sel = nd >= 0
                col = np.repeat(tm, np.diff(fp.indptr))
                cols.append(col[sel])
                docs.append(nd[sel])
                tfs.append(np.asarray(fp.data)[sel].astype(np.uint32))
            col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
            doc = np.concatenate(docs) if docs else np.zeros(0, np.int64)
            tf = np.concatenate(tfs) if tfs else np.zeros(0, np.uint32)
            # each run (one per segment) is sorted by (column, document), and the documents
            # of a later run come after those of an earlier one: a stable sort by column
            # yields (column, document) order
            order = np.argsort(col, kind="stable")
            col, doc, tf = col[order], doc[order], tf[order]
            used[col] = True
            dl = [np.asarray(seg.fields[name].doc_len)[kp] for seg, kp in zip(segments, keep)]
            doc_len = np.concatenate(dl).astype(np.int32) if dl else np.zeros(0, np.int32)
            merged[name] = (col, doc, tf, doc_len)
        renum = np.cumsum(used) - 1
        terms = [t for t, u in zip(all_terms, used) if u]
        vocab = {t: i for i, t in enumerate(terms)}
        fields = {}
        for name, (col, doc, tf, doc_len) in merged.items():
            indptr, indices, data = _csc(renum[col], doc, tf, len(terms))
            fields[name] = FieldPostings(vocab, indptr, indices, data, doc_len)
        return LexicalSegment(n, terms, fields)

    # -- persistence --------------------------------------------------------------------
    def save(self, arrays: ArrayWriter, prefix: str = "lexical") -> dict[str, Any]:
        """Add the postings to ``arrays`` as ``<prefix>.<field>.{indptr,indices,tf,doc_len}``
        and return the rest (format, counts, the vocabulary) as JSON for the caller to store
        (the segment's ``segment.json``)."""
        for name, fp in self.fields.items():
            for part, arr in zip(_ARRAYS, (fp.indptr, fp.indices, fp.data, fp.doc_len)):
                arrays.add(f"{prefix}.{name}.{part}", arr)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n_docs": self.n_docs,
            "n_terms": len(self.terms),
            "fields": {
                n: {"postings": int(fp.indices.size), "tf_dtype": str(fp.data.dtype)}
                for n, fp in self.fields.items()
            },
            "terms": self.terms,
        }

    @classmethod
    def load(
        cls, arrays: ArrayFile, info: dict[str, Any], prefix: str = "lexical", *, mmap: bool = True
    ) -> LexicalSegment:
        """The segment :meth:`save` wrote (``info`` is what it returned); the postings stay
        memory-mapped views of ``arrays`` unless ``mmap=False`` (copied into memory)."""
        where = f"lexical segment in {arrays.path}"
        if info.get("format") != FORMAT or info.get("format_version") != FORMAT_VERSION:
            raise IndexIncompatible(
                f"{where} has format {info.get('format')} v{info.get('format_version')}; this "
                f"version reads {FORMAT} v{FORMAT_VERSION}"
            )
        try:
            terms = info["terms"]
            n_docs = int(info["n_docs"])
            if len(terms) != info["n_terms"]:
                raise IndexIncompatible(f"{where}: the vocabulary does not match its term count")
            postings = {n: int(info["fields"][n]["postings"]) for n in FIELDS}
        except (KeyError, TypeError, ValueError) as e:
            raise IndexIncompatible(f"{where} is unreadable: {e}") from e
        vocab = {t: i for i, t in enumerate(terms)}
        fields = {}
        for name in FIELDS:
            arrs = {p: arrays[f"{prefix}.{name}.{p}"] for p in _ARRAYS}
            # small arrays are read into memory: they are touched on every query
            fields[name] = FieldPostings(
                vocab,
                np.array(arrs["indptr"]),
                arrs["indices"] if mmap else np.array(arrs["indices"]),
                arrs["tf"] if mmap else np.array(arrs["tf"]),
                np.array(arrs["doc_len"]),
            )
            fp = fields[name]
            if (
                fp.doc_len.shape != (n_docs,)
                or fp.indptr.shape != (len(terms) + 1,)
                or fp.indices.shape != (postings[name],)
                or fp.data.shape != (postings[name],)
            ):
                raise IndexIncompatible(f"{where}: field {name} has wrong array sizes")
        return cls(n_docs, terms, fields)

    def nbytes(self) -> int:
        """Bytes of the arrays plus an estimate of the vocabulary in memory."""
        arrays = sum(fp.nbytes() for fp in self.fields.values())
        # a dict entry plus a short str object: about 100 bytes a term in CPython
        return int(arrays + sum(len(t) for t in self.terms) + 100 * len(self.terms))


# -- BM25 ---------------------------------------------------------------------------------
# The formulas and the float types of bm25s 0.3 (bm25s/scoring.py), step by step, so that the
# scores are bitwise equal: idf computed in double and stored float32; the tf part computed
# in double from float32 frequencies (except that ``tf * (k1 + 1)`` stays float32 in atire and
# bm25+, as there); ``idf * tf part`` (minus the non-occurrence score in bm25l/bm25+) rounded
# to float32 per posting; postings added in float32 term by term in query order.


def _idf(method: str, df: int, n: int) -> float:
    if method == "robertson":
        inner = (n - df + 0.5) / (df + 0.5)
        return math.log(max(inner, 1))  # bm25s floors negative idf at 0 (allow_negative=False)
    if method == "lucene":
        return math.log(1 + (n - df + 0.5) / (df + 0.5))
    if method == "atire":
        return math.log(n / df)
    if method == "bm25l":
        return math.log((n + 1) / (df + 0.5))
    if method == "bm25+":
        return math.log((n + 1) / df)
    raise BadInput(f"unknown BM25 method {method!r}")


class BM25Searcher:
    """BM25 over a snapshot of segments with the statistics of their live documents.

    Query-independent statistics (live N, live average length per field, the per-document
    length normalisation) are computed once per searcher, the normalisation lazily per field.
    A searcher never changes; build a new one for a new snapshot. It is safe to share between
    threads; each thread that searches keeps two float32 accumulators per document (8 bytes
    a document) for the searcher's lifetime."""

    def __init__(
        self,
        segments: Sequence[LexicalSegment],
        live: Sequence[np.ndarray | None],
        settings: EmbeddedLexicalSettings,
        *,
        delta: float = BM25S_DELTA,
    ) -> None:
        if len(live) != len(segments):
            raise BadInput(f"{len(segments)} segments but {len(live)} live bitmaps")
        self.segments = list(segments)
        self.live: list[np.ndarray | None] = []
        for seg, lv in zip(self.segments, live):
            if lv is not None:
                lv = np.asarray(lv, dtype=bool)
                if lv.shape != (seg.n_docs,):
                    raise BadInput(f"live bitmap of {lv.shape} for a segment of {seg.n_docs} docs")
                if lv.all():
                    lv = None
            self.live.append(lv)
        self.method = settings.method
        _idf(self.method, 1, 1)  # validates the method
        self.k1, self.b, self.delta = settings.k1, settings.b, delta
        self.n_live = sum(
            seg.n_docs if lv is None else int(lv.sum()) for seg, lv in zip(self.segments, self.live)
        )
        self.avgdl: dict[str, float] = {}
        for name in FIELDS:
            total = 0
            for seg, lv in zip(self.segments, self.live):
                dl = seg.fields[name].doc_len
                total += int(dl.sum(dtype=np.int64) if lv is None else dl[lv].sum(dtype=np.int64))
            # bm25s: np.array(lengths).mean(), the exact sum divided by N, rounded once
            self.avgdl[name] = total / self.n_live if self.n_live else 0.0
        self._norms: dict[tuple[int, str], np.ndarray] = {}
        self._local = threading.local()

    def doc_count(self) -> int:
        return self.n_live

    def _norm(self, i: int, name: str) -> np.ndarray:
        """Per document: ``1 - b + b * dl / avgdl`` (bm25l) or ``k1 *`` that (the others)."""
        key = (i, name)
        out = self._norms.get(key)
        if out is None:
            dl = np.asarray(self.segments[i].fields[name].doc_len, dtype=np.float64)
            out = (1 - self.b) + self.b * dl / self.avgdl[name]
            if self.method != "bm25l":
                out = self.k1 * out
            self._norms[key] = out
        return out

    def _posting_scores(
        self,
        ords: np.ndarray,
        tf: np.ndarray,
        norm: np.ndarray,
        idf32: np.float32,
        nonocc: np.float32 | None,
    ) -> np.ndarray:
        """float32 ``idf * tf part`` (minus ``nonocc``) of the postings ``(ords, tf)``: the
        operations of bm25s in its order and types, done in place on one float64 buffer."""
        k1, delta = self.k1, self.delta
        tf = tf.astype(np.float32)  # bm25s's tf_array
        x = np.take(norm, ords)  # float64, per posting
        m = self.method
        if m in ("lucene", "robertson"):  # tf / (k1 * (1 - b + b * dl / avgdl) + tf)
            x += tf
            np.divide(tf, x, out=x)
        elif m == "atire":  # (tf * (k1 + 1)) / (tf + k1 * (...)), the numerator in float32
            x += tf
            np.divide(tf * (k1 + 1), x, out=x)
        elif m == "bm25l":  # c = tf / (...); ((k1 + 1) * (c + delta)) / (k1 + c + delta)
            np.divide(tf, x, out=x)
            num = x + delta
            num *= k1 + 1
            x += k1
            x += delta
            np.divide(num, x, out=x)
        else:  # bm25+: ((k1 + 1) * tf) / (k1 * (...) + tf) + delta, the numerator in float32
            x += tf
            np.divide((k1 + 1) * tf, x, out=x)
            x += delta
        x *= idf32
        if nonocc is not None:
            x -= nonocc
        return x.astype(np.float32)

    def _nonoccurrence(self, idf: float, avgdl: float) -> np.float32:
        """bm25l/bm25+: the score of a term a document lacks (bm25s subtracts it from each
        posting and adds it, summed over the query terms, to every document)."""
        k1, b, delta = self.k1, self.b, self.delta
        if self.method == "bm25l":
            c = 0 / (1 - b + b * avgdl / avgdl)
            tfc = ((k1 + 1) * (c + delta)) / (k1 + c + delta)
        else:
            tfc = ((k1 + 1) * 0) / (k1 * (1 - b + b * avgdl / avgdl) + 0) + delta
        return np.float32(idf * tfc)

    def _scratch(self, slot: int) -> list[np.ndarray]:
        """Zeroed float32 accumulators, one per segment, reused by this thread: fresh
        ``np.zeros`` of this size cost a page fault per 4 KiB on first touch."""
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = {}
        out = bufs.get(slot)
        if out is None:
            out = bufs[slot] = [np.zeros(seg.n_docs, dtype=np.float32) for seg in self.segments]
        else:
            for a in out:
                a.fill(0)
        return out

    def _field_scores(
        self, name: str, qtokens: list[str], slot: int, narrow: list[np.ndarray | None]
    ) -> list[np.ndarray] | None:
        """Per segment, the float32 BM25 scores of field ``name`` (dense over ordinals, in
        scratch buffers ``slot``), or None when no query term is in a live document's field.
        Where ``narrow[i]`` is given (a selective filter), only the postings it allows are
        scored; the others' scores stay 0 (the caller drops them) and the statistics are
        still those of every live document."""
        postings: dict[str, list[tuple[np.ndarray, np.ndarray] | None]] = {}
        df: dict[str, int] = {}
        for term in dict.fromkeys(qtokens):
            per_seg: list[tuple[np.ndarray, np.ndarray] | None] = []
            n = 0
            for seg, lv in zip(self.segments, self.live):
                col = seg.fields[name].column(term)
                if col is not None and lv is not None:
                    keep = lv[col[0]]
                    col = (col[0][keep], col[1][keep]) if not keep.all() else col
                    if col[0].size == 0:
                        col = None
                if col is not None:
                    n += col[0].size
                per_seg.append(col)
            if n:
                postings[term] = per_seg
                df[term] = n
        if not df:
            return None
        known = [t for t in qtokens if t in df]  # query order, repeats kept (as bm25s)
        avgdl = self.avgdl[name]
        nonocc = self.method in ("bm25l", "bm25+")
        scored: dict[str, list[tuple[np.ndarray, np.ndarray] | None]] = {}
        nonocc_of: dict[str, np.float32] = {}
        for term, per_seg in postings.items():
            idf = _idf(self.method, df[term], self.n_live)
            idf32 = np.float32(idf)
            if nonocc:
                nonocc_of[term] = self._nonoccurrence(idf, avgdl)
            out = []
            for i, col in enumerate(per_seg):
                if col is None:
                    out.append(None)
                    continue
                ords, tf = col
                if narrow[i] is not None:
                    keep = narrow[i][ords]
                    ords, tf = ords[keep], tf[keep]
                s = self._posting_scores(
                    ords, tf, self._norm(i, name), idf32, nonocc_of[term] if nonocc else None
                )
                out.append((ords, s))
            scored[term] = out
        accs = self._scratch(slot)
        for term in known:
            for acc, col in zip(accs, scored[term]):
                if col is not None:
                    # float32, as bm25s; a column's ordinals are distinct, so a buffered
                    # fancy-index add equals np.add.at bit for bit, at twice its speed
                    acc[col[0]] += col[1]
        if nonocc:
            const = np.array([nonocc_of[t] for t in known], dtype=np.float32).sum()
            for acc in accs:
                acc += const
        return accs

    def search_many(
        self,
        queries: Sequence[list[str]],
        k: int,
        *,
        boosts: dict[str, float],
        masks: Sequence[np.ndarray | None] | None = None,
    ) -> list[list[tuple[int, int, float]]]:
        """Per query (a token list), up to ``k`` hits ``(segment index, ordinal, score)``,
        best first, ties in (segment, ordinal) order: live documents with a score > 0 and,
        where ``masks[i]`` is given, True there."""
        if k < 1:
            raise BadInput(f"k must be >= 1, got {k}")
        unknown = set(boosts) - set(FIELDS)
        if unknown:
            raise BadInput(f"unknown boost field(s) {sorted(unknown)}; fields are {FIELDS}")
        if masks is not None and len(masks) != len(self.segments):
            raise BadInput(f"{len(self.segments)} segments but {len(masks)} masks")
        allowed: list[np.ndarray | None] = []
        narrow: list[np.ndarray | None] = []  # selective filters, pushed into the scoring
        for i, (seg, lv) in enumerate(zip(self.segments, self.live)):
            m = None if masks is None else masks[i]
            if m is not None:
                m = np.asarray(m, dtype=bool)
                if m.shape != (seg.n_docs,):
                    raise BadInput(f"mask of {m.shape} for segment {i} of {seg.n_docs} docs")
                m = m if lv is None else (m & lv)
                # a posting then costs a one-byte gather instead of its BM25 arithmetic
                narrow.append(m if np.count_nonzero(m) <= _NARROW * m.size else None)
            else:
                m = lv
                narrow.append(None)
            allowed.append(m)
        out = []
        for qtokens in queries:
            totals: list[np.ndarray] | None = None
            if self.n_live and qtokens:
                for name, weight in boosts.items():
                    if weight <= 0 or self.avgdl[name] == 0:
                        continue
                    scores = self._field_scores(
                        name, list(qtokens), 0 if totals is None else 1, narrow
                    )
                    if scores is None:
                        continue
                    for sc in scores:  # float32 * weight, in place
                        np.multiply(sc, weight, out=sc)
                    if totals is None:
                        totals = scores
                    else:
                        for t, sc in zip(totals, scores):
                            np.add(t, sc, out=t)
            out.append(self._top(totals, k, allowed))
        return out

    def _top(
        self, totals: list[np.ndarray] | None, k: int, allowed: list[np.ndarray | None]
    ) -> list[tuple[int, int, float]]:
        if totals is None:
            return []
        scores, segs, ords = [], [], []
        for i, (tot, ok) in enumerate(zip(totals, allowed)):
            hit = tot > 0  # (numpy's nonzero is much faster on bools than on floats)
            if ok is not None:
                hit &= ok
            o = np.flatnonzero(hit)
            s = tot[o]
            if o.size > k:  # this segment's best k, ties by ordinal
                kth = np.partition(s, o.size - k)[o.size - k]
                above = s > kth
                ties = np.flatnonzero(s == kth)[: k - int(above.sum())]
                sel = np.flatnonzero(above)
                sel = np.sort(np.concatenate([sel, ties]))
                o, s = o[sel], s[sel]
            scores.append(s)
            ords.append(o)
            segs.append(np.full(o.size, i, dtype=np.int64))
        if not scores:
            return []
        s, g, o = np.concatenate(scores), np.concatenate(segs), np.concatenate(ords)
        order = np.lexsort((o, g, -s))[:k]
        return [(int(g[j]), int(o[j]), float(s[j])) for j in order]
