"""The plan recipe: a bundle's predictions for one patient joined with guideline rules, pharmacogenomics,
dosing and safety checks into a plan whose every line says why."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from precimed.atomic import atomic_dir
from precimed.errors import ConfigError, DataError
from precimed.jsonio import dumps
from precimed.planning import load_rules, make_plan, pgx, to_fhir_careplan, to_html, to_markdown
from precimed.planning.plan import load_patient


def effects_for(effects_dir: Path, patient_id: str) -> tuple[dict, dict, dict]:
    """One patient's predicted outcome under each arm and effect vs control, with intervals, from an effects run.

    Returns (predictions, options by arm, provenance). The values are cross-fitted: the learner that scored this
    patient never saw them (see effects.json's design).
    """
    effects_dir = Path(effects_dir)
    try:
        doc = json.loads((effects_dir / "effects.json").read_text())
        table = pd.read_csv(effects_dir / "patient_effects.csv", dtype={0: str})
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{effects_dir}: not an effects run folder (effects.json, patient_effects.csv): "
                          f"{exc}") from None
    id_col = table.columns[0]
    rows = table[table[id_col].astype(str) == str(patient_id)]
    if rows.empty:
        raise DataError(f"{effects_dir}: patient {patient_id!r} is not in patient_effects.csv; pass --effects-id "
                        "with the trial's id of this patient", column=id_col)
    row = rows.iloc[0]
    measure, unit, horizon = doc["measure"], doc.get("time_unit") or "", doc.get("horizon")
    sign = 1.0 if doc.get("higher_is_better", True) else -1.0
    preds, options = {}, {}
    for arm in doc["arms"]:
        col = f"{measure}_{arm}"
        preds[col] = {"value": float(row[col]), "ci_low": float(row[f"{col}_low"]),
                      "ci_high": float(row[f"{col}_high"]),
                      "description": f"predicted {measure} at {horizon:g} {unit} under {arm}"}
        if arm == doc["control"]:
            options[arm] = {"benefit": 0.0, "ci_low": 0.0, "ci_high": 0.0}
            continue
        key = f"effect_{arm}_vs_{doc['control']}"
        lo, hi = sign * float(row[f"{key}_low"]), sign * float(row[f"{key}_high"])
        options[arm] = {"benefit": sign * float(row[key]), "ci_low": min(lo, hi), "ci_high": max(lo, hi),
                        "unit": f"{measure} gained vs {doc['control']} at {horizon:g} {unit}, cross-fitted"}
    provenance = {"run": doc.get("run"), "folder": effects_dir.name, "measure": measure, "horizon": horizon,
                  "cross_fitted": True, "patient": str(patient_id)}
    return preds, options, provenance


def key_positions() -> list[dict[str, str]]:
    """The key pharmacogenomic positions a VCF given to a plan is read at: gene, rsID, HGVS name, chromosome,
    GRCh37 and GRCh38 positions, REF and ALT (forward strand). ``precimed plan --key-positions`` prints them."""
    return [{"gene": v.gene, "rsid": v.rsid, "hgvs": v.hgvs, "chrom": v.chrom, "grch37": str(v.pos["GRCh37"]),
             "grch38": str(v.pos["GRCh38"]), "ref": v.ref, "alt": v.alt} for v in pgx.variant_table().variants]


def _genotypes(calls: dict, vcf: Path | None, *, sample: str | None, absent: str, build: str | None
               ) -> pgx.Genotypes:
    """The patient's genotypes: the VCF's (when given) merged with the file's diplotype calls, read the same way
    with or without a VCF, so a malformed call is an alert either way. VCF options without a VCF are refused."""
    if vcf is None:
        given = [name for name, value in (("--sample", sample), ("--build", build)) if value is not None]
        if absent != "not-called":
            given.append("--absent")
        if given:
            raise ConfigError(f"{', '.join(given)} set how a VCF is read, and no VCF was given; pass one with "
                              "--genotypes")
    return pgx.load_genotypes(vcf, calls, build=build, sample=sample, absent=absent)


def plan_patient(bundle_dir: Path | None, patient: Path, *, rules: Path | None = None, genotypes: Path | None = None,
                 model: str | None = None, effects: Path | None = None, effects_id: str | None = None,
                 sample: str | None = None, absent: str = "not-called", build: str | None = None) -> dict:
    """The plan for the patient in `patient` (JSON: facts, model_input, genotypes, options).

    The bundle's predictions replace any example predictions the file carries; without a bundle the plan
    uses the file's predictions, and says so in its provenance. With `effects` (an effects run folder) the
    options' benefits and intervals come from that run's cross-fitted per-patient effects: an option of the
    patient file whose `arm` names an effects arm keeps its drugs and takes the run's numbers.

    `genotypes` is a VCF of the key positions (:func:`key_positions`); `sample` picks one sample of a
    multi-sample VCF, `absent="reference"` reads a key position the file does not list as homozygous reference
    (variant-only VCFs; the plan states it for each gene it affected), and `build` overrides the reference build
    otherwise taken from the header or inferred from the positions (the plan states which, and how it was known).
    """
    patient = Path(patient)
    p = load_patient(patient)
    g = _genotypes(p.genotypes, genotypes, sample=sample, absent=absent, build=build)
    preds = dict(p.predictions)
    options = dict(p.options)
    provenance: dict = {"created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                        "patient_file": Path(patient).name}
    if bundle_dir is not None:
        # imported only when a bundle is used, so that a plan without one starts without torch (start-up time,
        # not an import cycle: planning sits below workflows and never imports them)
        from precimed.bundle import load_bundle
        from precimed.workflows.predicting import predict_frame

        bundle = load_bundle(bundle_dir)
        model = bundle.model_named(model)
        if p.model_input:
            row = predict_frame(bundle, pd.DataFrame([p.model_input]), model=model, where=str(patient)).iloc[0]
            preds.update({k: float(v) for k, v in row.items() if k not in (bundle.metadata["id_column"], "model")})
        provenance["bundle"] = {"id": bundle.ref, "name": bundle.metadata["name"], "model": model,
                                "version": bundle.metadata["precimed_version"]}
    else:
        provenance["bundle"] = None
        provenance["predictions"] = "taken from the patient file, not from a model"
    if effects is not None:
        pid = effects_id or p.patient_id
        if pid is None:
            raise ConfigError(f"{patient}: no patient_id to look up in {effects}; pass --effects-id")
        eff_preds, by_arm, provenance["effects"] = effects_for(effects, pid)
        preds.update(eff_preds)
        linked = {name: spec for name, spec in options.items() if isinstance(spec, dict) and spec.get("arm") in by_arm}
        options = {name: spec for name, spec in options.items() if name not in linked}
        for name, spec in linked.items():
            options[name] = {k: v for k, v in spec.items() if k not in ("benefit", "ci_low", "ci_high", "unit")}
            options[name] |= by_arm[spec["arm"]]
        for arm, spec in by_arm.items():
            if not any(s.get("arm") == arm for s in linked.values()):
                options[arm] = spec
    return make_plan(p.facts, preds, rules=load_rules(rules), genotypes=g, options=options, provenance=provenance)


def plan(patient: Path | str, *, bundle: Path | str | None = None, rules: Path | str | None = None,
         genotypes: Path | str | None = None, model: str | None = None, effects: Path | str | None = None,
         effects_id: str | None = None, sample: str | None = None, absent: str = "not-called",
         build: str | None = None) -> dict:
    """A treatment plan for one patient file: predictions, guideline rules, PGx, doses, interactions, each
    line with its reason. Without a bundle it uses the file's predictions (and never imports torch).

    The public ``precimed.plan``; ``precimed plan`` calls :func:`plan_patient` beneath it, and the service's
    plans go through the same ``make_plan`` (a malformed diplotype is the same alert on every path).
    """
    return plan_patient(_path(bundle), Path(patient), rules=_path(rules), genotypes=_path(genotypes), model=model,
                        effects=_path(effects), effects_id=effects_id, sample=sample, absent=absent, build=build)


def _path(value: Path | str | None) -> Path | None:
    return Path(value) if value is not None else None


def write_plan(plan: dict, out_dir: Path, *, overwrite: bool = False) -> Path:
    """plan.json, plan.md, plan.html and careplan.fhir.json (a validated FHIR R4 CarePlan), written atomically."""
    with atomic_dir(Path(out_dir), overwrite=overwrite) as tmp:
        (tmp / "plan.json").write_text(dumps(plan))
        (tmp / "plan.md").write_text(to_markdown(plan))
        (tmp / "plan.html").write_text(to_html(plan))
        (tmp / "careplan.fhir.json").write_text(dumps(to_fhir_careplan(plan)))
    return Path(out_dir)
