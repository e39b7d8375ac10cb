"""Server-rendered pages: one Jinja2 environment over `templates/`, with autoescape on for every template.

`render(request, template, context)` is what every page returns. It adds to the context:

    user        the signed-in WebUser (None on the sign-in and error pages of a signed-out browser)
    csrf_token  the token every POST form must carry (hidden field `csrf_token`; htmx sends it as X-CSRF-Token)
    nav         the links the user's role may follow: [{"label", "href", "active"}]
    request     the request (for its path)
    static      static("vendor/htmx/htmx.min.js") -> "/static/vendor/htmx/htmx.min.js"

Pages extend "base.html.j2" and fill the blocks `title`, `content` and `scripts` (script tags with `src` only:
the Content-Security-Policy forbids inline script).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from precimed.service.web.session import CSRF_COOKIE, WebUser, csrf_token_for, set_cookie

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"

# (label, path, permission): the sections of the web UI, shown to the roles that hold the permission
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("Patients", "/patients", "predict"),
    ("Wards", "/wards", "vitals"),
    ("Models", "/models", "models:read"),
)

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=(), default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)


def static(path: str) -> str:
    """The URL of a file under static/."""
    return "/static/" + path.lstrip("/")


_env.globals["static"] = static


def when(value: Any) -> Markup | str:
    """An ISO 8601 time as `<time datetime=ISO>YYYY-MM-DD HH:MM UTC</time>` (to the minute, in UTC); anything else
    (None, a value that is not a time) as it is, escaped."""
    if value is None or value == "":
        return "–"
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    label = moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if moment.tzinfo is not None else "")
    return Markup('<time datetime="{}">{}</time>').format(moment.isoformat(), label)


_env.filters["when"] = when


def environment() -> Environment:
    """The shared Jinja2 environment (autoescape on): pages may add filters to it at import time."""
    return _env


def nav_for(user: WebUser | None, path: str = "") -> list[dict[str, Any]]:
    """The sections the user's role may open (none when signed out)."""
    if user is None:
        return []
    return [{"label": label, "href": href, "active": path == href or path.startswith(href + "/")}
            for label, href, permission in SECTIONS if user.may(permission)]


def render(request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    """The page `template` (under templates/) rendered with `context` plus user, csrf_token, nav, request."""
    user = getattr(request.state, "web_user", None)
    user = user if isinstance(user, WebUser) else None
    values: dict[str, Any] = {"request": request, "user": user, "nav": nav_for(user, request.url.path),
                              "csrf_token": csrf_token_for(request)}
    values.update(context or {})
    html = _env.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status, headers=headers)
    made = getattr(request.state, "new_csrf_cookie", None)
    if made and request.cookies.get(CSRF_COOKIE) != made:
        set_cookie(response, request, CSRF_COOKIE, made, max_age=None)
    return response


def error_html(status: int, title: str, message: str, request_id: str | None = None) -> str:
    """The error page as text, for code that has no Request to render with (the 500 of the middleware)."""
    return _env.get_template("error.html.j2").render(
        {"request": None, "user": None, "nav": [], "csrf_token": "", "status": status, "title": title,
         "message": message, "request_id": request_id})


def render_error(request: Request, status: int, message: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None) -> HTMLResponse:
    """An HTML error page (403, 404, 422, 429, 500, ...) for a browser; the message is escaped like everything."""
    return render(request, "error.html.j2", {"status": status, "title": title or default_title(status),
                                             "message": message, "request_id": None}, status=status, headers=headers)


def default_title(status: int) -> str:
    return {400: "Bad request", 401: "Sign-in required", 403: "Not allowed", 404: "Page not found",
            405: "Not allowed here", 413: "Too large", 422: "Check the form", 429: "Slow down",
            500: "Something went wrong", 501: "Not available", 503: "Service unavailable"}.get(status, "Error")
