from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from semsearch.cli import app
from semsearch.cli.common import console, errors_to_exit, load_settings, out, require_index
from semsearch.rerank.train.stages import STAGE2_EPOCHS, STAGE2_NEGATIVES


@app.command("adapt")
def adapt_cmd(
    index: Annotated[Path | None, typer.Option(
        "--index", help="the index to adapt (its documents are the only input); not used with "
                        "SEMSEARCH_STORE__BACKEND=elasticsearch, which adapts the store index")] = None,
    work: Annotated[Path | None, typer.Option(
        "--work", help="with the Elasticsearch store: the local folder for adapt's steps and report "
                       "(default ./adapt-<store index name>)")] = None,
    sample: Annotated[int, typer.Option(help="pseudo-queries mined for training")] = 2000,
    dev: Annotated[int, typer.Option(help="pseudo-queries held out for choosing settings")] = 300,
    dense: Annotated[bool, typer.Option("--dense/--no-dense", help="fine-tune the dense encoder")] = True,
    dense_epochs: Annotated[float, typer.Option(help="dense fine-tuning epochs")] = 1.0,
    dense_max_steps: Annotated[int, typer.Option(help="dense fine-tuning step budget (-1: epochs decide)")] = -1,
    dense_batch_size: Annotated[int, typer.Option(help="dense fine-tuning batch (in-batch negatives)")] = 32,
    dense_max_seq_length: Annotated[int, typer.Option(help="tokens per text while fine-tuning")] = 192,
    dense_lr: Annotated[float, typer.Option(help="dense fine-tuning learning rate")] = 2e-5,
    reranker: Annotated[bool, typer.Option("--reranker/--no-reranker", help="train a reranker (slow on CPU)")] = False,
    reranker_max_pairs: Annotated[int, typer.Option(help="reranker stage-1 pair budget")] = 4000,
    reranker_max_steps: Annotated[int, typer.Option(help="reranker stage-1 step budget (-1: one epoch)")] = -1,
    reranker_stage2_negatives: Annotated[int, typer.Option(
        help="reranker stage 2 (with --qrels): hard negatives per judged query")] = STAGE2_NEGATIVES,
    reranker_stage2_epochs: Annotated[float, typer.Option(
        help="reranker stage 2 (with --qrels): epochs; the best checkpoint on held-out judged queries is kept")] = STAGE2_EPOCHS,
    queries: Annotated[Path | None, typer.Option(help="optional judged queries (BEIR queries.jsonl)")] = None,
    qrels: Annotated[Path | None, typer.Option(help="optional judged qrels TSV (with --queries)")] = None,
    weak_pairs: Annotated[Path | None, typer.Option(help="optional JSONL {query, doc_id, label}")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Adapt the engine to this corpus without labels: mine pseudo-queries, choose fusion,
    fine-tune the dense encoder and (optionally) a reranker on a held-out share, record the
    choices in the index. Re-running skips finished steps (DIR/adapt/state.json)."""
    from semsearch.adapt.dense import DenseTrainConfig
    from semsearch.adapt.runner import Adapter, AdaptOptions

    if (queries is None) != (qrels is None):
        from semsearch.cli.common import fail

        fail("--queries and --qrels go together")
    settings = load_settings()
    opts = AdaptOptions(
        sample=sample, dev=dev, dense=dense, reranker=reranker, reranker_max_pairs=reranker_max_pairs,
        reranker_max_steps=reranker_max_steps, reranker_stage2_negatives=reranker_stage2_negatives,
        reranker_stage2_epochs=reranker_stage2_epochs, queries=queries, qrels=qrels, weak_pairs=weak_pairs, seed=seed,
        dense_config=DenseTrainConfig(epochs=dense_epochs, max_steps=dense_max_steps, batch_size=dense_batch_size,
                                      max_seq_length=dense_max_seq_length, learning_rate=dense_lr),
    )
    t0 = time.perf_counter()
    with errors_to_exit():
        if settings.store.backend == "elasticsearch":
            alias = settings.store.elasticsearch.index
            where, what = work or Path(f"adapt-{alias}"), f"Elasticsearch store index {alias!r}"
            # said before the run, not after it
            console.print(f"note: on the Elasticsearch store adapt records its choices in the store index (a "
                          f"kept encoder or reranker is published in the cluster, and the documents are "
                          f"re-encoded into a new index behind the alias for a new encoder); every replica "
                          f"reads them; its steps and report go to "
                          f"{where}", highlight=False, markup=False)
        else:
            require_index(index, settings)
            if work is not None:
                from semsearch.errors import BadInput

                raise BadInput("--work is for the Elasticsearch store; a local index keeps adapt's steps in "
                               "its own adapt/ folder")
            where, what = index, str(index)
        state = Adapter(where, settings, opts, say=lambda m: out.print(m, highlight=False, markup=False)).run()
    secs = time.perf_counter() - t0
    tuned = state["apply"]["result"]["tuned"]
    fine_tuned = "dense_encoder" in tuned or bool(state["apply"]["result"].get("reencode"))
    out.print(f"adapted {what} in {secs:.0f} s: fusion {tuned['fusion']['method']} "
              f"{tuned['fusion']['weights']}, dense {'fine-tuned' if fine_tuned else 'base'}, "
              f"rerank {'on' if 'rerank' in tuned else 'off'}; report {state['report']['result']['summary']}")
