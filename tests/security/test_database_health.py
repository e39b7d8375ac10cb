"""Finding 1 (a corrupted database) and finding 7 (a database or registry deleted while running, file modes):
each attack is tried and the observable outcome asserted.

- a corrupted SQLite page: every CLI command that opens the database prints one line and exits 2 (no traceback),
  and /readyz answers 503 with a generic reason
- the database file or the registry folder deleted while the service runs: /readyz 503, predictions 503 (never a
  200 whose audit row vanishes)
- the database file and its WAL and SHM are created 0600
- /readyz without a token names no model and no version; a bundle that fails re-verification makes it fail
"""

from __future__ import annotations

import os
import shutil

import pytest

from security.audit_attacks import run_cli, sql
from service.conftest import PATIENT, pima_bundles, start  # noqa: F401


@pytest.fixture
def svc(tmp_path, pima_bundles):  # noqa: F811
    s = start(tmp_path, pima_bundles, integrity_check_seconds=0)
    yield s
    s.client.close()
    s.container.db.dispose()


def _corrupt_audit_page(svc) -> None:
    """Overwrite the middle of the page holding the audit table's root, after the WAL is folded into the file."""
    page_size = sql(svc.db_url, "PRAGMA page_size")[0][0]
    root = sql(svc.db_url, "SELECT rootpage FROM sqlite_master WHERE name = 'audit'")[0][0]
    svc.container.db.dispose()  # the last connection closes: the WAL is checkpointed into the file
    path = svc.registry / "precimed.db"
    assert not (svc.registry / "precimed.db-wal").exists()
    with path.open("r+b") as fh:
        fh.seek((root - 1) * page_size + page_size // 4)
        fh.write(b"\xff\x13garbage" * (page_size // 20))


COMMANDS = [
    ["registry", "list"],
    ["registry", "promote", "pima-small", "1", "--stage", "staging"],
    ["registry", "rollback", "pima-small"],
    ["tokens", "create", "--role", "clinician"],
    ["tokens", "list"],
    ["tokens", "revoke", "tok_000000000000"],
    ["audit", "verify"],
]


def test_a_corrupted_page_is_one_line_and_exit_2_from_every_command(svc, capsys, monkeypatch, pima_bundles):  # noqa: F811
    _corrupt_audit_page(svc)
    for args in [*COMMANDS, ["registry", "add", str(pima_bundles[1])]]:
        code, out, err = run_cli([*args, "--registry", str(svc.registry)], capsys, monkeypatch)
        lines = err.strip().splitlines()
        assert (code, out, len(lines)) == (2, "", 1), (args, code, out, err)
        assert "database" in lines[0] and "Traceback" not in err, (args, err)


def test_a_corrupted_page_makes_readyz_fail_with_a_reason(svc):
    assert svc.client.get("/readyz").status_code == 200
    _corrupt_audit_page(svc)
    r = svc.client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "not ready"
    assert r.json()["checks"]["reasons"] == ["the database file is corrupted"]


def test_a_database_deleted_while_running_fails_readyz_and_predictions(svc):
    before = sql(svc.db_url, "SELECT count(*) FROM audit")[0][0]
    for suffix in ("", "-wal", "-shm"):
        (svc.registry / f"precimed.db{suffix}").unlink(missing_ok=True)
    r = svc.client.get("/readyz")
    assert r.status_code == 503 and "the database file is missing (deleted while running)" in \
        r.json()["checks"]["reasons"]
    p = svc.client.post("/v1/models/pima-small/predict", json={"patients": [PATIENT]}, headers=svc.auth("clinician"))
    assert p.status_code == 503 and "unavailable" in p.json()["message"]
    assert not (svc.registry / "precimed.db").exists()  # nothing recreated an empty database behind our back
    assert before > 0


def test_a_registry_folder_deleted_while_running_fails_readyz_and_predictions(svc):
    svc.container.db.dispose()
    moved = svc.registry.parent / "moved"
    shutil.move(svc.registry, moved)
    r = svc.client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["reasons"]
    p = svc.client.post("/v1/models/pima-small/predict", json={"patients": [PATIENT]}, headers=svc.auth("clinician"))
    assert p.status_code == 503


def test_the_database_and_its_wal_and_shm_are_private(svc):
    old = os.umask(0o022)
    try:
        assert svc.client.post("/v1/models/pima-small/predict", json={"patients": [PATIENT]},
                               headers=svc.auth("clinician")).status_code == 200
        for suffix in ("", "-wal", "-shm"):
            path = svc.registry / f"precimed.db{suffix}"
            assert path.exists() and path.stat().st_mode & 0o777 == 0o600, suffix
        assert (svc.registry / "audit-checkpoints.jsonl").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_readyz_names_no_model_or_version_without_a_token(svc):
    anonymous = svc.client.get("/readyz")
    assert anonymous.status_code == 200 and "models" not in anonymous.json()["checks"]
    assert "pima-small" not in anonymous.text and "v1" not in anonymous.text
    known = svc.client.get("/readyz", headers=svc.auth("clinician"))
    assert known.json()["checks"]["models"] == {"pima-small": "v1 ok"}


def test_readyz_fails_when_a_bundle_fails_reverification(svc, monkeypatch):
    monkeypatch.setattr(svc.container.registry, "integrity_problems", lambda: ["pima-small v1: model.json changed"],
                        raising=False)
    r = svc.client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["reasons"] == [
        "1 registered bundle problem(s): re-verification failed"]
    assert "pima-small" not in r.text
