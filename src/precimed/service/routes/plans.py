"""Treatment plans: a patient file (facts, genotypes, options, the model's input row) → the plan, stored by id.

The plan is made by the workflows (`precimed.workflows.patients.plan_for`), which load the planning code when a
plan is first asked for; where it is not installed or not importable the route answers 501 and says so. Rules
are the packaged rule sets (a client cannot point the server at files); genotypes are diplotype calls, not VCF
paths.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from precimed.errors import DataError, RuleError
from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.db import PlanRow, to_json, utcnow
from precimed.service.registry import VersionInfo
from precimed.service.routes.common import ERRORS, ApiError, invalid_error, new_id
from precimed.service.routes.deps import ContainerDep, check_owner, require, resolve_for
from precimed.service.schemas import ErrorOut, PlanOut, StoredPlan, Version
from precimed.workflows.patients import PatientsInvalid, plan_for

router = APIRouter(tags=["plans"])
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    501: {"model": ErrorOut, "description": "planning is not available in this installation"}}


class PlanIn(BaseModel):
    """A patient file as in examples/patients/*.json, plus the registered model that scores `model_input`."""

    model_config = ConfigDict(extra="forbid")

    patient_id: str | int | None = None
    description: str = Field(default="", max_length=2000)
    facts: dict[str, Any] = Field(default_factory=dict, description="facts for the rules (age, sex, medications, ...)")
    genotypes: dict[str, str] = Field(default_factory=dict, description="gene → diplotype, e.g. {'CYP2D6': '*1/*4'}")
    predictions: dict[str, Any] = Field(default_factory=dict, description="model outputs computed elsewhere")
    options: dict[str, Any] = Field(default_factory=dict, description="treatment options {option: {benefit, ...}}")
    model_input: dict[str, Any] = Field(default_factory=dict, description="the bundle's input row for `model`")
    model: str | None = Field(default=None, max_length=128, description="registered model scoring model_input")
    version: Version | None = Field(default=None, description="pin a version in staging or production "
                                    "(default: production)")
    submodel: str | None = Field(default=None, max_length=64,
                                 description="which model of the bundle (default: the bundle's primary model)")


@router.post("/v1/plans", summary="a treatment plan for one patient (clinician)", response_model=PlanOut,
             response_model_exclude_unset=True, responses={**ERRORS, **UNAVAILABLE})
def make_plan(body: PlanIn, container: ContainerDep, principal: Annotated[Principal, Depends(require("plan"))]
              ) -> dict[str, Any]:
    planner = container.planner()  # PlanningUnavailable → 501
    input_digest = digest(body.model_dump(mode="json"))
    info: VersionInfo | None = None
    provenance: dict[str, Any] = {"service": "precimed"}
    bundle = None
    if body.model is not None:
        info = resolve_for(container, principal, body.model, body.version)
        bundle = container.registry.load(info).bundle
        provenance["bundle"] = {"model": info.name, "version": info.version, "ref": info.bundle_ref}
    version = info.version if info else None
    try:
        plan = plan_for(body.model_dump(), planner=planner, bundle=bundle, model=body.submodel,
                        source=f"{info.name} v{info.version}" if info else None, provenance=provenance)
    except PatientsInvalid as exc:  # the model's input row: name the field within model_input
        container.commit(principal, "plan", model=body.model, version=version, input_digest=input_digest,
                         outcome="rejected", status=422, detail={"fields": [p.field for p in exc.problems][:20]})
        raise invalid_error(exc, [body.patient_id], prefix="model_input.") from None
    except (DataError, RuleError) as exc:
        field = getattr(exc, "column", None)
        container.commit(principal, "plan", model=body.model, version=version, input_digest=input_digest,
                         outcome="rejected", status=422, detail={"field": field})
        raise ApiError(422, str(exc), field=field) from None
    plan_id = new_id()
    plan_json = to_json(plan)
    container.commit(principal, "plan", model=body.model, version=version, input_digest=input_digest,
                     detail={"plan_id": plan_id, "recommendations": len(plan.get("recommendations", []))},
                     rows=(PlanRow(id=plan_id, created_at=utcnow(), actor=principal.token_id, model=body.model,
                                   version=version, input_digest=input_digest, plan=plan_json),))
    return {"id": plan_id, "plan": json.loads(plan_json)}


def summary(plan: dict[str, Any], limit: int = 3) -> dict[str, Any]:
    """A few lines for a CDS card: active recommendations first, then alerts."""
    recs = [r for r in plan.get("recommendations", []) if r.get("status") == "active"]
    alerts = [a for a in plan.get("alerts", []) if a.get("level") == "error"]
    return {"active": len(recs), "lines": [str(r.get("text", "")) for r in recs[:limit]],
            "not_evaluated": len(plan.get("not_evaluated", [])), "errors": [str(a.get("message", a)) for a in alerts]}


@router.get("/v1/plans/{plan_id}", summary="a stored plan (the clinician who made it; admin)",
            response_model=StoredPlan, response_model_exclude_unset=True, responses=ERRORS)
def get_plan(plan_id: Annotated[str, Path(max_length=64)], container: ContainerDep,
             principal: Annotated[Principal, Depends(require("results:read"))]) -> dict[str, Any]:
    with container.db.session() as s:
        row = s.get(PlanRow, plan_id)
        if row is None:
            raise ApiError(404, f"no plan {plan_id!r}", field="plan_id")
        plan, created, model, version, owner = row.plan, row.created_at, row.model, row.version, row.actor
    check_owner(container, principal, owner, "plan", plan_id)
    container.commit(principal, "read_plan", model=model, version=version, detail={"plan_id": plan_id})
    return {"id": plan_id, "created_at": created, "plan": json.loads(plan)}
