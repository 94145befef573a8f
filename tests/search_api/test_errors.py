"""The single error mapping: every domain error class -> its HTTP status and JSON body."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from semsearch import errors as domain
from semsearch.search_api import errors


@pytest.mark.parametrize(
    "exc, status, type_",
    [
        (domain.BadInput("query is empty"), 400, "bad_input"),
        (domain.DocumentNotFound("document 'x' is not in the index"), 404, "document_not_found"),
        (domain.ChannelFailed("lexical", ConnectionError("http://127.0.0.1:9200 refused")), 503, "channel_failed"),
        (domain.BackendUnavailable("elasticsearch at http://127.0.0.1:9200 is down"), 503, "backend_unavailable"),
        (domain.IndexIncompatible("built with another encoder"), 503, "index_incompatible"),
        (domain.MissingExtra("open_clip", "clip"), 501, "missing_extra"),
        (errors.PayloadTooLarge("too big"), 413, "payload_too_large"),
        (errors.UnsupportedMediaType("text/plain"), 415, "unsupported_media_type"),
        (errors.Unauthorized("need a key"), 401, "unauthorized"),
        (RuntimeError("secret internals"), 500, "internal_error"),
    ],
)
def test_errors_map_to_status_and_body(exc, status, type_):
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert r.status_code == status
    body = r.json()["error"]
    assert body["status"] == status and body["type"] == type_
    if status == 500:
        assert "secret internals" not in body["message"]
    else:
        assert body["message"] == str(exc)


def test_a_write_a_backend_partly_refuses_is_a_422_listing_each_document():
    from semsearch.errors import BulkIndexError
    from semsearch.search_api.errors import status_of

    err = BulkIndexError("elasticsearch", [("a", "mapper_parsing_exception: year"), ("b", "bad")])
    assert status_of(err) == 422
    assert "a: mapper_parsing_exception: year" in str(err) and "b: bad" in str(err)
