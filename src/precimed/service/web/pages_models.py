"""The model pages: the registry's models with their stages and held-out metrics (with confidence intervals), one
model's versions, a version's model card, its metrics report and its drift report; promotion and rollback for
administrators.

GET  /models                              every model: production and staging versions, headline metric with CI
GET  /models/{name}                       versions, stages, metrics with CIs, links; promote/rollback forms (admin)
GET  /models/{name}/{version}/card        the bundle's model_card.md (hash-checked) as escaped HTML
GET  /models/{name}/{version}/report      every model's held-out metrics with CIs and the data they came from, read
                                          from the verified bundle's metadata
GET  /models/{name}/{version}/drift       the version's drift.html when one was written to
                                          `<registry>-drift/<name>/<version>/` (else how to make one)
POST /models/{name}/promote               form: version, stage (admin; CSRF), audited by the registry
POST /models/{name}/rollback              form: stage (admin; CSRF), audited by the registry

Reading needs `models:read` (every role). A clinician sees, like the API, only what the registry says; the buttons
are shown only to a role with `promote`, and a POST from any other role is a 403 page (audited `denied:promote`).
The bundle is verified (registry.load: every file's hash) before its card or report is shown; drift.html is served
as a document of its own under a Content-Security-Policy with no script and a sandbox.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from precimed.errors import ArtifactError, ConfigError
from precimed.service.container import Container
from precimed.service.registry import STAGES, ModelNotFound, RegistryConflict, VersionInfo, check_name
from precimed.service.routes.deps import ContainerDep
from precimed.service.web.session import PageError, WebUser, csrf_protect, page_user
from precimed.service.web.templating import render
from precimed.workflows import model_pages

router = APIRouter()

#: served with a bundle's or a drift report's own HTML: no script, no plugin, no form, nothing fetched but inline
#: styles and data: images, in a sandbox (an opaque origin without scripts)
DOCUMENT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'; sandbox")
DONE = {
    "promoted": "Promoted.",
    "rolled_back": "Rolled back.",
}
Version = Annotated[int, PathParam(ge=1, le=1_000_000)]


def _name(name: str) -> str:
    try:
        return check_name(name)
    except ConfigError:
        raise PageError(404, "no such model: a model name is letters, digits, '.', '_' or '-'",
                        title="Model not found") from None


def _info(container: Container, name: str, version: int) -> VersionInfo:
    try:
        return container.registry.info(_name(name), version)
    except ModelNotFound as exc:
        raise PageError(404, str(exc), title="Model not found") from None


def _verified(container: Container, info: VersionInfo) -> dict[str, Any]:
    """The version's metadata after its whole bundle verified (every file's hash), else a 503 page."""
    try:
        return container.registry.load(info).bundle.metadata
    except ArtifactError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise PageError(503, f"{info.name} v{info.version}: the bundle failed verification ({reason}); an "
                        "administrator must check the registry", title="Model files failed verification") from None


def _version_view(container: Container, entry: dict[str, Any], name: str) -> dict[str, Any]:
    """One version's row: stages, task, when and by whom, headline metric, whether a drift report exists."""
    info = container.registry.info(name, int(entry["version"]))
    try:
        meta = container.registry.metadata(info)
        headline = model_pages.headline(meta)
        problem = None
    except ArtifactError as exc:
        meta, headline, problem = {}, None, str(exc)
    return {**entry, "headline": headline, "problem": problem,
            "primary": model_pages.primary_model(meta) if meta else None,
            "validation": model_pages.validation_label(meta) if meta else None,
            "drift": model_pages.drift_page(container.registry.root, name, info.version) is not None}


@router.get("/models", response_class=Response)
def models(request: Request, container: ContainerDep,
           user: Annotated[WebUser, Depends(page_user("models:read"))]) -> Response:
    """The registry's models: production and staging versions with the headline metric of each."""
    out = []
    for m in container.registry.list():
        shown = {}
        for stage in STAGES:
            v = m.get(stage)
            if v is not None:
                entry = next(e for e in m["versions"] if e["version"] == v)
                shown[stage] = _version_view(container, entry, m["name"])
        out.append({"name": m["name"], "versions": len(m["versions"]), "stages": shown,
                    "newest": m["versions"][-1]["version"] if m["versions"] else None})
    return render(request, "model_list.html.j2", {"models": out})


@router.get("/models/{name}", response_class=Response)
def model(request: Request, name: str, container: ContainerDep,
          user: Annotated[WebUser, Depends(page_user("models:read"))], done: str | None = None) -> Response:
    """One model: every version with its stages, metrics with CIs and links; promote/rollback forms for admins."""
    name = _name(name)
    found = next((m for m in container.registry.list() if m["name"] == name), None)
    if found is None:
        raise PageError(404, f"no model named {name!r} in the registry", title="Model not found")
    versions = [_version_view(container, e, name) for e in reversed(found["versions"])]
    return render(request, "model_detail.html.j2", {
        "name": name, "production": found["production"], "staging": found["staging"], "versions": versions,
        "stages": STAGES, "can_promote": user.may("promote"), "message": DONE.get(done or "")})


@router.get("/models/{name}/{version}/card", response_class=Response)
def card(request: Request, name: str, version: Version, container: ContainerDep,
         user: Annotated[WebUser, Depends(page_user("models:read"))]) -> Response:
    """The version's model card, from the verified bundle (its hash checked again as it is read)."""
    info = _info(container, name, version)
    meta = _verified(container, info)
    label = f"{info.name} v{info.version}"
    try:
        html = model_pages.card_html(info.bundle_dir, meta, label)
    except ArtifactError as exc:
        raise PageError(503, str(exc), title="Model card unavailable") from None
    # markdown_html escapes the card's text: raw HTML in it is shown as text
    return render(request, "model_card.html.j2", {"info": info, "card": Markup(html)})


@router.get("/models/{name}/{version}/report", response_class=Response)
def report(request: Request, name: str, version: Version, container: ContainerDep,
           user: Annotated[WebUser, Depends(page_user("models:read"))]) -> Response:
    """Every model's held-out metrics with CIs, the data behind them and the intended use (verified bundle)."""
    info = _info(container, name, version)
    meta = _verified(container, info)
    return render(request, "model_report.html.j2", {
        "info": info, "metrics": model_pages.all_metric_rows(meta), "primary": model_pages.primary_model(meta),
        "validation": model_pages.validation_label(meta), "training": meta.get("training_data") or {},
        "intended_use": meta.get("intended_use"), "created": meta.get("created_utc"),
        "comparisons": meta.get("comparisons") or [], "task": (meta.get("config") or {}).get("task") or {}})


@router.get("/models/{name}/{version}/drift", response_class=Response)
def drift(request: Request, name: str, version: Version, container: ContainerDep,
          user: Annotated[WebUser, Depends(page_user("models:read"))]) -> Response:
    """The version's drift report if one was written beside the registry; otherwise how to make one."""
    info = _info(container, name, version)
    page = model_pages.drift_page(container.registry.root, info.name, info.version)
    if page is None:  # how to make one, naming no server path
        return render(request, "model_drift.html.j2", {"info": info}, status=404)
    try:
        html = page.read_bytes()
    except OSError:
        raise PageError(503, "the drift report cannot be read", title="Drift report unavailable") from None
    return HTMLResponse(html, headers={"Content-Security-Policy": DOCUMENT_CSP, "X-Content-Type-Options": "nosniff",
                                       "Cache-Control": "no-store"})


def _change(container: Container, action: Any) -> None:
    """Run a registry change, turning its refusals into pages (404, 409, 503)."""
    try:
        action()
    except ModelNotFound as exc:
        raise PageError(404, str(exc), title="Model not found") from None
    except RegistryConflict as exc:
        raise PageError(409, str(exc), title="Nothing to change") from None
    except ArtifactError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise PageError(503, f"refused: the bundle failed verification ({reason})", title="Not promoted") from None
    container.metrics.audit_rows.inc()


@router.post("/models/{name}/promote", response_class=Response, dependencies=[Depends(csrf_protect)])
def promote(request: Request, name: str, container: ContainerDep,
            user: Annotated[WebUser, Depends(page_user("promote"))],
            version: Annotated[int, Form(ge=1, le=1_000_000)],
            stage: Annotated[Literal["staging", "production"], Form()] = "production") -> Response:
    """Put a version in staging or production (admin), after its bundle verifies; audited by the registry."""
    name = _name(name)
    registry = container.registry

    def act() -> None:
        registry.load(registry.info(name, version))  # never promote a bundle that fails its hashes
        registry.promote(name, version, stage, actor=user.token_id, role=user.role)

    _change(container, act)
    return RedirectResponse(f"/models/{name}?done=promoted", status_code=303)


@router.post("/models/{name}/rollback", response_class=Response, dependencies=[Depends(csrf_protect)])
def rollback(request: Request, name: str, container: ContainerDep,
             user: Annotated[WebUser, Depends(page_user("promote"))],
             stage: Annotated[Literal["staging", "production"], Form()] = "production") -> Response:
    """Return a stage to the version it held before its last promotion (admin); audited by the registry."""
    name = _name(name)
    _change(container, lambda: container.registry.rollback(name, stage, actor=user.token_id, role=user.role))
    return RedirectResponse(f"/models/{name}?done=rolled_back", status_code=303)
