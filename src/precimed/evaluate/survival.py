"""Survival metrics written with numpy: Harrell's and Uno's C, time-dependent AUC, Brier score, IBS.

All inverse-probability-of-censoring weights use G, the Kaplan-Meier estimate of the censoring
distribution fitted on the same (time, event) that is being evaluated. Conventions (chosen so the
numbers agree with lifelines' ``concordance_index`` and scikit-survival's metrics):

* A pair (i, j) is comparable when i has an event and j leaves later (T_j > T_i), or j is censored
  at the same time (censoring at T_i means j was still at risk). Two events at the same time are
  not comparable.
* Predicted risks closer than ``1e-8`` count as tied and score one half.
* G(t) is the censoring survival just after t; at a tied time, events are taken to happen before
  censorings, so the censoring risk set at t excludes the events at t.
* Time-dependent AUC at t: cases are events with T_i <= t weighted 1/G(T_i); controls are T_j > t.
* Brier score at t (Graf et al.): cases with T_i <= t weight 1/G(T_i), subjects with T_i > t weight
  1/G(t).

Everything is vectorised: the concordance counts use a dyadic decomposition (O(n log² n)), so the
metrics are cheap enough for a 1000-replicate bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from precimed.errors import DataError

from .metrics import _as_1d_float, _check_finite, _check_same_length, _undefined

__all__ = ["kaplan_meier", "survival_metrics"]

_NAN = float("nan")
_TIED_TOL = 1e-8


def _event_indicator(event: object) -> np.ndarray:
    arr = _as_1d_float(event, "event")
    _check_finite(arr, "event", "event indicators")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"event must be 1 (event observed) or 0 (censored); found {arr[rows[0]]!r} in row {rows[0]}.",
            column="event",
            rows=rows.tolist(),
        )
    return arr.astype(bool)


def _times(time: object) -> np.ndarray:
    arr = _as_1d_float(time, "time")
    _check_finite(arr, "time", "follow-up times")
    if (arr < 0).any():
        rows = np.flatnonzero(arr < 0)
        raise DataError(
            f"time must be non-negative; found {arr[rows[0]]!r} in row {rows[0]}.",
            column="time",
            rows=rows.tolist(),
        )
    return arr


class _TimeTable:
    """Counts at each distinct observed time, and the censoring survival G just after it."""

    def __init__(self, time: np.ndarray, event: np.ndarray) -> None:
        self.unique, self.inverse, counts = np.unique(time, return_inverse=True, return_counts=True)
        self.n_events = np.bincount(self.inverse, weights=event, minlength=len(self.unique))
        self.n_before = np.cumsum(counts) - counts  # subjects who left strictly earlier
        at_risk = len(time) - self.n_before
        n_censored = counts - self.n_events
        # censoring KM: events at a tied time leave first, so they are not at risk of censoring
        denom = at_risk - self.n_events
        ratio = np.divide(n_censored, denom, out=np.zeros(len(counts)), where=n_censored > 0)
        self.g = np.cumprod(1.0 - ratio)

    def g_at(self, t: np.ndarray | float) -> np.ndarray:
        """G(t): the censoring survival at the last distinct time <= t (1 before the first)."""
        idx = np.searchsorted(self.unique, t, side="right") - 1
        return np.where(idx >= 0, self.g[np.maximum(idx, 0)], 1.0)


def kaplan_meier(
    time: np.ndarray, event: np.ndarray, *, censoring: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate: the distinct times and the survival probability just after each.

    With ``censoring=True`` it estimates G, the survival function of the censoring times, with
    censorings as the "events" and events at a tied time leaving the risk set first.
    """
    time = _times(time)
    event = _event_indicator(event)
    _check_same_length(time=time, event=event)
    table = _TimeTable(time, event)
    if censoring:
        return table.unique, table.g
    at_risk = len(time) - table.n_before
    return table.unique, np.cumprod(1.0 - table.n_events / at_risk)


def _tie_groups(risk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group ids of risks (ascending; neighbours within 1e-8 share a group) and each group's span.

    Returns (group of each subject, number of subjects in lower groups, number in lower-or-same).
    """
    order = np.argsort(risk, kind="stable")
    new_group = np.r_[True, np.diff(risk[order]) > _TIED_TOL]
    group = np.empty(len(risk), dtype=np.int64)
    group[order] = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], len(risk)]
    return group, starts, ends


def _prefix_counts(values: np.ndarray, stop: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query q: #{p < stop[q]: values[p] < v[q]} and #{p < stop[q]: values[p] <= v[q]}.

    ``values`` are non-negative integers. The prefix [0, stop) is split into aligned blocks of
    sizes 2^k (one per set bit of stop); inside each block the values are sorted once per level, and
    an offset key (block * M + value) lets one searchsorted answer all queries of that level.
    """
    n = len(values)
    m = np.int64(values.max()) + 2
    position = np.arange(n, dtype=np.int64)
    less = np.zeros(len(stop), dtype=np.int64)
    less_equal = np.zeros(len(stop), dtype=np.int64)
    sorted_values = values.astype(np.int64)  # sorted within blocks of the current level
    k = 0
    while (1 << k) <= n:
        block_of = position >> k
        # the previous level left sorted runs of 2^(k-1); a stable sort (timsort) merges them cheaply
        keys = np.sort(block_of * m + sorted_values, kind="stable")
        sorted_values = keys - block_of * m
        use = ((stop >> k) & 1).astype(bool)
        if use.any():
            block = (stop[use] >> k) - 1
            query = block * m + v[use]
            start = block << k
            less[use] += np.searchsorted(keys, query, side="left") - start
            less_equal[use] += np.searchsorted(keys, query, side="right") - start
        k += 1
    return less, less_equal


def _concordance(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, table: _TimeTable, tau: float | None
) -> tuple[float, float]:
    """Harrell's C and Uno's C (IPCW, truncated at tau); NaN where no pair is comparable."""
    n = len(time)
    group, starts, ends = _tie_groups(risk)
    # order by time, events before censorings at a tied time: the subjects comparable with an event
    # at time t are then a suffix of this order (censored at t, then everyone leaving later)
    order = np.lexsort((~event, time))
    values = group[order]
    ev = np.flatnonzero(event)
    tidx = table.inverse[ev]
    first = (table.n_before[tidx] + table.n_events[tidx]).astype(np.int64)
    g_ev = group[ev]
    pre_less, pre_leq = _prefix_counts(values, first, g_ev)
    concordant = (starts[g_ev] - pre_less).astype(float)  # later subjects with lower risk
    tied = (ends[g_ev] - pre_leq).astype(float) - concordant
    comparable = (n - first).astype(float)

    harrell_den = comparable.sum()
    harrell = float((concordant + 0.5 * tied).sum() / harrell_den) if harrell_den > 0 else _NAN
    if tau is None:
        return harrell, _NAN
    keep = time[ev] < tau
    g_t = table.g[tidx[keep]]
    if (g_t <= 0).any():
        return harrell, _NAN
    w = 1.0 / g_t**2
    uno_den = float(w @ comparable[keep])
    uno = float(w @ (concordant[keep] + 0.5 * tied[keep]) / uno_den) if uno_den > 0 else _NAN
    return harrell, uno


def _cumulative_dynamic_auc(
    time: np.ndarray, event: np.ndarray, group: np.ndarray, g_obs: np.ndarray, h: float
) -> float:
    case = event & (time <= h)
    control = time > h
    n_control = int(np.count_nonzero(control))
    if n_control == 0 or not case.any():
        return _NAN
    w = 1.0 / g_obs[case]
    control_groups = np.sort(group[control])
    g_case = group[case]
    less = np.searchsorted(control_groups, g_case, side="left")
    less_equal = np.searchsorted(control_groups, g_case, side="right")
    return float(w @ (less + 0.5 * (less_equal - less)) / (w.sum() * n_control))


def _brier_scores(
    time: np.ndarray, event: np.ndarray, g_obs: np.ndarray, table: _TimeTable, s: np.ndarray, at: np.ndarray
) -> np.ndarray:
    """IPCW Brier score at each time in ``at``; column j of ``s`` holds S(at[j] | x_i)."""
    case = event[:, None] & (time[:, None] <= at[None, :])
    control = time[:, None] > at[None, :]
    g_at = table.g_at(at)
    with np.errstate(divide="ignore", invalid="ignore"):
        case_w = np.where(event, 1.0 / g_obs, 0.0)
        terms = np.where(case, s**2 * case_w[:, None], 0.0) + np.where(control, (1.0 - s) ** 2 / g_at, 0.0)
    return terms.mean(axis=0)


def survival_metrics(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    *,
    horizons: Sequence[float],
    surv: np.ndarray | None = None,
    surv_times: np.ndarray | None = None,
) -> dict[str, float]:
    """Discrimination and (optionally) calibration metrics for right-censored survival data.

    ``risk`` is higher for worse prognosis. Returns ``c_harrell``; ``c_uno`` truncated at
    tau = max(horizons); ``auc_{h:g}``, the cumulative/dynamic IPCW AUC at each horizon, and
    ``auc_mean``, their plain mean. With ``surv`` (n, len(surv_times)) holding S(t | x) on the grid
    ``surv_times`` (increasing), it adds ``brier_{h:g}`` at each horizon (S taken at the last grid
    time <= h) and ``ibs``, the trapezoid integral of the Brier score over the grid points within
    [min(time), max(horizons)] divided by that range. Horizons are sorted and de-duplicated; every
    key exists in every call (NaN when undefined), so bootstrap replicates line up.

    Raises DataError for no events, a horizon at or beyond the last observed time, or a horizon
    with no event at or before it. Inside :func:`~precimed.evaluate.metrics.undefined_as_nan` those
    metrics are NaN instead.
    """
    time = _times(time)
    event = _event_indicator(event)
    risk = _as_1d_float(risk, "risk")
    n = _check_same_length(time=time, event=event, risk=risk)
    _check_finite(risk, "risk", "predictions")
    hs = np.unique(np.asarray(horizons, dtype=float).ravel())
    if hs.size == 0 or not np.isfinite(hs).all():
        raise DataError(f"horizons must be a non-empty list of finite times, got {horizons!r}.")
    if len({f"{h:g}" for h in hs}) < hs.size:
        raise DataError(f"horizons {hs.tolist()} are too close to name apart with 6 significant digits.")
    has_surv = surv is not None or surv_times is not None
    if has_surv:
        surv_arr, grid = _check_surv(surv, surv_times, n)

    out: dict[str, float] = {"c_harrell": _NAN, "c_uno": _NAN}
    for h in hs:
        out[f"auc_{h:g}"] = _NAN
    out["auc_mean"] = _NAN
    if has_surv:
        for h in hs:
            out[f"brier_{h:g}"] = _NAN
        out["ibs"] = _NAN

    if n < 2:
        _undefined(f"survival metrics need at least two rows, got {n}.")
        return out
    if not event.any():
        _undefined(
            f"none of the {n} rows has an event (event == 1); concordance and time-dependent AUC need "
            "observed events. Check the event column coding.",
            column="event",
        )
        return out
    t_max = float(time.max())
    t_min = float(time.min())
    beyond = hs[hs >= t_max]
    if beyond.size:
        _undefined(
            f"horizon(s) {', '.join(f'{h:g}' for h in beyond)} are at or beyond the last observed time "
            f"{t_max:g}; the censoring distribution is unknown there. Choose horizons below {t_max:g}.",
            column="time",
        )
    tau = float(hs.max())

    table = _TimeTable(time, event)
    g_obs = table.g[table.inverse]
    out["c_harrell"], out["c_uno"] = _concordance(time, event, risk, table, tau)
    if np.isnan(out["c_harrell"]):
        _undefined(
            "no comparable pairs: no event is followed by a later exit (or a censoring at the same time), "
            "so concordance is undefined."
        )

    group = _tie_groups(risk)[0]
    aucs = []
    for h in hs:
        key = f"auc_{h:g}"
        if h >= t_max:
            continue
        if not (event & (time <= h)).any():
            _undefined(
                f"no event at or before horizon {h:g}, so the AUC there is undefined; the first "
                f"event is at {time[event].min():g}. Choose a later horizon.",
                column="time",
            )
            continue
        out[key] = _cumulative_dynamic_auc(time, event, group, g_obs, h)
        aucs.append(out[key])
    if len(aucs) == hs.size:
        out["auc_mean"] = float(np.mean(aucs))

    if has_surv:
        ok = hs < t_max
        before_grid = hs[ok & (hs < grid[0])]
        if before_grid.size:
            raise DataError(
                f"horizon(s) {before_grid.tolist()} come before the first surv_times point {grid[0]:g}; "
                "predict survival on a grid that starts at or before the first horizon.",
                column="surv_times",
            )
        if ok.any():
            cols = np.searchsorted(grid, hs[ok], side="right") - 1
            scores = _brier_scores(time, event, g_obs, table, surv_arr[:, cols], hs[ok])
            for h, b in zip(hs[ok], scores, strict=True):
                out[f"brier_{h:g}"] = float(b)
        within = (grid >= t_min) & (grid <= tau)
        if tau >= t_max:
            pass  # the horizon beyond follow-up was reported above; the IBS stays NaN
        elif np.count_nonzero(within) < 2:
            _undefined(
                f"the integrated Brier score needs at least two surv_times points within "
                f"[{t_min:g}, {tau:g}] (first observed time, last horizon); found {int(within.sum())}.",
                column="surv_times",
            )
        else:
            at = grid[within]
            bs = _brier_scores(time, event, g_obs, table, surv_arr[:, within], at)
            area = float(np.sum(np.diff(at) * (bs[1:] + bs[:-1])) / 2.0)
            out["ibs"] = area / float(at[-1] - at[0])
    return out


def _check_surv(
    surv: np.ndarray | None, surv_times: np.ndarray | None, n: int
) -> tuple[np.ndarray, np.ndarray]:
    if surv is None or surv_times is None:
        raise DataError("pass surv and surv_times together: surv[i, j] is S(surv_times[j] | row i).")
    grid = _as_1d_float(surv_times, "surv_times")
    _check_finite(grid, "surv_times", "times")
    if (np.diff(grid) <= 0).any():
        raise DataError("surv_times must be strictly increasing.", column="surv_times")
    arr = np.asarray(surv, dtype=float)
    if arr.shape != (n, grid.size):
        raise DataError(
            f"surv must have shape (rows, len(surv_times)) = ({n}, {grid.size}), got {arr.shape}.",
            column="surv",
        )
    _check_finite(arr, "surv", "survival probabilities")
    if (arr < 0).any() or (arr > 1).any():
        raise DataError("surv must hold survival probabilities in [0, 1].", column="surv")
    return arr, grid
