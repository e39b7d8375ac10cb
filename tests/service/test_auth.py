"""Every route but health and discovery needs a bearer token; each role may do only its own things; tokens are
stored hashed, can be revoked, and are rate limited."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from sqlalchemy import create_engine, text

from service.conftest import PATIENT, start

ALL = {"clinician", "data_scientist", "admin", "auditor"}
ROUTES = [  # method, path, json body, roles allowed
    ("GET", "/metrics", None, ALL),
    ("GET", "/v1/models", None, ALL),
    ("POST", "/v1/outcomes", {"outcomes": [{"prediction_id": "none", "index": 0, "label": 1}]},
     {"clinician", "data_scientist"}),
    ("GET", "/v1/models/pima-small", None, ALL),
    ("POST", "/v1/models", None, {"data_scientist"}),
    ("PUT", "/v1/models/pima-small/versions/1/fhir-mapping", {"format": "bad"}, {"data_scientist"}),
    ("POST", "/v1/models/pima-small/evaluate", {"dataset": "no_such_cohort"}, {"data_scientist"}),
    ("POST", "/v1/models/pima-small/promote", {"version": 1}, {"admin"}),
    ("POST", "/v1/models/pima-small/rollback", {}, {"admin"}),
    ("POST", "/v1/models/pima-small/predict", {"patients": [PATIENT]}, {"clinician"}),
    ("POST", "/v1/models/pima-small/explain", {"patients": [{"glu": 1}]}, {"clinician"}),
    ("GET", "/v1/predictions/abc", None, {"clinician", "admin", "auditor"}),
    ("POST", "/v1/plans", {"facts": {"age": 50}, "unknown_key": 1}, {"clinician"}),
    ("GET", "/v1/plans/abc", None, {"clinician", "admin", "auditor"}),
    ("POST", "/v1/vitals", {"observations": [{"patient_id": "w", "time": "bad"}]}, {"clinician"}),
    ("POST", "/v1/fhir/pima-small/predict", {"resourceType": "Bundle", "entry": []}, {"clinician"}),
    ("POST", "/cds-services/precimed-pima-small", {"hook": "x", "hookInstance": "1", "context": {}}, {"clinician"}),
    ("POST", "/v1/tokens", {"role": "nobody"}, {"admin"}),
    ("GET", "/v1/tokens", None, {"admin"}),
    ("DELETE", "/v1/tokens/tok_none", None, {"admin"}),
    ("GET", "/v1/audit/verify", None, {"admin", "auditor"}),
]


@pytest.fixture(scope="module")
def roomy(tmp_path_factory, pima_bundles):
    """One service for the whole role table (its calls do not change what the others see)."""
    s = start(tmp_path_factory.mktemp("roles"), pima_bundles, rate_burst=1000)
    yield s
    s.container.db.dispose()


def test_every_route_in_the_openapi_spec_is_covered_by_the_role_table(roomy):
    spec = roomy.client.get("/openapi.json").json()
    listed = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    public = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/cds-services")}
    covered = {(m, _template(p)) for m, p, _, _ in ROUTES}
    assert listed - public == covered


def _template(path: str) -> str:
    return (path.replace("/pima-small/versions/1/", "/{name}/versions/{version}/")
            .replace("/v1/models/pima-small", "/v1/models/{name}").replace("/v1/fhir/pima-small", "/v1/fhir/{name}")
            .replace("/v1/predictions/abc", "/v1/predictions/{prediction_id}")
            .replace("/v1/plans/abc", "/v1/plans/{plan_id}").replace("/cds-services/precimed-pima-small",
                                                                     "/cds-services/{service_id}")
            .replace("/v1/tokens/tok_none", "/v1/tokens/{token_id}"))


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_each_role_is_admitted_only_where_it_belongs(roomy, method, path, body, allowed):
    c = roomy.client
    assert c.request(method, path, json=body).status_code == 401
    assert c.request(method, path, json=body, headers={"Authorization": "Bearer pmd_forged"}).status_code == 401
    for role in sorted(ALL):
        r = c.request(method, path, json=body, headers=roomy.auth(role))
        if role in allowed:
            assert r.status_code not in (401, 403), (role, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code, r.text)
            assert role in r.json()["message"]


def test_health_and_discovery_need_no_token(svc):
    assert svc.client.get("/healthz").json() == {"status": "ok"}
    ready = svc.client.get("/readyz")
    assert ready.status_code == 200 and "models" not in ready.json()["checks"]  # model names only to a token
    assert svc.client.get("/readyz", headers=svc.auth("clinician")).json()["checks"]["models"] == {
        "pima-small": "v1 ok"}
    assert svc.client.get("/cds-services").status_code == 200


def test_tokens_are_stored_only_as_hashes(svc):
    engine = create_engine(svc.db_url)
    with engine.connect() as conn:
        stored = {r.token_sha256 for r in conn.execute(text("SELECT token_sha256 FROM tokens"))}
        dump = "\n".join(str(tuple(r)) for r in conn.execute(text("SELECT * FROM tokens")))
    engine.dispose()
    for token in svc.tokens.values():
        assert token not in dump
        assert hashlib.sha256(token.encode()).hexdigest() in stored


def test_an_admin_creates_and_revokes_tokens_and_a_revoked_token_is_refused(svc):
    made = svc.client.post("/v1/tokens", json={"role": "clinician", "label": "ward 3"}, headers=svc.auth("admin"))
    assert made.status_code == 201
    new = {"Authorization": f"Bearer {made.json()['token']}"}
    predict = "/v1/models/pima-small/predict"
    assert svc.client.post(predict, json={"patients": [PATIENT]}, headers=new).status_code == 200
    listed = svc.client.get("/v1/tokens", headers=svc.auth("admin")).json()["tokens"]
    assert made.json()["token"] not in str(listed) and any(t["label"] == "ward 3" for t in listed)
    assert svc.client.delete(f"/v1/tokens/{made.json()['id']}", headers=svc.auth("admin")).status_code == 200
    assert svc.client.post(predict, json={"patients": [PATIENT]}, headers=new).status_code == 401
    assert svc.client.delete(f"/v1/tokens/{made.json()['id']}", headers=svc.auth("admin")).status_code == 404


def test_a_token_over_its_rate_limit_gets_429_with_retry_after(tmp_path, pima_bundles):
    s = start(tmp_path, pima_bundles, rate_burst=3, rate_per_minute=1)
    codes = [s.client.get("/v1/models", headers=s.auth("clinician")).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = s.client.get("/v1/models", headers=s.auth("clinician"))
    assert int(r.headers["Retry-After"]) >= 1
    assert s.client.get("/v1/models", headers=s.auth("admin")).status_code == 200  # per token
    s.container.db.dispose()


def test_a_streamed_body_over_the_limit_is_413_even_without_content_length(tmp_path, pima_bundles):
    s = start(tmp_path, pima_bundles, max_body_bytes=2048)

    def chunks():
        for _ in range(10):
            yield b" " * 1000

    r = s.client.post("/v1/models/pima-small/predict", content=chunks(),
                      headers={**s.auth("clinician"), "Content-Type": "application/json"})
    assert r.status_code == 413
    s.container.db.dispose()


def test_logs_carry_ids_and_digests_but_no_patient_data(svc, caplog):
    caplog.set_level("DEBUG")
    secret = {"patient_id": "MRN-4471-SMITH", "glu": 5, "bmi": 33.6, "age": 50}
    svc.client.post("/v1/models/pima-small/predict", json={"patients": [secret]}, headers=svc.auth("clinician"))
    svc.client.post("/v1/models/pima-small/predict", json={"patients": [{**secret, "glu": 150}]},
                    headers=svc.auth("clinician"))
    text_logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "MRN-4471-SMITH" not in text_logged and "33.6" not in text_logged
    assert svc.ids["clinician"] in text_logged


def _zip_of(folder) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in folder.rglob("*"):
            if p.is_file():
                z.write(p, p.relative_to(folder.parent).as_posix())
    return buf.getvalue()


def test_a_data_scientist_registers_a_zipped_bundle_and_an_admin_promotes_it(svc, pima_bundles):
    r = svc.client.post("/v1/models", content=_zip_of(pima_bundles[1]), headers={**svc.auth("data_scientist"),
                                                                                 "Content-Type": "application/zip"})
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["stages"] == []
    again = svc.client.post("/v1/models", content=_zip_of(pima_bundles[1]),
                            headers={**svc.auth("data_scientist"), "Content-Type": "application/zip"})
    assert again.status_code == 409
    bad = svc.client.post("/v1/models", content=b"PK\x03\x04 not really", headers=svc.auth("data_scientist"))
    assert bad.status_code == 422
    r = svc.client.post("/v1/models/pima-small/promote", json={"version": 2}, headers=svc.auth("admin"))
    assert r.status_code == 200 and r.json()["stages"] == ["production"]


def test_an_unexpected_failure_is_a_500_that_logs_and_audits_no_patient_data(svc, caplog, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("value 148 for MRN-4471-SMITH")

    monkeypatch.setattr(svc.container.registry, "resolve", boom)
    caplog.set_level("INFO")
    r = svc.client.post("/v1/models/pima-small/predict", json={"patients": [PATIENT]}, headers=svc.auth("clinician"))
    assert r.status_code == 500 and r.headers["X-Request-ID"] in r.json()["message"]
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "RuntimeError" in logged and "MRN-4471" not in logged and "148" not in logged.replace(r.headers[
        "X-Request-ID"], "")
    last = svc.container.audit.rows()[-1]
    assert (last["outcome"], last["status"], last["actor"]) == ("error", 500, svc.ids["clinician"])
