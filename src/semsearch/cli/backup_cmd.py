"""Backups and checks: ``semsearch snapshot`` (one archive of a live index), ``semsearch
restore`` (an archive into a new directory) and ``semsearch verify`` (say what is wrong)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from semsearch.cli import app
from semsearch.cli.common import console, errors_to_exit, load_settings, local_only, out


@app.command("snapshot")
def snapshot_cmd(
    index: Annotated[Path, typer.Option("--index", help="index directory (another process may be writing it)")],
    out_file: Annotated[Path, typer.Option("--out", help="archive to write (.tar; .tar.gz or .tgz: compressed)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Write a consistent snapshot of an index to one file while it is written and searched:
    the commit's segment, deletion and template files, and an online backup of the store."""
    from semsearch.indexer.backup import snapshot

    with errors_to_exit():
        local_only("snapshot", load_settings())
        info = snapshot(index, out_file)
    if json_out:
        out.print_json(json.dumps(info, default=str))
    else:
        console.print(f"snapshot of {index} (generation {info['generation']}, {info['documents']} documents, "
                      f"{info['segments']} segments) written to {out_file}: {info['bytes'] / 1e6:.1f} MB in "
                      f"{info['seconds']:.1f}s", highlight=False)


@app.command("restore")
def restore_cmd(
    archive: Annotated[Path, typer.Option("--from", help="archive written by `semsearch snapshot`")],
    index: Annotated[Path, typer.Option("--index", help="directory to restore into (absent or empty)")],
    force: Annotated[bool, typer.Option("--force", help="replace a non-empty directory (never one a process is writing)")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Bring a snapshot back into a new directory. Changes the store holds beyond the
    snapshot's commit become searchable on the first writable open."""
    from semsearch.indexer.backup import restore

    with errors_to_exit():
        local_only("restore", load_settings())
        info = restore(archive, index, force=force)
    if json_out:
        out.print_json(json.dumps(info, default=str))
    else:
        console.print(f"restored {archive} into {index}: {info['documents']} documents, {info['segments']} "
                      f"segments, {info['pending_changes']} change(s) applied on the first writable open",
                      highlight=False)


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
