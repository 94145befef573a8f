"""Micro-batching of concurrent searches.

Searches that arrive within ``window`` seconds of each other with the same options are run
as one :meth:`Searcher.search_batch` call in a worker thread: one encoder forward pass and
one BM25 pass for all of them, which is where the time goes under concurrent load. The event
loop never runs model inference itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    ) -> None:
        self._run = run
        self.window_s = window_s
        self.max_batch = max_batch
        self._pending: dict[str, _Batch[R]] = {}
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
            batch.timer = loop.call_later(self.window_s, self._flush, key)
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
        task = asyncio.get_running_loop().create_task(self._execute(batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

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

