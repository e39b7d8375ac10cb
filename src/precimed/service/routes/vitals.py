"""Vital-sign ingestion: observations → NEWS2 (and optionally a registered model's learned risk) → alert events.

The container's monitors (`precimed.workflows.patients.VitalsMonitors`) keep each patient's episode state between
requests (alert, escalation, clear with hysteresis), per model, version and threshold, in bounded memory: at most
`max_monitored_patients` patients (the least recently seen is forgotten first), none idle for more than 72 hours,
and at most 16 model/version/threshold streams (the least recently used is forgotten with its patients). A record
`{"patient_id": ..., "event": "discharge"}` drops that patient's state at once. Records are processed in order;
a bad record (an unknown field, a vital out of range, ...) stops the request with 422 naming the field and the
record, and says how many records before it were accepted (and their alerts).

An observation may name the patient's `ward` (and `bed`): after the request's audit row is committed, the accepted
observations and discharges update the ward board (precimed.workflows.wards) and the ward pages' live streams are
told which wards changed.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from precimed import jsonio
from precimed.errors import DataError
from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.container import Container
from precimed.service.routes.common import ERRORS, ApiError, Scalar
from precimed.service.routes.deps import ContainerDep, require, resolve_for
from precimed.service.schemas import Version, VitalsOut
from precimed.workflows.patients import Ingested
from precimed.workflows.wards import Wards

router = APIRouter(tags=["vitals"])
log = logging.getLogger("precimed.service")


class VitalsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"observations": [
        {"patient_id": "w1", "time": "2026-03-01T08:00:00+00:00", "resp_rate": 24, "spo2": 93, "systolic_bp": 98,
         "pulse": 118, "consciousness": "A", "temperature": 38.4, "on_oxygen": False}]}]})

    observations: list[dict[str, Scalar]] = Field(
        min_length=1, description="patient_id, time (ISO 8601) and any of resp_rate, spo2, spo2_scale, on_oxygen, "
                                  "systolic_bp, pulse, consciousness, temperature (no other field); or "
                                  "{patient_id, event: 'discharge'} to stop following a patient")
    model: str | None = Field(default=None, max_length=128,
                              description="a registered binary model on monitor window features (learned risk)")
    version: Version | None = None
    risk_threshold: float = Field(default=0.5, ge=0, le=1)


@router.post("/v1/vitals", summary="ingest vital-sign observations; NEWS2 and alert events (clinician)",
             response_model=VitalsOut, response_model_exclude_unset=True, responses=ERRORS)
def ingest(body: VitalsIn, container: ContainerDep, principal: Annotated[Principal, Depends(require("vitals"))]
           ) -> dict[str, Any]:
    if len(body.observations) > container.settings.max_observations:
        raise ApiError(413, f"at most {container.settings.max_observations} observations per request",
                       field="observations")
    input_digest = digest(body.model_dump(mode="json"))
    info = resolve_for(container, principal, body.model, body.version) if body.model else None
    risk_fn = container.risk_fn(info) if info is not None else None
    stream = (info.name, info.version, body.risk_threshold) if info is not None else None
    result = container.vitals.ingest(body.observations, stream=stream, risk_fn=risk_fn,
                                     risk_threshold=body.risk_threshold)
    events = result.events
    model, version = (info.name, info.version) if info is not None else (None, None)
    if result.error is not None:
        i, exc = result.handled, result.error
        if not isinstance(exc, DataError):  # a learned risk that fails is the model's problem, not the record's
            raise ApiError(422, f"observation {i}: {exc}", field="model") from None
        container.commit(principal, "vitals", model=model, version=version, input_digest=input_digest,
                         outcome="rejected", status=422, detail={"accepted": i, "alerts": len(events),
                                                                 "field": exc.column})
        publish(container, result)  # the records before the refused one were kept by the monitors
        raise ApiError(422, f"observation {i}: {exc}", field=exc.column or "observations",
                       patients=[{"index": i, "patient_id": body.observations[i].get("patient_id")}], accepted=i,
                       alerts=jsonio.plain(events)) from None
    for e in events:
        container.metrics.alerts.labels(e["event"]).inc()
    container.commit(principal, "vitals", model=model, version=version, input_digest=input_digest,
                     detail={"accepted": result.handled, "alerts": len(events), "discharged": len(result.discharged)})
    publish(container, result)
    return {"accepted": result.handled, "alerts": jsonio.plain(events),
            "scores": jsonio.plain([s.score_record() for s in result.steps])}


def ward_board(container: Container) -> Wards:
    """The app's ward board and live-update hub (one per process), bounded like the monitors."""
    return container.wards


def publish(container: Container, result: Ingested) -> None:
    """Update the ward board with an ingestion's accepted records and tell the live ward pages (never blocks).

    Called after the request's audit row is committed: a failure here is logged (by type only) and never turns an
    ingestion that was accepted and audited into an error."""
    try:
        ward_board(container).apply(result.steps, result.discharged)
    except Exception as exc:  # the board is a view; the monitors and the audit trail already hold the truth
        log.error("ward board update failed: %s", type(exc).__name__)
