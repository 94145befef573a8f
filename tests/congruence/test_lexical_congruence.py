"""The same SciFact corpus in the embedded backend and in Elasticsearch gives, on the SciFact
test queries, nDCG@10 within 0.02 and a mean top-10 overlap >= 0.7.

Needs the SciFact data (../shared/data/scifact beside the repo, or SEMSEARCH_SHARED_DATA)
and a real Elasticsearch (SEMSEARCH_TEST_ES_URL)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from semsearch.config import Settings
from semsearch.documents import Document
from semsearch.indexer.index import Index
from semsearch.indexer.lexical.elasticsearch import ElasticsearchLexicalIndex
from tests.conftest import REPO, es_lexical_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHARED = Path(os.environ.get("SEMSEARCH_SHARED_DATA", REPO.parent / "shared" / "data"))
SCIFACT = SHARED / "scifact"


def _load():
    if not (SCIFACT / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {SCIFACT} (set SEMSEARCH_SHARED_DATA)")
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh if line.strip()]
    qrels: dict[str, dict[str, int]] = {}
    with open(SCIFACT / "qrels" / "test.tsv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            qrels.setdefault(r["query-id"], {})[r["corpus-id"]] = int(r["score"])
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as fh:
        queries = {q["_id"]: q["text"] for q in map(json.loads, fh) if q["_id"] in qrels}
    return [Document(id=d["_id"], title=d["title"], text=d["text"]) for d in docs], queries, qrels


def _ndcg(runs: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    from ranx import Qrels, Run, evaluate

    return float(evaluate(Qrels(qrels), Run(runs), "ndcg@10"))


def test_embedded_and_elasticsearch_agree_on_scifact(es_url, es_names, tmp_path):
    docs, queries, qrels = _load()
    qids, texts = list(queries), list(queries.values())

    index = Index.create(tmp_path / "ix", Settings())
    for start in range(0, len(docs), 2000):  # three segments, scored with corpus-wide statistics
        index.write(docs[start : start + 2000])
        index.sync()
    emb = index.lexical
    es = ElasticsearchLexicalIndex(es_lexical_settings(es_url, es_names("scifact"), chunk_size=1000))
    es.upsert(docs)
    es.commit()
    assert es.count() == emb.count() == len(docs)

    runs = {}
    for name, idx in (("embedded", emb), ("elasticsearch", es)):
        results = idx.search_many(texts, 100)
        runs[name] = {q: {d: s for d, s in hits} or {"-": 0.0} for q, hits in zip(qids, results)}
    nd = {name: _ndcg(run, qrels) for name, run in runs.items()}
    overlap = sum(
        len(set(sorted(runs["embedded"][q], key=runs["embedded"][q].get, reverse=True)[:10])
            & set(sorted(runs["elasticsearch"][q], key=runs["elasticsearch"][q].get, reverse=True)[:10]))
        / 10 for q in qids
    ) / len(qids)
    print(f"nDCG@10 embedded={nd['embedded']:.4f} elasticsearch={nd['elasticsearch']:.4f} "
          f"mean top-10 overlap={overlap:.3f}")
    assert abs(nd["embedded"] - nd["elasticsearch"]) <= 0.02, nd
    assert overlap >= 0.7, overlap
    es.close()
    index.close()
