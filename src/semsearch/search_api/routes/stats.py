"""``GET /v1/stats``: document counts per channel, index size, model names, features.

Filesystem paths and URLs (the index directory, a local model's path, an Elasticsearch URL)
are shown only to a request that carries the API key; everyone else sees ``"[redacted]"``."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from semsearch.collection import Collection
from semsearch.search_api.deps import get_images, get_service, has_valid_key, require_read_key
from semsearch.search_api.imaging import ImageSide
from semsearch.search_api.schemas import error_responses

router = APIRouter(prefix="/v1", tags=["stats"], dependencies=[Depends(require_read_key)])

REDACTED = "[redacted]"
_SECRET_KEYS = {"path", "url", "urls", "hosts", "onnx_dir", "ca_certs"}


def _looks_like_location(v: str) -> bool:
    return v.startswith(("/", "~", "./", "../")) or "://" in v or (len(v) > 2 and v[1:3] in (":\\", ":/"))


def redact(value: Any, key: str | None = None) -> Any:
    """``value`` with every path- or URL-like string (and every value under a key such as
    ``path`` or ``url``) replaced by ``[redacted]``."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if isinstance(value, str) and (key in _SECRET_KEYS or _looks_like_location(value)):
        return REDACTED
    return value


@router.get("/stats", responses=error_responses(401, 403))
async def stats(request: Request, svc: Collection = Depends(get_service),
                images: ImageSide = Depends(get_images)) -> dict[str, Any]:
    """Counts, size, channels and models of the index. Paths and URLs only with the API key."""
    info = await run_in_threadpool(svc.stats)
    info["features"] = {"rerank": bool(svc.settings.rerank.model), **images.features()}
    info["searchable_seq"] = svc.searchable_seq
    # which worker process answered, and whether it holds the writer lock (--workers N)
    info["process"] = {"pid": os.getpid(), "role": getattr(svc, "role", "stateless")}
    return info if has_valid_key(request) else redact(info)
