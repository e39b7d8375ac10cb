"""Browser sessions of the web pages: who is signed in (`page_user`), and the CSRF check of every state-changing
POST (`csrf_protect`).

A person signs in by pasting a bearer token (`precimed tokens create`); the server then keeps a row in
`web_sessions` holding only the SHA-256 of a random session id, and the browser keeps the id in the cookie
`precimed_session` (HttpOnly, SameSite=Strict, Secure over https). Each page asks the database once (one indexed
read joined to the token, like the API's token check): a session ends when it is signed out, when
`session_minutes` have passed since sign-in (an absolute limit, not an idle one), and at once when its token is
revoked, by the API, the CLI or another worker.

CSRF: a signed-in page carries `sha256("precimed-csrf:" + session id)` as its form token (the page never holds the
session id itself); before sign-in the sign-in form uses a random double-submit cookie `precimed_csrf`. A POST must
send the token as the form field `csrf_token` or the header `X-CSRF-Token` (htmx requests get the header from
static/precimed.js); anything else is a 403 page.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from sqlalchemy import bindparam, select
from sqlalchemy.sql import Executable
from starlette.concurrency import run_in_threadpool

from precimed.service.auth import PERMISSIONS, Principal
from precimed.service.container import Container
from precimed.service.db import TokenRow, WebSessionRow
from precimed.service.routes.deps import ContainerDep

log = logging.getLogger("precimed.service")

SESSION_COOKIE = "precimed_session"
CSRF_COOKIE = "precimed_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_MAX_COOKIE = 100  # a session id is 43 characters; anything much longer is not ours
_SESSION = (select(WebSessionRow.token_id, TokenRow.role, WebSessionRow.expires_at, WebSessionRow.revoked_at,
                   TokenRow.revoked_at)
            .join(TokenRow, TokenRow.id == WebSessionRow.token_id)
            .where(WebSessionRow.id_sha256 == bindparam("sha")))


@dataclass(frozen=True)
class WebUser:
    """The signed-in person: their token's principal (public token id and role), the hash of their session id (the
    `web_sessions` key) and the CSRF token their forms must send back."""

    principal: Principal
    session_hash: str
    csrf_token: str

    @property
    def role(self) -> str:
        return self.principal.role

    @property
    def token_id(self) -> str:
        return self.principal.token_id

    def may(self, permission: str) -> bool:
        return self.principal.may(permission)


class SignInRequired(Exception):
    """No valid session: answered with 303 to /signin?next=<the page asked for>, or, to an htmx request, with
    `HX-Redirect` so the whole page goes to the sign-in form rather than a fragment (install() registers it)."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign-in required")
        self.next_path = next_path


class PageError(Exception):
    """An error a web page answers as an HTML page (403, 429, ...): status, a message for the person, headers."""

    def __init__(self, status: int, message: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title
        self.headers = headers


# ----- clock and ids --------------------------------------------------------------------------------------------
def now() -> datetime:
    """The current time (UTC); tests may monkeypatch this module's `now` to move the clock."""
    return datetime.now(UTC)


def iso(when: datetime) -> str:
    """The stored-time format of precimed.service.db (ISO 8601, UTC, microseconds: text sorts in time order)."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def session_hash(session_id: str) -> str:
    """The `web_sessions` key of a session id (the id itself is never stored)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def session_csrf(session_id: str) -> str:
    """The CSRF token of a session: derived from its id, so nothing more is stored and a page that shows the token
    does not show the id."""
    return hashlib.sha256(b"precimed-csrf:" + session_id.encode()).hexdigest()


def _cookie(request: Request, name: str) -> str | None:
    value = request.cookies.get(name)
    if not value or len(value) > _MAX_COOKIE or not value.isascii():
        return None
    return value


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https: uvicorn run with --ssl-*, or behind a proxy whose
    X-Forwarded-Proto uvicorn trusts (its --forwarded-allow-ips / FORWARDED_ALLOW_IPS; 127.0.0.1 by default)."""
    return request.url.scheme == "https"


def safe_next(value: str | None) -> str:
    """`value` if it is a path on this site (one leading '/', no scheme, no host, no backslash, no control
    character), else '/': a sign-in never redirects to another site."""
    if not value or len(value) > 1000 or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def here(request: Request) -> str:
    """The path (and query) of the request, for the `next` of a sign-in redirect; for an htmx request, that of
    the page it was made from (HX-Current-URL), when that page is on this site."""
    current = request.headers.get("HX-Current-URL") if request.headers.get("HX-Request") == "true" else None
    if current:
        parts = urlsplit(current)
        if parts.netloc == request.url.netloc:
            return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return safe_next(path)


# ----- sessions -------------------------------------------------------------------------------------------------
async def fetch_one(container: Container, statement: Executable, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """One small indexed read (`Database.fetch_one`). On SQLite a read of a local file, done on the event loop; on
    a database server a network round trip, done in the thread pool (as the API's token check)."""
    if container.db.dialect == "sqlite":
        return container.db.fetch_one(statement, params)
    return await run_in_threadpool(container.db.fetch_one, statement, params)


async def current_user(request: Request, container: Container, *, fresh: bool = False) -> WebUser | None:
    """The signed-in person of this request, or None (no cookie, unknown, signed out, expired, or its token
    revoked). Cached on `request.state.web_user` for the rest of the request; `fresh=True` asks the database again
    (a long-lived event stream checking that its session still stands)."""
    state = request.state
    if not fresh and getattr(state, "web_user_checked", False):
        return getattr(state, "web_user", None)
    state.web_user_checked = True
    state.web_user = None
    session_id = _cookie(request, SESSION_COOKIE)
    if session_id is None:
        return None
    sha = session_hash(session_id)
    row = await fetch_one(container, _SESSION, {"sha": sha})
    if row is None:
        return None
    token_id, role, expires_at, revoked_at, token_revoked_at = row
    if revoked_at is not None or token_revoked_at is not None or str(expires_at) <= iso(now()):
        return None
    user = WebUser(Principal(str(token_id), str(role)), sha, session_csrf(session_id))
    state.web_user = user
    return user


def page_user(permission: str | None = None) -> Callable[..., Awaitable[WebUser]]:
    """A dependency for a web page: the signed-in `WebUser` whose role holds `permission` (None: any role).

    No valid session: 303 to /signin?next=<this page>. Over the token's rate limit: a 429 page. A role without
    the permission: a 403 page, audited as `denied:<permission>` exactly like the API's refusal."""
    roles = PERMISSIONS[permission] if permission is not None else None

    async def dependency(request: Request, container: ContainerDep) -> WebUser:
        user = await current_user(request, container)
        if user is None:
            raise SignInRequired(here(request))
        request.state.principal = user.principal  # request logs and the audit of an unexpected failure
        allowed, wait = container.limiter.allow(user.token_id)
        if not allowed:
            container.metrics.rejected.labels("rate_limited").inc()
            raise PageError(429, f"too many requests from this sign-in; retry in {wait} s", title="Slow down",
                            headers={"Retry-After": str(wait)})
        if roles is not None and user.role not in roles:
            container.metrics.rejected.labels("forbidden").inc()
            await run_in_threadpool(container.commit, user.principal, f"denied:{permission}", outcome="denied",
                                    status=403, detail={"route": request.url.path[:200]})
            raise PageError(403, f"your role ({user.role}) may not use this page: it needs one of {sorted(roles)}",
                            title="Not allowed")
        return user

    return dependency


def signin_url(next_path: str) -> str:
    return "/signin" if next_path == "/" else f"/signin?next={quote(next_path, safe='')}"


def create_session(container: Container, principal: Principal) -> tuple[str, datetime]:
    """Store a new session of `principal` with its audit row (`web_signin`) in one transaction; return the session
    id (for the cookie only) and when it ends. Sessions that ended over a day ago are deleted first."""
    started = now()
    expires = started + timedelta(minutes=container.settings.session_minutes)
    session_id = new_session_id()
    row = WebSessionRow(id_sha256=session_hash(session_id), token_id=principal.token_id, role=principal.role,
                        created_at=iso(started), expires_at=iso(expires), revoked_at=None)
    purge_sessions(container)
    container.commit(principal, "web_signin", detail={"expires_at": row.expires_at}, rows=(row,))
    return session_id, expires


def purge_sessions(container: Container) -> int:
    """Delete sessions that ended (expired) more than a day ago; the audit trail keeps their sign-ins."""
    cutoff = iso(now() - timedelta(days=1))
    with container.db.transaction() as s:
        done = s.execute(WebSessionRow.__table__.delete().where(WebSessionRow.expires_at < cutoff))
        return int(done.rowcount or 0)


def end_session(container: Container, user: WebUser) -> bool:
    """Sign out: mark the session revoked, with its audit row (`web_signout`) in the same transaction."""
    table = WebSessionRow.__table__
    with container.db.transaction() as s:
        done = s.execute(table.update().where(table.c.id_sha256 == user.session_hash, table.c.revoked_at.is_(None))
                         .values(revoked_at=iso(now())))
        if not done.rowcount:
            return False
        container.audit.record(s, actor=user.token_id, role=user.role, action="web_signout", detail={})
        return True


# ----- CSRF -----------------------------------------------------------------------------------------------------
def csrf_token_for(request: Request) -> str:
    """The CSRF token the page being rendered must embed in its forms.

    Signed in (or holding a session cookie, even a stale one): the session's token. Otherwise the double-submit
    cookie `precimed_csrf`, made now if the browser has none (render() then sets it on the response)."""
    user = getattr(request.state, "web_user", None)
    if isinstance(user, WebUser):
        return user.csrf_token
    session_id = _cookie(request, SESSION_COOKIE)
    if session_id is not None:
        return session_csrf(session_id)
    found = _cookie(request, CSRF_COOKIE) or getattr(request.state, "new_csrf_cookie", None)
    if found:
        return found
    made = secrets.token_urlsafe(32)
    request.state.new_csrf_cookie = made
    return made


def _expected_csrf(request: Request) -> str | None:
    session_id = _cookie(request, SESSION_COOKIE)
    if session_id is not None:
        return session_csrf(session_id)
    return _cookie(request, CSRF_COOKIE)


async def csrf_protect(request: Request) -> None:
    """A dependency for every state-changing POST of the web pages: the form field `csrf_token` or the header
    `X-CSRF-Token` must equal the token the page was rendered with; otherwise a 403 page (nothing is done)."""
    expected = _expected_csrf(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        log.warning("web: CSRF check failed on %s", request.url.path[:200])
        raise PageError(403, "this form has expired or was not sent from this site: reload the page and try again",
                        title="Form refused")


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None) -> None:
    """Set one of our cookies: HttpOnly, SameSite=Strict, Path=/, Secure when the request came over https."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=is_https(request))


def clear_cookie(response: Response, request: Request, name: str) -> None:
    """Remove one of our cookies (same attributes, so the browser matches it)."""
    response.delete_cookie(name, path="/", httponly=True, samesite="strict", secure=is_https(request))
