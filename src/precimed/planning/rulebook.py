"""The rule book: guideline rules as data, loaded and checked from YAML files, and evaluated against one
patient's facts and model outputs.

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

``when`` (and a rule set's optional ``applies_when``) is a condition (:mod:`precimed.planning.conditions`) over
facts declared in the fact schema (:mod:`precimed.planning.factschema`). A rule whose condition is unknown is
reported as **not evaluated** with the missing facts (never as false); a rule decided false although some of its
facts are missing lists them too.

Files are checked at load: a YAML syntax error, an unknown key, fact or operator, or a value of the wrong type
raises :class:`~precimed.errors.RuleError` naming the file and the rule id. Packaged rule sets are read through
the cached knowledge loader; a site's rule directory is read afresh on every load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from precimed.errors import RuleError
from precimed.planning.conditions import Condition, evaluate_condition, parse_condition
from precimed.planning.drugs import drug_vocabulary
from precimed.planning.factschema import FactSchema, load_schema
from precimed.planning.knowledge_files import KNOWLEDGE, parse_yaml, read_yaml

DEFAULT_RULES = KNOWLEDGE / "rules"
SCHEMA_FILE = "schema.yaml"

ACTIONS: tuple[str, ...] = ("avoid", "adjust_dose", "prefer_alternative", "monitor")
#: Strength of a recommendation, ranked (higher is stronger).
STRENGTHS: dict[str, int] = {"strong": 3, "moderate": 2, "weak": 1, "optional": 1, "conditional": 1}

_RULE_KEYS = {"id", "source", "version", "when", "recommend", "strength", "priority", "actions", "action",
              "description", "notes"}
_ACTION_KEYS = {"type", "drug", "instead_of", "dose", "note"}


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
        """Each rule set by id, version, source and file name, packaged or the site's: never its path on disk,
        which says where precimed is installed and means nothing to the plan's reader."""
        return [{"id": rs.id, "version": rs.version, "source": rs.source, "file": Path(rs.path).name,
                 "origin": "packaged" if Path(rs.path).parent == DEFAULT_RULES else "site", "rules": str(len(rs.rules))}
                for rs in self.rulesets]


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
        data = parse_yaml(data, origin=origin)
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
    vocab = drug_vocabulary().normalize_or_class
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
            extra = read_yaml(path / SCHEMA_FILE)
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
    rulesets = tuple(parse_ruleset(read_yaml(f), schema=schema, origin=str(f)) for f in files)
    owner: dict[str, str] = {}
    for rs in rulesets:
        for r in rs.rules:
            if r.id in owner:
                raise RuleError(f"rule id {r.id!r} is defined in both {owner[r.id]} and {rs.path}")
            owner[r.id] = rs.path
    return RuleBook(rulesets, schema)


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
