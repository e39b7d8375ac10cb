"""Non-deep baselines trained beside every deep model, each with a JSON-safe state.

logistic (binary / multiclass), linear (regression), Cox PH via lifelines (survival), and gradient
boosting via LightGBM for every task (survival with a Cox partial-likelihood objective).

Every model here (and the nets of ``precimed.train.estimators``) keeps scikit-learn's estimator
contract, checked by ``tests/train/test_sklearn_contract.py``: ``__init__`` only stores its
arguments; ``fit`` validates X and y, sets ``n_features_in_`` and returns self; learned state ends
in ``_``; every prediction checks that the model is fitted and that X is a dense, finite matrix with
the fitted number of columns. The helpers in the first section hold that contract in one place, so
a data problem reads the same, as a :class:`~precimed.errors.DataError`, whichever model meets it.
"""

from __future__ import annotations

import warnings
from typing import Any, Self

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import ClassifierTags, RegressorTags, Tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from precimed.errors import ConfigError, DataError
from precimed.models.survival import breslow_cumulative_hazard, survival_at

TASKS = ("binary", "multiclass", "regression", "survival")
CLASSIFICATION = ("binary", "multiclass")
#: keep float32 input in float32 (models fitted on float32 predict in float32), turn anything else into float64
FLOAT_DTYPES = (np.float64, np.float32)


# ----- the scikit-learn contract, shared by every precimed model ------------------------------------------
def _refuse_sparse(estimator: Any, X: Any) -> None:
    if sp.issparse(X):
        raise DataError(f"{type(estimator).__name__} does not accept sparse input (got {type(X).__name__}); "
                        "pass a dense array, e.g. X.toarray()")


def _refuse_non_finite(X: np.ndarray, action: str, allow_nan: bool = False) -> None:
    bad = np.isinf(X) if allow_nan else ~np.isfinite(X)
    if not bad.any():
        return
    n_nan = 0 if allow_nan else int(np.isnan(X).sum())
    n_inf = int(bad.sum()) - n_nan
    columns = np.flatnonzero(bad.any(axis=0)).tolist()
    shown = f"{columns[:10]}{' ...' if len(columns) > 10 else ''}"
    if allow_nan:
        raise DataError(f"the feature matrix holds {n_inf} inf value(s), in column(s) {shown}; NaN is taken as "
                        f"missing but infinity is not: replace it before {action}")
    raise DataError(f"the feature matrix holds {n_nan} NaN and {n_inf} inf value(s), in column(s) {shown}; "
                    f"impute or preprocess them before {action}")


def check_features(estimator: Any, X: Any, *, dtype: Any = FLOAT_DTYPES, allow_nan: bool = False,
                   action: str = "predicting") -> np.ndarray:
    """X for a fitted model's predictions: dense, 2-D, finite (NaN allowed with ``allow_nan``), with the
    number of columns the model was fitted on.

    Every failure is a DataError (a ValueError, as scikit-learn expects) that names the problem.
    """
    check_is_fitted(estimator)
    _refuse_sparse(estimator, X)
    try:
        X = validate_data(estimator, X, reset=False, dtype=dtype, ensure_all_finite=False)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    _refuse_non_finite(X, action, allow_nan)
    return X


def check_training_data(estimator: Any, X: Any, y: Any, *, task: str, dtype: Any = FLOAT_DTYPES,
                        allow_nan: bool = False, min_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) for ``fit``: X dense, 2-D and finite (NaN allowed with ``allow_nan``) with at least
    ``min_samples`` rows (sets ``n_features_in_``); y one value per row (survival: an (n, 2) array),
    without NaN. The task's own rules for y are in :func:`check_target`.
    """
    _refuse_sparse(estimator, X)
    try:
        X, y = validate_data(estimator, X, y, dtype=dtype, ensure_all_finite=False, ensure_min_samples=min_samples,
                             multi_output=task == "survival", y_numeric=task in ("regression", "survival"))
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    _refuse_non_finite(X, "training", allow_nan)
    return X, y


def check_target(y: Any, task: str, *, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The target as a model trains on it, and the class labels (classification; None otherwise).

    binary / multiclass: labels that already are codes 0..K-1 (binary: 0/1), the form precimed's
    cohorts produce, train as they are and the classes are 0..K-1, so predictions mean what they
    meant for models saved before ``classes_`` existed; other labels (strings, 1/2, -1/1) are coded
    in sorted order. regression: floats. survival: an (n, 2) float array [time, event] with an event.
    """
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; expected one of {list(TASKS)}")
    if task == "survival":
        y = np.asarray(y, dtype=float)
        check_survival_target(y, where=where)
        return y, None
    if task == "regression":
        return np.asarray(y, dtype=float), None
    y = np.asarray(y)
    if y.dtype.kind == "b":
        y = y.astype(float)
    try:
        check_classification_targets(y)
    except ValueError as exc:
        raise DataError(f"{exc} ({where}, task={task!r})") from exc
    labels = np.unique(y)
    if len(labels) < 2:
        raise DataError(f"the training outcome has a single class {labels.tolist()}; need at least two")
    if task == "binary" and len(labels) > 2:
        raise DataError(f"Only binary classification is supported with task='binary'; the outcome has "
                        f"{len(labels)} classes {labels[:10].tolist()}. Use task='multiclass'")
    if labels.dtype.kind in "iuf" and np.all(labels == np.round(labels)) and labels.min() >= 0 \
            and (task == "multiclass" or labels.max() <= 1):
        return y.astype(float), np.arange(2 if task == "binary" else int(labels.max()) + 1)
    classes, codes = np.unique(y, return_inverse=True)
    return codes.astype(float), classes


def check_survival_target(y: np.ndarray, *, where: str) -> None:
    """A survival target is (time, event) with at least one event."""
    if y.ndim != 2 or y.shape[1] != 2:
        raise DataError(f"{where}: survival target must be an (n, 2) array of [time, event]; got shape {y.shape}")
    if y[:, 1].sum() == 0:
        raise DataError(f"{where}: no events among the {len(y)} training rows; a survival model cannot be fitted")


def check_class_weight(class_weight: Any) -> None:
    """precimed's models weigh classes by None or "balanced" only."""
    if class_weight not in (None, "balanced"):
        raise ConfigError(f"class_weight must be None or 'balanced', got {class_weight!r}")


def task_tags(tags: Tags, task: str) -> Tags:
    """scikit-learn tags of a model whose kind follows its ``task``: a classifier for binary and multiclass
    (binary: two classes only), a regressor for regression; survival takes y as an (n, 2) array
    [time, event] and is neither. Every task needs y; X is dense and finite.
    """
    tags.target_tags.required = True
    tags.input_tags.sparse = False
    tags.input_tags.allow_nan = False
    if task in CLASSIFICATION:
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags(multi_class=task == "multiclass")
    elif task == "regression":
        tags.estimator_type = "regressor"
        tags.regressor_tags = RegressorTags()
    elif task == "survival":
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
    return tags


def concordance(y: Any, risk: np.ndarray) -> float:
    """Harrell's C of risk scores (higher = earlier event) against a survival target [time, event]."""
    from lifelines.utils import concordance_index

    y = np.asarray(y, dtype=float)
    if y.ndim != 2 or y.shape[1] != 2:
        raise DataError(f"a survival target is an (n, 2) array of [time, event]; got shape {y.shape}")
    return float(concordance_index(y[:, 0], -np.asarray(risk, dtype=float), y[:, 1]))


def task_score(estimator: Any, X: Any, y: Any, task: str) -> float:
    """The default score of a task: accuracy (classification), R² (regression), Harrell's C (survival)."""
    if task in CLASSIFICATION:
        return float(accuracy_score(np.ravel(y), estimator.predict(X)))
    if task == "regression":
        return float(r2_score(np.ravel(y), estimator.predict(X)))
    return concordance(y, estimator.predict_risk(X))


def is_classification(estimator: Any) -> bool:
    """For ``available_if``: probabilities exist for classification tasks only."""
    if estimator.task not in CLASSIFICATION:
        raise AttributeError(f"predict_proba is for classification; this model's task is {estimator.task}")
    return True


def _floats(a: Any) -> list:
    return np.asarray(a, dtype=float).tolist()


# ----- the baselines -------------------------------------------------------------------------------------
class LogisticBaseline(ClassifierMixin, BaseEstimator):
    """L2-penalised logistic regression (binary or multinomial)."""

    kind = "logistic"

    def __init__(self, C: float = 1.0, class_weight: str | dict | None = None) -> None:
        self.C = C
        self.class_weight = class_weight

    def fit(self, X: Any, y: Any) -> Self:
        X, y = check_training_data(self, X, y, task="binary", min_samples=2)
        try:
            check_classification_targets(y)
        except ValueError as exc:
            raise DataError(f"{exc} ({type(self).__name__})") from exc
        if len(np.unique(y)) < 2:
            raise DataError(f"the training outcome has a single class {np.unique(y).tolist()}; need at least two")
        self.model_ = LogisticRegression(C=self.C, max_iter=5000, class_weight=self.class_weight).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        X = check_features(self, X)
        return self.model_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        X = check_features(self, X)
        return self.model_.predict(X)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        check_is_fitted(self)
        m = self.model_
        class_weight = self.class_weight
        if isinstance(class_weight, dict):  # JSON keys are strings: keep the pairs
            class_weight = [[np.asarray(k).tolist(), float(v)] for k, v in class_weight.items()]
        return {"C": self.C, "coef": _floats(m.coef_), "intercept": _floats(m.intercept_),
                "dtype": str(m.coef_.dtype), "classes": np.asarray(m.classes_).tolist(),
                "class_weight": class_weight}, {}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        class_weight = state.get("class_weight")  # absent from bundles written before it was saved
        if isinstance(class_weight, list):
            class_weight = {k: v for k, v in class_weight}
        self = cls(C=state["C"], class_weight=class_weight)
        m = LogisticRegression(C=state["C"])
        m.coef_ = np.asarray(state["coef"], dtype=state.get("dtype", "float64"))  # float32 fits predict in float32
        m.intercept_ = np.asarray(state["intercept"], dtype=state.get("dtype", "float64"))
        m.classes_ = np.asarray(state["classes"])
        m.n_features_in_ = m.coef_.shape[1]
        self.model_ = m
        self.classes_ = m.classes_
        self.n_features_in_ = m.n_features_in_
        return self


class LinearBaseline(RegressorMixin, BaseEstimator):
    """Ordinary least squares."""

    kind = "linear"

    def fit(self, X: Any, y: Any) -> Self:
        X, y = check_training_data(self, X, y, task="regression")
        self.model_ = LinearRegression().fit(X, y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        X = check_features(self, X)
        return self.model_.predict(X)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        check_is_fitted(self)
        m = self.model_
        return {"coef": _floats(m.coef_), "intercept": float(m.intercept_), "dtype": str(m.coef_.dtype)}, {}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        self = cls()
        m = LinearRegression()
        m.coef_ = np.asarray(state["coef"], dtype=state.get("dtype", "float64"))
        m.intercept_ = np.asarray(state["intercept"], dtype=state.get("dtype", "float64"))[()]
        m.n_features_in_ = len(m.coef_)
        self.model_ = m
        self.n_features_in_ = m.n_features_in_
        return self


class CoxPHBaseline(BaseEstimator):
    """Cox proportional hazards (lifelines, small ridge penalty), Breslow baseline for survival curves.

    y is an (n, 2) array [time, event]; ``predict`` (like ``predict_risk``) gives the log-hazard ratio.
    """

    kind = "cox_ph"

    def __init__(self, penalizer: float = 0.01) -> None:
        self.penalizer = penalizer

    def __sklearn_tags__(self) -> Tags:
        return task_tags(super().__sklearn_tags__(), "survival")

    def fit(self, X: Any, y: Any) -> Self:
        from lifelines import CoxPHFitter

        X, y = check_training_data(self, X, y, task="survival", min_samples=2)
        y, _ = check_target(y, "survival", where=type(self).__name__)
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

    def predict_risk(self, X: Any) -> np.ndarray:
        X = check_features(self, X)
        return X @ self.coef_

    def predict(self, X: Any) -> np.ndarray:
        """The log-hazard ratio, as ``predict_risk``."""
        return self.predict_risk(X)

    def predict_survival(self, X: Any, times: np.ndarray) -> np.ndarray:
        return survival_at(self.predict_risk(X), times, self.base_times_, self.base_cumhaz_)

    def score(self, X: Any, y: Any) -> float:
        """Harrell's C of the risk scores against y [time, event]."""
        return concordance(y, self.predict_risk(X))

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        check_is_fitted(self)
        return {"penalizer": self.penalizer, "coef": _floats(self.coef_),
                "base_times": _floats(self.base_times_), "base_cumhaz": _floats(self.base_cumhaz_)}, {}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        self = cls(penalizer=state["penalizer"])
        self.coef_ = np.asarray(state["coef"])
        self.base_times_ = np.asarray(state["base_times"])
        self.base_cumhaz_ = np.asarray(state["base_cumhaz"])
        self.n_features_in_ = len(self.coef_)
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


class GBMModel(BaseEstimator):
    """LightGBM gradient boosting with early stopping on an inner validation split.

    Survival uses a hand-written Cox partial-likelihood objective (gradient and Hessian in O(n log n)),
    then a Breslow baseline, so it yields risk scores and survival curves like the Cox models.
    A classifier for binary / multiclass tasks (``predict`` gives labels), a regressor for regression;
    for survival ``predict`` gives the log-hazard ratio, as ``predict_risk``. NaN in X is taken as
    missing (LightGBM's own handling, which the sequence recipe's summary features rely on); infinity
    is refused.
    """

    kind = "gbm"

    def __init__(self, task: str = "binary", n_estimators: int = 500, learning_rate: float = 0.03,
                 num_leaves: int = 8, min_child_samples: int = 20, subsample: float = 0.8,
                 colsample_bytree: float = 0.8, reg_lambda: float = 1.0, val_fraction: float = 0.2,
                 random_state: int = 0, class_weight: str | None = None) -> None:
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

    def __sklearn_tags__(self) -> Tags:
        tags = task_tags(super().__sklearn_tags__(), self.task)
        tags.input_tags.allow_nan = True
        return tags

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

    def fit(self, X: Any, y: Any) -> Self:
        check_class_weight(self.class_weight)
        X, y = check_training_data(self, X, y, task=self.task, allow_nan=True, min_samples=2)
        y, classes = check_target(y, self.task, where=type(self).__name__)
        if classes is not None:
            self.classes_ = classes
        elif hasattr(self, "classes_"):
            del self.classes_  # a refit for another task
        if self.task == "survival":
            label = np.where(y[:, 1] > 0, y[:, 0], -y[:, 0])  # signed time: positive = event
            if np.any(y[:, 0] <= 0):
                label = np.where(y[:, 1] > 0, y[:, 0] + 1e-6, -(y[:, 0] + 1e-6))
            strata = y[:, 1]
        else:
            label = y
            strata = y if self.task in CLASSIFICATION else None
        self.n_classes_ = int(np.max(y)) + 1 if self.task == "multiclass" else None
        idx_tr, idx_va = train_test_split(np.arange(len(X)), test_size=self.val_fraction,
                                          random_state=self.random_state, stratify=strata)
        weight = None
        if self.class_weight == "balanced" and self.task in CLASSIFICATION:
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

    def _raw(self, X: Any) -> np.ndarray:
        X = check_features(self, X, allow_nan=True)
        return self.booster_.predict(X, num_iteration=self.best_iteration_, raw_score=True)

    @available_if(is_classification)
    def predict_proba(self, X: Any) -> np.ndarray:
        X = check_features(self, X, allow_nan=True)
        p = self.booster_.predict(X, num_iteration=self.best_iteration_)
        return np.column_stack([1 - p, p]) if self.task == "binary" else p

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (classification), values (regression) or the log-hazard ratio (survival)."""
        if self.task in CLASSIFICATION:
            codes = self.predict_proba(X).argmax(axis=1)
            return self.classes_[codes]
        if self.task == "survival":
            return self.predict_risk(X)
        X = check_features(self, X, allow_nan=True)
        return self.booster_.predict(X, num_iteration=self.best_iteration_)

    def predict_risk(self, X: Any) -> np.ndarray:
        return self._raw(X)

    def predict_survival(self, X: Any, times: np.ndarray) -> np.ndarray:
        return survival_at(self.predict_risk(X), times, self.base_times_, self.base_cumhaz_)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy (classification), R² (regression) or Harrell's C (survival)."""
        return task_score(self, X, y, self.task)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        check_is_fitted(self)
        state = {"task": self.task, "best_iteration": self.best_iteration_, "n_classes": self.n_classes_}
        if self.task in CLASSIFICATION:
            state["classes"] = self.classes_.tolist()
        if self.task == "survival":
            state |= {"base_times": _floats(self.base_times_), "base_cumhaz": _floats(self.base_cumhaz_)}
        return state, {"gbm.txt": self.booster_.model_to_string().encode()}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        self = cls(task=state["task"])
        self.best_iteration_ = state["best_iteration"]
        self.n_classes_ = state["n_classes"]
        self.booster_ = lgb.Booster(model_str=blobs["gbm.txt"].decode())
        self.n_features_in_ = self.booster_.num_feature()
        if self.task in CLASSIFICATION:  # bundles written before classes were saved hold codes 0..K-1
            self.classes_ = np.asarray(state.get("classes", np.arange(self.n_classes_ or 2)))
        if self.task == "survival":
            self.base_times_ = np.asarray(state["base_times"])
            self.base_cumhaz_ = np.asarray(state["base_cumhaz"])
        return self
