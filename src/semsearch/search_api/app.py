"""The FastAPI application: :func:`create_app` wires the index service, the routes, the error
handlers, the middleware and the search page together."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from semsearch import __version__, metrics
from semsearch.collection import Collection, SearchRequest
from semsearch.config import Settings
from semsearch.encoders.base import TextEncoder
from semsearch.search_api import errors
from semsearch.search_api.balance import ConnectionBalancer
from semsearch.search_api.batching import QueryBatcher
from semsearch.search_api.imaging import ImageSide
from semsearch.search_api.jobs import Jobs
from semsearch.search_api.middleware import RequestContextMiddleware
from semsearch.search_api.routes import ROUTERS

logger = logging.getLogger(__name__)

STATIC = Path(str(resources.files("semsearch.search_api") / "static"))


#: the youngest generation's collection threshold while serving (CPython's default: 700)
SERVING_GC_THRESHOLD0 = 20_000


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """While a server process serves: everything loaded so far (the index's Python objects,
    models, libraries: ~140k objects on the SciFact index) moves to CPython's permanent
    generation (``gc.freeze``), out of every later collection, and the youngest generation is
    collected less often. Under load, the objects of requests in flight survive young
    collections, and full collections then rescanned the whole heap every few seconds: 9 of
    them in 15 s of wrk, up to 104 ms each, every request in flight waiting."""
    _frozen.append(gc.get_threshold())
    if len(_frozen) == 1:  # the first app of the process (tests nest several)
        gc.collect()
        gc.freeze()
        gc.set_threshold(SERVING_GC_THRESHOLD0, *_frozen[0][1:])
    try:
        yield
    finally:
        old = _frozen.pop()
        if not _frozen:
            gc.set_threshold(*old)
            gc.unfreeze()


_frozen: list[tuple[int, ...]] = []


def worker_settings(settings: Settings, workers: int) -> Settings:
    """The settings of one of ``workers`` server processes: unless set, each process's ONNX
    query encoder gets its share of the cores rather than one thread per core, which N
    processes would oversubscribe N times (hybrid search,
    ``--workers 2`` on 2 cores: 12.3-12.9 ms of CPU per request with one thread each against
    13.8 with ORT's default; docs/api.md)."""
    if workers <= 1 or settings.text_encoder.onnx_threads is not None:
        return settings
    settings = settings.model_copy(deep=True)
    settings.text_encoder.onnx_threads = max(1, (os.cpu_count() or 1) // workers)
    return settings


def create_app(
    index_path: Path | str | None,
    settings: Settings | None = None,
    *,
    encoder: TextEncoder | None = None,
    shared: bool = False,
    run_dir: Path | str | None = None,
    workers: int = 1,
) -> FastAPI:
    """An app serving the index at ``index_path``. The index is opened (for writing: the
    server is its single writer) when the app starts, pending changes are synced, and the
    text model is loaded before the first request is answered.

    With ``settings.store.backend == "elasticsearch"`` the app is stateless: ``index_path``
    is not used, the store index named in the settings is opened (no lock, no local files),
    and any number of such apps may serve it.

    ``shared``: several processes serve the local index (``semsearch serve --workers N``):
    the one that takes the writer lock refreshes and merges, the others search read-only and
    commit writes to the document store (see :meth:`Collection.open_shared`).

    ``run_dir``: a directory private to the processes of one server (``semsearch serve
    --workers N`` makes it): the per-client rate limit keeps its buckets there, shared by
    every worker (:class:`~semsearch.search_api.limits.SharedRateLimiter`), and with
    ``workers`` > 1 processes the workers' active connection counts
    (:class:`~semsearch.search_api.balance.ConnectionBalancer`, ``api.balance_connections``)."""
    settings = worker_settings(settings or Settings(), workers)
    stateless = settings.store.backend == "elasticsearch"
    where = None if stateless else Path(index_path)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if shared and not stateless:
            opener = partial(Collection.open_shared, where, settings, encoder=encoder)
        else:
            opener = partial(Collection.open, where, settings, writable=True, encoder=encoder)
        with contextlib.ExitStack() as process:  # process-wide settings held while serving
            if settings.api.blas_threads is not None:
                from semsearch.images.resample import NumpyBlasThreads

                process.enter_context(NumpyBlasThreads(settings.api.blas_threads))
            async with _serving(app, opener):
                yield

    @contextlib.asynccontextmanager
    async def _serving(app: FastAPI, opener: Callable[[], Collection]) -> AsyncIterator[None]:
        svc = await run_in_threadpool(opener)
        try:
            await run_in_threadpool(svc.warm_up)  # every model, now rather than in a search
            app.state.service = svc
            app.state.images = ImageSide(svc)
            app.state.jobs = Jobs(max_jobs=settings.api.max_jobs)
            app.state.batcher = QueryBatcher(
                lambda queries, opts: svc.search_batch([SearchRequest(query=q, **opts) for q in queries]),
                window_s=settings.api.batch_window_ms / 1000,
                max_batch=settings.api.max_batch_queries,
                max_in_flight=settings.api.max_batches_in_flight,
            )
            logger.info("serving %s as %s (pid %s)", svc.location if stateless else index_path,
                        getattr(svc, "role", "stateless"), os.getpid())
            with frozen_heap():
                yield
        finally:
            if getattr(app.state, "jobs", None) is not None:
                app.state.jobs.close()
            await run_in_threadpool(svc.close)
            metrics.worker_exiting()

    app = FastAPI(
        title="semsearch",
        version=__version__,
        description="Semantic search: BM25 + dense vectors + fusion. Errors have the body "
        '`{"error": {"status", "type", "message", "request_id"}}`.',
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    def worker() -> str:  # "PID ROLE": which process answered (writer or reader)
        svc = getattr(app.state, "service", None)
        return f"{os.getpid()} {getattr(svc, 'role', 'stateless') if svc is not None else 'starting'}"

    balancer = None
    if run_dir and workers > 1 and settings.api.balance_connections:
        balancer = ConnectionBalancer(Path(run_dir) / "connections", workers)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.api.max_body_bytes,
                       rate_limit_per_s=settings.api.rate_limit_per_s,
                       rate_limit_burst=settings.api.rate_limit_burst,
                       rate_limit_file=Path(run_dir) / "rate-limit" if run_dir else None,
                       worker=worker if shared else None, balancer=balancer)
    return app


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory`` (``semsearch serve --workers N``): settings from the
    environment, the index from ``SEMSEARCH_SERVE_INDEX`` (unused by the Elasticsearch store);
    ``SEMSEARCH_SERVE_WORKERS`` > 1 shares a local index between the worker processes, and
    ``SEMSEARCH_SERVE_RUN_DIR`` is the server's private directory (the shared rate limit)."""
    workers = int(os.environ.get("SEMSEARCH_SERVE_WORKERS") or 1)
    return create_app(os.environ.get("SEMSEARCH_SERVE_INDEX"), Settings(), shared=workers > 1,
                      run_dir=os.environ.get("SEMSEARCH_SERVE_RUN_DIR") or None, workers=workers)
