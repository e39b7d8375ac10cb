"""CPIC tables and diplotype → phenotype: one file per gene in ``knowledge/cpic/`` with allele functions or
activity values and the CPIC diplotype → phenotype rules, and ``variants.yaml`` (the key variants, which also
carries the VKORC1 -1639G>A source). Each table carries its CPIC source and version.

Unknown stays unknown: an allele that is not in the CPIC table or of uncertain or unknown function gives the
phenotype ``"Indeterminate"`` with a note, never "Normal". Malformed input (an unknown gene, a diplotype that is
not two alleles) raises :class:`~precimed.errors.DataError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from precimed.errors import DataError
from precimed.planning.knowledge_files import KNOWLEDGE, load_knowledge

CPIC_DIR = KNOWLEDGE / "cpic"
INDETERMINATE = "Indeterminate"
#: Genes whose phenotype precimed assigns (VKORC1 is reported as its -1639G>A genotype).
GENES: tuple[str, ...] = ("CYP2C19", "CYP2C9", "CYP2D6", "DPYD", "NUDT15", "SLCO1B1", "TPMT", "VKORC1")
TABLE_GENES: tuple[str, ...] = ("CYP2C19", "CYP2C9", "CYP2D6", "DPYD", "NUDT15", "SLCO1B1", "TPMT")

_VKORC1_LABELS = {
    "G/G": "-1639 G/G (no A allele)",
    "G/A": "-1639 G/A (one A allele: lower warfarin dose requirement)",
    "A/A": "-1639 A/A (two A alleles: lowest warfarin dose requirement)",
}
_COMPLEMENT = {"C": "G", "T": "A", "G": "C", "A": "T"}
_TOL = 1e-9


# ----- gene tables -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Allele:
    name: str
    function: str
    activity: float | None = None
    at_least: bool = False  # the activity value is a lower bound (e.g. '*1x≥3')


@dataclass(frozen=True)
class GeneTable:
    gene: str
    version: str
    source: str
    method: str  # function | activity
    alleles: Mapping[str, Allele]
    pair_rules: Mapping[tuple[str, str], str]
    bands: tuple[tuple[float, float | None, str], ...]
    preferences: tuple[tuple[str, tuple[str, ...]], ...] = ()
    reference: str = "*1"
    aliases: Mapping[str, str] = field(default_factory=dict)

    def allele(self, name: str) -> Allele | None:
        if name in self.alleles:
            return self.alleles[name]
        canonical = self.aliases.get(name.lower())
        return self.alleles.get(canonical) if canonical else None


def _function_of(activity: float | None) -> str:
    if activity is None:
        return "Uncertain or unknown function"
    if activity == 0:
        return "No function"
    if activity < 1:
        return "Decreased function"
    if activity == 1:
        return "Normal function"
    return "Increased function"


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _parse_gene_table(file: str) -> GeneTable:
    """One gene's table from ``knowledge/cpic/<GENE>.yaml`` (allele names, functions or activity values, rules)."""
    d = load_knowledge(file)
    alleles: dict[str, Allele] = {}
    if d["method"] == "function":
        for name, func in d["alleles"].items():
            alleles[str(name)] = Allele(str(name), str(func))
    else:
        for name, value in d["alleles"].items():
            at_least = isinstance(value, str) and value.startswith(">=")
            act = float(value[2:]) if at_least else (None if value is None else float(value))
            alleles[str(name)] = Allele(str(name), _function_of(act), act, at_least)
    rules = {_pair(*r["functions"]): r["phenotype"] for r in d.get("phenotype_rules", [])}
    bands = tuple((float(b["min"]), None if b["max"] is None else float(b["max"]), b["phenotype"])
                  for b in d.get("score_bands", []))
    prefs = tuple((p["choose"], tuple(p["over"])) for p in d.get("unphased_preference", []))
    aliases: dict[str, str] = {}
    for name in alleles:  # DPYD names like 'c.1905+1G>A (*2A)': accept 'c.1905+1G>A' and '*2A' too
        for part in re.split(r",\s*|\s*\(|\)", name):
            part = part.strip()
            if part and part != name:
                aliases.setdefault(part.lower(), name)
    return GeneTable(d["gene"], d["version"], " ".join(str(d["source"]).split()), d["method"], alleles, rules, bands,
                     prefs, d.get("reference_allele", "*1"), aliases)


@cache
def gene_table(gene: str) -> GeneTable:
    """The CPIC table of `gene`, parsed once; DataError for a gene without one (VKORC1, an unknown gene)."""
    gene = gene_symbol(gene)
    if gene not in TABLE_GENES:
        raise DataError(f"{gene} has no diplotype-phenotype table (it is read as a genotype)", column="gene")
    return _parse_gene_table(f"cpic/{gene}.yaml")


def gene_symbol(gene: str) -> str:
    """The gene's symbol in upper case; DataError for a gene precimed does not interpret."""
    g = str(gene).strip().upper()
    if g not in GENES:
        raise DataError(f"unknown gene {gene!r}; precimed interprets {list(GENES)}", column="gene")
    return g


# ----- results -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneResult:
    """One gene's interpretation. ``phenotype`` is ``"Indeterminate"`` when it cannot be assigned."""

    gene: str
    diplotype: str | None
    phenotype: str
    activity_score: float | None = None
    activity_score_text: str | None = None
    functions: tuple[str, ...] = ()
    origin: str = "diplotype"  # diplotype | vcf | vcf+diplotype
    source: str = ""
    version: str = ""
    notes: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()

    @property
    def determinate(self) -> bool:
        return self.phenotype != INDETERMINATE

    def to_dict(self) -> dict[str, Any]:
        out = {"gene": self.gene, "diplotype": self.diplotype, "phenotype": self.phenotype,
               "activity_score": self.activity_score_text if self.activity_score_text else self.activity_score,
               "functions": list(self.functions), "origin": self.origin, "source": self.source,
               "version": self.version, "notes": list(self.notes)}
        if self.candidates:
            out["candidates"] = list(self.candidates)
        return out


def star_key(name: str) -> tuple:
    """Sort key for allele names: the reference first, then star alleles by number, then HGVS names."""
    if name in ("Reference", "*1"):
        return (0, 0, name)
    m = re.match(r"\*(\d+)(.*)", name)
    if m:
        return (1, int(m.group(1)), m.group(2))
    m = re.search(r"c\.(-?\d+)", name)
    return (2, int(m.group(1)) if m else 0, name)


def indeterminate(gene: str, diplotype: str | None, note: str, *, table: GeneTable | None = None,
                  origin: str = "diplotype", candidates: Iterable[str] = ()) -> GeneResult:
    """An Indeterminate result with the reason in its notes (unknown is never reported as normal)."""
    return GeneResult(gene, diplotype, INDETERMINATE, origin=origin, source=table.source if table else "",
                      version=table.version if table else "", notes=(note,), candidates=tuple(candidates))


def _split_diplotype(gene: str, text: str) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{gene}: a diplotype must be text like '*1/*2', got {text!r}", column=gene)
    raw = text.strip()
    if raw.upper().startswith(gene):
        raw = raw[len(gene):]
    parts = [p.strip() for p in raw.split("/")]
    parts = [p[len(gene):].strip() if p.upper().startswith(gene) else p for p in parts]
    if len(parts) != 2 or not all(parts):
        raise DataError(f"{gene}: impossible diplotype {text!r}: a diplotype is exactly two alleles separated by "
                        "'/' (e.g. '*1/*2'); autosomal genes carry two copies", column=gene)
    return parts


def _cyp2d6_allele(table: GeneTable, name: str) -> tuple[float | None, bool, str | None]:
    """(activity, is_lower_bound, note) for a CYP2D6 allele, with duplications and tandems."""
    found = table.allele(name)
    if found is not None:
        return found.activity, found.at_least, None
    if "+" in name:
        total, lower, notes = 0.0, False, []
        for part in name.split("+"):
            act, lb, note = _cyp2d6_allele(table, part.strip())
            if act is None:
                return None, False, note or f"tandem component {part.strip()} has no activity value"
            total, lower = total + act, lower or lb
            notes.append(note) if note else None
        return total, lower, f"tandem {name}: sum of its components' activity values"
    m = re.fullmatch(r"(\*\d+[A-Z]?)\s*[xX×]\s*(≥|>=)?\s*(\d+|N|n)", name)
    if m:
        base, at_least, copies = m.group(1), bool(m.group(2)), m.group(3)
        if copies.upper() == "N" or (at_least and int(copies) >= 3) or (copies.isdigit() and int(copies) >= 3):
            listed = table.allele(f"{base}x≥3")
            if listed is not None and (copies.upper() == "N" or at_least):
                return listed.activity, listed.at_least, None
        b = table.allele(base)
        if b is None or b.activity is None:
            return None, False, f"{base} has no activity value"
        n = 3 if copies.upper() == "N" else int(copies)
        lower = copies.upper() == "N" or at_least
        return b.activity * n, lower and b.activity > 0, (
            f"{name}: activity value of {base} × {n} copies" + (" (lower bound)" if lower else "") +
            " (copy-number multiplication, Caudle et al. 2020)")
    return None, False, None


def _phenotype_from_score(table: GeneTable, score: float, at_least: bool) -> str | None:
    for lo, hi, pheno in table.bands:
        if score >= lo - _TOL and (hi is None or score <= hi + _TOL):
            if at_least and hi is not None:
                return None  # a lower bound inside a closed band: the true score may lie above it
            return pheno
    return None


def phenotype(gene: str, diplotype: str) -> GeneResult:
    """Interpret one diplotype call, e.g. ``phenotype("CYP2C19", "*2/*1")`` → Intermediate Metabolizer.

    VKORC1 takes the -1639G>A genotype (``"G/A"``; forward-strand ``"C/T"`` is accepted and complemented).
    """
    g = gene_symbol(gene)
    if g == "VKORC1":
        return vkorc1_genotype(diplotype)
    table = gene_table(g)
    parts = _split_diplotype(g, diplotype)
    resolved = []
    for p in parts:
        a = table.allele(p)
        resolved.append(a.name if a else p)
    names = sorted(resolved, key=star_key)
    dip = "/".join(names)
    if table.method == "function":
        alleles = [table.allele(n) for n in names]
        unknown = [n for n, a in zip(names, alleles, strict=True) if a is None]
        if unknown:
            return indeterminate(g, dip, f"allele(s) {unknown} not in the CPIC {g} table ({table.version}); "
                                         "unknown is not normal", table=table)
        funcs = tuple(a.function for a in alleles)  # type: ignore[union-attr]
        pheno = table.pair_rules.get(_pair(*funcs))
        if pheno is None:
            return GeneResult(g, dip, INDETERMINATE, functions=funcs, source=table.source, version=table.version,
                              notes=(f"no CPIC phenotype for allele functions {list(funcs)}",))
        return GeneResult(g, dip, pheno, functions=funcs, source=table.source, version=table.version)
    total, lower, notes, funcs = 0.0, False, [], []
    for n in names:
        if g == "CYP2D6":
            act, lb, note = _cyp2d6_allele(table, n)
        else:
            a = table.allele(n)
            act, lb, note = (a.activity, a.at_least, None) if a else (None, False, None)
        if act is None:
            known = table.allele(n) is not None or (note is not None)
            why = note or (f"allele {n} has no CPIC activity value (uncertain or unknown function)" if known else
                           f"allele {n} is not in the CPIC {g} table ({table.version}); unknown is not normal")
            return indeterminate(g, dip, why, table=table)
        total += act
        lower = lower or lb
        funcs.append(_function_of(act) if table.allele(n) is None else table.allele(n).function)  # type: ignore
        if note:
            notes.append(note)
    pheno = _phenotype_from_score(table, total, lower)
    text = f">={total:g}" if lower else None
    if pheno is None:
        notes.append(f"activity score {text or total:} does not fall in one CPIC phenotype band")
        return GeneResult(g, dip, INDETERMINATE, total, text, tuple(funcs), source=table.source,
                          version=table.version, notes=tuple(notes))
    return GeneResult(g, dip, pheno, total, text, tuple(funcs), source=table.source, version=table.version,
                      notes=tuple(notes))


def vkorc1_genotype(genotype: str) -> GeneResult:
    """VKORC1 -1639G>A (rs9923231) genotype, in gene orientation (G/G, G/A, A/A)."""
    vt = variant_table()
    if not isinstance(genotype, str):
        raise DataError(f"VKORC1: genotype must be text like 'G/A', got {genotype!r}", column="VKORC1")
    raw = genotype.strip().upper().replace("RS9923231", "").replace("-1639", "").strip(" :")
    letters = [c for c in raw if c.isalpha()]
    if len(letters) != 2:
        raise DataError(f"VKORC1: impossible genotype {genotype!r}: give two alleles of -1639G>A, e.g. 'G/A'",
                        column="VKORC1")
    notes = []
    if set(letters) <= {"C", "T"}:
        letters = [_COMPLEMENT[c] for c in letters]
        notes.append("read as forward-strand rs9923231 C>T and complemented to gene orientation G>A")
    if not set(letters) <= {"G", "A"}:
        raise DataError(f"VKORC1: impossible genotype {genotype!r}: -1639 is G or A (forward strand C or T)",
                        column="VKORC1")
    n_a = letters.count("A")
    dip = ["G/G", "G/A", "A/A"][n_a]
    return GeneResult("VKORC1", dip, _VKORC1_LABELS[dip], source=vt.source, version=vt.version, notes=tuple(notes))


# ----- the key-variant table ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    gene: str
    rsid: str
    hgvs: str
    chrom: str
    pos: Mapping[str, int]
    ref: str
    alt: str


@dataclass(frozen=True)
class VariantTable:
    version: str
    source: str
    variants: tuple[Variant, ...]
    alleles: Mapping[str, Mapping[str, Any]]

    def by_rsid(self) -> dict[str, Variant]:
        return {v.rsid: v for v in self.variants}

    def of_gene(self, gene: str) -> list[Variant]:
        return [v for v in self.variants if v.gene == gene]


@cache
def variant_table() -> VariantTable:
    """The key variants read from a VCF (``knowledge/cpic/variants.yaml``), parsed once."""
    d = load_knowledge("cpic/variants.yaml")
    variants = tuple(Variant(v["gene"], v["rsid"], v["hgvs"], str(v["chrom"]),
                             {"GRCh37": int(v["grch37"]), "GRCh38": int(v["grch38"])}, v["ref"], v["alt"])
                     for v in d["variants"])
    return VariantTable(d["version"], " ".join(str(d["source"]).split()), variants, d["alleles"])
