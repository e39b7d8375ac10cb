"""Breslow baseline hazard: turns any Cox-type risk score into survival curves."""

from __future__ import annotations

import numpy as np


def breslow_cumulative_hazard(risk: np.ndarray, time: np.ndarray, event: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Breslow estimate of the baseline cumulative hazard H0 at each distinct event time.

    `risk` is the log-hazard ratio of each training subject; returns (event times, H0 at those times).
    """
    risk = np.asarray(risk, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    order = np.argsort(-time, kind="mergesort")
    t_desc, e_desc = time[order], event[order]
    exp_r = np.exp(risk[order] - risk.max())
    at_risk = np.cumsum(exp_r)
    uniq_desc, first = np.unique(-t_desc, return_index=True)  # distinct times, descending
    last = np.r_[first[1:], len(t_desc)] - 1  # last row of each tie block = full risk set
    deaths = np.add.reduceat(e_desc.astype(float), first)
    hazard = deaths / at_risk[last] * np.exp(-risk.max())
    times = -uniq_desc
    asc = np.argsort(times)
    times, hazard, deaths = times[asc], hazard[asc], deaths[asc]
    keep = deaths > 0
    return times[keep], np.cumsum(hazard[keep])


def survival_at(risk: np.ndarray, grid: np.ndarray, base_times: np.ndarray, base_cumhaz: np.ndarray
                ) -> np.ndarray:
    """S(t | x) = exp(-H0(t) exp(risk)) on `grid`, H0 taken step-wise (last event time <= t)."""
    pos = np.searchsorted(base_times, np.asarray(grid, dtype=float), side="right") - 1
    h0 = np.where(pos >= 0, base_cumhaz[np.clip(pos, 0, None)], 0.0)
    return np.exp(-np.outer(np.exp(np.asarray(risk, dtype=float)), h0))
