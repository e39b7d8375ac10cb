"""The plan recipe: a bundle's predictions for one patient joined with guideline rules, pharmacogenomics,
dosing and safety checks into a plan whose every line says why."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from precimed.atomic import atomic_dir
from precimed.bundle import load_bundle
from precimed.planning import load_rules, make_plan, pgx, to_fhir_careplan, to_html, to_markdown
from precimed.planning.plan import load_patient
from precimed.workflows.modeling import DEEP_MODEL, predict_frame


def plan_patient(bundle_dir: Path | None, patient: Path, *, rules: Path | None = None, genotypes: Path | None = None,
                 model: str = DEEP_MODEL) -> dict:
    """The plan for the patient in `patient` (JSON: facts, model_input, genotypes, options).

    The bundle's predictions replace any example predictions the file carries; without a bundle the plan
    uses the file's predictions, and says so in its provenance.
    """
    p = load_patient(patient)
    preds = dict(p.predictions)
    provenance: dict = {"created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                        "patient_file": Path(patient).name}
    if bundle_dir is not None:
        bundle = load_bundle(bundle_dir)
        if p.model_input:
            row = predict_frame(bundle, pd.DataFrame([p.model_input]), model=model, where=str(patient)).iloc[0]
            preds.update({k: float(v) for k, v in row.items() if k not in (bundle.metadata["id_column"], "model")})
        provenance["bundle"] = {"id": bundle.ref, "name": bundle.metadata["name"], "model": model,
                                "version": bundle.metadata["precimed_version"]}
    else:
        provenance["bundle"] = None
        provenance["predictions"] = "taken from the patient file, not from a model"
    g = pgx.load_genotypes(genotypes, p.genotypes) if genotypes else p.genotypes
    return make_plan(p.facts, preds, rules=load_rules(rules), genotypes=g, options=p.options, provenance=provenance)


def write_plan(plan: dict, out_dir: Path, *, overwrite: bool = False) -> Path:
    """plan.json, plan.md, plan.html and careplan.fhir.json (a validated FHIR R4 CarePlan), written atomically."""
    with atomic_dir(Path(out_dir), overwrite=overwrite) as tmp:
        (tmp / "plan.json").write_text(json.dumps(plan, indent=2, default=str))
        (tmp / "plan.md").write_text(to_markdown(plan))
        (tmp / "plan.html").write_text(to_html(plan))
        (tmp / "careplan.fhir.json").write_text(json.dumps(to_fhir_careplan(plan), indent=2, default=str))
    return Path(out_dir)
