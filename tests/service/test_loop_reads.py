"""The event loop's own SQLite read connection (precimed.service.db.Database._loop_reader).

The predict lane reads the token and the registry stamp on the event loop; on a SQLite file those reads use a
connection the loop thread keeps instead of the pool's. What must hold: a change committed by any other connection
(a revocation by the CLI, another worker) is seen by the very next read; the kept connection never holds a read
transaction open (which would stop WAL checkpoints); a driver error drops it; worker threads still use the pool;
`dispose()` closes it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy import bindparam, select, update

from precimed.service import db as dbmod
from precimed.service.db import Database, TokenRow

LOOKUP = select(TokenRow.id, TokenRow.revoked_at).where(TokenRow.token_sha256 == bindparam("sha"))


@pytest.fixture
def database(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'reads.db'}")
    db.migrate()
    with db.transaction() as s:
        s.add(TokenRow(id="t1", token_sha256="a" * 64, role="clinician", label="x", created_at="2026-01-01"))
    yield db
    db.dispose()


def _run(coroutine_function):
    """Run a coroutine function on a fresh event loop in a thread of its own (the test's own thread may already
    run a loop: Playwright's sync API leaves one in the main thread) and return its result or raise its error."""
    out: dict = {}

    def target():
        try:
            out["value"] = asyncio.run(coroutine_function())
        except BaseException as exc:  # handed to the test's thread
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    if "error" in out:
        raise out["error"]
    return out["value"]


def _on_loop(fn):
    async def call():
        return fn()

    return _run(call)


def test_the_loop_thread_keeps_one_connection_and_the_pool_is_not_used(database, monkeypatch):
    checkouts = []
    real = database._checkout
    monkeypatch.setattr(database, "_checkout", lambda: checkouts.append(1) or real())

    def reads():
        return [database.fetch_one(LOOKUP, {"sha": "a" * 64}) for _ in range(5)]

    assert _on_loop(reads) == [("t1", None)] * 5
    assert len(checkouts) == 1 and len(database._loop_readers) == 1  # taken once, then kept
    plain = []  # a thread without an event loop (a worker thread): the pool
    worker = threading.Thread(target=lambda: plain.append(database.fetch_one(LOOKUP, {"sha": "a" * 64})))
    worker.start()
    worker.join()
    assert plain == [("t1", None)]
    assert len(checkouts) == 2 and len(database._loop_readers) == 1


def test_a_revocation_committed_elsewhere_is_seen_by_the_next_read(database, tmp_path):
    async def scenario():
        assert database.fetch_one(LOOKUP, {"sha": "a" * 64}) == ("t1", None)
        other = sqlite3.connect(tmp_path / "reads.db")  # the CLI, or another worker
        other.execute("UPDATE tokens SET revoked_at = '2026-02-02' WHERE id = 't1'")
        other.commit()
        other.close()
        return database.fetch_one(LOOKUP, {"sha": "a" * 64})

    assert _run(scenario) == ("t1", "2026-02-02")


def test_the_kept_connection_holds_no_read_transaction_so_checkpoints_complete(database, tmp_path):
    async def scenario():
        database.fetch_one(LOOKUP, {"sha": "a" * 64})
        (kept,) = database._loop_readers.values()
        assert kept.dbapi_connection.in_transaction is False
        for i in range(50):  # writes elsewhere, then a full checkpoint: it must not be blocked by the kept reader
            with database.transaction() as s:
                s.execute(update(TokenRow).where(TokenRow.id == "t1").values(label=f"l{i}"))
        with database.engine.connect() as conn:
            busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        return busy

    assert _run(scenario) == 0


def test_a_driver_error_drops_the_kept_connection(database):
    async def scenario():
        database.fetch_one(LOOKUP, {"sha": "a" * 64})
        (kept,) = database._loop_readers.values()
        kept.dbapi_connection.close()  # what a broken connection looks like to the driver
        with pytest.raises(Exception, match="closed"):
            database.fetch_one(LOOKUP, {"sha": "a" * 64})
        assert database._loop_readers == {}
        return database.fetch_one(LOOKUP, {"sha": "a" * 64})  # a fresh one

    assert _run(scenario) == ("t1", None)
    assert len(database._loop_readers) == 1


def test_at_most_a_few_loop_threads_keep_one_and_dispose_closes_them(database):
    seen = []
    n = dbmod.MAX_LOOP_READERS + 3
    together = threading.Barrier(n)  # all alive at once (a finished thread's id may be reused)

    async def read():
        return database.fetch_one(LOOKUP, {"sha": "a" * 64})

    def loop_thread():  # a fresh thread: no loop yet, so asyncio.run may start one here
        seen.append(asyncio.run(read()))
        together.wait(timeout=30)

    threads = [threading.Thread(target=loop_thread) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [("t1", None)] * n
    assert len(database._loop_readers) == dbmod.MAX_LOOP_READERS  # the others used the pool
    kept = [fairy.dbapi_connection for fairy in database._loop_readers.values()]
    database.dispose()
    assert database._loop_readers == {}
    for connection in kept:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            connection.execute("SELECT 1")


def test_a_database_that_is_not_a_sqlite_file_never_keeps_one(database):
    database.file = None  # what PostgreSQL has
    assert _on_loop(database._loop_reader) is None
    assert _on_loop(lambda: database.fetch_one(LOOKUP, {"sha": "a" * 64})) == ("t1", None)
    assert database._loop_readers == {}
