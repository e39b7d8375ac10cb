"""Treatment planning (layer 5): guideline rules as data, pharmacogenomics, dosing, safety checks, and the plan.

Imports only precimed's lower layers (errors, jsonio) and light third-party libraries; model outputs arrive as
plain numbers, so plans are made without torch. Clinical knowledge lives in ``knowledge/`` as versioned, cited
YAML, read through one cached loader (:func:`load_knowledge`).

    book = load_rules()                                  # or load_rules("my_rules/")
    genotypes = pgx.load_genotypes("sample.vcf", {"CYP2D6": "*1/*4"})
    plan = make_plan(facts, predictions, rules=book, genotypes=genotypes, options=options,
                     provenance={"bundle": {"id": ..., "version": ...}})
    to_markdown(plan); to_html(plan); to_fhir_careplan(plan)

Modules, lowest first: ``knowledge_files`` (the loader), ``drugs`` (vocabulary), ``conditions`` (the condition
language), ``factschema`` (declared facts, a patient's facts checked), ``rulebook`` (rule files and their
evaluation), ``conflicts`` (resolving contradictory proposals), ``interactions``, ``dosing``, ``phenotypes`` /
``vcf`` / ``pgx`` (pharmacogenomics), ``inputs`` (patient file, predictions, options), ``plan`` (``make_plan``)
and ``render`` (FHIR, Markdown, HTML). ``rules`` re-exports the engine's old names.
"""

from precimed.planning import (
    conditions,
    conflicts,
    dosing,
    drugs,
    factschema,
    interactions,
    knowledge_files,
    pgx,
    render,
    rulebook,
    rules,
)
from precimed.planning.conflicts import resolve
from precimed.planning.dosing import (
    crcl_cockcroft_gault,
    egfr_ckd_epi_2021,
    iwpc_weekly_dose,
    renal_dose,
    warfarin_suggestion,
)
from precimed.planning.drugs import drug_vocabulary
from precimed.planning.factschema import load_schema
from precimed.planning.inputs import Patient, load_patient, normalize_options, normalize_predictions
from precimed.planning.interactions import check_allergies, check_contraindications, check_interactions
from precimed.planning.knowledge_files import load_knowledge
from precimed.planning.pgx import GeneResult, genotypes_from_vcf, load_genotypes, phenotype, read_vcf, recommend
from precimed.planning.plan import make_plan
from precimed.planning.render import to_fhir_careplan, to_html, to_markdown
from precimed.planning.rulebook import RuleBook, evaluate_rules, load_rules

__all__ = [
    "GeneResult",
    "Patient",
    "RuleBook",
    "check_allergies",
    "check_contraindications",
    "check_interactions",
    "conditions",
    "conflicts",
    "crcl_cockcroft_gault",
    "dosing",
    "drug_vocabulary",
    "drugs",
    "egfr_ckd_epi_2021",
    "evaluate_rules",
    "factschema",
    "genotypes_from_vcf",
    "interactions",
    "iwpc_weekly_dose",
    "knowledge_files",
    "load_genotypes",
    "load_knowledge",
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
    "render",
    "renal_dose",
    "resolve",
    "rulebook",
    "rules",
    "to_fhir_careplan",
    "to_html",
    "to_markdown",
    "warfarin_suggestion",
]
