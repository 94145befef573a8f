"""The adapt step's corpus/passage encoding is cached chunk by chunk: an interrupted run
resumes at the first chunk not saved, and a chunk of other documents is encoded again."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.adapt.dense import encode_chunked, encode_corpus, encode_passages
from semsearch.documents import Document
from semsearch.encoders import passages as P


def _docs(n: int, prefix: str = "d") -> list[Document]:
    return [Document(id=f"{prefix}{i:03d}", text=" ".join(f"w{i}x{j}" for j in range(i % 7 + 1))) for i in range(n)]


class _Rows:
    """``encode`` for encode_chunked: one row per document, its index; counts the calls and
    can fail at a given call (an interrupted run)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_at = fail_at

    def __call__(self, part):  # noqa: ANN001, ANN204
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt
        self.calls.append([d.id for d in part])
        v = np.array([[int(d.id[1:]), 1.0] for d in part], np.float32)
        return v, np.ones(len(part), np.int64)


def test_an_interrupted_encoding_resumes_at_the_first_chunk_not_saved(tmp_path):
    docs = _docs(10)
    first = _Rows(fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        encode_chunked(first, docs, tmp_path / "c", chunk=3)
    assert len(first.calls) == 2 and not list((tmp_path / "c").glob("*.tmp"))
    again = _Rows()
    flat, counts, spans = encode_chunked(again, docs, tmp_path / "c", chunk=3)
    assert spans is None  # this encode gives no spans
    assert again.calls == [["d006", "d007", "d008"], ["d009"]]  # chunks 0 and 1 were saved
    assert flat[:, 0].tolist() == list(range(10)) and counts.tolist() == [1] * 10
    # all saved: nothing encoded, same result
    third = _Rows()
    flat3 = encode_chunked(third, docs, tmp_path / "c", chunk=3).vectors
    assert third.calls == [] and np.array_equal(flat3, flat)
    # other documents in chunk 1: that chunk is encoded again, the others are read
    changed = docs[:3] + _docs(6, "e")[3:6] + docs[6:]
    fourth = _Rows()
    flat4 = encode_chunked(lambda part: fourth(part) if part[0].id[0] == "d" else
                           (np.full((len(part), 2), -1, np.float32), np.ones(len(part), np.int64)),
                           changed, tmp_path / "c", chunk=3).vectors
    assert fourth.calls == [] and flat4[3:6, 0].tolist() == [-1, -1, -1] and flat4[6:, 0].tolist() == [6, 7, 8, 9]


def test_corpus_and_passage_vectors_equal_the_uncached_encoding(tmp_path, minilm):
    docs = _docs(7)
    plan = P.PassagePlan(window=8, overlap=2, max_passages=16)
    want = P.encode(minilm, "{title} {text}", docs, plan)
    got = encode_passages(minilm, docs, "{title} {text}", plan, tmp_path / "p")
    cached = encode_passages(None, docs, "{title} {text}", plan, tmp_path / "p")  # no encoder needed
    assert [m.shape for m in got] == [m.shape for m in want] and any(len(m) > 1 for m in want)
    for g, c, w in zip(got, cached, want):
        assert np.allclose(g, w, atol=1e-5) and np.array_equal(g, c)
        assert g.cuts == c.cuts == w.cuts  # the passages' spans, cached with the vectors
    one = encode_corpus(minilm, docs, "{title} {text}", tmp_path / "v")
    assert one.shape == (7, minilm.dim)
    assert np.array_equal(encode_corpus(None, docs, "{title} {text}", tmp_path / "v"), one)


def test_no_documents_no_vectors(tmp_path):
    assert encode_passages(None, [], "{text}", P.PassagePlan(8, 2, 4), tmp_path / "p") == []
    flat, counts, spans = encode_chunked(_Rows(), [], tmp_path / "c")
    assert len(flat) == 0 and len(counts) == 0 and spans is None


def test_a_passage_chunk_cached_without_spans_gives_its_vectors_without_them(tmp_path):
    """A cache written before spans were cached: its vectors are used, and the documents
    carry no spans (the search path then cuts them itself), rather than wrong ones."""
    docs = _docs(5)
    flat, counts, _ = encode_chunked(_Rows(), docs, tmp_path / "p")  # the older layout: no spans saved
    mats = encode_passages(None, docs, "{text}", P.PassagePlan(8, 2, 4), tmp_path / "p")
    assert [m[0, 0] for m in mats] == flat[:, 0].tolist() and all(getattr(m, "cuts", None) is None for m in mats)
    assert counts.tolist() == [1] * 5
