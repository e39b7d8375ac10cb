"""The old home of the rule engine, kept as a thin re-export so ``from precimed.planning.rules import load_rules``
(used by the service and by sites' scripts) keeps working.

The engine now lives in one module per job: :mod:`precimed.planning.conditions` (the condition language),
:mod:`precimed.planning.factschema` (the fact schema and a patient's facts checked against it),
:mod:`precimed.planning.rulebook` (rule files and their evaluation) and :mod:`precimed.planning.conflicts`
(conflicting recommendations). New code imports from those.
"""

from __future__ import annotations

from precimed.planning.conditions import OPERATORS, Condition, Group, Leaf, Not, evaluate_condition, parse_condition
from precimed.planning.conflicts import ACTION_RANK, Decision, Proposal, resolve
from precimed.planning.factschema import (
    DEFAULT_SCHEMA,
    FACT_TYPES,
    Constraint,
    FactSchema,
    FactSpec,
    Issue,
    apply_constraints,
    load_schema,
    validate_facts,
)
from precimed.planning.knowledge_files import KNOWLEDGE
from precimed.planning.rulebook import (
    ACTIONS,
    DEFAULT_RULES,
    SCHEMA_FILE,
    STRENGTHS,
    Action,
    Evaluation,
    Rule,
    RuleBook,
    RuleOutcome,
    RuleSet,
    evaluate_rules,
    load_rules,
    parse_ruleset,
)

__all__ = [
    "ACTIONS",
    "ACTION_RANK",
    "DEFAULT_RULES",
    "DEFAULT_SCHEMA",
    "FACT_TYPES",
    "KNOWLEDGE",
    "OPERATORS",
    "SCHEMA_FILE",
    "STRENGTHS",
    "Action",
    "Condition",
    "Constraint",
    "Decision",
    "Evaluation",
    "FactSchema",
    "FactSpec",
    "Group",
    "Issue",
    "Leaf",
    "Not",
    "Proposal",
    "Rule",
    "RuleBook",
    "RuleOutcome",
    "RuleSet",
    "apply_constraints",
    "evaluate_condition",
    "evaluate_rules",
    "load_rules",
    "load_schema",
    "parse_condition",
    "parse_ruleset",
    "resolve",
    "validate_facts",
]
