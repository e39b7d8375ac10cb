"""Behaviour of ``precimed.planning.pgx`` pinned exactly (issue 11, finding 13: mutation testing).

Each test asserts whole output structures and exact messages, so that a changed operator, string or argument in
pgx.py fails a test. Expected recommendations are written from the CPIC publications cited next to them, not read
from precimed's knowledge files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from precimed.errors import DataError
from precimed.planning import pgx
from precimed.planning.phenotypes import GeneResult

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_VCF = ROOT / "examples" / "patients" / "pgx_example.vcf"

CPIC_2023 = "CPIC database 2023-09-01"
CPIC_2024 = "CPIC database 2024-03-25"
VARIANTS_VERSION = "precimed-pgx-variants 1 (dbSNP b156; CPIC database 2023-09-01 allele definitions)"
RECOMMENDATIONS_VERSION = ("precimed-cpic-recommendations 2 (CPIC guidelines as cited per drug; thiopurines with the "
                           "CPIC March 2024 update)")
DRUGS = ["azathioprine", "capecitabine", "clopidogrel", "codeine", "fluorouracil", "mercaptopurine", "simvastatin",
         "thioguanine", "warfarin"]

# Guidelines, as cited with each recommendation.
CLOPIDOGREL = ("Lee CR et al. CPIC guideline for CYP2C19 genotype and clopidogrel therapy: 2022 update. "
               "Clin Pharmacol Ther 2022;112:959-967, Table 2")
WARFARIN = ("Johnson JA et al. CPIC guideline for pharmacogenetics-guided warfarin dosing: 2017 update. "
            "Clin Pharmacol Ther 2017;102:397-404, Figure 2")
THIOPURINES = ("Relling MV et al. CPIC guideline for thiopurine dosing based on TPMT and NUDT15 genotypes: "
               "2018 update. Clin Pharmacol Ther 2019;105:1095-1105, Tables 2-3")
DPYD = ("Amstutz U et al. CPIC guideline for DPYD genotype and fluoropyrimidine dosing: 2017 update. "
        "Clin Pharmacol Ther 2018;103:210-216, Table 2")


def results(**calls: str) -> dict[str, GeneResult]:
    res, problems = pgx.interpret(calls)
    assert problems == []
    return res


def vcf_text(changes: dict[str, str] | None = None, *, drop: tuple[str, ...] = (), samples: int = 1) -> str:
    names = "\t".join(f"S{i + 1}" for i in range(samples))
    lines = ["##fileformat=VCFv4.2", "##reference=GRCh38",
             f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{names}"]
    for v in pgx.variant_table().variants:
        if v.rsid not in drop:
            gt = (changes or {}).get(v.rsid, "0/0")
            cells = "\t".join([gt] * samples)
            lines.append(f"chr{v.chrom}\t{v.pos['GRCh38']}\t{v.rsid}\t{v.ref}\t{v.alt}\t.\tPASS\t.\tGT\t{cells}")
    return "\n".join(lines) + "\n"


# ----- tables and versions ------------------------------------------------------------------------------------------
def test_cpic_versions_name_every_gene_table_and_the_variant_and_recommendation_tables():
    assert pgx.cpic_versions() == {
        "CYP2C19": CPIC_2023, "CYP2C9": CPIC_2023, "CYP2D6": CPIC_2024, "DPYD": CPIC_2023, "NUDT15": CPIC_2023,
        "SLCO1B1": CPIC_2023, "TPMT": CPIC_2023, "variants": VARIANTS_VERSION,
        "recommendations": RECOMMENDATIONS_VERSION,
    }


def test_pgx_drugs_are_the_nine_drugs_with_a_cpic_table_sorted():
    assert pgx.pgx_drugs() == DRUGS


# ----- interpret ------------------------------------------------------------------------------------------------------
def test_interpret_of_nothing_is_empty():
    assert pgx.interpret(None) == ({}, [])
    assert pgx.interpret({}) == ({}, [])


def test_interpret_keeps_ready_results_under_their_own_gene_and_goes_on_with_the_next_call():
    ready = pgx.phenotype("CYP2C9", "*1/*3")
    res, problems = pgx.interpret({"anything": ready, "CYP2C19": "*1/*2"})
    assert problems == []
    assert list(res) == ["CYP2C9", "CYP2C19"]
    assert res["CYP2C9"] is ready
    assert res["CYP2C19"].phenotype == "Intermediate Metabolizer"


def test_interpret_reports_an_unknown_gene_and_goes_on_with_the_next_call():
    res, problems = pgx.interpret({"CYP3A4": "*1/*1", "cyp2c19": "*2/*2"})
    assert len(problems) == 1 and problems[0].startswith("unknown gene 'CYP3A4'")
    assert list(res) == ["CYP2C19"] and res["CYP2C19"].phenotype == "Poor Metabolizer"


def test_a_malformed_call_is_a_problem_and_an_indeterminate_result_citing_its_table():
    res, problems = pgx.interpret({"CYP2C19": "*1", "VKORC1": "A/T", "TPMT": "*1/*1"})
    diplotype_msg = ("CYP2C19: impossible diplotype '*1': a diplotype is exactly two alleles separated by '/' "
                     "(e.g. '*1/*2'); autosomal genes carry two copies")
    vkorc1_msg = "VKORC1: impossible genotype 'A/T': -1639 is G or A (forward strand C or T)"
    assert problems == [diplotype_msg, vkorc1_msg]
    assert list(res) == ["CYP2C19", "VKORC1", "TPMT"]
    table = pgx.gene_table("CYP2C19")
    assert res["CYP2C19"] == GeneResult("CYP2C19", None, "Indeterminate", source=table.source, version=CPIC_2023,
                                        notes=(f"the call could not be read: {diplotype_msg}",))
    # VKORC1 has no CPIC phenotype table: no source or version to cite
    assert res["VKORC1"] == GeneResult("VKORC1", None, "Indeterminate", source="", version="",
                                       notes=(f"the call could not be read: {vkorc1_msg}",))
    assert res["TPMT"].phenotype == "Normal Metabolizer"


# ----- merge ------------------------------------------------------------------------------------------------------
def test_merge_combines_vcf_and_call_results_gene_by_gene():
    vcf = {"CYP2C9": pgx.phenotype("CYP2C9", "*1/*3"), "CYP2C19": pgx.phenotype("CYP2C19", "*1/*2"),
           "TPMT": pgx.indeterminate("TPMT", None, "rs1142345 not genotyped"),
           "SLCO1B1": pgx.phenotype("SLCO1B1", "*1/*5"), "DPYD": pgx.phenotype("DPYD", "Reference/Reference")}
    vcf = {g: GeneResult(**{**r.__dict__, "origin": "vcf"}) for g, r in vcf.items()}
    calls = {"CYP2D6": pgx.phenotype("CYP2D6", "*1/*4"),          # only called
             "CYP2C19": pgx.phenotype("CYP2C19", "*2/*1"),        # agrees with the VCF
             "TPMT": pgx.phenotype("TPMT", "*1/*3A"),             # VCF could not tell
             "SLCO1B1": pgx.phenotype("SLCO1B1", "*1/*1"),        # disagrees
             "DPYD": pgx.phenotype("DPYD", "Reference/c.9999X>Y")}  # call indeterminate
    before = dict(vcf)
    out = pgx.merge(vcf, calls)
    assert vcf == before
    assert list(out) == ["CYP2C9", "CYP2C19", "TPMT", "SLCO1B1", "DPYD", "CYP2D6"]
    assert out["CYP2C9"] is vcf["CYP2C9"]
    assert out["CYP2D6"] is calls["CYP2D6"]
    assert out["TPMT"] is calls["TPMT"]
    assert out["CYP2C19"] == GeneResult(**{**calls["CYP2C19"].__dict__, "origin": "vcf+diplotype"})
    assert out["DPYD"] == calls["DPYD"] and out["DPYD"].origin == "diplotype"
    assert out["SLCO1B1"] == GeneResult(
        "SLCO1B1", "*1/*5 (VCF) vs *1/*1 (call)", "Indeterminate", origin="vcf+diplotype",
        notes=("the VCF gives Decreased Function but the diplotype call gives Normal Function; "
               "resolve the discrepancy",))


# ----- Genotypes and load_genotypes -------------------------------------------------------------------------------
def test_genotypes_read_like_a_mapping_with_empty_defaults():
    r = pgx.phenotype("CYP2C9", "*1/*3")
    g = pgx.Genotypes({"CYP2C9": r})
    assert g.problems == () and g.vcf == {}
    assert g["CYP2C9"] is r and list(g) == ["CYP2C9"] and len(g) == 1 and dict(g) == {"CYP2C9": r}
    assert len(pgx.Genotypes({})) == 0


def test_load_genotypes_without_input_is_empty():
    g = pgx.load_genotypes()
    assert (dict(g), g.problems, dict(g.vcf)) == ({}, (), {})


def test_load_genotypes_from_calls_only_keeps_the_problems_and_no_vcf_summary():
    g = pgx.load_genotypes(calls={"CYP2C19": "*1/*2", "CYP3A4": "*1/*1"})
    assert list(g) == ["CYP2C19"] and g.vcf == {}
    assert len(g.problems) == 1 and g.problems[0].startswith("unknown gene 'CYP3A4'")
    assert isinstance(g.problems, tuple)


def test_load_genotypes_from_a_vcf_states_what_reading_it_assumed():
    g = pgx.load_genotypes(EXAMPLE_VCF)
    assert g.problems == ()
    assert g.vcf == {"file": "pgx_example.vcf", "sample": "EXAMPLE01", "samples_in_file": 1, "build": "GRCh38",
                     "build_from": "header", "absent": "not-called",
                     "absent_read_as": "not called (gene Indeterminate)", "absent_positions": {}}
    assert g["CYP2C9"].origin == "vcf"


@pytest.mark.parametrize(("absent", "mode", "read_as", "phenotype"), [
    ("not-called", "not-called", "not called (gene Indeterminate)", "Indeterminate"),
    ("indeterminate", "not-called", "not called (gene Indeterminate)", "Indeterminate"),
    ("reference", "reference", "homozygous reference", "Normal Metabolizer"),
])
def test_load_genotypes_reads_absent_positions_as_told_and_says_so(absent, mode, read_as, phenotype):
    text = vcf_text(drop=("rs1057910", "rs1799853"))
    g = pgx.load_genotypes(text, absent=absent)
    assert g.vcf == {"file": "<vcf text>", "sample": "S1", "samples_in_file": 1, "build": "GRCh38",
                     "build_from": "header", "absent": mode, "absent_read_as": read_as,
                     "absent_positions": {"CYP2C9": ["rs1799853", "rs1057910"]}}
    assert g["CYP2C9"].phenotype == phenotype


def test_load_genotypes_passes_the_build_and_the_sample_to_the_vcf_reader():
    text = vcf_text(samples=2).replace("\tGT\t0/0\t0/0", "\tGT\t0/0\t0/1")  # S2 heterozygous everywhere
    with pytest.raises(DataError, match="2 samples"):
        pgx.load_genotypes(text)
    g = pgx.load_genotypes(text, sample="S2")
    assert (g.vcf["sample"], g.vcf["samples_in_file"]) == ("S2", 2)
    given = pgx.load_genotypes(vcf_text(), build="GRCh38")
    assert given.vcf["build_from"] == "given"
    with pytest.raises(DataError, match="its GRCh38 position: wrong build"):
        pgx.load_genotypes(vcf_text(), build="GRCh37")
    with pytest.raises(DataError, match="absent must be one of"):
        pgx.load_genotypes(absent="everything")


def test_load_genotypes_merges_the_vcf_with_the_calls():
    g = pgx.load_genotypes(EXAMPLE_VCF, {"CYP2C9": "*1/*3", "CYP2D6": "*1/*4"})
    assert g["CYP2C9"].origin == "vcf+diplotype" and g["CYP2D6"].origin == "diplotype"


# ----- rule facts -------------------------------------------------------------------------------------------------
def test_facts_from_results_give_phenotypes_scores_and_vkorc1_and_the_reason_of_each_missing_fact():
    res = {
        "VKORC1": pgx.phenotype("VKORC1", "A/A"),
        "CYP2C9": pgx.phenotype("CYP2C9", "*1/*3"),       # activity score 1.0
        "CYP2D6": pgx.phenotype("CYP2D6", "*1xN/*4"),     # score ">=3": only a lower bound, no fact
        "CYP2C19": pgx.phenotype("CYP2C19", "*1/*2"),     # no activity score
        "TPMT": GeneResult("TPMT", None, "Indeterminate", notes=("rs1142345 not genotyped", "rs1800460 no-call")),
        "DPYD": GeneResult("DPYD", "Reference/HapB3", "Intermediate Metabolizer", activity_score=0.0),
    }
    facts, reasons = pgx.facts_from_results(res)
    assert facts == {"VKORC1_rs9923231": "A/A", "CYP2C9_phenotype": "Intermediate Metabolizer",
                     "CYP2C9_activity_score": 1.0, "CYP2D6_phenotype": "Ultrarapid Metabolizer",
                     "CYP2C19_phenotype": "Intermediate Metabolizer", "DPYD_phenotype": "Intermediate Metabolizer",
                     "DPYD_activity_score": 0.0}
    why = "TPMT indeterminate: rs1142345 not genotyped; rs1800460 no-call"
    assert reasons == {"TPMT_phenotype": why, "TPMT_activity_score": why}


def test_an_indeterminate_or_uncalled_vkorc1_gives_no_fact_and_no_reason():
    for vk in (pgx.indeterminate("VKORC1", None, "rs9923231 not genotyped"),
               GeneResult("VKORC1", None, "G/G"), GeneResult("VKORC1", "", "G/G")):
        assert pgx.facts_from_results({"VKORC1": vk, "CYP2C9": pgx.phenotype("CYP2C9", "*1/*1")}) == (
            {"CYP2C9_phenotype": "Normal Metabolizer", "CYP2C9_activity_score": 2.0}, {})


# ----- recommend --------------------------------------------------------------------------------------------------
def test_an_unknown_drug_is_refused_listing_the_covered_drugs():
    with pytest.raises(DataError) as err:
        pgx.recommend(" Aspirin ", {"CYP2C19": pgx.phenotype("CYP2C19", "*1/*1")})
    assert str(err.value) == f"no CPIC recommendation table for drug ' Aspirin '; precimed covers {DRUGS}"
    assert err.value.column == "drug"


def test_no_recommendation_when_none_of_the_drugs_genes_was_genotyped():
    assert pgx.recommend("clopidogrel", {"CYP2C9": pgx.phenotype("CYP2C9", "*1/*1")}) is None
    assert pgx.recommend("mercaptopurine", {}) is None


def test_the_drug_name_is_read_in_any_case_and_the_whole_recommendation_is_exact():
    # Lee 2022 Table 2: CYP2C19 poor metabolizer -> avoid clopidogrel, prasugrel or ticagrelor (strong)
    rec = pgx.recommend("  Clopidogrel ", results(CYP2C19="*2/*2"))
    assert rec == pgx.PgxRecommendation(
        "clopidogrel", ("CYP2C19",), {"CYP2C19": "Poor Metabolizer"}, "avoid", "strong",
        "Avoid clopidogrel; use prasugrel or ticagrelor at standard dose if not contraindicated.",
        "prasugrel or ticagrelor", CLOPIDOGREL, {"CYP2C19": CPIC_2023}, ())
    assert rec.to_dict() == {
        "drug": "clopidogrel", "genes": ["CYP2C19"], "phenotypes": {"CYP2C19": "Poor Metabolizer"},
        "action": "avoid", "strength": "strong",
        "text": "Avoid clopidogrel; use prasugrel or ticagrelor at standard dose if not contraindicated.",
        "alternative": "prasugrel or ticagrelor", "source": CLOPIDOGREL, "versions": {"CYP2C19": CPIC_2023},
        "notes": []}


def test_to_dict_copies_notes_and_mappings_into_plain_lists_and_dicts():
    rec = pgx.recommend("azathioprine", results(TPMT="*1/*1"))
    d = rec.to_dict()
    assert type(d["genes"]) is list and type(d["notes"]) is list
    assert type(d["phenotypes"]) is dict and type(d["versions"]) is dict
    assert d["notes"] == ["NUDT15 not genotyped: monitor closely"]
    assert d["alternative"] is None and d["source"] == (
        "Relling MV et al. CPIC guideline for thiopurine dosing based on TPMT and NUDT15 genotypes: 2018 update. "
        "Clin Pharmacol Ther 2019;105:1095-1105, Tables 2-3")


def test_an_indeterminate_single_gene_gives_no_recommendation_with_the_phenotype_as_reason():
    res = {"CYP2C19": pgx.indeterminate("CYP2C19", None, "rs4244285 not genotyped", table=pgx.gene_table("CYP2C19"))}
    rec = pgx.recommend("clopidogrel", res)
    assert rec == pgx.PgxRecommendation(
        "clopidogrel", ("CYP2C19",), {"CYP2C19": "Indeterminate"}, None, None,
        "No genotype-guided recommendation: CYP2C19 phenotype Indeterminate", None, CLOPIDOGREL,
        {"CYP2C19": CPIC_2023}, ("CYP2C19 phenotype Indeterminate",))


def test_thiopurines_without_a_usable_phenotype_say_to_monitor_when_status_is_unknown():
    # Relling 2019 (CPIC thiopurines): unknown TPMT/NUDT15 status -> no genotype-guided dose
    res = {"TPMT": pgx.indeterminate("TPMT", None, "rs1142345 not genotyped"),
           "NUDT15": pgx.indeterminate("NUDT15", None, "rs116855232 not genotyped")}
    rec = pgx.recommend("thioguanine", res)
    notes = ("TPMT phenotype Indeterminate", "NUDT15 phenotype Indeterminate",
             "if the drug is required and status is unknown, monitor closely for toxicity")
    assert (rec.action, rec.strength, rec.alternative) == (None, None, None)
    assert rec.text == "No genotype-guided recommendation: " + "; ".join(notes) and rec.notes == notes
    assert rec.phenotypes == {"TPMT": "Indeterminate", "NUDT15": "Indeterminate"}
    assert rec.versions == {"TPMT": "", "NUDT15": ""}
    only_one = pgx.recommend("thioguanine", {"TPMT": res["TPMT"]})
    assert only_one.notes == ("TPMT phenotype Indeterminate",
                              "if the drug is required and status is unknown, monitor closely for toxicity")


def test_a_phenotype_without_a_cpic_line_counts_as_indeterminate_for_the_drug():
    # a determinate phenotype that the drug's table does not list (here a made-up one) gives no recommendation
    odd = GeneResult("TPMT", "*1/*1", "Rapid Metabolizer", version=CPIC_2023)
    rec = pgx.recommend("mercaptopurine", {"TPMT": odd, "NUDT15": pgx.phenotype("NUDT15", "*1/*1")})
    # Relling 2019 Table 3: NUDT15 normal metabolizer -> normal starting dose
    assert rec.action == "none" and rec.notes == ("TPMT indeterminate: monitor closely",)
    assert rec.phenotypes == {"TPMT": "Rapid Metabolizer", "NUDT15": "Normal Metabolizer"}


def test_one_thiopurine_gene_intermediate_and_the_other_indeterminate_takes_the_single_gene_line():
    # Relling 2019 Table 2: TPMT intermediate -> mercaptopurine 30-80% of normal (strong); not the 2024
    # both-intermediate line, since NUDT15 is unknown
    res = {"TPMT": pgx.phenotype("TPMT", "*1/*3A"), "NUDT15": pgx.indeterminate("NUDT15", None, "no call")}
    rec = pgx.recommend("mercaptopurine", res)
    assert (rec.action, rec.strength) == ("adjust_dose", "strong")
    assert rec.text.startswith("Start at 30-80% of the normal dose")
    assert rec.notes == ("NUDT15 indeterminate: monitor closely",)


@pytest.mark.parametrize("tpmt", ["*1/*3A", "*3A/*5"], ids=["IM", "possible-IM"])
def test_intermediate_for_both_thiopurine_genes_takes_the_2024_combined_line_with_its_note(tpmt):
    # CPIC thiopurine update, March 2024 (cpicpgx.org): IM (or possible IM) for both TPMT and NUDT15 -> 20-50%
    res = results(TPMT=tpmt, NUDT15="*1/*3")
    tpmt_pheno = res["TPMT"].phenotype
    rec = pgx.recommend("azathioprine", res)
    assert rec == pgx.PgxRecommendation(
        "azathioprine", ("TPMT", "NUDT15"), {"TPMT": tpmt_pheno, "NUDT15": "Intermediate Metabolizer"},
        "adjust_dose", "moderate",
        "Intermediate metabolizer for both TPMT and NUDT15: start at 20-50% of the normal dose and adjust by "
        "myelosuppression (CPIC update, March 2024).", None, THIOPURINES, {"TPMT": CPIC_2023, "NUDT15": CPIC_2023},
        (f"intermediate for TPMT ({tpmt_pheno}) and NUDT15 (Intermediate Metabolizer): the combined "
         "recommendation applies, not either gene's alone",))


@pytest.mark.parametrize(("tpmt", "nudt15", "decider", "text"), [
    # Relling 2019 Tables 2-3 (mercaptopurine): poor metabolizer of either gene decides over an intermediate or
    # a possible intermediate; when both are equally affected, the first listed gene (TPMT) gives the line
    ("*3A/*5", "*3/*3", "NUDT15", "Malignancy: start at 10 mg/m2/day"),
    ("*3A/*3A", "*1/*3", "TPMT", "Malignancy: start at a drastically reduced dose"),
    ("*3A/*5", "*1/*1", "TPMT", "Start at 30-80% of the normal dose"),
    ("*1/*1", "*1/*1", "TPMT", "Start with the normal dose (e.g. 75 mg/m2/day"),
    ("*3A/*3A", "*3/*3", "TPMT", "Malignancy: start at a drastically reduced dose"),
], ids=["possible-IM+PM", "PM+IM", "possible-IM+NM", "NM+NM", "PM+PM"])
def test_the_more_severe_thiopurine_phenotype_decides_and_ties_go_to_tpmt(tpmt, nudt15, decider, text):
    res = results(TPMT=tpmt, NUDT15=nudt15)
    rec = pgx.recommend("mercaptopurine", res)
    assert rec.text.startswith(text)
    assert rec.notes == (f"decided by {decider} ({res[decider].phenotype}), the more severe of "
                         f"TPMT {res['TPMT'].phenotype}, NUDT15 {res['NUDT15'].phenotype}",)


@pytest.mark.parametrize(("dpyd", "strength"), [("Reference/HapB3", "moderate"), ("Reference/*2A", "strong")])
def test_dpyd_intermediate_strength_follows_the_activity_score(dpyd, strength):
    # Amstutz 2018 Table 2: activity score 1.5 -> reduce 50% (moderate); score 1 -> reduce 50% (strong)
    rec = pgx.recommend("capecitabine", results(DPYD=dpyd))
    assert (rec.action, rec.strength, rec.notes, rec.guideline) == ("adjust_dose", strength, (), DPYD)
    assert rec.drug == "capecitabine"


def test_dpyd_intermediate_without_an_activity_score_keeps_the_table_strength():
    rec = pgx.recommend("fluorouracil", {"DPYD": GeneResult("DPYD", "?", "Intermediate Metabolizer")})
    assert (rec.action, rec.strength) == ("adjust_dose", "strong")
    odd = pgx.recommend("fluorouracil", {"DPYD": GeneResult("DPYD", "?", "Intermediate Metabolizer",
                                                             activity_score=1.25)})
    assert odd.strength == "strong"  # no score-specific strength for 1.2: the table's


def test_warfarin_with_both_genes_uses_the_algorithm_without_notes():
    # Johnson 2017 Figure 2: use a validated pharmacogenetic algorithm (strong)
    rec = pgx.recommend("warfarin", results(CYP2C9="*1/*3", VKORC1="G/A"))
    assert rec.phenotypes == {"CYP2C9": "Intermediate Metabolizer", "VKORC1": "G/A"}
    assert (rec.action, rec.strength, rec.notes, rec.guideline, rec.alternative) == (
        "adjust_dose", "strong", (), WARFARIN, None)
    assert rec.versions == {"CYP2C9": CPIC_2023, "VKORC1": pgx.phenotype("VKORC1", "G/A").version}


def test_warfarin_with_an_indeterminate_gene_notes_the_unknown_term_and_with_none_gives_no_recommendation():
    vk = pgx.indeterminate("VKORC1", None, "rs9923231 not genotyped")
    rec = pgx.recommend("warfarin", {"CYP2C9": pgx.phenotype("CYP2C9", "*1/*1"), "VKORC1": vk})
    assert rec.phenotypes == {"CYP2C9": "Normal Metabolizer", "VKORC1": "Indeterminate"}
    assert rec.action == "adjust_dose"
    assert rec.notes == ("VKORC1 not available: the algorithm uses its 'unknown' term",)
    c9 = pgx.indeterminate("CYP2C9", None, "rs1057910 not genotyped")
    none = pgx.recommend("warfarin", {"CYP2C9": c9, "VKORC1": vk})
    assert none == pgx.PgxRecommendation(
        "warfarin", ("CYP2C9", "VKORC1"), {"CYP2C9": "Indeterminate", "VKORC1": "Indeterminate"}, None, None,
        "No genotype-guided recommendation: CYP2C9 indeterminate; VKORC1 indeterminate", None, WARFARIN,
        {"CYP2C9": "", "VKORC1": ""}, ("CYP2C9 indeterminate", "VKORC1 indeterminate"))


def test_the_recommendation_table_has_the_shape_the_engine_relies_on():
    """Six equivalent mutants in mutation/equivalent.toml are equivalent only because of this shape: every gene of
    every drug has its own phenotype table, and a drug decided by the more severe of two genes lists only phenotypes
    the engine can rank. A table edit that breaks it fails here, not silently in a plan."""
    from precimed.planning.pgx import _SEVERITY, _recommendation_table

    for drug, entry in _recommendation_table()["drugs"].items():
        assert entry["genes"], drug
        if "any_result" in entry:  # one recommendation for any result (warfarin: the dosing algorithm)
            continue
        for gene in entry["genes"]:
            assert isinstance(entry.get(gene), dict) and entry[gene], f"{drug}: no table for {gene}"
        if len(entry["genes"]) > 1 and "both_intermediate" in entry:
            for gene in entry["genes"]:
                assert set(entry[gene]) <= set(_SEVERITY), f"{drug}/{gene}: a phenotype the engine cannot rank"
