"""The service container: everything a route needs (settings, database, audit log, registry, tokens, rate limiter,
metrics, vital-sign monitors and a few caches), built once per app by `Container.build(settings)`.

Routes receive it typed through the `ContainerDep` dependency (precimed.service.routes.deps); code holding the app
(middleware, tests) uses `container_of(app)`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from precimed.service.audit import AuditLog
from precimed.service.auth import Principal, RateLimiter, TokenStore
from precimed.service.db import Base, Database
from precimed.service.metrics import Metrics
from precimed.service.registry import Registry, VersionInfo
from precimed.service.settings import ServiceSettings
from precimed.workflows.patients import Planner, RiskFn, VitalsMonitors, load_planner, vitals_risk_fn

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from precimed.service.routes.fhir import FhirMapping
    from precimed.service.schemas import ServingInfo


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
    serving: dict[str, ServingInfo] = field(default_factory=dict)  # by metadata hash: a version's inputs, models
    fhir_mappings: dict[str, FhirMapping] = field(default_factory=dict)  # by model, version and mapping digest
    _planner: Planner | None = field(default=None, init=False, repr=False)
    _risk_fns: OrderedDict[tuple[str, int, str], RiskFn] = field(default_factory=OrderedDict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def build(cls, settings: ServiceSettings) -> Container:
        """Open the database (running `alembic upgrade head` first unless settings.migrate is False) and wire
        the rest to it."""
        db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        if settings.migrate:
            db.migrate()
        audit = AuditLog(db)
        return cls(settings=settings, db=db, audit=audit,
                   registry=Registry(settings.registry, db, audit, cache_size=settings.bundle_cache),
                   tokens=TokenStore(db), limiter=RateLimiter(settings.rate_per_minute, settings.rate_burst),
                   metrics=Metrics(), vitals=VitalsMonitors(settings.max_monitored_patients))

    def commit(self, principal: Principal, action: str, *, model: str | None = None, version: int | None = None,
               input_digest: str | None = None, outcome: str = "ok", status: int = 200,
               detail: dict[str, Any] | None = None, rows: tuple[Base, ...] = ()) -> int:
        """Store `rows` and the audit record of the action in one transaction; return the audit seq."""
        with self.db.transaction() as s:
            for row in rows:
                s.add(row)
            rec = self.audit.record(s, actor=principal.token_id, role=principal.role, action=action, model=model,
                                    version=version, input_digest=input_digest, outcome=outcome, status=status,
                                    detail=detail)
            seq = rec.seq
        self.metrics.audit_rows.inc()
        return seq

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
        with self._lock:
            found = self._risk_fns.get(key)
            if found is not None:
                self._risk_fns.move_to_end(key)
                return found
        found = vitals_risk_fn(info.bundle_dir)
        with self._lock:
            found = self._risk_fns.setdefault(key, found)
            while len(self._risk_fns) > self.settings.bundle_cache:
                self._risk_fns.popitem(last=False)
        return found

    def close(self) -> None:
        self.db.dispose()


def container_of(app: Starlette) -> Container:
    """The container of an app made by `create_app`."""
    found = getattr(app.state, "container", None)
    if not isinstance(found, Container):
        raise RuntimeError("this app was not made by precimed.service.create_app: it has no service container")
    return found
