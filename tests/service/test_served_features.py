"""The service records what it serves (issue 14, item 2): one de-identified encoded feature vector per scored patient
in the same transaction as the prediction, outcomes attached later by prediction id (POST /v1/outcomes, audited),
retention, and windows read back for `precimed drift --current-db`."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, update

from service.conftest import start

PREDICT = "/v1/models/pima-small/predict"
OUTCOMES = "/v1/outcomes"
SECRET_ID = "MRN-7781-zz-unique"
PATIENTS = [{"patient_id": SECRET_ID, "glu": 148, "bmi": 33.6, "age": 50, "ped": 0.627},
            {"glu": 85, "bmi": 26.6, "age": 31}]


def _served(svc, prediction_id=None):
    from precimed.service.db import ServedFeatureRow

    with svc.container.db.session() as s:
        query = select(ServedFeatureRow).order_by(ServedFeatureRow.id)
        if prediction_id is not None:
            query = query.where(ServedFeatureRow.prediction_id == prediction_id)
        return list(s.execute(query).scalars())


def _audit(svc, action):
    return [r for r in svc.container.audit.rows(limit=100_000) if r["action"] == action]


def _predict(svc, patients=PATIENTS):
    r = svc.client.post(PREDICT, json={"patients": patients}, headers=svc.auth("clinician"))
    assert r.status_code == 200, r.text
    return r.json()


def test_predict_stores_each_patients_encoded_vector_and_outputs_without_identifiers(svc):
    from precimed.cohort import type_features
    from precimed.service.db import ServedFeatureRow

    out = _predict(svc)
    rows = _served(svc)
    assert [(r.prediction_id, r.patient_index) for r in rows] == [(out["id"], 0), (out["id"], 1)]
    info = svc.container.registry.resolve("pima-small")
    bundle = svc.container.registry.load(info).bundle
    # the bundle's own preprocessing of the same patients, computed here independently of the route
    frame = pd.DataFrame([{f.name: p.get(f.name) for f in bundle.features} for p in PATIENTS])
    expected = bundle.preprocessor.transform(type_features(frame, bundle.features, where="test"))
    assert len(json.loads(rows[0].features)) == len(bundle.metadata["feature_names_out"]) == expected.shape[1]
    for i, row in enumerate(rows):
        stored = np.array([np.nan if v is None else v for v in json.loads(row.features)], dtype=float)
        np.testing.assert_allclose(stored, expected[i].astype(float), rtol=1e-6, equal_nan=True)
        assert json.loads(row.outputs)["probability"] == pytest.approx(out["predictions"][i]["probability"])
        assert (row.model, row.version, row.outcome) == ("pima-small", 1, None)
        # no identifier anywhere in the row
        text = " ".join(str(getattr(row, c.key)) for c in ServedFeatureRow.__table__.columns)
        assert SECRET_ID not in text and "patient_id" not in text
    with svc.container.db.session() as s:  # written with the prediction, in the same commit
        from precimed.service.db import PredictionRow

        assert s.get(PredictionRow, out["id"]).created_at == rows[0].created_at
    r = svc.client.post("/v1/models/pima-small/explain", json={"patients": PATIENTS}, headers=svc.auth("clinician"))
    assert r.status_code == 200 and len(_served(svc)) == 2  # explanations store no served rows


def test_outcomes_attach_by_prediction_id_and_are_audited(svc):
    out = _predict(svc)
    body = {"outcomes": [{"prediction_id": out["id"], "index": 0, "label": 1},
                         {"prediction_id": out["id"], "index": 1, "label": 0}]}
    r = svc.client.post(OUTCOMES, json=body, headers=svc.auth("clinician"))
    assert r.status_code == 200, r.text
    assert r.json()["recorded"] == 2 and r.json()["replaced"] == 0
    rows = _served(svc, out["id"])
    assert [json.loads(row.outcome) for row in rows] == [{"label": 1}, {"label": 0}]
    assert {row.outcome_actor for row in rows} == {svc.ids["clinician"]} and rows[0].outcome_at
    (audit,) = _audit(svc, "outcomes")
    detail = json.loads(audit["detail"])
    assert audit["outcome"] == "ok" and audit["model"] == "pima-small" and audit["version"] == 1
    assert detail["count"] == 2 and detail["prediction_ids_sha256"] == [hashlib.sha256(out["id"].encode()).hexdigest()]
    assert out["id"] not in audit["detail"]
    # a data scientist may replace them (explicitly); "Yes" is the positive class of this model
    again = {"outcomes": [{"prediction_id": out["id"], "index": 1, "label": "Yes"}], "replace": True}
    r = svc.client.post(OUTCOMES, json=again, headers=svc.auth("data_scientist"))
    assert r.status_code == 200 and r.json()["replaced"] == 1
    assert json.loads(_served(svc, out["id"])[1].outcome) == {"label": 1}
    assert svc.client.get("/v1/audit/verify", headers=svc.auth("admin")).json()["ok"]


def test_unknown_ids_duplicates_roles_and_bad_values_are_refused(svc):
    out = _predict(svc)
    pid = out["id"]
    good = {"prediction_id": pid, "index": 0, "label": 1}
    unknown = "0123456789abcdef0123456789abcdef"
    r = svc.client.post(OUTCOMES, json={"outcomes": [good, {"prediction_id": unknown, "index": 0, "label": 0}]},
                        headers=svc.auth("clinician"))
    assert r.status_code == 422 and unknown in r.json()["message"] and r.json()["field"] == "prediction_id"
    assert r.json()["items"] == [{"prediction_id": unknown, "index": 0}]
    assert _served(svc, pid)[0].outcome is None  # all or nothing
    r = svc.client.post(OUTCOMES, json={"outcomes": [{"prediction_id": pid, "index": 7, "label": 1}]},
                        headers=svc.auth("clinician"))
    assert r.status_code == 422 and f"{pid} index 7" in r.json()["message"]
    r = svc.client.post(OUTCOMES, json={"outcomes": [good]}, headers=svc.auth("auditor"))
    assert r.status_code == 403
    assert svc.client.post(OUTCOMES, json={"outcomes": [good]}, headers=svc.auth("clinician")).status_code == 200
    r = svc.client.post(OUTCOMES, json={"outcomes": [good]}, headers=svc.auth("clinician"))
    assert r.status_code == 409 and "replace" in r.json()["message"]
    rejected = [a for a in _audit(svc, "outcomes") if a["outcome"] != "ok"]
    assert [(a["outcome"], a["status"]) for a in rejected] == [("rejected", 422), ("rejected", 422), ("conflict", 409)]
    bad_items = [
        {"prediction_id": pid, "index": 1, "label": 2},  # binary: 0 or 1
        {"prediction_id": pid, "index": 1, "label": "SECRET-VALUE-9"},  # not the positive class; never echoed
        {"prediction_id": pid, "index": 1, "time": 10.0, "event": 1},  # not a binary model's outcome
        {"prediction_id": pid, "index": 1},  # nothing
        {"prediction_id": pid, "index": -1, "label": 1},
        {"prediction_id": pid, "index": 1, "label": 1, "note": "free text"},
        {"prediction_id": "x' OR 1=1 --", "index": 1, "label": 1},
    ]
    for item in bad_items:
        r = svc.client.post(OUTCOMES, json={"outcomes": [item]}, headers=svc.auth("clinician"))
        assert r.status_code == 422, (item, r.text)
        assert "SECRET-VALUE-9" not in r.text and "free text" not in r.text
    raw = b'{"outcomes": [{"prediction_id": "%s", "index": 1, "value": NaN}]}' % pid.encode()
    r = svc.client.post(OUTCOMES, content=raw, headers={**svc.auth("clinician"), "Content-Type": "application/json"})
    assert r.status_code == 422
    r = svc.client.post(OUTCOMES, json={"outcomes": [{"prediction_id": pid, "index": 1, "time": -1.0}]},
                        headers=svc.auth("clinician"))
    assert r.status_code == 422
    r = svc.client.post(OUTCOMES, json={"outcomes": [good] * 1001}, headers=svc.auth("clinician"))
    assert r.status_code == 422
    r = svc.client.post(OUTCOMES, json={"outcomes": [good, good], "replace": True}, headers=svc.auth("clinician"))
    assert r.status_code == 422 and "more than once" in r.json()["message"]
    assert _served(svc, pid)[1].outcome is None


def test_outcomes_are_checked_against_the_task():
    from precimed.config import TaskConfig
    from precimed.service.served import OutcomeItem, outcome_record

    survival = TaskConfig(kind="survival", time="t", event="e", horizons=[365.0])
    assert outcome_record(survival, None, OutcomeItem("p", 0, time=12.5, event=1)) == {"time": 12.5, "event": 1}
    for bad in (OutcomeItem("p", 0, time=-1.0, event=1), OutcomeItem("p", 0, time=1.0, event=2),
                OutcomeItem("p", 0, time=1.0), OutcomeItem("p", 0, time=float("inf"), event=0),
                OutcomeItem("p", 0, time=1.0, event=0, label=1)):
        with pytest.raises(ValueError):
            outcome_record(survival, None, bad)
    regression = TaskConfig(kind="regression", target="y")
    assert outcome_record(regression, None, OutcomeItem("p", 0, value=-3.5)) == {"value": -3.5}
    with pytest.raises(ValueError, match="value"):
        outcome_record(regression, None, OutcomeItem("p", 0, value=float("nan")))
    multiclass = TaskConfig(kind="multiclass", target="y")
    assert outcome_record(multiclass, ["a", "b"], OutcomeItem("p", 0, label="b")) == {"label": "b"}
    with pytest.raises(ValueError, match="classes"):
        outcome_record(multiclass, ["a", "b"], OutcomeItem("p", 0, label="c"))


def _age(svc, prediction_id, days):
    from precimed.service.db import ServedFeatureRow

    old = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="microseconds")
    with svc.container.db.transaction() as s:
        s.execute(update(ServedFeatureRow).where(ServedFeatureRow.prediction_id == prediction_id)
                  .values(created_at=old))


def test_retention_purges_old_rows_daily_and_at_start_and_audits_it(tmp_path, pima_bundles):
    from precimed.service.served import maybe_purge

    svc = start(tmp_path, pima_bundles, served_features_days=30)
    try:
        old, new = _predict(svc)["id"], _predict(svc)["id"]
        _age(svc, old, 31)
        assert maybe_purge(svc.container) is None  # purged at start less than a day ago: a cheap no
        later = datetime.now(UTC) + timedelta(days=1, minutes=1)  # a fake clock a day on
        assert maybe_purge(svc.container, now=later) == 2
        assert {r.prediction_id for r in _served(svc)} == {new}
        (purge,) = _audit(svc, "retention_purge")
        assert json.loads(purge["detail"])["count"] == 2 and purge["actor"] == "precimed"
        assert maybe_purge(svc.container, now=later + timedelta(hours=23)) is None  # not due again yet
        _age(svc, new, 40)
    finally:
        svc.client.close()
        svc.container.close()
    from precimed.service import ServiceSettings, create_app
    from precimed.service.container import container_of

    app = create_app(ServiceSettings(registry=tmp_path / "registry", served_features_days=30))  # purges at start
    try:
        again = type(svc)(app, None, svc.registry, svc.db_url, svc.tokens, svc.ids)
        assert _served(again) == [] and len(_audit(again, "retention_purge")) == 2
    finally:
        container_of(app).close()


def test_purge_reaches_every_models_old_rows_and_no_new_one(tmp_path, pima_bundles):
    """The purge deletes model by model through the (model, created_at) index: rows of models the registry never
    heard of, and of names that sort before and after each other, all go once old; no recent row goes."""
    from precimed.service.db import ServedFeatureRow
    from precimed.service.served import purge

    svc = start(tmp_path, pima_bundles, served_features_days=30)
    try:
        now = datetime.now(UTC)
        stamp = [(now - timedelta(days=d)).isoformat(timespec="microseconds") for d in (90, 31, 29, 0)]
        models = ["a", "pima-small", "zz-retired", "Ünicode-model"]
        with svc.container.db.transaction() as s:
            s.add_all([ServedFeatureRow(prediction_id=f"p{m}-{i}", patient_index=0, created_at=at, model=model,
                                        version=1, features="[]", outputs="[]")
                       for m, model in enumerate(models) for i, at in enumerate(stamp)])
        assert purge(svc.container.db, svc.container.audit, 30) == 2 * len(models)
        left = _served(svc)
        assert sorted((r.model, r.created_at) for r in left) == sorted((m, at) for m in models for at in stamp[2:])
        (record,) = _audit(svc, "retention_purge")
        assert json.loads(record["detail"])["count"] == 8
    finally:
        svc.client.close()
        svc.container.close()


def test_zero_days_keeps_nothing(tmp_path, pima_bundles):
    svc = start(tmp_path, pima_bundles, served_features_days=0)
    try:
        out = _predict(svc)
        assert _served(svc) == []
        r = svc.client.post(OUTCOMES, json={"outcomes": [{"prediction_id": out["id"], "index": 0, "label": 1}]},
                            headers=svc.auth("clinician"))
        assert r.status_code == 422 and out["id"] in r.json()["message"]
    finally:
        svc.client.close()
        svc.container.close()


def test_served_window_returns_the_rows_in_the_window(svc):
    from precimed.service.cli_commands import served_window

    first, second = _predict(svc)["id"], _predict(svc)["id"]
    _age(svc, first, 10)
    body = {"outcomes": [{"prediction_id": second, "index": 0, "label": 1}]}
    assert svc.client.post(OUTCOMES, json=body, headers=svc.auth("clinician")).status_code == 200
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    frame = served_window(svc.registry, "pima-small", since=since)
    names = svc.container.registry.metadata(svc.container.registry.resolve("pima-small"))["feature_names_out"]
    assert list(frame["prediction_id"]) == [second, second] and list(frame["index"]) == [0, 1]
    assert all(n in frame.columns for n in names) and frame["created_at"].dtype.kind == "M"
    assert list(frame["type"].fillna("-")) == ["Yes", "-"]  # the outcome in the task's label column
    assert frame["outcome_at"].notna().tolist() == [True, False]
    assert len(served_window(svc.registry, "pima-small")) == 4
    assert len(served_window(svc.registry, "pima-small", until=since)) == 2
    assert len(served_window(svc.registry, "pima-small", version=1, until="2000-01-01")) == 0
    from precimed.service.registry import ModelNotFound

    with pytest.raises(ModelNotFound, match="no version 2"):
        served_window(svc.registry, "pima-small", version=2)
    reads = _audit(svc, "served_window_read")
    assert json.loads(reads[0]["detail"])["rows"] == 2


def test_drift_from_the_database_window_through_the_cli(svc, run_cli, tmp_path):
    from precimed.data import load_dataset

    test = load_dataset("pima_te").head(80)
    patients = [{k: (None if pd.isna(row[k]) else float(row[k])) for k in ("glu", "bmi", "age", "ped")}
                for _, row in test.iterrows()]
    out = _predict(svc, patients)
    body = {"outcomes": [{"prediction_id": out["id"], "index": i, "label": int(row["type"] == "Yes")}
                         for i, (_, row) in enumerate(test.iterrows())]}
    assert svc.client.post(OUTCOMES, json=body, headers=svc.auth("data_scientist")).status_code == 200
    dest = tmp_path / "drift"
    code, stdout, stderr = run_cli("drift", "--current-db", svc.registry, "--model-name", "pima-small", "--out", dest,
                                   "--bootstrap", "50")
    assert code == 0, stderr
    doc = json.loads((dest / "drift.json").read_text())
    assert doc["current"]["n"] == 80 and doc["settings"]["encoded"] is True
    assert doc["current"]["source"]["versions"] == [1] and (dest / "drift.html").is_file()
    assert doc["performance"]["available"] is True, doc["performance"]
    print("\n".join(stdout.splitlines()[:4]))
    empty = tmp_path / "empty"
    code, stdout, stderr = run_cli("drift", "--current-db", svc.registry, "--model-name", "pima-small", "--out", empty,
                                   "--since", "2100-01-01")
    assert code == 2 and not empty.exists()
    assert len(stderr.strip().splitlines()) == 1 and "no served rows" in stderr
    code, _, stderr = run_cli("drift", "--current-db", svc.registry, "--out", empty)
    assert code == 2 and "--model-name" in stderr and len(stderr.strip().splitlines()) == 1


def test_served_rows_and_outcomes_on_postgresql(tmp_path, pima_bundles, pg_url):
    svc = start(tmp_path, pima_bundles, db_url=pg_url)
    try:
        out = _predict(svc)
        assert len(_served(svc, out["id"])) == 2
        body = {"outcomes": [{"prediction_id": out["id"], "index": 1, "label": 0}]}
        assert svc.client.post(OUTCOMES, json=body, headers=svc.auth("clinician")).status_code == 200
        assert svc.client.post(OUTCOMES, json=body, headers=svc.auth("clinician")).status_code == 409
        assert json.loads(_served(svc, out["id"])[1].outcome) == {"label": 0}
    finally:
        svc.client.close()
        svc.container.close()
