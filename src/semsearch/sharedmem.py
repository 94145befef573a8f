"""Small pieces that the processes of one server share: a memory-mapped file of fixed size
(the rate limit's buckets, the connection counts) and whether a process still runs (slots
and metric files of workers that died)."""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

try:  # POSIX; the shared files are used only by `serve --workers N`
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (someone else's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


@contextlib.contextmanager
def file_locked(fd: int) -> Iterator[None]:
    """An exclusive ``flock`` on ``fd`` (between processes; it does not exclude threads that
    share the descriptor)."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def map_shared_file(path: Path | str, size: int) -> tuple[int, mmap.mmap]:
    """``path`` opened (created, mode 0600) and mapped, at least ``size`` bytes: the first
    process sizes it under the file lock (zeros), the others map what it made. Returns the
    descriptor (for :func:`file_locked`) and the map; the caller closes both."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with file_locked(fd):
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise
