"""Predict and explain for one or many patients; stored predictions fetched by id (by whoever made them, or an
admin)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.container import Container
from precimed.service.db import PredictionRow, to_json, utcnow
from precimed.service.routes.common import ERRORS, ApiError, ExplainIn, PatientsIn, invalid_error, new_id
from precimed.service.routes.deps import ContainerDep, check_owner, require, resolve_for
from precimed.service.schemas import ExplanationOut, PredictionOut, StoredPrediction
from precimed.workflows.patients import PatientsInvalid, score

router = APIRouter(tags=["predictions"])


def _run(container: Container, principal: Principal, name: str, body: PatientsIn | ExplainIn) -> dict[str, Any]:
    """validate → call → audit → respond, for predict and explain."""
    kind = "explain" if isinstance(body, ExplainIn) else "predict"
    if len(body.patients) > container.settings.max_patients:
        raise ApiError(413, f"at most {container.settings.max_patients} patients per request; got "
                       f"{len(body.patients)}", field="patients")
    info = resolve_for(container, principal, name, body.version)
    bundle = container.registry.load(info).bundle
    input_digest = digest(body.model_dump(mode="json"))
    try:
        if isinstance(body, ExplainIn):
            scored = score(bundle, body.patients, model=body.model, explain_top_k=body.top_k)
        else:
            scored = score(bundle, body.patients, model=body.model, allow_out_of_range=body.allow_out_of_range)
    except PatientsInvalid as exc:
        err = invalid_error(exc, [p.get("patient_id") for p in body.patients])
        container.commit(principal, kind, model=info.name, version=info.version, input_digest=input_digest,
                         outcome="rejected", status=422,
                         detail={"fields": [p.field for p in exc.problems][:20], "patients": len(body.patients)})
        raise err from None
    pred_id = new_id()
    result = {"id": pred_id, "model": info.name, "version": info.version, "bundle": info.bundle_ref,
              "stage": "production" if body.version is None else "pinned", "submodel": scored.model,
              "task": info.task, "predictions" if kind == "predict" else "explanations": scored.rows}
    row = PredictionRow(id=pred_id, created_at=utcnow(), actor=principal.token_id, kind=kind, model=info.name,
                        version=info.version, bundle_ref=info.bundle_ref, input_digest=input_digest,
                        result=to_json(result))
    container.commit(principal, kind, model=info.name, version=info.version, input_digest=input_digest,
                     detail={"prediction_id": pred_id, "patients": len(scored.rows)}, rows=(row,))
    container.metrics.predictions.labels(info.name, str(info.version), kind).inc(len(scored.rows))
    return result


@router.post("/v1/models/{name}/predict", summary="predict for one or many patients (clinician)", responses=ERRORS,
             response_model=PredictionOut)
def predict(name: str, body: PatientsIn, container: ContainerDep,
            principal: Annotated[Principal, Depends(require("predict"))]) -> dict[str, Any]:
    return _run(container, principal, name, body)


@router.post("/v1/models/{name}/explain", summary="each patient's prediction and the features that drove it "
             "(clinician)", responses=ERRORS, response_model=ExplanationOut)
def explain(name: str, body: ExplainIn, container: ContainerDep,
            principal: Annotated[Principal, Depends(require("explain"))]) -> dict[str, Any]:
    return _run(container, principal, name, body)


@router.get("/v1/predictions/{prediction_id}",
            summary="a stored prediction or explanation (the clinician who made it; admin)", responses=ERRORS,
            response_model=StoredPrediction, response_model_exclude_unset=True)
def get_prediction(prediction_id: Annotated[str, Path(max_length=64)], container: ContainerDep,
                   principal: Annotated[Principal, Depends(require("results:read"))]) -> dict[str, Any]:
    with container.db.session() as s:
        row = s.get(PredictionRow, prediction_id)
        if row is None:
            raise ApiError(404, f"no prediction {prediction_id!r}", field="prediction_id")
        result, model, version, created, owner = row.result, row.model, row.version, row.created_at, row.actor
    check_owner(container, principal, owner, "prediction", prediction_id)
    container.commit(principal, "read_prediction", model=model, version=version,
                     detail={"prediction_id": prediction_id})
    return {**json.loads(result), "created_at": created}
