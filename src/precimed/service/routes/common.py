"""Shared by the routes: the error shape, request bodies, patient validation and scoring, Prometheus metrics.

Every error answers with one JSON shape: {"message", "field", "patients", ...}; "patients" lists
{"index", "patient_id"} of the request's patients that the problem concerns (index counts from 0).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field

from precimed import workflows
from precimed.config import FeatureConfig
from precimed.errors import DataError
from precimed.service.registry import LoadedModel
from precimed.workflows.explaining import explain_frame

PATIENT_ID = "patient_id"
MAX_ROUNDS = 20  # validation passes that look for further bad fields after the first

Scalar = Annotated[float, Field(allow_inf_nan=False)] | int | str | bool | None


class ApiError(Exception):
    """An error the client can act on: status, message, the field and the patients concerned."""

    def __init__(self, status: int, message: str, *, field: str | None = None, patients: list | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.patients = patients or []
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "field": self.field, "patients": self.patients, **self.extra}


class ErrorOut(BaseModel):
    message: str
    field: str | None = None
    patients: list[dict[str, Any]] = []


def new_id() -> str:
    return uuid.uuid4().hex


def plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to numbers, NaN/inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----- request bodies -------------------------------------------------------------------------------------------
class _PatientsBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"patients": [{"patient_id": "p1", "glu": 148, "bmi": 33.6, "age": 50, "ped": 0.627}]}]})

    patients: list[dict[str, Scalar]] = Field(min_length=1, description="one object per patient; `patient_id` "
                                              "(optional) is echoed back; other keys must be the model's features; "
                                              "null or absent means not recorded")
    version: int | None = Field(default=None, ge=1, description="pin a registered version (default: production)")
    model: str = Field(default=workflows.DEEP_MODEL, max_length=64, description="which model of the bundle")


class PatientsIn(_PatientsBody):
    """Patients to score."""

    allow_out_of_range: bool = Field(default=False, description="treat values outside the plausible range as "
                                     "missing instead of refusing them")


class ExplainIn(_PatientsBody):
    """Patients to explain: each prediction and the features that drove it, in the user's units."""

    top_k: int = Field(default=5, ge=1, le=50, description="contributing features listed per patient")


# ----- validation ----------------------------------------------------------------------------------------------
@dataclass
class FieldProblem:
    field: str
    message: str
    indices: list[int] = field(default_factory=list)


class PatientsInvalid(Exception):
    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def patient_refs(indices: list[int], ids: list[Any]) -> list[dict[str, Any]]:
    return [{"index": i, PATIENT_ID: ids[i] if 0 <= i < len(ids) else None} for i in sorted(set(indices))]


def invalid_error(exc: PatientsInvalid, ids: list[Any]) -> ApiError:
    """422 naming each bad field and the patients concerned."""
    merged: dict[tuple[str, str], FieldProblem] = {}
    for p in exc.problems:
        key = (p.field, p.message)
        if key in merged:
            merged[key].indices.extend(p.indices)
        else:
            merged[key] = FieldProblem(p.field, p.message, list(p.indices))
    problems = list(merged.values())
    every = sorted({i for p in problems for i in p.indices})
    fields = list(dict.fromkeys(p.field for p in problems))
    message = f"{len(problems)} problem(s) in field(s) {fields}: " + "; ".join(p.message for p in problems[:10])
    return ApiError(422, message, field=problems[0].field, patients=patient_refs(every, ids),
                    errors=[{"field": p.field, "message": p.message, "patients": patient_refs(p.indices, ids)}
                            for p in problems])


def _describe(f: FeatureConfig) -> str:
    bits = [f.kind]
    if f.unit:
        bits.append(f.unit)
    if f.range is not None:
        bits.append(f"range [{f.range[0]:g}, {f.range[1]:g}]")
    return ", ".join(bits)


def patient_ids(patients: list[dict[str, Any]], id_column: str) -> list[Any]:
    return [p.get(PATIENT_ID, p.get(id_column)) for p in patients]


def check_patients(features: list[FeatureConfig], patients: list[dict[str, Any]], id_column: str,
                   *, allow_out_of_range: bool) -> list[FieldProblem]:
    """What can be checked against the feature schema before the model runs: unknown fields, patient ids,
    numbers that are not numbers, values outside the plausible range."""
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


@dataclass
class Scored:
    rows: list[dict[str, Any]]
    ids: list[Any]


def score(loaded: LoadedModel, patients: list[dict[str, Any]], *, model: str, allow_out_of_range: bool = False,
          explain_top_k: int | None = None) -> Scored:
    """Validate the patients against the bundle's schema, then predict (or explain); raise PatientsInvalid naming
    every bad field and patient found."""
    bundle = loaded.bundle
    if model not in bundle.models:
        raise PatientsInvalid([FieldProblem("model", f"model {model!r} is not in the bundle; it holds "
                                            f"{sorted(bundle.models)}")])
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
    out: Any = None
    for _ in range(MAX_ROUNDS):  # each pass blanks the cells just refused and looks for the next problem
        frame = pd.DataFrame(rows, columns=names)
        frame.insert(0, id_column, np.arange(len(rows)))
        try:
            with loaded.lock:
                out = workflows.predict_frame(bundle, frame, model=model, allow_out_of_range=allow_out_of_range,
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
        with loaded.lock:
            out = explain_frame(bundle, frame, model=model, top_k=explain_top_k, where="request")
    # not recorded, or (when allowed) outside the plausible range and so treated as missing by the model
    missing = [[f.name for f in features if p.get(f.name) is None
                or (allow_out_of_range and _outside(f, p.get(f.name)))] for p in patients]
    if explain_top_k is None:
        records = out.drop(columns=[id_column, "model"]).to_dict(orient="records")
    else:
        records = [{k: v for k, v in r.items() if k not in ("patient_id", "model", "row")} for r in out]
    result = [{"index": i, PATIENT_ID: ids[i], **plain(rec), "missing": missing[i]}
              for i, rec in enumerate(records)]
    return Scored(result, ids)


def feature_schema(features: list[FeatureConfig]) -> list[dict[str, Any]]:
    return [{"name": f.name, "kind": f.kind, "unit": f.unit, "range": list(f.range) if f.range else None,
             "categories": f.categories, "description": f.description} for f in features]


# ----- metrics -------------------------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("precimed_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("precimed_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.predictions = Counter("precimed_patients_scored_total", "patients scored", ["model", "version", "kind"],
                                   registry=self.registry)
        self.rejected = Counter("precimed_requests_rejected_total", "requests refused", ["reason"],
                                registry=self.registry)
        self.audit_rows = Counter("precimed_audit_records_total", "audit rows written by this process",
                                  registry=self.registry)
        self.alerts = Counter("precimed_vitals_alerts_total", "early-warning events raised", ["event"],
                              registry=self.registry)
