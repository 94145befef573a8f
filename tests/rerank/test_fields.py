from __future__ import annotations

import pytest

from semsearch.documents import Document
from semsearch.errors import BadInput
from semsearch.rerank.fields import FieldLayout

LONG = " ".join(f"sentence {i} about antibodies and the immune response." for i in range(200))


def _segments(tok, q: str, d: str) -> tuple[list[int], list[int]]:
    enc = tok(q, d, add_special_tokens=True)
    ids, types = enc["input_ids"], enc["token_type_ids"]
    first = [i for i, t in zip(ids, types, strict=True) if t == 0][1:-1]  # drop [CLS], [SEP]
    second = [i for i, t in zip(ids, types, strict=True) if t == 1][:-1]
    return first, second


def test_truncation_keeps_query_intact_and_fits(fresh_cross_encoder) -> None:
    tok = fresh_cross_encoder.tokenizer
    layout = FieldLayout(tok, max_length=64)
    query = "do vaccines make the immune system produce antibodies against viruses " * 3
    q, d = layout.pair(query, Document(id="x", title="Vaccines and immunity", text=LONG))
    assert q == query
    enc = tok(q, d)
    assert len(enc["input_ids"]) <= 64
    first, second = _segments(tok, q, d)
    assert first == tok(query, add_special_tokens=False)["input_ids"]
    # the title comes first, then the separator, then as much text as fits
    assert d.startswith("Vaccines and immunity [SEP] sentence 0")
    assert len(enc["input_ids"]) >= 60  # the budget is used, not wasted


def test_short_document_is_not_cut(fresh_cross_encoder) -> None:
    layout = FieldLayout(fresh_cross_encoder.tokenizer, max_length=128)
    _, d = layout.pair("bees", {"title": "Honeybees", "text": "Bees pollinate crops."})
    assert d == "Honeybees [SEP] Bees pollinate crops."


def test_field_order_and_separator_are_settings(fresh_cross_encoder) -> None:
    layout = FieldLayout(fresh_cross_encoder.tokenizer, max_length=128, fields=("text",), separator=" | ")
    _, d = layout.pair("bees", {"title": "Honeybees", "text": "Bees pollinate crops."})
    assert d == "Bees pollinate crops."


def test_query_that_cannot_fit_is_rejected(fresh_cross_encoder) -> None:
    layout = FieldLayout(fresh_cross_encoder.tokenizer, max_length=16)
    with pytest.raises(BadInput, match="never truncated"):
        layout.pair("a query much longer than sixteen tokens " * 3, {"title": "t", "text": "x"})


def test_long_query_extends_the_pair_instead_of_failing(fresh_cross_encoder) -> None:
    """Search's rule (extend=True): a query that leaves fewer than min_document_tokens gets a
    longer pair for itself alone, query intact; beyond the model's own limit it is refused."""
    tok = fresh_cross_encoder.tokenizer
    layout = FieldLayout(tok, max_length=16, extend=True, min_document_tokens=6, model_max_length=64)
    query = "a query much longer than sixteen tokens " * 3
    q_len = len(tok(query, add_special_tokens=False)["input_ids"])
    pairs, length = layout.pairs_and_length(query, [{"title": "Vaccines", "text": LONG}])
    assert length == layout.pair_length(query) == q_len + 3 + 6 > 16
    (q, d), = pairs
    first, second = _segments(tok, q, d)
    assert q == query and first == tok(query, add_special_tokens=False)["input_ids"]
    assert len(tok(q, d)["input_ids"]) <= length and len(second) >= 5  # the document keeps its share
    short_pairs, short_len = layout.pairs_and_length("bees", [{"title": "Vaccines", "text": LONG}])
    assert short_len == 16 and len(tok(*short_pairs[0])["input_ids"]) <= 16  # usual queries unchanged
    with pytest.raises(BadInput, match="the model's 64 tokens"):
        layout.pair_length("word " * 70)
