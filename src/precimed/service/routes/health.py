"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from precimed.errors import PrecimedError
from precimed.service.auth import Principal
from precimed.service.registry import ModelNotFound
from precimed.service.routes.deps import ContainerDep, require
from precimed.service.schemas import Health, Readiness, ReadyChecks

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="liveness: the process answers (no token)", response_model=Health)
def healthz() -> Health:
    return Health()


@router.get("/readyz", summary="readiness: database reachable, schema current, production models load (no token)",
            response_model=Readiness, response_model_exclude_none=True,
            responses={503: {"model": Readiness, "description": "not ready"}})
def readyz(container: ContainerDep, response: Response) -> Readiness:
    checks = ReadyChecks(database=container.db.ping())
    if checks.database:
        try:
            revision, head = container.db.revision(), container.db.head()
            checks.schema_current = revision == head
            checks.schema_revision = revision
        except Exception:  # a database that answers SELECT 1 but not Alembic's table
            checks.schema_current = False
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
        checks.models = models
    ready = bool(checks.database and checks.schema_current) and not any(
        v.startswith("not serving: ArtifactError") for v in (checks.models or {}).values())
    response.status_code = 200 if ready else 503
    return Readiness(status="ready" if ready else "not ready", checks=checks)


@router.get("/metrics", summary="Prometheus metrics (any role)", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
def metrics(container: ContainerDep, _: Annotated[Principal, Depends(require("metrics"))]) -> Response:
    return Response(generate_latest(container.metrics.registry), media_type=CONTENT_TYPE_LATEST)
