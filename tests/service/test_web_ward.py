"""The ward pages: vitals posted through /v1/vitals appear on the board in urgency order, the live stream (server-sent
events) sends the board after a POST and a heartbeat, ends when the token is revoked, acknowledgement is audited and
shown, roles without `vitals` get 403, and hostile patient ids come out escaped.

The app is the real one (create_app over a registry with a small Pima bundle, tests/service/conftest.py), driven by
FastAPI's TestClient like a browser. The event stream never ends by itself, which TestClient cannot read (it waits
for the whole response), so `Stream` calls the ASGI app itself on its own thread and event loop, as a server does.
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from precimed.service.db import AuditRow
from precimed.service.web import pages_ward
from service.conftest import start
from service.web_helpers import browser, csrf_of

CALM = {"resp_rate": 16, "spo2": 97, "systolic_bp": 125, "pulse": 75, "consciousness": "A", "temperature": 36.8,
        "on_oxygen": False}
MEDIUM = {**CALM, "resp_rate": 22, "pulse": 112, "temperature": 38.5}  # NEWS2 5: medium
HIGH = {**CALM, "resp_rate": 26, "spo2": 90, "systolic_bp": 95, "pulse": 125}  # NEWS2 10: high


def obs(pid, hour, vitals=CALM, **extra):
    return {"patient_id": pid, "time": f"2026-03-01T{hour:02d}:00:00+00:00", **vitals, **extra}




def post_vitals(svc, observations):
    r = svc.client.post("/v1/vitals", json={"observations": observations}, headers=svc.auth("clinician"))
    assert r.status_code == 200, r.text
    return r.json()


def actions(svc, actor: str) -> list[tuple[str, str]]:
    with svc.container.db.session() as s:
        return [(a, d) for a, d in s.execute(select(AuditRow.action, AuditRow.detail).where(AuditRow.actor == actor)
                                             .order_by(AuditRow.seq))]


@pytest.fixture
def web(tmp_path, pima_bundles):
    s = start(tmp_path, pima_bundles)
    yield s
    s.client.close()
    s.container.db.dispose()


def test_vitals_appear_on_the_board_in_urgency_order_and_the_view_is_audited(web):
    post_vitals(web, [obs("calm", 8, ward="A", bed="1"), obs("med", 8, MEDIUM, ward="A", bed="2"),
                      obs("high", 9, HIGH, ward="A", bed="3"), obs("other", 8, HIGH, ward="B")])
    clinician = browser(web, "clinician")
    listing = clinician.get("/wards")
    assert listing.status_code == 200 and 'href="/wards/A"' in listing.text and 'href="/wards/B"' in listing.text
    page = clinician.get("/wards/A")
    assert page.status_code == 200
    body = page.text
    positions = [body.index(f'<th scope="row">{pid}</th>') for pid in ("high", "med", "calm")]
    assert positions == sorted(positions)
    assert "other" not in body
    assert ">high</span>" in body and ">medium</span>" in body and ">low</span>" in body  # the level in words too
    assert "<svg class=\"sparkline\"" in body and "NEWS2 trend, oldest first: 10" in body
    logged = actions(web, web.ids["clinician"])
    assert ("page:ward", '{"patients":3,"ward":"A"}') in [(a, d.replace(" ", "")) for a, d in logged]
    assert not any("calm" in (d or "") for _, d in logged)  # no patient id in the audit detail
    post_vitals(web, [{"patient_id": "high", "event": "discharge"}])
    assert '<th scope="row">high</th>' not in clinician.get("/wards/A").text


@pytest.mark.parametrize("role", ["data_scientist", "admin", "auditor"])
def test_a_role_without_vitals_gets_a_403_page_and_is_audited(web, role):
    client = browser(web, role)
    for path in ("/wards", "/wards/A", "/wards/A/events"):
        r = client.get(path)
        assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    assert ("denied:vitals" in [a for a, _ in actions(web, web.ids[role])])


def test_signed_out_is_sent_to_sign_in(web):
    r = TestClient(web.app).get("/wards/A", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=")


def test_hostile_patient_id_bed_and_ward_are_escaped_or_refused(web):
    post_vitals(web, [obs("<script>alert(1)</script>", 8, HIGH, ward="A", bed="x")])
    body = browser(web, "clinician").get("/wards/A").text
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    r = web.client.post("/v1/vitals", json={"observations": [obs("p", 8, ward="<b>A</b>")]},
                        headers=web.auth("clinician"))
    assert r.status_code == 422 and r.json()["field"] == "ward"
    assert browser(web, "clinician").get("/wards/%3Cb%3E").status_code == 404


def test_acknowledging_an_alert_is_audited_shown_and_a_second_ack_is_a_no_op(web):
    post_vitals(web, [obs("p1", 8, HIGH, ward="A", bed="4")])
    client = browser(web, "clinician")
    page = client.get("/wards/A").text
    alert_id = re.search(r'/wards/A/alerts/(al_[0-9a-f]+)/ack', page).group(1)
    no_csrf = client.post(f"/wards/A/alerts/{alert_id}/ack", follow_redirects=False)
    assert no_csrf.status_code == 403
    r = client.post(f"/wards/A/alerts/{alert_id}/ack", data={"csrf_token": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/wards/A?ack=acknowledged"
    shown = client.get(r.headers["location"]).text
    assert "Alert acknowledged." in shown and "Acknowledged by test clinician (clinician)" in shown
    again = client.post(f"/wards/A/alerts/{alert_id}/ack", data={"csrf_token": csrf_of(page)}, follow_redirects=False)
    assert again.headers["location"] == "/wards/A?ack=already"
    assert "already been acknowledged" in client.get(again.headers["location"]).text
    acks = [d for a, d in actions(web, web.ids["clinician"]) if a == "alert_ack"]
    assert len(acks) == 2 and '"acknowledged"' in acks[0] and '"already"' in acks[1]
    assert all("p1" not in d for d in acks)
    missing = client.post("/wards/A/alerts/al_000000000000/ack", data={"csrf_token": csrf_of(page)})
    assert missing.status_code == 404


class Stream:
    """GET an event stream by calling the ASGI app on a thread with its own event loop; lines arrive in a queue."""

    def __init__(self, app, path: str, cookie: str) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.done = threading.Event()
        self._leave = threading.Event()
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
                 "headers": [(b"host", b"testserver"), (b"cookie", f"precimed_session={cookie}".encode()),
                             (b"accept", b"text/event-stream")]}
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(app, scope),), daemon=True)
        self._thread.start()

    async def _run(self, app, scope) -> None:
        sent = False
        buffer = ""

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            while not self._leave.is_set():
                await asyncio.sleep(0.02)
            return {"type": "http.disconnect"}

        async def send(message):
            nonlocal buffer
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                buffer += message.get("body", b"").decode()
                while "\n" in buffer:
                    line, buffer = buffer.split("\n", 1)
                    self.lines.put(line)

        try:
            await app(scope, receive, send)
        finally:
            self.done.set()

    def until(self, predicate, timeout: float = 10.0) -> list[str]:
        """Lines read until one satisfies `predicate` (AssertionError after `timeout` seconds)."""
        seen: list[str] = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            seen.append(line)
            if predicate(line):
                return seen
        raise AssertionError(f"no matching line within {timeout} s; read {seen[-20:]}")

    def close(self) -> None:
        self._leave.set()
        assert self.done.wait(10), "the stream did not end when the browser left"


def test_the_live_stream_sends_the_board_after_a_post_and_heartbeats(web, monkeypatch):
    monkeypatch.setattr(pages_ward, "HEARTBEAT_SECONDS", 0.3)
    client = browser(web, "clinician")
    stream = Stream(web.app, "/wards/A/events", client.cookies.get("precimed_session"))
    try:
        first = stream.until(lambda line: line == "event: board")
        assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
        assert "retry: 5000" in first
        stream.until(lambda line: "No patients on this ward." in line)
        post_vitals(web, [obs("live-1", 8, HIGH, ward="A"), obs("elsewhere", 8, ward="B")])
        lines = stream.until(lambda line: '<th scope="row">live-1</th>' in line)
        assert not any("elsewhere" in line for line in lines)
        stream.until(lambda line: line == ": heartbeat")
    finally:
        stream.close()
    assert len(pages_ward.ward_board(web.container).hub) == 0  # unsubscribed when the browser left
    assert "page:ward_events" in [a for a, _ in actions(web, web.ids["clinician"])]


def test_the_live_stream_ends_when_the_token_is_revoked(web, monkeypatch):
    monkeypatch.setattr(pages_ward, "HEARTBEAT_SECONDS", 0.2)
    client = browser(web, "clinician")
    stream = Stream(web.app, "/wards/A/events", client.cookies.get("precimed_session"))
    try:
        stream.until(lambda line: line == "event: board")
        web.container.tokens.revoke(web.ids["clinician"], actor="test", actor_role="admin")
        stream.until(lambda line: line == "event: signedout")
        assert stream.done.wait(5)
    finally:
        stream.close()


def test_the_live_stream_ends_when_the_session_expires(web, monkeypatch):
    from datetime import timedelta

    from precimed.service.web import session as sessions

    monkeypatch.setattr(pages_ward, "HEARTBEAT_SECONDS", 0.2)
    client = browser(web, "clinician")
    stream = Stream(web.app, "/wards/A/events", client.cookies.get("precimed_session"))
    try:
        stream.until(lambda line: line == "event: board")
        real_now = sessions.now
        minutes = web.container.settings.session_minutes + 1
        monkeypatch.setattr(sessions, "now", lambda: real_now() + timedelta(minutes=minutes))
        stream.until(lambda line: line == "event: signedout")
        assert stream.done.wait(5)
    finally:
        stream.close()
