"""The whole evaluation report of a 10,000-patient evaluation, SHAP on 200 patients included.

Plain script: ``python benchmarks/report_end_to_end.py``. Trains (untimed) the deep model and two baselines
on 5,000 synthetic patients, then times what a run does after training: metrics with 1,000 bootstrap
replicates for three models, SHAP importance for 200 evaluation patients per model, and the HTML report.
Target (issue 3): the report with SHAP renders in under 30 s on this 2-core machine.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from precimed.workflows.modeling import _metrics_doc, score_models
from scipy.special import expit

from precimed.cohort import Cohort
from precimed.config import parse_config
from precimed.evaluate import background_sample
from precimed.models.baselines import GBMModel, LogisticBaseline
from precimed.preprocess import TabularPreprocessor
from precimed.train.estimators import NeuralRiskModel
from precimed.workflows.explaining import report_importance
from precimed.workflows.fairness import analyse_subgroups
from precimed.workflows.reporting import card_for, write_run_report

CONFIG = {
    "name": "bench-10k", "data": {"train": {"path": "unused.csv"}},
    "task": {"kind": "binary", "target": "y", "positive": 1},
    "features": [
        {"name": "age", "unit": "years", "range": [18, 100]},
        {"name": "creatinine", "unit": "mg/dL", "range": [0.1, 20], "log": True},
        {"name": "sbp", "unit": "mm Hg", "range": [50, 260]},
        {"name": "lactate", "unit": "mmol/L", "range": [0, 30]},
        {"name": "diabetes", "kind": "binary", "positive": ["yes"]},
        {"name": "ward", "kind": "categorical", "categories": ["medical", "surgical", "icu"]},
    ],
    "evaluation": {"bootstrap": 1000, "explain": 200, "subgroups": ["age"]},
}


def cohort(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    f = pd.DataFrame({
        "age": rng.normal(65, 14, n).clip(18, 99).round(),
        "creatinine": np.exp(rng.normal(0, 0.4, n)).round(2),
        "sbp": rng.normal(130, 20, n).round(),
        "lactate": np.abs(rng.normal(1.5, 1.0, n)).round(1),
        "diabetes": rng.choice(["yes", "no"], n, p=[0.3, 0.7]),
        "ward": rng.choice(["medical", "surgical", "icu"], n, p=[0.5, 0.4, 0.1]),
    })
    f.loc[rng.random(n) < 0.05, "lactate"] = np.nan
    logit = (-3 + 0.04 * (f.age - 65) + 0.8 * np.log(f.creatinine) - 0.01 * (f.sbp - 130)
             + 0.5 * f.lactate.fillna(1.5) + 0.4 * (f.diabetes == "yes") + 1.0 * (f.ward == "icu"))
    f.index = pd.Index(np.arange(1, n + 1), name="patient_id")
    return f, (rng.random(n) < expit(logit)).astype(float)


def main() -> None:
    rng = np.random.default_rng(0)
    cfg = parse_config(CONFIG)
    train_X, train_y = cohort(5000, rng)
    test_X, test_y = cohort(10_000, rng)
    features = [f.model_dump() for f in cfg.features]
    pre = TabularPreprocessor(features=features).fit(train_X)
    Xtr, Xte = pre.transform(train_X), pre.transform(test_X)
    models = {"mlp": NeuralRiskModel(task="binary", ensemble=3, max_epochs=30).fit(Xtr, train_y),
              "logistic": LogisticBaseline().fit(Xtr, train_y),
              "gbm": GBMModel(task="binary", n_estimators=200).fit(Xtr, train_y)}
    train = Cohort("synthetic train", train_X, train_y, train_X.assign(patient_id=train_X.index), "patient_id")
    test = Cohort("synthetic test", test_X, test_y, test_X.assign(patient_id=test_X.index), "patient_id")
    timings = []
    start = time.perf_counter()
    ev = score_models(models, Xte, test_y, cfg)
    timings.append(("metrics, 3 models x 1000 bootstrap replicates (+ paired diffs)", time.perf_counter() - start))
    t = time.perf_counter()
    subgroups = analyse_subgroups(cfg, test, ev.outputs, ev.grid)
    timings.append(("subgroups and fairness gaps", time.perf_counter() - t))
    t = time.perf_counter()
    background = background_sample(Xtr, pre.feature_groups_, n=100, seed=0)
    importance = report_importance(models, cfg.task, background, Xte, test_X, pre.feature_groups_, n=200, seed=0)
    timings.append(("SHAP on 200 patients, 3 models (incl. shap import/compile)", time.perf_counter() - t))
    t = time.perf_counter()
    doc = _metrics_doc(cfg, train, test, ev.results, ev.comparisons)
    quality = {"train": {}, "test": {}}
    card = card_for(cfg, doc, quality, n_inputs=Xtr.shape[1], deep_model="mlp", subgroups=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_run_report(Path(tmp) / "report.html", cfg=cfg, doc=doc, quality=quality, train_X=train_X,
                                train_y=train_y, test_X=test_X, test_y=test_y, outputs=ev.outputs, grid=None,
                                models=models, card=card, classes=None, subgroups=subgroups,
                                importance=importance[0], importance_plot=importance[1])
        size = path.stat().st_size
    timings.append(("HTML report (Table 1, curves, plots, card)", time.perf_counter() - t))
    total = time.perf_counter() - start
    print(f"evaluation of {len(test_y):,} patients, SHAP on 200; report {size / 1e6:.2f} MB")
    print(f"{'step':70s} {'seconds':>8s}")
    for name, secs in timings:
        print(f"{name:70s} {secs:8.2f}")
    print(f"{'total (target < 30 s)':70s} {total:8.2f}")


if __name__ == "__main__":
    main()
