from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from semsearch.cli import app
from semsearch.cli.common import (
    INDEX_HELP,
    console,
    errors_to_exit,
    load_settings,
    out,
    progress_enabled,
    require_index,
)


def count_records(inputs: list[Path]) -> int | None:
    """How many records the inputs hold, for the progress bar's total: lines of JSONL files
    (and of BEIR corpora), rows of CSV/TSV (one per line after the header); None when an
    input is an image tree (counted as it is walked)."""
    total = 0
    for p in inputs:
        if p.is_dir():
            p = p / "corpus.jsonl"
            if not p.exists():
                return None
        n = 0
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                n += chunk.count(b"\n")
                last = chunk
        if n and not last.endswith(b"\n"):
            n += 1
        total += n - (1 if p.suffix.lower() in (".csv", ".tsv") and n else 0)
    return total


@app.command("index")
def index_cmd(
    input: Annotated[list[Path], typer.Option("--input", "-i", help="JSONL, CSV/TSV file or BEIR directory; repeatable")],
    index: Annotated[Path | None, typer.Option("--index", help="index directory (created if missing); not used with SEMSEARCH_STORE__BACKEND=elasticsearch")] = None,
    batch_size: Annotated[int | None, typer.Option(help="records per encoding batch")] = None,
    factory: Annotated[str | None, typer.Option(help="FAISS factory string for a new index, e.g. Flat, HNSW32, IVF256,Flat")] = None,
    on_duplicate: Annotated[str | None, typer.Option(help="'reject' (default) or 'last' for ids repeated in the input")] = None,
    errors: Annotated[Path | None, typer.Option(help="where to write rejected records (default INDEX/errors.jsonl)")] = None,
    no_dense: Annotated[bool, typer.Option("--no-dense", help="lexical only: skip the text encoder")] = False,
    images: Annotated[bool | None, typer.Option("--images/--no-images", help="image channels (CLIP + hashes); default: on when an input is an image directory or has 'image' fields")] = None,
    no_clip: Annotated[bool, typer.Option("--no-clip", help="image hashes only: skip the CLIP channel")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Bulk-index documents. Re-running the same command resumes an interrupted run."""
    import json

    from semsearch.collection import Collection
    from semsearch.indexer.pipeline import TextChannel, write_errors

    settings = load_settings(
        indexing__batch_size=batch_size, vector__faiss__factory=factory, indexing__on_duplicate=on_duplicate
    )
    with errors_to_exit():
        for p in input:
            if not p.exists():
                from semsearch.errors import BadInput

                raise BadInput(f"input {p} does not exist")
        if settings.store.backend == "elasticsearch":
            _index_store(input, settings, errors, json_out, clip=not no_clip)
            return
        if index is None:
            from semsearch.errors import BadInput

            raise BadInput("--index is required (or set SEMSEARCH_STORE__BACKEND=elasticsearch)")
        col = Collection.create(index, settings)
        # the index's own encoder when the user configured none (adapt's fine-tuned one)
        te = col.searcher.settings.text_encoder
        channels: list = []
        try:
            col.ready()  # a server backend (Elasticsearch lexical) fails here, before encoding anything
            if not no_dense:
                from semsearch.encoders import make_text_encoder

                enc = make_text_encoder(te)
                channels.append(TextChannel(enc, te.doc_template, settings.vector.backend, passages=te.passages))
            from semsearch.images.cli_support import wants_images

            if images if images is not None else wants_images(input):
                from semsearch.images.channels import image_channels

                roots = settings.images.roots or [p if p.is_dir() else p.parent for p in input]
                channels += image_channels(settings, roots=roots, clip=not no_clip)
            if progress_enabled(settings):
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )

                rate = TextColumn("{task.fields[rate]}")
                with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), rate,
                              TimeElapsedColumn(), TimeRemainingColumn(), console=console) as prog:
                    tasks = {"encode": prog.add_task("reading + encoding", total=count_records(input), rate="")}
                    names = {"refresh": "writing segments", "merge": "merging segments"}

                    def step(phase: str, n: int, total: int | None = None) -> None:
                        if phase not in tasks:
                            tasks[phase] = prog.add_task(names[phase], total=total, rate="")
                        task = tasks[phase]
                        prog.update(task, advance=n, **({"total": total} if total is not None else {}))
                        speed = next(t for t in prog.tasks if t.id == task).speed
                        prog.update(task, rate=f"{speed:,.0f} docs/s" if speed else "")

                    report = col.bulk_index(input, channels, on_progress=lambda n: step("encode", n),
                                            on_phase=step)
            else:
                report = col.bulk_index(input, channels)
            if not no_dense:
                from semsearch.encoders import prepare_query_encoder

                prepare_query_encoder(te)  # the ONNX export, once, here
        finally:
            from semsearch.images.channels import close_channels

            close_channels(channels)
            col.close()
    errors_path = errors or (index / "errors.jsonl")
    write_errors(errors_path, report.rejected)
    summary = report.as_dict()
    summary["errors_file"] = str(errors_path)
    if json_out:
        out.print_json(json.dumps(summary))
    else:
        console.print(
            f"[bold]indexed[/] {report.indexed} docs ({report.unchanged} unchanged, "
            f"{len(report.rejected)} rejected) of {report.read} read in {report.seconds:.1f}s "
            f"({report.docs_per_s:.1f} docs/s)"
            + (f"; rejected records in {escape(str(errors_path))}" if report.rejected else ""),
            highlight=False, markup=True,
        )
    if report.rejected:
        raise typer.Exit(1)


def _index_store(inputs: list[Path], settings, errors: Path | None, json_out: bool, *, clip: bool) -> None:
    """``semsearch index`` into the Elasticsearch store (no index directory); ``clip``: an
    index without image channels yet gets the CLIP one with its first images."""
    import json

    from semsearch.collection import Collection
    from semsearch.indexer.pipeline import write_errors
    from semsearch.store_es.ingest import ingest

    with Collection.create(None, settings) as col:
        col.ready()  # an unreachable or red cluster fails before anything is encoded
        col.clip_images = clip
        report = ingest(col, inputs, settings)
    errors_path = errors or Path("errors.jsonl")
    rejected = report.pop("rejected")
    write_errors(errors_path, rejected)
    summary = {**report, "rejected": len(rejected), "errors_file": str(errors_path),
               "index": settings.store.elasticsearch.index}
    if json_out:
        out.print_json(json.dumps(summary))
    else:
        console.print(
            f"[bold]indexed[/] {report['indexed']} docs ({len(rejected)} rejected) of {report['read']} "
            f"read in {report['seconds']:.1f}s ({report['docs_per_s']:.1f} docs/s) into Elasticsearch "
            f"index {escape(repr(settings.store.elasticsearch.index))}"
            + (f"; rejected records in {escape(str(errors_path))}" if rejected else ""),
            highlight=False, markup=True)
    if rejected:
        raise typer.Exit(1)


@app.command("delete")
def delete_cmd(
    ids: Annotated[list[str], typer.Argument(help="document ids to delete")],
    index: Annotated[Path | None, typer.Option("--index", help=INDEX_HELP)] = None,
) -> None:
    """Delete documents by id."""
    from semsearch.collection import Collection

    settings = load_settings()
    with errors_to_exit():
        require_index(index, settings)
        with Collection.open(index, settings, writable=True) as col:
            present = list(col.get(ids))
            col.delete(present, wait_for=True)
    console.print(f"deleted {len(present)} of {len(ids)} ids")
