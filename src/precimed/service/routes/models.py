"""The registry over HTTP: list models, register a bundle (zip), set a FHIR mapping, promote, roll back, evaluate."""

from __future__ import annotations

import io
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from precimed import jsonio, workflows
from precimed.config import FeatureConfig
from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.container import Container
from precimed.service.registry import STAGES, VersionInfo
from precimed.service.routes.common import ERRORS, ApiError, feature_schema
from precimed.service.routes.deps import ContainerDep, require
from precimed.service.routes.fhir import mapping_bytes, parse_mapping
from precimed.service.schemas import EvaluationOut, ModelDetail, ModelList, ModelListing, ServingInfo, VersionOut

router = APIRouter(prefix="/v1/models", tags=["models"])
MAX_MEMBERS = 10_000
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    stage: Literal["staging", "production"] = "production"


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: Literal["staging", "production"] = "production"


class EvaluateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="a built-in cohort name")
    version: int | None = Field(default=None, ge=1)


def serving_info(container: Container, info: VersionInfo) -> ServingInfo:
    """A version's features, models, id column and horizons, read from its metadata (cached by its hash)."""
    key = info.metadata_sha256
    found = container.serving.get(key)
    if found is None:
        meta = container.registry.metadata(info)
        found = container.serving[key] = ServingInfo.model_validate({
            "features": feature_schema([FeatureConfig.model_validate(f) for f in meta["config"]["features"]]),
            "models": sorted(meta.get("models", {})), "id_column": meta.get("id_column"),
            "horizons": meta["config"]["task"].get("horizons") or None, "intended_use": meta.get("intended_use")})
    return found


@router.get("", summary="registered models, versions and stages (any role)", response_model=ModelList, responses=ERRORS)
def list_models(container: ContainerDep, _: Annotated[Principal, Depends(require("models:read"))]) -> ModelList:
    out = []
    for m in container.registry.list():
        listing = ModelListing.model_validate(m)
        if listing.production is not None:
            listing.serving = serving_info(container, container.registry.info(listing.name, listing.production))
        out.append(listing)
    return ModelList(models=out)


@router.get("/{name}", summary="one model: versions, stages and the production version's features (any role)",
            response_model=ModelDetail, responses=ERRORS)
def get_model(name: str, container: ContainerDep, _: Annotated[Principal, Depends(require("models:read"))],
              version: Annotated[int | None, Query(ge=1)] = None) -> ModelDetail:
    info = container.registry.resolve(name, version)
    listing = next(m for m in container.registry.list() if m["name"] == name)
    return ModelDetail.model_validate({**listing, "resolved": info.to_dict(),
                                       **serving_info(container, info).model_dump()})


def _extract(data: bytes, dest: Path, limit: int) -> Path:
    """Unpack a zip safely (no absolute paths, '..', links or zip bombs); return the folder with metadata.json."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ApiError(422, "the body must be a zip archive of a bundle folder (metadata.json, models/, ...)",
                       field="body") from None
    members = archive.infolist()
    if len(members) > MAX_MEMBERS or sum(m.file_size for m in members) > limit:
        raise ApiError(413, f"the archive unpacks to more than {limit} bytes or {MAX_MEMBERS} files", field="body")
    for m in members:
        p = PurePosixPath(m.filename)
        if p.is_absolute() or ".." in p.parts or "\\" in m.filename or stat.S_ISLNK(m.external_attr >> 16):
            raise ApiError(422, f"unsafe path in the archive: {m.filename!r}", field="body")
    archive.extractall(dest)
    found = sorted(dest.rglob("metadata.json"), key=lambda q: len(q.parts))
    if not found:
        raise ApiError(422, "the archive holds no metadata.json: not a precimed bundle", field="body")
    return found[0].parent


@router.post("", status_code=201, summary="register a bundle uploaded as a zip (data_scientist)",
             response_model=VersionOut, responses=ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/zip": {"schema": {"type": "string", "format": "binary"}}}}})
async def register(request: Request, container: ContainerDep,
                   principal: Annotated[Principal, Depends(require("register"))],
                   name: Annotated[Name | None, Query(description="registry name (default: the bundle's)")] = None,
                   ) -> VersionOut:
    data = await request.body()

    def work() -> VersionOut:
        with tempfile.TemporaryDirectory(dir=container.registry.root / ".incoming") as tmp:
            folder = _extract(data, Path(tmp), container.settings.max_upload_bytes * 4)
            info = container.registry.add(folder, name=name, actor=principal.token_id, role=principal.role)
        container.metrics.audit_rows.inc()
        return VersionOut.model_validate(info.to_dict())

    (container.registry.root / ".incoming").mkdir(exist_ok=True)
    return await run_in_threadpool(work)


@router.put("/{name}/versions/{version}/fhir-mapping", summary="set a version's FHIR mapping (data_scientist)",
            response_model=VersionOut, responses=ERRORS)
def set_fhir_mapping(name: str, version: int, container: ContainerDep,
                     principal: Annotated[Principal, Depends(require("register"))],
                     mapping: Annotated[dict[str, Any], Body(description="the mapping (see the FHIR route)")],
                     ) -> VersionOut:
    info = container.registry.info(name, version)
    data = mapping_bytes(mapping)
    parse_mapping(data, container.registry.load(info).bundle.features)  # ConfigError → 422 naming the problem
    info = container.registry.set_fhir_mapping(name, version, data, actor=principal.token_id, role=principal.role)
    container.metrics.audit_rows.inc()
    return VersionOut.model_validate(info.to_dict())


@router.post("/{name}/promote", summary="put a version in staging or production (admin)", response_model=VersionOut,
             responses=ERRORS)
def promote(name: str, body: PromoteIn, container: ContainerDep,
            principal: Annotated[Principal, Depends(require("promote"))]) -> VersionOut:
    registry = container.registry
    registry.load(registry.info(name, body.version))  # refuse to promote a bundle that fails its hashes
    info = registry.promote(name, body.version, body.stage, actor=principal.token_id, role=principal.role)
    container.metrics.audit_rows.inc()
    return VersionOut.model_validate(info.to_dict())


@router.post("/{name}/rollback", summary="return a stage to its previous version (admin)", response_model=VersionOut,
             responses=ERRORS)
def rollback(name: str, body: RollbackIn, container: ContainerDep,
             principal: Annotated[Principal, Depends(require("promote"))]) -> VersionOut:
    info = container.registry.rollback(name, body.stage, actor=principal.token_id, role=principal.role)
    container.metrics.audit_rows.inc()
    return VersionOut.model_validate(info.to_dict())


@router.post("/{name}/evaluate", summary="validate a version on a built-in cohort (data_scientist; slow)",
             response_model=EvaluationOut, responses=ERRORS)
def evaluate(name: str, body: EvaluateIn, container: ContainerDep,
             principal: Annotated[Principal, Depends(require("evaluate"))]) -> EvaluationOut:
    info = container.registry.resolve(name, body.version)
    if Path(body.dataset).exists():  # only built-in cohorts: never a file on the server
        raise ApiError(422, f"{body.dataset!r} must be a built-in cohort name", field="dataset")
    with tempfile.TemporaryDirectory() as tmp:
        result = workflows.evaluate_bundle(info.bundle_dir, body.dataset, Path(tmp) / "evaluation")
    container.commit(principal, "evaluate", model=info.name, version=info.version, input_digest=digest(body.dataset),
                     detail={"dataset": body.dataset})
    return EvaluationOut(model=info.name, version=info.version, bundle=info.bundle_ref,
                         metrics=jsonio.plain(result.metrics))


__all__ = ["STAGES", "router"]
