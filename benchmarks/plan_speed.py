"""Time one patient's plan in-process: rules + pharmacogenomics + dosing + safety checks (aim: under 5 ms).

Plain script, not a test: ``python benchmarks/plan_speed.py``. Rule files and knowledge tables are loaded once
(as a service would), then each step is timed over ``N`` calls after a warm-up; the table shows the median and
the 95th percentile in milliseconds. Patients: ``examples/patients``; the warfarin patient's genotypes come from
``examples/patients/pgx_example.vcf`` (20 key variants) plus a CYP2D6 diplotype call.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from precimed.planning import load_patient, load_rules, make_plan, pgx, to_fhir_careplan, to_html, to_markdown

ROOT = Path(__file__).resolve().parents[1]
PATIENTS = ROOT / "examples" / "patients"
N = 300
TARGET_MS = 5.0


def timed(fn, n: int = N) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> None:
    start = time.perf_counter()
    book = load_rules()
    pgx.cpic_versions()  # loads every CPIC table once
    load_ms = (time.perf_counter() - start) * 1e3
    prov = {"bundle": {"id": "benchmark", "version": "0"}}
    rows = []
    for name in ("gbsg_breast", "colon", "warfarin_pgx"):
        p = load_patient(PATIENTS / f"{name}.json")
        vcf = PATIENTS / "pgx_example.vcf" if name == "warfarin_pgx" else None
        genotypes = pgx.load_genotypes(vcf, p.genotypes) if vcf else p.genotypes

        def plan(p=p, g=genotypes):
            return make_plan(p.facts, p.predictions, rules=book, genotypes=g, options=p.options, provenance=prov)

        def plan_no_pgx(p=p):
            return make_plan(p.facts, p.predictions, rules=book, options=p.options, provenance=prov)

        result = plan()
        rows.append((name, "plan: rules only", *timed(plan_no_pgx)))
        rows.append((name, f"plan: rules + PGx ({len(result['pharmacogenomics']['genes'])} genes)", *timed(plan)))
        if vcf:
            rows.append((name, "read VCF + call 8 genes",
                         *timed(lambda v=vcf, c=p.genotypes: pgx.load_genotypes(v, c))))
            rows.append((name, "VCF + plan (end to end)", *timed(
                lambda p=p, v=vcf: make_plan(p.facts, p.predictions, rules=book, genotypes=pgx.load_genotypes(
                    v, p.genotypes), options=p.options, provenance=prov))))
        rows.append((name, "to_markdown", *timed(lambda r=result: to_markdown(r))))
        rows.append((name, "to_html", *timed(lambda r=result: to_html(r))))
        rows.append((name, "to_fhir_careplan (validated)", *timed(lambda r=result: to_fhir_careplan(r), 100)))
    print(f"rule sets and knowledge tables loaded once in {load_ms:.0f} ms "
          f"({len(book.rules)} rules in {len(book.rulesets)} rule sets)\n")
    width = max(len(r[1]) for r in rows)
    print(f"{'patient':<13} {'step':<{width}} {'median ms':>10} {'p95 ms':>8}  target")
    for patient, step, med, p95 in rows:
        mark = ("ok" if med < TARGET_MS else "SLOW") if step.startswith(("plan", "VCF")) else ""
        print(f"{patient:<13} {step:<{width}} {med:>10.2f} {p95:>8.2f}  {mark}")


if __name__ == "__main__":
    main()
