"""Pharmacogenomics: diplotype → phenotype against pypgx's shipped CPIC tables, VCF reading on both builds,
unknown stays unknown, CPIC recommendations."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pandas as pd
import pytest

from precimed.errors import DataError
from precimed.planning import pgx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_VCF = ROOT / "examples" / "patients" / "pgx_example.vcf"
pypgx = pytest.importorskip("pypgx")  # dev dependency: used only here, as an independent cross-check
PYPGX_DATA = Path(pypgx.__file__).parent / "api" / "data"

#: CYP2D6 alleles whose activity value differs between precimed's CPIC table (database 2024-03-25) and the
#: older CPIC release that pypgx ships: *52 *91 *109 *119 *132 *144 gained values, *57 was withdrawn.
CYP2D6_VERSION_DIFFERENCES = {"*52", "*57", "*91", "*109", "*119", "*132", "*144"}


@pytest.fixture(scope="module")
def pypgx_tables():
    read = lambda name: pd.read_csv(PYPGX_DATA / f"{name}.csv")  # noqa: E731
    return read("diplotype-table"), read("allele-table"), read("equation-table"), read("variant-table")


def pypgx_score_phenotype(equations: pd.DataFrame, gene: str, score: float) -> str:
    """pypgx's score → phenotype equations ('1 <= score < 2', '2 == score'), read without eval."""
    for _, row in equations[equations.Gene == gene].iterrows():
        text = row.Equation.replace(" ", "")
        m = re.fullmatch(r"([\d.]+)<=score<([\d.]+)", text)
        if m and float(m.group(1)) <= score < float(m.group(2)):
            return row.Phenotype
        m = re.fullmatch(r"([\d.]+)==score", text)
        if m and score == float(m.group(1)):
            return row.Phenotype
        m = re.fullmatch(r"([\d.]+)<=score", text)
        if m and score >= float(m.group(1)):
            return row.Phenotype
    return pgx.INDETERMINATE


@pytest.mark.parametrize("gene", ["CYP2C19", "TPMT", "NUDT15", "SLCO1B1"])
def test_every_diplotype_in_pypgx_gets_the_same_phenotype(gene, pypgx_tables):
    diplotypes = pypgx_tables[0][pypgx_tables[0].Gene == gene]
    mismatches = [(r.Diplotype, r.Phenotype, pgx.phenotype(gene, r.Diplotype).phenotype)
                  for r in diplotypes.itertuples() if pgx.phenotype(gene, r.Diplotype).phenotype != r.Phenotype]
    expected = {"CYP2C19": 630, "TPMT": 946, "NUDT15": 45, "SLCO1B1": 990}[gene]
    assert len(diplotypes) == expected
    assert mismatches == []


def _score_pairs(alleles: pd.DataFrame, equations: pd.DataFrame, gene: str):
    rows = list(alleles[alleles.Gene == gene].itertuples())
    for a, b in itertools.combinations_with_replacement(rows, 2):
        try:
            theirs = pypgx_score_phenotype(equations, gene, float(a.ActivityScore) + float(b.ActivityScore))
        except ValueError:
            theirs = pgx.INDETERMINATE
        if pd.isna(a.ActivityScore) or pd.isna(b.ActivityScore):
            theirs = pgx.INDETERMINATE
        yield a.StarAllele, b.StarAllele, theirs, pgx.phenotype(gene, f"{a.StarAllele}/{b.StarAllele}").phenotype


@pytest.mark.parametrize(("gene", "pairs"), [("CYP2C9", 2556), ("DPYD", 3486)])
def test_every_allele_pair_scores_to_the_pypgx_phenotype(gene, pairs, pypgx_tables):
    _, alleles, equations, _ = pypgx_tables
    results = list(_score_pairs(alleles, equations, gene))
    assert len(results) == pairs
    assert [r for r in results if r[2] != r[3]] == []


def test_cyp2d6_agrees_with_pypgx_except_for_alleles_whose_cpic_value_changed(pypgx_tables):
    _, alleles, equations, _ = pypgx_tables
    results = list(_score_pairs(alleles, equations, "CYP2D6"))
    mismatches = [r for r in results if r[2] != r[3]]
    assert len(results) == 8646
    assert len(mismatches) == 435  # 8211 of 8646 agree
    assert all({r[0], r[1]} & CYP2D6_VERSION_DIFFERENCES for r in mismatches)


def test_key_variant_positions_match_pypgx_on_both_builds(pypgx_tables):
    variants = pypgx_tables[3]
    for v in pgx.variant_table().variants:
        rows = variants[(variants.rsID == v.rsid) & (variants.Variant == v.alt)]
        assert len(rows) == 1, v.rsid
        row = rows.iloc[0]
        assert (str(row.Chromosome), row.GRCh37Position, row.GRCh38Position, row.GRCh38Allele) == \
            (v.chrom, v.pos["GRCh37"], v.pos["GRCh38"], v.ref), v.rsid


# ----- phenotype calls ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("gene", "call", "phenotype", "score"), [
    ("CYP2C19", "*2/*1", "Intermediate Metabolizer", None),
    ("CYP2C19", "*17/*17", "Ultrarapid Metabolizer", None),
    ("CYP2C19", "*2/*9", "Likely Poor Metabolizer", None),
    ("CYP2C9", "*1/*3", "Intermediate Metabolizer", 1.0),
    ("CYP2C9", "*3/*3", "Poor Metabolizer", 0.0),
    ("CYP2D6", "*1/*1x2", "Ultrarapid Metabolizer", 3.0),
    ("CYP2D6", "*4/*41", "Intermediate Metabolizer", 0.25),
    ("CYP2D6", "*4/*4", "Poor Metabolizer", 0.0),
    ("CYP2D6", "*4/*36+*10", "Intermediate Metabolizer", 0.25),
    ("DPYD", "*2A/HapB3", "Poor Metabolizer", 0.5),
    ("DPYD", "Reference/c.2846A>T", "Intermediate Metabolizer", 1.5),
    ("TPMT", "*1/*3A", "Intermediate Metabolizer", None),
    ("NUDT15", "*3/*3", "Poor Metabolizer", None),
    ("SLCO1B1", "*5/*15", "Poor Function", None),
])
def test_diplotypes_map_to_cpic_phenotypes(gene, call, phenotype, score):
    r = pgx.phenotype(gene, call)
    assert r.phenotype == phenotype
    assert r.activity_score == score
    assert r.version.startswith("CPIC database")


def test_allele_order_and_gene_prefix_do_not_matter():
    assert pgx.phenotype("cyp2c19", "CYP2C19*2/CYP2C19*1").diplotype == "*1/*2"


def test_three_or_more_cyp2d6_copies_are_a_lower_bound():
    r = pgx.phenotype("CYP2D6", "*1xN/*4")
    assert r.phenotype == "Ultrarapid Metabolizer" and r.activity_score_text == ">=3"
    unsure = pgx.phenotype("CYP2D6", "*4/*10xN")  # 0.75 or more: IM or NM
    assert unsure.phenotype == pgx.INDETERMINATE


@pytest.mark.parametrize(("gene", "call", "why"), [
    ("CYP2C19", "*1/*99", "not in the CPIC CYP2C19 table"),
    ("CYP2C19", "*1/*12", "no CPIC phenotype for allele functions"),
    ("CYP2C9", "*1/*7", "no CPIC activity value"),
    ("CYP2D6", "*1/*57", "not in the CPIC CYP2D6 table"),
])
def test_an_unknown_or_uncertain_allele_is_indeterminate_never_normal(gene, call, why):
    r = pgx.phenotype(gene, call)
    assert r.phenotype == "Indeterminate" and not r.determinate
    assert why in r.notes[0]


@pytest.mark.parametrize("call", ["*1", "*1/*2/*3", "*1/", "", "*1*2"])
def test_a_diplotype_that_is_not_two_alleles_is_refused(call):
    with pytest.raises(DataError, match="diplotype"):
        pgx.phenotype("CYP2C19", call)


def test_an_unknown_gene_is_refused_listing_the_supported_ones():
    with pytest.raises(DataError, match=r"unknown gene 'CYP3A4'.*CYP2C19"):
        pgx.phenotype("CYP3A4", "*1/*1")


def test_vkorc1_reads_gene_or_forward_strand_letters_and_refuses_others():
    assert pgx.phenotype("VKORC1", "A/G").diplotype == "G/A"
    assert pgx.phenotype("VKORC1", "C/T").diplotype == "G/A"
    with pytest.raises(DataError, match="impossible genotype"):
        pgx.phenotype("VKORC1", "A/T")
    with pytest.raises(DataError, match="impossible genotype"):
        pgx.phenotype("VKORC1", "G/A/A")


# ----- VCF ----------------------------------------------------------------------------------------------------------
def vcf(records: list[tuple[str, int, str, str, str, str]], header: str = "##reference=GRCh38") -> str:
    lines = ["##fileformat=VCFv4.2", header, "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1"]
    lines += [f"{c}\t{p}\t{i}\t{r}\t{a}\t.\tPASS\t.\tGT\t{g}" for c, p, i, r, a, g in records]
    return "\n".join(lines) + "\n"


def all_reference(build: str, changes: dict[str, str] | None = None, *, chr_prefix: bool = True):
    recs = []
    for v in pgx.variant_table().variants:
        chrom = f"chr{v.chrom}" if chr_prefix else v.chrom
        recs.append((chrom, v.pos[build], v.rsid, v.ref, v.alt, (changes or {}).get(v.rsid, "0/0")))
    return recs


def test_the_example_vcf_gives_the_documented_genotypes():
    res = pgx.genotypes_from_vcf(EXAMPLE_VCF)
    assert res["CYP2C9"].diplotype == "*1/*3" and res["CYP2C19"].diplotype == "*1/*2"
    assert res["VKORC1"].diplotype == "G/A" and res["SLCO1B1"].diplotype == "*1/*5"
    assert res["DPYD"].phenotype == "Normal Metabolizer" and res["TPMT"].diplotype == "*1/*1"
    assert all(r.origin == "vcf" for r in res.values())


@pytest.mark.parametrize("build", ["GRCh37", "GRCh38"])
def test_both_builds_give_the_same_calls_and_the_build_is_inferred_from_positions(build):
    changes = {"rs4244285": "1/1", "rs1800460": "0/1", "rs1142345": "0|1", "rs3918290": "0/1"}
    text = vcf(all_reference(build, changes, chr_prefix=build == "GRCh38"), header="##source=test")
    g = pgx.read_vcf(text)
    assert g.build == build and "inferred" in g.notes[0]
    res = pgx.call_genes(g)
    assert res["CYP2C19"].phenotype == "Poor Metabolizer"
    assert res["TPMT"].diplotype == "*1/*3A" and res["TPMT"].candidates == ("*1/*3A", "*3B/*3C")
    assert res["DPYD"].activity_score == 1.0


def test_unphased_calls_with_one_phenotype_are_reported_as_alternatives():
    text = vcf(all_reference("GRCh38", {"rs2306283": "0/1", "rs4149056": "0/1"}))
    r = pgx.genotypes_from_vcf(text)["SLCO1B1"]
    assert r.phenotype == "Decreased Function" and set(r.candidates) == {"*1/*15", "*5/*37"}


def test_a_position_missing_from_the_vcf_makes_the_gene_indeterminate_unless_told_otherwise():
    recs = [r for r in all_reference("GRCh38") if r[2] != "rs1057910"]
    res = pgx.genotypes_from_vcf(vcf(recs))
    assert res["CYP2C9"].phenotype == "Indeterminate" and "rs1057910" in res["CYP2C9"].notes[0]
    assert res["CYP2C19"].phenotype == "Normal Metabolizer"
    assumed = pgx.genotypes_from_vcf(vcf(recs), absent="reference")["CYP2C9"]
    assert assumed.phenotype == "Normal Metabolizer" and any("read as reference" in n for n in assumed.notes)


def test_no_calls_and_failed_filters_are_not_genotyped():
    recs = all_reference("GRCh38", {"rs4244285": "./."})
    assert pgx.genotypes_from_vcf(vcf(recs))["CYP2C19"].phenotype == "Indeterminate"


@pytest.mark.parametrize(("change", "message"), [
    ({"rs4244285": "0/1/1"}, "impossible genotype '0/1/1'"),
    ({"rs4244285": "0/2"}, "allele index beyond ALT"),
    ({"rs4244285": "1"}, "exactly two alleles"),
])
def test_an_impossible_genotype_is_refused_naming_the_variant(change, message):
    with pytest.raises(DataError, match=rf"rs4244285 {message}" if "impossible" in message else message):
        pgx.read_vcf(vcf(all_reference("GRCh38", change)))


def test_a_wrong_reference_allele_or_build_is_refused():
    recs = all_reference("GRCh38")
    recs[0] = (*recs[0][:3], "T", *recs[0][4:])  # rs4244285: REF is G
    with pytest.raises(DataError, match="REF is 'T', expected 'G'"):
        pgx.read_vcf(vcf(recs))
    with pytest.raises(DataError, match="GRCh37 position: wrong build"):
        pgx.read_vcf(vcf(all_reference("GRCh37")), build="GRCh38")


def test_a_vcf_with_several_samples_needs_the_sample_named():
    text = vcf(all_reference("GRCh38")).replace("\tS1", "\tS1\tS2").replace("GT\t0/0", "GT\t0/0\t0/1")
    with pytest.raises(DataError, match="2 samples"):
        pgx.read_vcf(text)
    assert pgx.read_vcf(text, sample="S2").calls["rs4244285"].alt_copies == 1


def test_diplotype_calls_and_the_vcf_combine_and_disagreement_is_indeterminate():
    merged = pgx.load_genotypes(EXAMPLE_VCF, {"CYP2D6": "*1/*4"})
    assert merged["CYP2D6"].phenotype == "Intermediate Metabolizer" and merged["CYP2C9"].diplotype == "*1/*3"
    clash = pgx.load_genotypes(EXAMPLE_VCF, {"CYP2C19": "*1/*1"})
    assert clash["CYP2C19"].phenotype == "Indeterminate" and "resolve the discrepancy" in clash["CYP2C19"].notes[0]


# ----- recommendations ----------------------------------------------------------------------------------------------
def results(**calls):
    return pgx.interpret(calls)[0]


@pytest.mark.parametrize(("drug", "calls", "action", "strength"), [
    ("clopidogrel", {"CYP2C19": "*2/*2"}, "avoid", "strong"),
    ("clopidogrel", {"CYP2C19": "*1/*2"}, "prefer_alternative", "strong"),
    ("clopidogrel", {"CYP2C19": "*1/*17"}, "none", "strong"),
    ("codeine", {"CYP2D6": "*1/*1x2"}, "avoid", "strong"),
    ("codeine", {"CYP2D6": "*4/*4"}, "avoid", "strong"),
    ("fluorouracil", {"DPYD": "Reference/HapB3"}, "adjust_dose", "moderate"),
    ("capecitabine", {"DPYD": "Reference/*2A"}, "adjust_dose", "strong"),
    ("capecitabine", {"DPYD": "*2A/*2A"}, "avoid", "strong"),
    ("simvastatin", {"SLCO1B1": "*5/*5"}, "avoid", "strong"),
    ("simvastatin", {"SLCO1B1": "*1/*5"}, "prefer_alternative", "strong"),
    ("warfarin", {"CYP2C9": "*1/*3", "VKORC1": "G/A"}, "adjust_dose", "strong"),
])
def test_cpic_recommendations_follow_the_phenotype(drug, calls, action, strength):
    rec = pgx.recommend(drug, results(**calls))
    assert (rec.action, rec.strength) == (action, strength)
    assert "Clin Pharmacol Ther" in rec.guideline


def test_thiopurines_follow_the_more_severe_of_tpmt_and_nudt15():
    rec = pgx.recommend("mercaptopurine", results(TPMT="*1/*3A", NUDT15="*3/*3"))
    assert rec.phenotypes == {"TPMT": "Intermediate Metabolizer", "NUDT15": "Poor Metabolizer"}
    assert "10 mg/m2/day" in rec.text and "decided by NUDT15" in rec.notes[-1]
    only_tpmt = pgx.recommend("azathioprine", results(TPMT="*1/*1"))
    assert only_tpmt.action == "none" and any("NUDT15 not genotyped" in n for n in only_tpmt.notes)


def test_an_indeterminate_phenotype_gives_no_recommendation_and_says_so():
    rec = pgx.recommend("clopidogrel", results(CYP2C19="*1/*12"))
    assert rec.action is None and rec.text.startswith("No genotype-guided recommendation")
    assert pgx.recommend("clopidogrel", {}) is None


def test_recommendations_agree_with_pypgx_on_which_phenotypes_have_one(pypgx_tables):
    table = pd.read_csv(PYPGX_DATA / "recommendation-table.csv", keep_default_na=False, na_values=[""])
    single = {"clopidogrel": "CYP2C19", "codeine": "CYP2D6", "fluorouracil": "DPYD", "capecitabine": "DPYD",
              "simvastatin": "SLCO1B1"}
    checked = 0
    for drug, gene in single.items():
        for row in table[(table.Drug == drug) & (table.Gene1 == gene)].itertuples():
            ours = pgx._recommendation_table()["drugs"][drug][gene].get(row.Phenotype1)
            theirs = None if pd.isna(row.Recommendation) or row.Recommendation == "None" else row.Recommendation
            assert (ours is None) == (theirs is None), (drug, row.Phenotype1)
            if theirs and theirs.lower().startswith("avoid"):
                assert ours["action"] in ("avoid", "prefer_alternative"), (drug, row.Phenotype1)
            checked += 1
    assert checked == 25


def test_an_unknown_drug_has_no_cpic_table():
    with pytest.raises(DataError, match="no CPIC recommendation table for drug 'aspirin'"):
        pgx.recommend("aspirin", {})
