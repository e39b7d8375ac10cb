"""Curve points and tables behind the evaluation report: numbers only (numpy), no plotting.

Everything here takes plain arrays (outcomes, predicted probabilities, risks, survival curves) and
returns plain numpy arrays, floats and dicts, so the same numbers can be plotted, tabulated or
tested. The methods follow the usual references of clinical prediction research:

* ROC and precision-recall points: one point per distinct predicted value, a row counting as
  positive when ``p >= threshold`` (the convention of :func:`~precimed.evaluate.binary_metrics`).
* Calibration, read along the hierarchy of Van Calster et al. (J Clin Epidemiol 2016;74:167-176):
  mean calibration (calibration-in-the-large), weak calibration (slope and intercept, from
  :func:`~precimed.evaluate.binary_metrics`) and moderate calibration (a calibration curve). The
  curve is shown two ways: outcomes grouped by deciles of predicted risk with a Wilson score
  interval per group (Wilson, JASA 1927), and a local linear (loess) smoother of the outcome on the
  predicted probability (Austin & Steyerberg, Stat Med 2014;33:517-535) with a bootstrap band.
  The integrated calibration index ICI, E50, E90 and Emax summarise the smoothed curve (Austin &
  Steyerberg, Stat Med 2019;38:4051-4065); the expected calibration error ECE is the weighted mean
  gap over the risk groups (Naeini et al., AAAI 2015; equal-mass groups as recommended by Nixon et
  al., CVPR Workshops 2019).
* Decision curves: net benefit over threshold probabilities (Vickers & Elkin, Med Decis Making
  2006;26:565-574), against treating everyone and treating no one.
* Survival: Kaplan-Meier curves with Greenwood variance and log(-log) confidence limits
  (Kalbfleisch & Prentice 2002), by group of predicted risk; the cumulative/dynamic time-dependent
  AUC of :func:`~precimed.evaluate.survival_metrics` over a time grid (Uno et al. 2007; Heagerty &
  Zheng 2005); calibration at a horizon: mean predicted event probability 1 - S(h | x) per decile
  of predicted risk against the Kaplan-Meier event probability at h in that decile (Royston &
  Altman, BMC Med Res Methodol 2013;13:33; Austin, Harrell & van Klaveren, Stat Med 2020).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import norm

from precimed.errors import ConfigError, DataError

from .metrics import _as_1d_float, _binary_outcome, _check_finite, _check_same_length, _probabilities
from .metrics import undefined_as_nan as _undefined_as_nan
from .survival import _event_indicator, _times, survival_metrics

__all__ = [
    "DEFAULT_THRESHOLDS",
    "binned_calibration",
    "confusion_matrix",
    "decision_curve",
    "expected_calibration_error",
    "kaplan_meier_ci",
    "km_at",
    "km_by_risk_group",
    "multiclass_confusion",
    "pr_curve",
    "regression_calibration",
    "risk_groups",
    "roc_curve",
    "smoothed_calibration",
    "surv_at",
    "survival_calibration",
    "threshold_table",
    "time_dependent_auc",
    "wilson_interval",
]

DEFAULT_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5)
_NAN = float("nan")


def _z(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"level must lie strictly between 0 and 1, got {level!r}.")
    return float(norm.ppf(0.5 + level / 2.0))


def _binary_inputs(y: object, p: object) -> tuple[np.ndarray, np.ndarray]:
    y = _binary_outcome(y, "y")
    p = _probabilities(p, "p")
    _check_same_length(y=y, p=p)
    return y, p


def _both_classes(y: np.ndarray, what: str) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        only = "1" if n_pos else "0"
        raise DataError(
            f"{what} needs both outcomes, but every one of the {len(y)} rows has y = {only}. "
            "Evaluate on a set that contains events and non-events.",
            column="y",
        )


# ---------------------------------------------------------------------------------------------
# discrimination


def _ranked_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when the threshold is each distinct p, from the highest down."""
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]  # last row of each group of tied scores
    tps = np.cumsum(ys)[last]
    fps = (last + 1.0) - tps
    return tps, fps, ps[last]


def roc_curve(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """ROC points: ``fpr``, ``tpr`` and ``thresholds`` (decreasing; the first is +inf, no one flagged).

    One point per distinct predicted value; the same points as ``sklearn.metrics.roc_curve(y, p,
    drop_intermediate=False)``. Needs both outcome classes (DataError otherwise).
    """
    y, p = _binary_inputs(y, p)
    _both_classes(y, "an ROC curve")
    tps, fps, thr = _ranked_counts(y, p)
    return {
        "fpr": np.r_[0.0, fps / fps[-1]],
        "tpr": np.r_[0.0, tps / tps[-1]],
        "thresholds": np.r_[np.inf, thr],
    }


def pr_curve(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Precision-recall points at each distinct predicted value, by decreasing threshold.

    ``recall`` starts at 0 with ``precision`` 1 (the convention of scikit-learn, whose arrays run
    the other way); ``prevalence`` is the precision of flagging everyone, the no-skill line.
    """
    y, p = _binary_inputs(y, p)
    _both_classes(y, "a precision-recall curve")
    tps, fps, thr = _ranked_counts(y, p)
    return {
        "recall": np.r_[0.0, tps / tps[-1]],
        "precision": np.r_[1.0, tps / (tps + fps)],
        "thresholds": np.r_[np.inf, thr],
        "prevalence": float(y.mean()),
    }


# ---------------------------------------------------------------------------------------------
# calibration


def wilson_interval(events: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions ``events / n`` (Wilson, JASA 1927).

    Unlike the Wald interval it stays inside [0, 1] and behaves at 0 and n events.
    """
    k = np.asarray(events, dtype=float)
    m = np.asarray(n, dtype=float)
    z = _z(level)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = (k + z * z / 2.0) / (m + z * z)
        half = z / (m + z * z) * np.sqrt(k * (m - k) / m + z * z / 4.0)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _bin_index(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    """Group of each prediction: equal-mass (quantiles of p) or equal-width bins over [0, 1]."""
    if int(n_bins) < 1:
        raise ConfigError(f"n_bins must be a positive integer, got {n_bins!r}.")
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, int(n_bins) + 1))[1:-1])
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)[1:-1]
    else:
        raise ConfigError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}.")
    idx = np.searchsorted(edges, p, side="right")
    _, dense = np.unique(idx, return_inverse=True)  # drop empty groups
    return dense.reshape(-1)


def binned_calibration(
    y: np.ndarray, p: np.ndarray, *, n_bins: int = 10, strategy: str = "quantile", level: float = 0.95
) -> dict[str, np.ndarray]:
    """Observed event rate against mean predicted risk in groups of predicted risk.

    ``strategy="quantile"`` makes (up to) ``n_bins`` groups of equal size from the quantiles of p
    (deciles by default; tied predictions never straddle two groups, so there may be fewer);
    ``"uniform"`` cuts [0, 1] into equal-width bins. Empty groups are dropped. Returns per group
    ``n``, ``events``, ``mean_predicted``, ``observed`` (events / n) and a Wilson score interval
    ``ci_low``/``ci_high`` at ``level``.
    """
    y, p = _binary_inputs(y, p)
    idx = _bin_index(p, n_bins, strategy)
    k = int(idx.max()) + 1
    n = np.bincount(idx, minlength=k).astype(float)
    events = np.bincount(idx, weights=y, minlength=k)
    mean_p = np.bincount(idx, weights=p, minlength=k) / n
    low, high = wilson_interval(events, n, level)
    return {"n": n.astype(int), "events": events.astype(int), "mean_predicted": mean_p,
            "observed": events / n, "ci_low": low, "ci_high": high}


def expected_calibration_error(
    y: np.ndarray, p: np.ndarray, *, n_bins: int = 10, strategy: str = "quantile"
) -> float:
    """ECE: sum over risk groups of (group size / n) * |observed rate - mean predicted risk|.

    Naeini et al. (AAAI 2015); groups as in :func:`binned_calibration` (equal-mass deciles by
    default, Nixon et al. 2019). It is never negative and is biased upwards by sampling noise in
    small groups, so it is near, not exactly, 0 for a perfectly calibrated model.
    """
    bins = binned_calibration(y, p, n_bins=n_bins, strategy=strategy)
    weight = bins["n"] / bins["n"].sum()
    return float(np.sum(weight * np.abs(bins["observed"] - bins["mean_predicted"])))


def _loess_bandwidth(x: np.ndarray, grid: np.ndarray, k: int) -> np.ndarray:
    """Distance from each grid point to its k-th nearest x: the nearest-neighbour bandwidth."""
    out = np.empty(len(grid))
    step = max(1, int(2e7 // max(len(x), 1)))
    for lo in range(0, len(grid), step):
        d = np.abs(x[None, :] - grid[lo:lo + step, None])
        out[lo:lo + step] = np.partition(d, k - 1, axis=1)[:, k - 1]
    # a window of tied x values has zero width; widen it a hair so the tied points get weight
    return np.maximum(out * (1.0 + 1e-9), 1e-12)


def _tricube(x: np.ndarray, grid: np.ndarray, h: np.ndarray) -> np.ndarray:
    u = np.abs(x[None, :] - grid[:, None]) / h[:, None]
    return np.where(u < 1.0, (1.0 - u**3) ** 3, 0.0)


def _local_linear(kernel: np.ndarray, grid: np.ndarray, x: np.ndarray, y: np.ndarray,
                  w: np.ndarray) -> np.ndarray:
    """Weighted local linear fit at each grid point; ``w`` is (n,) or (n, B) (bootstrap counts).

    Solves the 2x2 weighted least-squares problem for (a, b) in y ~ a + b (x - x0) and returns a.
    Where the window holds a single distinct x the slope is not identified and the weighted mean
    is used.
    """
    w2 = w if w.ndim == 2 else w[:, None]
    g = len(grid)
    # the five weighted sums as one product: [K; K x; K x^2; K y; K x y] @ w
    stacked = np.concatenate([kernel, kernel * x, kernel * (x * x), kernel * y, kernel * (x * y)]) @ w2
    s0, s1, s2, t0, t1 = (stacked[i * g:(i + 1) * g] for i in range(5))
    x0 = grid[:, None]
    s1c = s1 - x0 * s0
    s2c = s2 - 2.0 * x0 * s1 + x0 * x0 * s0
    t1c = t1 - x0 * t0
    det = s0 * s2c - s1c * s1c
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = t0 / s0
        fit = np.where(det > 1e-12 * np.maximum(s0 * s2c, 1e-300), (s2c * t0 - s1c * t1c) / det, mean)
    return fit if w.ndim == 2 else fit[:, 0]


def smoothed_calibration(
    y: np.ndarray,
    p: np.ndarray,
    *,
    span: float = 0.75,
    grid: np.ndarray | None = None,
    n_grid: int = 50,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    max_rows: int = 20_000,
) -> dict[str, np.ndarray | float]:
    """Smoothed calibration curve (loess of the outcome on the predicted risk) with a bootstrap band.

    The smoother is local linear regression with tricube weights over the nearest ``span`` fraction
    of the rows (Cleveland 1979; the loess/lowess family used by Austin & Steyerberg 2014), without
    robustness iterations, which would discount the 0/1 outcomes furthest from the curve. It is
    evaluated at ``grid`` (default: ``n_grid`` points from the 1st to the 99th percentile of p, where
    there are data) and clipped to [0, 1].

    The band is a percentile bootstrap at ``level`` over ``n_boot`` resamples of the rows (as
    multinomial weights), keeping each grid point's bandwidth fixed at its full-data value; it
    shows sampling variability of the curve, not smoothing bias.

    Also returned: ``ici`` (mean |smoothed - predicted| over the rows), ``e50``, ``e90`` and
    ``emax`` (median, 90th percentile and maximum of that gap) of Austin & Steyerberg (2019), with
    the smoothed value at each row interpolated from a 200-point grid over the range of p.

    Memory grows with (grid points x rows): above ``max_rows`` rows the curve and its band are
    fitted on a seeded random subset of ``max_rows`` rows (the band is then slightly wider than the
    full data would give); the indices still average over every row.
    """
    y_all, p_all = _binary_inputs(y, p)
    y, p = y_all, p_all
    if len(y) > int(max_rows):
        keep = np.sort(np.random.default_rng(seed).choice(len(y), int(max_rows), replace=False))
        y, p = y_all[keep], p_all[keep]
    n = len(y)
    if not 0.0 < float(span) <= 1.0:
        raise ConfigError(f"span must lie in (0, 1], got {span!r}.")
    if int(n_boot) < 0:
        raise ConfigError(f"n_boot must be >= 0, got {n_boot!r}.")
    k = max(int(math.ceil(span * n)), min(n, 3))
    if grid is None:
        lo, hi = np.percentile(p, [1.0, 99.0])
        grid = np.linspace(lo, hi, int(n_grid)) if hi > lo else np.array([float(lo)])
    grid = np.asarray(grid, dtype=float)
    kernel = _tricube(p, grid, _loess_bandwidth(p, grid, k))
    fit = _local_linear(kernel, grid, p, y, np.ones(n))

    low = high = np.full(len(grid), _NAN)
    if n_boot:
        rng = np.random.default_rng(seed)
        boots = []
        chunk = max(1, min(int(n_boot), int(4e6 // n)))
        for start in range(0, int(n_boot), chunk):
            b = min(chunk, int(n_boot) - start)
            draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
            counts = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).T.astype(float)
            boots.append(_local_linear(kernel, grid, p, y, counts))
        reps = np.clip(np.concatenate(boots, axis=1), 0.0, 1.0)
        alpha = (1.0 - level) / 2.0
        low, high = np.nanquantile(reps, [alpha, 1.0 - alpha], axis=1)

    # calibration indices at every row, from a fine grid over the full range of p
    if np.ptp(p) > 0:
        fine = np.linspace(p.min(), p.max(), 200)
        fine_kernel = _tricube(p, fine, _loess_bandwidth(p, fine, k))
        fine_fit = np.clip(_local_linear(fine_kernel, fine, p, y, np.ones(n)), 0.0, 1.0)
        gap = np.abs(np.interp(p_all, fine, fine_fit) - p_all)
    else:
        gap = np.full(len(p_all), abs(float(y.mean()) - float(p[0])))
    return {
        "grid": grid,
        "observed": np.clip(fit, 0.0, 1.0),
        "ci_low": low,
        "ci_high": high,
        "ici": float(gap.mean()),
        "e50": float(np.median(gap)),
        "e90": float(np.quantile(gap, 0.9)),
        "emax": float(gap.max()),
    }


# ---------------------------------------------------------------------------------------------
# clinical utility and thresholds


def _default_grid(thresholds: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if thresholds is None:
        return np.round(np.arange(1, 100) / 100.0, 2)
    t = np.asarray(thresholds, dtype=float).ravel()
    if t.size == 0 or (t <= 0).any() or (t >= 1).any() or not np.isfinite(t).all():
        raise ConfigError(f"thresholds must be probabilities strictly between 0 and 1, got {thresholds!r}.")
    return t


def _counts_at(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when rows with p >= t are flagged, for each t."""
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    events_above = np.r_[np.cumsum(y[order][::-1])[::-1], 0.0]  # events among rows order[i:]
    start = np.searchsorted(ps, thresholds, side="left")  # first row with p >= t
    flagged = len(p) - start
    tp = events_above[start]
    return tp, flagged - tp


def decision_curve(
    y: np.ndarray, p: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None
) -> dict[str, np.ndarray | float]:
    """Net benefit of acting on the model, on everyone and on no one, over threshold probabilities.

    Vickers & Elkin (2006): at threshold probability pt, a patient is treated when p >= pt and
    ``net benefit = TP/n - FP/n * pt / (1 - pt)``; treating all gives
    ``prevalence - (1 - prevalence) * pt / (1 - pt)``; treating none gives 0. Default thresholds
    0.01, 0.02, ..., 0.99.
    """
    y, p = _binary_inputs(y, p)
    t = _default_grid(thresholds)
    n = float(len(y))
    tp, fp = _counts_at(y, p, t)
    odds = t / (1.0 - t)
    prevalence = float(y.mean())
    return {
        "thresholds": t,
        "net_benefit": tp / n - fp / n * odds,
        "treat_all": prevalence - (1.0 - prevalence) * odds,
        "treat_none": np.zeros_like(t),
        "prevalence": prevalence,
    }


def threshold_table(
    y: np.ndarray, p: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *,
    extra: float | None = None,
) -> list[dict[str, float]]:
    """Sensitivity, specificity, PPV, NPV and patients flagged per 1,000 at each threshold.

    A patient is flagged when ``p >= threshold``. ``extra`` (the run's configured threshold) is added
    to ``thresholds``; the rows are sorted by threshold without duplicates. A ratio whose
    denominator is 0 (PPV when no one is flagged) is NaN. Each row also carries the counts and the
    net benefit (Vickers & Elkin 2006).
    """
    y, p = _binary_inputs(y, p)
    values = list(thresholds) + ([extra] if extra is not None else [])
    t = np.unique(np.round(_default_grid(values), 10))
    n = float(len(y))
    n_pos = float(y.sum())
    tp, fp = _counts_at(y, p, t)
    rows = []
    for ti, tpi, fpi in zip(t, tp, fp, strict=True):
        fn = n_pos - tpi
        tn = n - n_pos - fpi
        rows.append({
            "threshold": float(ti),
            "tp": int(tpi), "fp": int(fpi), "fn": int(fn), "tn": int(tn),
            "sensitivity": _ratio(tpi, tpi + fn),
            "specificity": _ratio(tn, tn + fpi),
            "ppv": _ratio(tpi, tpi + fpi),
            "npv": _ratio(tn, tn + fn),
            "flagged_per_1000": float(1000.0 * (tpi + fpi) / n),
            "net_benefit": float(tpi / n - fpi / n * ti / (1.0 - ti)),
        })
    return rows


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else _NAN


def confusion_matrix(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """2x2 counts ``[[TN, FP], [FN, TP]]`` (rows: observed 0/1; columns: predicted 0/1 at p >= threshold)."""
    y, p = _binary_inputs(y, p)
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold!r}.")
    pred = (p >= threshold).astype(np.int64)
    return np.bincount(y.astype(np.int64) * 2 + pred, minlength=4).reshape(2, 2)


def multiclass_confusion(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """K x K counts: rows are the observed class codes 0..K-1, columns the arg-max predicted class."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise DataError(f"proba must be (rows, classes) with at least 2 columns, got {proba.shape}.",
                        column="proba")
    _check_finite(proba, "proba", "predictions")
    y = _as_1d_float(y, "y")
    _check_same_length(y=y, proba=proba)
    k = proba.shape[1]
    bad = (y != np.round(y)) | (y < 0) | (y >= k)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"y must hold class codes 0..{k - 1}; found {y[row]!r} in row {row}.", column="y",
                        rows=np.flatnonzero(bad).tolist())
    pred = np.argmax(proba, axis=1)
    return np.bincount(y.astype(np.int64) * k + pred, minlength=k * k).reshape(k, k)


def regression_calibration(
    y: np.ndarray, yhat: np.ndarray, *, n_bins: int = 10, level: float = 0.95
) -> dict[str, np.ndarray]:
    """Mean observed value against mean prediction in deciles of the prediction, with a t-interval."""
    from scipy.stats import t as student_t

    y = _as_1d_float(y, "y")
    yhat = _as_1d_float(yhat, "yhat")
    _check_same_length(y=y, yhat=yhat)
    _check_finite(y, "y", "outcomes")
    _check_finite(yhat, "yhat", "predictions")
    if int(n_bins) < 1:
        raise ConfigError(f"n_bins must be a positive integer, got {n_bins!r}.")
    edges = np.unique(np.quantile(yhat, np.linspace(0.0, 1.0, int(n_bins) + 1))[1:-1])
    _, idx = np.unique(np.searchsorted(edges, yhat, side="right"), return_inverse=True)
    k = int(idx.max()) + 1
    n = np.bincount(idx, minlength=k).astype(float)
    mean_y = np.bincount(idx, weights=y, minlength=k) / n
    mean_hat = np.bincount(idx, weights=yhat, minlength=k) / n
    ss = np.bincount(idx, weights=(y - mean_y[idx]) ** 2, minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(ss / (n - 1.0) / n)
        half = student_t.ppf(0.5 + level / 2.0, np.maximum(n - 1.0, 1.0)) * se
    half = np.where(n > 1, half, _NAN)
    return {"n": n.astype(int), "mean_predicted": mean_hat, "observed": mean_y,
            "ci_low": mean_y - half, "ci_high": mean_y + half}


# ---------------------------------------------------------------------------------------------
# survival


def kaplan_meier_ci(time: np.ndarray, event: np.ndarray, *, level: float = 0.95) -> dict[str, np.ndarray]:
    """Kaplan-Meier survival with Greenwood variance and log(-log) ("exponential Greenwood") limits.

    Returns ``time`` (0, then every distinct observed time), ``surv`` (S just after each time),
    ``ci_low``/``ci_high``, ``at_risk`` and ``n_events`` at each time. The limits are
    ``S ** exp(±z * se)`` with ``se = sqrt(sum d / (r (r - d))) / |log S|`` (Kalbfleisch & Prentice
    2002), as in lifelines; where S is 1 they are (1, 1), where S is 0 they are (0, 0).
    """
    time = _times(time)
    event = _event_indicator(event)
    _check_same_length(time=time, event=event)
    z = _z(level)
    unique, inverse, counts = np.unique(time, return_inverse=True, return_counts=True)
    d = np.bincount(inverse, weights=event, minlength=len(unique))
    r = len(time) - (np.cumsum(counts) - counts)
    surv = np.cumprod(1.0 - d / r)
    with np.errstate(divide="ignore", invalid="ignore"):
        greenwood = np.cumsum(np.where(d > 0, d / (r * (r - d)), 0.0))
        log_s = np.log(surv)
        se = np.sqrt(greenwood) / np.abs(log_s)
        low = surv ** np.exp(z * se)
        high = surv ** np.exp(-z * se)
    one = surv >= 1.0
    zero = surv <= 0.0  # once S reaches 0 (everyone left at risk had the event) it stays 0
    low = np.where(one, 1.0, np.where(zero, 0.0, low))
    high = np.where(one, 1.0, np.where(zero, 0.0, high))
    return {
        "time": np.r_[0.0, unique],
        "surv": np.r_[1.0, surv],
        "ci_low": np.r_[1.0, low],
        "ci_high": np.r_[1.0, high],
        "at_risk": np.r_[len(time), r].astype(int),
        "n_events": np.r_[0, d].astype(int),
    }


def km_at(km: dict[str, np.ndarray], t: float) -> tuple[float, float, float]:
    """KM (surv, low, high) at time t; NaN beyond the last observed time unless S has reached 0."""
    times = km["time"]
    if t > times[-1] and km["surv"][-1] > 0:
        return _NAN, _NAN, _NAN
    i = int(np.searchsorted(times, t, side="right")) - 1
    return float(km["surv"][i]), float(km["ci_low"][i]), float(km["ci_high"][i])


def risk_groups(risk: np.ndarray, n_groups: int = 3) -> tuple[np.ndarray, list[str]]:
    """Group of each row by quantiles of risk (0 = lowest) and a label per group.

    Tertiles by default ("low", "middle", "high"); any other number gives "Q1 (lowest)" ... Tied
    risks never straddle groups, so a heavily tied score may give fewer groups.
    """
    risk = _as_1d_float(risk, "risk")
    _check_finite(risk, "risk", "predictions")
    if int(n_groups) < 2:
        raise ConfigError(f"n_groups must be at least 2, got {n_groups!r}.")
    edges = np.unique(np.quantile(risk, np.linspace(0.0, 1.0, int(n_groups) + 1))[1:-1])
    raw = np.searchsorted(edges, risk, side="right")
    present, group = np.unique(raw, return_inverse=True)
    k = len(present)
    if k == 3:
        labels = ["low risk (lowest third)", "middle third", "high risk (highest third)"]
    elif k == 2:
        labels = ["lower half", "upper half"]
    elif k == 1:
        labels = ["all (risk is constant)"]
    else:
        labels = [f"Q{i + 1}" + (" (lowest)" if i == 0 else " (highest)" if i == k - 1 else "")
                  for i in range(k)]
    return group.reshape(-1), labels


def km_by_risk_group(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, *, n_groups: int = 3, level: float = 0.95
) -> list[dict]:
    """Kaplan-Meier curve (with CI) in each group of predicted risk (tertiles by default).

    Each entry: ``label``, ``n``, ``events``, ``risk_min``, ``risk_max`` and the arrays of
    :func:`kaplan_meier_ci`. Well separated curves, ordered like the groups, show discrimination.
    """
    time = _times(time)
    event = _event_indicator(event)
    risk = _as_1d_float(risk, "risk")
    _check_same_length(time=time, event=event, risk=risk)
    group, labels = risk_groups(risk, n_groups)
    out = []
    for g, label in enumerate(labels):
        rows = group == g
        km = kaplan_meier_ci(time[rows], event[rows], level=level)
        out.append({"label": label, "n": int(rows.sum()), "events": int(event[rows].sum()),
                    "risk_min": float(risk[rows].min()), "risk_max": float(risk[rows].max()), **km})
    return out


def time_dependent_auc(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, times: Sequence[float] | np.ndarray | None = None,
    *, n_times: int = 20,
) -> dict[str, np.ndarray]:
    """Cumulative/dynamic AUC(t) (IPCW; Uno et al. 2007) at each of ``times``.

    Computed by :func:`~precimed.evaluate.survival_metrics`. The default grid has ``n_times`` points
    from the 5th percentile of the event times to the 90th percentile of all observed times (where
    the censoring weights are stable). Times where AUC(t) is undefined (no event yet, or at or
    beyond the last follow-up) are NaN.
    """
    time = _times(time)
    event = _event_indicator(event)
    risk = _as_1d_float(risk, "risk")
    _check_same_length(time=time, event=event, risk=risk)
    if not event.any():
        raise DataError("time-dependent AUC needs observed events; none of the rows has event == 1.",
                        column="event")
    if times is None:
        lo = float(np.percentile(time[event], 5))
        hi = float(np.percentile(time, 90))
        hi = hi if hi > lo else float(time.max())
        times = np.linspace(lo, hi, int(n_times))
    t = np.asarray(times, dtype=float).ravel()
    # survival_metrics names horizons with 6 significant digits: keep one time per name
    names = [f"{h:g}" for h in t]
    keep = np.array([names.index(nm) == i for i, nm in enumerate(names)])
    t = t[keep]
    with _undefined_as_nan():
        m = survival_metrics(time, event, risk, horizons=t)
    auc = np.array([m.get(f"auc_{h:g}", _NAN) for h in t])
    return {"times": t, "auc": auc}


def surv_at(surv: np.ndarray, grid: np.ndarray, horizon: float) -> np.ndarray:
    """S(horizon | x) per row from curves on ``grid``: the value at the last grid time <= horizon.

    The same convention as the Brier score of :func:`~precimed.evaluate.survival_metrics`.
    """
    surv = np.asarray(surv, dtype=float)
    grid = np.asarray(grid, dtype=float)
    if surv.ndim != 2 or surv.shape[1] != grid.size:
        raise DataError(f"surv must be (rows, len(grid)) = (n, {grid.size}), got {surv.shape}.", column="surv")
    j = int(np.searchsorted(grid, horizon, side="right")) - 1
    if j < 0:
        raise DataError(f"horizon {horizon:g} comes before the first grid time {grid[0]:g}.", column="surv")
    return surv[:, j]


def survival_calibration(
    time: np.ndarray, event: np.ndarray, surv_h: np.ndarray, horizon: float, *,
    n_bins: int = 10, level: float = 0.95,
) -> dict[str, np.ndarray | float]:
    """Calibration at a horizon: predicted event probability vs Kaplan-Meier event probability by decile.

    ``surv_h`` is each row's predicted S(horizon | x). Rows are grouped by deciles of the predicted
    event probability 1 - S(h | x); in each group the observed event probability is 1 - KM(h),
    with the log(-log) Greenwood interval of :func:`kaplan_meier_ci` (so censoring before h is
    handled). A group whose follow-up ends before h without reaching S = 0 gets NaN. ``ece`` is
    the size-weighted mean |observed - predicted| over the groups with an estimate.
    """
    time = _times(time)
    event = _event_indicator(event)
    s = _as_1d_float(surv_h, "surv_h")
    _check_same_length(time=time, event=event, surv_h=s)
    _check_finite(s, "surv_h", "survival probabilities")
    if (s < 0).any() or (s > 1).any():
        raise DataError("surv_h must hold survival probabilities in [0, 1].", column="surv_h")
    pred = 1.0 - s
    idx = _bin_index(pred, n_bins, "quantile")
    k = int(idx.max()) + 1
    n = np.bincount(idx, minlength=k)
    mean_pred = np.bincount(idx, weights=pred, minlength=k) / n
    observed, low, high, events = (np.full(k, _NAN) for _ in range(4))
    for g in range(k):
        rows = idx == g
        km_s, km_lo, km_hi = km_at(kaplan_meier_ci(time[rows], event[rows], level=level), float(horizon))
        observed[g], low[g], high[g] = 1.0 - km_s, 1.0 - km_hi, 1.0 - km_lo
        events[g] = float(np.count_nonzero(event[rows] & (time[rows] <= horizon)))
    ok = np.isfinite(observed)
    ece = float(np.sum(n[ok] * np.abs(observed[ok] - mean_pred[ok])) / n[ok].sum()) if ok.any() else _NAN
    return {"horizon": float(horizon), "n": n.astype(int), "events": events, "mean_predicted": mean_pred,
            "observed": observed, "ci_low": low, "ci_high": high, "ece": ece}
