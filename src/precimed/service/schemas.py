"""What each route answers: the response models that the OpenAPI schema (/openapi.json, /docs) shows.

FastAPI validates every answer against its model, so a route cannot drift from what the schema promises.
Numbers a model computes are `float | None`: a value that is not finite is sent as null (JSON has no NaN).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PatientId = str | int | None
Number = float | None
VERSION_MAX = 2**63 - 1  # versions are stored as signed 64-bit integers
Version = Annotated[int, Field(ge=1, le=VERSION_MAX, description="a registered version number (1 or more)")]
"""The one type of every version number a request carries (path, query or body): out of range is a 422, never a
database overflow. In a route parameter, wrap it: `Annotated[Version, Path()]`, `Annotated[Version | None, Query()]`."""


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----- errors --------------------------------------------------------------------------------------------------
class PatientRef(_Out):
    index: int = Field(description="position of the patient (or record) in the request, from 0")
    patient_id: str | int | float | None = None


class FieldError(_Out):
    field: str | None
    message: str
    patients: list[PatientRef] = []


class ErrorOut(BaseModel):
    """Every error: the message, the field at fault and the patients concerned; `errors` lists each problem."""

    model_config = ConfigDict(extra="allow")

    message: str
    field: str | None = None
    patients: list[PatientRef] = []
    errors: list[FieldError] | None = None


# ----- health --------------------------------------------------------------------------------------------------
class Health(_Out):
    status: Literal["ok"] = "ok"


class ReadyChecks(_Out):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database: bool
    schema_current: bool | None = Field(default=None, alias="schema",
                                        description="the database is at the migrations' head revision")
    schema_revision: str | None = None
    models: dict[str, str] | None = Field(default=None, description="each model's production version: "
                                          "'vN ok', 'no production version' or 'not serving: <error type>' "
                                          "(only to a caller with a valid token)")
    reasons: list[str] | None = Field(default=None, description="why not ready, in generic words")


class Readiness(_Out):
    status: Literal["ready", "not ready"]
    checks: ReadyChecks


# ----- registry ------------------------------------------------------------------------------------------------
class VersionOut(_Out):
    """One registered version of a model."""

    name: str
    version: int
    bundle: str = Field(description="the bundle's reference: name@metadata-hash")
    task: str
    stages: list[str]
    registered_at: str
    registered_by: str
    fhir_mapping: bool


class FeatureOut(_Out):
    name: str
    kind: str
    unit: str | None = None
    range: list[float] | None = None
    categories: list[str | int | float] | None = None
    description: str | None = None


class ServingInfo(_Out):
    """What a version expects and offers: its features, models, id column and (survival) horizons."""

    features: list[FeatureOut]
    models: list[str]
    id_column: str | None = None
    horizons: list[float] | None = None
    intended_use: str | None = None


class ModelListing(_Out):
    name: str
    production: int | None = None
    staging: int | None = None
    versions: list[VersionOut]
    serving: ServingInfo | None = Field(default=None, description="the production version's inputs and models")


class ModelList(_Out):
    models: list[ModelListing]


class ModelDetail(ServingInfo):
    name: str
    production: int | None = None
    staging: int | None = None
    versions: list[VersionOut]
    resolved: VersionOut = Field(description="the version a request gets (production unless pinned)")


class EvaluationOut(_Out):
    model: str
    version: int
    bundle: str
    metrics: dict[str, Any]


# ----- predictions ---------------------------------------------------------------------------------------------
class PatientPrediction(BaseModel):
    """One patient's prediction; the model's outputs are the other keys: probability (binary), p_<class>
    (multiclass), prediction (regression), risk_score and event_probability_<horizon> (survival)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Number] = Field(init=False)

    index: int
    patient_id: PatientId = None
    missing: list[str] = Field(description="features not recorded (or out of range and allowed), imputed")
    # per-patient uncertainty (docs/uncertainty.md): present only when the bundle stores it (uncertainty.json);
    # survival and multiclass bounds arrive as extra keys <output>_lower / <output>_upper
    probability_lower: Number = Field(None, description="binary: lower end of the inductive Venn-Abers interval "
                                      "for the calibrated probability")
    probability_upper: Number = Field(None, description="binary: upper end of the Venn-Abers interval")
    prediction_lower: Number = Field(None, description="regression: lower end of the split-conformal prediction "
                                     "interval at interval_level")
    prediction_upper: Number = Field(None, description="regression: upper end of the split-conformal interval")
    interval_level: Number = Field(None, description="nominal marginal coverage of the prediction set / interval "
                                   "(e.g. 0.9)")
    interval_method: str | None = Field(None, description="how the bounds were made, e.g. conformal-set+venn-abers, "
                                        "conformal-absolute-residual, ipcw-venn-abers")
    prediction_set: list[str] | None = Field(None, description="binary / multiclass: the split-conformal "
                                             "prediction set, the class labels not ruled out at interval_level "
                                             "(never empty: it always holds the most probable class)")


class Contribution(_Out):
    feature: str
    value: str | int | float | bool | None = None
    display: str
    contribution: Number
    direction: str


class Rest(_Out):
    n_features: int
    contribution: Number


class PatientExplanation(_Out):
    index: int
    patient_id: PatientId = None
    prediction: Number
    base_value: Number
    scale: str
    contributions: list[Contribution]
    rest: Rest
    additivity_gap: Number
    missing: list[str]


class _ScoredOut(_Out):
    """What every scoring answer says about itself: its id, the registered model and version, the bundle and the
    bundle's model that scored the input."""

    id: str = Field(description="fetch it again from /v1/predictions/{id}")
    model: str
    version: int
    bundle: str
    stage: Literal["production", "pinned"]
    submodel: str = Field(description="the bundle's model that scored the input")
    task: str


class PredictionOut(_ScoredOut):
    predictions: list[PatientPrediction]


class ExplanationOut(_ScoredOut):
    explanations: list[PatientExplanation]


class ImageSlice(_Out):
    """One slice of an uploaded image: P(lesion present) (a slice classifier) or the predicted lesion's size
    (a segmenter: pixels, area in mm² when the file gives the pixel spacing, largest pixel probability)."""

    slice: int = Field(description="slice number in the file, from 0, in the order the reader stacks them")
    model: str
    probability: Number = None
    lesion_pixels: int | None = None
    lesion_area_mm2: Number = None
    max_probability: Number = None


class ImagePredictionOut(_ScoredOut):
    """The answer to a DICOM upload (Content-Type: application/dicom): one row per slice. Nothing read from the
    file's header is kept: the file is de-identified before it is hashed or read."""

    slices: list[ImageSlice]


class FhirPredictionOut(_Out):
    id: str
    model: str
    version: int
    bundle: str
    submodel: str
    predictions: list[PatientPrediction]
    sources: dict[str, str] = Field(description="feature → the Observation it came from")
    warnings: list[str]


class StoredPrediction(_Out):
    """A stored prediction (from predict, an image upload, FHIR or CDS) or explanation, as it was answered, and
    when."""

    id: str
    model: str
    version: int
    bundle: str
    submodel: str
    stage: str | None = None
    task: str | None = None
    predictions: list[PatientPrediction] | None = None
    explanations: list[PatientExplanation] | None = None
    slices: list[ImageSlice] | None = None
    sources: dict[str, str] | None = None
    warnings: list[str] | None = None
    created_at: str


# ----- plans ---------------------------------------------------------------------------------------------------
class Plan(BaseModel):
    """A treatment plan (see precimed.planning): every line says why."""

    model_config = ConfigDict(extra="allow")

    format: str
    patient_id: str | None = None
    facts_used: dict[str, Any] = {}
    facts_set_aside: dict[str, Any] = {}
    derived: dict[str, Any] = {}
    predictions: dict[str, Any] = {}
    options: list[Any] = []
    recommendations: list[dict[str, Any]] = []
    pharmacogenomics: dict[str, Any] = {}
    dose_suggestions: list[Any] = []
    contraindications: list[Any] = []
    interactions: list[Any] = []
    conflicts: list[Any] = []
    rulesets: list[Any] = []
    alerts: list[Any] = []
    not_evaluated: list[Any] = []
    rules_not_fired: list[Any] = []
    provenance: dict[str, Any] = {}


class PlanOut(_Out):
    id: str = Field(description="fetch it again from /v1/plans/{id}")
    plan: Plan


class StoredPlan(_Out):
    id: str
    created_at: str
    plan: Plan


# ----- vitals --------------------------------------------------------------------------------------------------
class VitalsScore(_Out):
    patient_id: str | int | float
    time: str
    news2: int
    level: str
    complete: bool
    missing: list[str]
    parts: dict[str, int | None]
    risk: Number = None


class VitalsEvent(_Out):
    patient_id: str | int | float
    time: str
    event: Literal["alert", "escalation", "clear"]
    news2: int
    level: str
    complete: bool
    missing: list[str]
    reasons: list[str]
    response: str
    frequency: str
    risk: Number = None


class VitalsOut(_Out):
    accepted: int = Field(description="observations ingested")
    alerts: list[VitalsEvent]
    scores: list[VitalsScore]


# ----- CDS Hooks -----------------------------------------------------------------------------------------------
class CdsServiceOut(_Out):
    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str]


class CdsDiscovery(_Out):
    services: list[CdsServiceOut]


class CardSource(_Out):
    label: str


class Card(_Out):
    uuid: str
    summary: str = Field(max_length=140)
    indicator: Literal["info", "warning", "critical"]
    detail: str
    source: CardSource


class CdsCards(_Out):
    cards: list[Card]


# ----- administration ------------------------------------------------------------------------------------------
class TokenCreated(_Out):
    id: str
    role: str
    token: str = Field(description="shown only in this response; only its hash is stored")


class TokenInfo(_Out):
    id: str
    role: str
    label: str
    created_at: str
    revoked_at: str | None = None


class TokenList(_Out):
    tokens: list[TokenInfo]


class TokenRevoked(_Out):
    id: str
    revoked: bool


class AuditProblem(_Out):
    seq: int | None
    kind: Literal["altered", "deleted", "inserted", "head", "truncated", "rewritten", "wiped", "new_chain",
                  "no_genesis", "checkpoint", "result", "stage", "version", "token"]
    message: str


class AuditVerification(_Out):
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    checkpoint_seq: int | None = Field(default=None, description="seq of the last signed checkpoint")
    key_id: str | None = Field(default=None, description="fingerprint of the audit key (not the key)")
    problems: list[AuditProblem]
