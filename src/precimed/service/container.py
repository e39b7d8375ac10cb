"""The service container: everything a route needs (settings, database, audit log, registry, tokens, rate limiter,
metrics, vital-sign monitors and a few caches), built once per app by `Container.build(settings)`.

Routes receive it typed through the `ContainerDep` dependency (precimed.service.routes.deps); code holding the app
(middleware, tests) uses `container_of(app)`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from precimed.errors import ArtifactError
from precimed.service.audit import AuditChainError, AuditLog, Entry, stored_digests
from precimed.service.auth import Principal, RateLimiter, TokenStore
from precimed.service.checkpoints import CheckpointStore
from precimed.service.db import Base, Database, DatabaseUnavailable, describe, redact
from precimed.service.group_commit import CommitQueueFull, GroupCommitter
from precimed.service.metrics import Metrics
from precimed.service.registry import Registry, VersionInfo
from precimed.service.settings import ServiceSettings
from precimed.workflows.limited import EVALUATIONS, Limits
from precimed.workflows.patients import Planner, RiskFn, VitalsMonitors, load_planner, vitals_risk_fn
from precimed.workflows.privacy import service_key
from precimed.workflows.wards import BoardHub, WardBoard, Wards

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from precimed.service.routes.fhir import FhirMapping
    from precimed.service.schemas import ServingInfo

log = logging.getLogger("precimed.service")


def storage_problem(db: Database, registry_root: Path) -> str | None:
    """Cheap (two stats): the database file or the registry folder deleted or replaced while running."""
    problem = db.file_problem()
    if problem is None and not (registry_root / "models").is_dir():
        problem = "the registry folder is missing (deleted while running)"
    return problem


@dataclass
class Container:
    """Everything a route needs, built once per app."""

    settings: ServiceSettings
    db: Database
    audit: AuditLog
    registry: Registry
    tokens: TokenStore
    limiter: RateLimiter
    metrics: Metrics
    vitals: VitalsMonitors
    committer: GroupCommitter
    wards: Wards  # the ward board and its live-update hub (one per process), bounded like the monitors
    serving: dict[str, ServingInfo] = field(default_factory=dict)  # by metadata hash: a version's inputs, models
    fhir_mappings: dict[str, FhirMapping] = field(default_factory=dict)  # by model, version and mapping digest
    _planner: Planner | None = field(default=None, init=False, repr=False)
    _risk_fns: OrderedDict[tuple[str, int, str], RiskFn] = field(default_factory=OrderedDict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _integrity: tuple[float, str | None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(cls, settings: ServiceSettings) -> Container:
        """Open the database (running `alembic upgrade head` first unless settings.migrate is False), open the
        audit chain (AuditChainError where that would start a new chain over an old one) and wire the rest."""
        db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        try:
            if settings.migrate:
                db.migrate()
            db.check()
            audit = open_audit(settings, db)
            # one evaluation runner per service process: its limits are the settings of the app built last
            EVALUATIONS.limits = Limits(wall_seconds=settings.evaluate_seconds,
                                        cpu_seconds=math.ceil(settings.evaluate_seconds),
                                        memory_bytes=settings.evaluate_memory_bytes)
            metrics = Metrics()
            registry_root = Path(settings.registry)
            committer = GroupCommitter(db, audit, max_queue=settings.commit_queue, max_batch=settings.commit_batch,
                                       on_batch=metrics.commit_batch.observe,
                                       storage_problem=lambda: storage_problem(db, registry_root))
            return cls(settings=settings, db=db, audit=audit,
                       registry=Registry(settings.registry, db, audit, cache_size=settings.bundle_cache,
                                         verify_interval=settings.bundle_recheck_seconds),
                       tokens=TokenStore(db, audit),
                       limiter=RateLimiter(settings.rate_per_minute, settings.rate_burst),
                       metrics=metrics, committer=committer,
                       vitals=VitalsMonitors(settings.max_monitored_patients, max_streams=settings.max_vital_streams,
                                             max_idle_seconds=settings.vitals_idle_hours * 3600.0),
                       wards=Wards(WardBoard(settings.max_monitored_patients,
                                             max_idle_seconds=settings.vitals_idle_hours * 3600.0), BoardHub()))
        except SQLAlchemyError as exc:
            db.dispose()
            raise DatabaseUnavailable(f"database {redact(settings.database_url)}: {describe(exc)}") from None
        except BaseException:
            db.dispose()
            raise

    def commit(self, principal: Principal, action: str, *, model: str | None = None, version: int | None = None,
               input_digest: str | None = None, outcome: str = "ok", status: int = 200,
               detail: dict[str, Any] | None = None, rows: tuple[Base, ...] = ()) -> int:
        """Store `rows` and the audit record of the action in one transaction; return the audit seq once committed.

        The unit goes to the process's group-commit writer (precimed.service.group_commit), which commits it with
        the units of the requests that arrived together, in one transaction and one fsync, and returns only then:
        the caller answers after its audit row is durable. The record carries the digest of each stored prediction
        or plan (`detail.stored`), so an edited result is caught by verification. DatabaseUnavailable (503) first if
        the database file or the registry folder went away: nothing is answered that the audit trail would not keep;
        CommitQueueFull (503) when too many requests are already waiting for the writer."""
        entry = self._entry(principal, action, model, version, input_digest, outcome, status, detail, rows)
        try:
            seq = self.committer.submit(entry, rows)
        except CommitQueueFull:
            self.metrics.rejected.labels("commit_queue_full").inc()
            raise
        self.metrics.audit_rows.inc()
        return seq

    async def commit_async(self, principal: Principal, action: str, *, model: str | None = None,
                           version: int | None = None, input_digest: str | None = None, outcome: str = "ok",
                           status: int = 200, detail: dict[str, Any] | None = None, rows: tuple[Base, ...] = ()
                           ) -> int:
        """`commit` for an async endpoint: the same unit, handed to the writer thread and awaited on the event loop
        instead of blocking a thread. Returns only once the audit row is committed, exactly like `commit`."""
        entry = self._entry(principal, action, model, version, input_digest, outcome, status, detail, rows)
        try:
            future = self.committer.submit_async(entry, rows)
        except CommitQueueFull:
            self.metrics.rejected.labels("commit_queue_full").inc()
            raise
        seq = await future
        self.metrics.audit_rows.inc()
        return seq

    def _entry(self, principal: Principal, action: str, model: str | None, version: int | None,
               input_digest: str | None, outcome: str, status: int, detail: dict[str, Any] | None,
               rows: tuple[Base, ...]) -> Entry:
        """The audit entry of an action. That storage is still there is checked by the writer, once per
        transaction (`storage_problem`), not by every request."""
        stored = stored_digests(rows)
        if stored:
            detail = {**(detail or {}), "stored": stored}
        return Entry.of(actor=principal.token_id, role=principal.role, action=action, model=model, version=version,
                        input_digest=input_digest, outcome=outcome, status=status, detail=detail)

    # ----- health ---------------------------------------------------------------------------------------------
    def storage_problem(self) -> str | None:
        """Cheap (two stats): the database file or the registry folder deleted or replaced while running."""
        return storage_problem(self.db, self.registry.root)

    def ensure_storage(self) -> None:
        """DatabaseUnavailable (HTTP 503) if the database file or the registry folder went away."""
        problem = self.storage_problem()
        if problem is not None:
            raise DatabaseUnavailable(f"storage unavailable: {problem}; an administrator must restore it")

    def integrity_problem(self) -> str | None:
        """The database page check, reused for `integrity_check_seconds` (it reads the whole SQLite file)."""
        now = time.monotonic()
        cached = self._integrity
        if cached is not None and now - cached[0] < self.settings.integrity_check_seconds:
            return cached[1]
        problem = self.db.integrity_problem()
        self._integrity = (now, problem)
        return problem

    def readiness_problems(self) -> tuple[bool, list[str]]:
        """(database usable, why the service should not take traffic) in generic words: no model names, versions
        or paths, since /readyz answers without a token."""
        problems = [p for p in (self.storage_problem(),) if p]
        if not self.db.ping():
            return False, [*problems, "the database is unreachable"]
        integrity = self.integrity_problem()
        if integrity:
            problems.append(integrity.split(" (")[0])
        database_ok = not problems
        check = getattr(self.registry, "integrity_problems", None)
        if callable(check):
            found = check()
            if found:
                problems.append(f"{len(found)} registered bundle problem(s): re-verification failed")
        return database_ok, problems

    def planner(self) -> Planner:
        """The planning functions and packaged rules, loaded on first use (PlanningUnavailable if they cannot be)."""
        found = self._planner
        if found is None:
            with self._lock:
                found = self._planner = self._planner or load_planner()
        return found

    def risk_fn(self, info: VersionInfo) -> RiskFn:
        """The learned vital-sign risk of a registered version (the last `bundle_cache` versions used are kept)."""
        key = (info.name, info.version, info.metadata_sha256)
        self.registry.load(info)  # verified (and re-checked while served) like any prediction: 503 when tampered
        with self._lock:
            found = self._risk_fns.get(key)
            if found is not None:
                self._risk_fns.move_to_end(key)
                return found
        try:
            found = vitals_risk_fn(info.bundle_dir)
        except ArtifactError as exc:  # name the version, never the server's folder
            reason = getattr(exc, "reason", None) or "its files cannot be read"
            raise ArtifactError(f"{info.name} v{info.version}: {reason}; refusing to serve it") from None
        with self._lock:
            found = self._risk_fns.setdefault(key, found)
            while len(self._risk_fns) > self.settings.bundle_cache:
                self._risk_fns.popitem(last=False)
        return found

    def close(self) -> None:
        """Commit what the group-commit writer still holds, sign a last checkpoint of the audit head, then close the
        database connections (at shutdown)."""
        self.committer.close()
        try:
            self.audit.checkpoint()
        except Exception as exc:  # shutting down anyway; verification reports what is missing
            log.error("audit: no checkpoint at shutdown: %s", type(exc).__name__)
        self.db.dispose()


def open_audit(settings: ServiceSettings, db: Database, *, start: bool = True) -> AuditLog:
    """The audit log under its key, anchored to its checkpoint file(s).

    With `start` (the service and the CLI commands that write), a missing key is created (mode 600) when no chain
    exists yet, and the chain is opened: AuditChainError where that would begin a new chain over an old one.
    Without it (verification), a missing key is one line: the chain cannot be checked without it."""
    store = CheckpointStore(settings.audit_checkpoint_paths)
    key_path = settings.audit_key_path
    if not key_path.exists():
        if not start:
            raise AuditChainError(f"audit key file {key_path} not found: the audit chain cannot be verified "
                                  "without its key (set PRECIMED_AUDIT_KEY_FILE to where it is kept)")
        if any(path.exists() and path.stat().st_size for path in store.paths):
            raise AuditChainError(f"audit key file {key_path} is missing, but {store.paths[0]} records a chain "
                                  "made under a key: restore the key file; refusing to start a new chain")
    key, warnings = service_key(key_path, create=start)
    for warning in warnings:
        log.warning("audit: %s", warning)
    audit = AuditLog(db, key, store, every=settings.audit_checkpoint_every)
    if start:
        try:
            audit.open_chain()
        except OSError as exc:
            raise AuditChainError(f"audit checkpoint file {store.paths[0]}: cannot write it "
                                  f"({exc.strerror or type(exc).__name__})") from None
    return audit


def container_of(app: Starlette) -> Container:
    """The container of an app made by `create_app`."""
    found = getattr(app.state, "container", None)
    if not isinstance(found, Container):
        raise RuntimeError("this app was not made by precimed.service.create_app: it has no service container")
    return found
