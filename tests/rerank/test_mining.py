from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from semsearch.collection import Collection
from semsearch.documents import Document
from semsearch.errors import BadInput
from semsearch.rerank.train.mining import (
    Example,
    NegativeMiner,
    mine_pseudo_queries,
    pseudo_query,
    read_qrels,
    read_weak_pairs,
    split_dev,
)


@pytest.fixture
def col(tiny_index, minilm, settings):
    with Collection.open(tiny_index.path, settings, encoder=minilm) as c:
        yield c


def test_mining_never_emits_a_positive_as_negative(col, tiny_docs) -> None:
    ids = [d.id for d in tiny_docs]
    examples = [
        Example(qid=f"q{i}", query=f"{d.title} {d.text}", positives=[d.id, ids[(i + 1) % len(ids)]],
                negatives=[d.id])  # an explicit negative that is also a positive is dropped
        for i, d in enumerate(tiny_docs)
    ]
    NegativeMiner(col, pool=12, fn_ratio=None, seed=1).mine(examples, n_negatives=12)
    for e in examples:
        assert e.negatives, e.qid
        assert not set(e.negatives) & set(e.positives), e.qid
        assert len(set(e.negatives)) == len(e.negatives)
        assert len(e.negatives) == len(tiny_docs) - 2  # every other document, once


def test_false_negative_filter_drops_near_positives(col, minilm, tiny_docs) -> None:
    # "sunlight" documents: photosynthesis (d3) is the positive; solar panels (d8) is close
    examples = [Example(qid="q", query="plants use sunlight to make sugar", positives=["d3"])]
    miner = NegativeMiner(col, pool=12, fn_ratio=0.5, seed=0)
    miner.mine(examples, n_negatives=12)
    assert miner.dropped_false_negatives > 0
    q = minilm.encode(["plants use sunlight to make sugar"])[0]
    vecs = col.vectors(["d3", *examples[0].negatives])
    sims = vecs @ q
    assert np.all(sims[1:] < 0.5 * sims[0])


def test_pseudo_queries_remove_the_query_from_the_positive() -> None:
    text = "Alpha beta gamma delta one. Epsilon zeta eta theta two. Iota kappa lambda mu three."
    doc = Document(id="a", title="Short", text=text)
    q, pos = pseudo_query(doc, random.Random(0))
    assert q in text and q not in pos.text and pos.id == "a"
    examples = mine_pseudo_queries([doc, Document(id="b", title="", text="Too short.")], sample=5)
    assert [e.positives for e in examples] == [["a"]]


def test_read_qrels_and_weak_pairs(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"_id": "1", "text": "bees"}\n{"_id": "2", "text": "x"}\n')
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n1\td11\t1\n1\td3\t0\n")
    ex = read_qrels(tmp_path / "q.jsonl", tmp_path / "qrels.tsv")
    assert [(e.qid, e.query, e.positives) for e in ex] == [("1", "bees", ["d11"])]
    weak = tmp_path / "weak.jsonl"
    weak.write_text("".join(json.dumps(r) + "\n" for r in [
        {"query": "bees", "doc_id": "d11"}, {"query": "bees", "doc_id": "d7", "label": 0},
        {"query": "only negative", "doc_id": "d1", "label": 0}]))
    (w,) = read_weak_pairs(weak)
    assert (w.positives, w.negatives) == (["d11"], ["d7"])
    weak.write_text('{"query": "bees"}\n')
    with pytest.raises(BadInput, match="line 1"):
        read_weak_pairs(weak)


def test_dev_split_holds_out_whole_queries() -> None:
    ex = [Example(qid=str(i), query=str(i), positives=["d"]) for i in range(50)]
    train, dev = split_dev(ex, 0.1, max_dev=100, seed=3)
    assert len(dev) == 5 and not {e.qid for e in train} & {e.qid for e in dev}


def test_per_stage_filter_and_epochs(tiny_index, tmp_path, monkeypatch) -> None:
    """train_reranker filters stage 1's mined negatives (fn_ratio) but not stage 2's judged
    ones unless stage2_fn_ratio is given (the card says which); stage2_epochs and
    stage2_negatives are stage 2's."""
    from semsearch.rerank.train import runner
    from semsearch.rerank.train.stages import StageConfig

    qdir = tmp_path / "beir"
    qdir.mkdir()
    (qdir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "plants use sunlight to make sugar"}) + "\n")
    (qdir / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\n")
    seen = []

    def fake_train(cfg, train, dev, col, *, resume, say):  # noqa: ANN001 - training is not under test
        seen.append((cfg.stage, cfg.data["hard_negatives"], (cfg.epochs, cfg.negatives)))
        return {"stage": cfg.stage}

    monkeypatch.setattr(runner, "train_stage", fake_train)
    monkeypatch.setattr(runner, "split_dev", lambda ex, *a, **k: (ex, []))
    kw = dict(stage="both", settings=tiny_index.settings, config=StageConfig(stage=0, out=tmp_path),
              stage1_sample=4, queries=qdir / "queries.jsonl", qrels=qdir / "qrels.tsv")
    runner.train_reranker(tiny_index.path, tmp_path / "o", fn_ratio=0.5, stage2_epochs=3.0, stage2_negatives=7, **kw)
    assert [(s, e) for s, _, e in seen] == [(1, (1.0, 3)), (2, (3.0, 7))]
    assert seen[0][1].startswith("3/query") and seen[1][1].startswith("7/query")
    assert "filter: dense similarity >= 0.5" in seen[0][1] and "no false-negative filter" in seen[1][1]
    seen.clear()
    runner.train_reranker(tiny_index.path, tmp_path / "o", fn_ratio=0.5, stage2_fn_ratio=0.6, stage="2",
                          **{k: v for k, v in kw.items() if k != "stage"})
    assert "filter: dense similarity >= 0.6" in seen[0][1]
