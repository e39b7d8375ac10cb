"""Vital-sign ingestion: observations → NEWS2 (and optionally a registered model's learned risk) → alert events.

One monitor per (model, version) lives in the process and keeps each patient's episode state between requests
(alert, escalation, clear with hysteresis). Records are processed in order; a bad record stops the request with
422 naming the field and the record, and says how many records before it were ingested (and their alerts).

Layer note: `Monitor` is imported from precimed.monitoring (layer 5) because precimed.workflows does not re-export
it; once workflows offers it (e.g. `workflows.Monitor`), import it from there.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from precimed import workflows
from precimed.errors import DataError, PrecimedError
from precimed.monitoring import Monitor  # layer 5: workflows does not re-export Monitor yet (see the module doc)
from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.routes.common import ApiError, Scalar, plain
from precimed.service.routes.deps import ServiceDep, require

router = APIRouter(tags=["vitals"])


class VitalsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"observations": [
        {"patient_id": "w1", "time": "2026-03-01T08:00:00+00:00", "resp_rate": 24, "spo2": 93, "systolic_bp": 98,
         "pulse": 118, "consciousness": "A", "temperature": 38.4, "on_oxygen": False}]}]})

    observations: list[dict[str, Scalar]] = Field(
        min_length=1, description="patient_id, time (ISO 8601) and any of resp_rate, spo2, spo2_scale, on_oxygen, "
                                  "systolic_bp, pulse, consciousness, temperature")
    model: str | None = Field(default=None, max_length=128,
                              description="a registered binary model on monitor window features (learned risk)")
    version: int | None = Field(default=None, ge=1)
    risk_threshold: float = Field(default=0.5, ge=0, le=1)


def _monitor(svc: Any, body: VitalsIn) -> tuple[Any, Any]:
    info = svc.registry.resolve(body.model, body.version) if body.model else None
    key = (info.name, info.version, body.risk_threshold) if info else None
    monitor = svc.monitors.get(key)
    if monitor is None:
        risk_fn = None
        if info is not None:
            risk_fn = workflows.monitor.bundle_risk_fn(info.bundle_dir)
        monitor = svc.monitors[key] = Monitor(risk_fn=risk_fn, risk_threshold=body.risk_threshold)
    return monitor, info


@router.post("/v1/vitals", summary="ingest vital-sign observations; NEWS2 and alert events (clinician)")
def ingest(body: VitalsIn, svc: ServiceDep, principal: Annotated[Principal, Depends(require("vitals"))]
           ) -> dict[str, Any]:
    if len(body.observations) > svc.settings.max_observations:
        raise ApiError(413, f"at most {svc.settings.max_observations} observations per request", field="observations")
    input_digest = digest(body.model_dump(mode="json"))
    events: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []
    with svc.monitor_lock:
        monitor, info = _monitor(svc, body)
        for i, record in enumerate(body.observations):
            try:
                step = monitor.observe(record)
            except DataError as exc:
                svc.commit(principal, "vitals", model=info.name if info else None,
                           version=info.version if info else None, input_digest=input_digest, outcome="rejected",
                           status=422, detail={"accepted": i, "alerts": len(events), "field": exc.column})
                raise ApiError(422, f"observation {i}: {exc}", field=exc.column or "observations",
                               patients=[{"index": i, "patient_id": record.get("patient_id")}], accepted=i,
                               alerts=plain(events)) from None
            except PrecimedError as exc:  # a learned risk that fails is the model's problem, not the record's
                raise ApiError(422, f"observation {i}: {exc}", field="model") from None
            events.extend(step.events)
            scores.append(step.score_record())
    for e in events:
        svc.metrics.alerts.labels(e["event"]).inc()
    svc.commit(principal, "vitals", model=info.name if info else None, version=info.version if info else None,
               input_digest=input_digest, detail={"accepted": len(scores), "alerts": len(events)})
    return {"accepted": len(scores), "alerts": plain(events), "scores": plain(scores)}
