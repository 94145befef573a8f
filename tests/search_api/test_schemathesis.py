"""Property-based requests generated from /openapi.json (schemathesis) against a real
``semsearch serve`` process: no request, valid or not, may make the server answer 5xx, and
answers must match the documented schemas and status codes.

Driven through hypothesis directly (schemathesis's pytest plugin does not run on pytest 9);
bounded to a few examples per operation.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.search_api.conftest import WRITE

pytestmark = pytest.mark.slow  # real server processes with the real model

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture(params=["text", "images"])
def served(request, tmp_path, start_server):
    """A server on the text index, and one on an image index (CLIP + hashes, image roots)
    where the image endpoints get past their 'no image channels' answers."""
    if request.param == "text":
        return start_server(request.getfixturevalue("index_dir"))
    from tests.images.conftest import TINY_CLIP
    from tests.search_api.test_images_api import build_image_index, image_app_settings

    index = build_image_index(tmp_path, image_app_settings(tmp_path), request.getfixturevalue("minilm"))
    return start_server(index, SEMSEARCH_CLIP__ARCHITECTURE=str(TINY_CLIP), SEMSEARCH_CLIP__DEVICE="cpu",
                        SEMSEARCH_IMAGES__ROOTS=f'["{tmp_path}"]')


def test_openapi_schema_no_server_errors(served):
    srv = served
    schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    tested = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            case.call_and_validate(base_url=srv.url, headers=WRITE, checks=CHECKS, timeout=60)

        run()
        tested.append(f"{op.method.upper()} {op.path}")
    assert {"POST /v1/search", "POST /v1/documents", "POST /v1/search/image", "POST /v1/duplicates",
            "GET /v1/images/{doc_id}"} <= set(tested), tested
    srv.stop()
    access = [json.loads(x) for x in srv.log.read_text().splitlines() if '"event": "access"' in x]
    statuses = {e["status"] // 100 for e in access}
    # the generated requests really reached the server, valid (2xx) and invalid (4xx) alike
    assert len(access) > 3 * len(operations) and statuses >= {2, 4} and 5 not in statuses
    by_path: dict[str, set[int]] = {}
    for e in access:
        by_path.setdefault(e["path"], set()).add(e["status"])
    # multipart uploads were generated and reached the image search route
    assert by_path.get("/v1/search/image", set()) & {400, 415}, by_path.get("/v1/search/image")
