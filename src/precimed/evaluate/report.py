"""The one-page evaluation report: one self-contained HTML file per run.

:func:`write_report` computes the curves (:mod:`~precimed.evaluate.curves`), draws the figures
(:mod:`~precimed.evaluate.plots`), builds Table 1 (:mod:`~precimed.evaluate.table_one`) and renders
``templates/report.html.j2`` with jinja2 (autoescape on). The file needs nothing else: images are
PNG ``data:`` URIs, the CSS is inline, a Content-Security-Policy forbids every external fetch, and
one small inline script only records, after load, whether every image decoded
(``<body data-images-ok="N/M">``) and any script or resource error (``data-errors``), so a headless
browser can check the page.

Every section has a fixed ``id`` (see :data:`SECTION_IDS`). A section whose numbers cannot be
computed on the data given (an ROC curve with one outcome class) still appears, with the reason.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from precimed.atomic import atomic_write_bytes
from precimed.errors import ConfigError, DataError

from . import curves as cv
from . import plots as pl
from .model_card import PRIMARY_METRIC, fmt_ci, markdown_html, metric_label
from .table_one import table_one

__all__ = ["SECTION_IDS", "render_report", "write_report"]

#: section ids by task, in page order (optional sections appear only when their input is given)
SECTION_IDS: dict[str, tuple[str, ...]] = {
    "common": ("summary", "cohort", "metrics"),
    "binary": ("discrimination", "calibration", "decision-curve", "thresholds", "confusion"),
    "multiclass": ("discrimination", "confusion"),
    "regression": ("calibration",),
    "survival": ("km-risk-groups", "td-auc", "survival-calibration"),
    "optional": ("training", "subgroups", "importance", "model-card"),
    "uncertainty": ("uncertainty",),  # runs with `uncertainty:` only (metrics_doc["uncertainty"])
}
TASKS = ("binary", "multiclass", "regression", "survival")
SMOOTH_BOOT = 200  # bootstrap replicates for the band of the smoothed calibration curve
_NUMBER = re.compile(r"^[-–−+]?[\d.]")


def _template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    text = (resources.files("precimed.evaluate") / "templates" / "report.html.j2").read_text(encoding="utf-8")
    return env.from_string(text)


def _f(x: float | None, digits: int = 3) -> str:
    if x is None or not isinstance(x, int | float | np.floating | np.integer) or not math.isfinite(float(x)):
        return "–"
    return f"{float(x):.{digits}f}"


def _section(sid: str, title: str, lead: str = "") -> dict[str, Any]:
    return {"id": sid, "title": title, "lead": lead, "images": [], "tables": [], "notes": [], "html": None,
            "error": None}


def _guard(section: dict[str, Any], build: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run ``build(section)``; a data problem becomes a visible note instead of a failed report."""
    try:
        build(section)
    except DataError as exc:
        section["error"] = f"Not available for these data: {exc}"
    return section


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], *, caption: str = "",
           head_groups: Sequence[tuple[str, int]] | None = None, first_is_label: bool = True,
           row_classes: Sequence[str] | None = None) -> dict[str, Any]:
    cells = [list(map(str, r)) for r in rows]
    width = max([len(head), *(len(r) for r in cells)])
    numeric = [
        bool(cells) and not (j == 0 and first_is_label)
        and all(_NUMBER.match(r[j]) or r[j] in ("–", "-", "") for r in cells if j < len(r))
        for j in range(width)
    ]
    return {"caption": caption, "head": list(head), "rows": cells, "numeric": numeric,
            "head_groups": list(head_groups or []), "first_is_label": first_is_label,
            "row_classes": list(row_classes or [""] * len(rows))}


# ---------------------------------------------------------------------------------------------
# inputs


def _check_outputs(task: str, outputs: Mapping[str, Mapping[str, Any]], n: int) -> None:
    if not outputs:
        raise ConfigError("outputs is empty: pass {model name: model outputs} for at least one model.")
    key = {"binary": "proba", "multiclass": "proba", "regression": "value", "survival": "risk"}[task]
    for name, out in outputs.items():
        if key not in out:
            raise DataError(f"outputs[{name!r}] has no {key!r}; a {task} model's outputs are "
                            f"{{'{key}': array, ...}} as workflows.model_outputs returns them.", column=key)
        if len(np.asarray(out[key])) != n:
            raise DataError(f"outputs[{name!r}][{key!r}] has {len(np.asarray(out[key]))} rows but y_test has "
                            f"{n}; pass predictions for the test rows, in the same order.", column=key)


def _quality_lines(report: Mapping[str, Any]) -> list[str]:
    """A short headline of a data-quality report (``preprocess.quality_report`` output)."""
    lines = []
    features = report.get("features") or list(report.get("missing", {}))
    lines.append(f"{report.get('source', '?')}: {report.get('rows', '?')} rows, {len(features)} features")
    dup_rows = (report.get("duplicate_rows") or {}).get("count", 0)
    dup_ids = (report.get("duplicate_ids") or {}).get("count", 0)
    lines.append(f"duplicates: {dup_rows} repeated row(s), {dup_ids} repeated id(s)" if dup_rows or dup_ids
                 else "duplicates: none")
    missing = {k: v for k, v in (report.get("missing") or {}).items() if v.get("count")}
    lines.append("missing: " + (", ".join(f"{k} {v['count']} ({100 * v.get('fraction', 0):.1f}%)"
                                          for k, v in missing.items()) or "none"))
    ranged = report.get("out_of_range") or {}
    lines.append("out of range (treated as missing): "
                 + (", ".join(f"{k} {v.get('count', 0)}" for k, v in ranged.items()) or "none"))
    invalid = report.get("invalid") or {}
    if invalid:
        lines.append("invalid values: " + ", ".join(f"{k} {v.get('count', 0)}" for k, v in invalid.items()))
    return lines


# ---------------------------------------------------------------------------------------------
# sections


def _summary(task: str, doc: Mapping[str, Any], models: Sequence[str], threshold: float,
             horizons: Sequence[float] | None, time_unit: str | None) -> dict[str, Any]:
    s = _section("summary", "Summary")
    data = doc.get("data", {})
    rows = [["task", task], ["models", ", ".join(models)]]
    if doc.get("run"):
        rows.insert(0, ["run", doc["run"]])
    for label, key in (("development data", "train"), ("evaluation data", "test")):
        d = data.get(key)
        if d:
            bits = [f"n = {d.get('n', '?')}"]
            if d.get("events") is not None:
                bits.append(f"{d['events']} events")
            rows.append([label, f"{d.get('name', '?')} ({', '.join(bits)})"])
    boot = doc.get("bootstrap") or {}
    if boot:
        rows.append(["confidence intervals", f"{int(100 * boot.get('level', 0.95))}% percentile bootstrap, "
                                             f"{boot.get('replicates', '?')} replicates of the evaluation set"])
    if task == "binary":
        rows.append(["classification threshold", f"{threshold:g}"])
    if task == "survival" and horizons:
        rows.append(["horizons", ", ".join(f"{h:g}" for h in horizons) + (f" {time_unit}" if time_unit else "")])
    rows.append(["generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")])
    s["tables"].append(_table(["", ""], rows))
    return s


def _cohort(train_frame, test_frame, y_train, y_test, features, task, classes, time_unit,
            quality) -> dict[str, Any]:
    s = _section("cohort", "Cohort", "Table 1: characteristics of the development and evaluation data, "
                 "overall and by outcome group.")

    def build(sec: dict[str, Any]) -> None:
        t1 = table_one(train_frame, test_frame, y_train, y_test, features, task=task, classes=classes,
                       time_unit=time_unit)
        cols = t1["columns"]
        groups: list[tuple[str, int]] = [("", 1)]
        for col in cols:
            if groups[-1][0] == col["split"]:
                groups[-1] = (col["split"], groups[-1][1] + 1)
            else:
                groups.append((col["split"], 1))
        head = ["characteristic"] + [f"{'all' if c['group'] == 'overall' else c['group']} (n={c['n']})"
                                     for c in cols]
        rows = [[("\u2003" * r["level"]) + r["label"], *r["cells"]] for r in t1["rows"]]
        classes_ = ["t1-" + r["kind"] for r in t1["rows"]]
        sec["tables"].append(_table(head, rows, head_groups=groups, row_classes=classes_,
                                    caption="Table 1"))
        sec["notes"] += t1["notes"]
        for split, report in (quality or {}).items():
            if isinstance(report, Mapping):
                sec["notes"].append(f"Data quality ({split}): " + "; ".join(_quality_lines(report)))
                sec["notes"] += [f"{split}: {note}" for note in (report.get("notes") or [])[:10]]

    return _guard(s, build)


def _metrics(doc: Mapping[str, Any], models: Sequence[str], task: str, time_unit: str | None) -> dict[str, Any]:
    s = _section("metrics", "Performance with confidence intervals")
    found = doc.get("models") or {}
    names = [m for m in models if m in found] + [m for m in found if m not in models]
    if not names:
        s["error"] = "metrics_doc has no 'models' entry: run the evaluation with bootstrap CIs first."
        return s
    keys = list(dict.fromkeys(k for m in names for k in found[m]))
    rows = [[metric_label(k, time_unit), *(fmt_ci(found[m].get(k)) for m in names)] for k in keys]
    s["tables"].append(_table(["metric", *names], rows))
    primary, higher = PRIMARY_METRIC[task]
    values = {m: found[m].get(primary, {}).get("value") for m in names if isinstance(found[m].get(primary), Mapping)}
    values = {m: v for m, v in values.items() if v is not None and math.isfinite(v)}
    if values:
        best = (max if higher else min)(values, key=values.get)
        s["notes"].append(f"Best {metric_label(primary, time_unit)}: {best} ({_f(values[best])}). "
                          "Overlapping intervals mean the data cannot tell the models apart.")
    return s


def _binary_sections(y, outputs, threshold, colors, doc, seed) -> list[dict[str, Any]]:
    names = list(outputs)
    probs = {m: np.asarray(outputs[m]["proba"], dtype=float) for m in names}
    found = doc.get("models") or {}
    out = []

    s = _section("discrimination", "Discrimination: ROC and precision-recall curves",
                 "How well the predicted risks rank patients with the outcome above those without.")

    def discrimination(sec):
        rocs = {m: cv.roc_curve(y, probs[m]) for m in names}
        prs = {m: cv.pr_curve(y, probs[m]) for m in names}
        roc_labels = {m: f"{m}  AUROC {fmt_ci(found.get(m, {}).get('auroc'))}" for m in names}
        pr_labels = {m: f"{m}  AP {fmt_ci(found.get(m, {}).get('auprc'))}" for m in names}
        sec["images"] += [{"src": pl.roc_plot(rocs, labels=roc_labels, colors=colors), "alt": "ROC curves"},
                          {"src": pl.pr_plot(prs, labels=pr_labels, colors=colors), "alt": "precision-recall curves"}]
    out.append(_guard(s, discrimination))

    s = _section("calibration", "Calibration",
                 "Do predicted risks match observed event rates? Points: deciles of predicted risk with "
                 "95% Wilson intervals; lines: loess smoother (Austin & Steyerberg 2014) with a 95% bootstrap "
                 "band. Slope and intercept: weak calibration; curve: moderate calibration (Van Calster "
                 "et al. 2016).")

    def calibration(sec):
        binned = {m: cv.binned_calibration(y, probs[m]) for m in names}
        smooth = {m: cv.smoothed_calibration(y, probs[m], n_boot=SMOOTH_BOOT, seed=seed) for m in names}
        sec["images"].append({"src": pl.calibration_plot(binned, smooth, predictions=probs, colors=colors),
                              "alt": "calibration curves"})
        rows = []
        for m in names:
            e = cv.expected_calibration_error(y, probs[m])
            rows.append([m, _f(float(np.mean(probs[m]))), _f(float(np.mean(y))),
                         fmt_ci(found.get(m, {}).get("calibration_intercept")),
                         fmt_ci(found.get(m, {}).get("calibration_slope")), _f(e), _f(smooth[m]["ici"]),
                         _f(smooth[m]["e90"])])
        sec["tables"].append(_table(
            ["model", "mean predicted", "observed rate", "intercept (ideal 0)", "slope (ideal 1)", "ECE",
             "ICI", "E90"], rows,
            caption="Calibration-in-the-large, weak calibration (95% bootstrap CI) and calibration errors "
                    "(ECE over deciles; ICI/E90 from the loess curve, Austin & Steyerberg 2019)"))
    out.append(_guard(s, calibration))

    s = _section("decision-curve", "Decision curve",
                 "Net benefit (Vickers & Elkin 2006) of acting when the predicted risk is at least the "
                 "threshold, against treating everyone and treating no one. A model is useful at thresholds "
                 "where its curve lies above both.")

    def decision(sec):
        curves = {m: cv.decision_curve(y, probs[m]) for m in names}
        sec["images"].append({"src": pl.decision_curve_plot(curves, colors=colors), "alt": "decision curve"})
    out.append(_guard(s, decision))

    s = _section("thresholds", "Threshold table",
                 f"At each threshold a patient is flagged when predicted risk ≥ threshold. The configured "
                 f"threshold ({threshold:g}) is highlighted.")

    def thresholds(sec):
        rows, classes = [], []
        for m in names:
            for r in cv.threshold_table(y, probs[m], extra=threshold):
                rows.append([m, f"{r['threshold']:g}", f"{r['flagged_per_1000']:.0f}", _f(r["sensitivity"]),
                             _f(r["specificity"]), _f(r["ppv"]), _f(r["npv"]), _f(r["net_benefit"], 4)])
                classes.append("configured" if abs(r["threshold"] - threshold) < 1e-9 else "")
        sec["tables"].append(_table(["model", "threshold", "flagged per 1,000", "sensitivity", "specificity",
                                     "PPV", "NPV", "net benefit"], rows, row_classes=classes))
    out.append(_guard(s, thresholds))

    s = _section("confusion", f"Confusion matrix at threshold {threshold:g}")

    def confusion(sec):
        mats = {m: cv.confusion_matrix(y, probs[m], threshold) for m in names}
        sec["images"].append({"src": pl.confusion_plot(mats, class_labels=("0", "1")),
                              "alt": "confusion matrices"})
        rows = [[m, *(int(v) for v in mats[m].ravel())] for m in names]
        sec["tables"].append(_table(["model", "TN", "FP", "FN", "TP"], rows))
    out.append(_guard(s, confusion))
    return out


def _multiclass_sections(y, outputs, classes, colors) -> list[dict[str, Any]]:
    names = list(outputs)
    probs = {m: np.asarray(outputs[m]["proba"], dtype=float) for m in names}
    k = next(iter(probs.values())).shape[1]
    labels = list(classes) if classes and len(classes) == k else [str(i) for i in range(k)]
    codes = np.asarray(y, dtype=float)
    out = []
    s = _section("discrimination", "Discrimination: one-vs-rest ROC curves")

    def discrimination(sec):
        curves = {}
        for m in names:
            curves[m] = []
            for c in range(k):
                yc = (codes == c).astype(float)
                curves[m].append(cv.roc_curve(yc, probs[m][:, c]) if 0 < yc.sum() < len(yc) else None)
        sec["images"].append({"src": pl.multiclass_roc_plot(curves, labels, colors=colors),
                              "alt": "one-vs-rest ROC curves"})
    out.append(_guard(s, discrimination))

    s = _section("confusion", "Confusion matrix (most probable class)")

    def confusion(sec):
        mats = {m: cv.multiclass_confusion(codes, probs[m]) for m in names}
        sec["images"].append({"src": pl.confusion_plot(mats, class_labels=labels), "alt": "confusion matrices"})
    out.append(_guard(s, confusion))
    return out


def _regression_sections(y, outputs, colors) -> list[dict[str, Any]]:
    names = list(outputs)
    preds = {m: np.asarray(outputs[m]["value"], dtype=float) for m in names}
    s = _section("calibration", "Calibration: observed against predicted",
                 "Points: a sample of patients; lines: mean observed value in deciles of the prediction "
                 "(95% t-interval).")

    def build(sec):
        binned = {m: cv.regression_calibration(y, preds[m]) for m in names}
        sec["images"].append({"src": pl.regression_plot(y, preds, binned, colors=colors),
                              "alt": "observed vs predicted"})
        rows = []
        for m in names:
            resid = np.asarray(y, dtype=float) - preds[m]
            rows.append([m, _f(float(np.mean(preds[m]))), _f(float(np.mean(y))), _f(float(np.mean(resid))),
                         _f(float(np.std(resid, ddof=1)) if len(resid) > 1 else float("nan"))])
        sec["tables"].append(_table(["model", "mean predicted", "mean observed", "mean residual", "SD residual"],
                                    rows))
    return [_guard(s, build)]


def _survival_sections(y, outputs, horizons, time_unit, surv_grid, colors) -> list[dict[str, Any]]:
    names = list(outputs)
    y = np.asarray(y, dtype=float)
    time, event = y[:, 0], y[:, 1]
    risks = {m: np.asarray(outputs[m]["risk"], dtype=float) for m in names}
    hs = sorted(float(h) for h in (horizons or []))
    unit = f" {time_unit}" if time_unit else ""
    out = []

    s = _section("km-risk-groups", "Kaplan-Meier curves by predicted risk group",
                 "Patients split into thirds of each model's predicted risk; shaded: 95% log(-log) Greenwood "
                 "intervals. Well separated curves show discrimination.")

    def km(sec):
        groups = {m: cv.km_by_risk_group(time, event, risks[m]) for m in names}
        sec["images"].append({"src": pl.km_plot(groups, time_unit=time_unit, horizons=hs), "alt": "Kaplan-Meier"})
        rows = []
        for m in names:
            for g in groups[m]:
                at = [cv.km_at(g, h)[0] for h in hs]
                rows.append([m, g["label"], g["n"], g["events"], *(_f(v) for v in at)])
        sec["tables"].append(_table(["model", "risk group", "n", "events",
                                     *(f"KM survival at {h:g}{unit}" for h in hs)], rows))
    out.append(_guard(s, km))

    s = _section("td-auc", "Time-dependent AUC",
                 "Cumulative/dynamic AUC(t) with inverse-probability-of-censoring weights (Uno et al. 2007): "
                 "how well the risk score separates patients with an event by t from those event-free at t.")

    def td(sec):
        curves = {m: cv.time_dependent_auc(time, event, risks[m]) for m in names}
        sec["images"].append({"src": pl.td_auc_plot(curves, time_unit=time_unit, horizons=hs, colors=colors),
                              "alt": "time-dependent AUC"})
    out.append(_guard(s, td))

    s = _section("survival-calibration", "Calibration at each horizon",
                 "Mean predicted event probability 1 − S(h | x) in deciles of predicted risk against the "
                 "Kaplan-Meier event probability in the decile (95% CI), which accounts for censoring.")

    def cal(sec):
        have = [m for m in names if outputs[m].get("surv") is not None]
        if surv_grid is None or not have:
            sec["error"] = ("Not available: pass each model's predicted survival curves (outputs[model]['surv']) "
                            "and surv_grid to draw calibration at the horizons.")
            return
        if not hs:
            sec["error"] = "Not available: no horizons given."
            return
        rows = []
        for h in hs:
            if h >= time.max():
                sec["notes"].append(f"horizon {h:g}{unit} is at or beyond the last follow-up; skipped.")
                continue
            cals = {m: cv.survival_calibration(time, event, cv.surv_at(outputs[m]["surv"], surv_grid, h), h)
                    for m in have}
            sec["images"].append({"src": pl.survival_calibration_plot(cals, horizon=h, time_unit=time_unit,
                                                                      colors=colors),
                                  "alt": f"calibration at {h:g}{unit}"})
            for m in have:
                c = cals[m]
                ok = np.isfinite(c["observed"])
                mean_obs = float(np.sum(c["n"][ok] * c["observed"][ok]) / c["n"][ok].sum()) if ok.any() else None
                rows.append([m, f"{h:g}{unit}", _f(float(np.sum(c["n"] * c["mean_predicted"]) / c["n"].sum())),
                             _f(mean_obs), _f(c["ece"])])
        if rows:
            sec["tables"].append(_table(["model", "horizon", "mean predicted", "observed (decile-weighted KM)",
                                         "ECE over deciles"], rows))
    out.append(_guard(s, cal))
    return out


def _training(histories: Mapping[str, Sequence[Mapping]]) -> dict[str, Any]:
    s = _section("training", "Training curves",
                 "Loss per epoch of each ensemble member (training dashed, validation solid); the star marks "
                 "the epoch whose weights were kept (early stopping).")

    def build(sec):
        rows = []
        for m, hist in histories.items():
            hist = [h if isinstance(h, Mapping) else vars(h) for h in hist]
            if not hist:
                continue
            sec["images"].append({"src": pl.training_plot(hist, title=f"Training curves: {m}"),
                                  "alt": f"training curves of {m}"})
            for i, h in enumerate(hist):
                val = list(h.get("val_loss") or [])
                best = h.get("best_epoch")
                best_val = val[best] if best is not None and 0 <= best < len(val) else None
                rows.append([m, i + 1, len(val), "–" if best_val is None else best + 1, _f(best_val, 4)])
        sec["tables"].append(_table(["model", "member", "epochs run", "best epoch", "best validation loss"],
                                    rows))
    return _guard(s, build)


def _subgroups(subgroups: Mapping[str, Any]) -> dict[str, Any]:
    s = _section("subgroups", "Subgroups", "Performance by subgroup (95% CI).")

    def build(sec):
        for attribute, groups in subgroups.items():
            if attribute == "gaps" or not isinstance(groups, Mapping):
                continue
            metrics = list(dict.fromkeys(k for g in groups.values() if isinstance(g, Mapping) for k in g))
            rows = []
            for group, values in groups.items():
                if not isinstance(values, Mapping):
                    continue
                rows.append([group, *(fmt_ci(values.get(k)) if isinstance(values.get(k), Mapping)
                                      else str(values.get(k, "–")) for k in metrics)])
            sec["tables"].append(_table([attribute, *(metric_label(k) for k in metrics)], rows,
                                        caption=f"by {attribute}"))
        gaps = subgroups.get("gaps") or []
        dict_gaps = [g for g in gaps if isinstance(g, Mapping)]
        if dict_gaps:
            keys = list(dict.fromkeys(k for g in dict_gaps for k in g))
            rows = [[_cell(g.get(k)) for k in keys] for g in dict_gaps]
            sec["tables"].append(_table(keys, rows, caption="largest gaps between groups", first_is_label=False))
        sec["notes"] += [str(g) for g in gaps if not isinstance(g, Mapping)]
    return _guard(s, build)


def _cell(value: Any) -> str:
    if isinstance(value, Mapping) and "value" in value:
        return fmt_ci(value)
    if isinstance(value, float):
        return _f(value)
    return "–" if value is None else str(value)


def _importance(importance: Mapping[str, Mapping[str, float]] | None, image: str | None,
                colors: Mapping[str, str]) -> dict[str, Any]:
    s = _section("importance", "Feature importance",
                 "Mean absolute contribution of each feature to the predictions (computed elsewhere, e.g. "
                 "SHAP); it describes the model, not causal effects.")

    def build(sec):
        if image is not None:
            sec["images"].append({"src": image, "alt": "feature importance"})
        if importance:
            cols = {m: colors[m] for m in importance if m in colors}
            sec["images"].append({"src": pl.importance_plot(importance, colors=cols), "alt": "feature importance"})
    return _guard(s, build)


_UNCERTAINTY_MEANING = {
    "sets": "Coverage is the share of held-out patients whose true {what} lies in their {where}. If the calibration "
            "patients and new patients are exchangeable (drawn from the same population), coverage is at least "
            "the level on average over patients and calibration draws; it is not promised for one patient, "
            "within a subgroup, or under dataset shift (another hospital, another era).",
    "venn-abers": "The probability interval is a Venn-Abers range of the calibrated probability: not a confidence "
                  "interval and it has no coverage level. It is wide where few calibration patients were scored "
                  "alike; the observed event rate should lie near [mean lower, mean upper].",
    "survival": "Survival coverage is the IPCW-weighted share of held-out patients with a known status at the "
                "horizon whose status lies in a check set (the set is not returned to users); it is approximate, "
                "assumes censoring independent of the event, and promises nothing when the held-out rows come from "
                "another population (external validation). The risk interval is an IPCW Venn-Abers range: no "
                "coverage level; the observed risk (IPCW) should lie near [mean lower, mean upper].",
}


def _coverage_plot(points: Sequence[tuple[str, str, Mapping[str, Any], float]], colors: Mapping[str, str]) -> str:
    """Coverage with its CI bar per (model, output), the nominal level as a dashed mark per point."""
    fig = pl._figure(6.4, 1.4 + 0.38 * len(points))
    ax = fig.add_subplot()
    for i, (model, _, entry, level) in enumerate(points):
        value, low, high = (float(entry.get(k, math.nan)) for k in ("value", "ci_low", "ci_high"))
        err = [[max(value - low, 0.0)], [max(high - value, 0.0)]] if math.isfinite(low + high) else None
        ax.errorbar([value], [i], xerr=err, fmt="o", color=colors.get(model, pl.REFERENCE), capsize=4)
        ax.plot([level, level], [i - 0.35, i + 0.35], color=pl.REFERENCE, linestyle="--", linewidth=1)
    ax.set_yticks(range(len(points)), [label for _, label, _, _ in points])
    ax.invert_yaxis()
    ax.set_xlabel("coverage on the held-out rows (dashed: nominal level)")
    ax.set_title("Per-patient uncertainty: coverage")
    ax.grid(alpha=0.3, axis="x")
    return pl.figure_uri(fig)


def _uncertainty(found: Mapping[str, Any], models: Sequence[str], task: str, doc: Mapping[str, Any],
                 time_unit: str | None, colors: Mapping[str, str]) -> dict[str, Any]:
    """The run's coverage check (``metrics_doc["uncertainty"]``, docs/uncertainty.md), one row per model (per
    model and horizon for survival)."""
    ci = int(round(100 * float((doc.get("bootstrap") or {}).get("level", 0.95))))
    s = _section("uncertainty", "Per-patient uncertainty",
                 "Each prediction's set or interval, fitted on calibration rows held out before any fitting and "
                 f"checked here on the held-out rows ({ci}% CI: percentile bootstrap of those rows).")

    def build(sec: dict[str, Any]) -> None:
        names = [m for m in models if m in found] + [m for m in found if m not in models]
        rows, points, low_models = [], [], []
        for m in names:
            e = found[m]
            if not isinstance(e, Mapping):
                continue
            level, metrics = float(e.get("level", math.nan)), e.get("metrics") or {}
            base = [m, f"{level:g}", str(e.get("method", "–")), str(e.get("n_calibration", "–")),
                    str(e.get("n_evaluated", "–"))]
            if task == "survival":
                outs = list(dict.fromkeys(k.split(" ", 1)[1] for k in metrics if k.startswith("coverage ")))
                for o in outs:
                    cov = metrics.get(f"coverage {o}")
                    label = _horizon_label(o, time_unit)
                    rows.append([*base[:1], label, *base[1:], fmt_ci(cov), _f(_value(metrics, f"mean_set_size {o}"), 2),
                                 _f(_value(metrics, f"mean_width {o}")),
                                 _bracket(metrics, f"observed_risk {o}", f"mean_lower {o}", f"mean_upper {o}")])
                    points.append((m, f"{m}: {label}", cov or {}, level))
                    low_models += [f"{m} ({label})"] if _below(cov, level) else []
                continue
            cov = metrics.get("coverage")
            points.append((m, m, cov or {}, level))
            low_models += [m] if _below(cov, level) else []
            spread = _f(math.sqrt((1 - level) * level / (int(e["n_calibration"]) + 2)), 3) \
                if isinstance(e.get("n_calibration"), int) and math.isfinite(level) else "–"
            if task == "regression":
                rows.append([*base, fmt_ci(cov), spread, _f(_value(metrics, "mean_width"))])
                continue
            widths = [(k.split(" ", 1)[1], _value(metrics, k)) for k in metrics if k.startswith("mean_width ")]
            width = "; ".join(f"{o} {_f(w)}" for o, w in widths) if task == "multiclass" else \
                _f(widths[0][1]) if widths else "–"
            row = [*base, fmt_ci(cov), spread, _f(_value(metrics, "mean_set_size"), 2),
                   _f(_value(metrics, "empty_sets")), width]
            if task == "binary":
                row.append(_bracket(metrics, "observed_rate", "mean_lower probability", "mean_upper probability"))
            rows.append(row)
        head = ["model", "level", "method", "n calibration", "n evaluated", f"coverage ({ci}% CI)"]
        if task == "survival":
            head = ["model", "output", *head[1:], "mean set size", "mean Venn-Abers width",
                    "observed risk vs mean [lower, upper]"]
        elif task == "regression":
            head += ["calibration-draw SD", "mean interval width"]
        else:
            head += ["calibration-draw SD", "mean set size", "empty sets", "mean Venn-Abers width"]
            head += ["observed rate vs mean [lower, upper]"] if task == "binary" else []
        sec["tables"].append(_table(head, rows))
        if points:
            sec["images"].append({"src": _coverage_plot(points, colors), "alt": "coverage per model with CI bars"})
        if task == "survival":
            sec["notes"].append(_UNCERTAINTY_MEANING["survival"])
        else:
            what, where = ("value", "interval") if task == "regression" else ("class", "prediction set")
            sec["notes"].append(_UNCERTAINTY_MEANING["sets"].format(what=what, where=where))
            sec["notes"].append("Calibration-draw SD: about sqrt(level·(1−level)/(n calibration + 2)), the spread of "
                                "coverage from one draw of calibration rows; the CI shows test-sampling noise only.")
            if task != "regression":
                sec["notes"].append(_UNCERTAINTY_MEANING["venn-abers"])
        calibration = (doc.get("data") or {}).get("calibration")
        if isinstance(calibration, Mapping):
            sec["notes"].append(f"Calibration rows: {calibration.get('name', '?')} (n = {calibration.get('n', '?')}), "
                                "held out of the training rows; no model, preprocessor or search saw them.")
        if low_models:
            sec["notes"].append(f"Coverage below the nominal level beyond test-sampling noise (CI upper end under "
                                f"the level): {', '.join(low_models)}. Expected under dataset shift; recalibrate on "
                                "recent patients before relying on these intervals.")
    return _guard(s, build)


def _horizon_label(output: str, time_unit: str | None) -> str:
    """'event_probability_1096days' → 'event by 1096 days'."""
    m = re.fullmatch(r"event_probability_([0-9.eE+-]+)(.*)", output)
    if not m:
        return output
    return f"event by {m.group(1)} {m.group(2) or time_unit or ''}".rstrip()


def _bracket(metrics: Mapping[str, Any], observed: str, lower: str, upper: str) -> str:
    """'0.357 vs [0.330, 0.379]': the observed rate against the mean Venn-Abers bounds."""
    return (f"{_f(_value(metrics, observed))} vs [{_f(_value(metrics, lower))}, "
            f"{_f(_value(metrics, upper))}]")


def _value(metrics: Mapping[str, Any], key: str) -> float | None:
    entry = metrics.get(key)
    return entry.get("value") if isinstance(entry, Mapping) else entry


def _below(entry: Mapping[str, Any] | None, level: float) -> bool:
    high = (entry or {}).get("ci_high")
    return isinstance(high, int | float) and math.isfinite(high) and high < level


# ---------------------------------------------------------------------------------------------
# public


def render_report(
    *,
    title: str,
    task: str,
    metrics_doc: Mapping[str, Any],
    quality: Mapping[str, Any] | None,
    train_frame: pd.DataFrame | None,
    test_frame: pd.DataFrame | None,
    y_train: np.ndarray | None,
    y_test: np.ndarray,
    features: Sequence[Mapping[str, Any]],
    outputs: Mapping[str, Mapping[str, Any]],
    threshold: float = 0.5,
    horizons: Sequence[float] | None = None,
    time_unit: str | None = None,
    surv_grid: np.ndarray | None = None,
    histories: Mapping[str, Sequence[Mapping]] | None = None,
    subgroups: Mapping[str, Any] | None = None,
    importance: Mapping[str, Mapping[str, float]] | None = None,
    importance_plot: str | None = None,
    model_card_md: str | None = None,
    classes: Sequence[str] | None = None,
    seed: int = 0,
) -> str:
    """The report as an HTML string; :func:`write_report` documents the arguments."""
    if task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}.")
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold!r}.")
    y = np.asarray(y_test, dtype=float)
    _check_outputs(task, outputs, len(y))
    if task == "survival" and (y.ndim != 2 or y.shape[1] != 2):
        raise DataError(f"y_test of a survival task must be (n, 2): time and event; got {y.shape}.", column="y")
    horizons = list(horizons if horizons is not None else metrics_doc.get("horizons") or [])
    time_unit = time_unit or metrics_doc.get("time_unit")
    if classes is None and task == "multiclass":
        counts = (metrics_doc.get("data", {}).get("train") or {}).get("class_counts")
        classes = list(counts) if counts else None
    if importance_plot is not None and (not isinstance(importance_plot, str)
                                        or not importance_plot.startswith("data:image/")):
        raise ConfigError("importance_plot must be a data:image/... URI; the report embeds every image and "
                          f"loads nothing from outside (got {str(importance_plot)[:40]!r}).")
    names = list(outputs)
    colors = pl.model_colors(names)

    sections = [
        _summary(task, metrics_doc, names, float(threshold), horizons, time_unit),
        _cohort(train_frame, test_frame, y_train if train_frame is not None else None,
                y_test if test_frame is not None else None, features, task, classes, time_unit, quality),
        _metrics(metrics_doc, names, task, time_unit),
    ]
    if task == "binary":
        sections += _binary_sections(y, outputs, float(threshold), colors, metrics_doc, seed)
    elif task == "multiclass":
        sections += _multiclass_sections(y, outputs, classes, colors)
    elif task == "regression":
        sections += _regression_sections(y, outputs, colors)
    else:
        sections += _survival_sections(y, outputs, horizons, time_unit, surv_grid, colors)
    if histories:
        sections.append(_training(histories))
    if subgroups:
        sections.append(_subgroups(subgroups))
    found = metrics_doc.get("uncertainty")
    if isinstance(found, Mapping) and found:  # runs with `uncertainty:` only
        sections.append(_uncertainty(found, names, task, metrics_doc, time_unit, colors))
    if importance or importance_plot:
        sections.append(_importance(importance, importance_plot, colors))
    if model_card_md:
        text = model_card_md.lstrip()
        heading = re.match(r"#\s+(.+)\n", text)  # the card's own title becomes the section title
        card = _section("model-card", heading.group(1).strip() if heading else "Model card")
        body = text[heading.end():] if heading else text
        card["html"] = Markup(markdown_html(body))  # markdown_html escapes its input
        sections.append(card)

    return _template().render(title=title, task=task, sections=sections,
                              generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_report(path: str | os.PathLike[str], **arguments: Any) -> Path:
    """Write the one-page HTML evaluation report to ``path`` (atomically) and return the path.

    Parameters
    ----------
    title : the page title.
    task : "binary", "multiclass", "regression" or "survival".
    metrics_doc : the run's ``metrics.json`` document (``models`` → metric → value/ci_low/ci_high;
        ``data``, ``bootstrap``, ``horizons``/``time_unit``; its ``uncertainty`` entry, when present, adds the
        per-patient uncertainty section: coverage on the held-out rows per model, docs/uncertainty.md).
    quality : ``{"train": quality_report(...), "test": quality_report(...)}`` or None.
    train_frame, test_frame : typed feature frames (``Cohort.X``) of the development and evaluation
        rows; None leaves that split's columns out of Table 1 (``train_frame=None`` when
        evaluating a bundle on new data).
    y_train, y_test : labels as the cohort holds them (survival: (n, 2) time and event).
    features : feature declarations (``FeatureConfig.model_dump()`` dicts).
    outputs : ``{model: workflows.model_outputs(...)}`` on the test rows: binary ``{"proba": p}``,
        multiclass ``{"proba": (n, K)}``, regression ``{"value": yhat}``, survival ``{"risk": r,
        "surv": S on surv_grid}``. The first model is treated as the deep model (first colour).
    threshold : classification threshold of the binary threshold metrics.
    horizons, time_unit : survival horizons and unit (default: from ``metrics_doc``).
    surv_grid : the time grid of ``outputs[model]["surv"]``.
    histories : ``{model: [{"train_loss": [...], "val_loss": [...], "best_epoch": int}, ...]}``, one
        entry per ensemble member (``History`` objects are accepted too).
    subgroups : ``{attribute: {group: {metric: {value, ci_low, ci_high}}}, "gaps": [...]}``.
    importance : ``{model: {feature: mean_abs_contribution}}``; importance_plot: a ``data:image/``
        URI drawn elsewhere. Either (or both) adds the importance section.
    model_card_md : Markdown from :func:`~precimed.evaluate.model_card.model_card`.
    classes : class names of a multiclass task (default: from ``metrics_doc``).
    seed : seed of the bootstrap band of the smoothed calibration curve.
    """
    target = Path(path)
    atomic_write_bytes(target, render_report(**arguments).encode("utf-8"))
    return target
