"""Query-term highlighting for result snippets.

A document word matches when its analysed form (lowercased, Snowball-stemmed, stopwords
dropped: the embedded BM25 analysis) equals that of a query word, so "vaccines" in a query
marks "vaccine" (and "vaccination": same Snowball stem) but not "revaccinate". Highlights are character offsets into the snippet
text; the client builds the markup (no HTML comes from the server).
"""

from __future__ import annotations

import re
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


def matches(text: str, terms: set[str], *, stemmer: str = "english") -> list[tuple[int, int]]:
    """Offsets of the words of ``text`` whose stem is one of ``terms``."""
    if not terms:
        return []
    stem, _ = _analysis(stemmer, "none")
    return [(m.start(), m.end()) for m in WORD.finditer(text) if stem(m.group().lower()) in terms]


def snippet(
    text: str, terms: set[str], *, max_chars: int = 240, stemmer: str = "english"
) -> Snippet:
    """The ``max_chars`` window of ``text`` holding the most matched words, with their offsets."""
    spans = matches(text, terms, stemmer=stemmer)
    if len(text) <= max_chars:
        return Snippet(text, spans)
    best_start, best_n, j = 0, -1, 0
    for i, (s, _) in enumerate(spans):  # two pointers: spans[i:j] fit in a window from s
        j = max(j, i)
        while j < len(spans) and spans[j][1] <= s + max_chars:
            j += 1
        if j - i > best_n:
            best_start, best_n = s, j - i
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
