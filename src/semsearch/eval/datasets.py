"""Evaluation data: BEIR-layout datasets, image sets with captions, TREC run files.

A BEIR dataset is a directory with ``corpus.jsonl``, ``queries.jsonl`` and
``qrels/<split>.tsv`` (``query-id<TAB>corpus-id<TAB>score``, header optional). A caption set
(e.g. Flickr) is a directory with ``captions.tsv`` (``image<TAB>caption``) and ``images/``:
each caption is a query and its image is the one relevant document.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from semsearch.errors import BadInput

logger = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]
#: a run: per query id, document id -> score
Run = dict[str, dict[str, float]]


@dataclass
class EvalDataset:
    """Queries and relevance judgements of one split, plus where the documents are."""

    name: str
    path: Path
    split: str
    kind: str  # "beir" or "captions"
    queries: dict[str, str]
    qrels: Qrels
    #: files the documents come from (what the index is built from)
    corpus_files: list[Path] = field(default_factory=list)
    #: files whose hash identifies the dataset split (corpus, queries, qrels)
    checksum_files: list[Path] = field(default_factory=list)

    def checksum(self) -> str:
        """sha256 over the dataset files of this split (names and contents)."""
        return files_checksum(self.checksum_files, root=self.path)


def files_checksum(files: Sequence[Path], *, root: Path | None = None) -> str:
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(str(p.relative_to(root) if root else p.name).encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def read_qrels(path: Path) -> Qrels:
    """Read a BEIR/TREC qrels file: ``qid<TAB>docid<TAB>score`` (BEIR, header optional) or
    ``qid 0 docid score`` (TREC)."""
    if not path.exists():
        raise BadInput(f"qrels file {path} does not exist")
    qrels: Qrels = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if n == 1 and parts[0] in ("query-id", "query_id", "qid"):
                continue
            if len(parts) == 3:
                qid, doc, rel = parts
            elif len(parts) == 4:
                qid, _, doc, rel = parts
            else:
                raise BadInput(f"qrels file {path} line {n}: expected 'query-id corpus-id score', got {line.strip()!r}")
            try:
                qrels.setdefault(qid, {})[doc] = int(float(rel))
            except ValueError as e:
                raise BadInput(f"qrels file {path} line {n}: relevance {rel!r} is not a number") from e
    if not qrels:
        raise BadInput(f"qrels file {path} holds no judgements")
    return qrels


def read_query_rows(path: Path) -> list[tuple[str, str]]:
    """``(id, text)`` from BEIR ``queries.jsonl`` (``_id`` or ``id``, ``text``) or an
    ``id<TAB>text`` TSV (any other suffix), in file order."""
    if not path.exists():
        raise BadInput(f"queries file {path} does not exist")
    rows: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if path.suffix.lower() in (".jsonl", ".json"):
                try:
                    obj = json.loads(line)
                    rows.append((str(obj["_id"] if "_id" in obj else obj["id"]), str(obj["text"])))
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise BadInput(f"queries file {path} line {n}: expected a JSON object with _id and text ({e})") from e
            else:
                qid, sep, text = line.rstrip("\n").partition("\t")
                if not sep:
                    raise BadInput(f"queries file {path} line {n}: expected 'id<TAB>text'")
                rows.append((qid, text))
    return rows


def read_beir_queries(path: Path) -> dict[str, str]:
    return dict(read_query_rows(path))


def beir_splits(path: Path) -> list[str]:
    return sorted(p.stem for p in (Path(path) / "qrels").glob("*.tsv"))


def load_beir(path: Path | str, split: str) -> EvalDataset:
    """Load one split of a BEIR-layout dataset. Only queries judged in the split are kept."""
    path = Path(path)
    corpus, queries_file, qrels_file = path / "corpus.jsonl", path / "queries.jsonl", path / "qrels" / f"{split}.tsv"
    for p in (corpus, queries_file):
        if not p.exists():
            raise BadInput(f"dataset {path} is not in BEIR layout: {p.name} is missing")
    if not qrels_file.exists():
        raise BadInput(f"dataset {path} has no split {split!r} (qrels/{split}.tsv); splits: {beir_splits(path) or 'none'}")
    qrels = read_qrels(qrels_file)
    all_queries = read_beir_queries(queries_file)
    missing = sorted(set(qrels) - set(all_queries))
    if missing:
        raise BadInput(f"dataset {path} split {split!r}: {len(missing)} judged queries are not in queries.jsonl (e.g. {missing[:3]})")
    queries = {q: all_queries[q] for q in qrels}
    return EvalDataset(
        name=path.name, path=path, split=split, kind="beir", queries=queries, qrels=qrels,
        corpus_files=[corpus], checksum_files=[corpus, queries_file, qrels_file],
    )


def load_captions(path: Path | str, split: str = "all") -> EvalDataset:
    """Load an image set with captions as a caption-to-image retrieval task.

    Query ids are ``<image stem>#<n>`` (n-th caption of that image, from 0); the relevant
    document of each is the image's document id, which is its file name (as the image
    indexer names image documents). ``split`` is recorded only: such sets have no splits.
    """
    path = Path(path)
    tsv = path / "captions.tsv"
    images = path / "images"
    if not tsv.exists():
        raise BadInput(f"caption set {path} has no captions.tsv")
    if not images.is_dir():
        raise BadInput(f"caption set {path} has no images/ directory")
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    counts: dict[str, int] = {}
    with open(tsv, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        for n, row in enumerate(reader, 1):
            if not row or (n == 1 and row[:2] == ["image", "caption"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise BadInput(f"{tsv} line {n}: expected 'image<TAB>caption', got {row!r}")
            image, caption = row[0].strip(), row[1].strip()
            if not (images / image).is_file():
                raise BadInput(f"{tsv} line {n}: image {image!r} is not in {images}")
            i = counts.get(image, 0)
            counts[image] = i + 1
            qid = f"{Path(image).stem}#{i}"
            queries[qid] = caption
            qrels[qid] = {image: 1}
    if not queries:
        raise BadInput(f"caption set {path}: captions.tsv holds no captions")
    image_files = sorted(images / name for name in counts)
    return EvalDataset(
        name=path.name, path=path, split=split, kind="captions", queries=queries, qrels=qrels,
        corpus_files=image_files, checksum_files=[tsv, *image_files],
    )


def load_dataset(path: Path | str, split: str) -> EvalDataset:
    """A BEIR directory or a caption set, recognised by its files."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"dataset {path} is not a directory")
    if (path / "captions.tsv").exists():
        return load_captions(path, split)
    return load_beir(path, split)


def write_trec_run(path: Path, run: Mapping[str, Mapping[str, float]], tag: str) -> None:
    """Write ``qid Q0 docid rank score tag`` lines. Each query's documents must be given
    best first (the engine's order); the rank column keeps that order even where scores tie."""
    with open(path, "w", encoding="utf-8") as fh:
        for qid in run:
            for rank, (doc, score) in enumerate(run[qid].items(), 1):
                fh.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")


def read_trec_run(path: Path) -> Run:
    """Read a TREC run; each query's documents come back ordered by the rank column."""
    if not path.exists():
        raise BadInput(f"run file {path} does not exist")
    rows: dict[str, list[tuple[int, str, float]]] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise BadInput(f"run file {path} line {n}: expected 'qid Q0 docid rank score tag'")
            try:
                rows.setdefault(parts[0], []).append((int(parts[3]), parts[2], float(parts[4])))
            except ValueError as e:
                raise BadInput(f"run file {path} line {n}: rank {parts[3]!r} or score {parts[4]!r} is not a number") from e
    return {q: {d: s for _, d, s in sorted(r, key=lambda x: x[0])} for q, r in rows.items()}


def ranked_to_run(ranked: Iterable[tuple[str, Sequence[tuple[str, float]]]]) -> Run:
    """``[(qid, [(doc, score), ...]), ...]`` to a run dict (first occurrence of a doc wins)."""
    run: Run = {}
    for qid, hits in ranked:
        d: dict[str, float] = {}
        for doc, score in hits:
            d.setdefault(doc, float(score))
        run[qid] = d
    return run
