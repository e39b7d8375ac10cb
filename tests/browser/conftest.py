"""Fixtures for the end-to-end browser tests: a real `precimed serve` in a subprocess, Debian's Chromium driven by
Playwright, axe-core, and the artefact folder (screenshots, accessibility results).

Chromium is the system binary (`PRECIMED_CHROMIUM`, default /usr/bin/chromium; `scripts/install-chromium.sh` installs
it): Playwright's own browser download is never used. Without that binary every test here is skipped with the reason.

axe-core (tests/browser/vendor/axe-core, checked by sha256) is injected with `page.evaluate(source)`: that runs through
the DevTools protocol, which the page's Content-Security-Policy does not govern, so the pages are tested under the very
CSP they ship with (no `bypass_csp`), and the hostile-input test still proves what the CSP and the escaping do.

Artefacts (full-page PNG screenshots, one axe JSON per page) go to `PRECIMED_BROWSER_ARTEFACTS` or
`test-artefacts/browser/` at the repository root (git-ignored).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers import PIMA, fast, free_port, serve_subprocess

ROOT = Path(__file__).resolve().parents[2]
VENDOR = Path(__file__).parent / "vendor" / "axe-core"
AXE_JS = VENDOR / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"  # axe-core 4.14.1 (see README.md)
FHIR_MAPPING = ROOT / "tests" / "service" / "data" / "pima_fhir_mapping.yaml"
ROLES = ("clinician", "data_scientist", "admin", "auditor")
MODEL = "pima-small"
SPARE_MODEL = "pima-spare"
BLOCKING_IMPACTS = ("serious", "critical")


def chromium_path() -> Path:
    """The system Chromium the tests drive (`PRECIMED_CHROMIUM`, default /usr/bin/chromium)."""
    return Path(os.environ.get("PRECIMED_CHROMIUM", "/usr/bin/chromium"))


def artefact_dir() -> Path:
    """Where screenshots and axe results go: `PRECIMED_BROWSER_ARTEFACTS` or test-artefacts/browser/."""
    folder = Path(os.environ.get("PRECIMED_BROWSER_ARTEFACTS") or ROOT / "test-artefacts" / "browser")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pytest_collection_modifyitems(config, items):
    """Every test in this folder is a `browser` test, skipped (with the reason) when no Chromium binary exists."""
    here = Path(__file__).parent
    binary = chromium_path()
    missing = not (binary.is_file() and os.access(binary, os.X_OK))
    skip = pytest.mark.skip(reason=f"no Chromium binary at {binary} (run scripts/install-chromium.sh, or set "
                                   "PRECIMED_CHROMIUM to a Chromium executable)")
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)
            if missing:
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing browser test's report ends with the tail of the server's stderr (its errors and warnings)."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("server")
    if report.failed and isinstance(server, Server):
        report.sections.append(("precimed serve stderr (tail)", server.log_tail()))


@dataclass
class Server:
    """A running `precimed serve`: its base URL, one bearer token per role, and the registry folder."""

    base_url: str
    tokens: dict[str, str]
    registry: Path
    model: str = MODEL
    spare_model: str = SPARE_MODEL
    log: deque[str] = field(default_factory=deque)  # the tail of the server's stderr

    def log_tail(self, lines: int = 60) -> str:
        """The last lines the server wrote to stderr (for a failing test's message)."""
        return "".join(list(self.log)[-lines:])

    def auth(self, role: str) -> dict[str, str]:
        """The Authorization header of `role`'s token, for API calls made from a test (httpx)."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _train(out: Path) -> Path:
    """The small Pima model (tests/helpers.PIMA, shrunk by `fast`): trains in a few seconds."""
    from precimed.config import parse_config
    from precimed.workflows import train_from_config

    cfg = fast(PIMA)
    cfg["name"] = MODEL
    cfg["models"]["baselines"] = ["logistic"]
    cfg["evaluation"] = {"bootstrap": 20, "explain": 0}
    cfg["uncertainty"] = {"level": 0.9}  # split-conformal intervals and prediction sets stored in the bundle
    return train_from_config(parse_config(cfg), out, progress=False).bundle_path


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    """Train the Pima model, register it in production in a fresh registry (with its FHIR mapping), create one
    token per role (what `precimed tokens create` does), start `precimed serve` on a free port; stop it after."""
    from precimed.service import cli_commands as cli

    root = tmp_path_factory.mktemp("browser")
    bundle = _train(root / "run")
    registry = root / "registry"
    cli.registry_add(registry, bundle, fhir_mapping=FHIR_MAPPING)
    cli.registry_promote(registry, MODEL, 1)
    cli.registry_add(registry, bundle, name=SPARE_MODEL)  # unstaged: the admin test promotes it
    tokens = {role: cli.tokens_create(registry, role, label=f"browser {role}")[1] for role in ROLES}
    port = free_port()
    proc: subprocess.Popen = serve_subprocess(registry, port)
    log: deque[str] = deque(maxlen=400)
    # the server's stderr is a pipe: read it all the time (a full pipe would block the server), keep the tail
    threading.Thread(target=lambda: log.extend(line.decode("utf-8", "replace") for line in proc.stderr),
                     daemon=True).start()
    try:
        yield Server(f"http://127.0.0.1:{port}", tokens, registry, log=log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (the system binary) through Playwright, one per test session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # the dev extra pins playwright: a missing one is a broken install, not a skip
        raise RuntimeError("playwright is not installed: pip install -e '.[dev]' (it pins playwright)") from exc
    from playwright.sync_api import expect

    # the first prediction of a session loads the explainer and the planner (several seconds on 2 shared cores)
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium_path()), headless=True)
        yield b
        b.close()


@pytest.fixture
def context(browser, server):
    """A fresh browser context (own cookies) on the server's base URL; closed after the test."""
    ctx = browser.new_context(base_url=server.base_url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    """A page in a fresh context; a page error (an uncaught exception in the app's JavaScript) fails the test."""
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    assert not errors, f"JavaScript errors on the page: {errors}"


def slug(name: str) -> str:
    """A file-name-safe form of a page name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "page"


def screenshot(page, name: str) -> Path:
    """A full-page PNG of the page as it is now, kept in the artefact folder."""
    path = artefact_dir() / f"{slug(name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


_AXE_SOURCE: str | None = None


def _axe_source() -> str:
    global _AXE_SOURCE
    if _AXE_SOURCE is None:
        data = AXE_JS.read_bytes()
        got = hashlib.sha256(data).hexdigest()
        assert got == AXE_SHA256, f"{AXE_JS}: sha256 {got}, expected {AXE_SHA256} (see {VENDOR / 'README.md'})"
        _AXE_SOURCE = data.decode("utf-8")
    return _AXE_SOURCE


def axe(page, name: str) -> dict[str, Any]:
    """Run axe-core on the page; write the full result to <artefacts>/axe-<name>.json; fail on any serious or
    critical violation, naming the rule, its help text and the first offending elements."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    result = page.evaluate("async () => JSON.parse(JSON.stringify(await axe.run(document, {resultTypes: "
                           "['violations', 'incomplete']})))")
    result["precimed_page"] = {"name": name, "url": page.url}
    (artefact_dir() / f"axe-{slug(name)}.json").write_text(json.dumps(result, indent=1))
    blocking = [v for v in result["violations"] if v.get("impact") in BLOCKING_IMPACTS]
    assert not blocking, f"axe on {name} ({page.url}): " + "; ".join(
        f"{v['id']} [{v['impact']}] {v['help']}: {[n['target'] for n in v['nodes'][:3]]}" for v in blocking)
    return result


def check_page(page, name: str) -> None:
    """The two artefacts every page gets: a screenshot, then the accessibility check."""
    screenshot(page, name)
    axe(page, name)
