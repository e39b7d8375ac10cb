"""A model card in Markdown, with the TRIPOD+AI items a run can document by itself.

:func:`model_card` turns what a training run knows (the ``metrics.json`` document, the feature
declarations, the data-quality reports, the configuration) into a Markdown model card (Mitchell et
al., "Model cards for model reporting", FAT* 2019): intended use, model, data, performance with
confidence intervals, limitations found automatically, and a TRIPOD+AI checklist (Collins et al.,
BMJ 2024;385:e078378) saying for each item whether the run filled it and where it is documented.
Items that need the authors' knowledge (setting, dates, ethics, funding...) are listed as "to be
completed by the authors"; nothing is invented.

The automatic limitations use these rules of thumb, each cited in the text it writes:

* events per candidate predictor parameter (EPV) below 10 in the training data (Peduzzi et al.,
  J Clin Epidemiol 1996;49:1373-1379); flexible models need many more (van der Ploeg, Austin &
  Steyerberg, BMC Med Res Methodol 2014;14:137); see Riley et al., BMJ 2020;368:m441 for a
  sample-size calculation;
* fewer than 100 events (or non-events) in the evaluation data (Collins, Ogundimu & Altman, Stat
  Med 2016;35:214-226);
* internal validation by a single split versus external validation (Steyerberg et al., J Clin
  Epidemiol 2001;54:774-781; Altman & Royston, Stat Med 2000;19:453-473);
* calibration slope or intercept whose CI excludes 1 or 0 (Van Calster et al., J Clin Epidemiol
  2016;74:167-176);
* missing values, single imputation, and values outside the declared ranges.

:func:`markdown_html` renders the small Markdown subset the card uses (headings, paragraphs,
bullets, tables, ``code`` and **bold**) to escaped HTML for the report, with no dependency.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["PRIMARY_METRIC", "TRIPOD_AI_ITEMS", "markdown_html", "model_card"]

#: the metric used to compare models, and whether higher is better
PRIMARY_METRIC = {"binary": ("auroc", True), "multiclass": ("auroc_macro", True),
                  "regression": ("rmse", False), "survival": ("c_harrell", True)}

#: TRIPOD+AI items (Collins et al., BMJ 2024;385:e078378): number, topic, short requirement
TRIPOD_AI_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("1", "Title", "identify the study as developing or evaluating a prediction model, population, outcome"),
    ("2", "Abstract", "structured summary (TRIPOD+AI for Abstracts)"),
    ("3a", "Background: healthcare context", "context, rationale, existing models"),
    ("3b", "Background: target population", "intended population and users, place in the care pathway"),
    ("3c", "Background: health inequalities", "known inequalities between sociodemographic groups"),
    ("4", "Objectives", "objectives; development, evaluation or both"),
    ("5a", "Source of data", "sources of data, separately for development and evaluation"),
    ("5b", "Source of data: dates", "dates of accrual and end of follow-up"),
    ("6a", "Participants: setting", "setting, number and location of centres"),
    ("6b", "Participants: eligibility", "eligibility criteria"),
    ("6c", "Participants: treatments", "treatments received, if relevant"),
    ("7", "Data preparation", "pre-processing and quality checking"),
    ("8a", "Outcome", "definition of the outcome and time horizon, how and when assessed"),
    ("8b", "Outcome: assessors", "qualifications of outcome assessors, if subjective"),
    ("8c", "Outcome: blinding", "blinding of outcome assessment"),
    ("9a", "Predictors: choice", "choice of initial predictors and any pre-selection"),
    ("9b", "Predictors: definition", "definition of all predictors, how and when measured"),
    ("9c", "Predictors: assessors", "qualifications of predictor assessors, if subjective"),
    ("10", "Sample size", "how the study size was arrived at"),
    ("11", "Missing data", "how missing data were handled"),
    ("12a", "Analysis: data use", "how the data were used and partitioned"),
    ("12b", "Analysis: predictor handling", "functional form, rescaling, transformation"),
    ("12c", "Analysis: model type and building", "model type, building steps, tuning, internal validation"),
    ("12d", "Analysis: heterogeneity", "heterogeneity across clusters"),
    ("12e", "Analysis: performance measures", "measures and plots of performance, model comparison"),
    ("12f", "Analysis: model updating", "any updating, e.g. recalibration"),
    ("12g", "Analysis: predictions", "how predictions were calculated in the evaluation"),
    ("13", "Class imbalance", "any class-imbalance methods and recalibration after them"),
    ("14", "Fairness", "approaches to assess or address fairness"),
    ("15", "Model output", "output of the model (probabilities, classes) and any thresholds"),
    ("16", "Training versus evaluation", "differences between development and evaluation data"),
    ("17", "Ethical approval", "ethics committee and consent"),
    ("18a-f", "Open science", "funding, conflicts of interest, protocol, registration, data and code sharing"),
    ("19", "Patient and public involvement", "patient and public involvement"),
    ("20a", "Results: participant flow", "flow of participants, with and without the outcome"),
    ("20b", "Results: characteristics", "characteristics overall and per data source, missing data"),
    ("20c", "Results: development vs evaluation", "distribution of important predictors in both sets"),
    ("21", "Model development", "participants and outcome events in each analysis"),
    ("22", "Model specification", "the full model (formula, code, object, API)"),
    ("23a", "Model performance", "performance estimates with confidence intervals, key subgroups"),
    ("23b", "Model performance: heterogeneity", "heterogeneity of performance across clusters"),
    ("24", "Model updating", "results of any model updating"),
    ("25", "Interpretation", "overall interpretation, including fairness"),
    ("26", "Limitations", "limitations: sample, size, overfitting, missing data"),
    ("27a", "Usability: input data", "handling of poor-quality or unavailable inputs in use"),
    ("27b", "Usability: users", "user interaction and expertise required"),
    ("27c", "Usability: next steps", "future research, applicability and generalisability"),
)

_METRIC_NAMES = {
    "auroc": "AUROC", "auprc": "AUPRC (average precision)", "brier": "Brier score",
    "calibration_slope": "calibration slope", "calibration_intercept": "calibration intercept",
    "accuracy": "accuracy", "precision": "precision (PPV)", "recall": "recall (sensitivity)",
    "specificity": "specificity", "f1": "F1", "auroc_macro": "AUROC (macro, one-vs-rest)",
    "auroc_weighted": "AUROC (weighted)", "log_loss": "log loss", "mae": "MAE", "rmse": "RMSE",
    "r2": "R²", "c_harrell": "Harrell's C", "c_uno": "Uno's C", "auc_mean": "mean time-dependent AUC",
    "ibs": "integrated Brier score",
}


def metric_label(key: str, time_unit: str | None = None) -> str:
    """A readable name for a metric key of ``metrics.json`` (``auc_1096`` -> "AUC at 1096 days")."""
    if key in _METRIC_NAMES:
        return _METRIC_NAMES[key]
    m = re.fullmatch(r"(auc|brier)_(.+)", key)
    if m:
        unit = f" {time_unit}" if time_unit else ""
        return f"{'AUC' if m.group(1) == 'auc' else 'Brier score'} at {m.group(2)}{unit}"
    return key.replace("_", " ")


def fmt_ci(entry: Mapping[str, float] | float | None, digits: int = 3) -> str:
    """"0.812 (0.780–0.843)" from ``{"value", "ci_low", "ci_high"}``; "–" when undefined."""
    if entry is None:
        return "–"
    if not isinstance(entry, Mapping):
        entry = {"value": float(entry)}
    value = entry.get("value")
    if value is None or not math.isfinite(float(value)):
        return "–"
    text = f"{float(value):.{digits}f}"
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if low is not None and high is not None and math.isfinite(float(low)) and math.isfinite(float(high)):
        text += f" ({float(low):.{digits}f}–{float(high):.{digits}f})"
    return text


def _md(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _split_kind(meta: Mapping[str, Any]) -> str | None:
    split = meta.get("split")
    if isinstance(split, Mapping):
        return split.get("kind")
    return split


def _n_parameters(meta: Mapping[str, Any]) -> int | None:
    """Candidate predictor parameters: ``n_parameters`` if given (the model's input columns), else an
    estimate from the declarations (numeric, binary, ordinal: 1; categorical: levels - 1; genotype:
    alleles - 1)."""
    if meta.get("n_parameters"):
        return int(meta["n_parameters"])
    features = meta.get("features") or []
    if not features:
        return None
    total = 0
    for f in features:
        kind = f.get("kind", "numeric")
        if kind == "categorical" and f.get("categories"):  # one-hot: one parameter per level but one
            total += max(len(f["categories"]) - 1, 1)
        elif kind == "genotype" and f.get("alleles"):
            total += max(len(f["alleles"]) - 1, 1)
        else:
            total += 1
    return total


def _limiting_count(task: str, desc: Mapping[str, Any]) -> tuple[int | None, str]:
    """The outcome count that limits what a sample can support, and its name."""
    n = desc.get("n")
    if task == "survival" and desc.get("events") is not None:
        return int(desc["events"]), "events"
    if task == "binary" and desc.get("events") is not None and n is not None:
        events = int(desc["events"])
        return (events, "events") if events <= n - events else (int(n) - events, "non-events")
    if task == "multiclass" and desc.get("class_counts"):
        counts = desc["class_counts"]
        smallest = min(counts, key=counts.get)
        return int(counts[smallest]), f"patients in the smallest class ({smallest})"
    if n is not None:
        return int(n), "patients"
    return None, ""


def _limitations(meta: Mapping[str, Any]) -> list[str]:
    task = meta.get("task", "")
    data = meta.get("data", {})
    train, test = data.get("train", {}), data.get("test", {})
    out: list[str] = []

    # sample size for development: events per candidate predictor parameter
    count, what = _limiting_count(task, train)
    n_par = _n_parameters(meta)
    if count is not None and n_par:
        epv = count / n_par
        per = "observations" if task == "regression" else what
        line = (f"Training data: {count} {per} for {n_par} candidate predictor parameters "
                f"({epv:.1f} per parameter).")
        if task != "regression" and epv < 10:
            line += (" This is below the classic minimum of 10 events per variable (Peduzzi et al. 1996); "
                     "the models are at high risk of overfitting. Use the sample-size criteria of Riley et "
                     "al. (BMJ 2020;368:m441) and collect more data or reduce the predictors.")
        elif task != "regression":
            line += (" Flexible models such as neural networks and boosting may need over ten times as many "
                     "events per variable as logistic regression for stable performance (van der Ploeg, "
                     "Austin & Steyerberg 2014); compare the deep model with the baselines and check its "
                     "calibration slope.")
        elif epv < 15:
            line += " Fewer than 15 observations per parameter: overfitting is likely (Harrell, 2015)."
        out.append(line)

    # sample size for validation
    if test:
        n_test = test.get("n")
        if task in ("binary", "survival") and test.get("events") is not None:
            events = int(test["events"])
            low = [f"{events} events"] if events < 100 else []
            if task == "binary" and n_test is not None and int(n_test) - events < 100:
                low.append(f"{int(n_test) - events} non-events")
            if low:
                out.append(f"Evaluation data: only {' and '.join(low)}; at least 100 (ideally 200) are "
                           "recommended for a precise validation (Collins, Ogundimu & Altman 2016). The "
                           "confidence intervals are wide; read the point estimates with care.")
        elif n_test is not None and int(n_test) < 200:
            out.append(f"Evaluation data: only {n_test} patients; performance estimates are imprecise.")

    # validation type
    kind = _split_kind(meta)
    if kind == "external":
        out.append(f"Validation is external: the models were evaluated on {test.get('name', 'another source')}, "
                   f"a different data source from the training data ({train.get('name', '?')}). Check in "
                   "Table 1 how the populations differ (case mix changes discrimination and calibration).")
    elif kind in ("stratified", "grouped"):
        out.append("Validation is internal only: one random split of a single data source (split-sample "
                   "validation, which is inefficient and variable; Steyerberg et al. 2001). Performance in "
                   "other hospitals, periods or populations is unknown until the model is externally "
                   "validated (Altman & Royston 2000).")
    else:
        out.append("The validation design (internal split or external data) is not recorded.")

    # missing data and out-of-range values
    quality = meta.get("quality") or {}
    missing_lines, range_lines = [], []
    for split, report in quality.items():
        if not isinstance(report, Mapping):
            continue
        incomplete = {name: m for name, m in report.get("missing", {}).items() if m.get("count")}
        if incomplete:
            worst = sorted(incomplete.items(), key=lambda kv: -kv[1].get("fraction", 0))[:4]
            shown = ", ".join(f"{name} {100 * m.get('fraction', 0):.1f}%" for name, m in worst)
            missing_lines.append(f"{split}: {len(incomplete)} feature(s) with missing values (most: {shown})")
        ranged = report.get("out_of_range") or {}
        if ranged:
            shown = ", ".join(f"{name} {e.get('count', 0)}" for name, e in ranged.items())
            range_lines.append(f"{split}: {shown}")
    preprocess = meta.get("preprocess") or {}
    impute = preprocess.get("impute")
    how = (f"single {impute} imputation fitted on the training rows"
           + (" with missing-value indicators" if preprocess.get("missing_indicators") else "")
           if impute else "imputation")
    if missing_lines:
        out.append("Missing data: " + "; ".join(missing_lines) + f". Handled by {how}; single imputation "
                   "ignores the uncertainty of the imputed values, and the model assumes missingness in use "
                   "follows the same pattern as in the training data.")
    if range_lines:
        out.append("Values outside the declared plausible ranges were treated as missing (counts by feature: "
                   + "; ".join(range_lines) + "). Check units and data entry at the source.")

    # calibration of each model (binary: slope and intercept with CI)
    models = meta.get("models") or {}
    for name, metrics in models.items():
        slope, intercept = metrics.get("calibration_slope"), metrics.get("calibration_intercept")
        if isinstance(slope, Mapping) and _excludes(slope, 1.0):
            direction = "too extreme (overfitting)" if slope["value"] < 1 else "too moderate"
            out.append(f"{name}: calibration slope {fmt_ci(slope)} differs from 1; predictions are {direction} "
                       "(weak calibration, Van Calster et al. 2016). Consider recalibration.")
        if isinstance(intercept, Mapping) and _excludes(intercept, 0.0):
            direction = "too high" if intercept["value"] < 0 else "too low"
            out.append(f"{name}: calibration intercept {fmt_ci(intercept)} differs from 0; predicted risks are "
                       f"on average {direction} (calibration-in-the-large).")

    # is the deep model better than the baselines?
    deep = meta.get("deep_model", "mlp")
    primary, higher = PRIMARY_METRIC.get(task, (None, True))
    if primary and deep in models and isinstance(models[deep].get(primary), Mapping):
        mine = models[deep][primary]["value"]
        for name, metrics in models.items():
            other = metrics.get(primary)
            if name == deep or not isinstance(other, Mapping) or other.get("value") is None:
                continue
            if (other["value"] > mine) if higher else (other["value"] < mine):
                out.append(f"The deep model ({deep}) does not outperform the {name} baseline on "
                           f"{metric_label(primary)}: {fmt_ci(models[deep][primary])} vs {fmt_ci(other)}. "
                           "Prefer the simpler model unless other evidence favours the deep one.")

    boot = meta.get("bootstrap") or {}
    if boot:
        out.append(f"Confidence intervals are {int(100 * boot.get('level', 0.95))}% percentile bootstrap "
                   f"intervals over {boot.get('replicates', '?')} resamples of the evaluation data; they do not "
                   "include the variability of model training (random initialisation, training sample).")
    out.append("Subgroup performance and fairness across sociodemographic groups are "
               + ("reported in the report's subgroup section." if meta.get("subgroups")
                  else "not assessed by this run."))
    return out


def _excludes(entry: Mapping[str, float], value: float) -> bool:
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return False
    return not (low <= value <= high)


def _outcome_text(meta: Mapping[str, Any]) -> str:
    task = meta.get("task", "")
    o = meta.get("outcome") or {}
    unit = meta.get("time_unit") or o.get("time_unit") or ""
    if task == "survival":
        parts = [f"time to event `{o.get('time', 'time')}` with event indicator `{o.get('event', 'event')}`"]
        if meta.get("horizons"):
            parts.append("horizons " + ", ".join(f"{h:g}" for h in meta["horizons"]) + f" {unit}".rstrip())
        if o.get("censor_at"):
            parts.append(f"administrative censoring at {o['censor_at']:g} {unit}".rstrip())
        return "; ".join(parts)
    if task == "binary":
        pos = o.get("positive")
        return f"`{o.get('target', 'target')}`" + (f" = {pos!r}" if pos is not None else " (0/1)")
    if task == "multiclass":
        return f"class of `{o.get('target', 'target')}`"
    return f"value of `{o.get('target', 'target')}`"


def _checklist(meta: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(item, topic, status, where documented / content) for every TRIPOD+AI item."""
    task = meta.get("task", "")
    data = meta.get("data", {})
    train, test = data.get("train", {}), data.get("test", {})
    features = meta.get("features") or []
    kind = _split_kind(meta)
    models = list((meta.get("models") or {}).keys())
    training = meta.get("training") or {}
    preprocess = meta.get("preprocess") or {}
    auto = "filled by the run"
    part = "partly filled: authors to complete"
    filled: dict[str, tuple[str, str]] = {}

    names = f"development: {train.get('name', '?')}" + (f"; evaluation: {test.get('name')}" if test else "")
    filled["5a"] = (part, f"{names} (metrics.json `data`; report § Cohort). Describe the study design.")
    notes = (train.get("notes") or []) + (test.get("notes") or [])
    if notes:
        filled["6b"] = (part, "exclusions applied by the run: " + "; ".join(notes[:3])
                        + " (metrics.json `data.*.notes`). State the clinical eligibility criteria.")
    filled["7"] = (auto, "data-quality checks (duplicates, missing, out-of-range, invalid values): "
                         "quality.json; report § Cohort")
    filled["8a"] = (part, f"{_outcome_text(meta)} (run config `task`). Say how and when it was assessed.")
    if features:
        filled["9b"] = (part, f"{len(features)} predictors with kind, unit and plausible range (run config "
                              "`features`; report § Cohort). Say how and when they were measured.")
    count, what = _limiting_count(task, train)
    n_par = _n_parameters(meta)
    if count is not None:
        epv = f"; {count / n_par:.1f} {what} per candidate parameter" if n_par else ""
        filled["10"] = (part, f"n = {train.get('n', '?')} development, {test.get('n', '?')} evaluation{epv} "
                              "(report § Model card, limitations). Explain how the size was arrived at.")
    if preprocess or meta.get("quality"):
        impute = preprocess.get("impute", "?")
        ind = " + missing indicators" if preprocess.get("missing_indicators") else ""
        filled["11"] = (auto, f"missing counts per feature (quality.json); {impute} imputation{ind} fitted "
                              "on training rows (run config `preprocess`)")
    if kind:
        split = meta.get("split") if isinstance(meta.get("split"), Mapping) else {}
        val = training.get("val_fraction")
        how = ("external: separate development and evaluation sources" if kind == "external"
               else f"{kind} split, test fraction {split.get('test_fraction', '?')}")
        filled["12a"] = (auto, how + (f"; {val:g} of the development rows held out for early stopping"
                                      if val else "") + " (run config `split`, `training`)")
    if preprocess:
        logs = [f["name"] for f in features if f.get("log")]
        filled["12b"] = (auto, f"scaling: {preprocess.get('scale', '?')}; log-transformed: "
                               f"{', '.join(logs) or 'none'}; categorical one-hot / binary 0-1 "
                               "(run config `preprocess`, `features`)")
    if meta.get("model_details") or training:
        filled["12c"] = (part, f"models: {', '.join(models)}; architecture and training settings in the run "
                               "config (`models`, `training`) and bundle metadata. Give the rationale and "
                               "any tuning.")
    filled["12e"] = (auto, "discrimination, calibration (slope, intercept, curves, ECE/ICI), "
                           + ("decision curves, threshold table, " if task == "binary" else "")
                           + "bootstrap CIs; every model on the same test rows (report § Metrics onwards)")
    filled["12g"] = (auto, "predictions from the saved model bundle (preprocessor state + model weights), "
                           "`precimed predict`")
    if task in ("binary", "multiclass"):
        cw = training.get("class_weight")
        filled["13"] = (auto, f"class weighting: {cw or 'not recorded'} (run config `training.class_weight`)")
    if meta.get("subgroups"):
        filled["14"] = (part, "performance by subgroup reported (report § Subgroups); describe the approach.")
    output = {"binary": "predicted probability of the outcome",
              "multiclass": "predicted probability of each class",
              "regression": "predicted value",
              "survival": "risk score and predicted survival curve S(t | x)"}.get(task, "?")
    if task == "binary" and meta.get("threshold") is not None:
        output += f"; classification threshold {meta['threshold']:g} for the threshold metrics"
    filled["15"] = (auto, output)
    if test:
        filled["16"] = (part, "Table 1 compares development and evaluation data (report § Cohort). "
                              "Describe differences in setting, eligibility and outcome definition.")
        filled["20c"] = (auto, "Table 1, development vs evaluation columns (report § Cohort)")
    filled["20b"] = (auto, "Table 1 by outcome group with missing data (report § Cohort)")
    filled["21"] = (auto, "; ".join(
        f"{label}: n = {d.get('n', '?')}"
        + (f", {d['events']} events" if d.get("events") is not None else "")
        for label, d in (("development", train), ("evaluation", test)) if d))
    filled["22"] = (part, "the model bundle (weights, preprocessing state, metadata with hashes). "
                          "Say where it is available.")
    filled["23a"] = (part if not meta.get("subgroups") else auto,
                     "every metric with a bootstrap CI (metrics.json; report § Metrics)"
                     + ("; subgroups in report § Subgroups" if meta.get("subgroups") else
                        "; add key subgroups"))
    filled["26"] = (part, "automatic limitations listed above; discuss their effect")

    rows = []
    for number, topic, requirement in TRIPOD_AI_ITEMS:
        status, where = filled.get(number, ("to be completed by the authors", requirement))
        rows.append((number, topic, status, where))
    return rows


def model_card(meta: Mapping[str, Any]) -> str:
    """A Markdown model card of a run.

    ``meta`` is the run's ``metrics.json`` document (``task``, ``run``, ``data``, ``bootstrap``,
    ``models``, and ``threshold`` or ``horizons``/``time_unit``) plus, when known: ``description``
    (intended use), ``features`` (feature declarations), ``quality`` (``{"train": report, "test":
    report}`` from ``quality_report``), ``split`` (``SplitConfig.model_dump()`` or its kind),
    ``outcome`` (``TaskConfig.model_dump()``), ``preprocess``, ``training`` and ``model_details``
    (``{model: settings}``, e.g. ``{"mlp": MLPConfig.model_dump()}``), ``n_parameters`` (number of
    model input columns, for events per parameter), ``deep_model`` (default ``"mlp"``),
    ``subgroups`` (truthy when subgroup results exist) and ``versions`` (``{package: version}``).
    """
    task = meta.get("task", "?")
    name = meta.get("run") or meta.get("name") or "model"
    data = meta.get("data", {})
    train, test = data.get("train", {}), data.get("test", {})
    models = meta.get("models") or {}
    unit = meta.get("time_unit")
    lines: list[str] = [f"# Model card: {name}", ""]

    lines += ["## Intended use", ""]
    lines.append(meta.get("description") or meta.get("intended_use")
                 or f"A {task} prediction model. *Intended use to be completed by the authors.*")
    lines += ["", "Not for clinical use without external validation in the target setting, and an assessment "
              "of clinical impact. The model supports, and does not replace, clinical judgement.", ""]

    lines += ["## Model", ""]
    lines.append(f"- Task: {task}; outcome: {_outcome_text(meta)}")
    deep = meta.get("deep_model", "mlp")
    details = meta.get("model_details") or {}
    for model in models:
        role = "deep model" if model == deep else "baseline"
        extra = details.get(model)
        if isinstance(extra, Mapping):
            extra = ", ".join(f"{k}={v}" for k, v in extra.items())
        lines.append(f"- `{model}` ({role})" + (f": {extra}" if extra else ""))
    features = meta.get("features") or []
    if features:
        shown = ", ".join(f"{f['name']}" + (f" ({f['unit']})" if f.get("unit") else "") for f in features)
        lines.append(f"- Predictors ({len(features)}): {shown}")
    versions = meta.get("versions") or {}
    if versions:
        lines.append("- Software: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append("")

    lines += ["## Training and evaluation data", ""]
    for label, d in (("Development", train), ("Evaluation", test)):
        if not d:
            continue
        bits = [f"n = {d.get('n', '?')}"]
        if d.get("events") is not None:
            bits.append(f"{d['events']} events")
        if d.get("class_counts"):
            bits.append(", ".join(f"{k}: {v}" for k, v in d["class_counts"].items()))
        if d.get("median_follow_up") is not None:
            bits.append(f"median follow-up {d['median_follow_up']:g} {unit or ''}".rstrip())
        lines.append(f"- {label}: **{d.get('name', '?')}** ({'; '.join(bits)})")
        for note in d.get("notes") or []:
            lines.append(f"  - {note}")
    kind = _split_kind(meta)
    if kind:
        how = "external (separate data source)" if kind == "external" else f"internal ({kind} split)"
        lines.append(f"- Validation: {how}")
    lines.append("")

    lines += ["## Performance", ""]
    boot = meta.get("bootstrap") or {}
    if boot:
        lines.append(f"Point estimates on the evaluation data with {int(100 * boot.get('level', 0.95))}% "
                     f"bootstrap confidence intervals ({boot.get('replicates', '?')} replicates, seed "
                     f"{boot.get('seed', '?')}).")
        lines.append("")
    if models:
        keys = list(dict.fromkeys(k for m in models.values() for k in m))
        lines.append("| metric | " + " | ".join(_md(m) for m in models) + " |")
        lines.append("|---|" + "---|" * len(models))
        for key in keys:
            cells = [fmt_ci(models[m].get(key)) for m in models]
            lines.append(f"| {_md(metric_label(key, unit))} | " + " | ".join(cells) + " |")
        lines.append("")

    lines += ["## Limitations", ""]
    lines += [f"- {item}" for item in _limitations(meta)]
    lines.append("")

    rows = _checklist(meta)
    lines += ["## TRIPOD+AI checklist", "",
              "Items of the TRIPOD+AI statement (Collins et al., BMJ 2024;385:e078378) and where this run "
              "documents them. Check the wording against the published checklist.", "",
              "| item | topic | status | where / content |", "|---|---|---|---|"]
    for number, topic, status, where in rows:
        lines.append(f"| {number} | {_md(topic)} | {_md(status)} | {_md(where)} |")
    todo = [f"{n} {topic}" for n, topic, status, _ in rows if status.startswith("to be completed")]
    lines += ["", "### To be completed by the authors", ""]
    lines += [f"- {item}" for item in todo]
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# a small, safe Markdown renderer for the report


def _inline(text: str) -> str:
    out = html.escape(text, quote=True)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![*\w])\*([^*\s][^*]*)\*(?![*\w])", r"<em>\1</em>", out)
    return out


def _cells(line: str) -> list[str]:
    body = line.strip().strip("|")
    parts = re.split(r"(?<!\\)\|", body)
    return [p.strip().replace("\\|", "|") for p in parts]


def markdown_html(markdown: str) -> str:
    """Escaped HTML for the Markdown subset of :func:`model_card` (#-headings, paragraphs, ``-``
    bullets with two-space nesting, pipe tables, ```code```, **bold**, *italic*). Any raw HTML in
    the input is shown as text, never interpreted."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if not stripped:
            flush()
            i += 1
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 1, 6)  # the card's "#" sits under the report's h1
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
        elif stripped.startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i])
                i += 1
            header = _cells(block[0])
            body = [b for b in block[1:] if not re.fullmatch(r"\|?[\s:|-]+\|?", b.strip())]
            out.append("<table class=\"md\"><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header)
                       + "</tr></thead><tbody>")
            for row in body:
                out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(row)) + "</tr>")
            out.append("</tbody></table>")
        elif re.match(r"^\s*[-*]\s+", line):
            flush()
            out.append("<ul>")
            depth = 0
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                indent = (len(lines[i]) - len(lines[i].lstrip())) // 2
                while depth < indent:
                    out.append("<ul>")
                    depth += 1
                while depth > indent:
                    out.append("</ul>")
                    depth -= 1
                out.append("<li>" + _inline(re.sub(r"^\s*[-*]\s+", "", lines[i])) + "</li>")
                i += 1
            out.extend(["</ul>"] * (depth + 1))
        else:
            para.append(stripped)
            i += 1
    flush()
    return "\n".join(out)
