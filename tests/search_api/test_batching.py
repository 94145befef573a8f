"""The API's search micro-batcher: how batches form while others run."""

from __future__ import annotations

import asyncio
import threading

from semsearch.errors import BadInput
from semsearch.search_api.batching import QueryBatcher


class Gate:
    """A ``run`` for the batcher that records each batch and holds the first one until it is
    released, so a test can submit searches while a batch is running."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, queries, opts):
        self.batches.append(list(queries))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10)
        if "bad" in queries:
            raise BadInput("query 'bad' is bad")
        return [f"{q}:{opts['mode']}" for q in queries]


async def _until(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 10)


def test_searches_that_arrive_while_a_batch_runs_go_together_when_it_finishes():
    gate = Gate()
    batcher = QueryBatcher(gate, window_s=0.005, max_batch=32)

    async def run():
        first = asyncio.ensure_future(batcher.submit("q0", {"mode": "hybrid"}))
        await _until(gate.started)
        later = []
        for i in range(1, 6):  # each well past the window: none starts while q0's batch runs
            later.append(asyncio.ensure_future(batcher.submit(f"q{i}", {"mode": "hybrid"})))
            await asyncio.sleep(0.03)
        assert gate.batches == [["q0"]]
        gate.release.set()
        return await first, await asyncio.gather(*later)

    first, later = asyncio.run(run())
    assert gate.batches == [["q0"], ["q1", "q2", "q3", "q4", "q5"]]
    assert first == "q0:hybrid" and later == [f"q{i}:hybrid" for i in range(1, 6)]


def test_more_batches_in_flight_start_without_waiting():
    gate = Gate()
    batcher = QueryBatcher(gate, window_s=0.005, max_batch=32, max_in_flight=2)

    async def run():
        first = asyncio.ensure_future(batcher.submit("q0", {"mode": "lexical"}))
        await _until(gate.started)
        second = await batcher.submit("q1", {"mode": "lexical"})  # answered while q0 is held
        gate.release.set()
        return await first, second

    assert asyncio.run(run()) == ("q0:lexical", "q1:lexical")
    assert gate.batches == [["q0"], ["q1"]]


def test_a_full_batch_and_other_options_do_not_wait_for_a_running_batch():
    gate = Gate()
    batcher = QueryBatcher(gate, window_s=0.005, max_batch=2)

    async def run():
        first = asyncio.ensure_future(batcher.submit("q0", {"mode": "hybrid"}))
        await _until(gate.started)
        full = await asyncio.gather(batcher.submit("q1", {"mode": "hybrid"}),
                                    batcher.submit("q2", {"mode": "hybrid"}))
        other = await batcher.submit("q3", {"mode": "lexical"})
        gate.release.set()
        return await first, full, other

    assert asyncio.run(run()) == ("q0:hybrid", ["q1:hybrid", "q2:hybrid"], "q3:lexical")
    assert gate.batches == [["q0"], ["q1", "q2"], ["q3"]]


def test_a_bad_query_fails_alone_in_a_batch_that_waited():
    gate = Gate()
    batcher = QueryBatcher(gate, window_s=0.005, max_batch=32)

    async def run():
        first = asyncio.ensure_future(batcher.submit("q0", {"mode": "lexical"}))
        await _until(gate.started)
        waiting = [asyncio.ensure_future(batcher.submit(q, {"mode": "lexical"})) for q in ("q1", "bad", "q2")]
        await asyncio.sleep(0.03)
        gate.release.set()
        return await first, await asyncio.gather(*waiting, return_exceptions=True)

    first, (q1, bad, q2) = asyncio.run(run())
    assert (first, q1, q2) == ("q0:lexical", "q1:lexical", "q2:lexical")
    assert isinstance(bad, BadInput) and "'bad'" in str(bad)
    assert gate.batches[1] == ["q1", "bad", "q2"]  # then each alone
    assert sorted(map(tuple, gate.batches[2:])) == [("bad",), ("q1",), ("q2",)]
    assert batcher._running == {} and batcher._pending == {}


def test_batching_off_runs_each_search_alone():
    gate = Gate()
    gate.release.set()
    batcher = QueryBatcher(gate, window_s=0.0, max_batch=32)

    async def run():
        return await asyncio.gather(*(batcher.submit(q, {"mode": "dense"}) for q in ("a", "b", "c")))

    assert asyncio.run(run()) == ["a:dense", "b:dense", "c:dense"]
    assert sorted(map(tuple, gate.batches)) == [("a",), ("b",), ("c",)]
