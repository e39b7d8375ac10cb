"""Fuzzing the OpenAPI spec (schemathesis strategies driven by hypothesis, bounded): valid and invalid bodies, paths
and queries for every operation, and never a 5xx.

Each operation is called with a token of a role that may use it, so generated inputs reach the routes' own
validation rather than stopping at 403. (schemathesis' pytest loader does not run under pytest 9, so the test
draws cases from each operation's strategy itself.)
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from service.conftest import start
from service.test_auth import ROUTES, _template

EXAMPLES = 25  # per operation and generation mode: 50 per operation
OPERATIONS = sorted({(m, _template(p)) for m, p, _, _ in ROUTES} | {("GET", "/healthz"), ("GET", "/readyz"),
                                                                   ("GET", "/cds-services")})
NO_INPUT = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/cds-services"), ("GET", "/metrics"),
            ("GET", "/v1/models"), ("GET", "/v1/tokens"), ("GET", "/v1/audit/verify")}
STATUSES: Counter[int] = Counter()
CASES = [(m, p, mode) for m, p in OPERATIONS for mode in ("valid", "invalid")
         if mode == "valid" or (m, p) not in NO_INPUT]
ADMIN = ("/v1/tokens", "/v1/audit", "/promote", "/rollback")
DATA_SCIENTIST = ("/fhir-mapping", "/evaluate")


schemathesis.serializer.alias("application/zip", "application/octet-stream")  # bundle uploads are raw bytes
schemathesis.serializer.alias("application/dicom", "application/octet-stream")  # image predictions: one DICOM file


def role_for(method: str, path: str) -> str:
    if any(k in path for k in ADMIN):
        return "admin"
    if any(k in path for k in DATA_SCIENTIST) or (method == "POST" and path == "/v1/models"):
        return "data_scientist"
    return "clinician"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, pima_bundles):
    s = start(tmp_path_factory.mktemp("fuzz"), pima_bundles, rate_burst=1_000_000, rate_per_minute=1e9)
    s.schema = schemathesis.openapi.from_asgi("/openapi.json", s.app)
    yield s
    print(f"\nfuzz: {sum(STATUSES.values())} requests, statuses {dict(sorted(STATUSES.items()))}")
    s.client.close()
    s.container.db.dispose()


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode}" for m, p, mode in CASES])
def test_no_generated_request_makes_the_service_fail(fuzzed, method, path, mode):
    operation = fuzzed.schema[path][method]
    mode = GenerationMode.POSITIVE if mode == "valid" else GenerationMode.NEGATIVE
    token = fuzzed.tokens[role_for(method, path)]
    calls: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        calls.append(response.status_code)
        STATUSES[response.status_code] += 1
        assert response.status_code < 500, (method, case.formatted_path, response.status_code, response.text[:500])

    run()
    assert calls
