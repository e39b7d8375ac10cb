"""Administration: tokens (created, listed, revoked) and audit verification. Admin role only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from precimed.service.auth import Principal
from precimed.service.routes.common import ApiError
from precimed.service.routes.deps import ServiceDep, require

router = APIRouter(tags=["admin"])


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["clinician", "data_scientist", "admin"]
    label: str = Field(default="", max_length=200, description="who or what the token is for (no patient data)")


@router.post("/v1/tokens", status_code=201, summary="create a token; it is shown only in this response (admin)")
def create_token(body: TokenIn, svc: ServiceDep, principal: Annotated[Principal, Depends(require("tokens"))]
                 ) -> dict[str, Any]:
    token_id, token = svc.tokens.create(body.role, body.label)
    svc.commit(principal, "token_create", detail={"token_id": token_id, "role": body.role})
    return {"id": token_id, "role": body.role, "token": token}


@router.get("/v1/tokens", summary="tokens (ids, roles, labels; never the tokens) (admin)")
def list_tokens(svc: ServiceDep, _: Annotated[Principal, Depends(require("tokens"))]) -> dict[str, Any]:
    return {"tokens": svc.tokens.list()}


@router.delete("/v1/tokens/{token_id}", summary="revoke a token (admin)")
def revoke_token(token_id: Annotated[str, Path(max_length=32)], svc: ServiceDep,
                 principal: Annotated[Principal, Depends(require("tokens"))]) -> dict[str, Any]:
    if not svc.tokens.revoke(token_id):
        raise ApiError(404, f"no active token {token_id!r}", field="token_id")
    svc.commit(principal, "token_revoke", detail={"token_id": token_id})
    return {"id": token_id, "revoked": True}


@router.get("/v1/audit/verify", summary="verify the audit chain (admin)")
def verify(svc: ServiceDep, _: Annotated[Principal, Depends(require("audit"))]) -> dict[str, Any]:
    return svc.audit.verify().to_dict()
