"""Write a dedup report: ``duplicates.json``, ``pairs.csv`` and a self-contained
``duplicates.html`` (thumbnails inlined as base64 JPEG)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

from semsearch.images.dedup import DedupResult
from semsearch.images.io import ImageError, load_image

logger = logging.getLogger(__name__)


def thumbnail_uri(path: str, size: int = 160, max_pixels: int = 89_478_485) -> str | None:
    try:
        im = load_image(path, max_pixels=max_pixels)
    except ImageError as e:
        logger.warning("no thumbnail: %s", e)
        return None
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def write_report(result: DedupResult, out_dir: Path, paths: dict[str, str | None], *, max_pixels: int = 89_478_485) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "duplicates.json", "csv": out_dir / "pairs.csv", "html": out_dir / "duplicates.html"}
    files["json"].write_text(json.dumps(result.as_json(), indent=1), encoding="utf-8")
    group_of = {i: n for n, g in enumerate(result.groups) for i in g}
    with open(files["csv"], "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["group", "a", "b", "hamming_distance", "rule"])
        for a, b, d, rule in result.pairs:
            w.writerow([group_of.get(a, ""), a, b, d, rule])
    files["html"].write_text(_html(result, paths, max_pixels), encoding="utf-8")
    return files


def _html(result: DedupResult, paths: dict[str, str | None], max_pixels: int) -> str:
    edges: dict[str, list[str]] = {}
    for a, b, d, rule in result.pairs:
        edges.setdefault(a, []).append(f"{b} (d={d}, {rule})")
        edges.setdefault(b, []).append(f"{a} (d={d}, {rule})")
    parts: list[Any] = [
        "<!doctype html><meta charset='utf-8'><title>semsearch near-duplicates</title>",
        "<style>body{font-family:sans-serif}figure{display:inline-block;margin:6px;width:170px;"
        "vertical-align:top;font-size:11px;word-break:break-all}section{border-top:1px solid #ccc}"
        "</style>",
        f"<h1>{len(result.groups)} near-duplicate groups among {result.images} images</h1>",
        f"<p>pHash Hamming distance &le; {result.max_distance}; rule <b>direct</b> = pHashes "
        "close, <b>mirrored</b> = one image's mirrored pHash close to the other's.</p>",
    ]
    for n, g in enumerate(result.groups):
        parts.append(f"<section><h2>group {n} ({len(g)} images)</h2>")
        for doc_id in g:
            uri = thumbnail_uri(paths[doc_id], max_pixels=max_pixels) if paths.get(doc_id) else None
            img = f"<img src='{uri}' alt=''>" if uri else "<i>(no preview)</i>"
            near = "<br>".join(html.escape(e) for e in edges.get(doc_id, []))
            parts.append(f"<figure>{img}<figcaption><b>{html.escape(doc_id)}</b><br>{near}</figcaption></figure>")
        parts.append("</section>")
    return "\n".join(parts)
