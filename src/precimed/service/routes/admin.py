"""Administration: tokens (created, listed, revoked) and audit verification. Admin role only.

A token and the audit row that creates (or revokes) it are written in one transaction (TokenStore)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from precimed.service.auth import Principal
from precimed.service.routes.common import ERRORS, ApiError
from precimed.service.routes.deps import ContainerDep, require
from precimed.service.schemas import AuditVerification, TokenCreated, TokenList, TokenRevoked

router = APIRouter(tags=["admin"])


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["clinician", "data_scientist", "admin", "auditor"]
    label: str = Field(default="", max_length=200, description="who or what the token is for (no patient data)")


@router.post("/v1/tokens", status_code=201, summary="create a token; it is shown only in this response (admin)",
             response_model=TokenCreated, responses=ERRORS)
def create_token(body: TokenIn, container: ContainerDep,
                 principal: Annotated[Principal, Depends(require("tokens"))]) -> TokenCreated:
    container.ensure_storage()
    token_id, token = container.tokens.create(body.role, body.label, actor=principal.token_id,
                                              actor_role=principal.role)
    container.metrics.audit_rows.inc()
    return TokenCreated(id=token_id, role=body.role, token=token)


@router.get("/v1/tokens", summary="tokens (ids, roles, labels; never the tokens) (admin)", response_model=TokenList,
            responses=ERRORS)
def list_tokens(container: ContainerDep, _: Annotated[Principal, Depends(require("tokens"))]) -> TokenList:
    return TokenList.model_validate({"tokens": container.tokens.list()})


@router.delete("/v1/tokens/{token_id}", summary="revoke a token (admin)", response_model=TokenRevoked,
               responses=ERRORS)
def revoke_token(token_id: Annotated[str, Path(max_length=32)], container: ContainerDep,
                 principal: Annotated[Principal, Depends(require("tokens"))]) -> TokenRevoked:
    container.ensure_storage()
    if not container.tokens.revoke(token_id, actor=principal.token_id, actor_role=principal.role):
        raise ApiError(404, f"no active token {token_id!r}", field="token_id")
    container.metrics.audit_rows.inc()
    return TokenRevoked(id=token_id, revoked=True)


@router.get("/v1/audit/verify", summary="verify the audit chain against its key and checkpoints, and stored "
            "results, stages and tokens against the chain (admin)", response_model=AuditVerification,
            responses=ERRORS)
def verify(container: ContainerDep, _: Annotated[Principal, Depends(require("audit"))]) -> AuditVerification:
    """Every problem found, by kind (see precimed.service.audit); a clean chain is checkpointed."""
    return AuditVerification.model_validate(container.audit.verify().to_dict())
