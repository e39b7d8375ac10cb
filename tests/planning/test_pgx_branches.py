"""Branches no test exercised before (issue 11, finding 13), each checked against the published table value:
VCF rows whose ID is "." (called by position), DPYD two-copy calls from a VCF, TPMT intermediate with NUDT15
normal (which gene decides), and warfarin with only one of CYP2C9 / VKORC1 genotyped.

The expected values are written here from the publications, not read from precimed's knowledge files, so a wrong
number in a table fails a test.
"""

from __future__ import annotations

import math

import pytest

from precimed.errors import DataError
from precimed.planning import load_rules, make_plan, pgx

BOOK = load_rules()
PROV = {"test": "pgx-branches"}


def vcf(changes: dict[str, str] | None = None, *, build: str = "GRCh38", ids: bool = True,
        header: str = "##reference=GRCh38", drop: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> str:
    """A one-sample VCF at every key position (reference unless `changes` says otherwise)."""
    lines = ["##fileformat=VCFv4.2", header, "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1", *extra]
    for v in pgx.variant_table().variants:
        if v.rsid not in drop:
            gt = (changes or {}).get(v.rsid, "0/0")
            rsid = v.rsid if ids else "."
            lines.append(f"chr{v.chrom}\t{v.pos[build]}\t{rsid}\t{v.ref}\t{v.alt}\t.\tPASS\t.\tGT\t{gt}")
    return "\n".join(lines) + "\n"


def calls(results: dict) -> dict[str, tuple]:
    return {g: (r.diplotype, r.phenotype, r.activity_score) for g, r in results.items()}


# ----- VCF rows whose ID is "." ---------------------------------------------------------------------------------
CHANGES = {"rs4244285": "0/1", "rs1057910": "0/1", "rs9923231": "1/1", "rs1800460": "0/1", "rs1142345": "0/1",
           "rs67376798": "0/1", "rs4149056": "0/1"}


@pytest.mark.parametrize("build", ["GRCh37", "GRCh38"])
@pytest.mark.parametrize("header", ["##reference=GRCh38", "##source=no build hint"])
def test_rows_without_an_rsid_are_called_by_position_exactly_like_rows_with_one(build, header):
    if build == "GRCh37" and "GRCh38" in header:
        header = "##reference=GRCh37"
    by_id = pgx.genotypes_from_vcf(vcf(CHANGES, build=build, header=header))
    by_position = pgx.genotypes_from_vcf(vcf(CHANGES, build=build, header=header, ids=False))
    assert calls(by_position) == calls(by_id)
    assert by_position["CYP2C19"].diplotype == "*1/*2" and by_position["CYP2C9"].diplotype == "*1/*3"
    assert by_position["VKORC1"].diplotype == "A/A" and by_position["TPMT"].diplotype == "*1/*3A"
    read = pgx.read_vcf(vcf(CHANGES, build=build, header=header, ids=False))
    assert read.build == build and len(read.calls) == len(pgx.variant_table().variants)


def test_an_indel_without_an_rsid_at_a_key_position_is_another_variant_and_is_skipped():
    rs = pgx.variant_table().by_rsid()["rs4244285"]
    indel = f"chr10\t{rs.pos['GRCh38']}\t.\t{rs.ref}TT\t{rs.ref}\t.\tPASS\t.\tGT\t0/1"  # before the SNV record
    res = pgx.genotypes_from_vcf(vcf({"rs4244285": "0/1"}, ids=False, extra=(indel,)))
    assert res["CYP2C19"].diplotype == "*1/*2"


def test_a_single_base_row_without_an_rsid_whose_ref_differs_is_refused_naming_the_variant():
    rs = pgx.variant_table().by_rsid()["rs4244285"]
    text = vcf(ids=False).replace(f"\t{rs.pos['GRCh38']}\t.\tG\tA", f"\t{rs.pos['GRCh38']}\t.\tT\tA")
    with pytest.raises(DataError, match=r"rs4244285 REF is 'T', expected 'G'"):
        pgx.read_vcf(text)


# ----- DPYD: two copies from a VCF ------------------------------------------------------------------------------
# Amstutz U et al. CPIC DPYD guideline, Clin Pharmacol Ther 2018;103:210-216: Table 1 (activity values: c.1905+1G>A
# (*2A) 0, c.1679T>G (*13) 0, c.2846A>T 0.5, HapB3 0.5; score = sum of the two lowest; 0-0.5 poor, 1-1.5
# intermediate, 2 normal) and Table 2 (score 0 or 0.5: avoid, strong; score 1: reduce 50%, strong).
@pytest.mark.parametrize(("changes", "diplotype", "score", "phenotype", "action", "strength"), [
    ({"rs3918290": "1/1"}, "c.1905+1G>A (*2A)/c.1905+1G>A (*2A)", 0.0, "Poor Metabolizer", "avoid", "strong"),
    ({"rs67376798": "1/1"}, "c.2846A>T/c.2846A>T", 1.0, "Intermediate Metabolizer", "adjust_dose", "strong"),
    ({"rs75017182": "1|1"}, "c.1129-5923C>G, c.1236G>A (HapB3)/c.1129-5923C>G, c.1236G>A (HapB3)", 1.0,
     "Intermediate Metabolizer", "adjust_dose", "strong"),
    ({"rs55886062": "0/1", "rs67376798": "0/1"}, "c.1679T>G (*13)/c.2846A>T", 0.5, "Poor Metabolizer", "avoid",
     "strong"),
    ({"rs3918290": "1/1", "rs67376798": "0/1"}, "c.1905+1G>A (*2A)/c.1905+1G>A (*2A)", 0.0, "Poor Metabolizer",
     "avoid", "strong"),
], ids=["*2A-homozygous", "c.2846T-homozygous", "HapB3-homozygous", "*13+c.2846T", "three-copies"])
def test_a_dpyd_two_copy_call_from_a_vcf_gets_the_cpic_score_phenotype_and_recommendation(
        changes, diplotype, score, phenotype, action, strength):
    dpyd = pgx.genotypes_from_vcf(vcf(changes))["DPYD"]
    assert (dpyd.diplotype, dpyd.activity_score, dpyd.phenotype) == (diplotype, score, phenotype)
    for drug in ("fluorouracil", "capecitabine"):
        rec = pgx.recommend(drug, {"DPYD": dpyd})
        assert (rec.action, rec.strength) == (action, strength)


def test_a_dpyd_poor_metabolizer_from_a_vcf_blocks_a_planned_fluorouracil_in_the_plan():
    facts = {"age": 60, "sex": "male", "planned_drugs": ["fluorouracil"]}
    plan = make_plan(facts, {}, rules=BOOK, genotypes=pgx.load_genotypes(vcf({"rs3918290": "1/1"})), provenance=PROV)
    rec = next(r for r in plan["recommendations"] if r["rule_id"] == "cpic-fluorouracil")
    assert rec["status"] == "active" and rec["actions"][0]["type"] == "avoid"
    assert plan["pharmacogenomics"]["genes"]["DPYD"]["activity_score"] == 0.0


# ----- thiopurines: TPMT intermediate, NUDT15 normal ------------------------------------------------------------
# Relling MV et al. CPIC thiopurine guideline 2018 update, Clin Pharmacol Ther 2019;105:1095-1105, Figure 2 and
# Tables 2-3: the starting dose follows the more affected gene, so TPMT IM + NUDT15 NM takes TPMT IM's line:
# mercaptopurine 30-80% (strong), azathioprine 30-80% (strong), thioguanine 50-80% (moderate).
# CPIC update of March 2024 (cpicpgx.org thiopurine page): IM for both genes starts at 20-50%.
TPMT_IM = {"mercaptopurine": ("30-80%", "strong"), "azathioprine": ("30-80%", "strong"),
           "thioguanine": ("50-80%", "moderate")}


@pytest.mark.parametrize("drug", sorted(TPMT_IM))
@pytest.mark.parametrize(("tpmt", "nudt15", "decider"), [("*1/*3A", "*1/*1", "TPMT"), ("*1/*1", "*1/*3", "NUDT15")])
def test_the_intermediate_gene_decides_over_the_normal_one_with_the_published_dose(drug, tpmt, nudt15, decider):
    results = pgx.interpret({"TPMT": tpmt, "NUDT15": nudt15})[0]
    rec = pgx.recommend(drug, results)
    share, strength = TPMT_IM[drug]
    assert rec.action == "adjust_dose" and rec.strength == strength and share in rec.text
    assert rec.notes == (f"decided by {decider} (Intermediate Metabolizer), the more severe of TPMT "
                         f"{results['TPMT'].phenotype}, NUDT15 {results['NUDT15'].phenotype}",)


@pytest.mark.parametrize("drug", sorted(TPMT_IM))
def test_intermediate_for_both_genes_takes_the_lower_combined_starting_dose(drug):
    rec = pgx.recommend(drug, pgx.interpret({"TPMT": "*1/*3A", "NUDT15": "*1/*3"})[0])
    assert rec.action == "adjust_dose" and "20-50%" in rec.text and "30-80%" not in rec.text


def test_tpmt_intermediate_from_a_vcf_with_nudt15_normal_reduces_a_planned_mercaptopurine():
    genotypes = pgx.load_genotypes(vcf({"rs1800460": "0/1", "rs1142345": "0/1"}))  # TPMT *1/*3A, NUDT15 *1/*1
    plan = make_plan({"planned_drugs": ["mercaptopurine"]}, {}, rules=BOOK, genotypes=genotypes, provenance=PROV)
    rec = next(r for r in plan["recommendations"] if r["rule_id"] == "cpic-mercaptopurine")
    assert rec["status"] == "active" and rec["actions"][0]["type"] == "adjust_dose" and "30-80%" in rec["text"]
    assert rec["phenotypes"] == {"TPMT": "Intermediate Metabolizer", "NUDT15": "Normal Metabolizer"}


# ----- warfarin with one of CYP2C9 / VKORC1 -----------------------------------------------------------------------
# IWPC pharmacogenetic algorithm, Klein TE et al. N Engl J Med 2009;360:753-764, Supplementary Appendix:
# sqrt(weekly dose) = 5.6044 - 0.2614 age(decades) + 0.0087 height(cm) + 0.0128 weight(kg)
#   - 0.8677 VKORC1 A/G - 1.6974 A/A - 0.4854 VKORC1 unknown
#   - 0.5211 *1/*2 - 0.9357 *1/*3 - 1.0616 *2/*2 - 1.9206 *2/*3 - 2.3312 *3/*3 - 0.2188 CYP2C9 unknown
#   - 0.1092 Asian - 0.2760 Black - 0.1032 missing or mixed race + 1.1816 enzyme inducer - 0.5503 amiodarone
WARFARIN_PATIENT = {"age": 67, "sex": "female", "weight_kg": 68, "height_cm": 160, "race": "white",
                    "medications": [], "planned_drugs": ["warfarin"]}
BASE = 5.6044 - 0.2614 * 6 + 0.0087 * 160 + 0.0128 * 68


@pytest.mark.parametrize(("genotypes", "genetic_terms", "missing"), [
    ({"VKORC1": "G/A"}, -0.8677 - 0.2188, "CYP2C9"),
    ({"CYP2C9": "*1/*3"}, -0.9357 - 0.4854, "VKORC1"),
    ({"VKORC1": "A/A"}, -1.6974 - 0.2188, "CYP2C9"),
    ({"CYP2C9": "*2/*3"}, -1.9206 - 0.4854, "VKORC1"),
], ids=["VKORC1-only", "CYP2C9-only", "VKORC1-AA-only", "CYP2C9-*2/*3-only"])
def test_warfarin_with_one_gene_genotyped_uses_the_iwpc_unknown_term_for_the_other(genotypes, genetic_terms,
                                                                                 missing):
    plan = make_plan(WARFARIN_PATIENT, {}, rules=BOOK, genotypes=genotypes, provenance=PROV)
    pgx_dose = next(d for d in plan["dose_suggestions"] if d.get("method") == "IWPC pharmacogenetic")
    assert pgx_dose["value"] == pytest.approx((BASE + genetic_terms) ** 2, abs=0.01)
    assert pgx_dose["details"]["inputs"][missing] == "unknown"
    assert f"{missing} genotype not available" in " ".join(pgx_dose["details"]["notes"])
    rec = next(r for r in plan["recommendations"] if r["rule_id"] == "cpic-warfarin")
    assert rec["status"] == "active" and rec["actions"][0]["type"] == "adjust_dose"  # CPIC 2017: use an algorithm
    assert rec["notes"] == [f"{missing} not available: the algorithm uses its 'unknown' term"]


def test_warfarin_from_a_vcf_without_the_vkorc1_row_uses_the_vkorc1_unknown_term():
    genotypes = pgx.load_genotypes(vcf({"rs1057910": "0/1"}, drop=("rs9923231",)))  # CYP2C9 *1/*3
    plan = make_plan(WARFARIN_PATIENT, {}, rules=BOOK, genotypes=genotypes, provenance=PROV)
    assert plan["pharmacogenomics"]["genes"]["VKORC1"]["phenotype"] == "Indeterminate"
    pgx_dose = next(d for d in plan["dose_suggestions"] if d.get("method") == "IWPC pharmacogenetic")
    assert pgx_dose["value"] == pytest.approx((BASE - 0.9357 - 0.4854) ** 2, abs=0.01)
    assert math.isclose(pgx_dose["details"]["terms"]["VKORC1 unknown"], -0.4854)
