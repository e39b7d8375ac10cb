"""The same service on a real PostgreSQL server: migrations, registry, predictions, plans and the audit chain.

Runs when PRECIMED_TEST_PG_URL points at a reachable server (scripts/start_postgres.sh starts one); otherwise each
test is skipped with the reason, which also appears in the warnings summary.
"""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.conftest import PATIENT, start


def test_migrations_create_the_declared_schema_on_postgresql_and_run_twice(pg_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from precimed.service.db import Base, Database

    db = Database(pg_url)
    db.migrate()
    db.migrate()
    assert db.dialect == "postgresql" and db.revision() == db.head()
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.dispose()


def test_the_service_runs_the_same_on_postgresql(tmp_path, pima_bundles, pg_url):
    from precimed.service import cli_commands as cli

    s = start(tmp_path, pima_bundles, db_url=pg_url)
    try:
        c = s.client
        r = c.post("/v1/models/pima-small/predict", json={"patients": [PATIENT, {"glu": 90, "bmi": 25, "age": 30}]},
                   headers=s.auth("clinician"))
        assert r.status_code == 200 and len(r.json()["predictions"]) == 2
        assert c.get(f"/v1/predictions/{r.json()['id']}", headers=s.auth("clinician")).status_code == 200
        bad = c.post("/v1/models/pima-small/predict", json={"patients": [{**PATIENT, "glu": 1}]},
                     headers=s.auth("clinician"))
        assert bad.status_code == 422 and bad.json()["patients"] == [{"index": 0, "patient_id": "p1"}]
        assert c.get("/v1/tokens", headers=s.auth("clinician")).status_code == 403
        cli.registry_add(s.registry, pima_bundles[1], db=pg_url)
        assert c.post("/v1/models/pima-small/promote", json={"version": 2}, headers=s.auth("admin")).json()[
            "stages"] == ["production"]
        assert c.post("/v1/models/pima-small/rollback", json={}, headers=s.auth("admin")).json()["version"] == 1
        plan = c.post("/v1/plans", json={"facts": {"age": 50, "sex": "female"}, "model": "pima-small",
                                         "model_input": {"glu": 148, "bmi": 33.6, "age": 50}},
                      headers=s.auth("clinician"))
        assert plan.status_code == 200
        assert c.get("/readyz").json()["checks"]["schema"] is True
        report = cli.audit_verify(s.registry, db=pg_url)
        assert report["ok"] and report["rows"] >= 10
        engine = create_engine(make_url(pg_url))
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit SET actor = 'tok_someone' WHERE seq = 5"))
            conn.execute(text("DELETE FROM audit WHERE seq = 8"))
        engine.dispose()
        kinds = {(p["kind"], p["seq"]) for p in cli.audit_verify(s.registry, db=pg_url)["problems"]}
        assert ("altered", 5) in kinds and ("deleted", 8) in kinds
    finally:
        s.client.close()
        s.container.db.dispose()


def test_concurrent_appends_keep_one_chain_on_postgresql(pg_url):
    from concurrent.futures import ThreadPoolExecutor

    from precimed.service.audit import AuditLog
    from precimed.service.db import Database
    from precimed.workflows.privacy import KeyMaterial

    db = Database(pg_url)
    db.migrate()
    log = AuditLog(db, KeyMaterial(b"k" * 32))
    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(lambda i: log.append(actor="tok_t", role="clinician", action="predict").seq, range(60)))
    assert sorted(seqs) == list(range(1, 61)) and log.verify().ok
    db.dispose()
