"""The report's "Per-patient uncertainty" section (evaluate.report, docs/uncertainty.md): per model its level, method,
calibration rows, coverage with CI on the held-out rows, set size / interval width and what they mean; a coverage
plot; absent when the run has no uncertainty; hostile text escaped. Real cohorts (Pima, Rotterdam), fast settings."""

from __future__ import annotations

import base64
import copy
import html
import re
from pathlib import Path

import pytest
import yaml

from helpers import PIMA, fast
from precimed.config import parse_config
from precimed.data import load_dataset
from precimed.evaluate.model_card import fmt_ci
from precimed.evaluate.report import SECTION_IDS, render_report
from precimed.evaluate.scoring import model_outputs
from precimed.workflows.training import train_from_config

ROOT = Path(__file__).resolve().parents[1]
UNCERTAINTY = {"level": 0.9, "calibration_fraction": 0.25}


def section(page: str, sid: str) -> str | None:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    return m.group(1) if m else None


def cells(sec: str) -> list[list[str]]:
    """The table rows of a section as unescaped cell texts."""
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", sec, re.S) if "<td" in row]


@pytest.fixture(scope="module")
def pima(tmp_path_factory):
    config = fast(PIMA) | {"uncertainty": UNCERTAINTY}
    config["models"] = {**config["models"], "names": ["mlp", "logistic"]}
    cfg = parse_config(config)
    return cfg, train_from_config(cfg, tmp_path_factory.mktemp("pima") / "run", progress=False)


def test_a_binary_run_reports_coverage_per_model_from_its_metrics(pima):
    _, run = pima
    page = (run.out_dir / "report.html").read_text()
    sec = section(page, "uncertainty")
    assert sec is not None and SECTION_IDS["uncertainty"] == ("uncertainty",)
    assert '<a href="#uncertainty">Per-patient uncertainty</a>' in page
    doc = run.metrics["uncertainty"]
    rows = {r[0]: r for r in cells(sec)}
    assert set(rows) == {"mlp", "logistic"}
    for name, row in rows.items():
        m = doc[name]["metrics"]
        assert row[1:6] == ["0.9", "conformal-set+venn-abers", "50", "332", fmt_ci(m["coverage"])]
        assert row[6] == f"{(0.1 * 0.9 / 52) ** 0.5:.3f}"  # the calibration-draw spread at n = 50
        assert row[7] == f"{m['mean_set_size']['value']:.2f}" and row[8] == f"{m['empty_sets']['value']:.3f}"
        assert row[9] == f"{m['mean_width probability']['value']:.3f}"
        assert row[10] == (f"{m['observed_rate']['value']:.3f} vs [{m['mean_lower probability']['value']:.3f}, "
                           f"{m['mean_upper probability']['value']:.3f}]")
        assert 0.0 <= m["coverage"]["ci_low"] <= m["coverage"]["value"] <= m["coverage"]["ci_high"] <= 1.0
    text = html.unescape(sec)
    assert "coverage is at least the level on average" in text and "not a confidence interval" in text
    assert "Calibration rows: pima_tr (calibration rows) (n = 50)" in text
    [img] = re.findall(r'<img src="([^"]+)" alt="coverage per model with CI bars">', sec)
    assert base64.b64decode(img.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_without_uncertainty_has_no_section(tmp_path):
    config = fast(PIMA)
    config["models"] = {**config["models"], "names": ["logistic"]}
    run = train_from_config(parse_config(config), tmp_path / "run", progress=False)
    page = (run.out_dir / "report.html").read_text()
    assert "uncertainty" not in run.metrics and section(page, "uncertainty") is None
    assert "Per-patient uncertainty" not in page


def test_a_survival_run_reports_each_horizon(tmp_path):
    config = fast(yaml.safe_load((ROOT / "examples" / "rotterdam-temporal.yaml").read_text()))
    config["models"] = {**config["models"], "names": ["cox_ph"], "compare": []}
    config["evaluation"] |= {"explain": 0, "bootstrap": 20}
    config["uncertainty"] = {"level": 0.9, "calibration_fraction": 0.2}
    run = train_from_config(parse_config(config), tmp_path / "run", progress=False)
    sec = section((run.out_dir / "report.html").read_text(), "uncertainty")
    m = run.metrics["uncertainty"]["cox_ph"]["metrics"]
    rows = cells(sec)
    assert [r[:3] for r in rows] == [["cox_ph", "event by 1096 days", "0.9"], ["cox_ph", "event by 1826 days", "0.9"]]
    for row, h in zip(rows, ("1096days", "1826days"), strict=True):
        o = f"event_probability_{h}"
        assert row[3] == "ipcw-venn-abers" and row[6] == fmt_ci(m[f"coverage {o}"])
        assert row[9] == (f"{m[f'observed_risk {o}']['value']:.3f} vs [{m[f'mean_lower {o}']['value']:.3f}, "
                          f"{m[f'mean_upper {o}']['value']:.3f}]")
    assert "IPCW-weighted share" in html.unescape(sec)


def test_hostile_text_is_escaped_and_a_low_coverage_is_flagged(pima):
    cfg, run = pima
    test = load_dataset("pima_te")
    y = (test["type"] == "Yes").to_numpy(dtype=float)
    X = run.preprocessor.transform(test[[f.name for f in cfg.features]])
    doc = copy.deepcopy(run.metrics)
    doc["uncertainty"]["mlp"]["method"] = "<script>alert(1)</script>"
    doc["uncertainty"]["mlp"]["metrics"]["coverage"] = {"value": 0.71, "ci_low": 0.65, "ci_high": 0.77}
    doc["data"]["calibration"]["name"] = "<img src=x onerror=alert(2)>"
    page = render_report(title="t", task="binary", metrics_doc=doc, quality=None, train_frame=None, test_frame=None,
                         y_train=None, y_test=y, features=[f.model_dump() for f in cfg.features],
                         outputs={"mlp": model_outputs(run.models["mlp"], X, "binary")})
    sec = section(page, "uncertainty")
    assert "<script>alert" not in sec and "&lt;script&gt;alert(1)&lt;/script&gt;" in sec
    assert "<img src=x" not in sec and "&lt;img src=x onerror=alert(2)&gt;" in sec
    assert "Coverage below the nominal level beyond test-sampling noise (CI upper end under the level): mlp." \
        in html.unescape(sec)
    assert "logistic" in sec  # a model in the uncertainty check but not in `outputs` is still listed
