"""Does a bulk input hold images? (decides whether `semsearch index` adds image channels)"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def wants_images(inputs: Sequence[Path], sample: int = 1000) -> bool:
    """True when an input is an image directory (no corpus.jsonl) or one of the first
    ``sample`` records of a JSONL/CSV input has an ``image`` field."""
    import csv

    for p in inputs:
        p = Path(p)
        if p.is_dir():
            if not (p / "corpus.jsonl").exists():
                return True
            continue
        try:
            with open(p, encoding="utf-8", newline="") as fh:
                if p.suffix.lower() in (".csv", ".tsv"):
                    head = csv.DictReader(fh, delimiter="\t" if p.suffix.lower() == ".tsv" else ",")
                    if head.fieldnames and "image" in head.fieldnames:
                        return True
                    continue
                for n, line in enumerate(fh):
                    if n >= sample:
                        break
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(rec, dict) and rec.get("image"):
                        return True
        except (OSError, UnicodeDecodeError):
            continue
    return False
