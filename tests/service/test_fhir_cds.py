"""FHIR R4 input mapped to features by a declared mapping, and a CDS Hooks patient-view service."""

from __future__ import annotations

import copy

from service.conftest import MAPPING

URL = "/v1/fhir/pima-small/predict?as_of=2026-06-01"


def _obs(oid: str, code: str, value: float, unit: str, when: str, status: str = "final") -> dict:
    return {"resource": {"resourceType": "Observation", "id": oid, "status": status,
                         "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": when,
                         "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                         "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                           "code": unit}}}


PATIENT = {"resourceType": "Patient", "id": "pat-1", "birthDate": "1976-05-01", "gender": "female"}
BUNDLE = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": PATIENT},
    _obs("glu-2025", "2345-7", 90, "mg/dL", "2025-01-01T08:00:00Z"),
    _obs("glu-2026", "2345-7", 148, "mg/dL", "2026-05-01T08:00:00Z"),
    _obs("glu-wrong", "2345-7", 400, "mg/dL", "2026-05-02T08:00:00Z", status="entered-in-error"),
    _obs("bmi-2026", "39156-5", 33.6, "kg/m2", "2026-05-01T08:00:00Z"),
]}


def test_a_fhir_bundle_is_mapped_to_features_and_scored_like_the_same_json(svc):
    r = svc.client.post(URL, json=BUNDLE, headers=svc.auth("clinician"))
    assert r.status_code == 200, r.text
    out = r.json()
    row = out["predictions"][0]
    assert row["patient_id"] == "pat-1" and row["missing"] == ["ped"]
    assert out["sources"]["glu"] == "Observation/glu-2026 (LOINC 2345-7)"  # latest valid, not entered-in-error
    assert out["sources"]["age"] == "Patient.birthDate"
    same = svc.client.post("/v1/models/pima-small/predict", json={"patients": [{"glu": 148, "bmi": 33.6, "age": 50}]},
                           headers=svc.auth("clinician")).json()["predictions"][0]
    assert abs(row["probability"] - same["probability"]) < 1e-9
    stored = svc.client.get(f"/v1/predictions/{out['id']}", headers=svc.auth("clinician"))
    assert stored.status_code == 200


def test_a_declared_unit_conversion_is_applied_and_an_undeclared_unit_refused(svc):
    mmol = copy.deepcopy(BUNDLE)
    mmol["entry"][2] = _obs("glu-2026", "2345-7", 148 / 18.016, "mmol/L", "2026-05-01T08:00:00Z")
    a = svc.client.post(URL, json=mmol, headers=svc.auth("clinician")).json()["predictions"][0]
    b = svc.client.post(URL, json=BUNDLE, headers=svc.auth("clinician")).json()["predictions"][0]
    assert abs(a["probability"] - b["probability"]) < 1e-6
    bad = copy.deepcopy(BUNDLE)
    bad["entry"][4] = _obs("bmi-2026", "39156-5", 33.6, "lb/in2", "2026-05-01T08:00:00Z")
    r = svc.client.post(URL, json=bad, headers=svc.auth("clinician"))
    assert r.status_code == 422 and r.json()["field"] == "bmi" and "Observation/bmi-2026" in r.json()["message"]


def test_implausible_fhir_values_get_422_naming_the_feature_and_patient(svc):
    bad = copy.deepcopy(BUNDLE)
    bad["entry"][2] = _obs("glu-2026", "2345-7", 1480, "mg/dL", "2026-05-01T08:00:00Z")
    r = svc.client.post(URL, json=bad, headers=svc.auth("clinician"))
    assert r.status_code == 422
    assert r.json()["field"] == "glu" and r.json()["patients"] == [{"index": 0, "patient_id": "pat-1"}]


def test_not_a_bundle_or_no_patient_is_422(svc):
    r = svc.client.post(URL, json={"resourceType": "Patient"}, headers=svc.auth("clinician"))
    assert r.status_code == 422 and r.json()["field"] == "resourceType"
    r = svc.client.post(URL, json={"resourceType": "Bundle", "entry": BUNDLE["entry"][1:]},
                        headers=svc.auth("clinician"))
    assert r.status_code == 422 and "exactly one Patient" in r.json()["message"]


def test_a_data_scientist_sets_a_mapping_that_is_checked_against_the_features(svc, pima_bundles):
    from precimed.service import cli_commands as cli

    cli.registry_add(svc.registry, pima_bundles[1])
    cli.registry_promote(svc.registry, "pima-small", 2, stage="staging")  # clinicians pin only staged versions
    r = svc.client.post("/v1/fhir/pima-small/predict?version=2", json=BUNDLE, headers=svc.auth("clinician"))
    assert r.status_code == 422 and "no FHIR mapping" in r.json()["message"]
    url = "/v1/models/pima-small/versions/2/fhir-mapping"
    bad = {"format": "precimed.fhir-mapping/1", "observations": [{"loinc": "1-8", "feature": "insulin"}]}
    r = svc.client.put(url, json=bad, headers=svc.auth("data_scientist"))
    assert r.status_code == 422 and "insulin" in r.json()["message"]
    import yaml

    good = yaml.safe_load(MAPPING.read_text())
    assert svc.client.put(url, json=good, headers=svc.auth("data_scientist")).status_code == 200
    r = svc.client.post("/v1/fhir/pima-small/predict?version=2&as_of=2026-06-01", json=BUNDLE,
                        headers=svc.auth("clinician"))
    assert r.status_code == 200 and r.json()["version"] == 2


def test_cds_discovery_lists_a_patient_view_service_per_mapped_production_model(svc):
    services = svc.client.get("/cds-services", headers=svc.auth("clinician")).json()["services"]
    assert [(s["id"], s["hook"]) for s in services] == [("precimed-pima-small", "patient-view")]
    assert "patient" in services[0]["prefetch"]


def test_a_patient_view_hook_returns_a_risk_card_and_a_plan_card(svc):
    request = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
               "context": {"patientId": "pat-1", "userId": "Practitioner/1"},
               "prefetch": {"patient": PATIENT, "observations": {"resourceType": "Bundle", "type": "searchset",
                                                                 "entry": BUNDLE["entry"][1:]}}}
    r = svc.client.post("/cds-services/precimed-pima-small", json=request, headers=svc.auth("clinician"))
    assert r.status_code == 200, r.text
    risk, plan = r.json()["cards"]
    assert risk["summary"].startswith("pima-small: risk ") and len(risk["summary"]) <= 140
    assert risk["indicator"] in ("info", "warning", "critical") and "ped" in risk["detail"]
    assert plan["summary"].startswith(("Plan:", "Treatment plan"))
    assert svc.client.post("/cds-services/precimed-pima-small", json={**request, "prefetch": {}},
                           headers=svc.auth("clinician")).status_code == 422
    assert svc.client.post("/cds-services/precimed-nothing", json=request,
                           headers=svc.auth("clinician")).status_code == 404
