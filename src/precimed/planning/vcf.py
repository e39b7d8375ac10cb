"""Genotypes from a VCF: the key pharmacogenomic variants by rsID (GRCh37 or GRCh38), and the gene calls they
support.

Only the variants in ``knowledge/cpic/variants.yaml`` are read, matched by rsID or, when the ID column is "." (or
another ID), by chromosome and position. A position that was not genotyped, a no-call or a filtered call makes its
gene Indeterminate (or, with ``absent="reference"``, a position missing from the file is read as homozygous
reference, for variant-only VCFs, and each gene it affected says so); an unphased pattern that fits alleles of
different phenotype is Indeterminate too. A REF that differs from the expected one, an allele index beyond ALT or
a non-diploid genotype raises :class:`~precimed.errors.DataError` naming the rsID and position; an indel matched
only by its position is another variant at that position and is skipped.

Messages name the VCF by its file name only, and never a sample's name (an identifier): a multi-sample VCF without
a sample chosen is refused with the number of samples.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

from precimed.errors import DataError
from precimed.limits import read_user_text
from precimed.planning.phenotypes import (
    INDETERMINATE,
    GeneResult,
    Variant,
    gene_table,
    indeterminate,
    phenotype,
    star_key,
    variant_table,
    vkorc1_genotype,
)

BUILDS = ("GRCh37", "GRCh38")
#: What to make of a key position the VCF does not list: the gene is not called (default), or the position is read
#: as homozygous reference (variant-only VCFs). "indeterminate" is the older name of "not-called".
ABSENT_MODES = ("not-called", "reference")
_BUILD_HINTS = {"grch38": "GRCh38", "hg38": "GRCh38", "grch37": "GRCh37", "hg19": "GRCh37", "b37": "GRCh37",
                "hs37d5": "GRCh37", "human_g1k_v37": "GRCh37"}


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
    build_from: str = "given"  # given | header | inferred from the positions of the key variants
    samples: int = 1  # how many samples the file holds


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
    vt = variant_table()
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
    idx = _sample_index(samples, sample, where)
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
            if not _is_snv(f):
                continue  # another variant (an indel) at a key position, matched by position only: not ours
            stated = build or header_build
            v = by_pos[stated if stated in fits else min(fits)][(chrom, p)]
        if v is None:
            continue
        if v.chrom != chrom:
            raise DataError(f"{where} line {lineno}: {v.rsid} is on chromosome {v.chrom}, the VCF says {f[0]}",
                            column=v.rsid)
        matched.append((lineno, f, v, fits))
    chosen, build_from = (build, "given") if build else (header_build, "header")
    notes = []
    if chosen is None:
        chosen = _infer_build(matched, where)
        build_from = "inferred from the positions of the key variants"
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
    return VcfGenotypes(chosen, samples[idx], calls, tuple(notes), where, build_from, len(samples))


def _sample_index(samples: list[str], sample: str | None, where: str) -> int:
    """The column of the chosen sample. Sample names are identifiers, so a refusal gives their number, never them."""
    if sample is None:
        if len(samples) > 1:
            raise DataError(f"{where}: {len(samples)} samples; choose one with --sample", column="sample")
        return 0
    if sample not in samples:
        raise DataError(f"{where}: the sample chosen with --sample is not among the file's {len(samples)} sample(s)",
                        column="sample")
    return samples.index(sample)


def _is_snv(fields: list[str]) -> bool:
    """A single-nucleotide record: one-letter REF and ALTs (symbolic ``<NON_REF>`` / ``*`` ALTs aside)."""
    alts = [a for a in fields[4].split(",") if a not in (".", "", "*") and not a.startswith("<")]
    return len(fields[3]) == 1 and all(len(a) == 1 for a in alts)


def _infer_build(matched: list[tuple[int, list[str], Variant, set[str]]], where: str) -> str:
    """The build whose positions the key variants sit at; DataError when none or both fit."""
    votes = {b: sum(1 for *_, fits in matched if b in fits) for b in BUILDS}
    if not matched or max(votes.values()) == 0:
        raise DataError(f"{where}: cannot tell the reference build (no header hint and none of the key variants "
                        "at a GRCh37 or GRCh38 position); pass the build (--build GRCh37 or GRCh38)", column="build")
    if votes["GRCh37"] and votes["GRCh38"]:
        raise DataError(f"{where}: key variants sit at both GRCh37 ({votes['GRCh37']}) and GRCh38 "
                        f"({votes['GRCh38']}) positions; pass the build (--build)", column="build")
    return max(votes, key=votes.__getitem__)


def _vcf_text(source: str | Path) -> tuple[str, str]:
    """The VCF's text and how messages name it: its file name only (a server path is not the user's business)."""
    if isinstance(source, str) and "\n" in source:
        return source, "<vcf text>"
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path.name}: no such VCF file", column="vcf")
    try:  # within the input limit, a .gz one decompressed too (a gzip bomb is one line, not the machine)
        return read_user_text(path), path.name
    except DataError as exc:
        raise DataError(str(exc).replace(str(path), path.name, 1), column="vcf") from None


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


def absent_mode(absent: str) -> str:
    """``absent`` checked: "not-called" (alias "indeterminate") or "reference"; DataError otherwise."""
    mode = "not-called" if absent == "indeterminate" else absent
    if mode not in ABSENT_MODES:
        raise DataError(f"absent must be one of {list(ABSENT_MODES)}, got {absent!r}", column="absent")
    return mode


def absent_positions(vcf: VcfGenotypes) -> dict[str, list[str]]:
    """Per gene, the key variants (rsIDs) the VCF does not list at all (no record, as opposed to a no-call)."""
    out: dict[str, list[str]] = {}
    for v in variant_table().variants:
        if v.rsid not in vcf.calls:
            out.setdefault(v.gene, []).append(v.rsid)
    return out


def call_genes(vcf: VcfGenotypes, *, absent: str = "not-called") -> dict[str, GeneResult]:
    """Gene results from the key variants. ``absent="reference"`` reads a key position missing from the VCF as
    homozygous reference (for variant-only VCFs) and says so in the gene's notes; the default ("not-called")
    reports the gene Indeterminate."""
    mode = absent_mode(absent)
    vt = variant_table()
    out = {}
    for gene, spec in vt.alleles.items():
        variants = vt.of_gene(gene)
        counts: dict[str, int] = {}
        problems, assumed = [], []
        for v in variants:
            call = vcf.calls.get(v.rsid)
            if call is None and mode == "reference":
                counts[v.rsid] = 0
                assumed.append(v.rsid)
            elif call is None or call.alt_copies is None:
                problems.append(f"{v.rsid} ({v.hgvs}) " + (call.note if call and call.note else "not in the VCF"))
            else:
                counts[v.rsid] = call.alt_copies
        if problems:
            out[gene] = indeterminate(gene, None, "not genotyped: " + "; ".join(problems), origin="vcf")
            continue
        result = _call_gene(gene, spec, counts)
        notes = list(result.notes)
        if assumed:
            notes.append(f"assumed homozygous reference (absent positions read as reference): {len(assumed)} of "
                         f"{len(variants)} key position(s) not in the VCF: {', '.join(assumed)}")
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
            fits.append("/".join(sorted((a, b), key=star_key)))
    if not fits:
        return indeterminate(gene, None, f"variant pattern {dict(counts)} fits no pair of the callable alleles")
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
    return indeterminate(gene, " or ".join(fits), f"phase unknown: {fits} fit with different phenotypes "
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
                       absent: str = "not-called") -> dict[str, GeneResult]:
    """read_vcf + call_genes."""
    return call_genes(read_vcf(source, build=build, sample=sample), absent=absent)
