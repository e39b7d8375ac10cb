"""Scoring fitted models on held-out rows: outputs, the task's metrics, bootstrap CIs and paired differences.

Plain arrays and fitted models in (anything with ``predict_proba`` / ``predict`` / ``predict_risk`` /
``predict_survival``), numbers out; no recipe, bundle or config file involved, so a notebook can score
models the same way the training recipe does.

Every model is scored on the same bootstrap resamples (same seed), so the CI of a difference
``a - b`` is a paired comparison: it says whether model ``a`` earned its place over ``b`` on these rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from precimed.errors import DataError
from precimed.evaluate.bootstrap import bootstrap_ci
from precimed.evaluate.metrics import binary_metrics, multiclass_metrics, regression_metrics
from precimed.evaluate.survival import survival_metrics

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def survival_grid(time: np.ndarray, horizons: Sequence[float]) -> np.ndarray:
    """Time grid for survival curves and the integrated Brier score: from early follow-up to the last horizon."""
    return np.linspace(float(np.percentile(time, 1)), max(horizons), 100)


def model_outputs(model: Any, X: Any, task: str, grid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """What a model says about each row, in the form the task's metrics consume.

    binary: ``proba`` (n,); multiclass: ``proba`` (n, k); regression: ``value``; survival: ``risk`` and,
    given a grid, ``surv`` (n, len(grid)).
    """
    if task == "binary":
        return {"proba": model.predict_proba(X)[:, 1]}
    if task == "multiclass":
        return {"proba": model.predict_proba(X)}
    if task == "regression":
        return {"value": model.predict(X)}
    out = {"risk": model.predict_risk(X)}
    if grid is not None:
        out["surv"] = model.predict_survival(X, grid)
    return out


def metric_function(task: str, y: np.ndarray, out: Mapping[str, np.ndarray], *, threshold: float = 0.5,
                    horizons: Sequence[float] = (), grid: np.ndarray | None = None
                    ) -> Callable[[np.ndarray], dict[str, float]]:
    """The task's metrics on a subset of rows (an index array), for the bootstrap."""
    if task == "binary":
        return lambda i: binary_metrics(y[i], out["proba"][i], threshold=threshold)
    if task == "multiclass":
        return lambda i: multiclass_metrics(y[i].astype(int), out["proba"][i])
    if task == "regression":
        return lambda i: regression_metrics(y[i], out["value"][i])
    return lambda i: survival_metrics(y[i, 0], y[i, 1], out["risk"][i], horizons=list(horizons),
                                      surv=out["surv"][i], surv_times=grid)


def paired(a: Callable[[np.ndarray], dict[str, float]], b: Callable[[np.ndarray], dict[str, float]]
           ) -> Callable[[np.ndarray], dict[str, float]]:
    """Metric differences a − b on the same rows."""
    def diff(i: np.ndarray) -> dict[str, float]:
        left, right = a(i), b(i)
        return {k: left[k] - right[k] for k in left}
    return diff


@dataclass
class Evaluation:
    """Metrics with CIs per model, paired differences (keyed ``"a - b"``), and each model's outputs."""

    results: dict[str, dict]
    comparisons: dict[str, dict]
    outputs: dict[str, dict]
    grid: np.ndarray | None


def score_models(models: Mapping[str, Any], X: Any, y: np.ndarray, *, task: str, horizons: Sequence[float] = (),
                 time_unit: str = "", comparisons: Iterable[tuple[str, str]] = (), n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95, threshold: float = 0.5, echo: Echo = _quiet) -> Evaluation:
    """Every model's metrics with bootstrap CIs, and the paired differences ``a - b`` asked for.

    ``X`` is whatever the models read (an array, or a dict of views for models that pick their own);
    ``y`` the labels (survival: an (n, 2) array of time, event). Resampling is plain (unstratified):
    fixing the event count per replicate would make calibration CIs too narrow.
    """
    grid = None
    if task == "survival":
        if max(horizons) >= y[:, 0].max():
            raise DataError(f"horizon {max(horizons)} {time_unit} lies beyond the last follow-up time "
                            f"{y[:, 0].max():g} of the evaluation data; choose shorter task.horizons")
        grid = survival_grid(y[:, 0], horizons)
    boot = dict(n_boot=n_boot, seed=seed, level=level)
    outputs = {name: model_outputs(model, X, task, grid) for name, model in models.items()}
    fns = {name: metric_function(task, y, out, threshold=threshold, horizons=horizons, grid=grid)
           for name, out in outputs.items()}
    results = {}
    for name, fn in fns.items():
        echo(f"scoring {name} with {n_boot} bootstrap replicates")
        results[name] = bootstrap_ci(fn, len(y), **boot)
    diffs = {}
    for a, b in comparisons:
        echo(f"comparing {a} with {b} (paired bootstrap)")
        diffs[f"{a} - {b}"] = bootstrap_ci(paired(fns[a], fns[b]), len(y), **boot)
    return Evaluation(results, diffs, outputs, grid)
