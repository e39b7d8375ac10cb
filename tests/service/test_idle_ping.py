"""PostgreSQL connections are pinged only after sitting idle in the pool (precimed.service.db.ping_when_idle).

A connection the server dropped while it sat in the pool (a restart, a firewall timing out idle sessions) must be
replaced without the request noticing; one in steady use must not pay a round trip per checkout. The server side of
a pooled connection is killed with pg_terminate_backend to play the dropped session.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from precimed.service import db as dbmod

PID = text("SELECT pg_backend_pid()")


def _database(url: str, idle_seconds: float, monkeypatch) -> dbmod.Database:
    monkeypatch.setattr(dbmod, "IDLE_PING_SECONDS", idle_seconds)
    return dbmod.Database(url)


def _terminate(url: str, pid: int) -> None:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    finally:
        admin.dispose()


@pytest.mark.parametrize("idle_seconds, survives", [(0.0, True), (1e9, False)], ids=["pinged", "not pinged"])
def test_a_dropped_idle_connection_is_replaced_when_it_has_been_idle(pg_url, monkeypatch, idle_seconds, survives):
    """With the ping due (idle longer than the threshold) the dead connection is replaced and the read answers;
    without it the same read fails, which is what the ping is for."""
    db = _database(pg_url, idle_seconds, monkeypatch)
    try:
        pid = db.fetch_one(PID, {})[0]  # the pool now holds this one connection, checked in
        _terminate(pg_url, pid)
        if survives:
            again = db.fetch_one(PID, {})[0]
            assert again != pid  # a fresh connection answered
        else:
            with pytest.raises(DBAPIError):
                db.fetch_one(PID, {})
    finally:
        db.dispose()


def test_a_connection_in_steady_use_is_not_pinged(pg_url, monkeypatch):
    pings: list[object] = []
    monkeypatch.setattr(dbmod, "idle_ping", lambda conn: pings.append(conn))
    db = _database(pg_url, 10.0, monkeypatch)
    try:
        pids = {db.fetch_one(PID, {})[0] for _ in range(20)}
        with db.write() as tx:
            tx.one(PID, {})
        assert pings == [] and len(pids) == 1
    finally:
        db.dispose()
