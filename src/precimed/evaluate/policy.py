"""Treatment effects and treatment policies, evaluated with numpy: no models, no torch.

Arrays in, plain numbers out. Arms are integer codes ``0..K-1`` (``treatment``); ``propensity`` is an
(n, K) array of P(arm | covariates), either known (a randomised trial) or from a fitted model; ``mu`` is an
(n, K) array of each patient's predicted outcome under every arm.

Outcomes at a horizon
---------------------
A survival outcome (time, event) becomes a horizon outcome Y with inverse probability of censoring weights
(IPCW), :func:`horizon_outcome`:

* ``measure="rmst"``: Y = min(T, τ); its mean is the restricted mean survival time up to τ;
* ``measure="survival"``: Y = 1 unless the event happened at or before τ; its mean is the event-free rate.

Y is known for patients with an event at or before τ or with follow-up reaching τ; each such patient is
weighted 1 / G(min(T, τ)-), G the Kaplan-Meier survival of the censoring times within the patient's arm
(censoring may depend on the arm, not on covariates); patients censored before τ get weight 0. A binary
or continuous outcome is Y itself with weight 1.

Estimators
----------
* AIPW (doubly robust) scores φ_a = μ_a(x) + 1{A = a} w (Y - μ_a(x)) / e_a(x): their mean is the mean
  outcome had everyone received arm a, consistent if either the outcome models or the propensities are
  right; contrasts have influence-function (normal) confidence intervals.
* IPW (Hájek): Σ 1{A = a} w Y / e_a ÷ Σ 1{A = a} w / e_a, with bootstrap intervals; with constant
  propensities within an arm this is the arm's Kaplan-Meier RMST or event-free rate.
* Policy value: the mean outcome had every patient received the arm a policy names, by IPW (Hájek) and
  AIPW; all policies are scored on the same bootstrap resamples, so differences are paired. The
  recommendations are held fixed in the bootstrap: they must come from models that did not see these
  patients (cross-fitting), and the interval does not include the models' own fitting noise.
* Log-rank test for K groups, written out (the chi-square tail in closed form for integer degrees of freedom).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np

from precimed.errors import DataError

from .bootstrap import bootstrap_ci
from .survival import _event_indicator, _times, kaplan_meier

__all__ = [
    "aipw_scores",
    "average_effects",
    "chi2_sf",
    "horizon_outcome",
    "ipw_effects",
    "km_summary",
    "logrank_test",
    "matched_vs_unmatched",
    "overlap_diagnostics",
    "policy_values",
]

MEASURES = ("rmst", "survival")
MIN_CENSORING_SURVIVAL = 0.05


# ----- outcomes at a horizon ------------------------------------------------------------------------
def _left_limit(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """A step function (value just after each time, 1 before the first) evaluated just before `at`."""
    idx = np.searchsorted(times, at, side="left") - 1
    return np.where(idx >= 0, values[np.maximum(idx, 0)], 1.0)


def horizon_outcome(time: np.ndarray, event: np.ndarray, horizon: float, *, measure: str = "rmst",
                    groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The horizon outcome Y and its IPCW weight per patient (see the module notes).

    ``groups`` (e.g. the arm codes): G is estimated within each group. Raises when fewer than 5% of a
    group's patients would remain uncensored at the horizon: the weights would be unstable.
    """
    if measure not in MEASURES:
        raise DataError(f"measure must be one of {list(MEASURES)}, got {measure!r}")
    time, event = _times(time), _event_indicator(event)
    if len(time) != len(event):
        raise DataError(f"time and event must have equal length; got {len(time)} and {len(event)}")
    if not horizon > 0:
        raise DataError(f"horizon must be positive, got {horizon!r}")
    s = np.minimum(time, horizon)
    had_event = event & (time <= horizon)
    observed = had_event | (time >= horizon)
    y = s if measure == "rmst" else (~had_event).astype(float)
    weight = np.zeros(len(time))
    labels = np.zeros(len(time), dtype=int) if groups is None else np.asarray(groups)
    if labels.shape != time.shape:
        raise DataError(f"groups must hold one label per patient; got shape {labels.shape} for {len(time)} patients")
    for g in np.unique(labels):
        rows = labels == g
        u, surv_c = kaplan_meier(time[rows], event[rows], censoring=True)
        g_tau = float(_left_limit(u, surv_c, np.array([horizon]))[0])
        if g_tau < MIN_CENSORING_SURVIVAL:
            raise DataError(f"only {g_tau:.1%} of the patients in group {g!r} remain uncensored at the horizon "
                            f"{horizon:g}; inverse-censoring weights would be unstable. Choose a shorter horizon.")
        g_at = _left_limit(u, surv_c, s[rows])
        weight[rows] = np.where(observed[rows], 1.0 / g_at, 0.0)
    return y, weight


def km_summary(time: np.ndarray, event: np.ndarray, horizon: float) -> dict[str, float]:
    """Patients, events, Kaplan-Meier event-free rate at the horizon and restricted mean survival time."""
    time, ev = _times(time), _event_indicator(event)
    if len(time) == 0:
        return {"n": 0, "events": 0, "event_free": float("nan"), "rmst": float("nan")}
    u, s = kaplan_meier(time, ev)
    before = u < horizon
    grid = np.r_[0.0, u[before]]
    steps = np.r_[1.0, s[before]]
    rmst = float(steps @ np.diff(np.r_[grid, horizon]))
    idx = np.searchsorted(u, horizon, side="right") - 1
    event_free = float(s[idx]) if idx >= 0 else 1.0
    return {"n": int(len(time)), "events": int(ev.sum()), "event_free": event_free, "rmst": rmst}


# ----- average effects ------------------------------------------------------------------------------
def _check_arrays(y: np.ndarray, weight: np.ndarray, treatment: np.ndarray, propensity: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    weight = np.asarray(weight, dtype=float)
    treatment = np.asarray(treatment)
    propensity = np.asarray(propensity, dtype=float)
    n = len(y)
    if weight.shape != (n,) or treatment.shape != (n,) or propensity.ndim != 2 or len(propensity) != n:
        raise DataError(f"y, weight and treatment must be 1-D of equal length and propensity (n, K); got "
                        f"{y.shape}, {weight.shape}, {treatment.shape}, {propensity.shape}")
    if not np.issubdtype(treatment.dtype, np.integer) or treatment.min() < 0 \
            or treatment.max() >= propensity.shape[1]:
        raise DataError(f"treatment must hold integer arm codes 0..{propensity.shape[1] - 1}", column="treatment")
    if not np.isfinite(propensity).all() or (propensity <= 0).any() or (propensity > 1).any():
        raise DataError("propensities must lie in (0, 1]; clip them away from 0 before weighting")
    if not (np.isfinite(y).all() and np.isfinite(weight).all()):
        raise DataError("y and weight must be finite")
    return y, weight, treatment, propensity


def aipw_scores(y: np.ndarray, weight: np.ndarray, treatment: np.ndarray, propensity: np.ndarray,
                mu: np.ndarray) -> np.ndarray:
    """AIPW scores φ (n, K): φ[i, a] = μ_a(x_i) + 1{A_i = a} w_i (Y_i - μ_a(x_i)) / e_a(x_i)."""
    y, weight, treatment, propensity = _check_arrays(y, weight, treatment, propensity)
    mu = np.asarray(mu, dtype=float)
    if mu.shape != propensity.shape:
        raise DataError(f"mu must be (n, K) like propensity {propensity.shape}; got {mu.shape}")
    phi = mu.copy()
    rows = np.arange(len(y))
    a = treatment
    phi[rows, a] += weight * (y - mu[rows, a]) / propensity[rows, a]
    return phi


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _normal_summary(values: np.ndarray, level: float) -> dict[str, float]:
    n = len(values)
    est = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    z = _z(level)
    p = math.erfc(abs(est / se) / math.sqrt(2.0)) if se > 0 else float("nan")
    return {"value": est, "ci_low": est - z * se, "ci_high": est + z * se, "se": se, "p_value": p}


def average_effects(phi: np.ndarray, control: int, names: Sequence[str], *, level: float = 0.95
                    ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Contrasts ``"<arm> vs <control>"`` and per-arm means from AIPW scores, with normal (influence-function) CIs."""
    phi = np.asarray(phi, dtype=float)
    if phi.ndim != 2 or phi.shape[1] != len(names):
        raise DataError(f"phi must be (n, {len(names)}); got {phi.shape}")
    contrasts = {f"{names[k]} vs {names[control]}": _normal_summary(phi[:, k] - phi[:, control], level)
                 for k in range(len(names)) if k != control}
    means = {names[k]: _normal_summary(phi[:, k], level) for k in range(len(names))}
    return contrasts, means


def _hajek(y: np.ndarray, weight: np.ndarray, follows: np.ndarray, e: np.ndarray) -> float:
    """Σ f w y / e ÷ Σ f w / e: normalising by the censoring weights too makes the unadjusted arm mean the
    Kaplan-Meier estimate, and keeps the random total of the weights out of the variance."""
    den = (follows * weight / e).sum()
    return float((follows * weight * y / e).sum() / den) if den > 0 else float("nan")


def ipw_effects(y: np.ndarray, weight: np.ndarray, treatment: np.ndarray, propensity: np.ndarray,
                control: int, names: Sequence[str], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """IPW (Hájek) contrasts ``"<arm> vs <control>"`` and per-arm means, with percentile bootstrap CIs.

    With ``propensity`` set to each arm's share of patients this is the unadjusted comparison.
    """
    y, weight, treatment, propensity = _check_arrays(y, weight, treatment, propensity)
    k_arms = propensity.shape[1]
    rows = np.arange(len(y))
    e = propensity[rows, treatment]

    def fn(i: np.ndarray) -> dict[str, float]:
        means = [_hajek(y[i], weight[i], (treatment[i] == k).astype(float), e[i]) for k in range(k_arms)]
        out = {f"mean:{names[k]}": means[k] for k in range(k_arms)}
        out |= {f"{names[k]} vs {names[control]}": means[k] - means[control] for k in range(k_arms) if k != control}
        return out

    res = bootstrap_ci(fn, len(y), n_boot=n_boot, seed=seed, level=level, strata=treatment)
    means = {key.removeprefix("mean:"): v for key, v in res.items() if key.startswith("mean:")}
    contrasts = {key: v for key, v in res.items() if not key.startswith("mean:")}
    return contrasts, means


# ----- policies -------------------------------------------------------------------------------------
def policy_values(y: np.ndarray, weight: np.ndarray, treatment: np.ndarray, propensity: np.ndarray,
                  policies: Mapping[str, np.ndarray], *, phi: np.ndarray | None = None,
                  comparisons: Sequence[tuple[str, str]] = (), n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> dict:
    """Value of each policy (an array of arm codes, one per patient) and paired differences between policies.

    Returns ``{"values": {policy: {"value", "ci_low", "ci_high", "aipw": {...}, "followed": share}},
    "differences": {"<a> - <b>": {...}}}``; ``value`` is the IPW (Hájek) estimate, ``aipw`` (when ``phi``
    is given) the doubly robust one; ``followed`` is the share of patients whose actual arm is the
    policy's. Intervals: percentile bootstrap over patients, the same resamples for every policy.
    """
    y, weight, treatment, propensity = _check_arrays(y, weight, treatment, propensity)
    n = len(y)
    rows = np.arange(n)
    e = propensity[rows, treatment]
    codes = {}
    for name, pi in policies.items():
        pi = np.asarray(pi)
        if pi.shape != (n,) or not np.issubdtype(pi.dtype, np.integer) or pi.min() < 0 \
                or pi.max() >= propensity.shape[1]:
            raise DataError(f"policy {name!r} must give one arm code 0..{propensity.shape[1] - 1} per patient")
        codes[name] = pi
    for a, b in comparisons:
        if a not in codes or b not in codes:
            raise DataError(f"comparison {a!r} - {b!r} names a policy not in {sorted(codes)}")
    follows = {name: (treatment == pi).astype(float) for name, pi in codes.items()}
    gains = {name: phi[rows, pi] for name, pi in codes.items()} if phi is not None else {}

    def fn(i: np.ndarray) -> dict[str, float]:
        out = {f"ipw:{name}": _hajek(y[i], weight[i], f[i], e[i]) for name, f in follows.items()}
        out |= {f"aipw:{name}": float(g[i].mean()) for name, g in gains.items()}
        for a, b in comparisons:
            out[f"ipw:{a} - {b}"] = out[f"ipw:{a}"] - out[f"ipw:{b}"]
            if gains:
                out[f"aipw:{a} - {b}"] = out[f"aipw:{a}"] - out[f"aipw:{b}"]
        return out

    res = bootstrap_ci(fn, n, n_boot=n_boot, seed=seed, level=level)
    values = {}
    for name in codes:
        values[name] = dict(res[f"ipw:{name}"])
        if gains:
            values[name]["aipw"] = res[f"aipw:{name}"]
        values[name]["followed"] = float(follows[name].mean())
    differences = {}
    for a, b in comparisons:
        key = f"{a} - {b}"
        differences[key] = dict(res[f"ipw:{key}"])
        if gains:
            differences[key]["aipw"] = res[f"aipw:{key}"]
    return {"values": values, "differences": differences}


# ----- log-rank ----------------------------------------------------------------------------------------
def chi2_sf(x: float, df: int) -> float:
    """P(χ²_df > x) for a positive integer df, in closed form (the regularised upper incomplete gamma)."""
    if int(df) != df or df < 1:
        raise DataError(f"df must be a positive integer, got {df!r}")
    if x <= 0:
        return 1.0
    half = x / 2.0
    m, odd = divmod(int(df), 2)
    if not odd:
        term, total = 1.0, 1.0
        for i in range(1, m):
            term *= half / i
            total += term
        return float(min(1.0, math.exp(-half) * total))
    total = math.erfc(math.sqrt(half))
    term = math.sqrt(half) / math.gamma(1.5)  # y^(1/2) / Γ(3/2)
    for i in range(1, m + 1):
        total += math.exp(-half) * term
        term *= half / (i + 0.5)  # Γ(i + 3/2) = (i + 1/2) Γ(i + 1/2)
    return float(min(1.0, total))


def logrank_test(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> dict:
    """K-group log-rank test: statistic (χ² with K-1 df), p-value, observed and expected events per group."""
    time, ev = _times(time), _event_indicator(event)
    group = np.asarray(group)
    if not (len(time) == len(ev) == len(group)):
        raise DataError(f"time, event and group must have equal length; got {len(time)}, {len(ev)}, {len(group)}")
    labels, g = np.unique(group, return_inverse=True)
    k = len(labels)
    if k < 2:
        raise DataError(f"the log-rank test needs at least two groups; got {labels.tolist()}")
    event_times = np.unique(time[ev])
    if len(event_times) == 0:
        raise DataError("no events: the log-rank test is undefined")
    at_risk = np.empty((len(event_times), k))
    for j in range(k):
        t_sorted = np.sort(time[g == j])
        at_risk[:, j] = len(t_sorted) - np.searchsorted(t_sorted, event_times, side="left")
    deaths = np.zeros((len(event_times), k))
    np.add.at(deaths, (np.searchsorted(event_times, time[ev]), g[ev]), 1.0)
    n_t, d_t = at_risk.sum(axis=1), deaths.sum(axis=1)
    share = at_risk / n_t[:, None]
    expected = (d_t[:, None] * share).sum(axis=0)
    observed = deaths.sum(axis=0)
    factor = d_t * (n_t - d_t) / np.maximum(n_t - 1.0, 1.0)
    fp = factor[:, None] * share
    cov = np.diag(fp.sum(axis=0)) - fp.T @ share
    diff = observed - expected
    stat = float(diff[:-1] @ np.linalg.solve(cov[:-1, :-1], diff[:-1]))
    names = [str(x) for x in labels.tolist()]
    return {"statistic": stat, "df": k - 1, "p_value": chi2_sf(stat, k - 1),
            "observed": dict(zip(names, observed.tolist(), strict=True)),
            "expected": dict(zip(names, expected.tolist(), strict=True))}


def matched_vs_unmatched(time: np.ndarray, event: np.ndarray, actual: np.ndarray, recommended: np.ndarray,
                         horizon: float, *, names: Sequence[str] | None = None) -> dict:
    """Survival of patients whose actual arm matched the recommendation vs those whose did not.

    Kaplan-Meier event-free rate and RMST at the horizon per group, and a log-rank test; the same split
    within each recommended arm (``by_recommendation``). Without randomisation the two groups also differ
    in who was treated how, so read this beside the IPW policy values, not instead of them.
    """
    time, ev = _times(time), _event_indicator(event)
    actual, recommended = np.asarray(actual), np.asarray(recommended)
    matched = actual == recommended
    out: dict = {"matched": km_summary(time[matched], ev[matched], horizon),
                 "unmatched": km_summary(time[~matched], ev[~matched], horizon)}
    out["difference"] = {k: out["matched"][k] - out["unmatched"][k] for k in ("event_free", "rmst")}
    out["logrank"] = (logrank_test(time, ev, np.where(matched, "matched", "unmatched"))
                      if matched.any() and (~matched).any() and ev.any() else None)
    by = {}
    for code in np.unique(recommended):
        rows = recommended == code
        label = names[int(code)] if names is not None else str(code)
        m, u = rows & matched, rows & ~matched
        test = None
        if m.any() and u.any() and ev[rows].any():
            test = logrank_test(time[rows], ev[rows], np.where(matched[rows], "matched", "unmatched"))
        by[label] = {"matched": km_summary(time[m], ev[m], horizon), "unmatched": km_summary(time[u], ev[u], horizon),
                     "logrank": test}
    out["by_recommendation"] = by
    return out


# ----- overlap ----------------------------------------------------------------------------------------------
_QUANTILES = {"min": 0.0, "p05": 0.05, "p25": 0.25, "median": 0.5, "p75": 0.75, "p95": 0.95, "max": 1.0}


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {k: float("nan") for k in _QUANTILES}
    return {k: float(np.quantile(values, q)) for k, q in _QUANTILES.items()}


def _ess(w: np.ndarray) -> float:
    return float(w.sum() ** 2 / (w**2).sum()) if len(w) else 0.0


def overlap_diagnostics(propensity: np.ndarray, treatment: np.ndarray, names: Sequence[str], *,
                        bounds: tuple[float, float] = (0.05, 0.95), bins: int = 10) -> dict:
    """How well the arms overlap: per arm, the distribution of P(arm | x) among its own patients and the
    others (quantiles and a histogram), the share of patients with P(arm | x) outside ``bounds``, and the
    Kish effective sample size of the inverse-propensity weights of its patients."""
    propensity = np.asarray(propensity, dtype=float)
    treatment = np.asarray(treatment)
    if propensity.ndim != 2 or propensity.shape != (len(treatment), len(names)):
        raise DataError(f"propensity must be (n, {len(names)}) for {len(treatment)} patients; got {propensity.shape}")
    lo, hi = bounds
    edges = np.linspace(0.0, 1.0, bins + 1)
    arms = {}
    outside_any = np.zeros(len(treatment), dtype=bool)
    total_w = np.empty(len(treatment))
    for k, name in enumerate(names):
        p = propensity[:, k]
        mine = treatment == k
        outside = (p < lo) | (p > hi)
        outside_any |= outside
        w = 1.0 / p[mine]
        total_w[mine] = w
        ess = _ess(w)
        arms[str(name)] = {
            "n": int(mine.sum()),
            "propensity_received": _quantiles(p[mine]),
            "propensity_others": _quantiles(p[~mine]),
            "histogram_received": np.histogram(p[mine], edges)[0].tolist(),
            "histogram_others": np.histogram(p[~mine], edges)[0].tolist(),
            "share_outside": float(outside.mean()),
            "effective_sample_size": ess,
            "ess_fraction": ess / max(int(mine.sum()), 1),
            "max_weight": float(w.max()) if len(w) else float("nan"),
        }
    return {"bounds": [float(lo), float(hi)], "histogram_edges": edges.tolist(), "arms": arms,
            "share_outside_any": float(outside_any.mean()),
            "effective_sample_size": _ess(total_w), "n": int(len(treatment))}
