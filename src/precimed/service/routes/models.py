"""The registry over HTTP: list models, register a bundle (zip), set a FHIR mapping, promote, roll back, evaluate.

An upload is untrusted until its bundle verifies: a body that is not a zip, a damaged or encrypted archive, a zip
bomb, unsafe member paths and a bundle that fails its hashes or cannot be decoded are all answered 422 with one line
that names no server path.
"""

from __future__ import annotations

import errno
import io
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from precimed import jsonio, workflows
from precimed.bundle import BundleInvalid
from precimed.config import FeatureConfig
from precimed.errors import ArtifactError
from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.container import Container
from precimed.service.registry import STAGES, VersionInfo
from precimed.service.routes.common import ERRORS, ApiError, feature_schema
from precimed.service.routes.deps import ContainerDep, require, resolve_for
from precimed.service.routes.fhir import check_mapping, mapping_bytes
from precimed.service.schemas import (
    EvaluationOut,
    ModelDetail,
    ModelList,
    ModelListing,
    ServingInfo,
    Version,
    VersionOut,
)
from precimed.workflows.limited import EVALUATIONS, JobBusy, JobFailed, JobLimitExceeded

router = APIRouter(prefix="/v1/models", tags=["models"])
MAX_MEMBERS = 10_000
MAX_RATIO = 100  # largest compression ratio of a member over 1 MB: bundle files compress about 3-10 times
BOMB_FLOOR = 1_000_000
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Version
    stage: Literal["staging", "production"] = "production"


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: Literal["staging", "production"] = "production"


class EvaluateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="a built-in cohort name")
    version: Version | None = None


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
def get_model(name: str, container: ContainerDep, principal: Annotated[Principal, Depends(require("models:read"))],
              version: Annotated[Version | None, Query(description="a version (clinicians: one in staging or "
                                                       "production)")] = None) -> ModelDetail:
    info = resolve_for(container, principal, name, version)
    listing = next(m for m in container.registry.list() if m["name"] == name)
    return ModelDetail.model_validate({**listing, "resolved": info.to_dict(),
                                       **serving_info(container, info).model_dump()})


def _bad_upload(message: str) -> ApiError:
    return ApiError(422, message, field="body")


def _open_zip(data: bytes) -> zipfile.ZipFile:
    """The archive, or 422 when the body is not a readable zip (a pickle, a truncated or mangled file)."""
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError):
        raise _bad_upload("the body must be a zip archive of a bundle folder (metadata.json, models/, ...)") from None


def _check_members(members: list[zipfile.ZipInfo], limit: int) -> None:
    """422 for a zip bomb (too many files, too large unpacked, or a member compressed beyond any bundle file) and
    for unsafe member paths (absolute, '..', backslashes, drive letters, links)."""
    if len(members) > MAX_MEMBERS or sum(m.file_size for m in members) > limit:
        raise _bad_upload(f"the archive unpacks to more than {limit} bytes or {MAX_MEMBERS} files; refused as a "
                          "zip bomb")
    for m in members:
        if m.file_size > BOMB_FLOOR and m.file_size > MAX_RATIO * max(m.compress_size, 1):
            ratio = m.file_size // max(m.compress_size, 1)
            raise _bad_upload(f"archive member {m.filename[:80]!r} is compressed {ratio} times (at most "
                              f"{MAX_RATIO}); refused as a zip bomb")
        p = PurePosixPath(m.filename)
        if (p.is_absolute() or ".." in p.parts or "\\" in m.filename or ":" in m.filename
                or stat.S_ISLNK(m.external_attr >> 16)):
            raise _bad_upload(f"unsafe path in the archive: {m.filename[:80]!r}")


def _extract(data: bytes, dest: Path, limit: int) -> Path:
    """Unpack a zip safely (no absolute paths, '..', links or zip bombs); return the folder with metadata.json."""
    archive = _open_zip(data)
    members = archive.infolist()
    _check_members(members, limit)
    try:
        archive.extractall(dest)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        # a CRC mismatch (also what a member larger than its declared size gives), bad deflate data, an unsupported
        # compression method, an encrypted member
        raise _bad_upload(f"the archive is damaged or uses an unsupported feature ({type(exc).__name__})") from None
    except OSError as exc:
        if exc.errno not in (errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EILSEQ):
            raise  # the server's disk, not the archive
        raise _bad_upload(f"the archive's file names cannot be unpacked ({type(exc).__name__})") from None
    found = sorted(dest.rglob("metadata.json"), key=lambda q: len(q.parts))
    if not found:
        raise _bad_upload("the archive holds no metadata.json: not a precimed bundle")
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
            try:
                info = container.registry.add(folder, name=name, actor=principal.token_id, role=principal.role)
            except BundleInvalid as exc:  # the reason names files inside the bundle, never the server's folders
                raise _bad_upload(f"the uploaded bundle was refused: {exc.reason}") from None
            except ArtifactError:
                raise _bad_upload("the uploaded bundle failed verification") from None
        container.metrics.audit_rows.inc()
        return VersionOut.model_validate(info.to_dict())

    (container.registry.root / ".incoming").mkdir(exist_ok=True)
    return await run_in_threadpool(work)


@router.put("/{name}/versions/{version}/fhir-mapping", summary="set a version's FHIR mapping (data_scientist)",
            response_model=VersionOut, responses=ERRORS)
def set_fhir_mapping(name: str, version: Annotated[Version, PathParam()], container: ContainerDep,
                     principal: Annotated[Principal, Depends(require("register"))],
                     mapping: Annotated[dict[str, Any], Body(description="the mapping (see the FHIR route)")],
                     ) -> VersionOut:
    info = container.registry.info(name, version)
    # checked as sent, before serializing (which would turn NaN and infinity into null): ConfigError → 422
    check_mapping(mapping, container.registry.load(info).bundle.features)
    data = mapping_bytes(mapping)
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
    cohorts = sorted(d.name for d in workflows.list_datasets())
    if body.dataset not in cohorts:  # by name only: never a file on the server, never a probe of one
        raise ApiError(422, f"dataset must be a built-in cohort: one of {', '.join(cohorts)}", field="dataset")
    # The bundle's config came from an upload: evaluate it in a child process under limits, one at a time.
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = EVALUATIONS.run(workflows.evaluate_bundle, info.bundle_dir, body.dataset,
                                     Path(tmp) / "evaluation")
        except JobBusy as exc:
            raise ApiError(429, f"{exc} (one evaluation runs at a time)", headers={"Retry-After": "30"}) from None
        except (JobLimitExceeded, JobFailed) as exc:
            raise ApiError(422, f"evaluating {info.name} version {info.version} on {body.dataset!r}: {exc}",
                           field="version") from None
    container.commit(principal, "evaluate", model=info.name, version=info.version, input_digest=digest(body.dataset),
                     detail={"dataset": body.dataset})
    return EvaluationOut(model=info.name, version=info.version, bundle=info.bundle_ref,
                         metrics=jsonio.plain(result.metrics))


__all__ = ["STAGES", "router"]
