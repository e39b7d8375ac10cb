"""What the service served, kept for drift: each scored patient's encoded feature vector and outputs (table
`served_features`), outcomes attached later by prediction id, retention, and windows read back as a DataFrame.

- `served_rows` builds the rows of one tabular prediction; the predict route stores them in the same
  `container.commit` as the prediction, so both are durable together (or neither is). Only tabular predictions:
  explanations and image predictions store none. Nothing identifies a patient: no patient id, no free text, only
  the encoded vector the model scored (the bundle's `metadata["feature_names_out"]` order), the numeric outputs,
  the prediction's id (UUIDv7: its millisecond, then 74 random bits) and the patient's position in the request.
- `attach_outcomes` (POST /v1/outcomes) checks every item against its model version's task, then writes all of
  them and one audit row (action "outcomes": counts and the SHA-256 of each prediction id) in one transaction.
- `purge` deletes rows older than `served_features_days` (0 keeps nothing: none are written either), audited as
  "retention_purge" when it deletes any; `maybe_purge` runs it at most once a day from a request, `purge_at_start`
  when the app is built.
- `window_rows` / `window_frame` read a time window back for `precimed drift --current-db`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from precimed.errors import PrecimedError
from precimed.service.audit import AuditLog, digest
from precimed.service.db import Database, Insert, ServedFeatureRow, to_json, to_json_plain, utcnow
from precimed.workflows.patients import outputs

if TYPE_CHECKING:
    from precimed.config import TaskConfig
    from precimed.service.auth import Principal
    from precimed.service.container import Container
    from precimed.workflows.patients import Scored

log = logging.getLogger("precimed.service.served")
PURGE_ACTION = "retention_purge"
OUTCOMES_ACTION = "outcomes"
PURGE_EVERY = timedelta(days=1)
RETRY_AFTER_FAILURE = timedelta(hours=1)
SYSTEM_ACTOR, SYSTEM_ROLE = "precimed", "system"


# ----- storing what was served ---------------------------------------------------------------------------------------
def served_rows(days: int, prediction_id: str, created_at: str, model: str, version: int,
                scored: Scored) -> tuple[Insert, ...]:
    """One row per scored patient of a tabular prediction; none when retention keeps nothing (`days` 0) or the
    scoring gave no encoded vectors (explanations, sequence bundles). Plain `Insert` rows: this runs per request."""
    encoded = scored.encoded
    if days <= 0 or encoded is None:
        return ()
    matrix = np.asarray(encoded, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(scored.rows):
        raise ValueError(f"encoded matrix of shape {matrix.shape} for {len(scored.rows)} scored patients")
    return tuple(Insert.of(ServedFeatureRow, prediction_id=prediction_id, patient_index=i, created_at=created_at,
                           model=model, version=version, features=to_json_plain(vector),
                           outputs=to_json_plain(outputs(row)))  # plain floats, str keys
                 for i, (vector, row) in enumerate(zip(matrix.tolist(), scored.rows, strict=True)))


# ----- retention -----------------------------------------------------------------------------------------------------
@dataclass
class _RetentionState:
    last: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATES: weakref.WeakKeyDictionary[Database, _RetentionState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def _state(db: Database) -> _RetentionState:
    with _STATES_LOCK:
        found = _STATES.get(db)
        if found is None:
            found = _STATES[db] = _RetentionState()
        return found


def cutoff(days: int, now: datetime) -> str:
    """The created_at below which rows are past retention (stored times are ISO 8601 UTC text, which sorts)."""
    return (now.astimezone(UTC) - timedelta(days=days)).isoformat(timespec="microseconds")


def purge(db: Database, audit: AuditLog, days: int, *, now: datetime | None = None) -> int:
    """Delete served rows created more than `days` days before `now` (all of them for 0) and record the count in the
    audit trail in the same transaction (action "retention_purge"); nothing is written when nothing is old."""
    now = now or datetime.now(UTC)
    limit = cutoff(days, now)
    t = ServedFeatureRow
    with db.transaction() as s:
        deleted = 0
        for model in _models_served(s):  # model by model: each delete a range of the (model, created_at) index
            deleted += s.execute(delete(t).where(t.model == model, t.created_at < limit)).rowcount or 0
        if deleted:
            audit.record(s, actor=SYSTEM_ACTOR, role=SYSTEM_ROLE, action=PURGE_ACTION,
                         detail={"table": "served_features", "count": int(deleted), "days": days, "before": limit})
    if deleted:
        log.info("retention: %d served feature row(s) older than %d day(s) deleted", deleted, days)
    return int(deleted)


def _models_served(s: Session) -> list[str]:
    """The distinct models of the served rows, found by one index seek each (a loose index scan of (model,
    created_at)), not by reading every row."""
    t = ServedFeatureRow
    found: list[str] = []
    while True:
        query = select(t.model).order_by(t.model).limit(1)
        if found:
            query = query.where(t.model > found[-1])
        model = s.execute(query).scalar_one_or_none()
        if model is None:
            return found
        found.append(model)


def maybe_purge(container: Container, *, now: datetime | None = None) -> int | None:
    """Purge if the last purge of this process is a day old (a lock and a comparison otherwise); the count, or None
    when it was not due. A failure is logged, never raised (the request it rides on has already been answered
    for), and retried an hour later."""
    now = now or datetime.now(UTC)
    state = _state(container.db)
    with state.lock:
        if state.last is not None and now - state.last < PURGE_EVERY:
            return None
        state.last = now  # other requests skip while this one purges
    try:
        return purge(container.db, container.audit, container.settings.served_features_days, now=now)
    except Exception as exc:
        log.error("retention: purge of served feature rows failed: %s", type(exc).__name__)
        with state.lock:
            state.last = now - PURGE_EVERY + RETRY_AFTER_FAILURE
        return None


def purge_at_start(container: Container, *, now: datetime | None = None) -> int | None:
    """The purge when the app is built (then again at most daily from requests)."""
    with _state(container.db).lock:
        _state(container.db).last = None
    return maybe_purge(container, now=now)


# ----- outcomes ------------------------------------------------------------------------------------------------------
class OutcomesRefused(PrecimedError):
    """POST /v1/outcomes refused: `status` 422 (unknown ids, wrong fields for the task) or 409 (already recorded);
    `items` names the items concerned (prediction id, index, field); never a submitted value."""

    def __init__(self, status: int, message: str, items: list[dict[str, Any]], field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.items, self.field = status, items, field


@dataclass(frozen=True)
class OutcomeItem:
    """One outcome as sent (already bounded by the route's pydantic model)."""

    prediction_id: str
    index: int
    time: float | None = None
    event: int | None = None
    label: int | str | bool | None = None
    value: float | None = None


FIELDS = {"survival": ("time", "event"), "binary": ("label",), "multiclass": ("label",), "regression": ("value",)}


def outcome_record(task: TaskConfig, classes: Sequence[str] | None, item: OutcomeItem) -> dict[str, Any]:
    """The stored outcome of `item` for a model of `task`: {"time", "event"} (survival), {"label": 0|1} (binary, 1 =
    the outcome occurred), {"label": class} (multiclass), {"value"} (regression). ValueError (naming the field and
    what is expected, never the value sent) when the fields do not fit the task."""
    kind = task.kind
    wanted = FIELDS.get(kind)
    if wanted is None:
        raise ValueError(f"outcomes are not taken for {kind} models")
    sent = {name for name in ("time", "event", "label", "value") if getattr(item, name) is not None}
    extra = sorted(sent - set(wanted))
    if extra:
        raise ValueError(f"{extra[0]}: not an outcome of a {kind} model, which takes {list(wanted)}")
    missing = [name for name in wanted if name not in sent]
    if missing:
        raise ValueError(f"{missing[0]}: required for a {kind} model ({' and '.join(wanted)})")
    if kind == "survival":
        time = float(item.time)  # type: ignore[arg-type]
        if not math.isfinite(time) or time < 0:
            raise ValueError(f"time: must be a finite number >= 0 (in {task.time_unit})")
        if item.event not in (0, 1):
            raise ValueError("event: must be 0 (censored) or 1 (event)")
        return {"time": time, "event": int(item.event)}  # type: ignore[arg-type]
    if kind == "regression":
        value = float(item.value)  # type: ignore[arg-type]
        if not math.isfinite(value):
            raise ValueError("value: must be a finite number")
        return {"value": value}
    label = item.label
    if kind == "binary":
        if isinstance(label, bool) or (isinstance(label, int) and label in (0, 1)):
            return {"label": int(label)}
        if isinstance(label, str) and task.positive is not None and label == str(task.positive):
            return {"label": 1}
        positive = f" or {str(task.positive)!r} (the positive class)" if task.positive is not None else ""
        raise ValueError(f"label: must be 0 or 1 (1 = the outcome occurred){positive}")
    names = [str(c) for c in (classes or task.classes or [])]
    if str(label) not in names:
        raise ValueError(f"label: must be one of the model's classes {names[:20]}")
    return {"label": str(label)}


def id_digests(ids: Iterable[str]) -> list[str]:
    """SHA-256 of each distinct prediction id (for audit details), sorted."""
    return sorted({digest(i.encode()) for i in ids})


def find_rows(db: Database, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], tuple[str, int]]:
    """{(prediction id, index): (model, version)} of the served rows among `keys` (a read, no lock); OutcomesRefused
    (422) naming the keys that have none."""
    found: dict[tuple[str, int], tuple[str, int]] = {}
    t = ServedFeatureRow
    with db.session() as s:
        for chunk in _chunks(list(dict.fromkeys(keys)), 500):
            for pid, idx, model, version in s.execute(
                    select(t.prediction_id, t.patient_index, t.model, t.version)
                    .where(tuple_(t.prediction_id, t.patient_index).in_(chunk))):
                found[(pid, idx)] = (model, int(version))
        problem = unknown_error(s, keys, found)
    if problem is not None:
        raise problem
    return found


def _known_ids(s: Session, ids: Sequence[str]) -> set[str]:
    """Which of `ids` have served rows at all."""
    t = ServedFeatureRow
    known: set[str] = set()
    for chunk in _chunks(list(dict.fromkeys(ids)), 500):
        known.update(s.execute(select(t.prediction_id).where(t.prediction_id.in_(chunk)).distinct()).scalars())
    return known


def unknown_error(s: Session, keys: Sequence[tuple[str, int]], found: dict[tuple[str, int], Any]
                  ) -> OutcomesRefused | None:
    """422 naming the prediction ids (random tokens, not patient data) and indices with no served row."""
    missing = [k for k in dict.fromkeys(keys) if k not in found]
    if not missing:
        return None
    known_ids = _known_ids(s, [pid for pid, _ in missing])
    ids = list(dict.fromkeys(pid for pid, _ in missing if pid not in known_ids))
    indices = [k for k in missing if k[0] in known_ids]
    parts = []
    if ids:
        parts.append(f"unknown prediction id(s) {ids[:20]}" + (f" and {len(ids) - 20} more" if len(ids) > 20 else ""))
    if indices:
        shown = [f"{pid} index {idx}" for pid, idx in indices[:20]]
        parts.append(f"no patient at {', '.join(shown)}" + (f" and {len(indices) - 20} more" if len(indices) > 20
                                                             else ""))
    return OutcomesRefused(422, "; ".join(parts) + " (only tabular predictions keep served rows, for "
                           "served_features_days; explanations and image predictions have none)",
                           [{"prediction_id": pid, "index": idx} for pid, idx in missing[:100]], field="prediction_id")


def attach_outcomes(db: Database, audit: AuditLog, principal: Principal, records: dict[tuple[str, int], dict],
                    *, replace: bool, input_digest: str, now: str | None = None) -> dict[str, Any]:
    """Write the checked outcomes and one audit row in one transaction (the rows locked for update): 422 if a row
    went away meanwhile (retention), 409 if one already has an outcome and not `replace`. Returns the counts."""
    keys = list(records)
    at = now or utcnow()
    t = ServedFeatureRow
    with db.transaction() as s:
        rows: dict[tuple[str, int], ServedFeatureRow] = {}
        for chunk in _chunks(keys, 500):
            for row in s.execute(select(t).where(tuple_(t.prediction_id, t.patient_index).in_(chunk))
                                 .with_for_update()).scalars():
                rows[(row.prediction_id, row.patient_index)] = row
        problem = unknown_error(s, keys, rows)
        if problem is not None:
            raise problem
        already = [k for k in keys if rows[k].outcome is not None]
        if already and not replace:
            raise OutcomesRefused(409, f"an outcome is already recorded for {len(already)} item(s): "
                                  + ", ".join(f"{pid} index {idx}" for pid, idx in already[:20])
                                  + "; send \"replace\": true to replace them",
                                  [{"prediction_id": pid, "index": idx} for pid, idx in already[:100]],
                                  field="outcomes")
        for key, record in records.items():
            row = rows[key]
            row.outcome, row.outcome_at, row.outcome_actor = to_json(record), at, principal.token_id
        versions = sorted({(rows[k].model, rows[k].version) for k in keys})
        model, version = versions[0] if len(versions) == 1 else (None, None)
        audit.record(s, actor=principal.token_id, role=principal.role, action=OUTCOMES_ACTION, model=model,
                     version=version, input_digest=input_digest,
                     detail={"count": len(keys), "replaced": len(already),
                             "prediction_ids_sha256": id_digests(pid for pid, _ in keys),
                             "versions": [[m, v] for m, v in versions][:50]})
    return {"recorded": len(keys), "replaced": len(already), "at": at}


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# ----- windows for drift ---------------------------------------------------------------------------------------------
def window_rows(db: Database, name: str, *, since: str | None = None, until: str | None = None,
                version: int | None = None) -> list[ServedFeatureRow]:
    """The served rows of model `name` created in [since, until) (ISO 8601 UTC text bounds), oldest first."""
    t = ServedFeatureRow
    query = select(t).where(t.model == name)
    if since is not None:
        query = query.where(t.created_at >= since)
    if until is not None:
        query = query.where(t.created_at < until)
    if version is not None:
        query = query.where(t.version == version)
    with db.session() as s:
        return list(s.execute(query.order_by(t.created_at, t.prediction_id, t.patient_index)).scalars())


def window_frame(rows: Sequence[ServedFeatureRow], feature_names: Sequence[str], task: TaskConfig) -> pd.DataFrame:
    """The rows as a DataFrame: the encoded columns named as the bundle's `feature_names_out`, `created_at` (UTC,
    timezone-naive datetimes), `prediction_id`, `index`, `model`, `version`, the outputs (`output_<name>`), the
    outcome in the task's own label columns (as `precimed drift` reads them; empty until it arrives) and
    `outcome_at`."""
    names = list(feature_names)
    matrix = np.full((len(rows), len(names)), np.nan)
    for i, row in enumerate(rows):
        vector = json.loads(row.features)
        if len(vector) != len(names):
            raise PrecimedError(f"served row {row.prediction_id} index {row.patient_index} of {row.model} version "
                                f"{row.version} holds {len(vector)} encoded values but the bundle has {len(names)} "
                                "encoded features; read one version at a time (--version)")
        matrix[i] = [np.nan if v is None else float(v) for v in vector]
    frame = pd.DataFrame(matrix, columns=names)
    frame.insert(0, "created_at", pd.to_datetime([r.created_at for r in rows], utc=True).tz_convert(None)
                 if rows else pd.Series([], dtype="datetime64[ns]"))
    frame.insert(1, "prediction_id", [r.prediction_id for r in rows])
    frame.insert(2, "index", [int(r.patient_index) for r in rows])
    frame.insert(3, "model", [r.model for r in rows])
    frame.insert(4, "version", [int(r.version) for r in rows])
    out = pd.DataFrame([json.loads(r.outputs) for r in rows], index=frame.index)
    for column in out.columns:
        frame[f"output_{column}"] = pd.to_numeric(out[column], errors="coerce")
    for column, values in _outcome_columns(rows, task).items():
        frame[column] = values
    frame["outcome_at"] = [r.outcome_at for r in rows]
    return frame


def _outcome_columns(rows: Sequence[ServedFeatureRow], task: TaskConfig) -> dict[str, list[Any]]:
    """The outcomes in the task's label columns (time and event, or the target); None where none has arrived."""
    found = [json.loads(r.outcome) if r.outcome else None for r in rows]
    if task.kind == "survival":
        return {str(task.time): [o["time"] if o else None for o in found],
                str(task.event): [o["event"] if o else None for o in found]}
    if task.kind == "binary":
        positive = task.positive
        if positive is None:
            return {str(task.target): [o["label"] if o else None for o in found]}
        return {str(task.target): [None if o is None else positive if o["label"] == 1 else f"not {positive}"
                                   for o in found]}
    if task.kind == "multiclass":
        return {str(task.target): [o["label"] if o else None for o in found]}
    if task.kind == "regression":
        return {str(task.target): [o["value"] if o else None for o in found]}
    return {}
