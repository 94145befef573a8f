import json
from pathlib import Path

import pytest

from semsearch.errors import BadInput
from semsearch.indexer.readers import Record, Rejected, iter_records, to_document


def test_jsonl_good_and_bad_lines(tmp_path):
    p = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"_id": "a", "title": "T", "text": "hello"}),
        "{not json",
        json.dumps({"title": "no id", "text": "x"}),
        json.dumps({"_id": "b", "text": ""}),
        json.dumps({"_id": "c", "text": 42}),
        json.dumps(["a", "list"]),
        "",
        json.dumps({"id": 7, "text": "numeric id", "year": 2020, "metadata": {"src": "x"}}),
        json.dumps({"_id": True, "text": "bool id"}),
    ]
    p.write_text("\n".join(lines) + "\n")
    items = list(iter_records(p))
    good = [i for i in items if isinstance(i, Record)]
    bad = {i.line: i for i in items if isinstance(i, Rejected)}
    assert [g.doc.id for g in good] == ["a", "7"]
    assert good[1].doc.metadata == {"year": 2020, "src": "x"}
    assert good[1].line == 8
    assert bad[2].reason.startswith("bad JSON")
    assert "missing id" in bad[3].reason
    assert "empty text" in bad[4].reason and bad[4].id == "b"
    assert "field 'text' must be a string, got int" in bad[5].reason
    assert "must be a JSON object, got list" in bad[6].reason
    assert "id must be a string or an integer, got bool" in bad[9].reason
    assert all(b.source == str(p) for b in bad.values())


def test_csv_and_tsv(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text('_id,title,text,lang\na,Title A,"text, with comma",en\nb,,,\nc,T,"multi\nline text",fr\nd,x,y,z,extra\n')
    items = list(iter_records(p))
    good = {i.doc.id: i for i in items if isinstance(i, Record)}
    bad = [i for i in items if isinstance(i, Rejected)]
    assert set(good) == {"a", "c"}
    assert good["a"].doc.text == "text, with comma" and good["a"].doc.metadata == {"lang": "en"}
    assert good["c"].doc.text == "multi\nline text" and good["c"].line == 4
    assert [b.line for b in bad] == [3, 6]
    assert "empty text" in bad[0].reason and "columns" in bad[1].reason
    t = tmp_path / "in.tsv"
    t.write_text("id\ttext\nx\thello world\n")
    assert [i.doc.id for i in iter_records(t)] == ["x"]


def test_csv_metadata_cells_become_numbers_and_booleans(tmp_path):
    p = tmp_path / "in.tsv"
    p.write_text(
        "id\ttitle\ttext\tyear\tscore\tzip\topen\tnote\tbig\n"
        "0042\t2020\ttext\t2020\t-1.5e2\t02134\tTRUE\tnan\t1_000\n"
        "7\tT\tx\t-3\t.5\t0\tfalse\t 5\tyes\n"
    )
    docs = [r.doc for r in iter_records(p)]
    assert [d.id for d in docs] == ["0042", "7"] and docs[0].title == "2020"  # never converted
    assert docs[0].metadata == {"year": 2020, "score": -150.0, "zip": "02134", "open": True,
                                "note": "nan", "big": "1_000"}
    assert docs[1].metadata == {"year": -3, "score": 0.5, "zip": 0, "open": False, "note": " 5",
                                "big": "yes"}
    assert type(docs[0].metadata["year"]) is int and type(docs[1].metadata["open"]) is bool


def test_jsonl_metadata_keep_their_json_types(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text(json.dumps({"_id": "a", "text": "x", "year": "2020", "open": "true"}) + "\n")
    assert next(iter_records(p)).doc.metadata == {"year": "2020", "open": "true"}


def test_beir_directory(tmp_path):
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "1", "title": "t", "text": "x", "metadata": {}}) + "\n")
    assert [i.doc.id for i in iter_records(tmp_path)] == ["1"]


def test_unknown_format_and_missing_input(tmp_path):
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(BadInput, match="unknown format '.xml'"):
        list(iter_records(tmp_path / "x.xml"))
    with pytest.raises(BadInput, match="does not exist"):
        list(iter_records(tmp_path / "missing.jsonl"))
    d = tmp_path / "empty_dir"
    d.mkdir()
    with pytest.raises(BadInput, match="no corpus.jsonl"):
        list(iter_records(d))


def test_to_document_limits():
    with pytest.raises(BadInput, match="max 10"):
        to_document({"_id": "a", "text": "x" * 11}, max_text_chars=10)
    with pytest.raises(BadInput, match="id is blank"):
        to_document({"_id": "  ", "text": "x"})
    with pytest.raises(BadInput, match="'metadata' must be an object"):
        to_document({"_id": "a", "text": "x", "metadata": [1]})


def test_image_tree_given_as_a_relative_path_points_at_its_files(tmp_path, monkeypatch):
    """`semsearch index --input ../d1/d2/photos`: each image path must name the file itself,
    not the tree's path joined to itself (which named the file only by luck)."""
    from PIL import Image

    tree = tmp_path / "d1" / "d2" / "photos" / "sub"
    tree.mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tree / "a.jpg")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    items = list(iter_records(Path("../d1/d2/photos")))
    assert [i.doc.id for i in items] == ["sub/a.jpg"]
    assert Path(items[0].doc.image).samefile(tree / "a.jpg")
