"""Background jobs for expensive requests (``POST /v1/duplicates``): the request is answered
202 with a status URL at once, the work runs on one worker thread (jobs queue behind each
other rather than compete for the index), and ``GET /v1/jobs/{id}`` reports it."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, Field

from semsearch.errors import DocumentNotFound

logger = logging.getLogger(__name__)


class JobNotFound(DocumentNotFound):
    """No job with that id (never submitted, or forgotten after ``api.max_jobs`` newer ones)."""


class Job(BaseModel):
    id: str
    kind: str
    status: Literal["queued", "running", "done", "failed"] = "queued"
    created_at: float = Field(description="Unix time")
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: dict[str, Any] | None = Field(None, description="type and message of a failed job")


class Jobs:
    def __init__(self, *, max_jobs: int) -> None:
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semsearch-job")

    def submit(self, kind: str, fn: Callable[[], Any], *, error_status: Callable[[BaseException], int]) -> Job:
        job = Job(id=uuid.uuid4().hex, kind=kind, created_at=time.time())
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.max_jobs:
                oldest = next(iter(self._jobs.values()))
                if oldest.status in ("queued", "running"):
                    break  # never forget unfinished work
                self._jobs.popitem(last=False)

        def run() -> None:
            job.status, job.started_at = "running", time.time()
            try:
                job.result = fn()
                job.status = "done"
            except Exception as e:  # noqa: BLE001 - reported through the job's status
                if error_status(e) >= 500:
                    logger.exception("job %s (%s) failed", job.id, kind)
                job.error = {"status": error_status(e),
                             "type": type(e).__name__, "message": str(e)}
                job.status = "failed"
            finally:
                job.finished_at = time.time()

        self._pool.submit(run)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id!r} does not exist (finished jobs are kept for the last "
                              f"{self.max_jobs}: api.max_jobs)")
        return job

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
