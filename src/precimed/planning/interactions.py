"""Drug safety checks: a cited drug-drug interaction subset, allergy checks and drug-condition contraindications.
The tables live in ``knowledge/`` (``interactions.yaml``, ``contraindications.yaml``) with their sources; drug
names are normalized by the drug vocabulary (:mod:`precimed.planning.drugs`, re-exported here).

An unknown drug name is never silently dropped: the strict functions raise :class:`~precimed.errors.DataError`
with close matches; with ``on_unknown="report"`` they return the unknown names so a plan can list them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import combinations
from typing import Any

from precimed.errors import RuleError
from precimed.planning.conditions import Condition, evaluate_condition, parse_condition
from precimed.planning.drugs import DrugInfo, DrugVocabulary, drug_key, drug_vocabulary
from precimed.planning.factschema import load_schema
from precimed.planning.knowledge_files import KNOWLEDGE, load_knowledge
from precimed.planning.rulebook import Action

INTERACTIONS = "interactions.yaml"
CONTRAINDICATIONS = "contraindications.yaml"
INTERACTIONS_FILE = KNOWLEDGE / INTERACTIONS
CONTRAINDICATIONS_FILE = KNOWLEDGE / CONTRAINDICATIONS
SEVERITIES = ("contraindicated", "major", "moderate")

__all__ = [  # DrugInfo, DrugVocabulary and drug_vocabulary are re-exported from precimed.planning.drugs
    "CONTRAINDICATIONS_FILE", "INTERACTIONS_FILE", "SEVERITIES", "AllergyHit", "Contraindication",
    "ContraindicationHit", "DrugInfo", "DrugVocabulary", "Interaction", "InteractionHit", "check_allergies",
    "check_contraindications", "check_interactions", "contraindication_table", "drug_vocabulary", "interaction_table",
]


def _target(node: Any, vocab: DrugVocabulary, where: str) -> tuple[str, set[str]]:
    """A drug or {class: NAME} → (display name, member drugs)."""
    if isinstance(node, Mapping) and "class" in node:
        name = str(node["class"])
        members = vocab.expand(name)
        if not vocab.is_class(name):
            raise RuleError(f"{where}: unknown drug class {name!r}")
        return name, members
    drug = vocab.normalize(str(node))
    if drug is None:
        raise RuleError(f"{where}: unknown drug {node!r}")
    return drug, {drug}


# ----- drug-drug interactions --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interaction:
    id: str
    a: str
    b: str
    a_drugs: frozenset[str]
    b_drugs: frozenset[str]
    severity: str
    effect: str
    management: str
    action: str
    target: str  # a | b: the drug the action is about
    source: str


@dataclass(frozen=True)
class InteractionHit:
    """An interaction found between two of the patient's drugs."""

    interaction: Interaction
    drug_a: str
    drug_b: str

    @property
    def action(self) -> Action:
        drug = self.drug_a if self.interaction.target == "a" else self.drug_b
        return Action(self.interaction.action, drug, note=self.interaction.management)

    def to_dict(self) -> dict[str, Any]:
        i = self.interaction
        return {"id": i.id, "drugs": [self.drug_a, self.drug_b], "severity": i.severity, "effect": i.effect,
                "management": i.management, "action": self.action.to_dict(), "source": i.source}


@cache
def interaction_table() -> tuple[tuple[Interaction, ...], str]:
    """The packaged interactions, their drugs and classes checked against the vocabulary; (table, version)."""
    data = load_knowledge(INTERACTIONS)
    vocab = drug_vocabulary()
    out = []
    for node in data["interactions"]:
        where = f"{INTERACTIONS_FILE}: interaction {node.get('id')!r}"
        a, a_set = _target(node["a"], vocab, where)
        b, b_set = _target(node["b"], vocab, where)
        if node["severity"] not in SEVERITIES:
            raise RuleError(f"{where}: severity must be one of {SEVERITIES}")
        act = node["action"]
        if act.get("type") not in ("avoid", "adjust_dose", "monitor") or act.get("target") not in ("a", "b"):
            raise RuleError(f"{where}: action needs type avoid|adjust_dose|monitor and target a|b")
        out.append(Interaction(str(node["id"]), a, b, frozenset(a_set), frozenset(b_set), node["severity"],
                               node["effect"], node["management"], act["type"], act["target"], node["source"]))
    return tuple(out), str(data.get("version", ""))


def check_interactions(drugs: Sequence[str], *, on_unknown: str = "raise") -> tuple[list[InteractionHit], list[str]]:
    """Every listed interaction between two of `drugs` (each pair once).

    ``on_unknown="raise"`` refuses an unknown drug name (DataError with close matches); ``"report"`` returns
    the unknown names as the second element, unchecked.
    """
    vocab = drug_vocabulary()
    if on_unknown == "raise":
        known = []
        for d in drugs:
            name = vocab.require(d, where="interaction check")
            if name not in known:
                known.append(name)
        unknown: list[str] = []
    else:
        known, unknown = vocab.split(drugs)
    table, _ = interaction_table()
    hits = []
    for x, y in combinations(known, 2):
        for i in table:
            if x in i.a_drugs and y in i.b_drugs:
                hits.append(InteractionHit(i, x, y))
            elif y in i.a_drugs and x in i.b_drugs:
                hits.append(InteractionHit(i, y, x))
    return hits, unknown


# ----- allergies ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AllergyHit:
    drug: str  # a drug, or a class named by a rule (then `targets` are its members that match)
    allergy: str
    via: str  # the drug itself or the class that links them
    targets: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        same = self.via == self.drug
        text = (f"Recorded allergy to {self.allergy}: avoid {self.drug}." if same else
                f"Recorded allergy to {self.allergy}: {self.drug} belongs to {self.via}; avoid.")
        return {"drug": self.drug, "allergy": self.allergy, "via": self.via, "text": text,
                "source": f"patient allergy record; class membership per {drug_vocabulary().version}"}


def check_allergies(drugs: Sequence[str], allergies: Sequence[str]) -> tuple[list[AllergyHit], list[str]]:
    """Drugs (or drug classes) that match a recorded allergy (same drug, or a class the allergy names), and the
    allergy terms that are not recognised."""
    vocab = drug_vocabulary()
    hits: list[AllergyHit] = []
    unknown: list[str] = []
    for allergy in allergies:
        key = drug_key(allergy)
        if key in vocab.allergy_classes or vocab.is_class(key):
            cls = vocab.allergy_classes.get(key, key)
            members = vocab.expand(cls)
            via = vocab.normalize_or_class(cls) or cls
        else:
            drug = vocab.normalize(allergy)
            if drug is None:
                unknown.append(str(allergy))
                continue
            members, via = {drug}, drug
        for d in drugs:
            shared = (vocab.expand(d) or {d}) & members
            if shared:
                hits.append(AllergyHit(d, str(allergy), d if via == d else via, frozenset(shared)))
    return hits, unknown


# ----- drug-condition contraindications ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Contraindication:
    id: str
    drug: str
    drugs: frozenset[str]
    when: Condition
    severity: str  # contraindicated | caution
    text: str
    source: str


@cache
def contraindication_table() -> tuple[tuple[Contraindication, ...], str]:
    """The packaged contraindications, their conditions checked against the fact schema; (table, version)."""
    data = load_knowledge(CONTRAINDICATIONS)
    vocab = drug_vocabulary()
    schema = load_schema()
    out = []
    for node in data["contraindications"]:
        where = f"{CONTRAINDICATIONS_FILE}: contraindication {node.get('id')!r}"
        name, members = _target(node["drug"], vocab, where)
        when = parse_condition(node["when"], schema=schema, where=where)
        if node["severity"] not in ("contraindicated", "caution"):
            raise RuleError(f"{where}: severity must be contraindicated or caution")
        out.append(Contraindication(str(node["id"]), name, frozenset(members), when, node["severity"], node["text"],
                                    node["source"]))
    return tuple(out), str(data.get("version", ""))


@dataclass(frozen=True)
class ContraindicationHit:
    entry: Contraindication
    drug: str

    @property
    def action(self) -> Action:
        return Action("avoid" if self.entry.severity == "contraindicated" else "monitor", self.drug)

    def to_dict(self) -> dict[str, Any]:
        e = self.entry
        return {"id": e.id, "drug": self.drug, "severity": e.severity, "text": e.text, "source": e.source}


def check_contraindications(drugs: Iterable[str], facts: Mapping[str, Any]
                            ) -> tuple[list[ContraindicationHit], list[tuple[str, str, list[str]]]]:
    """(hits, checks that could not be decided as (id, drug, missing facts)) for drug names or class names."""
    vocab = drug_vocabulary()
    table, _ = contraindication_table()
    hits: list[ContraindicationHit] = []
    undecided: list[tuple[str, str, list[str]]] = []
    for d in drugs:
        members = vocab.expand(d)
        for c in table:
            if not (members & c.drugs):
                continue
            value, missing = evaluate_condition(c.when, facts)
            if value:
                hits.append(ContraindicationHit(c, d))
            elif value is None:
                undecided.append((c.id, d, sorted(missing)))
    return hits, undecided
