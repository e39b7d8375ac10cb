"""The retraining recipe: a challenger trained on recent data, promoted only when it is shown to be at least as good.

``challenge(CHAMPION, NEW_DATA, POLICY, OUT, *, trigger, now)`` loads the champion bundle and the new labelled data
(harmonized as the champion's config says), keeps the rows whose calendar time (``window.time_column``) is at or
before ``now``, selects the policy's data window, splits off the held-out patients (the most recent ones, or a
seeded stratified random part), trains the challenger on the rest, scores champion and challenger on the SAME
held-out rows with a paired bootstrap, and evaluates every gate of the policy:

- ``c_index_diff_lower``: the lower CI bound of challenger − champion discrimination (Harrell's or Uno's C for
  survival, AUROC for binary tasks) must be at least this value;
- ``calibration_slope: [low, high]``: the challenger's slope on the held-out rows (survival: the coefficient of its
  log-hazard in a Cox model fitted on them; binary: logistic recalibration slope) must lie in the interval;
- ``subgroups``: no subgroup of the named columns may lose more than ``max_drop`` of discrimination against the
  champion (paired bootstrap within the group; groups under ``min_size`` rows are listed, not scored);
- ``drift``: the new window against the champion's training rows (``evaluate.drift``): largest per-feature PSI and
  the domain classifier's out-of-fold AUROC at most the bounds (a guard against a broken feed or a population the
  champion's config was never meant for).

A gate is ``pass``, ``fail`` or ``not evaluable`` (with the reason: no events among the held-out rows, no subgroup
large enough, the champion's training rows cannot be re-loaded, ...); the challenger is promoted only when every
gate passes, so a gate that cannot be computed blocks promotion instead of passing silently.

Challengers (``challenger.kind``): ``retrain`` trains the champion's own run config (models, settings, seed) on the
window's training part; its config's data sources are the new source with filters on the time column, so the
bundle re-loads exactly its training rows (``precimed drift --reference train``). ``recalibrate`` and ``finetune``
update the champion's primary model through ``workflows.updating`` (the champion's config is kept, as in
``precimed update``).

Writes, in one rename, ``OUT/challenger/bundle`` (metadata: ``parent`` = the champion's ref, ``retraining`` = the
data window as counts, time range and SHA-256 digests of the sorted ids, never the ids), ``OUT/challenger/
metrics.json`` and ``report.html`` (retrain only), ``OUT/decision.json`` and ``OUT/retraining.html``. A champion
trained with ``uncertainty:``: a retrained challenger holds its own calibration rows out of the training part and
keeps the intervals fitted on them (coverage on the held-out rows in ``decision.json["uncertainty"]``); an updated
one drops the intervals of the updated model (``workflows.updating.carried_uncertainty``). A failure
anywhere raises a PrecimedError and leaves ``OUT`` absent. This module never touches a registry: the service layer
(``precimed retrain``) registers and stages a promoted challenger and writes the audit row.

The schedule: :class:`SystemClock` (sleeps) and :class:`SimulatedClock` (advances without sleeping) drive
:func:`run_schedule`, which calls a job once per period until a given time; with the simulated clock each run's
``now`` is the simulated time, so it sees only the rows whose time column is at or before it.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from precimed import expressions
from precimed.atomic import atomic_dir
from precimed.bundle import Bundle, load_bundle, save_bundle
from precimed.cohort import Cohort, split_rows
from precimed.config import RunConfig, SourceConfig, SplitConfig, parse_config
from precimed.errors import ConfigError, DataError, PrecimedError
from precimed.evaluate.bootstrap import bootstrap_ci
from precimed.evaluate.drift import cox_calibration_slope, domain_classifier, feature_drift
from precimed.evaluate.drift_report import write_page
from precimed.evaluate.metrics import binary_metrics, undefined_as_nan
from precimed.evaluate.plots import figure_uri
from precimed.evaluate.scoring import metric_function, model_outputs, paired, survival_grid
from precimed.evaluate.subgroups import subgroup_metrics
from precimed.evaluate.survival import survival_metrics
from precimed.jsonio import dumps, write_json
from precimed.limits import read_user_text
from precimed.workflows._run import Echo, check_outputs_apart, load_cohort, quiet
from precimed.workflows.drift import reference_frame
from precimed.workflows.fairness import subgroup_columns
from precimed.workflows.training import train_from_config
from precimed.workflows.updating import (
    PARENT_SUFFIX,
    FineTuneSettings,
    UpdateSettings,
    carried_uncertainty,
    data_window,
    update_model,
)

__all__ = ["CHALLENGERS", "Decision", "Gate", "Period", "RetrainPolicy", "RetrainingError", "SimulatedClock",
           "SystemClock", "calendar_year", "challenge", "load_policy", "parse_period", "parse_time", "run_schedule",
           "select_window"]

CHALLENGERS = ("retrain", "recalibrate", "finetune")
PASS, FAIL, NOT_EVALUABLE = "pass", "fail", "not evaluable"
TASKS = ("survival", "binary")
DAYS_PER_YEAR = 365.25


# ----- the policy --------------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowPolicy(_Strict):
    """Which rows of the new data the challenger may use. ``time_column`` holds calendar years as numbers (1987, or
    1987.5); rows later than the run's ``now`` are never seen. ``last``: only the last N years of the data seen
    (rows with time > latest − N, latest = the most recent time at or before now); ``rows``: the most recent N rows
    (widened to whole time values, so a year is never split); neither: every row up to now."""

    time_column: str | None = None
    last: float | None = Field(None, gt=0)
    rows: int | None = Field(None, ge=10)

    @model_validator(mode="after")
    def _consistent(self) -> WindowPolicy:
        if self.last is not None and self.rows is not None:
            raise ValueError("give at most one of 'last' (years) and 'rows'")
        if (self.last is not None or self.rows is not None) and self.time_column is None:
            raise ValueError("'last' and 'rows' count back from now along time_column; name it")
        if self.time_column is not None and not self.time_column.isidentifier():
            raise ValueError(f"time_column {self.time_column!r}: the window filters on it, so it must be a plain "
                             "column name (letters, digits, underscores); rename it in the source")
        return self


class HoldoutPolicy(_Strict):
    """The held-out patients both models are scored on. ``recent``: the last ``last`` years of the window (counted
    back from its most recent time), or its most recent ``fraction`` (widened to whole time values); ``random``: a
    seeded random ``fraction`` stratified on the outcome. ``min_rows``: fewer held-out rows stop the run (a
    comparison on a handful of patients decides nothing)."""

    kind: Literal["recent", "random"] = "recent"
    last: float | None = Field(None, gt=0)
    fraction: float | None = Field(None, gt=0, lt=1)
    min_rows: int = Field(30, ge=5)

    @model_validator(mode="after")
    def _consistent(self) -> HoldoutPolicy:
        if self.kind == "recent" and (self.last is None) == (self.fraction is None):
            raise ValueError("a recent holdout needs exactly one of 'last' (years) and 'fraction'")
        if self.kind == "random" and (self.fraction is None or self.last is not None):
            raise ValueError("a random holdout needs 'fraction' (and no 'last')")
        return self


class ChallengerPolicy(_Strict):
    """How the challenger is made: ``retrain`` (the champion's config on the window's training part),
    ``recalibrate`` (the champion's primary model, recalibrated) or ``finetune`` (its net's weights trained further;
    ``finetune`` settings as in ``precimed update``)."""

    kind: Literal["retrain", "recalibrate", "finetune"] = "retrain"
    finetune: FineTuneSettings = FineTuneSettings()


class SubgroupGate(_Strict):
    columns: list[str] = Field(min_length=1)
    max_drop: float = Field(ge=0, le=1)
    min_size: int = Field(30, ge=5)


class DriftGate(_Strict):
    max_psi: float | None = Field(None, gt=0)
    max_domain_auroc: float | None = Field(None, gt=0.5, le=1)

    @model_validator(mode="after")
    def _something(self) -> DriftGate:
        if self.max_psi is None and self.max_domain_auroc is None:
            raise ValueError("give max_psi, max_domain_auroc or both")
        return self


class Gates(_Strict):
    c_index_diff_lower: float | None = Field(None, ge=-1, le=1)
    calibration_slope: tuple[float, float] | None = None
    subgroups: SubgroupGate | None = None
    drift: DriftGate | None = None

    @field_validator("calibration_slope")
    @classmethod
    def _interval(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (0 <= v[0] < v[1]):
            raise ValueError(f"give [low, high] with 0 <= low < high, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _at_least_one(self) -> Gates:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(f"give at least one gate of {list(type(self).model_fields)}: a challenger promoted "
                             "without a gate would be promoted unchecked")
        return self


class RetrainPolicy(_Strict):
    """The retraining policy (the ``--policy`` YAML): data window, holdout, challenger, bootstrap, gates.

    ``filter``: an inclusion criterion on the new rows (an expression, as in a run config's source). The champion's
    own filter is not applied: it usually holds the champion's training period. ``c_index``: which C-index the
    survival gates compare (``harrell`` or ``uno``); binary tasks compare AUROC.
    """

    window: WindowPolicy = WindowPolicy()
    holdout: HoldoutPolicy
    filter: str | None = None
    challenger: ChallengerPolicy = ChallengerPolicy()
    c_index: Literal["harrell", "uno"] = "harrell"
    bootstrap: int = Field(200, ge=20, le=10_000)
    seed: int = 0
    level: float = Field(0.95, gt=0, lt=1)
    gates: Gates

    @field_validator("filter")
    @classmethod
    def _expression(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                expressions.parse(v, where="filter")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _recent_needs_time(self) -> RetrainPolicy:
        if self.holdout.kind == "recent" and self.window.time_column is None:
            raise ValueError("holdout.kind 'recent' needs window.time_column (which patients are recent?)")
        return self


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    """The keys allowed where an unknown key was found (walks the policy's models along the error's location)."""
    model: Any = RetrainPolicy
    for part in loc[:-1]:
        info = getattr(model, "model_fields", {}).get(part) if isinstance(part, str) else None
        if info is None:
            return []
        annotation = info.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = [x for x in first["loc"] if not (isinstance(x, str) and x.startswith("function-"))]
    where = ".".join(str(x) for x in loc) or "policy"
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc)
        return f"{where}: unknown key" + (f"; allowed here: {allowed}" if allowed else "")
    if first["type"] == "missing":
        return f"{where}: required key missing"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


def load_policy(source: Path | str | Mapping[str, Any] | RetrainPolicy) -> RetrainPolicy:
    """The policy from a YAML file (or a mapping); a wrong key or value is one ConfigError line naming the key."""
    if isinstance(source, RetrainPolicy):
        return source
    where = "policy"
    if isinstance(source, Mapping):
        raw: Any = dict(source)
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise ConfigError(f"--policy {path}: no such file")
        try:
            raw = yaml.safe_load(read_user_text(path))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: a retraining policy is a mapping with at least 'holdout' and 'gates'")
    try:
        return RetrainPolicy.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_error(exc)}") from None


# ----- clocks and the schedule -------------------------------------------------------------------------------------
class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep_until(self, when: datetime) -> None: ...


class SystemClock:
    """The real clock: ``sleep_until`` sleeps (in steps of at most a minute, so Ctrl-C stops it promptly)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep_until(self, when: datetime) -> None:
        while (left := (when - self.now()).total_seconds()) > 0:
            time.sleep(min(left, 60.0))


class SimulatedClock:
    """A clock that starts at ``start`` and jumps to each due time without sleeping (replaying the past)."""

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start)

    def now(self) -> datetime:
        return self._now

    def sleep_until(self, when: datetime) -> None:
        self._now = max(self._now, _aware(when))


_PERIOD = re.compile(r"^\s*(\d+)\s*(s|min|h|d|w|mo|y)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "min": "minutes", "h": "hours", "d": "days", "w": "weeks", "mo": "months", "y": "years"}


@dataclass(frozen=True)
class Period:
    """A schedule's period: ``count`` ``unit`` (months and years are calendar months and years)."""

    count: int
    unit: str

    def after(self, when: datetime) -> datetime:
        if self.unit in ("months", "years"):
            return (pd.Timestamp(when) + pd.DateOffset(**{self.unit: self.count})).to_pydatetime()
        return when + timedelta(**{self.unit: self.count})

    def __str__(self) -> str:
        return f"{self.count} {self.unit}"


def parse_period(text: str) -> Period:
    """``"7d"``, ``"12h"``, ``"2w"``, ``"1mo"``, ``"1y"``, ``"30min"``, ``"45s"`` → Period."""
    found = _PERIOD.match(str(text))
    if not found or int(found.group(1)) < 1:
        raise ConfigError(f"--every {text!r}: give a positive count and a unit: s, min, h, d, w, mo or y "
                          "(e.g. 7d, 1mo, 1y)")
    return Period(int(found.group(1)), _UNITS[found.group(2).lower()])


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_time(text: str, *, option: str) -> datetime:
    """An ISO date or date-time (``1988-01-01``, ``1988-01-01T12:00``); UTC unless it names a zone."""
    try:
        return _aware(datetime.fromisoformat(str(text).strip()))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: give an ISO date such as 1988-01-01 or 1988-01-01T12:00") from None


T = TypeVar("T")


def run_schedule(clock: Clock, job: Callable[[datetime], T], *, every: Period | None = None,
                 start: datetime | None = None, until: datetime | None = None, max_runs: int | None = None
                 ) -> list[T]:
    """Call ``job(now)`` at ``start`` (default: the clock's current time), then once per ``every`` until ``until``
    (inclusive) or ``max_runs``; ``every=None`` runs once. Runs are due at fixed times (start + k·every): a run that
    overruns its period is followed at once by the next one. The real clock sleeps between runs (Ctrl-C stops it);
    the simulated clock jumps. Returns the jobs' results in order."""
    results: list[T] = []
    due = clock.now() if start is None else _aware(start)
    until = None if until is None else _aware(until)
    while until is None or due <= until:
        clock.sleep_until(due)
        results.append(job(clock.now()))
        if every is None or (max_runs is not None and len(results) >= max_runs):
            break
        due = every.after(due)
    return results


def calendar_year(when: datetime) -> float:
    """A moment as a decimal calendar year (1990-07-02 → about 1990.5), as numeric time columns are read."""
    start = datetime(when.year, 1, 1, tzinfo=when.tzinfo)
    length = (datetime(when.year + 1, 1, 1, tzinfo=when.tzinfo) - start).total_seconds()  # 365 or 366 days
    return when.year + (when - start).total_seconds() / length


# ----- results -----------------------------------------------------------------------------------------------------
class RetrainingError(PrecimedError):
    """A retraining run failed for a reason that is not the user's data or configuration (e.g. the training
    raised); the message names the stage and the original error."""


@dataclass
class Gate:
    """One gate's verdict: ``status`` is pass, fail or not evaluable (``reason`` says why)."""

    name: str
    status: str
    value: float | None
    threshold: Any
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "value": self.value, "threshold": self.threshold,
                "reason": self.reason, "detail": self.detail}


@dataclass
class Decision:
    """What a challenge decided: promote (every gate passed), the gates, the metrics, the files written, and the
    whole decision document (decision.json) with its SHA-256 (``report_sha256``)."""

    promote: bool
    gates: list[Gate]
    metrics: dict[str, Any]
    paths: dict[str, Path]
    doc: dict[str, Any]
    report_sha256: str

    @property
    def failed_gates(self) -> list[Gate]:
        return [g for g in self.gates if g.status != PASS]


# ----- data --------------------------------------------------------------------------------------------------------
def _known_harmonization(data: str, cfg: RunConfig) -> dict[str, Any]:
    """rename / derive of the champion's source that reads the same dataset or file (else its training source's):
    new rows arrive in the format the champion was trained on."""
    path = Path(data)
    for known in (cfg.data.train, cfg.data.test):
        if known is None:
            continue
        if known.dataset == data or (known.path is not None and path.exists() and known.path == path.resolve()):
            return {"rename": dict(known.rename), "derive": dict(known.derive)}
    return {"rename": dict(cfg.data.train.rename), "derive": dict(cfg.data.train.derive)}


def new_data_source(data: str, cfg: RunConfig, extra_filter: str | None = None) -> SourceConfig:
    """The new data as a source: a built-in dataset name, a table file, or a YAML source spec (``dataset``/``path``
    with optional ``rename``/``derive``/``filter``; keys it leaves out come from the champion's source for the same
    data). The champion's filter is never carried over; ``extra_filter`` (the policy's) is added."""
    path = Path(data)
    spec: dict[str, Any]
    if path.suffix in (".yaml", ".yml") and path.is_file():
        try:
            loaded = yaml.safe_load(read_user_text(path))
        except yaml.YAMLError as exc:
            raise ConfigError(f"--data {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"--data {path}: a source spec is a mapping with 'dataset' or 'path'")
        origin = loaded.get("dataset") or loaded.get("path") or ""
        if loaded.get("path") is not None and not Path(loaded["path"]).is_absolute():
            loaded["path"] = str((path.parent / loaded["path"]).resolve())
        spec = _known_harmonization(str(origin), cfg) | loaded
    elif path.exists():
        spec = {"path": str(path.resolve()), **_known_harmonization(data, cfg)}
    else:
        from precimed.data import list_datasets

        if data not in [d.name for d in list_datasets()]:
            raise ConfigError(f"--data {data!r}: neither a file nor a built-in dataset (`precimed datasets` lists "
                              "them)")
        spec = {"dataset": data, **_known_harmonization(data, cfg)}
    spec["filter"] = _and(spec.get("filter"), extra_filter)
    try:
        return SourceConfig.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--data {data}: {'.'.join(map(str, first['loc'])) or 'source'}: "
                          f"{first['msg'].removeprefix('Value error, ')}") from None


def _and(*conditions: str | None) -> str | None:
    parts = [c for c in conditions if c]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else " & ".join(f"({c})" for c in parts)


def _with_filter(source: SourceConfig, condition: str | None) -> SourceConfig:
    data = source.model_dump(mode="json", exclude_none=True)
    data["filter"] = _and(source.filter, condition)
    return SourceConfig.model_validate(data)


def _number(v: float) -> str:
    """A time value written into a filter exactly (1990.0 → '1990', 1987.5 → '1987.5')."""
    return f"{v:.15g}"


@dataclass
class Window:
    """The rows a run uses: the source filters that select them, and what they are (counts, times, id digests)."""

    base: SourceConfig          # every usable row of the new data (no time restriction)
    train: SourceConfig         # the challenger's training rows (random holdout: the whole window)
    holdout: SourceConfig | None  # the held-out rows (random holdout: None, the split is seeded)
    window: SourceConfig        # the whole window
    describe: dict[str, Any]
    notes: list[str]


def _times(cohort: Cohort, column: str) -> np.ndarray:
    if column not in cohort.frame.columns:
        raise DataError(f"{cohort.name}: window.time_column {column!r} is not a column of the new data (after "
                        f"harmonization); available: {sorted(map(str, cohort.frame.columns))[:25]}", column=column)
    raw = cohort.frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = raw.notna().to_numpy() & np.isnan(values)
    if bad.any():
        raise DataError(f"{cohort.name}: window.time_column {column!r} must hold calendar years as numbers "
                        f"(e.g. 1987 or 1987.5); found {raw[bad].iloc[0]!r}. Derive a year from a date in the "
                        "source (derive:)", column=column)
    return values


def select_window(cfg: RunConfig, data: str, policy: RetrainPolicy, now: datetime, *, echo: Echo = quiet) -> Window:
    """Load the new data as the champion's config types it; apply ``now``, the window and the holdout, as source
    filters on the time column (so the challenger's config re-loads exactly its rows)."""
    base = new_data_source(data, cfg, policy.filter)
    echo(f"loading the new data {base.label}")
    cohort = load_cohort(base, cfg)
    if len(cohort) == 0:
        raise DataError(f"{base.label}: the new data has no labelled rows")
    w, h = policy.window, policy.holdout
    notes: list[str] = []
    col = w.time_column
    if col is None:
        window_src = base
        times = None
        lo_w = hi = None
        n_window = len(cohort)
    else:
        times = _times(cohort, col)
        limit = calendar_year(now)
        unknown = int(np.isnan(times).sum())
        if unknown:
            notes.append(f"{unknown} row(s) without a value in {col!r} are left out (their time is unknown)")
        seen = np.isfinite(times) & (times <= limit)
        if not seen.any():
            known = times[np.isfinite(times)]
            rng = f"{known.min():g}–{known.max():g}" if known.size else "none"
            raise DataError(f"{base.label}: no row has {col} <= {limit:.3f} (now, {now.date()}); {col} in the data: "
                            f"{rng}", column=col)
        later = int((np.isfinite(times) & (times > limit)).sum())
        if later:
            notes.append(f"{later} row(s) with {col} after now ({now.date()}, {limit:.3f}) are not seen by this run")
        keep = seen.copy()
        latest = float(times[seen].max())  # windows count back from the most recent row seen, not from now
        if w.last is not None:
            keep &= times > latest - w.last
        elif w.rows is not None:
            order = np.sort(times[seen])[::-1]
            cut = order[min(w.rows, order.size) - 1]
            keep &= times >= cut
        if not keep.any():
            raise DataError(f"{base.label}: the window holds no row (now {now.date()}, {limit:.3f})", column=col)
        lo_w, hi = float(times[keep].min()), float(times[keep].max())
        window_src = _with_filter(base, f"({col} >= {_number(lo_w)}) & ({col} <= {_number(hi)})")
        n_window = int(keep.sum())
    if h.kind == "random":
        n_hold = int(math.ceil(n_window * h.fraction))  # type: ignore[operator]
        train_src, hold_src = window_src, None
        hold_label = f"a seeded random {h.fraction:g} of the window, stratified on the outcome"
        t_h = None
    else:
        assert times is not None and col is not None
        inside = times[np.isfinite(times) & (times >= lo_w) & (times <= hi)]  # type: ignore[operator]
        if h.last is not None:
            t_h = float(inside[inside > hi - h.last].min())  # type: ignore[operator]
        else:
            ordered = np.sort(inside)
            t_h = float(ordered[min(int(math.floor(ordered.size * (1 - h.fraction))), ordered.size - 1)])  # type: ignore[operator]
        n_hold = int((inside >= t_h).sum())
        if n_hold == inside.size:
            raise DataError(f"{base.label}: the held-out part ({col} >= {t_h:g}) takes every row of the window "
                            f"({col} {lo_w:g}–{hi:g}); nothing is left to train the challenger on: widen the window",
                            column=col)
        train_src = _with_filter(base, f"({col} >= {_number(lo_w)}) & ({col} < {_number(t_h)})")  # type: ignore[arg-type]
        hold_src = _with_filter(base, f"({col} >= {_number(t_h)}) & ({col} <= {_number(hi)})")  # type: ignore[arg-type]
        hold_label = f"the most recent patients: {col} " + (f"{t_h:g}" if t_h == hi else f"{t_h:g}–{hi:g}")
    if n_hold < h.min_rows:
        raise DataError(f"{base.label}: the held-out part has {n_hold} row(s); at least holdout.min_rows = "
                        f"{h.min_rows} are needed to compare champion and challenger")
    describe: dict[str, Any] = {"source": base.label, "filter": policy.filter, "time_column": col,
                                "now": now.isoformat(), "rows": n_window, "holdout_rule": hold_label}
    if col is not None:
        describe |= {"time_range": [lo_w, hi], "now_as_year": calendar_year(now), "holdout_from": t_h}
    return Window(base, train_src, hold_src, window_src, describe, notes)


def _part(cohort: Cohort, task: str, time_column: str | None) -> dict[str, Any]:
    out = data_window(cohort, task)
    if time_column is not None and time_column in cohort.frame.columns and len(cohort):
        t = pd.to_numeric(cohort.frame[time_column], errors="coerce")
        out["time_range"] = [float(t.min()), float(t.max())]
    return out


# ----- the challenger ----------------------------------------------------------------------------------------------
@dataclass
class Challenger:
    """The trained challenger before it is written: the model compared, its preprocessor, and how to save it."""

    name: str
    model: Any
    preprocessor: Any
    train: Cohort
    holdout: Cohort
    save: Callable[[Path, dict[str, Any]], Path]
    extra_dirs: dict[str, Path] = field(default_factory=dict)
    uncertainty: dict[str, Any] | None = None  # what became of per-patient uncertainty (decision.json)


def retraining_config(cfg: RunConfig, window: Window, policy: RetrainPolicy) -> RunConfig:
    """The champion's run config with the window as its data: training part as the training source, held-out rows
    as the external test source (a random holdout: the config's stratified split with the policy's fraction)."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    if window.holdout is not None:
        data["data"] = {"train": window.train.model_dump(mode="json", exclude_none=True),
                        "test": window.holdout.model_dump(mode="json", exclude_none=True)}
        data["split"] = {"kind": "external"}
    else:
        data["data"] = {"train": window.window.model_dump(mode="json", exclude_none=True)}
        data["split"] = {"kind": "stratified", "test_fraction": policy.holdout.fraction}
        data["seed"] = policy.seed
    data["evaluation"] = {**data.get("evaluation", {}), "bootstrap": policy.bootstrap}
    return parse_config(data, source=f"{cfg.name} (retraining config)")


def _random_parts(cohort: Cohort, policy: RetrainPolicy, cfg: RunConfig) -> tuple[Cohort, Cohort]:
    split = SplitConfig(kind="stratified", test_fraction=policy.holdout.fraction)  # type: ignore[arg-type]
    try:
        tr, te = split_rows(cohort, split, cfg.task, policy.seed)
    except ValueError as exc:
        raise DataError(f"{cohort.name}: cannot hold out a stratified {policy.holdout.fraction:g} of "
                        f"{len(cohort)} rows ({exc})") from None
    return (cohort.subset(np.sort(tr), f"{cohort.name} (training part)"),
            cohort.subset(np.sort(te), f"{cohort.name} (held out)"))


def _retrain(champion: Bundle, window: Window, policy: RetrainPolicy, work: Path, echo: Echo) -> Challenger:
    cfg = retraining_config(champion.config, window, policy)
    echo(f"training the challenger: the champion's config on {window.train.label} ({window.train.filter})")
    run = train_from_config(cfg, work / "training", progress=False, echo=echo)
    trained = load_bundle(run.bundle_path)
    classes = trained.metadata.get("classes")
    if window.holdout is not None:
        train = load_cohort(cfg.data.train, cfg, classes=classes)
        holdout = load_cohort(cfg.data.test, cfg, classes=classes)  # type: ignore[arg-type]
    else:
        train, holdout = _random_parts(load_cohort(cfg.data.train, cfg, classes=classes), policy, cfg)
    fitted, calibration = _training_rows(trained.metadata)
    if fitted + calibration != len(train):
        held = f" and held out {calibration} to calibrate its uncertainty" if calibration else ""
        raise DataError(f"the challenger was trained on {fitted} rows{held} but its config re-loads {len(train)}; "
                        "the new data changed during the run")

    def save(dest: Path, extra: dict[str, Any]) -> Path:
        meta = {k: v for k, v in trained.metadata.items() if k not in _GENERATED}
        card = trained.path / "model_card.md"
        return save_bundle(dest, config=cfg, preprocessor=trained.preprocessor, models=trained.models,
                           background=trained.background, metadata=meta | extra,
                           uncertainty=trained.uncertainty or None,  # fitted on the challenger's own calibration rows
                           extra_files={"model_card.md": card.read_bytes()} if card.is_file() else None)

    primary = trained.primary
    return Challenger(primary, trained.models[primary], trained.preprocessor, train, holdout, save,
                      {"metrics.json": run.out_dir / "metrics.json", "report.html": run.out_dir / "report.html"},
                      _challenger_uncertainty(trained.metadata, primary))


def _training_rows(metadata: Mapping[str, Any]) -> tuple[int, int]:
    """(rows the challenger's models were fitted on, rows held out to calibrate its uncertainty): a run with
    ``uncertainty:`` holds the calibration rows out of the training part, so together they are the training part."""
    calibration = ((metadata.get("uncertainty") or {}).get("calibration_data") or {}).get("n") or 0
    return int(metadata["training_data"]["n"]), int(calibration)


def _challenger_uncertainty(metadata: Mapping[str, Any], primary: str) -> dict[str, Any] | None:
    """decision.json's summary of the retrained challenger's per-patient uncertainty: level, calibration rows and
    its coverage on the held-out rows (the training run's check; its test rows are the held-out rows)."""
    unc = metadata.get("uncertainty")
    if not unc:
        return None
    check = (unc.get("coverage") or {}).get(primary) or {}
    return {"kept": True, "level": unc.get("level"), "method": check.get("method"),
            "n_calibration": check.get("n_calibration"), "n_evaluated": check.get("n_evaluated"),
            "coverage": check.get("metrics"),
            "note": "fitted on the challenger's own calibration rows (held out of its training part); checked on "
                    "the held-out rows"}


_GENERATED = ("format", "name", "precimed_version", "created_utc", "libraries", "config", "models", "sha256",
              "metadata_sha256")


def _update(champion: Bundle, window: Window, policy: RetrainPolicy, echo: Echo) -> Challenger:
    cfg = champion.config
    classes = champion.metadata.get("classes")
    if window.holdout is not None:
        train = load_cohort(window.train, cfg, classes=classes)
        holdout = load_cohort(window.holdout, cfg, classes=classes)
    else:
        train, holdout = _random_parts(load_cohort(window.window, cfg, classes=classes), policy, cfg)
    method = policy.challenger.kind
    settings = UpdateSettings(seed=policy.seed, finetune=policy.challenger.finetune)
    echo(f"{method} of {champion.primary!r} from {champion.ref} on {len(train)} rows")
    update = update_model(champion, train, method=method, settings=settings)
    name = update.name
    keep_parent = update.preprocessor is champion.preprocessor
    models = {name: update.model, **({name + PARENT_SUFFIX: champion.models[name]} if keep_parent else {})}
    uncertainty, uncertainty_note = carried_uncertainty(champion, name, keep_parent=keep_parent)
    if uncertainty_note is not None:
        echo(uncertainty_note["note"])
    record = {"parent": champion.ref, "parent_model": name, "method": method,
              "settings": settings.model_dump(mode="json"), "fitted": update.details,
              "data": data_window(train, cfg.task.kind), "holdout": data_window(holdout, cfg.task.kind),
              **({"uncertainty": uncertainty_note} if uncertainty_note is not None else {})}

    def save(dest: Path, extra: dict[str, Any]) -> Path:
        return save_bundle(dest, config=cfg, preprocessor=update.preprocessor, models=models,
                           background=champion.background if keep_parent else None, uncertainty=uncertainty,
                           metadata={
            "primary_model": name,
            "comparisons": [f"{name} - {name}{PARENT_SUFFIX}"] if keep_parent else [],
            "id_column": champion.metadata["id_column"],
            "classes": classes,
            "feature_names_out": update.preprocessor.get_feature_names_out().tolist(),
            "training_data": champion.metadata.get("training_data"),
            "validation_data": holdout.describe(cfg.task),
            "intended_use": champion.metadata.get("intended_use"),
            "update": record,
        } | extra)

    note = None if uncertainty_note is None else uncertainty_note | {"kept": False}
    return Challenger(name, update.model, update.preprocessor, train, holdout, save, uncertainty=note)


# ----- scoring and gates -------------------------------------------------------------------------------------------
def _disc_key(task: str, policy: RetrainPolicy) -> str:
    return "auroc" if task == "binary" else f"c_{policy.c_index}"


def _outputs(model: Any, preprocessor: Any, holdout: Cohort, task: str, grid: np.ndarray | None
             ) -> dict[str, np.ndarray]:
    X = preprocessor.transform(holdout.X, out_of_range="missing")
    return model_outputs(model, X, task, grid)


def score_pair(cfg: RunConfig, y: np.ndarray, champion: Mapping[str, np.ndarray], challenger: Mapping[str, np.ndarray],
               *, grid: np.ndarray | None, horizons: Sequence[float], policy: RetrainPolicy) -> dict[str, Any]:
    """Both models' metrics on the held-out rows with bootstrap CIs, and challenger − champion with a paired CI
    (every replicate resamples the rows once and scores both models on that draw)."""
    task = cfg.task.kind
    boot = dict(n_boot=policy.bootstrap, seed=policy.seed, level=policy.level)
    fns = {name: metric_function(task, y, out, threshold=cfg.evaluation.threshold, horizons=horizons, grid=grid)
           for name, out in (("champion", champion), ("challenger", challenger))}
    with undefined_as_nan():
        out = {name: bootstrap_ci(fn, len(y), **boot) for name, fn in fns.items()}
        out["difference"] = bootstrap_ci(paired(fns["challenger"], fns["champion"]), len(y), **boot)
    if task == "survival":
        for name, o in (("champion", champion), ("challenger", challenger)):
            out[name]["calibration_slope"] = cox_calibration_slope(y[:, 0], y[:, 1], o["risk"], level=policy.level)
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(float(x))


def _discrimination_gate(metrics: dict[str, Any], key: str, bound: float) -> Gate:
    diff = metrics["difference"].get(key, {})
    lo = diff.get("ci_low")
    detail = {"metric": key, "difference": diff, "champion": metrics["champion"].get(key),
              "challenger": metrics["challenger"].get(key)}
    name = "c_index_diff_lower"
    if not _finite(lo) or not _finite(diff.get("value")):
        return Gate(name, NOT_EVALUABLE, None, bound, f"{key} is undefined on the held-out rows (no events, or one "
                    "outcome class) or in too many bootstrap replicates", detail)
    status = PASS if lo >= bound else FAIL
    reason = (f"CI lower bound of challenger − champion {key} is {lo:+.4f}; "
              f"{'at least' if status == PASS else 'below'} {bound:+.4f}")
    return Gate(name, status, float(lo), bound, reason, detail)


def _calibration_gate(metrics: dict[str, Any], interval: tuple[float, float]) -> Gate:
    slope = metrics["challenger"].get("calibration_slope", {})
    v = slope.get("value")
    lo, hi = interval
    detail = {"challenger": slope, "champion": metrics["champion"].get("calibration_slope")}
    if not _finite(v):
        return Gate("calibration_slope", NOT_EVALUABLE, None, [lo, hi], "the challenger's calibration slope is "
                    "undefined on the held-out rows (no events, one class or constant predictions)", detail)
    status = PASS if lo <= v <= hi else FAIL
    return Gate("calibration_slope", status, float(v), [lo, hi],
                f"challenger's slope {v:.3f} is {'inside' if status == PASS else 'outside'} [{lo:g}, {hi:g}]", detail)


def _subgroup_gate(cfg: RunConfig, spec: SubgroupGate, holdout: Cohort, y: np.ndarray,
                   outs: Mapping[str, Mapping[str, np.ndarray]], key: str, policy: RetrainPolicy) -> Gate:
    """Challenger − champion ``key`` within each subgroup of the held-out rows (paired bootstrap in the group)."""
    task = cfg.task.kind
    threshold = -spec.max_drop
    missing = [c for c in spec.columns if c not in holdout.frame.columns]
    present = [c for c in spec.columns if c not in missing]
    detail: dict[str, Any] = {"metric": key, "min_size": spec.min_size, "groups": [], "missing_columns": missing}
    if present:
        sub_cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"subgroups": present})})
        groups = subgroup_columns(sub_cfg, holdout)

        def fn(i: np.ndarray) -> dict[str, float]:
            values = {}
            for name, out in outs.items():
                if task == "survival":
                    m = survival_metrics(y[i, 0], y[i, 1], out["risk"][i], horizons=[_tau(y[i, 0], cfg)])
                else:
                    m = binary_metrics(y[i], out["proba"][i])
                values[name] = m[key]
            return values | {"difference": values["challenger"] - values["champion"]}

        events = y[:, 1] if task == "survival" else y
        table = subgroup_metrics(groups, fn, len(y), n_boot=policy.bootstrap, seed=policy.seed, level=policy.level,
                                 events=events, min_size=spec.min_size)
        for column, entries in table.items():
            for label, entry in entries.items():
                row = {"column": column, "group": str(label), "n": entry["n"], "events": entry["events"],
                       "status": entry["status"]}
                if entry["status"] == "ok":
                    row |= {k: entry[k] for k in ("champion", "challenger", "difference")}
                    if not _finite(entry["difference"]["value"]):
                        row["status"] = f"{key} undefined"
                detail["groups"].append(row)
    scored = [g for g in detail["groups"] if g["status"] == "ok"]
    skipped = [f"{g['column']}={g['group']} ({g['status']}, n={g['n']})" for g in detail["groups"]
               if g["status"] != "ok"]
    notes = ([f"column(s) {missing} not in the held-out rows"] if missing else []) + (
        [f"not scored: {', '.join(skipped)}"] if skipped else [])
    if not scored:
        return Gate("subgroups", NOT_EVALUABLE, None, threshold,
                    f"no subgroup of {spec.columns} has at least {spec.min_size} held-out rows and a defined {key}"
                    + (f"; {'; '.join(notes)}" if notes else ""), detail)
    worst = min(scored, key=lambda g: g["difference"]["value"])
    drop = float(worst["difference"]["value"])
    status = PASS if drop >= threshold else FAIL
    detail["worst"] = {"column": worst["column"], "group": worst["group"]}
    reason = (f"largest change of {key} in a subgroup: {drop:+.4f} ({worst['column']}={worst['group']}, "
              f"n={worst['n']}); the margin is {threshold:+.4f}" + (f"; {'; '.join(notes)}" if notes else ""))
    if missing:  # a named column that cannot be checked must not pass silently
        return Gate("subgroups", NOT_EVALUABLE, drop, threshold, reason, detail)
    return Gate("subgroups", status, drop, threshold, reason, detail)


def _tau(time: np.ndarray, cfg: RunConfig) -> float:
    """Uno's C truncation inside a subgroup: the largest horizon its follow-up passes, else just before its end."""
    below = [h for h in cfg.task.horizons if h < time.max()]
    return max(below) if below else float(np.nextafter(time.max(), 0))


def _drift(champion: Bundle, window_frame: pd.DataFrame, spec: DriftGate, policy: RetrainPolicy,
           echo: Echo) -> tuple[list[Gate], dict[str, Any]]:
    """The window's rows against the champion's training rows: per-feature PSI and the domain classifier."""
    features = champion.features
    names = [f.name for f in features]
    gates: list[Gate] = []
    note = ""
    try:
        reference, ref_name = reference_frame(champion, "train", echo=echo)
        id_name = champion.metadata["id_column"]
        if id_name in reference.columns and id_name in window_frame.columns:
            seen = window_frame[id_name].astype(str).isin(set(reference[id_name].astype(str)))
            if seen.any():  # rows the champion trained on are not new data: comparing them with themselves hides drift
                note = (f"{int(seen.sum())} window row(s) the champion was trained on are left out of the drift "
                        "comparison")
                window_frame = window_frame[~seen.to_numpy()]
            if window_frame.empty:
                raise DataError("every row of the window is one the champion was trained on; there is no new data "
                                "to compare with its training rows")
        table = feature_drift(reference[names], window_frame[names], features)
        domain = (domain_classifier(reference[names], window_frame[names], features, seed=policy.seed,
                                    n_boot=policy.bootstrap, level=policy.level)
                  if spec.max_domain_auroc is not None else None)
    except PrecimedError as exc:
        reason = f"drift against the champion's training rows could not be computed: {exc}"
        if spec.max_psi is not None:
            gates.append(Gate("drift_psi", NOT_EVALUABLE, None, spec.max_psi, reason))
        if spec.max_domain_auroc is not None:
            gates.append(Gate("drift_domain_auroc", NOT_EVALUABLE, None, spec.max_domain_auroc, reason))
        return gates, {"available": False, "note": reason}
    frame = table.frame
    top = frame.sort_values("psi", ascending=False).iloc[0]
    summary: dict[str, Any] = {
        "available": True, "reference": ref_name, "n_reference": len(reference), "n_current": len(window_frame),
        "features": [{k: r[k] for k in ("feature", "psi", "test", "q_value", "missing_reference", "missing_current",
                                        "drifting")} for r in table.records()],
        "drifting": table.drifting, "max_psi": {"feature": str(top["feature"]), "value": float(top["psi"])},
        "note": note,
    }
    if spec.max_psi is not None:
        v = float(top["psi"])
        status = PASS if v <= spec.max_psi else FAIL
        gates.append(Gate("drift_psi", status, v, spec.max_psi,
                          f"largest feature PSI {v:.3f} ({top['feature']}) is "
                          f"{'within' if status == PASS else 'above'} {spec.max_psi:g}", {"feature": top["feature"]}))
    if domain is not None:
        auroc = domain["auroc"]
        summary["domain_auroc"] = auroc
        v = auroc["value"]
        if not _finite(v):
            gates.append(Gate("drift_domain_auroc", NOT_EVALUABLE, None, spec.max_domain_auroc,
                              "the domain classifier's AUROC is undefined", {"auroc": auroc}))
        else:
            status = PASS if v <= spec.max_domain_auroc else FAIL  # type: ignore[operator]
            gates.append(Gate("drift_domain_auroc", status, float(v), spec.max_domain_auroc,
                              f"domain classifier AUROC {v:.3f} (out-of-fold) is "
                              f"{'within' if status == PASS else 'above'} {spec.max_domain_auroc:g}", {"auroc": auroc}))
    return gates, summary


# ----- the recipe --------------------------------------------------------------------------------------------------
def _check_champion(champion: Bundle) -> None:
    if champion.preprocessor is None or champion.sequence_preprocessor is not None or \
            champion.image_preprocessor is not None:
        raise ConfigError(f"{champion.ref}: gated retraining covers tabular bundles")
    if champion.task.kind not in TASKS:
        raise ConfigError(f"{champion.ref}: gated retraining compares survival and binary models, not "
                          f"{champion.task.kind}")


def challenge(champion_bundle_dir: Path | str, new_data: str, policy: RetrainPolicy | Path | str | Mapping[str, Any],
              out_dir: Path | str, *, trigger: str | Mapping[str, Any] = "library", now: datetime | None = None,
              echo: Echo = quiet) -> Decision:
    """Train a challenger on the policy's window of ``new_data`` and decide whether it may replace the champion.

    ``trigger`` says who or what started the run (``"cli:alice"``, ``"schedule"``, or a mapping with more); ``now``
    is the run's time (default: the system clock): rows whose time column is later are never seen. Writes
    ``out_dir`` (which must not exist) in one rename; raises a PrecimedError and leaves nothing when anything fails
    (an error that is not a PrecimedError, e.g. from the training of a net, becomes a RetrainingError naming it).
    """
    try:
        return _challenge(champion_bundle_dir, new_data, policy, out_dir, trigger=trigger, now=now, echo=echo)
    except PrecimedError:
        raise
    except Exception as exc:
        raise RetrainingError(f"the retraining run failed: {type(exc).__name__}: {str(exc)[:300]}") from exc


def _challenge(champion_bundle_dir: Path | str, new_data: str, policy: RetrainPolicy | Path | str | Mapping[str, Any],
               out_dir: Path | str, *, trigger: str | Mapping[str, Any], now: datetime | None, echo: Echo) -> Decision:
    policy = load_policy(policy)
    now = _aware(now or datetime.now(UTC))
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ConfigError(f"{out_dir} already exists; a retraining run writes a new folder (choose another --out)")
    check_outputs_apart({"--out": out_dir}, {"CHAMPION": champion_bundle_dir,
                                             "--data": new_data if Path(new_data).exists() else None})
    champion = load_bundle(champion_bundle_dir)
    _check_champion(champion)
    cfg = champion.config
    task = cfg.task.kind
    trigger_doc = dict(trigger) if isinstance(trigger, Mapping) else {"by": str(trigger)}
    window = select_window(cfg, new_data, policy, now, echo=echo)
    for note in window.notes:
        echo(note)
    key = _disc_key(task, policy)
    with atomic_dir(out_dir) as tmp:
        work = tmp / ".work"
        work.mkdir()
        if policy.challenger.kind == "retrain":
            chal = _retrain(champion, window, policy, work, echo)
        else:
            chal = _update(champion, window, policy, echo)
        holdout = chal.holdout
        overlap = set(map(str, chal.train.X.index)) & set(map(str, holdout.X.index))
        if overlap:
            raise DataError(f"{len(overlap)} patient id(s) are both in the challenger's training rows and the held-out "
                            "rows; the comparison needs one row per patient", column=holdout.id_name)
        y = holdout.y
        assert y is not None
        horizons: list[float] = []
        grid = None
        notes = list(window.notes)
        if task == "survival":
            horizons = [h for h in cfg.task.horizons if h < y[:, 0].max()]
            if not horizons:
                raise DataError(f"the held-out rows' follow-up ends at {y[:, 0].max():g} {cfg.task.time_unit}, before "
                                f"every horizon {cfg.task.horizons}; hold out patients with longer follow-up")
            if len(horizons) < len(cfg.task.horizons):
                notes.append(f"horizon(s) {sorted(set(cfg.task.horizons) - set(horizons))} lie beyond the held-out "
                             "rows' follow-up and are not scored")
            grid = survival_grid(y[:, 0], horizons)
        echo(f"scoring champion and challenger on {len(holdout)} held-out rows ({policy.bootstrap} paired "
             "bootstrap replicates)")
        outs = {"champion": _outputs(champion.models[champion.primary], champion.preprocessor, holdout, task, grid),
                "challenger": _outputs(chal.model, chal.preprocessor, holdout, task, grid)}
        metrics = score_pair(cfg, y, outs["champion"], outs["challenger"], grid=grid, horizons=horizons,
                             policy=policy)
        gates: list[Gate] = []
        g = policy.gates
        if g.c_index_diff_lower is not None:
            gates.append(_discrimination_gate(metrics, key, g.c_index_diff_lower))
        if g.calibration_slope is not None:
            gates.append(_calibration_gate(metrics, g.calibration_slope))
        if g.subgroups is not None:
            echo(f"subgroups {g.subgroups.columns}")
            gates.append(_subgroup_gate(cfg, g.subgroups, holdout, y, outs, key, policy))
        drift: dict[str, Any] = {"available": False, "note": "no drift gate in the policy"}
        if g.drift is not None:
            echo("drift of the window against the champion's training rows")
            window_frame = pd.concat([chal.train.frame, holdout.frame])
            drift_gates, drift = _drift(champion, window_frame, g.drift, policy, echo)
            gates += drift_gates
        promote = all(gate.status == PASS for gate in gates)
        parts = {"train": _part(chal.train, task, window.describe.get("time_column")),
                 "holdout": _part(holdout, task, window.describe.get("time_column"))}
        record = {"parent": champion.ref, "challenger": policy.challenger.kind, "now": now.isoformat(),
                  "trigger": trigger_doc, "window": window.describe | parts,
                  "policy_sha256": hashlib.sha256(dumps(policy.model_dump(mode="json"), sort_keys=True).encode())
                  .hexdigest()}
        (tmp / "challenger").mkdir()
        bundle_dir = chal.save(tmp / "challenger" / "bundle", {"parent": champion.ref, "retraining": record})
        for name, src in chal.extra_dirs.items():
            shutil.copyfile(src, tmp / "challenger" / name)
        challenger_ref = load_bundle(bundle_dir).ref
        shutil.rmtree(work)
        doc: dict[str, Any] = {
            "decision": "promote" if promote else "reject", "promote": promote,
            "summary": _summary(promote, gates),
            "task": task, "metric": key, "now": now.isoformat(), "trigger": trigger_doc,
            "champion": {"bundle": champion.ref, "model": champion.primary},
            "challenger": {"bundle": challenger_ref, "model": chal.name, "kind": policy.challenger.kind},
            "window": window.describe | parts,
            "bootstrap": {"replicates": policy.bootstrap, "level": policy.level, "seed": policy.seed,
                          "paired": True},
            "gates": [gate.to_dict() for gate in gates],
            "metrics": metrics, "horizons": horizons, "time_unit": cfg.task.time_unit if task == "survival" else None,
            "drift": drift, "policy": policy.model_dump(mode="json"), "notes": notes,
        }
        if chal.uncertainty is not None:
            doc["uncertainty"] = chal.uncertainty
        write_json(tmp / "decision.json", doc)
        _write_report(tmp / "retraining.html", doc)
        digest = hashlib.sha256((tmp / "decision.json").read_bytes()).hexdigest()
    paths = {"out": out_dir, "bundle": out_dir / "challenger" / "bundle", "decision": out_dir / "decision.json",
             "report": out_dir / "retraining.html"}
    return Decision(promote, gates, metrics, paths, doc, digest)


def _summary(promote: bool, gates: Sequence[Gate]) -> str:
    if promote:
        return f"every gate passed ({', '.join(g.name for g in gates)}): the challenger may go to staging"
    return "rejected: " + "; ".join(f"{g.name} {g.status}" for g in gates if g.status != PASS)


# ----- the report --------------------------------------------------------------------------------------------------
def _f(x: Any, digits: int = 3) -> str:
    return f"{float(x):.{digits}f}" if _finite(x) else "–"


def _ci(m: Mapping[str, Any] | None, digits: int = 3, sign: bool = False) -> str:
    if not m or not _finite(m.get("value")):
        return "–"
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    text = fmt.format(float(m["value"]))
    if _finite(m.get("ci_low")) and _finite(m.get("ci_high")):
        text += f" ({fmt.format(float(m['ci_low']))} to {fmt.format(float(m['ci_high']))})"
    return text


def _section(sid: str, title: str, lead: str = "") -> dict[str, Any]:
    return {"id": sid, "title": title, "lead": lead, "images": [], "tables": [], "notes": [], "error": None}


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "",
           flagged: Sequence[bool] | None = None) -> dict[str, Any]:
    cells = [[str(c) for c in r] for r in rows]
    numeric = [j > 0 and bool(cells) and all(re.match(r"^[-–+]?[\d.]", r[j]) or r[j] in ("–", "") for r in cells)
               for j in range(len(head))]
    return {"caption": caption, "head": list(head), "rows": cells, "numeric": numeric,
            "flagged": list(flagged or [False] * len(cells))}


def _threshold_text(gate: Mapping[str, Any]) -> str:
    t = gate["threshold"]
    name = gate["name"]
    if name == "calibration_slope":
        return f"within [{t[0]:g}, {t[1]:g}]"
    if name in ("drift_psi", "drift_domain_auroc"):
        return f"≤ {t:g}"
    return f"≥ {t:+g}"


def _forest_png(doc: Mapping[str, Any]) -> str | None:
    """Champion and challenger discrimination with CIs, overall and in each scored subgroup."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    key = doc["metric"]
    rows = [("all held-out rows", doc["metrics"]["champion"].get(key), doc["metrics"]["challenger"].get(key))]
    for gate in doc["gates"]:
        if gate["name"] == "subgroups":
            rows += [(f"{g['column']} = {g['group']} (n={g['n']})", g.get("champion"), g.get("challenger"))
                     for g in gate["detail"].get("groups", []) if g["status"] == "ok"]
    rows = [r for r in rows if r[1] and r[2] and _finite(r[1].get("value")) and _finite(r[2].get("value"))]
    if not rows:
        return None
    fig = Figure(figsize=(7.5, 0.45 * len(rows) + 1.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for offset, idx, color, label in ((-0.15, 1, "#7f7f7f", "champion"), (0.15, 2, "#0072B2", "challenger")):
        ys = np.arange(len(rows)) + offset
        v = np.array([r[idx]["value"] for r in rows], dtype=float)
        lo = np.array([r[idx].get("ci_low", np.nan) for r in rows], dtype=float)
        hi = np.array([r[idx].get("ci_high", np.nan) for r in rows], dtype=float)
        err = np.vstack([np.where(np.isfinite(lo), v - lo, 0), np.where(np.isfinite(hi), hi - v, 0)])
        ax.errorbar(v, ys, xerr=err, fmt="o", color=color, capsize=3, label=label)
    ax.set_yticks(np.arange(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{key} on held-out rows ({int(round(100 * doc['bootstrap']['level']))}% bootstrap CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return figure_uri(fig)


def _write_report(path: Path, doc: Mapping[str, Any]) -> None:
    """retraining.html: the decision and gate table, champion vs challenger with CIs, subgroups, drift, the window
    and who triggered the run."""
    key = doc["metric"]
    verdict = _section("decision", "Decision", doc["summary"])
    verdict["tables"].append(_table(
        ["gate", "value", "threshold", "status", "why"],
        [[g["name"], _f(g["value"], 4), _threshold_text(g), g["status"], g["reason"]] for g in doc["gates"]],
        caption="Every gate must pass; a gate that cannot be computed is 'not evaluable' and blocks promotion.",
        flagged=[g["status"] != PASS for g in doc["gates"]]))
    verdict["notes"] += list(doc.get("notes", []))
    metrics = _section("metrics", "Champion vs challenger on the held-out rows",
                       f"Both models scored on the same {doc['window']['holdout']['rows']} held-out rows; the "
                       f"difference is challenger − champion with a paired bootstrap CI "
                       f"({doc['bootstrap']['replicates']} replicates, seed {doc['bootstrap']['seed']}).")
    m = doc["metrics"]
    keys = [k for k in m["challenger"] if k in m["champion"]]
    rows = [[k, _ci(m["champion"].get(k)), _ci(m["challenger"].get(k)), _ci(m["difference"].get(k), sign=True)]
            for k in keys]
    metrics["tables"].append(_table(["metric", f"champion ({doc['champion']['bundle']})",
                                     f"challenger ({doc['challenger']['kind']})", "difference"], rows,
                                    flagged=[k == key for k in keys]))
    if doc["task"] == "survival":
        metrics["notes"].append("calibration_slope: coefficient of the model's log-hazard in a Cox model fitted on "
                                "the held-out rows, Wald CI (no difference: it is not a bootstrap metric).")
    png = _forest_png(doc)
    if png:
        metrics["images"].append({"src": png, "alt": f"{key} of champion and challenger, overall and by subgroup"})
    sections = [verdict, metrics]
    for gate in doc["gates"]:
        if gate["name"] != "subgroups":
            continue
        sub = _section("subgroups", "Subgroups", f"{key} in each subgroup of the held-out rows (groups of fewer than "
                       f"{gate['detail']['min_size']} rows are listed, not scored).")
        groups = gate["detail"].get("groups", [])
        sub["tables"].append(_table(
            ["column", "group", "n", "events", "champion", "challenger", "difference", "status"],
            [[g["column"], g["group"], g["n"], g["events"] if g["events"] is not None else "–",
              _ci(g.get("champion")), _ci(g.get("challenger")), _ci(g.get("difference"), sign=True), g["status"]]
             for g in groups],
            flagged=[g["status"] == "ok" and _finite(g["difference"]["value"]) and g["difference"]["value"] <
                     gate["threshold"] for g in groups]))
        sections.append(sub)
    drift = doc["drift"]
    ds = _section("drift", "Drift of the new data", "The window's rows against the champion's training rows "
                  "(PSI over the reference's bins, KS / chi-squared tests with Benjamini-Hochberg q-values).")
    if drift.get("available"):
        ds["tables"].append(_table(
            ["feature", "PSI", "test", "q", "missing (reference)", "missing (window)", "drifting"],
            [[r["feature"], _f(r["psi"]), r["test"], _f(r["q_value"], 4), _f(r["missing_reference"]),
              _f(r["missing_current"]), "yes" if r["drifting"] else ""] for r in drift["features"]],
            caption=f"{drift['n_current']} window rows vs {drift['n_reference']} {drift['reference']}",
            flagged=[bool(r["drifting"]) for r in drift["features"]]))
        if drift.get("note"):
            ds["notes"].append(drift["note"])
        if drift.get("domain_auroc"):
            ds["notes"].append(f"domain classifier AUROC (out-of-fold): {_ci(drift['domain_auroc'])}")
    else:
        ds["notes"].append(drift.get("note", "not computed"))
    sections.append(ds)
    unc = doc.get("uncertainty")
    if unc:
        us = _section("uncertainty", "Per-patient uncertainty", unc["note"] if not unc.get("kept") else
                      f"The challenger's intervals (level {unc['level']:g}, {unc['method']}) were fitted on "
                      f"{unc['n_calibration']} calibration rows held out of its training part and checked on the "
                      f"{unc['n_evaluated']} held-out rows. Coverage is reported, not gated (docs/uncertainty.md).")
        if unc.get("kept"):
            us["tables"].append(_table(["metric", "value (CI)"], [[k, _ci(v)] for k, v in
                                                                  (unc.get("coverage") or {}).items()]))
        sections.append(us)
    w = doc["window"]
    data = _section("window", "Data window and trigger",
                    "What the run saw: counts, time range and SHA-256 digests of the sorted patient ids (never the "
                    "ids).")
    rows = [["triggered by", ", ".join(f"{k}: {v}" for k, v in doc["trigger"].items())], ["now", doc["now"]],
            ["new data", w["source"]], ["inclusion filter", w.get("filter") or "–"],
            ["time column", w.get("time_column") or "–"],
            ["window", f"{w['rows']} rows" + (f", {w['time_column']} {w['time_range'][0]:g}–{w['time_range'][1]:g}"
                                              if w.get("time_range") else "")],
            ["held out", w["holdout_rule"]]]
    for part in ("train", "holdout"):
        p = w[part]
        rows.append([f"{'challenger training rows' if part == 'train' else 'held-out rows'}",
                     f"{p['rows']} rows, {p.get('events', '–')} events"
                     + (f", {w['time_column']} {p['time_range'][0]:g}–{p['time_range'][1]:g}" if p.get("time_range")
                        else "") + f", ids sha256 {p['ids_sha256'][:16]}…"])
    rows.append(["champion", doc["champion"]["bundle"]])
    rows.append(["challenger", f"{doc['challenger']['bundle']} ({doc['challenger']['kind']})"])
    data["tables"].append(_table(["", ""], rows))
    sections.append(data)
    write_page(path, f"Retraining: {'promote to staging' if doc['promote'] else 'rejected'}",
               f"{doc['champion']['bundle']} vs a {doc['challenger']['kind']} challenger, now {doc['now'][:10]}",
               sections)
