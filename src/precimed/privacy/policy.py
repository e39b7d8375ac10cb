"""The de-identification policy: a YAML file parsed into a pydantic model that refuses unknown keys.

A policy names the patient id column and declares each column's role::

    patient_id: mrn
    columns:
      name: identifier      # removed
      mrn: pseudonym        # keyed HMAC-SHA256 pseudonym
      birth_date: date      # shifted per patient (or year only)
      zip: quasi            # generalized (ZIP -> 3 digits, restricted prefixes -> 000)
      age: quasi            # generalized (over 89 -> "90+")
      notes: text           # free-text PHI redaction
      glucose: keep         # unchanged
    options:
      k: 5                  # target k-anonymity over the quasi columns (rows in smaller classes are suppressed)
      dates: {mode: shift, max_shift_days: 365}

Columns the policy does not name are scanned for identifier patterns and, by default, dropped
(``options.unlisted``). FHIR bundles and DICOM files use only ``options``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from precimed.errors import ConfigError
from precimed.jsonio import dumps

Role = Literal["identifier", "pseudonym", "date", "quasi", "text", "keep"]
ROLES: tuple[str, ...] = ("identifier", "pseudonym", "date", "quasi", "text", "keep")

# Generalizations a quasi-identifier column can get (see precimed.privacy.kanon.HIERARCHIES).
Generalization = Literal["auto", "none", "age_90plus", "age5", "age10", "age20", "zip3", "zip2", "zip1",
                         "year", "decade"]  # the k-anonymity search may go further, up to "*" (withheld)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DateOptions(_Strict):
    """How `date` columns (and dates inside notes and FHIR resources) are de-identified.

    mode: ``shift`` moves every date of a patient by the same keyed offset (intervals kept exactly;
    pseudonymization, not Safe Harbor); ``year`` keeps the year only (Safe Harbor).
    birth_columns: columns holding birth dates, whose people aged 90 or over are top-coded to 90
    (Safe Harbor's "90 or older" category). Default: date columns whose name contains "birth" or "dob".
    Age is taken at the row's latest other date, else at `reference_date` (default: the day of the run).
    """

    mode: Literal["shift", "year"] = "shift"
    max_shift_days: int = Field(default=365, ge=1, le=3650)
    birth_columns: list[str] | None = None
    reference_date: date | None = None  # age reference for birth dates in rows with no other date (default: today)


class TextOptions(_Strict):
    """How free-text PHI is found and replaced.

    dates: shifted with the patient's offset, or replaced by ``[DATE]``.
    mode: ``strict`` (patterns, names, the row's own identifiers) or ``allowlist`` (also every word that is
    neither common English nor medical; see precimed.privacy.notes).
    uncertain_dates: when shifting, date-like text that cannot be read as a date is ``redact``-ed as
    ``[DATE]`` (counted), or the run ``fail``-s naming the row: a note is never released with one date
    unshifted beside shifted ones.
    """

    dates: Literal["shift", "tag"] = "shift"
    mode: Literal["strict", "allowlist"] = "strict"
    uncertain_dates: Literal["redact", "fail"] = "redact"


class DicomOptions(_Strict):
    """DICOM header options.

    dates: ``profile`` applies the Basic Profile (dates removed or emptied); ``shift`` applies the
    "Retain Longitudinal Temporal Information with Modified Dates" option with the patient's keyed
    shift; ``year`` keeps the year only (YYYY0101).
    patient_id: ``pseudonym`` puts the keyed pseudonym of the original Patient ID in (0010,0020), a
    dummy value the Basic Profile allows for Z, so images link to pseudonymized tables; ``empty``
    leaves it zero-length.
    """

    dates: Literal["profile", "shift", "year"] = "profile"
    patient_id: Literal["pseudonym", "empty"] = "pseudonym"


class PolicyOptions(_Strict):
    k: int | None = Field(default=None, ge=2, description="target k-anonymity over the quasi columns")
    l_diversity: int | None = Field(default=None, ge=2, description="target distinct l-diversity (reported)")
    sensitive: list[str] = Field(default_factory=list, description="columns whose l-diversity is reported")
    auto_generalize: bool = Field(default=True, description="coarsen quasi columns before suppressing rows")
    max_suppression: float = Field(default=0.05, ge=0, le=1,
                                   description="fraction of rows that may be suppressed before coarsening more")
    generalize: dict[str, Generalization] = Field(default_factory=dict)
    dates: DateOptions = DateOptions()
    text: TextOptions = TextOptions()
    dicom: DicomOptions = DicomOptions()
    unlisted: Literal["drop", "keep_unflagged", "error"] = "drop"
    unparseable: Literal["redact", "fail"] = Field(
        default="redact", description="quasi values that cannot be read (an age that is not a number): removed "
                                      "and counted, or the run fails naming the column")
    pseudonym_length: int = Field(default=20, ge=16, le=64, description="hex characters of each pseudonym")
    pseudonym_prefix: str = Field(default="", max_length=16, pattern=r"^[A-Za-z0-9_-]*$")


class Policy(_Strict):
    """A de-identification policy. Tables need `patient_id` when they hold `date` or `text` columns."""

    version: Literal[1] = 1
    patient_id: str | None = None
    columns: dict[str, Role] = Field(default_factory=dict)
    options: PolicyOptions = PolicyOptions()

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.patient_id is not None:
            role = self.columns.get(self.patient_id)
            if role is not None and role not in ("identifier", "pseudonym"):
                raise ValueError(
                    f"patient_id column {self.patient_id!r} has role {role!r}; a patient id must be "
                    "'identifier' (removed) or 'pseudonym'"
                )
        needs_patient = [c for c, r in self.columns.items() if r in ("date", "text")]
        if needs_patient and self.patient_id is None and self.options.dates.mode == "shift":
            raise ValueError(
                f"column(s) {needs_patient} need a per-patient date shift: set patient_id, "
                "or use options.dates.mode: year"
            )
        for name in self.options.generalize:
            if self.columns.get(name) != "quasi":
                raise ValueError(f"options.generalize names {name!r}, which is not a quasi column")
        for name in self.options.sensitive:
            if name in self.columns and self.columns[name] in ("identifier", "text"):
                raise ValueError(f"sensitive column {name!r} is removed or redacted; it has no l-diversity")
        return self

    def role_of(self, column: str) -> str | None:
        """The declared role of `column`; the patient id column is a pseudonym unless declared otherwise."""
        if column in self.columns:
            return self.columns[column]
        if column == self.patient_id:
            return "pseudonym"
        return None

    @property
    def quasi_columns(self) -> list[str]:
        return [c for c, r in self.columns.items() if r == "quasi"]


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy YAML file; raise ConfigError naming the file and the bad key."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: policy file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
    return parse_policy(data, where=str(p))


def parse_policy(data: object, *, where: str = "policy") -> Policy:
    """Validate a policy given as a mapping."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a policy is a mapping with patient_id, columns and options")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: invalid policy: {problems}") from None


# ------------------------------------------------------------------------------------------------ report
@dataclass
class ColumnAction:
    """What was done to one column: its role, the action, and how many values changed (never a value)."""

    column: str
    role: str
    action: str
    values_changed: int
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "role": self.role, "action": self.action,
                "values_changed": self.values_changed, **({"detail": self.detail} if self.detail else {})}


@dataclass
class DeidReport:
    """The report of one de-identification run: counts and actions, never an identifying value."""

    kind: str
    source: str
    output: str
    key_source: str
    key_fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    columns: list[ColumnAction] = field(default_factory=list)
    scans: list[dict[str, Any]] = field(default_factory=list)
    phi_in_text: dict[str, int] = field(default_factory=dict)
    kanonymity: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "source": self.source, "output": self.output,
            "key": {"source": self.key_source, "fingerprint": self.key_fingerprint},
            "settings": self.settings, "counts": self.counts,
            "columns": [c.to_dict() for c in self.columns], "scans": self.scans,
            "phi_in_text": self.phi_in_text, "kanonymity": self.kanonymity, "warnings": self.warnings,
        }

    def to_json(self) -> str:
        return dumps(self.to_dict())

    def summary(self) -> str:
        """A few plain lines for the terminal."""
        lines = [f"de-identified {self.kind} {self.source} -> {self.output} (key {self.key_fingerprint})"]
        if self.counts:
            lines.append("  " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        for c in self.columns:
            lines.append(f"  {c.column:24} {c.role:10} {c.action:34} {c.values_changed:>9} changed")
        for s in self.scans:
            if s.get("patterns"):
                found = ", ".join(f"{k} {v}" for k, v in s["patterns"].items())
                lines.append(f"  scan {s['column']}: {found}")
        if self.phi_in_text:
            lines.append("  free text: " + ", ".join(f"{k} {v}" for k, v in self.phi_in_text.items()))
        if self.kanonymity:
            k = self.kanonymity
            lines.append(f"  k-anonymity: k = {k.get('k')} over {k.get('quasi_identifiers')}, "
                         f"suppressed {k.get('suppressed_records', 0)}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)
