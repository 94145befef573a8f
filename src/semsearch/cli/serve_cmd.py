from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from semsearch.cli import app
from semsearch.cli.common import errors_to_exit, load_settings

logger = logging.getLogger(__name__)


@app.command("serve")
def serve_cmd(
    index: Annotated[Path | None, typer.Option(
        "--index", help="index directory (opened for writing); not used with "
        "SEMSEARCH_STORE__BACKEND=elasticsearch")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    log_level: Annotated[str | None, typer.Option(help="log level of the server log (default INFO, or SEMSEARCH_LOG__LEVEL when set)")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="worker processes; over a local index one of them is its writer, the "
        "others search it read-only (and commit writes to its document store)")] = 1,
) -> None:
    """Serve the REST API and the search page (write endpoints need SEMSEARCH_API_KEY).

    With SEMSEARCH_STORE__BACKEND=elasticsearch the server keeps no lock and no local state:
    run as many replicas (and --workers) as you like against one index. With a local index,
    --workers N runs N processes over it: the one holding the writer lock refreshes and
    merges, the others follow its commits (and take the lock over if it dies)."""
    from semsearch.errors import require

    uvicorn = require("uvicorn", "api")
    require("fastapi", "api")
    from semsearch.logs import configure
    from semsearch.search_api.app import create_app

    settings = load_settings()
    level = log_level or ("INFO" if "level" not in settings.log.model_fields_set else settings.log.level)
    # the server logs JSON lines by default (one access line per request, with its id)
    fmt = settings.log.format if "format" in settings.log.model_fields_set else "json"
    configure(level.upper(), fmt=fmt, libraries=settings.log.libraries, access=True)

    with errors_to_exit():
        from semsearch.errors import BadInput

        stateless = settings.store.backend == "elasticsearch"
        if stateless:
            from semsearch.collection import Collection

            Collection.open(None, settings).close()  # a missing index or cluster fails here (exit 2)
        else:
            from semsearch.indexer.manifest import read_manifest

            if index is None:
                raise BadInput("--index is required (or set SEMSEARCH_STORE__BACKEND=elasticsearch)")
            manifest = read_manifest(index)  # a missing or unreadable index fails here, with exit code 2
            if settings.vector.faiss.gpu == "always" and manifest.channels:
                from semsearch.indexer.segments.vectors import require_gpu

                require_gpu(settings.vector.faiss)  # no usable GPU: one line and exit 2, not a traceback
        # keep idle connections open longer than clients do (httpx and most clients expire
        # theirs after 5 s, uvicorn's own default): with equal timeouts a client can reuse a
        # connection the server is closing, which surfaced as connection resets under load
        opts = dict(host=host, port=port, log_config=None, access_log=False,
                    timeout_graceful_shutdown=10, timeout_keep_alive=75)
        if workers > 1:  # each worker process builds its app from the environment
            serve_workers(uvicorn, index, workers, opts)
        else:
            uvicorn.run(create_app(index, settings), **opts)


def serve_workers(uvicorn: Any, index: Path | None, workers: int, opts: dict[str, Any]) -> None:
    """``uvicorn.run`` with ``workers`` processes that build their app from the environment
    (:func:`~semsearch.search_api.app.app_from_env`), and a private run directory that they
    share for as long as the server runs: prometheus-client's multiprocess files (so
    ``/metrics`` sums every worker) and the per-client rate limit's buckets (so a client's
    limit is the server's, whichever worker answers). The directory is made fresh (mode
    0700) and removed when the server stops: counts from an earlier run never mix in."""
    import os
    import shutil
    import tempfile

    from semsearch.metrics import MULTIPROC_ENV

    run_dir = Path(tempfile.mkdtemp(prefix="semsearch-serve-"))
    (run_dir / "metrics").mkdir()
    env = {"SEMSEARCH_SERVE_WORKERS": str(workers), "SEMSEARCH_SERVE_RUN_DIR": str(run_dir),
           MULTIPROC_ENV: str(run_dir / "metrics")}
    if index is not None:
        env["SEMSEARCH_SERVE_INDEX"] = str(index)
    if os.environ.get(MULTIPROC_ENV):
        logger.warning("%s is replaced by this server's own directory %s", MULTIPROC_ENV, env[MULTIPROC_ENV])
    os.environ.update(env)  # the worker processes are spawned with this environment
    try:
        uvicorn.run("semsearch.search_api.app:app_from_env", factory=True, workers=workers, **opts)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
