"""Operations: ``POST /v1/refresh`` (make acknowledged writes searchable now),
``GET /v1/writes/{seq}`` (is write ``seq`` searchable yet?), ``GET /v1/jobs/{id}`` (a
background job's status and result) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from semsearch import metrics
from semsearch.collection import Collection
from semsearch.search_api.deps import get_jobs, get_service, require_read_key, require_write_key
from semsearch.search_api.jobs import Job, Jobs
from semsearch.search_api.schemas import RefreshResponse, WriteStatus, error_responses

router = APIRouter(tags=["operations"])


@router.post("/v1/refresh", response_model=RefreshResponse, dependencies=[Depends(require_write_key)],
             responses=error_responses(401, 403, 503))
async def refresh(svc: Collection = Depends(get_service)) -> RefreshResponse:
    """Make every acknowledged write searchable now (as the background refresh does every
    ``indexing.refresh_interval`` seconds)."""
    info = await run_in_threadpool(svc.refresh)
    return RefreshResponse(searchable_seq=svc.searchable_seq,
                           changed=int(info.get("changed", 0)) + int(info.get("deleted", 0)),
                           seconds=float(info.get("seconds", 0.0)))


@router.get("/v1/writes/{seq}", response_model=WriteStatus, dependencies=[Depends(require_read_key)],
            responses=error_responses(401, 403, 422))
async def write_status(seq: int = PathParam(ge=0, le=2**62, description="the seq a write answered with"),
                       svc: Collection = Depends(get_service)) -> WriteStatus:
    """Whether the write that answered ``seq`` is searchable (every write is durable when
    it is acknowledged)."""
    searchable = svc.searchable_seq
    rejected = [{"id": i, "reason": r} for i, s, r in svc.rejected(seq) if s == seq]
    return WriteStatus(seq=seq, searchable=seq <= searchable and not rejected,
                       searchable_seq=searchable, rejected=rejected)


@router.get("/v1/jobs/{job_id}", response_model=Job, dependencies=[Depends(require_read_key)],
            responses=error_responses(401, 403, 404))
async def job_status(job_id: str = PathParam(min_length=1, max_length=64),
                     jobs: Jobs = Depends(get_jobs)) -> Job:
    """A background job: ``queued``, ``running``, ``done`` (with ``result``) or ``failed``
    (with ``error``: the status, type and message the request would have answered)."""
    return jobs.get(job_id)


def _index_gauges(svc: Collection) -> None:
    g = svc.gauges()
    metrics.set_index_size(g["documents"], g["size_bytes"])
    metrics.set_segments(g["segments"])
    metrics.set_pending(g["pending"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def prometheus(svc: Collection = Depends(get_service)) -> Response:
    await run_in_threadpool(_index_gauges, svc)
    body, ctype = metrics.exposition()
    return Response(body, media_type=ctype)


def job_accepted(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, "status": job.status, "status_url": f"/v1/jobs/{job.id}"}
