"""The web foundation: sign-in and sessions, CSRF, roles, security headers, escaping, static files, error pages.

Every test drives the real app (create_app over a registry with a small trained Pima bundle and one token per role,
tests/service/conftest.py) through FastAPI's TestClient, as a browser would: cookies, forms, redirects.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from helpers import run_coroutine
from precimed.service.db import AuditRow, WebSessionRow
from precimed.service.web import session as sessions
from precimed.service.web.session import WebUser, csrf_protect, page_user
from precimed.service.web.templating import STATIC, render
from service.conftest import start
from service.web_helpers import csrf_of


def sign_in(client: TestClient, token: str, next_path: str | None = None):
    """GET the form (CSRF cookie and field), then POST the token; returns the POST's response (not followed)."""
    page = client.get("/signin" + (f"?next={next_path}" if next_path else ""))
    assert page.status_code == 200
    data = {"token": token, "csrf_token": csrf_of(page.text)}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/signin", data=data, follow_redirects=False)


def set_cookie_headers(response) -> dict[str, str]:
    """name -> the whole Set-Cookie header of that cookie."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def audit_actions(svc, actor: str) -> list[str]:
    with svc.container.db.session() as s:
        return list(s.execute(select(AuditRow.action).where(AuditRow.actor == actor).order_by(AuditRow.seq))
                    .scalars())


# a test page: one GET that needs a permission, one POST behind the CSRF check
probe = APIRouter()


@probe.get("/probe/clinician")
async def probe_clinician(request: Request, user: Annotated[WebUser, Depends(page_user("predict"))]):
    return render(request, "error.html.j2", {"status": 200, "title": "probe", "message": f"hello {user.role}"})


@probe.post("/probe/form", dependencies=[Depends(csrf_protect)])
async def probe_form(request: Request, user: Annotated[WebUser, Depends(page_user())]):
    return render(request, "error.html.j2", {"status": 200, "title": "probe", "message": "done"})



@probe.get("/probe/boom")
async def probe_boom(user: Annotated[WebUser, Depends(page_user())]):
    raise RuntimeError("patient p1 has glu 148")  # a message that must never reach the page or the log


@probe.get("/probe/document")
async def probe_document(user: Annotated[WebUser, Depends(page_user())]):
    return HTMLResponse("<p>doc</p>", headers={"Content-Security-Policy": "default-src 'none'; sandbox"})


@pytest.fixture
def web(tmp_path, pima_bundles):
    s = start(tmp_path, pima_bundles)
    s.app.include_router(probe)
    yield s
    s.client.close()
    s.container.db.dispose()


# ----- sign-in --------------------------------------------------------------------------------------------------
def test_signed_out_home_redirects_to_signin(web):
    r = web.client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    r = web.client.get("/probe/clinician?x=1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Fprobe%2Fclinician%3Fx%3D1"


def test_signin_success_sets_a_strict_cookie_and_stores_only_a_hash(web):
    r = sign_in(web.client, web.tokens["clinician"])
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = set_cookie_headers(r)["precimed_session"]
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "max-age=1800" in flags
    assert "secure" not in flags  # plain http: a Secure cookie would never come back
    session_id = web.client.cookies.get("precimed_session")
    with web.container.db.session() as s:
        rows = s.execute(select(WebSessionRow)).scalars().all()
    assert [row.id_sha256 for row in rows] == [hashlib.sha256(session_id.encode()).hexdigest()]
    assert rows[0].token_id == web.ids["clinician"] and rows[0].role == "clinician"
    assert "web_signin" in audit_actions(web, web.ids["clinician"])
    home = web.client.get("/")
    assert home.status_code == 200
    assert "clinician" in home.text and "test clinician" in home.text and web.ids["clinician"] in home.text
    assert web.tokens["clinician"] not in home.text  # never the token
    assert session_id not in home.text  # never the session id (the CSRF token is derived from it, one way)
    assert 'href="/patients"' in home.text and 'href="/wards"' in home.text and 'href="/models"' in home.text


def test_links_follow_the_role(web):
    sign_in(web.client, web.tokens["auditor"])
    home = web.client.get("/")
    assert 'href="/models"' in home.text
    assert 'href="/patients"' not in home.text and 'href="/wards"' not in home.text


def test_cookie_is_secure_over_https(tmp_path, pima_bundles):
    s = start(tmp_path, pima_bundles)
    try:
        client = TestClient(s.app, base_url="https://testserver")
        r = sign_in(client, s.tokens["clinician"])
        assert r.status_code == 303
        flags = [p.strip().lower() for p in set_cookie_headers(r)["precimed_session"].split(";")]
        assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags
        assert client.get("/").status_code == 200
        client.close()
    finally:
        s.client.close()
        s.container.db.dispose()


def test_bad_token_is_refused_counted_and_never_starts_a_session(web):
    counter = web.container.metrics.rejected.labels("bad_token")
    before = counter._value.get()
    for token in ("pmd_not-a-real-token", "nonsense", ""):
        r = sign_in(web.client, token)
        assert r.status_code == 401
        assert "invalid or revoked token" in r.text
        assert "precimed_session" not in set_cookie_headers(r)
    assert counter._value.get() == before + 3
    with web.container.db.session() as s:
        assert s.execute(select(WebSessionRow)).first() is None
    assert web.client.get("/", follow_redirects=False).status_code == 303


def test_signin_is_rate_limited_per_client(web):
    page = web.client.get("/signin")
    token = csrf_of(page.text)
    codes = [web.client.post("/signin", data={"token": "pmd_wrong", "csrf_token": token},
                             follow_redirects=False).status_code for _ in range(12)]
    assert codes[:10] == [401] * 10
    assert codes[-1] == 429
    r = web.client.post("/signin", data={"token": web.tokens["clinician"], "csrf_token": token},
                        follow_redirects=False)
    assert r.status_code == 429 and "retry-after" in r.headers  # even a good token waits: no oracle


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example",
                                    "javascript:alert(1)", "evil.example", "/%0d%0aSet-Cookie:x=1", "\\\\evil"])
def test_open_redirect_refused(web, target):
    r = sign_in(web.client, web.tokens["clinician"], next_path=target)
    assert r.status_code == 303
    assert r.headers["location"] in ("/", target) and r.headers["location"].startswith("/")
    assert not r.headers["location"].startswith("//") and "\\" not in r.headers["location"]
    if target != "/%0d%0aSet-Cookie:x=1":  # a local path, percent-encoded: harmless and kept
        assert r.headers["location"] == "/"


def test_local_next_is_followed(web):
    r = sign_in(web.client, web.tokens["clinician"], next_path="/probe/clinician?x=1")
    assert r.headers["location"] == "/probe/clinician?x=1"
    # already signed in: the form sends the browser on at once
    r = web.client.get("/signin?next=/probe/clinician", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/probe/clinician"


# ----- CSRF -----------------------------------------------------------------------------------------------------
def test_signin_needs_the_csrf_token(web):
    web.client.get("/signin")  # the double-submit cookie
    r = web.client.post("/signin", data={"token": web.tokens["clinician"]}, follow_redirects=False)
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    r = web.client.post("/signin", data={"token": web.tokens["clinician"], "csrf_token": "forged"},
                        follow_redirects=False)
    assert r.status_code == 403
    fresh = TestClient(web.app)  # no cookie at all: a cross-site form
    r = fresh.post("/signin", data={"token": web.tokens["clinician"], "csrf_token": "x"}, follow_redirects=False)
    assert r.status_code == 403
    fresh.close()


def test_signout_needs_csrf_and_ends_the_session(web):
    sign_in(web.client, web.tokens["clinician"])
    home = web.client.get("/")
    token = csrf_of(home.text)
    assert web.client.post("/signout", follow_redirects=False).status_code == 403
    assert web.client.post("/signout", data={"csrf_token": "wrong"}, follow_redirects=False).status_code == 403
    assert web.client.get("/").status_code == 200  # still signed in
    session_id = web.client.cookies.get("precimed_session")
    r = web.client.post("/signout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert r.headers["clear-site-data"] == '"cache", "storage"'
    assert 'precimed_session=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    assert "web_signout" in audit_actions(web, web.ids["clinician"])
    # the old cookie, replayed, is dead
    web.client.cookies.set("precimed_session", session_id)
    assert web.client.get("/", follow_redirects=False).status_code == 303
    # the audit chain still verifies after the web's writes
    verified = web.client.get("/v1/audit/verify", headers=web.auth("admin"))
    assert verified.status_code == 200 and verified.json()["ok"] is True


def test_test_form_csrf_by_field_or_header(web):
    sign_in(web.client, web.tokens["clinician"])
    token = csrf_of(web.client.get("/").text)
    assert web.client.post("/probe/form").status_code == 403
    assert web.client.post("/probe/form", data={"csrf_token": "nope"}).status_code == 403
    assert web.client.post("/probe/form", headers={"X-CSRF-Token": "nope"}).status_code == 403
    assert web.client.post("/probe/form", data={"csrf_token": token}).status_code == 200
    assert web.client.post("/probe/form", headers={"X-CSRF-Token": token}).status_code == 200
    # the token of another session does not pass
    other = TestClient(web.app)
    sign_in(other, web.tokens["clinician"])
    assert other.post("/probe/form", data={"csrf_token": token}).status_code == 403
    other.close()


# ----- session end ----------------------------------------------------------------------------------------------
def test_expired_session_redirects(web):
    sign_in(web.client, web.tokens["clinician"])
    assert web.client.get("/").status_code == 200
    with web.container.db.transaction() as s:
        s.execute(update(WebSessionRow).values(expires_at="2000-01-01T00:00:00.000000+00:00"))
    r = web.client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin"


def test_session_ends_after_session_minutes(web, monkeypatch):
    sign_in(web.client, web.tokens["clinician"])
    real_now = sessions.now
    monkeypatch.setattr(sessions, "now", lambda: real_now() + timedelta(minutes=29))
    assert web.client.get("/").status_code == 200
    monkeypatch.setattr(sessions, "now", lambda: real_now() + timedelta(minutes=31))
    assert web.client.get("/", follow_redirects=False).status_code == 303


def test_fresh_lookup_sees_a_revocation_within_one_request(web):

    from starlette.requests import Request as StarletteRequest

    sign_in(web.client, web.tokens["clinician"])
    cookie = f"precimed_session={web.client.cookies.get('precimed_session')}"
    request = StarletteRequest({"type": "http", "method": "GET", "path": "/", "headers": [(b"cookie", cookie.encode())],
                                "query_string": b"", "app": web.app, "state": {}})

    async def check():
        first = await sessions.current_user(request, web.container)
        web.container.tokens.revoke(web.ids["clinician"], actor="test", actor_role="admin")
        cached = await sessions.current_user(request, web.container)
        fresh = await sessions.current_user(request, web.container, fresh=True)
        return first, cached, fresh

    first, cached, fresh = run_coroutine(check())
    assert first is not None and cached == first and fresh is None


def test_revoking_the_token_kills_its_sessions(web):
    from precimed.service import cli_commands as cli

    sign_in(web.client, web.tokens["clinician"])
    other = TestClient(web.app)
    sign_in(other, web.tokens["data_scientist"])
    assert web.client.get("/").status_code == 200 and other.get("/").status_code == 200
    cli.tokens_revoke(web.registry, web.ids["clinician"])  # the CLI path, another connection
    assert web.client.get("/", follow_redirects=False).status_code == 303
    r = web.client.get("/", follow_redirects=False)
    assert r.headers["location"] == "/signin"
    # the API path too
    r = web.client.delete(f"/v1/tokens/{web.ids['data_scientist']}", headers=web.auth("admin"))
    assert r.status_code in (200, 204)
    assert other.get("/", follow_redirects=False).status_code == 303
    other.close()


# ----- roles, escaping, headers, static, errors -----------------------------------------------------------------
def test_role_without_permission_gets_a_403_page_and_an_audit_row(web):
    sign_in(web.client, web.tokens["auditor"])
    r = web.client.get("/probe/clinician")
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    assert "auditor" in r.text and "predict" in r.text
    assert "denied:predict" in audit_actions(web, web.ids["auditor"])
    sign_in(web.client, web.tokens["clinician"])
    ok = web.client.get("/probe/clinician")
    assert ok.status_code == 200 and "hello clinician" in ok.text


def test_hostile_token_label_is_escaped_on_home(web):
    from precimed.service import cli_commands as cli

    _, token = cli.tokens_create(web.registry, "clinician", label='<script>alert("x")</script><b>bold</b>')
    sign_in(web.client, token)
    home = web.client.get("/")
    assert home.status_code == 200
    assert "<script>alert" not in home.text and "<b>bold" not in home.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in home.text


def test_hostile_next_is_escaped_in_the_form(web):
    r = web.client.get('/signin?next=/x"><script>alert(1)</script>')
    assert r.status_code == 200
    assert "<script>alert(1)" not in r.text
    assert "&lt;script&gt;" in r.text or 'value="/"' in r.text


SECURITY = {"x-frame-options": "DENY", "referrer-policy": "no-referrer", "x-content-type-options": "nosniff",
            "cross-origin-opener-policy": "same-origin"}


def test_security_headers_on_pages_and_not_on_the_api(web):
    for path in ("/signin", "/", "/nowhere"):
        r = web.client.get(path, follow_redirects=False)
        for name, value in SECURITY.items():
            assert r.headers[name] == value, (path, name)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["cache-control"] == "no-store"
    page = web.client.get("/signin").text
    assert "<script>" not in page and "style=" not in page  # no inline script or style: CSP would block it
    assert '"allowEval": false' in page and '"includeIndicatorStyles": false' in page
    api = web.client.get("/healthz")
    assert "content-security-policy" not in api.headers and api.headers["content-type"].startswith("application/json")


def test_vendored_htmx_is_served_and_matches_its_recorded_hash(web):
    r = web.client.get("/static/vendor/htmx/htmx.min.js")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert r.headers["x-content-type-options"] == "nosniff" and "no-store" not in r.headers.get("cache-control", "")
    readme = (STATIC / "vendor" / "README.md").read_text()
    assert hashlib.sha256(r.content).hexdigest() in readme
    assert "htmx.org 2.0.11" in readme
    css = web.client.get("/static/precimed.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css") and "@media print" in css.text
    assert web.client.get("/static/../session.py").status_code == 404
    assert web.client.get("/static/nothing.js").status_code == 404


def test_html_errors_for_browsers_json_for_the_api(web):
    r = web.client.get("/no/such/page")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "There is no page at this address." in r.text
    assert "Sign out" not in r.text
    sign_in(web.client, web.tokens["clinician"])
    signed_in = web.client.get("/no/such/page")
    assert signed_in.status_code == 404 and "Sign out" in signed_in.text and 'href="/patients"' in signed_in.text
    api = web.client.get("/v1/no-such-route")
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/json")
    assert api.json()["message"]
    bad = web.client.get("/v1/models", headers={"Authorization": "Bearer pmd_wrong"})
    assert bad.status_code == 401 and bad.json()["message"] == "invalid or revoked token"


def test_package_data_lists_the_web_files():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert "service/web/templates/**/*.j2" in text and "service/web/static/**/*" in text


def test_htmx_request_without_session_gets_a_full_page_redirect(web):
    r = web.client.get("/probe/clinician", follow_redirects=False,
                       headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/probe/clinician?ward=3"})
    assert r.status_code == 401
    assert r.headers["hx-redirect"] == "/signin?next=%2Fprobe%2Fclinician%3Fward%3D3"
    r = web.client.get("/probe/clinician", follow_redirects=False,
                       headers={"HX-Request": "true", "HX-Current-URL": "https://evil.example/x"})
    assert r.headers["hx-redirect"] == "/signin?next=%2Fprobe%2Fclinician"  # another site's page is not a next


def test_unexpected_failure_is_an_html_500_without_the_message(web, caplog):
    sign_in(web.client, web.tokens["clinician"])
    r = web.client.get("/probe/boom")
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    assert "glu" not in r.text and "p1" not in r.text
    assert r.headers["x-request-id"] in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert all("glu 148" not in record.getMessage() for record in caplog.records)
    api = web.client.get("/v1/models/nope", headers=web.auth("clinician"))
    assert api.headers["content-type"].startswith("application/json")


def test_a_route_may_send_a_stricter_csp_of_its_own(web):
    sign_in(web.client, web.tokens["clinician"])
    r = web.client.get("/probe/document")
    assert r.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"


def test_bad_form_is_an_html_422(web):
    page = web.client.get("/signin")
    r = web.client.post("/signin", data={"token": "x" * 500, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "token" in r.text


def test_second_signin_in_the_same_browser_ends_the_first_session(web):
    sign_in(web.client, web.tokens["clinician"])
    first = web.client.cookies.get("precimed_session")
    page = web.client.post("/signin", data={"token": web.tokens["auditor"],
                                            "csrf_token": csrf_of(web.client.get("/").text)},
                           follow_redirects=False)
    assert page.status_code == 303
    assert web.client.cookies.get("precimed_session") != first
    with web.container.db.session() as s:
        row = s.execute(select(WebSessionRow).where(
            WebSessionRow.id_sha256 == hashlib.sha256(first.encode()).hexdigest())).scalar_one()
    assert row.revoked_at is not None
    assert "auditor" in web.client.get("/").text


def test_session_minutes_setting(monkeypatch, tmp_path):
    from precimed.errors import ConfigError
    from precimed.service.settings import ServiceSettings

    monkeypatch.setenv("PRECIMED_SESSION_MINUTES", "5")
    assert ServiceSettings.from_env(tmp_path).session_minutes == 5
    assert ServiceSettings(registry=tmp_path).session_minutes == 30
    monkeypatch.setenv("PRECIMED_SESSION_MINUTES", "0")
    with pytest.raises(ConfigError, match="session_minutes"):
        ServiceSettings.from_env(tmp_path)


def test_signin_and_revocation_on_postgresql(tmp_path, pima_bundles, pg_url):
    """The same session lookup (a join read through Database.fetch_one) on a real PostgreSQL server."""
    from precimed.service import cli_commands as cli

    s = start(tmp_path, pima_bundles, db_url=pg_url)
    try:
        r = sign_in(s.client, s.tokens["clinician"], next_path="/")
        assert r.status_code == 303
        home = s.client.get("/")
        assert home.status_code == 200 and "test clinician" in home.text
        cli.tokens_revoke(s.registry, s.ids["clinician"], db=pg_url)
        assert s.client.get("/", follow_redirects=False).status_code == 303
        sign_in(s.client, s.tokens["auditor"])
        token = csrf_of(s.client.get("/").text)
        assert s.client.post("/signout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
        assert s.client.get("/", follow_redirects=False).status_code == 303
        assert s.client.get("/v1/audit/verify", headers=s.auth("admin")).json()["ok"] is True
    finally:
        s.client.close()
        s.container.db.dispose()
