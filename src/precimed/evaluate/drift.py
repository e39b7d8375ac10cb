"""Drift statistics on plain frames and arrays: has the population a model meets moved away from its training data?

Everything here takes pandas frames, numpy arrays and the run config's :class:`~precimed.config.FeatureConfig`
declarations (kind, categories, plausible range); no bundle, no model class, no file. The recipes
(``workflows.drift``, ``workflows.temporal_validation``) feed it the training rows as the reference and a
deployment window as the current data.

Per feature (:func:`feature_drift`):

* the **population stability index** (PSI), sum over bins of ``(c - r) * ln(c / r)`` with ``r`` and ``c`` the
  reference and current proportions. Numeric features are cut at the reference's quantiles (``bins`` bins, fewer
  when values repeat, open at both ends so no current value falls outside); categorical, binary, ordinal and
  genotype features use their categories (declared ones first, then any value seen). Missing values form their
  own bin when either sample has any, so a test that stops being measured moves the PSI. An empty bin's
  proportion is floored at ``floor`` (1e-4) so the logarithm stays finite.
* a **two-sample test** on the observed values: Kolmogorov-Smirnov for numeric features
  (``scipy.stats.ks_2samp``), chi-squared on the category counts for the others
  (``scipy.stats.chi2_contingency``); and a chi-squared test of the missingness rate (2 x 2) when any value is
  missing.
* **Benjamini-Hochberg** control of the false discovery rate over every test of the table
  (``scipy.stats.false_discovery_control``): the q-values.
* the **missingness rate** and the **out-of-range rate** (non-missing values outside the declared plausible
  range) in each sample.

A feature is *drifting* when a test rejects at false discovery rate ``alpha`` AND its PSI is at least
``psi_threshold`` (0.1, the usual "moderate shift" mark): the test guards against the noise of small windows
(two samples of 100 rows from one distribution have an expected PSI near 0.1 with 10 bins), the PSI against
negligible shifts that a large sample makes significant.

The multivariate signal is the **domain classifier** (:func:`domain_classifier`): a gradient-boosting model
(scikit-learn's ``HistGradientBoostingClassifier``) learns to tell reference rows from current rows; its AUROC,
computed on out-of-fold predictions (``cross_val_predict``, so never on rows the classifier was fitted on), is
0.5 when the two samples are exchangeable and approaches 1 when they are easy to tell apart. Its CI is the
percentile bootstrap of :func:`~precimed.evaluate.bootstrap.bootstrap_ci`, stratified by sample.

For outcomes (performance over time): :func:`survival_maturity` and :func:`binary_maturity` decide whether a
window's labels are mature; :func:`cox_calibration_slope` (the slope of the linear predictor in a Cox model on
the window) and :func:`observed_vs_predicted` (Kaplan-Meier observed risk at a horizon against the mean
predicted risk) measure calibration; :func:`survival_window_metrics` and :func:`binary_window_metrics` put them
together with bootstrap CIs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from precimed.config import FeatureConfig
from precimed.errors import ConfigError, DataError

from .bootstrap import bootstrap_ci
from .metrics import binary_metrics, undefined_as_nan
from .survival import survival_metrics

__all__ = [
    "DriftTable",
    "binary_maturity",
    "binary_window_metrics",
    "category_labels",
    "cox_calibration_slope",
    "distribution_bins",
    "domain_classifier",
    "feature_drift",
    "numeric_edges",
    "observed_vs_predicted",
    "population_stability_index",
    "prediction_shift",
    "survival_maturity",
    "survival_window_metrics",
]

PSI_FLOOR = 1e-4
PSI_THRESHOLD = 0.1
MIN_EVENTS = 10  # below this many events a window's C-index and calibration slope are flagged as unstable
MISSING = "(missing)"
_NAN = float("nan")
CATEGORICAL_KINDS = ("binary", "categorical", "ordinal", "genotype")


# ----- bins and the PSI ------------------------------------------------------------------------------------------
def population_stability_index(reference: Sequence[float], current: Sequence[float], *,
                               floor: float = PSI_FLOOR) -> float:
    """PSI of two vectors of bin proportions (or counts; each is normalised to sum to 1).

    ``sum((c - r) * ln(c / r))`` with every proportion floored at ``floor`` so an empty bin stays finite.
    """
    r = np.asarray(reference, dtype=float)
    c = np.asarray(current, dtype=float)
    if r.shape != c.shape or r.ndim != 1 or r.size == 0:
        raise DataError(f"PSI needs two equally long vectors of bin proportions, got shapes {r.shape} and {c.shape}")
    if r.sum() <= 0 or c.sum() <= 0:
        return _NAN
    r = np.maximum(r / r.sum(), floor)
    c = np.maximum(c / c.sum(), floor)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_edges(reference: np.ndarray, bins: int = 10) -> np.ndarray:
    """Interior cut points of ``bins`` quantile bins of the reference's observed values (duplicates removed).

    A value ``x`` falls in bin ``searchsorted(edges, x, side="left")``: bins are closed on the right, the first
    is open to minus infinity and the last to plus infinity.
    """
    if int(bins) < 2:
        raise ConfigError(f"bins must be at least 2, got {bins}")
    values = np.asarray(reference, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.array([])
    qs = np.quantile(values, np.linspace(0.0, 1.0, int(bins) + 1)[1:-1])
    return np.unique(qs)


def _plain(value: Any) -> Any:
    """A category value as one label: integral floats become ints (1.0 and 1 are one category)."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def category_labels(values: pd.Series) -> pd.Series:
    """Category values as strings, with 1, 1.0 and True read as one category; missing stays NaN."""
    s = pd.Series(values)
    out = s.map(lambda v: str(_plain(v)), na_action="ignore")
    return out.where(s.notna(), np.nan)


def _categories(feature: FeatureConfig | None, ref: pd.Series, cur: pd.Series) -> list[str]:
    declared = [str(_plain(c)) for c in (feature.categories or [])] if feature is not None else []
    seen = sorted(set(ref.dropna()) | set(cur.dropna()), key=str)
    return list(dict.fromkeys(declared + seen))


def distribution_bins(reference: pd.Series, current: pd.Series, *, kind: str = "numeric", bins: int = 10,
                      feature: FeatureConfig | None = None) -> dict[str, Any]:
    """The bins of one feature and each sample's counts in them: the PSI's input and the drift plots' data.

    Returns ``{"labels": [...], "reference": counts, "current": counts, "edges": interior cut points (numeric) or
    None}``; a last bin ``"(missing)"`` is present when either sample has missing values.
    """
    ref = pd.Series(reference).reset_index(drop=True)
    cur = pd.Series(current).reset_index(drop=True)
    missing = bool(ref.isna().any() or cur.isna().any())
    if kind == "numeric":
        r = pd.to_numeric(ref, errors="coerce").to_numpy(dtype=float)
        c = pd.to_numeric(cur, errors="coerce").to_numpy(dtype=float)
        edges = numeric_edges(r, bins)
        k = edges.size + 1
        r_obs, c_obs = r[np.isfinite(r)], c[np.isfinite(c)]
        r_counts = np.bincount(np.searchsorted(edges, r_obs, side="left"), minlength=k).astype(float)
        c_counts = np.bincount(np.searchsorted(edges, c_obs, side="left"), minlength=k).astype(float)
        bounds = [-np.inf, *edges.tolist(), np.inf]
        labels = [_interval(bounds[i], bounds[i + 1]) for i in range(k)]
        out_edges: list[float] | None = edges.tolist()
    else:
        r_lab, c_lab = category_labels(ref), category_labels(cur)
        labels = _categories(feature, r_lab, c_lab)
        r_counts = r_lab.value_counts().reindex(labels, fill_value=0).to_numpy(dtype=float)
        c_counts = c_lab.value_counts().reindex(labels, fill_value=0).to_numpy(dtype=float)
        out_edges = None
    if missing:
        labels = [*labels, MISSING]
        r_counts = np.append(r_counts, float(ref.isna().sum()))
        c_counts = np.append(c_counts, float(cur.isna().sum()))
    return {"labels": labels, "reference": r_counts, "current": c_counts, "edges": out_edges}


def _interval(low: float, high: float) -> str:
    if math.isinf(low):
        return f"<= {high:.4g}"
    if math.isinf(high):
        return f"> {low:.4g}"
    return f"({low:.4g}, {high:.4g}]"


# ----- per-feature drift -----------------------------------------------------------------------------------------
@dataclass
class DriftTable:
    """One row per feature: PSI, the test and its BH q-value, missingness and out-of-range rates, the verdict.

    ``frame`` columns: feature, kind, n_reference, n_current, psi, test (``ks`` / ``chi2``), statistic, p_value,
    q_value, missing_reference, missing_current, missing_p, missing_q, out_of_range_reference,
    out_of_range_current, drifting (bool), reason. ``bins`` keeps each feature's bins and counts for plots.
    """

    frame: pd.DataFrame
    alpha: float
    psi_threshold: float
    bins: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def drifting(self) -> list[str]:
        """The features flagged as drifting, largest PSI first."""
        rows = self.frame[self.frame["drifting"]].sort_values("psi", ascending=False)
        return rows["feature"].tolist()

    def records(self) -> list[dict[str, Any]]:
        """The table as JSON-ready rows (NaN stays NaN; the JSON writer turns it into null)."""
        return self.frame.to_dict(orient="records")


def _numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(pd.Series(series), errors="coerce").to_numpy(dtype=float)


def _distribution_test(ref: pd.Series, cur: pd.Series, kind: str) -> tuple[str, float, float]:
    """(test name, statistic, p-value) on the observed values; NaN when a sample has no observed value."""
    if kind == "numeric":
        r, c = _numeric(ref), _numeric(cur)
        r, c = r[np.isfinite(r)], c[np.isfinite(c)]
        if r.size == 0 or c.size == 0:
            return "ks", _NAN, _NAN
        result = stats.ks_2samp(r, c)
        return "ks", float(result.statistic), float(result.pvalue)
    r_lab, c_lab = category_labels(ref).dropna(), category_labels(cur).dropna()
    if r_lab.empty or c_lab.empty:
        return "chi2", _NAN, _NAN
    labels = sorted(set(r_lab) | set(c_lab))
    table = np.vstack([r_lab.value_counts().reindex(labels, fill_value=0).to_numpy(),
                       c_lab.value_counts().reindex(labels, fill_value=0).to_numpy()])
    if table.shape[1] < 2:
        return "chi2", 0.0, 1.0  # one category in both samples: nothing can differ
    statistic, p, _, _ = stats.chi2_contingency(table, correction=False)
    return "chi2", float(statistic), float(p)


def _missing_test(ref: pd.Series, cur: pd.Series) -> float:
    """p-value of the chi-squared test of equal missingness rates (NaN when nothing is missing anywhere)."""
    r_miss, c_miss = int(ref.isna().sum()), int(cur.isna().sum())
    if r_miss + c_miss == 0:
        return _NAN
    table = np.array([[r_miss, len(ref) - r_miss], [c_miss, len(cur) - c_miss]])
    if (table.sum(axis=0) == 0).any():
        return 1.0 if r_miss / max(len(ref), 1) == c_miss / max(len(cur), 1) else 0.0
    return float(stats.chi2_contingency(table, correction=True)[1])


def _out_of_range(series: pd.Series, feature: FeatureConfig) -> float:
    if feature.range is None or len(series) == 0:
        return 0.0 if len(series) else _NAN
    values = _numeric(series)
    low, high = feature.range
    outside = np.isfinite(values) & ((values < low) | (values > high))
    return float(outside.mean())


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values of the finite entries (NaN stays NaN)."""
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(np.clip(p[ok], 0.0, 1.0), method="bh")
    return q


def _check_frames(reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[FeatureConfig]) -> None:
    if not features:
        raise ConfigError("feature_drift needs at least one feature declaration")
    for name, frame in (("reference", reference), ("current", current)):
        if len(frame) == 0:
            raise DataError(f"the {name} data has no rows; drift needs rows on both sides")
        missing = [f.name for f in features if f.name not in frame.columns]
        if missing:
            raise DataError(f"the {name} data lacks feature column(s) {missing}", column=missing[0])


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[FeatureConfig], *,
                  bins: int = 10, alpha: float = 0.05, psi_threshold: float = PSI_THRESHOLD,
                  floor: float = PSI_FLOOR) -> DriftTable:
    """Per-feature drift of ``current`` against ``reference`` (see the module docstring for each statistic).

    ``reference`` and ``current`` hold one column per declared feature (the user's units, as the run config
    declares them); other columns are ignored. Tests are BH-adjusted together (distribution and missingness tests
    of every feature form one family). Returns a :class:`DriftTable`.
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    _check_frames(reference, current, features)
    rows: list[dict[str, Any]] = []
    kept_bins: dict[str, dict[str, Any]] = {}
    for f in features:
        kind = "numeric" if f.kind == "numeric" else "categorical"
        ref, cur = reference[f.name].reset_index(drop=True), current[f.name].reset_index(drop=True)
        binned = distribution_bins(ref, cur, kind=kind, bins=bins, feature=f)
        kept_bins[f.name] = binned
        test, statistic, p = _distribution_test(ref, cur, kind)
        rows.append({
            "feature": f.name, "kind": f.kind, "n_reference": int(len(ref)), "n_current": int(len(cur)),
            "psi": population_stability_index(binned["reference"], binned["current"], floor=floor),
            "test": test, "statistic": statistic, "p_value": p,
            "missing_reference": float(ref.isna().mean()), "missing_current": float(cur.isna().mean()),
            "missing_p": _missing_test(ref, cur),
            "out_of_range_reference": _out_of_range(ref, f), "out_of_range_current": _out_of_range(cur, f),
        })
    frame = pd.DataFrame(rows)
    pooled = _benjamini_hochberg(np.concatenate([frame["p_value"].to_numpy(float), frame["missing_p"].to_numpy(float)]))
    k = len(frame)
    frame["q_value"], frame["missing_q"] = pooled[:k], pooled[k:]
    shifted = frame["q_value"].lt(alpha)
    missing_shift = frame["missing_q"].lt(alpha)
    large = frame["psi"].ge(psi_threshold)
    frame["drifting"] = (shifted | missing_shift) & large
    frame["reason"] = [
        "; ".join(part for part, on in (("distribution", s), ("missingness", m)) if on) if d else ""
        for d, s, m in zip(frame["drifting"], shifted, missing_shift, strict=True)
    ]
    order = ["feature", "kind", "n_reference", "n_current", "psi", "test", "statistic", "p_value", "q_value",
             "missing_reference", "missing_current", "missing_p", "missing_q", "out_of_range_reference",
             "out_of_range_current", "drifting", "reason"]
    return DriftTable(frame[order], float(alpha), float(psi_threshold), kept_bins)


# ----- the domain classifier -------------------------------------------------------------------------------------
def _encode(frames: Sequence[pd.DataFrame], features: Sequence[FeatureConfig]) -> tuple[np.ndarray, np.ndarray]:
    """Numeric columns as floats, the others as integer codes over the union of categories (NaN when missing)."""
    columns, categorical = [], []
    for f in features:
        if f.kind == "numeric":
            columns.append(np.concatenate([_numeric(fr[f.name]) for fr in frames]))
            categorical.append(False)
            continue
        labels = [category_labels(fr[f.name]) for fr in frames]
        cats = _categories(f, *labels) if len(labels) == 2 else sorted(set().union(*(set(x.dropna()) for x in labels)))
        code = {c: i for i, c in enumerate(cats)}
        many = len(cats) > 250  # HistGradientBoosting takes at most 255 categories; beyond that read as ordered
        columns.append(np.concatenate([x.map(code).to_numpy(dtype=float) for x in labels]))
        categorical.append(not many)
    return np.column_stack(columns), np.asarray(categorical, dtype=bool)


def domain_classifier(reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[FeatureConfig], *,
                      seed: int = 0, n_boot: int = 200, folds: int = 5, level: float = 0.95,
                      max_rows: int = 20_000) -> dict[str, Any]:
    """Can a model tell current rows from reference rows? Out-of-fold AUROC with a bootstrap CI.

    A ``HistGradientBoostingClassifier`` (missing values and categories handled natively) is scored by
    ``cross_val_predict`` over ``folds`` stratified folds, so every row's score comes from a model that never saw
    it. Each sample is subsampled (seeded) to at most ``max_rows`` rows. AUROC near 0.5: the samples cannot be
    told apart; near 1: they differ. Returns ``{"auroc": {"value", "ci_low", "ci_high"}, "n_reference",
    "n_current", "folds", "model", "scores"}`` (``scores``: each row's out-of-fold probability of being current,
    reference rows first).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    _check_frames(reference, current, features)
    rng = np.random.default_rng(seed)
    parts = []
    for frame in (reference, current):
        if len(frame) > max_rows:
            frame = frame.iloc[np.sort(rng.choice(len(frame), max_rows, replace=False))]
        parts.append(frame)
    n_ref, n_cur = len(parts[0]), len(parts[1])
    k = min(int(folds), n_ref, n_cur)
    if k < 2:
        raise DataError(f"the domain classifier needs at least 2 rows in each sample for 2 folds; got {n_ref} "
                        f"reference and {n_cur} current rows")
    X, categorical = _encode(parts, features)
    y = np.r_[np.zeros(n_ref), np.ones(n_cur)]
    model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20,
                                           categorical_features=categorical if categorical.any() else None,
                                           early_stopping=False, random_state=seed)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    # one OpenMP thread: on these sizes (at most 2 x max_rows rows) the threads' start-up and spinning cost more than
    # they save, and ten times more on a machine whose cores are busy (measured: 3.8 s against 0.4 s on Rotterdam)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="openmp"):
        warnings.simplefilter("ignore", UserWarning)
        scores = cross_val_predict(model, X, y, cv=cv, method="predict_proba")[:, 1]
    auroc = bootstrap_ci(lambda i: {"auroc": float(roc_auc_score(y[i], scores[i]))}, len(y), n_boot=n_boot,
                         seed=seed, strata=y, level=level)["auroc"]
    return {"auroc": auroc, "n_reference": n_ref, "n_current": n_cur, "folds": k,
            "model": "HistGradientBoostingClassifier (out-of-fold, cross_val_predict)", "scores": scores}


# ----- model outputs ---------------------------------------------------------------------------------------------
def prediction_shift(reference: np.ndarray, current: np.ndarray, *, bins: int = 10,
                     floor: float = PSI_FLOOR) -> dict[str, Any]:
    """Shift of a model's outputs: PSI over the reference's quantile bins, KS test, and summary quantiles."""
    r, c = np.asarray(reference, dtype=float).ravel(), np.asarray(current, dtype=float).ravel()
    r, c = r[np.isfinite(r)], c[np.isfinite(c)]
    if r.size == 0 or c.size == 0:
        raise DataError(f"prediction shift needs outputs on both sides; got {r.size} reference and {c.size} current")
    binned = distribution_bins(pd.Series(r), pd.Series(c), kind="numeric", bins=bins)
    ks = stats.ks_2samp(r, c)
    quant = [0.05, 0.25, 0.5, 0.75, 0.95]
    return {"psi": population_stability_index(binned["reference"], binned["current"], floor=floor),
            "ks_statistic": float(ks.statistic), "p_value": float(ks.pvalue),
            "mean_reference": float(r.mean()), "mean_current": float(c.mean()),
            "quantiles": {"q": quant, "reference": np.quantile(r, quant).tolist(),
                          "current": np.quantile(c, quant).tolist()},
            "n_reference": int(r.size), "n_current": int(c.size)}


# ----- outcomes: maturity and calibration ------------------------------------------------------------------------
def survival_maturity(time: np.ndarray, event: np.ndarray, horizon: float, *, min_known: float = 0.8
                      ) -> dict[str, Any]:
    """Is the status at ``horizon`` known for enough of a window's patients to score it?

    A patient's status at h is known when the event came at or before h, or follow-up reached h; a patient
    censored before h (lost to follow-up, or simply not followed that long yet: recent patients) is unknown. The
    window is mature at h when at least ``min_known`` of its patients are known AND follow-up reaches h for
    someone (else the censoring distribution, and every IPCW metric, is undefined there).
    """
    t, e = np.asarray(time, dtype=float), np.asarray(event, dtype=float)
    n = int(t.size)
    if n == 0:
        return {"horizon": float(horizon), "n": 0, "known_fraction": _NAN, "mature": False,
                "reason": "no patient with an outcome"}
    event_before = (e == 1) & (t <= horizon)
    followed = t >= horizon
    known = float(np.mean(event_before | followed))
    censored_before = int(np.sum(~(event_before | followed)))
    mature = bool(known >= min_known and t.max() > horizon)
    if mature:
        reason = ""
    elif t.max() <= horizon:
        reason = (f"follow-up ends at {t.max():g}, at or before the horizon {horizon:g}: no patient was followed "
                  f"that long yet")
    else:
        reason = (f"only {100 * known:.0f}% of the {n} patients have a known status at {horizon:g} (event by then or "
                  f"followed that long; {censored_before} censored earlier); at least {100 * min_known:.0f}% needed")
    return {"horizon": float(horizon), "n": n, "events_before": int(event_before.sum()),
            "followed": int(followed.sum()), "censored_before": censored_before, "known_fraction": known,
            "max_follow_up": float(t.max()), "mature": mature, "reason": reason}


def binary_maturity(known: np.ndarray, *, min_known: float = 0.9) -> dict[str, Any]:
    """Is a binary outcome known for enough of a window's rows? ``known`` flags rows whose outcome has arrived."""
    k = np.asarray(known, dtype=bool)
    n = int(k.size)
    fraction = float(k.mean()) if n else _NAN
    mature = bool(n and fraction >= min_known and k.sum() >= 2)
    reason = "" if mature else (f"the outcome has arrived for {int(k.sum())} of {n} rows "
                                f"({100 * fraction:.0f}%); at least {100 * min_known:.0f}% needed" if n else "no rows")
    return {"n": n, "known": int(k.sum()), "known_fraction": fraction, "mature": mature, "reason": reason}


def cox_calibration_slope(time: np.ndarray, event: np.ndarray, lp: np.ndarray, *, level: float = 0.95
                          ) -> dict[str, float]:
    """Calibration slope of a survival model on new rows: the coefficient of its linear predictor (log-hazard
    ratio) in a Cox model fitted on those rows (lifelines ``CoxPHFitter``), with its Wald CI.

    1 is ideal; below 1 the predictions are too extreme (overfitting or a population where the predictors matter
    less), above 1 too timid. NaN when there is no event or the predictor is constant.
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    t, e, x = (np.asarray(a, dtype=float).ravel() for a in (time, event, lp))
    nan = {"value": _NAN, "ci_low": _NAN, "ci_high": _NAN}
    if t.size < 3 or e.sum() == 0 or np.ptp(x) == 0:
        return nan
    frame = pd.DataFrame({"lp": x - x.mean(), "time": t, "event": e})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = CoxPHFitter(alpha=1.0 - level).fit(frame, "time", "event")
    except (ConvergenceError, np.linalg.LinAlgError, ValueError):
        return nan
    ci = fit.confidence_intervals_.loc["lp"].to_numpy(dtype=float)
    return {"value": float(fit.params_["lp"]), "ci_low": float(ci[0]), "ci_high": float(ci[1])}


def observed_vs_predicted(time: np.ndarray, event: np.ndarray, predicted_risk: np.ndarray, horizon: float, *,
                          level: float = 0.95) -> dict[str, float]:
    """Calibration-in-the-large at a horizon: the Kaplan-Meier risk ``1 - S(h)`` observed on the rows (with its
    Greenwood CI, lifelines) against the mean predicted risk ``mean(1 - S(h | x))``; ``ratio`` is observed /
    predicted (1 ideal). Kaplan-Meier handles the censoring, so late, shortly followed patients are not counted as
    event-free."""
    from lifelines import KaplanMeierFitter

    t, e = np.asarray(time, dtype=float), np.asarray(event, dtype=float)
    p = np.asarray(predicted_risk, dtype=float)
    kmf = KaplanMeierFitter(alpha=1.0 - level).fit(t, e)
    s = float(kmf.survival_function_at_times(horizon).iloc[0])
    ci = kmf.confidence_interval_survival_function_
    upto = ci[ci.index <= horizon]
    low_s, high_s = (upto.iloc[-1].to_numpy(dtype=float) if len(upto) else (1.0, 1.0))
    observed = 1.0 - s
    predicted = float(np.mean(p))
    return {"horizon": float(horizon), "observed": observed, "observed_ci_low": float(1.0 - high_s),
            "observed_ci_high": float(1.0 - low_s), "predicted": predicted,
            "ratio": observed / predicted if predicted > 0 else _NAN}


def _ci(values: Mapping[str, Mapping[str, float]], key: str) -> dict[str, float]:
    return dict(values.get(key) or {"value": _NAN, "ci_low": _NAN, "ci_high": _NAN})


def survival_window_metrics(time: np.ndarray, event: np.ndarray, risk: np.ndarray, *, horizons: Sequence[float],
                            surv_at_horizons: np.ndarray | None = None, n_boot: int = 200, seed: int = 0,
                            level: float = 0.95, min_known: float = 0.8) -> dict[str, Any]:
    """A survival model's performance on one window, with label maturity.

    ``risk`` is the log-hazard ratio (higher = worse); ``surv_at_horizons`` (n, len(horizons)) holds S(h | x).
    Harrell's C and Uno's C (IPCW, truncated at the largest mature horizon, else the largest horizon the window has
    follow-up for; ``c_uno_tau`` says which) with bootstrap CIs, and the Cox calibration slope, are reported whenever
    the window has events: they use each patient's follow-up as far as it goes. Per horizon, the time-dependent AUC
    (IPCW) and observed vs predicted risk are reported only when the window is mature at that horizon
    (:func:`survival_maturity`); otherwise the entry says why it was skipped.
    """
    t, e, r = (np.asarray(a, dtype=float).ravel() for a in (time, event, risk))
    hs = sorted(float(h) for h in horizons)
    maturity = {f"{h:g}": survival_maturity(t, e, h, min_known=min_known) for h in hs}
    out: dict[str, Any] = {"n": int(t.size), "events": int(e.sum()), "maturity": maturity,
                           "c_harrell": _ci({}, ""), "c_uno": _ci({}, ""),
                           "calibration_slope": _ci({}, ""), "horizons": {}}
    if t.size < 2 or e.sum() == 0:
        out["note"] = "no event in this window: discrimination and calibration are undefined"
        return out
    below = [h for h in hs if h < t.max()]
    mature_hs = [h for h in hs if maturity[f"{h:g}"]["mature"]]
    # Uno's C is truncated at the largest mature horizon: beyond it too few patients are still followed for the
    # censoring weights to be stable; with no mature horizon, at the largest horizon the follow-up reaches
    tau = max(mature_hs) if mature_hs else (max(below) if below else None)

    def fn(i: np.ndarray) -> dict[str, float]:
        with undefined_as_nan():
            m = survival_metrics(t[i], e[i], r[i], horizons=[tau] if tau is not None else [float(t.max()) * 2])
            res = {"c_harrell": m["c_harrell"], "c_uno": m["c_uno"] if tau is not None else _NAN}
            if mature_hs:
                hm = survival_metrics(t[i], e[i], r[i], horizons=mature_hs)
                res |= {f"auc_{h:g}": hm[f"auc_{h:g}"] for h in mature_hs}
            return res

    if e.sum() < MIN_EVENTS:
        out["note"] = (f"only {int(e.sum())} event(s) in this window: discrimination and calibration estimates are "
                       "unstable, and their bootstrap CIs too optimistic")
    boot = bootstrap_ci(fn, t.size, n_boot=n_boot, seed=seed, level=level)
    out["c_harrell"], out["c_uno"] = _ci(boot, "c_harrell"), _ci(boot, "c_uno")
    out["c_uno_tau"] = tau
    out["calibration_slope"] = cox_calibration_slope(t, e, r, level=level)
    for j, h in enumerate(hs):
        key = f"{h:g}"
        entry: dict[str, Any] = {"mature": maturity[key]["mature"]}
        if not maturity[key]["mature"]:
            entry["skipped"] = maturity[key]["reason"]
        else:
            entry["auc"] = _ci(boot, f"auc_{key}")
            if surv_at_horizons is not None:
                s_h = np.asarray(surv_at_horizons, dtype=float)[:, j]
                entry |= observed_vs_predicted(t, e, 1.0 - s_h, h, level=level)
        out["horizons"][key] = entry
    return out


def binary_window_metrics(y: np.ndarray, p: np.ndarray, *, known: np.ndarray | None = None, n_boot: int = 200,
                          seed: int = 0, level: float = 0.95, min_known: float = 0.9) -> dict[str, Any]:
    """A binary model's performance on one window: scored only when the outcome has arrived for at least
    ``min_known`` of the rows (``known`` flags them; rows without it are left out). AUROC, calibration slope and
    intercept, Brier score, observed and mean predicted risk, with bootstrap CIs."""
    y_arr, p_arr = np.asarray(y, dtype=float).ravel(), np.asarray(p, dtype=float).ravel()
    k = np.isfinite(y_arr) if known is None else np.asarray(known, dtype=bool)
    maturity = binary_maturity(k, min_known=min_known)
    out: dict[str, Any] = {"n": int(k.size), "known": int(k.sum()), "maturity": maturity}
    if not maturity["mature"]:
        out["skipped"] = maturity["reason"]
        return out
    yk, pk = y_arr[k], p_arr[k]
    out["events"] = int(yk.sum())
    out["observed"], out["predicted"] = float(yk.mean()), float(pk.mean())

    def fn(i: np.ndarray) -> dict[str, float]:
        with undefined_as_nan():
            m = binary_metrics(yk[i], pk[i])
        return {key: m[key] for key in ("auroc", "calibration_slope", "calibration_intercept", "brier")}

    out |= bootstrap_ci(fn, int(yk.size), n_boot=n_boot, seed=seed, level=level)
    return out
