"""One patient's treatment plan: facts + model outputs + rules + pharmacogenomics + dosing + safety checks, every
line with its source, as a JSON-ready dict (``make_plan``). Renderers (FHIR CarePlan, Markdown, HTML) live in
:mod:`precimed.planning.render`, the patient file and input checks in :mod:`precimed.planning.inputs`
(``load_patient`` is re-exported here for existing callers).

Bad input does not sink the plan: an invalid or contradictory fact, an unknown drug, gene or allergy, an
unreadable genotype or a missing weight becomes an alert or a "not evaluated / not computed: missing X" line, and
everything that can still be decided is.

``make_plan`` runs named steps in a fixed order: collect the facts, apply the genotypes, check the model outputs,
apply the rules, gather proposals (rules, pharmacogenomics, safety checks, dosing: :mod:`precimed.planning.proposals`),
resolve conflicts, then assemble the plan's sections and provenance. The order is part of the output: alerts of
one level keep the order the steps raised them, and conflicts between equal proposals are broken by the order
they were proposed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from precimed import __version__
from precimed.errors import DataError, ValueRangeError
from precimed.planning import dosing, interactions, pgx
from precimed.planning.conflicts import Decision, Proposal, resolve
from precimed.planning.drugs import DrugVocabulary, drug_vocabulary
from precimed.planning.factschema import FactSchema, Issue, apply_constraints, validate_facts
from precimed.planning.inputs import Patient, load_patient, normalize_options, normalize_predictions
from precimed.planning.proposals import (
    SafetyFindings,
    dose_proposals,
    drugs_in_scope,
    pgx_proposals,
    rule_proposals,
    safety_proposals,
)
from precimed.planning.rulebook import STRENGTHS, Evaluation, RuleBook, evaluate_rules, load_rules

PLAN_FORMAT = "precimed.plan/1"
#: Facts shown in ``facts_used`` besides those the rules name: the inputs of calculations and safety checks.
_ALWAYS_USED = {"age", "sex", "weight_kg", "height_cm", "race", "creatinine_mg_dl", "egfr", "crcl", "medications",
                "planned_drugs", "allergies"}
_ALERT_ORDER = {"error": 0, "warning": 1, "info": 2}

__all__ = ["PLAN_FORMAT", "Patient", "load_patient", "make_plan", "normalize_options", "normalize_predictions"]


def make_plan(facts: Mapping[str, Any], predictions: Mapping[str, Any] | None, *, rules: RuleBook | Path | str,
              genotypes: Mapping[str, Any] | Path | str | None = None, options: Mapping[str, Any] | None = None,
              provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The plan as a JSON-ready dict (see the module doc and ``examples/patients``).

    facts: the patient's facts (names from the fact schema; ``medications`` / ``planned_drugs`` / ``allergies``
    as lists). predictions: model outputs ``{name: value | {value, ci_low, ci_high}}``. rules: a loaded RuleBook
    or a rule file / directory. genotypes: ``{gene: diplotype}``, GeneResults, :class:`~precimed.planning.pgx.
    Genotypes` (``pgx.load_genotypes``: a VCF read with its options) or a VCF path; a malformed call is an alert.
    options: treatment options ``{option: {benefit, ci_low, ci_high[, drugs]}}`` ranked by predicted benefit.
    provenance: what the caller knows (bundle id and version, …); the plan adds rule-set, CPIC and knowledge-table
    versions, never a path.
    """
    issues: list[Issue] = []
    book = rules if isinstance(rules, RuleBook) else load_rules(rules)
    _check_arguments(facts, provenance)
    vocab = drug_vocabulary()
    clean, reasons, derived = _collect_facts(facts, book.schema, vocab, issues)
    read = _genotype_results(genotypes, issues)
    results = _apply_genotypes(read.results, clean, reasons, issues)
    preds, ranked = _apply_model_outputs(predictions, options, book.schema, issues)
    evaluation = evaluate_rules(book, clean, preds, missing_reasons=reasons)
    scope = drugs_in_scope(clean, ranked, evaluation, vocab)

    proposals = rule_proposals(evaluation, vocab)
    pgx_recs = pgx_proposals(scope, results, vocab, proposals, issues)
    safety = safety_proposals(scope, clean, vocab, proposals, issues)
    doses, renal_lines = dose_proposals(scope, clean, results, proposals)
    verdicts = _Verdicts.of(proposals)

    recommendations = _recommendations(evaluation, pgx_recs, verdicts)
    _rank_options(ranked, verdicts.decisions, vocab, issues)
    _review_alerts(verdicts, issues)
    patient_id = facts.get("patient_id")
    return {
        "format": PLAN_FORMAT,
        "patient_id": None if patient_id is None else str(patient_id),
        "facts_used": _facts_used(book, clean),
        "facts_set_aside": dict(sorted(reasons.items())) if reasons else {},
        "derived": derived,
        "predictions": preds,
        "options": ranked,
        "recommendations": recommendations,
        "pharmacogenomics": {"genes": {g: r.to_dict() for g, r in sorted(results.items())},
                             **({"vcf": dict(read.vcf)} if read.vcf else {})},
        "dose_suggestions": doses,
        "contraindications": _contraindications(safety, renal_lines, verdicts),
        "interactions": [{**h.to_dict(), "status": verdicts.status(p)}
                         for h, p in zip(safety.interactions, verdicts.of_origin("interaction"), strict=True)],
        "conflicts": verdicts.conflicts,
        "rulesets": list(evaluation.rulesets),
        "alerts": sorted((i.to_dict() for i in issues), key=lambda a: _ALERT_ORDER[a["level"]]),
        "not_evaluated": _not_evaluated(evaluation, safety, renal_lines, pgx_recs, results),
        "rules_not_fired": [{"rule_id": o.rule.id, "ruleset": o.rule.ruleset,
                             **({"decided_without": list(o.missing)} if o.missing else {})}
                            for o in evaluation.not_fired],
        "provenance": _provenance(provenance, book),
    }


# ----- inputs and facts --------------------------------------------------------------------------------------------
def _check_arguments(facts: Any, provenance: Any) -> None:
    """Refuse arguments of the wrong kind before any work: a plan can work around bad values, not a bad call."""
    if not isinstance(facts, Mapping):
        raise DataError(f"facts must be a mapping of name to value, got {type(facts).__name__}", column="facts")
    if not isinstance(provenance, Mapping):
        raise DataError("provenance must be a mapping (e.g. {'bundle': {...}})", column="provenance")


def _collect_facts(facts: Mapping[str, Any], schema: FactSchema, vocab: DrugVocabulary, issues: list[Issue]
                   ) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The usable facts, why others are missing, and the values calculated from them: (clean, reasons, derived).

    Facts are checked against the schema, drug lists normalized (an unknown drug is reported, not dropped
    silently), contradictory facts set aside, and kidney function derived, so every later step sees one
    consistent set and each missing fact carries its reason into "not evaluated" lines.
    """
    clean, fact_issues, reasons = validate_facts({k: v for k, v in facts.items() if k != "patient_id"}, schema)
    issues += fact_issues
    for key in ("medications", "planned_drugs"):
        if key in clean:
            known, unknown = vocab.split(clean[key])
            clean[key] = known
            issues += [_unknown_drug_issue(u, key, vocab) for u in unknown]
    undeclared = sorted(k for k in clean if k not in schema.facts)
    if undeclared:
        issues.append(Issue("info", "undeclared-facts", f"facts not in the schema (kept for display, no rule uses "
                            f"them): {undeclared}"))
    constraint_issues, constraint_reasons = apply_constraints(clean, schema)
    issues += constraint_issues
    reasons.update(constraint_reasons)
    derived = _derive_kidney(clean, reasons, issues)
    return clean, reasons, derived


def _unknown_drug_issue(name: str, where: str, vocab: DrugVocabulary) -> Issue:
    """A warning for a drug name the vocabulary does not know, with the closest known name."""
    close = vocab.suggest(name)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return Issue("warning", "unknown-drug", f"{where}: unknown drug {name!r}{hint}; it is not checked for "
                 "interactions, allergies, renal dosing or pharmacogenomics", where)


def _derive_kidney(facts: dict[str, Any], reasons: dict[str, str], issues: list[Issue]) -> dict[str, Any]:
    """Creatinine in mg/dL, eGFR (CKD-EPI 2021) and CrCl (Cockcroft-Gault) added to `facts` when not given.

    Renal rules and dose bands need these; a value that cannot be computed gets a reason instead, and two
    creatinine values that disagree are both set aside rather than one being trusted.
    """
    derived: dict[str, Any] = {}
    factor, egfr_source, crcl_source = _kidney_constants()
    mg, um = facts.get("creatinine_mg_dl"), facts.get("creatinine_umol_l")
    if mg is not None and um is not None:
        if abs(mg - um / factor) > 0.05 * mg:
            issues.append(Issue("error", "contradictory-facts", f"creatinine {mg} mg/dL and {um} umol/L disagree "
                                f"({um / factor:.2f} mg/dL); both set aside", "creatinine_mg_dl"))
            for k in ("creatinine_mg_dl", "creatinine_umol_l"):
                facts.pop(k)
                reasons[k] = "contradictory creatinine values"
            mg = None
    elif um is not None:
        mg = facts["creatinine_mg_dl"] = round(um / factor, 3)
        derived["creatinine_mg_dl"] = {"value": mg, "method": f"creatinine_umol_l / {factor}"}
    for name, fn, needs, label, source in (
            ("egfr", dosing.egfr_ckd_epi_2021, ("creatinine_mg_dl", "age", "sex"), "CKD-EPI 2021 (race-free)",
             egfr_source),
            ("crcl", dosing.crcl_cockcroft_gault, ("creatinine_mg_dl", "age", "sex", "weight_kg"),
             "Cockcroft-Gault (actual body weight)", crcl_source)):
        if facts.get(name) is not None:
            derived[name] = {"value": facts[name], "method": "given"}
            continue
        missing = [k for k in needs if facts.get(k) is None]
        if missing:
            reasons[name] = "not computed: missing " + ", ".join(missing)
            continue
        kwargs = {"age": facts["age"], "sex": facts["sex"]}
        if name == "crcl":
            kwargs["weight_kg"] = facts["weight_kg"]
        try:
            value = fn(facts["creatinine_mg_dl"], **kwargs)
        except (DataError, ValueRangeError) as exc:
            reasons[name] = f"not computed: {exc}"
            issues.append(Issue("warning", "calculation", f"{name} not computed: {exc}", name))
            continue
        facts[name] = round(value, 1)
        derived[name] = {"value": facts[name], "method": label, "inputs": {k: facts[k] for k in needs},
                         "source": source}
    return derived


@cache
def _kidney_constants() -> tuple[float, str, str]:
    """The creatinine unit factor and the eGFR and CrCl equations' sources, read once from the renal table."""
    table = dosing.renal_table()
    return (table["creatinine_umol_per_mg_dl"], table["ckd_epi_2021"]["source"],
            table["cockcroft_gault"]["source"])


# ----- genotypes and model outputs ---------------------------------------------------------------------------------
def _apply_genotypes(results: Mapping[str, pgx.GeneResult], clean: dict[str, Any], reasons: dict[str, str],
                     issues: list[Issue]) -> dict[str, pgx.GeneResult]:
    """Add the phenotype facts rules use (``CYP2D6_phenotype``, …) to `clean`.

    A given phenotype fact that disagrees with the genotype is set aside with the genotype's: neither is trusted.
    An indeterminate gene leaves its facts missing with the reason, so rules on it are "not evaluated".
    """
    results = dict(results)
    pgx_facts, pgx_reasons = pgx.facts_from_results(results)
    for k, v in pgx_facts.items():
        if k in clean and clean[k] != v:
            issues.append(Issue("error", "contradictory-facts", f"fact {k} = {clean[k]!r} disagrees with the genotype "
                                f"result {v!r}; both set aside", k))
            clean.pop(k)
            reasons[k] = "given value disagrees with the genotype"
        elif k not in reasons:
            clean[k] = v
    for k, why in pgx_reasons.items():
        if k not in clean:
            reasons.setdefault(k, why)
    return results


def _genotype_results(genotypes: Any, issues: list[Issue]) -> pgx.Genotypes:
    """Gene results from diplotype calls, GeneResults, loaded :class:`~precimed.planning.pgx.Genotypes` or a VCF
    path. A malformed call is an error alert naming the gene and the value (its gene Indeterminate), whichever way
    the calls arrived, so the command line, the Python API and the service give the same plan."""
    if genotypes is None:
        return pgx.Genotypes({})
    if isinstance(genotypes, str | Path):
        try:
            genotypes = pgx.load_genotypes(genotypes)
        except DataError as exc:  # the message names the file by its name only
            issues.append(Issue("error", "genotype", f"genotypes not read: {exc}", "genotypes"))
            return pgx.Genotypes({})
    if not isinstance(genotypes, Mapping):
        raise DataError(f"genotypes must be a mapping of gene to diplotype (or a VCF path), got "
                        f"{type(genotypes).__name__}", column="genotypes")
    if not isinstance(genotypes, pgx.Genotypes):
        genotypes = pgx.load_genotypes(None, genotypes)
    issues += [Issue("error", "genotype", p, "genotypes") for p in genotypes.problems]
    _assumption_alert(genotypes.vcf, issues)
    return genotypes


def _assumption_alert(vcf: Mapping[str, Any], issues: list[Issue]) -> None:
    """A warning naming each gene whose call rests on key positions absent from the VCF read as reference."""
    if vcf.get("absent") != "reference" or not vcf.get("absent_positions"):
        return
    genes = "; ".join(f"{g}: {', '.join(rs)}" for g, rs in sorted(vcf["absent_positions"].items()))
    issues.append(Issue("warning", "absent-read-as-reference", f"key positions absent from {vcf.get('file')} were "
                        f"assumed homozygous reference (absent=reference), for {genes}; confirm the file covers "
                        "them", "genotypes"))


def _apply_model_outputs(predictions: Mapping[str, Any] | None, options: Mapping[str, Any] | None,
                         schema: FactSchema, issues: list[Issue]) -> tuple[dict[str, dict[str, Any]],
                                                                            list[dict[str, Any]]]:
    """The model's predictions (checked, with intervals) for the rules, and the treatment options ranked by
    predicted benefit; invalid ones are dropped with an alert so no rule runs on a bad number."""
    preds, pred_issues = normalize_predictions(predictions, schema)
    issues += pred_issues
    ranked, option_issues = normalize_options(options)
    issues += option_issues
    return preds, ranked


# ----- conflicts ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Verdicts:
    """The proposals that carry an action, resolved against each other, and how each one ended."""

    decided: list[Proposal]
    decisions: list[Decision]
    conflicts: list[dict[str, Any]]
    by_proposal: dict[int, Decision]

    @classmethod
    def of(cls, proposals: list[Proposal]) -> _Verdicts:
        """Resolve conflicts between the actionable proposals (in the order they were proposed: it breaks ties)."""
        decided = [p for p in proposals if p.action is not None]
        decisions, conflicts = resolve(decided)
        return cls(decided, decisions, conflicts, {id(d.proposal): d for d in decisions})

    def of_origin(self, origin: str) -> list[Proposal]:
        return [p for p in self.decided if p.origin == origin]

    def status(self, p: Proposal) -> str:
        return self.by_proposal[id(p)].status

    def action_view(self, p: Proposal) -> dict[str, Any]:
        """The proposal's action with its status and, when it lost or was restricted, by whom and why."""
        d = self.by_proposal[id(p)]
        out = {**p.action.to_dict(), "status": d.status}  # type: ignore[union-attr]
        if d.overridden_by:
            out["overridden_by"] = d.overridden_by
        if d.reason:
            out["reason"] = d.reason
        if d.restricted_to:
            out["restricted_to"] = list(d.restricted_to)
        return out


# ----- the plan's sections -----------------------------------------------------------------------------------------
def _recommendations(evaluation: Evaluation, pgx_recs: list[pgx.PgxRecommendation], verdicts: _Verdicts
                     ) -> list[dict[str, Any]]:
    """Fired rules and CPIC recommendations with their actions' outcomes, active and strongest first."""
    recommendations = []
    for o in evaluation.fired:
        r = o.rule
        acts = [verdicts.action_view(p) for p in verdicts.decided if p.origin == "rule" and p.id == r.id]
        status = "active" if not acts or any(a["status"] == "active" for a in acts) else \
            "unresolved" if any(a["status"] == "unresolved" for a in acts) else "overridden"
        recommendations.append({"rule_id": r.id, "ruleset": r.ruleset, "version": r.version, "origin": "rule",
                                "text": r.recommend, "strength": r.strength, "priority": r.priority,
                                "source": r.source, "actions": acts, "status": status,
                                **({"missing_but_decided": list(o.missing)} if o.missing else {})})
    for rec in pgx_recs:
        p = next((p for p in verdicts.decided if p.origin == "pgx" and p.id == f"cpic-{rec.drug}"), None)
        acts = [verdicts.action_view(p)] if p is not None else []
        status = acts[0]["status"] if acts else ("information" if rec.action == "none" else "not_evaluated")
        recommendations.append({"rule_id": f"cpic-{rec.drug}", "ruleset": "CPIC", "origin": "pgx",
                                "version": ", ".join(f"{g} {v}" for g, v in rec.versions.items()),
                                "text": rec.text, "strength": rec.strength, "priority": 0, "source": rec.guideline,
                                "actions": acts, "status": status, "phenotypes": dict(rec.phenotypes),
                                "notes": list(rec.notes)})
    recommendations.sort(key=lambda x: (x["status"] != "active", -STRENGTHS.get(x["strength"] or "", 0),
                                        -x["priority"]))
    return recommendations


def _rank_options(ranked: list[dict[str, Any]], decisions: list[Decision], vocab: DrugVocabulary,
                  issues: list[Issue]) -> None:
    """Number the options and mark (in place) which proposals block or disfavour each, and whether its interval
    overlaps the best one's; alert when the best-predicted option is blocked, since that changes the choice."""
    avoided: dict[str, list[str]] = {}
    for d in decisions:
        if d.status in ("active", "unresolved") and d.proposal.action and d.proposal.action.type == "avoid":
            for t in d.proposal.targets:
                avoided.setdefault(t, []).append(d.proposal.label())
    disfavored: dict[str, list[str]] = {}
    for d in decisions:
        a = d.proposal.action
        if d.status == "active" and a is not None and a.type == "prefer_alternative" and a.instead_of:
            for t in vocab.expand(a.instead_of):
                disfavored.setdefault(t, []).append(d.proposal.label())
    for rank, o in enumerate(ranked, start=1):
        o["rank"] = rank
        members = set().union(*(vocab.expand(x) for x in o["drugs"])) if o["drugs"] else set()
        o["blocked_by"] = sorted({lab for m in members for lab in avoided.get(m, [])})
        o["disfavored_by"] = sorted({lab for m in members for lab in disfavored.get(m, [])})
    if ranked:
        best = ranked[0]
        for o in ranked:
            o["ci_overlaps_best"] = (None if None in (o["ci_low"], o["ci_high"], best["ci_low"], best["ci_high"])
                                     else o["ci_low"] <= best["ci_high"] and best["ci_low"] <= o["ci_high"])
        allowed = [o for o in ranked if not o["blocked_by"]]
        if allowed and allowed[0] is not best:
            issues.append(Issue("warning", "best-option-blocked", f"the option with the highest predicted benefit "
                                f"({best['option']}) is blocked by {best['blocked_by']}; best allowed option: "
                                f"{allowed[0]['option']}", best["option"]))


def _contraindications(safety: SafetyFindings, renal_lines: list[dosing.RenalDose], verdicts: _Verdicts
                       ) -> list[dict[str, Any]]:
    """Allergies, drug-condition contraindications and renal "avoid" rules, each with its proposal's status."""
    out = [{"kind": "allergy", **h.to_dict(), "status": verdicts.status(p)}
           for h, p in zip(safety.allergies, verdicts.of_origin("allergy"), strict=True)]
    out += [{"kind": "condition", **c.to_dict(), "status": verdicts.status(p)}
            for c, p in zip(safety.contraindications, verdicts.of_origin("contraindication"), strict=True)]
    out += [{"kind": "renal", "id": f"renal-{r.drug}", "drug": r.drug, "severity": "contraindicated",
             "text": r.text, "source": r.source} for r in renal_lines if r.action == "avoid"]
    return out


def _review_alerts(verdicts: _Verdicts, issues: list[Issue]) -> None:
    """Alerts a clinician must act on after resolution: several dose changes for one drug (applying each in turn
    would over-reduce) and contradictions left unresolved at equal rank."""
    adjust: dict[str, list[str]] = {}
    for d in verdicts.decisions:
        if d.status == "active" and d.proposal.action and d.proposal.action.type == "adjust_dose":
            for t in d.proposal.targets:
                adjust.setdefault(t, []).append(d.proposal.label())
    for drug, labels in adjust.items():
        if len(labels) > 1:
            issues.append(Issue("warning", "several-dose-adjustments", f"{drug}: {len(labels)} dose adjustments apply "
                                f"({'; '.join(labels)}); review them together and apply the most restrictive, "
                                "but do not reduce twice for a drug a dose algorithm already includes (IWPC: "
                                "amiodarone, enzyme inducers)", drug))
    for c in verdicts.conflicts:
        if c.get("winner") is None:
            issues.append(Issue("warning", "unresolved-conflict", f"unresolved conflict on {c['drugs']}: "
                                f"{c['between']}; the clinician decides"))


def _not_evaluated(evaluation: Evaluation, safety: SafetyFindings, renal_lines: list[dosing.RenalDose],
                   pgx_recs: list[pgx.PgxRecommendation], results: Mapping[str, pgx.GeneResult]
                   ) -> list[dict[str, Any]]:
    """Everything that could not be decided for lack of facts (rules, contraindication checks, renal rules, CPIC
    recommendations whose genes are Indeterminate), with what is missing: unknown is shown as unknown, never as
    "does not apply"."""
    out = [o.to_dict() for o in evaluation.not_evaluated]
    for rec in pgx_recs:
        if rec.action is None:
            genes = [g for g in rec.genes if g in results and not results[g].determinate]
            out.append({"rule_id": f"cpic-{rec.drug}", "ruleset": "CPIC", "status": "not_evaluated",
                        "missing": [f"{g}_phenotype" for g in genes],
                        "why": "; ".join(f"{g} indeterminate: " + "; ".join(results[g].notes) for g in genes)
                        or rec.text})
    for cid, drug, missing in safety.undecided:
        out.append({"rule_id": cid, "ruleset": "contraindications", "status": "not_evaluated",
                    "missing": missing, "why": f"{drug}: missing " + ", ".join(missing)})
    for r in renal_lines:
        if r.status != "decided":
            out.append({"rule_id": f"renal-{r.drug}", "ruleset": "renal dosing", "status": "not_evaluated",
                        "missing": list(r.missing), "why": r.text})
    return out


def _facts_used(book: RuleBook, clean: Mapping[str, Any]) -> dict[str, Any]:
    """The facts a rule or a calculation could use, sorted by name (facts kept only for display are left out)."""
    used_names = {n for rule in book.rules for n in rule.facts} | _ALWAYS_USED
    return {k: clean[k] for k in sorted(clean) if k in used_names}


# ----- provenance --------------------------------------------------------------------------------------------------
def _provenance(provenance: Mapping[str, Any], book: RuleBook) -> dict[str, Any]:
    """The caller's provenance plus precimed's version and every rule set, schema, CPIC and knowledge-table version
    the plan used, so the plan can be reproduced and audited."""
    prov = dict(provenance)
    prov.update({
        "precimed_version": __version__,
        "rulesets": book.provenance(),
        "fact_schema": list(book.schema.versions),
        "cpic": pgx.cpic_versions(),
        "knowledge": dict(_knowledge_versions()),
    })
    return prov


@cache
def _knowledge_versions() -> dict[str, str]:
    """The versions of the packaged knowledge tables (read once; the plan gets a copy)."""
    return {"drugs": drug_vocabulary().version, "interactions": interactions.interaction_table()[1],
            "contraindications": interactions.contraindication_table()[1], "iwpc": dosing.iwpc_table()["version"],
            "renal": dosing.renal_table()["version"]}
