"""Patients sent as records (one dict per patient, not a file): check them against a bundle's schema, score or
explain them, plan their treatment, and follow their vital signs over time.

These are the recipes the service runs for each request; they know nothing of HTTP. A problem with the patients
is a `PatientsInvalid` (a DataError) listing every bad field and the patients concerned (by position in the
request), so a caller can answer all of them at once rather than one per round trip.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from precimed import jsonio
from precimed.bundle import Bundle
from precimed.compiled import Declined
from precimed.config import FeatureConfig
from precimed.errors import ConfigError, DataError, PrecimedError
from precimed.workflows._run import typed_patients

if TYPE_CHECKING:
    from precimed.monitoring import Monitor, News2Table, Step

PATIENT_ID = "patient_id"
MAX_ROUNDS = 20  # scoring passes that look for further bad fields after the first
RiskFn = Callable[[pd.DataFrame], Any]


# ----- checking ------------------------------------------------------------------------------------------------
@dataclass
class FieldProblem:
    """One problem: the field, what is wrong, and the positions (from 0) of the patients it concerns."""

    field: str
    message: str
    indices: list[int] = field(default_factory=list)


class PatientsInvalid(DataError):
    """The patients break the bundle's schema; `problems` names every bad field and the patients concerned
    (one problem per field and message, its patients merged)."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        merged: dict[tuple[str, str], FieldProblem] = {}
        for p in problems:
            key = (p.field, p.message)
            if key in merged:
                merged[key].indices.extend(i for i in p.indices if i not in merged[key].indices)
            else:
                merged[key] = FieldProblem(p.field, p.message, sorted(set(p.indices)))
        self.problems = list(merged.values())
        fields = list(dict.fromkeys(p.field for p in self.problems))
        message = (f"{len(self.problems)} problem(s) in field(s) {fields}: "
                   + "; ".join(p.message for p in self.problems[:10]))
        super().__init__(message, column=self.problems[0].field if self.problems else None, rows=self.indices)

    @property
    def indices(self) -> list[int]:
        """Every patient concerned, in order."""
        return sorted({i for p in self.problems for i in p.indices})


def patient_ids(patients: Sequence[Mapping[str, Any]], id_column: str) -> list[Any]:
    """Each patient's id (`patient_id`, else the bundle's id column), None where absent."""
    return [p.get(PATIENT_ID, p.get(id_column)) for p in patients]


def _describe(f: FeatureConfig) -> str:
    bits = [f.kind]
    if f.unit:
        bits.append(f.unit)
    if f.range is not None:
        bits.append(f"range [{f.range[0]:g}, {f.range[1]:g}]")
    return ", ".join(bits)


def check_patients(features: Sequence[FeatureConfig], patients: Sequence[Mapping[str, Any]], id_column: str,
                   *, allow_out_of_range: bool) -> list[FieldProblem]:
    """What can be checked against the feature schema before the model runs: unknown fields, patient ids,
    numbers that are not numbers, values outside the plausible range (unless allowed)."""
    by_name = {f.name: f for f in features}
    problems: list[FieldProblem] = []
    seen: dict[Any, int] = {}
    for i, p in enumerate(patients):
        for key in p:
            if key not in by_name and key not in (PATIENT_ID, id_column):
                problems.append(FieldProblem(key, f"{key!r} is not a feature of this model (features: "
                                             f"{list(by_name)[:30]})", [i]))
        pid = p.get(PATIENT_ID, p.get(id_column))
        if pid is not None:
            if isinstance(pid, bool) or not isinstance(pid, str | int):
                problems.append(FieldProblem(PATIENT_ID, "patient_id must be text or a whole number", [i]))
            elif pid in seen:
                problems.append(FieldProblem(PATIENT_ID, f"patient_id {pid!r} appears more than once", [seen[pid], i]))
            else:
                seen[pid] = i
        if all(p.get(f.name) is None for f in features):
            problems.append(FieldProblem("patients", "no feature recorded for this patient: a prediction would rest "
                                         f"on imputed values only (features: {list(by_name)[:30]})", [i]))
        for f in features:
            v = p.get(f.name)
            if v is None or f.kind != "numeric":
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                problems.append(FieldProblem(f.name, f"{f.name} must be a number ({_describe(f)})", [i]))
            elif f.range is not None and not allow_out_of_range and not (f.range[0] <= v <= f.range[1]):
                problems.append(FieldProblem(f.name, f"{f.name} must lie in [{f.range[0]:g}, {f.range[1]:g}]"
                                             f"{' ' + f.unit if f.unit else ''}", [i]))
    return problems


def _outside(f: FeatureConfig, v: Any) -> bool:
    return (f.kind == "numeric" and f.range is not None and isinstance(v, int | float) and not isinstance(v, bool)
            and not f.range[0] <= v <= f.range[1])


# ----- scoring -------------------------------------------------------------------------------------------------
@dataclass
class Scored:
    """One row per patient, in request order: index, patient_id, the model's outputs (or explanation) and the
    features the model had to impute (`missing`); `model` is the bundle's model that scored them."""

    rows: list[dict[str, Any]]
    ids: list[Any]
    model: str
    #: the encoded feature vector each patient was scored on (the bundle's preprocessor output, one row per
    #: patient, no identifiers): what the service stores for drift; None for explanations and sequence bundles
    encoded: np.ndarray | None = None


def score(bundle: Bundle, patients: Sequence[Mapping[str, Any]], *, model: str | None = None,
          allow_out_of_range: bool = False, explain_top_k: int | None = None) -> Scored:
    """Check the patients against the bundle's schema, then predict (or, with `explain_top_k`, explain).

    A bundle with fitted uncertainty (``bundle.uncertainty``) adds to each prediction row, per output ``o``
    with an interval, ``o_lower`` and ``o_upper``, plus ``interval_level``, ``interval_method`` and (binary,
    multiclass) ``prediction_set``; rows of bundles without it have none of these keys.

    `model` None means the bundle's primary model. Raises PatientsInvalid naming every bad field and patient
    found: the schema checks first, then the model's own checks, re-run with the refused cells blanked so that
    one request reports all of its problems. Pure: the bundle is not changed, so threads may share it.
    """
    from precimed import workflows
    from precimed.workflows.explaining import explain_frame

    try:
        name = bundle.model_named(model)
    except ConfigError as exc:
        raise PatientsInvalid([FieldProblem("model", str(exc))]) from None
    features = bundle.features
    names = [f.name for f in features]
    id_column = str(bundle.metadata["id_column"])
    ids = patient_ids(patients, id_column)
    problems = check_patients(features, patients, id_column, allow_out_of_range=allow_out_of_range)
    rows = [{n: p.get(n) for n in names} for p in patients]
    for prob in problems:  # blank the cells already judged, to look for other problems
        for i in prob.indices:
            if prob.field in names:
                rows[i][prob.field] = None
    # not recorded, or (when allowed) outside the plausible range and so treated as missing by the model
    missing = [[f.name for f in features if p.get(f.name) is None
                or (allow_out_of_range and _outside(f, p.get(f.name)))] for p in patients]
    if not problems and explain_top_k is None and bundle.scorer is not None:
        try:  # the compiled path; whatever it cannot vouch for goes the reference way below
            records, encoded = bundle.scorer.score_records_encoded(rows, model=name,
                                                                   allow_out_of_range=allow_out_of_range)
        except Declined:
            pass
        else:
            return Scored([{"index": i, PATIENT_ID: ids[i], **rec, "missing": missing[i]}
                           for i, rec in enumerate(records)], ids, name, encoded)
    out: Any = None
    frame = pd.DataFrame()
    for _ in range(MAX_ROUNDS):  # each pass blanks the cells just refused and looks for the next problem
        frame = pd.DataFrame(rows, columns=names)
        frame.insert(0, id_column, np.arange(len(rows)))
        try:
            out = workflows.predict_frame(bundle, frame, model=name, allow_out_of_range=allow_out_of_range,
                                          where="request")
            break
        except DataError as exc:
            indices = [int(r) for r in exc.rows if isinstance(r, int | np.integer) and 0 <= int(r) < len(rows)]
            column = exc.column if exc.column in names else None
            problems.append(FieldProblem(exc.column or "patients", str(exc), indices))
            if column is None or not indices:
                break
            for i in indices:
                rows[i][column] = None
    if problems:
        raise PatientsInvalid(problems)
    if explain_top_k is not None:
        out = explain_frame(bundle, frame, model=name, top_k=explain_top_k, where="request")
    if explain_top_k is None:
        records = out.drop(columns=[id_column, "model"]).to_dict(orient="records")
    else:
        records = [{k: v for k, v in r.items() if k not in (PATIENT_ID, "model", "row")} for r in out]
    result = [{"index": i, PATIENT_ID: ids[i], **jsonio.plain(rec), "missing": missing[i]}
              for i, rec in enumerate(records)]
    encoded = None
    if explain_top_k is None and bundle.preprocessor is not None and bundle.sequence_preprocessor is None:
        typed = typed_patients(bundle, frame, where="request")[1]
        encoded = bundle.preprocessor.transform(typed, out_of_range="missing" if allow_out_of_range else "error")
    return Scored(result, ids, name, encoded)


UNCERTAINTY_KEYS = ("interval_level", "interval_method", "prediction_set")


def is_uncertainty_key(key: str, row: Mapping[str, Any]) -> bool:
    """Whether a scored row's key belongs to the uncertainty contract (``<output>_lower`` / ``_upper`` beside
    ``<output>``, ``interval_level``, ``interval_method``, ``prediction_set``) rather than being a model output."""
    return key in UNCERTAINTY_KEYS or (key.endswith(("_lower", "_upper")) and key[:-6] in row)


def outputs(row: Mapping[str, Any]) -> dict[str, float]:
    """The model's numeric outputs in a scored row (probability, event_probability_…, …), as plan rules name them;
    the uncertainty keys (bounds, level) are not outputs."""
    return {k: v for k, v in row.items() if k not in ("index", PATIENT_ID, "missing")
            and isinstance(v, int | float) and not isinstance(v, bool) and not is_uncertainty_key(k, row)}


# ----- plans ---------------------------------------------------------------------------------------------------
class PlanningUnavailable(PrecimedError):
    """precimed.planning cannot be imported, or its packaged rules fail to load, in this installation."""


@dataclass(frozen=True)
class Planner:
    """make_plan and the packaged rule book, loaded once (see `load_planner`)."""

    make_plan: Callable[..., dict[str, Any]]
    rules: Any


def load_planner() -> Planner:
    """The planning functions and the packaged rules; PlanningUnavailable if planning is not installed or broken."""
    try:
        from precimed.planning import load_rules, make_plan

        rules = load_rules()
    except Exception as exc:  # missing, half-written or failing to load its rules: not the caller's data
        raise PlanningUnavailable("treatment planning is not available in this installation "
                                  f"({type(exc).__name__} while loading precimed.planning)") from None
    return Planner(make_plan, rules)


def plan_for(patient: Mapping[str, Any], *, planner: Planner | None = None, bundle: Bundle | None = None,
             model: str | None = None, source: str | None = None,
             provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The treatment plan for one patient document (as in examples/patients/*.json: patient_id, facts,
    genotypes as diplotype calls, predictions, options, model_input).

    With `bundle`, its model (`model`, default the primary) scores `model_input`, checked like any patient
    (PatientsInvalid names the bad fields), and its outputs join the document's predictions, each labelled
    `source` (default the bundle's ref). Rule problems are RuleError, bad facts DataError.
    """
    planner = planner or load_planner()
    predictions = dict(patient.get("predictions") or {})
    pid = patient.get(PATIENT_ID)
    if bundle is not None:
        model_input = patient.get("model_input") or {}
        if not model_input:
            raise DataError("a model is given but model_input is empty: send the bundle's input row",
                            column="model_input")
        scored = score(bundle, [{PATIENT_ID: pid, **model_input}], model=model)
        label = source or bundle.ref
        predictions.update({k: {"value": v, "model": label} for k, v in outputs(scored.rows[0]).items()})
    facts = dict(patient.get("facts") or {})
    if pid is not None:
        facts.setdefault(PATIENT_ID, str(pid))
    return planner.make_plan(facts, predictions, rules=planner.rules, genotypes=patient.get("genotypes") or None,
                             options=patient.get("options") or None, provenance=dict(provenance or {}))


# ----- vital signs ---------------------------------------------------------------------------------------------
MAX_STREAMS = 16  # models × versions × thresholds followed at once
MAX_IDLE_SECONDS = 72 * 3600.0  # a patient with no observation for 3 days is forgotten


@dataclass
class Ingested:
    """The records handled, in order; `error` is why the next one (at index `handled`) was refused.

    `steps` are the observations scored; `discharged` the patient ids whose follow-up a discharge record ended.
    """

    steps: list[Step]
    error: PrecimedError | None = None
    discharged: list[Hashable] = field(default_factory=list)

    @property
    def handled(self) -> int:
        """Records accepted before the error (observations and discharges)."""
        return len(self.steps) + len(self.discharged)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for s in self.steps for e in s.events]


def check_bounds(max_idle_seconds: float | None, **counts: int) -> None:
    """The limits that keep per-patient state bounded (the monitors, the ward board): ConfigError unless each
    count is a whole number ≥ 1 and `max_idle_seconds` is > 0 or None."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number ≥ 1, got {value!r}")
    if max_idle_seconds is not None and not max_idle_seconds > 0:
        raise ConfigError(f"max_idle_seconds must be > 0 or None, got {max_idle_seconds!r}")


class VitalsMonitors:
    """Early-warning state (NEWS2, optionally a learned risk, alert hysteresis) of each patient whose vital signs
    arrive over time, in bounded memory:

    * at most `max_patients` patients over all streams: when one more arrives, the least recently seen is
      forgotten, and starts a new episode if seen again;
    * a patient not seen for `max_idle_seconds` (wall clock) is forgotten;
    * a discharge record (``{"patient_id": ..., "event": "discharge"}``) drops the patient's state at once;
    * at most `max_streams` streams (a model, version and risk threshold each; None for NEWS2 alone): a new one
      beyond that forgets the least recently used stream and its patients.

    Records must carry only the documented fields (unknown ones are refused, naming the field). Thread-safe: one
    batch is ingested at a time.
    """

    def __init__(self, max_patients: int = 10_000, *, max_streams: int = MAX_STREAMS,
                 max_idle_seconds: float | None = MAX_IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        check_bounds(max_idle_seconds, max_patients=max_patients, max_streams=max_streams)
        self.max_patients = max_patients
        self.max_streams = max_streams
        self.max_idle_seconds = max_idle_seconds
        self._clock = clock
        self._streams: OrderedDict[Hashable, Monitor] = OrderedDict()  # least recently used first
        self._seen: OrderedDict[tuple[Hashable, Hashable], float] = OrderedDict()  # (stream, patient) → last seen
        self._lock = threading.Lock()
        self._table: News2Table | None = None

    def __len__(self) -> int:
        """Patients followed now, over all streams."""
        return len(self._seen)

    @property
    def streams(self) -> int:
        """Streams followed now."""
        return len(self._streams)

    def ingest(self, records: Sequence[Mapping[str, Any]], *, stream: Hashable = None, risk_fn: RiskFn | None = None,
               risk_threshold: float = 0.5) -> Ingested:
        """Handle `records` in order; stop at the first refused (its error in the result, the ones before it kept)."""
        from precimed.monitoring.stream import discharge_id

        done = Ingested([])
        with self._lock:
            self._expire()
            monitor = self._monitor(stream, risk_fn, risk_threshold)
            for record in records:
                try:
                    pid = discharge_id(record)
                    if pid is not None:
                        monitor.discharge(pid)
                        self._seen.pop((stream, pid), None)
                        done.discharged.append(pid)
                        continue
                    done.steps.append(monitor.observe(record))
                except PrecimedError as exc:
                    done.error = exc
                    break
                self._touch(stream, done.steps[-1].patient_id)
        return done

    def _monitor(self, stream: Hashable, risk_fn: RiskFn | None, risk_threshold: float) -> Monitor:
        """The stream's monitor, marked most recently used; a new stream may forget the least recently used."""
        from precimed.monitoring import Monitor, load_news2_bands

        monitor = self._streams.get(stream)
        if monitor is not None:
            self._streams.move_to_end(stream)
            return monitor
        if self._table is None:
            self._table = load_news2_bands()
        monitor = self._streams[stream] = Monitor(risk_fn=risk_fn, risk_threshold=risk_threshold, table=self._table,
                                                  strict=True)
        while len(self._streams) > self.max_streams:
            old, forgotten = self._streams.popitem(last=False)
            for pid in forgotten.patient_ids():
                self._seen.pop((old, pid), None)
        return monitor

    def _touch(self, stream: Hashable, pid: Hashable) -> None:
        """Mark a patient seen now; past `max_patients`, forget the least recently seen."""
        key = (stream, pid)
        self._seen[key] = self._clock()
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_patients:
            self._forget(*self._seen.popitem(last=False)[0])

    def _expire(self) -> None:
        """Forget the patients not seen for `max_idle_seconds`."""
        if self.max_idle_seconds is None:
            return
        horizon = self._clock() - self.max_idle_seconds
        while self._seen:
            key, seen = next(iter(self._seen.items()))
            if seen >= horizon:
                break
            del self._seen[key]
            self._forget(*key)

    def _forget(self, stream: Hashable, pid: Hashable) -> None:
        monitor = self._streams.get(stream)
        if monitor is not None:
            monitor.forget(pid)


def vitals_risk_fn(bundle_dir: Any) -> RiskFn:
    """The learned risk of a binary bundle trained on monitor window features (see `precimed ward compare`)."""
    from precimed.workflows.monitor import bundle_risk_fn

    return bundle_risk_fn(bundle_dir)


__all__ = [
    "PATIENT_ID",
    "FieldProblem",
    "Ingested",
    "PatientsInvalid",
    "Planner",
    "PlanningUnavailable",
    "Scored",
    "VitalsMonitors",
    "check_patients",
    "load_planner",
    "outputs",
    "patient_ids",
    "plan_for",
    "score",
    "vitals_risk_fn",
]
