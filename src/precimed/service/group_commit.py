"""Group commit: the audited writes of many requests in one transaction and one fsync, without weakening durability.

A request hands its unit of work (the result rows it stores and the fields of its audit row) to the process's one
writer thread and waits. The writer takes everything queued (up to `max_batch` units), writes all of it in ONE
write transaction (each unit's audit row chained after the previous unit's, the audit head moved once), commits
once, and only then wakes each waiter with its audit seq: a response is still sent only after its audit row is
committed, as with one transaction per request, but a burst of N requests costs one commit instead of N.

- Two ways in: `submit` blocks the calling thread (a synchronous endpoint, run in the thread pool) and
  `submit_async` returns an asyncio future that the writer resolves on the caller's event loop (an async
  endpoint: no thread-pool hop per request, and one wake-up of the loop per batch rather than per unit). The
  units an event loop queues during one pass (the requests that arrived together) are handed to the writer at the
  start of its next pass, in one wake-up, so they are committed together: waking the writer at the first unit made
  it start a transaction of one while the others of the burst were still being scored.
- No added latency when idle: nothing ever sleeps to gather more. When nothing is being written and nothing is
  queued, the request's own thread writes its unit at once (a batch of one), which saves the two thread hand-offs
  to and from the writer (about 0.15 ms together on a small VM); units that arrive while a transaction is being
  written queue up, and the writer thread commits all of them together as soon as it ends. At most one
  transaction per process is written at a time.
- One bad unit does not sink the others: when a batch fails (an integrity error, say), it is retried unit by unit
  and only the units that fail again get their exception.
- Back-pressure: the queue is bounded; a unit that finds it full is refused at once with `CommitQueueFull` (HTTP
  503 with Retry-After), never queued without bound.
- Several processes (uvicorn workers) each have their own writer; the database serializes them on the audit head
  (SQLite: the write lock taken by BEGIN IMMEDIATE; PostgreSQL: SELECT … FOR UPDATE of the head row), so the chain
  stays one chain.
- `close()` refuses new units, lets the writer drain the queue, then stops it (at shutdown).
- A checkpoint of the audit head that falls due (every `audit_checkpoint_every` rows) is signed by the writer
  thread after the commit, never by a waiting request.

With anyio's default thread pool (40 threads per worker) at most 40 requests of a worker can wait here at once;
`commit_queue` (default 256) bounds the queue should the pool be made larger, and can be set lower to refuse
work sooner (503) while the database is slow.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, inspect, update

from precimed.errors import PrecimedError
from precimed.service.audit import AuditLog, Entry
from precimed.service.db import (
    AuditHead,
    AuditRow,
    Base,
    Database,
    DatabaseUnavailable,
    Insert,
    head_for_update,
)

log = logging.getLogger("precimed.service.group_commit")
_AUDIT = AuditRow.__table__
_HEAD = AuditHead.__table__
SHUTTING_DOWN = "the service is shutting down: no more audited writes are accepted"


class CommitQueueFull(PrecimedError):
    """Too many requests are waiting for their audit row to be committed (HTTP 503 with Retry-After)."""


def row_values(row: Base | Insert) -> tuple[Any, dict[str, Any]]:
    """(table, column values) of a row to insert with Core (an `Insert` as given; of an ORM row, every column, a
    primary key left unset left to the database)."""
    if isinstance(row, Insert):
        return row.table, row.values
    mapper = inspect(type(row))
    values = {}
    for attr in mapper.column_attrs:
        column = attr.columns[0]
        value = getattr(row, attr.key)
        if value is None and column.primary_key:
            continue
        values[column.key] = value
    return mapper.local_table, values


@dataclass(eq=False)
class Unit:
    """One request's audited write: the rows it stores and its audit entry; `seq` or `error` once written.

    A unit is waited for either by a thread (`wait`, a lock released by the writer) or, when it carries an asyncio
    `future`, on that future's event loop (the writer resolves it there; see `_resolve_futures`)."""

    entry: Entry
    rows: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    future: asyncio.Future[int] | None = None
    seq: int | None = None
    error: BaseException | None = None
    finished: bool = False
    _done: threading.Lock | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.future is None:
            self._done = threading.Lock()
            self._done.acquire()  # released by the writer once the unit is committed or failed

    def finish(self, seq: int | None = None, error: BaseException | None = None) -> None:
        """Record the outcome and wake a thread waiter (a future is resolved by `_resolve_futures`, in batches)."""
        self.seq, self.error, self.finished = seq, error, True
        if self._done is not None:
            self._done.release()
        elif self.future is not None:
            _resolve_futures([self])

    def outcome(self) -> int:
        """The committed seq, or the unit's error raised."""
        if self.error is not None or self.seq is None:
            raise self.error or DatabaseUnavailable("the audit record was not committed")
        return self.seq

    def wait(self) -> int:
        assert self._done is not None, "an async unit is awaited through its future"
        self._done.acquire()
        return self.outcome()


def _settle(units: list[Unit]) -> None:
    """(On the units' event loop) set each future's result or exception; a future already cancelled (the client
    went away) is left alone: its rows are committed all the same."""
    for unit in units:
        future = unit.future
        if future is None or future.done():
            continue
        if unit.error is not None or unit.seq is None:
            future.set_exception(unit.error or DatabaseUnavailable("the audit record was not committed"))
        else:
            future.set_result(unit.seq)


def _resolve_futures(units: list[Unit]) -> None:
    """Hand finished async units back to their event loops: one `call_soon_threadsafe` per loop (one wake-up of
    the loop for a whole batch)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Unit]] = {}
    for unit in units:
        if unit.future is not None:
            by_loop.setdefault(unit.future.get_loop(), []).append(unit)
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, group)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.warning("group commit: %d results finished after their event loop closed", len(group))


@dataclass
class Stats:
    """What the writer did (per process): batches committed, units written, the largest batch, units retried alone
    after their batch failed, units that failed, and units refused because the queue was full."""

    batches: int = 0
    units: int = 0
    largest: int = 0
    retried: int = 0
    failed: int = 0
    refused: int = 0


class GroupCommitter:
    """The per-process writer of audited results (see the module docstring)."""

    def __init__(self, db: Database, audit: AuditLog, *, max_queue: int = 256, max_batch: int = 128,
                 on_batch: Callable[[int], None] | None = None,
                 storage_problem: Callable[[], str | None] | None = None) -> None:
        if max_queue < 1 or max_batch < 1:
            raise ValueError("max_queue and max_batch must be at least 1")
        self.db = db
        self.audit = audit
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.on_batch = on_batch
        #: checked once per transaction: the database file (or what else the service stores into) deleted or
        #: replaced while running; never commit into a lost file
        self.storage_problem = storage_problem or db.file_problem
        self.stats = Stats()
        self._queue: deque[Unit] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._busy = False  # a transaction of this process is being written (by the writer or inline)
        self._checkpoint_due = False
        self._handing_over: set[asyncio.AbstractEventLoop] = set()  # loops whose queued units await `_hand_over`
        self._closing = False
        self._stopped = SHUTTING_DOWN

    # ----- the requests' side -------------------------------------------------------------------------------------
    def submit(self, entry: Entry, rows: Iterable[Base | Insert] = ()) -> int:
        """Write `rows` and the audit row of `entry` and return the audit seq once they are committed.

        When nothing is being written and nothing waits (an idle service), the caller's thread writes its unit at
        once, saving two thread hand-offs; otherwise the unit is queued for the writer thread, which commits it
        with the others that arrived meanwhile. Raises the unit's own error (e.g. IntegrityError), CommitQueueFull
        when the queue is full, or DatabaseUnavailable once the writer is closed."""
        unit = Unit(entry, [row_values(row) for row in rows])
        with self._cond:
            inline = not self._closing and not self._busy and not self._queue
            if inline:
                self._busy = True
            else:
                self._enqueue(unit)
        if inline:
            try:
                self._write([unit])
            finally:
                self._idle()
        return unit.wait()

    def _idle(self) -> None:
        """After an inline write: hand over to the writer what queued meanwhile (or a due checkpoint)."""
        with self._cond:
            self._busy = False
            if self._queue or self._checkpoint_due:
                self._wake_writer()  # queued meanwhile, or a checkpoint to sign
            elif self._closing:
                self._cond.notify_all()  # close() waits for this write to end (an idle writer needs no wake-up)

    def submit_async(self, entry: Entry, rows: Iterable[Base | Insert] = ()) -> asyncio.Future[int]:
        """Queue `rows` and the audit row of `entry` for the writer thread; the returned future (of the running
        event loop) gets the audit seq once they are committed, or the unit's error.

        Never written on the calling thread: the event loop must not wait for an fsync, nor for the database's
        write lock that another process (a second worker) may hold. CommitQueueFull or DatabaseUnavailable are
        raised at once, before anything is queued."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        unit = Unit(entry, [row_values(row) for row in rows], future=future)
        with self._cond:
            self._enqueue(unit, wake=False)
            hand_over = loop not in self._handing_over
            if hand_over:
                self._handing_over.add(loop)
        if hand_over:  # wake the writer once this pass of the loop has queued everything it will queue
            loop.call_soon(self._hand_over, loop)
        return future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """(On the event loop, at the start of its next pass) wake the writer for the units queued by the last pass:
        requests that arrived together are handed over, and committed, together."""
        with self._cond:
            self._handing_over.discard(loop)
            if self._queue:
                self._wake_writer()

    def _enqueue(self, unit: Unit, *, wake: bool = True) -> None:
        """(Holding the condition) queue a unit for the writer (and wake it, unless the caller will), or refuse it
        (closing, or the queue is full)."""
        if self._closing:
            raise DatabaseUnavailable(self._stopped)
        if len(self._queue) >= self.max_queue:
            self.stats.refused += 1
            raise CommitQueueFull(f"the service is overloaded: {len(self._queue)} requests are already "
                                  "waiting for their audit record to be committed; retry in a moment")
        self._queue.append(unit)
        if wake:
            self._wake_writer()

    def _wake_writer(self) -> None:
        """(Holding the condition) start the writer thread if needed and wake it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="precimed-group-commit", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    @property
    def writing(self) -> bool:
        """A transaction of this process is being written (by the writer thread or inline)."""
        with self._cond:
            return self._busy

    def pending(self) -> int:
        """Units queued and not yet taken by the writer."""
        with self._cond:
            return len(self._queue)

    @property
    def accepting(self) -> bool:
        """False while `close()` drains the queue (units are refused), or after the writer thread died."""
        with self._cond:
            return not self._closing

    def close(self, timeout: float | None = 60.0) -> None:
        """Refuse new units, let the writer commit everything queued, then stop it.

        Afterwards the committer is idle and accepts units again (an app whose lifespan is entered again, as a
        test client does, keeps working; uvicorn accepts no request after its shutdown began)."""
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error("group commit: the writer did not drain its queue in %s s", timeout)
                return  # still closing: refuse units rather than start a second writer
        with self._cond:
            if not self._cond.wait_for(lambda: not self._busy, timeout):  # a write in a request's own thread
                log.error("group commit: a write was still running after %s s", timeout)
                return
            if self._thread is thread:
                self._thread = None
                self._closing = False
                self._stopped = SHUTTING_DOWN

    # ----- the writer ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                batch: list[Unit] = []
                sign = False
                with self._cond:
                    while self._busy or not (self._queue or self._checkpoint_due or self._closing):
                        self._cond.wait()
                    if self._queue:
                        batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
                        self._busy = True
                    elif self._checkpoint_due:
                        sign, self._checkpoint_due = True, False
                    else:
                        return  # closing, nothing queued, nothing being written
                if sign:
                    self.audit.checkpoint_quietly()
                    continue
                try:
                    self._write(batch)
                finally:
                    with self._cond:
                        self._busy = False
        finally:
            with self._cond:  # the writer is gone (closed, or died): nobody may wait forever
                if not self._closing:
                    self._stopped = "the audit writer stopped; no audited write can be committed (see the log)"
                    log.error("group commit: the writer thread stopped unexpectedly")
                self._closing = True
                left = list(self._queue)
                self._queue.clear()
            for unit in left:
                unit.finish(error=DatabaseUnavailable("the audit writer stopped before this record was committed"))

    def _write(self, batch: list[Unit]) -> None:
        """Commit the batch in one transaction, or unit by unit when that fails; finish every unit."""
        try:
            try:
                first, last = self._transaction(batch)
            except Exception as exc:
                if len(batch) == 1:
                    self.stats.failed += 1
                    batch[0].finish(error=exc)
                    return
                log.warning("group commit: a batch of %d failed (%s); retrying its units one by one", len(batch),
                            type(exc).__name__)
                self._one_by_one(batch)
                return
            self._committed(batch, first, last)
        except BaseException as exc:  # never leave a waiter behind, whatever happened
            for unit in batch:
                if not unit.finished:
                    unit.finish(error=exc)
            raise

    def _one_by_one(self, batch: list[Unit]) -> None:
        for unit in batch:
            self.stats.retried += 1
            try:
                first, last = self._transaction([unit])
            except Exception as exc:
                self.stats.failed += 1
                unit.finish(error=exc)
            else:
                self._committed([unit], first, last)

    def _committed(self, batch: list[Unit], first: int, last: int) -> None:
        """Count, wake the waiters (their rows are durable), and leave a due checkpoint to the writer thread. The
        counts come first, so a request answered has already been counted."""
        stats = self.stats
        stats.batches += 1
        stats.units += len(batch)
        stats.largest = max(stats.largest, len(batch))
        if self.on_batch is not None:
            self.on_batch(len(batch))
        for seq, unit in enumerate(batch, start=first):
            unit.seq, unit.finished = seq, True
            if unit.future is None:
                unit.finish(seq=seq)
        _resolve_futures(batch)
        if self.audit.checkpoint_due(first, last):
            with self._cond:
                self._checkpoint_due = True
                self._wake_writer()

    def _transaction(self, batch: list[Unit]) -> tuple[int, int]:
        """Write the batch in one transaction; (first seq, last seq) once committed."""
        groups: dict[tuple[Any, tuple[str, ...]], list[dict[str, Any]]] = {}
        for unit in batch:
            for table, values in unit.rows:
                groups.setdefault((table, tuple(values)), []).append(values)
        with self.db.write() as tx:
            problem = self.storage_problem()
            if problem is not None:
                raise DatabaseUnavailable(f"storage unavailable: {problem}; an administrator must restore it")
            seq, prev = head_for_update(tx)
            for (table, columns), values in groups.items():
                tx.many(_insert(table, columns), values)
            rows = self.audit.chain(seq, prev, (unit.entry for unit in batch))
            tx.many(_AUDIT_INSERT, rows)
            tx.run(_HEAD_UPDATE, {"id": 1, "seq": rows[-1]["seq"], "row_hash": rows[-1]["row_hash"]})
        return rows[0]["seq"], rows[-1]["seq"]


_INSERTS: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _insert(table: Any, columns: tuple[str, ...]) -> Any:
    """INSERT INTO table (columns) with one named parameter per column (built once per table and column set)."""
    found = _INSERTS.get((table, columns))
    if found is None:
        found = _INSERTS[(table, columns)] = insert(table).values({name: bindparam(name) for name in columns})
    return found


_AUDIT_INSERT = _insert(_AUDIT, tuple(column.key for column in _AUDIT.columns))
_HEAD_UPDATE = (update(_HEAD).where(_HEAD.c.id == bindparam("id"))
                .values(seq=bindparam("seq"), row_hash=bindparam("row_hash")))
