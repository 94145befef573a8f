"""``GET /v1/stats``: document counts per channel, index size, model names, features."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from semsearch.search_api.deps import get_service, require_read_key
from semsearch.search_api.schemas import error_responses
from semsearch.search_api.service import IndexService

router = APIRouter(prefix="/v1", tags=["stats"], dependencies=[Depends(require_read_key)])


@router.get("/stats", responses=error_responses(401, 403))
async def stats(svc: IndexService = Depends(get_service)) -> dict[str, Any]:
    return await run_in_threadpool(svc.stats)
