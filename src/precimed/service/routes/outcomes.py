"""`POST /v1/outcomes`: outcomes attached to served predictions by prediction id and patient index (clinician or
data scientist), so drift checks can score performance on the service's own traffic; and `install(app)`, which
adds the route and runs the retention purge of served feature rows when the app is built.

The body is checked against each prediction's model version's task (survival: time >= 0 and event 0/1; binary:
label 0/1; multiclass: a class; regression: a finite value). Unknown prediction ids or indices are a 422 naming
them (prediction ids are random tokens, not patient data); an outcome already recorded is a 409 unless
`"replace": true`. Every item is written with one audit row ("outcomes": the count and each prediction id's SHA-256)
in one transaction; a refused request is audited too. Error messages never repeat a submitted value.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.container import Container, container_of
from precimed.service.routes.common import ERRORS, ApiError
from precimed.service.routes.deps import ContainerDep, require
from precimed.service.schemas import ErrorOut
from precimed.service.served import (
    OUTCOMES_ACTION,
    OutcomeItem,
    OutcomesRefused,
    attach_outcomes,
    find_rows,
    id_digests,
    maybe_purge,
    outcome_record,
    purge_at_start,
)

router = APIRouter(tags=["outcomes"])
MAX_OUTCOMES = 1_000
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class OutcomeIn(BaseModel):
    """The outcome of one served patient: the prediction's id, the patient's index in that request, and the
    outcome fields of the model's task."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                               description="the `id` of the prediction (POST /v1/models/{name}/predict answer)")
    index: int = Field(ge=0, le=100_000, description="the patient's `index` in that prediction (from 0)")
    time: FiniteFloat | None = Field(default=None, ge=0, description="survival: follow-up time, in the model's "
                                     "time unit, to the event or censoring")
    event: Literal[0, 1] | None = Field(default=None, description="survival: 1 event, 0 censored")
    label: Annotated[int, Field(ge=0, le=1_000_000)] | Annotated[str, Field(min_length=1, max_length=128)] | None = \
        Field(default=None, description="binary: 0 or 1 (1 = the outcome occurred; or the positive class); "
              "multiclass: the class")
    value: FiniteFloat | None = Field(default=None, description="regression: the observed value")


class OutcomesIn(BaseModel):
    """Outcomes to attach (at most 1,000 per request), all or none."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"outcomes": [{"prediction_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "index": 0, "label": 1}]}]})

    outcomes: list[OutcomeIn] = Field(min_length=1, max_length=MAX_OUTCOMES)
    replace: bool = Field(default=False, description="replace outcomes already recorded (otherwise 409)")


class OutcomesOut(BaseModel):
    """What was written: items recorded, how many of them replaced an earlier outcome, and when."""

    recorded: int
    replaced: int
    at: str


def _check(container: Container, body: OutcomesIn) -> dict[tuple[str, int], dict[str, Any]]:
    """The stored outcome of each item, checked against its model version's task (OutcomesRefused otherwise)."""
    keys = [(o.prediction_id, o.index) for o in body.outcomes]
    counts = Counter(keys)
    twice = [k for k, n in counts.items() if n > 1]
    if twice:
        raise OutcomesRefused(422, "the same prediction id and index appear more than once: "
                              + ", ".join(f"{pid} index {idx}" for pid, idx in twice[:20]),
                              [{"prediction_id": pid, "index": idx} for pid, idx in twice[:100]], field="outcomes")
    found = find_rows(container.db, keys)  # 422 naming unknown ids and indices
    tasks: dict[tuple[str, int], Any] = {}
    for model, version in found.values():
        if (model, version) not in tasks:
            bundle = container.registry.load(container.registry.info(model, version)).bundle
            tasks[(model, version)] = (bundle.task, bundle.metadata.get("classes"))
    records, problems = {}, []
    for n, o in enumerate(body.outcomes):
        model, version = found[(o.prediction_id, o.index)]
        task, classes = tasks[(model, version)]
        try:
            records[(o.prediction_id, o.index)] = outcome_record(task, classes, OutcomeItem(
                o.prediction_id, o.index, time=o.time, event=o.event, label=o.label, value=o.value))
        except ValueError as exc:
            problems.append({"item": n, "prediction_id": o.prediction_id, "index": o.index,
                             "field": str(exc).split(":")[0], "message": f"{model} version {version}: {exc}"})
    if problems:
        raise OutcomesRefused(422, f"{len(problems)} outcome(s) do not fit their model's task: "
                              + "; ".join(f"item {p['item']}: {p['message']}" for p in problems[:10]),
                              problems[:100], field=problems[0]["field"])
    return records


def _post(container: Container, principal: Principal, body: OutcomesIn) -> dict[str, Any]:
    container.ensure_storage()
    input_digest = digest(body.model_dump(mode="json"))
    try:
        records = _check(container, body)
        result = attach_outcomes(container.db, container.audit, principal, records, replace=body.replace,
                                 input_digest=input_digest)
    except OutcomesRefused as exc:
        container.commit(principal, OUTCOMES_ACTION, input_digest=input_digest,
                         outcome="conflict" if exc.status == 409 else "rejected", status=exc.status,
                         detail={"count": len(body.outcomes),
                                 "prediction_ids_sha256": id_digests(o.prediction_id for o in body.outcomes)})
        raise ApiError(exc.status, str(exc), field=exc.field, items=exc.items) from None
    maybe_purge(container)
    return result


@router.post("/v1/outcomes", summary="attach outcomes to served predictions by prediction id and index "
             "(clinician, data scientist)", responses={**ERRORS, 409: {"model": ErrorOut, "description": "an "
                                                                       "outcome is already recorded (send replace: "
                                                                       "true)"}},
             response_model=OutcomesOut)
async def post_outcomes(body: OutcomesIn, container: ContainerDep,
                        principal: Annotated[Principal, Depends(require("outcomes"))]) -> dict[str, Any]:
    return await run_in_threadpool(_post, container, principal, body)


def install(app: FastAPI) -> None:
    """Add the outcomes route to a service app and purge served feature rows past retention (at start)."""
    app.include_router(router)
    purge_at_start(container_of(app))
