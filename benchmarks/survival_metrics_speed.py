"""Time precimed.evaluate.survival_metrics against lifelines and scikit-survival.

Plain script, not a test: ``python benchmarks/survival_metrics_speed.py``. Needs lifelines and
scikit-survival (GPL; used here only as a reference, never by precimed itself). Each call is timed
once after one warm-up call (best of ``REPEAT`` timings), on a synthetic cohort with tied times,
tied risks and censoring; 3 horizons and a 100-point survival grid. It also prints the largest
absolute difference between precimed's values and the references'.
"""

from __future__ import annotations

import time

import numpy as np
from lifelines.utils import concordance_index
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.util import Surv

from precimed.evaluate import survival_metrics
from precimed.evaluate.survival import _concordance, _TimeTable  # internal: Harrell's C alone

REPEAT = 3


def timed(fn):
    fn()  # warm-up
    best, value = float("inf"), None
    for _ in range(REPEAT):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3, value


def cohort(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t_event = rng.exponential(365 * np.exp(-0.7 * x))
    t_censor = rng.exponential(450, size=n)
    t = np.ceil(np.minimum(t_event, t_censor))
    e = t_event <= t_censor
    risk = np.round(x + rng.normal(scale=0.5, size=n), 2)
    horizons = np.quantile(t[e], [0.25, 0.5, 0.75])
    grid = np.linspace(0.0, np.quantile(t, 0.9), 100)
    surv = np.exp(-np.outer(np.exp(risk), grid) / 365.0)
    return t, e, risk, horizons, grid, surv


def run(n: int) -> None:
    t, e, risk, hs, grid, surv = cohort(n)
    y = Surv.from_arrays(e, t)
    col = np.searchsorted(grid, hs, side="right") - 1
    within = (grid >= t.min()) & (grid <= hs.max())

    ours_ms, m = timed(lambda: survival_metrics(t, e, risk, horizons=hs, surv=surv, surv_times=grid))
    table = _TimeTable(t, e.astype(float))
    harrell_ms, _ = timed(lambda: _concordance(t, e, risk, table, None))

    refs = [
        ("lifelines concordance_index", lambda: concordance_index(t, -risk, e), [m["c_harrell"]]),
        (
            "sksurv concordance_index_censored",
            lambda: concordance_index_censored(e, t, risk)[0],
            [m["c_harrell"]],
        ),
        (
            "sksurv concordance_index_ipcw (tau)",
            lambda: concordance_index_ipcw(y, y, risk, tau=hs.max())[0],
            [m["c_uno"]],
        ),
        (
            "sksurv cumulative_dynamic_auc (3 horizons)",
            lambda: cumulative_dynamic_auc(y, y, risk, hs)[0],
            [m[f"auc_{h:g}"] for h in hs],
        ),
        (
            "sksurv brier_score (3 horizons)",
            lambda: brier_score(y, y, surv[:, col], hs)[1],
            [m[f"brier_{h:g}"] for h in hs],
        ),
        (
            "sksurv integrated_brier_score (grid)",
            lambda: integrated_brier_score(y, y, surv[:, within], grid[within]),
            [m["ibs"]],
        ),
    ]
    print(f"{n:>5}  {'precimed survival_metrics (all metrics)':<48} {ours_ms:>10.2f} {'1.0x':>9}")
    print(f"{n:>5}  {'precimed Harrell C alone (internal)':<48} {harrell_ms:>10.2f}")
    sksurv_total = 0.0
    for name, fn, ours in refs:
        ms, value = timed(fn)
        diff = float(np.max(np.abs(np.atleast_1d(value) - np.asarray(ours))))
        if name.startswith("lifelines"):
            label, ratio = name + " [vs Harrell alone]", ms / harrell_ms
        else:
            label, ratio = name, ms / ours_ms
            sksurv_total += ms
        print(f"{n:>5}  {label:<48} {ms:>10.2f} {ratio:>8.1f}x  {diff:>10.1e}")
    print(f"{n:>5}  {'sksurv, all five calls':<48} {sksurv_total:>10.2f} {sksurv_total / ours_ms:>8.1f}x")


def main() -> None:
    print(f"{'n':>5}  {'computation':<48} {'ms':>10} {'ratio':>9}  {'max |diff|':>10}")
    print("-" * 88)
    for n in (700, 5000):
        run(n)
        print("-" * 88)
    print("ratio = reference time / precimed time (survival_metrics; lifelines row: Harrell C alone).")
    print("max |diff| = largest absolute difference between the reference's values and precimed's.")


if __name__ == "__main__":
    main()
