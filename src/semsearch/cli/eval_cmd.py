from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from semsearch.cli import app
from semsearch.cli.common import console, errors_to_exit, load_settings, out


@app.command("eval")
def eval_cmd(
    dataset: Annotated[Path, typer.Option("--dataset", help="BEIR-layout directory (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or an image set with captions.tsv")],
    out_dir: Annotated[Path, typer.Option("--out", help="report directory (results.json, report.md, report.html, runs/)")],
    split: Annotated[str, typer.Option(help="split to report on")] = "test",
    configs: Annotated[str | None, typer.Option(help="comma-separated configs, e.g. lexical,dense,hybrid-rrf,hybrid-convex (default: all that apply)")] = None,
    index: Annotated[Path | None, typer.Option("--index", help="index to reuse (default OUT/index, built when missing); with "
                                                              "SEMSEARCH_STORE__BACKEND=elasticsearch the store index is "
                                                              "evaluated (built from the corpus when its alias is missing)")] = None,
    tune_on: Annotated[str | None, typer.Option("--tune-on", help="split to choose fusion parameters on (e.g. train); never the reported split")] = None,
    reranker: Annotated[list[str] | None, typer.Option("--reranker", help="trained reranker directory: adds +rerank variants; repeat as NAME=DIR to compare several (+rerank:NAME)")] = None,
    baseline: Annotated[str | None, typer.Option(help="config the others are tested against (default: the first)")] = None,
    stat_test: Annotated[str, typer.Option("--stat-test", help="student (paired t-test) or fisher (randomisation)")] = "student",
    alpha: Annotated[float, typer.Option(help="significance level after Holm correction")] = 0.05,
    latency_queries: Annotated[int, typer.Option(
        min=0, help="queries searched one at a time to measure latency (0: not measured)")] = 100,
    compare_index: Annotated[list[str] | None, typer.Option("--compare-index", help="NAME=DIR: another index of the same corpus (e.g. the one before `semsearch adapt`): its configs run too, reported as CONFIG[NAME] beside the others; repeatable")] = None,
) -> None:
    """Evaluate retrieval quality on a dataset and write a report."""
    import time

    from semsearch.eval.api import run_eval
    from semsearch.eval.report import format_ms

    settings = load_settings()
    names = [c.strip() for c in configs.split(",") if c.strip()] if configs else None
    t0 = time.perf_counter()

    def progress(cfg, means, lat) -> None:  # noqa: ANN001
        console.print(f"{cfg.name}: nDCG@10 {means['ndcg@10']:.4f}  recall@100 {means['recall@100']:.4f}  "
                      f"p50 {format_ms(lat['p50'])} ms  p95 {format_ms(lat['p95'])} ms", highlight=False)

    with errors_to_exit():
        outcome = run_eval(dataset, split, out_dir, settings, configs=names, index_dir=index, tune_on=tune_on,
                           reranker=reranker, baseline=baseline, stat_test=stat_test, alpha=alpha,
                           on_config=progress, latency_queries=latency_queries, compare_index=compare_index)
    r = outcome.result
    for name, why in r.skipped.items():
        console.print(f"skipped {name}: {why}", highlight=False)
    from semsearch.eval.report import sanity

    s = sanity(r)
    if s:
        console.print(s["line"], highlight=False)
    out.print(f"wrote {outcome.paths['html']}, {outcome.paths['markdown']}, {outcome.paths['results']} "
              f"({len(r.runs)} configs x {len(r.dataset.queries)} queries in {time.perf_counter() - t0:.1f}s)",
              highlight=False)
