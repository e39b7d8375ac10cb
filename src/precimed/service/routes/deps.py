"""Dependencies of the routes: the service container and `require(permission)` (token, rate limit, role)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from precimed.service.auth import PERMISSIONS, Principal
from precimed.service.routes.common import ApiError

if TYPE_CHECKING:
    from precimed.service.app import Service

bearer = HTTPBearer(auto_error=False, description="a token from `precimed tokens create --role ROLE`")


async def get_service(request: Request) -> Service:
    """The app's service container (async: a trivial dependency need not hop to the thread pool)."""
    return request.app.state.svc


ServiceDep = Annotated["Service", Depends(get_service)]


def require(permission: str) -> Callable[..., Principal]:
    """A dependency that admits a valid token whose role holds `permission`, within the token's rate limit."""
    roles = PERMISSIONS[permission]

    def dependency(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Principal:
        svc: Service = request.app.state.svc
        if credentials is None:
            svc.metrics.rejected.labels("unauthenticated").inc()
            raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        principal = svc.tokens.lookup(credentials.credentials)
        if principal is None:
            svc.metrics.rejected.labels("bad_token").inc()
            raise ApiError(401, "invalid or revoked token",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        request.state.principal = principal
        allowed, wait = svc.limiter.allow(principal.token_id)
        if not allowed:
            svc.metrics.rejected.labels("rate_limited").inc()
            raise ApiError(429, f"rate limit of this token exceeded; retry in {wait} s",
                           headers={"Retry-After": str(wait)})
        if principal.role not in roles:
            svc.metrics.rejected.labels("forbidden").inc()
            svc.commit(principal, f"denied:{permission}", outcome="denied", status=403,
                       detail={"route": request.url.path[:200]})
            raise ApiError(403, f"role {principal.role!r} may not {permission}; it needs one of {sorted(roles)}")
        return principal

    return dependency
