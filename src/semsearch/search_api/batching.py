"""Micro-batching of concurrent searches.

Searches with the same options are run as one :meth:`Searcher.search_batch` call in a worker
thread: one encoder pass and one BM25 pass for all of them, which is where the time goes
under concurrent load. The event loop never runs model inference itself.

Batches form as in dynamic batching servers (Triton's queue delay, TorchServe's batch
delay): while no batch with the same options is running, searches that arrive within
``window`` seconds of the first are gathered; while ``max_in_flight`` batches with the
same options are running, the searches that arrive wait and go as one batch when one of
them finishes (or sooner once ``max_batch`` have gathered). Requests are answered in the
order they came, and a busy server runs a few large batches rather than many small
concurrent ones competing for the cores. With ONNX batches of 4 (text_encoder.onnx_batch_size),
two workers on 2 cores under 50 clients answered hybrid searches at 143-147 req/s against
124-131 before, at 13.4-13.9 ms of CPU each against 15.2-16.0 (docs/api.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool

from semsearch import metrics
from semsearch.errors import BadInput

R = TypeVar("R")


@dataclass
class _Batch(Generic[R]):
    opts: dict[str, Any]
    items: list[tuple[str, asyncio.Future[R]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class QueryBatcher(Generic[R]):
    def __init__(
        self,
        run: Callable[[Sequence[str], dict[str, Any]], list[R]],
        *,
        window_s: float,
        max_batch: int,
        max_in_flight: int = 1,
    ) -> None:
        self._run = run
        self.window_s = window_s
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._pending: dict[str, _Batch[R]] = {}
        #: batches running per options key
        self._running: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, query: str, opts: dict[str, Any]) -> R:
        if self.window_s <= 0 or self.max_batch <= 1:
            metrics.observe_search_batch(1)
            return (await run_in_threadpool(self._run, [query], opts))[0]
        loop = asyncio.get_running_loop()
        key = json.dumps(opts, sort_keys=True, default=str)
        batch = self._pending.get(key)
        if batch is None:
            batch = self._pending[key] = _Batch(opts)
            if self._running.get(key, 0) < self.max_in_flight:
                batch.timer = loop.call_later(self.window_s, self._flush, key)
            # else it starts when a running batch with these options finishes (_finished)
        fut: asyncio.Future[R] = loop.create_future()
        batch.items.append((query, fut))
        if len(batch.items) >= self.max_batch:
            self._flush(key)
        return await fut

    def _flush(self, key: str) -> None:
        batch = self._pending.pop(key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        self._running[key] = self._running.get(key, 0) + 1
        task = asyncio.get_running_loop().create_task(self._execute(batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(partial(self._finished, key))

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        left = self._running[key] - 1
        if left:
            self._running[key] = left
        else:
            del self._running[key]
        if key in self._pending:  # the searches that waited for it go now, as one batch
            self._flush(key)

    async def _execute(self, batch: _Batch[R]) -> None:
        queries = [q for q, _ in batch.items]
        metrics.observe_search_batch(len(queries))
        try:
            results = await run_in_threadpool(self._run, queries, batch.opts)
        except BadInput as e:
            if len(queries) == 1:
                return self._fail(batch, e)
            # one bad query must not fail its neighbours: answer each on its own
            for q, fut in batch.items:
                try:
                    (r,) = await run_in_threadpool(self._run, [q], batch.opts)
                    if not fut.done():
                        fut.set_result(r)
                except Exception as e:  # noqa: BLE001 - handed to the waiting request
                    if not fut.done():
                        fut.set_exception(e)
            return None
        except Exception as e:  # noqa: BLE001 - handed to the waiting requests
            return self._fail(batch, e)
        for (_, fut), r in zip(batch.items, results, strict=True):
            if not fut.done():
                fut.set_result(r)
        return None

    @staticmethod
    def _fail(batch: _Batch[R], exc: BaseException) -> None:
        for _, fut in batch.items:
            if not fut.done():
                fut.set_exception(exc)

