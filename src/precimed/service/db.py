"""Persistence: SQLAlchemy 2 models, the engine (SQLite or PostgreSQL), sessions and Alembic migrations.

Tables
------
models, model_versions   registered bundles (the files live in the registry folder; rows hold path and hashes)
stages                   append-only stage history per model: `promote` pushes a version, `rollback` pops one
tokens                   bearer tokens, stored only as SHA-256 hashes, with a role and a revocation time
web_sessions             browser sign-ins of the web pages (hash of the session id, token, expiry, sign-out)
audit, audit_head        the append-only, hash-chained audit trail and its head (last seq and hash)
predictions, plans       results stored by id (inputs are kept only as digests)

The schema is created by Alembic (`migrations/`), never by `create_all`, so SQLite and PostgreSQL get the
same tables. Times are ISO 8601 text in UTC, so a row reads back byte-identical on both databases (the audit
hash covers them).

A SQLite file is created 0600 by us (its WAL and SHM files take the same mode) and then only ever opened, never
created again: if it is deleted while the service runs, new connections fail instead of starting an empty
database, and `problems()` (for /readyz) reports it missing or replaced. A corrupted page is a one-line
`DatabaseUnavailable`, never a traceback.

Two paths skip the ORM where a request pays for every microsecond: `Database.write()`, the transaction of the
group-commit writer (precimed.service.group_commit), and `Database.fetch_one()`, the token check. Both run Core
statements compiled once, on pooled driver connections, and raise driver errors as the SQLAlchemy errors the ORM
would raise (so they map to the same HTTP answers).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql import Executable

from precimed import jsonio
from precimed.errors import ConfigError, PrecimedError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
GENESIS = "0" * 64
MIGRATION_LOCK = 7_312_001  # PostgreSQL advisory lock key: one migrator at a time


class DatabaseUnavailable(PrecimedError):
    """The database cannot be used: unreachable, corrupted, deleted or replaced (CLI: one line, exit 2; HTTP 503)."""


def describe(exc: BaseException) -> str:
    """A database error's type and first line, without parameters (never a value from a row)."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).splitlines() or [""])[0][:200]
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__


@dataclass(frozen=True, slots=True)
class Insert:
    """A row to store, given as its table and column values rather than an ORM object: what the per-request hot
    path hands to `Container.commit` (building and inspecting an ORM object costs about as much as scoring a
    patient). Columns left out get the table's defaults."""

    table: Table
    values: dict[str, Any]

    @classmethod
    def of(cls, orm_class: type[Base], /, **values: Any) -> Insert:
        """The row of `orm_class` with these column values."""
        return cls(orm_class.__table__, values)  # type: ignore[arg-type]


def utcnow() -> str:
    """Now, UTC, ISO 8601 with microseconds (text sorts in time order)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def to_json(value: Any) -> str:
    """The stored-row JSON format (precimed.jsonio, the one JSON writer): compact, sorted keys, UTF-8 kept as is,
    NaN/inf as null, numpy as plain numbers. Audit digests and details hash this text, so it must not change."""
    return jsonio.dumps(value, compact=True, sort_keys=True)


def to_json_plain(value: Any) -> str:
    """`to_json` of a value the caller built from plain data with str keys (a served prediction): the same text,
    written without the conversion walk (`jsonio.dumps_plain`)."""
    return jsonio.dumps_plain(value, sort_keys=True)


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[str] = mapped_column(String(40))


class VersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
                      UniqueConstraint("model_id", "metadata_sha256", name="uq_model_versions_model_sha"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", name="fk_model_versions_model"))
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(512))
    bundle_ref: Mapped[str] = mapped_column(String(200))
    metadata_sha256: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(32))
    fhir_mapping_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    registered_at: Mapped[str] = mapped_column(String(40))
    registered_by: Mapped[str] = mapped_column(String(64))


class StageRow(Base):
    __tablename__ = "stages"
    __table_args__ = (Index("ix_stages_model_stage", "model_id", "stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", name="fk_stages_model"))
    stage: Mapped[str] = mapped_column(String(16))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", name="fk_stages_version"))
    action: Mapped[str] = mapped_column(String(16))
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[str] = mapped_column(String(40))
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)


class AuditRow(Base):
    __tablename__ = "audit"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    input_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str] = mapped_column(String(32))
    status: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    row_hash: Mapped[str] = mapped_column(String(64))


class PredictionRow(Base):
    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    bundle_ref: Mapped[str] = mapped_column(String(200))
    input_digest: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(Text)


class PlanRow(Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    input_digest: Mapped[str] = mapped_column(String(64))
    plan: Mapped[str] = mapped_column(Text)


# ----- engine ---------------------------------------------------------------------------------------------------
def normalize_url(url: str) -> str:
    """postgres:// and postgresql:// use psycopg 3; other URLs pass through."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """An engine for SQLite (WAL, fsync per `sqlite_synchronous`, explicit BEGIN) or PostgreSQL (psycopg 3)."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database URL {url!r} is not a valid SQLAlchemy URL, e.g. sqlite:///precimed.db or "
                          "postgresql://user:password@host:5432/db") from None
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if path is not None:
            _create_private(path)
            options = {"creator": _opener(path)}
        engine = create_engine(url, hide_parameters=True, pool_size=8, max_overflow=16, **options)
        _sqlite_events(engine, sqlite_synchronous)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(f"database {redact(url)}: only SQLite and PostgreSQL are supported")
    try:
        engine = create_engine(url, hide_parameters=True, pool_size=8, max_overflow=16)
    except (ImportError, ArgumentError) as exc:
        raise ConfigError(f"database {redact(url)}: {exc}") from None
    ping_when_idle(engine, IDLE_PING_SECONDS)
    return engine


#: at most this many event-loop threads keep a read connection of their own (`Database._loop_reader`)
MAX_LOOP_READERS = 4

#: a pooled PostgreSQL connection unused for longer than this is pinged before it is handed out
IDLE_PING_SECONDS = 10.0


def ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling without a round trip per checkout.

    A connection that sat in the pool for more than `idle_seconds` (a server restart, a firewall that drops idle
    sessions) is pinged with SELECT 1 when it is checked out and replaced when the ping fails (the pool retries with
    another); one in steady use goes straight to work. SQLAlchemy's `pool_pre_ping` pings on every checkout: on the
    service that was three extra round trips per prediction (the token check, the registry read, the commit), and
    turning them into this took the service's CPU per prediction on PostgreSQL from 1.34–1.43 ms to 1.10–1.26 ms
    (three runs each, benchmarks/service_speed.py's setup)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("checked_in")
        if since is not None and time.monotonic() - since > idle_seconds:
            idle_ping(dbapi_connection)


def idle_ping(dbapi_connection: Any) -> None:
    """SELECT 1 on a DBAPI connection, rolled back; DisconnectionError (the pool replaces it) if it is dead."""
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()
    except Exception:
        raise DisconnectionError("an idle pooled connection was found dead; the pool replaces it") from None


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a SQLite database file (None for other databases and in-memory SQLite)."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" or \
            parsed.database.startswith("file:"):
        return None
    return Path(parsed.database).resolve()


def _create_private(path: Path) -> None:
    """Create the database file with mode 0600 if it does not exist (SQLite gives its WAL and SHM the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _opener(path: Path) -> Any:
    """Connect to an existing file only (mode=rw): a file deleted while running is an error, never a new database."""
    uri = f"file:{quote(path.as_posix(), safe='/')}?mode=rw"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)

    return connect


def _sqlite_events(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # a writer takes the write lock up front, so two writers never deadlock on a lock upgrade
        immediate = conn.get_execution_options().get("precimed_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """The engine plus two session factories: `session()` for reads, `transaction()` for serialized writes; and
    `write()` / `fetch_one()`, the same without the ORM, for the hot path."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, sqlite_synchronous=sqlite_synchronous)
        self.dialect = self.engine.dialect.name
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(precimed_write=True)
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False)
        self.file = sqlite_file(self.url)
        self._identity = _identity(self.file)
        self._compiled: dict[int, tuple[Any, str, tuple[str, ...] | None]] = {}
        self._loop_readers: dict[int, Any] = {}  # thread id -> its kept read connection (`_loop_reader`)
        self._loop_readers_lock = threading.Lock()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (no write lock); it rolls back on exit unless the caller commits."""
        with self._reads() as s:
            yield s

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: committed (and, on SQLite FULL, fsynced) on success, rolled back on error."""
        with self._writes.begin() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[RawWrite]:
        """A write transaction on a pooled DBAPI connection, without the ORM, for the group-commit writer (a few
        statements per batch, each a fraction of the ORM's cost): SQLite takes the write lock up front (BEGIN
        IMMEDIATE). Committed (and, on SQLite FULL, fsynced) when the block ends, rolled back on error; a driver
        error is raised as the matching SQLAlchemy error (IntegrityError, OperationalError, …), without parameters."""
        raw = self._checkout()
        try:
            cur = raw.cursor()
            try:
                if self.dialect == "sqlite":
                    cur.execute("BEGIN IMMEDIATE")
                yield RawWrite(self, cur)
                raw.commit()
            except BaseException:
                with suppress(Exception):
                    raw.rollback()
                raise
            finally:
                with suppress(Exception):
                    cur.close()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            raise self._wrapped(exc, raw) from None
        finally:
            raw.close()  # back to the pool

    def compiled(self, statement: Executable) -> tuple[str, tuple[str, ...] | None]:
        """(SQL text, bind names in order for a positional driver, else None) of a statement whose parameters are
        all named `bindparam`s, compiled once for this database."""
        found = self._compiled.get(id(statement))
        if found is None or found[0] is not statement:
            compiled = statement.compile(dialect=self.engine.dialect)
            found = (statement, compiled.string, tuple(compiled.positiontup or ()) if compiled.positional else None)
            self._compiled[id(statement)] = found
        return found[1], found[2]

    def fetch_one(self, statement: Executable, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a simple read (plain column values, no type processing), on a pooled DBAPI connection
        without the ORM: for the per-request hot path (the token check)."""
        rows = self._fetch(statement, params, one=True)
        return rows[0] if rows else None

    def fetch_all(self, statement: Executable, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of a simple read, as plain tuples (no type processing, no ORM): for the audit writer's check of
        the rows it signs (a fraction of the cost of SQLAlchemy's result rows)."""
        return self._fetch(statement, params, one=False)

    def _fetch(self, statement: Executable, params: dict[str, Any], *, one: bool) -> list[tuple[Any, ...]]:
        sql, order = self.compiled(statement)
        kept = self._loop_reader()
        raw = kept or self._checkout()
        try:
            cur = raw.cursor()
            try:
                cur.execute(sql, _bind(order, params))
                if one:
                    row = cur.fetchone()
                    rows = [tuple(row)] if row is not None else []
                else:
                    rows = [tuple(row) for row in cur.fetchall()]
            finally:
                cur.close()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            wrapped = self._wrapped(exc, raw)
            if kept is not None:
                self._drop_loop_reader()
            raise wrapped from None
        finally:
            if kept is None:
                raw.close()  # back to the pool (which rolls back a driver-opened transaction)
        return rows

    def _loop_reader(self) -> Any:
        """(SQLite file) The read connection kept by the calling thread when it runs an event loop, else None.

        The predict lane reads the token and the registry stamp on the event loop (microseconds on SQLite); a
        connection of its own spares it the pool's checkout and check-in twice a request. It stays in autocommit
        mode (each SELECT its own read transaction, ended when its cursor closes), so it never holds back a WAL
        checkpoint; a driver error drops it. At most `MAX_LOOP_READERS` threads keep one (a test client starts a
        loop thread per client); `dispose()` closes them."""
        if self.file is None:
            return None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        me = threading.get_ident()
        kept = self._loop_readers.get(me)
        if kept is None and len(self._loop_readers) < MAX_LOOP_READERS:
            with self._loop_readers_lock:  # once per thread
                if len(self._loop_readers) < MAX_LOOP_READERS:
                    kept = self._checkout()
                    kept.detach()  # no longer the pool's: closed for good by `_drop_loop_reader` or `dispose`
                    self._loop_readers[me] = kept
        return kept

    def _drop_loop_reader(self) -> None:
        with self._loop_readers_lock:
            kept = self._loop_readers.pop(threading.get_ident(), None)
        if kept is not None:
            with suppress(Exception):
                kept.close()

    def _checkout(self) -> Any:
        """A pooled DBAPI connection; a failure to connect is the SQLAlchemy error the ORM would raise."""
        try:
            return self.engine.raw_connection()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(None, None, exc, self.engine.dialect.loaded_dbapi.Error, hide_parameters=True,
                                      dialect=self.engine.dialect) from None

    def _wrapped(self, exc: Exception, raw: Any) -> DBAPIError:
        """A driver error as the SQLAlchemy error the ORM would raise (no statement, no parameters); a connection
        that was lost is dropped from the pool."""
        dialect = self.engine.dialect
        lost = dialect.is_disconnect(exc, raw.dbapi_connection, None)
        if lost:
            with suppress(Exception):
                raw.invalidate()
        return DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                   connection_invalidated=lost, dialect=dialect)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def file_problem(self) -> str | None:
        """For a SQLite file: whether it is still the file opened at start (None if so; cheap, one stat)."""
        if self.file is None:
            return None
        found = _identity(self.file)
        if found is None:
            return "the database file is missing (deleted while running)"
        if self._identity is not None and found != self._identity:
            return "the database file was replaced while running"
        return None

    def integrity_problem(self) -> str | None:
        """Whether the database is readable and (SQLite) its pages are sound: `PRAGMA quick_check`."""
        try:
            with self.engine.connect() as conn:
                if self.dialect != "sqlite":
                    conn.execute(text("SELECT 1"))
                    return None
                found = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check")]
        except SQLAlchemyError as exc:
            return f"the database cannot be read ({describe(exc)})"
        if found != ["ok"]:
            detail = " ".join(" ".join(str(line) for line in found).split()) or "no answer"
            return f"the database file is corrupted (quick_check: {detail[:160]})"
        return None

    def check(self) -> None:
        """DatabaseUnavailable (one line) if the file went away or its pages are corrupted; used by the CLI."""
        problem = self.file_problem() or self.integrity_problem()
        if problem:
            raise DatabaseUnavailable(f"database {redact(self.url)}: {problem}")

    def migrate(self) -> None:
        """`alembic upgrade head`, one migrator at a time (PostgreSQL advisory lock / SQLite write lock)."""
        cfg = alembic_config(self.url)
        try:
            with self.engine.execution_options(precimed_write=True).begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                from alembic import command

                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"database {redact(self.url)}: cannot migrate ({describe(exc)})") from None

    def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()

    def dispose(self) -> None:
        with self._loop_readers_lock:
            kept, self._loop_readers = list(self._loop_readers.values()), {}
        for connection in kept:
            with suppress(Exception):
                connection.close()
        self.engine.dispose()


def _bind(order: tuple[str, ...] | None, params: dict[str, Any]) -> Any:
    return tuple(params[name] for name in order) if order is not None else params


class RawWrite:
    """The statements of one `Database.write()` transaction (compiled once per statement and database)."""

    def __init__(self, db: Database, cursor: Any) -> None:
        self.db = db
        self.cursor = cursor

    def one(self, statement: Executable, params: dict[str, Any]) -> tuple[Any, ...] | None:
        sql, order = self.db.compiled(statement)
        self.cursor.execute(sql, _bind(order, params))
        row = self.cursor.fetchone()
        return tuple(row) if row is not None else None

    def run(self, statement: Executable, params: dict[str, Any]) -> None:
        sql, order = self.db.compiled(statement)
        self.cursor.execute(sql, _bind(order, params))

    def many(self, statement: Executable, rows: list[dict[str, Any]]) -> None:
        sql, order = self.db.compiled(statement)
        if len(rows) == 1:
            self.cursor.execute(sql, _bind(order, rows[0]))
        else:
            self.cursor.executemany(sql, [_bind(order, row) for row in rows])


def _identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of a file, None if it does not exist."""
    if path is None:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def alembic_config(url: str) -> Any:
    """An Alembic Config built in code (no alembic.ini): our migrations folder and the URL."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


_HEAD_FOR_UPDATE = (select(AuditHead.__table__.c.seq, AuditHead.__table__.c.row_hash)
                    .where(AuditHead.__table__.c.id == bindparam("id")).with_for_update())
_HEAD_INSERT = AuditHead.__table__.insert().values(id=bindparam("id"), seq=bindparam("seq"),
                                                   row_hash=bindparam("row_hash"))


def head_for_update(tx: RawWrite) -> tuple[int, str]:
    """(seq, hash) of the audit head inside a `Database.write()` transaction, locked for update where the database
    supports it (PostgreSQL: SELECT … FOR UPDATE; SQLite: the transaction already holds the write lock); the genesis
    head is created if the row is missing."""
    row = tx.one(_HEAD_FOR_UPDATE, {"id": 1})
    if row is None:
        tx.run(_HEAD_INSERT, {"id": 1, "seq": 0, "row_hash": GENESIS})
        return 0, GENESIS
    return int(row[0]), str(row[1])


def current_head(session: Session) -> AuditHead:
    """The audit head row, locked for update where the database supports it."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, row_hash=GENESIS)
        session.add(head)
        session.flush()
    return head


class ServedFeatureRow(Base):
    """One patient scored by a tabular prediction (table `served_features`), kept so drift can be computed from the
    service's own traffic and outcomes attached later (precimed.service.served).

    `features` is the encoded vector the model scored (JSON list of floats, null for missing, in the order of the
    bundle's `metadata["feature_names_out"]`, which is not repeated per row); `outputs` the model's numeric outputs;
    `outcome` (JSON), `outcome_at` and `outcome_actor` (a token id) are filled by `POST /v1/outcomes`. No patient
    id and no free text: a row is reached by its prediction's id (UUIDv7) and the patient's index in that request."""

    __tablename__ = "served_features"
    __table_args__ = (UniqueConstraint("prediction_id", "patient_index", name="uq_served_features_prediction_index"),
                      Index("ix_served_features_model_created", "model", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[str] = mapped_column(String(32))
    patient_index: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    features: Mapped[str] = mapped_column(Text)
    outputs: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    outcome_actor: Mapped[str | None] = mapped_column(String(64), nullable=True)


class WebSessionRow(Base):
    """One browser sign-in (table `web_sessions`, precimed.service.web.session): the SHA-256 of the random session
    id the cookie carries (never the id itself), the token it was made from and that token's role, when it was made
    and when it ends, and when it was signed out. A session is valid only while its token is unrevoked too: the
    lookup joins `tokens`, so revoking a token ends its sessions at once."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_token", "token_id"), Index("ix_web_sessions_expires", "expires_at"))

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32), ForeignKey("tokens.id", name="fk_web_sessions_token"))
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str] = mapped_column(String(40))
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
