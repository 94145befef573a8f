from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from semsearch.cli import app
from semsearch.cli.common import console, errors_to_exit, fail, load_settings, local_only, out
from semsearch.rerank.train.stages import STAGE2_EPOCHS, STAGE2_NEGATIVES


@app.command("train-reranker")
def train_reranker_cmd(
    index: Annotated[Path, typer.Option("--index", help="indexed corpus to mine and retrieve from")],
    out_dir: Annotated[Path, typer.Option("--out", help="output directory (stage1/, stage2/)")],
    stage: Annotated[str, typer.Option(help="1, 2 or both")] = "both",
    qrels: Annotated[Path | None, typer.Option(help="stage 2: BEIR qrels TSV (train split)")] = None,
    queries: Annotated[Path | None, typer.Option(help="stage 2: BEIR queries.jsonl")] = None,
    weak_pairs: Annotated[Path | None, typer.Option(help="stage 1: extra JSONL {query, doc_id, label}")] = None,
    base: Annotated[str | None, typer.Option(help="start from this cross-encoder (default: MiniLM backbone)")] = None,
    stage1_sample: Annotated[int, typer.Option(help="stage 1: pseudo-queries to mine")] = 2000,
    max_pairs: Annotated[int | None, typer.Option(help="cap on training pairs per stage")] = None,
    negatives: Annotated[int, typer.Option(help="stage 1: hard negatives per query")] = 3,
    stage2_negatives: Annotated[int, typer.Option(help="stage 2: hard negatives per query")] = STAGE2_NEGATIVES,
    max_length: Annotated[int, typer.Option(help="tokens of query + document")] = 128,
    epochs: Annotated[float, typer.Option(help="stage 1 epochs")] = 1.0,
    stage2_epochs: Annotated[float, typer.Option(help="stage 2 epochs (small data: more passes)")] = STAGE2_EPOCHS,
    batch_size: Annotated[int, typer.Option()] = 16,
    learning_rate: Annotated[float, typer.Option()] = 4e-5,
    eval_steps: Annotated[int | None, typer.Option(help="evaluate/checkpoint every N steps")] = None,
    patience: Annotated[int, typer.Option(help="early stopping: evaluations without gain")] = 3,
    fn_ratio: Annotated[float, typer.Option(help="stage 1: false-negative filter ratio")] = 0.95,
    stage2_fn_ratio: Annotated[float | None, typer.Option(
        help="stage 2: false-negative filter ratio (default: off, qrels are judged)")] = None,
    max_dev: Annotated[int, typer.Option(help="dev queries held out per stage")] = 100,
    dev_depth: Annotated[int, typer.Option(help="dev: rerank the engine's top-N")] = 20,
    seed: Annotated[int, typer.Option()] = 12,
    resume: Annotated[bool, typer.Option(help="resume from the latest checkpoint")] = False,
) -> None:
    """Fine-tune the cross-encoder reranker in two stages (mined pairs, then judged qrels)."""
    from semsearch.errors import require

    if stage not in ("1", "2", "both"):
        fail(f"--stage must be 1, 2 or both, got {stage!r}")
    with errors_to_exit():
        require("datasets", "train")
        require("accelerate", "train")
    from semsearch.rerank.train.runner import train_reranker
    from semsearch.rerank.train.stages import StageConfig

    settings = load_settings()
    cfg = StageConfig(
        stage=0, out=out_dir, base=base, max_length=max_length, negatives=negatives, epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, eval_steps=eval_steps,
        patience=patience, seed=seed, dev_depth=dev_depth, fields=tuple(settings.rerank.fields),
        separator=settings.rerank.separator,
    )
    t0 = time.perf_counter()
    with errors_to_exit():
        local_only("train-reranker", settings)
        cards = train_reranker(
            index, out_dir, stage=stage, settings=settings, config=cfg,  # type: ignore[arg-type]
            stage1_sample=stage1_sample, fn_ratio=fn_ratio, stage2_fn_ratio=stage2_fn_ratio,
            stage2_epochs=stage2_epochs, stage2_negatives=stage2_negatives,
            queries=queries, qrels=qrels,
            weak_pairs=weak_pairs, max_pairs=max_pairs, max_dev=max_dev, resume=resume,
            say=lambda line: console.print(line, highlight=False),
        )
    secs = time.perf_counter() - t0
    for c in cards:
        m = c["metrics"]
        out.print(f"stage {c['stage']}: {c['counts']['train_pairs']} pairs, dev nDCG@10 "
                  f"{m['dev_ndcg@10_before']} -> {m['dev_ndcg@10_best']}")
    pairs = sum(c["counts"]["train_pairs"] for c in cards)
    # pairs passed through the model: steps x batch, at most every pair once per epoch
    seen = sum(min(c["metrics"].get("steps", 0) * batch_size,
                   c["counts"]["train_pairs"] * c["hyperparameters"]["epochs"]) for c in cards)
    out.print(f"trained {pairs} pairs ({seen:.0f} seen) in {secs:.0f} s ({seen / secs:.1f} pairs/s, "
              "mining and dev evaluation included); "
              f"model: {out_dir / ('stage' + str(cards[-1]['stage']))}")
