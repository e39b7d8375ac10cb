"""Guideline rules as data: a small condition language over patient facts and model outputs, evaluated without
``eval``, with three-valued logic (unknown is not false) and explicit conflict resolution.

A rule file is YAML::

    ruleset: {id: anticoagulation, version: "2024.1", source: "…"}
    rules:
      - id: ac-bleed-review
        source: "Institutional anticoagulation guideline v3, section 4.2"
        version: "1"
        when:
          all:
            - {fact: medications, op: in, value: [warfarin, apixaban]}
            - {prediction: major_bleeding_risk_1y, op: ">=", value: 0.20}
        recommend: "Review anticoagulant choice and dose."
        strength: moderate          # strong | moderate | weak | optional | conditional
        priority: 10                # higher wins among rules of the same action kind
        actions:
          - {type: monitor, drug: warfarin}

Conditions: a leaf ``{fact|prediction: NAME, op: OP, value: V}`` with OP one of ``== != < <= > >= in not_in
exists``, or ``all: [...]``, ``any: [...]``, ``not: {...}``. Every name must be declared in the fact schema
(``knowledge/facts.yaml``, extended by a rule set's ``schema.yaml``); a prediction may also be named
``NAME.ci_low`` / ``NAME.ci_high``. For a list fact (e.g. ``medications``) ``in`` means "any element is in the
list" and ``not_in`` "no element is".

Evaluation is Kleene three-valued: a leaf whose fact is missing is *unknown*; ``all`` is false if any part is
false, else unknown if any part is unknown; ``any`` is true if any part is true, else unknown if any is unknown;
``not`` keeps unknown. A rule whose condition is unknown is reported as **not evaluated** with the missing facts
(never as false). A rule that is decided false although some of its facts are missing lists them too.

Files are checked at load: a YAML syntax error, an unknown key, fact or operator, or a value of the wrong type
raises :class:`~precimed.errors.RuleError` naming the file and the rule id.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from precimed.errors import DataError, RuleError

KNOWLEDGE = Path(__file__).resolve().parent / "knowledge"
DEFAULT_SCHEMA = KNOWLEDGE / "facts.yaml"
DEFAULT_RULES = KNOWLEDGE / "rules"
SCHEMA_FILE = "schema.yaml"

OPERATORS: tuple[str, ...] = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "exists")
ACTIONS: tuple[str, ...] = ("avoid", "adjust_dose", "prefer_alternative", "monitor")
#: Strength of a recommendation, ranked (higher is stronger).
STRENGTHS: dict[str, int] = {"strong": 3, "moderate": 2, "weak": 1, "optional": 1, "conditional": 1}
FACT_TYPES = ("number", "boolean", "string", "list")
#: How an action kind ranks in a conflict: a contraindication / avoid outranks a dose change, which outranks a
#: preference. ``monitor`` never conflicts; ``none`` ("use as labelled") is informational.
ACTION_RANK: dict[str, int] = {"avoid": 3, "adjust_dose": 2, "prefer_alternative": 1, "none": 0, "monitor": -1}

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_RULE_KEYS = {"id", "source", "version", "when", "recommend", "strength", "priority", "actions", "action",
              "description", "notes"}
_ACTION_KEYS = {"type", "drug", "instead_of", "dose", "note"}
_SUFFIXES = (".ci_low", ".ci_high")


# ----- the fact schema ---------------------------------------------------------------------------------------------
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
    facts: Mapping[str, FactSpec]
    predictions: Mapping[str, FactSpec]
    constraints: tuple[Constraint, ...] = ()
    versions: tuple[str, ...] = ()

    def lookup(self, kind: str, name: str) -> FactSpec | None:
        if kind == "fact":
            return self.facts.get(name)
        base = name
        for suffix in _SUFFIXES:
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
        merged = FactSchema(facts, preds, self.constraints, self.versions + (str(data.get("version", origin)),))
        extra = tuple(_parse_constraint(c, merged, origin) for c in data.get("constraints") or [])
        return FactSchema(facts, preds, self.constraints + extra, merged.versions)


def _parse_specs(block: Mapping[str, Any], kind: str, origin: str) -> dict[str, FactSpec]:
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
    if not isinstance(node, Mapping) or not {"id", "when", "set_aside", "message"} <= set(node):
        raise RuleError(f"{origin}: a constraint needs id, when, set_aside and message; got {node!r}")
    where = f"{origin}: constraint {node['id']!r}"
    when = parse_condition(node["when"], schema=schema, where=where)
    for name in node["set_aside"]:
        if schema.lookup("fact", name) is None:
            raise RuleError(f"{where}: set_aside names unknown fact {name!r}")
    return Constraint(str(node["id"]), when, tuple(node["set_aside"]), str(node["message"]))


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RuleError(f"{path}: cannot read ({exc})") from None
    return _parse_yaml(text, origin=str(path))


def _parse_yaml(text: str, *, origin: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        rule_id = _rule_id_near(text, line)
        near = f" in rule {rule_id!r}" if rule_id else ""
        at = f" line {line}" if line else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RuleError(f"{origin}{at}: YAML syntax error{near}: {problem}. Fix the file; no rule was loaded from it."
                        ) from None


def _rule_id_near(text: str, line: int | None) -> str | None:
    """The id of the rule that contains (or precedes) `line`, read from the raw text."""
    if line is None:
        return None
    found = None
    for i, raw in enumerate(text.splitlines()[:line], start=1):
        m = re.match(r"\s*-?\s*id:\s*['\"]?([^'\"#\s]+)", raw)
        if m and i <= line:
            found = m.group(1)
    return found


@cache
def _default_schema() -> FactSchema:
    return load_schema(DEFAULT_SCHEMA)


def load_schema(path: Path | str | None = None) -> FactSchema:
    """Load a fact schema (default: the packaged ``knowledge/facts.yaml``)."""
    if path is None:
        return _default_schema()
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, Mapping) or "facts" not in data:
        raise RuleError(f"{path}: a fact schema needs a 'facts' mapping")
    base = FactSchema({}, {}, (), ())
    return base.extended(data, origin=str(path))


# ----- conditions --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Leaf:
    kind: str  # fact | prediction
    name: str
    op: str
    value: Any = True

    def names(self) -> set[tuple[str, str]]:
        return {(self.kind, self.name)}


@dataclass(frozen=True)
class Group:
    mode: str  # all | any
    items: tuple[Condition, ...]

    def names(self) -> set[tuple[str, str]]:
        return set().union(*(i.names() for i in self.items)) if self.items else set()


@dataclass(frozen=True)
class Not:
    item: Condition

    def names(self) -> set[tuple[str, str]]:
        return self.item.names()


Condition = Leaf | Group | Not


def parse_condition(node: Any, *, schema: FactSchema, where: str, vocab: Callable[[str], str | None] | None = None
                    ) -> Condition:
    """Parse and type-check a condition tree; RuleError names `where` (file and rule id) on any problem."""
    if not isinstance(node, Mapping):
        raise RuleError(f"{where}: a condition must be a mapping (fact/prediction leaf, all, any or not), got {node!r}")
    groups = [k for k in ("all", "any", "not") if k in node]
    if groups:
        if len(node) != 1:
            raise RuleError(f"{where}: '{groups[0]}' must stand alone in its mapping, got keys {sorted(node)}")
        key = groups[0]
        if key == "not":
            return Not(parse_condition(node["not"], schema=schema, where=where, vocab=vocab))
        items = node[key]
        if not isinstance(items, list) or not items:
            raise RuleError(f"{where}: '{key}' needs a non-empty list of conditions")
        return Group(key, tuple(parse_condition(i, schema=schema, where=where, vocab=vocab) for i in items))
    kinds = [k for k in ("fact", "prediction") if k in node]
    if len(kinds) != 1:
        raise RuleError(f"{where}: a condition leaf needs exactly one of 'fact' or 'prediction' (or all/any/not), "
                        f"got keys {sorted(node)}")
    unknown = set(node) - {"fact", "prediction", "op", "value"}
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {sorted(unknown)} in condition {dict(node)}")
    kind = kinds[0]
    name = str(node[kind])
    op = node.get("op")
    if op not in OPERATORS:
        raise RuleError(f"{where}: unknown operator {op!r} in condition on {name!r}; use one of {list(OPERATORS)}")
    spec = schema.lookup(kind, name)
    if spec is None:
        close = difflib.get_close_matches(name, schema.names(kind), n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise RuleError(f"{where}: unknown {kind} {name!r} (not declared in the fact schema){hint}")
    value = node.get("value", True if op == "exists" else None)
    if spec.vocabulary == "drugs" and vocab is None:
        vocab = _drug_vocab()
    _check_value(spec, op, value, where=where, name=name, vocab=vocab)
    if spec.vocabulary == "drugs" and vocab is not None and op in ("in", "not_in"):
        value = tuple(vocab(v) or v for v in value)
    elif op in ("in", "not_in"):
        value = tuple(value)
    return Leaf(kind, name, op, value)


def _check_value(spec: FactSpec, op: str, value: Any, *, where: str, name: str,
                 vocab: Callable[[str], str | None] | None) -> None:
    def bad(msg: str) -> RuleError:
        return RuleError(f"{where}: condition {name} {op} {value!r}: {msg}")

    if op == "exists":
        if not isinstance(value, bool):
            raise bad("'exists' takes value true or false")
        return
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise bad(f"'{op}' needs a non-empty list")
        members = value
    else:
        if spec.type == "list":
            raise bad(f"{name} is a list; use 'in' or 'not_in'")
        if op in ("<", "<=", ">", ">=") and spec.type != "number":
            raise bad(f"'{op}' needs a number fact, {name} is {spec.type}")
        members = [value]
    for v in members:
        if spec.type == "list":
            if not isinstance(v, str):
                raise bad("list facts hold strings")
            if spec.vocabulary == "drugs" and vocab is not None and vocab(v) is None:
                raise bad(f"unknown drug {v!r} (not in the drug vocabulary)")
            continue
        problem = spec.check(v)
        if problem:
            raise bad(problem)


# ----- evaluation --------------------------------------------------------------------------------------------------
def _lookup(leaf: Leaf, facts: Mapping[str, Any], predictions: Mapping[str, Mapping[str, Any]]) -> Any:
    if leaf.kind == "fact":
        return facts.get(leaf.name)
    base, part = leaf.name, "value"
    for suffix in _SUFFIXES:
        if leaf.name.endswith(suffix):
            base, part = leaf.name[: -len(suffix)], suffix[1:]
    entry = predictions.get(base)
    return None if entry is None else entry.get(part)


def _apply(op: str, actual: Any, value: Any) -> bool:
    if op in _COMPARE:
        return bool(_COMPARE[op](actual, value))
    if isinstance(actual, list | tuple):
        hit = any(a in value for a in actual)
    else:
        hit = actual in value
    return hit if op == "in" else not hit


def evaluate_condition(cond: Condition, facts: Mapping[str, Any],
                       predictions: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[bool | None, set[str]]:
    """(True / False / None for unknown, the missing names that the condition touched)."""
    predictions = predictions or {}
    if isinstance(cond, Leaf):
        actual = _lookup(cond, facts, predictions)
        if cond.op == "exists":
            return (actual is not None) == cond.value, set()
        if actual is None:
            return None, {cond.name}
        return _apply(cond.op, actual, cond.value), set()
    if isinstance(cond, Not):
        value, missing = evaluate_condition(cond.item, facts, predictions)
        return (None if value is None else not value), missing
    results = [evaluate_condition(i, facts, predictions) for i in cond.items]
    missing = set().union(*(m for _, m in results))
    values = [v for v, _ in results]
    decisive = cond.mode == "any"  # the value that decides the group: False for all, True for any
    if decisive in values:
        return decisive, missing
    if None in values:
        return None, missing
    return not decisive, missing


# ----- rules and rule sets -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """What a rule proposes about one drug (or drug class)."""

    type: str
    drug: str
    instead_of: str | None = None
    dose: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Rule:
    id: str
    source: str
    version: str
    when: Condition
    recommend: str
    strength: str
    priority: int
    actions: tuple[Action, ...]
    ruleset: str
    ruleset_version: str
    description: str = ""

    @property
    def facts(self) -> list[str]:
        return sorted(name for _, name in self.when.names())


@dataclass(frozen=True)
class RuleSet:
    id: str
    version: str
    source: str
    path: str
    rules: tuple[Rule, ...]
    description: str = ""
    applies_when: Condition | None = None


@dataclass(frozen=True)
class RuleBook:
    """Loaded rule sets and the fact schema they were checked against."""

    rulesets: tuple[RuleSet, ...]
    schema: FactSchema

    @property
    def rules(self) -> list[Rule]:
        return [r for rs in self.rulesets for r in rs.rules]

    @property
    def versions(self) -> dict[str, str]:
        return {rs.id: rs.version for rs in self.rulesets}

    def provenance(self) -> list[dict[str, str]]:
        return [{"id": rs.id, "version": rs.version, "source": rs.source, "path": rs.path, "rules": str(len(rs.rules))}
                for rs in self.rulesets]


def _drug_vocab() -> Callable[[str], str | None]:
    from precimed.planning.interactions import drug_vocabulary  # sibling module; imported late to avoid a cycle

    vocab = drug_vocabulary()
    return vocab.normalize_or_class


def _parse_action(node: Any, *, where: str, vocab: Callable[[str], str | None]) -> Action:
    if not isinstance(node, Mapping):
        raise RuleError(f"{where}: an action must be a mapping {{type, drug}}, got {node!r}")
    unknown = set(node) - _ACTION_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown action key(s) {sorted(unknown)}; allowed: {sorted(_ACTION_KEYS)}")
    kind = node.get("type")
    if kind not in ACTIONS:
        raise RuleError(f"{where}: unknown action type {kind!r}; use one of {list(ACTIONS)}")
    drugs = {}
    for key in ("drug", "instead_of"):
        raw = node.get(key)
        if raw is None:
            continue
        name = vocab(str(raw))
        if name is None:
            raise RuleError(f"{where}: action {kind} names unknown drug {raw!r} (not in the drug vocabulary)")
        drugs[key] = name
    if "drug" not in drugs:
        raise RuleError(f"{where}: action {kind} needs a 'drug'")
    return Action(kind, drugs["drug"], drugs.get("instead_of"), node.get("dose"), node.get("note"))


def _parse_rule(node: Any, *, schema: FactSchema, origin: str, ruleset: str, ruleset_version: str,
                vocab: Callable[[str], str | None]) -> Rule:
    if not isinstance(node, Mapping) or "id" not in node:
        raise RuleError(f"{origin}: every rule needs an 'id'; got {str(node)[:80]!r}")
    rid = str(node["id"])
    where = f"{origin}: rule {rid!r}"
    unknown = set(node) - _RULE_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
    for key in ("source", "when", "recommend", "strength"):
        if key not in node or node[key] in (None, ""):
            raise RuleError(f"{where}: missing '{key}'")
    strength = str(node["strength"])
    if strength not in STRENGTHS:
        raise RuleError(f"{where}: unknown strength {strength!r}; use one of {list(STRENGTHS)}")
    priority = node.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RuleError(f"{where}: priority must be an integer, got {priority!r}")
    raw_actions = node.get("actions", [node["action"]] if "action" in node else [])
    if not isinstance(raw_actions, list):
        raise RuleError(f"{where}: 'actions' must be a list")
    when = parse_condition(node["when"], schema=schema, where=where, vocab=vocab)
    actions = tuple(_parse_action(a, where=where, vocab=vocab) for a in raw_actions)
    return Rule(rid, str(node["source"]), str(node.get("version", ruleset_version)), when, str(node["recommend"]),
                strength, priority, actions, ruleset, ruleset_version, str(node.get("description", "")))


def parse_ruleset(data: Any, *, schema: FactSchema | None = None, origin: str = "<rules>") -> RuleSet:
    """Check one parsed rule file (``{ruleset: {...}, rules: [...]}``) against the schema."""
    schema = schema or load_schema()
    if isinstance(data, str):
        data = _parse_yaml(data, origin=origin)
    if not isinstance(data, Mapping) or not isinstance(data.get("ruleset"), Mapping) or "rules" not in data:
        raise RuleError(f"{origin}: a rule file needs a 'ruleset: {{id, version, source}}' header and a 'rules' list")
    head = data["ruleset"]
    for key in ("id", "version", "source"):
        if not head.get(key):
            raise RuleError(f"{origin}: the ruleset header needs '{key}'")
    unknown = set(data) - {"ruleset", "rules"}
    if unknown:
        raise RuleError(f"{origin}: unknown top-level key(s) {sorted(unknown)}")
    unknown = set(head) - {"id", "version", "source", "description", "applies_when"}
    if unknown:
        raise RuleError(f"{origin}: unknown ruleset key(s) {sorted(unknown)}; allowed: id, version, source, "
                        "description, applies_when")
    if not isinstance(data["rules"], list):
        raise RuleError(f"{origin}: 'rules' must be a list")
    vocab = _drug_vocab()
    applies = (parse_condition(head["applies_when"], schema=schema, where=f"{origin}: ruleset applies_when",
                               vocab=vocab) if head.get("applies_when") is not None else None)
    rules = tuple(_parse_rule(r, schema=schema, origin=origin, ruleset=str(head["id"]),
                              ruleset_version=str(head["version"]), vocab=vocab) for r in data["rules"])
    seen: set[str] = set()
    for r in rules:
        if r.id in seen:
            raise RuleError(f"{origin}: rule id {r.id!r} appears twice")
        seen.add(r.id)
    return RuleSet(str(head["id"]), str(head["version"]), str(head["source"]), origin, rules,
                   str(head.get("description", "")), applies)


def load_rules(path: Path | str | None = None, *, schema: FactSchema | None = None) -> RuleBook:
    """Load a rule file or a directory of them (default: the packaged example rule sets).

    A directory may hold ``schema.yaml`` that declares extra facts / predictions / constraints on top of the
    packaged schema. Rule ids must be unique across the book.
    """
    path = Path(path) if path is not None else DEFAULT_RULES
    schema = schema or load_schema()
    if path.is_dir():
        if (path / SCHEMA_FILE).is_file():
            extra = _read_yaml(path / SCHEMA_FILE)
            if not isinstance(extra, Mapping):
                raise RuleError(f"{path / SCHEMA_FILE}: must be a mapping with facts / predictions / constraints")
            schema = schema.extended(extra, origin=str(path / SCHEMA_FILE))
        files = sorted(p for p in path.glob("*.y*ml") if p.name != SCHEMA_FILE)
        if not files:
            raise RuleError(f"{path}: no rule files (*.yaml) in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise RuleError(f"{path}: no such rule file or directory")
    rulesets = tuple(parse_ruleset(_read_yaml(f), schema=schema, origin=str(f)) for f in files)
    owner: dict[str, str] = {}
    for rs in rulesets:
        for r in rs.rules:
            if r.id in owner:
                raise RuleError(f"rule id {r.id!r} is defined in both {owner[r.id]} and {rs.path}")
            owner[r.id] = rs.path
    return RuleBook(rulesets, schema)


# ----- facts: validation, contradictions ---------------------------------------------------------------------------
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


# ----- rule evaluation ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    status: str  # fired | not_fired | not_evaluated | not_applicable (its rule set does not apply)
    missing: tuple[str, ...] = ()
    reasons: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule_id": self.rule.id, "ruleset": self.rule.ruleset, "status": self.status}
        if self.missing:
            out["missing"] = list(self.missing)
            out["why"] = "; ".join(f"missing {m}" + (f" ({self.reasons[m]})" if m in self.reasons else "")
                                   for m in self.missing)
        return out


@dataclass(frozen=True)
class Evaluation:
    outcomes: tuple[RuleOutcome, ...]
    rulesets: tuple[dict[str, Any], ...] = ()  # per rule set: applied or not, and why

    def _with(self, status: str) -> list[RuleOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def fired(self) -> list[RuleOutcome]:
        return self._with("fired")

    @property
    def not_fired(self) -> list[RuleOutcome]:
        return self._with("not_fired")

    @property
    def not_evaluated(self) -> list[RuleOutcome]:
        return self._with("not_evaluated")


def evaluate_rules(rules: RuleBook | Iterable[Rule], facts: Mapping[str, Any],
                   predictions: Mapping[str, Mapping[str, Any]] | None = None, *,
                   missing_reasons: Mapping[str, str] | None = None) -> Evaluation:
    """Evaluate every rule; unknown (missing facts) is reported as not evaluated, never as false.

    With a RuleBook, a rule set whose ``applies_when`` is false is skipped (its rules are ``not_applicable``);
    when ``applies_when`` cannot be decided its rules are ``not_evaluated`` with the missing facts.
    """
    reasons = dict(missing_reasons or {})
    outcomes: list[RuleOutcome] = []
    summary: list[dict[str, Any]] = []
    groups = ([(rs, rs.rules) for rs in rules.rulesets] if isinstance(rules, RuleBook) else [(None, list(rules))])
    for rs, members in groups:
        gate, gate_missing = (True, set()) if rs is None or rs.applies_when is None else \
            evaluate_condition(rs.applies_when, facts, predictions)
        if rs is not None:
            entry: dict[str, Any] = {"ruleset": rs.id, "version": rs.version,
                                     "applied": bool(gate), "rules": len(members)}
            if gate is None:
                entry["why"] = "applicability not decided: missing " + ", ".join(sorted(gate_missing))
            elif not gate:
                entry["why"] = "applies_when is false for this patient"
            summary.append(entry)
        for rule in members:
            if gate is False:
                outcomes.append(RuleOutcome(rule, "not_applicable"))
                continue
            value, missing = evaluate_condition(rule.when, facts, predictions)
            if gate is None:
                value, missing = None, missing | gate_missing
            status = "fired" if value else "not_evaluated" if value is None else "not_fired"
            miss = tuple(sorted(missing))
            outcomes.append(RuleOutcome(rule, status, miss, {m: reasons[m] for m in miss if m in reasons}))
    return Evaluation(tuple(outcomes), tuple(summary))


# ----- conflict resolution -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proposal:
    """An action proposed by a rule, a PGx recommendation, an interaction, an allergy or a contraindication."""

    origin: str  # rule | pgx | interaction | allergy | contraindication | renal
    id: str
    action: Action | None
    text: str
    strength: str = "moderate"
    priority: int = 0
    source: str = ""
    targets: frozenset[str] = frozenset()  # drugs the action is about (a class expanded to its members)

    @property
    def rank(self) -> int:
        return ACTION_RANK.get(self.action.type, 0) if self.action else 0

    def label(self) -> str:
        act = f"{self.action.type} {self.action.drug}" if self.action else "information"
        return f"{self.origin} {self.id} ({act})"


@dataclass(frozen=True)
class Decision:
    proposal: Proposal
    status: str  # active | overridden | unresolved
    overridden_by: str | None = None
    reason: str | None = None
    restricted_to: tuple[str, ...] | None = None


def _outranks(a: Proposal, b: Proposal) -> tuple[bool, str] | None:
    """Does `a` win over `b`? None when they do not conflict or cannot be ordered."""
    if a.rank != b.rank:
        high, low = (a, b) if a.rank > b.rank else (b, a)
        why = {3: "an avoid / contraindication outranks", 2: "a dose adjustment outranks"}.get(high.rank, "outranks")
        kind = {2: "a dose adjustment", 1: "a preference", 0: "a use-as-labelled statement"}.get(low.rank, "it")
        return (high is a), f"{why} {kind}, whatever their priorities"
    if a.priority != b.priority:
        return a.priority > b.priority, f"same action kind; priority {max(a.priority, b.priority)} beats " \
                                        f"{min(a.priority, b.priority)}"
    sa, sb = STRENGTHS.get(a.strength, 0), STRENGTHS.get(b.strength, 0)
    if sa != sb:
        return sa > sb, f"same action kind and priority; a {a.strength if sa > sb else b.strength} recommendation " \
                        f"beats a {b.strength if sa > sb else a.strength} one"
    return None


def _conflicting(a: Proposal, b: Proposal) -> frozenset[str]:
    """The drugs on which two proposals contradict each other (empty when they are compatible).

    Contradictions: avoiding a drug that another proposal prefers, doses or uses as labelled; two preferences
    that each replace the other's drug; a dose change against "use as labelled". Two dose adjustments accumulate,
    and a preference is compatible with a dose adjustment of the same drug.
    """
    if a.action is None or b.action is None:
        return frozenset()
    kinds = {a.action.type, b.action.type}
    if "monitor" in kinds or kinds in ({"avoid"}, {"adjust_dose"}, {"none"}, {"adjust_dose", "prefer_alternative"},
                                       {"none", "prefer_alternative"}):
        return frozenset()
    if kinds == {"prefer_alternative"}:
        return (a.targets & _instead(b)) | (b.targets & _instead(a))
    return a.targets & b.targets


def _instead(p: Proposal) -> frozenset[str]:
    if p.action is None or p.action.instead_of is None:
        return frozenset()
    from precimed.planning.interactions import drug_vocabulary

    return frozenset(drug_vocabulary().expand(p.action.instead_of))


def resolve(proposals: Sequence[Proposal]) -> tuple[list[Decision], list[dict[str, Any]]]:
    """Resolve conflicts between proposals.

    Proposals are taken strongest first (action kind: avoid/contraindication > adjust_dose > prefer_alternative >
    use-as-labelled; then priority; then strength) and each is kept unless it contradicts one already kept that
    outranks it, so a preference overridden by a contraindication cannot in turn override anything. ``monitor``
    never conflicts, nor do two dose adjustments of one drug (all are shown; the most restrictive applies). A
    preference that conflicts on only some of its drugs stays for the others (``restricted_to``). Equal-rank
    contradictions are kept as ``unresolved`` on both sides and reported for the clinician to decide.
    """
    def key(i: int) -> tuple:
        p = proposals[i]
        return (-p.rank, -p.priority, -STRENGTHS.get(p.strength, 0), i)

    decisions: dict[int, Decision] = {}
    conflicts: list[dict[str, Any]] = []
    kept: list[int] = []
    for i in sorted(range(len(proposals)), key=key):
        p = proposals[i]
        blockers: list[tuple[int, str, frozenset[str]]] = []
        ties: list[int] = []
        for j in kept:
            shared = _conflicting(p, proposals[j])
            if not shared:
                continue
            order = _outranks(proposals[j], p)
            if order is None or not order[0]:
                ties.append(j)
                conflicts.append({"drugs": sorted(shared), "between": [proposals[j].label(), p.label()],
                                  "winner": None, "reason": "same action kind, priority and strength: unresolved, "
                                                            "both shown; the clinician decides"})
            else:
                blockers.append((j, order[1], shared))
                conflicts.append({"drugs": sorted(shared), "winner": proposals[j].label(), "loser": p.label(),
                                  "reason": order[1]})
        if blockers:
            lost = frozenset().union(*(s for _, _, s in blockers))
            remaining = p.targets - lost
            winner, why = proposals[blockers[0][0]].label(), blockers[0][1]
            if remaining and p.action is not None and p.action.type == "prefer_alternative":
                decisions[i] = Decision(p, "active", winner, f"restricted: {why}", tuple(sorted(remaining)))
                kept.append(i)
            else:
                decisions[i] = Decision(p, "overridden", winner, why)
            continue
        kept.append(i)
        if ties:
            others = ", ".join(proposals[j].label() for j in ties)
            decisions[i] = Decision(p, "unresolved", None, f"conflicts with {others} at equal rank")
            for j in ties:
                decisions[j] = Decision(proposals[j], "unresolved", None, f"conflicts with {p.label()} at equal rank")
        else:
            decisions[i] = Decision(p, "active")
    return [decisions[i] for i in range(len(proposals))], conflicts
