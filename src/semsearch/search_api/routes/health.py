"""``/healthz`` (the process answers) and ``/readyz`` (the index can serve)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from semsearch.collection import Collection
from semsearch.search_api.deps import get_service
from semsearch.search_api.schemas import Health, Ready, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses=error_responses(503))
async def readyz(svc: Collection = Depends(get_service)) -> Ready:
    return Ready(status="ready", checks=await run_in_threadpool(svc.ready))
