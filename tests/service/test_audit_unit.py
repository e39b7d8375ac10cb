"""Fast unit tests of precimed.service.audit (no service app): a migrated SQLite file copied per test, a fixed key
and a checkpoint file in tmp_path. Every branch of the chain, its anchors and `verify` is checked with the exact
problem kinds, seqs and messages (finding 13: these are the tests the audit mutation run uses)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import shutil
import sqlite3

import pytest
from sqlalchemy import text

from precimed.privacy import KeyMaterial
from precimed.service.audit import (
    CHAIN_OPEN,
    HASHED,
    KINDS,
    AuditChainError,
    AuditLog,
    Problem,
    Verification,
    digest,
    legacy_row_hash,
    row_content,
    row_hash,
    stored_digests,
    text_digest,
)
from precimed.service.checkpoints import CheckpointStore
from precimed.service.db import (
    GENESIS,
    AuditHead,
    AuditRow,
    Database,
    ModelRow,
    PlanRow,
    PredictionRow,
    StageRow,
    TokenRow,
    VersionRow,
)

KEY = KeyMaterial(b"audit-unit-test-key-0123456789ab", "test")
OTHER = KeyMaterial(b"another-audit-key-0123456789abcd", "other")
FIXED = {"seq": 7, "at": "2026-01-02T03:04:05.000006+00:00", "actor": "tok_ab", "role": "clinician",
         "action": "predict", "model": "pima", "version": 2, "input_digest": "d" * 64, "outcome": "ok",
         "status": 200, "detail": '{"n":1,"é":"ü"}', "prev_hash": "a" * 64}


# ----- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("audit-template") / "t.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.dispose()
    return path


@pytest.fixture
def db(template, tmp_path):
    path = tmp_path / "a.db"
    shutil.copy(template, path)
    d = Database(f"sqlite:///{path}")
    yield d
    d.dispose()


@pytest.fixture
def store(tmp_path):
    return CheckpointStore([tmp_path / "cp.jsonl"])


def sql(db: Database, statement: str, **params) -> list:
    with db.engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result) if result.returns_rows else []


def chain(db, store, n: int = 0, every: int = 100, key: KeyMaterial = KEY) -> AuditLog:
    log = AuditLog(db, key, store, every=every)
    log.open_chain()
    for i in range(n):
        log.append(actor=f"a{i}", role="r", action="note", detail={"i": i})
    return log


def lines(store) -> list[dict]:
    return [json.loads(x) for x in store.paths[0].read_text().splitlines()]


def probs(v: Verification) -> list[tuple]:
    return [(p.kind, p.seq, p.message) for p in v.problems]


def hash_of(db, seq: int) -> str:
    return sql(db, "SELECT row_hash FROM audit WHERE seq = :s", s=seq)[0][0]


def set_head(db, seq: int, h: str | None = None) -> None:
    sql(db, "UPDATE audit_head SET seq = :s, row_hash = :h", s=seq, h=h if h is not None else hash_of(db, seq))


def legacy(db, n: int = 4) -> None:
    """Rows written before the chain was keyed: plain SHA-256 links, no checkpoint file."""
    plain = AuditLog(db, KEY)
    for i in range(n):
        plain.append(actor="cli:old", role="cli", action="note", detail={"i": i})
    with db.transaction() as s:
        prev = GENESIS
        for row in s.query(AuditRow).order_by(AuditRow.seq):
            row.prev_hash = prev
            row.row_hash = prev = legacy_row_hash(row)
        s.get(AuditHead, 1).row_hash = prev


# ----- hashing --------------------------------------------------------------------------------------------------
def test_digests_and_row_hashes_have_known_answers():
    assert digest(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert digest({"b": 1, "a": "é"}) == digest(b'{"a":"\xc3\xa9","b":1}')
    assert text_digest("abc") == digest(b"abc")
    row = AuditRow(**FIXED, row_hash="ignored")
    assert row_content(row) == FIXED and tuple(row_content(row)) == HASHED
    assert row_hash(row, KEY) == "ce1e701db0b47fe3e3b1635117855b3ea5b57701ca73e095f8fded35aa8e8b90"
    assert legacy_row_hash(row) == "31b002197cfcc6b12a41737fb26adb0698494c9403997260d68160f755bf2c2d"
    body = json.dumps(FIXED, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert row_hash(row, KEY) == hmac.new(b"audit-unit-test-key-0123456789ab", b"precimed/audit/row/v1\x00" + body,
                                          hashlib.sha256).hexdigest()
    assert legacy_row_hash(row) == hashlib.sha256(json.dumps(FIXED, sort_keys=True, separators=(",", ":"))
                                                  .encode()).hexdigest()
    assert row_hash(row, OTHER) != row_hash(row, KEY)
    assert len(KINDS) == 14 and "token" in KINDS


def test_stored_digests_lists_predictions_and_plans_only():
    pred = PredictionRow(id="pr1", result='{"p":0.5}')
    plan = PlanRow(id="pl1", plan="plan text")
    assert stored_digests([pred, TokenRow(id="t"), plan]) == [
        ["predictions", "pr1", text_digest('{"p":0.5}')], ["plans", "pl1", text_digest("plan text")]]
    assert stored_digests([]) == []


def test_problem_and_verification_as_dicts():
    p = Problem(3, "altered", "m")
    assert p.to_dict() == {"seq": 3, "kind": "altered", "message": "m"}
    v = Verification(2, 2, "h")
    assert v.ok and v.problems == [] and v.checkpoint_seq is None and v.key_id is None
    assert v.to_dict() == {"ok": True, "rows": 2, "head_seq": 2, "head_hash": "h", "checkpoint_seq": None,
                           "key_id": None, "problems": []}
    v2 = Verification(1, 1, "h", [p], 5, "k")
    assert not v2.ok and v2.to_dict()["problems"] == [p.to_dict()] and v2.to_dict()["checkpoint_seq"] == 5
    assert v2.to_dict()["key_id"] == "k" and v2.to_dict()["ok"] is False


# ----- appending ------------------------------------------------------------------------------------------------
def test_record_fields_truncation_and_links(db):
    log = AuditLog(db, KEY)
    assert log.key_id == KEY.fingerprint and log.every == 100 and log.legacy_seq == 0 and log.chain_id is None
    assert log._anchor is None and log.checkpoints is None
    first = log.append(actor="x" * 70, role="y" * 40, action="z" * 70, outcome="o" * 40, status="201")
    assert (first.actor, first.role, first.action, first.outcome) == ("x" * 64, "y" * 32, "z" * 64, "o" * 32)
    assert first.status == 201 and isinstance(first.status, int)
    assert first.seq == 1 and first.prev_hash == GENESIS and first.detail == "{}"
    assert first.model is None and first.version is None and first.input_digest is None
    assert first.row_hash == row_hash(first, KEY) == log.expected_hash(first)
    second = log.append(actor="a", role="b", action="c", model="m", version=3, input_digest="i",
                        detail={"z": 1, "a": [1, 2]})
    assert (second.outcome, second.status) == ("ok", 200)
    assert second.seq == 2 and second.prev_hash == first.row_hash and second.detail == '{"a":[1,2],"z":1}'
    assert (second.model, second.version, second.input_digest) == ("m", 3, "i")
    assert sql(db, "SELECT seq, row_hash FROM audit_head") == [(2, second.row_hash)]
    stored = sql(db, "SELECT actor, role, action, outcome, status, row_hash FROM audit WHERE seq = 1")
    assert stored == [("x" * 64, "y" * 32, "z" * 64, "o" * 32, 201, first.row_hash)]
    assert log.verify().ok  # no checkpoint store: nothing else to check


def test_record_inside_a_transaction_rolls_back_with_it(db):
    log = AuditLog(db, KEY)
    with pytest.raises(RuntimeError), db.transaction() as s:
        log.record(s, actor="a", role="b", action="c")
        raise RuntimeError
    assert log.rows() == [] and sql(db, "SELECT seq, row_hash FROM audit_head") == [(0, GENESIS)]


def test_rows_pages_in_order_with_every_field(db):
    log = AuditLog(db, KEY)
    made = [log.append(actor=f"a{i}", role="r", action="note") for i in range(5)]
    rows = log.rows()
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) == {*HASHED, "row_hash"} and rows[0]["row_hash"] == made[0].row_hash
    assert rows[2]["actor"] == "a2" and rows[2]["prev_hash"] == made[1].row_hash
    assert [r["seq"] for r in log.rows(after=2)] == [3, 4, 5]
    assert [r["seq"] for r in log.rows(after=1, limit=2)] == [2, 3]
    assert [r["seq"] for r in log.rows(limit=1)] == [1]
    assert log.rows(after=5) == []
    assert len(log.rows(limit=1000)) == 5


def test_checkpoints_follow_the_cadence_once_per_transaction(db, store):
    log = chain(db, store, n=7, every=3)  # opener is seq 1; rows 2..8
    cps = [r for r in lines(store) if r["type"] == "checkpoint"]
    assert [(c["seq"], c["head_hash"]) for c in cps] == [(3, hash_of(db, 3)), (6, hash_of(db, 6))]
    assert all(c["chain_id"] == log.chain_id for c in cps)
    with db.transaction() as s:  # rows 9, 10, 11, 12 in one transaction: one checkpoint after the commit
        for _ in range(4):
            log.record(s, actor="b", role="r", action="note")
        assert s.info.get("audit_checkpoint") is True
    cps = [r for r in lines(store) if r["type"] == "checkpoint"]
    assert [c["seq"] for c in cps] == [3, 6, 12]
    assert log.verify().ok


def test_no_checkpoint_without_a_store(db):
    log = AuditLog(db, KEY, every=1)
    log.append(actor="a", role="r", action="n")
    assert log.checkpoint() is None
    log.open_chain()  # no store: nothing to open
    assert log.chain_id is None


def test_a_failed_checkpoint_is_logged_and_the_row_kept(db, store, monkeypatch, caplog):
    log = chain(db, store, every=2)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(store, "append", broken)
    with caplog.at_level(logging.ERROR, logger="precimed.service.audit"):
        row = log.append(actor="a", role="r", action="n")
    assert row.seq == 2 and len(log.rows()) == 2
    assert "audit: checkpoint failed: OSError" in caplog.messages


# ----- opening the chain ----------------------------------------------------------------------------------------
def test_a_fresh_chain_is_begun_with_its_genesis(db, store):
    log = chain(db, store)
    rows = log.rows()
    assert len(rows) == 1
    opener = rows[0]
    assert (opener["actor"], opener["role"], opener["action"]) == ("precimed", "system", CHAIN_OPEN)
    assert json.loads(opener["detail"]) == {"chain_id": log.chain_id, "key_id": KEY.fingerprint, "legacy_seq": 0}
    [genesis] = lines(store)
    assert genesis["type"] == "genesis" and genesis["chain_id"] == log.chain_id and len(log.chain_id) == 32
    assert (genesis["key_id"], genesis["first_seq"], genesis["first_hash"], genesis["legacy_seq"]) == (
        KEY.fingerprint, 1, opener["row_hash"], 0)
    assert log.legacy_seq == 0 and log._anchor == (1, opener["row_hash"])
    again = chain(db, store)  # a restart continues it
    assert again.chain_id == log.chain_id and again.legacy_seq == 0 and len(lines(store)) == 1
    v = again.verify()
    assert v.ok and v.rows == 1 and v.head_seq == 1 and v.head_hash == opener["row_hash"]
    assert v.key_id == KEY.fingerprint and v.checkpoint_seq is None


def test_a_database_from_before_the_key_is_adopted(db, store, caplog):
    legacy(db, 4)
    with caplog.at_level(logging.WARNING, logger="precimed.service.audit"):
        log = chain(db, store)
    assert "audit: adopted 4 rows written before the chain was keyed" in caplog.messages
    genesis, cp = lines(store)
    assert (cp["type"], cp["seq"], cp["head_hash"]) == ("checkpoint", 5, hash_of(db, 5))
    assert (genesis["first_seq"], genesis["first_hash"], genesis["legacy_seq"]) == (1, hash_of(db, 1), 4)
    assert log.legacy_seq == 4
    opener = log.rows()[-1]
    assert opener["seq"] == 5 and json.loads(opener["detail"])["legacy_seq"] == 4
    fresh = AuditLog(db, KEY, store)
    v = fresh.verify()
    assert v.ok and v.rows == 5 and fresh.legacy_seq == 4 and fresh.chain_id == log.chain_id
    assert fresh.expected_hash(AuditRow(**{**FIXED, "seq": 4})) == legacy_row_hash(AuditRow(**{**FIXED, "seq": 4}))
    assert fresh.expected_hash(AuditRow(**{**FIXED, "seq": 5})) == row_hash(AuditRow(**{**FIXED, "seq": 5}), KEY)
    # adopted chains do not report stored results without an audit row (old databases did not record them)
    with db.transaction() as s:
        s.add(PredictionRow(id="old", created_at="t", actor="a", kind="predict", model="m", version=1,
                            bundle_ref="b", input_digest="d", result="{}"))
    assert fresh.verify().ok
    sql(db, "UPDATE audit SET actor = 'cli:someone' WHERE seq = 2")
    assert probs(AuditLog(db, KEY, store).verify()) == [
        ("altered", 2, "row 2 (note by cli:someone) does not match its keyed hash: its content was altered, or it "
                       "was re-hashed or written without the audit key")]


def test_an_interrupted_start_is_finished_from_its_chain_open_row(db, store):
    legacy(db, 2)
    plain = AuditLog(db, KEY)
    plain.append(actor="precimed", role="system", action=CHAIN_OPEN,
                 detail={"chain_id": "c0ffee", "key_id": KEY.fingerprint, "legacy_seq": 2})
    log = chain(db, store)
    genesis, cp = lines(store)
    assert (genesis["chain_id"], genesis["first_seq"], genesis["first_hash"], genesis["legacy_seq"]) == (
        "c0ffee", 1, hash_of(db, 1), 2)
    assert (cp["chain_id"], cp["seq"]) == ("c0ffee", 3)
    assert log.chain_id == "c0ffee" and log.legacy_seq == 2 and len(log.rows()) == 3
    assert AuditLog(db, KEY, store).verify().ok


def test_an_interrupted_start_without_legacy_rows(db, store):
    AuditLog(db, KEY).append(actor="precimed", role="system", action=CHAIN_OPEN, detail={"chain_id": "beef"})
    log = chain(db, store)
    [genesis] = lines(store)
    assert (genesis["chain_id"], genesis["first_seq"], genesis["legacy_seq"]) == ("beef", 1, 0)
    assert log.legacy_seq == 0 and len(log.rows()) == 1


def test_keyed_rows_without_a_genesis_are_refused(db, store):
    AuditLog(db, KEY).append(actor="a", role="r", action="note")
    AuditLog(db, KEY).append(actor="a", role="r", action="note")
    with pytest.raises(AuditChainError) as err:
        chain(db, store)
    message = (f"the audit table holds keyed rows (up to seq 2) but the checkpoint file {store.paths[0]} has no "
               "genesis record: it was deleted or replaced; restore it (or its mirror)")
    assert str(err.value) == message
    [refusal] = lines(store)
    assert refusal["type"] == "refusal" and refusal["reason"] == message and refusal["at"]
    assert len(AuditLog(db, KEY).rows()) == 2  # no opener written


def test_a_chain_open_row_before_legacy_looking_rows_is_refused(db, store):
    AuditLog(db, KEY).append(actor="precimed", role="system", action=CHAIN_OPEN, detail={"chain_id": "x"})
    AuditLog(db, KEY).append(actor="a", role="r", action="note")
    with db.transaction() as s:  # the last row carries a plain hash: only the earlier chain-open row betrays it
        row = s.get(AuditRow, 2)
        row.row_hash = legacy_row_hash(row)
    with pytest.raises(AuditChainError, match=r"keyed rows \(up to seq 2\)"):
        chain(db, store)


def test_a_chain_open_row_under_another_key_is_not_continued(db, store):
    AuditLog(db, OTHER).append(actor="precimed", role="system", action=CHAIN_OPEN, detail={"chain_id": "x"})
    with pytest.raises(AuditChainError, match=r"keyed rows \(up to seq 1\)"):
        chain(db, store)


def test_a_chain_begun_under_another_key_is_refused_without_a_record(db, store):
    chain(db, store, key=OTHER)
    before = store.paths[0].read_text()
    with pytest.raises(AuditChainError) as err:
        chain(db, store)
    assert str(err.value) == (f"the audit chain was begun under audit key {OTHER.fingerprint}, but the key file "
                              f"holds key {KEY.fingerprint}: restore the chain's key")
    assert store.paths[0].read_text() == before


def test_a_genesis_naming_another_key_is_refused(db, store):
    store.append(KEY, "genesis", {"chain_id": "abcdef0123", "at": "T0", "key_id": "deadbeef", "first_seq": 1,
                                  "first_hash": "h", "legacy_seq": 0})
    with pytest.raises(AuditChainError) as err:
        chain(db, store)
    assert str(err.value) == (f"the audit chain abcdef01… began at T0 under audit key deadbeef, but the key file "
                              f"holds key {KEY.fingerprint}: restore the chain's key")
    assert len(lines(store)) == 1


def test_a_wiped_table_is_refused_and_the_refusal_recorded(db, store):
    log = chain(db, store)
    genesis = lines(store)[0]
    sql(db, "DELETE FROM audit")
    with pytest.raises(AuditChainError) as err:
        chain(db, store)
    message = (f"the audit chain {log.chain_id[:8]}… began at {genesis['at']}, but the audit table is empty: its "
               "rows were wiped; refusing to start a new chain (restore the database from a backup)")
    assert str(err.value) == message
    assert lines(store)[-1]["type"] == "refusal" and lines(store)[-1]["reason"] == message


def test_a_replaced_first_row_is_refused(db, store):
    log = chain(db, store)
    sql(db, "UPDATE audit SET row_hash = :h WHERE seq = 1", h="f" * 64)
    with pytest.raises(AuditChainError) as err:
        chain(db, store)
    genesis = lines(store)[0]
    assert str(err.value) == (f"the audit chain {log.chain_id[:8]}… began at {genesis['at']}, but the audit table's "
                              "first row (seq 1) is not that chain's first row: refusing to continue a replaced "
                              "chain (restore the database from a backup)")
    sql(db, "UPDATE audit SET row_hash = :h, seq = 2 WHERE seq = 1", h=genesis["first_hash"])
    with pytest.raises(AuditChainError, match=r"first row \(seq 2\)"):
        chain(db, store)


def test_a_refusal_that_cannot_be_recorded_is_logged(db, store, monkeypatch, caplog):
    chain(db, store)
    sql(db, "DELETE FROM audit")

    def broken(*a, **k):
        raise OSError

    monkeypatch.setattr(store, "append", broken)
    with caplog.at_level(logging.ERROR, logger="precimed.service.audit"), pytest.raises(AuditChainError):
        chain(db, store)
    assert "audit: could not record the refusal: OSError" in caplog.messages


def test_adopt_reads_the_genesis(db):
    from precimed.service.checkpoints import Contents

    log = AuditLog(db, KEY)
    log.adopt(Contents())
    assert (log.chain_id, log.legacy_seq) == (None, 0)
    log.adopt(Contents(genesis={"chain_id": "c", "legacy_seq": 3}))
    assert (log.chain_id, log.legacy_seq) == ("c", 3)
    log.adopt(Contents(genesis={"chain_id": "d", "legacy_seq": None}))
    assert (log.chain_id, log.legacy_seq) == ("d", 0)


# ----- checkpoints ----------------------------------------------------------------------------------------------
def test_checkpoint_signs_a_new_head_only(db, store):
    log = chain(db, store, n=2)
    assert log.checkpoint()["seq"] == 3
    assert log.checkpoint() is None  # nothing new
    log.append(actor="a", role="r", action="n")
    record = log.checkpoint()
    assert (record["type"], record["seq"], record["head_hash"], record["chain_id"]) == (
        "checkpoint", 4, hash_of(db, 4), log.chain_id)
    assert log._anchor == (4, hash_of(db, 4))


def test_checkpoint_from_a_restarted_process_starts_at_the_last_checkpoint(db, store):
    chain(db, store, n=3).checkpoint()  # checkpoint at 4
    store.append(KEY, "refusal", {"at": "t", "reason": "r"})  # the file's last record is not a checkpoint
    sql(db, "UPDATE audit SET actor = 'x' WHERE seq = 3")  # before the checkpoint: not re-checked
    log = chain(db, store)
    assert log._anchor == (4, hash_of(db, 4))
    log.append(actor="a", role="r", action="n")
    assert log.checkpoint()["seq"] == 5


def test_checkpoint_without_any_anchor_signs_nothing(db, store):
    log = AuditLog(db, KEY, store)
    log.append(actor="a", role="r", action="n")
    log.chain_id = "c"
    assert log.checkpoint() is None and not store.paths[0].exists()


def test_checkpoint_of_a_restarted_process_starts_at_the_genesis(db, store):
    chain(db, store)
    log = chain(db, store)
    log.append(actor="a", role="r", action="n")
    assert log._last_anchor() == (1, hash_of(db, 1))
    assert log.checkpoint()["seq"] == 2


def test_checkpoint_takes_a_later_head_signed_by_another_process(db, store):
    a = chain(db, store)
    b = chain(db, store)
    b.append(actor="b", role="r", action="n")
    assert b.checkpoint()["seq"] == 2  # b's anchor: 2
    a.append(actor="a", role="r", action="n")
    a.append(actor="a", role="r", action="n")
    assert a.checkpoint()["seq"] == 4  # a re-checks from its own anchor (1) and signs 4
    sql(db, "UPDATE audit SET actor = 'x' WHERE seq = 3")  # behind the newer checkpoint
    b.append(actor="b", role="r", action="n")
    assert b.checkpoint()["seq"] == 5  # from the newer checkpoint (4), not its own anchor (2)


def test_checkpoint_of_another_chain_is_not_taken(db, store):
    a = chain(db, store, n=2)
    a.checkpoint()  # 3
    store.append(KEY, "checkpoint", {"chain_id": "other", "seq": 2, "head_hash": hash_of(db, 2), "at": "t"})
    a._anchor = (1, hash_of(db, 1))
    a.append(actor="a", role="r", action="n")
    a.chain_id = "mine"
    store.append(KEY, "checkpoint", {"chain_id": "elsewhere", "seq": 4, "head_hash": "f" * 64, "at": "t"})
    assert a.checkpoint()["seq"] == 4  # the foreign checkpoint at 4 was ignored; rows 1..4 re-checked


@pytest.mark.parametrize("tamper, logged", [
    ("UPDATE audit SET row_hash = 'f' WHERE seq = 3", "audit: the row at checkpoint seq 3 is gone or changed; not "
                                                     "signing a new checkpoint"),
    ("DELETE FROM audit WHERE seq = 3", "audit: the row at checkpoint seq 3 is gone or changed; not signing a new "
                                        "checkpoint"),
    ("DELETE FROM audit WHERE seq >= 3", "audit: the row at checkpoint seq 3 is gone or changed; not signing a new "
                                         "checkpoint"),
    ("DELETE FROM audit WHERE seq = 5", "audit: row 6 does not verify; not signing a new checkpoint"),
    ("UPDATE audit SET prev_hash = 'f' WHERE seq = 5", "audit: row 5 does not verify; not signing a new checkpoint"),
    ("UPDATE audit SET actor = 'x' WHERE seq = 5", "audit: row 5 does not verify; not signing a new checkpoint"),
])
def test_a_tampered_tail_is_never_signed(db, store, caplog, tamper, logged):
    log = chain(db, store, n=2)
    assert log.checkpoint()["seq"] == 3
    anchor = (3, hash_of(db, 3))
    for _ in range(3):
        log.append(actor="a", role="r", action="n")
    sql(db, tamper)
    with caplog.at_level(logging.ERROR, logger="precimed.service.audit"):
        assert log.checkpoint() is None
    assert caplog.messages == [logged]
    assert log._anchor == anchor and lines(store)[-1]["seq"] == 3


def test_the_tail_check_accepts_legacy_rows(db, store):
    legacy(db, 3)
    log = chain(db, store)
    assert log._check_tail(1, hash_of(db, 1)) == (4, hash_of(db, 4))
    assert log._check_tail(2, hash_of(db, 2)) == (4, hash_of(db, 4))
    assert log._check_tail(2, hash_of(db, 1)) is None
    assert log._check_tail(9, "x") is None


# ----- verify: the chain ------------------------------------------------------------------------------------------
def test_a_clean_verification_signs_the_head(db, store):
    log = chain(db, store, n=3)
    v = log.verify()
    assert v.ok and v.rows == 4 and v.head_seq == 4 and v.head_hash == hash_of(db, 4) and v.checkpoint_seq == 4
    assert lines(store)[-1]["seq"] == 4
    v = log.verify()  # nothing new to sign: the last checkpoint is reported
    assert v.ok and v.checkpoint_seq == 4 and len(lines(store)) == 2
    bad = AuditLog(db, KEY, store)
    sql(db, "UPDATE audit SET actor = 'x' WHERE seq = 2")
    v = bad.verify()
    assert not v.ok and v.checkpoint_seq == 4 and len(lines(store)) == 2


def test_verify_an_altered_row(db, store):
    log = chain(db, store, n=3)
    sql(db, "UPDATE audit SET actor = 'evil', action = 'promote' WHERE seq = 3")
    assert probs(log.verify()) == [
        ("altered", 3, "row 3 (promote by evil) does not match its keyed hash: its content was altered, or it was "
                       "re-hashed or written without the audit key")]


def test_verify_a_row_rehashed_with_the_key_breaks_the_next_link(db, store):
    log = chain(db, store, n=3)
    with db.transaction() as s:
        row = s.get(AuditRow, 2)
        row.actor = "someone"
        row.row_hash = row_hash(row, KEY)
    assert probs(log.verify()) == [
        ("altered", 3, "row 3 does not link to the row before it: that row was altered and re-hashed, or inserted")]


@pytest.mark.parametrize("deleted, message", [
    ("seq = 3", "row 3 missing: deleted"),
    ("seq IN (2, 3, 4)", "rows 2–4 missing: deleted"),
])
def test_verify_deleted_rows_in_the_middle(db, store, deleted, message):
    log = chain(db, store, n=4)
    sql(db, f"DELETE FROM audit WHERE {deleted}")
    seq = 3 if "=" in deleted else 2
    assert probs(log.verify()) == [("deleted", seq, message)]


def test_verify_rows_deleted_from_the_end(db, store):
    log = chain(db, store, n=4)
    sql(db, "DELETE FROM audit WHERE seq > 3")
    assert probs(log.verify()) == [
        ("deleted", 4, "the head records row 5 but the table ends at row 3: row(s) deleted from the end")]


def test_verify_rows_beyond_the_head(db, store):
    log = chain(db, store, n=4)
    set_head(db, 2)
    assert probs(log.verify()) == [
        ("inserted", 3, "the table holds rows up to 5 beyond the head (2): row(s) appended outside the audit log")]


def test_verify_a_head_with_another_hash(db, store):
    log = chain(db, store, n=2)
    set_head(db, 3, "e" * 64)
    v = log.verify()
    assert probs(v) == [("altered", 3, "the last row 3 does not match the head's hash")]
    assert (v.head_seq, v.head_hash) == (3, "e" * 64)


def test_verify_a_missing_head(db, store):
    log = chain(db, store, n=2)
    sql(db, "DELETE FROM audit_head")
    v = log.verify()
    assert probs(v) == [("head", None, "the audit head row is missing")]
    assert (v.head_seq, v.head_hash, v.rows) == (0, GENESIS, 3)


def test_verify_a_row_inserted_before_the_first(db, store):
    log = chain(db, store, n=1)
    with db.transaction() as s:
        s.add(AuditRow(**{**FIXED, "seq": -1, "prev_hash": GENESIS}, row_hash="1" * 64))
        s.add(AuditRow(**{**FIXED, "seq": 0, "prev_hash": "1" * 64}, row_hash="0" * 64))
    altered = ("does not match its keyed hash: its content was altered, or it was re-hashed or written without the "
               "audit key")
    # the genuine rows 1 and 2 are not blamed: they still follow and link as before
    assert probs(log.verify()) == [
        ("inserted", -1, "row -1 is out of sequence (expected 1 or later): a row was inserted"),
        ("altered", -1, f"row -1 (predict by tok_ab) {altered}"),
        ("inserted", 0, "row 0 is out of sequence (expected 1 or later): a row was inserted"),
        ("altered", 0, f"row 0 (predict by tok_ab) {altered}"),
        ("altered", 0, "row 0 does not link to the row before it: that row was altered and re-hashed, or inserted"),
        ("new_chain", -1, "the audit table's first row is not the first row of the chain the genesis record "
                          "describes: a new chain was started over it")]


def test_verify_truncation_behind_a_checkpoint(db, store):
    log = chain(db, store, n=5)
    assert log.verify().checkpoint_seq == 6
    cp = lines(store)[-1]
    sql(db, "DELETE FROM audit WHERE seq > 4")
    set_head(db, 4)
    assert probs(log.verify()) == [
        ("truncated", 5, f"checkpoint of {cp['at']} records row 6, but the table ends at row 4: the newest rows were "
                         "deleted")]


def test_verify_a_checkpointed_row_deleted_from_the_middle(db, store):
    log = chain(db, store, n=3)
    assert log.verify().checkpoint_seq == 4
    log.append(actor="a", role="r", action="n")
    log.append(actor="a", role="r", action="n")
    sql(db, "DELETE FROM audit WHERE seq = 4")
    assert probs(log.verify()) == [("deleted", 4, "row 4 missing: deleted"),
                                   ("deleted", 4, "checkpoint row 4 is missing from the table")]


def test_verify_a_rewritten_checkpointed_row(db, store):
    log = chain(db, store, n=3)
    log.verify()
    cp = lines(store)[-1]
    sql(db, "UPDATE audit SET row_hash = :h WHERE seq = 4", h="c" * 64)
    set_head(db, 4)
    assert probs(log.verify()) == [
        ("altered", 4, "row 4 (note by a2) does not match its keyed hash: its content was altered, or it was "
                       "re-hashed or written without the audit key"),
        ("rewritten", 4, f"row 4 does not carry the hash its checkpoint of {cp['at']} signed: the chain was "
                         "rewritten")]


def test_verify_checks_every_checkpoint_in_seq_order(db, store):
    log = chain(db, store, n=2)
    log.verify()  # checkpoint 3
    log.append(actor="a", role="r", action="n")
    log.verify()  # checkpoint 4
    sql(db, "UPDATE audit SET row_hash = :h WHERE seq = 3", h="c" * 64)
    sql(db, "UPDATE audit SET row_hash = :h WHERE seq = 4", h="d" * 64)
    set_head(db, 4)
    assert [(k, s) for k, s, _ in probs(log.verify())] == [
        ("altered", 3), ("altered", 4), ("altered", 4), ("rewritten", 3), ("rewritten", 4)]


def test_verify_a_wiped_table(db, store):
    log = chain(db, store)
    genesis = lines(store)[0]
    sql(db, "DELETE FROM audit")
    set_head(db, 0, GENESIS)
    v = log.verify()
    assert probs(v) == [("wiped", None, f"the chain began at {genesis['at']} but the audit table is empty: every "
                                        "row was deleted")]
    assert v.rows == 0


def test_verify_a_new_chain_over_an_old_one(db, store):
    log = chain(db, store, n=1)
    sql(db, "DELETE FROM audit")
    sql(db, "DELETE FROM audit_head")
    AuditLog(db, KEY).append(actor="a", role="r", action="n")
    assert probs(log.verify()) == [
        ("new_chain", 1, "the audit table's first row is not the first row of the chain the genesis record "
                         "describes: a new chain was started over it")]


def test_verify_a_first_row_moved_to_another_seq(db, store):
    log = chain(db, store)
    sql(db, "UPDATE audit SET seq = 2")
    set_head(db, 2)
    kinds = [(k, s) for k, s, _ in probs(log.verify())]
    assert ("new_chain", 2) in kinds and ("deleted", 1) in kinds


def test_verify_a_second_genesis(db, store):
    log = chain(db, store)
    store.append(KEY, "genesis", {"chain_id": "second", "at": "T2", "key_id": KEY.fingerprint, "first_seq": 1,
                                  "first_hash": "x", "legacy_seq": 0})
    assert probs(log.verify()) == [
        ("new_chain", None, "a second genesis record (T2): a new chain was started where one existed")]


def test_verify_an_edited_checkpoint_file(db, store):
    log = chain(db, store)
    with store.paths[0].open("a") as f:
        f.write("not json\n")
    assert probs(log.verify()) == [("checkpoint", None, "cp.jsonl line 2 is not a JSON record: the file was edited")]


def test_verify_without_the_checkpoint_file(db, store):
    log = chain(db, store, n=1)
    store.paths[0].unlink()
    assert probs(log.verify()) == [
        ("no_genesis", None, "the audit table holds rows but no checkpoint file has a genesis record: the checkpoint "
                             "file was deleted or replaced")]
    sql(db, "DELETE FROM audit")
    set_head(db, 0, GENESIS)
    assert log.verify().ok  # an empty table and no file: a fresh registry


def test_verify_with_another_key(db, store):
    chain(db, store, n=1)
    log = AuditLog(db, OTHER, store)
    v = log.verify()
    assert v.key_id == OTHER.fingerprint and not v.ok
    assert ("checkpoint", None, f"the chain was begun under audit key {KEY.fingerprint} but this key is "
                                f"{OTHER.fingerprint}: verify with the chain's key") in probs(v)
    assert [s for k, s, _ in probs(v) if k == "altered"] == [1, 2]
    assert "no_genesis" not in {k for k, _, _ in probs(v)}


def test_verify_a_genesis_naming_another_key(db, store):
    AuditLog(db, KEY).append(actor="a", role="r", action="n")
    store.append(KEY, "genesis", {"chain_id": "c", "at": "T0", "key_id": "deadbeef", "first_seq": 1,
                                  "first_hash": hash_of(db, 1), "legacy_seq": 0})
    log = AuditLog(db, KEY, store)
    assert probs(log.verify()) == [
        ("checkpoint", None, f"the chain was begun under audit key deadbeef but this key is {KEY.fingerprint}")]


def test_verify_anchors_given_by_hand(db, store):
    log = chain(db, store, n=3)
    h2, h3 = hash_of(db, 2), hash_of(db, 3)
    assert log.verify(anchors=[(2, h2), ("3", h3)]).ok
    v = log.verify(anchors=[("2", "b" * 64), (9, "c" * 64)])
    assert probs(v) == [("altered", 2, f"anchor: row 2 should have hash {'b' * 12}…, found {h2[:12]}"),
                        ("deleted", 9, f"anchor: row 9 should have hash {'c' * 12}…, found no row")]


def test_verify_without_a_store_checks_the_chain_only(db):
    log = AuditLog(db, KEY)
    log.append(actor="a", role="r", action="n")
    v = log.verify(anchors=[(1, hash_of(db, 1))])
    assert v.ok and v.checkpoint_seq is None and v.rows == 1


# ----- verify: what the rows say was done ---------------------------------------------------------------------------
@pytest.fixture
def seeded(db, store):
    """A chain recording two versions, promote/promote/rollback, two tokens (one revoked), a prediction, a plan."""
    log = chain(db, store)
    seqs = {}
    with db.transaction() as s:
        m = ModelRow(name="m", created_at="t")
        s.add(m)
        s.flush()
        versions = {}
        for n, sha in ((1, "a" * 64), (2, "b" * 64)):
            v = VersionRow(model_id=m.id, version=n, path="p", bundle_ref=f"b{n}", metadata_sha256=sha,
                           task="binary", registered_at="t", registered_by="x")
            s.add(v)
            s.flush()
            versions[n] = v.id
            seqs[f"v{n}"] = log.record(s, actor="x", role="admin", action="register", model="m", version=n,
                                       input_digest=sha).seq
        for action, n in (("promote", 1), ("promote", 2), ("rollback", 2)):
            s.add(StageRow(model_id=m.id, stage="production", version_id=versions[n], action=action, at="t",
                           actor="x"))
            log.record(s, actor="x", role="admin", action=f"{action}:production", model="m", version=n)
        for tid, role, revoked in (("tok1", "clinician", None), ("tok2", "admin", "t")):
            s.add(TokenRow(id=tid, token_sha256=tid * 16, role=role, label="l", created_at="t", revoked_at=revoked))
            seqs[tid] = log.record(s, actor="x", role="admin", action="token_create",
                                   detail={"token_id": tid, "role": role, "token_sha256": tid * 16}).seq
        seqs["revoke"] = log.record(s, actor="x", role="admin", action="token_revoke",
                                    detail={"token_id": "tok2"}).seq
        pred = PredictionRow(id="pr1", created_at="t", actor="a", kind="predict", model="m", version=1,
                             bundle_ref="b1", input_digest="d", result='{"p":0.5}')
        plan = PlanRow(id="pl1", created_at="t", actor="a", input_digest="d", plan="the plan")
        s.add_all([pred, plan])
        seqs["pred"] = log.record(s, actor="a", role="clinician", action="predict",
                                  detail={"stored": stored_digests([pred])}).seq
        seqs["plan"] = log.record(s, actor="a", role="clinician", action="plan",
                                  detail={"stored": stored_digests([plan])}).seq
    assert log.verify().ok
    return log, seqs


def test_verify_an_edited_prediction_and_plan(db, seeded):
    log, seqs = seeded
    sql(db, "UPDATE predictions SET result = :r", r='{"p":0.9}')
    sql(db, "UPDATE plans SET plan = 'another'")
    assert probs(log.verify()) == [
        ("result", seqs["pred"], f"stored prediction pr1 differs from the result audit row {seqs['pred']} recorded: "
                                 "it was edited"),
        ("result", seqs["plan"], f"stored plan pl1 differs from the result audit row {seqs['plan']} recorded: it "
                                 "was edited")]


def test_verify_results_without_an_audit_row(db, seeded):
    log, _ = seeded
    sql(db, "INSERT INTO predictions VALUES ('pr2', 't', 'a', 'predict', 'm', 1, 'b', 'd', '{}')")
    sql(db, "INSERT INTO plans (id, created_at, actor, input_digest, plan) VALUES ('pl2', 't', 'a', 'd', 'x')")
    assert probs(log.verify()) == [
        ("result", None, "stored prediction pr2 has no audit row: it was inserted outside the service"),
        ("result", None, "stored plan pl2 has no audit row: it was inserted outside the service")]


def test_only_ok_rows_and_well_formed_stored_entries_count(db, store):
    log = chain(db, store)
    with db.transaction() as s:
        for rid in ("r1", "r2", "r3", "r4", "r5"):
            s.add(PredictionRow(id=rid, created_at="t", actor="a", kind="predict", model="m", version=1,
                                bundle_ref="b", input_digest="d", result="{}"))
    good = text_digest("{}")
    log.append(actor="a", role="r", action="predict", outcome="rejected", detail={"stored": [["predictions", "r1",
                                                                                              good]]})
    log.append(actor="a", role="r", action="predict", detail={"stored": [["predictions", "r2"], "x"]})
    log.append(actor="a", role="r", action="predict", detail=["stored"])
    log.append(actor="a", role="r", action="predict", detail={"stored": None, "x": [["predictions", "r3", good]]})
    log.append(actor="a", role="r", action="predict", detail={"stored": [["predictions", "r4", good]]})
    sql(db, "UPDATE audit SET detail = '{\"stored\": [' WHERE seq = 6")  # unreadable detail: skipped
    log.append(actor="a", role="r", action="predict", detail={"stored": [["predictions", "r5", good]]})
    found = [(k, m) for k, _, m in probs(log.verify())]
    assert [m for k, m in found if k == "result"] == [
        f"stored prediction {r} has no audit row: it was inserted outside the service" for r in ("r1", "r2", "r3",
                                                                                                   "r4")]


def test_verify_a_version_changed_or_inserted(db, seeded):
    log, seqs = seeded
    sql(db, "UPDATE model_versions SET metadata_sha256 = 'c' WHERE version = 1")
    sql(db, "INSERT INTO model_versions (model_id, version, path, bundle_ref, metadata_sha256, task, registered_at, "
            "registered_by) VALUES (1, 3, 'p', 'b3', 'e', 'binary', 't', 'x')")
    assert probs(log.verify()) == [
        ("version", seqs["v1"], f"m v1's bundle hash differs from the one registered (audit row {seqs['v1']}): it "
                                "was changed outside the registry"),
        ("version", None, "m v3 has no audited registration: it was inserted outside the registry")]


def test_register_rows_without_a_model_or_version_record_nothing(db, store):
    log = chain(db, store)
    with db.transaction() as s:
        s.add(ModelRow(name="m", created_at="t"))
        s.flush()
        s.add(VersionRow(model_id=1, version=1, path="p", bundle_ref="b", metadata_sha256="a", task="binary",
                         registered_at="t", registered_by="x"))
    log.append(actor="x", role="admin", action="register", model="m", input_digest="a")
    log.append(actor="x", role="admin", action="register", version=1, input_digest="a")
    log.append(actor="x", role="admin", action="register", model="m", version=1, input_digest="a",
               outcome="error")
    assert probs(log.verify()) == [
        ("version", None, "m v1 has no audited registration: it was inserted outside the registry")]


def test_verify_a_stage_set_outside_the_registry(db, seeded):
    log, _ = seeded
    sql(db, "INSERT INTO stages (model_id, stage, version_id, action, at, actor) VALUES (1, 'production', 2, "
            "'promote', 't', 'x')")
    sql(db, "INSERT INTO stages (model_id, stage, version_id, action, at, actor) VALUES (1, 'staging', 1, "
            "'promote', 't', 'x')")
    assert probs(log.verify()) == [
        ("stage", None, "m production is v2 in the stages table but v1 by the audit trail: a stage was set outside "
                        "the registry"),
        ("stage", None, "m staging is v1 in the stages table but vNone by the audit trail: a stage was set outside "
                        "the registry")]


def test_verify_stages_audited_but_missing_from_the_table(db, seeded):
    log, _ = seeded
    sql(db, "DELETE FROM stages WHERE action = 'rollback'")
    raw = sqlite3.connect(db.file)  # foreign keys off: a stage pointing at no version
    raw.execute("UPDATE stages SET version_id = 99 WHERE id = 2")
    raw.commit()
    raw.close()
    assert probs(log.verify()) == [
        ("stage", None, "m production is v-1 in the stages table but v1 by the audit trail: a stage was set "
                        "outside the registry")]


def test_stage_replay_of_rollbacks_on_empty_stacks(db, store):
    log = chain(db, store)
    with db.transaction() as s:
        s.add(ModelRow(name="m", created_at="t"))
        s.flush()
        s.add(VersionRow(model_id=1, version=1, path="p", bundle_ref="b", metadata_sha256="a", task="binary",
                         registered_at="t", registered_by="x"))
        s.flush()
        s.add(StageRow(model_id=1, stage="production", version_id=1, action="rollback", at="t", actor="x"))
    log.append(actor="x", role="admin", action="register", model="m", version=1, input_digest="a")
    log.append(actor="x", role="admin", action="rollback:production", model="m")
    log.append(actor="x", role="admin", action="rollback:staging", version=1)
    log.append(actor="x", role="admin", action="promote:staging", model="m")
    log.append(actor="x", role="admin", action="promote:canary", version=1)
    assert log.verify().ok
    with db.transaction() as s:
        s.add(VersionRow(model_id=1, version=2, path="p", bundle_ref="b2", metadata_sha256="b", task="binary",
                         registered_at="t", registered_by="x"))
        s.flush()
        s.add(StageRow(model_id=1, stage="production", version_id=1, action="promote", at="t", actor="x"))
        s.add(StageRow(model_id=1, stage="blue:green", version_id=1, action="promote", at="t", actor="x"))
        s.add(StageRow(model_id=1, stage="blue:green", version_id=2, action="promote", at="t", actor="x"))
        s.add(StageRow(model_id=1, stage="blue:green", version_id=2, action="rollback", at="t", actor="x"))
    log.append(actor="x", role="admin", action="register", model="m", version=2, input_digest="b")
    log.append(actor="x", role="admin", action="promote:production", model="m", version=1)
    log.append(actor="x", role="admin", action="promote:blue:green", model="m", version=1)
    log.append(actor="x", role="admin", action="promote:blue:green", model="m", version=2)
    log.append(actor="x", role="admin", action="rollback:blue:green", model="m", version=2)
    assert log.verify().ok  # the stage is everything after the first colon
    log.append(actor="x", role="admin", action="promote:canary", model="m", version=1)
    assert probs(log.verify()) == [
        ("stage", None, "m canary is vNone in the stages table but v1 by the audit trail: a stage was set outside "
                        "the registry")]


def test_verify_tokens_changed_outside_the_service(db, seeded):
    log, seqs = seeded
    sql(db, "UPDATE tokens SET role = 'admin', token_sha256 = 'z' WHERE id = 'tok1'")
    sql(db, "UPDATE tokens SET revoked_at = NULL WHERE id = 'tok2'")
    sql(db, "INSERT INTO tokens VALUES ('tok3', 'y', 'admin', 'l', 't', NULL)")
    t1, rv = seqs["tok1"], seqs["revoke"]
    assert probs(log.verify()) == [
        ("token", t1, f"token tok1 has role 'admin' but was created as 'clinician' (audit row {t1}): its role was "
                      "changed outside the service"),
        ("token", t1, f"token tok1's secret hash differs from the one created (audit row {t1}): it was replaced "
                      "outside the service"),
        ("token", rv, f"token tok2 was revoked (audit row {rv}) but is active again"),
        ("token", None, "token tok3 (admin) has no audited creation: it was inserted outside the service")]


def test_token_rows_with_partial_details(db, store):
    log = chain(db, store)
    with db.transaction() as s:
        s.add(TokenRow(id="t0", token_sha256="h0", role="admin", label="l", created_at="t"))
        s.add(TokenRow(id="t1", token_sha256="h1", role="admin", label="l", created_at="t"))
        s.add(TokenRow(id="t2", token_sha256="h2", role="admin", label="l", created_at="t"))
        s.add(TokenRow(id="t3", token_sha256="h3", role="admin", label="l", created_at="t"))
    log.append(actor="x", role="admin", action="token_create", detail={"token_id": "t1", "role": "admin"})
    log.append(actor="x", role="admin", action="token_create", detail={"token_id": 2, "role": "admin"})
    t3 = log.append(actor="x", role="admin", action="token_create", detail={"token_id": "t3", "role": "viewer"}).seq
    log.append(actor="x", role="admin", action="token_revoke", detail={"token_id": 1})
    log.append(actor="x", role="admin", action="token_revoke", detail={"token_id": "t9"})
    log.append(actor="x", role="admin", action="token_revoke", detail={"token_id": "t1"}, outcome="denied")
    log.append(actor="x", role="admin", action="predict", detail={"stored": [], "token_id": "t1"})
    log.append(actor="x", role="admin", action="register", detail={"token_id": "t1"})
    assert probs(log.verify()) == [
        ("token", None, "token t0 (admin) has no audited creation: it was inserted outside the service"),
        ("token", None, "token t2 (admin) has no audited creation: it was inserted outside the service"),
        ("token", t3, f"token t3 has role 'admin' but was created as 'viewer' (audit row {t3}): its role was "
                      "changed outside the service")]


def test_restart_of_an_adopted_chain_keeps_the_legacy_boundary(db, store):
    legacy(db, 4)
    chain(db, store)
    genesis_line = store.paths[0].read_text().splitlines()[0]
    store.paths[0].write_text(genesis_line + "\n")  # as if the first checkpoint had not been written
    log = chain(db, store)
    assert log.legacy_seq == 4 and lines(store)[-1]["seq"] == 5  # rows 1..4 re-checked with their plain hashes


def test_a_long_refusal_reason_is_cut_to_500_characters(db, tmp_path):
    store = CheckpointStore([tmp_path / ("d" * 200) / ("e" * 200) / "cp.jsonl"])
    AuditLog(db, KEY).append(actor="a", role="r", action="note")
    with pytest.raises(AuditChainError) as err:
        chain(db, store)
    assert len(str(err.value)) > 500 and lines(store)[0]["reason"] == str(err.value)[:500]


def test_checkpoint_needs_a_store_and_a_chain(db, store):
    log = AuditLog(db, KEY)
    log.chain_id = "c"
    assert log.checkpoint() is None
    chain(db, store)
    other = AuditLog(db, KEY, store)  # chain not opened (or adopted) in this process
    other.append(actor="a", role="r", action="n")
    assert other.checkpoint() is None and len(lines(store)) == 1


def test_checkpoint_keeps_its_own_anchor_against_one_at_the_same_seq(db, store):
    log = chain(db, store)
    log.append(actor="a", role="r", action="n")
    assert log.checkpoint()["seq"] == 2
    store.append(KEY, "checkpoint", {"chain_id": log.chain_id, "seq": 2, "head_hash": "f" * 64, "at": "t"})
    log.append(actor="a", role="r", action="n")
    assert log.checkpoint()["seq"] == 3


def test_the_tail_check_needs_both_order_and_links(db, store):
    log = chain(db, store, n=4)
    with db.transaction() as s:  # an insider re-hashes row 4 with the key but links it to nothing
        row = s.get(AuditRow, 4)
        row.prev_hash = "f" * 64
        row.row_hash = row_hash(row, KEY)
        nxt = s.get(AuditRow, 5)
        nxt.prev_hash = row.row_hash
        nxt.row_hash = row_hash(nxt, KEY)
    assert log._check_tail(1, hash_of(db, 1)) is None
    assert log._check_tail(4, hash_of(db, 4)) == (5, hash_of(db, 5))


def test_a_session_committed_twice_signs_only_at_the_cadence(db, store):
    from sqlalchemy.orm import Session

    log = chain(db, store, every=2)
    with Session(db.engine) as s:
        log.record(s, actor="a", role="r", action="n")  # seq 2: a checkpoint after the commit
        s.commit()
        log.record(s, actor="a", role="r", action="n")  # seq 3: none
        s.commit()
    assert [r["seq"] for r in lines(store) if r["type"] == "checkpoint"] == [2]


def test_rows_returns_at_most_1000_by_default(db):
    log = AuditLog(db, KEY)
    log.append(actor="a", role="r", action="n")
    sql(db, "INSERT INTO audit (seq, at, actor, role, action, outcome, status, detail, prev_hash, row_hash) "
            "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 1001) "
            "SELECT i, 't', 'a', 'r', 'n', 'ok', 200, '{}', 'p', 'h' FROM n")
    rows = log.rows()
    assert len(rows) == 1000 and rows[-1]["seq"] == 1000


# ----- the order of rows does not come from the database's scan order ----------------------------------------------
@pytest.fixture
def reversed_db(db):
    """SQLite returns unordered scans backwards (PRAGMA reverse_unordered_selects): a missing ORDER BY shows."""
    from sqlalchemy import event

    def reverse(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA reverse_unordered_selects = ON")

    db.engine.dispose()
    event.listen(db.engine, "connect", reverse)
    return db


def test_order_of_rows_and_of_the_chain_under_reversed_scans(reversed_db, store):
    db = reversed_db
    legacy(db, 2)
    log = chain(db, store, n=3)
    assert lines(store)[0]["first_seq"] == 1
    assert [r["seq"] for r in log.rows()] == [1, 2, 3, 4, 5, 6]
    assert log.checkpoint()["seq"] == 6
    assert log.verify().ok
    again = chain(db, store)  # continues: the first row is found by seq
    assert again.chain_id == log.chain_id


def test_stage_replay_under_reversed_scans(reversed_db, store):
    db = reversed_db
    log = chain(db, store)
    with db.transaction() as s:
        s.add(ModelRow(name="m", created_at="t"))
        s.flush()
        for n in (1, 2):
            s.add(VersionRow(model_id=1, version=n, path="p", bundle_ref=f"b{n}", metadata_sha256=f"{n}",
                             task="binary", registered_at="t", registered_by="x"))
            s.flush()
            s.add(StageRow(model_id=1, stage="production", version_id=n, action="promote", at="t", actor="x"))
            log.record(s, actor="x", role="admin", action="register", model="m", version=n, input_digest=f"{n}")
            log.record(s, actor="x", role="admin", action="promote:production", model="m", version=n)
    assert log.verify().ok
