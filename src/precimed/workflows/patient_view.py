"""One patient's result as a clinician reads it: the risk at each horizon with its per-patient interval, the
features that drove it (in the user's units), where the patient sits in the training cohort on each feature, and
the treatment plan made from the prediction.

This is the recipe behind the web patient page; it knows nothing of HTTP or HTML. Every part reuses a recipe that
already exists: `patients.score` (checks and prediction, with the uncertainty keys the bundle stores),
`patients.score(explain_top_k=...)` (SHAP contributions over the user's features), `patients.plan_for` (the
planner). A bad patient is a `PatientsInvalid` naming every bad field with the API's messages.

The cohort comparison uses what a bundle already stores about its training rows:

* ``metadata["training_distribution"]`` when a bundle carries it (per feature: ``n``, ``min``, ``max`` and
  ``quantiles`` {level: value} for numbers; ``n`` and ``shares`` {category: fraction} otherwise): the exact
  training range;
* otherwise the explanation background (``explain_background.json``): up to 100 encoded training rows whose
  feature blocks were shuffled across rows, so each feature keeps its training distribution while no row is a real
  patient. Decoding it (centre and scale from ``preprocessor.json``) gives a sample of training values: percentiles
  are estimates and "outside the training range" means outside that sample's range, which the view says.

A bundle with neither (a differentially private model keeps no training rows) gets no comparison, with the reason.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import percentileofscore

from precimed.bundle import Bundle
from precimed.config import FeatureConfig
from precimed.errors import ConfigError, DataError, RuleError
from precimed.preprocess.encoders import value_key
from precimed.preprocess.tabular import BINARY_FALSE, BINARY_TRUE, binary_key
from precimed.workflows.patients import (
    PATIENT_ID,
    Planner,
    PlanningUnavailable,
    Scored,
    load_planner,
    outputs,
    plan_for,
    score,
)

INTERVAL_KEYS = ("interval_level", "interval_method", "prediction_set")
SUFFIXES = ("_lower", "_upper")
MAX_LINES = 200  # lines of plan facts, genotypes or options read from a form
_CACHE_SIZE = 16


# ----- the prediction --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Risk:
    """One model output for the patient: its value, the per-patient interval when the bundle stores one."""

    name: str  # the output's key in a scored row (probability, event_probability_1826days, prediction, p_<class>)
    label: str  # in words: "probability of Yes", "risk of the event by 1826 days (5.0 years)"
    value: float
    lower: float | None = None
    upper: float | None = None
    probability: bool = True  # a probability (shown in percent) or a value on the outcome's scale
    interval_label: str = ""  # what the interval is, in words (its level only where it has one)
    interval_note: str = ""  # how to read it

    @property
    def has_interval(self) -> bool:
        return self.lower is not None and self.upper is not None

    @property
    def outside_interval(self) -> bool:
        """The point estimate lies outside its interval (a calibrated probability interval, e.g. Venn-Abers, need
        not contain the model's raw estimate): the page says so rather than let the two be read as one."""
        return self.has_interval and not (self.lower <= self.value <= self.upper)  # type: ignore[operator]


def _horizon_label(name: str, time_unit: str) -> str:
    """'event_probability_1826days' → 'risk of the event by 1826 days (5.0 years)'."""
    match = re.fullmatch(r"event_probability_([0-9.eE+-]+)(.*)", name)
    if not match:
        return name
    h, unit = float(match.group(1)), match.group(2) or time_unit
    years = {"days": h / 365.25, "weeks": h / 52.18, "months": h / 12.0}.get(unit)
    shown = f"{h:g} {unit}" + (f" ({years:.1f} years)" if years is not None and years >= 1 else "")
    return f"risk of the event by {shown}"


def risks(bundle: Bundle, row: Mapping[str, Any]) -> list[Risk]:
    """The outputs a clinician reads, in the bundle's order, each with its interval keys when present.

    Survival shows the risk at each horizon (the relative `risk_score` is left out: it has no absolute meaning);
    binary the probability of the positive class; multiclass each class's probability; regression the value.
    """
    task = bundle.task
    out = []
    for name, value in outputs(row).items():
        if name.endswith(SUFFIXES) or name in INTERVAL_KEYS or name == "risk_score":
            continue
        lo, hi = row.get(f"{name}_lower"), row.get(f"{name}_upper")
        interval = (isinstance(lo, int | float) and isinstance(hi, int | float)
                    and math.isfinite(lo) and math.isfinite(hi))
        if task.kind == "binary":
            label = f"probability of {task.positive or 'the positive class'}" if name == "probability" else name
        elif task.kind == "multiclass":
            label = f"probability of {name[2:]}" if name.startswith("p_") else name
        elif task.kind == "survival":
            label = _horizon_label(name, task.time_unit or "")
        else:
            label = f"predicted {task.target}" if name == "prediction" else name
        out.append(Risk(name, label, float(value), float(lo) if interval else None, float(hi) if interval else None,
                        probability=task.kind != "regression", interval_label=interval_label(row) if interval else "",
                        interval_note=interval_note(row) if interval else ""))
    return out


def interval_label(row: Mapping[str, Any]) -> str:
    """What a row's intervals are (docs/uncertainty.md): a Venn-Abers range of the calibrated probability has no
    coverage level (the level belongs to the prediction set); a conformal prediction interval has one."""
    method = str(row.get("interval_method") or "")
    level = row.get("interval_level")
    if "venn-abers" in method:
        return "Venn-Abers calibrated-risk interval"
    if isinstance(level, int | float) and not isinstance(level, bool):
        return f"{level * 100:g}% prediction interval"
    return "interval"


def interval_note(row: Mapping[str, Any]) -> str:
    """What to keep in mind reading the interval: a Venn-Abers range is no confidence interval; a conformal
    interval's method."""
    method = str(row.get("interval_method") or "")
    if "venn-abers" in method:
        return "not a confidence interval and no coverage level; the calibrated risk lies in this range"
    return method


# ----- the cohort comparison -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Standing:
    """Where the patient's value of one feature sits among the training patients."""

    feature: str
    label: str
    unit: str | None
    kind: str
    value: Any  # as entered (None: not recorded, the model imputed it)
    percentile: float | None = None  # numbers: 0-100, mid-rank among the training values
    train_min: float | None = None
    train_max: float | None = None
    outside: str | None = None  # "below" / "above" the training values, None inside (or not a number)
    share: float | None = None  # categories: the fraction of training patients with the same value
    outside_plausible: bool = False  # outside the schema's plausible range (only when such values are allowed)
    note: str = ""


@dataclass(frozen=True)
class Distribution:
    """What the bundle tells of its training patients, per feature: sorted numbers or category shares."""

    basis: str  # in words, for the page
    exact_range: bool  # True: min/max are the training rows' own; False: a stored sample's
    numbers: Mapping[str, np.ndarray] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    quantiles: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # levels, values
    shares: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    n: int = 0


_distributions: OrderedDict[str, Distribution | None] = OrderedDict()
_lock = threading.Lock()


def _category_key(bundle: Bundle, f: FeatureConfig, value: Any) -> str | None:
    """The key a value has in the shares: the category's canonical text, or "1" / "0" for a binary feature."""
    if f.kind != "binary":
        return value_key(value)
    key = binary_key(value)
    if f.positive:
        return "1" if key in {binary_key(p) for p in f.positive} else "0"
    return "1" if key in BINARY_TRUE else "0" if key in BINARY_FALSE else None


def _from_metadata(doc: Mapping[str, Any]) -> Distribution:
    ranges, quantiles, shares, n = {}, {}, {}, 0
    percentile_range = False
    for name, d in doc.items():
        if not isinstance(d, Mapping):
            continue
        n = max(n, int(d.get("n") or 0))
        if d.get("range") is not None:  # training.distribution_summary: the 1st-99th percentile, never a min/max
            ranges[name] = (float(d["range"][0]), float(d["range"][1]))
            percentile_range = True
        elif d.get("min") is not None and d.get("max") is not None:
            ranges[name] = (float(d["min"]), float(d["max"]))
        q = d.get("quantiles")
        if isinstance(q, Mapping) and q:
            levels = sorted((float(k), float(v)) for k, v in q.items())
            quantiles[name] = (np.array([lv for lv, _ in levels]), np.array([v for _, v in levels]))
        if isinstance(d.get("shares"), Mapping):
            shares[name] = {str(k): float(v) for k, v in d["shares"].items()}
    basis = f"the {n} training patients (summary stored in the bundle" + (
        "; the range is their 1st to 99th percentile)" if percentile_range else ")")
    return Distribution(basis, not percentile_range, ranges=ranges, quantiles=quantiles, shares=shares, n=n)


def _float32_digits(values: np.ndarray) -> np.ndarray:
    """Decoded values rounded to the 6 significant digits the float32 background holds, relative to the largest
    (so 1623.0040 → 1623.0 and -5e-9 → 0 on a scale of thousands)."""
    if not len(values):
        return values
    top = float(np.max(np.abs(values))) or 1.0
    return np.round(values, max(0, 6 - int(math.ceil(math.log10(top)))))


def _from_background(bundle: Bundle) -> Distribution | None:
    """Decode the explanation background into training values per feature (imputed cells left out)."""
    pre, bg = bundle.preprocessor, bundle.background
    if pre is None or bg is None or not len(bg) or bundle.sequence_preprocessor is not None:
        return None
    bg = np.asarray(bg, dtype=np.float64)
    groups = pre.feature_groups_
    numbers: dict[str, np.ndarray] = {}
    shares: dict[str, dict[str, float]] = {}
    for state in pre.encodings_:
        name, kind = state["name"], state["kind"]
        cols = groups.get(name, [])
        width = len(state.get("columns", []))
        if not cols or width == 0 or kind == "genotype":
            continue
        block = bg[:, cols[:width]] * np.asarray(state["scale"]) + np.asarray(state["center"])
        observed = np.ones(len(bg), dtype=bool)
        if state.get("indicator") and len(cols) > width:
            observed = bg[:, cols[width]] < 0.5  # the missing indicator: this cell was imputed
        if kind == "numeric":
            values = block[observed, 0]
            values = np.clip(np.expm1(values), 0.0, None) if state.get("log") else values
            numbers[name] = np.sort(_float32_digits(values))
        elif kind == "binary":  # shares by code: "1" the positive value, "0" the other
            codes = np.rint(block[observed, 0])
            total = max(len(codes), 1)
            shares[name] = {"1": float((codes == 1).sum() / total), "0": float((codes == 0).sum() / total)}
        elif kind == "ordinal":
            codes = np.rint(block[observed, 0]).astype(int)
            cats = state["categories"]
            shares[name] = {c: float((codes == i).sum() / max(len(codes), 1)) for i, c in enumerate(cats)}
            numbers[name] = np.sort(codes.astype(float))
        else:  # categorical one-hot; all zeros = missing
            hot = block[observed]
            seen = hot.max(axis=1) > 0.5
            picks = hot[seen].argmax(axis=1)
            cats = state["categories"]
            shares[name] = {c: float((picks == i).sum() / max(len(picks), 1)) for i, c in enumerate(cats)}
    return Distribution(f"a sample of {len(bg)} training patients stored in the bundle (its explanation background; "
                        "percentiles are estimates and the range is that sample's)", False, numbers=numbers,
                        shares=shares, n=len(bg))


def training_distribution(bundle: Bundle) -> Distribution | None:
    """The bundle's training distribution per feature (cached by the bundle's hash); None when it stores none."""
    key = str(bundle.metadata.get("metadata_sha256") or id(bundle))
    with _lock:
        if key in _distributions:
            _distributions.move_to_end(key)
            return _distributions[key]
    doc = bundle.metadata.get("training_distribution")
    found = _from_metadata(doc) if isinstance(doc, Mapping) and doc else _from_background(bundle)
    with _lock:
        _distributions[key] = found
        while len(_distributions) > _CACHE_SIZE:
            _distributions.popitem(last=False)
    return found


def _label(f: FeatureConfig) -> str:
    return f.description or f.name


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def cohort_standing(bundle: Bundle, patient: Mapping[str, Any]) -> tuple[list[Standing], str | None]:
    """Each feature of the patient against the training cohort, and the basis in words (None: not available)."""
    dist = training_distribution(bundle)
    out = []
    for f in bundle.features:
        value = patient.get(f.name)
        base = dict(feature=f.name, label=_label(f), unit=f.unit, kind=f.kind, value=value)
        if value is None:
            out.append(Standing(**base, note="not recorded: the model imputed it"))
            continue
        x = _number(value)
        plausible = f.range is not None and x is not None and not f.range[0] <= x <= f.range[1]
        if dist is None:
            out.append(Standing(**base, outside_plausible=plausible))
            continue
        if f.kind == "numeric" and x is not None:
            pct = lo = hi = None
            if f.name in dist.numbers and len(dist.numbers[f.name]):
                sample = dist.numbers[f.name]
                pct = float(percentileofscore(sample, x, kind="mean"))
                lo, hi = float(sample[0]), float(sample[-1])
            if f.name in dist.quantiles:
                levels, values = dist.quantiles[f.name]
                pct = float(np.interp(x, values, levels) * 100.0)
            if f.name in dist.ranges:
                lo, hi = dist.ranges[f.name]
            outside = None if lo is None or hi is None else "below" if x < lo else "above" if x > hi else None
            out.append(Standing(**base, percentile=pct, train_min=lo, train_max=hi, outside=outside,
                                outside_plausible=plausible))
        elif f.name in dist.shares:
            share = dist.shares[f.name].get(_category_key(bundle, f, value) or "")
            note = "" if share else "no training patient in the stored sample had this value"
            out.append(Standing(**base, share=share, note=note))
        else:
            out.append(Standing(**base, note="not compared"))
    return out, (dist.basis if dist is not None else None)


# ----- the explanation -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contribution:
    """One feature's push on the prediction, with the value as the user entered it."""

    feature: str
    label: str
    value: Any
    unit: str | None
    display: str  # "age = 50 years"
    contribution: float  # on the explanation's scale (probability, log-hazard or value)
    direction: str


@dataclass(frozen=True)
class Step:
    """One bar of the waterfall: from `start` to `end` on the shown scale (percent for probabilities)."""

    label: str
    start: float
    end: float

    @property
    def delta(self) -> float:
        return self.end - self.start


def contributions(bundle: Bundle, explanation: Mapping[str, Any]) -> list[Contribution]:
    by_name = {f.name: f for f in bundle.features}
    out = []
    for c in explanation.get("contributions", []):
        f = by_name.get(c["feature"])
        out.append(Contribution(c["feature"], _label(f) if f else c["feature"], c.get("value"),
                                f.unit if f else None, str(c.get("display", c["feature"])),
                                float(c["contribution"]), str(c.get("direction", ""))))
    return out


def waterfall_steps(explanation: Mapping[str, Any]) -> tuple[list[Step], float, float, str]:
    """The waterfall's bars from the average prediction to the patient's, largest contribution first.

    Returns (steps, base, prediction, unit); probabilities are in percent. The features outside the top ones are
    one bar ("n other features") when they add anything.
    """
    scale = explanation.get("scale", "value")
    factor = 100.0 if scale == "probability" else 1.0
    unit = {"probability": "%", "log-hazard": "log hazard ratio"}.get(scale, "")
    base = float(explanation["base_value"]) * factor
    items = [(str(c.get("display", c["feature"])), float(c["contribution"]) * factor)
             for c in explanation.get("contributions", [])]
    rest = explanation.get("rest") or {}
    if rest.get("n_features"):
        items.append((f"{rest['n_features']} other feature(s)", float(rest.get("contribution", 0.0)) * factor))
    steps, at = [], base
    for label, delta in items:
        steps.append(Step(label, at, at + delta))
        at += delta
    return steps, base, float(explanation["prediction"]) * factor, unit


# ----- the plan --------------------------------------------------------------------------------------------------
def _typed(text: str, spec_type: str | None) -> Any:
    low = text.strip().lower()
    if spec_type == "list" or (spec_type is None and "," in text):
        return [p.strip() for p in text.split(",") if p.strip()]
    if spec_type in ("boolean", None) and low in ("true", "yes", "false", "no"):
        return low in ("true", "yes")
    if spec_type in ("number", None):
        try:
            return float(text)
        except ValueError:
            if spec_type == "number":
                return text.strip()  # the planner sets it aside, saying why
    return text.strip()


def _lines(text: str, where: str) -> list[tuple[int, str, str]]:
    out = []
    lines = [ln for ln in (text or "").splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if len(lines) > MAX_LINES:
        raise DataError(f"{where}: at most {MAX_LINES} lines, got {len(lines)}", column=where)
    for i, line in enumerate(lines, 1):
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise DataError(f"{where}: line {i} must read 'name = value' (got no '=')", column=where, rows=[i])
        out.append((i, key.strip(), value.strip()))
    return out


def parse_facts(text: str, planner: Planner | None = None) -> dict[str, Any]:
    """`name = value` lines → plan facts, typed by the planner's fact schema (lists split at commas)."""
    schema = getattr(getattr(planner, "rules", None), "schema", None)
    facts: dict[str, Any] = {}
    for _, key, value in _lines(text, "facts"):
        spec = schema.facts.get(key) if schema is not None else None
        facts[key] = _typed(value, spec.type if spec is not None else None)
    return facts


def parse_genotypes(text: str) -> dict[str, str]:
    """`GENE = diplotype` lines (e.g. ``CYP2C9 = *1/*3``)."""
    return {key: value for _, key, value in _lines(text, "genotypes")}


_OPTION = re.compile(r"^\s*(?P<benefit>[-+0-9.eE]+)\s*(?:\(\s*(?P<lo>[-+0-9.eE]+)\s*(?:to|,)\s*(?P<hi>[-+0-9.eE]+)"
                     r"\s*\))?\s*(?::\s*(?P<drugs>.*))?$")


def parse_options(text: str) -> dict[str, dict[str, Any]]:
    """`option = benefit (low to high): drug, drug` lines → the planner's options (interval and drugs optional)."""
    options: dict[str, dict[str, Any]] = {}
    for i, key, value in _lines(text, "options"):
        m = _OPTION.match(value)
        if not m:
            raise DataError(f"options: line {i} ({key[:40]!r}) must read 'option = benefit (low to high): drug, "
                            "drug', e.g. 'fluorouracil = 0.12 (0.05 to 0.19): fluorouracil'", column="options",
                            rows=[i])
        try:
            spec: dict[str, Any] = {"benefit": float(m["benefit"])}
            if m["lo"] is not None:
                spec.update(ci_low=float(m["lo"]), ci_high=float(m["hi"]))
        except ValueError:
            raise DataError(f"options: line {i} ({key[:40]!r}): benefit and interval must be numbers",
                            column="options", rows=[i]) from None
        spec["drugs"] = [d.strip() for d in (m["drugs"] or "").split(",") if d.strip()]
        options[key] = spec
    return options


def plan_predictions(risk_list: Sequence[Risk], source: str) -> dict[str, dict[str, Any]]:
    """The model's outputs as the planner's predictions, values only: the per-patient intervals are not
    confidence intervals of the estimate (a Venn-Abers range, a prediction interval of the outcome), so they are
    not passed as the planner's `ci_low` / `ci_high`, as `patients.plan_for` does not pass them either."""
    return {r.name: {"value": r.value, "model": source} for r in risk_list}


# ----- the whole view --------------------------------------------------------------------------------------------
@dataclass
class PatientView:
    """Everything the patient page shows (and the parts it could not make, with the reason)."""

    patient_id: Any
    model: str  # the bundle's model that scored the patient
    task: str
    risks: list[Risk]
    row: dict[str, Any]  # the scored row as the API returns it (with any interval keys)
    scored: Scored  # for storing: the encoded feature vector the service keeps for drift
    interval_level: float | None = None
    interval_method: str | None = None
    prediction_set: list[Any] | None = None
    missing: list[str] = field(default_factory=list)
    explanation: dict[str, Any] | None = None
    contributions: list[Contribution] = field(default_factory=list)
    waterfall: list[Step] = field(default_factory=list)
    waterfall_base: float | None = None
    waterfall_prediction: float | None = None
    waterfall_unit: str = ""
    explanation_note: str | None = None  # why there is no explanation
    standing: list[Standing] = field(default_factory=list)
    standing_basis: str | None = None
    plan: dict[str, Any] | None = None
    plan_note: str | None = None  # why there is no plan


def patient_view(bundle: Bundle, patient: Mapping[str, Any], *, model: str | None = None, top_k: int = 5,
                 planner: Planner | None = None, plan: bool = True, facts: Mapping[str, Any] | None = None,
                 genotypes: Mapping[str, str] | None = None, options: Mapping[str, Any] | None = None,
                 source: str | None = None, provenance: Mapping[str, Any] | None = None) -> PatientView:
    """Predict, explain and plan for one patient (a dict of feature values, `patient_id` optional).

    Raises PatientsInvalid (the API's messages, per field) when the patient breaks the schema; a plan input the
    planner refuses (a malformed fact, genotype or option) is a DataError or RuleError naming it. A bundle that
    cannot explain (multiclass, no background) or a missing planner leave that part out with the reason.
    """
    scored = score(bundle, [patient], model=model)
    row = scored.rows[0]
    risk_list = risks(bundle, row)
    level = row.get("interval_level")
    view = PatientView(patient_id=row.get(PATIENT_ID), model=scored.model, task=bundle.task.kind, risks=risk_list,
                       row=row, scored=scored, missing=list(row.get("missing") or []),
                       interval_level=float(level) if isinstance(level, int | float) else None,
                       interval_method=str(row["interval_method"]) if row.get("interval_method") else None,
                       prediction_set=list(row["prediction_set"]) if isinstance(row.get("prediction_set"), list)
                       else None)
    try:
        explained = score(bundle, [patient], model=scored.model, explain_top_k=top_k).rows[0]
    except ConfigError as exc:  # multiclass, an imaging bundle, a bundle without a background
        view.explanation_note = str(exc).split(": ", 1)[-1]
    else:
        view.explanation = explained
        view.contributions = contributions(bundle, explained)
        view.waterfall, view.waterfall_base, view.waterfall_prediction, view.waterfall_unit = \
            waterfall_steps(explained)
    view.standing, view.standing_basis = cohort_standing(bundle, patient)
    if not plan:
        view.plan_note = "no plan asked for"
        return view
    try:
        planner = planner or load_planner()
    except PlanningUnavailable as exc:
        view.plan_note = str(exc)
        return view
    label = source or bundle.ref
    document = {PATIENT_ID: view.patient_id, "facts": dict(facts or {}), "genotypes": dict(genotypes or {}),
                "options": dict(options or {}), "predictions": plan_predictions(risk_list, label)}
    view.plan = plan_for(document, planner=planner, provenance=provenance)
    return view


PLAN_ERRORS = (DataError, RuleError)
"""What a refused plan input raises (the page shows it next to the plan fields)."""

__all__ = [
    "PLAN_ERRORS",
    "Contribution",
    "Distribution",
    "PatientView",
    "Risk",
    "Standing",
    "Step",
    "cohort_standing",
    "contributions",
    "interval_label",
    "interval_note",
    "parse_facts",
    "parse_genotypes",
    "parse_options",
    "patient_view",
    "plan_predictions",
    "risks",
    "training_distribution",
    "waterfall_steps",
]
