"""Drug safety checks: the drug vocabulary, a cited drug-drug interaction subset, allergy checks and drug-condition
contraindications. All tables live in ``knowledge/`` (``drugs.yaml``, ``interactions.yaml``,
``contraindications.yaml``) with their sources.

An unknown drug name is never silently dropped: the strict functions raise :class:`~precimed.errors.DataError`
with close matches; with ``on_unknown="report"`` they return the unknown names so a plan can list them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import combinations
from typing import Any

import yaml

from precimed.errors import DataError, RuleError
from precimed.planning.rules import KNOWLEDGE, Action, Condition, evaluate_condition, load_schema, parse_condition

DRUGS_FILE = KNOWLEDGE / "drugs.yaml"
INTERACTIONS_FILE = KNOWLEDGE / "interactions.yaml"
CONTRAINDICATIONS_FILE = KNOWLEDGE / "contraindications.yaml"
SEVERITIES = ("contraindicated", "major", "moderate")


def _key(name: str) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").split())


# ----- vocabulary --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DrugInfo:
    name: str
    atc: str
    classes: tuple[str, ...]
    synonyms: tuple[str, ...]


class DrugVocabulary:
    """Canonical generic names, synonyms, ATC codes and classes (``knowledge/drugs.yaml``)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.version = str(data.get("version", ""))
        self.source = str(data.get("source", ""))
        self.drugs: dict[str, DrugInfo] = {}
        self._names: dict[str, str] = {}
        self._classes: dict[str, set[str]] = {}
        for name, info in data["drugs"].items():
            canonical = _key(name)
            entry = DrugInfo(canonical, str(info.get("atc", "")), tuple(info.get("classes", [])),
                             tuple(_key(s) for s in info.get("synonyms", [])))
            self.drugs[canonical] = entry
            for alias in (canonical, *entry.synonyms):
                self._names.setdefault(alias, canonical)
            for cls in entry.classes:
                self._classes.setdefault(_key(cls), set()).add(canonical)
        self._class_names = {_key(c): c for d in self.drugs.values() for c in d.classes}
        self.allergy_classes = {_key(k): _key(v) for k, v in (data.get("allergy_classes") or {}).items()}

    def normalize(self, name: str) -> str | None:
        """The canonical generic name, or None when the name is not a known drug."""
        return self._names.get(_key(name))

    def is_class(self, name: str) -> bool:
        return _key(name) in self._classes

    def normalize_or_class(self, name: str) -> str | None:
        """A canonical drug name, a class name (as written in drugs.yaml), or None."""
        key = _key(name)
        if key in self.allergy_classes:
            key = self.allergy_classes[key]
        if key in self._classes:
            return self._class_names[key]
        return self.normalize(name)

    def expand(self, name: str) -> set[str]:
        """A drug → {itself}; a class → its member drugs; unknown → empty."""
        key = _key(name)
        key = self.allergy_classes.get(key, key)
        if key in self._classes:
            return set(self._classes[key])
        drug = self.normalize(name)
        return {drug} if drug else set()

    def suggest(self, name: str) -> list[str]:
        return difflib.get_close_matches(_key(name), list(self._names) + list(self._classes), n=3, cutoff=0.6)

    def require(self, name: str, *, where: str = "drug") -> str:
        """The canonical name, or DataError naming the unknown drug and close matches."""
        drug = self.normalize(name)
        if drug is None:
            close = self.suggest(name)
            hint = f"; did you mean {close}?" if close else ""
            raise DataError(f"{where}: unknown drug {name!r} (not in the drug vocabulary {self.version}){hint}",
                            column=where)
        return drug

    def split(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """(canonical known drugs in order without duplicates, unknown names as given)."""
        known: list[str] = []
        unknown: list[str] = []
        for n in names:
            d = self.normalize(n)
            if d is None:
                unknown.append(str(n))
            elif d not in known:
                known.append(d)
        return known, unknown


@cache
def drug_vocabulary() -> DrugVocabulary:
    return DrugVocabulary(_load(DRUGS_FILE))


def _load(path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RuleError(f"{path}: cannot load knowledge table ({exc})") from None


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
    data = _load(INTERACTIONS_FILE)
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
        key = _key(allergy)
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
    data = _load(CONTRAINDICATIONS_FILE)
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
