"""The plan: example patients end to end, bad input that still yields a plan, FHIR R4 CarePlan, Markdown, HTML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from precimed.errors import DataError
from precimed.planning import load_rules, make_plan, pgx
from precimed.planning.inputs import load_patient
from precimed.planning.render import to_fhir_careplan, to_html, to_markdown

ROOT = Path(__file__).resolve().parents[2]
PATIENTS = ROOT / "examples" / "patients"
BOOK = load_rules()
PROV = {"bundle": {"id": "test-bundle", "version": "0"}}


def plan_for(name: str, vcf: bool = False, **changes):
    p = load_patient(PATIENTS / f"{name}.json")
    facts = {**p.facts, **changes}
    genotypes = pgx.load_genotypes(PATIENTS / "pgx_example.vcf", p.genotypes) if vcf else p.genotypes
    return make_plan(facts, p.predictions, rules=BOOK, genotypes=genotypes, options=p.options, provenance=PROV)


def codes(plan):
    return [a["code"] for a in plan["alerts"]]


def rec(plan, rule_id):
    return next(r for r in plan["recommendations"] if r["rule_id"] == rule_id)


# ----- the example patients -----------------------------------------------------------------------------------------
def test_the_breast_cancer_plan_joins_rules_pgx_interactions_and_the_model():
    plan = plan_for("gbsg_breast")
    json.dumps(plan)  # JSON-ready
    fired = {r["rule_id"] for r in plan["recommendations"]}
    assert {"bc-endocrine-indicated", "bc-ai-postmenopausal", "bc-tamoxifen-cyp2d6-im", "bc-model-high-risk"} <= fired
    assert "bc-model-high-risk-confident" not in fired  # the lower CI bound is below 30%
    assert plan["pharmacogenomics"]["genes"]["CYP2D6"]["phenotype"] == "Intermediate Metabolizer"
    assert [i["id"] for i in plan["interactions"]] == ["tamoxifen-strong-cyp2d6-inhibitors"]
    assert [o["option"] for o in plan["options"]] == ["hormone therapy (tamoxifen)", "no hormone therapy"]
    assert plan["options"][0]["disfavored_by"]  # aromatase inhibitor preferred over tamoxifen
    assert plan["predictions"]["event_probability_1826days"] == pytest.approx(
        {"value": 0.34, "ci_low": 0.27, "ci_high": 0.41, "declared": True,
         "description": "MADE-UP example value: 5-year recurrence-or-death risk"})
    applied = {r["ruleset"]: r["applied"] for r in plan["rulesets"]}
    assert applied["breast-adjuvant-endocrine"] and not applied["colon-adjuvant"]


def test_the_colon_plan_says_which_rule_won_and_why():
    plan = plan_for("colon")
    old = rec(plan, "colon-1990-levamisole-fu")
    assert old["status"] == "overridden"
    assert old["actions"][0]["overridden_by"] == "rule colon-levamisole-obsolete (avoid levamisole)"
    assert "outranks a preference, whatever their priorities" in old["actions"][0]["reason"]
    assert rec(plan, "colon-stage-c-adjuvant")["status"] == "active"
    assert rec(plan, "cpic-fluorouracil")["actions"][0]["type"] == "adjust_dose"
    best = plan["options"][0]
    assert best["option"] == "levamisole + fluorouracil" and best["blocked_by"]
    assert "best-option-blocked" in codes(plan)
    assert any(c["winner"] == "rule colon-levamisole-obsolete (avoid levamisole)" for c in plan["conflicts"])


def test_the_warfarin_plan_doses_by_iwpc_with_the_genotypes_from_the_vcf():
    plan = plan_for("warfarin_pgx", vcf=True)
    pg = next(d for d in plan["dose_suggestions"] if d.get("method") == "IWPC pharmacogenetic")
    assert pg["value"] == pytest.approx(15.56, abs=0.01)  # worked by hand in test_dosing
    assert "do not reduce again for the amiodarone interaction" in pg["text"]
    assert {i["id"] for i in plan["interactions"]} == {"warfarin-amiodarone"}
    valve = rec(plan, "ac-mechanical-valve")
    assert [a["type"] for a in valve["actions"]] == ["avoid", "avoid"]
    assert "several-dose-adjustments" in codes(plan)
    assert plan["derived"]["egfr"]["method"].startswith("CKD-EPI 2021")
    assert plan["pharmacogenomics"]["genes"]["CYP2C9"]["origin"] == "vcf"


def test_provenance_names_the_bundle_rule_sets_and_cpic_versions():
    prov = plan_for("gbsg_breast")["provenance"]
    assert prov["bundle"] == {"id": "test-bundle", "version": "0"}
    assert {r["id"]: r["version"] for r in prov["rulesets"]}["breast-adjuvant-endocrine"] == "2024.1"
    assert prov["cpic"]["CYP2C19"] == "CPIC database 2023-09-01"
    assert prov["cpic"]["CYP2D6"] == "CPIC database 2024-03-25"
    assert set(prov["knowledge"]) == {"drugs", "interactions", "contraindications", "iwpc", "renal"}


def test_the_same_input_gives_the_same_plan():
    assert plan_for("colon") == plan_for("colon")


# ----- bad input: clear messages, and the plan lists what could be decided ------------------------------------------
def test_an_unknown_drug_is_reported_and_the_rest_is_checked():
    plan = plan_for("warfarin_pgx", medications=["amiodarone", "warfarine-xr"])
    alert = next(a for a in plan["alerts"] if a["code"] == "unknown-drug")
    assert "warfarine-xr" in alert["message"] and "did you mean" in alert["message"]
    assert plan["interactions"]  # warfarin (planned) + amiodarone still checked


def test_an_unknown_gene_and_an_impossible_genotype_are_reported_and_other_genes_used():
    p = load_patient(PATIENTS / "gbsg_breast.json")
    plan = make_plan(p.facts, p.predictions, rules=BOOK, provenance=PROV,
                     genotypes={"CYP3A4": "*1/*1", "CYP2C19": "*1/*2/*3", "CYP2D6": "*1/*4"})
    messages = " | ".join(a["message"] for a in plan["alerts"] if a["code"] == "genotype")
    assert "unknown gene 'CYP3A4'" in messages and "impossible diplotype '*1/*2/*3'" in messages
    assert plan["pharmacogenomics"]["genes"]["CYP2C19"]["phenotype"] == "Indeterminate"
    assert plan["pharmacogenomics"]["genes"]["CYP2D6"]["phenotype"] == "Intermediate Metabolizer"
    assert "bc-tamoxifen-cyp2d6-im" in {r["rule_id"] for r in plan["recommendations"]}


def test_contradictory_facts_are_set_aside_and_rules_needing_them_are_not_evaluated():
    plan = plan_for("warfarin_pgx", sex="male", pregnant=True)
    alert = next(a for a in plan["alerts"] if a["code"] == "contradictory-facts")
    assert "sex is male but pregnant is true" in alert["message"]
    assert "sex" not in plan["facts_used"] and plan["facts_set_aside"]["sex"].startswith("contradictory")
    af = next(n for n in plan["not_evaluated"] if n["rule_id"] == "ac-af-anticoagulate")
    assert af["missing"] == ["sex"] and "contradictory" in af["why"]
    assert rec(plan, "ac-mechanical-valve")["status"] == "active"  # decided without sex
    assert {"rule_id": "ac-prefer-doac", "ruleset": "anticoagulation"} in plan["rules_not_fired"]


def test_a_missing_weight_leaves_the_dose_not_computed_but_the_rest_decided():
    plan = plan_for("warfarin_pgx", weight_kg=None)
    (warfarin,) = [d for d in plan["dose_suggestions"] if d["drug"] == "warfarin"]
    assert warfarin["status"] == "not computed" and warfarin["missing"] == ["weight_kg"]
    assert plan["facts_set_aside"]["crcl"] == "not computed: missing weight_kg"
    assert plan["derived"]["egfr"]["value"] > 0
    assert rec(plan, "ac-mechanical-valve")["status"] == "active"


def test_invalid_fact_values_and_predictions_are_set_aside_with_a_message():
    p = load_patient(PATIENTS / "gbsg_breast.json")
    facts = {**p.facts, "age": "sixty", "tumor_grade": 7}
    preds = {"event_probability_1826days": {"value": 0.5, "ci_low": 0.6, "ci_high": 0.7},
             "event_probability_1096days": 1.4, "made_up_score": 2.0}
    plan = make_plan(facts, preds, rules=BOOK, provenance=PROV)
    messages = [a["message"] for a in plan["alerts"]]
    assert any("fact age must be a finite number" in m for m in messages)
    assert any("tumor_grade must lie in [1, 3]" in m for m in messages)
    assert any("does not contain the value 0.5" in m for m in messages)
    assert any("event_probability_1096days must lie in [0, 1]" in m for m in messages)
    assert set(plan["predictions"]) == {"made_up_score"} and not plan["predictions"]["made_up_score"]["declared"]


def test_creatinine_in_two_units_that_disagree_is_set_aside():
    plan = plan_for("colon", creatinine_umol_l=300.0)
    assert any("disagree" in a["message"] for a in plan["alerts"])
    assert "egfr" not in plan["derived"]
    metformin = next(d for d in plan["dose_suggestions"] if d["drug"] == "metformin")
    assert metformin["status"] == "not decided"


def test_facts_must_be_a_mapping_and_patient_files_are_checked(tmp_path):
    with pytest.raises(DataError, match="facts must be a mapping"):
        make_plan([1, 2], {}, rules=BOOK, provenance=PROV)
    bad = tmp_path / "p.json"
    bad.write_text('{"facts": {}, "labs": {}}')
    with pytest.raises(DataError, match=r"unknown key\(s\) \['labs'\]"):
        load_patient(bad)
    bad.write_text('{"facts": ')
    with pytest.raises(DataError, match="not valid JSON"):
        load_patient(bad)


def test_an_allergy_outranks_a_guideline_preference():
    plan = plan_for("gbsg_breast", allergies=["aromatase inhibitors"], planned_drugs=["tamoxifen", "letrozole"])
    assert {c["drug"] for c in plan["contraindications"] if c["kind"] == "allergy"} == {"letrozole",
                                                                                        "aromatase inhibitors"}
    ai = rec(plan, "bc-ai-postmenopausal")["actions"][0]
    assert ai["status"] == "overridden" and ai["overridden_by"].startswith("allergy")


def test_a_preference_that_conflicts_on_some_drugs_is_kept_for_the_others():
    plan = plan_for("gbsg_breast", allergies=["letrozole"], planned_drugs=["tamoxifen", "letrozole"])
    ai = rec(plan, "bc-ai-postmenopausal")["actions"][0]
    assert ai["status"] == "active" and ai["restricted_to"] == ["anastrozole", "exemestane"]


def test_a_premenopausal_patient_gets_no_aromatase_inhibitor_and_the_plan_says_why():
    plan = plan_for("gbsg_breast", menopausal_status="pre", age=44, planned_drugs=["tamoxifen", "anastrozole"])
    assert any(c["id"] == "aromatase-inhibitor-premenopausal" for c in plan["contraindications"])
    assert "bc-tamoxifen-premenopausal" in {r["rule_id"] for r in plan["recommendations"]}


# ----- FHIR, Markdown, HTML -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gbsg_breast", "colon", "warfarin_pgx"])
def test_the_plan_is_a_valid_fhir_r4_careplan(name):
    from fhir.resources.R4B.careplan import CarePlan

    plan = plan_for(name, vcf=name == "warfarin_pgx")
    resource = to_fhir_careplan(plan)
    assert resource["resourceType"] == "CarePlan" and resource["status"] == "draft"
    assert resource["intent"] == "proposal" and resource["subject"]["reference"].startswith("Patient/demo-")
    CarePlan.model_validate(resource)  # round-trips through the validator
    details = [a["detail"] for a in resource["activity"]]
    assert all(d["status"] in ("not-started", "on-hold") for d in details)
    if name == "colon":
        avoid = [d for d in details if d.get("doNotPerform")]
        assert any(d["productCodeableConcept"]["coding"][0]["code"] == "P02CE01" for d in avoid)  # levamisole


def test_markdown_and_html_show_every_section_with_sources():
    plan = plan_for("colon")
    md = to_markdown(plan)
    for heading in ("## Alerts", "## Model predictions", "## Treatment options", "## Recommendations",
                    "## Pharmacogenomics", "## Conflicts", "## Provenance"):
        assert heading in md
    assert "Haller DG et al." in md and "CPIC database 2023-09-01" in md
    html = to_html({**plan, "patient_id": "<script>x</script>"})
    assert "&lt;script&gt;" in html and "<script>x" not in html
    assert "Conflicts and how they were resolved" in html
