"""Cheaper updates of a fitted model: recalibration on recent data, and fine-tuning a net's weights.

A model moved to a new site or a later period often still ranks patients well while its absolute risks drift
(another baseline risk, a flatter or steeper relation between score and outcome). Two updates cost far less data
than retraining:

- **recalibration** (:class:`RecalibratedModel`) keeps the model and refits only how its output maps to risk:
  binary, ``p' = expit(a + b * logit(p))`` (logistic recalibration; ``intercept_only``: ``b = 1``, the
  "calibration-in-the-large"); survival, a Cox model with the model's risk score as the only covariate
  (``risk' = b * risk``) and a new Breslow baseline hazard on the new rows (``intercept_only``: ``b = 1``, the
  baseline only); regression, ``y' = a + b * y`` (``intercept_only``: ``b = 1``). Ranking is unchanged (``b > 0``),
  so discrimination is the base model's;
- **fine-tuning** (:func:`fine_tune`) continues training a tabular net's weights (every ensemble member) on the
  new rows, all layers or only the last ones (:func:`frozen_layers`), with a smaller learning rate and a few
  epochs; survival nets get a new Breslow baseline. It can change the ranking too, and needs more rows than
  recalibration to do so safely.

The fits are lifelines' Cox model and scikit-learn's logistic / linear regressions; only the bookkeeping (the
wrapper's state, layer choice) is written here.
"""

from __future__ import annotations

import warnings
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit, logit
from sklearn.base import BaseEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.utils import Tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from precimed.errors import ArtifactError, ConfigError, DataError
from precimed.models.baselines import (
    check_features,
    check_target,
    check_training_data,
    is_classification,
    task_score,
    task_tags,
)
from precimed.models.survival import breslow_cumulative_hazard, survival_at
from precimed.train.estimators import TabularNetEstimator, tabular_layer_groups

__all__ = ["RECALIBRATION_TASKS", "RecalibratedModel", "cox_slope", "fine_tune", "frozen_layers"]

#: the tasks recalibration covers (a multiclass model would need a vector of slopes; not offered)
RECALIBRATION_TASKS = ("binary", "regression", "survival")
_P_CLIP = 1e-7  # probabilities are clipped before the logit, as the calibration metrics do
_BLOB_PREFIX = "base."


def cox_slope(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """The coefficient of a Cox model (lifelines, unpenalised) with ``risk`` as its only covariate.

    On a model's own training rows it is about 1; on new rows it is the calibration slope of the risk score
    (below 1: the scores spread risks too far apart). DataError when there is no event or no spread in ``risk``.
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    risk = np.asarray(risk, dtype=float)
    event = np.asarray(event, dtype=float)
    if not event.any():
        raise DataError(f"no events among the {len(event)} rows: a Cox slope cannot be fitted")
    scale = float(risk.std())
    if not np.isfinite(scale) or scale < 1e-12:
        raise DataError("the model gives every row the same risk score: a Cox slope cannot be fitted")
    frame = pd.DataFrame({"lp": (risk - risk.mean()) / scale, "time": np.asarray(time, dtype=float),
                          "event": event})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitter = CoxPHFitter(penalizer=0.0).fit(frame, "time", "event")
    except ConvergenceError as exc:
        raise DataError(f"the Cox recalibration did not converge ({str(exc).splitlines()[0][:120]}); the new "
                        "data may hold too few events") from None
    return float(fitter.params_["lp"]) / scale


def recalibration_logit(p: np.ndarray) -> np.ndarray:
    """The logit recalibration works on, with probabilities clipped away from 0 and 1."""
    return logit(np.clip(np.asarray(p, dtype=float), _P_CLIP, 1.0 - _P_CLIP))


class RecalibratedModel(BaseEstimator):
    """A fitted model whose outputs are refitted to new data: ``a`` and ``b`` (and for survival a baseline).

    ``base`` is a fitted precimed model of the same task (any catalogue model, or another recalibrated one);
    ``fit(X, y)`` leaves it untouched and fits, on X (encoded as the base model reads it) and the new outcomes y:

    - binary: ``p' = expit(a + b * logit(p))``, a logistic regression of y on the base model's logit;
    - survival: ``risk' = b * risk`` with ``b`` from a Cox model of y on the base risk score, and a new Breslow
      baseline cumulative hazard on the new rows, so ``S(t | x) = exp(-H0'(t) * exp(risk'))``;
    - regression: ``y' = a + b * prediction``, least squares.

    ``intercept_only`` keeps ``b = 1`` and refits only ``a`` (binary: calibration-in-the-large, the root of the
    score equation; regression: the mean residual) or only the baseline hazard (survival).
    """

    kind = "recalibrated"

    def __init__(self, base: Any = None, task: str = "binary", intercept_only: bool = False) -> None:
        self.base = base
        self.task = task
        self.intercept_only = intercept_only

    def __sklearn_tags__(self) -> Tags:
        return task_tags(super().__sklearn_tags__(), self.task)

    # ----- fitting -----------------------------------------------------------------------------------------
    def _check_base(self) -> None:
        where = type(self).__name__
        if self.task not in RECALIBRATION_TASKS:
            raise ConfigError(f"{where}: recalibration covers {list(RECALIBRATION_TASKS)} models; this one is "
                              f"{self.task}: retrain or fine-tune it instead")
        if self.base is None or not hasattr(self.base, "to_state"):
            raise ConfigError(f"{where}: base must be a fitted precimed model; got {type(self.base).__name__}")
        base_task = getattr(self.base, "task", None)
        if base_task is not None and base_task != self.task:
            raise ConfigError(f"{where}: the base model is a {base_task} model, the recalibration {self.task}")
        check_is_fitted(self.base)

    def _base_output(self, X: Any) -> np.ndarray:
        """The base model's output on the scale recalibration works on: logit, value or risk score."""
        if self.task == "binary":
            return recalibration_logit(self.base.predict_proba(X)[:, 1])
        if self.task == "regression":
            return np.asarray(self.base.predict(X), dtype=float)
        return np.asarray(self.base.predict_risk(X), dtype=float)

    def fit(self, X: Any, y: Any) -> Self:
        """Fit the recalibration on new rows X (encoded features) and outcomes y; the base model is not changed."""
        self._check_base()
        X, y = check_training_data(self, X, y, task=self.task, allow_nan=True, min_samples=2)
        if X.shape[1] != self.base.n_features_in_:
            raise DataError(f"{type(self).__name__}: the new data have {X.shape[1]} encoded feature(s), the base "
                            f"model takes {self.base.n_features_in_}; encode them with its preprocessor")
        y, classes = check_target(y, self.task, where=f"{type(self).__name__} (the recalibration data)")
        lp = self._base_output(X)
        self.a_, self.b_ = 0.0, 1.0
        if self.task == "binary":
            self.classes_ = getattr(self.base, "classes_", classes)
            if self.intercept_only:
                self.a_ = float(brentq(lambda a: float(np.sum(y - expit(a + lp))), -64.0, 64.0, xtol=1e-12))
            else:
                fit = LogisticRegression(C=np.inf, max_iter=1000).fit(lp[:, None], y)
                self.a_, self.b_ = float(fit.intercept_[0]), float(fit.coef_[0, 0])
        elif self.task == "regression":
            if self.intercept_only:
                self.a_ = float(np.mean(y - lp))
            else:
                fit = LinearRegression().fit(lp[:, None], y)
                self.a_, self.b_ = float(fit.intercept_), float(fit.coef_[0])
        else:
            if not self.intercept_only:
                self.b_ = cox_slope(lp, y[:, 0], y[:, 1])
            self.base_times_, self.base_cumhaz_ = breslow_cumulative_hazard(self.b_ * lp, y[:, 0], y[:, 1])
        if not np.isfinite([self.a_, self.b_]).all():
            raise DataError(f"{type(self).__name__}: the recalibration has no finite fit (a={self.a_}, "
                            f"b={self.b_}); the new data may separate the outcome perfectly or hold too few rows")
        return self

    # ----- prediction --------------------------------------------------------------------------------------
    def _checked(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "b_")
        return check_features(self, X, allow_nan=True)

    @available_if(is_classification)
    def predict_proba(self, X: Any) -> np.ndarray:
        """[1 - p', p'] with ``p' = expit(a + b * logit(p))`` (binary only)."""
        p = expit(self.a_ + self.b_ * self._base_output(self._checked(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (binary), recalibrated values (regression) or the recalibrated risk score (survival)."""
        if self.task == "binary":
            return np.asarray(self.classes_)[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]
        if self.task == "survival":
            return self.predict_risk(X)
        return self.a_ + self.b_ * self._base_output(self._checked(X))

    def predict_risk(self, X: Any) -> np.ndarray:
        """The recalibrated log-hazard ratio ``b * risk`` (survival)."""
        return self.b_ * self._base_output(self._checked(X))

    def predict_survival(self, X: Any, times: np.ndarray) -> np.ndarray:
        """S(t | x) from the new baseline hazard (survival)."""
        return survival_at(self.predict_risk(X), times, self.base_times_, self.base_cumhaz_)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy (binary), R² (regression) or Harrell's C (survival)."""
        return task_score(self, X, y, self.task)

    # ----- state -------------------------------------------------------------------------------------------
    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        """The recalibration (a, b, baseline) and the base model's own state and blobs (prefixed ``base.``)."""
        check_is_fitted(self, "b_")
        base_state, base_blobs = self.base.to_state()
        state: dict[str, Any] = {"task": self.task, "intercept_only": bool(self.intercept_only), "a": self.a_,
                                 "b": self.b_, "n_features_in": int(self.n_features_in_),
                                 "base": {"class": type(self.base).__name__, "state": base_state,
                                          "blobs": sorted(base_blobs)}}
        if self.task == "binary":
            state["classes"] = np.asarray(self.classes_).tolist()
        if self.task == "survival":
            state |= {"base_times": np.asarray(self.base_times_, dtype=float).tolist(),
                      "base_cumhaz": np.asarray(self.base_cumhaz_, dtype=float).tolist()}
        return state, {_BLOB_PREFIX + name: data for name, data in base_blobs.items()}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        from precimed.train.catalogue import class_named  # the catalogue lists this class: import it late

        info = state["base"]
        base_cls = class_named(info["class"])
        if base_cls is None:
            raise ArtifactError(f"the recalibrated model's base has unknown class {str(info['class'])[:80]!r}")
        base_blobs = {name: blobs[_BLOB_PREFIX + name] for name in info["blobs"]}
        self = cls(base=base_cls.from_state(info["state"], base_blobs), task=state["task"],
                   intercept_only=bool(state["intercept_only"]))
        self.a_, self.b_ = float(state["a"]), float(state["b"])
        self.n_features_in_ = int(state["n_features_in"])
        if self.task == "binary":
            self.classes_ = np.asarray(state["classes"])
        if self.task == "survival":
            self.base_times_ = np.asarray(state["base_times"], dtype=float)
            self.base_cumhaz_ = np.asarray(state["base_cumhaz"], dtype=float)
        return self


# ----- fine-tuning ---------------------------------------------------------------------------------------
def frozen_layers(model: TabularNetEstimator, layers: str | int) -> list[str]:
    """The layer groups to keep fixed so that ``layers`` train: ``"all"``, ``"head"`` (the output layer) or an
    integer k (the last k of ``hidden1``..``hiddenK``, ``head``)."""
    check_is_fitted(model, "nets_")
    groups = list(tabular_layer_groups(model.nets_[0]))
    if layers == "all":
        return []
    k = 1 if layers == "head" else layers
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(groups):
        raise ConfigError(f"layers must be 'all', 'head' or a number of last layers from 1 to {len(groups)} "
                          f"(this net's layers are {groups}); got {layers!r}")
    return groups[:len(groups) - k]


def fine_tune(model: Any, X: Any, y: Any, *, layers: str | int = "all", lr: float = 1e-4, max_epochs: int = 50,
              patience: int = 10, batch_size: int | None = None, weight_decay: float | None = None,
              random_state: int | None = None, progress: bool = False) -> TabularNetEstimator:
    """A new model: ``model``'s nets (every ensemble member) trained further on X, y, the other layers fixed.

    ``model`` is a fitted tabular net (``mlp``, ``resmlp``) and stays untouched; the result has its class,
    architecture and output scale, trains ``layers`` (see :func:`frozen_layers`) at learning rate ``lr`` for at
    most ``max_epochs`` with early stopping (``patience``) on an inner validation split of the new rows, keeps a
    member's old weights where no epoch beats them there, and (survival) a Breslow baseline refitted on X, y.
    """
    if not isinstance(model, TabularNetEstimator):
        raise ConfigError(f"fine-tuning continues training a tabular net (mlp, resmlp); {type(model).__name__} "
                          "has no weights to fine-tune: recalibrate it instead")
    freeze = frozen_layers(model, layers)
    params = model.get_params() | {"lr": lr, "max_epochs": max_epochs, "patience": patience,
                                   "freeze": tuple(freeze), "progress": progress}
    params["hidden"] = tuple(params["hidden"])
    if batch_size is not None:
        params["batch_size"] = batch_size
    if weight_decay is not None:
        params["weight_decay"] = weight_decay
    if random_state is not None:
        params["random_state"] = random_state
    return type(model)(**params).fit(X, y, init_state=model.to_state())
