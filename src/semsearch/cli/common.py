"""Helpers shared by the subcommands: settings, progress, error reporting."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from semsearch.errors import SemsearchError

# markup off: what is printed holds ids, titles, paths and messages ("[draft] ...", "ix[2]");
# the few styled prefixes ask for markup and escape the data beside them
console = Console(stderr=True, soft_wrap=True, markup=False)
out = Console(soft_wrap=True, markup=False)


def load_settings(**overrides: Any):  # noqa: ANN201 - Settings
    from semsearch.config import Settings

    try:
        s = Settings()
    except ValidationError as e:
        fail(f"invalid settings from the environment or settings file:\n{e}")
    except ValueError as e:  # a settings file that is missing or not valid TOML
        fail(str(e))
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition("__")
        try:
            setattr(getattr(s, section), key, value)
        except ValidationError as e:
            fail(f"invalid option {key.replace('_', '-')}={value!r}: {e.errors()[0]['msg']}")
    return s


#: the ``--index`` option of the commands that also read the Elasticsearch store
INDEX_HELP = "index directory (not used with SEMSEARCH_STORE__BACKEND=elasticsearch)"


def require_index(index: Any, settings: Any) -> None:
    """A command that reads an index needs ``--index`` unless the store is Elasticsearch."""
    if index is None and settings.store.backend != "elasticsearch":
        from semsearch.errors import BadInput

        raise BadInput("--index is required (or set SEMSEARCH_STORE__BACKEND=elasticsearch)")


#: what the local-only commands say with the Elasticsearch store, by command
STORE_INSTEAD = {
    "compact": "Elasticsearch merges the store index's segments itself",
    "verify": "check the cluster with `semsearch info` or GET _cluster/health",
    "train-reranker": "train on a local index of the same documents and set SEMSEARCH_RERANK__MODEL on "
                      "every replica",
}


def local_only(command: str, settings: Any) -> None:
    """Refuse a command that works on a local index directory only when the Elasticsearch
    store is configured, saying what to do instead (before, some of them ran on whatever
    --index named, others crashed on a missing method)."""
    if settings.store.backend == "elasticsearch":
        from semsearch.errors import BadInput

        raise BadInput(f"`semsearch {command}` works on a local index directory, and "
                       f"SEMSEARCH_STORE__BACKEND=elasticsearch is set: {STORE_INSTEAD[command]}")


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def errors_to_exit() -> Iterator[None]:
    """Turn semsearch errors into a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except SemsearchError as e:
        fail(str(e))


def progress_enabled(settings: Any) -> bool:
    if settings.no_progress or os.environ.get("SEMSEARCH_NO_PROGRESS") == "1":
        return False
    return sys.stderr.isatty()
