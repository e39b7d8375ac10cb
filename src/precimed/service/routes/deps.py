"""Dependencies of the routes: the service container (`ContainerDep`), `require(permission)` (token, rate limit,
role), `optional_principal` (a token if one is sent), and the two row- and version-level checks that a role check
cannot express: `resolve_for` (which versions a caller may use) and `check_owner` (whose stored results they may
read)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from precimed.service.auth import PERMISSIONS, Principal
from precimed.service.container import Container, container_of
from precimed.service.registry import STAGES, VersionInfo
from precimed.service.routes.common import ApiError

bearer = HTTPBearer(auto_error=False, description="a token from `precimed tokens create --role ROLE`")


async def get_container(request: Request) -> Container:
    """The app's service container (async: a trivial dependency need not hop to the thread pool)."""
    return container_of(request.app)


ContainerDep = Annotated[Container, Depends(get_container)]


async def _lookup(container: Container, token: str) -> Principal | None:
    """The token's principal. On SQLite the check is one indexed read of a local file (microseconds), done on the
    event loop; on a database server it is a network round trip, done in the thread pool."""
    if container.db.dialect == "sqlite":
        return container.tokens.lookup(token)
    return await run_in_threadpool(container.tokens.lookup, token)


async def _authenticate(request: Request, container: Container,
                        credentials: HTTPAuthorizationCredentials) -> Principal:
    """The principal of a valid token within its rate limit (401 or 429 otherwise)."""
    principal = await _lookup(container, credentials.credentials)
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
    return principal


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits a valid token whose role holds `permission`, within the token's rate limit.

    Async, so a request is not handed to the thread pool just to be authenticated (the endpoint itself may be);
    the audited refusal (403) is written from the thread pool, since it waits for its commit."""
    roles = PERMISSIONS[permission]

    async def dependency(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Principal:
        container = container_of(request.app)  # not a sub-dependency: this runs on every authenticated request
        if credentials is None:
            container.metrics.rejected.labels("unauthenticated").inc()
            raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        principal = await _authenticate(request, container, credentials)
        if principal.role not in roles:
            container.metrics.rejected.labels("forbidden").inc()
            await run_in_threadpool(container.commit, principal, f"denied:{permission}", outcome="denied",
                                    status=403, detail={"route": request.url.path[:200]})
            raise ApiError(403, f"role {principal.role!r} may not {permission}; it needs one of {sorted(roles)}")
        return principal

    return dependency


async def optional_principal(request: Request, container: ContainerDep,
                             credentials: HTTPAuthorizationCredentials | None = Security(bearer)
                             ) -> Principal | None:
    """The caller's principal when a token is sent (401 if it is not valid), None when none is sent: for routes
    that answer everyone but tell more to a known caller."""
    if credentials is None:
        return None
    return await _authenticate(request, container, credentials)


def resolve_for(container: Container, principal: Principal, name: str, version: int | None) -> VersionInfo:
    """The version a request gets (production unless pinned), if the caller may use it.

    A clinician scores patients only with a version an administrator put in staging or production; pinning the
    number of any other version is refused (403, audited). Data scientists and admins may use any version.
    """
    info = container.registry.resolve(name, version)
    if principal.may("versions:any") or any(stage in info.stages for stage in STAGES):
        return info
    container.metrics.rejected.labels("forbidden").inc()
    container.commit(principal, "denied:version", model=info.name, version=info.version, outcome="denied",
                     status=403, detail={"stages": list(info.stages)})
    raise ApiError(403, f"role {principal.role!r} may use only versions in staging or production; {info.name} "
                   f"version {info.version} is in neither (an administrator must promote it first)", field="version")


def check_owner(container: Container, principal: Principal, owner: str, kind: str, item_id: str) -> None:
    """Let the caller read a stored `kind` (prediction, plan) only if they made it or may read everyone's.

    Someone else's item answers exactly like a missing one (404), so ids cannot be probed; the attempt is audited.
    """
    if owner == principal.token_id or principal.may("results:read_all"):
        return
    container.commit(principal, f"denied:read_{kind}", outcome="denied", status=404, detail={f"{kind}_id": item_id})
    raise ApiError(404, f"no {kind} {item_id!r}", field=f"{kind}_id")
