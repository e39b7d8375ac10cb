"""Pharmacogenomics: genotypes from a VCF (key variants by rsID, GRCh37 or GRCh38) or from diplotype calls;
gene → diplotype → phenotype (activity score where CPIC uses one) → CPIC recommendation.

Tables (``knowledge/cpic/``): one file per gene with allele functions or activity values and the CPIC
diplotype → phenotype rules, ``variants.yaml`` (positions on both builds, callable alleles) and
``recommendations.yaml`` (per drug). Each carries its CPIC source and version.

Unknown stays unknown: an allele that is not in the CPIC table, an allele of uncertain or unknown function,
a position that was not genotyped, or an unphased pattern that fits alleles of different phenotype give the
phenotype ``"Indeterminate"`` with a note, never "Normal". A malformed diplotype call (an unknown gene, a
diplotype that is not two alleles) is a problem reported with the call, the same way on every path
(:func:`interpret`, :func:`load_genotypes`, a plan from the command line, the Python API or the service): the
plan goes on with the other genes, and the gene is Indeterminate, so its rules and recommendations are not
evaluated. A VCF that cannot be read as a whole (no header, several samples and none chosen, an impossible
genotype) raises :class:`~precimed.errors.DataError`.

The work is split by job: :mod:`precimed.planning.phenotypes` (CPIC tables, diplotype → phenotype),
:mod:`precimed.planning.vcf` (key variants from a VCF and the gene calls they support) and this module
(combining calls, rule facts, CPIC recommendations). Their public names are re-exported here, so
``pgx.phenotype``, ``pgx.read_vcf`` and the like keep working.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from precimed.errors import DataError
from precimed.planning.knowledge_files import load_knowledge
from precimed.planning.phenotypes import (
    CPIC_DIR,
    GENES,
    INDETERMINATE,
    TABLE_GENES,
    Allele,
    GeneResult,
    GeneTable,
    Variant,
    VariantTable,
    gene_symbol,
    gene_table,
    indeterminate,
    phenotype,
    variant_table,
    vkorc1_genotype,
)
from precimed.planning.vcf import (
    ABSENT_MODES,
    BUILDS,
    VcfCall,
    VcfGenotypes,
    absent_mode,
    absent_positions,
    call_genes,
    genotypes_from_vcf,
    read_vcf,
)

RECOMMENDATIONS = "cpic/recommendations.yaml"

__all__ = [
    "ABSENT_MODES", "BUILDS", "CPIC_DIR", "GENES", "INDETERMINATE", "TABLE_GENES", "Allele", "GeneResult",
    "GeneTable", "Genotypes", "PgxRecommendation", "Variant", "VariantTable", "VcfCall", "VcfGenotypes",
    "call_genes", "cpic_versions", "facts_from_results", "gene_table", "genotypes_from_vcf", "interpret",
    "load_genotypes", "merge", "pgx_drugs", "phenotype", "read_vcf", "recommend", "variant_table",
    "vkorc1_genotype",
]


def cpic_versions() -> dict[str, str]:
    """The CPIC table version behind each gene's phenotype, plus the variant and recommendation tables."""
    out = {g: gene_table(g).version for g in TABLE_GENES}
    out["variants"] = variant_table().version
    out["recommendations"] = _recommendation_table()["version"]
    return out


# ----- diplotype calls, merged with VCF calls, as rule facts -------------------------------------------------------
def interpret(genotypes: Mapping[str, str | GeneResult] | None) -> tuple[dict[str, GeneResult], list[str]]:
    """Gene results for diplotype calls (or results already made); (results, problems as messages).

    A malformed call or unknown gene becomes a problem message, and the gene (when known) an Indeterminate
    result, so a plan can go on with the other genes.
    """
    results: dict[str, GeneResult] = {}
    problems: list[str] = []
    for gene, call in (genotypes or {}).items():
        if isinstance(call, GeneResult):
            results[call.gene] = call
            continue
        try:
            g = gene_symbol(gene)
        except DataError as exc:
            problems.append(str(exc))
            continue
        try:
            results[g] = phenotype(g, call)
        except DataError as exc:
            problems.append(str(exc))
            results[g] = indeterminate(g, None, f"the call could not be read: {exc}", table=_table_of(g))
    return results, problems


def _table_of(gene: str) -> GeneTable | None:
    """The gene's CPIC table, for the version an Indeterminate result still cites; None for VKORC1."""
    return gene_table(gene) if gene in TABLE_GENES else None


def merge(vcf_results: Mapping[str, GeneResult], calls: Mapping[str, GeneResult]) -> dict[str, GeneResult]:
    """Combine VCF-derived results with direct diplotype calls; disagreeing phenotypes become Indeterminate."""
    out = dict(vcf_results)
    for gene, r in calls.items():
        v = out.get(gene)
        if v is None or not v.determinate:
            out[gene] = r
        elif r.determinate and r.phenotype != v.phenotype:
            out[gene] = indeterminate(gene, f"{v.diplotype} (VCF) vs {r.diplotype} (call)",
                                      f"the VCF gives {v.phenotype} but the diplotype call gives {r.phenotype}; "
                                      "resolve the discrepancy", origin="vcf+diplotype")
        else:
            out[gene] = replace(r, origin="vcf+diplotype" if r.determinate else r.origin)
    return out


@dataclass(frozen=True, eq=False)
class Genotypes(Mapping[str, GeneResult]):
    """Gene results for a plan (read like a ``{gene: GeneResult}`` mapping), the problems met reading the diplotype
    calls (each becomes an alert in the plan) and, for a VCF, what reading it assumed: the reference build and how
    it was known, which key positions were absent and how they were read. A plan states all of it."""

    results: Mapping[str, GeneResult]
    problems: tuple[str, ...] = ()
    vcf: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, gene: str) -> GeneResult:
        return self.results[gene]

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)


def load_genotypes(vcf: str | Path | None = None, calls: Mapping[str, Any] | None = None, *, build: str | None = None,
                   sample: str | None = None, absent: str = "not-called") -> Genotypes:
    """Genotypes for a plan from a VCF and/or direct diplotype calls (e.g. CYP2D6, which a VCF cannot resolve).

    A malformed call is a problem (an alert in the plan) and its gene Indeterminate, exactly as when the calls
    reach :func:`~precimed.planning.plan.make_plan` directly; a VCF that cannot be read raises DataError.
    """
    mode = absent_mode(absent)
    from_vcf: dict[str, GeneResult] = {}
    summary: dict[str, Any] = {}
    if vcf is not None:
        read = read_vcf(vcf, build=build, sample=sample)
        from_vcf = call_genes(read, absent=mode)
        summary = vcf_summary(read, mode)
    direct, problems = interpret(calls)
    return Genotypes(merge(from_vcf, direct), tuple(problems), summary)


def vcf_summary(read: VcfGenotypes, absent: str) -> dict[str, Any]:
    """What a plan states about its VCF: the file's name (never a path), the sample, the reference build and how it
    was known, and the key positions the file does not list, per gene, with how they were read."""
    missing = absent_positions(read)
    return {"file": read.path, "sample": read.sample, "samples_in_file": read.samples, "build": read.build,
            "build_from": read.build_from, "absent": absent,
            "absent_read_as": "homozygous reference" if absent == "reference" else "not called (gene Indeterminate)",
            "absent_positions": missing}


def facts_from_results(results: Mapping[str, GeneResult]) -> tuple[dict[str, Any], dict[str, str]]:
    """Rule facts (``<GENE>_phenotype``, ``<GENE>_activity_score``, ``VKORC1_rs9923231``) and, for an
    Indeterminate gene, the reason its facts are missing."""
    facts: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for gene, r in results.items():
        if gene == "VKORC1":
            if r.determinate and r.diplotype:
                facts["VKORC1_rs9923231"] = r.diplotype
            continue
        if r.determinate:
            facts[f"{gene}_phenotype"] = r.phenotype
            if r.activity_score is not None and r.activity_score_text is None:
                facts[f"{gene}_activity_score"] = r.activity_score
        else:
            why = f"{gene} indeterminate: " + "; ".join(r.notes)
            reasons[f"{gene}_phenotype"] = why
            reasons[f"{gene}_activity_score"] = why
    return facts, reasons


# ----- recommendations ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PgxRecommendation:
    drug: str
    genes: tuple[str, ...]
    phenotypes: Mapping[str, str]
    action: str | None  # none | avoid | adjust_dose | prefer_alternative | monitor; None = no recommendation
    strength: str | None
    text: str
    alternative: str | None
    guideline: str
    versions: Mapping[str, str]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"drug": self.drug, "genes": list(self.genes), "phenotypes": dict(self.phenotypes),
                "action": self.action, "strength": self.strength, "text": self.text, "alternative": self.alternative,
                "source": self.guideline, "versions": dict(self.versions), "notes": list(self.notes)}


@cache
def _recommendation_table() -> dict[str, Any]:
    """The CPIC gene-drug recommendations (``knowledge/cpic/recommendations.yaml``): this module's one copy, read
    for every drug of every plan; only strings and new objects built from it leave the module."""
    return load_knowledge(RECOMMENDATIONS)


def pgx_drugs() -> list[str]:
    """The drugs with a CPIC recommendation table here."""
    return sorted(_recommendation_table()["drugs"])


_SEVERITY = {"Poor Metabolizer": 3, "Intermediate Metabolizer": 2, "Possible Intermediate Metabolizer": 2,
             "Normal Metabolizer": 1}


def recommend(drug: str, results: Mapping[str, GeneResult]) -> PgxRecommendation | None:
    """The CPIC recommendation for `drug` given gene results; None when none of its genes was genotyped.

    Raises DataError for a drug without a CPIC table here.
    """
    table = _recommendation_table()
    key = str(drug).strip().lower()
    if key not in table["drugs"]:
        raise DataError(f"no CPIC recommendation table for drug {drug!r}; precimed covers {pgx_drugs()}",
                        column="drug")
    entry = table["drugs"][key]
    genes = tuple(entry["genes"])
    present = {g: results[g] for g in genes if g in results}
    if not present:
        return None
    versions = {g: r.version for g, r in present.items()}
    phenos = {g: r.phenotype if g != "VKORC1" else (r.diplotype or INDETERMINATE) for g, r in present.items()}

    def make(rec: Mapping[str, Any] | None, notes: list[str], strength: str | None = None) -> PgxRecommendation:
        if rec is None:
            return PgxRecommendation(key, genes, phenos, None, None,
                                     "No genotype-guided recommendation: " + "; ".join(notes), None,
                                     entry["guideline"], versions, tuple(notes))
        return PgxRecommendation(key, genes, phenos, rec["action"], strength or rec["strength"], rec["text"],
                                 rec.get("alternative"), entry["guideline"], versions, tuple(notes))

    if "any_result" in entry:
        if any(r.determinate for r in present.values()):
            missing = [g for g in genes if g not in present or not present[g].determinate]
            notes = [f"{g} not available: the algorithm uses its 'unknown' term" for g in missing]
            return make(entry["any_result"], notes)
        return make(None, [f"{g} indeterminate" for g in present])
    usable = {g: r for g, r in present.items() if r.determinate and r.phenotype in entry.get(g, {})}
    notes = [f"{g} {'not genotyped' if g not in present else 'indeterminate'}: monitor closely"
             for g in genes if g not in usable]
    if not usable:
        return make(None, [f"{g} phenotype {present[g].phenotype}" for g in present] +
                    (["if the drug is required and status is unknown, monitor closely for toxicity"]
                     if len(genes) > 1 else []))
    # several genes (thiopurines): the most severe phenotype decides; ties go to the first listed gene, except
    # intermediate for both, which CPIC (2024 update) treats as its own, lower starting dose
    if "both_intermediate" in entry and len(usable) == len(genes) > 1 and \
            all(_SEVERITY.get(r.phenotype) == 2 for r in usable.values()):
        return make(entry["both_intermediate"], notes + [
            "intermediate for " + " and ".join(f"{g} ({r.phenotype})" for g, r in usable.items()) +
            ": the combined recommendation applies, not either gene's alone"])
    gene = max(usable, key=lambda g: (_SEVERITY.get(usable[g].phenotype, 0), -genes.index(g)))
    rec = entry[gene][usable[gene].phenotype]
    strength = None
    by_score = rec.get("strength_by_activity_score")
    if by_score and usable[gene].activity_score is not None:
        strength = by_score.get(f"{usable[gene].activity_score:.1f}")
    if len(usable) > 1:
        notes.append(f"decided by {gene} ({usable[gene].phenotype}), the more severe of " +
                     ", ".join(f"{g} {r.phenotype}" for g, r in usable.items()))
    return make(rec, notes, strength)
