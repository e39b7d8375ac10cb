"""The web UI: server-rendered Jinja2 pages with vendored htmx (no build step, nothing from a CDN).

`install(app)` (called by create_app) mounts /static, includes the router of every module in `PAGE_MODULES`,
registers the sign-in redirect and the HTML error pages of the web routes, and adds the security headers of every
web response. The API (/v1, /cds-services, /healthz, ...) is untouched: see `is_api_path`.

Each page module has `router = APIRouter()` and uses `templating.render` and `session.page_user`. To add one, add
ONE line to `PAGE_MODULES` (a module name inside this package, or a full dotted name).
"""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_MODULES: tuple[str, ...] = (
    "pages_home",
    "pages_patient",
    "pages_ward",
    "pages_models",
)

API_PREFIXES = ("/v1", "/cds-services", "/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


def is_api_path(path: str) -> bool:
    """Whether `path` belongs to the JSON API (which keeps its JSON errors) rather than to the web pages."""
    return any(path == p or path.startswith(p + "/") for p in API_PREFIXES)


def is_web_path(path: str) -> bool:
    return not is_api_path(path)


def page_modules() -> list[Any]:
    """The imported modules of `PAGE_MODULES`."""
    return [importlib.import_module(name if "." in name else f"{__name__}.{name}") for name in PAGE_MODULES]


def install(app: FastAPI) -> None:
    """Mount /static, include the page routers, and add the web's error handling and security headers."""
    from precimed.service.web import session, templating

    app.mount("/static", StaticFiles(directory=templating.STATIC, follow_symlink=False), name="static")
    for module in page_modules():
        app.include_router(module.router, include_in_schema=False)

    async def sign_in(request: Request, exc: session.SignInRequired) -> Response:
        target = session.signin_url(exc.next_path)
        if request.headers.get("HX-Request") == "true":  # htmx: a full-page redirect, never a swapped fragment
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def page_error(request: Request, exc: session.PageError) -> Response:
        return templating.render_error(request, exc.status, exc.message, title=exc.title, headers=exc.headers)

    app.add_exception_handler(session.SignInRequired, sign_in)
    app.add_exception_handler(session.PageError, page_error)
    app.add_middleware(SecurityHeaders)


class SecurityHeaders:
    """On every response of a web path: Content-Security-Policy (no inline script or style, no framing),
    X-Frame-Options DENY, Referrer-Policy no-referrer, X-Content-Type-Options nosniff, and Cache-Control no-store
    on pages (static files keep their caching). A header the route already set is kept (e.g. the sandboxed CSP of
    a stored HTML document, or an event stream's Cache-Control); API responses pass through unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def headed(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:  # a route may send a stricter policy of its own (a sandboxed document)
                        headers[name] = value
                if not static and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, headed)
