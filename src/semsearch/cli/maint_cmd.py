"""Maintenance: ``semsearch reindex`` (rebuild a channel with new settings from what is
stored, without re-encoding), ``semsearch compact`` (merge every segment into one) and
``semsearch models`` (the models ``adapt`` published in an Elasticsearch cluster)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from semsearch.cli import app
from semsearch.cli.common import (
    INDEX_HELP,
    console,
    errors_to_exit,
    load_settings,
    local_only,
    out,
    require_index,
)


@app.command("reindex")
def reindex_cmd(
    index: Annotated[Path | None, typer.Option("--index", help=INDEX_HELP)] = None,
    lexical: Annotated[bool, typer.Option("--lexical", help="re-analyse the text with the configured analyzer and BM25 settings")] = False,
    factory: Annotated[str | None, typer.Option(help="rebuild a vector channel's FAISS index with this factory, e.g. HNSW32, IVF{nlist},PQ32")] = None,
    channel: Annotated[str, typer.Option(help="the vector channel --factory applies to")] = "dense",
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Rebuild derived data with new settings from stored tokens and vectors (nothing is
    re-encoded), as a new segment that replaces the old ones in one commit; readers of the
    index keep searching meanwhile. With neither option, an older index format is upgraded.
    With the Elasticsearch store: a zero-downtime rebuild into a new physical index with the
    configured analyzer, k1, b and vector index type (writes made meanwhile are kept)."""
    import time

    from semsearch.collection import Collection

    settings = load_settings()
    t0 = time.perf_counter()
    with errors_to_exit():
        if settings.store.backend == "elasticsearch":
            _rebuild_store(settings, factory, json_out)
            return
        require_index(index, settings)
        with Collection.open(index, settings, writable=True, reindex=True) as col:
            info = col.reindex(lexical=lexical, factory=factory, channel=channel) if (lexical or factory) else col.refresh()
    info = {**info, "seconds": round(time.perf_counter() - t0, 3)}
    if json_out:
        out.print_json(json.dumps(info, default=str))
    else:
        console.print(f"reindexed {index} in {info['seconds']:.1f}s", highlight=False)


def _rebuild_store(settings: object, factory: str | None, json_out: bool) -> None:
    from semsearch.collection import Collection
    from semsearch.errors import BadInput

    if factory is not None:
        raise BadInput("--factory builds a FAISS index of a local index; the store's vector index type is "
                       "SEMSEARCH_STORE__ELASTICSEARCH__VECTOR_INDEX, which `semsearch reindex` applies")
    with Collection.open(None, settings, writable=True, reindex=True) as col:  # type: ignore[arg-type]
        info = col.rebuild()  # type: ignore[attr-defined]
        where = col.location  # type: ignore[attr-defined]
    if json_out:
        out.print_json(json.dumps(info, default=str))
    else:
        caught = info["caught_up"]
        console.print(f"rebuilt {where} into {info['index']}: {info['documents']} documents in "
                      f"{info['seconds']:.1f}s ({caught['new']} new, {caught['changed']} changed, {caught['deleted']} "
                      f"deleted while it ran; writes paused {info['writes_blocked_s']:.2f}s)", highlight=False)


@app.command("compact")
def compact_cmd(
    index: Annotated[Path, typer.Option("--index", help="index directory")],
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Merge every segment into one and purge deleted rows (searches go on meanwhile)."""
    from semsearch.collection import Collection

    settings = load_settings()
    with errors_to_exit():
        local_only("compact", settings)
        with Collection.open(index, settings, writable=True) as col:
            merges = col.compact()
            segs = col.stats()["segments"]
    info = {"merges": len(merges), "segments": len(segs),
            "purged": sum(m["deleted_purged"] for m in merges)}
    if json_out:
        out.print_json(json.dumps(info))
    else:
        console.print(f"compacted {index}: {info['merges']} merge(s), {info['purged']} deleted rows "
                      f"purged, {info['segments']} segment(s) left", highlight=False)


@app.command("models")
def models_cmd(
    prune: Annotated[bool, typer.Option("--prune", help="delete the models no store index names any more, in the "
                                                        "cluster and in this machine's MODEL_CACHE")] = False,
    older_than: Annotated[float, typer.Option(
        help="--prune: only models published more than this many hours ago (an adapt that has published a "
             "model but not yet switched its index to it keeps it)")] = 24.0,
    json_out: Annotated[bool, typer.Option("--json", help="print the models as JSON")] = False,
) -> None:
    """With the Elasticsearch store: the models `semsearch adapt` published in the cluster
    (SEMSEARCH_STORE__ELASTICSEARCH__MODELS_INDEX) and the store indexes that use each;
    --prune deletes those that none uses, and this machine's copies of them (run it on each
    replica's machine to clean its cache too)."""
    import datetime

    from semsearch.errors import BadInput
    from semsearch.indexer.es_common import EsConnection
    from semsearch.store_es import models

    settings = load_settings()
    with errors_to_exit():
        if settings.store.backend != "elasticsearch":
            raise BadInput("`semsearch models` lists the models published in an Elasticsearch cluster: set "
                           "SEMSEARCH_STORE__BACKEND=elasticsearch (a local index keeps its adapted models in "
                           "its own folder, deleted with it)")
        if older_than < 0:
            raise BadInput(f"--older-than must be >= 0 hours (got {older_than})")
        es = settings.store.elasticsearch
        conn = EsConnection(es)
        try:
            used, grace = models.in_use(conn), older_than * 3600
            pruned = models.prune(conn, es.models_index, older_than=grace, used=used) if prune else []
            local = models.prune_cache(es.model_cache, used, older_than=grace) if prune else []
            rows = [{"ref": models.ref_of(m["model"]), "pruned": True} for m in pruned]
            rows += [{"ref": models.ref_of(m["model"]), "bytes": sum(int(f["bytes"]) for f in m["files"]),
                      "published_at": m.get("published_at"), "base": m.get("base"),
                      "used_by": used.get(m["model"], []), "pruned": False}
                     for m in models.listings(conn, es.models_index)]
        finally:
            conn.close()
    if json_out:
        out.print_json(json.dumps({"models_index": es.models_index, "models": rows,
                                   "cache_removed": [str(p) for p in local]}, default=str))
        return
    for r in rows:
        if r["pruned"]:
            out.print(f"pruned {r['ref']}", highlight=False)
            continue
        when = (datetime.datetime.fromtimestamp(r["published_at"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                if r["published_at"] else "unknown")
        use = ", ".join(r["used_by"]) or "unused"
        out.print(f"{r['ref']}  {r['bytes'] / 1e6:.0f} MB  published {when}  used by: {use}", highlight=False)
    kept = sum(not r["pruned"] for r in rows)
    out.print(f"{kept} model(s) in {es.models_index}" + (f", {len(rows) - kept} pruned" if prune else ""),
              highlight=False)
    if prune:
        out.print(f"{len(local)} local cop{'y' if len(local) == 1 else 'ies'} removed from "
                  f"{es.model_cache or models.default_cache()}", highlight=False)
