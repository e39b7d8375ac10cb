"""Finding 1 (audit log): each attack on the audit trail is tried and its detection asserted by problem kind.

An attacker here can write the database (and, where said, the checkpoint file) but cannot read the audit key.

- the newest rows deleted and the head moved back: `truncated` (the last checkpoint lies beyond the table)
- every row deleted: `wiped`; the next write starting a fresh chain: `new_chain`; a restart refuses (exit 2)
- a row rewritten and every later row re-hashed with plain SHA-256: `altered` for each, `rewritten` at checkpoints
- a stored probability edited, or a prediction inserted by SQL: `result`
- a stage set by SQL (no promote row): `stage`; a version inserted by SQL: `version`
- a token raised to admin, inserted, or un-revoked by SQL: `token`
- a checkpoint line deleted or forged: `checkpoint`; the checkpoint file deleted: `no_genesis`, restart refused
- the key missing: verification says so in one line (exit 2); another key: restart refused
- a token and its audit row are one transaction; checkpoints are written every N rows and at shutdown
- `precimed tokens list` (which `tokens revoke` points to) shows ids and roles, never a token or its hash
"""

from __future__ import annotations

import json
import time

import pytest

from precimed.service import cli_commands as cli
from security.audit_attacks import checkpoint_lines, kinds, run_cli, sql, verify
from service.conftest import PATIENT, pima_bundles, start  # noqa: F401


@pytest.fixture
def svc(tmp_path, pima_bundles):  # noqa: F811
    """A service with predictions, a plan-free history and a clean chain, checkpointed by a verification."""
    s = start(tmp_path, pima_bundles, rate_burst=1000)
    for glu in (120, 140, 160):
        r = s.client.post("/v1/models/pima-small/predict", json={"patients": [{**PATIENT, "glu": glu}]},
                          headers=s.auth("clinician"))
        assert r.status_code == 200
    report = verify(s.registry)
    assert report["ok"], report["problems"]
    assert report["checkpoint_seq"] == report["head_seq"]  # a clean verification signs the head
    yield s
    s.client.close()
    s.container.db.dispose()


def _restart(s):
    from precimed.service import ServiceSettings, create_app

    s.container.db.dispose()
    return create_app(ServiceSettings(registry=s.registry))


def _predict(s) -> dict:
    r = s.client.post("/v1/models/pima-small/predict", json={"patients": [PATIENT]}, headers=s.auth("clinician"))
    assert r.status_code == 200
    return r.json()


# ----- the chain itself ---------------------------------------------------------------------------------------
def test_truncating_the_newest_rows_and_moving_the_head_back_is_caught(svc, capsys, monkeypatch):
    last = sql(svc.db_url, "SELECT max(seq) FROM audit")[0][0]
    keep = last - 3
    new_head = sql(svc.db_url, "SELECT row_hash FROM audit WHERE seq = :s", s=keep)[0][0]
    sql(svc.db_url, "DELETE FROM audit WHERE seq > :s", s=keep)
    sql(svc.db_url, "UPDATE audit_head SET seq = :s, row_hash = :h", s=keep, h=new_head)
    report = verify(svc.registry)
    assert kinds(report) == {"truncated", "result"}  # and the predictions those rows stored lost their audit rows
    assert [p["seq"] for p in report["problems"] if p["kind"] == "truncated"] == [keep + 1]
    code, out, _ = run_cli(["audit", "verify", "--registry", str(svc.registry)], capsys, monkeypatch)
    assert code == 2 and f"truncated: row {keep + 1}:" in out


def test_wiping_every_row_is_caught_and_a_restart_refuses_to_start_a_new_chain(svc, capsys, monkeypatch):
    sql(svc.db_url, "DELETE FROM audit")
    sql(svc.db_url, "UPDATE audit_head SET seq = 0, row_hash = :h", h="0" * 64)
    assert kinds(verify(svc.registry)) == {"wiped", "truncated", "result", "token", "version", "stage"}
    from precimed.service.audit import AuditChainError

    with pytest.raises(AuditChainError, match="audit table is empty: its rows were wiped"):
        _restart(svc)
    assert json.loads(checkpoint_lines(svc.registry)[-1])["type"] == "refusal"
    code, out, err = run_cli(["tokens", "create", "--role", "admin", "--registry", str(svc.registry)], capsys,
                             monkeypatch)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "wiped" in err


def test_a_fresh_chain_written_after_a_wipe_is_caught(svc):
    sql(svc.db_url, "DELETE FROM audit")
    sql(svc.db_url, "UPDATE audit_head SET seq = 0, row_hash = :h", h="0" * 64)
    _predict(svc)  # the running service writes row 1 of a new chain
    report = verify(svc.registry)
    assert "new_chain" in kinds(report) and "truncated" in kinds(report)


def test_a_replaced_first_row_makes_a_restart_refuse(svc):
    from precimed.service.audit import AuditChainError

    sql(svc.db_url, "UPDATE audit SET row_hash = :h WHERE seq = 1", h="f" * 64)  # another chain's first row
    with pytest.raises(AuditChainError, match="is not that chain's first row"):
        _restart(svc)


def test_a_row_rewritten_and_rehashed_without_the_key_is_caught(svc):
    from precimed.service.audit import legacy_row_hash
    from precimed.service.db import AuditRow

    rows = svc.container.audit.rows()
    target = next(r for r in rows if r["action"] == "predict")["seq"]
    prev = next(r for r in rows if r["seq"] == target - 1)["row_hash"]
    rehashed = []
    for r in rows:
        if r["seq"] < target:
            continue
        forged = AuditRow(**{**{k: v for k, v in r.items() if k != "row_hash"}, "prev_hash": prev})
        if r["seq"] == target:
            forged.actor = "tok_someone_else"
        forged.row_hash = legacy_row_hash(forged)  # plain SHA-256: the attacker has no key
        sql(svc.db_url, "UPDATE audit SET actor = :a, prev_hash = :p, row_hash = :h WHERE seq = :s",
            a=forged.actor, p=forged.prev_hash, h=forged.row_hash, s=r["seq"])
        prev = forged.row_hash
        rehashed.append(r["seq"])
    sql(svc.db_url, "UPDATE audit_head SET row_hash = :h", h=prev)
    report = verify(svc.registry)
    assert kinds(report) == {"altered", "rewritten"}
    assert sorted(p["seq"] for p in report["problems"] if p["kind"] == "altered") == rehashed


# ----- what the chain covers ----------------------------------------------------------------------------------
def test_an_edited_stored_probability_is_caught(svc):
    made = _predict(svc)
    stored = sql(svc.db_url, "SELECT result FROM predictions WHERE id = :i", i=made["id"])[0][0]
    doc = json.loads(stored)
    row = doc["predictions"][0]
    field = next(k for k, v in row.items() if isinstance(v, float))
    row[field] = 0.01
    sql(svc.db_url, "UPDATE predictions SET result = :r WHERE id = :i", r=json.dumps(doc), i=made["id"])
    report = verify(svc.registry)
    assert kinds(report) == {"result"}
    assert made["id"] in report["problems"][0]["message"] and "edited" in report["problems"][0]["message"]


def test_a_prediction_inserted_by_sql_is_caught(svc):
    sql(svc.db_url, "INSERT INTO predictions (id, created_at, actor, kind, model, version, bundle_ref, input_digest, "
                    "result) VALUES ('forged1', '2026-01-01', 'tok_x', 'predict', 'pima-small', 1, 'x', :d, '{}')",
        d="0" * 64)
    report = verify(svc.registry)
    assert kinds(report) == {"result"} and "forged1" in report["problems"][0]["message"]


def test_a_stage_set_by_sql_is_caught(svc, pima_bundles):  # noqa: F811
    cli.registry_add(svc.registry, pima_bundles[1])
    ids = sql(svc.db_url, "SELECT v.model_id, v.id FROM model_versions v WHERE v.version = 2")[0]
    sql(svc.db_url, "INSERT INTO stages (model_id, stage, version_id, action, at, actor) VALUES (:m, 'production', "
                    ":v, 'promote', '2026-01-01', 'cli:nobody')", m=ids[0], v=ids[1])
    report = verify(svc.registry)
    assert kinds(report) == {"stage"}
    assert "pima-small production is v2 in the stages table but v1 by the audit trail" in \
        report["problems"][0]["message"]


def test_a_version_inserted_by_sql_is_caught(svc):
    model_id = sql(svc.db_url, "SELECT id FROM models")[0][0]
    sql(svc.db_url, "INSERT INTO model_versions (model_id, version, path, bundle_ref, metadata_sha256, task, "
                    "registered_at, registered_by) VALUES (:m, 9, 'models/x', 'x', :s, 'binary', '2026', 'x')",
        m=model_id, s="f" * 64)
    assert kinds(verify(svc.registry)) == {"version"}


def test_a_token_raised_to_admin_by_sql_is_caught(svc):
    sql(svc.db_url, "UPDATE tokens SET role = 'admin' WHERE id = :i", i=svc.ids["clinician"])
    report = verify(svc.registry)
    assert kinds(report) == {"token"}
    assert svc.ids["clinician"] in report["problems"][0]["message"] and "'clinician'" in \
        report["problems"][0]["message"]


def test_a_token_inserted_or_unrevoked_by_sql_is_caught(svc):
    sql(svc.db_url, "INSERT INTO tokens (id, token_sha256, role, label, created_at) VALUES ('tok_ghost', :h, "
                    "'admin', '', '2026')", h="e" * 64)
    cli.tokens_revoke(svc.registry, svc.ids["data_scientist"])
    sql(svc.db_url, "UPDATE tokens SET revoked_at = NULL WHERE id = :i", i=svc.ids["data_scientist"])
    report = verify(svc.registry)
    assert kinds(report) == {"token"} and len(report["problems"]) == 2
    messages = " | ".join(p["message"] for p in report["problems"])
    assert "tok_ghost (admin) has no audited creation" in messages and "but is active again" in messages


def test_a_token_and_its_audit_row_are_one_transaction(svc, monkeypatch):
    from precimed.service.audit import AuditLog

    before = sql(svc.db_url, "SELECT count(*) FROM tokens")[0][0]

    def broken(self, session, **fields):
        raise RuntimeError("audit write failed")

    monkeypatch.setattr(AuditLog, "record", broken)
    with pytest.raises(RuntimeError):
        svc.container.tokens.create("clinician", actor="tok_admin", actor_role="admin")
    monkeypatch.undo()
    assert sql(svc.db_url, "SELECT count(*) FROM tokens")[0][0] == before
    assert verify(svc.registry)["ok"]


# ----- the checkpoint file and the key --------------------------------------------------------------------------
def test_a_deleted_or_forged_checkpoint_line_is_caught(svc):
    path = svc.registry / "audit-checkpoints.jsonl"
    lines = checkpoint_lines(svc.registry)
    assert len(lines) >= 3
    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    assert kinds(verify(svc.registry)) == {"checkpoint"}
    forged = {**json.loads(lines[-1]), "seq": 10_000, "n": len(lines) + 1}
    path.write_text("\n".join([*lines, json.dumps(forged)]) + "\n")
    report = verify(svc.registry)
    assert kinds(report) == {"checkpoint"} and "does not match its MAC" in report["problems"][0]["message"]


def test_a_deleted_checkpoint_file_is_caught_and_a_restart_refuses(svc):
    from precimed.service.audit import AuditChainError

    (svc.registry / "audit-checkpoints.jsonl").unlink()
    assert kinds(verify(svc.registry)) == {"no_genesis"}
    with pytest.raises(AuditChainError, match="has no genesis record"):
        _restart(svc)


def test_the_mirror_keeps_what_was_deleted_from_the_main_file(tmp_path, pima_bundles, monkeypatch):  # noqa: F811
    mirror = tmp_path / "elsewhere" / "mirror.jsonl"
    monkeypatch.setenv("PRECIMED_AUDIT_CHECKPOINTS_MIRROR", str(mirror))
    s = start(tmp_path, pima_bundles)
    try:
        assert verify(s.registry)["ok"]
        main = s.registry / "audit-checkpoints.jsonl"
        assert mirror.read_text() == main.read_text()
        main.write_text("\n".join(main.read_text().splitlines()[:2]) + "\n")  # the tail removed from the main file
        messages = [p["message"] for p in verify(s.registry)["problems"]]
        assert any("that its mirror mirror.jsonl holds" in m for m in messages)
    finally:
        s.client.close()
        s.container.db.dispose()


def test_without_the_key_verification_says_so_in_one_line(svc, capsys, monkeypatch):
    (svc.registry / "audit.key").rename(svc.registry.parent / "moved.key")
    code, out, err = run_cli(["audit", "verify", "--registry", str(svc.registry)], capsys, monkeypatch)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "audit key file" in err and "cannot be verified without its key" in err


def test_another_key_cannot_continue_the_chain(svc):
    from precimed.service.audit import AuditChainError

    (svc.registry / "audit.key").write_text("ab" * 32 + "\n")
    with pytest.raises(AuditChainError, match="restore the chain's key"):
        _restart(svc)


def test_the_key_file_is_private_and_rows_rehashed_with_a_guessed_key_fail(svc):
    from precimed.service.audit import row_hash
    from precimed.service.db import AuditRow
    from precimed.workflows.privacy import KeyMaterial

    assert (svc.registry / "audit.key").stat().st_mode & 0o777 == 0o600
    row = svc.container.audit.rows()[-1]
    forged = AuditRow(**{**{k: v for k, v in row.items() if k != "row_hash"}, "outcome": "denied"})
    guessed = row_hash(forged, KeyMaterial(b"0" * 32))
    sql(svc.db_url, "UPDATE audit SET outcome = 'denied', row_hash = :h WHERE seq = :s", h=guessed, s=row["seq"])
    sql(svc.db_url, "UPDATE audit_head SET row_hash = :h", h=guessed)
    assert "altered" in kinds(verify(svc.registry))


def test_checkpoints_are_signed_every_n_rows(tmp_path, pima_bundles, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PRECIMED_AUDIT_CHECKPOINT_EVERY", "4")
    s = start(tmp_path, pima_bundles, audit_checkpoint_every=4)
    try:
        before = len(checkpoint_lines(s.registry))
        head = s.container.audit.rows()[-1]["seq"]
        for _ in range(8):
            s.client.get("/v1/tokens", headers=s.auth("clinician"))  # denied: an audit row each
        expected = [seq for seq in range(head + 1, head + 9) if seq % 4 == 0]
        stop = time.monotonic() + 60  # the writer thread signs a due checkpoint just after its commit, not before
        while True:  # the answer: wait for it (a deadline against a hang, never a speed requirement)
            seqs = [json.loads(line).get("seq") for line in checkpoint_lines(s.registry)[before:]]
            if len(seqs) >= len(expected) or time.monotonic() > stop:
                break
            time.sleep(0.01)
        assert seqs == expected
    finally:
        s.client.close()
        s.container.db.dispose()


def test_shutdown_signs_the_head(svc):
    from fastapi.testclient import TestClient

    with TestClient(svc.app) as client:  # runs the app's lifespan: its shutdown signs a checkpoint
        for _ in range(3):
            client.get("/v1/tokens", headers=svc.auth("clinician"))
        head = svc.container.audit.rows()[-1]
    last = json.loads(checkpoint_lines(svc.registry)[-1])
    assert (last["type"], last["seq"], last["head_hash"]) == ("checkpoint", head["seq"], head["row_hash"])


def test_tokens_list_shows_ids_and_roles_never_the_secret(svc, capsys, monkeypatch):
    code, out, _ = run_cli(["tokens", "list", "--registry", str(svc.registry)], capsys, monkeypatch)
    assert code == 0
    for role, token_id in svc.ids.items():
        assert token_id in out and role in out
    hashes = [h for (h,) in sql(svc.db_url, "SELECT token_sha256 FROM tokens")]
    assert not any(secret in out for secret in svc.tokens.values()) and not any(h in out for h in hashes)
    code, _, err = run_cli(["tokens", "revoke", "tok_nobody", "--registry", str(svc.registry)], capsys, monkeypatch)
    assert code == 2 and "`precimed tokens list` shows them" in err
