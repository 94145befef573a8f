import pytest
from rank_bm25 import BM25Okapi

from semsearch.config import LexicalSettings
from semsearch.documents import Document
from semsearch.errors import BadInput
from semsearch.indexer.lexical.embedded import Analyzer, EmbeddedLexicalIndex
from tests.conformance.lexical_suite import LexicalIndexSuite


class TestEmbeddedConformance(LexicalIndexSuite):
    @pytest.fixture
    def make(self):
        return lambda: EmbeddedLexicalIndex(LexicalSettings())

    @pytest.fixture
    def reopen(self, tmp_path):
        def _reopen(idx):
            idx.save(tmp_path / "lex")
            return EmbeddedLexicalIndex.open(tmp_path / "lex", LexicalSettings())

        return _reopen


PARITY_CORPUS = [
    "the cat sat on the mat",
    "dogs and cats living together",
    "a quick brown fox jumps over the lazy dog",
    "the dog barks at the mailman",
    "cats purr when they are happy",
    "foxes are wild animals related to dogs",
    "my cat likes to sleep on the sofa all day",
    "brown bears and brown foxes in the forest",
    "mailmen deliver letters every day",
    "happy dogs wag their tails",
]
PARITY_QUERIES = ["cat", "brown fox", "happy dog", "mailman letters", "sleep sofa cat", "wild forest animals"]


def test_bm25_ranking_matches_rank_bm25():
    """Same analyzer, Robertson BM25 (rank-bm25's BM25Okapi formula): same scores, same order."""
    settings = LexicalSettings(boosts={"text": 1.0, "title": 0.0})
    settings.embedded.method = "robertson"
    settings.embedded.k1, settings.embedded.b = 1.5, 0.75
    idx = EmbeddedLexicalIndex(settings)
    idx.upsert([Document(id=str(i), text=t) for i, t in enumerate(PARITY_CORPUS)])
    idx.commit()
    analyzer = Analyzer()
    # rank-bm25 floors negative idf at epsilon * mean idf; no term of these queries is in
    # more than half the documents, so that case does not arise
    ref = BM25Okapi(analyzer(PARITY_CORPUS), k1=1.5, b=0.75, epsilon=0.25)
    for q in PARITY_QUERIES:
        ref_scores = ref.get_scores(analyzer([q])[0])
        expected = sorted(
            ((str(i), s) for i, s in enumerate(ref_scores) if s > 0), key=lambda x: (-x[1], int(x[0]))
        )
        got = idx.search(q, len(PARITY_CORPUS))
        assert [d for d, _ in got] == [d for d, _ in expected], q
        # bm25s (like Lucene) leaves out the constant (k1 + 1) factor of the tf term that
        # rank-bm25 keeps: the scores differ by exactly that factor and rank identically
        assert [s * 2.5 for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-5), q


def test_unknown_boost_field_is_rejected():
    idx = EmbeddedLexicalIndex(LexicalSettings())
    idx.upsert([Document(id="a", text="x y")])
    with pytest.raises(BadInput, match="unknown boost field"):
        idx.search("x", 3, boosts={"body": 1.0})


def test_bad_range_operator_names_itself():
    idx = EmbeddedLexicalIndex(LexicalSettings())
    idx.upsert([Document(id="a", text="bees", metadata={"year": 1})])
    with pytest.raises(BadInput, match="unknown operator"):
        idx.search("bees", 3, filters={"year": {"gt": 0, "near": 3}})


def test_settings_reject_bad_boosts():
    with pytest.raises(ValueError, match="unknown boost field"):
        LexicalSettings(boosts={"abstract": 1.0})
    with pytest.raises(ValueError, match="at least one > 0"):
        LexicalSettings(boosts={"title": 0.0, "text": 0.0})
