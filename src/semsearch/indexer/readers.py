"""Read documents from JSONL, CSV and BEIR corpus files, validating every record.

Each record yields either a :class:`Document` or a :class:`Rejected` that names the file,
the line and the reason, so a bulk run can keep every good record and report every bad one.

Metadata types: JSON values keep their JSON type (``"2020"`` stays a string). A CSV/TSV cell
is always text, so metadata cells are converted (:func:`csv_value`): an integer (``2020``,
``-3``; not ``007``, which stays a string like a zip code), a decimal number (``1.5``,
``2e3``; not ``nan``/``inf``) and ``true``/``false`` (any case) become numbers and booleans,
everything else stays a string. The columns ``id``, ``_id``, ``title``, ``text`` and
``image`` are never converted.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semsearch.documents import Document
from semsearch.errors import BadInput

ID_KEYS = ("_id", "id")
RESERVED = {"_id", "id", "title", "text", "metadata", "image"}


@dataclass(frozen=True)
class Rejected:
    source: str
    line: int
    reason: str
    id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "id": self.id, "reason": self.reason}


@dataclass(frozen=True)
class Record:
    source: str
    line: int
    doc: Document


def to_document(raw: Any, *, max_text_chars: int = 1_000_000) -> Document:
    """Validate one raw record; raises :class:`BadInput` with the reason."""
    if not isinstance(raw, dict):
        raise BadInput(f"record must be a JSON object, got {type(raw).__name__}")
    key = next((k for k in ID_KEYS if k in raw), None)
    if key is None or raw[key] is None or raw[key] == "":
        raise BadInput("missing id (expected an '_id' or 'id' field)")
    doc_id = raw[key]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise BadInput(f"id must be a string or an integer, got {type(doc_id).__name__}")
    doc_id = str(doc_id).strip()
    if not doc_id:
        raise BadInput("id is blank")
    if len(doc_id) > 512:
        raise BadInput(f"id is {len(doc_id)} characters long (max 512)")
    fields: dict[str, str] = {}
    for name in ("title", "text"):
        value = raw.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise BadInput(f"field {name!r} must be a string, got {type(value).__name__}")
        if len(value) > max_text_chars:
            raise BadInput(f"field {name!r} is {len(value)} characters long (max {max_text_chars})")
        fields[name] = value
    image = raw.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise BadInput("field 'image' must be a non-empty path string")
    if not fields["text"].strip() and not fields["title"].strip() and image is None:
        raise BadInput("empty text: the record has no title, text or image")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadInput(f"field 'metadata' must be an object, got {type(metadata).__name__}")
    metadata = {**{k: v for k, v in raw.items() if k not in RESERVED}, **metadata}
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as e:  # pragma: no cover - JSON input is always dumpable
        raise BadInput(f"metadata is not JSON-serialisable: {e}") from e
    return Document(id=doc_id, title=fields["title"], text=fields["text"], metadata=metadata, image=image)


_INT = re.compile(r"^[+-]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[+-]?(0|[1-9][0-9]*)?\.[0-9]+([eE][+-]?[0-9]+)?$|^[+-]?(0|[1-9][0-9]*)(\.[0-9]*)?[eE][+-]?[0-9]+$|^[+-]?(0|[1-9][0-9]*)\.$")


def csv_value(cell: str) -> str | int | float | bool:
    """A CSV/TSV metadata cell as the JSON value it spells: int, float, bool, else the
    string unchanged (leading zeros, spaces, ``nan``, ``1_000`` stay strings)."""
    if _INT.match(cell):
        return int(cell)
    if _FLOAT.match(cell):
        return float(cell)
    low = cell.lower()
    if low in ("true", "false"):
        return low == "true"
    return cell


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    return {k: (v if k in RESERVED else csv_value(v))
            for k, v in row.items() if v != "" or k in ("title", "text")}


def detect_format(path: Path) -> str:
    if path.is_dir():
        # a BEIR directory has corpus.jsonl; any other directory is an image tree
        return "beir" if (path / "corpus.jsonl").exists() else "images"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise BadInput(f"input {path}: unknown format {suffix!r}; use .jsonl, .csv/.tsv or a BEIR directory")


DEFAULT_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


def iter_raw(path: Path, image_extensions: Sequence[str] | None = None) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(source, line, raw)`` where raw is a dict or a :class:`BadInput` for a line
    that cannot be parsed."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"input {path} does not exist")
    fmt = detect_format(path)
    if fmt == "images":
        from semsearch.images.tree import iter_image_tree

        yield from iter_image_tree(path, image_extensions or DEFAULT_IMAGE_EXTENSIONS)
        return
    if fmt == "beir":
        path = path / "corpus.jsonl"
        fmt = "jsonl"
    src = str(path)
    if fmt == "jsonl":
        with open(path, encoding="utf-8", errors="strict") as fh:
            lineno = 0
            while True:
                lineno += 1
                try:
                    line = fh.readline()
                except UnicodeDecodeError as e:
                    raise BadInput(f"input {path} line {lineno}: not UTF-8 ({e})") from e
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    yield src, lineno, json.loads(line)
                except json.JSONDecodeError as e:
                    yield src, lineno, BadInput(f"bad JSON: {e.msg} at column {e.colno}")
    else:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            if reader.fieldnames is None:
                return
            start = 2
            for row in reader:
                if None in row:
                    yield src, start, BadInput(
                        f"row has {len(reader.fieldnames) + len(row[None])} columns, header has "
                        f"{len(reader.fieldnames)}"
                    )
                else:
                    yield src, start, _csv_row(row)
                start = reader.line_num + 1


def _absolute_image(raw: Any, source: str) -> Any:
    """A relative ``image`` path in a JSONL/CSV row is relative to that file's directory."""
    if isinstance(raw, dict) and isinstance(raw.get("image"), str) and raw["image"].strip():
        p = Path(raw["image"])
        if not p.is_absolute():
            return {**raw, "image": str(Path(source).parent / p)}
    return raw


def iter_records(
    path: Path, *, max_text_chars: int = 1_000_000, image_extensions: Sequence[str] | None = None
) -> Iterator[Record | Rejected]:
    for src, line, raw in iter_raw(path, image_extensions):
        raw = _absolute_image(raw, src)
        if isinstance(raw, BadInput):
            yield Rejected(src, line, str(raw))
            continue
        try:
            yield Record(src, line, to_document(raw, max_text_chars=max_text_chars))
        except BadInput as e:
            rid = raw.get("_id", raw.get("id")) if isinstance(raw, dict) else None
            yield Rejected(src, line, str(e), None if rid is None else str(rid))
