"""The FastAPI app: `create_app(settings)` migrates the database, wires the registry, tokens, audit and routes.

Logs carry request ids, token ids, routes, statuses and timings: never a body, a patient id or an error message
that could quote a value.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
import traceback
from contextlib import suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from precimed import __version__, jsonio
from precimed.errors import ArtifactError, ConfigError, DataError, PrecimedError, RuleError
from precimed.service.container import Container, container_of
from precimed.service.db import DatabaseUnavailable
from precimed.service.group_commit import CommitQueueFull
from precimed.service.registry import ModelNotFound, RegistryConflict
from precimed.service.routes import admin, cds, fhir, health, models, outcomes, plans, predict, vitals
from precimed.service.routes.common import ApiError
from precimed.service.routes.predict_lane import PredictLane
from precimed.service.settings import ServiceSettings
from precimed.service.web import install as install_web
from precimed.service.web import is_web_path
from precimed.workflows.patients import PlanningUnavailable

log = logging.getLogger("precimed.service")
UPLOAD_PATHS = ("/v1/models",)


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service app; runs `alembic upgrade head` first (unless settings.migrate is False). Its container
    (`container_of(app)`) holds the database, registry, tokens, metrics and monitors."""
    container = Container.build(settings)
    app = FastAPI(
        title="precimed", version=__version__,
        # no redirect from "/path/" to "/path": Starlette builds its Location from the request's Host header, so a
        # hostile Host would be echoed back as a redirect target; a wrong path is a plain 404
        redirect_slashes=False,
        description="Registered clinical risk models: predictions, explanations, treatment plans, vital-sign alerts, "
                    "FHIR R4 input and CDS Hooks, with bearer tokens, roles and a hash-chained audit trail.",
    )
    app.state.container = container
    app.router.add_event_handler("shutdown", container.close)  # a last audit checkpoint, then close the database
    # predict first: FastAPI tries the routes in this order, so the busiest route is matched without first trying
    # every other router's paths (about 30 µs a request with predict third)
    for module in (predict, health, models, plans, vitals, fhir, cds, admin):
        app.include_router(module.router)
    outcomes.install(app)  # POST /v1/outcomes; retention purge of served feature rows at start
    _handlers(app)
    app.add_middleware(PredictLane, fastapi_app=app)  # innermost of ours: inside the body limit, metrics and log
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(Observe, container=container)
    install_web(app)  # the web pages: /, /signin, /static, PAGE_MODULES; HTML errors and security headers
    return app


def configure_logging() -> None:
    """One line per request from precimed.service at PRECIMED_LOG_LEVEL (default info); Alembic kept quiet."""
    level = os.environ.get("PRECIMED_LOG_LEVEL", "info").upper()
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("precimed.service").setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` with several workers: PRECIMED_REGISTRY (and PRECIMED_DB_URL, …)."""
    configure_logging()
    registry = os.environ.get("PRECIMED_REGISTRY")
    if not registry:
        raise ConfigError("PRECIMED_REGISTRY is not set")
    return create_app(ServiceSettings.from_env(registry))


# ----- errors ---------------------------------------------------------------------------------------------------
def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    return _json(status, {"message": message, "field": field, "patients": [], **extra})


def _validation_body(exc: RequestValidationError) -> dict[str, Any]:
    errors: list[dict[str, Any]] = []
    seen: set[tuple[str, int | None]] = set()
    for e in exc.errors():
        loc = [x for x in e.get("loc", ()) if x != "body"]
        index = None
        if e.get("type") == "json_invalid":  # loc is ("body", character offset): name the body, say where
            name, at = "body", loc[0] if loc and isinstance(loc[0], int) else None
            reason = str((e.get("ctx") or {}).get("error", "")).strip()[:100]
            e = {"msg": "the body is not valid JSON" + (f" ({reason}" if reason else " (") +
                 (f" at character {at})" if at is not None else ")")}
        elif len(loc) >= 2 and loc[0] == "patients" and isinstance(loc[1], int):
            index = loc[1]
            name = str(loc[2]) if len(loc) >= 3 else "patients"
        else:
            name = ".".join(str(x) for x in loc) or "body"
        if (name, index) in seen:
            continue
        seen.add((name, index))
        errors.append({"field": name, "message": str(e.get("msg", "invalid")),
                       "patients": [] if index is None else [{"index": index, "patient_id": None}]})
    errors = errors[:50]
    patients = sorted({p["index"] for e in errors for p in e["patients"]})
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    fields = list(dict.fromkeys(e["field"] for e in errors))
    return {"message": f"invalid request in field(s) {fields[:10]}: {first['message']}", "field": first["field"],
            "patients": [{"index": i, "patient_id": None} for i in patients], "errors": errors}


_WEB_MESSAGES = {404: "There is no page at this address.", 405: "This page cannot be used that way."}
_KEEP_HEADERS = ("retry-after",)


def _web_aware(handler: Any) -> Any:
    """The handler for the API; on a web path (precimed.service.web.is_web_path) the same status and message as an
    HTML error page, so a browser never sees a JSON error."""

    async def handle(request: Request, exc: Exception) -> Response:
        response = await handler(request, exc)
        if not is_web_path(request.url.path):
            return response
        from precimed.service.web.session import current_user
        from precimed.service.web.templating import render_error

        if not isinstance(exc, (DatabaseUnavailable, SQLAlchemyError, CommitQueueFull)):
            with suppress(Exception):  # the page's header names who is signed in; never fail an error page on it
                await current_user(request, container_of(request.app))
        status = response.status_code
        try:
            message = str(json.loads(bytes(response.body)).get("message") or "")
        except (ValueError, AttributeError):
            message = ""
        if isinstance(exc, StarletteHTTPException) or not message:
            message = _WEB_MESSAGES.get(status, message or "The request could not be completed.")
        headers = {k: v for k, v in response.headers.items() if k.lower() in _KEEP_HEADERS}
        return render_error(request, status, message, headers=headers or None)

    return handle


def _handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status, exc.body(), exc.headers)

    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _json(422, _validation_body(exc))

    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _json(exc.status_code, {"message": str(exc.detail), "field": None, "patients": []},
                     getattr(exc, "headers", None))

    async def not_found(_: Request, exc: ModelNotFound) -> JSONResponse:
        return _error(404, str(exc), "name")

    async def conflict(_: Request, exc: RegistryConflict) -> JSONResponse:
        return _error(409, str(exc))

    async def artifact(_: Request, exc: ArtifactError) -> JSONResponse:
        log.error("artifact check failed: %s", type(exc).__name__)
        # a BundleInvalid's `reason` names files inside the bundle only (its str() adds the server's folder); the
        # registry's own errors name the model and version
        reason = getattr(exc, "reason", None) or str(exc)
        return _error(503, f"model files failed verification; an administrator must check the registry ({reason})")

    async def data_error(_: Request, exc: DataError) -> JSONResponse:
        return _error(422, str(exc), exc.column, rows=[str(r) for r in exc.rows])

    async def user_error(_: Request, exc: PrecimedError) -> JSONResponse:
        return _error(422, str(exc))

    async def unavailable(_: Request, exc: PlanningUnavailable) -> JSONResponse:
        return _error(501, str(exc))

    app.add_exception_handler(ApiError, _web_aware(api_error))
    app.add_exception_handler(RequestValidationError, _web_aware(validation))
    app.add_exception_handler(StarletteHTTPException, _web_aware(http_error))
    app.add_exception_handler(ModelNotFound, _web_aware(not_found))
    app.add_exception_handler(RegistryConflict, _web_aware(conflict))
    app.add_exception_handler(ArtifactError, _web_aware(artifact))
    app.add_exception_handler(DataError, _web_aware(data_error))
    app.add_exception_handler(ConfigError, _web_aware(user_error))
    app.add_exception_handler(RuleError, _web_aware(user_error))
    app.add_exception_handler(PlanningUnavailable, _web_aware(unavailable))

    async def database_down(_: Request, exc: Exception) -> JSONResponse:  # never a 500 with rows that vanish
        log.error("database unavailable: %s", type(exc).__name__)
        return _error(503, "the database or the registry is unavailable; an administrator must check /readyz")

    async def overloaded(_: Request, exc: CommitQueueFull) -> JSONResponse:
        log.warning("group commit queue full: request refused")
        return _json(503, {"message": str(exc), "field": None, "patients": []}, {"Retry-After": "1"})

    app.add_exception_handler(DatabaseUnavailable, _web_aware(database_down))
    app.add_exception_handler(CommitQueueFull, _web_aware(overloaded))
    app.add_exception_handler(SQLAlchemyError, _web_aware(database_down))


# ----- middleware -----------------------------------------------------------------------------------------------
class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for a body above the limit, whether it declares its length or streams it: `max_upload_bytes` for a bundle
    upload, `max_image_bytes` for a DICOM file sent to a predict route, `max_body_bytes` for everything else."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS
        image = not upload and predict.is_image_upload(scope)
        if image:  # a DICOM file for an imaging model: its own limit, stated in the 413
            limit, too_large_body = self.settings.max_image_bytes, _image_too_large(self.settings.max_image_bytes)
        else:
            limit = self.settings.max_upload_bytes if upload else self.settings.max_body_bytes
            too_large_body = _too_large(limit)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_json(send, 400, {"message": "invalid Content-Length", "field": None, "patients": []})
                return
            if size > limit:
                await _send_json(send, 413, too_large_body)
                return
        seen = 0
        started = too_large = False

        async def limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_large = True
                    raise _TooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if too_large:  # the app turned our exception into its own error response: answer 413 instead
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _send_json(send, 413, too_large_body)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, too_large_body)


def _too_large(limit: int) -> dict[str, Any]:
    return {"message": f"request body larger than {limit} bytes; send fewer patients per request", "field": None,
            "patients": []}


def _image_too_large(limit: int) -> dict[str, Any]:
    return {"message": f"DICOM file larger than {limit} bytes, the limit of an image upload (max_image_bytes, "
                       "PRECIMED_MAX_IMAGE_BYTES); send one smaller file", "field": "body", "patients": []}


async def _send_json(send: Send, status: int, body: dict[str, Any], request_id: str | None = None) -> None:
    data = jsonio.dumps(body, compact=True).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _send_html(send: Send, status: int, request_id: str) -> None:
    """The HTML error page of an unexpected failure on a web path (the API answers JSON)."""
    from precimed.service.web.templating import error_html

    data = error_html(status, "Something went wrong", "The page failed; the failure was logged. Try again, or "
                      "tell an administrator the request id below.", request_id).encode()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(data)).encode()),
               (b"x-request-id", request_id.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


_REQUEST_TAG = os.urandom(4).hex()  # per process (each uvicorn worker imports this module afresh)
_REQUEST_COUNT = itertools.count(1)


def next_request_id() -> str:
    """A request id unique across the service's processes: a random per-process tag and a counter (16 hex
    characters). It only ties a log line to a response; a counter costs no system call, unlike uuid4."""
    return f"{_REQUEST_TAG}{next(_REQUEST_COUNT) & 0xFFFFFFFF:08x}"


class Observe:
    """Request id, timing, Prometheus counters and one log line per request; a 500 for anything unexpected,
    logged by type and place only (an exception message could quote patient data)."""

    def __init__(self, app: ASGIApp, container: Container) -> None:
        self.app = app
        self.container = container

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = next_request_id()
        status = 500
        started = False

        async def observed(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception as exc:
            status = 500
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            log.error("request %s failed: %s at %s:%s", request_id, type(exc).__name__,
                      where.filename if where else "?", where.lineno if where else "?")
            principal = (scope.get("state") or {}).get("principal")
            route = scope.get("route")
            if principal is not None:
                try:
                    await run_in_threadpool(self.container.commit, principal,
                                            f"error:{scope['method']} {getattr(route, 'path', 'unmatched')}"[:64],
                                            outcome="error", status=500, detail={"request_id": request_id})
                except Exception:  # the database itself may be what failed
                    log.error("request %s: could not audit the failure", request_id)
            if not started and is_web_path(scope["path"]):
                await _send_html(send, 500, request_id)
            elif not started:
                await _send_json(send, 500, {"message": f"internal error (request {request_id}); it was logged",
                                             "field": None, "patients": []}, request_id)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            m = self.container.metrics
            m.requests.labels(scope["method"], route, str(status)).inc()
            m.latency.labels(scope["method"], route).observe(elapsed)
            principal = (scope.get("state") or {}).get("principal")
            log.info("%s %s %s %.1fms token=%s req=%s", scope["method"], route, status, elapsed * 1000,
                     principal.token_id if principal else "-", request_id)
