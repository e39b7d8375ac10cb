"""Non-deep baselines trained beside every deep model, each with a JSON-safe state.

logistic (binary / multiclass), linear (regression), Cox PH via lifelines (survival), and gradient
boosting via LightGBM for every task (survival with a Cox partial-likelihood objective).
"""

from __future__ import annotations

import warnings
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split

from precimed.errors import DataError
from precimed.models.survival import breslow_cumulative_hazard, survival_at


def _floats(a: Any) -> list:
    return np.asarray(a, dtype=float).tolist()


class LogisticBaseline:
    """L2-penalised logistic regression (binary or multinomial)."""

    kind = "logistic"

    def __init__(self, C: float = 1.0, class_weight: str | None = None) -> None:
        self.C = C
        self.class_weight = class_weight

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticBaseline:
        self.model_ = LogisticRegression(C=self.C, max_iter=5000, class_weight=self.class_weight).fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(X)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        m = self.model_
        return {"C": self.C, "coef": _floats(m.coef_), "intercept": _floats(m.intercept_),
                "dtype": str(m.coef_.dtype), "classes": np.asarray(m.classes_).tolist()}, {}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> LogisticBaseline:
        self = cls(C=state["C"])
        m = LogisticRegression(C=state["C"])
        m.coef_ = np.asarray(state["coef"], dtype=state.get("dtype", "float64"))  # float32 fits predict in float32
        m.intercept_ = np.asarray(state["intercept"], dtype=state.get("dtype", "float64"))
        m.classes_ = np.asarray(state["classes"])
        m.n_features_in_ = m.coef_.shape[1]
        self.model_ = m
        return self


class LinearBaseline:
    """Ordinary least squares."""

    kind = "linear"

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearBaseline:
        self.model_ = LinearRegression().fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        m = self.model_
        return {"coef": _floats(m.coef_), "intercept": float(m.intercept_), "dtype": str(m.coef_.dtype)}, {}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> LinearBaseline:
        self = cls()
        m = LinearRegression()
        m.coef_ = np.asarray(state["coef"], dtype=state.get("dtype", "float64"))
        m.intercept_ = np.asarray(state["intercept"], dtype=state.get("dtype", "float64"))[()]
        m.n_features_in_ = len(m.coef_)
        self.model_ = m
        return self


class CoxPHBaseline:
    """Cox proportional hazards (lifelines, small ridge penalty), Breslow baseline for survival curves."""

    kind = "cox_ph"

    def __init__(self, penalizer: float = 0.01) -> None:
        self.penalizer = penalizer

    def fit(self, X: np.ndarray, y: np.ndarray) -> CoxPHBaseline:
        from lifelines import CoxPHFitter

        time, event = y[:, 0], y[:, 1]
        keep = np.flatnonzero(X.std(axis=0) > 1e-12)  # constant columns carry no information
        frame = pd.DataFrame(X[:, keep], columns=[f"x{i}" for i in keep])
        frame["_time"], frame["_event"] = time, event
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitter = CoxPHFitter(penalizer=self.penalizer).fit(frame, "_time", "_event")
        beta = np.zeros(X.shape[1])
        beta[keep] = fitter.params_.to_numpy()
        self.coef_ = beta
        self.base_times_, self.base_cumhaz_ = breslow_cumulative_hazard(X @ beta, time, event)
        return self

    def predict_risk(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef_

    def predict_survival(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        return survival_at(self.predict_risk(X), times, self.base_times_, self.base_cumhaz_)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        return {"penalizer": self.penalizer, "coef": _floats(self.coef_),
                "base_times": _floats(self.base_times_), "base_cumhaz": _floats(self.base_cumhaz_)}, {}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> CoxPHBaseline:
        self = cls(penalizer=state["penalizer"])
        self.coef_ = np.asarray(state["coef"])
        self.base_times_ = np.asarray(state["base_times"])
        self.base_cumhaz_ = np.asarray(state["base_cumhaz"])
        return self


def _cox_grad_hess(pred: np.ndarray, time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and diagonal Hessian of the Cox partial NLL (Breslow ties) w.r.t. each risk score."""
    order = np.argsort(-time, kind="mergesort")
    t, e = time[order], event[order]
    shift = pred.max()
    w = np.exp(pred[order] - shift)
    cum = np.cumsum(w)
    # risk-set sum for each row's time block: the cumulative sum at the block's last (earliest-time) row
    _, first = np.unique(-t, return_index=True)
    last = np.r_[first[1:], len(t)] - 1
    block = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(t)]))
    risk_set = cum[last][block]
    inv = np.where(e, 1.0 / risk_set, 0.0)
    inv2 = np.where(e, 1.0 / risk_set**2, 0.0)
    # row i collects events k with t_k <= t_i: in descending order these are at or after i's block end
    rev_inv = np.cumsum(inv[::-1])[::-1]
    rev_inv2 = np.cumsum(inv2[::-1])[::-1]
    first_of_block = first[block]
    a = rev_inv[first_of_block]
    b = rev_inv2[first_of_block]
    grad_s = w * a - e
    hess_s = w * a - w**2 * b
    grad, hess = np.empty_like(pred), np.empty_like(pred)
    grad[order], hess[order] = grad_s, np.maximum(hess_s, 1e-12)
    return grad, hess


def _cox_nll(pred: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    order = np.argsort(-time, kind="mergesort")
    t, e, r = time[order], event[order], pred[order]
    shift = r.max()
    cum = np.cumsum(np.exp(r - shift))
    _, first = np.unique(-t, return_index=True)
    last = np.r_[first[1:], len(t)] - 1
    block = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(t)]))
    log_rs = np.log(cum[last][block]) + shift
    return float(-((r - log_rs) * e).sum() / max(e.sum(), 1))


_OBJECTIVES = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
_METRICS = {"binary": "binary_logloss", "multiclass": "multi_logloss", "regression": "l2"}


class GBMModel:
    """LightGBM gradient boosting with early stopping on an inner validation split.

    Survival uses a hand-written Cox partial-likelihood objective (gradient and Hessian in O(n log n)),
    then a Breslow baseline, so it yields risk scores and survival curves like the Cox models.
    """

    kind = "gbm"

    def __init__(self, task: str, n_estimators: int = 500, learning_rate: float = 0.03, num_leaves: int = 8,
                 min_child_samples: int = 20, subsample: float = 0.8, colsample_bytree: float = 0.8,
                 reg_lambda: float = 1.0, val_fraction: float = 0.2, random_state: int = 0,
                 class_weight: str | None = None) -> None:
        self.task = task
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.class_weight = class_weight

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples, "bagging_fraction": self.subsample, "bagging_freq": 1,
            "feature_fraction": self.colsample_bytree, "lambda_l2": self.reg_lambda, "seed": self.random_state,
            "num_threads": 1, "deterministic": True, "force_row_wise": True, "verbosity": -1,
        }
        if self.task == "survival":
            params["objective"] = self._cox_objective
            params["metric"] = "None"
        else:
            params["objective"] = _OBJECTIVES[self.task]
            params["metric"] = _METRICS[self.task]
            if self.task == "multiclass":
                params["num_class"] = self.n_classes_
        return params

    @staticmethod
    def _cox_objective(pred: np.ndarray, data: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
        y = data.get_label()
        return _cox_grad_hess(pred, np.abs(y), (y > 0).astype(float))

    @staticmethod
    def _cox_eval(pred: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
        y = data.get_label()
        return "cox_nll", _cox_nll(pred, np.abs(y), (y > 0).astype(float)), False

    def fit(self, X: np.ndarray, y: np.ndarray) -> GBMModel:
        if self.task == "survival":
            label = np.where(y[:, 1] > 0, y[:, 0], -y[:, 0])  # signed time: positive = event
            if np.any(y[:, 0] <= 0):
                label = np.where(y[:, 1] > 0, y[:, 0] + 1e-6, -(y[:, 0] + 1e-6))
            strata = y[:, 1]
        else:
            label = np.asarray(y, dtype=float)
            strata = y if self.task in ("binary", "multiclass") else None
        self.n_classes_ = int(np.max(y)) + 1 if self.task == "multiclass" else None
        idx_tr, idx_va = train_test_split(np.arange(len(X)), test_size=self.val_fraction,
                                          random_state=self.random_state, stratify=strata)
        weight = None
        if self.class_weight == "balanced" and self.task in ("binary", "multiclass"):
            counts = np.bincount(label.astype(int))
            weight = (len(label) / (len(counts) * counts))[label.astype(int)]
        train = lgb.Dataset(X[idx_tr], label[idx_tr], weight=None if weight is None else weight[idx_tr],
                            free_raw_data=False)
        val = lgb.Dataset(X[idx_va], label[idx_va], reference=train, free_raw_data=False)
        feval = self._cox_eval if self.task == "survival" else None
        booster = lgb.train(self._params(), train, num_boost_round=self.n_estimators, valid_sets=[val],
                            feval=feval, callbacks=[lgb.early_stopping(50, verbose=False)])
        self.best_iteration_ = int(booster.best_iteration or self.n_estimators)
        self.booster_ = booster
        if self.task == "survival":
            risk = self.predict_risk(X)
            self.base_times_, self.base_cumhaz_ = breslow_cumulative_hazard(risk, y[:, 0], y[:, 1])
        return self

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return self.booster_.predict(X, num_iteration=self.best_iteration_, raw_score=True)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.booster_.predict(X, num_iteration=self.best_iteration_)
        return np.column_stack([1 - p, p]) if self.task == "binary" else p

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.booster_.predict(X, num_iteration=self.best_iteration_)

    def predict_risk(self, X: np.ndarray) -> np.ndarray:
        return self._raw(X)

    def predict_survival(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        return survival_at(self.predict_risk(X), times, self.base_times_, self.base_cumhaz_)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        state = {"task": self.task, "best_iteration": self.best_iteration_, "n_classes": self.n_classes_}
        if self.task == "survival":
            state |= {"base_times": _floats(self.base_times_), "base_cumhaz": _floats(self.base_cumhaz_)}
        return state, {"gbm.txt": self.booster_.model_to_string().encode()}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> GBMModel:
        self = cls(task=state["task"])
        self.best_iteration_ = state["best_iteration"]
        self.n_classes_ = state["n_classes"]
        self.booster_ = lgb.Booster(model_str=blobs["gbm.txt"].decode())
        if self.task == "survival":
            self.base_times_ = np.asarray(state["base_times"])
            self.base_cumhaz_ = np.asarray(state["base_cumhaz"])
        return self


def check_survival_target(y: np.ndarray, *, where: str) -> None:
    """A survival target is (time, event) with at least one event."""
    if y.ndim != 2 or y.shape[1] != 2:
        raise DataError(f"{where}: survival target must have two columns (time, event), got shape {y.shape}")
    if y[:, 1].sum() == 0:
        raise DataError(f"{where}: no events among {len(y)} rows; a survival model cannot be fitted")
