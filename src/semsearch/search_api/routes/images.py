"""Image routes: ``POST /v1/search/image`` (upload an image, find similar ones),
``POST /v1/duplicates`` (near-duplicate groups) and ``GET /v1/images/{id}`` (the thumbnail
of an indexed document's image)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from semsearch.collection import Collection
from semsearch.config import Settings
from semsearch.errors import BadInput
from semsearch.search_api.deps import (
    get_images,
    get_jobs,
    get_service,
    get_settings,
    require_duplicates_key,
    require_json,
    require_read_key,
)
from semsearch.search_api.errors import PayloadTooLarge, status_of
from semsearch.search_api.imaging import ImageSide, decode_upload
from semsearch.search_api.jobs import Jobs
from semsearch.search_api.routes.ops import job_accepted
from semsearch.search_api.routes.search import image_url
from semsearch.search_api.schemas import (
    DuplicatePair,
    DuplicatesRequest,
    DuplicatesResponse,
    ImageHitOut,
    ImageSearchResponse,
    JobAccepted,
    error_responses,
)

router = APIRouter(prefix="/v1", tags=["images"], dependencies=[Depends(require_read_key)])

CHUNK = 64 * 1024


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes; 413 as soon as more than ``limit`` have been read."""
    parts, n = [], 0
    while chunk := await upload.read(CHUNK):
        n += len(chunk)
        if n > limit:
            raise PayloadTooLarge(f"upload {upload.filename!r} is larger than the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


@router.post(
    "/search/image",
    response_model=ImageSearchResponse,
    responses=error_responses(400, 401, 403, 413, 415, 422, 503),
    summary="Find images similar to an uploaded one (CLIP and/or perceptual hashes)",
)
async def search_image(
    file: Annotated[UploadFile, File(description="the query image (JPEG, PNG, GIF, WebP, BMP, TIFF)")],
    k: Annotated[int, Form(ge=1, le=10000)] = 10,
    channels: Annotated[str | None, Form(
        max_length=200, description="comma-separated channels: image (CLIP), phash, dhash; default image,phash")] = None,
    max_distance: Annotated[int | None, Form(
        ge=0, le=64, description="hash channels: every image within this Hamming distance instead of the k nearest")] = None,
    svc: Collection = Depends(get_service),
    settings: Settings = Depends(get_settings),
) -> ImageSearchResponse:
    """Hits from hash channels carry the Hamming distance per channel (``hamming``) and the
    rule that matched (``direct``, or ``mirrored``: the flipped query matched). Several
    channels are fused by reciprocal rank fusion. The server reads only the uploaded bytes:
    it never fetches URLs."""
    if k > settings.api.max_k:
        raise BadInput(f"k must be <= {settings.api.max_k} (the server's max_k), got {k}")
    chans = [c.strip() for c in channels.split(",") if c.strip()] if channels else None
    if channels is not None and not chans:
        raise BadInput("channels is empty: name one or more of image, phash, dhash")
    data = await read_limited(file, settings.api.max_upload_bytes)
    name = file.filename or "upload"
    img = await run_in_threadpool(decode_upload, data, name, file.content_type, svc)
    res = await run_in_threadpool(svc.search_by_image, img, k=k, channels=chans, max_distance=max_distance)
    used = sorted({c for h in res.hits for c in h.channels}) or (chans or [])
    hits = [
        ImageHitOut(id=h.id, rank=h.rank, score=h.score, channels=h.channels,
                    hamming=h.extra.get("hamming", {}), rule=h.extra.get("rule", {}),
                    title=h.document.title if h.document else "",
                    metadata=h.document.metadata if h.document else {},
                    image=h.document.image if h.document else None, image_url=image_url(h.document))
        for h in res.hits
    ]
    return ImageSearchResponse(filename=name, width=img.width, height=img.height, channels=used,
                               k=k, hits=hits, took_ms=res.took_ms)


def _duplicates(svc: Collection, dist: int, mirrored: bool) -> dict:
    out = svc.duplicates(dist, mirrored=mirrored).as_json()
    pairs = [DuplicatePair(a=a, b=b, distance=d, rule=r) for (a, b, d), r in zip(out["pairs"], out["rules"], strict=True)]
    return DuplicatesResponse(groups=out["groups"], pairs=pairs, max_distance=dist, images=out["images"],
                              seconds=out["seconds"], notes=out["notes"]).model_dump()


@router.post("/duplicates", response_model=JobAccepted, status_code=202,
             dependencies=[Depends(require_json), Depends(require_duplicates_key)],
             responses=error_responses(400, 401, 403, 413, 415, 422, 503),
             summary="Near-duplicate image groups (pHash Hamming distance), as a background job")
async def duplicates(
    req: DuplicatesRequest,
    response: Response,
    svc: Collection = Depends(get_service),
    settings: Settings = Depends(get_settings),
    jobs: Jobs = Depends(get_jobs),
) -> JobAccepted:
    """A scan of every image hash: it needs the API key (unless ``api.duplicates_need_key``
    is off) and runs as a background job. The answer is 202 with ``status_url``
    (``GET /v1/jobs/{id}``), whose ``result`` is a :class:`DuplicatesResponse` once the job is
    ``done``. Groups are connected components of the pairs within ``max_distance`` (direct
    pHash, or one image's mirrored pHash against another's: ``rule`` says which)."""
    if "phash" not in svc.channels:  # fail now rather than in the job
        raise BadInput("this index has no phash channel: index images first")
    dist = settings.images.max_distance if req.max_distance is None else req.max_distance
    job = jobs.submit("duplicates", partial(_duplicates, svc, dist, req.mirrored), error_status=status_of)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobAccepted(**job_accepted(job))


@router.get("/images/{doc_id:path}", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG thumbnail"},
                       **error_responses(400, 401, 403, 404, 422)},
            summary="Thumbnail of an indexed document's image")
async def image(
    doc_id: str = PathParam(min_length=1, max_length=512, description="document id"),
    size: int | None = Query(None, ge=16, le=2048, description="longest side in pixels (default api.thumbnail_px)"),
    images: ImageSide = Depends(get_images),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Only images of documents in the index are served, and only from inside
    ``images.roots``: the route takes a document id, never a path."""
    data = await run_in_threadpool(images.thumbnail, doc_id, size or settings.api.thumbnail_px)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})
