"""Each tabular model's prediction as direct array code on the encoded float32 matrix.

The reference estimators re-check their input on every call (scikit-learn's ``validate_data``, torch tensors,
LightGBM's array checks); here the matrix comes from the compiled preprocessor, so it is already float32, finite
and of the right width, and each model is the arithmetic its ``predict_*`` method ends in:

- nets (``mlp``, ``resmlp``): the member-stacked numpy program of ``precimed.compiled.nets``, then the same
  head as ``NetEnsembleEstimator`` (sigmoid / softmax averaged over members, de-standardised regression, mean
  Cox score);
- ``logistic`` / ``linear`` / ``cox_ph``: one matrix product with the fitted coefficients, in the dtype
  scikit-learn uses;
- ``gbm``: LightGBM's own C predictor (the fastest path it has), called without the estimator's checks;
- a recalibrated model (``train.updating.RecalibratedModel``): its base model's compiled form, then
  ``a + b * logit / value`` or ``b * risk`` with its own baseline hazard.

Survival models give the risk score and the event probability at each horizon through the Breslow baseline,
whose cumulative hazard at the horizons is looked up once at compile time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.utils.extmath import softmax

from precimed.compiled.nets import NetProgram, compile_nets
from precimed.models.baselines import CoxPHBaseline, GBMModel, LinearBaseline, LogisticBaseline
from precimed.train.estimators import NetEnsembleEstimator
from precimed.train.updating import RecalibratedModel, recalibration_logit

__all__ = ["CompiledModel", "compile_model", "output_names"]


def output_names(task: str, *, classes: Sequence[Any] | None, horizons: Sequence[float], time_unit: str) -> list[str]:
    """The prediction table's output columns for a task, in order (as ``prediction_columns`` writes them)."""
    if task == "binary":
        return ["probability"]
    if task == "multiclass":
        return [f"p_{c}" for c in classes or []]
    if task == "regression":
        return ["prediction"]
    return ["risk_score", *[f"event_probability_{h:g}{time_unit}" for h in horizons]]


def _baseline_at(base_times: np.ndarray, base_cumhaz: np.ndarray, horizons: Sequence[float]) -> np.ndarray:
    """H0 at each horizon, step-wise, exactly as ``models.survival.survival_at`` looks it up."""
    pos = np.searchsorted(base_times, np.asarray(horizons, dtype=float), side="right") - 1
    return np.where(pos >= 0, base_cumhaz[np.clip(pos, 0, None)], 0.0)


class CompiledModel:
    """One model's outputs from the encoded matrix: ``outputs(X)`` gives the task's columns as arrays.

    ``kind`` says which form it took (``nets``, ``linear``, ``gbm``); ``program`` is the net program or None;
    ``coef`` / ``intercept`` the linear form's coefficients; ``h0`` the baseline cumulative hazard at the
    horizons (survival).
    """

    def __init__(self, est: Any, task: str, *, horizons: Sequence[float], n_columns: int) -> None:
        self.task = task
        self.horizons = list(horizons)
        self.program: NetProgram | None = None
        self.coef: np.ndarray | None = None
        self.intercept: np.ndarray | None = None
        self.booster: Any = None
        self.h0: np.ndarray | None = None
        if isinstance(est, NetEnsembleEstimator) and getattr(est, "n_features_in_", None) == n_columns:
            self.kind = "nets"
            self.program = compile_nets(list(est.nets_))
            self.y_mean, self.y_scale = getattr(est, "y_mean_", 0.0), getattr(est, "y_scale_", 1.0)
        elif isinstance(est, LogisticBaseline | LinearBaseline):
            self.kind = "linear"
            self.coef, self.intercept = est.model_.coef_, est.model_.intercept_
            self.multinomial = isinstance(est, LogisticBaseline) and np.size(est.model_.classes_) > 2
        elif isinstance(est, CoxPHBaseline):
            self.kind = "linear"
            self.coef, self.intercept = est.coef_, None
        elif isinstance(est, GBMModel):
            self.kind = "gbm"
            self.booster, self.iterations = est.booster_, est.best_iteration_
        elif isinstance(est, RecalibratedModel):
            self.kind = "recalibrated"
            self.base = CompiledModel(est.base, task, horizons=horizons, n_columns=n_columns)
            self.a, self.b = est.a_, est.b_
        else:
            raise TypeError(f"no compiled form for {type(est).__name__}")
        if task == "survival":
            self.h0 = _baseline_at(np.asarray(est.base_times_), np.asarray(est.base_cumhaz_), self.horizons)

    # ----- the pieces -------------------------------------------------------------------------------------------
    def _linear(self, X: np.ndarray) -> np.ndarray:
        coef = self.coef
        scores = X @ (coef.T if coef.ndim == 2 else coef)
        if self.intercept is not None:
            scores = scores + self.intercept
        if scores.ndim > 1 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        return scores

    def _base_output(self, X: np.ndarray) -> np.ndarray:
        """A recalibrated model's base output on the recalibration's scale (logit, value or risk score)."""
        if self.task == "binary":
            return recalibration_logit(self.base.probabilities(X)[:, 1])
        return np.asarray(self.base.outputs(X)[0], dtype=float)

    def _risk(self, X: np.ndarray) -> np.ndarray:
        if self.kind == "recalibrated":
            return self.b * self._base_output(X)
        if self.kind == "nets":
            return self.program.run(X)[..., 0].mean(axis=0)
        if self.kind == "gbm":
            return self.booster.predict(X, num_iteration=self.iterations, raw_score=True)
        return self._linear(X)

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes), as the estimator's ``predict_proba``."""
        if self.kind == "recalibrated":
            p = expit(self.a + self.b * self._base_output(X))
            return np.column_stack([1 - p, p])
        if self.kind == "nets":
            out = self.program.run(X)
            if self.task == "binary":
                p = expit(out[..., 0]).mean(axis=0)
                return np.column_stack([1 - p, p])
            e = np.exp(out - out.max(axis=-1, keepdims=True))
            return (e / e.sum(axis=-1, keepdims=True)).mean(axis=0)
        if self.kind == "gbm":
            p = self.booster.predict(X, num_iteration=self.iterations)
            return np.column_stack([1 - p, p]) if self.task == "binary" else p
        scores = self._linear(X)
        if self.multinomial:
            return softmax(scores, copy=False)
        p = expit(scores)
        return np.stack([1 - p, p], axis=1)

    def outputs(self, X: np.ndarray) -> list[np.ndarray]:
        """The task's output columns, in ``output_names`` order."""
        if self.task == "binary":
            return [self.probabilities(X)[:, 1]]
        if self.task == "multiclass":
            proba = self.probabilities(X)
            return [proba[:, i] for i in range(proba.shape[1])]
        if self.task == "regression":
            if self.kind == "recalibrated":
                return [self.a + self.b * self._base_output(X)]
            if self.kind == "nets":
                return [self.program.run(X)[..., 0].mean(axis=0) * self.y_scale + self.y_mean]
            if self.kind == "gbm":
                return [self.booster.predict(X, num_iteration=self.iterations)]
            return [self._linear(X)]
        risk = self._risk(X)
        surv = np.exp(-np.outer(np.exp(np.asarray(risk, dtype=float)), self.h0))
        return [risk, *[1.0 - surv[:, j] for j in range(len(self.horizons))]]


def compile_model(est: Any, task: str, *, horizons: Sequence[float], n_columns: int) -> CompiledModel | None:
    """The compiled form of a fitted estimator, or None when it has none (it is then scored the reference way)."""
    try:
        return CompiledModel(est, task, horizons=horizons, n_columns=n_columns)
    except TypeError:
        return None
