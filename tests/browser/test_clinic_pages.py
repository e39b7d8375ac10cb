"""The clinic's web pages end to end in a real browser (Debian's Chromium driven by Playwright) against a real
`precimed serve`: sign-in, the patient page (form, result, plan, validation, keyboard use, print), the ward board
updating live and an alert acknowledged, the model pages per role, sign-out, hostile input; axe-core on every page.

Selectors are roles and accessible names (get_by_role / get_by_label) wherever the page allows: a test that finds a
field by its label also proves the field has one. Every page visited leaves a full-page screenshot and an axe JSON in
the artefact folder (see conftest.py).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect

from browser.conftest import Server, check_page, screenshot

pytestmark = pytest.mark.browser

HOSTILE = "<script>window.__pwned=1</script>"


def sign_in(page: Page, server: Server, role: str, next_path: str = "/") -> None:
    """Sign in through the form (paste the role's token), landing on `next_path`."""
    page.goto("/signin" if next_path == "/" else f"/signin?next={next_path}")
    page.get_by_label("Token").fill(server.tokens[role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(next_path.split("?")[0]) + r"(\?.*)?$"))


def session_cookie(page: Page) -> dict | None:
    found = [c for c in page.context.cookies() if c["name"] == "precimed_session"]
    return found[0] if found else None


# ----- sign-in, home, sign-out ----------------------------------------------------------------------------------
def test_sign_in_refuses_a_bad_token_then_a_good_one_opens_home(page: Page, server: Server):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin$"))  # not signed in: sent to the sign-in page
    check_page(page, "01-signin")
    page.get_by_label("Token").fill("pmd_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("invalid or revoked token")
    assert session_cookie(page) is None
    check_page(page, "02-signin-refused")

    page.get_by_label("Token").fill(server.tokens["clinician"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Signed in")).to_be_visible()
    cookie = session_cookie(page)
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Patients")).to_be_visible()
    expect(nav.get_by_role("link", name="Wards")).to_be_visible()
    assert server.tokens["clinician"] not in page.content()  # the token is never shown back
    check_page(page, "03-home-clinician")


def test_sign_out_removes_the_session_and_back_leads_to_sign_in(page: Page, server: Server):
    sign_in(page, server, "clinician", "/wards")
    expect(page.get_by_role("heading", level=1, name="Wards")).to_be_visible()
    old = session_cookie(page)
    assert old is not None
    page.get_by_role("banner").get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/signin$"))
    assert session_cookie(page) is None
    page.go_back()  # pages are not cached (no-store): going back asks the server, which wants a sign-in
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fwards$"))
    expect(page.get_by_label("Token")).to_be_visible()
    page.context.add_cookies([old])  # a copy of the old cookie is no use: the session ended on the server
    page.goto("/wards")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fwards$"))


def test_revoking_the_token_ends_the_browser_session_even_on_a_live_page(page: Page, server: Server):
    made = httpx.post(f"{server.base_url}/v1/tokens", json={"role": "clinician", "label": "browser revoked"},
                      headers=server.auth("admin"), timeout=30)
    assert made.status_code == 201, made.text
    token = made.json()
    ward = f"R{uuid.uuid4().hex[:6]}"
    page.goto(f"/signin?next=/wards/{ward}")
    page.get_by_label("Token").fill(token["token"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#ward-status")).to_contain_text("live")

    gone = httpx.delete(f"{server.base_url}/v1/tokens/{token['id']}", headers=server.auth("admin"), timeout=30)
    assert gone.status_code == 200, gone.text
    _post_vitals(server, [_obs("rv-1", ward, 0)])  # the next update finds the session dead: the page leaves
    expect(page).to_have_url(re.compile(r"/signin\?next="), timeout=30_000)
    expect(page.get_by_label("Token")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin$"))


def test_a_role_without_the_permission_gets_the_403_page(page: Page, server: Server):
    sign_in(page, server, "auditor")
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Wards")).to_have_count(0)
    response = page.goto("/wards")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_contain_text("Not allowed")
    expect(page.get_by_text("your role (auditor) may not use this page")).to_be_visible()
    check_page(page, "20-forbidden-auditor-wards")


# ----- ward board -----------------------------------------------------------------------------------------------
def _obs(pid: str, ward: str, minutes: int, **vitals) -> dict:
    when = datetime(2026, 3, 1, 8, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    base = {"patient_id": pid, "ward": ward, "bed": "3", "time": when.isoformat(), "resp_rate": 16, "spo2": 97,
            "systolic_bp": 125, "pulse": 72, "consciousness": "A", "temperature": 37.0, "on_oxygen": False}
    return {**base, **vitals}


def _post_vitals(server: Server, observations: list[dict]) -> dict:
    r = httpx.post(f"{server.base_url}/v1/vitals", json={"observations": observations},
                   headers=server.auth("clinician"), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


SICK = {"resp_rate": 26, "spo2": 91, "pulse": 125, "systolic_bp": 95}


def test_the_ward_board_updates_live_and_an_alert_is_acknowledged(page: Page, server: Server):
    ward = f"W{uuid.uuid4().hex[:6]}"
    sign_in(page, server, "clinician", f"/wards/{ward}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Ward {ward}")
    expect(page.get_by_role("cell", name="No patients on this ward.")).to_be_visible()
    expect(page.locator("#ward-status")).to_contain_text("live")  # the event stream is open

    _post_vitals(server, [_obs("calm-1", ward, 0)])  # from outside the page: no reload, the row appears
    expect(page.get_by_role("rowheader", name="calm-1")).to_be_visible()
    page.evaluate("() => { window.__same_page = true; }")  # survives only if the page is never reloaded

    _post_vitals(server, [_obs("sick-2", ward, 5, **SICK)])
    rows = page.locator("#ward-rows tr.ward-row")
    expect(rows).to_have_count(2)
    expect(rows.first.get_by_role("rowheader")).to_have_text("sick-2")  # the most urgent first
    ack = page.get_by_role("button", name="Acknowledge the alert of patient sick-2")
    expect(ack).to_be_visible()
    calm_row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="calm-1"))
    expect(calm_row.locator("td.num").first).to_have_text("0")
    _post_vitals(server, [_obs("calm-1", ward, 10, resp_rate=22, pulse=95)])  # the row changes in place
    expect(calm_row.locator("td.num").first).to_have_text("3")
    expect(calm_row.get_by_role("img", name=re.compile("NEWS2 trend"))).to_have_accessible_name(
        "NEWS2 trend, oldest first: 0, 3")
    assert page.evaluate("() => window.__same_page === true")
    check_page(page, "30-ward-live")

    ack.click()
    expect(page.get_by_role("status").filter(has_text="Alert acknowledged.")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Acknowledged by .*\(clinician\)"))).to_be_visible()
    expect(page.get_by_role("button", name="Acknowledge the alert of patient sick-2")).to_have_count(0)
    check_page(page, "31-ward-acknowledged")

    page.goto("/wards")
    expect(page.get_by_role("link", name=ward)).to_be_visible()
    check_page(page, "32-wards")


def test_a_hostile_patient_id_on_the_ward_board_is_shown_as_text(page: Page, server: Server):
    ward = f"H{uuid.uuid4().hex[:6]}"
    sign_in(page, server, "clinician", f"/wards/{ward}")
    expect(page.locator("#ward-status")).to_contain_text("live")
    _post_vitals(server, [_obs(HOSTILE, ward, 0, **SICK)])  # arrives through the live stream
    expect(page.get_by_role("rowheader", name=HOSTILE)).to_have_text(HOSTILE)
    page.reload()  # and rendered by the page itself
    expect(page.get_by_role("rowheader", name=HOSTILE)).to_have_text(HOSTILE)
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert page.locator("#ward-rows script").count() == 0


# ----- patient page ---------------------------------------------------------------------------------------------
def field(page: Page, name: str):
    """A numeric model input by its accessible name (the feature's label, then its unit in brackets)."""
    return page.get_by_role("spinbutton", name=re.compile(rf"^{re.escape(name)}(\s|$)"))


PLAN_FACTS = "sex = female\nmedications = amiodarone\nplanned_drugs = warfarin"
PLAN_GENOTYPES = "CYP2C9 = *1/*3"
PLAN_OPTIONS = "metformin = 0.12 (0.05 to 0.19): metformin\nlifestyle = 0.08 (0.02 to 0.14)"


def test_a_patient_prediction_with_its_interval_contributions_and_plan(page: Page, server: Server):
    sign_in(page, server, "clinician", "/patients")
    check_page(page, "10-patients-models")
    page.get_by_role("link", name=server.model).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(server.model)
    check_page(page, "11-patient-form")

    page.get_by_label("Patient id").fill("browser-p1")
    for name, value in {"glu": "148", "bmi": "33.6", "age": "50", "ped": "0.627"}.items():
        field(page, name).fill(value)
    page.get_by_text("Plan inputs and note").click()
    page.get_by_label("Clinical facts").fill(PLAN_FACTS)
    page.get_by_label("Genotypes").fill(PLAN_GENOTYPES)
    page.get_by_label("Treatment options").fill(PLAN_OPTIONS)
    page.get_by_role("button", name="Predict, explain and plan").click()

    result = page.get_by_role("region", name=re.compile("Result for patient browser-p1"))
    expect(result).to_be_visible()
    text = result.inner_text()
    risk = re.search(r"probability of Yes: ([0-9.]+)%", text)
    assert risk, text[:800]
    interval = re.search(r"interval ([0-9.]+)% to ([0-9.]+)%", text)  # the bundle stores per-patient uncertainty
    assert interval, text[:800]
    low, value, high = float(interval[1]), float(risk[1]), float(interval[2])
    assert low <= value <= high
    assert re.search(r"prediction set at 90%[^:]*: (Yes|No|Yes, No|empty)", text, re.IGNORECASE), text[:800]
    contributions = result.get_by_role("table", name=re.compile("Contributions"))
    expect(contributions.get_by_role("row")).not_to_have_count(0)
    expect(contributions.get_by_role("rowheader").first).to_be_visible()
    expect(result.get_by_role("img", name=re.compile("Waterfall"))).to_be_visible()
    expect(result.get_by_role("heading", name="This patient against the training cohort")).to_be_visible()

    expect(result.get_by_role("heading", name="Plan", exact=True)).to_be_visible()
    options = result.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Rank"))
    expect(options.get_by_role("rowheader", name="metformin")).to_be_visible()
    expect(result.get_by_role("heading", name="Pharmacogenomics")).to_be_visible()
    expect(result.get_by_role("rowheader", name="CYP2C9")).to_be_visible()
    expect(result.get_by_role("heading", name="Recommendations")).to_be_visible()
    expect(result.get_by_role("link", name="Model card")).to_be_visible()
    check_page(page, "12-patient-result")
    page.emulate_media(media="print")
    screenshot(page, "13-patient-result-print")
    page.emulate_media(media="screen")


def focus_or_live_region(page: Page, selector: str) -> str | None:
    """How the element `selector` reaches a keyboard / screen-reader user after a submission: 'focus' when the
    focus is on it or inside it, 'live' when it is (inside) a live region (aria-live, role alert or status),
    None when neither."""
    return page.evaluate("""(selector) => {
        const el = document.querySelector(selector);
        if (!el) return null;
        if (el === document.activeElement || el.contains(document.activeElement)) return "focus";
        const live = el.closest('[aria-live]:not([aria-live="off"]), [role="alert"], [role="status"]');
        return live ? "live" : null;
    }""", selector)


def _open_form(page: Page, server: Server, role: str = "clinician") -> None:
    sign_in(page, server, role, f"/patients/{server.model}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(server.model)


def test_a_value_out_of_range_shows_the_apis_message_beside_the_field(page: Page, server: Server):
    _open_form(page, server)
    field(page, "glu").fill("148")
    field(page, "age").fill("430")
    page.get_by_role("button", name="Predict, explain and plan").click()
    age = field(page, "age")
    expect(age).to_have_attribute("aria-invalid", "true")
    message = page.locator("#f-age-err")
    expect(message).to_be_visible()
    # the API's check and words: the same message /v1/predict gives for this value
    api = httpx.post(f"{server.base_url}/v1/models/{server.model}/predict", json={"patients": [{"glu": 148,
                     "age": 430}]}, headers=server.auth("clinician"), timeout=30)
    assert api.status_code == 422, api.text
    expect(message).to_have_text(api.json()["errors"][0]["message"])  # "age must lie in [18, 100] years"
    assert "f-age-err" in (age.get_attribute("aria-describedby") or "")
    summary = page.get_by_role("alert").filter(has_text="Check the form")
    expect(summary.get_by_role("link", name="age")).to_be_visible()
    expect(page.get_by_role("region", name=re.compile("Result"))).to_have_count(0)
    expect(field(page, "glu")).to_have_value("148")  # what was typed is kept
    check_page(page, "14-patient-validation-error")
    assert focus_or_live_region(page, "#form-errors") == "focus"  # the keyboard lands on the error summary


def test_the_patient_form_works_with_the_keyboard_alone(page: Page, server: Server):
    _open_form(page, server)
    page.keyboard.press("Tab")  # the first stop is the skip link, which takes the keyboard past the top bar
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    patient_id = page.get_by_label("Patient id")
    for _ in range(10):  # the few links above the form, then its first field
        page.keyboard.press("Tab")
        if patient_id.evaluate("el => el === document.activeElement"):
            break
    expect(patient_id).to_be_focused()
    assert page.evaluate("() => !document.querySelector('header').contains(document.activeElement)")
    page.keyboard.type("kbd-1")
    for value in ("120", "30.5", "41", "0.4"):  # glu, bmi, age, ped in the form's order
        page.keyboard.press("Tab")
        page.keyboard.type(value)
    expect(field(page, "ped")).to_be_focused()
    page.keyboard.press("Enter")  # submits the form
    result = page.get_by_role("region", name=re.compile("Result for patient kbd-1"))
    expect(result).to_be_visible()
    for name, value in {"glu": "120", "bmi": "30.5", "age": "41", "ped": "0.4"}.items():
        expect(field(page, name)).to_have_value(value)
    assert focus_or_live_region(page, "#result") == "focus"  # the result is focused, so a screen reader reads it
    page.keyboard.press("Shift+Tab")  # and the keyboard goes on from there, within the page's content
    assert page.evaluate("() => document.querySelector('main').contains(document.activeElement) && "
                         "document.activeElement !== document.body")


def test_a_fhir_bundle_uploaded_fills_the_form_and_is_scored(page: Page, server: Server, tmp_path):
    def obs(code: str, value: float, unit: str) -> dict:
        return {"resource": {"resourceType": "Observation", "status": "final",
                             "subject": {"reference": "Patient/fhir-web-1"},
                             "effectiveDateTime": "2026-05-01T08:00:00Z",
                             "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                             "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                               "code": unit}}}

    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "fhir-web-1", "birthDate": "1976-05-01", "gender": "female"}},
        obs("2345-7", 7.8, "mmol/L"), obs("39156-5", 31.0, "kg/m2")]}
    path = tmp_path / "patient-bundle.json"
    path.write_text(json.dumps(bundle))
    _open_form(page, server)
    page.get_by_label("FHIR Bundle").set_input_files(str(path))
    page.get_by_role("button", name="Upload and predict").click()
    result = page.get_by_role("region", name=re.compile("Result for patient fhir-web-1"))
    expect(result).to_be_visible()
    expect(result.get_by_role("heading", name="From the FHIR Bundle")).to_be_visible()
    glu = float(field(page, "glu").input_value())
    assert glu == pytest.approx(7.8 * 18.016, abs=0.1)  # mmol/L converted to the model's mg/dL by the mapping
    expect(field(page, "bmi")).to_have_value("31")
    check_page(page, "16-patient-fhir-upload")


def test_hostile_input_on_the_patient_page_is_shown_as_text(page: Page, server: Server):
    _open_form(page, server)
    note = '<img src=x onerror="window.__pwned=2"><b>bold</b>'
    page.get_by_label("Patient id").fill(HOSTILE)
    field(page, "glu").fill("148")
    page.get_by_text("Plan inputs and note").click()
    page.get_by_label("Note").fill(note)
    page.get_by_role("button", name="Predict, explain and plan").click()
    result = page.get_by_role("region", name=re.compile("Result for patient"))
    expect(result.get_by_role("heading", level=2)).to_have_text(f"Result for patient {HOSTILE}")
    expect(result.get_by_text(note)).to_be_visible()
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert result.locator("script, img, b").count() == 0
    expect(page.get_by_label("Patient id")).to_have_value(HOSTILE)


def test_a_role_that_may_not_predict_gets_the_403_page_on_the_patient_page(page: Page, server: Server):
    sign_in(page, server, "auditor")
    response = page.goto(f"/patients/{server.model}")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_contain_text("Not allowed")
    expect(page.get_by_label("Patient id")).to_have_count(0)
    check_page(page, "15-forbidden-auditor-patient")


# ----- model pages ----------------------------------------------------------------------------------------------
def test_model_pages_show_promotion_to_an_admin_only(page: Page, server: Server):
    sign_in(page, server, "clinician", "/models")
    expect(page.get_by_role("heading", level=1, name="Models")).to_be_visible()
    check_page(page, "40-models")
    page.get_by_role("link", name=server.model, exact=True).click()
    expect(page.get_by_role("heading", level=1, name=server.model)).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Promote"))).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Roll back"))).to_have_count(0)
    check_page(page, "41-model-clinician")
    page.get_by_role("link", name="model card").first.click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    check_page(page, "42-model-card")
    page.go_back()
    page.get_by_role("link", name="metrics report").first.click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    check_page(page, "43-model-report")
    response = page.goto(f"/models/{server.model}/1/drift")  # no drift report yet: how to make one
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1, name=re.compile("No drift report yet"))).to_be_visible()
    check_page(page, "45-model-drift-none")

    page.context.clear_cookies()
    sign_in(page, server, "admin", f"/models/{server.spare_model}")
    promote = page.get_by_role("button", name="Promote v1 to staging")
    expect(promote).to_be_visible()
    check_page(page, "44-model-admin")
    promote.click()
    expect(page.get_by_role("status")).to_have_text("Promoted.")
    staging = page.get_by_role("definition").nth(1)  # the facts list: Production, Staging
    expect(staging).to_have_text("version 1")
    # a rollback with no earlier staging version is refused with the registry's reason (and changes nothing)
    page.get_by_role("button", name="Roll back staging").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Nothing to change")
    expect(page.get_by_text("no earlier staging version")).to_be_visible()
