"""The OpenAPI schema says what every route answers: a declared response model for each success, not `{}`."""

from __future__ import annotations

from typing import Any

import pytest

# Success bodies that are deliberately not JSON, and why.
NOT_JSON = {
    ("get", "/metrics"): "Prometheus text exposition format (text/plain; version=0.0.4), read by a Prometheus scraper",
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from precimed.service import ServiceSettings, create_app
    from precimed.service.container import container_of

    app = create_app(ServiceSettings(registry=tmp_path_factory.mktemp("openapi") / "registry"))
    with TestClient(app) as client:
        found = client.get("/openapi.json").json()
    container_of(app).close()
    return found


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = spec["components"]["schemas"][name]
    return schema


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def test_every_route_declares_a_response_model_for_its_success(spec):
    missing = []
    for method, path, op in _operations(spec):
        ok = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert ok, f"{method.upper()} {path} declares no 2xx response"
        if (method, path) in NOT_JSON:
            continue
        for code, response in ok.items():
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            resolved = _resolve(schema, spec)
            # a named model (a $ref to a component) with declared fields, not {} or a free-form object
            if "$ref" not in schema or not resolved.get("properties"):
                missing.append(f"{method.upper()} {path} {code}: {schema}")
    assert not missing, "routes without a response model:\n" + "\n".join(missing)


def test_the_non_json_exceptions_are_real_routes_and_say_what_they_send(spec):
    operations = {(method, path): op for method, path, op in _operations(spec)}
    for key, reason in NOT_JSON.items():
        assert key in operations, f"stale exception {key}: {reason}"
        content = operations[key]["responses"]["200"]["content"]
        assert "application/json" not in content and any(t.startswith("text/plain") for t in content)


def test_the_success_models_name_their_fields(spec):
    """Spot checks that the models are the real shapes, not placeholders."""
    schemas = spec["components"]["schemas"]
    predict = _resolve(spec["paths"]["/v1/models/{name}/predict"]["post"]["responses"]["200"]["content"]
                       ["application/json"]["schema"], spec)
    assert {"id", "model", "version", "submodel", "predictions"} <= set(predict["properties"])
    row = schemas["PatientPrediction"]
    assert {"index", "patient_id", "missing"} <= set(row["properties"])
    assert row["additionalProperties"] != {} and row["additionalProperties"] is not True  # outputs are numbers
    vitals = schemas["VitalsOut"]["properties"]
    assert set(vitals) == {"accepted", "alerts", "scores"}
    ready = spec["paths"]["/readyz"]["get"]["responses"]
    assert "503" in ready and "$ref" in ready["503"]["content"]["application/json"]["schema"]
