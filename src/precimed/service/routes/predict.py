"""Predict and explain for one or many patients; one DICOM file scored by an imaging model; stored predictions
fetched by id (by whoever made them, or an admin).

`POST /v1/models/{name}/predict` takes JSON patients (a tabular model) or, with `Content-Type: application/dicom`,
the raw bytes of one DICOM file (an imaging model; `version` and `model` as query parameters). The JSON operation is
the one FastAPI builds from `PatientsIn`; a DICOM request is handed to a second handler by the route class
`JsonOrDicomRoute`, and the OpenAPI document lists both media types. The file is de-identified by the workflow
before it is hashed or read (`precimed.workflows.dicom_upload`); the stored row and the audit record hold only that
digest, the model, the version and the per-slice results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from precimed.bundle import Bundle
from precimed.errors import DataError
from precimed.service.audit import plain_digest
from precimed.service.auth import Principal
from precimed.service.container import Container
from precimed.service.db import Insert, PredictionRow, to_json, to_json_plain, utcnow
from precimed.service.registry import VersionInfo
from precimed.service.routes.common import ERRORS, ApiError, ExplainIn, PatientsIn, invalid_error, new_id
from precimed.service.routes.deps import ContainerDep, check_owner, require, resolve_for
from precimed.service.schemas import ExplanationOut, ImagePredictionOut, PredictionOut, StoredPrediction, Version
from precimed.service.served import maybe_purge, served_rows
from precimed.workflows import dicom_upload
from precimed.workflows.patients import PatientsInvalid, score

router = APIRouter(tags=["predictions"])
DICOM = "application/dicom"
IMAGE_PATH = re.compile(r"^/v1/models/[^/]+/predict$")


def is_dicom(scope: Scope) -> bool:
    """The request sends a DICOM file: every Content-Type header it carries (at least one) is application/dicom."""
    types = [v.split(b";")[0].strip().lower() for k, v in scope.get("headers") or [] if k == b"content-type"]
    return bool(types) and all(t == DICOM.encode() for t in types)


def is_image_upload(scope: Scope) -> bool:
    """A DICOM file sent to a model's predict route (the body limit is `max_image_bytes` for these)."""
    return scope.get("method") == "POST" and bool(IMAGE_PATH.match(scope.get("path", ""))) and is_dicom(scope)


#: a JSON predict request of at most this many patients for a compiled bundle on SQLite is scored on the event loop
#: (tens of microseconds a patient, cheaper than the hop to a worker thread); larger ones, explanations, bundles
#: without a compiled scorer and database servers (whose reads are network round trips) go to the thread pool
INLINE_PATIENTS = 8


@dataclass
class Prepared:
    """A scored (or refused) request, ready to be committed: the answer, its stored text and the audit fields."""

    kind: str
    info: VersionInfo
    input_digest: str
    detail: dict[str, Any]
    result: dict[str, Any] | None = None
    text: str = ""
    rows: tuple[Any, ...] = ()
    count: int = 0
    error: ApiError | None = None

    def audit(self) -> dict[str, Any]:
        """The keyword arguments of the request's audit record (`Container.commit`)."""
        fields: dict[str, Any] = {"model": self.info.name, "version": self.info.version,
                                  "input_digest": self.input_digest, "detail": self.detail, "rows": self.rows}
        if self.error is not None:
            fields.update(outcome="rejected", status=422)
        return fields


def _target(container: Container, principal: Principal, name: str, body: PatientsIn | ExplainIn
            ) -> tuple[VersionInfo, Bundle]:
    """The version the request may use and its loaded bundle (413, 403 or 422 otherwise)."""
    if len(body.patients) > container.settings.max_patients:
        raise ApiError(413, f"at most {container.settings.max_patients} patients per request; got "
                       f"{len(body.patients)}", field="patients")
    info = resolve_for(container, principal, name, body.version)
    bundle = container.registry.load(info).bundle
    if dicom_upload.is_imaging(bundle):
        raise ApiError(422, f"model {info.name} scores images; send the DICOM file as application/dicom to "
                       f"/v1/models/{info.name}/predict", field="patients")
    return info, bundle


def _prepare(container: Container, principal: Principal, info: VersionInfo, bundle: Bundle,
             body: PatientsIn | ExplainIn) -> Prepared:
    """validate → call, for predict and explain: the answer and what its audit record stores."""
    kind = "explain" if isinstance(body, ExplainIn) else "predict"
    input_digest = plain_digest(body.model_dump(mode="json"))  # JSON object keys are strings
    try:
        if isinstance(body, ExplainIn):
            scored = score(bundle, body.patients, model=body.model, explain_top_k=body.top_k)
        else:
            scored = score(bundle, body.patients, model=body.model, allow_out_of_range=body.allow_out_of_range)
    except PatientsInvalid as exc:
        return Prepared(kind, info, input_digest,
                        {"fields": [p.field for p in exc.problems][:20], "patients": len(body.patients)},
                        error=invalid_error(exc, [p.get("patient_id") for p in body.patients]))
    pred_id = new_id()
    result = {"id": pred_id, "model": info.name, "version": info.version, "bundle": info.bundle_ref,
              "stage": "production" if body.version is None else "pinned", "submodel": scored.model,
              "task": info.task, "predictions" if kind == "predict" else "explanations": scored.rows}
    text = to_json_plain(result)  # str keys throughout: request keys were validated as feature names
    now = utcnow()
    row = Insert.of(PredictionRow, id=pred_id, created_at=now, actor=principal.token_id, kind=kind, model=info.name,
                    version=info.version, bundle_ref=info.bundle_ref, input_digest=input_digest, result=text)
    # each patient's encoded feature vector and outputs (no identifiers), for drift: durable with the prediction
    served = served_rows(container.settings.served_features_days, pred_id, now, info.name, info.version,
                         scored) if kind == "predict" else ()
    return Prepared(kind, info, input_digest, {"prediction_id": pred_id, "patients": len(scored.rows)}, result, text,
                    (row, *served), len(scored.rows))


def _target_and_prepare(container: Container, principal: Principal, name: str, body: PatientsIn) -> Prepared:
    return _prepare(container, principal, *_target(container, principal, name, body), body)


def _committed(container: Container, prepared: Prepared) -> None:
    """After the commit: the refusal raised, or the counters and the retention purge."""
    if prepared.error is not None:
        raise prepared.error
    container.metrics.predictions.labels(prepared.info.name, str(prepared.info.version), prepared.kind
                                         ).inc(prepared.count)
    maybe_purge(container)  # retention of the served rows: at most once a day, a comparison otherwise


def _run(container: Container, principal: Principal, name: str, body: PatientsIn | ExplainIn) -> dict[str, Any]:
    """validate → call → audit → respond, in a worker thread (explain)."""
    info, bundle = _target(container, principal, name, body)
    prepared = _prepare(container, principal, info, bundle, body)
    container.commit(principal, prepared.kind, **prepared.audit())
    _committed(container, prepared)
    assert prepared.result is not None
    return prepared.result


async def _run_async(container: Container, principal: Principal, name: str, body: PatientsIn) -> Response:
    """validate → call → audit → respond on the event loop (predict): a small request on a compiled bundle is
    scored here, anything else in a worker thread; the commit is awaited (group commit), and the stored JSON text is
    the response body, so the answer is byte for byte what `/v1/predictions/{id}` returns later."""
    if container.db.dialect == "sqlite" and len(body.patients) <= INLINE_PATIENTS:
        info, bundle = _target(container, principal, name, body)
        if bundle.scorer is not None:
            prepared = _prepare(container, principal, info, bundle, body)
        else:
            prepared = await run_in_threadpool(_prepare, container, principal, info, bundle, body)
    else:  # one hop to a worker thread for the registry read (a network round trip) and the scoring
        prepared = await run_in_threadpool(_target_and_prepare, container, principal, name, body)
    return await _answer(container, principal, prepared)


async def _answer(container: Container, principal: Principal, prepared: Prepared) -> Response:
    """audit (awaiting the group commit) → respond: the stored JSON text, or the request's refusal raised."""
    await container.commit_async(principal, prepared.kind, **prepared.audit())
    _committed(container, prepared)
    return Response(content=prepared.text, media_type="application/json")


def _run_image(container: Container, principal: Principal, name: str, data: bytes, version: int | None,
               model: str | None) -> dict[str, Any]:
    """resolve → de-identify, read and score (the workflow) → store and audit → respond, for one DICOM file."""
    info = resolve_for(container, principal, name, version)
    bundle = container.registry.load(info).bundle
    if not dicom_upload.is_imaging(bundle):
        raise ApiError(415, f"model {info.name} scores table rows; send JSON patients (Content-Type: "
                       "application/json), not a DICOM file", field="body")
    if model is not None and model not in bundle.models:
        raise ApiError(422, f"model {model[:64]!r} is not in {info.name} version {info.version}; it holds "
                       f"{sorted(bundle.models)}", field="model")
    try:
        scored = dicom_upload.predict_dicom_upload(bundle, data, model=model)
    except DataError as exc:  # one line naming the problem; never a value from the file
        container.commit(principal, "predict_image", model=info.name, version=info.version, outcome="rejected",
                         status=422, detail={"bytes": len(data), "problem": type(exc).__name__})
        raise ApiError(422, str(exc), field="body") from None
    pred_id = new_id()
    result = {"id": pred_id, "model": info.name, "version": info.version, "bundle": info.bundle_ref,
              "stage": "production" if version is None else "pinned", "submodel": scored.model, "task": info.task,
              "slices": scored.slices}
    row = PredictionRow(id=pred_id, created_at=utcnow(), actor=principal.token_id, kind="predict_image",
                        model=info.name, version=info.version, bundle_ref=info.bundle_ref,
                        input_digest=scored.digest, result=to_json(result))
    container.commit(principal, "predict_image", model=info.name, version=info.version, input_digest=scored.digest,
                     detail={"prediction_id": pred_id, "slices": len(scored.slices)}, rows=(row,))
    container.metrics.predictions.labels(info.name, str(info.version), "predict_image").inc(len(scored.slices))
    return result


async def predict_image(
        name: str, request: Request, container: ContainerDep,
        principal: Annotated[Principal, Depends(require("predict"))],
        version: Annotated[Version | None, Query(description="pin a registered version (default: production)")] = None,
        model: Annotated[str | None, Query(max_length=64, description="which model of the bundle (default: the "
                                           "bundle's primary model)")] = None) -> dict[str, Any]:
    """One DICOM file (the raw bytes, Content-Type: application/dicom) scored slice by slice by an imaging model."""
    data = await request.body()  # within max_image_bytes: the BodyLimit middleware stops a larger body first
    return await run_in_threadpool(_run_image, container, principal, name, data, version, model)


_IMAGE_ROUTE = APIRoute("/v1/models/{name}/predict", predict_image, methods=["POST"],
                        response_model=ImagePredictionOut, response_model_exclude_unset=True,
                        include_in_schema=False)


class JsonOrDicomRoute(APIRoute):
    """The predict route: FastAPI's JSON handler for JSON bodies, `predict_image`'s handler for application/dicom."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        json_handler = super().get_route_handler()
        image_handler = _IMAGE_ROUTE.get_route_handler()

        async def handler(request: Request) -> Response:
            return await (image_handler if is_dicom(request.scope) else json_handler)(request)

        return handler


_QUERY_ONLY_FOR_DICOM = "only with a DICOM upload (Content-Type: application/dicom); JSON requests carry it in the body"
_PREDICT_OPENAPI = {
    "description": "JSON: patients' table rows for a tabular model (the `PatientsIn` body; answers `PredictionOut`)."
                   "\n\nDICOM: the raw bytes of one DICOM file for an imaging model, with `Content-Type: "
                   "application/dicom` and `version` / `model` as query parameters; answers one row per slice "
                   "(`ImagePredictionOut`: id, model, version, bundle, stage, submodel, task, slices). The file is "
                   "de-identified before it is hashed or read; at most `max_image_bytes` (413 above). A file that is "
                   "not DICOM, damaged, compressed without a decoder or without pixel data is a 422; a DICOM file "
                   "sent to a tabular model a 415.",
    "parameters": [
        {"name": "version", "in": "query", "required": False, "description": f"pin a version; {_QUERY_ONLY_FOR_DICOM}",
         "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
        {"name": "model", "in": "query", "required": False,
         "description": f"which model of the bundle; {_QUERY_ONLY_FOR_DICOM}",
         "schema": {"type": "string", "maxLength": 64}},
    ],
    "requestBody": {"content": {DICOM: {"schema": {"type": "string", "format": "binary"}}}},
}


async def predict(name: str, body: PatientsIn, request: Request, container: ContainerDep,
                  principal: Annotated[Principal, Depends(require("predict"))]) -> Response:
    if "version" in request.query_params or "model" in request.query_params:
        raise ApiError(422, "the query parameters version and model go with a DICOM upload; with JSON patients put "
                       "them in the body", field="version" if "version" in request.query_params else "model")
    return await _run_async(container, principal, name, body)


router.add_api_route("/v1/models/{name}/predict", predict, methods=["POST"], route_class_override=JsonOrDicomRoute,
                     summary="predict for one or many patients, or for the slices of one DICOM file (clinician)",
                     responses=ERRORS, response_model=PredictionOut, openapi_extra=_PREDICT_OPENAPI)


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
