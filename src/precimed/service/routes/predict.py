"""Predict and explain for one or many patients; stored predictions fetched by id."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.db import PredictionRow, to_json, utcnow
from precimed.service.routes.common import (
    ApiError,
    ErrorOut,
    ExplainIn,
    PatientsIn,
    PatientsInvalid,
    invalid_error,
    new_id,
    score,
)
from precimed.service.routes.deps import ServiceDep, require

router = APIRouter(tags=["predictions"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or invalid token"},
    403: {"model": ErrorOut, "description": "the token's role may not do this"},
    404: {"model": ErrorOut, "description": "no such model or version"},
    413: {"model": ErrorOut, "description": "request too large"},
    422: {"model": ErrorOut, "description": "bad input: names each bad field and patient"},
    429: {"model": ErrorOut, "description": "rate limited"},
}


def _run(svc: Any, principal: Principal, name: str, body: PatientsIn | ExplainIn, *, kind: str) -> dict[str, Any]:
    """validate → call → audit → respond, for predict and explain."""
    if len(body.patients) > svc.settings.max_patients:
        raise ApiError(413, f"at most {svc.settings.max_patients} patients per request; got {len(body.patients)}",
                       field="patients")
    info = svc.registry.resolve(name, body.version)
    loaded = svc.registry.load(info)
    input_digest = digest(body.model_dump(mode="json"))
    try:
        if kind == "explain":
            scored = score(loaded, body.patients, model=body.model, explain_top_k=body.top_k)  # type: ignore[union-attr]
        else:
            scored = score(loaded, body.patients, model=body.model,
                           allow_out_of_range=body.allow_out_of_range)  # type: ignore[union-attr]
    except PatientsInvalid as exc:
        ids = [p.get("patient_id") for p in body.patients]
        err = invalid_error(exc, ids)
        svc.commit(principal, kind, model=info.name, version=info.version, input_digest=input_digest,
                   outcome="rejected", status=422,
                   detail={"fields": [e["field"] for e in err.extra["errors"]][:20], "patients": len(body.patients)})
        raise err from None
    pred_id = new_id()
    result = {"id": pred_id, "model": info.name, "version": info.version, "bundle": info.bundle_ref,
              "stage": "production" if body.version is None else "pinned", "submodel": body.model,
              "task": info.task, "predictions" if kind == "predict" else "explanations": scored.rows}
    row = PredictionRow(id=pred_id, created_at=utcnow(), actor=principal.token_id, kind=kind, model=info.name,
                        version=info.version, bundle_ref=info.bundle_ref, input_digest=input_digest,
                        result=to_json(result))
    svc.commit(principal, kind, model=info.name, version=info.version, input_digest=input_digest,
               detail={"prediction_id": pred_id, "patients": len(scored.rows)}, rows=(row,))
    svc.metrics.predictions.labels(info.name, str(info.version), kind).inc(len(scored.rows))
    return result


@router.post("/v1/models/{name}/predict", summary="predict for one or many patients (clinician)", responses=ERRORS)
def predict(name: str, body: PatientsIn, svc: ServiceDep,
            principal: Annotated[Principal, Depends(require("predict"))]) -> dict[str, Any]:
    return _run(svc, principal, name, body, kind="predict")


@router.post("/v1/models/{name}/explain", summary="each patient's prediction and the features that drove it "
             "(clinician)", responses=ERRORS)
def explain(name: str, body: ExplainIn, svc: ServiceDep,
            principal: Annotated[Principal, Depends(require("explain"))]) -> dict[str, Any]:
    return _run(svc, principal, name, body, kind="explain")


@router.get("/v1/predictions/{prediction_id}", summary="a stored prediction or explanation (clinician)",
            responses=ERRORS)
def get_prediction(prediction_id: Annotated[str, Path(max_length=64)], svc: ServiceDep,
                   principal: Annotated[Principal, Depends(require("results:read"))]) -> dict[str, Any]:
    with svc.db.session() as s:
        row = s.get(PredictionRow, prediction_id)
        if row is None:
            raise ApiError(404, f"no prediction {prediction_id!r}", field="prediction_id")
        result, model, version = row.result, row.model, row.version
    svc.commit(principal, "read_prediction", model=model, version=version, detail={"prediction_id": prediction_id})
    return {**json.loads(result), "created_at": row.created_at}
