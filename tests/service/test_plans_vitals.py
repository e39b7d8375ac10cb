"""Treatment plans over HTTP (stored by id), and vital-sign ingestion that raises and clears alerts."""

from __future__ import annotations

import json
import sys

from service.conftest import ROOT_EXAMPLES


def _patient(name: str) -> dict:
    return json.loads((ROOT_EXAMPLES / "patients" / name).read_text())


def test_a_plan_is_made_from_a_patient_file_stored_and_fetched_by_id(svc):
    body = _patient("gbsg_breast.json")
    r = svc.client.post("/v1/plans", json=body, headers=svc.auth("clinician"))
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert plan["patient_id"] == "demo-gbsg-001" and plan["recommendations"]
    assert "CYP2D6" in plan["pharmacogenomics"]["genes"]
    again = svc.client.get(f"/v1/plans/{r.json()['id']}", headers=svc.auth("clinician"))
    assert again.status_code == 200 and again.json()["plan"] == plan


def test_a_plan_can_use_a_registered_models_prediction(svc):
    body = {"patient_id": "p9", "facts": {"age": 50, "sex": "female"}, "model": "pima-small",
            "model_input": {"glu": 148, "bmi": 33.6, "age": 50}}
    r = svc.client.post("/v1/plans", json=body, headers=svc.auth("clinician"))
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert 0 < plan["predictions"]["probability"]["value"] < 1
    assert plan["provenance"]["bundle"]["model"] == "pima-small"
    bad = svc.client.post("/v1/plans", json={**body, "model_input": {"glu": 4000}}, headers=svc.auth("clinician"))
    assert bad.status_code == 422 and bad.json()["field"] == "model_input.glu"
    assert svc.client.post("/v1/plans", json={"facts": {}, "vcf": "/etc/passwd"},
                           headers=svc.auth("clinician")).status_code == 422


def test_plans_answer_501_when_planning_is_not_installed(svc, monkeypatch):
    monkeypatch.setitem(sys.modules, "precimed.planning", None)
    svc.app.state.svc.cache.pop("planner", None)
    r = svc.client.post("/v1/plans", json={"facts": {"age": 50}}, headers=svc.auth("clinician"))
    assert r.status_code == 501 and "planning is not available" in r.json()["message"]


def _vitals(t: str, **v) -> dict:
    base = {"patient_id": "w1", "time": f"2026-03-01T{t}:00+00:00", "resp_rate": 16, "spo2": 97, "systolic_bp": 125,
            "pulse": 72, "consciousness": "A", "temperature": 37.0, "on_oxygen": False}
    return {**base, **v}


def test_vitals_raise_an_alert_and_clear_it_across_requests(svc):
    post = lambda obs: svc.client.post("/v1/vitals", json={"observations": obs}, headers=svc.auth("clinician"))  # noqa: E731
    calm = post([_vitals("08:00")])
    assert calm.status_code == 200 and calm.json()["alerts"] == [] and calm.json()["scores"][0]["news2"] == 0
    sick = post([_vitals("09:00", resp_rate=26, spo2=91, pulse=125, systolic_bp=95)])
    [alert] = sick.json()["alerts"]
    assert alert["event"] == "alert" and alert["patient_id"] == "w1" and alert["news2"] >= 7
    cleared = post([_vitals("10:00"), _vitals("11:00")])
    assert [e["event"] for e in cleared.json()["alerts"]] == ["clear"]


def test_a_bad_observation_is_422_naming_the_field_and_the_record(svc):
    r = svc.client.post("/v1/vitals", json={"observations": [_vitals("08:00"), _vitals("09:00", spo2=170)]},
                        headers=svc.auth("clinician"))
    assert r.status_code == 422
    err = r.json()
    assert err["field"] == "spo2" and err["patients"] == [{"index": 1, "patient_id": "w1"}] and err["accepted"] == 1
