"""Planning input, the same way everywhere (issue 11, finding 11) and plans without server paths (finding 10).

Each test attacks one property: a malformed diplotype must give the same alert (and the gene's recommendations
not evaluated) from the command line with and without a VCF, the Python API and the HTTP service; a multi-sample
VCF without ``--sample`` is one line and exit 2 that never prints a sample's name; ``--absent reference`` is
stated in the plan for every gene it touched; the reference build is stated, inferred or not; and no plan output
holds a path of the machine that made it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import precimed
from precimed.planning import pgx

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(precimed.__file__).resolve().parent
DOCS = ROOT / "docs" / "planning.md"
SAMPLES = ("PATIENT-A-0001", "PATIENT-B-0002", "PATIENT-C-0003")
OUTPUTS = ("plan.json", "plan.md", "plan.html", "careplan.fhir.json")
#: An absolute path under a directory a server has: what a plan must never carry.
SERVER_PATH = re.compile(r"(?<![\w.])/(?:work|home|usr|opt|tmp|var|root|srv|etc|private|Users)/[\w.-]+")


def vcf_text(changes: dict[str, str] | None = None, *, build: str = "GRCh38", header: str = "##reference=GRCh38",
             samples: tuple[str, ...] = ("S1",), only: tuple[str, ...] | None = None) -> str:
    """A VCF at the key positions: every one (reference unless changed), or `only` these rsIDs (variant-only)."""
    lines = ["##fileformat=VCFv4.2", header, "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
             + "\t".join(samples)]
    for v in pgx.variant_table().variants:
        if only is not None and v.rsid not in only:
            continue
        gts = [(changes or {}).get(v.rsid, "0/0")] + ["0/0"] * (len(samples) - 1)
        lines.append(f"{v.chrom}\t{v.pos[build]}\t{v.rsid}\t{v.ref}\t{v.alt}\t.\tPASS\t.\tGT\t" + "\t".join(gts))
    return "\n".join(lines) + "\n"


def patient_doc(**genotypes: str) -> dict:
    return {"patient_id": "sec-plan-1", "facts": {"age": 67, "sex": "female", "weight_kg": 68, "height_cm": 160,
                                                   "medications": [], "planned_drugs": ["codeine", "warfarin"]},
            "genotypes": genotypes}


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


def plan_via_cli(run_cli, out: Path, *args) -> dict:
    code, _, err = run_cli("plan", *args, "--out", out)
    assert code == 0, err
    return json.loads((out / "plan.json").read_text())


@pytest.fixture(scope="module")
def http():
    """The service with an empty registry and a clinician token: /v1/plans without training a model."""
    pytest.importorskip("fastapi")
    import tempfile

    from fastapi.testclient import TestClient

    from precimed.service import ServiceSettings, cli_commands, create_app
    from precimed.service.container import container_of

    registry = Path(tempfile.mkdtemp(prefix="precimed-plan-sec-")) / "registry"
    _, token = cli_commands.tokens_create(registry, "clinician", label="planning input")
    app = create_app(ServiceSettings(registry=registry))
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {token}"}
    container_of(app).db.dispose()
    shutil.rmtree(registry.parent, ignore_errors=True)


# ----- 1. a malformed diplotype: one behaviour on every path -------------------------------------------------------
def genotype_view(plan: dict) -> tuple:
    """What a malformed call must produce, identically: its alert, the gene's result, the CPIC lines."""
    alerts = [a for a in plan["alerts"] if a["code"] == "genotype"]
    gene = plan["pharmacogenomics"]["genes"].get("CYP2D6", {})
    codeine = next(r for r in plan["recommendations"] if r["rule_id"] == "cpic-codeine")
    skipped = [n for n in plan["not_evaluated"] if n["rule_id"] == "cpic-codeine"]
    return alerts, gene.get("phenotype"), gene.get("notes"), codeine["status"], skipped


@pytest.mark.parametrize("bad", ["*1/*2/*3", "*4", "*1/"])
def test_a_malformed_diplotype_is_the_same_alert_with_or_without_a_vcf_in_the_api_and_over_http(
        bad, run_cli, tmp_path, http):
    doc = patient_doc(CYP2D6=bad)
    patient = write(tmp_path, "patient.json", json.dumps(doc))
    vcf = write(tmp_path, "sample.vcf", vcf_text({"rs1057910": "0/1"}))
    without = plan_via_cli(run_cli, tmp_path / "a", "--patient", patient)
    with_vcf = plan_via_cli(run_cli, tmp_path / "b", "--patient", patient, "--genotypes", vcf)
    api = precimed.plan(patient)
    client, auth = http
    r = client.post("/v1/plans", json=doc, headers=auth)
    assert r.status_code == 200, r.text
    views = [genotype_view(p) for p in (without, with_vcf, api, r.json()["plan"])]
    assert all(v == views[0] for v in views[1:])
    alerts, phenotype, notes, status, skipped = views[0]
    assert [a["level"] for a in alerts] == ["error"] and alerts[0]["message"].startswith("CYP2D6: ")
    assert repr(bad) in alerts[0]["message"]  # names the gene and the value
    assert phenotype == "Indeterminate" and "the call could not be read" in notes[0]
    assert status == "not_evaluated" and skipped[0]["missing"] == ["CYP2D6_phenotype"]
    assert with_vcf["pharmacogenomics"]["genes"]["CYP2C9"]["diplotype"] == "*1/*3"  # the rest is still decided


def test_an_unknown_gene_in_the_patient_file_is_an_alert_not_an_abort_with_a_vcf(run_cli, tmp_path):
    patient = write(tmp_path, "patient.json", json.dumps(patient_doc(CYP9Z9="*1/*1")))
    vcf = write(tmp_path, "sample.vcf", vcf_text())
    plan = plan_via_cli(run_cli, tmp_path / "out", "--patient", patient, "--genotypes", vcf)
    [alert] = [a for a in plan["alerts"] if a["code"] == "genotype"]
    assert "unknown gene 'CYP9Z9'" in alert["message"]
    assert plan["pharmacogenomics"]["genes"]["CYP2C19"]["phenotype"] == "Normal Metabolizer"


# ----- 2. multi-sample VCFs: --sample, one line and exit 2 without it ----------------------------------------------
def test_a_multi_sample_vcf_without_sample_is_one_line_exit_2_giving_the_count_not_the_names(run_cli, tmp_path):
    patient = write(tmp_path, "patient.json", json.dumps(patient_doc()))
    vcf = write(tmp_path, "family.vcf", vcf_text({"rs4244285": "0/1"}, samples=SAMPLES))
    code, out, err = run_cli("plan", "--patient", patient, "--genotypes", vcf, "--out", tmp_path / "out")
    assert one_error_line(code, err) == "error: family.vcf: 3 samples; choose one with --sample"
    assert not any(name in err + out for name in SAMPLES) and not (tmp_path / "out").exists()
    code, out, err = run_cli("plan", "--patient", patient, "--genotypes", vcf, "--sample", "NOBODY-9")
    line = one_error_line(code, err)
    assert "--sample" in line and "3 sample(s)" in line and "NOBODY-9" not in line
    assert not any(name in err for name in SAMPLES)


def test_sample_picks_the_named_column_of_a_multi_sample_vcf(run_cli, tmp_path):
    patient = write(tmp_path, "patient.json", json.dumps(patient_doc()))
    text = vcf_text(samples=SAMPLES).replace("rs4244285\tG\tA\t.\tPASS\t.\tGT\t0/0\t0/0\t0/0",
                                             "rs4244285\tG\tA\t.\tPASS\t.\tGT\t0/0\t1/1\t0/0")
    vcf = write(tmp_path, "family.vcf", text)
    plan = plan_via_cli(run_cli, tmp_path / "out", "--patient", patient, "--genotypes", vcf, "--sample", SAMPLES[1])
    assert plan["pharmacogenomics"]["genes"]["CYP2C19"]["phenotype"] == "Poor Metabolizer"
    assert plan["pharmacogenomics"]["vcf"]["samples_in_file"] == 3


@pytest.mark.parametrize("option", [("--sample", "S1"), ("--absent", "reference"), ("--build", "GRCh38")])
def test_vcf_options_without_a_vcf_are_refused_in_one_line(run_cli, tmp_path, option):
    patient = write(tmp_path, "patient.json", json.dumps(patient_doc()))
    line = one_error_line(*run_cli("plan", "--patient", patient, *option)[::2])
    assert option[0] in line and "--genotypes" in line


# ----- 3. --absent reference and the reference build, stated in the plan ------------------------------------------
def test_absent_reference_is_stated_for_every_gene_it_affected_and_only_those(run_cli, tmp_path):
    patient = write(tmp_path, "patient.json", json.dumps(patient_doc()))
    variants_only = vcf_text({"rs4244285": "0/1", "rs1057910": "0/1"}, build="GRCh37", header="##source=lab",
                             only=("rs4244285", "rs1057910"))
    vcf = write(tmp_path, "variants.vcf", variants_only)
    strict = plan_via_cli(run_cli, tmp_path / "strict", "--patient", patient, "--genotypes", vcf)
    assert strict["pharmacogenomics"]["genes"]["CYP2C19"]["phenotype"] == "Indeterminate"  # default: not called
    plan = plan_via_cli(run_cli, tmp_path / "ref", "--patient", patient, "--genotypes", vcf, "--absent", "reference")
    genes, read = plan["pharmacogenomics"]["genes"], plan["pharmacogenomics"]["vcf"]
    assert genes["CYP2C19"]["diplotype"] == "*1/*2" and genes["CYP2C9"]["diplotype"] == "*1/*3"
    assert read["absent"] == "reference" and read["absent_read_as"] == "homozygous reference"
    everyone = {v.gene for v in pgx.variant_table().variants}
    assert set(read["absent_positions"]) == everyone  # the file lists only two positions
    for gene in everyone:
        assert any("assumed homozygous reference" in n for n in genes[gene]["notes"]), gene
    [alert] = [a for a in plan["alerts"] if a["code"] == "absent-read-as-reference"]
    assert alert["level"] == "warning" and all(f"{g}: " in alert["message"] for g in everyone)
    assert "rs3918290" in alert["message"] and "rs4244285" not in alert["message"]
    for name in ("plan.md", "plan.html"):
        assert "homozygous reference" in (tmp_path / "ref" / name).read_text()


def test_absent_reference_never_reads_a_no_call_as_reference(tmp_path):
    genotypes = pgx.load_genotypes(vcf_text({"rs4244285": "./."}), absent="reference")
    assert genotypes["CYP2C19"].phenotype == "Indeterminate" and "no call" in genotypes["CYP2C19"].notes[0]


@pytest.mark.parametrize(("build", "header", "expected_from"), [
    ("GRCh37", "##source=lab", "inferred from the positions of the key variants"),
    ("GRCh38", "##source=lab", "inferred from the positions of the key variants"),
    ("GRCh38", "##reference=GRCh38", "header"),
])
def test_the_reference_build_and_how_it_was_known_are_stated_in_plan_json(run_cli, tmp_path, build, header,
                                                                           expected_from):
    patient = write(tmp_path, "patient.json", json.dumps(patient_doc()))
    vcf = write(tmp_path, "s.vcf", vcf_text(build=build, header=header))
    read = plan_via_cli(run_cli, tmp_path / "out", "--patient", patient, "--genotypes", vcf)["pharmacogenomics"]["vcf"]
    assert (read["build"], read["build_from"], read["file"]) == (build, expected_from, "s.vcf")


def test_a_wrong_build_given_on_the_command_line_is_one_line_naming_the_variant(run_cli, tmp_path):
    patient = write(tmp_path, "patient.json", json.dumps(patient_doc()))
    vcf = write(tmp_path, "s.vcf", vcf_text(build="GRCh37", header="##source=lab"))
    line = one_error_line(*run_cli("plan", "--patient", patient, "--genotypes", vcf, "--build", "GRCh38")[::2])
    assert "GRCh37 position: wrong build?" in line and line.startswith("error: s.vcf line ")


def test_the_key_positions_are_listed_by_the_command_and_in_the_docs(run_cli):
    code, out, err = run_cli("plan", "--key-positions")
    assert code == 0, err
    code, help_text, _ = run_cli("plan", "--help")
    assert code == 0 and "--key-positions" in help_text
    docs = DOCS.read_text()
    for v in pgx.variant_table().variants:
        assert v.rsid in out and str(v.pos["GRCh38"]) in out
        assert re.search(rf"\| {v.gene} \| {v.rsid} \| .* \| {v.pos['GRCh37']} \| {v.pos['GRCh38']} \| "
                         rf"{v.ref}>{v.alt} \|", docs), v.rsid


# ----- provenance: ids and versions, never a path ---------------------------------------------------------------
def assert_no_server_path(text: str, *roots: Path) -> None:
    for root in (PACKAGE, ROOT, *roots):
        assert str(root) not in text
    assert "site-packages" not in text and "dist-packages" not in text
    assert not SERVER_PATH.search(text), SERVER_PATH.search(text).group(0)


def test_no_plan_output_holds_a_server_path(run_cli, tmp_path):
    site = tmp_path / "site-rules"
    site.mkdir()
    shutil.copy(PACKAGE / "planning" / "knowledge" / "rules" / "statins.yaml", site / "statins.yaml")
    (site / "schema.yaml").write_text("facts: {}\n")  # a site schema without a version
    patient = write(tmp_path / "in", "patient.json", json.dumps(patient_doc(CYP2D6="*1/*2/*3")))
    vcf = write(tmp_path / "in", "s.vcf", vcf_text())
    for args, out in (((), "packaged"), (("--rules", site), "site")):
        plan_via_cli(run_cli, tmp_path / out, "--patient", patient, "--genotypes", vcf, *args)
        for name in OUTPUTS:
            assert_no_server_path((tmp_path / out / name).read_text(), tmp_path)
    plan = json.loads((tmp_path / "site" / "plan.json").read_text())
    assert plan["provenance"]["rulesets"] == [{"id": "statins", "version": "2024.1", "source": plan["provenance"][
        "rulesets"][0]["source"], "file": "statins.yaml", "origin": "site", "rules": "4"}]
    assert plan["provenance"]["patient_file"] == "patient.json" and plan["pharmacogenomics"]["vcf"]["file"] == "s.vcf"


def test_an_unreadable_vcf_given_to_make_plan_is_an_alert_without_its_path(tmp_path):
    from precimed.planning import load_rules, make_plan

    missing = tmp_path / "deep" / "folder" / "gone.vcf"
    plan = make_plan({"age": 50}, {}, rules=load_rules(), genotypes=missing, provenance={})
    [alert] = [a for a in plan["alerts"] if a["code"] == "genotype"]
    assert alert["message"] == "genotypes not read: gone.vcf: no such VCF file"
    assert_no_server_path(json.dumps(plan), tmp_path)


def test_a_plan_over_http_names_rule_sets_by_id_and_version_without_paths(http):
    client, auth = http
    r = client.post("/v1/plans", json=patient_doc(CYP2D6="*1/*4"), headers=auth)
    assert r.status_code == 200, r.text
    assert_no_server_path(r.text)
    rulesets = r.json()["plan"]["provenance"]["rulesets"]
    assert rulesets and all(set(rs) == {"id", "version", "source", "file", "origin", "rules"} for rs in rulesets)
    assert {rs["origin"] for rs in rulesets} == {"packaged"}
