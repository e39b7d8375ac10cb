"""CDS Hooks: discovery (`GET /cds-services`) and a patient-view service per model in production that has a FHIR
mapping. Discovery answers everyone, but lists the services (which name models and versions) only to a caller with
a valid token: without one the list is empty. The EHR sends the Patient and their Observations as prefetch; the
service answers with cards: the risk (model, version, missing inputs) and, where planning is available, the plan
summary.

The service does not call back into the EHR's FHIR server (no network at run time): prefetch is required.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from precimed.errors import DataError, PrecimedError, RuleError
from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.container import Container
from precimed.service.db import PlanRow, to_json, utcnow
from precimed.service.registry import VersionInfo
from precimed.service.routes.common import ERRORS, ApiError, new_id
from precimed.service.routes.deps import ContainerDep, optional_principal, require, resolve_for
from precimed.service.routes.fhir import load_mapping, map_bundle, predict_mapped
from precimed.service.routes.plans import summary
from precimed.service.schemas import CdsCards, CdsDiscovery
from precimed.workflows.patients import PlanningUnavailable, outputs, plan_for

router = APIRouter(tags=["cds-hooks"])
PREFIX = "precimed-"
HOOK = "patient-view"


class CdsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    hook: str = Field(max_length=64)
    hookInstance: str = Field(max_length=128)  # noqa: N815 (CDS Hooks field name)
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None


def _services(container: Container) -> list[tuple[str, VersionInfo]]:
    out = []
    for name in container.registry.names():
        try:
            info = container.registry.resolve(name)
        except PrecimedError:
            continue
        if info.has_fhir_mapping:
            out.append((name, info))
    return out


@router.get("/cds-services", summary="CDS Hooks discovery (token optional: without one the list is empty)",
            response_model=CdsDiscovery, responses={401: ERRORS[401]})
def discovery(container: ContainerDep, principal: Annotated[Principal | None, Depends(optional_principal)]
              ) -> dict[str, Any]:
    if principal is None:  # model names and versions are not for anonymous callers
        return {"services": []}
    return {"services": [{
        "hook": HOOK, "id": f"{PREFIX}{name}", "title": f"precimed {name} risk",
        "description": f"Risk from the production version of {name} (v{info.version}) and the treatment-plan summary.",
        "prefetch": {"patient": "Patient/{{context.patientId}}",
                     "observations": "Observation?patient={{context.patientId}}&category=laboratory,vital-signs"},
    } for name, info in _services(container)]}


def _risk_line(row: dict[str, Any], task: str) -> tuple[str, list[str]]:
    numbers = {k: v for k, v in row.items() if k not in ("index", "patient_id", "missing")
               and isinstance(v, int | float) and not isinstance(v, bool)}
    lines = [f"- {k}: {v:.3f}" for k, v in numbers.items()]
    if task == "binary" and "probability" in numbers:
        return f"risk {numbers['probability']:.0%}", lines
    horizons = [k for k in numbers if k.startswith("event_probability_")]
    if horizons:
        last = horizons[-1]
        return f"{numbers[last]:.0%} event probability by {last.removeprefix('event_probability_')}", lines
    if numbers:
        k, v = next(iter(numbers.items()))
        return f"{k} {v:.3g}", lines
    return "no score", lines


@router.post("/cds-services/{service_id}", summary="CDS Hooks patient-view: risk and plan cards (clinician)",
             response_model=CdsCards, responses=ERRORS)
def patient_view(service_id: str, request: CdsRequest, container: ContainerDep,
                 principal: Annotated[Principal, Depends(require("predict"))]) -> dict[str, Any]:
    if not service_id.startswith(PREFIX):
        raise ApiError(404, f"no CDS service {service_id!r}; see GET /cds-services", field="service_id")
    name = service_id.removeprefix(PREFIX)
    info = resolve_for(container, principal, name, None)
    if request.hook != HOOK:
        raise ApiError(422, f"service {service_id} answers the {HOOK!r} hook, not {request.hook!r}", field="hook")
    prefetch = request.prefetch or {}
    patient = prefetch.get("patient")
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise ApiError(422, "prefetch.patient (a FHIR Patient) is required; this service does not query the FHIR "
                       "server itself", field="prefetch.patient")
    context_id = request.context.get("patientId")
    if context_id is not None and patient.get("id") not in (None, context_id):
        raise ApiError(422, "prefetch.patient.id does not match context.patientId", field="context.patientId")
    observations = prefetch.get("observations") or {"resourceType": "Bundle", "entry": []}
    if not isinstance(observations, dict) or not isinstance(observations.get("entry", []), list):
        raise ApiError(422, "prefetch.observations must be a FHIR Bundle", field="prefetch.observations")
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": patient}, *observations.get("entry", [])]}
    mapping = load_mapping(container, info)
    input_digest = digest(bundle)
    mapped = map_bundle(bundle, mapping, as_of=datetime.now(UTC).date())
    result = predict_mapped(container, principal, info, mapped, model=None, kind="cds", input_digest=input_digest)
    row = result["predictions"][0]
    headline, lines = _risk_line(row, info.task)
    missing = row.get("missing") or []
    detail = [f"**{info.name} v{info.version}** ({info.bundle_ref}), prediction `{result['id']}`", "", *lines]
    if missing:
        detail += ["", f"Not recorded (imputed by the model): {', '.join(missing)}"]
    detail += [f"- {w}" for w in mapped.warnings]
    source = {"label": f"precimed {info.name} v{info.version}"}
    cards = [{"uuid": str(uuid.uuid4()), "summary": f"{info.name}: {headline}"[:140], "indicator": "info",
              "detail": "\n".join(detail), "source": source}]
    cards.append(_plan_card(container, principal, info, mapped.facts, row, source))
    return {"cards": cards}


def _plan_card(container: Container, principal: Principal, info: VersionInfo, facts: dict[str, Any],
               row: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    try:
        planner = container.planner()
    except PlanningUnavailable as exc:
        return {"uuid": str(uuid.uuid4()), "summary": "Treatment plan not available", "indicator": "info",
                "detail": str(exc), "source": source}
    predictions = {k: {"value": v, "model": f"{info.name} v{info.version}"} for k, v in outputs(row).items()}
    input_digest = digest({"facts": facts, "predictions": predictions})
    try:
        plan = plan_for({"facts": facts, "predictions": predictions}, planner=planner, provenance={
            "service": "precimed", "bundle": {"model": info.name, "version": info.version, "ref": info.bundle_ref}})
    except (DataError, RuleError) as exc:
        return {"uuid": str(uuid.uuid4()), "summary": "Treatment plan could not be made", "indicator": "warning",
                "detail": str(exc), "source": source}
    plan_id = new_id()
    plan_json = to_json(plan)
    container.commit(principal, "cds_plan", model=info.name, version=info.version, input_digest=input_digest,
                     detail={"plan_id": plan_id},
                     rows=(PlanRow(id=plan_id, created_at=utcnow(), actor=principal.token_id, model=info.name,
                                   version=info.version, input_digest=input_digest, plan=plan_json),))
    s = summary(json.loads(plan_json))
    text = (f"Plan: {s['active']} active recommendation(s)" if s["active"]
            else "Plan: no active recommendation from the available facts")
    detail = [f"plan `{plan_id}`", ""] + [f"- {line}" for line in s["lines"]]
    if s["not_evaluated"]:
        detail.append(f"\n{s['not_evaluated']} rule(s) not evaluated: facts missing from the record")
    detail += [f"- error: {e}" for e in s["errors"]]
    return {"uuid": str(uuid.uuid4()), "summary": text[:140], "indicator": "warning" if s["errors"] else "info",
            "detail": "\n".join(detail), "source": source}
