from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from semsearch.errors import BadInput
from semsearch.eval.datasets import (
    load_beir,
    load_captions,
    load_dataset,
    read_qrels,
    read_trec_run,
    write_trec_run,
)
from tests.eval.conftest import TEST_QUERIES, TRAIN_QUERIES

REPO = Path(__file__).resolve().parents[2]
FLICKR = Path(os.environ.get("SEMSEARCH_FLICKR_DIR", REPO.parent / "shared" / "data" / "flickr500"))


def test_beir_split_keeps_only_judged_queries(tiny_beir):
    ds = load_beir(tiny_beir, "test")
    assert ds.kind == "beir" and ds.split == "test"
    assert set(ds.queries) == {q for q, _, _ in TEST_QUERIES}
    assert ds.qrels["t4"] == {"d8": 1, "d3": 1}
    assert ds.corpus_files == [tiny_beir / "corpus.jsonl"]
    train = load_beir(tiny_beir, "train")
    assert set(train.queries) == {q for q, _, _ in TRAIN_QUERIES}
    assert ds.checksum() != train.checksum()


def test_checksum_follows_content(tiny_beir):
    before = load_beir(tiny_beir, "test").checksum()
    assert load_beir(tiny_beir, "test").checksum() == before
    with open(tiny_beir / "qrels" / "test.tsv", "a") as fh:
        fh.write("t1\td2\t1\n")
    assert load_beir(tiny_beir, "test").checksum() != before


def test_beir_errors_name_the_problem(tiny_beir, tmp_path):
    with pytest.raises(BadInput, match=r"no split 'dev' .*splits: \['test', 'train'\]"):
        load_beir(tiny_beir, "dev")
    (tiny_beir / "qrels" / "bad.tsv").write_text("t1 d1\n")
    with pytest.raises(BadInput, match=r"bad.tsv line 1: expected"):
        load_beir(tiny_beir, "bad")
    (tiny_beir / "qrels" / "ghost.tsv").write_text("nope\td1\t1\n")
    with pytest.raises(BadInput, match=r"1 judged queries are not in queries.jsonl"):
        load_beir(tiny_beir, "ghost")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="not in BEIR layout: corpus.jsonl is missing"):
        load_dataset(tmp_path / "empty", "test")


def test_qrels_trec_format(tmp_path):
    p = tmp_path / "q.txt"
    p.write_text("1 0 a 2\n1 0 b 0\n2 0 c 1\n")
    assert read_qrels(p) == {"1": {"a": 2, "b": 0}, "2": {"c": 1}}


def test_trec_run_roundtrip(tmp_path):
    # ranked best first; c and a tie and keep the engine's order
    run = {"q1": {"b": 2.0, "c": 0.5, "a": 0.5}, "q2": {"z": 1.0}}
    p = tmp_path / "run.trec"
    write_trec_run(p, run, tag="sys")
    lines = p.read_text().splitlines()
    assert lines[0] == "q1 Q0 b 1 2.000000 sys"
    assert lines[2] == "q1 Q0 a 3 0.500000 sys"
    back = read_trec_run(p)
    assert back == run and list(back["q1"]) == ["b", "c", "a"]
    p.write_text("q1 Q0 a 2 1.0 s\nq1 Q0 b 1 1.0 s\n")
    assert list(read_trec_run(p)["q1"]) == ["b", "a"]
    p.write_text("q1 Q0 a 1\n")
    with pytest.raises(BadInput, match="line 1: expected 'qid Q0 docid rank score tag'"):
        read_trec_run(p)


def _caption_set(root: Path, captions: list[tuple[str, str]]) -> Path:
    (root / "images").mkdir(parents=True)
    for i, name in enumerate(sorted({c[0] for c in captions})):
        img = Image.new("RGB", (64, 48), (40 * i, 120, 200))
        ImageDraw.Draw(img).ellipse((8, 8, 40, 40), fill=(255, 255 - 60 * i, 0))
        img.save(root / "images" / name)
    lines = ["image\tcaption"] + [f"{a}\t{b}" for a, b in captions]
    (root / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_caption_set_each_caption_is_a_query_for_its_image(tmp_path):
    root = _caption_set(tmp_path / "caps", [
        ("sun.jpg", "A yellow circle on blue ."), ("sun.jpg", "The sun in the sky ."),
        ("moon.jpg", "An orange disc ."),
    ])
    ds = load_dataset(root, "test")
    assert ds.kind == "captions"
    assert ds.queries == {"sun#0": "A yellow circle on blue .", "sun#1": "The sun in the sky .",
                          "moon#0": "An orange disc ."}
    assert ds.qrels == {"sun#0": {"sun.jpg": 1}, "sun#1": {"sun.jpg": 1}, "moon#0": {"moon.jpg": 1}}
    assert ds.corpus_files == [root / "images" / "moon.jpg", root / "images" / "sun.jpg"]
    assert len(ds.checksum()) == 64


def test_caption_set_errors(tmp_path):
    root = _caption_set(tmp_path / "caps", [("sun.jpg", "sun")])
    with open(root / "captions.tsv", "a") as fh:
        fh.write("missing.jpg\ta caption\n")
    with pytest.raises(BadInput, match=r"line 3: image 'missing.jpg' is not in"):
        load_captions(root)
    (root / "captions.tsv").write_text("sun.jpg\n")
    with pytest.raises(BadInput, match=r"line 1: expected 'image<TAB>caption'"):
        load_captions(root)


@pytest.mark.skipif(not FLICKR.exists(), reason=f"{FLICKR} not present (benchmark data lives beside the clone)")
def test_flickr500_loads():
    ds = load_dataset(FLICKR, "all")
    assert len(ds.corpus_files) == 500
    assert all(len(v) == 1 for v in ds.qrels.values())
    assert len(ds.queries) >= 500
