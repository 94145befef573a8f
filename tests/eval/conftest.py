"""A tiny BEIR-layout dataset (the conftest corpus plus judged queries) made in the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_DOCS

#: (qid, text, relevant doc ids); test and train splits share no query
TEST_QUERIES = [
    ("t1", "how do vaccines help the immune system", ["d1"]),
    ("t2", "bacteria resistant to antibiotic drugs", ["d2"]),
    ("t3", "how do leaves make food", ["d3"]),
    ("t4", "solar cells electricity from sunlight", ["d8", "d3"]),
    ("t5", "pollinating crops with bees", ["d11"]),
    ("t6", "storing energy for later use", ["d12", "d8"]),
]
TRAIN_QUERIES = [
    ("r1", "light cannot escape gravity black hole", ["d4"]),
    ("r2", "magma and explosive volcano eruptions", ["d5"]),
    ("r3", "sour bread from wild yeast", ["d6"]),
    ("r4", "running endurance for a marathon", ["d9"]),
    ("r5", "movable type printing books", ["d10"]),
]


def write_beir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in TINY_DOCS), encoding="utf-8")
    qs = TEST_QUERIES + TRAIN_QUERIES + [("x1", "a query judged in no split", [])]
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t, _ in qs), encoding="utf-8")
    for split, rows in (("test", TEST_QUERIES), ("train", TRAIN_QUERIES)):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, _, ds in rows for d in ds]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tinybeir")
