"""Reranking inside ``Searcher.search_batch``: the order follows the cross-encoder, hits keep
their channel explanations and gain a ``rerank`` entry."""

from __future__ import annotations

import pytest

from semsearch.config import RerankSettings
from semsearch.errors import BadInput
from semsearch.rerank.cross_encoder import CrossEncoderReranker
from semsearch.search import Searcher


@pytest.fixture
def reranker(fresh_cross_encoder):
    """The real MiniLM cross-encoder (fresh head): its scores are arbitrary but real, which
    is what the integration is about."""
    return CrossEncoderReranker(RerankSettings(max_length=64, device="cpu"), model=fresh_cross_encoder)


def test_rerank_orders_by_cross_encoder_and_keeps_explanations(tiny_index, minilm, settings, reranker) -> None:
    settings.rerank.blend = 0.0  # the cross-encoder alone orders the top N
    s = Searcher(tiny_index, settings, encoder=minilm, reranker=reranker)
    plain = s.search("sunlight energy", k=12, mode="hybrid")
    rr = s.search("sunlight energy", k=12, mode="hybrid", rerank=True, rerank_depth=6)
    top6 = [h.id for h in plain.hits[:6]]
    expected = reranker.score("sunlight energy", [h.document for h in plain.hits[:6]])
    order = [top6[i] for i in sorted(range(6), key=lambda i: -expected[i])]
    assert [h.id for h in rr.hits[:6]] == order
    assert [h.id for h in rr.hits[6:]] == [h.id for h in plain.hits[6:]]  # below depth: fusion order
    before = {h.id: h for h in plain.hits}
    for h in rr.hits[:6]:
        info = h.extra["rerank"]
        assert info["pre_rank"] == before[h.id].rank
        assert info["score"] == pytest.approx(h.score)
        assert h.channels == before[h.id].channels and h.channels
    assert [h.rank for h in rr.hits] == list(range(1, 13))
    assert all("rerank" not in h.extra for h in rr.hits[6:])


def test_blend_mixes_fusion_and_cross_encoder(tiny_index, minilm, settings, reranker) -> None:
    settings.rerank.blend = 1.0  # fusion alone decides: the fused order comes back
    s = Searcher(tiny_index, settings, encoder=minilm, reranker=reranker)
    plain = s.search("bees pollinate crops", k=5)
    blended = s.search("bees pollinate crops", k=5, rerank=True)
    assert [h.id for h in blended.hits] == [h.id for h in plain.hits]
    assert all("rerank" in h.extra for h in blended.hits)


def test_rerank_without_a_trained_model_is_a_clear_error(tiny_index, minilm, settings) -> None:
    s = Searcher(tiny_index, settings, encoder=minilm)
    with pytest.raises(BadInput, match="train-reranker"):
        s.search("bees", rerank=True)
    with pytest.raises(BadInput, match="rerank_depth"):
        Searcher(tiny_index, settings, encoder=minilm).search("bees", rerank=True, rerank_depth=-1)
