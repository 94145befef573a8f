"""Query-term highlighting for result snippets.

A document word matches when its analysed form (lowercased, Snowball-stemmed, stopwords
dropped: the embedded BM25 analysis) equals that of a query word, so "vaccines" in a query
marks "vaccine" (and "vaccination": same Snowball stem) but not "revaccinate". Highlights are character offsets into the snippet
text; the client builds the markup (no HTML comes from the server).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache

WORD = re.compile(r"(?u)\b\w\w+\b")


@lru_cache(maxsize=4)
def _analysis(stemmer: str, stopwords: str):  # noqa: ANN202 - (stem function, stopword set)
    import Stemmer
    from bm25s.stopwords import STOPWORDS_EN

    stem = Stemmer.Stemmer(stemmer).stemWord if stemmer != "none" else (lambda w: w)
    stops = frozenset(STOPWORDS_EN) if stopwords == "en" else frozenset()
    return stem, stops


@dataclass
class Snippet:
    text: str
    #: ``[start, end)`` character offsets of matched words in ``text``
    highlights: list[tuple[int, int]] = field(default_factory=list)
    #: whether text was cut at the start / at the end
    truncated_start: bool = False
    truncated_end: bool = False


def query_terms(query: str, *, stemmer: str = "english", stopwords: str = "en") -> set[str]:
    stem, stops = _analysis(stemmer, stopwords)
    return {stem(w) for w in (m.lower() for m in WORD.findall(query)) if w not in stops}


#: stems of lowercased words already seen (per stemmer); cleared when it grows past the cap
_STEMS: dict[str, dict[str, str]] = {}
_STEM_CACHE_MAX = 200_000


@lru_cache(maxsize=4)
def _stem_many(stemmer: str):  # noqa: ANN202 - list[str] -> list[str]
    if stemmer == "none":
        return lambda words: list(words)
    import Stemmer

    return Stemmer.Stemmer(stemmer).stemWords


def _stem_cache(words: list[str], stemmer: str) -> dict[str, str]:
    """The stem cache of ``stemmer`` (lowercase word -> stem), holding each of ``words``
    (lowercase): one C call stems the ones not seen before."""
    cache = _STEMS.setdefault(stemmer, {})
    missing = [w for w in set(words) if w not in cache]
    if missing:
        if len(cache) + len(missing) > _STEM_CACHE_MAX:
            cache.clear()
        cache.update(zip(missing, _stem_many(stemmer)(missing)))
    return cache


#: Snowball English keeps all but (at most) the last character of a stem as the start of the
#: word, and a stem of one or two characters whole, so a word can only stem to ``t`` if it
#: starts with ``t[:-1]`` (``t`` when shorter than 3); the exceptions are the three-letter
#: stems in "ie" of "-ying" words ("dying" -> "die", "vying" -> "vie"). Checked over SciFact's
#: 36k-word vocabulary and 0.9M words from hunspell's en_US list with common suffixes
#: (tests/search/test_highlight_collapse.py checks a sample). The longer the prefix, the fewer words are
#: stemmed only to be rejected: a one-letter prefix (the rule for short stems until
#: 2026-12-04) found every word starting with that letter, and a digit's every number


@lru_cache(maxsize=2048)
def _candidates(terms: frozenset[str], stemmer: str, flags: int) -> re.Pattern[str]:
    """A pattern that finds every word that might stem to one of ``terms`` (and some that
    do not: they are checked): words starting with a term less its last character."""
    if stemmer == "none":
        alts = set(terms)
        return re.compile(r"(?u)\b(?:" + "|".join(map(re.escape, sorted(alts, key=len, reverse=True))) + r")\b",
                          flags)
    return re.compile(r"(?u)\b(?:" + "|".join(map(re.escape, _prefixes(terms))) + r")\w*", flags)


_WORD_REST = re.compile(r"(?u)\w*")


@lru_cache(maxsize=2048)
def _prefixes(terms: frozenset[str]) -> tuple[str, ...]:
    """The starts a word must have to stem (Snowball) to one of ``terms`` (see ``_candidates``),
    without those that another one already covers."""
    alts = set()
    for t in terms:
        alts.add(t[:-1] if len(t) >= 3 else t)
        if len(t) == 3 and t.endswith("ie"):  # "dying" -> "die"
            alts.add(t[0] + "y")
    return tuple(sorted(a for a in alts if not any(b != a and a.startswith(b) for b in alts)))


def _candidate_words(lower: str, terms: set[str]) -> list[tuple[int, int, str]]:
    """The words of ``lower`` that start with a term's prefix, as ``(start, end, word)``, in
    order: what ``_candidates``' pattern finds, by ``str.find`` per prefix (a C scan) instead
    of trying every alternative at every word boundary (several times faster on abstracts).
    No prefix starts another (``_prefixes``), so no word is found twice."""
    starts = []
    find = lower.find
    for pre in _prefixes(frozenset(terms)):
        n = len(pre)
        i = find(pre)
        while i >= 0:
            # a word starts here: no word character before (\w is isalnum() or "_")
            if i == 0 or not (lower[i - 1].isalnum() or lower[i - 1] == "_"):
                starts.append(i)
            i = find(pre, i + n)
    if not starts:
        return []
    starts.sort()
    rest = _WORD_REST.match
    out = []
    for i in starts:
        end = rest(lower, i).end()
        if end - i >= 2:
            out.append((i, end, lower[i:end]))
    return out


def matches(text: str, terms: set[str], *, stemmer: str = "english") -> list[tuple[int, int]]:
    """Offsets of the words of ``text`` whose stem is one of ``terms``.

    A C-speed scan finds the few words that could match, by their first characters; only
    those are stemmed (from a cache). The cost of a long text is a scan, not a stemmer call
    per word."""
    if not terms:
        return []
    lower = text.lower()
    if len(lower) == len(text) and stemmer != "none":  # offsets agree (almost always)
        found = _candidate_words(lower, terms)
    else:  # exact words, or a character whose lowercase is longer (e.g. U+0130): a pattern
        flags = 0 if len(lower) == len(text) else re.IGNORECASE
        lower = lower if len(lower) == len(text) else text
        pattern = _candidates(frozenset(terms), stemmer, flags)
        found = [(m.start(), m.end(), m.group().lower()) for m in pattern.finditer(lower)
                 if m.end() - m.start() >= 2]
    if not found:
        return []
    stems = _stem_cache([w for _, _, w in found], stemmer)
    return [(a, b) for a, b, w in found if stems[w] in terms]


def snippet(
    text: str, terms: set[str], *, max_chars: int = 240, stemmer: str = "english"
) -> Snippet:
    """The ``max_chars`` window of ``text`` holding the most matched words, with their offsets."""
    spans = matches(text, terms, stemmer=stemmer)
    if len(text) <= max_chars:
        return Snippet(text, spans)
    best_start, best_n = 0, -1
    ends = [b for _, b in spans]  # increasing: words do not overlap
    for i, (s, _) in enumerate(spans):  # spans[i:j] fit in a window from s
        n = bisect_right(ends, s + max_chars, i) - i
        if n > best_n:
            best_start, best_n = s, n
    # start a little before the first match, on a word boundary
    start = max(0, best_start - max_chars // 5) if spans else 0
    if start > 0:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < best_start else start
    end = min(len(text), start + max_chars)
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > start else end
    window = text[start:end]
    hl = [(a - start, b - start) for a, b in spans if a >= start and b <= end]
    return Snippet(window, hl, truncated_start=start > 0, truncated_end=end < len(text))
