"""Point metrics for binary, multiclass and regression predictions, written in numpy.

Every function takes plain arrays and returns a dict of plain floats. They are fast enough to run
inside a 1000-replicate bootstrap (see :mod:`precimed.evaluate.bootstrap`).

A metric that cannot be computed on the data given (an AUROC when every outcome is the same
class) raises :class:`~precimed.errors.DataError` with a message saying what to do. Inside
:func:`undefined_as_nan` (the bootstrap enters it for its replicates) such a metric is NaN
instead, so one unlucky resample does not stop the whole run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
from scipy.optimize import brentq

from precimed.errors import ConfigError, DataError

__all__ = ["binary_metrics", "multiclass_metrics", "regression_metrics", "undefined_as_nan"]

_NAN = float("nan")
_P_CLIP = 1e-7
# Newton (the calibration slope) stops when no coefficient moves by more than this. It sits above the
# rounding floor of the step (about n * 1e-16 / (n * 1e-7) ≈ 1e-9 when p is clipped at 0 or 1), where a
# tighter tolerance oscillated until it gave up with NaN. Separation (no finite MLE) still fails it: there
# each step stays of order one while the coefficients diverge.
_NEWTON_TOL = 1e-8

_UNDEFINED_AS_NAN: ContextVar[bool] = ContextVar("precimed_undefined_as_nan", default=False)


@contextmanager
def undefined_as_nan() -> Iterator[None]:
    """Within this block, metrics that are undefined on the data return NaN instead of raising."""
    token = _UNDEFINED_AS_NAN.set(True)
    try:
        yield
    finally:
        _UNDEFINED_AS_NAN.reset(token)


def _undefined(message: str, *, column: str | None = None) -> float:
    """NaN inside :func:`undefined_as_nan`, otherwise a DataError carrying ``message``."""
    if _UNDEFINED_AS_NAN.get():
        return _NAN
    raise DataError(message, column=column)


# ---------------------------------------------------------------------------------------------
# input checks (shared with survival.py)


def _as_1d_float(values: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{name} must be numeric; could not convert it to numbers ({exc}).", column=name
        ) from exc
    if arr.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {arr.shape}.", column=name)
    if arr.size == 0:
        raise DataError(f"{name} is empty; there are no rows to evaluate.", column=name)
    return arr


def _check_finite(arr: np.ndarray, name: str, what: str = "values") -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))
        kind = "NaN" if np.isnan(arr).any() else "infinite"
        raise DataError(
            f"{name} contains {kind} {what} in {rows.size} row(s) (rows {rows[:5].tolist()}); every row "
            "needs a finite value. Drop or impute those rows before evaluating.",
            column=name,
            rows=rows.tolist(),
        )


def _check_same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name} has {length}" for name, length in lengths.items())
        raise DataError(f"inputs have different numbers of rows: {shown}; pass one value per row for each.")
    return next(iter(lengths.values()))


def _binary_outcome(y: object, name: str = "y") -> np.ndarray:
    arr = _as_1d_float(y, name)
    _check_finite(arr, name, "outcomes")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"{name} must be a binary outcome coded 0/1; found {float(arr[rows[0]])!r} in row {rows[0]} "
            f"({rows.size} row(s) not 0/1).",
            column=name,
            rows=rows.tolist(),
        )
    return arr


def _probabilities(p: object, name: str = "p") -> np.ndarray:
    arr = _as_1d_float(p, name)
    _check_finite(arr, name, "predictions")
    bad = (arr < 0) | (arr > 1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"{name} must be probabilities in [0, 1]; found {float(arr[rows[0]])!r} in row {rows[0]}. "
            "Pass predicted probabilities, not logits or scores.",
            column=name,
            rows=rows.tolist(),
        )
    return arr


# ---------------------------------------------------------------------------------------------
# building blocks


def _auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties counted one half (average ranks); y is 0/1 with both classes."""
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mean_rank = (ends - counts + 1 + ends) / 2.0  # 1-based ranks start..end, averaged over ties
    ranks = mean_rank[inverse]
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Step-wise area under the precision-recall curve, one step per distinct score."""
    order = np.argsort(-score, kind="stable")
    s = score[order]
    hits = np.cumsum(y[order])
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = hits[last_of_tie]
    precision = tp / (last_of_tie + 1.0)
    recall = tp / hits[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _expit(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _bernoulli_loglik(y: np.ndarray, eta: np.ndarray) -> float:
    # y log(mu) + (1-y) log(1-mu) = y*eta - softplus(eta); softplus written stably with one exp and one log1p
    softplus = np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta)))
    return float(np.dot(y, eta) - softplus.sum())


def _calibration_slope(y: np.ndarray, lp: np.ndarray, max_iter: int = 100) -> float:
    """Newton-Raphson for b in logit P(y=1) = a + b * lp. NaN when no finite MLE (separation)."""
    design = np.column_stack([np.ones_like(lp), lp])
    beta = np.array([0.0, 1.0])
    loglik = _bernoulli_loglik(y, design @ beta)
    for _ in range(max_iter):
        mu = _expit(design @ beta)
        grad = design.T @ (y - mu)
        hess = design.T @ (design * (mu * (1.0 - mu))[:, None])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return _NAN
        # step halving keeps the likelihood from decreasing on awkward starts
        for _ in range(30):
            new_loglik = _bernoulli_loglik(y, design @ (beta + step))
            if new_loglik >= loglik - 1e-12:
                break
            step = step / 2.0
        else:
            return _NAN  # no step along Newton's direction raises the likelihood: no maximum found
        beta = beta + step
        loglik = new_loglik
        if np.max(np.abs(step)) < _NEWTON_TOL:
            return float(beta[1])
    return _NAN  # no convergence: separation, the MLE does not exist


def _calibration_intercept(y: np.ndarray, lp: np.ndarray) -> float:
    """a in logit P(y=1) = a + lp: the root of the score sum(y - expit(a + lp)), bracketed.

    The score falls strictly from the number of events to minus the number of non-events, so with both
    classes there is exactly one root, and as |lp| <= logit(1 - 1e-7) < 16.2 it lies inside (-64, 64).
    Bracketing finds it where Newton cannot: when every p is 0 or 1 the curvature vanishes and Newton's
    steps overshoot to infinity.
    """
    return float(brentq(lambda a: float(np.sum(y - _expit(a + lp))), -64.0, 64.0, xtol=1e-12))


def _calibration(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    pc = np.clip(p, _P_CLIP, 1.0 - _P_CLIP)
    lp = np.log(pc) - np.log1p(-pc)
    slope = _NAN if np.ptp(lp) == 0 else _calibration_slope(y, lp)
    return slope, _calibration_intercept(y, lp)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else _NAN


# ---------------------------------------------------------------------------------------------
# public metrics


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Threshold, ranking and probability metrics for a binary outcome.

    ``y`` is 0/1, ``p`` the predicted probability of 1; a row is predicted positive when
    ``p >= threshold``. Returns accuracy, precision, recall, specificity, f1, auroc, auprc (average
    precision), brier, calibration_slope (logistic regression of y on logit(p)) and
    calibration_intercept (calibration-in-the-large: a in logit P(y=1) = a + logit(p)); p is
    clipped to [1e-7, 1 - 1e-7] before the logit. A ratio with a zero denominator (precision with
    no predicted positives) is NaN. With a single outcome class AUROC is undefined: DataError, or
    NaN for the class-dependent metrics inside :func:`undefined_as_nan`.
    """
    y = _binary_outcome(y, "y")
    p = _probabilities(p, "p")
    n = _check_same_length(y=y, p=p)
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold!r}.")

    pred = p >= threshold
    pos = y == 1
    tp = float(np.count_nonzero(pred & pos))
    fp = float(np.count_nonzero(pred & ~pos))
    fn = float(np.count_nonzero(~pred & pos))
    tn = float(n - tp - fp - fn)
    n_pos = tp + fn
    out = {
        "accuracy": (tp + tn) / n,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, n_pos),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2.0 * tp, 2.0 * tp + fp + fn),
        "auroc": _NAN,
        "auprc": _NAN,
        "brier": float(np.mean((p - y) ** 2)),
        "calibration_slope": _NAN,
        "calibration_intercept": _NAN,
    }
    if n_pos == 0 or n_pos == n:
        only = "1" if n_pos == n else "0"
        _undefined(
            f"y has a single class (every one of the {n} rows is {only}); AUROC, average precision and "
            "calibration need both outcomes. Evaluate on a set that contains events and non-events.",
            column="y",
        )
        return out
    out["auroc"] = _auroc(y, p)
    out["auprc"] = _average_precision(y, p)
    out["calibration_slope"], out["calibration_intercept"] = _calibration(y, p)
    return out


def multiclass_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Metrics for K classes: ``y`` holds integer codes 0..K-1, ``proba`` is (n, K), rows summing to 1.

    The predicted class is the arg-max. Macro averages run over the classes present in y or in the
    predictions (as scikit-learn does); a class never predicted has precision 0. AUROC is one-vs-rest,
    averaged plainly (macro) or by class prevalence (weighted); it needs every class in y (DataError,
    or NaN inside :func:`undefined_as_nan`). log_loss clips probabilities to machine epsilon.
    """
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise DataError(
            f"proba must be a 2-D array (rows, classes) with at least 2 columns, got {proba.shape}.",
            column="proba",
        )
    k = proba.shape[1]
    y = _as_1d_float(y, "y")
    n = _check_same_length(y=y, proba=proba)
    _check_finite(y, "y", "outcomes")
    bad = (y != np.round(y)) | (y < 0) | (y >= k)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"y must hold integer class codes 0..{k - 1} matching the {k} columns of proba; found "
            f"{float(y[rows[0]])!r} in row {rows[0]}.",
            column="y",
            rows=rows.tolist(),
        )
    _check_finite(proba, "proba", "predictions")
    if (proba < 0).any() or (proba > 1).any():
        raise DataError(
            "proba must hold probabilities in [0, 1]; pass softmax outputs, not logits.", column="proba"
        )
    sums = proba.sum(axis=1)
    off = np.abs(sums - 1.0) > 1e-3
    if off.any():
        rows = np.flatnonzero(off)
        raise DataError(
            f"each row of proba must sum to 1; row {rows[0]} sums to {sums[rows[0]]:.6g} "
            f"({rows.size} row(s) off). Pass class probabilities (a softmax), not scores.",
            column="proba",
            rows=rows.tolist(),
        )
    y = y.astype(np.int64)

    pred = np.argmax(proba, axis=1)
    confusion = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    present = (support > 0) | (predicted > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)[present]
        recall = np.where(support > 0, tp / support, 0.0)[present]
        f1 = (2.0 * tp / (support + predicted))[present]
    weight = support[present] / n

    out = {
        "accuracy": float(tp.sum() / n),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "precision_weighted": float(precision @ weight),
        "recall_weighted": float(recall @ weight),
        "f1_weighted": float(f1 @ weight),
        "auroc_macro": _NAN,
        "auroc_weighted": _NAN,
    }
    missing = np.flatnonzero(support == 0)
    if missing.size:
        _undefined(
            f"class(es) {missing.tolist()} do not occur in y, so their one-vs-rest AUROC is undefined; "
            "evaluate on a set where every class occurs.",
            column="y",
        )
    else:
        aucs = np.array([_auroc((y == c).astype(float), proba[:, c]) for c in range(k)])
        out["auroc_macro"] = float(aucs.mean())
        out["auroc_weighted"] = float(aucs @ (support / n))
    eps = np.finfo(float).eps
    picked = np.clip(proba[np.arange(n), y], eps, 1.0 - eps)
    out["log_loss"] = float(-np.mean(np.log(picked)))
    return out


def regression_metrics(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    """Mean absolute error, root mean squared error and R² (NaN when y is constant)."""
    y = _as_1d_float(y, "y")
    yhat = _as_1d_float(yhat, "yhat")
    _check_same_length(y=y, yhat=yhat)
    _check_finite(y, "y", "outcomes")
    _check_finite(yhat, "yhat", "predictions")
    resid = y - yhat
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(resid))),
        "rmse": float(np.sqrt(np.mean(resid**2))),
        "r2": 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else _NAN,
    }
