"""Predict and explain over HTTP: one or many patients, the production version unless pinned, 422 that names
each bad field and patient, stored predictions fetched by id."""

from __future__ import annotations

from service.conftest import PATIENT

PREDICT = "/v1/models/pima-small/predict"


def test_a_clinician_gets_a_probability_for_each_patient_and_the_missing_inputs(svc):
    body = {"patients": [PATIENT, {"glu": 85, "bmi": 26.6, "age": 31}]}
    r = svc.client.post(PREDICT, json=body, headers=svc.auth("clinician"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["version"] == 1 and out["stage"] == "production" and out["task"] == "binary"
    first, second = out["predictions"]
    assert first["patient_id"] == "p1" and first["missing"] == []
    assert 0 < first["probability"] < 1
    assert second["patient_id"] is None and second["missing"] == ["ped"]
    assert first["probability"] > second["probability"]  # high glucose, older, higher BMI


def test_a_bad_request_gets_422_naming_each_bad_field_and_patient(svc):
    body = {"patients": [{"patient_id": "a", "glu": 1480, "bmi": "high", "age": 50},
                         {"patient_id": "b", "glu": 90, "bmi": 30, "age": 40},
                         {"patient_id": "c", "glu": 90, "bmi": 30, "age": 3, "gluc": 1}]}
    r = svc.client.post(PREDICT, json=body, headers=svc.auth("clinician"))
    assert r.status_code == 422
    err = r.json()
    assert set(err) >= {"message", "field", "patients"}
    assert err["field"] == "glu"
    assert [p["patient_id"] for p in err["patients"]] == ["a", "c"]  # b is fine
    by_field = {e["field"]: [p["patient_id"] for p in e["patients"]] for e in err["errors"]}
    assert by_field == {"glu": ["a"], "bmi": ["a"], "age": ["c"], "gluc": ["c"]}
    assert "[20, 400] mg/dL" in err["message"]


def test_out_of_range_values_can_be_treated_as_missing_when_asked(svc):
    body = {"patients": [{"glu": 1480, "bmi": 30, "age": 40}], "allow_out_of_range": True}
    r = svc.client.post(PREDICT, json=body, headers=svc.auth("clinician"))
    assert r.status_code == 200 and r.json()["predictions"][0]["missing"] == ["glu", "ped"]


def test_malformed_bodies_get_422_in_the_same_shape(svc):
    r = svc.client.post(PREDICT, json={"patients": [{"glu": [1, 2]}]}, headers=svc.auth("clinician"))
    assert r.status_code == 422
    assert r.json()["field"] == "glu" and r.json()["patients"] == [{"index": 0, "patient_id": None}]
    r = svc.client.post(PREDICT, json={"patients": []}, headers=svc.auth("clinician"))
    assert r.status_code == 422 and r.json()["field"] == "patients"
    r = svc.client.post(PREDICT, content=b"{not json", headers={**svc.auth("clinician"),
                                                                 "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert r.json()["message"].startswith("invalid request in field(s) ['body']: the body is not valid JSON (")
    assert "at character 1)" in r.json()["message"]  # where the parser stopped
    r = svc.client.post(PREDICT, content=b'{"patients": [{"glu": 1}]', headers={**svc.auth("clinician"),
                                                                              "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body" and "not valid JSON" in r.json()["message"]


def test_an_unknown_model_or_version_is_404(svc):
    r = svc.client.post("/v1/models/nope/predict", json={"patients": [PATIENT]}, headers=svc.auth("clinician"))
    assert r.status_code == 404 and "nope" in r.json()["message"]
    r = svc.client.post(PREDICT, json={"patients": [PATIENT], "version": 9}, headers=svc.auth("clinician"))
    assert r.status_code == 404 and "version 9" in r.json()["message"]


def test_an_unknown_submodel_is_422_naming_it(svc):
    r = svc.client.post(PREDICT, json={"patients": [PATIENT], "model": "gbm"}, headers=svc.auth("clinician"))
    assert r.status_code == 422 and r.json()["field"] == "model"
    r = svc.client.post(PREDICT, json={"patients": [PATIENT], "model": "logistic"}, headers=svc.auth("clinician"))
    assert r.status_code == 200 and r.json()["submodel"] == "logistic"


def test_a_prediction_is_stored_and_fetched_by_id(svc):
    made = svc.client.post(PREDICT, json={"patients": [PATIENT]}, headers=svc.auth("clinician")).json()
    r = svc.client.get(f"/v1/predictions/{made['id']}", headers=svc.auth("clinician"))
    assert r.status_code == 200
    assert r.json()["predictions"] == made["predictions"] and r.json()["created_at"]
    assert svc.client.get("/v1/predictions/0123", headers=svc.auth("clinician")).status_code == 404


def test_explain_lists_contributions_in_the_users_units(svc):
    r = svc.client.post("/v1/models/pima-small/explain", json={"patients": [PATIENT], "top_k": 2},
                        headers=svc.auth("clinician"))
    assert r.status_code == 200, r.text
    row = r.json()["explanations"][0]
    assert row["patient_id"] == "p1" and 0 < row["prediction"] < 1
    assert len(row["contributions"]) == 2
    assert any("mg/dL" in c["display"] or "years" in c["display"] or "kg/m2" in c["display"]
               for c in row["contributions"])
    r = svc.client.post("/v1/models/pima-small/explain", json={"patients": [{**PATIENT, "glu": 5}]},
                        headers=svc.auth("clinician"))
    assert r.status_code == 422 and r.json()["field"] == "glu"


def test_too_many_patients_or_too_large_a_body_is_413(tmp_path, pima_bundles):
    from service.conftest import start

    s = start(tmp_path, pima_bundles, max_patients=2, max_body_bytes=2048)
    r = s.client.post(PREDICT, json={"patients": [PATIENT] * 3}, headers=s.auth("clinician"))
    assert r.status_code == 413
    r = s.client.post(PREDICT, json={"patients": [PATIENT], "pad": "x" * 5000}, headers=s.auth("clinician"))
    assert r.status_code == 413
    s.container.db.dispose()
