from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from semsearch.cli import app
from semsearch.cli.common import (
    INDEX_HELP,
    console,
    errors_to_exit,
    load_settings,
    out,
    require_index,
)


@app.command("dedup")
def dedup_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="report directory (JSON, CSV, HTML)")],
    index: Annotated[Path | None, typer.Option("--index", help=INDEX_HELP)] = None,
    max_distance: Annotated[int | None, typer.Option("--max-distance", help="pHash Hamming distance (inclusive)")] = None,
    no_mirror: Annotated[bool, typer.Option("--no-mirror", help="do not match horizontal flips")] = False,
    clip_min_cosine: Annotated[float | None, typer.Option(help="also require this CLIP cosine per pair (real CLIP weights only)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Group near-duplicate images (connected components of the pHash Hamming graph)."""
    import json

    from semsearch.collection import Collection
    from semsearch.images.report import write_report

    settings = load_settings(images__max_distance=max_distance)
    with errors_to_exit():
        if clip_min_cosine is not None and not settings.clip.pretrained:
            from semsearch.errors import BadInput

            raise BadInput("--clip-min-cosine needs real CLIP weights (SEMSEARCH_CLIP__PRETRAINED); "
                           "random weights would confirm nothing")
        require_index(index, settings)
        with Collection.open(index, settings) as col:
            res = col.duplicates(settings.images.max_distance, mirrored=not no_mirror, min_cosine=clip_min_cosine)
            ids = sorted({i for g in res.groups for i in g})
            docs = col.get(ids) if ids else {}
            files = write_report(res, out_dir, {i: d.image for i, d in docs.items()}, max_pixels=settings.images.max_pixels)
    summary = {"groups": len(res.groups), "pairs": len(res.pairs), "images": res.images,
               "seconds": round(res.seconds, 3), **{k: str(v) for k, v in files.items()}}
    if json_out:
        out.print_json(json.dumps(summary))
    else:
        console.print(f"{len(res.groups)} near-duplicate groups ({len(res.pairs)} pairs) among {res.images} images "
                      f"in {res.seconds:.2f}s; report in {out_dir}", highlight=False)


@app.command("similar")
def similar_cmd(
    image: Annotated[Path, typer.Argument(help="query image file")],
    index: Annotated[Path | None, typer.Option("--index", help=INDEX_HELP)] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="number of hits")] = 10,
    channels: Annotated[str | None, typer.Option(help="comma-separated: image,phash,dhash (default: image,phash present in the index)")] = None,
    max_distance: Annotated[int | None, typer.Option("--max-distance", help="hash channels: radius search instead of k-NN")] = None,
) -> None:
    """Find images similar to IMAGE (CLIP and/or perceptual hashes). Prints JSON."""
    import json

    from semsearch.collection import Collection

    settings = load_settings()
    with errors_to_exit():
        require_index(index, settings)
        with Collection.open(index, settings) as col:
            chans = [c.strip() for c in channels.split(",")] if channels else None
            res = col.search_by_image(image, k=k, channels=chans, max_distance=max_distance)
    out.print_json(json.dumps({
        "query": res.query,
        "took_ms": res.took_ms,
        "hits": [{"id": h.id, "rank": h.rank, "score": h.score, "image": h.document.image if h.document else None,
                  "channels": {c: v.model_dump() for c, v in h.channels.items()}, **h.extra} for h in res.hits],
    }))
