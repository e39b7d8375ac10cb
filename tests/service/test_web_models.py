"""The model pages: models with stages and metrics with CIs, versions, the model card and report from the verified
bundle, the drift page, and promotion / rollback for administrators only (buttons hidden and POST refused for
other roles, audited)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from precimed.service import cli_commands as cli
from precimed.service.db import AuditRow
from precimed.workflows.model_pages import drift_dir
from service.conftest import start
from service.web_helpers import browser, csrf_of

CI = re.compile(r"AUROC \d\.\d{3} \(\d\.\d{3}–\d\.\d{3}\)")
CI_CELL = re.compile(r'AUROC</th><td class="num">\d\.\d{3} \(\d\.\d{3}–\d\.\d{3}\)</td>')




def actions(svc, actor: str) -> list[str]:
    with svc.container.db.session() as s:
        return list(s.execute(select(AuditRow.action).where(AuditRow.actor == actor).order_by(AuditRow.seq))
                    .scalars())


@pytest.fixture
def web(tmp_path, pima_bundles):
    s = start(tmp_path, pima_bundles)
    cli.registry_add(s.registry, pima_bundles[1])  # version 2, in no stage
    yield s
    s.client.close()
    s.container.db.dispose()


@pytest.mark.parametrize("role", ["clinician", "data_scientist", "auditor"])
def test_every_role_reads_models_with_metrics_and_cis_but_only_admins_see_the_buttons(web, role):
    client = browser(web, role)
    listing = client.get("/models")
    assert listing.status_code == 200
    assert 'href="/models/pima-small"' in listing.text and "production" in listing.text
    assert CI.search(listing.text), "the headline metric with its CI"
    detail = client.get("/models/pima-small")
    assert detail.status_code == 200
    assert CI.search(detail.text) and "/models/pima-small/1/card" in detail.text
    assert "/models/pima-small/2/report" in detail.text
    assert "Promote" not in detail.text and "Roll back" not in detail.text
    assert 'action="/models/pima-small/promote"' not in detail.text


def test_promote_and_rollback_are_refused_to_a_clinician_with_403_audited(web):
    client = browser(web, "clinician")
    token = csrf_of(client.get("/models/pima-small").text)
    r = client.post("/models/pima-small/promote", data={"csrf_token": token, "version": 2, "stage": "production"},
                    follow_redirects=False)
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    r = client.post("/models/pima-small/rollback", data={"csrf_token": token, "stage": "production"},
                    follow_redirects=False)
    assert r.status_code == 403
    assert actions(web, web.ids["clinician"]).count("denied:promote") == 2
    assert web.container.registry.resolve("pima-small").version == 1


def test_an_admin_promotes_and_rolls_back_audited_by_the_registry(web):
    client = browser(web, "admin")
    page = client.get("/models/pima-small").text
    assert "Promote v2 to production" in page and "Roll back production" in page
    token = csrf_of(page)
    no_csrf = client.post("/models/pima-small/promote", data={"version": 2, "stage": "production"},
                          follow_redirects=False)
    assert no_csrf.status_code == 403
    assert web.container.registry.resolve("pima-small").version == 1
    r = client.post("/models/pima-small/promote", data={"csrf_token": token, "version": 2, "stage": "production"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/models/pima-small?done=promoted"
    assert web.container.registry.resolve("pima-small").version == 2
    assert "Promoted." in client.get(r.headers["location"]).text
    again = client.post("/models/pima-small/promote", data={"csrf_token": token, "version": 2,
                                                            "stage": "production"})
    assert again.status_code == 409 and "already in production" in again.text
    r = client.post("/models/pima-small/rollback", data={"csrf_token": token, "stage": "production"},
                    follow_redirects=False)
    assert r.status_code == 303
    assert web.container.registry.resolve("pima-small").version == 1
    logged = actions(web, web.ids["admin"])
    assert "promote:production" in logged and "rollback:production" in logged


def test_card_and_report_come_from_the_verified_bundle(web):
    client = browser(web, "clinician")
    card = client.get("/models/pima-small/1/card")
    assert card.status_code == 200 and "<h2>Model card: pima-small</h2>" in card.text and "(verified)" in card.text
    report = client.get("/models/pima-small/1/report")
    assert report.status_code == 200 and CI_CELL.search(report.text) and "pima_te" in report.text
    assert "held out" in report.text
    assert client.get("/models/pima-small/9/card").status_code == 404
    assert client.get("/models/no-such/1/report").status_code == 404
    # a card edited after registration is refused, never shown
    path = web.container.registry.info("pima-small", 2).bundle_dir / "model_card.md"
    path.write_text(path.read_text() + "\n<script>alert(1)</script>\n")
    refused = client.get("/models/pima-small/2/card")
    assert refused.status_code == 503 and "<script>alert(1)</script>" not in refused.text


def test_drift_page_explains_until_a_report_exists_then_serves_it_without_scripts(web):
    client = browser(web, "auditor")
    missing = client.get("/models/pima-small/1/drift")
    assert missing.status_code == 404 and "precimed drift --current-db" in missing.text
    folder = drift_dir(web.container.registry.root, "pima-small", 1)
    folder.mkdir(parents=True)
    (folder / "drift.html").write_text("<html><body><h1>Drift of pima-small</h1></body></html>")
    assert "/models/pima-small/1/drift" in client.get("/models/pima-small").text
    shown = client.get("/models/pima-small/1/drift")
    assert shown.status_code == 200 and "Drift of pima-small" in shown.text
    csp = shown.headers["content-security-policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp  # no script at all
    assert shown.headers["x-content-type-options"] == "nosniff"
