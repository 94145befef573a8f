"""``GET /v1/stats``: document counts per channel, index size, model names, features."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from semsearch.collection import Collection
from semsearch.search_api.deps import get_images, get_service, require_read_key
from semsearch.search_api.imaging import ImageSide
from semsearch.search_api.schemas import error_responses

router = APIRouter(prefix="/v1", tags=["stats"], dependencies=[Depends(require_read_key)])


@router.get("/stats", responses=error_responses(401, 403))
async def stats(svc: Collection = Depends(get_service),
                images: ImageSide = Depends(get_images)) -> dict[str, Any]:
    info = await run_in_threadpool(svc.stats)
    info["features"] = {"rerank": bool(svc.settings.rerank.model), **images.features()}
    return info
