"""Dosing: the IWPC warfarin algorithms (Klein et al., NEJM 2009), eGFR by CKD-EPI 2021 (Inker et al., NEJM 2021),
creatinine clearance by Cockcroft-Gault, and renal dose rules from drug labels. Coefficients and rules live in
``knowledge/iwpc_warfarin.yaml`` and ``knowledge/renal.yaml``.

The functions take plain numbers and refuse what they cannot use: a missing input raises
:class:`~precimed.errors.DataError` naming it, an implausible one :class:`~precimed.errors.ValueRangeError`.
A plan turns those into "not computed: missing weight_kg" lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from precimed.errors import DataError, ValueRangeError
from precimed.planning.conditions import evaluate_condition, parse_condition
from precimed.planning.factschema import load_schema
from precimed.planning.knowledge_files import KNOWLEDGE, load_knowledge

IWPC = "iwpc_warfarin.yaml"
RENAL = "renal.yaml"
IWPC_FILE = KNOWLEDGE / IWPC
RENAL_FILE = KNOWLEDGE / RENAL
IWPC_CYP2C9 = ("*1/*1", "*1/*2", "*1/*3", "*2/*2", "*2/*3", "*3/*3")
IWPC_VKORC1 = ("G/G", "G/A", "A/A")
RACES = ("white", "asian", "black", "mixed_or_missing")
SEXES = ("female", "male")


def iwpc_table() -> dict[str, Any]:
    """The IWPC coefficients (``knowledge/iwpc_warfarin.yaml``): the caller's own copy, free to change."""
    return load_knowledge(IWPC)


def renal_table() -> dict[str, Any]:
    """The kidney equations and renal dose rules (``knowledge/renal.yaml``): the caller's own copy."""
    return load_knowledge(RENAL)


@cache
def _iwpc() -> Mapping[str, Any]:
    """This module's one copy of the IWPC table, read on every dose; never handed out, so never changed."""
    return load_knowledge(IWPC)


@cache
def _renal() -> Mapping[str, Any]:
    """This module's one copy of the renal table, read several times per plan; never handed out."""
    return load_knowledge(RENAL)


def _number(name: str, value: Any, low: float, high: float, unit: str) -> float:
    if value is None:
        raise DataError(f"{name} is missing; it is needed for this calculation", column=name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"{name} must be a number, got {value!r}", column=name)
    if not (low <= value <= high):
        raise ValueRangeError(f"{name} = {value!r} {unit} is outside the plausible range [{low:g}, {high:g}] {unit}",
                              column=name)
    return float(value)


# ----- warfarin ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WarfarinDose:
    algorithm: str  # pharmacogenetic | clinical
    weekly_mg: float
    sqrt_weekly: float
    terms: Mapping[str, float]  # each term's contribution to the square root of the weekly dose
    inputs: Mapping[str, Any]
    source: str
    version: str
    notes: tuple[str, ...] = ()

    @property
    def daily_mg(self) -> float:
        return self.weekly_mg / 7.0

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": f"IWPC {self.algorithm}", "weekly_mg": round(self.weekly_mg, 2),
                "daily_mg": round(self.daily_mg, 2), "sqrt_weekly": round(self.sqrt_weekly, 4),
                "terms": {k: round(v, 4) for k, v in self.terms.items()}, "inputs": dict(self.inputs),
                "source": self.source, "version": self.version, "notes": list(self.notes)}


def age_in_decades(age: float) -> int:
    """IWPC age category: 1 for 10-19 years, 2 for 20-29, ..."""
    return int(math.floor(age / 10.0))


def iwpc_weekly_dose(*, age: float | None, height_cm: float | None, weight_kg: float | None, race: str | None = None,
                     cyp2c9: str | None = None, vkorc1: str | None = None, enzyme_inducer: bool = False,
                     amiodarone: bool = False, algorithm: str = "pharmacogenetic") -> WarfarinDose:
    """IWPC warfarin weekly dose (mg/week): sqrt(dose) = intercept + Σ coefficient × term; dose = square.

    ``cyp2c9`` is one of ``*1/*1 … *3/*3`` or None (unknown); ``vkorc1`` the -1639 genotype ``G/G``, ``G/A``,
    ``A/A`` or None (unknown); ``race`` one of ``white, asian, black, mixed_or_missing`` (None → missing).
    Both unknown genotype categories are terms of the published algorithm.
    """
    t = _iwpc()
    if algorithm not in ("pharmacogenetic", "clinical"):
        raise DataError(f"algorithm must be 'pharmacogenetic' or 'clinical', got {algorithm!r}", column="algorithm")
    c = t[algorithm]
    age = _number("age", age, 18, 110, "years")
    height = _number("height_cm", height_cm, 100, 230, "cm")
    weight = _number("weight_kg", weight_kg, 25, 300, "kg")
    race_key = race or "mixed_or_missing"
    if race_key not in RACES:
        raise DataError(f"race must be one of {list(RACES)} (IWPC categories) or missing, got {race!r}", column="race")
    notes = []
    if race is None:
        notes.append("race not given: the IWPC 'missing or mixed race' term is used")
    decades = age_in_decades(age)
    terms = {"intercept": c["intercept"], f"age {decades} decades": c["age_decades"] * decades,
             "height": c["height_cm"] * height, "weight": c["weight_kg"] * weight,
             f"race {race_key}": c["race"][race_key],
             "enzyme inducer": c["enzyme_inducer"] * bool(enzyme_inducer),
             "amiodarone": c["amiodarone"] * bool(amiodarone)}
    inputs: dict[str, Any] = {"age": age, "height_cm": height, "weight_kg": weight, "race": race_key,
                              "enzyme_inducer": bool(enzyme_inducer), "amiodarone": bool(amiodarone)}
    if algorithm == "pharmacogenetic":
        v = vkorc1 or "unknown"
        g = cyp2c9 or "unknown"
        if v != "unknown" and v not in IWPC_VKORC1:
            raise DataError(f"VKORC1 genotype {vkorc1!r} is not an IWPC category {list(IWPC_VKORC1)}", column="VKORC1")
        if g != "unknown":
            parts = sorted(g.split("/"))
            g = "/".join(parts)
            if g not in IWPC_CYP2C9:
                raise DataError(f"CYP2C9 {cyp2c9!r} is not an IWPC genotype category {list(IWPC_CYP2C9)}; pass None "
                                "(unknown) or see warfarin_suggestion for CPIC's adjustment", column="CYP2C9")
        terms[f"VKORC1 {v}"] = c["vkorc1"][v]
        terms[f"CYP2C9 {g}"] = c["cyp2c9"][g]
        inputs.update({"VKORC1": v, "CYP2C9": g})
        for gene, value in (("VKORC1", v), ("CYP2C9", g)):
            if value == "unknown":
                notes.append(f"{gene} genotype not available: the IWPC '{gene} genotype unknown' term is used")
    root = sum(terms.values())
    return WarfarinDose(algorithm, root * root, root, terms, inputs, " ".join(t["source"].split()), t["version"],
                        tuple(notes))


# ----- kidney function ---------------------------------------------------------------------------------------------
def creatinine_mg_dl(value: float, unit: str = "mg/dL") -> float:
    """Serum creatinine in mg/dL (from mg/dL or umol/L)."""
    factor = _renal()["creatinine_umol_per_mg_dl"]
    if unit in ("mg/dL", "mg/dl"):
        return _number("creatinine_mg_dl", value, 0.1, 25, "mg/dL")
    if unit in ("umol/L", "µmol/L", "umol/l"):
        return _number("creatinine_umol_l", value, 9, 2200, "umol/L") / factor
    raise DataError(f"creatinine unit must be mg/dL or umol/L, got {unit!r}", column="creatinine")


def _sex(sex: Any) -> str:
    if sex not in SEXES:
        raise DataError(f"sex must be 'female' or 'male' for this equation, got {sex!r}", column="sex")
    return sex


def egfr_ckd_epi_2021(creatinine: float, *, age: float, sex: str, unit: str = "mg/dL") -> float:
    """eGFR (mL/min/1.73 m²), CKD-EPI 2021 creatinine equation without race (Inker et al., NEJM 2021):
    142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^-1.200 × 0.9938^age × 1.012 [female]."""
    e = _renal()["ckd_epi_2021"]
    scr = creatinine_mg_dl(creatinine, unit)
    age = _number("age", age, 18, 120, "years")
    sex = _sex(sex)
    ratio = scr / e["kappa"][sex]
    value = (e["multiplier"] * min(ratio, 1.0) ** e["alpha"][sex] * max(ratio, 1.0) ** e["exponent_above_kappa"]
             * e["age_base"] ** age)
    return value * (e["female_factor"] if sex == "female" else 1.0)


def crcl_cockcroft_gault(creatinine: float, *, age: float, weight_kg: float, sex: str, unit: str = "mg/dL") -> float:
    """Creatinine clearance (mL/min), Cockcroft-Gault with actual body weight: (140 - age) × weight / (72 × Scr),
    × 0.85 for women."""
    c = _renal()["cockcroft_gault"]
    scr = creatinine_mg_dl(creatinine, unit)
    age = _number("age", age, 18, 120, "years")
    weight = _number("weight_kg", weight_kg, 25, 300, "kg")
    sex = _sex(sex)
    value = (c["numerator_age"] - age) * weight / (c["denominator"] * scr)
    return value * (c["female_factor"] if sex == "female" else 1.0)


# ----- renal dose rules --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenalDose:
    drug: str
    status: str  # decided | not decided
    action: str | None  # none | avoid | adjust_dose
    text: str
    measure: str
    value: float | None
    source: str
    missing: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"drug": self.drug, "status": self.status, "action": self.action, "text": self.text,
               "measure": self.measure, "value": None if self.value is None else round(self.value, 1),
               "source": self.source}
        if self.missing:
            out["missing"] = list(self.missing)
        if self.details:
            out["details"] = dict(self.details)
        return out


def renal_drugs() -> list[str]:
    return sorted(_renal()["drugs"])


def _band_matches(band: Mapping[str, Any], x: float) -> bool:
    return (("min" not in band or x >= band["min"]) and ("above" not in band or x > band["above"]) and
            ("below" not in band or x < band["below"]) and ("max" not in band or x <= band["max"]))


@cache
def _criteria(drug: str) -> tuple:
    spec = _renal()["drugs"][drug]
    schema = load_schema()
    return tuple((parse_condition({k: c[k] for k in ("fact", "op", "value")}, schema=schema,
                                  where=f"{RENAL_FILE}: {drug}"), c["label"]) for c in spec["criteria"])


def renal_dose(drug: str, *, egfr: float | None = None, crcl: float | None = None,
               facts: Mapping[str, Any] | None = None) -> RenalDose:
    """The label's renal dose rule for `drug`; "not decided" (with what is missing) when the measure is unknown.

    Raises DataError for a drug without a renal rule here.
    """
    drugs = _renal()["drugs"]
    key = str(drug).strip().lower()
    if key not in drugs:
        raise DataError(f"no renal dose rule for drug {drug!r}; precimed covers {renal_drugs()}", column="drug")
    spec = drugs[key]
    measure = spec["measure"]
    if measure == "criteria":
        facts = facts or {}
        met, unknown, labels = 0, [], []
        for cond, label in _criteria(key):
            value, missing = evaluate_condition(cond, facts)
            if value:
                met += 1
                labels.append(label)
            elif value is None:
                unknown.extend(missing)
        need = spec["at_least"]
        details = {"criteria_met": labels, "at_least": need}
        if met >= need:
            return RenalDose(key, "decided", spec["met"]["action"], spec["met"]["text"], measure, float(met),
                             spec["source"], details=details)
        if met + len(unknown) < need:
            return RenalDose(key, "decided", spec["not_met"]["action"], spec["not_met"]["text"], measure, float(met),
                             spec["source"], tuple(unknown), details)
        return RenalDose(key, "not decided", None, f"cannot decide the dose: {met} of {need} reduction criteria met, "
                         f"missing {sorted(unknown)}", measure, float(met), spec["source"], tuple(sorted(unknown)),
                         details)
    x = egfr if measure == "egfr" else crcl
    if x is None:
        need = "eGFR (creatinine, age, sex)" if measure == "egfr" else "CrCl (creatinine, age, sex, weight_kg)"
        return RenalDose(key, "not decided", None, f"cannot decide the renal dose: {need} not available", measure,
                         None, spec["source"], (measure,))
    for band in spec["bands"]:
        if _band_matches(band, x):
            return RenalDose(key, "decided", band["action"], band["text"], measure, x, spec["source"])
    return RenalDose(key, "not decided", None, f"{measure} {x:.1f} falls in no band of the rule", measure, x,
                     spec["source"])


# ----- warfarin for a patient --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DoseSuggestion:
    drug: str
    status: str  # computed | not computed
    text: str
    method: str
    source: str
    value: float | None = None
    unit: str | None = None
    range: tuple[float, float] | None = None
    missing: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"drug": self.drug, "status": self.status, "text": self.text, "method": self.method,
               "source": self.source}
        if self.value is not None:
            out["value"] = round(self.value, 2)
            out["unit"] = self.unit
        if self.range is not None:
            out["range"] = [round(self.range[0], 2), round(self.range[1], 2)]
        if self.missing:
            out["missing"] = list(self.missing)
        if self.details:
            out["details"] = dict(self.details)
        return out


def warfarin_suggestion(facts: Mapping[str, Any], cyp2c9: str | None = None, vkorc1: str | None = None,
                        *, cyp2c9_determinate: bool = True) -> list[DoseSuggestion]:
    """IWPC starting-dose suggestions (pharmacogenetic when a genotype is known, and clinical) from plan facts.

    Needs age, height_cm, weight_kg and the medication list (amiodarone and enzyme-inducer status). CYP2C9 alleles
    outside IWPC (*5, *6, *8, *11) are computed as *1 and then reduced by 15-30% (CPIC 2017); other alleles are
    treated as unknown genotype, with a note.
    """
    t = _iwpc()
    src = " ".join(t["source"].split())
    required = ["age", "height_cm", "weight_kg", "medications"]
    missing = tuple(k for k in required if facts.get(k) is None)
    if missing:
        why = ", ".join(missing)
        return [DoseSuggestion("warfarin", "not computed", f"IWPC dose not computed: missing {why}", "IWPC", src,
                               missing=missing)]
    meds = set(facts["medications"])
    inducer = bool(meds & set(t["enzyme_inducers"]))
    amio = "amiodarone" in meds
    notes: list[str] = []
    adjust = None
    g = cyp2c9
    if g is not None:
        alleles = g.split("/")
        reduce = [a for a in alleles if a in t["cpic_adjustments"]["reduce_alleles"]]
        mapped = ["*1" if a in reduce else a for a in alleles]
        if reduce:
            adjust = t["cpic_adjustments"]
            notes.append(f"CYP2C9 {g}: {reduce} not in IWPC; computed as {'/'.join(sorted(mapped))}, then reduced "
                         "15-30% (CPIC 2017)")
        g = "/".join(sorted(mapped))
        if g not in IWPC_CYP2C9:
            notes.append(f"CYP2C9 {cyp2c9} is outside the IWPC categories: the 'unknown genotype' term is used")
            g = None
    elif not cyp2c9_determinate:
        notes.append("CYP2C9 indeterminate: the 'unknown genotype' term is used")
    out = []
    kwargs = dict(age=facts["age"], height_cm=facts["height_cm"], weight_kg=facts["weight_kg"],
                  race=facts.get("race"), enzyme_inducer=inducer, amiodarone=amio)
    try:
        algos = ["pharmacogenetic", "clinical"] if (g or vkorc1) else ["clinical"]
        for algo in algos:
            d = iwpc_weekly_dose(**kwargs, cyp2c9=g, vkorc1=vkorc1, algorithm=algo) if algo == "pharmacogenetic" \
                else iwpc_weekly_dose(**kwargs, algorithm=algo)
            rng = None
            text = f"{d.weekly_mg:.1f} mg/week (about {d.daily_mg:.1f} mg/day) by the IWPC {algo} algorithm"
            if amio:
                text += " (includes the amiodarone term: do not reduce again for the amiodarone interaction)"
            if inducer:
                text += " (includes the enzyme-inducer term)"
            if adjust is not None and algo == "pharmacogenetic":
                lo, hi = adjust["reduce_fraction"]
                rng = (d.weekly_mg * (1 - hi), d.weekly_mg * (1 - lo))
                text += f"; reduced 15-30% for CYP2C9 {cyp2c9}: {rng[0]:.1f}-{rng[1]:.1f} mg/week"
            out.append(DoseSuggestion("warfarin", "computed", text + "; adjust by INR.", f"IWPC {algo}",
                                      src if adjust is None or algo == "clinical" else f"{src}; {adjust['source']}",
                                      d.weekly_mg, "mg/week", rng,
                                      details={**d.to_dict(), "notes": list(d.notes) + notes}))
    except (DataError, ValueRangeError) as exc:
        out.append(DoseSuggestion("warfarin", "not computed", f"IWPC dose not computed: {exc}", "IWPC", src,
                                  missing=(exc.column,) if exc.column else ()))
    return out
