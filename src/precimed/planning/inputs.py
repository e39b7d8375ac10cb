"""A plan's inputs, checked: the patient file (facts, model input row, genotype calls, predictions, options),
model predictions with their intervals, and treatment options ranked by predicted benefit.

Bad input does not sink the plan: a prediction or option that is not a finite number, or whose interval does not
contain it, is dropped with an :class:`~precimed.planning.factschema.Issue`; only a patient file that cannot be
read at all raises :class:`~precimed.errors.DataError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from precimed.errors import DataError
from precimed.limits import read_user_text
from precimed.planning.drugs import drug_vocabulary
from precimed.planning.factschema import FactSchema, Issue

PATIENT_KEYS = {"patient_id", "facts", "genotypes", "predictions", "options", "model_input", "description"}


@dataclass(frozen=True)
class Patient:
    """A patient JSON file: facts for the rules, the bundle's input row, genotype calls, optional predictions and
    options (e.g. from the treatment-effect learners)."""

    patient_id: str | None
    facts: dict[str, Any]
    model_input: dict[str, Any] = field(default_factory=dict)
    genotypes: dict[str, str] = field(default_factory=dict)
    predictions: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def load_patient(path: Path | str) -> Patient:
    """Read a patient file (see ``examples/patients/``). Unknown top-level keys are refused by name."""
    path = Path(path)
    try:
        data = json.loads(read_user_text(path))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the patient file ({exc})", column="patient") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                        column="patient") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a patient file is a JSON object with 'facts'", column="patient")
    unknown = set(data) - PATIENT_KEYS
    if unknown:
        raise DataError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(PATIENT_KEYS)}",
                        column=sorted(unknown)[0])
    for key in ("facts", "model_input", "genotypes", "predictions", "options"):
        if not isinstance(data.get(key, {}), dict):
            raise DataError(f"{path}: '{key}' must be a JSON object", column=key)
    facts = dict(data.get("facts", {}))
    pid = data.get("patient_id", facts.get("patient_id"))
    if pid is not None:
        facts.setdefault("patient_id", str(pid))
    return Patient(None if pid is None else str(pid), facts, dict(data.get("model_input", {})),
                   dict(data.get("genotypes", {})), dict(data.get("predictions", {})), dict(data.get("options", {})),
                   str(data.get("description", "")))


# ----- predictions and options -------------------------------------------------------------------------------------
def _finite(x: Any) -> bool:
    """A real, finite number (not a bool, not NaN or infinite)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def normalize_predictions(predictions: Mapping[str, Any] | None, schema: FactSchema
                          ) -> tuple[dict[str, dict[str, Any]], list[Issue]]:
    """``{name: value}`` or ``{name: {value, ci_low, ci_high, ...}}`` → ``{name: {value, ci_low, ci_high}}``.

    A value that is not a finite number, a CI that does not contain the value, or a value outside the declared
    range is dropped with an error issue; an undeclared name is kept (shown, but no rule can use it).
    """
    out: dict[str, dict[str, Any]] = {}
    issues: list[Issue] = []
    if predictions is None:
        return out, issues
    if not isinstance(predictions, Mapping):
        raise DataError(f"predictions must be a mapping of name to value, got {type(predictions).__name__}",
                        column="predictions")
    for name, raw in predictions.items():
        entry = dict(raw) if isinstance(raw, Mapping) else {"value": raw}
        value, lo, hi = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
        if not _finite(value) or any(b is not None and not _finite(b) for b in (lo, hi)):
            issues.append(Issue("error", "invalid-prediction", f"prediction {name}: value and CI must be finite "
                                f"numbers, got {raw!r}; not used", name))
            continue
        if (lo is not None and lo > value + 1e-12) or (hi is not None and hi < value - 1e-12):
            issues.append(Issue("error", "invalid-prediction", f"prediction {name}: the CI [{lo}, {hi}] does not "
                                f"contain the value {value}; not used", name))
            continue
        spec = schema.predictions.get(name)
        if spec is not None and spec.check(value):
            issues.append(Issue("error", "invalid-prediction", f"prediction {name} {spec.check(value)}; not used",
                                name))
            continue
        item = {"value": float(value), "ci_low": None if lo is None else float(lo),
                "ci_high": None if hi is None else float(hi), "declared": spec is not None}
        for k in ("unit", "horizon", "model", "description", "level"):
            if k in entry:
                item[k] = entry[k]
        if spec is not None and spec.description and "description" not in item:
            item["description"] = spec.description
        if spec is None:
            issues.append(Issue("info", "undeclared-prediction", f"prediction {name} is not declared in the fact "
                                "schema: shown, but no rule uses it", name))
        out[str(name)] = item
    return out, issues


def _option_drugs(name: str, spec: Mapping[str, Any]) -> list[str]:
    """The drugs an option is about: its ``drugs`` list, else its own name when that is a known drug."""
    vocab = drug_vocabulary()
    if "drugs" in spec:
        return [vocab.normalize(d) or str(d) for d in spec["drugs"]]
    d = vocab.normalize(name)
    return [d] if d else []


def normalize_options(options: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], list[Issue]]:
    """``{option: {benefit, ci_low, ci_high[, drugs, unit, description]}}`` → a list sorted by benefit, best first."""
    out, issues = [], []
    for name, spec in (options or {}).items():
        if not isinstance(spec, Mapping) or not _finite(spec.get("benefit")):
            issues.append(Issue("error", "invalid-option", f"option {name!r} needs a numeric 'benefit' (and ci_low, "
                                f"ci_high), got {spec!r}; not ranked", str(name)))
            continue
        lo, hi = spec.get("ci_low"), spec.get("ci_high")
        if (lo is not None and (not _finite(lo) or lo > spec["benefit"])) or \
                (hi is not None and (not _finite(hi) or hi < spec["benefit"])):
            issues.append(Issue("error", "invalid-option", f"option {name!r}: CI [{lo}, {hi}] does not contain the "
                                f"benefit {spec['benefit']}; not ranked", str(name)))
            continue
        unknown = [d for d in spec.get("drugs", []) if drug_vocabulary().normalize(d) is None]
        for d in unknown:
            issues.append(Issue("warning", "unknown-drug", f"option {name!r} names unknown drug {d!r}: not checked",
                                str(name)))
        out.append({"option": str(name), "benefit": float(spec["benefit"]),
                    "ci_low": None if lo is None else float(lo), "ci_high": None if hi is None else float(hi),
                    "drugs": _option_drugs(str(name), spec), "unit": spec.get("unit"),
                    "description": spec.get("description")})
    out.sort(key=lambda o: -o["benefit"])
    return out, issues
