"""Keep-alive connections spread evenly over the worker processes of one server.

``semsearch serve --workers N`` shares one listening socket between N processes, and a
connection belongs to whichever process accepted it for as long as the client keeps it
open. A load generator or a proxy opens its pool of keep-alive connections in one burst,
and the split it gets is chance: 29/21 of 50 was typical on the SciFact benchmarks, and
the process with 29 answers each of its clients about 1.4x later than the other, which
sets the server's tail latency (p95), while the other one idles between requests.

:class:`ConnectionBalancer` is the cure that HTTP servers use for the same problem (nginx's
``keepalive_requests``, Envoy's ``max_requests_per_connection``), aimed: each process counts
the connections that sent it a request in the last second (the client address and port of a
request names its connection), publishes the count in a small file that the processes of
the server share, and when it holds more than its fair share (the server's total over N,
plus ``slack``) answers ``Connection: close`` on one response of that many connections.
Their clients reconnect, and a new connection goes to whichever process accepts it first:
usually the less busy one, whose event loop is waiting for work. No request is refused or
repeated: the response that carries the header is a complete answer.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import time
from pathlib import Path

from semsearch.sharedmem import file_locked, map_shared_file, process_alive


class ConnectionBalancer:
    """Which responses close their connection so that ``workers`` processes keep about the
    same number of active connections each.

    ``path``: a file that every process of the server maps (in the server's private run
    directory): ``slots`` records of (process id, time of its last count, its count). A
    process claims the first slot that is free or belongs to a process that no longer
    exists. A count older than ``3 * window_s`` is read as 0 (a process that stopped getting
    requests has no active connection). ``slack``: connections above the fair share that are
    left alone (an odd total, and a count that moves while it is measured)."""

    _SLOT = struct.Struct("<qdq")  # pid (0 = free), monotonic time of the count, count

    def __init__(self, path: Path | str, workers: int, *, window_s: float = 1.0, slack: int = 1,
                 slots: int = 256) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers, self.window_s, self.slack, self.slots = workers, window_s, slack, slots
        self.pid, self.path = os.getpid(), Path(path)
        self._lock = threading.Lock()
        self._fd, self._map = map_shared_file(self.path, slots * self._SLOT.size)
        try:
            with file_locked(self._fd):
                self._slot = self._claim()
        except BaseException:
            self._map.close()
            os.close(self._fd)
            raise
        self._window_start: float | None = None
        self._seen: set[object] = set()  # connections with a request in this window
        self._closing: set[object] = set()  # connections told to close in this window
        self._to_close = 0
        #: connections this process has closed to rebalance (for tests and the log)
        self.closed = 0

    def _claim(self) -> int:
        for i in range(self.slots):
            pid, _, _ = self._SLOT.unpack_from(self._map, i * self._SLOT.size)
            if pid in (0, self.pid) or not process_alive(pid):
                self._SLOT.pack_into(self._map, i * self._SLOT.size, self.pid, 0.0, 0)
                return i
        raise RuntimeError(f"more than {self.slots} server processes share {self.path}")

    def should_close(self, connection: object, now: float | None = None) -> bool:
        """Called once per response: whether it should carry ``Connection: close``.
        ``connection``: what names the response's connection (the client's address and
        port)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._window_start is None:
                self._window_start = now
            elif now - self._window_start >= self.window_s:
                self._rotate(now)
            self._seen.add(connection)
            if self._to_close > 0 and connection not in self._closing:
                self._to_close -= 1
                self._closing.add(connection)
                self.closed += 1
                return True
            return False

    def _rotate(self, now: float) -> None:
        """End of a window: publish this process's count, read the others', and decide how
        many of its connections to close in the next window."""
        mine = len(self._seen - self._closing)  # a closed connection is no longer ours
        self._SLOT.pack_into(self._map, self._slot * self._SLOT.size, self.pid, now, mine)
        total = 0
        for i in range(self.slots):
            pid, at, count = self._SLOT.unpack_from(self._map, i * self._SLOT.size)
            if pid and now - at <= 3 * self.window_s:
                total += count
        fair = math.ceil(total / self.workers)
        self._to_close = max(0, mine - fair - self.slack)
        self._seen, self._closing = set(), set()
        self._window_start = now

    def close(self) -> None:
        with self._lock:
            try:
                self._SLOT.pack_into(self._map, self._slot * self._SLOT.size, 0, 0.0, 0)
            finally:
                self._map.close()
                os.close(self._fd)
