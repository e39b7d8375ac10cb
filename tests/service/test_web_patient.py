"""The patient page: the form made from the schema, a prediction with its interval, explanation and plan, the API's
validation messages next to the field, escaping, roles, CSRF and the audit trail.

The real app over a registry with the small trained Pima bundle (tests/service/conftest.py), driven through
FastAPI's TestClient as a browser would (cookies, forms, redirects).
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from precimed.service.db import AuditRow, PlanRow, PredictionRow
from precimed.workflows import patient_view as pv
from service.conftest import PATIENT
from service.test_fhir_cds import BUNDLE
from service.web_helpers import csrf_of

URL = "/patients/pima-small"
FORM = {k: str(v) for k, v in PATIENT.items()}



def signed_in(svc, role: str = "clinician"):
    """The app's client signed in as `role` (GET the sign-in form, POST the token)."""
    page = svc.client.get("/signin")
    r = svc.client.post("/signin", data={"token": svc.tokens[role], "csrf_token": csrf_of(page.text)},
                        follow_redirects=False)
    assert r.status_code == 303, r.text
    return svc.client


def form_page(svc) -> tuple[str, str]:
    page = svc.client.get(URL)
    assert page.status_code == 200, page.text
    return page.text, csrf_of(page.text)


def count(svc, table) -> int:
    with svc.container.db.session() as s:
        return s.execute(select(func.count()).select_from(table)).scalar_one()


def audits(svc, actor: str) -> list[tuple[str, str, dict]]:
    with svc.container.db.session() as s:
        rows = s.execute(select(AuditRow.action, AuditRow.outcome, AuditRow.detail).where(AuditRow.actor == actor)
                         .order_by(AuditRow.seq)).all()
    return [(a, o, json.loads(d) if isinstance(d, str) else d) for a, o, d in rows]


@pytest.fixture
def intervals(monkeypatch):
    """Scored rows carry the uncertainty keys of the conformal contract (as a bundle with stored intervals gives
    them), so the page's rendering of intervals is tested whatever the bundle stores."""
    real = pv.score

    def score(bundle, patients, **kw):
        out = real(bundle, patients, **kw)
        if kw.get("explain_top_k") is None:
            for row in out.rows:
                p = row["probability"]
                row.update(probability_lower=max(p - 0.11, 0.0), probability_upper=min(p + 0.07, 1.0),
                           interval_level=0.9, interval_method="conformal-set+venn-abers", prediction_set=["Yes"])
        return out

    monkeypatch.setattr(pv, "score", score)


# ----- the model list and the form ---------------------------------------------------------------------------------
def test_the_model_list_and_the_form_show_every_feature_with_label_unit_and_range(svc):
    signed_in(svc)
    listing = svc.client.get("/patients")
    assert listing.status_code == 200 and 'href="/patients/pima-small"' in listing.text
    html, _ = form_page(svc)
    units = {"glu": "mg/dL", "bmi": "kg/m2", "age": "years", "ped": None}
    ranges = {"glu": (20, 400), "bmi": (12, 80), "age": (18, 100), "ped": (0, 3)}
    for name, unit in units.items():
        assert f'<label for="f-{name}">{name}' in html
        tag = re.search(rf'<input id="f-{name}"[^>]*>', html, re.S).group(0)
        lo, hi = ranges[name]
        assert f'min="{lo}"' in tag and f'max="{hi}"' in tag and 'inputmode="decimal"' in tag
        assert f'aria-describedby="f-{name}-hint"' in tag
        hint = re.search(rf'<p class="hint" id="f-{name}-hint">([^<]*)</p>', html).group(1)
        assert f"plausible range {lo} to {hi}" in hint
        if unit:
            assert unit in hint
    assert 'href="/models/pima-small/1/card"' in html and 'href="/models/pima-small/1/report"' in html
    assert 'hx-post="/patients/pima-small"' in html and 'method="post" action="/patients/pima-small"' in html
    assert 'name="fhir_bundle"' in html and 'enctype="multipart/form-data"' in html
    assert "print-patient.css" in html


def test_the_form_view_is_audited_without_patient_data(svc):
    signed_in(svc)
    form_page(svc)
    rows = [r for r in audits(svc, svc.ids["clinician"]) if r[0] == "page:patient"]
    assert len(rows) == 1 and rows[0][1] == "ok" and rows[0][2]["via"] == "web"


# ----- a prediction -------------------------------------------------------------------------------------------------
def test_a_valid_patient_shows_risk_interval_contributions_cohort_and_plan_and_is_stored(svc, intervals):
    signed_in(svc)
    _, token = form_page(svc)
    before = count(svc, PredictionRow)
    r = svc.client.post(URL, data={**FORM, "csrf_token": token,
                                   "facts": "sex = female\nmedications = warfarin, amiodarone"})
    assert r.status_code == 200, r.text
    html = r.text
    assert "probability of Yes:" in html
    assert re.search(r"\(Venn-Abers calibrated-risk interval \d+\.\d% to \d+\.\d%: not a confidence interval "
                     r"and no coverage level", html)
    assert "Conformal prediction set at 90% coverage: <strong>Yes</strong>" in html
    assert "<svg" in html and 'aria-labelledby="wf-title wf-desc"' in html
    assert "glu = 148 mg/dL" in html  # a contribution in the user's units
    assert "against the training cohort" in html and re.search(r"<td>\d+(st|nd|rd|th)</td>", html)
    assert "warfarin + amiodarone" in html  # the plan's interaction
    assert "Not evaluated" in html
    assert count(svc, PredictionRow) == before + 1 and count(svc, PlanRow) == 1
    with svc.container.db.session() as s:
        stored = s.execute(select(PredictionRow)).scalars().all()[-1]
        assert stored.kind == "predict"
        result = json.loads(stored.result)
    assert result["predictions"][0]["probability_lower"] is not None
    predict = [a for a in audits(svc, svc.ids["clinician"]) if a[0] == "predict"]
    assert predict[-1][1] == "ok" and predict[-1][2]["via"] == "web"
    assert predict[-1][2]["prediction_id"] == stored.id
    assert "p1" not in json.dumps(predict[-1][2])  # the audit holds no patient id or value
    # the API serves what the page stored, to the clinician who made it
    api = svc.client.get(f"/v1/predictions/{stored.id}", headers=svc.auth("clinician"))
    assert api.status_code == 200 and api.json()["predictions"][0]["probability"] == result["predictions"][0][
        "probability"]
    plan = svc.client.get(f"/v1/plans/{predict[-1][2]['plan_id']}", headers=svc.auth("clinician"))
    assert plan.status_code == 200 and plan.json()["plan"]["interactions"]


def test_the_page_matches_the_api_for_the_same_patient(svc):
    api = svc.client.post("/v1/models/pima-small/predict", json={"patients": [PATIENT]},
                          headers=svc.auth("clinician")).json()
    signed_in(svc)
    _, token = form_page(svc)
    html = svc.client.post(URL, data={**FORM, "csrf_token": token}).text
    assert f"probability of Yes: {api['predictions'][0]['probability'] * 100:.1f}%" in html


def test_htmx_gets_the_fragment_and_errors_with_status_200(svc):
    signed_in(svc)
    _, token = form_page(svc)
    ok = svc.client.post(URL, data={**FORM, "csrf_token": token}, headers={"HX-Request": "true"})
    assert ok.status_code == 200 and ok.text.lstrip().startswith("<div id=\"patient-body\"")
    assert "<html" not in ok.text and "probability of Yes" in ok.text
    bad = svc.client.post(URL, data={**FORM, "glu": "1000", "csrf_token": token}, headers={"HX-Request": "true"})
    assert bad.status_code == 200 and 'id="f-glu-err"' in bad.text


# ----- validation ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1000", "abc"])
def test_a_bad_value_shows_the_api_message_next_to_the_field_and_stores_nothing(svc, value):
    api = svc.client.post("/v1/models/pima-small/predict", json={"patients": [{**PATIENT, "glu": value if value == "abc"
                                                                               else 1000}]},
                          headers=svc.auth("clinician"))
    assert api.status_code == 422
    message = next(e["message"] for e in api.json()["errors"] if e["field"] == "glu")
    signed_in(svc)
    _, token = form_page(svc)
    before = count(svc, PredictionRow)
    r = svc.client.post(URL, data={**FORM, "glu": value, "csrf_token": token})
    assert r.status_code == 422
    error = re.search(r'<p class="field-error" id="f-glu-err">([^<]*)</p>', r.text).group(1)
    assert error == message.replace("'", "&#39;")
    tag = re.search(r'<input id="f-glu"[^>]*>', r.text, re.S).group(0)
    assert 'aria-invalid="true"' in tag and "f-glu-err" in tag and f'value="{value}"' in tag
    assert 'href="#f-glu"' in r.text  # the summary links to the field
    assert count(svc, PredictionRow) == before
    assert audits(svc, svc.ids["clinician"])[-1][:2] == ("predict", "rejected")


def test_a_bad_plan_line_is_shown_next_to_its_box(svc):
    signed_in(svc)
    _, token = form_page(svc)
    r = svc.client.post(URL, data={**FORM, "csrf_token": token, "options": "chemo = a lot"})
    assert r.status_code == 422
    assert re.search(r'<p class="field-error" id="p-options-err">options: line 1', r.text)
    assert count(svc, PredictionRow) == 0


# ----- hostile input, roles, CSRF, sign-in --------------------------------------------------------------------------
def test_script_in_the_patient_id_and_html_in_the_note_are_shown_as_text(svc):
    signed_in(svc)
    _, token = form_page(svc)
    hostile = "<script>alert(1)</script>"
    note = '<img src=x onerror="alert(2)"><b>bold</b>'
    r = svc.client.post(URL, data={**FORM, "patient_id": hostile, "note": note, "csrf_token": token})
    assert r.status_code == 200, r.text
    assert hostile not in r.text and "<img src=x" not in r.text and "<b>bold</b>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;&lt;b&gt;bold&lt;/b&gt;" in r.text
    bad = svc.client.post(URL, data={**FORM, "patient_id": hostile, "glu": hostile, "csrf_token": token})
    assert bad.status_code == 422 and hostile not in bad.text


def test_a_role_without_predict_gets_a_403_page_and_is_audited(svc):
    signed_in(svc, "data_scientist")
    for r in (svc.client.get(URL), svc.client.get("/patients")):
        assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    actions = [a for a, _, _ in audits(svc, svc.ids["data_scientist"])]
    assert actions.count("denied:predict") == 2 and count(svc, PredictionRow) == 0


def test_the_post_needs_the_csrf_token(svc):
    signed_in(svc)
    form_page(svc)
    for token in (None, "forged"):
        data = dict(FORM) if token is None else {**FORM, "csrf_token": token}
        r = svc.client.post(URL, data=data)
        assert r.status_code == 403
    assert count(svc, PredictionRow) == 0


def test_signed_out_goes_to_sign_in(svc):
    r = svc.client.get(URL, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Fpatients%2Fpima-small"


def test_an_unstaged_version_is_refused_to_a_clinician(svc, pima_bundles):
    from precimed.service import cli_commands as cli

    cli.registry_add(svc.registry, pima_bundles[1])
    signed_in(svc)
    r = svc.client.get(URL + "?version=2")
    assert r.status_code == 403 and "staging or production" in r.text
    assert "?version=2" not in svc.client.get("/patients").text


# ----- FHIR -------------------------------------------------------------------------------------------------------
def test_a_fhir_bundle_upload_fills_the_form_and_predicts(svc):
    signed_in(svc)
    _, token = form_page(svc)
    files = {"fhir_bundle": ("patient.json", json.dumps(BUNDLE).encode(), "application/fhir+json")}
    r = svc.client.post(URL, data={"csrf_token": token}, files=files)
    assert r.status_code == 200, r.text
    assert "From the FHIR Bundle" in r.text and "Observation/glu-2026 (LOINC 2345-7)" in r.text
    assert re.search(r'<input id="f-glu"[^>]*value="148"', r.text, re.S)
    assert "Not recorded, imputed by the model: ped" in r.text
    with svc.container.db.session() as s:
        assert s.execute(select(PredictionRow.kind)).scalars().all() == ["fhir_predict"]
    junk = svc.client.post(URL, data={"csrf_token": token},
                           files={"fhir_bundle": ("x.json", b"not json", "application/json")})
    assert junk.status_code == 422 and 'id="p-fhir_bundle-err"' in junk.text
