"""The drug vocabulary (``knowledge/drugs.yaml``): canonical generic names, synonyms, ATC codes and drug classes.

Every planning module that names a drug (rules, interactions, contraindications, dosing, the plan and its FHIR
form) normalizes it here, so a brand name or spelling variant means the same drug everywhere and an unknown name
is reported rather than silently ignored. It sits below the rule book and the safety checks so that both can use
it without importing each other.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from precimed.errors import DataError
from precimed.planning.knowledge_files import load_knowledge

DRUGS_FILE = "drugs.yaml"


def drug_key(name: str) -> str:
    """A name as the vocabulary looks it up: lower case, single spaces, ``_`` read as a space."""
    return " ".join(str(name).strip().lower().replace("_", " ").split())


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
            canonical = drug_key(name)
            entry = DrugInfo(canonical, str(info.get("atc", "")), tuple(info.get("classes", [])),
                             tuple(drug_key(s) for s in info.get("synonyms", [])))
            self.drugs[canonical] = entry
            for alias in (canonical, *entry.synonyms):
                self._names.setdefault(alias, canonical)
            for cls in entry.classes:
                self._classes.setdefault(drug_key(cls), set()).add(canonical)
        self._class_names = {drug_key(c): c for d in self.drugs.values() for c in d.classes}
        self.allergy_classes = {drug_key(k): drug_key(v) for k, v in (data.get("allergy_classes") or {}).items()}

    def normalize(self, name: str) -> str | None:
        """The canonical generic name, or None when the name is not a known drug."""
        return self._names.get(drug_key(name))

    def is_class(self, name: str) -> bool:
        return drug_key(name) in self._classes

    def normalize_or_class(self, name: str) -> str | None:
        """A canonical drug name, a class name (as written in drugs.yaml), or None."""
        key = drug_key(name)
        if key in self.allergy_classes:
            key = self.allergy_classes[key]
        if key in self._classes:
            return self._class_names[key]
        return self.normalize(name)

    def expand(self, name: str) -> set[str]:
        """A drug → {itself}; a class → its member drugs; unknown → empty."""
        key = drug_key(name)
        key = self.allergy_classes.get(key, key)
        if key in self._classes:
            return set(self._classes[key])
        drug = self.normalize(name)
        return {drug} if drug else set()

    def suggest(self, name: str) -> list[str]:
        return difflib.get_close_matches(drug_key(name), list(self._names) + list(self._classes), n=3, cutoff=0.6)

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
    """The packaged drug vocabulary, built once per process (every plan and rule file uses it)."""
    return DrugVocabulary(load_knowledge(DRUGS_FILE))
