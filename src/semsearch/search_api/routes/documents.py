"""``/v1/documents``: read, batch upsert and delete documents."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Depends, Path
from starlette.concurrency import run_in_threadpool

from semsearch.collection import Collection
from semsearch.config import Settings
from semsearch.errors import BadInput
from semsearch.indexer.readers import to_document
from semsearch.search_api.deps import (
    get_service,
    get_settings,
    require_json,
    require_read_key,
    require_write_key,
)
from semsearch.search_api.schemas import DocumentOut, UpsertRequest, WriteResponse, error_responses

router = APIRouter(prefix="/v1/documents", tags=["documents"])

DocId = Path(min_length=1, max_length=512, description="document id")


@router.get("/{doc_id:path}", response_model=DocumentOut, dependencies=[Depends(require_read_key)],
            responses=error_responses(401, 403, 404, 422))
async def get_document(doc_id: str = DocId, svc: Collection = Depends(get_service)) -> DocumentOut:
    doc = await run_in_threadpool(svc.get, doc_id)
    return DocumentOut(**doc.model_dump())


@router.post("", response_model=WriteResponse,
             dependencies=[Depends(require_write_key), Depends(require_json)],
             responses=error_responses(400, 401, 403, 413, 415, 422, 503))
async def upsert_documents(
    req: UpsertRequest,
    svc: Collection = Depends(get_service),
    settings: Settings = Depends(get_settings),
) -> WriteResponse:
    """Validate, embed and durably store a batch of documents (new ids are added, existing
    ids replaced). The answer comes after the batch is committed to disk; with ``wait`` (the
    default) also after it is searchable, or after ``api.max_wait_s`` seconds with
    ``searchable: false`` (then GET /v1/writes/{seq} says when it is, and POST /v1/refresh
    makes it so now). One bad record rejects the whole batch, and the
    error names every bad record."""
    if len(req.documents) > settings.api.max_batch_docs:
        raise BadInput(f"{len(req.documents)} documents in one request (max {settings.api.max_batch_docs})")
    docs, problems, seen = [], [], set()
    for i, raw in enumerate(req.documents):
        try:
            doc = to_document(raw, max_text_chars=settings.indexing.max_text_chars)
        except BadInput as e:
            problems.append(f"documents[{i}]: {e}")
            continue
        if doc.id in seen:
            problems.append(f"documents[{i}]: duplicate id {doc.id!r} in this batch")
        seen.add(doc.id)
        docs.append(doc)
    if problems:
        raise BadInput(f"{len(problems)} invalid record(s), nothing was written: " + "; ".join(problems[:20]))
    res = await run_in_threadpool(partial(svc.upsert, docs, wait_for=req.wait, timeout=settings.api.max_wait_s))
    return WriteResponse(**res.model_dump())


@router.delete("/{doc_id:path}", response_model=WriteResponse, dependencies=[Depends(require_write_key)],
               responses=error_responses(401, 403, 404, 422, 503))
async def delete_document(
    doc_id: str = DocId, wait: bool = True, svc: Collection = Depends(get_service),
    settings: Settings = Depends(get_settings),
) -> WriteResponse:
    res = await run_in_threadpool(partial(svc.delete, doc_id, wait_for=wait, timeout=settings.api.max_wait_s))
    return WriteResponse(**res.model_dump())
