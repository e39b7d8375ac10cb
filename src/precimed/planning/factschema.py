"""The fact schema, and a patient's facts checked against it.

The schema (``knowledge/facts.yaml``, extended by a rule directory's ``schema.yaml``) declares every fact and
model output a condition may name, with its type, unit, allowed values or range, and the constraints between
facts (facts that cannot hold together, e.g. ``sex: male`` and ``pregnant: true``). Rules are type-checked
against it at load; a patient's facts are checked against it before any rule runs, and a fact that does not fit
is set aside with an :class:`Issue` instead of failing the plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from precimed.errors import DataError, RuleError
from precimed.planning.conditions import PREDICTION_SUFFIXES, Condition, evaluate_condition, parse_condition
from precimed.planning.knowledge_files import KNOWLEDGE, read_yaml

DEFAULT_SCHEMA = KNOWLEDGE / "facts.yaml"
FACT_TYPES = ("number", "boolean", "string", "list")


@dataclass(frozen=True)
class FactSpec:
    """One declared fact or model output."""

    name: str
    type: str
    kind: str = "fact"  # fact | prediction
    unit: str | None = None
    values: tuple[str, ...] | None = None
    range: tuple[float, float] | None = None
    vocabulary: str | None = None
    description: str = ""

    def check(self, value: Any) -> str | None:
        """Why `value` does not fit this declaration, or None when it does."""
        if self.type == "number":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return f"must be a finite number, got {value!r}"
            if self.range and not (self.range[0] <= value <= self.range[1]):
                unit = f" {self.unit}" if self.unit else ""
                return f"must lie in [{self.range[0]:g}, {self.range[1]:g}]{unit}, got {value!r}"
        elif self.type == "boolean":
            if not isinstance(value, bool):
                return f"must be true or false, got {value!r}"
        elif self.type == "string":
            if not isinstance(value, str):
                return f"must be a string, got {value!r}"
            if self.values is not None and value not in self.values:
                return f"must be one of {list(self.values)}, got {value!r}"
        elif self.type == "list" and (not isinstance(value, list | tuple) or
                                      not all(isinstance(v, str) for v in value)):
            return f"must be a list of strings, got {value!r}"
        return None


@dataclass(frozen=True)
class Constraint:
    """Facts that cannot hold together; when `when` is true the `set_aside` facts are not used."""

    id: str
    when: Condition
    set_aside: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class FactSchema:
    """The declared facts and predictions, the constraints between facts, and the schema files' versions."""

    facts: Mapping[str, FactSpec]
    predictions: Mapping[str, FactSpec]
    constraints: tuple[Constraint, ...] = ()
    versions: tuple[str, ...] = ()

    def lookup(self, kind: str, name: str) -> FactSpec | None:
        """The declaration of a fact, or of a prediction (``NAME.ci_low`` / ``NAME.ci_high`` mean NAME)."""
        if kind == "fact":
            return self.facts.get(name)
        base = name
        for suffix in PREDICTION_SUFFIXES:
            if name.endswith(suffix):
                base = name[: -len(suffix)]
        return self.predictions.get(base)

    def names(self, kind: str) -> list[str]:
        return sorted(self.facts if kind == "fact" else self.predictions)

    def extended(self, data: Mapping[str, Any], *, origin: str) -> FactSchema:
        """This schema plus the facts, predictions and constraints declared in `data` (a schema.yaml)."""
        facts = dict(self.facts)
        preds = dict(self.predictions)
        facts.update(_parse_specs(data.get("facts") or {}, "fact", origin))
        preds.update(_parse_specs(data.get("predictions") or {}, "prediction", origin))
        version = str(data.get("version", f"{Path(origin).name} (no version)"))  # a file name, never a path
        merged = FactSchema(facts, preds, self.constraints, self.versions + (version,))
        extra = tuple(_parse_constraint(c, merged, origin) for c in data.get("constraints") or [])
        return FactSchema(facts, preds, self.constraints + extra, merged.versions)


def _parse_specs(block: Mapping[str, Any], kind: str, origin: str) -> dict[str, FactSpec]:
    """The declarations of one ``facts:`` or ``predictions:`` block; RuleError names `origin` on a bad one."""
    if not isinstance(block, Mapping):
        raise RuleError(f"{origin}: '{kind}s' must be a mapping of name to declaration")
    out = {}
    for name, spec in block.items():
        if not isinstance(spec, Mapping) or spec.get("type") not in FACT_TYPES:
            raise RuleError(f"{origin}: {kind} {name!r} needs a type among {list(FACT_TYPES)}, got {spec!r}")
        unknown = set(spec) - {"type", "unit", "values", "range", "vocabulary", "description"}
        if unknown:
            raise RuleError(f"{origin}: {kind} {name!r} has unknown key(s) {sorted(unknown)}")
        rng = spec.get("range")
        out[str(name)] = FactSpec(
            name=str(name), type=spec["type"], kind=kind, unit=spec.get("unit"),
            values=tuple(spec["values"]) if spec.get("values") is not None else None,
            range=(float(rng[0]), float(rng[1])) if rng else None,
            vocabulary=spec.get("vocabulary"), description=spec.get("description", ""),
        )
    return out


def _parse_constraint(node: Any, schema: FactSchema, origin: str) -> Constraint:
    """One ``constraints:`` entry, its condition checked against `schema`."""
    if not isinstance(node, Mapping) or not {"id", "when", "set_aside", "message"} <= set(node):
        raise RuleError(f"{origin}: a constraint needs id, when, set_aside and message; got {node!r}")
    where = f"{origin}: constraint {node['id']!r}"
    when = parse_condition(node["when"], schema=schema, where=where)
    for name in node["set_aside"]:
        if schema.lookup("fact", name) is None:
            raise RuleError(f"{where}: set_aside names unknown fact {name!r}")
    return Constraint(str(node["id"]), when, tuple(node["set_aside"]), str(node["message"]))


@cache
def _default_schema() -> FactSchema:
    """The packaged schema, parsed once (every rule file and knowledge table is checked against it)."""
    return load_schema(DEFAULT_SCHEMA)


def load_schema(path: Path | str | None = None) -> FactSchema:
    """Load a fact schema (default: the packaged ``knowledge/facts.yaml``)."""
    if path is None:
        return _default_schema()
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, Mapping) or "facts" not in data:
        raise RuleError(f"{path}: a fact schema needs a 'facts' mapping")
    base = FactSchema({}, {}, (), ())
    return base.extended(data, origin=str(path))


# ----- a patient's facts: validation, contradictions ---------------------------------------------------------------
@dataclass(frozen=True)
class Issue:
    """A problem with the input that the plan reports (and works around) instead of failing."""

    level: str  # error | warning | info
    code: str
    message: str
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def validate_facts(facts: Mapping[str, Any], schema: FactSchema) -> tuple[dict[str, Any], list[Issue], dict[str, str]]:
    """Keep the facts that fit their declaration.

    Returns (usable facts, issues, reasons): a fact of the wrong type or out of range is set aside with an error
    issue and a reason (rules that need it are then not evaluated); an undeclared fact is kept (it may feed a
    calculation) with an info issue. ``None`` means missing.
    """
    if not isinstance(facts, Mapping):
        raise DataError(f"facts must be a mapping of name to value, got {type(facts).__name__}", column="facts")
    clean: dict[str, Any] = {}
    issues: list[Issue] = []
    reasons: dict[str, str] = {}
    for name, value in facts.items():
        if value is None:
            continue
        spec = schema.facts.get(name)
        if spec is None:
            clean[name] = value
            continue
        problem = spec.check(value)
        if problem:
            issues.append(Issue("error", "invalid-fact", f"fact {name} {problem}; it is set aside", name))
            reasons[name] = f"invalid value {value!r}"
            continue
        clean[name] = list(value) if spec.type == "list" else value
    return clean, issues, reasons


def apply_constraints(facts: dict[str, Any], schema: FactSchema) -> tuple[list[Issue], dict[str, str]]:
    """Set aside contradictory facts (in place); return the issues and the reason for each fact set aside."""
    issues: list[Issue] = []
    reasons: dict[str, str] = {}
    fired = []
    for c in schema.constraints:
        value, _ = evaluate_condition(c.when, facts)
        if value:
            fired.append(c)
    for c in fired:
        shown = ", ".join(f"{n} = {facts.get(n)!r}" for n in c.set_aside if n in facts)
        issues.append(Issue("error", "contradictory-facts",
                            f"contradictory facts ({c.id}): {c.message} [{shown}]; these facts are set aside and "
                            "rules that need them are not evaluated. Correct the record.", c.set_aside[0]))
        for n in c.set_aside:
            reasons[n] = f"contradictory ({c.id}: {c.message})"
    for n in reasons:
        facts.pop(n, None)
    return issues, reasons
