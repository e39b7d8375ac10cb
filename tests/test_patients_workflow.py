"""Patients as records: checked against the bundle's schema (every bad field and patient named at once), scored or
explained with the primary model unless another is named, planned, and followed over time by a bounded monitor."""

from __future__ import annotations

import sys

import pytest

from helpers import small_pima_bundle
from precimed.errors import DataError
from precimed.workflows.patients import (
    FieldProblem,
    PatientsInvalid,
    PlanningUnavailable,
    VitalsMonitors,
    check_patients,
    load_planner,
    outputs,
    patient_ids,
    plan_for,
    score,
)

PATIENT = {"patient_id": "p1", "glu": 148, "bmi": 33.6, "age": 50, "ped": 0.627}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return small_pima_bundle(tmp_path_factory.mktemp("pima"))


def test_check_patients_names_each_bad_field_and_patient(bundle):
    patients = [{"patient_id": "a", "glu": 1480, "bmi": "high", "age": 50},
                {"patient_id": "a", "glu": 90, "bmi": 30, "age": 40},
                {"gluc": 1}]
    problems = check_patients(bundle.features, patients, "id", allow_out_of_range=False)
    by_field = {(p.field, tuple(p.indices)) for p in problems}
    assert ("glu", (0,)) in by_field and ("bmi", (0,)) in by_field and ("gluc", (2,)) in by_field
    assert ("patient_id", (0, 1)) in by_field and ("patients", (2,)) in by_field
    assert not any(p.field == "glu" for p in check_patients(bundle.features, patients[:1], "id",
                                                            allow_out_of_range=True))
    assert patient_ids([{"patient_id": 3}, {"id": "x"}, {}], "id") == [3, "x", None]


def test_patients_invalid_merges_problems_and_is_a_data_error():
    exc = PatientsInvalid([FieldProblem("glu", "too high", [2]), FieldProblem("bmi", "not a number", [0]),
                           FieldProblem("glu", "too high", [0, 2])])
    assert isinstance(exc, DataError) and exc.column == "glu"
    assert [(p.field, p.indices) for p in exc.problems] == [("glu", [2, 0]), ("bmi", [0])]
    assert exc.indices == [0, 2] and "2 problem(s) in field(s) ['glu', 'bmi']" in str(exc)


def test_score_uses_the_primary_model_unless_another_is_named(bundle):
    scored = score(bundle, [PATIENT, {"glu": 85, "bmi": 26.6, "age": 31}])
    assert scored.model == bundle.primary and scored.ids == ["p1", None]
    first, second = scored.rows
    assert first["index"] == 0 and first["patient_id"] == "p1" and first["missing"] == []
    assert second["missing"] == ["ped"] and 0 < first["probability"] < 1
    assert isinstance(first["probability"], float)  # plain JSON numbers, not numpy
    assert outputs(first) == {"probability": first["probability"]}
    other = score(bundle, [PATIENT], model="logistic")
    assert other.model == "logistic" and other.rows[0]["probability"] != first["probability"]
    with pytest.raises(PatientsInvalid) as caught:
        score(bundle, [PATIENT], model="gbm")
    assert caught.value.problems[0].field == "model" and "logistic" in caught.value.problems[0].message


def test_score_reports_every_problem_of_a_request_at_once(bundle):
    patients = [{"patient_id": "a", "glu": 1480, "bmi": "high", "age": 50},
                {"patient_id": "b", "glu": 90, "bmi": 30, "age": 40},
                {"patient_id": "c", "glu": 90, "bmi": 30, "age": 3, "gluc": 1}]
    with pytest.raises(PatientsInvalid) as caught:
        score(bundle, patients)
    assert {p.field: p.indices for p in caught.value.problems} == {"glu": [0], "bmi": [0], "age": [2], "gluc": [2]}
    allowed = score(bundle, [{"glu": 1480, "bmi": 30, "age": 40}], allow_out_of_range=True)
    assert allowed.rows[0]["missing"] == ["glu", "ped"]


def test_explain_lists_contributions_and_leaves_the_bundle_as_it_was(bundle):
    before = score(bundle, [PATIENT]).rows
    row = score(bundle, [PATIENT], explain_top_k=2).rows[0]
    assert row["patient_id"] == "p1" and len(row["contributions"]) == 2 and row["missing"] == []
    assert score(bundle, [PATIENT]).rows == before


def test_a_plan_joins_the_bundles_prediction_to_the_patients_facts(bundle):
    doc = {"patient_id": "p9", "facts": {"age": 50, "sex": "female"},
           "model_input": {"glu": 148, "bmi": 33.6, "age": 50}}
    plan = plan_for(doc, bundle=bundle, source="pima v1", provenance={"service": "test"})
    assert plan["patient_id"] == "p9"
    assert plan["predictions"]["probability"]["model"] == "pima v1"
    assert 0 < plan["predictions"]["probability"]["value"] < 1
    with pytest.raises(PatientsInvalid) as caught:
        plan_for({**doc, "model_input": {"glu": 4000}}, bundle=bundle)
    assert caught.value.problems[0].field == "glu"
    with pytest.raises(DataError, match="model_input is empty"):
        plan_for({"facts": {"age": 50}}, bundle=bundle)


def test_without_the_planning_package_plans_are_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "precimed.planning", None)
    with pytest.raises(PlanningUnavailable, match="not available"):
        load_planner()


def _obs(pid: str, hour: int, **v) -> dict:
    base = {"patient_id": pid, "time": f"2026-03-01T{hour:02d}:00:00+00:00", "resp_rate": 16, "spo2": 97,
            "systolic_bp": 125, "pulse": 72, "consciousness": "A", "temperature": 37.0, "on_oxygen": False}
    return {**base, **v}


SICK = {"resp_rate": 26, "spo2": 91, "pulse": 125, "systolic_bp": 95}


def test_the_vitals_monitor_keeps_at_most_n_patients_forgetting_the_least_recently_seen():
    n, k = 10, 12
    monitors = VitalsMonitors(max_patients=n)
    assert [e["event"] for e in monitors.ingest([_obs("p0", 8, **SICK)]).events] == ["alert"]
    for i in range(1, n + k):  # n + k patients in all, each sick at first sight
        assert [e["event"] for e in monitors.ingest([_obs(f"p{i}", 8, **SICK)]).events] == ["alert"]
        assert len(monitors) <= n
        if i == n - 1:  # p0 is still remembered while there is room: its episode is still open
            assert monitors.ingest([_obs("p0", 9, **SICK)]).events == []
    assert len(monitors) == n
    # p0, last seen before p10..p21 arrived, was forgotten: still sick, it opens a new episode
    assert [e["event"] for e in monitors.ingest([_obs("p0", 10, **SICK)]).events] == ["alert"]
    # the most recently seen are remembered: their episodes are still open, so no new alert
    assert monitors.ingest([_obs(f"p{n + k - 1}", 10, **SICK)]).events == []
    assert len(monitors) == n


def test_the_vitals_monitor_stops_at_a_bad_record_and_keeps_the_ones_before():
    monitors = VitalsMonitors(max_patients=3)
    result = monitors.ingest([_obs("a", 8), _obs("a", 9, spo2=170), _obs("b", 9)])
    assert len(result.steps) == 1 and isinstance(result.error, DataError) and result.error.column == "spo2"
    assert len(monitors) == 1
    nobody = monitors.ingest([{"time": "2026-03-01T08:00:00+00:00"}])
    assert nobody.error is not None and nobody.error.column == "patient_id" and len(monitors) == 1
    other_stream = monitors.ingest([_obs("a", 8)], stream="model-x")  # followed apart from the default stream
    assert other_stream.error is None and len(monitors) == 2
    with pytest.raises(Exception, match="max_patients"):
        VitalsMonitors(max_patients=0)
