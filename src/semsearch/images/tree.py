"""A directory of images as documents: id = the path relative to the root (POSIX form).

Optional captions: a ``captions.tsv`` (columns ``image``, ``caption``) or ``captions.jsonl``
(``{"image": ..., "caption": ...}``) at the root; ``image`` is matched against the relative
path, then against the file name. The first caption becomes the title and all of them the
text, so the image is also found by the lexical and dense text channels.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def read_captions(root: Path) -> dict[str, list[str]]:
    caps: dict[str, list[str]] = {}
    tsv, jsonl = root / "captions.tsv", root / "captions.jsonl"
    rows: list[dict[str, Any]] = []
    if tsv.is_file():
        with open(tsv, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    elif jsonl.is_file():
        with open(jsonl, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    for r in rows:
        img, cap = r.get("image"), r.get("caption")
        if isinstance(img, str) and isinstance(cap, str) and cap.strip():
            caps.setdefault(img, []).append(cap.strip())
    return caps


def iter_image_tree(root: Path, extensions: Sequence[str]) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(source, line, raw)`` records (``line`` numbers the files, 1-based), sorted by
    path so ids and order are stable. Symlinks to directories are not followed."""
    root = Path(root)
    exts = {e.lower() for e in extensions}
    caps = read_captions(root)
    by_name: dict[str, list[str]] = {}
    for k, v in caps.items():
        by_name.setdefault(Path(k).name, []).extend(v)
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in filenames:
            if Path(f).suffix.lower() in exts:
                files.append(Path(dirpath) / f)
    files.sort()
    if not files:
        from semsearch.errors import BadInput

        raise BadInput(
            f"input directory {root} has no corpus.jsonl (BEIR layout) and no image files "
            f"({', '.join(sorted(exts))})"
        )
    for n, f in enumerate(files, 1):
        rel = f.relative_to(root).as_posix()
        c = caps.get(rel) or by_name.get(f.name) or []
        # absolute: the reader joins relative image paths to the source's parent, which is
        # right for a JSONL/CSV file but not for a tree (its source is the root itself)
        raw: dict[str, Any] = {"id": rel, "image": os.path.abspath(f)}
        if c:
            raw["title"] = c[0]
            raw["text"] = " ".join(c)
        yield str(root), n, raw
