"""Treatment plans: a patient file (facts, genotypes, options, the model's input row) → the plan, stored by id.

The planning code (`precimed.planning`) is looked up when a plan is first asked for; where it is not installed
or not importable the route answers 501 and says so. Rules are the packaged rule sets (a client cannot point the
server at files); genotypes are diplotype calls, not VCF paths.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from precimed import workflows
from precimed.errors import DataError, RuleError
from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.db import PlanRow, to_json, utcnow
from precimed.service.routes.common import ApiError, PatientsInvalid, invalid_error, new_id, score
from precimed.service.routes.deps import ServiceDep, require

router = APIRouter(tags=["plans"])
_lock = threading.Lock()


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
    version: int | None = Field(default=None, ge=1)
    submodel: str = Field(default=workflows.DEEP_MODEL, max_length=64)


class Planner:
    """make_plan and the packaged rule book, found once."""

    def __init__(self, make_plan: Callable[..., dict[str, Any]], rules: Any) -> None:
        self.make_plan = make_plan
        self.rules = rules


def planner(svc: Any) -> Planner:
    """The planning functions, or 501 if the planning module is not available."""
    found = svc.cache.get("planner")
    if found is not None:
        return found
    with _lock:
        try:
            import precimed.planning as planning

            make_plan = getattr(planning, "make_plan", None)
            load_rules = getattr(planning, "load_rules", None)
            if make_plan is None or load_rules is None:  # not re-exported (yet): the modules that define them
                from precimed.planning.plan import make_plan
                from precimed.planning.rules import load_rules
            rules = load_rules()
        except Exception as exc:  # missing, half-written or failing to load its rules: not this request's fault
            raise ApiError(501, "treatment planning is not available in this installation "
                           f"({type(exc).__name__} while loading precimed.planning)") from None
        found = svc.cache["planner"] = Planner(make_plan, rules)
        return found


def plan_predictions(svc: Any, name: str, version: int | None, submodel: str, row: dict[str, Any],
                     patient_id: Any) -> tuple[dict[str, Any], Any]:
    """The model's outputs for one patient, named as the plan's rules expect (probability, event_probability_…)."""
    info = svc.registry.resolve(name, version)
    loaded = svc.registry.load(info)
    try:
        scored = score(loaded, [{"patient_id": patient_id, **row}], model=submodel)
    except PatientsInvalid as exc:
        err = invalid_error(exc, [patient_id])
        err.field = f"model_input.{err.field}"
        raise err from None
    out = {k: v for k, v in scored.rows[0].items() if k not in ("index", "patient_id", "missing")
           and isinstance(v, int | float) and not isinstance(v, bool)}
    return {k: {"value": v, "model": f"{info.name} v{info.version}"} for k, v in out.items()}, info


@router.post("/v1/plans", summary="a treatment plan for one patient (clinician)",
             responses={501: {"description": "planning is not available in this installation"}})
def make_plan(body: PlanIn, svc: ServiceDep, principal: Annotated[Principal, Depends(require("plan"))]
              ) -> dict[str, Any]:
    p = planner(svc)
    input_digest = digest(body.model_dump(mode="json"))
    predictions = dict(body.predictions)
    info = None
    if body.model is not None:
        if not body.model_input:
            raise ApiError(422, "model is given but model_input is empty: send the bundle's input row",
                           field="model_input")
        computed, info = plan_predictions(svc, body.model, body.version, body.submodel, body.model_input,
                                          body.patient_id)
        predictions.update(computed)
    facts = dict(body.facts)
    if body.patient_id is not None:
        facts.setdefault("patient_id", str(body.patient_id))
    provenance: dict[str, Any] = {"service": "precimed"}
    if info is not None:
        provenance["bundle"] = {"model": info.name, "version": info.version, "ref": info.bundle_ref}
    try:
        plan = p.make_plan(facts, predictions, rules=p.rules, genotypes=body.genotypes or None,
                           options=body.options or None, provenance=provenance)
    except (DataError, RuleError) as exc:
        svc.commit(principal, "plan", model=body.model, version=info.version if info else None,
                   input_digest=input_digest, outcome="rejected", status=422,
                   detail={"field": getattr(exc, "column", None)})
        raise ApiError(422, str(exc), field=getattr(exc, "column", None)) from None
    plan_id = new_id()
    svc.commit(principal, "plan", model=body.model, version=info.version if info else None, input_digest=input_digest,
               detail={"plan_id": plan_id, "recommendations": len(plan.get("recommendations", []))},
               rows=(PlanRow(id=plan_id, created_at=utcnow(), actor=principal.token_id, model=body.model,
                             version=info.version if info else None, input_digest=input_digest, plan=to_json(plan)),))
    return {"id": plan_id, "plan": json.loads(to_json(plan))}


def summary(plan: dict[str, Any], limit: int = 3) -> dict[str, Any]:
    """A few lines for a CDS card: active recommendations first, then alerts."""
    recs = [r for r in plan.get("recommendations", []) if r.get("status") == "active"]
    alerts = [a for a in plan.get("alerts", []) if a.get("level") == "error"]
    return {"active": len(recs), "lines": [str(r.get("text", "")) for r in recs[:limit]],
            "not_evaluated": len(plan.get("not_evaluated", [])), "errors": [str(a.get("message", a)) for a in alerts]}


@router.get("/v1/plans/{plan_id}", summary="a stored plan (clinician)")
def get_plan(plan_id: Annotated[str, Path(max_length=64)], svc: ServiceDep,
             principal: Annotated[Principal, Depends(require("results:read"))]) -> dict[str, Any]:
    with svc.db.session() as s:
        row = s.get(PlanRow, plan_id)
        if row is None:
            raise ApiError(404, f"no plan {plan_id!r}", field="plan_id")
        plan, created, model, version = row.plan, row.created_at, row.model, row.version
    svc.commit(principal, "read_plan", model=model, version=version, detail={"plan_id": plan_id})
    return {"id": plan_id, "created_at": created, "plan": json.loads(plan)}
