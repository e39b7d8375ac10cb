"""Time the evaluation report on a 10,000-patient synthetic binary evaluation with 3 models.

Plain script, not a test: ``python benchmarks/report_speed.py [n_patients]``. It times only the
report's own work: Table 1, the curve numbers (precimed.evaluate.curves), the figures
(precimed.evaluate.plots), the model card and the full ``write_report`` call (which redoes all
of it and renders and writes the HTML). The metrics document with bootstrap CIs and any SHAP
values are computed elsewhere in a run, so they are prepared before the clock starts. Target: the
full report in well under 30 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from precimed.evaluate import binary_metrics, bootstrap_ci
from precimed.evaluate import curves as cv
from precimed.evaluate import plots as pl
from precimed.evaluate.model_card import model_card
from precimed.evaluate.report import SMOOTH_BOOT, write_report
from precimed.evaluate.table_one import table_one

FEATURES = [
    {"name": "age", "kind": "numeric", "unit": "years", "range": [18, 100]},
    {"name": "creatinine", "kind": "numeric", "unit": "mg/dL", "range": [0.1, 20], "log": True},
    {"name": "sbp", "kind": "numeric", "unit": "mm Hg", "range": [50, 260]},
    {"name": "lactate", "kind": "numeric", "unit": "mmol/L", "range": [0, 30]},
    {"name": "diabetes", "kind": "binary", "positive": ["yes"]},
    {"name": "ward", "kind": "categorical", "categories": ["medical", "surgical", "icu"]},
]


def cohort(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.DataFrame({
        "age": rng.normal(64, 14, n).round(),
        "creatinine": rng.lognormal(0.0, 0.45, n),
        "sbp": rng.normal(128, 20, n),
        "lactate": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(0.3, 0.5, n)),
        "diabetes": rng.choice(np.array(["yes", "no"], dtype=object), n, p=[0.25, 0.75]),
        "ward": rng.choice(np.array(["medical", "surgical", "icu"], dtype=object), n, p=[0.5, 0.35, 0.15]),
    }).astype({"diabetes": object, "ward": object})
    lp = (0.04 * (frame["age"] - 64) + 0.9 * np.log(frame["creatinine"]) + 0.8 * (frame["ward"] == "icu")
          + 0.4 * (frame["diabetes"] == "yes") - 1.4).to_numpy()
    return frame, lp


def main(n: int = 10_000) -> None:
    rng = np.random.default_rng(0)
    train, lp_train = cohort(n, rng)
    test, lp = cohort(n, rng)
    y_train = (rng.random(n) < expit(lp_train)).astype(float)
    y = (rng.random(n) < expit(lp)).astype(float)
    outputs = {
        "mlp": {"proba": expit(lp + rng.normal(0, 0.35, n))},
        "logistic": {"proba": expit(lp)},
        "gbm": {"proba": expit(1.3 * lp + rng.normal(0, 0.3, n))},
    }
    # prepared elsewhere in a run (workflows.evaluate_models): not timed
    models = {m: bootstrap_ci(lambda i, m=m: binary_metrics(y[i], outputs[m]["proba"][i]), n, n_boot=200,
                              strata=y) for m in outputs}
    doc = {"task": "binary", "run": "benchmark", "threshold": 0.5,
           "data": {"train": {"name": "synthetic-train", "n": n, "events": int(y_train.sum())},
                    "test": {"name": "synthetic-test", "n": n, "events": int(y.sum())}},
           "bootstrap": {"replicates": 200, "level": 0.95, "seed": 0}, "models": models}
    histories = {"mlp": [{"train_loss": list(0.6 * np.exp(-np.arange(80) / 30) + 0.3),
                          "val_loss": list(0.62 * np.exp(-np.arange(80) / 30) + 0.32 + 1e-5 * np.arange(80) ** 2),
                          "best_epoch": 40} for _ in range(5)]}
    importance = {m: {f["name"]: float(rng.random()) for f in FEATURES} for m in outputs}

    timings: list[tuple[str, float]] = []

    def timed(label: str, fn):
        start = time.perf_counter()
        value = fn()
        timings.append((label, time.perf_counter() - start))
        return value

    p = {m: o["proba"] for m, o in outputs.items()}
    timed("Table 1", lambda: table_one(train, test, y_train, y, FEATURES, task="binary"))
    rocs = timed("ROC + PR points (3 models)", lambda: ({m: cv.roc_curve(y, p[m]) for m in p},
                                                       {m: cv.pr_curve(y, p[m]) for m in p}))
    binned = timed("binned calibration + ECE", lambda: {m: (cv.binned_calibration(y, p[m]),
                                                            cv.expected_calibration_error(y, p[m])) for m in p})
    smooth = timed(f"loess calibration, {SMOOTH_BOOT} bootstraps",
                   lambda: {m: cv.smoothed_calibration(y, p[m], n_boot=SMOOTH_BOOT) for m in p})
    dca = timed("decision curves", lambda: {m: cv.decision_curve(y, p[m]) for m in p})
    timed("threshold tables + confusion", lambda: [(cv.threshold_table(y, p[m], extra=0.5),
                                                    cv.confusion_matrix(y, p[m])) for m in p])
    timed("figure: ROC + PR", lambda: (pl.roc_plot(rocs[0]), pl.pr_plot(rocs[1])))
    timed("figure: calibration", lambda: pl.calibration_plot({m: b[0] for m, b in binned.items()}, smooth,
                                                             predictions=p))
    timed("figure: decision curve", lambda: pl.decision_curve_plot(dca))
    card = timed("model card", lambda: model_card({**doc, "features": FEATURES, "split": {"kind": "stratified"}}))
    with tempfile.TemporaryDirectory() as tmp:
        path = timed("write_report (everything, end to end)", lambda: write_report(
            Path(tmp) / "report.html", title="Benchmark", task="binary", metrics_doc=doc, quality=None,
            train_frame=train, test_frame=test, y_train=y_train, y_test=y, features=FEATURES, outputs=outputs,
            threshold=0.5, histories=histories, importance=importance, model_card_md=card))
        size = path.stat().st_size

    width = max(len(label) for label, _ in timings)
    print(f"report benchmark: {n:,} test patients, {n:,} training patients, {len(outputs)} models")
    print(f"{'step':<{width}}  seconds")
    print(f"{'-' * width}  -------")
    for label, seconds in timings:
        print(f"{label:<{width}}  {seconds:7.3f}")
    print(f"HTML size: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
