"""Dependencies of the routes: the service container (`ContainerDep`) and `require(permission)` (token, rate limit,
role)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from precimed.service.auth import PERMISSIONS, Principal
from precimed.service.container import Container, container_of
from precimed.service.routes.common import ApiError

bearer = HTTPBearer(auto_error=False, description="a token from `precimed tokens create --role ROLE`")


async def get_container(request: Request) -> Container:
    """The app's service container (async: a trivial dependency need not hop to the thread pool)."""
    return container_of(request.app)


ContainerDep = Annotated[Container, Depends(get_container)]


def require(permission: str) -> Callable[..., Principal]:
    """A dependency that admits a valid token whose role holds `permission`, within the token's rate limit."""
    roles = PERMISSIONS[permission]

    def dependency(request: Request, container: ContainerDep,
                   credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Principal:
        if credentials is None:
            container.metrics.rejected.labels("unauthenticated").inc()
            raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        principal = container.tokens.lookup(credentials.credentials)
        if principal is None:
            container.metrics.rejected.labels("bad_token").inc()
            raise ApiError(401, "invalid or revoked token",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        request.state.principal = principal
        allowed, wait = container.limiter.allow(principal.token_id)
        if not allowed:
            container.metrics.rejected.labels("rate_limited").inc()
            raise ApiError(429, f"rate limit of this token exceeded; retry in {wait} s",
                           headers={"Retry-After": str(wait)})
        if principal.role not in roles:
            container.metrics.rejected.labels("forbidden").inc()
            container.commit(principal, f"denied:{permission}", outcome="denied", status=403,
                             detail={"route": request.url.path[:200]})
            raise ApiError(403, f"role {principal.role!r} may not {permission}; it needs one of {sorted(roles)}")
        return principal

    return dependency
