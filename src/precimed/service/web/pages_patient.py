"""The patient page: a form generated from a model's schema (or a FHIR R4 Bundle uploaded), and the result a
clinician reads: the risk with its per-patient interval, the waterfall of contributions, the patient against the
training cohort, and the treatment plan.

GET  /patients            the models the signed-in clinician may use (production and staging versions only)
GET  /patients/{model}    the form (`?version=N` pins a staging or production version); audited `page:patient`
POST /patients/{model}    score, explain and plan (CSRF-checked). With htmx (`HX-Request`) the answer is the page's
                          body fragment (form and result), always 200 so htmx swaps it, errors included; without
                          JavaScript a full page (422 when the form has errors)

The result is stored and audited exactly like the API's: a PredictionRow (and the encoded vector for drift) in one
group commit, action `predict` (`fhir_predict` for an uploaded Bundle) with `"via": "web"`; a plan is stored as a
PlanRow in the same commit. A refused form is audited `rejected` with the fields only. Neither logs nor audit rows
hold a patient id or a value: the input is recorded by its digest.

The checks and messages are the API's (`workflows.patients.check_patients` via `patient_view`), shown next to the
field they concern (aria-describedby). All rendering goes through Jinja2 with autoescape on: whatever a field holds
is shown as text. The waterfall and the risk bars are inline SVG drawn from numbers computed here (a template, not
matplotlib: see docs/web.md for the measured cost).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from precimed.bundle import Bundle
from precimed.config import FeatureConfig
from precimed.errors import DataError, RuleError
from precimed.service.audit import digest
from precimed.service.container import Container
from precimed.service.db import PlanRow, PredictionRow, to_json, utcnow
from precimed.service.registry import STAGES, VersionInfo
from precimed.service.routes.common import ApiError, new_id
from precimed.service.routes.deps import ContainerDep, resolve_for
from precimed.service.routes.fhir import load_mapping, map_bundle
from precimed.service.served import maybe_purge, served_rows
from precimed.service.web.session import WebUser, csrf_protect, page_user
from precimed.service.web.templating import environment, render
from precimed.workflows.patient_view import (
    PatientView,
    Step,
    parse_facts,
    parse_genotypes,
    parse_options,
    patient_view,
)
from precimed.workflows.patients import PATIENT_ID, PatientsInvalid, PlanningUnavailable

log = logging.getLogger("precimed.service")
router = APIRouter()

FHIR_MAX_BYTES = 512_000  # one patient's Bundle; larger uploads are refused before they are parsed
TEXT_MAX = 4000  # characters of a note or of the plan-input boxes
ID_MAX = 64
PLAN_FIELDS = ("facts", "genotypes", "options")


# ----- the form --------------------------------------------------------------------------------------------------
@dataclass
class Field:
    """One input of the form, made from a feature of the bundle's schema."""

    name: str
    label: str
    kind: str
    unit: str | None
    low: float | None = None
    high: float | None = None
    choices: list[tuple[str, str]] = field(default_factory=list)  # (value sent, text shown) for a <select>
    value: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"f-{self.name}"

    @property
    def hint(self) -> str:
        bits = []
        if self.low is not None and self.high is not None:
            bits.append(f"plausible range {self.low:g} to {self.high:g}{' ' + self.unit if self.unit else ''}")
        elif self.unit:
            bits.append(f"in {self.unit}")
        bits.append("leave blank if not recorded (the model imputes it)")
        return "; ".join(bits)


def _binary_choices(bundle: Bundle, f: FeatureConfig) -> list[tuple[str, str]]:
    """The two values of a binary feature as the preprocessor learned them (positive first)."""
    state = next((s for s in (bundle.preprocessor.encodings_ if bundle.preprocessor else [])
                  if s["name"] == f.name), {})
    pos, neg = state.get("positive"), state.get("negative")
    if pos and neg:
        return [(str(pos[0]), f"{pos[0]} (yes)"), (str(neg[0]), f"{neg[0]} (no)")]
    if pos:
        return [(str(pos[0]), f"{pos[0]} (yes)")]
    return [("1", "yes"), ("0", "no")]


def form_fields(bundle: Bundle) -> list[Field]:
    """One field per feature: label, unit, plausible range, choices for categories."""
    out = []
    for f in bundle.features:
        item = Field(f.name, f.description or f.name, f.kind, f.unit,
                     low=f.range[0] if f.range else None, high=f.range[1] if f.range else None)
        if f.kind == "binary":
            item.choices = _binary_choices(bundle, f)
        elif f.kind in ("categorical", "ordinal"):
            cats = f.categories
            if not cats and bundle.preprocessor is not None:
                cats = next((s.get("categories") for s in bundle.preprocessor.encodings_ if s["name"] == f.name), [])
            item.choices = [(str(c), str(c)) for c in cats or []]
        out.append(item)
    return out


def _text(form: FormData, name: str, limit: int = TEXT_MAX) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _value(f: Field, text: str) -> Any:
    """A form string → the value the API would receive: numbers as numbers (a non-number is passed on as text, so
    the API's check names it), empty as not recorded, choices as sent."""
    text = text.strip()
    if not text:
        return None
    if f.kind == "numeric":
        try:
            number = float(text)
        except ValueError:
            return text
        if not math.isfinite(number):
            return text
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    return text


@dataclass
class Submitted:
    """What the form sent: the patient for the model, plan inputs, the note, and the fields as typed."""

    patient: dict[str, Any]
    fields: list[Field]
    texts: dict[str, str]  # note, facts, genotypes, options, patient_id as typed
    errors: dict[str, list[str]] = field(default_factory=dict)  # plan fields and patient_id


def read_form(bundle: Bundle, form: FormData) -> Submitted:
    fields = form_fields(bundle)
    texts = {k: _text(form, k) for k in ("note", *PLAN_FIELDS)}
    texts[PATIENT_ID] = _text(form, PATIENT_ID, 1000)
    patient: dict[str, Any] = {}
    pid = texts[PATIENT_ID].strip()
    if pid:
        patient[PATIENT_ID] = pid
    for f in fields:
        f.value = _text(form, f.name, 200)
        value = _value(f, f.value)
        if value is not None:
            patient[f.name] = value
    return Submitted(patient, fields, texts)


def ordinal(value: float) -> str:
    """71 → '71st', 50 → '50th' (a percentile in words)."""
    n = int(round(value))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


environment().filters["ordinal"] = ordinal


# ----- drawing ---------------------------------------------------------------------------------------------------
W, LABEL_W, ROW_H, PAD = 680, 230, 30, 16


def _fmt(v: float, unit: str) -> str:
    return f"{v:.1f}%" if unit == "%" else f"{v:.3g}"


def waterfall_svg(view: PatientView) -> dict[str, Any] | None:
    """The waterfall as SVG geometry: one bar per step, axis from the lowest to the highest running total."""
    if not view.waterfall or view.waterfall_base is None or view.waterfall_prediction is None:
        return None
    steps: list[Step] = view.waterfall
    unit = view.waterfall_unit
    ends = [view.waterfall_base] + [s.end for s in steps] + [view.waterfall_prediction]
    lo, hi = min(ends), max(ends)
    span = max(hi - lo, 1e-9)
    lo, hi = lo - 0.12 * span, hi + 0.12 * span
    plot_w = W - LABEL_W - 2 * PAD

    def x(v: float) -> float:
        return round(LABEL_W + PAD + (v - lo) / (hi - lo) * plot_w, 1)

    top = 34
    bars = []
    for i, s in enumerate(steps):
        x0, x1 = sorted((x(s.start), x(s.end)))
        up = s.delta >= 0
        delta = f"{s.delta:+.1f} pp" if unit == "%" else f"{s.delta:+.3g}"
        bars.append({"label": s.label, "y": top + i * ROW_H, "x": x0, "w": max(x1 - x0, 1.0),
                     "fill": "#b2182b" if up else "#2166ac", "text": delta, "up": up,
                     "text_x": x1 + 4 if up else x0 - 4, "anchor": "start" if up else "end",
                     "direction": "raises" if up else "lowers"})
    height = top + len(steps) * ROW_H + 36
    return {"width": W, "height": height, "label_x": LABEL_W, "bars": bars, "bar_h": ROW_H - 10,
            "base_x": x(view.waterfall_base), "pred_x": x(view.waterfall_prediction), "axis_y": height - 28,
            "base": _fmt(view.waterfall_base, unit), "prediction": _fmt(view.waterfall_prediction, unit),
            "unit": "predicted risk (%)" if unit == "%" else unit or "model output", "bottom": height - 30}


def risk_bars(view: PatientView) -> list[dict[str, Any]]:
    """Each risk as text and (for probabilities) a 0-100 % bar with its interval band."""
    out = []
    for r in view.risks:
        factor = 100.0 if r.probability else 1.0
        fmt = (lambda v: f"{v * 100:.1f}%") if r.probability else (lambda v: f"{v:.3g}")
        item: dict[str, Any] = {"name": r.name, "label": r.label, "value": fmt(r.value),
                                "interval": f"{fmt(r.lower)} to {fmt(r.upper)}" if r.has_interval else None,
                                "outside": r.outside_interval, "interval_label": r.interval_label,
                                "interval_note": r.interval_note, "bar": None}
        if r.probability:
            scale = 4.0  # 400 px for 100 %
            item["bar"] = {"x": round(r.value * factor * scale, 1),
                           "lo": round((r.lower or 0) * factor * scale, 1) if r.has_interval else None,
                           "w": round(((r.upper or 0) - (r.lower or 0)) * factor * scale, 1) if r.has_interval
                           else None}
        out.append(item)
    return out


# ----- models the user may open ----------------------------------------------------------------------------------
def usable_versions(container: Container) -> list[dict[str, Any]]:
    """Every model with a version in production or staging (what a clinician may score with), newest stage first."""
    out = []
    for m in container.registry.list():
        for stage in ("production", "staging"):
            version = m.get(stage)
            if version is None:
                continue
            info = next((v for v in m["versions"] if v["version"] == version), {})
            meta = container.registry.metadata(container.registry.info(m["name"], version))
            out.append({"name": m["name"], "version": version, "stage": stage, "task": info.get("task"),
                        "intended_use": meta.get("intended_use"), "features": len(meta["config"]["features"]),
                        "href": f"/patients/{m['name']}" + ("" if stage == "production" else f"?version={version}")})
    return out


def _stage(info: VersionInfo) -> str:
    return next((s for s in reversed(STAGES) if s in info.stages), "unstaged")


# ----- pages -----------------------------------------------------------------------------------------------------
@router.get("/patients", response_class=Response)
def patients_home(request: Request, container: ContainerDep,
                  user: Annotated[WebUser, Depends(page_user("predict"))]) -> Response:
    """The models this clinician may use."""
    return render(request, "patient_models.html.j2", {"models": usable_versions(container)})


def _context(info: VersionInfo, bundle: Bundle, fields: list[Field], *, texts: dict[str, str] | None = None,
             errors: dict[str, list[str]] | None = None, view: PatientView | None = None,
             stored: dict[str, Any] | None = None, fhir: dict[str, Any] | None = None,
             summary: list[str] | None = None) -> dict[str, Any]:
    pinned = "" if _stage(info) == "production" else f"?version={info.version}"
    return {"info": info, "stage": _stage(info), "task": bundle.task.kind, "fields": fields,
            "action": f"/patients/{info.name}{pinned}", "texts": texts or {}, "errors": errors or {},
            "view": view, "stored": stored or {}, "fhir": fhir, "summary": summary or [],
            "risks": risk_bars(view) if view else [], "waterfall": waterfall_svg(view) if view else None,
            "card": f"/models/{info.name}/{info.version}/card", "report": f"/models/{info.name}/{info.version}/report",
            "fhir_max_kb": FHIR_MAX_BYTES // 1000, "intended_use": bundle.metadata.get("intended_use")}


def _open(container: Container, user: WebUser, name: str, version: int | None) -> tuple[VersionInfo, Bundle]:
    info = resolve_for(container, user.principal, name, version)
    return info, container.registry.load(info).bundle


def _version(request: Request) -> int | None:
    raw = request.query_params.get("version")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise ApiError(422, "version must be a whole number ≥ 1", field="version")
    return int(raw)


@router.get("/patients/{name}", response_class=Response)
def patient_form(name: str, request: Request, container: ContainerDep,
                 user: Annotated[WebUser, Depends(page_user("predict"))]) -> Response:
    """The empty form for one model (audited as a page view)."""
    info, bundle = _open(container, user, name, _version(request))
    container.commit(user.principal, "page:patient", model=info.name, version=info.version,
                     detail={"view": "form", "via": "web"})
    return render(request, "patient_page.html.j2", _context(info, bundle, form_fields(bundle)))


def _plan_inputs(container: Container, sub: Submitted, extra_facts: dict[str, Any] | None
                 ) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The plan's facts (FHIR facts, then the typed lines), genotypes and options; errors go to `sub.errors`."""
    facts: dict[str, Any] = dict(extra_facts or {})
    genotypes: dict[str, str] = {}
    options: dict[str, Any] = {}
    try:
        planner = container.planner() if any(sub.texts.get(k, "").strip() for k in PLAN_FIELDS) else None
    except PlanningUnavailable:
        planner = None
    for key, parse in (("facts", lambda t: parse_facts(t, planner)), ("genotypes", parse_genotypes),
                       ("options", parse_options)):
        try:
            parsed = parse(sub.texts.get(key, ""))
        except DataError as exc:
            sub.errors.setdefault(key, []).append(str(exc))
            continue
        if key == "facts":
            facts.update(parsed)
        elif key == "genotypes":
            genotypes = parsed
        else:
            options = parsed
    return facts, genotypes, options


def _field_errors(fields: list[Field], sub_errors: dict[str, list[str]], exc: PatientsInvalid) -> list[str]:
    """Attach each problem to its field (unknown fields and whole-patient problems go to the summary)."""
    by_name = {f.name: f for f in fields}
    summary = []
    for p in exc.problems:
        if p.field in by_name:
            by_name[p.field].errors.append(p.message)
        elif p.field == PATIENT_ID:
            sub_errors.setdefault(PATIENT_ID, []).append(p.message)
        else:
            summary.append(p.message)
    return summary


def _score_and_store(container: Container, user: WebUser, info: VersionInfo, bundle: Bundle, sub: Submitted, *,
                     kind: str, input_digest: str, extra_facts: dict[str, Any] | None = None,
                     sources: dict[str, str] | None = None, warnings: list[str] | None = None
                     ) -> tuple[PatientView | None, dict[str, Any], list[str]]:
    """Predict, explain and plan; store and audit like the API. Returns (view or None, stored ids, summary)."""
    facts, genotypes, options = _plan_inputs(container, sub, extra_facts)
    summary: list[str] = []
    view = None
    if len(sub.texts.get(PATIENT_ID, "")) > ID_MAX:
        sub.errors.setdefault(PATIENT_ID, []).append(f"patient_id must be at most {ID_MAX} characters")
    if not sub.errors:
        try:
            planner = container.planner()
        except PlanningUnavailable as exc:
            planner, plan_note = None, str(exc)
        else:
            plan_note = None
        try:
            view = patient_view(bundle, sub.patient, top_k=container.settings.explain_top_k, planner=planner,
                                plan=planner is not None, facts=facts, genotypes=genotypes, options=options,
                                source=f"{info.name} v{info.version}",
                                provenance={"service": "precimed", "via": "web", "bundle": {
                                    "model": info.name, "version": info.version, "ref": info.bundle_ref}})
        except PatientsInvalid as exc:
            summary = _field_errors(sub.fields, sub.errors, exc)
        except (DataError, RuleError) as exc:  # the planner refused a fact, genotype or option
            sub.errors.setdefault(getattr(exc, "column", None) if getattr(exc, "column", None) in PLAN_FIELDS
                                  else "facts", []).append(str(exc))
        else:
            if plan_note:
                view.plan_note = plan_note
    if view is None:
        fields = [f.name for f in sub.fields if f.errors] + list(sub.errors) + (["patients"] if summary else [])
        container.commit(user.principal, kind, model=info.name, version=info.version, input_digest=input_digest,
                         outcome="rejected", status=422,
                         detail={"fields": fields[:20], "patients": 1, "via": "web"})
        return None, {}, summary
    pred_id = new_id()
    now = utcnow()
    result = {"id": pred_id, "model": info.name, "version": info.version, "bundle": info.bundle_ref,
              "stage": _stage(info), "submodel": view.model, "task": info.task, "predictions": [view.row],
              **({"sources": sources, "warnings": warnings or []} if sources is not None else {})}
    rows: list[Any] = [PredictionRow(id=pred_id, created_at=now, actor=user.token_id, kind=kind, model=info.name,
                                     version=info.version, bundle_ref=info.bundle_ref, input_digest=input_digest,
                                     result=to_json(result))]
    rows += served_rows(container.settings.served_features_days, pred_id, now, info.name, info.version, view.scored)
    stored = {"prediction_id": pred_id, "created_at": now, "shown_at": str(now)[:16].replace("T", " ")}
    detail: dict[str, Any] = {"prediction_id": pred_id, "patients": 1, "via": "web",
                              "explained": view.explanation is not None}
    if view.plan is not None:
        plan_id = new_id()
        rows.append(PlanRow(id=plan_id, created_at=now, actor=user.token_id, model=info.name, version=info.version,
                            input_digest=input_digest, plan=to_json(view.plan)))
        stored["plan_id"] = plan_id
        detail.update(plan_id=plan_id, recommendations=len(view.plan.get("recommendations", [])))
    container.commit(user.principal, kind, model=info.name, version=info.version, input_digest=input_digest,
                     detail=detail, rows=tuple(rows))
    container.metrics.predictions.labels(info.name, str(info.version), kind).inc()
    maybe_purge(container)
    return view, stored, summary


def _read_fhir(container: Container, info: VersionInfo, data: bytes) -> tuple[dict[str, Any], Any]:
    """The uploaded Bundle → (the mapped patient, the Mapped record); ApiError 422 names the problem."""
    if len(data) > FHIR_MAX_BYTES:
        raise ApiError(413, f"the FHIR Bundle is {len(data)} bytes; at most {FHIR_MAX_BYTES} for one patient",
                       field="fhir_bundle")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(422, "the file is not JSON: upload a FHIR R4 Bundle (.json)", field="fhir_bundle") from None
    mapping = load_mapping(container, info)
    mapped = map_bundle(doc, mapping, as_of=datetime.now(UTC).date())
    patient = {k: v for k, v in mapped.features.items() if v is not None}
    if mapped.patient_id:
        patient[PATIENT_ID] = mapped.patient_id
    return patient, mapped


def _submitted_from(bundle: Bundle, patient: dict[str, Any], texts: dict[str, str]) -> Submitted:
    fields = form_fields(bundle)
    for f in fields:
        v = patient.get(f.name)
        f.value = "" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
    return Submitted(patient, fields, {**texts, PATIENT_ID: str(patient.get(PATIENT_ID, ""))})


@router.post("/patients/{name}", response_class=Response, dependencies=[Depends(csrf_protect)])
async def patient_submit(name: str, request: Request, container: ContainerDep,
                         user: Annotated[WebUser, Depends(page_user("predict"))]) -> Response:
    """Score, explain and plan the form's patient (or an uploaded FHIR Bundle's) and show the result."""
    version = _version(request)
    form = await request.form(max_files=1, max_fields=500)
    upload = form.get("fhir_bundle")
    data = await upload.read(FHIR_MAX_BYTES + 1) if isinstance(upload, UploadFile) and upload.filename else None
    htmx = request.headers.get("HX-Request") == "true"
    return await run_in_threadpool(_submit, container, user, request, name, version, form, data, htmx)


def _submit(container: Container, user: WebUser, request: Request, name: str, version: int | None, form: FormData,
            data: bytes | None, htmx: bool) -> Response:
    info, bundle = _open(container, user, name, version)
    fhir = None
    if data is not None:
        texts = {k: _text(form, k) for k in ("note", *PLAN_FIELDS)}
        input_digest = digest({"fhir": digest(data.decode("utf-8", "replace")), "plan": texts, "via": "web"})
        try:
            patient, mapped = _read_fhir(container, info, data)
        except ApiError as err:
            container.commit(user.principal, "fhir_predict", model=info.name, version=info.version,
                             input_digest=input_digest, outcome="rejected", status=err.status,
                             detail={"field": err.field, "via": "web"})
            ctx = _context(info, bundle, form_fields(bundle), texts=texts, errors={"fhir_bundle": [err.message]})
            return _page(request, ctx, htmx, status=err.status)
        sub = _submitted_from(bundle, patient, texts)
        fhir = {"sources": mapped.sources, "warnings": mapped.warnings, "facts": sorted(mapped.facts)}
        view, stored, summary = _score_and_store(container, user, info, bundle, sub, kind="fhir_predict",
                                                 input_digest=input_digest, extra_facts=mapped.facts,
                                                 sources=mapped.sources, warnings=mapped.warnings)
    else:
        sub = read_form(bundle, form)
        input_digest = digest({"patients": [sub.patient], "version": version, "via": "web",
                               "plan": {k: sub.texts[k] for k in (*PLAN_FIELDS, "note")}})
        view, stored, summary = _score_and_store(container, user, info, bundle, sub, kind="predict",
                                                 input_digest=input_digest)
    ctx = _context(info, bundle, sub.fields, texts=sub.texts, errors=sub.errors, view=view, stored=stored,
                   fhir=fhir, summary=summary)
    return _page(request, ctx, htmx, status=200 if view is not None else 422)


def _page(request: Request, ctx: dict[str, Any], htmx: bool, *, status: int) -> Response:
    """The whole page, or (htmx) the body fragment; htmx swaps only 2xx answers, so a fragment is always 200."""
    if htmx:
        return render(request, "patient_body.html.j2", ctx, status=200)
    return render(request, "patient_page.html.j2", ctx, status=status)


__all__ = ["form_fields", "read_form", "risk_bars", "router", "usable_versions", "waterfall_svg"]
