"""The ``semsearch`` command. Each subcommand lives in a module of this package and is
registered on :data:`app` when :func:`main` runs (so ``--help`` loads no model)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="semsearch",
    help="Semantic search engine: BM25 + dense vectors + fusion, for text and images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.callback()
def _root(
    config: Annotated[Path | None, typer.Option(
        "--config", envvar="SEMSEARCH_CONFIG", help="settings file: TOML ([api] max_k = 50) or .env "
        "(SEMSEARCH_API__MAX_K=50); environment variables override it")] = None,
) -> None:
    """Runs before every subcommand: reads the settings file and sets up logging."""
    from semsearch.cli.common import load_settings
    from semsearch.logs import configure

    if config is not None:
        os.environ["SEMSEARCH_CONFIG"] = str(config)  # every later Settings() reads it
    s = load_settings()
    level = os.environ.get("SEMSEARCH_LOG_LEVEL") or s.log.level  # SEMSEARCH_LOG_LEVEL: older name
    configure(level, fmt=s.log.format, libraries=s.log.libraries)


#: modules that define subcommands on ``app``; later features append theirs here
COMMAND_MODULES = [
    "semsearch.cli.index_cmd",
    "semsearch.cli.search_cmd",
    "semsearch.cli.info_cmd",
    "semsearch.cli.serve_cmd",
    "semsearch.cli.images_cmd",
    "semsearch.cli.eval_cmd",
    "semsearch.cli.train_cmd",
    "semsearch.cli.maint_cmd",
    "semsearch.cli.adapt_cmd",
    "semsearch.cli.backup_cmd",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # logging is set up by _root (semsearch.logs): other libraries' records (bm25s logs at
    # DEBUG, the Elasticsearch transport logs every retried connection failure) and Python
    # warnings (torch's ONNX exporter, onnxruntime's quantizer) are shown only from ERROR
    # unless SEMSEARCH_LOG__LEVEL=DEBUG; the CLI reports failures as one line instead
    if os.environ.get("SEMSEARCH_NO_PROGRESS") == "1" or not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TQDM_DISABLE", "1")  # sentence-transformers' model-card bars (semsearch uses none)
    app()
