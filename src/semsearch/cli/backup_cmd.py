"""Backups and checks: ``semsearch snapshot`` (one archive of a live index), ``semsearch
restore`` (an archive into a new directory) and ``semsearch verify`` (say what is wrong)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from semsearch.cli import app
from semsearch.cli.common import console, errors_to_exit, load_settings, local_only, out


@app.command("snapshot")
def snapshot_cmd(
    index: Annotated[Path | None, typer.Option("--index", help="index directory (another process may be writing it)")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="archive to write (.tar; .tar.gz or .tgz: compressed)")] = None,
    repository: Annotated[str | None, typer.Option(
        "--repository", help="with the Elasticsearch store: the cluster's snapshot repository to write into")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="with the Elasticsearch store: the snapshot's name (default <index>-<UTC time>)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Write a consistent snapshot of an index to one file while it is written and searched:
    the commit's segment, deletion and template files, and an online backup of the store.
    With the Elasticsearch store: an Elasticsearch snapshot of the store index and of the
    models `semsearch adapt` published for it, into --repository."""
    from semsearch.indexer.backup import snapshot

    settings = load_settings()
    with errors_to_exit():
        if _store(settings, "snapshot", local=(index, out_file), store=repository):
            from semsearch.collection import Collection
            from semsearch.store_es.backup import snapshot as store_snapshot

            with Collection.open(None, settings) as col:
                info = store_snapshot(col, repository, name)  # type: ignore[arg-type]
            said = (f"snapshot {info['snapshot']} of {', '.join(info['indices'])} ({info['documents']} documents, "
                    f"{len(info['models'])} model(s)) written into repository {repository} in {info['seconds']:.1f}s")
        else:
            info = snapshot(index, out_file)  # type: ignore[arg-type]
            said = (f"snapshot of {index} (generation {info['generation']}, {info['documents']} documents, "
                    f"{info['segments']} segments) written to {out_file}: {info['bytes'] / 1e6:.1f} MB in "
                    f"{info['seconds']:.1f}s")
    _summary(info, said, json_out)


@app.command("restore")
def restore_cmd(
    archive: Annotated[Path | None, typer.Option("--from", help="archive written by `semsearch snapshot`")] = None,
    index: Annotated[Path | None, typer.Option("--index", help="directory to restore into (absent or empty)")] = None,
    repository: Annotated[str | None, typer.Option(
        "--repository", help="with the Elasticsearch store: the snapshot repository to read from")] = None,
    snapshot_name: Annotated[str | None, typer.Option(
        "--snapshot", help="with the Elasticsearch store: the snapshot to restore")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace a non-empty directory (never one a process is writing), "
                                                          "or an existing store index")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Bring a snapshot back into a new directory. Changes the store holds beyond the
    snapshot's commit become searchable on the first writable open. With the Elasticsearch
    store: the snapshot's index comes back behind the configured index name (alias), with the
    models its manifest names."""
    from semsearch.indexer.backup import restore

    settings = load_settings()
    with errors_to_exit():
        if _store(settings, "restore", local=(archive, index), store=repository):
            from semsearch.errors import BadInput
            from semsearch.indexer.es_common import EsConnection
            from semsearch.store_es.backup import restore as store_restore

            if not snapshot_name:
                raise BadInput("--snapshot is required with --repository")
            es = settings.store.elasticsearch
            conn = EsConnection(es)
            try:
                info = store_restore(conn, es, repository, snapshot_name, force=force)  # type: ignore[arg-type]
            finally:
                conn.close()
            said = (f"restored {repository}/{snapshot_name} into {info['index']} behind {info['alias']}: "
                    f"{info['documents']} documents, {len(info['models_copied'])} model(s) copied, "
                    f"{info['seconds']:.1f}s")
        else:
            info = restore(archive, index, force=force)  # type: ignore[arg-type]
            said = (f"restored {archive} into {index}: {info['documents']} documents, {info['segments']} "
                    f"segments, {info['pending_changes']} change(s) applied on the first writable open")
    _summary(info, said, json_out)


def _summary(info: dict[str, Any], said: str, json_out: bool) -> None:
    if json_out:
        out.print_json(json.dumps(info, default=str))
    else:
        console.print(said, highlight=False)


def _store(settings: Any, command: str, *, local: tuple[Path | None, Path | None], store: str | None) -> bool:
    """Whether ``command`` works on the Elasticsearch store (True) or a local directory, with
    the options each needs (:class:`BadInput` naming what is missing or out of place)."""
    from semsearch.errors import BadInput

    flags = {"snapshot": ("--index", "--out"), "restore": ("--from", "--index")}[command]
    if settings.store.backend == "elasticsearch":
        if any(v is not None for v in local):
            raise BadInput(f"{' and '.join(flags)} are for a local index; with the Elasticsearch store "
                           f"`semsearch {command}` uses the cluster's snapshot API: --repository NAME")
        if not store:
            raise BadInput(f"with the Elasticsearch store `semsearch {command}` needs --repository (a snapshot "
                           "repository registered in the cluster)")
        return True
    if store is not None:
        raise BadInput("--repository is for the Elasticsearch store (SEMSEARCH_STORE__BACKEND=elasticsearch)")
    missing = [f for f, v in zip(flags, local) if v is None]
    if missing:
        raise BadInput(f"`semsearch {command}` of a local index needs {' and '.join(missing)}")
    return False


@app.command("verify")
def verify_cmd(
    index: Annotated[Path, typer.Option("--index", help="index directory")],
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Check an index: manifest, segments, deletion files, counts, the store against the
    segments. Exit 1 when anything is wrong (warnings alone exit 0)."""
    from rich.markup import escape

    from semsearch.indexer.backup import verify

    with errors_to_exit():
        local_only("verify", load_settings())
        report = verify(index)
    if json_out:
        out.print_json(json.dumps(report.to_dict(), default=str))
    else:
        for p in report.problems:
            colour = "red" if p.level == "error" else "yellow"
            console.print(f"[bold {colour}]{p.level}[/] {escape(f'[{p.check}] {p.message}')}", highlight=False, markup=True)
        st = report.stats
        verdict = "OK" if report.ok else f"{len(report.errors)} error(s)"
        console.print(f"{index}: {verdict}, {len(report.warnings)} warning(s); {st.get('documents', '?')} "
                      f"documents in {st.get('segments', '?')} segments, {st.get('pending_changes', 0)} "
                      "pending change(s)", highlight=False)
    if not report.ok:
        raise typer.Exit(1)
