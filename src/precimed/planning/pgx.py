"""Pharmacogenomics: genotypes from a VCF (key variants by rsID, GRCh37 or GRCh38) or from diplotype calls;
gene → diplotype → phenotype (activity score where CPIC uses one) → CPIC recommendation.

Tables (``knowledge/cpic/``): one file per gene with allele functions or activity values and the CPIC
diplotype → phenotype rules, ``variants.yaml`` (positions on both builds, callable alleles) and
``recommendations.yaml`` (per drug). Each carries its CPIC source and version.

Unknown stays unknown: an allele that is not in the CPIC table, an allele of uncertain or unknown function,
a position that was not genotyped, or an unphased pattern that fits alleles of different phenotype give the
phenotype ``"Indeterminate"`` with a note, never "Normal". Malformed input (an unknown gene, a diplotype that is
not two alleles, a genotype with an impossible allele) raises :class:`~precimed.errors.DataError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

import yaml

from precimed.errors import DataError, RuleError
from precimed.planning.rules import KNOWLEDGE

CPIC_DIR = KNOWLEDGE / "cpic"
INDETERMINATE = "Indeterminate"
#: Genes whose phenotype precimed assigns (VKORC1 is reported as its -1639G>A genotype).
GENES: tuple[str, ...] = ("CYP2C19", "CYP2C9", "CYP2D6", "DPYD", "NUDT15", "SLCO1B1", "TPMT", "VKORC1")
TABLE_GENES: tuple[str, ...] = ("CYP2C19", "CYP2C9", "CYP2D6", "DPYD", "NUDT15", "SLCO1B1", "TPMT")
BUILDS = ("GRCh37", "GRCh38")
_BUILD_HINTS = {"grch38": "GRCh38", "hg38": "GRCh38", "grch37": "GRCh37", "hg19": "GRCh37", "b37": "GRCh37",
                "hs37d5": "GRCh37", "human_g1k_v37": "GRCh37"}
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


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RuleError(f"{path}: cannot load PGx table ({exc})") from None


def _parse_gene_table(path: Path) -> GeneTable:
    d = _load_yaml(path)
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
    gene = _gene(gene)
    if gene not in TABLE_GENES:
        raise DataError(f"{gene} has no diplotype-phenotype table (it is read as a genotype)", column="gene")
    return _parse_gene_table(CPIC_DIR / f"{gene}.yaml")


def _gene(gene: str) -> str:
    g = str(gene).strip().upper()
    if g not in GENES:
        raise DataError(f"unknown gene {gene!r}; precimed interprets {list(GENES)}", column="gene")
    return g


def cpic_versions() -> dict[str, str]:
    """The CPIC table version behind each gene's phenotype, plus the variant and recommendation tables."""
    out = {g: gene_table(g).version for g in TABLE_GENES}
    out["variants"] = _variant_table().version
    out["recommendations"] = _recommendation_table()["version"]
    return out


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


def _star_key(name: str) -> tuple:
    if name in ("Reference", "*1"):
        return (0, 0, name)
    m = re.match(r"\*(\d+)(.*)", name)
    if m:
        return (1, int(m.group(1)), m.group(2))
    m = re.search(r"c\.(-?\d+)", name)
    return (2, int(m.group(1)) if m else 0, name)


def _indeterminate(gene: str, diplotype: str | None, note: str, *, table: GeneTable | None = None,
                   origin: str = "diplotype", candidates: Iterable[str] = ()) -> GeneResult:
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
    g = _gene(gene)
    if g == "VKORC1":
        return vkorc1_genotype(diplotype)
    table = gene_table(g)
    parts = _split_diplotype(g, diplotype)
    resolved = []
    for p in parts:
        a = table.allele(p)
        resolved.append(a.name if a else p)
    names = sorted(resolved, key=_star_key)
    dip = "/".join(names)
    if table.method == "function":
        alleles = [table.allele(n) for n in names]
        unknown = [n for n, a in zip(names, alleles, strict=True) if a is None]
        if unknown:
            return _indeterminate(g, dip, f"allele(s) {unknown} not in the CPIC {g} table ({table.version}); "
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
            return _indeterminate(g, dip, why, table=table)
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
    vt = _variant_table()
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


# ----- VCF ---------------------------------------------------------------------------------------------------------
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
def _variant_table() -> VariantTable:
    d = _load_yaml(CPIC_DIR / "variants.yaml")
    variants = tuple(Variant(v["gene"], v["rsid"], v["hgvs"], str(v["chrom"]),
                             {"GRCh37": int(v["grch37"]), "GRCh38": int(v["grch38"])}, v["ref"], v["alt"])
                     for v in d["variants"])
    return VariantTable(d["version"], " ".join(str(d["source"]).split()), variants, d["alleles"])


def variant_table() -> VariantTable:
    return _variant_table()


@dataclass(frozen=True)
class VcfCall:
    rsid: str
    alt_copies: int | None  # 0, 1, 2 copies of the listed ALT; None = not genotyped
    raw_gt: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class VcfGenotypes:
    """The key variants read from one sample of a VCF."""

    build: str
    sample: str
    calls: Mapping[str, VcfCall]
    notes: tuple[str, ...] = ()
    path: str = "<vcf>"


def _norm_chrom(c: str) -> str:
    c = c.strip()
    return c[3:] if c.lower().startswith("chr") else c


def read_vcf(source: str | Path, *, build: str | None = None, sample: str | None = None) -> VcfGenotypes:
    """Read the key PGx variants from a VCF (a path, or VCF text containing newlines).

    The build comes from `build`, else the header (``##reference`` / ``##contig assembly``), else from which
    build's positions the rsIDs sit at. A REF that differs from the expected one, a genotype with an allele index
    beyond ALT, or a non-diploid genotype raise DataError naming the rsID and position.
    """
    text, where = _vcf_text(source)
    if build is not None and build not in BUILDS:
        raise DataError(f"{where}: unknown build {build!r}; use one of {list(BUILDS)}", column="build")
    vt = _variant_table()
    by_rsid = vt.by_rsid()
    by_pos = {b: {(v.chrom, v.pos[b]): v for v in vt.variants} for b in BUILDS}
    header_build, samples, records = None, None, []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if line.startswith("##"):
            low = line.lower()
            if low.startswith("##reference") or low.startswith("##contig") or low.startswith("##assembly"):
                for hint, b in _BUILD_HINTS.items():
                    if hint in low:
                        header_build = header_build or b
            continue
        if line.startswith("#CHROM"):
            cols = line.lstrip("#").rstrip("\n").split("\t")
            if len(cols) < 10:
                raise DataError(f"{where}: the #CHROM header has no sample column; a genotype VCF needs FORMAT and "
                                "one sample", column="sample")
            samples = cols[9:]
            continue
        if samples is None:
            raise DataError(f"{where} line {lineno}: data before the #CHROM header; not a VCF", column="vcf")
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 10:
            raise DataError(f"{where} line {lineno}: {len(fields)} tab-separated columns, a VCF record with a "
                            "sample has at least 10", column="vcf")
        records.append((lineno, fields))
    if samples is None:
        raise DataError(f"{where}: no #CHROM header line; not a VCF", column="vcf")
    if sample is None:
        if len(samples) > 1:
            raise DataError(f"{where}: {len(samples)} samples {samples[:5]}; pass the sample to read", column="sample")
        idx = 0
    else:
        if sample not in samples:
            raise DataError(f"{where}: sample {sample!r} not in the VCF; samples: {samples[:10]}", column="sample")
        idx = samples.index(sample)
    # which records are ours, and on which build
    matched: list[tuple[int, list[str], Variant, set[str]]] = []
    for lineno, f in records:
        chrom, pos = _norm_chrom(f[0]), f[1]
        ids = [i for i in f[2].split(";") if i and i != "."]
        v = next((by_rsid[i] for i in ids if i in by_rsid), None)
        try:
            p = int(pos)
        except ValueError:
            raise DataError(f"{where} line {lineno}: POS {pos!r} is not an integer", column="POS") from None
        fits = {b for b in BUILDS
                if by_pos[b].get((chrom, p)) is not None and (v is None or by_pos[b][(chrom, p)] is v)}
        if v is None and fits:
            v = by_pos[next(iter(fits))][(chrom, p)]
        if v is None:
            continue
        if v.chrom != chrom:
            raise DataError(f"{where} line {lineno}: {v.rsid} is on chromosome {v.chrom}, the VCF says {f[0]}",
                            column=v.rsid)
        matched.append((lineno, f, v, fits))
    chosen = build or header_build
    notes = []
    if chosen is None:
        votes = {b: sum(1 for *_, fits in matched if b in fits) for b in BUILDS}
        if not matched or max(votes.values()) == 0:
            raise DataError(f"{where}: cannot tell the reference build (no header hint and none of the key variants "
                            "at a GRCh37 or GRCh38 position); pass build='GRCh37' or 'GRCh38'", column="build")
        if votes["GRCh37"] and votes["GRCh38"]:
            raise DataError(f"{where}: key variants sit at both GRCh37 ({votes['GRCh37']}) and GRCh38 "
                            f"({votes['GRCh38']}) positions; pass the build", column="build")
        chosen = max(votes, key=votes.__getitem__)
        notes.append(f"reference build {chosen} inferred from the positions of the key variants")
    calls: dict[str, VcfCall] = {}
    for lineno, f, v, _ in matched:
        pos = int(f[1])
        if pos != v.pos[chosen]:
            other = [b for b in BUILDS if v.pos[b] == pos]
            hint = f" (that is its {other[0]} position: wrong build?)" if other else ""
            raise DataError(f"{where} line {lineno}: {v.rsid} at {f[0]}:{pos}, expected {v.chrom}:{v.pos[chosen]} on "
                            f"{chosen}{hint}", column=v.rsid)
        if v.rsid in calls:
            raise DataError(f"{where} line {lineno}: {v.rsid} appears twice", column=v.rsid)
        calls[v.rsid] = _genotype(f, v, idx, where=f"{where} line {lineno}")
    return VcfGenotypes(chosen, samples[idx], calls, tuple(notes), where)


def _vcf_text(source: str | Path) -> tuple[str, str]:
    if isinstance(source, str) and "\n" in source:
        return source, "<vcf text>"
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: no such VCF file", column="vcf")
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "rt") as fh:
            return fh.read(), str(path)
    return path.read_text(), str(path)


def _genotype(f: list[str], v: Variant, idx: int, *, where: str) -> VcfCall:
    ref, alts = f[3].upper(), [a.upper() for a in f[4].split(",")] if f[4] not in (".", "") else []
    if ref != v.ref:
        raise DataError(f"{where}: {v.rsid} REF is {ref!r}, expected {v.ref!r} (forward strand); wrong build, strand "
                        "or file?", column=v.rsid)
    fmt = f[8].split(":")
    if "GT" not in fmt:
        raise DataError(f"{where}: {v.rsid} has no GT field in FORMAT {f[8]!r}", column=v.rsid)
    values = f[9 + idx].split(":")
    gt = values[fmt.index("GT")] if fmt.index("GT") < len(values) else "."
    filt = f[6]
    alleles = re.split(r"[/|]", gt)
    if any(a == "." for a in alleles):
        return VcfCall(v.rsid, None, gt, "no call")
    if len(alleles) != 2:
        raise DataError(f"{where}: {v.rsid} impossible genotype {gt!r}: an autosomal site has exactly two alleles",
                        column=v.rsid)
    try:
        nums = [int(a) for a in alleles]
    except ValueError:
        raise DataError(f"{where}: {v.rsid} genotype {gt!r} is not a VCF GT", column=v.rsid) from None
    if any(n < 0 or n > len(alts) for n in nums):
        raise DataError(f"{where}: {v.rsid} impossible genotype {gt!r}: allele index beyond ALT {f[4]!r}",
                        column=v.rsid)
    if filt not in ("PASS", ".", ""):
        return VcfCall(v.rsid, None, gt, f"FILTER {filt}: treated as not genotyped")
    seen = ["REF" if n == 0 else alts[n - 1] for n in nums]
    unexpected = [a for a in seen if a not in ("REF", v.alt)]
    if unexpected:
        return VcfCall(v.rsid, None, gt, f"unexpected allele(s) {unexpected} (expected {v.ref}>{v.alt})")
    return VcfCall(v.rsid, sum(1 for a in seen if a == v.alt), gt)


def call_genes(vcf: VcfGenotypes, *, absent: str = "indeterminate") -> dict[str, GeneResult]:
    """Gene results from the key variants. ``absent="reference"`` reads a key position missing from the VCF as
    homozygous reference (for variant-only VCFs); the default reports the gene Indeterminate."""
    if absent not in ("indeterminate", "reference"):
        raise DataError(f"absent must be 'indeterminate' or 'reference', got {absent!r}", column="absent")
    vt = _variant_table()
    out = {}
    for gene, spec in vt.alleles.items():
        variants = vt.of_gene(gene)
        counts: dict[str, int] = {}
        problems, assumed = [], []
        for v in variants:
            call = vcf.calls.get(v.rsid)
            if call is None and absent == "reference":
                counts[v.rsid] = 0
                assumed.append(v.rsid)
            elif call is None or call.alt_copies is None:
                problems.append(f"{v.rsid} ({v.hgvs}) " + (call.note if call and call.note else "not in the VCF"))
            else:
                counts[v.rsid] = call.alt_copies
        if problems:
            out[gene] = _indeterminate(gene, None, "not genotyped: " + "; ".join(problems), origin="vcf")
            continue
        result = _call_gene(gene, spec, counts)
        notes = list(result.notes)
        if assumed:
            notes.append(f"absent from the VCF, read as reference: {assumed}")
        notes.append(f"called from {len(variants)} key variant(s) on {vcf.build}; alleles defined by other variants "
                     "cannot be seen")
        out[gene] = replace(result, origin="vcf", notes=tuple(notes))
    return out


def _call_gene(gene: str, spec: Mapping[str, Any], counts: Mapping[str, int]) -> GeneResult:
    if gene == "VKORC1":
        n = counts[spec["genotype_of"]]
        return vkorc1_genotype(["G/G", "G/A", "A/A"][n])
    ref = spec["reference"]
    defined: dict[str, list[str]] = {k: list(v) for k, v in spec["defined"].items()}
    if gene == "DPYD":
        return _call_dpyd(ref, defined, counts)
    names = [ref, *defined]
    fits = []
    for a, b in combinations_with_replacement(names, 2):
        total = {r: 0 for r in counts}
        for allele in (a, b):
            for r in defined.get(allele, []):
                total[r] += 1
        if total == dict(counts):
            fits.append("/".join(sorted((a, b), key=_star_key)))
    if not fits:
        return _indeterminate(gene, None, f"variant pattern {dict(counts)} fits no pair of the callable alleles")
    table = gene_table(gene)
    for choose, over in table.preferences:
        if choose in fits and set(fits) - {choose} <= set(over):
            res = phenotype(gene, choose)
            return replace(res, candidates=tuple(fits), notes=res.notes + (
                f"unphased calls fit {fits}; reported {choose}, as laboratories do (CPIC: {', '.join(over)} is very "
                "rare)",))
    results = [phenotype(gene, d) for d in fits]
    phenos = {r.phenotype for r in results}
    if len(results) == 1:
        return results[0]
    if len(phenos) == 1 and INDETERMINATE not in phenos:
        return replace(results[0], diplotype=" or ".join(fits), candidates=tuple(fits), notes=results[0].notes + (
            f"phase unknown: {fits} fit; all give {results[0].phenotype}",))
    return _indeterminate(gene, " or ".join(fits), f"phase unknown: {fits} fit with different phenotypes "
                                                   f"{sorted(phenos)}", table=table, candidates=fits)


def _call_dpyd(ref: str, defined: Mapping[str, list[str]], counts: Mapping[str, int]) -> GeneResult:
    table = gene_table("DPYD")
    carried: list[str] = []
    for allele, rsids in defined.items():
        carried += [allele] * counts[rsids[0]]
    notes = []
    if len(carried) > 2:
        carried.sort(key=lambda a: (table.alleles[a].activity, a))
        notes.append(f"{len(carried)} variant copies {carried}; phase unknown: the score uses the two lowest-activity "
                     "variants (CPIC)")
        carried = carried[:2]
    elif len(carried) == 2 and carried[0] != carried[1]:
        notes.append("two different variants, phase unknown: assumed on different chromosomes (the conservative "
                     "reading, CPIC)")
    while len(carried) < 2:
        carried.append(ref)
    res = phenotype("DPYD", "/".join(carried))
    return replace(res, notes=res.notes + tuple(notes))


def genotypes_from_vcf(source: str | Path, *, build: str | None = None, sample: str | None = None,
                       absent: str = "indeterminate") -> dict[str, GeneResult]:
    """read_vcf + call_genes."""
    return call_genes(read_vcf(source, build=build, sample=sample), absent=absent)


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
            g = _gene(gene)
        except DataError as exc:
            problems.append(str(exc))
            continue
        try:
            results[g] = phenotype(g, call)
        except DataError as exc:
            problems.append(str(exc))
            results[g] = _indeterminate(g, None, f"could not read the call {call!r}")
    return results, problems


def merge(vcf_results: Mapping[str, GeneResult], calls: Mapping[str, GeneResult]) -> dict[str, GeneResult]:
    """Combine VCF-derived results with direct diplotype calls; disagreeing phenotypes become Indeterminate."""
    out = dict(vcf_results)
    for gene, r in calls.items():
        v = out.get(gene)
        if v is None or not v.determinate:
            out[gene] = r
        elif r.determinate and r.phenotype != v.phenotype:
            out[gene] = _indeterminate(gene, f"{v.diplotype} (VCF) vs {r.diplotype} (call)",
                                       f"the VCF gives {v.phenotype} but the diplotype call gives {r.phenotype}; "
                                       "resolve the discrepancy", origin="vcf+diplotype")
        else:
            out[gene] = replace(r, origin="vcf+diplotype" if r.determinate else r.origin)
    return out


def load_genotypes(vcf: str | Path | None = None, calls: Mapping[str, str] | None = None, *, build: str | None = None,
                   sample: str | None = None, absent: str = "indeterminate") -> dict[str, GeneResult]:
    """Genotypes for a plan from a VCF and/or direct diplotype calls (e.g. CYP2D6, which a VCF cannot resolve)."""
    from_vcf = genotypes_from_vcf(vcf, build=build, sample=sample, absent=absent) if vcf is not None else {}
    direct, problems = interpret(calls)
    if problems:
        raise DataError("; ".join(problems), column="genotypes")
    return merge(from_vcf, direct)


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
    return _load_yaml(CPIC_DIR / "recommendations.yaml")


def pgx_drugs() -> list[str]:
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
    # several genes (thiopurines): the most severe phenotype decides; ties go to the first listed gene
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
