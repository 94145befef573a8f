"""Dependencies of the routes: the index service, API-key checks, media-type checks.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool,
and the thread hop for reading ``app.state`` was 9% of a lexical search's CPU under load."""

from __future__ import annotations

import hmac

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from semsearch.collection import Collection
from semsearch.config import Settings
from semsearch.search_api.batching import QueryBatcher
from semsearch.search_api.errors import Forbidden, Unauthorized, UnsupportedMediaType
from semsearch.search_api.imaging import ImageSide
from semsearch.search_api.jobs import Jobs

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")
_bearer = HTTPBearer(auto_error=False, description="the API key as a bearer token")


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_service(request: Request) -> Collection:
    return request.app.state.service


async def get_images(request: Request) -> ImageSide:
    return request.app.state.images


async def get_batcher(request: Request) -> QueryBatcher:
    return request.app.state.batcher


async def get_jobs(request: Request) -> Jobs:
    return request.app.state.jobs


def has_valid_key(request: Request) -> bool:
    """Whether the request carries the server's API key (the admin view of /v1/stats)."""
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        return False
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), settings.api_key.get_secret_value().encode())


def _check_key(request: Request, what: str, key: str | None,
               bearer: HTTPAuthorizationCredentials | None) -> None:
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        raise Forbidden(f"{what} are disabled: the server has no API key (set SEMSEARCH_API_KEY)")
    given = key or (bearer.credentials if bearer is not None else None)
    if not given:
        raise Unauthorized(f"{what} need an API key (header X-API-Key or Authorization: Bearer)",
                           headers={"WWW-Authenticate": "Bearer"})
    expected = settings.api_key.get_secret_value().encode()
    if not hmac.compare_digest(given.encode(), expected):
        raise Forbidden("the API key is not valid")


async def require_write_key(
    request: Request,
    key: str | None = Security(_api_key_header),
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> None:
    _check_key(request, "write endpoints", key, bearer)


async def require_duplicates_key(
    request: Request,
    key: str | None = Security(_api_key_header),
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> None:
    if request.app.state.settings.api.duplicates_need_key:
        _check_key(request, "duplicate scans (api.duplicates_need_key)", key, bearer)


async def require_read_key(
    request: Request,
    key: str | None = Security(_api_key_header),
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> None:
    if request.app.state.settings.api.auth_reads:
        _check_key(request, "read endpoints", key, bearer)


async def require_json(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"unsupported media type {ctype or '(none)'!r}: send the body as application/json"
        )
