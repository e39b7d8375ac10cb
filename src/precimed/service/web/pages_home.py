"""The home page and signing in and out.

GET /          who you are (role, token label: never the token) and the sections your role may open
GET /signin    the sign-in form: paste a bearer token from `precimed tokens create --role ROLE`
POST /signin   check the token (container.tokens.lookup), start a session, 303 to `next` (a local path only)
POST /signout  end the session (CSRF-checked), 303 to /signin
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import bindparam, select
from starlette.concurrency import run_in_threadpool

from precimed.service.auth import RateLimiter
from precimed.service.db import TokenRow
from precimed.service.routes.deps import ContainerDep
from precimed.service.web import session as sessions
from precimed.service.web.session import WebUser, csrf_protect, page_user
from precimed.service.web.templating import render

log = logging.getLogger("precimed.service")
router = APIRouter()

SIGNIN_PER_MINUTE = 20.0  # sign-in attempts per client address (a token cannot be guessed, but be a poor oracle)
SIGNIN_BURST = 10
_LABEL = select(TokenRow.label).where(TokenRow.id == bindparam("id"))


def _signin_limiter(request: Request) -> RateLimiter:
    """One limiter of sign-in attempts per app, keyed by client address."""
    state = request.app.state
    found = getattr(state, "web_signin_limiter", None)
    if found is None:
        found = state.web_signin_limiter = RateLimiter(SIGNIN_PER_MINUTE, SIGNIN_BURST)
    return found


@router.get("/", response_class=Response)
async def home(request: Request, container: ContainerDep,
               user: Annotated[WebUser, Depends(page_user())]) -> Response:
    """Who is signed in and where they may go."""
    row = await sessions.fetch_one(container, _LABEL, {"id": user.token_id})
    label = str(row[0]) if row and row[0] else ""
    return render(request, "home.html.j2", {"label": label,
                                            "expires_minutes": container.settings.session_minutes})


@router.get("/signin", response_class=Response)
async def signin_form(request: Request, container: ContainerDep, next: str = "/") -> Response:
    """The sign-in form; a browser already signed in goes straight to `next`."""
    target = sessions.safe_next(next)
    if await sessions.current_user(request, container) is not None:
        return RedirectResponse(target, status_code=303)
    return render(request, "signin.html.j2", {"next": target, "error": None})


@router.post("/signin", response_class=Response, dependencies=[Depends(csrf_protect)])
async def signin(request: Request, container: ContainerDep, token: Annotated[str, Form(max_length=400)] = "",
                 next: Annotated[str, Form(max_length=1000)] = "/") -> Response:
    """Check the pasted token and start a session (cookie `precimed_session`); 401 page with the form again if the
    token is invalid or revoked, 429 when this address tries too often."""
    target = sessions.safe_next(next)
    client = request.client.host if request.client else "-"
    allowed, wait = _signin_limiter(request).allow(f"signin:{client}")
    if not allowed:
        container.metrics.rejected.labels("rate_limited").inc()
        return render(request, "signin.html.j2",
                      {"next": target, "error": f"too many sign-in attempts; retry in {wait} s"},
                      status=429, headers={"Retry-After": str(wait)})
    token = token.strip()
    if container.db.dialect == "sqlite":
        principal = container.tokens.lookup(token)
    else:
        principal = await run_in_threadpool(container.tokens.lookup, token)
    if principal is None:
        container.metrics.rejected.labels("bad_token").inc()
        log.warning("web sign-in refused: invalid or revoked token")
        return render(request, "signin.html.j2", {"next": target, "error": "invalid or revoked token"}, status=401)
    previous = await sessions.current_user(request, container)
    if previous is not None:  # a second sign-in in this browser replaces the first session: end it
        await run_in_threadpool(sessions.end_session, container, previous)
    session_id, _ = await run_in_threadpool(sessions.create_session, container, principal)
    request.state.principal = principal
    response = RedirectResponse(target, status_code=303)
    sessions.set_cookie(response, request, sessions.SESSION_COOKIE, session_id,
                        max_age=container.settings.session_minutes * 60)
    sessions.clear_cookie(response, request, sessions.CSRF_COOKIE)
    return response


@router.post("/signout", response_class=Response, dependencies=[Depends(csrf_protect)])
async def signout(request: Request, container: ContainerDep) -> Response:
    """End this browser's session (if it still has one) and go back to the sign-in form."""
    user = await sessions.current_user(request, container)
    if user is not None:
        request.state.principal = user.principal
        await run_in_threadpool(sessions.end_session, container, user)
    # a shared ward computer: the browser also drops what it cached or stored for this site (https only)
    response = RedirectResponse("/signin", status_code=303, headers={"Clear-Site-Data": '"cache", "storage"'})
    sessions.clear_cookie(response, request, sessions.SESSION_COOKIE)
    return response
