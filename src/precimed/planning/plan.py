"""One patient's treatment plan: facts + model outputs + rules + pharmacogenomics + dosing + safety checks, every
line with its source; as JSON (``make_plan``), a FHIR R4 CarePlan (``to_fhir_careplan``), Markdown and HTML.

Bad input does not sink the plan: an invalid or contradictory fact, an unknown drug, gene or allergy, an
unreadable genotype or a missing weight becomes an alert or a "not evaluated / not computed: missing X" line, and
everything that can still be decided is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from precimed import __version__
from precimed.errors import DataError, ValueRangeError
from precimed.planning import dosing, interactions, pgx
from precimed.planning.rules import (
    STRENGTHS,
    Action,
    FactSchema,
    Issue,
    Proposal,
    RuleBook,
    apply_constraints,
    evaluate_rules,
    load_rules,
    resolve,
    validate_facts,
)

PLAN_FORMAT = "precimed.plan/1"
PATIENT_KEYS = {"patient_id", "facts", "genotypes", "predictions", "options", "model_input", "description"}
TEMPLATES = Path(__file__).resolve().parent / "templates"


# ----- the patient file --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Patient:
    """A patient JSON file: facts for the rules, the bundle's input row, genotype calls, optional predictions and
    options (e.g. from the treatment-effect learners)."""

    patient_id: str | None
    facts: dict[str, Any]
    model_input: dict[str, Any] = field(default_factory=dict)
    genotypes: dict[str, str] = field(default_factory=dict)
    predictions: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def load_patient(path: Path | str) -> Patient:
    """Read a patient file (see ``examples/patients/``). Unknown top-level keys are refused by name."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(f"{path}: cannot read the patient file ({exc})", column="patient") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                        column="patient") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a patient file is a JSON object with 'facts'", column="patient")
    unknown = set(data) - PATIENT_KEYS
    if unknown:
        raise DataError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(PATIENT_KEYS)}",
                        column=sorted(unknown)[0])
    for key in ("facts", "model_input", "genotypes", "predictions", "options"):
        if not isinstance(data.get(key, {}), dict):
            raise DataError(f"{path}: '{key}' must be a JSON object", column=key)
    facts = dict(data.get("facts", {}))
    pid = data.get("patient_id", facts.get("patient_id"))
    if pid is not None:
        facts.setdefault("patient_id", str(pid))
    return Patient(None if pid is None else str(pid), facts, dict(data.get("model_input", {})),
                   dict(data.get("genotypes", {})), dict(data.get("predictions", {})), dict(data.get("options", {})),
                   str(data.get("description", "")))


# ----- predictions and options -------------------------------------------------------------------------------------
def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def normalize_predictions(predictions: Mapping[str, Any] | None, schema: FactSchema
                          ) -> tuple[dict[str, dict[str, Any]], list[Issue]]:
    """``{name: value}`` or ``{name: {value, ci_low, ci_high, ...}}`` → ``{name: {value, ci_low, ci_high}}``.

    A value that is not a finite number, a CI that does not contain the value, or a value outside the declared
    range is dropped with an error issue; an undeclared name is kept (shown, but no rule can use it).
    """
    out: dict[str, dict[str, Any]] = {}
    issues: list[Issue] = []
    if predictions is None:
        return out, issues
    if not isinstance(predictions, Mapping):
        raise DataError(f"predictions must be a mapping of name to value, got {type(predictions).__name__}",
                        column="predictions")
    for name, raw in predictions.items():
        entry = dict(raw) if isinstance(raw, Mapping) else {"value": raw}
        value, lo, hi = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
        if not _finite(value) or any(b is not None and not _finite(b) for b in (lo, hi)):
            issues.append(Issue("error", "invalid-prediction", f"prediction {name}: value and CI must be finite "
                                f"numbers, got {raw!r}; not used", name))
            continue
        if (lo is not None and lo > value + 1e-12) or (hi is not None and hi < value - 1e-12):
            issues.append(Issue("error", "invalid-prediction", f"prediction {name}: the CI [{lo}, {hi}] does not "
                                f"contain the value {value}; not used", name))
            continue
        spec = schema.predictions.get(name)
        if spec is not None and spec.check(value):
            issues.append(Issue("error", "invalid-prediction", f"prediction {name} {spec.check(value)}; not used",
                                name))
            continue
        item = {"value": float(value), "ci_low": None if lo is None else float(lo),
                "ci_high": None if hi is None else float(hi), "declared": spec is not None}
        for k in ("unit", "horizon", "model", "description", "level"):
            if k in entry:
                item[k] = entry[k]
        if spec is not None and spec.description and "description" not in item:
            item["description"] = spec.description
        if spec is None:
            issues.append(Issue("info", "undeclared-prediction", f"prediction {name} is not declared in the fact "
                                "schema: shown, but no rule uses it", name))
        out[str(name)] = item
    return out, issues


def _option_drugs(name: str, spec: Mapping[str, Any]) -> list[str]:
    vocab = interactions.drug_vocabulary()
    if "drugs" in spec:
        return [vocab.normalize(d) or str(d) for d in spec["drugs"]]
    d = vocab.normalize(name)
    return [d] if d else []


def normalize_options(options: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], list[Issue]]:
    """``{option: {benefit, ci_low, ci_high[, drugs, unit, description]}}`` → a list sorted by benefit, best first."""
    out, issues = [], []
    for name, spec in (options or {}).items():
        if not isinstance(spec, Mapping) or not _finite(spec.get("benefit")):
            issues.append(Issue("error", "invalid-option", f"option {name!r} needs a numeric 'benefit' (and ci_low, "
                                f"ci_high), got {spec!r}; not ranked", str(name)))
            continue
        lo, hi = spec.get("ci_low"), spec.get("ci_high")
        if (lo is not None and (not _finite(lo) or lo > spec["benefit"])) or \
                (hi is not None and (not _finite(hi) or hi < spec["benefit"])):
            issues.append(Issue("error", "invalid-option", f"option {name!r}: CI [{lo}, {hi}] does not contain the "
                                f"benefit {spec['benefit']}; not ranked", str(name)))
            continue
        unknown = [d for d in spec.get("drugs", []) if interactions.drug_vocabulary().normalize(d) is None]
        for d in unknown:
            issues.append(Issue("warning", "unknown-drug", f"option {name!r} names unknown drug {d!r}: not checked",
                                str(name)))
        out.append({"option": str(name), "benefit": float(spec["benefit"]),
                    "ci_low": None if lo is None else float(lo), "ci_high": None if hi is None else float(hi),
                    "drugs": _option_drugs(str(name), spec), "unit": spec.get("unit"),
                    "description": spec.get("description")})
    out.sort(key=lambda o: -o["benefit"])
    return out, issues


# ----- the plan ----------------------------------------------------------------------------------------------------
def _unknown_drug_issue(name: str, where: str) -> Issue:
    close = interactions.drug_vocabulary().suggest(name)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return Issue("warning", "unknown-drug", f"{where}: unknown drug {name!r}{hint}; it is not checked for "
                 "interactions, allergies, renal dosing or pharmacogenomics", where)


def _derive_kidney(facts: dict[str, Any], reasons: dict[str, str], issues: list[Issue]) -> dict[str, Any]:
    derived: dict[str, Any] = {}
    mg, um = facts.get("creatinine_mg_dl"), facts.get("creatinine_umol_l")
    factor = dosing.renal_table()["creatinine_umol_per_mg_dl"]
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
    src = dosing.renal_table()
    for name, fn, needs, label, source in (
            ("egfr", dosing.egfr_ckd_epi_2021, ("creatinine_mg_dl", "age", "sex"), "CKD-EPI 2021 (race-free)",
             src["ckd_epi_2021"]["source"]),
            ("crcl", dosing.crcl_cockcroft_gault, ("creatinine_mg_dl", "age", "sex", "weight_kg"),
             "Cockcroft-Gault (actual body weight)", src["cockcroft_gault"]["source"])):
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


def _genotype_results(genotypes: Any, issues: list[Issue]) -> dict[str, pgx.GeneResult]:
    if genotypes is None:
        return {}
    if isinstance(genotypes, str | Path):
        try:
            return pgx.genotypes_from_vcf(genotypes)
        except DataError as exc:
            issues.append(Issue("error", "genotype", f"genotypes not read: {exc}", "genotypes"))
            return {}
    if not isinstance(genotypes, Mapping):
        raise DataError(f"genotypes must be a mapping of gene to diplotype (or a VCF path), got "
                        f"{type(genotypes).__name__}", column="genotypes")
    results, problems = pgx.interpret(genotypes)
    for p in problems:
        issues.append(Issue("error", "genotype", p, "genotypes"))
    return results


@cache
def _knowledge_versions() -> dict[str, str]:
    return {"drugs": interactions.drug_vocabulary().version, "interactions": interactions.interaction_table()[1],
            "contraindications": interactions.contraindication_table()[1], "iwpc": dosing.iwpc_table()["version"],
            "renal": dosing.renal_table()["version"]}


def _strength_for(severity: str) -> str:
    return {"contraindicated": "strong", "major": "strong", "moderate": "moderate", "caution": "moderate"}[severity]


def make_plan(facts: Mapping[str, Any], predictions: Mapping[str, Any] | None, *, rules: RuleBook | Path | str,
              genotypes: Mapping[str, Any] | Path | str | None = None, options: Mapping[str, Any] | None = None,
              provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The plan as a JSON-ready dict (see the module doc and ``examples/patients``).

    facts: the patient's facts (names from the fact schema; ``medications`` / ``planned_drugs`` / ``allergies``
    as lists). predictions: model outputs ``{name: value | {value, ci_low, ci_high}}``. rules: a loaded RuleBook
    or a rule file / directory. genotypes: ``{gene: diplotype}``, GeneResults, or a VCF path. options: treatment
    options ``{option: {benefit, ci_low, ci_high[, drugs]}}`` ranked by predicted benefit. provenance: what the
    caller knows (bundle id and version, …); the plan adds rule-set, CPIC and knowledge-table versions.
    """
    issues: list[Issue] = []
    book = rules if isinstance(rules, RuleBook) else load_rules(rules)
    schema = book.schema
    if not isinstance(facts, Mapping):
        raise DataError(f"facts must be a mapping of name to value, got {type(facts).__name__}", column="facts")
    if not isinstance(provenance, Mapping):
        raise DataError("provenance must be a mapping (e.g. {'bundle': {...}})", column="provenance")
    patient_id = facts.get("patient_id")
    clean, fact_issues, reasons = validate_facts({k: v for k, v in facts.items() if k != "patient_id"}, schema)
    issues += fact_issues
    vocab = interactions.drug_vocabulary()
    for key in ("medications", "planned_drugs"):
        if key in clean:
            known, unknown = vocab.split(clean[key])
            clean[key] = known
            issues += [_unknown_drug_issue(u, key) for u in unknown]
    undeclared = sorted(k for k in clean if k not in schema.facts)
    if undeclared:
        issues.append(Issue("info", "undeclared-facts", f"facts not in the schema (kept for display, no rule uses "
                            f"them): {undeclared}"))
    constraint_issues, constraint_reasons = apply_constraints(clean, schema)
    issues += constraint_issues
    reasons.update(constraint_reasons)
    derived = _derive_kidney(clean, reasons, issues)

    results = _genotype_results(genotypes, issues)
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

    preds, pred_issues = normalize_predictions(predictions, schema)
    issues += pred_issues
    ranked, option_issues = normalize_options(options)
    issues += option_issues

    evaluation = evaluate_rules(book, clean, preds, missing_reasons=reasons)

    # drugs this plan is about: current, planned, options' and those named by fired rules
    relevant: list[str] = []
    for d in [*clean.get("medications", []), *clean.get("planned_drugs", []),
              *(d for o in ranked for d in o["drugs"] if vocab.normalize(d)),
              *(a.drug for o in evaluation.fired for a in o.rule.actions if a.type != "avoid")]:
        if d not in relevant:
            relevant.append(d)
    concrete = [d for d in relevant if vocab.normalize(d)]
    expanded = set().union(*(vocab.expand(d) for d in relevant)) if relevant else set()

    proposals: list[Proposal] = []
    info_rules = []
    for o in evaluation.fired:
        r = o.rule
        if not r.actions:
            info_rules.append(r)
        for a in r.actions:
            proposals.append(Proposal("rule", r.id, a, r.recommend, r.strength, r.priority, r.source,
                                      frozenset(vocab.expand(a.drug))))
    pgx_recs = []
    for drug in pgx.pgx_drugs():
        if drug not in expanded:
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
    hits, _ = interactions.check_interactions(concrete, on_unknown="report")
    for h in hits:
        a = h.action
        proposals.append(Proposal("interaction", h.interaction.id, a, h.interaction.management,
                                  _strength_for(h.interaction.severity), 0, h.interaction.source, frozenset({a.drug})))
    allergy_hits, unknown_allergies = interactions.check_allergies(relevant, clean.get("allergies", []))
    for u in unknown_allergies:
        issues.append(Issue("warning", "unknown-allergy", f"allergy {u!r} is not a known drug or class: not checked",
                            "allergies"))
    for ah in allergy_hits:
        proposals.append(Proposal("allergy", f"allergy-{ah.drug}", Action("avoid", ah.drug), ah.to_dict()["text"],
                                  "strong", 100, ah.to_dict()["source"], ah.targets))
    ci_hits, ci_undecided = interactions.check_contraindications(relevant, clean)
    for c in ci_hits:
        proposals.append(Proposal("contraindication", c.entry.id, c.action, c.entry.text,
                                  _strength_for(c.entry.severity), 100, c.entry.source,
                                  frozenset(vocab.expand(c.drug) & c.entry.drugs)))

    doses: list[dict[str, Any]] = []
    renal_lines = []
    for drug in dosing.renal_drugs():
        if drug not in concrete:
            continue
        rd = dosing.renal_dose(drug, egfr=clean.get("egfr"), crcl=clean.get("crcl"), facts=clean)
        renal_lines.append(rd)
        doses.append({"kind": "renal", **rd.to_dict()})
        if rd.status == "decided" and rd.action in ("avoid", "adjust_dose"):
            proposals.append(Proposal("renal", f"renal-{drug}", Action(rd.action, drug), rd.text, "strong", 50,
                                      rd.source, frozenset({drug})))
    if "warfarin" in concrete:
        c9 = results.get("CYP2C9")
        vk = results.get("VKORC1")
        c9_dip = c9.diplotype if c9 is not None and c9.determinate and " or " not in (c9.diplotype or "") else None
        for s in dosing.warfarin_suggestion(clean, c9_dip, vk.diplotype if vk is not None and vk.determinate else None,
                                            cyp2c9_determinate=c9 is None or c9.determinate):
            doses.append({"kind": "algorithm", **s.to_dict()})

    decided = [p for p in proposals if p.action is not None]
    decisions, conflicts = resolve(decided)
    by_proposal = {id(d.proposal): d for d in decisions}

    def action_view(p: Proposal) -> dict[str, Any]:
        d = by_proposal[id(p)]
        out = {**p.action.to_dict(), "status": d.status}  # type: ignore[union-attr]
        if d.overridden_by:
            out["overridden_by"] = d.overridden_by
        if d.reason:
            out["reason"] = d.reason
        if d.restricted_to:
            out["restricted_to"] = list(d.restricted_to)
        return out

    recommendations = []
    for o in evaluation.fired:
        r = o.rule
        acts = [action_view(p) for p in decided if p.origin == "rule" and p.id == r.id]
        status = "active" if not acts or any(a["status"] == "active" for a in acts) else \
            "unresolved" if any(a["status"] == "unresolved" for a in acts) else "overridden"
        recommendations.append({"rule_id": r.id, "ruleset": r.ruleset, "version": r.version, "origin": "rule",
                                "text": r.recommend, "strength": r.strength, "priority": r.priority,
                                "source": r.source, "actions": acts, "status": status,
                                **({"missing_but_decided": list(o.missing)} if o.missing else {})})
    for rec in pgx_recs:
        p = next((p for p in decided if p.origin == "pgx" and p.id == f"cpic-{rec.drug}"), None)
        acts = [action_view(p)] if p is not None else []
        status = acts[0]["status"] if acts else ("information" if rec.action == "none" else "no recommendation")
        recommendations.append({"rule_id": f"cpic-{rec.drug}", "ruleset": "CPIC", "origin": "pgx",
                                "version": ", ".join(f"{g} {v}" for g, v in rec.versions.items()),
                                "text": rec.text, "strength": rec.strength, "priority": 0, "source": rec.guideline,
                                "actions": acts, "status": status, "phenotypes": dict(rec.phenotypes),
                                "notes": list(rec.notes)})
    recommendations.sort(key=lambda x: (x["status"] != "active", -STRENGTHS.get(x["strength"] or "", 0),
                                        -x["priority"]))

    avoided = {}
    for d in decisions:
        if d.status in ("active", "unresolved") and d.proposal.action and d.proposal.action.type == "avoid":
            for t in d.proposal.targets:
                avoided.setdefault(t, []).append(d.proposal.label())
    disfavored = {}
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

    contraindications = [{"kind": "allergy", **h.to_dict(), "status": by_proposal[id(p)].status}
                         for h, p in zip(allergy_hits, [p for p in decided if p.origin == "allergy"], strict=True)]
    contraindications += [{"kind": "condition", **c.to_dict(), "status": by_proposal[id(p)].status}
                          for c, p in zip(ci_hits, [p for p in decided if p.origin == "contraindication"], strict=True)]
    contraindications += [{"kind": "renal", "id": f"renal-{r.drug}", "drug": r.drug, "severity": "contraindicated",
                           "text": r.text, "source": r.source} for r in renal_lines if r.action == "avoid"]
    inter = []
    ipro = [p for p in decided if p.origin == "interaction"]
    for h, p in zip(hits, ipro, strict=True):
        inter.append({**h.to_dict(), "status": by_proposal[id(p)].status})

    adjust = {}
    for d in decisions:
        if d.status == "active" and d.proposal.action and d.proposal.action.type == "adjust_dose":
            for t in d.proposal.targets:
                adjust.setdefault(t, []).append(d.proposal.label())
    for drug, labels in adjust.items():
        if len(labels) > 1:
            issues.append(Issue("warning", "several-dose-adjustments", f"{drug}: {len(labels)} dose adjustments apply "
                                f"({'; '.join(labels)}); review them together and apply the most restrictive, "
                                "but do not reduce twice for a drug a dose algorithm already includes (IWPC: "
                                "amiodarone, enzyme inducers)", drug))
    for c in conflicts:
        if c.get("winner") is None:
            issues.append(Issue("warning", "unresolved-conflict", f"unresolved conflict on {c['drugs']}: "
                                f"{c['between']}; the clinician decides"))

    not_fired = [{"rule_id": o.rule.id, "ruleset": o.rule.ruleset,
                  **({"decided_without": list(o.missing)} if o.missing else {})} for o in evaluation.not_fired]
    not_evaluated = [o.to_dict() for o in evaluation.not_evaluated]
    for cid, drug, missing in ci_undecided:
        not_evaluated.append({"rule_id": cid, "ruleset": "contraindications", "status": "not_evaluated",
                              "missing": missing, "why": f"{drug}: missing " + ", ".join(missing)})
    for r in renal_lines:
        if r.status != "decided":
            not_evaluated.append({"rule_id": f"renal-{r.drug}", "ruleset": "renal dosing", "status": "not_evaluated",
                                  "missing": list(r.missing), "why": r.text})

    used_names = {n for rule in book.rules for n in rule.facts} | {
        "age", "sex", "weight_kg", "height_cm", "race", "creatinine_mg_dl", "egfr", "crcl", "medications",
        "planned_drugs", "allergies"}
    facts_used = {k: clean[k] for k in sorted(clean) if k in used_names}
    levels = {"error": 0, "warning": 1, "info": 2}
    alerts = sorted((i.to_dict() for i in issues), key=lambda a: levels[a["level"]])

    prov = dict(provenance)
    prov.update({
        "precimed_version": __version__,
        "rulesets": book.provenance(),
        "fact_schema": list(schema.versions),
        "cpic": pgx.cpic_versions(),
        "knowledge": _knowledge_versions(),
    })
    return {
        "format": PLAN_FORMAT,
        "patient_id": None if patient_id is None else str(patient_id),
        "facts_used": facts_used,
        "facts_set_aside": dict(sorted(reasons.items())) if reasons else {},
        "derived": derived,
        "predictions": preds,
        "options": ranked,
        "recommendations": recommendations,
        "pharmacogenomics": {"genes": {g: r.to_dict() for g, r in sorted(results.items())}},
        "dose_suggestions": doses,
        "contraindications": contraindications,
        "interactions": inter,
        "conflicts": conflicts,
        "rulesets": list(evaluation.rulesets),
        "alerts": alerts,
        "not_evaluated": not_evaluated,
        "rules_not_fired": not_fired,
        "provenance": prov,
    }


# ----- FHIR --------------------------------------------------------------------------------------------------------
def to_fhir_careplan(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The plan as a FHIR R4 CarePlan (status draft, intent proposal), validated with fhir.resources.

    fhir.resources 8 ships R5 by default and the R4-compatible models as ``R4B``; CarePlan is unchanged between
    R4 and R4B. Active recommendations become activities (``doNotPerform`` for avoid); everything else
    (predictions, options, alerts, rules not evaluated, provenance) becomes notes.
    """
    from fhir.resources.R4B.careplan import CarePlan

    vocab = interactions.drug_vocabulary()
    activities = []
    for rec in plan["recommendations"]:
        if rec["status"] not in ("active", "unresolved", "information"):
            continue
        acts = rec["actions"] or [None]
        for a in acts:
            detail: dict[str, Any] = {"status": "not-started",
                                      "description": f"{rec['text']} [{rec['strength'] or 'no strength'}; "
                                                     f"{rec['rule_id']}; {rec['source']}]"}
            if a is not None:
                detail["doNotPerform"] = a["type"] == "avoid"
                info = vocab.drugs.get(a["drug"])
                concept: dict[str, Any] = {"text": f"{a['type']}: {a['drug']}"}
                if info is not None and info.atc:
                    concept["coding"] = [{"system": "http://www.whocc.no/atc", "code": info.atc, "display": a["drug"]}]
                detail["productCodeableConcept"] = concept
            activities.append({"detail": detail})
    for d in plan["dose_suggestions"]:
        activities.append({"detail": {"status": "not-started" if d["status"] in ("computed", "decided") else "on-hold",
                                      "description": f"{d['drug']} dose: {d['text']} [{d['source']}]"}})
    notes = []
    for name, p in plan["predictions"].items():
        ci = f" (95% CI {p['ci_low']:.3f}-{p['ci_high']:.3f})" if p["ci_low"] is not None and p["ci_high"] is not None \
            else ""
        notes.append(f"Model prediction {name}: {p['value']:.3f}{ci}")
    for o in plan["options"]:
        notes.append(f"Option {o['rank']}: {o['option']}, predicted benefit {o['benefit']:.3f}"
                     + (f" ({o['ci_low']:.3f} to {o['ci_high']:.3f})" if o["ci_low"] is not None else "")
                     + (f"; blocked by {', '.join(o['blocked_by'])}" if o["blocked_by"] else ""))
    notes += [f"Alert ({a['level']}): {a['message']}" for a in plan["alerts"]]
    notes += [f"Not evaluated: {n['rule_id']}: {n.get('why', '')}" for n in plan["not_evaluated"]]
    prov = plan["provenance"]
    notes.append("Provenance: " + json.dumps({k: prov[k] for k in prov if k != "rulesets"}, default=str)[:4000])
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "status": "draft",
        "intent": "proposal",
        "title": "precimed treatment plan (decision support; for clinician review)",
        "subject": ({"reference": f"Patient/{plan['patient_id']}"} if plan.get("patient_id")
                    else {"display": "unidentified patient"}),
        "description": f"{len(plan['recommendations'])} recommendation(s), {len(plan['alerts'])} alert(s), "
                       f"{len(plan['not_evaluated'])} rule(s) not evaluated",
        "activity": activities,
        "note": [{"text": n} for n in notes],
    }
    if prov.get("created_utc"):
        resource["created"] = prov["created_utc"]
    model = CarePlan.model_validate(resource)
    return json.loads(model.model_dump_json(exclude_none=True))


# ----- Markdown and HTML -------------------------------------------------------------------------------------------
def _num(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ci(lo: Any, hi: Any, digits: int = 3) -> str:
    return "–" if lo is None or hi is None else f"{lo:.{digits}f} to {hi:.{digits}f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(plan: Mapping[str, Any]) -> str:
    """A readable plan, every line with its source."""
    lines = [f"# Treatment plan: {plan.get('patient_id') or 'unidentified patient'}", "",
             "_Decision support for clinician review; not an order._", ""]
    prov = plan["provenance"]
    bundle = prov.get("bundle")
    if bundle:
        lines += [f"Model bundle: {bundle.get('id', '?')} (version {bundle.get('version', '?')})", ""]
    if plan["alerts"]:
        lines += ["## Alerts", ""]
        lines += [f"- **{a['level']}** ({a['code']}): {a['message']}" for a in plan["alerts"]]
        lines.append("")
    if plan["predictions"]:
        lines += ["## Model predictions", "", "| output | value | 95% CI | meaning |", "|---|---:|---|---|"]
        for name, p in plan["predictions"].items():
            lines.append(f"| {name} | {_num(p['value'])} | {_ci(p['ci_low'], p['ci_high'])} | "
                         f"{_cell(p.get('description', ''))} |")
        lines.append("")
    if plan["options"]:
        lines += ["## Treatment options, ranked by predicted benefit", "",
                  "| rank | option | benefit | 95% CI | CI overlaps best | blocked by | not preferred by |",
                  "|---:|---|---:|---|---|---|---|"]
        for o in plan["options"]:
            ov = {True: "yes", False: "no", None: "–"}[o["ci_overlaps_best"]]
            lines.append(f"| {o['rank']} | {_cell(o['option'])} | {_num(o['benefit'])} | "
                         f"{_ci(o['ci_low'], o['ci_high'])} | {ov} | {_cell(', '.join(o['blocked_by']) or '–')} | "
                         f"{_cell(', '.join(o['disfavored_by']) or '–')} |")
        unit = next((o["unit"] for o in plan["options"] if o.get("unit")), None)
        if unit:
            lines += ["", f"Benefit: {unit}."]
        lines.append("")
    lines += ["## Recommendations", ""]
    if not plan["recommendations"]:
        lines.append("- none fired")
    for r in plan["recommendations"]:
        acts = "; ".join(
            f"{a['type']} {a['drug']}" + (f" instead of {a['instead_of']}" if a.get("instead_of") else "")
            + (f" ({a['status']}" + (f" by {a['overridden_by']}: {a['reason']}" if a.get("overridden_by") else "")
               + ")" if a["status"] != "active" else "") for a in r["actions"])
        status = "" if r["status"] == "active" else f" _({r['status']})_"
        lines.append(f"- **{r['text']}**{status} — {r['strength'] or 'no'} recommendation; `{r['rule_id']}` "
                     f"({r['ruleset']} {r['version']}); source: {r['source']}" + (f". Actions: {acts}" if acts else ""))
    lines.append("")
    genes = plan["pharmacogenomics"]["genes"]
    if genes:
        lines += ["## Pharmacogenomics", "", "| gene | diplotype | phenotype | activity score | from | notes |",
                  "|---|---|---|---:|---|---|"]
        for g, r in genes.items():
            lines.append(f"| {g} | {_cell(r['diplotype'] or '–')} | {_cell(r['phenotype'])} | "
                         f"{_num(r['activity_score'], 2)} | {r['origin']} | {_cell('; '.join(r['notes']) or '–')} |")
        versions = sorted({f"{g}: {r['version']}" for g, r in genes.items() if r["version"]})
        lines += ["", "Tables: " + "; ".join(versions), ""]
    if plan["dose_suggestions"]:
        lines += ["## Dose suggestions", ""]
        for d in plan["dose_suggestions"]:
            lines.append(f"- **{d['drug']}** ({d['method'] if 'method' in d else d['measure']}, {d['status']}): "
                         f"{d['text']} — source: {d['source']}")
        lines.append("")
    if plan["contraindications"]:
        lines += ["## Contraindications and allergies", ""]
        lines += [f"- **{c['drug']}** ({c['kind']}, {c.get('severity', 'allergy')}): {c['text']} — source: "
                  f"{c['source']}" for c in plan["contraindications"]]
        lines.append("")
    if plan["interactions"]:
        lines += ["## Drug interactions", ""]
        lines += [f"- **{i['drugs'][0]} + {i['drugs'][1]}** ({i['severity']}): {i['effect']} {i['management']} — "
                  f"source: {i['source']}" for i in plan["interactions"]]
        lines.append("")
    if plan["conflicts"]:
        lines += ["## Conflicts and how they were resolved", ""]
        for c in plan["conflicts"]:
            if c.get("winner"):
                lines.append(f"- {', '.join(c['drugs'])}: **{c['winner']}** wins over {c['loser']} — {c['reason']}")
            else:
                lines.append(f"- {', '.join(c['drugs'])}: unresolved between {c['between']} — {c['reason']}")
        lines.append("")
    skipped = [r for r in plan.get("rulesets", []) if not r["applied"]]
    if skipped:
        lines += ["## Rule sets not applied", ""]
        lines += [f"- {r['ruleset']} {r['version']} ({r['rules']} rules): {r['why']}" for r in skipped]
        lines.append("")
    if plan["not_evaluated"]:
        lines += ["## Not evaluated", ""]
        lines += [f"- `{n['rule_id']}` ({n['ruleset']}): {n.get('why') or 'missing ' + ', '.join(n['missing'])}"
                  for n in plan["not_evaluated"]]
        lines.append("")
    if plan["derived"]:
        lines += ["## Calculated values", ""]
        for k, v in plan["derived"].items():
            lines.append(f"- {k} = {v['value']} ({v['method']})" + (f" — source: {v['source']}" if v.get("source")
                                                                    else ""))
        lines.append("")
    lines += ["## Facts used", "", ", ".join(f"{k} = {v}" for k, v in plan["facts_used"].items()) or "none", ""]
    if plan["facts_set_aside"]:
        lines += ["Not available or set aside: " + "; ".join(f"{k} ({v})" for k, v in plan["facts_set_aside"].items()),
                  ""]
    lines += ["## Provenance", "",
              f"- precimed {prov['precimed_version']}; rule sets: "
              + ", ".join(f"{r['id']} {r['version']}" for r in prov["rulesets"]),
              "- CPIC: " + "; ".join(f"{k} {v}" for k, v in prov["cpic"].items()),
              "- knowledge: " + "; ".join(f"{k} {v}" for k, v in prov["knowledge"].items())]
    extra = {k: v for k, v in prov.items() if k not in ("precimed_version", "rulesets", "cpic", "knowledge",
                                                         "fact_schema")}
    if extra:
        lines.append("- caller: " + json.dumps(extra, default=str))
    return "\n".join(lines) + "\n"


@cache
def _template():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = _num
    env.filters["ci"] = _ci
    return env.get_template("plan.html.j2")


def to_html(plan: Mapping[str, Any]) -> str:
    """A self-contained HTML page of the plan (jinja2, autoescaped)."""
    return _template().render(plan=plan)
