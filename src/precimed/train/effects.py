"""Individual treatment effects: each patient's expected outcome under every treatment option.

Learners, on the project's nets (``NeuralRiskModel``, ``base="mlp"``) or gradient boosting (``GBMModel``,
``base="gbm"``):

* :class:`TLearner`: one outcome model per arm, fitted on that arm's patients; the outcome under arm a is
  that model's prediction for the patient.
* :class:`DRLearner` (Kennedy's doubly robust learner): per-arm outcome models and a propensity model are
  fitted on one part of the rows and give every row of the other parts its AIPW pseudo-outcome under each
  arm (cross-fitting inside the learner, so no pseudo-outcome comes from a model that saw its row). The
  control arm's pseudo-outcome, and each arm's pseudo-outcome minus the control's, are then regressed on
  the covariates: the outcome under control, and each contrast.

Outcomes (``measure``): binary ``risk`` (probability of the event, lower is better), regression ``mean``,
survival ``rmst`` (restricted mean survival time up to ``horizon``) or ``survival`` (event-free probability
at ``horizon``), both read off the Breslow survival curves of the Cox-type models. Survival pseudo-outcomes
use inverse probability of censoring weights (Kaplan-Meier of the censoring times within each arm).

More than two arms are handled as contrasts against a control arm. Uncertainty: ``n_bootstrap`` refits on
bootstrap samples drawn within each arm; the point estimate is their mean (bagging), the interval their
percentiles. :func:`cross_fit` gives every patient predictions from learners that never saw them, for
honest policy evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from precimed.errors import ConfigError, DataError
from precimed.train import catalogue

TASKS = ("binary", "regression", "survival")
MEASURES = {"binary": ("risk",), "regression": ("mean",), "survival": ("rmst", "survival")}
DEFAULT_MEASURE = {"binary": "risk", "regression": "mean", "survival": "rmst"}
HIGHER_IS_BETTER = {"risk": False, "mean": True, "rmst": True, "survival": True}


def build_base(base: str, task: str, params: Mapping[str, Any] | None, seed: int) -> Any:
    """An unfitted outcome model: ``base`` a catalogue model that takes a task (mlp, resmlp, gbm)."""
    return catalogue.build_for_task(base, task, params, seed)


def outcome_under(model: Any, X: np.ndarray, *, task: str, measure: str, horizon: float | None) -> np.ndarray:
    """A fitted outcome model's prediction of the measure for each row of X."""
    if task == "binary":
        return model.predict_proba(X)[:, 1]
    if task == "regression":
        return np.asarray(model.predict(X), dtype=float)
    if measure == "survival":
        return model.predict_survival(X, np.array([horizon], dtype=float))[:, 0]
    times = model.base_times_[model.base_times_ < horizon]
    grid = np.r_[0.0, times]
    surv = model.predict_survival(X, grid)  # right-continuous steps: S on [grid_k, grid_k+1)
    return surv @ np.diff(np.r_[grid, horizon])


def ipcw_horizon_outcome(y: np.ndarray, horizon: float, measure: str, groups: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Horizon outcome and inverse-probability-of-censoring weight per row (censoring KM within each group).

    The same definition as ``precimed.evaluate.policy.horizon_outcome`` (which the evaluation uses; the
    layers keep training and evaluation apart, and a test checks that the two agree).
    """
    time, event = y[:, 0], y[:, 1] > 0
    s = np.minimum(time, horizon)
    had_event = event & (time <= horizon)
    observed = had_event | (time >= horizon)
    out = s if measure == "rmst" else (~had_event).astype(float)
    weight = np.zeros(len(time))
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        t, e = time[rows], event[rows]
        u, inverse, counts = np.unique(t, return_inverse=True, return_counts=True)
        deaths = np.bincount(inverse, weights=e.astype(float), minlength=len(u))
        at_risk = len(t) - (np.cumsum(counts) - counts)
        censored = counts - deaths
        denom = at_risk - deaths  # events at a tied time leave before the censorings
        hazard = np.divide(censored, denom, out=np.zeros(len(u)), where=censored > 0)
        g_after = np.cumprod(1.0 - hazard)
        idx = np.searchsorted(u, s[rows], side="left") - 1
        g_before = np.where(idx >= 0, g_after[np.maximum(idx, 0)], 1.0)
        weight[rows] = np.where(observed[rows], 1.0 / np.maximum(g_before, 1e-3), 0.0)
    return out, weight


# ----- arms and propensity --------------------------------------------------------------------------
def as_labels(values: Any) -> np.ndarray:
    """Treatment values as strings; whole-number floats lose their '.0' (1.0 → '1')."""
    arr = np.asarray(values, dtype=object)
    out = []
    for v in arr:
        if isinstance(v, float | np.floating) and float(v).is_integer():
            v = int(v)
        out.append(str(v))
    return np.asarray(out, dtype=object)


def arm_order(labels: np.ndarray, arms: Sequence[Any] | None = None, control: Any | None = None
              ) -> tuple[list[str], int]:
    """The arm names (control first unless ``arms`` fixes the order) and the control's index."""
    seen = sorted(set(labels.tolist()))
    if arms is not None:
        names = [str(a) for a in as_labels(list(arms))]
        if len(set(names)) != len(names):
            raise ConfigError(f"arms listed twice: {names}")
        unknown = sorted(set(seen) - set(names))
        if unknown:
            raise DataError(f"treatment values {unknown} are not among the arms {names}", column="treatment")
    else:
        names = seen
    if control is None:
        control_name = names[0]
    else:
        control_name = str(as_labels([control])[0])
        if control_name not in names:
            raise ConfigError(f"control arm {control_name!r} is not among the arms {names}")
    if arms is None:
        names = [control_name] + [n for n in names if n != control_name]
    if len(names) < 2:
        raise DataError(f"treatment effects need at least two arms; the data hold only {names}", column="treatment")
    return names, names.index(control_name)


class PropensityModel(BaseEstimator):
    """P(arm | x): known assignment probabilities (a randomised trial), or L2 logistic regression.

    Predictions are clipped to [clip, 1 - clip] so that no weight exceeds 1 / clip.
    """

    def __init__(self, n_arms: int = 2, known_probabilities: Sequence[float] | None = None, C: float = 1.0,
                 clip: float = 0.01) -> None:
        self.n_arms = n_arms
        self.known_probabilities = known_probabilities
        self.C = C
        self.clip = clip

    def fit(self, X: np.ndarray, treatment: np.ndarray) -> PropensityModel:
        codes = np.asarray(treatment, dtype=int)
        if not 0 <= self.clip < 0.5:
            raise ConfigError(f"clip must lie in [0, 0.5), got {self.clip}")
        if self.known_probabilities is not None:
            p = np.asarray(self.known_probabilities, dtype=float)
            if p.shape != (self.n_arms,) or (p <= 0).any() or abs(p.sum() - 1.0) > 0.01:
                raise ConfigError(f"known probabilities must be {self.n_arms} positive numbers summing to 1; "
                                  f"got {p.tolist()}")
            self.known_ = p / p.sum()
        else:
            if len(np.unique(codes)) < 2:
                raise DataError("the propensity model needs patients from at least two arms", column="treatment")
            self.model_ = LogisticRegression(C=self.C, max_iter=5000).fit(np.asarray(X, dtype=float), codes)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if hasattr(self, "known_"):
            out = np.tile(self.known_, (len(X), 1))
        else:
            check_is_fitted(self, "model_")
            out = np.zeros((len(X), self.n_arms))
            out[:, self.model_.classes_] = self.model_.predict_proba(X)
        return np.clip(out, self.clip, 1.0 - self.clip) if self.clip > 0 else out


# ----- learners -------------------------------------------------------------------------------------
def _check_inputs(X: Any, y: Any, task: str) -> tuple[np.ndarray, np.ndarray]:
    if task not in TASKS:
        raise ConfigError(f"treatment-effect learners support tasks {list(TASKS)}, not {task!r}")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise DataError(f"X must be a 2-D feature matrix; got shape {X.shape}")
    if not np.isfinite(X).all():
        raise DataError("the feature matrix holds NaN or inf; preprocess (impute) before fitting")
    y = np.asarray(y, dtype=float)
    if task == "survival" and (y.ndim != 2 or y.shape[1] != 2):
        raise DataError(f"a survival outcome must be an (n, 2) array of [time, event]; got shape {y.shape}")
    if task != "survival" and y.ndim != 1:
        raise DataError(f"a {task} outcome must be 1-D; got shape {y.shape}")
    if len(y) != len(X):
        raise DataError(f"X has {len(X)} rows but y has {len(y)}")
    return X, y


def _resample_within_arms(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    parts = []
    for k in np.unique(codes):
        rows = np.flatnonzero(codes == k)
        parts.append(rows[rng.integers(0, len(rows), len(rows))])
    return np.sort(np.concatenate(parts))


class _EffectLearner(BaseEstimator):
    """Shared fitting and prediction: arms, the bootstrap loop, draws and their summary."""

    # set by subclasses' __init__: task, base, base_params, measure, horizon, higher_is_better, arms, control,
    # n_bootstrap, random_state

    def fit(self, X: Any, y: Any, treatment: Any) -> _EffectLearner:
        """Fit on features X, outcome y (survival: [time, event]) and the arm each patient received."""
        X, y = _check_inputs(X, y, self.task)
        labels = as_labels(treatment)
        if len(labels) != len(X):
            raise DataError(f"treatment has {len(labels)} values for {len(X)} rows", column="treatment")
        self.arms_, self.control_ = arm_order(labels, self.arms, self.control)
        codes = np.array([self.arms_.index(v) for v in labels])
        missing = [a for k, a in enumerate(self.arms_) if not (codes == k).any()]
        if missing:
            raise DataError(f"no patient received arm(s) {missing}; each arm needs patients", column="treatment")
        self.measure_ = self.measure or DEFAULT_MEASURE[self.task]
        if self.measure_ not in MEASURES[self.task]:
            raise ConfigError(f"measure {self.measure_!r} does not fit a {self.task} outcome; "
                              f"choose from {list(MEASURES[self.task])}")
        if self.task == "survival" and not (self.horizon is not None and self.horizon > 0):
            raise ConfigError("a survival outcome needs a positive horizon (e.g. 1826 days for 5 years)")
        self.higher_is_better_ = (HIGHER_IS_BETTER[self.measure_] if self.higher_is_better is None
                                  else bool(self.higher_is_better))
        self.n_features_in_ = X.shape[1]
        self._prepare(codes)
        rng = np.random.default_rng(self.random_state)
        self.replicates_: list[Any] = []
        n_fits = max(int(self.n_bootstrap), 1)
        for b in range(n_fits):
            rows = np.arange(len(X)) if self.n_bootstrap == 0 else _resample_within_arms(codes, rng)
            self.replicates_.append(self._fit_replicate(X, y, codes, rows, self.random_state + 7919 * b))
        return self

    def _prepare(self, codes: np.ndarray) -> None:
        """Per-fit set-up before the bootstrap loop (e.g. the DR learner's inner folds)."""

    def _fit_replicate(self, X: np.ndarray, y: np.ndarray, codes: np.ndarray, rows: np.ndarray, seed: int) -> Any:
        raise NotImplementedError

    def _predict_replicate(self, rep: Any, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _outcome_model(self, X: np.ndarray, y: np.ndarray, arm: int, seed: int, where: str) -> Any:
        """Fit the outcome model of one arm, after checking it can be fitted."""
        name = self.arms_[arm]
        if self.task == "survival" and y[:, 1].sum() == 0:
            raise DataError(f"arm {name!r} has no events among its {len(y)} rows ({where}); "
                            "an outcome model cannot be fitted", column="treatment")
        if self.task == "binary" and len(np.unique(y)) < 2:
            raise DataError(f"arm {name!r} has a single outcome class among its {len(y)} rows ({where})",
                            column="treatment")
        return build_base(self.base, self.task, self.base_params, seed).fit(X, y)

    def _arm_outcomes(self, models: Sequence[Any], X: np.ndarray) -> np.ndarray:
        return np.column_stack([outcome_under(m, X, task=self.task, measure=self.measure_, horizon=self.horizon)
                                for m in models])

    def predict_draws(self, X: Any) -> np.ndarray:
        """Outcome under each arm from every bootstrap refit: an array (replicates, n, arms)."""
        check_is_fitted(self, "replicates_")
        X = np.asarray(X, dtype=np.float32)
        return np.stack([self._predict_replicate(rep, X) for rep in self.replicates_])

    def predict_outcomes(self, X: Any) -> np.ndarray:
        """Expected outcome under each arm (n, arms): the mean over the bootstrap refits."""
        return self.predict_draws(X).mean(axis=0)

    def predict_effects(self, X: Any) -> np.ndarray:
        """Each non-control arm minus the control (n, arms - 1), in the order of ``arms_``."""
        out = self.predict_outcomes(X)
        keep = [k for k in range(len(self.arms_)) if k != self.control_]
        return out[:, keep] - out[:, [self.control_]]

    def summarize(self, X: Any, *, level: float = 0.95) -> EffectSummary:
        """Outcomes, contrasts with bootstrap intervals, and the recommended arm for each row of X."""
        return summarize_draws(self.predict_draws(X), self.arms_, self.control_,
                               higher_is_better=self.higher_is_better_, level=level)

    def recommend(self, X: Any) -> np.ndarray:
        """The arm with the best expected outcome for each row (names from ``arms_``)."""
        s = self.summarize(X)
        return np.asarray(self.arms_, dtype=object)[s.recommended]


class TLearner(_EffectLearner):
    """One outcome model per arm (binary, regression or Cox-type survival), bagged over bootstrap refits.

    Parameters
    ----------
    task : {"binary", "regression", "survival"}
    base : {"mlp", "gbm"}
        NeuralRiskModel or GBMModel; ``base_params`` are passed to its constructor.
    measure : str or None
        binary "risk"; regression "mean"; survival "rmst" (default) or "survival" at ``horizon``.
    horizon : float or None
        Survival horizon, in the time unit of y.
    higher_is_better : bool or None
        Direction of benefit; None: lower risk, higher mean / RMST / event-free probability.
    arms, control :
        Arm order (optional) and the reference arm (default: the first arm).
    n_bootstrap : int
        Refits on bootstrap samples within each arm (0: a single fit, no intervals).
    """

    def __init__(self, task: str = "survival", base: str = "gbm", base_params: Mapping[str, Any] | None = None,
                 measure: str | None = None, horizon: float | None = None, higher_is_better: bool | None = None,
                 arms: Sequence[Any] | None = None, control: Any | None = None, n_bootstrap: int = 30,
                 random_state: int = 0) -> None:
        self.task = task
        self.base = base
        self.base_params = base_params
        self.measure = measure
        self.horizon = horizon
        self.higher_is_better = higher_is_better
        self.arms = arms
        self.control = control
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    def _fit_replicate(self, X: np.ndarray, y: np.ndarray, codes: np.ndarray, rows: np.ndarray, seed: int) -> Any:
        models = []
        for k in range(len(self.arms_)):
            mine = rows[codes[rows] == k]
            models.append(self._outcome_model(X[mine], y[mine], k, seed + k, "T-learner"))
        return models

    def _predict_replicate(self, rep: Any, X: np.ndarray) -> np.ndarray:
        return self._arm_outcomes(rep, X)


class DRLearner(_EffectLearner):
    """Doubly robust learner: cross-fitted AIPW pseudo-outcomes regressed on the covariates.

    Parameters as :class:`TLearner`, plus
    known_probabilities : sequence of float or None
        Assignment probabilities per arm (in the order of ``arms``) for a randomised trial; None: a
        logistic propensity model fitted inside the learner.
    clip : float
        Propensities are clipped to [clip, 1 - clip].
    inner_folds : int
        Folds for the pseudo-outcomes: nuisance models fitted on the other folds.
    """

    def __init__(self, task: str = "survival", base: str = "gbm", base_params: Mapping[str, Any] | None = None,
                 measure: str | None = None, horizon: float | None = None, higher_is_better: bool | None = None,
                 arms: Sequence[Any] | None = None, control: Any | None = None, n_bootstrap: int = 30,
                 known_probabilities: Sequence[float] | None = None, clip: float = 0.01, inner_folds: int = 2,
                 random_state: int = 0) -> None:
        self.task = task
        self.base = base
        self.base_params = base_params
        self.measure = measure
        self.horizon = horizon
        self.higher_is_better = higher_is_better
        self.arms = arms
        self.control = control
        self.n_bootstrap = n_bootstrap
        self.known_probabilities = known_probabilities
        self.clip = clip
        self.inner_folds = inner_folds
        self.random_state = random_state

    def _prepare(self, codes: np.ndarray) -> None:
        if int(self.inner_folds) < 2:
            raise ConfigError(f"inner_folds must be at least 2, got {self.inner_folds}")
        # fold of each original row, fixed before resampling: copies of a row share a fold, so no row's
        # pseudo-outcome comes from a nuisance model fitted on a copy of it
        rng = np.random.default_rng(self.random_state + 1)
        self.inner_fold_ = np.empty(len(codes), dtype=int)
        for k in np.unique(codes):
            rows = np.flatnonzero(codes == k)
            self.inner_fold_[rows] = rng.permutation(len(rows)) % int(self.inner_folds)

    def pseudo_outcomes(self, X: np.ndarray, y: np.ndarray, codes: np.ndarray, rows: np.ndarray, seed: int
                        ) -> np.ndarray:
        """AIPW scores (len(rows), arms) for the given rows, each from nuisance models fitted on other folds."""
        k_arms = len(self.arms_)
        folds = self.inner_fold_[rows]
        mu = np.empty((len(rows), k_arms))
        e = np.empty((len(rows), k_arms))
        for f in range(int(self.inner_folds)):
            fit_rows, pred = rows[folds != f], folds == f
            if not pred.any():
                continue
            models = []
            for k in range(k_arms):
                mine = fit_rows[codes[fit_rows] == k]
                models.append(self._outcome_model(X[mine], y[mine], k, seed + 31 * f + k, f"DR-learner fold {f}"))
            propensity = PropensityModel(k_arms, self.known_probabilities, clip=self.clip)
            propensity.fit(X[fit_rows], codes[fit_rows])
            mu[pred] = self._arm_outcomes(models, X[rows[pred]])
            e[pred] = propensity.predict_proba(X[rows[pred]])
        a = codes[rows]
        if self.task == "survival":
            target, weight = ipcw_horizon_outcome(y[rows], float(self.horizon), self.measure_, a)
        else:
            target, weight = y[rows], np.ones(len(rows))
        phi = mu.copy()
        idx = np.arange(len(rows))
        phi[idx, a] += weight * (target - mu[idx, a]) / e[idx, a]
        return phi

    def _fit_replicate(self, X: np.ndarray, y: np.ndarray, codes: np.ndarray, rows: np.ndarray, seed: int) -> Any:
        phi = self.pseudo_outcomes(X, y, codes, rows, seed)
        c = self.control_
        Xr = X[rows]
        control_model = build_base(self.base, "regression", self.base_params, seed + 101).fit(Xr, phi[:, c])
        contrasts = {}
        for k in range(len(self.arms_)):
            if k != c:
                model = build_base(self.base, "regression", self.base_params, seed + 103 + k)
                contrasts[k] = model.fit(Xr, phi[:, k] - phi[:, c])
        return control_model, contrasts

    def _predict_replicate(self, rep: Any, X: np.ndarray) -> np.ndarray:
        control_model, contrasts = rep
        base = np.asarray(control_model.predict(X), dtype=float)
        out = np.empty((len(X), len(self.arms_)))
        out[:, self.control_] = base
        for k, model in contrasts.items():
            out[:, k] = base + np.asarray(model.predict(X), dtype=float)
        # a regression of pseudo-outcomes is not bounded; keep each arm's outcome in the measure's range
        if self.measure_ == "rmst":
            return np.clip(out, 0.0, float(self.horizon))
        if self.measure_ in ("risk", "survival"):
            return np.clip(out, 0.0, 1.0)
        return out


LEARNERS: dict[str, type[_EffectLearner]] = {"t": TLearner, "dr": DRLearner}


# ----- summaries ------------------------------------------------------------------------------------
@dataclass
class EffectSummary:
    """Per patient: outcomes under each arm, contrasts vs control with intervals, recommendations.

    ``effects``/``effect_low``/``effect_high`` have one column per non-control arm (in arm order);
    ``recommended`` is the arm with the best expected outcome; ``recommended_cautious`` moves off the
    control arm only to an arm whose interval vs control lies wholly on the side of benefit.
    """

    arms: list[str]
    control: int
    outcomes: np.ndarray
    outcome_low: np.ndarray
    outcome_high: np.ndarray
    effects: np.ndarray
    effect_low: np.ndarray
    effect_high: np.ndarray
    recommended: np.ndarray
    recommended_cautious: np.ndarray

    @property
    def contrasts(self) -> list[str]:
        return [f"{a} vs {self.arms[self.control]}" for k, a in enumerate(self.arms) if k != self.control]


def summarize_draws(draws: np.ndarray, arms: Sequence[str], control: int, *, higher_is_better: bool,
                    level: float = 0.95) -> EffectSummary:
    """Bagged means and percentile intervals of bootstrap draws (replicates, n, arms); NaN intervals for one draw."""
    draws = np.asarray(draws, dtype=float)
    keep = [k for k in range(len(arms)) if k != control]
    diffs = draws[:, :, keep] - draws[:, :, [control]]
    outcomes, effects = draws.mean(axis=0), diffs.mean(axis=0)
    tail = 100.0 * (1.0 - level) / 2.0
    if len(draws) > 1:
        o_lo, o_hi = np.percentile(draws, [tail, 100.0 - tail], axis=0)
        e_lo, e_hi = np.percentile(diffs, [tail, 100.0 - tail], axis=0)
    else:
        o_lo = o_hi = np.full(outcomes.shape, np.nan)
        e_lo = e_hi = np.full(effects.shape, np.nan)
    sign = 1.0 if higher_is_better else -1.0
    recommended = np.argmax(sign * outcomes, axis=1)
    worst_side = np.where(sign > 0, e_lo, -e_hi)  # the interval's least favourable benefit
    sure = np.nan_to_num(worst_side, nan=-np.inf) > 0
    score = np.where(sure, sign * outcomes[:, keep], -np.inf)
    cautious = np.where(sure.any(axis=1), np.asarray(keep)[np.argmax(score, axis=1)], control)
    return EffectSummary(list(arms), control, outcomes, o_lo, o_hi, effects, e_lo, e_hi, recommended, cautious)


# ----- cross-fitting ---------------------------------------------------------------------------------
@dataclass
class CrossFit:
    """Out-of-fold predictions: every row scored by learners (and a propensity model) fitted on other folds."""

    arms: list[str]
    control: int
    codes: np.ndarray
    fold: np.ndarray
    draws: dict[str, np.ndarray]
    propensity: np.ndarray
    higher_is_better: bool

    def summary(self, learner: str, *, level: float = 0.95) -> EffectSummary:
        return summarize_draws(self.draws[learner], self.arms, self.control, higher_is_better=self.higher_is_better,
                               level=level)


def _take(X: Any, rows: np.ndarray) -> Any:
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]


def cross_fit(learners: Mapping[str, _EffectLearner], X: Any, y: Any, treatment: Any, *, folds: int = 5,
              propensity: PropensityModel | None = None, preprocess: Callable[[], Any] | None = None,
              groups: np.ndarray | None = None, random_state: int = 0,
              echo: Callable[[str], None] | None = None) -> CrossFit:
    """Fit each learner (and the propensity model) on K-1 folds and predict the held-out fold, K times.

    ``preprocess`` builds a fresh transformer fitted on each fold's training rows only (X may then be a
    DataFrame). Folds are stratified on arm (and event, for binary and survival outcomes); with ``groups``
    no group is split across folds. The learners' ``arms`` and ``control`` are fixed from the whole data,
    so every fold reports the same arms.
    """
    if not learners:
        raise ConfigError("cross_fit needs at least one learner")
    if int(folds) < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    first = next(iter(learners.values()))
    labels = as_labels(treatment)
    arms, control = arm_order(labels, first.arms, first.control)
    codes = np.array([arms.index(v) for v in labels])
    y = np.asarray(y, dtype=float)
    task = first.task
    strata = codes * 2 + (y[:, 1] > 0) if task == "survival" else codes * 2 + (y > 0) if task == "binary" else codes
    if groups is None:
        splitter = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=random_state)
        splits = list(splitter.split(np.zeros(len(codes)), strata))
    else:
        splitter = StratifiedGroupKFold(n_splits=int(folds), shuffle=True, random_state=random_state)
        splits = list(splitter.split(np.zeros(len(codes)), strata, groups))
    propensity = propensity if propensity is not None else PropensityModel(len(arms))
    fold = np.empty(len(codes), dtype=int)
    draws: dict[str, np.ndarray] = {}
    e = np.empty((len(codes), len(arms)))
    for f, (tr, te) in enumerate(splits):
        fold[te] = f
        X_tr, X_te = _take(X, tr), _take(X, te)
        if preprocess is not None:
            pre = preprocess()
            X_tr = pre.fit(X_tr).transform(X_tr)
            X_te = pre.transform(X_te)
        X_tr, X_te = np.asarray(X_tr, dtype=np.float32), np.asarray(X_te, dtype=np.float32)
        e[te] = clone(propensity).set_params(n_arms=len(arms)).fit(X_tr, codes[tr]).predict_proba(X_te)
        for name, learner in learners.items():
            if echo is not None:
                echo(f"fold {f + 1}/{len(splits)}: fitting the {name} learner on {len(tr)} rows")
            model = clone(learner).set_params(arms=arms, control=arms[control],
                                               random_state=learner.random_state + 1000 * f)
            model.fit(X_tr, y[tr], labels[tr])
            d = model.predict_draws(X_te)
            if name not in draws:
                draws[name] = np.empty((d.shape[0], len(codes), len(arms)))
            draws[name][:, te] = d
            higher = model.higher_is_better_
    return CrossFit(arms, control, codes, fold, draws, e, higher)
