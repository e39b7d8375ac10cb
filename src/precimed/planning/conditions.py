"""The condition language of rules, rule-set gates, fact constraints, contraindications and renal criteria: parsed
and type-checked against the fact schema at load, evaluated without ``eval`` in three-valued logic.

A condition is a leaf ``{fact|prediction: NAME, op: OP, value: V}`` with OP one of ``== != < <= > >= in not_in
exists``, or ``all: [...]``, ``any: [...]``, ``not: {...}``. Every name must be declared in the fact schema
(:mod:`precimed.planning.factschema`); a prediction may also be named ``NAME.ci_low`` / ``NAME.ci_high``. For a
list fact (e.g. ``medications``) ``in`` means "any element is in the list" and ``not_in`` "no element is".

Evaluation is Kleene three-valued: a leaf whose fact is missing is *unknown*; ``all`` is false if any part is
false, else unknown if any part is unknown; ``any`` is true if any part is true, else unknown if any is unknown;
``not`` keeps unknown. Callers report an unknown condition as "not evaluated" with its missing names, never as
false.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from precimed.errors import RuleError
from precimed.planning.drugs import drug_vocabulary

if TYPE_CHECKING:  # the schema module parses its constraints with this one, so only the types are needed here
    from precimed.planning.factschema import FactSchema, FactSpec

OPERATORS: tuple[str, ...] = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "exists")
#: A prediction name may carry one of these to mean an end of its interval instead of its value.
PREDICTION_SUFFIXES = (".ci_low", ".ci_high")

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


@dataclass(frozen=True)
class Leaf:
    """One comparison of a fact or prediction with a value."""

    kind: str  # fact | prediction
    name: str
    op: str
    value: Any = True

    def names(self) -> set[tuple[str, str]]:
        return {(self.kind, self.name)}


@dataclass(frozen=True)
class Group:
    """``all`` or ``any`` of several conditions."""

    mode: str  # all | any
    items: tuple[Condition, ...]

    def names(self) -> set[tuple[str, str]]:
        return set().union(*(i.names() for i in self.items)) if self.items else set()


@dataclass(frozen=True)
class Not:
    """The negation of a condition (unknown stays unknown)."""

    item: Condition

    def names(self) -> set[tuple[str, str]]:
        return self.item.names()


Condition = Leaf | Group | Not


# ----- parsing -----------------------------------------------------------------------------------------------------
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
        vocab = drug_vocabulary().normalize_or_class
    _check_value(spec, op, value, where=where, name=name, vocab=vocab)
    if spec.vocabulary == "drugs" and vocab is not None and op in ("in", "not_in"):
        value = tuple(vocab(v) or v for v in value)
    elif op in ("in", "not_in"):
        value = tuple(value)
    return Leaf(kind, name, op, value)


def _check_value(spec: FactSpec, op: str, value: Any, *, where: str, name: str,
                 vocab: Callable[[str], str | None] | None) -> None:
    """Refuse a value that cannot be compared with the declared fact by `op` (wrong type, range, drug name)."""
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
    """The value a leaf compares: a fact, or a prediction's value or interval end; None when missing."""
    if leaf.kind == "fact":
        return facts.get(leaf.name)
    base, part = leaf.name, "value"
    for suffix in PREDICTION_SUFFIXES:
        if leaf.name.endswith(suffix):
            base, part = leaf.name[: -len(suffix)], suffix[1:]
    entry = predictions.get(base)
    return None if entry is None else entry.get(part)


def _apply(op: str, actual: Any, value: Any) -> bool:
    """Compare a known value; for a list fact ``in`` means any element is in the list."""
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
