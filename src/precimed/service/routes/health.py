"""Liveness, readiness and Prometheus metrics.

`/readyz` answers without a token, so it says only ready / not ready and generic reasons (a missing database file
or registry folder, corrupted pages, an old schema, a bundle that failed re-verification); the per-model detail
(names and versions) is shown only to a caller who sends a valid token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from precimed.errors import PrecimedError
from precimed.service.auth import Principal
from precimed.service.container import Container
from precimed.service.registry import ModelNotFound
from precimed.service.routes.deps import ContainerDep, optional_principal, require
from precimed.service.schemas import Health, Readiness, ReadyChecks

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="liveness: the process answers (no token)", response_model=Health)
def healthz() -> Health:
    return Health()


@router.get("/readyz", summary="readiness: database and registry folder present, pages sound, schema current, "
            "bundles verified, production models load (no token; model names and versions only to a token)",
            response_model=Readiness, response_model_exclude_none=True,
            responses={503: {"model": Readiness, "description": "not ready, with generic reasons"}})
def readyz(container: ContainerDep, response: Response,
           principal: Annotated[Principal | None, Depends(optional_principal)]) -> Readiness:
    database, reasons = container.readiness_problems()
    checks = ReadyChecks(database=database)
    if database:
        try:
            _schema(container, checks, reasons)
            models = _models(container)
        except SQLAlchemyError:
            checks.database = False
            reasons.append("the database cannot be read")
        else:
            if any(v.startswith("not serving: ArtifactError") for v in models.values()):
                reasons.append("a production model failed verification")
            checks.models = models if principal is not None else None
    checks.reasons = reasons or None
    response.status_code = 503 if reasons else 200
    return Readiness(status="not ready" if reasons else "ready", checks=checks)


def _schema(container: Container, checks: ReadyChecks, reasons: list[str]) -> None:
    try:
        revision, head = container.db.revision(), container.db.head()
        checks.schema_current = revision == head
        checks.schema_revision = revision
    except Exception:  # a database that answers SELECT 1 but not Alembic's table
        checks.schema_current = False
    if not checks.schema_current:
        reasons.append("the database schema is not at the current revision")


def _models(container: Container) -> dict[str, str]:
    """Each model's production version: 'vN ok', 'no production version' or 'not serving: <error type>'."""
    models: dict[str, str] = {}
    for name in container.registry.names():
        try:
            info = container.registry.resolve(name)
            container.registry.load(info)
            models[name] = f"v{info.version} ok"
        except ModelNotFound:
            models[name] = "no production version"
        except PrecimedError as exc:
            models[name] = f"not serving: {type(exc).__name__}"
    return models


@router.get("/metrics", summary="Prometheus metrics (any role)", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
def metrics(container: ContainerDep, _: Annotated[Principal, Depends(require("metrics"))]) -> Response:
    return Response(generate_latest(container.metrics.registry), media_type=CONTENT_TYPE_LATEST)
