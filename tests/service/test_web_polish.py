"""The clinic pages' presentation contract (issue 15 polish): the patient result's Print button (no inline script: the
CSP forbids it; hidden until precimed.js shows it; never on paper), and the stylesheet rules the templates rely on
(two-column patient page on wide screens only, invalid fields, hints, tags, sources, flagged rows, the
visually-hidden utility, visible keyboard focus). The look itself is checked by the browser tests and screenshots.
"""

from __future__ import annotations

import re
from pathlib import Path

import precimed.service.web as web_pkg
from service.test_web_patient import FORM, URL, form_page, signed_in

STATIC = Path(web_pkg.__file__).parent / "static"


def test_the_result_has_a_print_button_wired_by_attribute_not_inline_script(svc):
    signed_in(svc)
    html, token = form_page(svc)
    assert "data-print" not in html  # no result yet: nothing to print
    result = svc.client.post(URL, data={**FORM, "csrf_token": token})
    assert result.status_code == 200, result.text
    button = re.search(r"<button[^>]*data-print[^>]*>([^<]*)</button>", result.text)
    assert button, "the result has no Print button"
    tag = button.group(0)
    assert 'type="button"' in tag and " hidden" in tag and button.group(1) == "Print this result"
    assert "onclick" not in result.text.lower() and "javascript:" not in result.text.lower()
    csp = result.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_precimed_js_handles_data_print_and_reveals_the_button():
    js = (STATIC / "precimed.js").read_text()
    assert '.closest("[data-print]")' in js and "window.print()" in js
    assert "htmx:afterSettle" in js  # a result swapped in by htmx gets a visible button too


def test_the_stylesheet_has_the_rules_the_pages_use(svc):
    css = svc.client.get("/static/precimed.css")
    assert css.status_code == 200
    text = css.text
    for selector in (".field.invalid input", ".hint", ".tag", ".source", "tr.flagged", ".visually-hidden",
                     ":focus-visible"):
        assert selector in text, selector
    # the two-column patient page is a screen layout only; paper keeps one column and drops the Print button
    wide = re.search(r"@media screen and \(min-width: 64rem\) \{(.*?)\n\}", text, re.S)
    assert wide and "grid-template-areas" in wide.group(1) and ".patient-result" in wide.group(1)
    print_block = re.search(r"@media print \{(.*?)\n\}", text, re.S)
    assert print_block and "[data-print]" in print_block.group(1)
