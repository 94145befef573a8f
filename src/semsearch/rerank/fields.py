"""The field layout shared by training and inference.

A document becomes ``title [SEP] text``; the pair ``(query, document)`` must fit
``max_length`` tokens. The query is never truncated: the document is cut (text first, then the
title) at a token boundary of the original string, so training and inference see the same
input for the same settings.

A query too long to leave ``min_document_tokens`` for the document is either refused
(``BadInput``, what training does: it skips such queries) or, with ``extend=True`` (what
search does), scored with a longer pair for that query alone: ``pair_length`` says how long,
up to the model's own limit. A short ``max_length`` chosen for latency then costs long
queries time, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from semsearch.documents import Document
from semsearch.errors import BadInput

#: [CLS] query [SEP] document [SEP]
_SPECIALS = 3


def _field(doc: Document | Mapping[str, Any], name: str) -> str:
    if isinstance(doc, Mapping):
        return str(doc.get(name) or "")
    return str(getattr(doc, name, "") or "")


class FieldLayout:
    """Turns ``(query, document)`` into the ``(query, document_text)`` pair a cross-encoder
    scores. ``tokenizer`` is a Hugging Face fast tokenizer (the cross-encoder's)."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_length: int,
        fields: Sequence[str] = ("title", "text"),
        separator: str | None = None,
        extend: bool = False,
        min_document_tokens: int = 16,
        model_max_length: int = 512,
    ) -> None:
        if not fields:
            raise BadInput("rerank fields must name at least one of 'title', 'text'")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.fields = tuple(fields)
        self.separator = separator if separator is not None else (tokenizer.sep_token or "|")
        self._sep_len = self._len(self.separator)
        self.extend = extend
        self.min_document_tokens = min_document_tokens
        self.model_max_length = max(model_max_length, max_length)

    def _len(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _cut(self, text: str, n_tokens: int) -> str:
        """The longest prefix of ``text`` that is at most ``n_tokens`` tokens."""
        if n_tokens <= 0 or not text:
            return ""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        if len(offsets) <= n_tokens:
            return text
        return text[: offsets[n_tokens - 1][1]]

    def _plan(self, query: str) -> tuple[int, int]:
        """(pair length, document budget) for this query."""
        q = self._len(query)
        if self.max_length - q - _SPECIALS >= (self.min_document_tokens if self.extend else 1):
            return self.max_length, self.max_length - q - _SPECIALS
        needed = q + _SPECIALS + self.min_document_tokens
        if not self.extend or needed > self.model_max_length:
            limit = f"max_length={self.max_length}" if not self.extend else f"the model's {self.model_max_length} tokens"
            raise BadInput(
                f"query of {q} tokens does not fit rerank {limit} "
                "(the query is never truncated); shorten it or raise max_length"
            )
        return needed, self.min_document_tokens

    def pair_length(self, query: str) -> int:
        """Tokens of each ``(query, document)`` pair for this query: ``max_length``, or with
        ``extend`` and a long query, the query + special tokens + ``min_document_tokens``."""
        return self._plan(query)[0]

    def query_budget(self, query: str) -> int:
        """Tokens left for the document after the query and the special tokens."""
        return self._plan(query)[1]

    def document_text(self, doc: Document | Mapping[str, Any], budget: int) -> str:
        parts = [p for p in (_field(doc, f).strip() for f in self.fields) if p]
        out: list[str] = []
        for part in parts:
            cost = self._sep_len if out else 0
            if budget - cost <= 0:
                break
            piece = self._cut(part, budget - cost)
            if not piece:
                break
            if out:
                out.append(self.separator)
            out.append(piece)
            budget -= cost + self._len(piece)
            if piece != part:
                break
        return " ".join(out)

    def pair(self, query: str, doc: Document | Mapping[str, Any]) -> tuple[str, str]:
        return query, self.document_text(doc, self.query_budget(query))

    def pairs(self, query: str, docs: Sequence[Document | Mapping[str, Any]]) -> list[tuple[str, str]]:
        return self.pairs_and_length(query, docs)[0]

    def pairs_and_length(
        self, query: str, docs: Sequence[Document | Mapping[str, Any]]
    ) -> tuple[list[tuple[str, str]], int]:
        """:meth:`pairs` and the token length the model must accept for them."""
        length, budget = self._plan(query)
        return [(query, self.document_text(d, budget)) for d in docs], length
