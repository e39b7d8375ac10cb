"""The plan for people and other systems: a FHIR R4 CarePlan (``to_fhir_careplan``), Markdown (``to_markdown``)
and a self-contained HTML page (``to_html``, from ``templates/plan.html.j2``).

Renderers only read the plan dict that :func:`precimed.planning.plan.make_plan` returns; they decide nothing.
JSON embedded in the text (the provenance note and line) is written by :mod:`precimed.jsonio`, the project's one
JSON writer. fhir.resources and jinja2 are imported when first used, so importing planning stays light.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from precimed.jsonio import dumps
from precimed.planning.drugs import drug_vocabulary

TEMPLATES = Path(__file__).resolve().parent / "templates"


# ----- FHIR --------------------------------------------------------------------------------------------------------
def to_fhir_careplan(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The plan as a FHIR R4 CarePlan (status draft, intent proposal), validated with fhir.resources.

    fhir.resources 8 ships R5 by default and the R4-compatible models as ``R4B``; CarePlan is unchanged between
    R4 and R4B. Active recommendations become activities (``doNotPerform`` for avoid); everything else
    (predictions, options, alerts, rules not evaluated, provenance) becomes notes.
    """
    from fhir.resources.R4B.careplan import CarePlan

    vocab = drug_vocabulary()
    activities = []
    for rec in plan["recommendations"]:
        if rec["status"] not in ("active", "unresolved", "information"):
            continue
        acts = rec["actions"] or [None]
        for a in acts:
            detail: dict[str, Any] = {"status": "not-started",
                                      "description": f"{rec['text']} [{rec['strength'] or 'no strength'}; "
                                                     f"{rec['rule_id']}; {rec['source']}]"}
            if a is not None:
                detail["doNotPerform"] = a["type"] == "avoid"
                info = vocab.drugs.get(a["drug"])
                concept: dict[str, Any] = {"text": f"{a['type']}: {a['drug']}"}
                if info is not None and info.atc:
                    concept["coding"] = [{"system": "http://www.whocc.no/atc", "code": info.atc, "display": a["drug"]}]
                detail["productCodeableConcept"] = concept
            activities.append({"detail": detail})
    for d in plan["dose_suggestions"]:
        activities.append({"detail": {"status": "not-started" if d["status"] in ("computed", "decided") else "on-hold",
                                      "description": f"{d['drug']} dose: {d['text']} [{d['source']}]"}})
    notes = []
    for name, p in plan["predictions"].items():
        ci = f" (95% CI {p['ci_low']:.3f}-{p['ci_high']:.3f})" if p["ci_low"] is not None and p["ci_high"] is not None \
            else ""
        notes.append(f"Model prediction {name}: {p['value']:.3f}{ci}")
    for o in plan["options"]:
        notes.append(f"Option {o['rank']}: {o['option']}, predicted benefit {o['benefit']:.3f}"
                     + (f" ({o['ci_low']:.3f} to {o['ci_high']:.3f})" if o["ci_low"] is not None else "")
                     + (f"; blocked by {', '.join(o['blocked_by'])}" if o["blocked_by"] else ""))
    notes += [f"Alert ({a['level']}): {a['message']}" for a in plan["alerts"]]
    notes += [f"Not evaluated: {n['rule_id']}: {n.get('why', '')}" for n in plan["not_evaluated"]]
    if plan["pharmacogenomics"].get("vcf"):
        notes.append(vcf_line(plan["pharmacogenomics"]["vcf"]))
    prov = plan["provenance"]
    notes.append("Provenance: " + dumps({k: prov[k] for k in prov if k != "rulesets"}, indent=None)[:4000])
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "status": "draft",
        "intent": "proposal",
        "title": "precimed treatment plan (decision support; for clinician review)",
        "subject": ({"reference": f"Patient/{plan['patient_id']}"} if plan.get("patient_id")
                    else {"display": "unidentified patient"}),
        "description": f"{len(plan['recommendations'])} recommendation(s), {len(plan['alerts'])} alert(s), "
                       f"{len(plan['not_evaluated'])} rule(s) not evaluated",
        "activity": activities,
        "note": [{"text": n} for n in notes],
    }
    if prov.get("created_utc"):
        resource["created"] = prov["created_utc"]
    model = CarePlan.model_validate(resource)
    return json.loads(model.model_dump_json(exclude_none=True))


# ----- Markdown and HTML -------------------------------------------------------------------------------------------
def _num(x: Any, digits: int = 3) -> str:
    """A number for a table cell (3 decimals for floats), or an en dash when missing."""
    return "–" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ci(lo: Any, hi: Any, digits: int = 3) -> str:
    """An interval as 'low to high', or an en dash when either end is missing."""
    return "–" if lo is None or hi is None else f"{lo:.{digits}f} to {hi:.{digits}f}"


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def vcf_line(vcf: Mapping[str, Any]) -> str:
    """One sentence on the VCF a plan read: file, reference build and how it was known, how absent key positions
    were read and which genes that touched."""
    absent = vcf.get("absent_positions") or {}
    text = (f"Genotypes from {vcf.get('file')} ({vcf.get('samples_in_file')} sample(s) in the file), reference build "
            f"{vcf.get('build')} ({vcf.get('build_from')}); key positions absent from the file: "
            f"{vcf.get('absent_read_as')}")
    if absent:
        text += " — " + "; ".join(f"{g}: {', '.join(rs)}" for g, rs in sorted(absent.items()))
    else:
        text += " — none"
    return text + "."


def to_markdown(plan: Mapping[str, Any]) -> str:
    """A readable plan, every line with its source."""
    lines = [f"# Treatment plan: {plan.get('patient_id') or 'unidentified patient'}", "",
             "_Decision support for clinician review; not an order._", ""]
    prov = plan["provenance"]
    bundle = prov.get("bundle")
    if bundle:
        lines += [f"Model bundle: {bundle.get('id', '?')} (version {bundle.get('version', '?')})", ""]
    if plan["alerts"]:
        lines += ["## Alerts", ""]
        lines += [f"- **{a['level']}** ({a['code']}): {a['message']}" for a in plan["alerts"]]
        lines.append("")
    if plan["predictions"]:
        lines += ["## Model predictions", "", "| output | value | 95% CI | meaning |", "|---|---:|---|---|"]
        for name, p in plan["predictions"].items():
            lines.append(f"| {name} | {_num(p['value'])} | {_ci(p['ci_low'], p['ci_high'])} | "
                         f"{_cell(p.get('description', ''))} |")
        lines.append("")
    if plan["options"]:
        lines += ["## Treatment options, ranked by predicted benefit", "",
                  "| rank | option | benefit | 95% CI | CI overlaps best | blocked by | not preferred by |",
                  "|---:|---|---:|---|---|---|---|"]
        for o in plan["options"]:
            ov = {True: "yes", False: "no", None: "–"}[o["ci_overlaps_best"]]
            lines.append(f"| {o['rank']} | {_cell(o['option'])} | {_num(o['benefit'])} | "
                         f"{_ci(o['ci_low'], o['ci_high'])} | {ov} | {_cell(', '.join(o['blocked_by']) or '–')} | "
                         f"{_cell(', '.join(o['disfavored_by']) or '–')} |")
        unit = next((o["unit"] for o in plan["options"] if o.get("unit")), None)
        if unit:
            lines += ["", f"Benefit: {unit}."]
        lines.append("")
    lines += ["## Recommendations", ""]
    if not plan["recommendations"]:
        lines.append("- none fired")
    for r in plan["recommendations"]:
        acts = "; ".join(
            f"{a['type']} {a['drug']}" + (f" instead of {a['instead_of']}" if a.get("instead_of") else "")
            + (f" ({a['status']}" + (f" by {a['overridden_by']}: {a['reason']}" if a.get("overridden_by") else "")
               + ")" if a["status"] != "active" else "") for a in r["actions"])
        status = "" if r["status"] == "active" else f" _({r['status']})_"
        lines.append(f"- **{r['text']}**{status} — {r['strength'] or 'no'} recommendation; `{r['rule_id']}` "
                     f"({r['ruleset']} {r['version']}); source: {r['source']}" + (f". Actions: {acts}" if acts else ""))
    lines.append("")
    genes = plan["pharmacogenomics"]["genes"]
    if genes:
        lines += ["## Pharmacogenomics", "", "| gene | diplotype | phenotype | activity score | from | notes |",
                  "|---|---|---|---:|---|---|"]
        for g, r in genes.items():
            lines.append(f"| {g} | {_cell(r['diplotype'] or '–')} | {_cell(r['phenotype'])} | "
                         f"{_num(r['activity_score'], 2)} | {r['origin']} | {_cell('; '.join(r['notes']) or '–')} |")
        versions = sorted({f"{g}: {r['version']}" for g, r in genes.items() if r["version"]})
        lines += ["", "Tables: " + "; ".join(versions), ""]
        if plan["pharmacogenomics"].get("vcf"):
            lines += [vcf_line(plan["pharmacogenomics"]["vcf"]), ""]
    if plan["dose_suggestions"]:
        lines += ["## Dose suggestions", ""]
        for d in plan["dose_suggestions"]:
            lines.append(f"- **{d['drug']}** ({d['method'] if 'method' in d else d['measure']}, {d['status']}): "
                         f"{d['text']} — source: {d['source']}")
        lines.append("")
    if plan["contraindications"]:
        lines += ["## Contraindications and allergies", ""]
        lines += [f"- **{c['drug']}** ({c['kind']}, {c.get('severity', 'allergy')}): {c['text']} — source: "
                  f"{c['source']}" for c in plan["contraindications"]]
        lines.append("")
    if plan["interactions"]:
        lines += ["## Drug interactions", ""]
        lines += [f"- **{i['drugs'][0]} + {i['drugs'][1]}** ({i['severity']}): {i['effect']} {i['management']} — "
                  f"source: {i['source']}" for i in plan["interactions"]]
        lines.append("")
    if plan["conflicts"]:
        lines += ["## Conflicts and how they were resolved", ""]
        for c in plan["conflicts"]:
            if c.get("winner"):
                lines.append(f"- {', '.join(c['drugs'])}: **{c['winner']}** wins over {c['loser']} — {c['reason']}")
            else:
                lines.append(f"- {', '.join(c['drugs'])}: unresolved between {c['between']} — {c['reason']}")
        lines.append("")
    skipped = [r for r in plan.get("rulesets", []) if not r["applied"]]
    if skipped:
        lines += ["## Rule sets not applied", ""]
        lines += [f"- {r['ruleset']} {r['version']} ({r['rules']} rules): {r['why']}" for r in skipped]
        lines.append("")
    if plan["not_evaluated"]:
        lines += ["## Not evaluated", ""]
        lines += [f"- `{n['rule_id']}` ({n['ruleset']}): {n.get('why') or 'missing ' + ', '.join(n['missing'])}"
                  for n in plan["not_evaluated"]]
        lines.append("")
    if plan["derived"]:
        lines += ["## Calculated values", ""]
        for k, v in plan["derived"].items():
            lines.append(f"- {k} = {v['value']} ({v['method']})" + (f" — source: {v['source']}" if v.get("source")
                                                                    else ""))
        lines.append("")
    lines += ["## Facts used", "", ", ".join(f"{k} = {v}" for k, v in plan["facts_used"].items()) or "none", ""]
    if plan["facts_set_aside"]:
        lines += ["Not available or set aside: " + "; ".join(f"{k} ({v})" for k, v in plan["facts_set_aside"].items()),
                  ""]
    lines += ["## Provenance", "",
              f"- precimed {prov['precimed_version']}; rule sets: "
              + ", ".join(f"{r['id']} {r['version']}" for r in prov["rulesets"]),
              "- CPIC: " + "; ".join(f"{k} {v}" for k, v in prov["cpic"].items()),
              "- knowledge: " + "; ".join(f"{k} {v}" for k, v in prov["knowledge"].items())]
    extra = {k: v for k, v in prov.items() if k not in ("precimed_version", "rulesets", "cpic", "knowledge",
                                                         "fact_schema")}
    if extra:
        lines.append("- caller: " + dumps(extra, indent=None))
    return "\n".join(lines) + "\n"


@cache
def _template() -> Any:
    """The jinja2 template of the HTML page, autoescaped, with the number filters; built once."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = _num
    env.filters["ci"] = _ci
    env.filters["vcf_line"] = vcf_line
    return env.get_template("plan.html.j2")


def to_html(plan: Mapping[str, Any]) -> str:
    """A self-contained HTML page of the plan (jinja2, autoescaped)."""
    return _template().render(plan=plan)
