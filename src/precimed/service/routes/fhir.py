"""FHIR R4 input: a patient's Bundle mapped to a model's features by a declared mapping file.

The mapping (YAML or JSON, stored with a registered version; see `precimed registry add --fhir-mapping`):

    format: precimed.fhir-mapping/1
    observations:                       # LOINC code -> feature; the latest Observation of each code is used
      - {loinc: "2345-7", feature: glu, unit: mg/dL, convert: {mmol/L: 18.016}}
      - {loinc: "39156-5", feature: bmi, unit: kg/m2}
    patient:
      age: age                          # Patient.birthDate -> completed years at `as_of` (default: today, UTC)
      sex: {feature: sex, values: {male: 1, female: 0}}   # Patient.gender -> feature value
    facts:                              # optional, for plans and CDS cards: LOINC code -> plan fact
      - {loinc: "2160-0", fact: creatinine_mg_dl, unit: mg/dL}

A value in another unit is converted only by a declared factor (a finite number above 0); otherwise the request
is refused naming the feature and the Observation. A feature the Bundle does not carry is missing (reported,
imputed by the model), never zero. Observations marked entered-in-error or cancelled are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from precimed import jsonio
from precimed.config import FeatureConfig
from precimed.errors import ConfigError
from precimed.service.audit import digest
from precimed.service.auth import Principal
from precimed.service.container import Container
from precimed.service.db import PredictionRow, to_json, utcnow
from precimed.service.registry import VersionInfo
from precimed.service.routes.common import ERRORS, ApiError, invalid_error, new_id
from precimed.service.routes.deps import ContainerDep, require, resolve_for
from precimed.service.schemas import FhirPredictionOut, Version
from precimed.workflows.patients import PatientsInvalid, score

router = APIRouter(tags=["fhir"])
LOINC = "http://loinc.org"
IGNORED_STATUS = {"entered-in-error", "cancelled"}
FHIR_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Factor = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A unit conversion factor: NaN, infinity (or 1e999, which reads as infinity) and 0 would turn every value into
nonsense that still scores."""


class ObservationMap(_Strict):
    loinc: str = Field(min_length=1, max_length=32)
    feature: str
    unit: str | None = None
    convert: dict[str, Factor] = {}


class FactMap(_Strict):
    loinc: str = Field(min_length=1, max_length=32)
    fact: str
    unit: str | None = None
    convert: dict[str, Factor] = {}


class SexMap(_Strict):
    feature: str
    values: dict[str, str | int | float | bool]


class PatientMap(_Strict):
    age: str | None = None
    sex: SexMap | None = None


class FhirMapping(_Strict):
    format: Literal["precimed.fhir-mapping/1"]
    observations: list[ObservationMap] = []
    patient: PatientMap = PatientMap()
    facts: list[FactMap] = []

    @model_validator(mode="after")
    def _unique(self) -> FhirMapping:
        codes = [o.loinc for o in self.observations]
        twice = sorted({c for c in codes if codes.count(c) > 1})
        if twice:
            raise ValueError(f"LOINC code(s) {twice} mapped more than once")
        return self


def parse_mapping(data: bytes, features: list[FeatureConfig]) -> FhirMapping:
    """Parse and check a mapping against the bundle's features (ConfigError naming the problem)."""
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"FHIR mapping: not valid YAML/JSON ({type(exc).__name__})") from None
    return check_mapping(raw, features)


def _problem(error: Any) -> str:
    """One validation problem: the field's dotted path, what was expected and (for a scalar) the value seen."""
    where = ".".join(map(str, error["loc"])) or "mapping"
    seen = error.get("input")
    shown = f" (got {seen!r})" if isinstance(seen, int | float | str | bool) and len(repr(seen)) <= 40 else ""
    return f"{where}: {error['msg']}{shown}"


def check_mapping(raw: Any, features: list[FeatureConfig]) -> FhirMapping:
    """Check a parsed mapping against its schema and the bundle's features (ConfigError naming the field)."""
    try:
        mapping = FhirMapping.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"FHIR mapping: {'; '.join(_problem(e) for e in exc.errors()[:5])}") from None
    names = {f.name: f for f in features}
    targets = [o.feature for o in mapping.observations]
    if mapping.patient.age:
        targets.append(mapping.patient.age)
    if mapping.patient.sex:
        targets.append(mapping.patient.sex.feature)
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise ConfigError(f"FHIR mapping: {unknown} are not features of the model ({sorted(names)})")
    twice = sorted({t for t in targets if targets.count(t) > 1})
    if twice:
        raise ConfigError(f"FHIR mapping: feature(s) {twice} filled from more than one source")
    for o in mapping.observations:
        if names[o.feature].kind != "numeric":
            raise ConfigError(f"FHIR mapping: feature {o.feature!r} is {names[o.feature].kind}; Observations map "
                              "to numeric features only")
    return mapping


@dataclass
class Mapped:
    """One patient's features and facts from a FHIR Bundle, and where each came from."""

    patient_id: str | None
    features: dict[str, Any]
    facts: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _bad(message: str, field_name: str = "bundle") -> ApiError:
    return ApiError(422, message, field=field_name)


def _resources(bundle: Any) -> list[dict[str, Any]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _bad("expected a FHIR R4 Bundle (resourceType 'Bundle')", "resourceType")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise _bad("Bundle.entry must be a list", "entry")
    out = []
    for i, e in enumerate(entries):
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise _bad(f"Bundle.entry[{i}] has no resource with a resourceType", f"entry[{i}]")
        out.append(res)
    return out


def _age(birth: Any, as_of: date) -> int | None:
    if not isinstance(birth, str) or not FHIR_DATE.match(birth):
        return None
    try:
        born = date.fromisoformat(birth)
    except ValueError:
        return None
    years = as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
    return years if years >= 0 else None


def _when(res: dict[str, Any]) -> str:
    for key in ("effectiveDateTime", "issued"):
        v = res.get(key)
        if isinstance(v, str):
            try:
                t = datetime.fromisoformat(v.replace("Z", "+00:00"))
                return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
            except ValueError:
                continue
    period = res.get("effectivePeriod")
    if isinstance(period, dict) and isinstance(period.get("end") or period.get("start"), str):
        return _when({"effectiveDateTime": period.get("end") or period.get("start")})
    return ""


def _codes(res: dict[str, Any]) -> set[str]:
    code = res.get("code")
    codings = code.get("coding", []) if isinstance(code, dict) else []
    return {c["code"] for c in codings if isinstance(c, dict) and c.get("system") == LOINC
            and isinstance(c.get("code"), str)}


def _quantity(res: dict[str, Any], name: str, unit: str | None, convert: dict[str, float]) -> float:
    oid = f"Observation/{res.get('id', '?')}"
    q = res.get("valueQuantity")
    if not isinstance(q, dict) or isinstance(q.get("value"), bool) or not isinstance(q.get("value"), int | float):
        raise _bad(f"{oid} for {name} has no numeric valueQuantity.value", name)
    value = float(q["value"])
    if unit is None:
        return value
    units = {u for u in (q.get("code"), q.get("unit")) if isinstance(u, str)}
    if not units:
        raise _bad(f"{oid} for {name} has no unit; expected {unit}", name)
    if unit in units:
        return value
    for u in units:
        if u in convert:
            return value * convert[u]
    got = q.get("code") or q.get("unit")
    raise _bad(f"{oid} for {name} is in {got!r}; expected {unit!r}" +
               (f" or one of {sorted(convert)}" if convert else "") + " (declare a conversion in the mapping)", name)


def map_bundle(bundle: Any, mapping: FhirMapping, *, as_of: date) -> Mapped:
    """A FHIR Bundle of one Patient and their Observations → the model's features (and plan facts)."""
    resources = _resources(bundle)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    if len(patients) != 1:
        raise _bad(f"the Bundle must hold exactly one Patient, found {len(patients)}", "Patient")
    patient = patients[0]
    pid = patient.get("id") if isinstance(patient.get("id"), str) else None
    out = Mapped(pid, {}, {})
    if pid:
        out.facts["patient_id"] = pid
    age = _age(patient.get("birthDate"), as_of)
    if age is not None:
        out.facts["age"] = age
    if mapping.patient.age:
        if age is None:
            out.warnings.append("Patient.birthDate is absent or not a full date: age is missing")
        else:
            out.features[mapping.patient.age] = age
            out.sources[mapping.patient.age] = "Patient.birthDate"
    gender = patient.get("gender")
    if gender in ("male", "female"):
        out.facts["sex"] = gender
    if mapping.patient.sex:
        sex = mapping.patient.sex
        if isinstance(gender, str) and gender in sex.values:
            out.features[sex.feature] = sex.values[gender]
            out.sources[sex.feature] = "Patient.gender"
        else:
            out.warnings.append(f"Patient.gender {gender!r} is not mapped: {sex.feature} is missing")
    latest: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for order, res in enumerate(resources):
        if res["resourceType"] != "Observation" or res.get("status") in IGNORED_STATUS:
            continue
        subject = res.get("subject")
        ref = subject.get("reference") if isinstance(subject, dict) else None
        if pid and isinstance(ref, str) and ref not in (f"Patient/{pid}", f"urn:uuid:{pid}"):
            raise _bad(f"Observation/{res.get('id', '?')} is about {ref}, not Patient/{pid}", "subject")
        for code in _codes(res):
            key = (_when(res), order)
            if code not in latest or key >= latest[code][:2]:
                latest[code] = (*key, res)
    for o in mapping.observations:
        if o.loinc in latest:
            res = latest[o.loinc][2]
            out.features[o.feature] = _quantity(res, o.feature, o.unit, o.convert)
            out.sources[o.feature] = f"Observation/{res.get('id', '?')} (LOINC {o.loinc})"
    for f in mapping.facts:
        if f.loinc in latest:
            out.facts[f.fact] = _quantity(latest[f.loinc][2], f.fact, f.unit, f.convert)
    return out


def load_mapping(container: Container, info: VersionInfo) -> FhirMapping:
    data = container.registry.fhir_mapping(info)
    if data is None:
        raise ApiError(422, f"{info.name} v{info.version} has no FHIR mapping; register one with "
                       f"`precimed registry add --fhir-mapping FILE` or PUT /v1/models/{info.name}/versions/"
                       f"{info.version}/fhir-mapping", field="name")
    key = f"{info.name}:{info.version}:{digest(data)}"
    found = container.fhir_mappings.get(key)
    if found is None:
        found = container.fhir_mappings[key] = parse_mapping(data, container.registry.load(info).bundle.features)
    return found


def predict_mapped(container: Container, principal: Principal, info: VersionInfo, mapped: Mapped, *,
                   model: str | None, kind: str, input_digest: str) -> dict[str, Any]:
    """Score one mapped patient, store the prediction and audit it; 422 names the bad field."""
    bundle = container.registry.load(info).bundle
    patient = {"patient_id": mapped.patient_id, **mapped.features}
    try:
        scored = score(bundle, [patient], model=model)
    except PatientsInvalid as exc:
        err = invalid_error(exc, [mapped.patient_id])
        container.commit(principal, kind, model=info.name, version=info.version, input_digest=input_digest,
                         outcome="rejected", status=422, detail={"fields": [p.field for p in exc.problems]})
        raise err from None
    pred_id = new_id()
    row = scored.rows[0]
    result = {"id": pred_id, "model": info.name, "version": info.version, "bundle": info.bundle_ref,
              "submodel": scored.model, "predictions": [row], "sources": mapped.sources, "warnings": mapped.warnings}
    container.commit(principal, kind, model=info.name, version=info.version, input_digest=input_digest,
                     detail={"prediction_id": pred_id, "patients": 1},
                     rows=(PredictionRow(id=pred_id, created_at=utcnow(), actor=principal.token_id, kind=kind,
                                         model=info.name, version=info.version, bundle_ref=info.bundle_ref,
                                         input_digest=input_digest, result=to_json(result)),))
    container.metrics.predictions.labels(info.name, str(info.version), kind).inc()
    return result


@router.post("/v1/fhir/{name}/predict", summary="predict from a FHIR R4 Bundle (clinician)", responses=ERRORS,
             response_model=FhirPredictionOut)
def fhir_predict(name: str, container: ContainerDep, principal: Annotated[Principal, Depends(require("predict"))],
                 bundle: Annotated[dict[str, Any], Body(description="a FHIR R4 Bundle: one Patient and their "
                                                                    "Observations")],
                 version: Annotated[Version | None, Query(description="pin a version (clinicians: one in staging "
                                                          "or production)")] = None,
                 model: Annotated[str | None, Query(max_length=64, description="which model of the bundle "
                                                    "(default: its primary model)")] = None,
                 as_of: Annotated[date | None, Query(description="date for age (default today, UTC)")] = None,
                 ) -> dict[str, Any]:
    info = resolve_for(container, principal, name, version)
    mapping = load_mapping(container, info)
    input_digest = digest(bundle)
    try:
        mapped = map_bundle(bundle, mapping, as_of=as_of or datetime.now(UTC).date())
    except ApiError as err:
        container.commit(principal, "fhir_predict", model=info.name, version=info.version,
                         input_digest=input_digest, outcome="rejected", status=err.status, detail={"field": err.field})
        raise
    return predict_mapped(container, principal, info, mapped, model=model, kind="fhir_predict",
                          input_digest=input_digest)


def mapping_bytes(body: dict[str, Any]) -> bytes:
    """The mapping as stored: JSON (which is YAML), sorted keys, one space of indent."""
    return jsonio.dumps(body, indent=1, sort_keys=True).encode()
