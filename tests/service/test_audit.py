"""The audit trail records every prediction, plan and registry action, and `verify` finds any altered, inserted
or deleted row."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text

from service.conftest import PATIENT


@pytest.fixture
def audited(svc):
    """A service whose audit table holds registry, token, prediction and refused-request rows."""
    c = svc.client
    c.post("/v1/models/pima-small/predict", json={"patients": [{**PATIENT, "patient_id": "MRN-77-JONES"}]},
           headers=svc.auth("clinician"))
    c.post("/v1/models/pima-small/predict", json={"patients": [{**PATIENT, "glu": 9}]}, headers=svc.auth("clinician"))
    c.get("/v1/tokens", headers=svc.auth("clinician"))  # denied: recorded too
    c.post("/v1/models/pima-small/predict", json={"patients": [PATIENT, PATIENT]}, headers=svc.auth("clinician"))
    assert svc.container.audit.verify().ok
    return svc


def _sql(svc, statement: str, **params) -> list:
    engine = create_engine(svc.db_url)
    with engine.begin() as conn:
        result = conn.execute(text(statement), params)
        rows = list(result) if result.returns_rows else []
    engine.dispose()
    return rows


def _verify(svc) -> dict:
    from precimed.service.cli_commands import audit_verify

    return audit_verify(svc.registry)


def test_each_action_is_recorded_with_who_what_model_digest_and_outcome(audited):
    rows = audited.container.audit.rows()
    actions = [(r["action"], r["outcome"], r["status"]) for r in rows]
    assert ("register", "ok", 200) in actions and ("promote:production", "ok", 200) in actions
    assert ("predict", "ok", 200) in actions and ("predict", "rejected", 422) in actions
    assert ("denied:tokens", "denied", 403) in actions
    predict = next(r for r in rows if r["action"] == "predict" and r["outcome"] == "ok")
    assert predict["actor"] == audited.ids["clinician"] and predict["role"] == "clinician"
    assert predict["model"] == "pima-small" and predict["version"] == 1 and len(predict["input_digest"]) == 64
    assert "prediction_id" in json.loads(predict["detail"])
    assert "MRN-77-JONES" not in json.dumps(rows)


def test_verify_catches_an_altered_row(audited):
    seq = _sql(audited, "SELECT min(seq) FROM audit WHERE action = 'predict' AND status = 422")[0][0]
    _sql(audited, "UPDATE audit SET outcome = 'ok', status = 200 WHERE seq = :s", s=seq)
    report = _verify(audited)
    assert not report["ok"]
    assert [p["kind"] for p in report["problems"]] == ["altered"]
    assert report["problems"][0]["seq"] == seq and "content was altered" in report["problems"][0]["message"]


def test_verify_catches_an_altered_row_whose_hash_was_recomputed(audited):
    from precimed.service.audit import row_hash
    from precimed.service.db import AuditRow

    row = audited.container.audit.rows()[3]
    forged = AuditRow(**{**{k: v for k, v in row.items() if k != "row_hash"}, "actor": "tok_someone_else"})
    key = audited.container.audit.key  # an insider holding the key: the next row's link still breaks
    _sql(audited, "UPDATE audit SET actor = :a, row_hash = :h WHERE seq = :s", a=forged.actor,
         h=row_hash(forged, key), s=row["seq"])
    report = _verify(audited)
    assert not report["ok"]
    assert report["problems"][0]["seq"] == row["seq"] + 1 and "does not link" in report["problems"][0]["message"]


def test_verify_catches_a_deleted_row_in_the_middle_and_at_the_end(audited):
    _sql(audited, "DELETE FROM audit WHERE seq = 4")
    report = _verify(audited)
    assert [(p["kind"], p["seq"]) for p in report["problems"]][0] == ("deleted", 4)
    last = _sql(audited, "SELECT max(seq) FROM audit")[0][0]
    _sql(audited, "DELETE FROM audit WHERE seq = :s", s=last)
    problems = _verify(audited)["problems"]
    assert (problems[0]["kind"], problems[0]["seq"]) == ("deleted", 4)
    assert [p["seq"] for p in problems if p["kind"] == "deleted" and "ends at" in p["message"]] == [last]


def test_verify_catches_a_forged_row_appended_with_a_valid_looking_hash(audited):
    from precimed.service.audit import row_hash
    from precimed.service.db import AuditRow

    last = audited.container.audit.rows()[-1]
    forged = AuditRow(seq=last["seq"] + 1, at=last["at"], actor="tok_ghost", role="admin", action="promote:production",
                      model="pima-small", version=1, input_digest=None, outcome="ok", status=200, detail="{}",
                      prev_hash=last["row_hash"])
    forged.row_hash = row_hash(forged, audited.container.audit.key)
    _sql(audited, "INSERT INTO audit (seq, at, actor, role, action, model, version, input_digest, outcome, status, "
                  "detail, prev_hash, row_hash) VALUES (:seq, :at, :actor, :role, :action, :model, :version, "
                  ":input_digest, :outcome, :status, :detail, :prev_hash, :row_hash)",
         **{c: getattr(forged, c) for c in ("seq", "at", "actor", "role", "action", "model", "version", "input_digest",
                                            "outcome", "status", "detail", "prev_hash", "row_hash")})
    report = _verify(audited)
    assert [p["kind"] for p in report["problems"]] == ["inserted"]
    assert "beyond the head" in report["problems"][0]["message"]


def test_verify_catches_a_row_inserted_in_the_middle(audited):
    rows = audited.container.audit.rows()
    _sql(audited, "UPDATE audit SET seq = -seq WHERE seq >= 3")
    _sql(audited, "UPDATE audit SET seq = -seq + 1 WHERE seq < 0")
    _sql(audited, "INSERT INTO audit (seq, at, actor, role, action, model, version, input_digest, outcome, status, "
                  "detail, prev_hash, row_hash) VALUES (3, :at, 'tok_ghost', 'admin', 'token_create', NULL, NULL, NULL,"
                  " 'ok', 200, '{}', :prev, :h)", at=rows[2]["at"], prev=rows[1]["row_hash"], h="f" * 64)
    kinds = {p["kind"] for p in _verify(audited)["problems"]}
    assert {"altered", "inserted"} <= kinds


def test_an_anchor_recorded_earlier_catches_a_rewritten_chain(audited):
    from precimed.service.cli_commands import audit_verify

    first = audited.container.audit.rows()[0]
    anchor = f"{first['seq']}:{first['row_hash']}"
    assert audit_verify(audited.registry, anchors=[anchor])["ok"]
    assert not audit_verify(audited.registry, anchors=[f"{first['seq']}:{'0' * 64}"])["ok"]


def test_concurrent_requests_never_fork_the_chain(svc):
    log = svc.container.audit

    def append(i: int) -> int:
        return log.append(actor="tok_test", role="clinician", action="predict", detail={"i": i}).seq

    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(append, range(80)))
    assert len(set(seqs)) == 80
    report = log.verify()
    assert report.ok and report.rows == report.head_seq


def test_the_admin_route_reports_the_chain(audited):
    r = audited.client.get("/v1/audit/verify", headers=audited.auth("admin"))
    assert r.status_code == 200 and r.json()["ok"] and r.json()["rows"] >= 8


def test_stored_rows_keep_their_json_format_through_jsonio():
    """db.to_json is jsonio's compact, sorted, UTF-8 form: the text stored rows and audit digests always had."""
    import math

    import numpy as np

    from precimed.service.audit import digest
    from precimed.service.db import to_json

    value = {"b": [1, 2.5, "Zoë ≥ 3"], "a": {"z": None, "y": True}, "n": 7}
    legacy = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    assert to_json(value) == legacy == '{"a":{"y":true,"z":null},"b":[1,2.5,"Zoë ≥ 3"],"n":7}'
    assert to_json({"x": math.nan, "y": np.float32(0.5), "z": np.int64(3), "w": [math.inf]}) == \
        '{"w":[null],"x":null,"y":0.5,"z":3}'
    assert digest({"n": 7, "a": "Zoë"}) == digest({"a": "Zoë", "n": 7})


def test_rows_page_in_order_from_a_seq(audited):
    log = audited.container.audit
    every = log.rows()
    pages, after = [], 0
    while page := log.rows(after=after, limit=3):
        assert len(page) <= 3
        pages.append(page)
        after = page[-1]["seq"]
    assert [r["seq"] for p in pages for r in p] == [r["seq"] for r in every] == list(range(1, len(every) + 1))
    assert log.rows(after=every[-1]["seq"]) == [] and log.rows(after=2, limit=1)[0]["seq"] == 3
    assert log.rows(limit=0) == []


def test_the_seq_reported_after_end_truncation_is_the_first_missing_row(audited):
    last = _sql(audited, "SELECT max(seq) FROM audit")[0][0]
    _sql(audited, "DELETE FROM audit WHERE seq > :s", s=last - 2)
    report = _verify(audited)
    ends = [p for p in report["problems"] if p["kind"] == "deleted"]
    assert [(p["seq"], p["message"]) for p in ends] == [
        (last - 1, f"the head records row {last} but the table ends at row {last - 2}: row(s) deleted from the end")]


def _legacy_database(registry) -> int:
    """A registry database written before the chain was keyed: rows hashed with plain SHA-256, no key, no
    checkpoint file. Returns the number of rows."""
    from precimed.service.audit import AuditLog, legacy_row_hash
    from precimed.service.db import AuditHead, AuditRow, Database
    from precimed.service.settings import ServiceSettings
    from precimed.workflows.privacy import KeyMaterial

    db = Database(ServiceSettings(registry=registry).database_url)
    db.migrate()
    log = AuditLog(db, KeyMaterial(b"x" * 32))
    for i in range(4):
        log.append(actor="cli:old", role="cli", action="note", detail={"i": i})
    with db.transaction() as s:
        prev = "0" * 64
        for row in s.query(AuditRow).order_by(AuditRow.seq):
            row.prev_hash = prev
            row.row_hash = prev = legacy_row_hash(row)
        s.get(AuditHead, 1).row_hash = prev
    db.dispose()
    return 4


def test_a_database_from_before_the_key_is_adopted_and_its_old_rows_stay_checked(tmp_path):
    from precimed.service import cli_commands as cli

    registry = tmp_path / "registry"
    legacy = _legacy_database(registry)
    assert cli.tokens_list(registry) == []  # the first start adopts the old rows under a new genesis
    genesis = json.loads((registry / "audit-checkpoints.jsonl").read_text().splitlines()[0])
    assert genesis["type"] == "genesis" and genesis["legacy_seq"] == legacy and genesis["first_seq"] == 1
    report = cli.audit_verify(registry)
    assert report["ok"] and report["rows"] == legacy + 1
    engine = create_engine(f"sqlite:///{registry / 'precimed.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit SET actor = 'cli:someone' WHERE seq = 2"))
    engine.dispose()
    assert [(p["kind"], p["seq"]) for p in cli.audit_verify(registry)["problems"]] == [("altered", 2)]
