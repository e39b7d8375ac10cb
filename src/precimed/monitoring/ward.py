"""A seeded simulated medical ward, labels, look-ahead-free window features and early-warning evaluation.

The simulator exists to exercise and compare early-warning methods end to end; it is not fitted to any
patient data and its numbers are assumptions, chosen to be plausible and stated here so they can be
argued with.

Physiology and assumptions
--------------------------
Patients (adult medical ward). Age ~ Normal(66, 17) clipped to 18–98. Admission uniformly in the first
60% of the simulated period; length of stay log-normal with median 4 days (σ 0.6 on the log scale),
ended by discharge, an event, or the end of the period. 8% have hypercapnic respiratory failure (COPD):
they are charted on SpO2 scale 2 with baseline SpO2 ~ N(90, 1.5)%; half of them and 8% of the others are
on supplemental oxygen from admission.

Baseline vitals, per patient (the NEWS2 0-point bands of the RCP chart mark normal adult physiology):

* respiration rate 15 + 0.02·(age − 60) ± 1.5 /min;
* SpO2 (scale 1) 97.5 − 0.04·(age − 60) ± 1.0 %, at most 99.5;
* systolic BP 125 + 0.4·(age − 60) ± 14 mmHg (systolic pressure rises with age: Franklin SS et al.,
  Hemodynamic patterns of age-related changes in blood pressure, the Framingham Heart Study,
  Circulation 1997;96:308–15);
* pulse 78 − 0.1·(age − 60) ± 9 /min; 5% are in rate-controlled atrial fibrillation (+20 /min);
* temperature 36.7 − 0.005·(age − 60) ± 0.25 °C (older patients run slightly cooler).

Circadian variation (clock time of the observation): temperature +0.25·cos(2π(h − 17)/24) °C, i.e. about
0.5 °C from the early-morning trough to the late-afternoon peak (Refinetti R, Menaker M, The circadian
rhythm of body temperature, Physiol Behav 1992;51:613–37); pulse +4·cos(2π(h − 16)/24) /min and systolic
BP +5·cos(2π(h − 14)/24) mmHg (lower at night while asleep; assumption of this simulator).

Variation and noise, per observation: biological variation (resp 1.2, SpO2 0.8, BP 7, pulse 5,
temperature 0.15; SDs) plus measurement noise (resp 1.5 — respiratory rate is the least reliably counted
vital; SpO2 1.0; BP 4; pulse 2; temperature 0.1). Recorded values are rounded to the chart's resolution
(integers; 0.1 °C) and clipped to physiologic limits. Each reading is missing independently (resp 3%,
SpO2 2%, oxygen flag 1%, BP 2%, pulse 1%, consciousness 2%, temperature 6%).

Observation frequency follows the NEWS2 clinical-response chart (``news2.yaml``, the row's
``interval_hours``) on the *recorded* score: total 0 every 12 h, 1–4 every 4–6 h, a single 3 or 5–6 hourly,
7+ "continuous" (charted every 30 min), with nurses 0–10% early and 5% of rounds 0.5–2 h late.

Deterioration. A fraction of patients (default 15%) deteriorate in a sepsis-like way for D ~ U(6, 48) h
before an event (ICU transfer 80%, cardiac arrest 20%); most in-hospital arrests are preceded by hours of
abnormal physiology (Schein RM et al., Clinical antecedents to in-hospital cardiopulmonary arrest, Chest
1990;98:1388–92). Severity s = ((t − onset)/D)^1.5 rises from 0 to 1; at s = 1 and per-patient weight
w ~ U(0.6, 1.3) per vital: respiration +12 /min, pulse +38 /min, systolic BP −38 mmHg, SpO2 −7 %,
temperature +2.0 °C (fever; 20% become hypothermic, −1.4 °C): the pattern of SIRS and qSOFA (Singer M et
al., Sepsis-3, JAMA 2016;315:801–10). Confusion appears late: P(not alert) = 0.85·clip((s − 0.55)/0.45)
(C 70%, V 20%, P 8%, U 2%). A nurse starts oxygen (+3% SpO2) with probability 0.6 when recorded SpO2 is
below 92% (below 88% on scale 2). Observations stop at the event.

To keep the task honest, 30% of the patients who do not deteriorate have one benign transient episode of
4–24 h (fever: +1.3 °C, pulse +15, resp +3; pain/anxiety: pulse +22, resp +5, BP +18; or hypotension:
BP −28, pulse +10) that resolves on its own, so abnormal vitals are not always followed by an event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from precimed.errors import ConfigError, DataError, SchemaError
from precimed.monitoring.news2 import (
    NUMERIC,
    News2Table,
    Vitals,
    _frame_oxygen,
    load_news2_bands,
    result_from_parts,
    score_news2_frame,
    vitals_parts,
)
from precimed.monitoring.stream import FEATURES, WINDOW_VITALS, Monitor
from precimed.schema import as_numeric, require_columns

EPOCH = pd.Timestamp("2024-01-01 00:00:00")
OBS_COLUMNS = ("patient_id", "time", "age", "resp_rate", "spo2", "spo2_scale", "on_oxygen", "systolic_bp",
               "pulse", "consciousness", "temperature")
_LIMITS = {"resp_rate": (4, 60), "spo2": (60, 100), "systolic_bp": (50, 240), "pulse": (25, 200),
           "temperature": (32.0, 42.5)}
_MISSING = {"resp_rate": 0.03, "spo2": 0.02, "on_oxygen": 0.01, "systolic_bp": 0.02, "pulse": 0.01,
            "consciousness": 0.02, "temperature": 0.06}
_BIO_SD = {"resp_rate": 1.2, "spo2": 0.8, "systolic_bp": 7.0, "pulse": 5.0, "temperature": 0.15}
_MEAS_SD = {"resp_rate": 1.5, "spo2": 1.0, "systolic_bp": 4.0, "pulse": 2.0, "temperature": 0.1}
_NOT_ALERT = ("C", "V", "P", "U")
_NOT_ALERT_P = (0.70, 0.20, 0.08, 0.02)
_TRANSIENTS = {  # benign episodes: peak change per vital
    "fever": {"temperature": 1.3, "pulse": 15.0, "resp_rate": 3.0},
    "pain": {"pulse": 22.0, "resp_rate": 5.0, "systolic_bp": 18.0},
    "hypotension": {"systolic_bp": -28.0, "pulse": 10.0},
}
_SEPSIS = {"resp_rate": 12.0, "pulse": 38.0, "systolic_bp": -38.0, "spo2": -7.0}
NS_PER_HOUR = 3_600_000_000_000


def _hours_to_time(hours: float) -> pd.Timestamp:
    return EPOCH + pd.Timedelta(minutes=round(hours * 60.0))


def _simulate_patient(pid: str, rng: np.random.Generator, period_h: float, deteriorates: bool,
                      table: News2Table) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    age = float(np.clip(rng.normal(66, 17), 18, 98))
    a = age - 60
    copd = rng.random() < 0.08
    oxygen = bool(rng.random() < (0.5 if copd else 0.08))
    base = {
        "resp_rate": 15 + 0.02 * a + rng.normal(0, 1.5),
        "spo2": rng.normal(90, 1.5) if copd else min(99.5, 97.5 - 0.04 * a + rng.normal(0, 1.0)),
        "systolic_bp": 125 + 0.4 * a + rng.normal(0, 14),
        "pulse": 78 - 0.1 * a + rng.normal(0, 9) + (20 if rng.random() < 0.05 else 0),
        "temperature": 36.7 - 0.005 * a + rng.normal(0, 0.25),
    }
    admit = rng.uniform(0, 0.6 * period_h)
    stay = math.exp(rng.normal(math.log(96.0), 0.6))
    end = min(admit + stay, period_h)
    event = None
    transient = None
    if deteriorates:
        room = max(6.5, min(stay, period_h - admit))
        event_h = admit + rng.uniform(6.0, room)
        duration = rng.uniform(6.0, 48.0)
        onset = event_h - duration
        weights = {k: rng.uniform(0.6, 1.3) for k in (*_SEPSIS, "temperature")}
        fever = 2.0 if rng.random() < 0.8 else -1.4
        kind = "icu_transfer" if rng.random() < 0.8 else "cardiac_arrest"
        end = min(event_h, period_h)
        if event_h <= period_h:
            event = {"patient_id": pid, "time": _hours_to_time(event_h), "event": kind,
                     "onset": _hours_to_time(onset)}
    elif rng.random() < 0.3:
        names = list(_TRANSIENTS)
        start = rng.uniform(admit, max(admit + 1.0, end))
        transient = (names[rng.integers(len(names))], start, rng.uniform(4.0, 24.0))

    rows: list[dict[str, Any]] = []
    t = admit + rng.uniform(0, 0.5)
    while t < end:
        hour = t % 24.0
        true = dict(base)
        true["temperature"] += 0.25 * math.cos(2 * math.pi * (hour - 17) / 24)
        true["pulse"] += 4.0 * math.cos(2 * math.pi * (hour - 16) / 24)
        true["systolic_bp"] += 5.0 * math.cos(2 * math.pi * (hour - 14) / 24)
        p_not_alert = 0.003
        if deteriorates:
            s = min(max((t - onset) / duration, 0.0), 1.0) ** 1.5
            for k, peak in _SEPSIS.items():
                true[k] += weights[k] * peak * s
            true["temperature"] += weights["temperature"] * fever * s
            p_not_alert += 0.85 * min(max((s - 0.55) / 0.45, 0.0), 1.0)
        if transient is not None:
            kind_t, start, length = transient
            if start <= t <= start + length:
                bump = math.sin(math.pi * (t - start) / length)
                for k, peak in _TRANSIENTS[kind_t].items():
                    true[k] += peak * bump
        if oxygen:
            true["spo2"] += 3.0
        rec: dict[str, Any] = {}
        for k in NUMERIC:
            sd = math.hypot(_BIO_SD[k], _MEAS_SD[k])
            lo, hi = _LIMITS[k]
            value = float(np.clip(true[k] + rng.normal(0, sd), lo, hi))
            rec[k] = round(value, 1) if k == "temperature" else float(round(value))
        conscious = "A"
        if rng.random() < p_not_alert:
            conscious = _NOT_ALERT[rng.choice(4, p=_NOT_ALERT_P)]
        rec["consciousness"] = conscious
        rec["on_oxygen"] = oxygen
        for k, p in _MISSING.items():
            if rng.random() < p:
                rec[k] = None
        vitals = Vitals(rec["resp_rate"], rec["spo2"], 2 if copd else 1, rec["on_oxygen"], rec["systolic_bp"],
                        rec["pulse"], rec["consciousness"], rec["temperature"])
        result = result_from_parts(vitals_parts(vitals, table), table)
        rows.append({"patient_id": pid, "time": _hours_to_time(t), "age": round(age), **rec,
                     "spo2_scale": 2 if copd else 1})
        low_o2 = rec["spo2"] is not None and rec["spo2"] < (88 if copd else 92)
        if not oxygen and low_o2 and rng.random() < 0.6:
            oxygen = True
        top = max((p for p in result.parts.values() if p is not None), default=0)
        lo_h, hi_h = table.response_rule(result.total, top).interval_hours
        gap = rng.uniform(lo_h, hi_h) if hi_h > 0 else 0.5
        gap *= rng.uniform(0.9, 1.0)
        if rng.random() < 0.05:
            gap += rng.uniform(0.5, 2.0)
        t += max(gap, 0.25)
    return rows, event


def simulate_ward(n_patients: int = 100, days: float = 7, seed: int = 0, *, deteriorate_fraction: float = 0.15,
                  table: News2Table | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate a ward (see the module docstring); the same arguments give the same tables.

    Returns ``(observations, events)``. Observations, in time order: ``patient_id, time, age, resp_rate,
    spo2, spo2_scale, on_oxygen, systolic_bp, pulse, consciousness, temperature`` (NaN / <NA> / None when
    not recorded). Events: ``patient_id, time, event`` ("icu_transfer" | "cardiac_arrest") and ``onset``,
    when the deterioration began (ground truth, not visible to a monitor).
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, int) or n_patients < 1:
        raise ConfigError(f"n_patients must be a whole number ≥ 1, got {n_patients!r}")
    if not days > 0:
        raise ConfigError(f"days must be positive, got {days!r}")
    if not 0 <= deteriorate_fraction <= 1:
        raise ConfigError(f"deteriorate_fraction must lie in [0, 1], got {deteriorate_fraction!r}")
    t = table or load_news2_bands()
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    width = max(4, len(str(n_patients)))
    flags = rng.random(n_patients) < deteriorate_fraction
    for i in range(n_patients):
        p_rows, event = _simulate_patient(f"P{i + 1:0{width}d}", rng, days * 24.0, bool(flags[i]), t)
        rows.extend(p_rows)
        if event is not None:
            events.append(event)
    obs = pd.DataFrame(rows, columns=list(OBS_COLUMNS))
    obs = obs.sort_values(["time", "patient_id"], kind="stable").reset_index(drop=True)
    obs["on_oxygen"] = obs["on_oxygen"].astype("boolean")
    obs["spo2_scale"] = obs["spo2_scale"].astype("int64")
    obs["consciousness"] = obs["consciousness"].astype(object)
    ev = pd.DataFrame(events, columns=["patient_id", "time", "event", "onset"])
    ev = ev.sort_values(["time", "patient_id"], kind="stable").reset_index(drop=True)
    return obs, ev


# ------------------------------------------------------------------------------------------------ labels


def _times(series: pd.Series, where: str) -> pd.Series:
    try:
        out = pd.to_datetime(series)
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"{where}: column 'time' must hold date-times ({exc})", column="time") from None
    if out.isna().any():
        raise SchemaError(f"{where}: column 'time' has {int(out.isna().sum())} missing value(s)", column="time")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out.astype("datetime64[ns]")


def _next_event(obs: pd.DataFrame, events: pd.DataFrame) -> pd.Series:
    """Time of each observation's next event of the same patient at or after it (NaT if none)."""
    require_columns(obs, ["patient_id", "time"], where="observations")
    require_columns(events, ["patient_id", "time"], where="events")
    left = pd.DataFrame({"patient_id": obs["patient_id"].to_numpy(), "time": _times(obs["time"], "observations"),
                         "_row": np.arange(len(obs))}).sort_values("time", kind="stable")
    right = pd.DataFrame({"patient_id": events["patient_id"].to_numpy(),
                          "event_time": _times(events["time"], "events")}).sort_values("event_time")
    if len(right) == 0:
        return pd.Series(pd.NaT, index=obs.index, dtype="datetime64[ns]")
    merged = pd.merge_asof(left, right, left_on="time", right_on="event_time", by="patient_id",
                           direction="forward", allow_exact_matches=True)
    out = np.empty(len(obs), dtype="datetime64[ns]")
    out[merged["_row"].to_numpy()] = merged["event_time"].to_numpy()
    return pd.Series(out, index=obs.index)


def deterioration_labels(obs: pd.DataFrame, events: pd.DataFrame,
                         horizon: timedelta = timedelta(hours=12)) -> pd.Series:
    """True for each observation followed by an event of the same patient within ``horizon`` (0 ≤ event −
    time ≤ horizon), on ``obs``'s index."""
    gap = _next_event(obs, events) - _times(obs["time"], "observations")
    label = gap.notna() & (gap <= pd.Timedelta(horizon))
    return pd.Series(label.to_numpy(), index=obs.index, name=f"event_within_{horizon.total_seconds() / 3600:g}h")


# ---------------------------------------------------------------------------------------------- features


def window_features(obs: pd.DataFrame, window: timedelta = timedelta(hours=24),
                    table: News2Table | None = None) -> pd.DataFrame:
    """Per observation, :data:`~precimed.monitoring.stream.FEATURES` from the same patient's observations
    at or before it (same time: earlier rows only) within the trailing ``window``; never later ones.

    The same numbers a :class:`~precimed.monitoring.stream.Monitor` gives ``risk_fn`` for the same stream
    (per vital: last recorded value, least-squares slope per hour, min, max; oxygen and consciousness
    last recorded; hours since the previous observation; observations in the window; NEWS2 now, its
    maximum in the window and how many parameters are missing now).
    """
    t = table or load_news2_bands()
    require_columns(obs, ["patient_id", "time"], where="window_features")
    if not isinstance(window, timedelta) or window <= timedelta(0):
        raise ConfigError(f"window must be a positive timedelta, got {window!r}")
    n = len(obs)
    if n == 0:
        return pd.DataFrame(columns=list(FEATURES), index=obs.index, dtype=float)
    score = score_news2_frame(obs, t)  # validates every column
    ids = obs["patient_id"]
    codes, _ = pd.factorize(ids)
    tns = _times(obs["time"], "window_features").to_numpy().view("i8")
    order = np.lexsort((tns, codes))  # stable: ties keep arrival order
    code, tt = codes[order], tns[order]
    first = np.r_[True, code[1:] != code[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    vals = {v: as_numeric(obs[v], where="window_features", ids=ids).to_numpy(dtype=float)[order]
            for v in WINDOW_VITALS}
    oxygen = _frame_oxygen(obs["on_oxygen"], ids)[order]
    text = obs["consciousness"].astype(str).str.strip().str.upper()
    present_c = (obs["consciousness"].notna() & (text != "")).to_numpy()
    not_alert = np.where(present_c, (text != "A").to_numpy(dtype=float), np.nan)[order]
    news2 = score["news2"].to_numpy(dtype=float)[order]
    n_missing = score["n_missing"].to_numpy(dtype=float)[order]
    w_ns = int(window.total_seconds() * 1e9)
    idx = np.arange(n)

    acc = {v: [np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n),
               np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)] for v in WINDOW_VITALS}
    ox_last = np.full(n, np.nan)
    na_last = np.full(n, np.nan)
    count = np.zeros(n)
    n2max = np.full(n, -np.inf)
    k = 0
    while True:
        j = idx - k
        valid = j >= group_start
        jj = np.where(valid, j, idx)
        valid &= (tt - tt[jj]) <= w_ns
        if not valid.any():
            break
        dt = (tt[jj] - tt).astype(float) / NS_PER_HOUR
        for v in WINDOW_VITALS:
            y = vals[v][jj]
            m = valid & ~np.isnan(y)
            a = acc[v]
            a[0] += m
            a[1] += np.where(m, dt, 0.0)
            a[2] += np.where(m, y, 0.0)
            a[3] += np.where(m, dt * dt, 0.0)
            a[4] += np.where(m, dt * y, 0.0)
            ym = np.where(m, y, np.nan)
            a[5] = np.where(np.isnan(a[5]) & m, y, a[5])
            a[6] = np.fmin(a[6], ym)
            a[7] = np.fmax(a[7], ym)
        ox_last = np.where(np.isnan(ox_last) & valid, oxygen[jj], ox_last)
        na_last = np.where(np.isnan(na_last) & valid, not_alert[jj], na_last)
        count += valid
        n2max = np.where(valid, np.maximum(n2max, news2[jj]), n2max)
        k += 1

    cols: dict[str, np.ndarray] = {}
    for v in WINDOW_VITALS:
        cnt, sx, sy, sxx, sxy, last, lo, hi = acc[v]
        denom = cnt * sxx - sx * sx
        ok = (cnt >= 2) & (denom > 1e-9 * np.maximum(1.0, cnt * sxx))
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(ok, (cnt * sxy - sx * sy) / np.where(ok, denom, 1.0), np.nan)
        cols[f"{v}_last"], cols[f"{v}_slope"], cols[f"{v}_min"], cols[f"{v}_max"] = last, slope, lo, hi
    prev = np.r_[0, tt[:-1]]
    cols["on_oxygen_last"] = ox_last
    cols["not_alert_last"] = na_last
    cols["hours_since_last_obs"] = np.where(first, np.nan, (tt - prev).astype(float) / NS_PER_HOUR)
    cols["n_obs_window"] = count
    cols["news2"] = news2
    cols["news2_max"] = n2max
    cols["news2_n_missing"] = n_missing
    out = np.empty((n, len(FEATURES)))
    for c, name in enumerate(FEATURES):
        out[order, c] = cols[name]
    return pd.DataFrame(out, index=obs.index, columns=list(FEATURES))


# -------------------------------------------------------------------------------------------- evaluation


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos = int(labels.sum())
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return math.nan
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def evaluate_early_warning(obs: pd.DataFrame, events: pd.DataFrame, scores: Sequence[float] | pd.Series,
                           threshold: float, *, horizon: timedelta = timedelta(hours=12),
                           clear_after: int = 2) -> dict[str, Any]:
    """How well ``scores`` (one per observation, higher = sicker) warn of events.

    * ``auroc``: per observation, for "an event within ``horizon``";
    * ``alerts_per_patient_day``: alert episodes opened by a :class:`Monitor` whose observations are raised
      when score ≥ ``threshold`` (hysteresis: ``clear_after`` complete calm observations end an episode),
      per patient-day (each patient's first observation to the later of the last observation and the
      event);
    * ``detection_rate``: share of events with an alert episode still open at the patient's last
      observation before the event;
    * ``median_lead_hours``: among detected events, hours from the alert that opened that episode to the
      event.
    """
    require_columns(obs, ["patient_id", "time"], where="evaluate_early_warning")
    if isinstance(scores, pd.Series):
        s = scores.reindex(obs.index).to_numpy(dtype=float)
    else:
        s = np.asarray(scores, dtype=float).reshape(-1)
    if len(s) != len(obs):
        raise DataError(f"scores has {len(s)} value(s) for {len(obs)} observation(s)", column="scores")
    if not np.all(np.isfinite(s)):
        raise DataError(f"scores has {int((~np.isfinite(s)).sum())} missing or infinite value(s)", column="scores")
    labels = deterioration_labels(obs, events, horizon).to_numpy()
    times = _times(obs["time"], "observations")
    monitor = Monitor(alert_level=None, risk_threshold=threshold, clear_after=clear_after)
    order = np.lexsort((np.arange(len(obs)), times.to_numpy()))
    records = obs.iloc[order].to_dict("records")
    open_since: list[str | None] = [None] * len(obs)
    alerts = 0
    for pos, record, risk in zip(order, records, s[order], strict=True):
        record["time"] = times.iloc[pos]
        step = monitor.observe(record, risk=float(risk))
        alerts += sum(e["event"] == "alert" for e in step.events)
        open_since[pos] = monitor.open_since(step.patient_id)
    span = pd.DataFrame({"patient_id": obs["patient_id"].to_numpy(), "time": times.to_numpy()})
    if len(events):
        span = pd.concat([span, pd.DataFrame({"patient_id": events["patient_id"].to_numpy(),
                                              "time": _times(events["time"], "events").to_numpy()})])
    g = span.groupby("patient_id")["time"]
    patient_days = float(((g.max() - g.min()).dt.total_seconds() / 86400.0).sum())

    detected, leads = 0, []
    if len(events):
        last = pd.DataFrame({"patient_id": obs["patient_id"].to_numpy(), "time": times.to_numpy(),
                             "_row": np.arange(len(obs))}).sort_values("time", kind="stable")
        ev = pd.DataFrame({"patient_id": events["patient_id"].to_numpy(),
                           "event_time": _times(events["time"], "events").to_numpy()}).sort_values("event_time")
        merged = pd.merge_asof(ev, last, left_on="event_time", right_on="time", by="patient_id",
                               direction="backward", allow_exact_matches=True)
        for row, event_time in zip(merged["_row"], merged["event_time"], strict=True):
            if row != row:  # no observation before the event
                continue
            since = open_since[int(row)]
            if since is not None:
                detected += 1
                leads.append((event_time - pd.Timestamp(since)).total_seconds() / 3600.0)
    n_events = len(events)
    return {
        "threshold": float(threshold),
        "auroc": _auroc(labels, s),
        "observations": len(obs), "positive_observations": int(labels.sum()),
        "events": n_events, "detected": detected,
        "detection_rate": detected / n_events if n_events else math.nan,
        "median_lead_hours": float(np.median(leads)) if leads else math.nan,
        "alerts": alerts, "patient_days": patient_days,
        "alerts_per_patient_day": alerts / patient_days if patient_days > 0 else math.nan,
    }
