"""A vitals stream → NEWS2 (and optionally a learned risk) per observation → alert events with hysteresis.

Records
-------
One dict per observation: ``patient_id``, ``time`` (ISO 8601 text or a datetime), and any of
``resp_rate`` (/min), ``spo2`` (%), ``spo2_scale`` (1 | 2, default 1), ``on_oxygen`` (bool),
``systolic_bp`` (mmHg), ``pulse`` (/min), ``consciousness`` (A, C, V, P, U) and ``temperature`` (°C).
Optionally ``ward`` and ``bed``: where the patient is (1 to 64 letters, digits, spaces, '.', '_' or '-', starting
with a letter or digit and not ending in a space), carried on the :class:`Step` for a ward board, never scored.
An absent field is a vital that was not recorded (see :mod:`precimed.monitoring.news2`). Other keys are
ignored by default (a replayed file may carry e.g. the simulated ward's ``age``); a ``strict`` monitor (the
service's) refuses them, naming the field, so a misspelt vital is never silently "not recorded". Times must
not go backwards for a patient (equal times are kept in arrival order); a time
without a UTC offset is read as UTC, and one patient's records must not mix times with and without offsets.

Discharge and memory
--------------------
A record ``{"patient_id": ..., "event": "discharge"}`` (``time`` optional, nothing else) ends the patient's
follow-up: their state (window, open episode) is dropped, and a later record starts afresh. A monitor with
``max_patients`` follows at most that many patients: when one more arrives, the least recently seen is forgotten
("evicted" in the summary) and starts a new episode if seen again. State per patient is small and fixed (plus the
trailing window when a learned risk is used), so memory is bounded by ``max_patients``.

Alerts (hysteresis)
-------------------
An observation is *raised* when its NEWS2 level is at or above ``alert_level`` (default "low-medium":
the chart's first trigger, a single parameter scoring 3 or a total of 5 or more) or, with a risk, when the
risk is ≥ ``risk_threshold``. Per patient:

* ``alert``: the first raised observation of an episode (one per episode);
* ``escalation``: within an episode, the NEWS2 level rises above the highest level seen so far in it;
* ``clear``: ``clear_after`` consecutive complete observations that are not raised end the episode. An
  incomplete observation that is not raised neither counts towards clearing nor resets the count (unknown
  is not normal).

The learned risk (``risk_fn``) sees one row per observation with the :data:`FEATURES` computed from the
patient's observations in the trailing ``window`` (those at or before the observation's time, in arrival
order); ``risk_fn(rows: DataFrame) -> probabilities`` is a plain callable, so no model library is needed.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import numpy as np
import pandas as pd

from precimed.errors import ConfigError, DataError
from precimed.jsonio import dumps
from precimed.monitoring.news2 import (
    LEVEL_RANK,
    LEVELS,
    PARAMETERS,
    News2Result,
    News2Table,
    Vitals,
    load_news2_bands,
    parse_vitals,
    result_from_parts,
    vitals_parts,
)

#: Numeric vitals summarised over the window.
WINDOW_VITALS: tuple[str, ...] = ("resp_rate", "spo2", "systolic_bp", "pulse", "temperature")
_STATS = ("last", "slope", "min", "max")
#: Feature columns given to ``risk_fn`` (and produced by ``ward.window_features``), in order.
FEATURES: tuple[str, ...] = (
    *(f"{v}_{s}" for v in WINDOW_VITALS for s in _STATS),
    "on_oxygen_last", "not_alert_last", "hours_since_last_obs", "n_obs_window", "news2", "news2_max",
    "news2_n_missing",
)
EVENTS: tuple[str, ...] = ("alert", "escalation", "clear")
#: The keys a record may carry (a strict monitor refuses any other).
RECORD_FIELDS: frozenset[str] = frozenset({"patient_id", "time", "event", *PARAMETERS, "spo2_scale", "ward", "bed"})
#: Where a patient is (``ward`` and ``bed``): bounded text, so a board or a page never holds a large or odd value.
PLACE_FIELDS: tuple[str, ...] = ("ward", "bed")
PLACE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-])?")
DISCHARGE = "discharge"
RiskFn = Callable[[pd.DataFrame], Any]
_UTC = UTC


class RecordError(DataError):
    """A bad record in a stream: carries the 1-based ``line`` (record number) and the ``column``."""

    def __init__(self, message: str, *, line: int, column: str | None = None,
                 rows: Sequence[Hashable] = ()) -> None:
        super().__init__(message, column=column, rows=rows)
        self.line = line


# ------------------------------------------------------------------------------------------------ features


def features_from_window(entries: Sequence[tuple[float, Vitals, int, int]], window_seconds: float,
                         previous_time: float | None) -> dict[str, float]:
    """Window features for the last entry of ``entries`` (oldest first; each ``(time s, vitals, news2,
    n_missing)``).

    Only entries with ``time ≥ now - window`` count. Per vital: the last recorded value, the least-squares
    slope per hour (NaN with fewer than two recorded values at distinct times), min and max (NaN when
    none recorded). Sums run from the newest entry to the oldest, the order ``ward.window_features`` uses,
    so both give the same floats.
    """
    now, current, news2, n_missing = entries[-1]
    keep = [e for e in reversed(entries) if now - e[0] <= window_seconds]
    out: dict[str, float] = {}
    for name in WINDOW_VITALS:
        n = 0
        sx = sy = sxx = sxy = 0.0
        last = lo = hi = math.nan
        for t, v, _, _ in keep:
            y = getattr(v, name)
            if y is None:
                continue
            dt = (t - now) / 3600.0
            if n == 0:
                last = lo = hi = y
            else:
                lo = min(lo, y)
                hi = max(hi, y)
            n += 1
            sx += dt
            sy += y
            sxx += dt * dt
            sxy += dt * y
        out[f"{name}_last"] = last
        out[f"{name}_slope"] = _slope(n, sx, sy, sxx, sxy)
        out[f"{name}_min"] = lo
        out[f"{name}_max"] = hi
    oxygen = next((e[1].on_oxygen for e in keep if e[1].on_oxygen is not None), None)
    level = next((e[1].consciousness for e in keep if e[1].consciousness is not None), None)
    out["on_oxygen_last"] = math.nan if oxygen is None else float(oxygen)
    out["not_alert_last"] = math.nan if level is None else float(level != "A")
    out["hours_since_last_obs"] = math.nan if previous_time is None else (now - previous_time) / 3600.0
    out["n_obs_window"] = float(len(keep))
    out["news2"] = float(news2)
    out["news2_max"] = float(max(e[2] for e in keep))
    out["news2_n_missing"] = float(n_missing)
    return out


def _slope(n: float, sx: float, sy: float, sxx: float, sxy: float) -> float:
    if n < 2:
        return math.nan
    denom = n * sxx - sx * sx
    if denom <= 1e-9 * max(1.0, n * sxx):
        return math.nan
    return (n * sxy - sx * sy) / denom


# ------------------------------------------------------------------------------------------------ monitor


@dataclass
class Step:
    """What the monitor made of one observation."""

    patient_id: Hashable
    time: str
    vitals: Vitals
    news2: News2Result
    risk: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    features: dict[str, float] | None = None
    ward: str | None = None
    bed: str | None = None

    def score_record(self) -> dict[str, Any]:
        """The JSON line written to the scores stream."""
        r = self.news2
        out = {"patient_id": self.patient_id, "time": self.time, "news2": r.total, "level": r.level,
               "complete": r.complete, "missing": r.missing, "parts": r.parts}
        if self.risk is not None:
            out["risk"] = self.risk
        return out


@dataclass
class _Prepared:
    patient: _Patient
    step: Step


class _Patient:
    __slots__ = ("last_time", "last_text", "aware", "window", "open", "rank", "calm", "started")

    def __init__(self) -> None:
        self.last_time: float | None = None
        self.last_text = ""
        self.aware: bool | None = None
        self.window: deque[tuple[float, Vitals, int, int]] | None = None  # only with a learned risk
        self.open = False
        self.rank = -1
        self.calm = 0
        self.started = ""


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _refuse_unknown_fields(record: Mapping[str, Any], pid: Hashable) -> None:
    unknown = sorted(str(k) for k in record if k not in RECORD_FIELDS)
    if unknown:
        raise DataError(f"patient {pid!r}: unknown field {unknown[0][:64]!r}; expected only "
                        f"{sorted(RECORD_FIELDS)}", column=unknown[0][:64], rows=[pid])


def place_of(record: Mapping[str, Any], pid: Hashable) -> tuple[str | None, str | None]:
    """The record's optional ``ward`` and ``bed`` (None when absent); DataError naming the field when one is not
    1 to 64 letters, digits, spaces, '.', '_' or '-' starting with a letter or digit (and not ending in a space)."""
    out: list[str | None] = []
    for name in PLACE_FIELDS:
        value = record.get(name)
        if value is None or (isinstance(value, float) and value != value):  # absent, or NaN from a frame
            out.append(None)
            continue
        if not isinstance(value, str) or not PLACE.fullmatch(value):
            shown = repr(value)[:40] if isinstance(value, str) else type(value).__name__
            raise DataError(f"patient {pid!r}: {name} {shown} is not a {name} name; expected 1 to 64 letters, digits, "
                            "spaces, '.', '_' or '-', starting with a letter or digit and not ending in a space",
                            column=name, rows=[pid])
        out.append(value)
    return out[0], out[1]


def discharge_id(record: Mapping[str, Any]) -> Hashable | None:
    """The patient id of a discharge record (``{"patient_id": ..., "event": "discharge"}``), else None.

    A discharge record carries only patient_id, event and (optionally) time: vital signs beside it are refused.
    """
    if not isinstance(record, Mapping) or record.get("event") != DISCHARGE:
        return None
    pid = _plain(record.get("patient_id"))
    if isinstance(pid, bool) or not isinstance(pid, (str, int)) or pid == "":
        raise DataError("a discharge record needs the patient_id of the patient discharged", column="patient_id")
    extra = sorted(str(k) for k in record if k not in ("patient_id", "event", "time"))
    if extra:
        raise DataError(f"patient {pid!r}: a discharge record carries only patient_id, event and time; found "
                        f"{extra[0][:64]!r}", column=extra[0][:64], rows=[pid])
    return pid


class Monitor:
    """Per-patient NEWS2 (and optional learned risk) with alert hysteresis; see the module docstring.

    Parameters
    ----------
    window : timedelta, default 24 h
        Trailing window of observations kept per patient for the risk features.
    risk_fn : callable, optional
        ``risk_fn(rows: DataFrame of FEATURES) -> probabilities`` (one per row).
    risk_threshold : float, default 0.5
        A risk at or above this raises the observation.
    alert_level : {"low-medium", "medium", "high"} or None, default "low-medium"
        Lowest NEWS2 level that raises an observation; None: only the risk raises.
    clear_after : int, default 2
        Consecutive complete, non-raised observations that clear an episode.
    table : News2Table, optional
        Another NEWS2 table (default: the shipped one).
    max_patients : int, optional
        Follow at most this many patients; the least recently seen is forgotten first (None: no limit).
    strict : bool, default False
        Refuse a record key outside :data:`RECORD_FIELDS` (instead of ignoring it).
    """

    def __init__(self, window: timedelta = timedelta(hours=24), risk_fn: RiskFn | None = None,
                 risk_threshold: float = 0.5, alert_level: str | None = "low-medium", clear_after: int = 2,
                 table: News2Table | None = None, max_patients: int | None = None, strict: bool = False) -> None:
        if not isinstance(window, timedelta) or window <= timedelta(0):
            raise ConfigError(f"window must be a positive timedelta, got {window!r}")
        if alert_level is not None and alert_level not in LEVELS[1:]:
            raise ConfigError(f"alert_level must be one of {list(LEVELS[1:])} or None, got {alert_level!r}")
        if isinstance(clear_after, bool) or not isinstance(clear_after, int) or clear_after < 1:
            raise ConfigError(f"clear_after must be a whole number ≥ 1, got {clear_after!r}")
        if not math.isfinite(float(risk_threshold)):
            raise ConfigError(f"risk_threshold must be a finite number, got {risk_threshold!r}")
        if risk_fn is not None and not callable(risk_fn):
            raise ConfigError("risk_fn must be a callable: rows (DataFrame) -> probabilities")
        if max_patients is not None and (isinstance(max_patients, bool) or not isinstance(max_patients, int)
                                         or max_patients < 1):
            raise ConfigError(f"max_patients must be a whole number ≥ 1 or None, got {max_patients!r}")
        self.max_patients = max_patients
        self.strict = bool(strict)
        self.window = window
        self.risk_fn = risk_fn
        self.risk_threshold = float(risk_threshold)
        self.alert_level = alert_level
        self.clear_after = clear_after
        self.table = table or load_news2_bands()
        self._alert_rank = LEVEL_RANK[alert_level] if alert_level is not None else len(LEVELS)
        self._window_s = window.total_seconds()
        self._patients: OrderedDict[Hashable, _Patient] = OrderedDict()  # least recently seen first
        self._level_key = {name: f"level_{name}" for name in LEVELS}
        self.counts: dict[str, int] = {"records": 0, "incomplete": 0, "discharged": 0, "evicted": 0,
                                       **dict.fromkeys(EVENTS, 0),
                                       **{f"level_{name}": 0 for name in LEVELS}}

    # -- one observation ---------------------------------------------------------------------------------

    def observe(self, record: Mapping[str, Any], *, risk: float | None = None) -> Step:
        """Score one record and update the patient's episode; ``risk`` overrides ``risk_fn`` (e.g. scores
        computed elsewhere)."""
        prepared = self._prepare(record)
        if risk is None and self.risk_fn is not None:
            risk = self._risks([prepared.step.features])[0]
        return self._finish(prepared, risk)

    def observe_many(self, records: Iterable[Mapping[str, Any]]) -> list[Step]:
        """Observe records in order, calling ``risk_fn`` once for all of them (same result as one by one)."""
        prepared = [self._prepare(r) for r in records]
        risks: list[float | None] = [None] * len(prepared)
        if self.risk_fn is not None and prepared:
            risks = list(self._risks([p.step.features for p in prepared]))
        return [self._finish(p, r) for p, r in zip(prepared, risks, strict=True)]

    def discharge(self, patient_id: Hashable) -> bool:
        """Stop following a patient: drop their state (True if they were followed)."""
        found = self._patients.pop(patient_id, None) is not None
        self.counts["discharged"] += found
        return found

    def forget(self, patient_id: Hashable) -> bool:
        """Drop a patient's state to save memory (counted as evicted; True if they were followed)."""
        found = self._patients.pop(patient_id, None) is not None
        self.counts["evicted"] += found
        return found

    def patient_ids(self) -> list[Hashable]:
        """The patients followed now, least recently seen first."""
        return list(self._patients)

    def __len__(self) -> int:
        return len(self._patients)

    def handle(self, record: Mapping[str, Any], *, risk: float | None = None) -> Step | None:
        """A discharge record ends the patient's follow-up (None); any other record is observed (its Step)."""
        pid = discharge_id(record)
        if pid is not None:
            self.discharge(pid)
            return None
        return self.observe(record, risk=risk)

    def open_since(self, patient_id: Hashable) -> str | None:
        """Time (as recorded) of the alert that opened the patient's current episode; None if none is open."""
        state = self._patients.get(patient_id)
        return state.started if state is not None and state.open else None

    def summary(self) -> dict[str, Any]:
        c = self.counts
        t = self.table
        return {
            "records": c["records"], "patients": len(self._patients), "discharged": c["discharged"],
            "evicted": c["evicted"], "max_patients": self.max_patients,
            "alerts": c["alert"], "escalations": c["escalation"], "clears": c["clear"],
            "open_episodes": sum(p.open for p in self._patients.values()),
            "incomplete": c["incomplete"], "levels": {name: c[f"level_{name}"] for name in LEVELS},
            "news2": f"{t.name} {t.version} ({t.path} v{t.file_version})",
            "alert_level": self.alert_level, "clear_after": self.clear_after,
            "risk": self.risk_fn is not None,
        }

    # -- internals ---------------------------------------------------------------------------------------

    def _time(self, value: Any, pid: Hashable, state: _Patient | None) -> tuple[float, str, bool]:
        """Seconds since the epoch, the time as recorded, and whether it had a UTC offset (as the patient's
        earlier records must)."""
        try:
            if isinstance(value, str):
                text = value.strip()
                dt = datetime.fromisoformat(text)
            elif isinstance(value, datetime) and value == value:  # NaT != NaT
                dt, text = value, value.isoformat()
            elif isinstance(value, np.datetime64) and not np.isnat(value):
                dt = pd.Timestamp(value).to_pydatetime()
                text = dt.isoformat()
            else:
                raise ValueError
        except ValueError:
            shown = "missing" if value is None else repr(value)
            raise DataError(f"patient {pid!r}: time is {shown}; expected ISO 8601 such as "
                            "'2024-03-01T08:30:00' or '2024-03-01T08:30:00+00:00'",
                            column="time", rows=[pid]) from None
        aware = dt.tzinfo is not None and dt.utcoffset() is not None
        if state is not None and state.aware is not None and aware != state.aware:
            raise DataError(f"patient {pid!r}: time {text!r} {'has' if aware else 'has no'} UTC offset but "
                            f"earlier records {'do not' if aware else 'do'}; use one convention for a patient",
                            column="time", rows=[pid])
        return (dt.timestamp() if aware else dt.replace(tzinfo=_UTC).timestamp()), text, aware

    def _prepare(self, record: Mapping[str, Any]) -> _Prepared:
        if type(record) is not dict and not isinstance(record, Mapping):
            raise DataError(f"a record must be an object of fields, got {type(record).__name__}")
        pid = record.get("patient_id")
        if type(pid) is not str and type(pid) is not int:
            pid = _plain(pid)
            if pid is None or pid is pd.NA or (isinstance(pid, float) and pid != pid):
                raise DataError("record has no patient_id", column="patient_id")
            if not isinstance(pid, (str, int, float)) or isinstance(pid, bool):
                raise DataError(f"patient_id {pid!r} must be text or a number", column="patient_id")
        elif pid == "":
            raise DataError("record has no patient_id", column="patient_id")
        if self.strict:
            _refuse_unknown_fields(record, pid)
        if record.get("event") is not None:
            raise DataError(f"patient {pid!r}: event {record.get('event')!r} with vital signs; the only event is "
                            f"{DISCHARGE!r}, sent alone with patient_id (and time)", column="event", rows=[pid])
        state = self._patients.get(pid)
        ts, text, aware = self._time(record.get("time"), pid, state)
        if state is not None and state.last_time is not None and ts < state.last_time:
            raise DataError(f"patient {pid!r}: observation time {text} is earlier than the previous observation "
                            f"at {state.last_text}; records must be in time order for each patient",
                            column="time", rows=[pid])
        vitals = parse_vitals(record, self.table, patient=pid)
        ward, bed = place_of(record, pid)
        state = self._follow(pid, state)
        state.aware = aware
        news2 = result_from_parts(vitals_parts(vitals, self.table), self.table)
        step = Step(pid, text, vitals, news2, ward=ward, bed=bed)
        previous = state.last_time
        state.last_time, state.last_text = ts, text
        if self.risk_fn is not None:
            if state.window is None:
                state.window = deque()
            window = state.window
            window.append((ts, vitals, news2.total, len(news2.missing)))
            while ts - window[0][0] > self._window_s:
                window.popleft()
            step.features = features_from_window(window, self._window_s, previous)
        return _Prepared(state, step)

    def _follow(self, pid: Hashable, state: _Patient | None) -> _Patient:
        """The patient's state, marked most recently seen; a new patient may evict the least recently seen."""
        if state is not None:
            self._patients.move_to_end(pid)
            return state
        state = self._patients[pid] = _Patient()
        if self.max_patients is not None:
            while len(self._patients) > self.max_patients:
                self._patients.popitem(last=False)
                self.counts["evicted"] += 1
        return state

    def _risks(self, rows: list[dict[str, float] | None]) -> np.ndarray:
        assert self.risk_fn is not None
        frame = pd.DataFrame(rows, columns=list(FEATURES))
        try:
            out = np.asarray(self.risk_fn(frame), dtype=float).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"risk_fn failed or returned non-numbers: {exc}") from exc
        if out.shape[0] != len(rows):
            raise ConfigError(f"risk_fn returned {out.shape[0]} value(s) for {len(rows)} row(s)")
        if not np.all(np.isfinite(out) & (out >= 0) & (out <= 1)):
            raise ConfigError(f"risk_fn must return probabilities in [0, 1]; got e.g. {out[:5].tolist()}")
        return out

    def _finish(self, prepared: _Prepared, risk: float | None) -> Step:
        step, state = prepared.step, prepared.patient
        r = step.news2
        c = self.counts
        c["records"] += 1
        c[self._level_key[r.level]] += 1
        if not r.complete:
            c["incomplete"] += 1
        if risk is not None:
            risk = float(risk)
            step.risk = risk
        rank = LEVEL_RANK[r.level]
        by_level = rank >= self._alert_rank
        by_risk = risk is not None and risk >= self.risk_threshold
        if by_level or by_risk:
            state.calm = 0
            if not state.open:
                state.open, state.rank, state.started = True, rank, step.time
                step.events.append(self._event("alert", step, by_risk))
            elif rank > state.rank:
                state.rank = rank
                step.events.append(self._event("escalation", step, by_risk))
        elif state.open and r.complete:
            state.calm += 1
            if state.calm >= self.clear_after:
                state.open, state.rank, state.calm = False, -1, 0
                below = self.alert_level or "the alert level"
                reason = (f"below {below}" + (f" and risk < {self.risk_threshold:g}" if risk is not None else "")
                          + f" for {self.clear_after} consecutive complete observation(s)")
                step.events.append(self._event("clear", step, False, [reason]))
        for e in step.events:
            c[e["event"]] += 1
        return step

    def _event(self, kind: str, step: Step, by_risk: bool,
               reasons: list[str] | None = None) -> dict[str, Any]:
        r = step.news2
        if reasons is None:
            reasons = self._reasons(step)
            if by_risk:
                reasons.append(f"learned risk {step.risk:.2f} ≥ threshold {self.risk_threshold:g}")
            if not r.complete:
                reasons.append(f"not recorded: {', '.join(r.missing)} (the level may be higher)")
        event = {"patient_id": step.patient_id, "time": step.time, "event": kind, "news2": r.total,
                 "level": r.level, "complete": r.complete, "missing": r.missing, "reasons": reasons,
                 "response": r.response, "frequency": r.frequency}
        if step.risk is not None:
            event["risk"] = step.risk
        return event

    def _reasons(self, step: Step) -> list[str]:
        v, parts, bands = step.vitals, step.news2.parts, self.table.bands
        out = []
        for name in PARAMETERS:
            p = parts[name]
            if not p:
                continue
            if name == "on_oxygen":
                out.append(f"on oxygen scores {p}")
            elif name == "consciousness":
                label = "C (new confusion)" if v.consciousness == "C" else v.consciousness
                out.append(f"consciousness {label} scores {p}")
            elif name == "spo2":
                out.append(f"spo2 {v.spo2:g}% (scale {v.spo2_scale}) scores {p}")
            else:
                unit = bands[name].unit
                sep = "" if unit.startswith("/") else " "
                out.append(f"{name} {getattr(v, name):g}{sep}{unit} scores {p}")
        return out


# --------------------------------------------------------------------------------------------- run_monitor


def _dump(obj: dict[str, Any]) -> str:
    return dumps(obj, indent=None) + "\n"


def _parse_line(item: Any, line: int) -> Mapping[str, Any] | None:
    if isinstance(item, Mapping):
        return item
    if isinstance(item, (str, bytes)):
        text = item.strip()
        if not text:
            return None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(f"line {line}: not valid JSON ({exc.msg} at column {exc.colno})", line=line) from None
        except (RecursionError, ValueError):  # nested too deeply, or an integer of more than 4,300 digits
            raise RecordError(f"line {line}: not a record (nested too deeply or a number too long); expected a "
                              "JSON object with patient_id, time and vitals", line=line) from None
        if not isinstance(obj, dict):
            raise RecordError(f"line {line}: expected a JSON object with patient_id, time and vitals, "
                              f"got {type(obj).__name__}", line=line)
        return obj
    raise RecordError(f"line {line}: expected a record (mapping or JSON text), got {type(item).__name__}", line=line)


def run_monitor(records: Iterable[Mapping[str, Any] | str], alerts_out: TextIO, scores_out: TextIO | None = None,
                *, batch_size: int = 1, **monitor_kwargs: Any) -> dict[str, Any]:
    """Run a :class:`Monitor` over ``records`` and write JSON lines; return a summary.

    ``records`` yields dicts or JSON-lines text (an open file or ``sys.stdin`` works; blank lines are
    skipped but counted). Each alert event is written to ``alerts_out`` as one complete line and flushed;
    with ``scores_out`` every observation's score is written too. ``batch_size`` > 1 calls ``risk_fn``
    once per batch (faster replay; events then appear a batch late, so keep 1 for a live feed).

    A bad record stops the run with :class:`RecordError` naming the line and field; everything before it
    has been processed and written, so the output files remain valid JSON lines.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number ≥ 1, got {batch_size!r}")
    monitor = Monitor(**monitor_kwargs)
    batched = batch_size > 1 and monitor.risk_fn is not None
    pending: list[_Prepared] = []

    def emit(step: Step) -> None:
        if step.events:
            alerts_out.write("".join(_dump(e) for e in step.events))
            alerts_out.flush()
        if scores_out is not None:
            scores_out.write(_dump(step.score_record()))

    def flush() -> None:
        if pending:
            risks = monitor._risks([p.step.features for p in pending])
            for p, r in zip(pending, risks, strict=True):
                emit(monitor._finish(p, r))
            pending.clear()

    line = 0
    try:
        for line, item in enumerate(records, 1):
            record = _parse_line(item, line)
            if record is None:
                continue
            try:
                pid = discharge_id(record)
                if pid is not None:
                    if batched:
                        flush()  # the patient's pending observations are finished before their state goes
                    monitor.discharge(pid)
                    continue
                prepared = monitor._prepare(record)
            except DataError as exc:
                raise RecordError(f"line {line}: field {exc.column or '?'}: {exc}", line=line, column=exc.column,
                                  rows=exc.rows) from exc
            if batched:
                pending.append(prepared)
                if len(pending) >= batch_size:
                    flush()
            else:
                risk = monitor._risks([prepared.step.features])[0] if monitor.risk_fn is not None else None
                emit(monitor._finish(prepared, risk))
    finally:
        if batched:
            flush()
        if scores_out is not None:
            scores_out.flush()
    return monitor.summary()
