"""The predict fast lane (precimed.service.routes.predict_lane) answers exactly as the ordinary FastAPI route does.

Each request is sent twice to the same service: once with the lane in place, once with the lane taken out of the
middleware stack (the ordinary route alone). Status, JSON body (the new prediction id aside), content type and
headers must match, and the audit trail must hold one row per request whichever way it went (a refusal is never
audited twice). Which way a request went is recorded, so a test also fails if the lane stops serving the plain case.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from precimed.service.routes import predict_lane
from precimed.service.routes.predict_lane import PredictLane
from service.conftest import PATIENT, start

URL = "/v1/models/pima-small/predict"
VOLATILE = {"date", "x-request-id", "content-length"}  # the id in the body changes its length


@contextlib.contextmanager
def ordinary_route(app) -> Iterator[None]:
    """The app without the lane: the ordinary FastAPI route answers every predict request."""
    kept = list(app.user_middleware)
    app.user_middleware = [m for m in kept if m.cls is not PredictLane]
    app.middleware_stack = None  # rebuilt on the next request
    try:
        yield
    finally:
        app.user_middleware = kept
        app.middleware_stack = None


@pytest.fixture
def served(monkeypatch) -> list[bool]:
    """One entry per request the lane looked at: True when it answered it itself."""
    seen: list[bool] = []
    original = PredictLane._serve

    async def recording(self, *args, **kwargs):
        try:
            response = await original(self, *args, **kwargs)
        except Exception:
            seen.append(True)  # the lane took it and raised what a route raises (answered by the app's handler)
            raise
        seen.append(response is not None)
        return response

    monkeypatch.setattr(PredictLane, "_serve", recording)
    return seen


def _audit_rows(svc) -> int:
    from precimed.service.db import AuditRow

    with svc.container.db.session() as s:
        return s.execute(select(func.count()).select_from(AuditRow)).scalar_one()


def _comparable(response) -> tuple[int, object, dict[str, str]]:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "id"}
    headers = {k: v for k, v in response.headers.items() if k not in VOLATILE}
    return response.status_code, body, headers


def _both_ways(svc, *, headers=None, content=None, json_body=None, params=None):
    """(lane answer, ordinary answer, audit rows written by each)."""
    def send():
        before = _audit_rows(svc)
        r = svc.client.post(URL, headers=headers or {}, content=content, json=json_body, params=params)
        return r, _audit_rows(svc) - before

    lane, lane_rows = send()
    with ordinary_route(svc.app):
        plain, plain_rows = send()
    return lane, plain, lane_rows, plain_rows


CASES = {
    # name: (role or raw Authorization header, body, query, extra headers, answered by the lane)
    "one patient": ("clinician", {"patients": [PATIENT]}, None, {}, True),
    "several patients": ("clinician", {"patients": [PATIENT, {**PATIENT, "patient_id": "p2", "glu": None}]}, None,
                         {}, True),
    "age 430": ("clinician", {"patients": [{**PATIENT, "age": 430}]}, None, {}, True),
    "unknown feature": ("clinician", {"patients": [{**PATIENT, "smoker": 1}]}, None, {}, True),
    "unknown model in the body": ("clinician", {"patients": [PATIENT], "model": "nope"}, None, {}, True),
    "pinned version never promoted": ("clinician", {"patients": [PATIENT], "version": 9}, None, {}, True),
    "no token": (None, {"patients": [PATIENT]}, None, {}, False),
    "wrong token": ("Bearer pm_not-a-real-token", {"patients": [PATIENT]}, None, {}, False),
    "basic auth": ("Basic dXNlcjpwdw==", {"patients": [PATIENT]}, None, {}, False),
    "two spaces before the token": ("Bearer  {clinician}", {"patients": [PATIENT]}, None, {}, False),
    "lower-case scheme": ("bearer {clinician}", {"patients": [PATIENT]}, None, {}, True),
    "auditor may not predict": ("auditor", {"patients": [PATIENT]}, None, {}, False),
    "no patients": ("clinician", {"patients": []}, None, {}, False),
    "extra field": ("clinician", {"patients": [PATIENT], "dose": 3}, None, {}, False),
    "NaN value": ("clinician", '{"patients": [{"glu": NaN}]}', None, {}, False),
    "not JSON": ("clinician", "{patients:", None, {}, False),
    "query string": ("clinician", {"patients": [PATIENT]}, {"version": "1"}, {}, False),
    "text/plain body": ("clinician", json.dumps({"patients": [PATIENT]}), None, {"content-type": "text/plain"},
                        False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_lane_answers_as_the_ordinary_route_does(tmp_path, pima_bundles, served, case):
    who, body, query, extra, by_lane = CASES[case]
    svc = start(tmp_path, pima_bundles)
    try:
        headers = dict(extra)
        if who is not None:
            headers["Authorization"] = (svc.auth(who)["Authorization"] if " " not in who
                                        else who.format(clinician=svc.tokens["clinician"]))
        if isinstance(body, str):
            headers.setdefault("content-type", "application/json")
            lane, plain, lane_rows, plain_rows = _both_ways(svc, headers=headers, content=body, params=query)
        else:
            lane, plain, lane_rows, plain_rows = _both_ways(svc, headers=headers, json_body=body, params=query)
        assert _comparable(lane) == _comparable(plain)
        assert lane_rows == plain_rows  # one audit row (or none) either way: a refusal is not audited twice
        assert any(served) is by_lane
        if lane.status_code == 200:
            stored = svc.client.get(f"/v1/predictions/{lane.json()['id']}", headers=svc.auth("clinician")).json()
            assert {k: v for k, v in stored.items() if k != "created_at"} == lane.json()
    finally:
        svc.client.close()
        svc.container.db.dispose()


def test_too_many_patients_and_the_rate_limit_answer_alike(tmp_path, pima_bundles, served):
    svc = start(tmp_path, pima_bundles, max_patients=2, rate_burst=4, rate_per_minute=1e-6)
    try:
        lane, plain, _, _ = _both_ways(svc, headers=svc.auth("clinician"), json_body={"patients": [PATIENT] * 3})
        assert lane.status_code == 413 and _comparable(lane) == _comparable(plain)
        assert served == [True]
        for _ in range(2):  # spend what is left of the burst of 4, each way
            svc.client.post(URL, headers=svc.auth("clinician"), json={"patients": [PATIENT]})
        lane, plain, _, _ = _both_ways(svc, headers=svc.auth("clinician"), json_body={"patients": [PATIENT]})
        assert lane.status_code == 429 and _comparable(lane) == _comparable(plain)
        assert served[-1] is False  # over the limit: the ordinary route answers (and counts) the 429
    finally:
        svc.client.close()
        svc.container.db.dispose()


def test_a_lane_answer_is_counted_and_logged_under_the_predict_route(tmp_path, pima_bundles, served):
    svc = start(tmp_path, pima_bundles)
    try:
        assert svc.client.post(URL, headers=svc.auth("clinician"), json={"patients": [PATIENT]}).status_code == 200
        assert served == [True]
        metrics = svc.client.get("/metrics", headers=svc.auth("admin")).text
        assert 'route="/v1/models/{name}/predict",status="200"' in metrics
    finally:
        svc.client.close()
        svc.container.db.dispose()


def test_the_lane_matches_only_a_plain_json_predict_request():
    def scope(**kw):
        base = {"type": "http", "method": "POST", "path": URL, "query_string": b"",
                "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"authorization", b"Bearer t")]}
        return {**base, **kw}

    assert predict_lane._candidate(scope()) == ("pima-small", "t")
    assert predict_lane._candidate(scope(method="GET")) is None
    assert predict_lane._candidate(scope(path="/v1/models/pima-small/explain")) is None
    assert predict_lane._candidate(scope(path="/v1/models/a/b/predict")) is None
    assert predict_lane._candidate(scope(query_string=b"version=1")) is None
    assert predict_lane._candidate(scope(headers=[(b"content-type", b"application/dicom"),
                                                  (b"authorization", b"Bearer t")])) is None
    assert predict_lane._candidate(scope(headers=[(b"content-type", b"application/json"),
                                                  (b"content-type", b"application/dicom"),
                                                  (b"authorization", b"Bearer t")])) is None
    assert predict_lane._candidate(scope(headers=[(b"content-type", b"application/json")])) is None
    assert predict_lane._candidate(scope(headers=[(b"content-type", b"application/json"),
                                                  (b"authorization", b"Bearer \xff")])) is None


PG_CASES = ["one patient", "age 430", "unknown model in the body", "wrong token", "auditor may not predict",
            "not JSON"]


def test_on_postgresql_the_lane_answers_as_the_ordinary_route_does(tmp_path, pima_bundles, pg_url, served):
    """On a database server the lane takes one worker-thread hop for the token, the registry and the scoring."""
    svc = start(tmp_path, pima_bundles, db_url=pg_url)
    try:
        for case in PG_CASES:
            who, body, _, _, by_lane = CASES[case]
            served.clear()
            headers = {"Authorization": svc.auth(who)["Authorization"] if " " not in who else who}
            if isinstance(body, str):
                headers["content-type"] = "application/json"
                lane, plain, lane_rows, plain_rows = _both_ways(svc, headers=headers, content=body)
            else:
                lane, plain, lane_rows, plain_rows = _both_ways(svc, headers=headers, json_body=body)
            assert _comparable(lane) == _comparable(plain), case
            assert lane_rows == plain_rows, case
            assert any(served) is by_lane, case
    finally:
        svc.client.close()
        svc.container.db.dispose()
