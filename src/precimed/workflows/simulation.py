"""The deployment simulation's pure parts: a calendar for a cohort that carries only its year of treatment, what is
known of each patient's outcome at a simulated date, and the scoring of the update arms on the same later patients.

The service-driving replay (predict, attach outcomes, drift checks, gated retraining through the registry) lives in
``benchmarks/simulate_deployment.py``: workflows never import the service. Everything here takes frames and arrays.

What is known when (the rule the replay and its retraining data follow):

- a patient treated in calendar year ``y`` gets a treatment date ``y + u`` (``u`` uniform in [0, 1), seeded), since
  the cohort records only the year;
- the final outcome is the task's: follow-up time and event, censored at ``censor_at`` (the task's administrative end
  of follow-up); it becomes known at ``treatment date + final time`` (an event when it happens, a censored patient at
  the end of their follow-up);
- at a simulated date ``now`` a patient treated before it is followed until ``min(final time, now - treatment)``;
  an event after ``now`` is not yet known, so the patient is censored at ``now`` (no hindsight). Patients treated
  after ``now`` do not exist yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from precimed.errors import DataError
from precimed.evaluate.bootstrap import bootstrap_ci
from precimed.evaluate.drift import cox_calibration_slope, observed_vs_predicted
from precimed.evaluate.metrics import undefined_as_nan
from precimed.evaluate.survival import survival_metrics

__all__ = ["DAYS_PER_YEAR", "TIME", "EVENT", "TREATED", "KNOWN_AT", "calendar", "known_by", "pooled_differences",
           "score_arm", "summary_table"]

DAYS_PER_YEAR = 365.25
TIME, EVENT = "sim_time", "sim_event"         # the outcome as known at the file's date (what a model trains on)
TREATED, KNOWN_AT = "sim_treated", "sim_known_at"  # decimal calendar years
MIN_FOLLOW_UP_DAYS = 1.0


def calendar(frame: pd.DataFrame, *, year: str, time: np.ndarray, event: np.ndarray, censor_at: float | None,
             seed: int, time_unit_days: float = 1.0) -> pd.DataFrame:
    """``frame`` with each patient's simulated treatment date, final outcome and the date that outcome becomes known.

    ``time`` / ``event``: the final follow-up (in the task's unit; ``time_unit_days`` days per unit) and event;
    ``censor_at`` censors it as the task does. Rows come back sorted by treatment date (ties by position), so a
    replay serves them in calendar order. Raises DataError for a missing year or a non-positive follow-up time.
    """
    years = pd.to_numeric(frame[year], errors="coerce").to_numpy(dtype=float)
    if np.isnan(years).any():
        row = int(np.flatnonzero(np.isnan(years))[0])
        raise DataError(f"{year!r}: row {row} has no calendar year; the simulation replays patients by year",
                        column=year, rows=[row])
    t = np.asarray(time, dtype=float).copy()
    e = np.asarray(event, dtype=float).copy()
    if (t <= 0).any() or np.isnan(t).any():
        row = int(np.flatnonzero(~(t > 0))[0])
        raise DataError(f"follow-up time of row {row} is {t[row]!r}; expected a positive time", rows=[row])
    if censor_at is not None:
        late = t > censor_at
        e[late] = 0.0
        t[late] = censor_at
    rng = np.random.default_rng(seed)
    treated = np.floor(years) + rng.uniform(0.0, 1.0, size=len(years))
    out = frame.copy()
    out[TREATED] = treated
    out[TIME] = t
    out[EVENT] = e.astype(int)
    out[KNOWN_AT] = treated + t * time_unit_days / DAYS_PER_YEAR
    return out.iloc[np.argsort(treated, kind="stable")].reset_index(drop=True)


def known_by(timeline: pd.DataFrame, now: float, *, time_unit_days: float = 1.0) -> pd.DataFrame:
    """The patients treated before ``now`` (a decimal calendar year) with their outcome as known then: follow-up cut
    at ``now``, an event after ``now`` censored. Patients followed for less than a day are left out (no time at
    risk yet)."""
    treated = timeline[TREATED].to_numpy(dtype=float)
    elapsed = (now - treated) * DAYS_PER_YEAR / time_unit_days
    keep = elapsed >= MIN_FOLLOW_UP_DAYS / time_unit_days
    out = timeline.loc[keep].copy()
    elapsed = elapsed[keep]
    final_t = out[TIME].to_numpy(dtype=float)
    final_e = out[EVENT].to_numpy(dtype=int)
    done = final_t <= elapsed
    out[TIME] = np.where(done, final_t, elapsed)
    out[EVENT] = np.where(done, final_e, 0)
    return out.reset_index(drop=True)


def _c(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float) -> Any:
    def fn(i: np.ndarray) -> dict[str, float]:
        m = survival_metrics(time[i], event[i], risk[i], horizons=[min(horizon, float(np.nextafter(time[i].max(),
                                                                                               0)))])
        return {"c_harrell": m["c_harrell"]}
    return fn


def score_arm(time: np.ndarray, event: np.ndarray, risk: np.ndarray, event_probability: np.ndarray, *,
              horizon: float, n_boot: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """One arm on one block of patients (final outcomes): Harrell's C with a bootstrap CI, the Cox calibration slope
    of its risk score with a Wald CI, and Kaplan-Meier observed vs mean predicted risk at ``horizon``."""
    t, e, r = (np.asarray(a, dtype=float) for a in (time, event, risk))
    with undefined_as_nan():
        c = bootstrap_ci(_c(t, e, r, horizon), len(t), n_boot=n_boot, seed=seed, level=level)["c_harrell"]
    slope = cox_calibration_slope(t, e, r, level=level)
    calib = observed_vs_predicted(t, e, np.asarray(event_probability, dtype=float), horizon, level=level)
    return {"n": int(len(t)), "events": int(e.sum()), "c_harrell": c, "calibration_slope": slope,
            "observed_vs_predicted": calib}


def pooled_differences(time: np.ndarray, event: np.ndarray, risks: Mapping[str, np.ndarray],
                       pairs: Sequence[tuple[str, str]], *, horizon: float, n_boot: int, seed: int,
                       level: float = 0.95) -> dict[str, Any]:
    """Harrell's C of each arm and the paired differences ``a - b`` on the same patients, with bootstrap CIs (each
    replicate resamples the patients once and scores both arms on that draw)."""
    t, e = np.asarray(time, dtype=float), np.asarray(event, dtype=float)
    fns = {arm: _c(t, e, np.asarray(r, dtype=float), horizon) for arm, r in risks.items()}
    boot = dict(n_boot=n_boot, seed=seed, level=level)
    out: dict[str, Any] = {"n": int(len(t)), "events": int(e.sum()), "arms": {}, "differences": {}}
    with undefined_as_nan():
        for arm, fn in fns.items():
            out["arms"][arm] = bootstrap_ci(fn, len(t), **boot)["c_harrell"]
        for a, b in pairs:
            def diff(i: np.ndarray, fa: Any = fns[a], fb: Any = fns[b]) -> dict[str, float]:
                return {"d": fa(i)["c_harrell"] - fb(i)["c_harrell"]}
            out["differences"][f"{a} - {b}"] = bootstrap_ci(diff, len(t), **boot)["d"]
    return out


def _ci(m: Mapping[str, Any] | None, sign: bool = False) -> str:
    if not m or m.get("value") is None or not np.isfinite(m["value"]):
        return "–"
    f = "{:+.3f}" if sign else "{:.3f}"
    return f"{f.format(m['value'])} ({f.format(m['ci_low'])} to {f.format(m['ci_high'])})"


def summary_table(years: Sequence[Mapping[str, Any]], arms: Sequence[str]) -> str:
    """The per-year table printed and copied into docs/simulation.md: each arm's C (CI), slope and O/P at 3 y."""
    head = ["year", "n", "events", *[f"{a}: C (95% CI)" for a in arms], *[f"{a}: slope / O:P" for a in arms]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for y in years:
        sc = y["arms"]
        first = sc[arms[0]]
        cells = [str(y["year"]), str(first["n"]), str(first["events"])]
        cells += [_ci(sc[a]["c_harrell"]) for a in arms]
        cells += [f"{sc[a]['calibration_slope']['value']:.2f} / {sc[a]['observed_vs_predicted']['ratio']:.2f}"
                  for a in arms]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
