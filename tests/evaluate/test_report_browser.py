"""Open the report in a real browser (headless Debian chromium): sections present, images decoded, no errors.

Chromium is installed with apt-get when it is missing and the test runs as root; the test is
skipped, with the reason, only when it cannot be installed.
"""

import fcntl
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from precimed.evaluate import binary_metrics, bootstrap_ci
from precimed.evaluate.model_card import model_card
from precimed.evaluate.report import SECTION_IDS, write_report

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FEATURES = [{"name": "age", "kind": "numeric", "unit": "years", "range": [18, 100]},
            {"name": "ward", "kind": "categorical", "categories": ["medical", "icu"]}]


def ensure_chromium() -> Path:
    """Debian's chromium, installed on the spot if missing (root only); skip if that is impossible."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing and installing it needs root (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # parallel test workers (pytest -n) take turns: the first installs, the others find it installed
    with open("/tmp/precimed-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for cmd in (["apt-get", "update"],
                        ["apt-get", "install", "-y", "chromium"]):
                if CHROMIUM.exists():
                    break
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    pytest.skip(f"could not install chromium: {' '.join(cmd)} failed: "
                                f"{done.stderr.strip()[-300:]}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"could not install chromium: {exc}")
    if not CHROMIUM.exists():
        pytest.skip(f"apt-get install chromium succeeded but {CHROMIUM} is still missing")
    return CHROMIUM


def chromium(browser: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(browser), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90)


class Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.sections: list[str] = []
        self.images = 0

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self.body = {k: v or "" for k, v in attrs}
        elif tag == "section":
            self.sections.append(dict(attrs).get("id"))
        elif tag == "img":
            self.images += 1


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    n = 200
    frames = [pd.DataFrame({"age": rng.normal(60, 12, n).round(),
                            "ward": rng.choice(np.array(["medical", "icu"], dtype=object), n)}).astype({"ward": object})
              for _ in range(2)]
    lp = (0.05 * (frames[1]["age"] - 60) + (frames[1]["ward"] == "icu")).to_numpy() - 0.5
    y_test = (rng.random(n) < expit(lp)).astype(float)
    y_train = (rng.random(n) < 0.4).astype(float)
    outputs = {"mlp": {"proba": expit(lp + rng.normal(0, 0.4, n))}, "logistic": {"proba": expit(lp)}}
    models = {m: bootstrap_ci(lambda i, m=m: binary_metrics(y_test[i], outputs[m]["proba"][i]), n, n_boot=20)
              for m in outputs}
    doc = {"task": "binary", "run": "browser-check", "threshold": 0.5,
           "data": {"train": {"name": "train", "n": n, "events": int(y_train.sum())},
                    "test": {"name": "test", "n": n, "events": int(y_test.sum())}},
           "bootstrap": {"replicates": 20, "level": 0.95, "seed": 0}, "models": models}
    histories = {"mlp": [{"train_loss": list(np.linspace(0.7, 0.45, 20)),
                          "val_loss": list(0.5 + 0.002 * (np.arange(20) - 8) ** 2 / 10), "best_epoch": 8}]}
    path = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(path, title="Browser check", task="binary", metrics_doc=doc, quality=None,
                        train_frame=frames[0], test_frame=frames[1], y_train=y_train, y_test=y_test,
                        features=FEATURES, outputs=outputs, histories=histories,
                        importance={"mlp": {"age": 0.4, "ward=icu": 0.7}},
                        model_card_md=model_card({**doc, "features": FEATURES, "split": {"kind": "external"}}))


def test_report_opens_in_headless_chromium_with_every_section_and_image(report, tmp_path):
    browser = ensure_chromium()

    done = chromium(browser, tmp_path / "profile-dom", "--dump-dom", report.as_uri())

    assert done.returncode == 0, done.stderr[-2000:]
    dom = Dom()
    dom.feed(done.stdout)
    expected = SECTION_IDS["common"] + SECTION_IDS["binary"] + ("training", "importance", "model-card")
    assert set(expected) <= set(dom.sections)
    total = len(re.findall(r"<img\b", report.read_text()))
    assert total == dom.images == 7
    assert dom.body.get("data-images-ok") == f"{total}/{total}", dom.body
    assert json.loads(dom.body.get("data-errors", "null")) == []


def test_report_screenshot_is_a_non_empty_png(report, tmp_path):
    browser = ensure_chromium()
    shot = tmp_path / "report-screenshot.png"

    done = chromium(browser, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,6000",
                    "--hide-scrollbars", report.as_uri())

    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 6000)
    assert len(data) > 50_000  # a blank page compresses to a few kilobytes
    if (ROOT / "runs").is_dir():
        shutil.copyfile(shot, ROOT / "runs" / "report-screenshot.png")
