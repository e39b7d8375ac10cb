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
    monkeypatch.setitem(sys.modules, "precimed.planning", None)  # no plan was made yet: the planner is not loaded
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


def test_the_vital_sign_state_is_kept_for_at_most_the_configured_number_of_patients(tmp_path, pima_bundles):
    from service.conftest import start

    n, k = 5, 4
    s = start(tmp_path, pima_bundles, max_monitored_patients=n)
    post = lambda obs: s.client.post("/v1/vitals", json={"observations": obs}, headers=s.auth("clinician"))  # noqa: E731
    sick = {"resp_rate": 26, "spo2": 91, "pulse": 125, "systolic_bp": 95}
    first = post([_vitals("08:00", patient_id="p0", **sick)])
    assert [e["event"] for e in first.json()["alerts"]] == ["alert"]
    for i in range(1, n + k):  # n + k patients in all, one request each
        assert post([_vitals("08:00", patient_id=f"p{i}")]).status_code == 200
        assert len(s.container.vitals) <= n
    assert len(s.container.vitals) == n
    # p0 was the least recently seen, so it was forgotten: still sick, it raises a new alert, not nothing
    again = post([_vitals("09:00", patient_id="p0", **sick)])
    assert [e["event"] for e in again.json()["alerts"]] == ["alert"]
    assert len(s.container.vitals) == n
    # the most recent patients are remembered: p8, still calm, raises nothing and its episode state is intact
    assert post([_vitals("09:00", patient_id=f"p{n + k - 1}")]).json()["alerts"] == []
    s.client.close()
    s.container.close()
