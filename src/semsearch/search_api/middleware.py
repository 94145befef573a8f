"""ASGI middleware: request ids, structured access logs, and the request body size limit."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_logger = logging.getLogger("semsearch.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Gives every request an id (the client's ``X-Request-ID`` when it is safe, else a new
    one), returns it in the response, rejects bodies over ``max_body_bytes`` with 413, and
    logs one JSON line per request on the ``semsearch.access`` logger."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        given = _header(scope, b"x-request-id")
        rid = given if given and _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = {"code": 500}
        limit = self.max_body_bytes

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body is larger than the limit of {limit} bytes")
            return message

        try:
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                await self._reject(send_wrapper, rid, 413,
                                   f"request body of {length} bytes is larger than the limit of {limit} bytes")
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            self._log(scope, rid, status["code"], t0, received)

    @staticmethod
    async def _reject(send: Send, rid: str, status: int, message: str) -> None:
        body = json.dumps({"error": {"status": status, "type": "payload_too_large",
                                     "message": message, "request_id": rid}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _log(scope: Scope, rid: str, status: int, t0: float, received: int) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        entry: dict[str, Any] = {
            "event": "access",
            "request_id": rid,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
            "bytes_in": received,
            "client": f"{client[0]}:{client[1]}" if client else None,
        }
        access_logger.info(json.dumps(entry))
