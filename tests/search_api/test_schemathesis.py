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


def test_openapi_schema_no_server_errors(index_dir, start_server):
    srv = start_server(index_dir)
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
    assert "POST /v1/search" in tested and "POST /v1/documents" in tested
    srv.stop()
    access = [json.loads(x) for x in srv.log.read_text().splitlines() if '"event": "access"' in x]
    statuses = {e["status"] // 100 for e in access}
    # the generated requests really reached the server, valid (2xx) and invalid (4xx) alike
    assert len(access) > 3 * len(operations) and statuses >= {2, 4} and 5 not in statuses
