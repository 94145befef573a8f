from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from semsearch.cli import app
from semsearch.cli.common import INDEX_HELP, errors_to_exit, load_settings, out, require_index


@app.command("info")
def info_cmd(
    index: Annotated[Path | None, typer.Option("--index", help=INDEX_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Describe an index: documents, channels, backends, size, versions."""
    from semsearch.collection import Collection

    settings = load_settings()
    with errors_to_exit():
        require_index(index, settings)
        with Collection.open(index, settings) as col:
            info = col.stats()
    if json_out:
        out.print_json(json.dumps(info, default=str))
        return
    from rich.table import Table

    if info.get("backend") == "elasticsearch":  # the store: one index in a cluster
        t = Table(title=f"Elasticsearch store index {info['alias']!r} at {info['url']}", show_header=False)
        t.add_row("documents", str(info["documents"]))
        t.add_row("index", f"{info['index']} ({info['shards']} shards, {info['replicas']} replicas, "
                           f"health {info['health']})")
        for name, ch in info["channels"].items():
            t.add_row(f"channel {name}", f"dim={ch['dim']}" + (f" encoder={ch['encoder']}" if ch.get("encoder") else ""))
        t.add_row("size", f"{info['size_bytes'] / 1e6:.1f} MB (primaries)")
    else:
        t = Table(title=f"index {info['path']}", show_header=False)
        t.add_row("documents", str(info["documents"]))
        t.add_row("lexical", f"{info['lexical']['backend']} ({info['lexical']['count']} docs)")
        for name, ch in info["channels"].items():
            t.add_row(f"channel {name}", f"{ch['backend']} {ch.get('factory', '')} dim={ch['dim']} "
                      f"count={ch['count']} encoder={ch['encoder']}")
        t.add_row("size", f"{info['size_bytes'] / 1e6:.1f} MB")
        segs = info["segments"]
        t.add_row("segments", f"{len(segs)} ({sum(s['deleted'] for s in segs)} deleted rows not yet merged away)")
        t.add_row("generation", str(info["generation"]))
    if info.get("tuned"):
        t.add_row("search defaults", describe_tuned(info["tuned"]))
    out.print(t)


def describe_tuned(tuned: dict) -> str:
    """What ``semsearch adapt`` recorded, in a line: fusion, reranking, the encoder, when."""
    import time

    parts = []
    if tuned.get("fusion"):
        from semsearch.adapt.fusion import describe_fusion

        parts.append(f"fusion {tuned['fusion']['method']} {describe_fusion(tuned['fusion'])}")
    r = tuned.get("rerank") or {}
    parts.append(f"rerank on (blend {r.get('blend')}, top {r.get('depth')})" if r.get("enabled") else "rerank off")
    if tuned.get("dense_encoder"):
        parts.append(f"dense encoder {tuned['dense_encoder']}")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(tuned["at"])) if tuned.get("at") else "unknown time"
    return "; ".join(parts) + f" (by {tuned.get('by', '?')}, {when})"
