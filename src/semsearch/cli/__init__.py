"""The ``semsearch`` command. Each subcommand lives in a module of this package and is
registered on :data:`app` when :func:`main` runs (so ``--help`` loads no model)."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

app = typer.Typer(
    name="semsearch",
    help="Semantic search engine: BM25 + dense vectors + fusion, for text and images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: modules that define subcommands on ``app``; later features append theirs here
COMMAND_MODULES = [
    "semsearch.cli.index_cmd",
    "semsearch.cli.search_cmd",
    "semsearch.cli.info_cmd",
    "semsearch.cli.serve_cmd",
    "semsearch.cli.images_cmd",
    "semsearch.cli.eval_cmd",
    "semsearch.cli.train_cmd",
    "semsearch.cli.adapt_cmd",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    level = os.environ.get("SEMSEARCH_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # bm25s sets its own logger to DEBUG; the CLI shows our summaries instead
    logging.getLogger("bm25s").setLevel(max(logging.getLevelName(level), logging.WARNING))
    # the Elasticsearch transport logs every retried connection failure with a traceback;
    # the CLI reports the final failure as one line naming the URL instead
    logging.getLogger("elastic_transport").setLevel(max(logging.getLevelName(level), logging.ERROR))
    if os.environ.get("SEMSEARCH_NO_PROGRESS") == "1" or not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    app()
