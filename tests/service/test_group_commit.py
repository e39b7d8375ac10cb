"""Group commit (precimed.service.group_commit): the audited writes of concurrent requests are committed together, in
one transaction, and each request is answered only once its own audit row is committed.

To make a batch happen deterministically (no sleeps, no timing thresholds), a test holds the database's write lock
from outside (SQLite: BEGIN IMMEDIATE; PostgreSQL: the audit head row FOR UPDATE): the first request's writer
blocks on it, the others queue, and when the lock is released they are committed as one batch. Each test that can
runs on SQLite and, when `make test` started a server, on PostgreSQL (the `pg_url` fixture; skipped otherwise).

The kill -9 tests run `precimed serve` (one and two uvicorn workers) and SIGKILL the whole process group while
clients are sending: every acknowledged prediction must have its stored row and its audit row, and the chain must
verify.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from helpers import free_port, run_coroutine, serve_subprocess
from service.conftest import PATIENT, start

DEADLINE = 120.0  # seconds to wait for a state before calling it a hang (never a speed requirement)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str | None:
    """None (the registry's SQLite file) or a fresh PostgreSQL database (skipped when no server is set)."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    stop = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > stop:
            pytest.fail(f"waited {DEADLINE:.0f} s for {what}")
        time.sleep(0.01)


class WriteLock:
    """The database's write lock held by another connection, as a slow or stuck writer would hold it."""

    def __init__(self, db_url: str) -> None:
        self.sqlite = make_url(db_url).get_backend_name() == "sqlite"
        if self.sqlite:
            self.conn = sqlite3.connect(make_url(db_url).database, isolation_level=None, timeout=30)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(db_url)
            self.conn = self.engine.connect()
            self.conn.execute(text("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"))

    def release(self) -> None:
        """Let the writers go (idempotent)."""
        if getattr(self, "released", False):
            return
        self.released = True
        self.conn.rollback()
        self.conn.close()
        if not self.sqlite:
            self.engine.dispose()


def _svc(tmp_path, pima_bundles, db_url, **settings):
    return start(tmp_path, pima_bundles, db_url=db_url, rate_burst=100_000, **settings)


def _close(svc) -> None:
    svc.client.close()
    svc.container.committer.close()
    svc.container.db.dispose()


def _predict(svc) -> httpx.Response:
    return svc.client.post("/v1/models/pima-small/predict", json={"patients": [PATIENT]},
                           headers=svc.auth("clinician"))


def _audited_predictions(svc) -> dict[str, int]:
    """prediction id -> seq of its audit row."""
    from precimed.service.db import AuditRow

    with svc.container.db.session() as s:
        rows = s.execute(select(AuditRow.seq, AuditRow.detail).where(AuditRow.action == "predict")).all()
    return {json.loads(detail)["prediction_id"]: seq for seq, detail in rows}


def _stored_predictions(svc) -> set[str]:
    from precimed.service.db import PredictionRow

    with svc.container.db.session() as s:
        return set(s.execute(select(PredictionRow.id)).scalars())


def _verify(svc) -> dict:
    from precimed.service import cli_commands as cli

    return cli.audit_verify(svc.registry, db=svc.container.settings.db_url)


def _prediction_row(pred_id: str):
    from precimed.service.db import PredictionRow, to_json, utcnow

    return PredictionRow(id=pred_id, created_at=utcnow(), actor="tok_test", kind="predict", model="pima-small",
                         version=1, bundle_ref="test", input_digest="0" * 64, result=to_json({"id": pred_id}))


# ----- batches ---------------------------------------------------------------------------------------------------
def test_concurrent_requests_are_committed_together_each_with_its_own_audit_row(tmp_path, pima_bundles, db_url):
    svc = _svc(tmp_path, pima_bundles, db_url)
    committer = svc.container.committer
    try:
        assert _predict(svc).status_code == 200  # idle: committed at once, alone
        before = committer.stats.batches
        lock = WriteLock(svc.db_url)
        n = 12
        try:
            with ThreadPoolExecutor(n) as pool:
                # one request's transaction waits for the lock; the other n - 1 then queue behind it
                futures = [pool.submit(_predict, svc)]
                _wait_for(lambda: committer.writing, "the first request's writer to wait for the lock")
                futures += [pool.submit(_predict, svc) for _ in range(n - 1)]
                _wait_for(lambda: committer.pending() == n - 1, "the requests to queue")
                assert not any(f.done() for f in futures)  # nobody is answered before their audit row is committed
                lock.release()
                responses = [f.result() for f in futures]
        finally:
            lock.release()  # (again: a no-op once released) a failed wait must not leave the writers blocked
        assert [r.status_code for r in responses] == [200] * n
        assert committer.stats.batches - before == 2 and committer.stats.largest == n - 1  # 1, then n - 1 at once
        ids = [r.json()["id"] for r in responses]
        audited = _audited_predictions(svc)
        assert set(ids) <= set(audited) and set(ids) <= _stored_predictions(svc)
        assert len({audited[i] for i in ids}) == n  # each its own row in the chain
        report = _verify(svc)
        assert report["ok"], report["problems"]
        metrics = svc.client.get("/metrics", headers=svc.auth("clinician")).text
        assert "precimed_audit_commit_batch_units_count" in metrics
    finally:
        _close(svc)


def test_an_idle_service_commits_each_request_at_once(tmp_path, pima_bundles):
    """Nothing waits to gather more: one request at a time gives batches of one. A synchronous endpoint (explain,
    in a worker thread) writes its unit in its own thread; the async predict route hands it to the writer."""
    svc = _svc(tmp_path, pima_bundles, None)
    committer = svc.container.committer
    try:
        for _ in range(5):
            answer = svc.client.post("/v1/models/pima-small/explain", json={"patients": [PATIENT]},
                                     headers=svc.auth("clinician"))
            assert answer.status_code == 200
        assert committer.stats.batches == committer.stats.units >= 5 and committer.stats.largest == 1
        assert committer._thread is None  # written inline by the request's worker thread
        for _ in range(5):
            assert _predict(svc).status_code == 200
        assert committer.stats.batches == committer.stats.units >= 10 and committer.stats.largest == 1
    finally:
        _close(svc)


def test_the_seq_each_caller_gets_is_its_own_committed_audit_row(tmp_path, pima_bundles, db_url):
    from precimed.service.auth import Principal
    from precimed.service.db import AuditRow

    svc = _svc(tmp_path, pima_bundles, db_url)
    container = svc.container
    me = Principal("tok_test", "clinician")

    def commit(i: int) -> tuple[str, int]:
        pred_id = f"gc-{i:04d}"
        seq = container.commit(me, "predict", model="pima-small", version=1, detail={"prediction_id": pred_id},
                               rows=(_prediction_row(pred_id),))
        return pred_id, seq

    try:
        with ThreadPoolExecutor(16) as pool:
            got = dict(pool.map(commit, range(200)))
        assert len(set(got.values())) == 200
        with container.db.session() as s:
            rows = {seq: json.loads(detail)["prediction_id"] for seq, detail in
                    s.execute(select(AuditRow.seq, AuditRow.detail).where(AuditRow.seq.in_(list(got.values()))))}
        assert {pred_id: seq for seq, pred_id in rows.items()} == got
        assert _verify(svc)["ok"]
    finally:
        _close(svc)


def test_a_poisoned_unit_fails_alone_and_the_rest_of_its_batch_is_committed(tmp_path, pima_bundles, db_url):
    from precimed.service.auth import Principal

    svc = _svc(tmp_path, pima_bundles, db_url)
    container = svc.container
    committer = container.committer
    me = Principal("tok_test", "clinician")
    taken = _predict(svc).json()["id"]  # a prediction id that exists: storing it again is an integrity error

    def commit(pred_id: str, row_id: str) -> int | BaseException:
        try:
            return container.commit(me, "predict", model="pima-small", version=1, detail={"prediction_id": pred_id},
                                    rows=(_prediction_row(row_id),))
        except Exception as exc:
            return exc

    try:
        lock = WriteLock(svc.db_url)
        with ThreadPoolExecutor(10) as pool:
            first = pool.submit(commit, "gc-first", "gc-first")
            _wait_for(lambda: committer.writing, "the first writer to wait for the lock")
            good = {f"gc-{i}": pool.submit(commit, f"gc-{i}", f"gc-{i}") for i in range(8)}
            poisoned = pool.submit(commit, "gc-poisoned", taken)
            _wait_for(lambda: committer.pending() == 9, "the batch to queue")
            lock.release()
            results = {pred_id: f.result() for pred_id, f in good.items()}
            assert isinstance(first.result(), int)
            assert isinstance(poisoned.result(), IntegrityError)
        assert all(isinstance(seq, int) for seq in results.values()), results
        assert committer.stats.retried == 9 and committer.stats.failed == 1
        audited = _audited_predictions(svc)
        assert {pred_id: audited.get(pred_id) for pred_id in results} == results
        assert "gc-poisoned" not in audited  # no audit row for what was not stored
        assert set(results) <= _stored_predictions(svc)
        assert _verify(svc)["ok"]
    finally:
        _close(svc)


def test_a_full_queue_is_refused_with_503_and_retry_after(tmp_path, pima_bundles):
    svc = _svc(tmp_path, pima_bundles, None, commit_queue=1)
    committer = svc.container.committer
    try:
        lock = WriteLock(svc.db_url)
        with ThreadPoolExecutor(2) as pool:
            writing = pool.submit(_predict, svc)
            _wait_for(lambda: committer.writing, "the first request's writer")
            queued = pool.submit(_predict, svc)
            _wait_for(lambda: committer.pending() == 1, "the second request to queue")
            refused = _predict(svc)
            lock.release()
            assert writing.result().status_code == 200 and queued.result().status_code == 200
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert "overloaded" in refused.json()["message"]
        assert committer.stats.refused == 1
        metrics = svc.client.get("/metrics", headers=svc.auth("clinician")).text
        assert 'precimed_requests_rejected_total{reason="commit_queue_full"} 1.0' in metrics
        assert _verify(svc)["ok"]
    finally:
        _close(svc)


def test_close_commits_what_is_queued_and_refuses_more_while_it_drains(tmp_path, pima_bundles):
    from precimed.service.auth import Principal
    from precimed.service.db import DatabaseUnavailable

    svc = _svc(tmp_path, pima_bundles, None)
    container = svc.container
    committer = container.committer
    me = Principal("tok_test", "clinician")

    def commit(i: int) -> int:
        return container.commit(me, "read_prediction", detail={"prediction_id": f"gc-{i}"})

    try:
        lock = WriteLock(svc.db_url)
        with ThreadPoolExecutor(8) as pool:  # 6 commits and close() at once
            futures = [pool.submit(commit, 0)]
            _wait_for(lambda: committer.writing, "the first writer")
            futures += [pool.submit(commit, i) for i in range(1, 6)]
            _wait_for(lambda: committer.pending() == 5, "the queue")
            closing = pool.submit(committer.close)
            _wait_for(lambda: not committer.accepting, "close() to begin")
            with pytest.raises(DatabaseUnavailable, match="shutting down"):
                commit(99)
            lock.release()
            closing.result()
            seqs = [f.result() for f in futures]
        assert len(set(seqs)) == 6 and committer.pending() == 0
        assert committer._thread is None and committer.accepting  # stopped, and usable again (a new lifespan)
        assert commit(7) > max(seqs)
        assert _verify(svc)["ok"]
    finally:
        svc.client.close()
        container.db.dispose()


def test_two_writers_on_one_database_keep_one_chain(tmp_path, pima_bundles, db_url):
    """Two containers on one database (as two uvicorn workers are): their batches interleave on one chain."""
    from precimed.service import ServiceSettings
    from precimed.service.auth import Principal
    from precimed.service.container import Container

    svc = _svc(tmp_path, pima_bundles, db_url)
    other = Container.build(ServiceSettings(registry=svc.registry, db_url=db_url))
    me = Principal("tok_test", "clinician")

    def commit(i: int) -> int:
        container = (svc.container, other)[i % 2]
        pred_id = f"gc-{i:04d}"
        return container.commit(me, "predict", model="pima-small", version=1, detail={"prediction_id": pred_id},
                                rows=(_prediction_row(pred_id),))

    try:
        with ThreadPoolExecutor(12) as pool:
            seqs = list(pool.map(commit, range(240)))
        assert len(set(seqs)) == 240
        assert _verify(svc)["ok"]
    finally:
        other.close()
        _close(svc)


# ----- tokens ----------------------------------------------------------------------------------------------------
def test_a_token_revoked_by_another_process_is_refused_on_the_next_request(tmp_path, pima_bundles):
    from precimed.service import cli_commands as cli

    svc = _svc(tmp_path, pima_bundles, None)
    try:
        assert _predict(svc).status_code == 200
        assert _predict(svc).status_code == 200
        cli.tokens_revoke(svc.registry, svc.ids["clinician"])  # its own database connection, as the CLI has
        refused = _predict(svc)
        assert refused.status_code == 401 and refused.json()["message"] == "invalid or revoked token"
    finally:
        _close(svc)


# ----- kill -9 -----------------------------------------------------------------------------------------------------
def _free_port() -> int:
    return free_port()


def _serve(registry: Path, db: str | None, port: int, workers: int) -> subprocess.Popen:
    return serve_subprocess(registry, port, db=db, workers=workers, timeout=DEADLINE)


@pytest.mark.parametrize("workers,backend", [(1, "sqlite"), (2, "sqlite"), (2, "postgresql")])
def test_kill_9_during_group_commits_loses_no_acknowledged_prediction(tmp_path, pima_bundles, workers, backend,
                                                                        request):
    from precimed.service import cli_commands as cli
    from precimed.service.db import AuditRow, Database, PredictionRow

    db = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    registry = tmp_path / "registry"
    cli.registry_add(registry, pima_bundles[0], db=db)
    cli.registry_promote(registry, "pima-small", 1, db=db)
    _, token = cli.tokens_create(registry, "clinician", label="kill -9", db=db)
    port = _free_port()
    proc = _serve(registry, db, port, workers)
    acknowledged: list[str] = []
    failed = 0
    lock = threading.Lock()
    killed = threading.Event()

    def client() -> None:
        nonlocal failed
        stop = time.monotonic() + DEADLINE
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            while time.monotonic() < stop and not killed.is_set():
                try:
                    r = http.post(f"http://127.0.0.1:{port}/v1/models/pima-small/predict",
                                  json={"patients": [PATIENT]})
                except httpx.TransportError:
                    with lock:
                        failed += 1
                    continue
                if r.status_code == 200:
                    with lock:
                        acknowledged.append(r.json()["id"])
                        if len(acknowledged) >= 60 and not killed.is_set():
                            os.killpg(proc.pid, signal.SIGKILL)  # the server and its workers, mid-stream
                            killed.set()

    threads = [threading.Thread(target=client) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert len(acknowledged) >= 60

    database = Database(db or f"sqlite:///{registry / 'precimed.db'}")
    with database.session() as s:
        stored = set(s.execute(select(PredictionRow.id)).scalars())
        audited = {json.loads(d)["prediction_id"] for d in
                   s.execute(select(AuditRow.detail).where(AuditRow.action == "predict")).scalars()}
    database.dispose()
    assert set(acknowledged) - stored == set()
    assert set(acknowledged) - audited == set()
    report = cli.audit_verify(registry, db=db)
    assert report["ok"], report["problems"]


# ----- the async way in (the predict route awaits its commit on the event loop) ------------------------------------
def _commit_async(svc, pred_id: str, *, cancel: bool = False):
    """Container.commit_async of one stored prediction (its audit row carries the row's digest), as a task."""
    import asyncio

    from precimed.service.auth import Principal

    principal = Principal(token_id="tok_test", role="clinician")
    task = asyncio.ensure_future(svc.container.commit_async(principal, "predict", rows=(_prediction_row(pred_id),)))
    return task


def test_async_units_arriving_together_share_one_commit_and_each_future_gets_its_own_seq(tmp_path, pima_bundles):
    import asyncio

    svc = _svc(tmp_path, pima_bundles, None)
    committer = svc.container.committer
    try:
        before = committer.stats.batches

        async def burst() -> list[int]:
            lock = WriteLock(svc.container.db.url)  # the first unit's transaction waits; the rest queue behind it
            futures = [_commit_async(svc, f"async-{i}") for i in range(6)]
            await asyncio.sleep(0.2)
            assert not any(f.done() for f in futures), "answered before its audit row was committed"
            lock.release()
            return list(await asyncio.gather(*futures))

        seqs = run_coroutine(burst())
        assert len(set(seqs)) == 6
        assert {f"async-{i}" for i in range(6)} <= _stored_predictions(svc)
        assert set(seqs) <= set(_audit_actions(svc))
        assert committer.stats.batches - before <= 2  # the first unit, then the five that queued behind it
        assert _verify(svc)["ok"]
    finally:
        _close(svc)


def test_units_queued_in_one_pass_of_the_event_loop_are_handed_over_and_committed_together(tmp_path,
                                                                                             pima_bundles):
    """No lock held: the writer is woken only once the loop's pass that queued the units ends, so five requests
    scored in one pass are one transaction (before, the first woke the writer and was committed alone)."""
    import asyncio

    svc = _svc(tmp_path, pima_bundles, None)
    committer = svc.container.committer
    try:
        _wait_for(lambda: not committer.writing and committer.pending() == 0, "the writer to be idle")
        before = committer.stats.batches

        async def one_pass() -> list[int]:
            futures = [_commit_async(svc, f"pass-{i}") for i in range(5)]  # the tasks all start in the next pass
            return list(await asyncio.gather(*futures))

        seqs = run_coroutine(one_pass())
        assert len(set(seqs)) == 5 and seqs == sorted(seqs)
        assert committer.stats.batches - before == 1
        assert {f"pass-{i}" for i in range(5)} <= _stored_predictions(svc)
        assert _verify(svc)["ok"]
    finally:
        _close(svc)


def _audit_actions(svc) -> dict[int, str]:
    """seq -> action of every audit row."""
    from precimed.service.db import AuditRow

    with svc.container.db.session() as s:
        return dict(s.execute(select(AuditRow.seq, AuditRow.action)).all())


def test_a_poisoned_async_unit_fails_alone_and_a_cancelled_waiter_still_has_its_rows_committed(tmp_path,
                                                                                               pima_bundles):
    import asyncio

    svc = _svc(tmp_path, pima_bundles, None)
    committer = svc.container.committer
    try:
        taken = _predict(svc).json()["id"]  # an audited prediction id: storing it again is an integrity error

        async def mixed() -> list[object]:
            lock = WriteLock(svc.container.db.url)
            good = _commit_async(svc, "good-1")
            bad = _commit_async(svc, taken)  # duplicate primary key
            gone = _commit_async(svc, "gone-1")
            await asyncio.sleep(0.05)  # all three queued
            gone.cancel()  # the client went away while waiting
            lock.release()
            return await asyncio.gather(good, bad, return_exceptions=True)

        good, bad = run_coroutine(mixed())
        _wait_for(lambda: not committer.writing and committer.pending() == 0, "the writer to finish")
        assert isinstance(good, int)
        assert isinstance(bad, IntegrityError)
        stored = _stored_predictions(svc)
        assert {"good-1", "gone-1", taken} <= stored
        assert _verify(svc)["ok"]
    finally:
        _close(svc)


def test_the_predict_answer_is_the_stored_prediction_and_matches_its_response_model(tmp_path, pima_bundles):
    from precimed.service.schemas import PredictionOut

    svc = _svc(tmp_path, pima_bundles, None)
    try:
        answer = _predict(svc)
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        body = answer.json()
        PredictionOut.model_validate(body)  # what the OpenAPI document promises
        stored = svc.client.get(f"/v1/predictions/{body['id']}", headers=svc.auth("clinician")).json()
        assert {k: v for k, v in stored.items() if k != "created_at"} == body
    finally:
        _close(svc)
