"""Text analysis of the embedded lexical channel: lowercase, split on word characters, drop
English stopwords, Snowball-stem, through bm25s's tokenizer. The same analysis is applied to
documents (segments/lexical.py stores its token counts) and to queries."""

from __future__ import annotations

from collections.abc import Sequence


class Analyzer:
    """Lowercase, split on word characters, drop English stopwords, Snowball-stem: the same
    analysis bm25s's own tokenizer does, applied identically to documents and queries."""

    def __init__(self, stemmer: str = "english", stopwords: str = "en") -> None:
        import bm25s  # noqa: F401 - fail early when missing
        import Stemmer

        self._stemmer = Stemmer.Stemmer(stemmer) if stemmer != "none" else None
        self._stopwords = stopwords if stopwords != "none" else None

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        import bm25s

        if not texts:
            return []
        toks = bm25s.tokenize(
            list(texts),
            stopwords=self._stopwords or [],
            stemmer=self._stemmer.stemWords if self._stemmer else None,
            return_ids=False,
            show_progress=False,
        )
        return [list(t) for t in toks]
