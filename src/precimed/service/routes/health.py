"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from precimed.errors import PrecimedError
from precimed.service.auth import Principal
from precimed.service.registry import ModelNotFound
from precimed.service.routes.deps import ServiceDep, require

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="liveness: the process answers (no token)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="readiness: database reachable, schema current, production models load (no token)",
            responses={503: {"description": "not ready"}})
def readyz(svc: ServiceDep) -> JSONResponse:
    checks: dict[str, Any] = {"database": svc.db.ping()}
    if checks["database"]:
        try:
            revision, head = svc.db.revision(), svc.db.head()
            checks["schema"] = revision == head
            checks["schema_revision"] = revision
        except Exception:  # a database that answers SELECT 1 but not Alembic's table
            checks["schema"] = False
        models: dict[str, str] = {}
        for name in svc.registry.names():
            try:
                info = svc.registry.resolve(name)
                svc.registry.load(info)
                models[name] = f"v{info.version} ok"
            except ModelNotFound:
                models[name] = "no production version"
            except PrecimedError as exc:
                models[name] = f"not serving: {type(exc).__name__}"
        checks["models"] = models
    ready = bool(checks["database"] and checks.get("schema")) and not any(
        v.startswith("not serving: ArtifactError") for v in checks.get("models", {}).values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics (any role)", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(svc: ServiceDep, _: Annotated[Principal, Depends(require("metrics"))]) -> Response:
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
