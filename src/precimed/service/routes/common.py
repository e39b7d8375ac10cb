"""Shared by the routes: the error shape, the patients' request bodies, and the translation of a workflow's
PatientsInvalid into a 422.

Every error answers with one JSON shape: {"message", "field", "patients", ...}; "patients" lists
{"index", "patient_id"} of the request's patients that the problem concerns (index counts from 0).
Checking and scoring patients is the workflows' job (precimed.workflows.patients); routes only translate.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from precimed.config import FeatureConfig
from precimed.service.schemas import ErrorOut, Version
from precimed.workflows.patients import PATIENT_ID, PatientsInvalid

Scalar = Annotated[float, Field(allow_inf_nan=False)] | int | str | bool | None

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or invalid token"},
    403: {"model": ErrorOut, "description": "the token's role may not do this"},
    404: {"model": ErrorOut, "description": "no such model or version"},
    413: {"model": ErrorOut, "description": "request too large"},
    422: {"model": ErrorOut, "description": "bad input: names each bad field and patient"},
    429: {"model": ErrorOut, "description": "rate limited"},
}


class ApiError(Exception):
    """An error the client can act on: status, message, the field and the patients concerned."""

    def __init__(self, status: int, message: str, *, field: str | None = None,
                 patients: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.patients = patients or []
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "field": self.field, "patients": self.patients, **self.extra}


def new_id() -> str:
    """A new record id (prediction, plan): a UUID version 7 (RFC 9562) as 32 hex characters.

    The first 48 bits are the Unix time in milliseconds and the other 74 free bits random (`os.urandom`), so ids
    are unique and unguessable as before, but a new row's id sorts after the rows before it. Its index entry then
    lands on the B-tree's last page instead of a random one: with uuid4 ids each stored prediction dirtied a random
    page of the predictions index and one of the served-feature index, and the service wrote 38 KB to disk per
    prediction; with these, 27 KB (benchmarks/service_speed.py's setup, after 20,000 predictions), and a large
    table's inserts no longer need its whole index in memory. The creation time an id reveals is stored in the
    record anyway."""
    rand = int.from_bytes(os.urandom(10), "big")  # 80 random bits, 74 of them used
    value = (time.time_ns() // 1_000_000 & (1 << 48) - 1) << 80 | 0x7 << 76 | (rand >> 68) << 64 \
        | 0b10 << 62 | rand & (1 << 62) - 1
    return f"{value:032x}"


# ----- request bodies -------------------------------------------------------------------------------------------
class _PatientsBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"patients": [{"patient_id": "p1", "glu": 148, "bmi": 33.6, "age": 50, "ped": 0.627}]}]})

    patients: list[dict[str, Scalar]] = Field(min_length=1, description="one object per patient; `patient_id` "
                                              "(optional) is echoed back; other keys must be the model's features; "
                                              "null or absent means not recorded")
    version: Version | None = Field(default=None, description="pin a registered version (default: production); "
                                    "clinicians may pin only versions in staging or production")
    model: str | None = Field(default=None, max_length=64,
                              description="which model of the bundle (default: the bundle's primary model)")


class PatientsIn(_PatientsBody):
    """Patients to score."""

    allow_out_of_range: bool = Field(default=False, description="treat values outside the plausible range as "
                                     "missing instead of refusing them")


class ExplainIn(_PatientsBody):
    """Patients to explain: each prediction and the features that drove it, in the user's units."""

    top_k: int = Field(default=5, ge=1, le=50, description="contributing features listed per patient")


# ----- errors from the workflows --------------------------------------------------------------------------------
def patient_refs(indices: list[int], ids: list[Any]) -> list[dict[str, Any]]:
    return [{"index": i, PATIENT_ID: ids[i] if 0 <= i < len(ids) else None} for i in sorted(set(indices))]


def invalid_error(exc: PatientsInvalid, ids: list[Any], *, prefix: str = "") -> ApiError:
    """422 naming each bad field (with `prefix`, e.g. 'model_input.') and the patients concerned."""
    problems = exc.problems
    return ApiError(422, str(exc), field=f"{prefix}{problems[0].field}" if problems else None,
                    patients=patient_refs(exc.indices, ids),
                    errors=[{"field": f"{prefix}{p.field}", "message": p.message,
                             "patients": patient_refs(p.indices, ids)} for p in problems])


def feature_schema(features: list[FeatureConfig]) -> list[dict[str, Any]]:
    return [{"name": f.name, "kind": f.kind, "unit": f.unit, "range": list(f.range) if f.range else None,
             "categories": f.categories, "description": f.description} for f in features]
