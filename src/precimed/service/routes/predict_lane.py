"""The predict fast lane: the busiest request, served without FastAPI's routing and dependency machinery.

`POST /v1/models/{name}/predict` with a JSON body is what a hospital's systems send all day. FastAPI's route matching,
dependency solving, request and response wrappers cost about as much CPU as validating and scoring the patient does,
so this ASGI middleware, installed just outside FastAPI's exception layer and inside the service's own middleware (so
request ids, body limits, security headers, metrics and the request log still apply), answers the ordinary case
itself with the route's own code: the same token check, role check and rate limit (`routes.deps`), the same body
model (`PatientsIn`, parsed the way FastAPI parses it), the same `predict._run_async` (validate, score, store, audit,
answer after the commit) and the app's own exception handlers for its errors. On a database server the token
check, the registry read and the scoring take one hop to a worker thread together, where the route takes two.

Anything else goes the ordinary way, before the lane has done anything that shows: another path or method, a query
string, a body that is not declared JSON (a DICOM upload), a missing, unknown or revoked token, a role without the
predict permission, a token over its rate limit, or a body that is not valid JSON for `PatientsIn`. The ordinary route
then answers exactly as it always did (401, 403 audited, 429, 422 naming the field), since the lane's checks have no
side effects until the rate limit admits the request. The OpenAPI document still describes the ordinary route, which
is the contract; tests send the same requests down both ways and compare the answers.
"""

from __future__ import annotations

import json
import re

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from precimed.service.auth import PERMISSIONS, Principal
from precimed.service.container import Container, container_of
from precimed.service.routes.common import PatientsIn
from precimed.service.routes.predict import Prepared, _answer, _run_async, _target_and_prepare
from precimed.service.routes.predict import router as predict_router

PREDICT_PATH = re.compile(r"^/v1/models/([^/]+)/predict$")
_ALLOWED = PERMISSIONS["predict"]


class PredictLane:
    """ASGI middleware: serve a plain JSON predict request here, hand anything else to the app (module docstring)."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self._route: BaseRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _candidate(scope)
        if match is None:
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        if more is None:  # the client went away while sending
            return
        replay = _replaying(body, receive)
        try:
            response = await self._serve(scope, replay, send, match, body)
        except Exception as exc:  # what a route would raise: answered by the app's handler for it (503, 404, ...)
            response = await self._handled(exc, scope, replay)
        if response is not None:
            await response(scope, replay, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, match: tuple[str, str], body: bytes
                     ) -> Response | None:
        """The predict answer, or None once the request went the ordinary way (which has answered it)."""
        try:
            patients = PatientsIn.model_validate(json.loads(body))
        except (ValueError, ValidationError):  # ValueError: not JSON (JSONDecodeError, bad UTF-8)
            await self.app(scope, receive, send)
            return None
        container = container_of(self.fastapi_app)
        name, token = match
        if container.db.dialect == "sqlite":  # local reads of microseconds: on the event loop
            admitted = _admit(container, token)
            prepared = None
            failed = None
        else:  # the token check, the registry read and the scoring in one hop to a worker thread
            admitted, prepared, failed = await run_in_threadpool(_admit_and_prepare, container, token, name,
                                                                 patients)
        if admitted is None:
            await self.app(scope, receive, send)
            return None
        scope.setdefault("state", {})["principal"] = admitted  # what request.state.principal holds on a route
        scope["route"] = self._predict_route()
        if failed is not None:
            raise failed
        if prepared is None:
            return await _run_async(container, admitted, name, patients)
        return await _answer(container, admitted, prepared)

    def _predict_route(self) -> BaseRoute | None:
        """The predict route (its path names the request in metrics and the request log, as on the route)."""
        if self._route is None:
            self._route = next((r for r in predict_router.routes
                                if getattr(r, "path", None) == "/v1/models/{name}/predict"), None)
        return self._route

    async def _handled(self, exc: Exception, scope: Scope, receive: Receive) -> Response:
        """The response the app's exception handler gives `exc` (re-raised when it has none, as on a route: the
        service's outer middleware answers 500 and logs it)."""
        handlers = self.fastapi_app.exception_handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                result = handler(Request(scope, receive), exc)
                if not isinstance(result, Response):
                    result = await result
                return result
        raise exc


def _candidate(scope: Scope) -> tuple[str, str] | None:
    """(model name, bearer token) of a request the lane may serve: POST to a model's predict path, no query string,
    declared JSON, with a bearer token; None otherwise."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("query_string"):
        return None
    path = PREDICT_PATH.match(scope["path"])
    if path is None:
        return None
    content_type = token = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            if content_type is not None:
                return None  # sent twice: the ordinary route decides
            content_type = value
        elif key == b"authorization":
            if token is not None:
                return None
            token = value
    if content_type is None or content_type.split(b";")[0].strip().lower() != b"application/json":
        return None
    if token is None or token[:7].lower() != b"bearer ":
        return None
    try:
        return path.group(1), token[7:].decode("ascii")  # as FastAPI's HTTPBearer takes it: unstripped
    except UnicodeDecodeError:
        return None


async def _read_body(receive: Receive) -> tuple[bytes, bool | None]:
    """The whole body (the service's BodyLimit middleware, outside, stops one above the limit); more=None when the
    client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body already read, then waits on the client as the original would."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _admit(container: Container, token: str) -> Principal | None:
    """The token's principal when it exists, is not revoked, may predict and is within its rate limit; None sends
    the request the ordinary way, which answers 401, 403 (audited) or 429. Nothing is counted or written here
    unless the request is admitted (the rate limit then counts it, as on the route)."""
    principal = container.tokens.lookup(token)
    if principal is None or principal.role not in _ALLOWED:
        return None
    allowed, _ = container.limiter.allow(principal.token_id)
    return principal if allowed else None


def _admit_and_prepare(container: Container, token: str, name: str, patients: PatientsIn
                       ) -> tuple[Principal | None, Prepared | None, Exception | None]:
    """(In a worker thread, for a database server) `_admit`, then the version, its bundle and the scored request;
    what the second part raised (404, 413, ...) is returned, to be raised on the loop once the request is known to
    be the admitted principal's."""
    principal = _admit(container, token)
    if principal is None:
        return None, None, None
    try:
        return principal, _target_and_prepare(container, principal, name, patients), None
    except Exception as exc:
        return principal, None, exc
