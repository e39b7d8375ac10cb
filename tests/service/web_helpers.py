"""What the web-page tests share: the CSRF token of a rendered form and a client signed in with a role's token."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The form's CSRF token (the test fails if the page has none)."""
    found = CSRF_INPUT.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def browser(svc, role: str) -> TestClient:
    """A fresh browser signed in with the role's token."""
    client = TestClient(svc.app)
    page = client.get("/signin")
    r = client.post("/signin", data={"token": svc.tokens[role], "csrf_token": csrf_of(page.text)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return client
