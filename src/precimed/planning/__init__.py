"""Treatment planning (layer 5): guideline rules as data, pharmacogenomics, dosing, safety checks, and the plan.

Imports only precimed's layer 0 (errors) and third-party libraries; model outputs arrive as plain numbers, so
plans are made without torch. Clinical knowledge lives in ``knowledge/`` as versioned, cited YAML.

    book = load_rules()                                  # or load_rules("my_rules/")
    genotypes = pgx.load_genotypes("sample.vcf", {"CYP2D6": "*1/*4"})
    plan = make_plan(facts, predictions, rules=book, genotypes=genotypes, options=options,
                     provenance={"bundle": {"id": ..., "version": ...}})
    to_markdown(plan); to_html(plan); to_fhir_careplan(plan)
"""

from precimed.planning import dosing, interactions, pgx, rules
from precimed.planning.dosing import (
    crcl_cockcroft_gault,
    egfr_ckd_epi_2021,
    iwpc_weekly_dose,
    renal_dose,
    warfarin_suggestion,
)
from precimed.planning.interactions import check_allergies, check_contraindications, check_interactions, drug_vocabulary
from precimed.planning.pgx import GeneResult, genotypes_from_vcf, load_genotypes, phenotype, read_vcf, recommend
from precimed.planning.plan import (
    Patient,
    load_patient,
    make_plan,
    normalize_options,
    normalize_predictions,
    to_fhir_careplan,
    to_html,
    to_markdown,
)
from precimed.planning.rules import RuleBook, evaluate_rules, load_rules, load_schema, resolve

__all__ = [
    "GeneResult",
    "Patient",
    "RuleBook",
    "check_allergies",
    "check_contraindications",
    "check_interactions",
    "crcl_cockcroft_gault",
    "dosing",
    "drug_vocabulary",
    "egfr_ckd_epi_2021",
    "evaluate_rules",
    "genotypes_from_vcf",
    "interactions",
    "iwpc_weekly_dose",
    "load_genotypes",
    "load_patient",
    "load_rules",
    "load_schema",
    "make_plan",
    "normalize_options",
    "normalize_predictions",
    "pgx",
    "phenotype",
    "read_vcf",
    "recommend",
    "renal_dose",
    "resolve",
    "rules",
    "to_fhir_careplan",
    "to_html",
    "to_markdown",
    "warfarin_suggestion",
]
