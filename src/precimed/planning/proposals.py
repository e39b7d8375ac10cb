"""A plan's proposals: every source of advice becomes a :class:`~precimed.planning.conflicts.Proposal` about a drug.

The sources are the fired rules, CPIC recommendations, drug interactions, allergies, drug-condition
contraindications and renal dose rules, over the drugs the plan is about (:func:`drugs_in_scope`). Each function
appends to one shared list, because the order of proposals is part of the result: conflict resolution breaks
ties by it. :mod:`precimed.planning.plan` calls these in a fixed order and resolves the list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from precimed.planning import dosing, pgx
from precimed.planning.conflicts import Proposal
from precimed.planning.drugs import DrugVocabulary
from precimed.planning.factschema import Issue
from precimed.planning.interactions import (
    AllergyHit,
    ContraindicationHit,
    InteractionHit,
    check_allergies,
    check_contraindications,
    check_interactions,
)
from precimed.planning.rulebook import Action, Evaluation


# ----- the drugs in scope ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """The drugs this plan is about: current, planned, the options' and those named by fired rules."""

    relevant: list[str]  # drugs and classes, in first-seen order
    concrete: list[str]  # the relevant names that are drugs (not classes)
    expanded: set[str]  # every drug the relevant names cover


@dataclass(frozen=True)
class SafetyFindings:
    """What the safety checks found, kept to report each hit with the status its proposal ended with."""

    interactions: list[InteractionHit]
    allergies: list[AllergyHit]
    contraindications: list[ContraindicationHit]
    undecided: list[tuple[str, str, list[str]]]  # contraindication checks missing facts: (id, drug, missing)


def drugs_in_scope(clean: Mapping[str, Any], ranked: list[dict[str, Any]], evaluation: Evaluation,
                   vocab: DrugVocabulary) -> Scope:
    """Collect the drugs to check, so that interactions, allergies, CPIC and renal rules cover what the patient
    takes, what is planned, what an option would give and what a rule recommends (a drug it avoids is not added)."""
    relevant: list[str] = []
    for d in [*clean.get("medications", []), *clean.get("planned_drugs", []),
              *(d for o in ranked for d in o["drugs"] if vocab.normalize(d)),
              *(a.drug for o in evaluation.fired for a in o.rule.actions if a.type != "avoid")]:
        if d not in relevant:
            relevant.append(d)
    concrete = [d for d in relevant if vocab.normalize(d)]
    expanded = set().union(*(vocab.expand(d) for d in relevant)) if relevant else set()
    return Scope(relevant, concrete, expanded)


def rule_proposals(evaluation: Evaluation, vocab: DrugVocabulary) -> list[Proposal]:
    """One proposal per action of each fired rule; a class is expanded to its member drugs for conflict checks."""
    proposals = []
    for o in evaluation.fired:
        r = o.rule
        for a in r.actions:
            proposals.append(Proposal("rule", r.id, a, r.recommend, r.strength, r.priority, r.source,
                                      frozenset(vocab.expand(a.drug))))
    return proposals


def pgx_proposals(scope: Scope, results: Mapping[str, pgx.GeneResult], vocab: DrugVocabulary,
                  proposals: list[Proposal], issues: list[Issue]) -> list[pgx.PgxRecommendation]:
    """CPIC recommendations for the drugs in scope, each actionable one added to `proposals`.

    Returns every recommendation (also "use as labelled" and "no recommendation") for the plan to show; an
    indeterminate result is an alert, since the clinician should know genotype guidance was not possible.
    """
    pgx_recs = []
    for drug in pgx.pgx_drugs():
        if drug not in scope.expanded:
            continue
        rec = pgx.recommend(drug, results)
        if rec is None:
            continue
        pgx_recs.append(rec)
        if rec.action is None:
            issues.append(Issue("warning", "pgx-indeterminate", f"{drug}: {rec.text}", drug))
            continue
        if rec.action == "prefer_alternative":
            act = Action("prefer_alternative", rec.alternative or "an alternative", instead_of=drug)
            targets = frozenset(vocab.expand(rec.alternative or ""))
        else:
            act = Action(rec.action, drug)
            targets = frozenset({drug})
        proposals.append(Proposal("pgx", f"cpic-{drug}", act, rec.text, rec.strength or "moderate", 0, rec.guideline,
                                  targets))
    return pgx_recs


def _strength_for(severity: str) -> str:
    """The recommendation strength of a safety finding of this severity."""
    return {"contraindicated": "strong", "major": "strong", "moderate": "moderate", "caution": "moderate"}[severity]


def safety_proposals(scope: Scope, clean: Mapping[str, Any], vocab: DrugVocabulary, proposals: list[Proposal],
                     issues: list[Issue]) -> SafetyFindings:
    """Interactions, allergies and drug-condition contraindications, each hit added to `proposals`.

    Allergies and contraindications get priority 100: a patient-specific reason to avoid a drug should win over a
    guideline preference of the same kind. An allergy term that names no known drug or class is an alert.
    """
    hits, _ = check_interactions(scope.concrete, on_unknown="report")
    for h in hits:
        a = h.action
        proposals.append(Proposal("interaction", h.interaction.id, a, h.interaction.management,
                                  _strength_for(h.interaction.severity), 0, h.interaction.source, frozenset({a.drug})))
    allergy_hits, unknown_allergies = check_allergies(scope.relevant, clean.get("allergies", []))
    for u in unknown_allergies:
        issues.append(Issue("warning", "unknown-allergy", f"allergy {u!r} is not a known drug or class: not checked",
                            "allergies"))
    for ah in allergy_hits:
        proposals.append(Proposal("allergy", f"allergy-{ah.drug}", Action("avoid", ah.drug), ah.to_dict()["text"],
                                  "strong", 100, ah.to_dict()["source"], ah.targets))
    ci_hits, ci_undecided = check_contraindications(scope.relevant, clean)
    for c in ci_hits:
        proposals.append(Proposal("contraindication", c.entry.id, c.action, c.entry.text,
                                  _strength_for(c.entry.severity), 100, c.entry.source,
                                  frozenset(vocab.expand(c.drug) & c.entry.drugs)))
    return SafetyFindings(hits, allergy_hits, ci_hits, ci_undecided)


def dose_proposals(scope: Scope, clean: Mapping[str, Any], results: Mapping[str, pgx.GeneResult],
                   proposals: list[Proposal]) -> tuple[list[dict[str, Any]], list[dosing.RenalDose]]:
    """Renal dose rules and IWPC warfarin doses for the drugs in scope: (dose lines, renal results).

    A renal rule that decides "avoid" or "adjust" becomes a proposal (priority 50), so it takes part in conflict
    resolution; the warfarin dose uses CYP2C9 and VKORC1 only when their results are determinate.
    """
    doses: list[dict[str, Any]] = []
    renal_lines = []
    for drug in dosing.renal_drugs():
        if drug not in scope.concrete:
            continue
        rd = dosing.renal_dose(drug, egfr=clean.get("egfr"), crcl=clean.get("crcl"), facts=clean)
        renal_lines.append(rd)
        doses.append({"kind": "renal", **rd.to_dict()})
        if rd.status == "decided" and rd.action in ("avoid", "adjust_dose"):
            proposals.append(Proposal("renal", f"renal-{drug}", Action(rd.action, drug), rd.text, "strong", 50,
                                      rd.source, frozenset({drug})))
    if "warfarin" in scope.concrete:
        c9 = results.get("CYP2C9")
        vk = results.get("VKORC1")
        c9_dip = c9.diplotype if c9 is not None and c9.determinate and " or " not in (c9.diplotype or "") else None
        for s in dosing.warfarin_suggestion(clean, c9_dip, vk.diplotype if vk is not None and vk.determinate else None,
                                            cyp2c9_determinate=c9 is None or c9.determinate):
            doses.append({"kind": "algorithm", **s.to_dict()})
    return doses, renal_lines
