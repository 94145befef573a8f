from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from semsearch.cli import app
from semsearch.cli.common import INDEX_HELP, errors_to_exit, fail, load_settings, out, require_index


@app.command("search")
def search_cmd(
    index: Annotated[Path | None, typer.Option("--index", help=INDEX_HELP)] = None,
    query: Annotated[str | None, typer.Argument(help="the query (or use --queries)")] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="number of hits")] = 10,
    mode: Annotated[str | None, typer.Option(help="lexical, dense, hybrid or image (text-to-image via CLIP)")] = None,
    fusion: Annotated[str | None, typer.Option(help="rrf or convex")] = None,
    weights: Annotated[str | None, typer.Option(help="channel weights, e.g. lexical=0.6,dense=0.4")] = None,
    filters: Annotated[str | None, typer.Option("--filter", help='metadata filters as JSON, e.g. {"year": {"gte": 2020}}')] = None,
    queries: Annotated[Path | None, typer.Option(help="batch mode: BEIR queries.jsonl or id<TAB>text TSV")] = None,
    output: Annotated[Path | None, typer.Option(help="batch mode: TREC run file to write")] = None,
    tag: Annotated[str, typer.Option(help="run tag in the TREC file")] = "semsearch",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Search an index with one query, or a file of queries into a TREC run file."""
    from semsearch.collection import Collection, SearchRequest
    from semsearch.errors import BadInput

    if (query is None) == (queries is None):
        fail("give either a QUERY argument or --queries FILE")
    if queries is not None and output is None:
        fail("--queries needs --output RUN_FILE")
    settings = load_settings()
    with errors_to_exit():
        w = None
        if weights:
            try:
                w = {c.split("=")[0].strip(): float(c.split("=")[1]) for c in weights.split(",")}
            except (IndexError, ValueError) as e:
                raise BadInput(f"--weights {weights!r}: expected name=number,name=number") from e
        f = None
        if filters:
            try:
                f = json.loads(filters)
            except json.JSONDecodeError as e:
                raise BadInput(f"--filter is not valid JSON: {e}") from e
            if not isinstance(f, dict):
                raise BadInput("--filter must be a JSON object")
        require_index(index, settings)
        with Collection.open(index, settings) as col:
            opts = dict(k=k, mode=mode, fusion=fusion, weights=w, filters=f)
            if queries is not None:
                from semsearch.eval.datasets import read_query_rows

                qs = read_query_rows(queries)
                results = []
                for start in range(0, len(qs), 256):
                    chunk = qs[start : start + 256]
                    results.extend(col.search_batch(
                        [SearchRequest(query=t, with_documents=False, **opts) for _, t in chunk]))
                with open(output, "w", encoding="utf-8") as fh:  # type: ignore[arg-type]
                    for (qid, _), res in zip(qs, results):
                        for h in res.hits:
                            fh.write(f"{qid} Q0 {h.id} {h.rank} {h.score:.6f} {tag}\n")
                out.print(f"wrote {output} ({len(qs)} queries)")
                return
            res = col.search(query, **opts)  # type: ignore[arg-type]
    if json_out:
        payload = {
            "query": res.query,
            "mode": res.mode,
            "degraded": res.degraded,
            "failed_channels": res.failed_channels,
            "hits": [
                {"id": h.id, "score": h.score, "rank": h.rank,
                 "channels": {c: v.model_dump() for c, v in h.channels.items()},
                 "title": h.document.title if h.document else None}
                for h in res.hits
            ],
        }
        out.print_json(json.dumps(payload))
        return
    from rich.table import Table
    from rich.text import Text

    # Text, not str: ids, titles and queries are data, never Rich markup ("[draft] ..." stays)
    t = Table(title=Text(f"{res.mode} search: {res.query!r} ({res.took_ms:.0f} ms)"))
    for col in ("rank", "id", "score", "channels", "title / text"):
        t.add_column(col)
    for h in res.hits:
        chans = " ".join(f"{c}#{v.rank}" for c, v in h.channels.items())
        doc = h.document
        snippet = (doc.title or doc.text[:80]) if doc else ""
        t.add_row(str(h.rank), Text(h.id), f"{h.score:.4f}", chans, Text(snippet))
    out.print(t)
