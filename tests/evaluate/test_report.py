import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from precimed.errors import ConfigError, DataError
from precimed.evaluate import binary_metrics, bootstrap_ci, survival_metrics
from precimed.evaluate.model_card import markdown_html, model_card
from precimed.evaluate.report import SECTION_IDS, write_report
from precimed.preprocess import quality_report

FEATURES = [
    {"name": "age", "kind": "numeric", "unit": "years", "range": [18, 100]},
    {"name": "lactate", "kind": "numeric", "unit": "mmol/L", "range": [0, 30], "log": True},
    {"name": "sex", "kind": "binary", "positive": ["F"]},
    {"name": "ward", "kind": "categorical", "categories": ["medical", "surgical", "icu"]},
]


class Page(HTMLParser):
    """Section ids, image sources, links and scripts of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.sections: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("a", "link") and "href" in a:
            self.links.append(a["href"])
        if tag == "script":
            self.scripts.append(a)


def read_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    out = pd.DataFrame({
        "age": rng.normal(65, 12, n).round(),
        "lactate": rng.lognormal(0.5, 0.6, n),
        "sex": rng.choice(np.array(["F", "M"], dtype=object), n),
        "ward": rng.choice(np.array(["medical", "surgical", "icu"], dtype=object), n),
    }, index=pd.Index(np.arange(n), name="patient_id"))
    out.loc[out.index[:4], "lactate"] = np.nan
    return out.astype({"sex": object, "ward": object})


def doc_for(task: str, models: dict[str, dict[str, dict[str, float]]], train: dict, test: dict, **extra) -> dict:
    return {"task": task, "run": f"synthetic-{task}", "data": {"train": train, "test": test},
            "bootstrap": {"replicates": 20, "level": 0.95, "seed": 0}, **extra, "models": models}


@pytest.fixture(scope="module")
def binary_case():
    rng = np.random.default_rng(0)
    train, test = frame(rng, 300), frame(rng, 240)
    risk = (0.04 * (test["age"] - 65) + 0.8 * (test["ward"] == "icu")).to_numpy()
    y_test = (rng.random(240) < expit(risk - 0.7)).astype(float)
    y_train = (rng.random(300) < 0.35).astype(float)
    outputs = {
        "mlp": {"proba": np.clip(expit(risk - 0.7 + rng.normal(0, 0.5, 240)), 0, 1)},
        "logistic": {"proba": expit(risk - 0.7)},
        "gbm": {"proba": np.clip(expit(1.5 * (risk - 0.7)), 0, 1)},
    }
    metrics = {m: bootstrap_ci(lambda i, m=m: binary_metrics(y_test[i], outputs[m]["proba"][i]), 240, n_boot=20)
               for m in outputs}
    doc = doc_for("binary", metrics, {"name": "synthetic-train", "n": 300, "events": int(y_train.sum())},
                  {"name": "synthetic-test", "n": 240, "events": int(y_test.sum())}, threshold=0.5)
    quality = {"train": quality_report(train, FEATURES, source="synthetic-train", id_name="patient_id"),
               "test": quality_report(test, FEATURES, source="synthetic-test", id_name="patient_id")}
    histories = {"mlp": [{"train_loss": list(np.linspace(0.7, 0.4, 30)),
                          "val_loss": list(0.5 + 0.001 * (np.arange(30) - 12) ** 2 / 10), "best_epoch": 12},
                         {"train_loss": list(np.linspace(0.72, 0.41, 25)),
                          "val_loss": list(0.52 + 0.001 * (np.arange(25) - 9) ** 2 / 10), "best_epoch": 9}]}
    return dict(train=train, test=test, y_train=y_train, y_test=y_test, outputs=outputs, doc=doc,
                quality=quality, histories=histories)


def binary_report(tmp_path: Path, case: dict, **kwargs) -> Path:
    args = dict(title="Synthetic binary report", task="binary", metrics_doc=case["doc"], quality=case["quality"],
                train_frame=case["train"], test_frame=case["test"], y_train=case["y_train"],
                y_test=case["y_test"], features=FEATURES, outputs=case["outputs"], threshold=0.4)
    return write_report(tmp_path / "report.html", **{**args, **kwargs})


def test_binary_report_has_every_section_and_only_embedded_images(tmp_path, binary_case):
    card = model_card({**binary_case["doc"], "features": FEATURES, "quality": binary_case["quality"],
                       "split": {"kind": "stratified", "test_fraction": 0.25}})
    path = binary_report(
        tmp_path, binary_case, histories=binary_case["histories"],
        subgroups={"sex": {"F": {"auroc": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}},
                           "M": {"auroc": {"value": 0.7, "ci_low": 0.6, "ci_high": 0.8}}},
                   "gaps": [{"attribute": "sex", "metric": "auroc", "gap": 0.1}]},
        importance={"mlp": {"age": 0.3, "ward=icu": 0.5, "lactate": 0.1}, "logistic": {"age": 0.2, "ward=icu": 0.6}},
        model_card_md=card,
    )

    page = read_page(path)
    expected = (SECTION_IDS["common"] + SECTION_IDS["binary"] + SECTION_IDS["optional"])
    assert set(expected) <= set(page.sections)
    assert len(page.sections) == len(set(page.sections))
    assert len(page.images) == 7  # ROC, PR, calibration, decision, confusion, training, importance
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(link.startswith("#") for link in page.links)
    assert all("src" not in s for s in page.scripts)  # inline script only
    text = path.read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "default-src 'none'" in text
    assert "error" not in {c for s in re.findall(r'class="([^"]+)"', text) for c in s.split()}
    assert list(tmp_path.iterdir()) == [path]  # written atomically: no temporary file left


def test_binary_report_shows_the_configured_threshold_and_metric_intervals(tmp_path, binary_case):
    text = binary_report(tmp_path, binary_case).read_text()

    auroc = binary_case["doc"]["models"]["mlp"]["auroc"]
    assert f"{auroc['value']:.3f} ({auroc['ci_low']:.3f}–{auroc['ci_high']:.3f})" in text
    assert re.search(r'<tr class="configured"><td>mlp</td><td class="num">0.4</td>', text)
    assert "Table 1" in text and "lactate (mmol/L), median [IQR]" in text


def test_user_text_is_escaped_not_interpreted(tmp_path, binary_case):
    path = binary_report(tmp_path, binary_case, title="<script>alert(1)</script>",
                         model_card_md="# Card\n\n<img src=x onerror=alert(1)>")

    text = path.read_text()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<img src=x" not in text


def test_a_section_that_cannot_be_computed_says_why_and_the_rest_is_written(tmp_path, binary_case):
    one_class = dict(binary_case, y_test=np.zeros(240))

    path = binary_report(tmp_path, one_class)

    page = read_page(path)
    assert "discrimination" in page.sections and "calibration" in page.sections
    assert "Not available for these data" in path.read_text()


def test_an_importance_image_must_be_embedded(tmp_path, binary_case):
    with pytest.raises(ConfigError):
        binary_report(tmp_path, binary_case, importance_plot="https://example.org/shap.png")
    assert not list(tmp_path.iterdir())


def test_outputs_must_match_the_test_rows(tmp_path, binary_case):
    short = {"mlp": {"proba": binary_case["outputs"]["mlp"]["proba"][:10]}}
    with pytest.raises(DataError, match="10 rows but y_test has 240"):
        binary_report(tmp_path, binary_case, outputs=short)


@pytest.fixture(scope="module")
def survival_case():
    rng = np.random.default_rng(1)
    train, test = frame(rng, 200), frame(rng, 260)
    lp = 0.03 * (test["age"].to_numpy() - 65) + 0.7 * (test["ward"] == "icu").to_numpy()
    t_event = rng.exponential(900 * np.exp(-lp))
    t_censor = rng.uniform(200, 2000, 260)
    y_test = np.column_stack([np.ceil(np.minimum(t_event, t_censor)), t_event <= t_censor]).astype(float)
    y_train = np.column_stack([rng.uniform(10, 2000, 200).round(), rng.random(200) < 0.4]).astype(float)
    grid = np.linspace(10, 730, 60)
    horizons = [365.0, 730.0]
    outputs = {}
    for name, scale in (("mlp", 1.0), ("cox_ph", 0.8)):
        risk = scale * lp + rng.normal(0, 0.2, 260)
        outputs[name] = {"risk": risk, "surv": np.exp(-np.outer(np.exp(risk), grid) / 900)}
    metrics = {m: bootstrap_ci(lambda i, m=m: survival_metrics(
        y_test[i, 0], y_test[i, 1], outputs[m]["risk"][i], horizons=horizons,
        surv=outputs[m]["surv"][i], surv_times=grid), 260, n_boot=10) for m in outputs}
    doc = doc_for("survival", metrics, {"name": "train", "n": 200, "events": int(y_train[:, 1].sum())},
                  {"name": "test", "n": 260, "events": int(y_test[:, 1].sum())}, horizons=horizons,
                  time_unit="days")
    return dict(train=train, test=test, y_train=y_train, y_test=y_test, outputs=outputs, doc=doc, grid=grid,
                horizons=horizons)


def test_survival_report_has_every_section_and_a_calibration_plot_per_horizon(tmp_path, survival_case):
    c = survival_case
    path = write_report(tmp_path / "surv.html", title="Synthetic survival", task="survival", metrics_doc=c["doc"],
                        quality=None, train_frame=c["train"], test_frame=c["test"], y_train=c["y_train"],
                        y_test=c["y_test"], features=FEATURES, outputs=c["outputs"], horizons=c["horizons"],
                        time_unit="days", surv_grid=c["grid"],
                        histories={"mlp": [{"train_loss": [3.0, 2.5, 2.4], "val_loss": [3.1, 2.9, 3.0],
                                            "best_epoch": 1}]})

    page = read_page(path)
    assert set(SECTION_IDS["common"] + SECTION_IDS["survival"] + ("training",)) <= set(page.sections)
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    text = path.read_text()
    assert "Calibration at 365 days" in text or 'alt="calibration at 365 days"' in text
    assert 'alt="calibration at 730 days"' in text
    assert "Not available" not in text


def test_survival_report_of_risk_scores_alone_explains_the_missing_calibration(tmp_path, survival_case):
    c = survival_case
    outputs = {m: {"risk": o["risk"]} for m, o in c["outputs"].items()}
    path = write_report(tmp_path / "surv.html", title="risk only", task="survival", metrics_doc=c["doc"],
                        quality=None, train_frame=None, test_frame=c["test"], y_train=None,
                        y_test=c["y_test"], features=FEATURES, outputs=outputs)

    assert "survival-calibration" in read_page(path).sections
    assert "pass each model&#39;s predicted survival curves" in path.read_text()


def test_multiclass_and_regression_reports_are_written(tmp_path):
    rng = np.random.default_rng(2)
    train, test = frame(rng, 120), frame(rng, 150)
    codes = rng.integers(0, 3, 150).astype(float)
    proba = rng.dirichlet([2, 2, 2], size=150)
    doc = doc_for("multiclass", {"mlp": {"accuracy": {"value": 0.4, "ci_low": 0.3, "ci_high": 0.5}}},
                  {"name": "a", "n": 120, "class_counts": {"low": 40, "mid": 40, "high": 40}}, {"name": "b", "n": 150})
    path = write_report(tmp_path / "m.html", title="multi", task="multiclass", metrics_doc=doc, quality=None,
                        train_frame=train, test_frame=test, y_train=rng.integers(0, 3, 120).astype(float),
                        y_test=codes, features=FEATURES, outputs={"mlp": {"proba": proba}})
    assert set(SECTION_IDS["common"] + SECTION_IDS["multiclass"]) <= set(read_page(path).sections)
    assert "class mid, n (%)" in path.read_text()

    y = rng.normal(size=150)
    doc = doc_for("regression", {"mlp": {"rmse": {"value": 1.0, "ci_low": 0.9, "ci_high": 1.1}}},
                  {"name": "a", "n": 120}, {"name": "b", "n": 150})
    path = write_report(tmp_path / "r.html", title="reg", task="regression", metrics_doc=doc, quality=None,
                        train_frame=train, test_frame=test, y_train=rng.normal(size=120), y_test=y,
                        features=FEATURES, outputs={"mlp": {"value": y + rng.normal(size=150)},
                                                    "linear": {"value": 0.5 * y}})
    assert set(SECTION_IDS["common"] + SECTION_IDS["regression"]) <= set(read_page(path).sections)


# ----- model card --------------------------------------------------------------------------------


def card_meta(**changes) -> dict:
    meta = {
        "task": "binary", "run": "demo",
        "data": {"train": {"name": "hospital A", "n": 400, "events": 30},
                 "test": {"name": "hospital B", "n": 300, "events": 40}},
        "bootstrap": {"replicates": 1000, "level": 0.95, "seed": 0},
        "threshold": 0.5,
        "models": {
            "mlp": {"auroc": {"value": 0.71, "ci_low": 0.63, "ci_high": 0.79},
                    "calibration_slope": {"value": 0.6, "ci_low": 0.45, "ci_high": 0.8},
                    "calibration_intercept": {"value": -0.1, "ci_low": -0.4, "ci_high": 0.2}},
            "logistic": {"auroc": {"value": 0.74, "ci_low": 0.66, "ci_high": 0.81}},
        },
        "features": FEATURES,
        "split": {"kind": "external"},
        "quality": {"train": {"missing": {"lactate": {"count": 12, "fraction": 0.03}},
                              "out_of_range": {"age": {"count": 2}}}},
        "preprocess": {"impute": "median", "missing_indicators": True, "scale": "standard"},
    }
    return {**meta, **changes}


def test_model_card_reports_metrics_with_intervals_and_the_automatic_limitations():
    card = model_card(card_meta())

    for heading in ("## Intended use", "## Model", "## Training and evaluation data", "## Performance",
                    "## Limitations", "## TRIPOD+AI checklist", "### To be completed by the authors"):
        assert heading in card
    assert "| AUROC | 0.710 (0.630–0.790) | 0.740 (0.660–0.810) |" in card
    assert "6.0 per parameter" in card and "Peduzzi" in card  # 30 events / 5 parameters
    assert "only 40 events" in card
    assert "Validation is external" in card and "hospital B" in card
    assert "calibration slope 0.600 (0.450–0.800) differs from 1" in card
    limitations = card.split("## Limitations")[1].split("## TRIPOD")[0]
    assert "calibration intercept" not in limitations  # its interval includes 0
    assert "lactate 3.0%" in card and "age 2" in card
    assert "does not outperform the logistic baseline" in card


def test_model_card_flags_internal_validation_and_leaves_unknown_items_to_the_authors():
    card = model_card(card_meta(split={"kind": "stratified", "test_fraction": 0.25}))

    assert "Validation is internal only" in card
    rows = [line for line in card.splitlines() if line.startswith("| ") and " | " in line]
    items = {line.split(" | ")[0].strip("| "): line for line in rows}
    assert "to be completed by the authors" in items["17"]  # ethics cannot be known by the run
    assert "filled by the run" in items["7"] and "filled by the run" in items["15"]
    assert "n = 400 development, 300 evaluation" in items["10"]


def test_markdown_is_rendered_with_tables_and_lists_and_raw_html_escaped():
    out = markdown_html("# T\n\n- a **b**\n  - nested `c`\n\n| x | y |\n|---|---|\n| 1 \\| 2 | <b> |\n")

    assert "<h2>T</h2>" in out
    assert "<li>a <strong>b</strong></li>" in out and "<code>c</code>" in out
    assert "<td>1 | 2</td><td>&lt;b&gt;</td>" in out
