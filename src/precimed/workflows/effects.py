"""The effects recipe: individual treatment effects, average effects, overlap, and policy evaluation.

``effects_from_config(cfg, out_dir)`` reads the run's cohort, takes ``task.treatment`` as the arm each
patient received and the task's outcome, and writes two files in one atomic step:

* ``DIR/effects.json``: average treatment effects with 95% CIs per contrast (AIPW, cross-fitted), IPW and
  unadjusted estimates beside them, the propensity overlap diagnostics, the value of following each
  learner's recommendations vs treating everyone with each arm (IPW / AIPW at the horizon, bootstrap CIs),
  and matched-vs-unmatched survival with a log-rank test;
* ``DIR/patient_effects.csv``: per patient the predicted outcome under each arm, each contrast with its
  bootstrap interval, and the recommended arm.

Honesty: every number about a patient comes from models fitted on the other folds (K-fold cross-fitting:
preprocessing, propensity and learners are all refitted per fold), so the policy evaluation never scores a
recommendation on a patient the learners were fitted on.

The settings come from an ``effects:`` section (see :class:`EffectsSettings`): until the run config has
that section, pass them as ``settings=`` (a dict), or load a YAML with :func:`load_effects_config`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from precimed.atomic import atomic_dir
from precimed.config import EffectsConfig, RunConfig, load_config
from precimed.csvio import csv_bytes
from precimed.errors import ConfigError, DataError
from precimed.evaluate.policy import (
    aipw_scores,
    average_effects,
    horizon_outcome,
    ipw_effects,
    matched_vs_unmatched,
    overlap_diagnostics,
    policy_values,
)
from precimed.jsonio import dumps, plain
from precimed.preprocess import TabularPreprocessor
from precimed.schema import examples
from precimed.train import catalogue
from precimed.train.effects import (
    DEFAULT_MEASURE,
    HIGHER_IS_BETTER,
    LEARNERS,
    MEASURES,
    TASKS,
    EffectSummary,
    PropensityModel,
    arm_order,
    as_labels,
    cross_fit,
)
from precimed.workflows._run import Echo, load_cohort, quiet

EffectsSettings = EffectsConfig


def _settings(cfg: RunConfig, settings: Any) -> EffectsSettings:
    if settings is None:
        settings = getattr(cfg, "effects", None)
    if settings is None:
        raise ConfigError(f"{cfg.name}: no effects settings; add an 'effects:' section (control, horizon, "
                          "propensity, ...) to the config")
    if isinstance(settings, EffectsSettings):
        return settings
    data = settings.model_dump() if hasattr(settings, "model_dump") else settings
    try:
        return EffectsSettings.model_validate(data)
    except ValidationError as exc:
        parts = []
        for item in exc.errors():
            where = "effects." + ".".join(str(p) for p in item["loc"]) if item["loc"] else "effects"
            msg = "unknown key (check the spelling)" if item["type"] == "extra_forbidden" else item["msg"]
            parts.append(f"{where}: {msg.removeprefix('Value error, ')}")
        raise ConfigError(f"{cfg.name}: " + "; ".join(parts)) from None


def load_effects_config(path: Path | str) -> tuple[RunConfig, EffectsSettings]:
    """Read a run config with an ``effects:`` section."""
    cfg = load_config(path)
    return cfg, _settings(cfg, None)


def _base_params(cfg: RunConfig, base: str, bootstrap: int) -> dict[str, Any]:
    """The run's model settings for the learners' base models (no class weighting: risks must stay calibrated)."""
    params = catalogue.build(cfg, base, progress=False).get_params()
    for key in ("task", "random_state"):
        params.pop(key, None)
    params["class_weight"] = None
    if "progress" in params:
        params["progress"] = False
    if bootstrap > 0 and "ensemble" in params:
        params["ensemble"] = 1  # the bootstrap refits are the ensemble
    return params


def _verdict(diff: dict, versus: str, *, higher_is_better: bool, unit: str) -> str:
    """One honest sentence: does the model's policy beat `versus`, judged by the difference's interval?"""
    value, lo, hi = diff["value"], diff["ci_low"], diff["ci_high"]
    text = f"{value:+.3g}{' ' + unit if unit else ''} (95% CI {lo:+.3g} to {hi:+.3g})"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"the model's policy vs {versus}: {text}; no interval"
    sign = 1.0 if higher_is_better else -1.0
    worst, best = sorted((sign * lo, sign * hi))
    if worst > 0:
        return f"the model's policy beats {versus}: {text}"
    if best < 0:
        return f"the model's policy is worse than {versus}: {text}"
    return f"the model's policy does not beat {versus}: {text}; the interval includes no difference"


def _policy_section(summ: EffectSummary, y_obs: np.ndarray, weight: np.ndarray, codes: np.ndarray,
                    propensity: np.ndarray, phi: np.ndarray | None, *, measure: str, higher_is_better: bool,
                    n_boot: int, seed: int, level: float, unit: str) -> dict:
    arms, control = summ.arms, summ.control
    n = len(codes)
    policies = {"model": summ.recommended, "model_cautious": summ.recommended_cautious}
    fixed = {f"treat_all:{a}": np.full(n, k) for k, a in enumerate(arms)}
    policies |= fixed
    comparisons = [(p, f) for p in ("model", "model_cautious") for f in fixed]
    res = policy_values(y_obs, weight, codes, propensity, policies, phi=phi, comparisons=comparisons,
                        n_boot=n_boot, seed=seed, level=level)
    sign = 1.0 if higher_is_better else -1.0
    best = max(fixed, key=lambda f: sign * res["values"][f]["value"])
    none = f"treat_all:{arms[control]}"
    res |= {
        "measure": measure,
        "higher_is_better": higher_is_better,
        "estimator": "IPW (Hajek) with inverse-censoring weights; 'aipw' is the doubly robust estimate",
        "treat_none": none,
        "best_fixed": best,
        "recommended_share": {a: float((summ.recommended == k).mean()) for k, a in enumerate(arms)},
        "recommended_share_cautious": {a: float((summ.recommended_cautious == k).mean()) for k, a in enumerate(arms)},
        "verdict": {
            "vs_best_fixed": _verdict(res["differences"][f"model - {best}"], best.replace("treat_all:", "treating "
                                      "everyone with "), higher_is_better=higher_is_better, unit=unit),
            "vs_treat_none": _verdict(res["differences"][f"model - {none}"], f"treating no one ({arms[control]})",
                                      higher_is_better=higher_is_better, unit=unit),
        },
    }
    return res


def _matched_means(y: np.ndarray, codes: np.ndarray, recommended: np.ndarray, level: float) -> dict:
    """Non-survival outcomes: mean outcome of matched vs unmatched patients, Welch normal interval."""
    from statistics import NormalDist

    m = codes == recommended
    a, b = y[m], y[~m]
    out = {"matched": {"n": int(m.sum()), "mean": float(a.mean()) if len(a) else None},
           "unmatched": {"n": int((~m).sum()), "mean": float(b.mean()) if len(b) else None}}
    if len(a) > 1 and len(b) > 1:
        d = float(a.mean() - b.mean())
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        z = NormalDist().inv_cdf(0.5 + level / 2)
        out["difference"] = {"value": d, "ci_low": d - z * se, "ci_high": d + z * se}
    return out


def _patient_table(ids: np.ndarray, id_name: str, labels: np.ndarray, fold: np.ndarray, summ: EffectSummary,
                   propensity: np.ndarray, measure: str, others: dict[str, EffectSummary]) -> pd.DataFrame:
    arms = summ.arms
    cols: dict[str, Any] = {id_name: ids, "arm": labels, "fold": fold + 1}
    for k, a in enumerate(arms):
        cols[f"{measure}_{a}"] = summ.outcomes[:, k]
        cols[f"{measure}_{a}_low"] = summ.outcome_low[:, k]
        cols[f"{measure}_{a}_high"] = summ.outcome_high[:, k]
    for j, name in enumerate(summ.contrasts):
        key = "effect_" + name.replace(" vs ", "_vs_")
        cols[key] = summ.effects[:, j]
        cols[f"{key}_low"] = summ.effect_low[:, j]
        cols[f"{key}_high"] = summ.effect_high[:, j]
    names = np.asarray(arms, dtype=object)
    cols["recommended"] = names[summ.recommended]
    cols["recommended_cautious"] = names[summ.recommended_cautious]
    for learner, s in others.items():
        cols[f"recommended_{learner}"] = names[s.recommended]
    for k, a in enumerate(arms):
        cols[f"propensity_{a}"] = propensity[:, k]
    return pd.DataFrame(cols)


def summary_lines(doc: dict) -> list[str]:
    """A few plain lines for the command line: ATEs with CIs, the primary policy's verdicts, the log-rank."""
    unit = doc.get("time_unit", "") if doc["measure"] == "rmst" else ""
    level = int(round(doc["level"] * 100))

    def fmt(v: dict) -> str:
        return f"{v['value']:+.3g}{' ' + unit if unit else ''} ({level}% CI {v['ci_low']:+.3g} to {v['ci_high']:+.3g})"

    horizon = f" at {doc['horizon']:g} {doc['time_unit']}" if "horizon" in doc else ""
    design = doc["design"]
    lines = [f"{doc['run']}: {doc['measure']}{horizon}; {doc['data']['n']} patients; arms {doc['arms']}; "
             f"learner {design['learner']} on {design['base']}, {design['folds']}-fold cross-fitting"]
    for contrast, v in doc["ate"].items():
        lines.append(f"ATE {contrast}: {fmt(v)}  [IPW {fmt(doc['ate_ipw'][contrast])}]")
    policy = doc["policy"]
    for name in ("model", policy["best_fixed"], policy["treat_none"]):
        v = policy["values"][name]
        lines.append(f"value {name}: {v['value']:.4g} ({v['ci_low']:.4g} to {v['ci_high']:.4g})")
    lines += [f"verdict: {text}" for text in policy["verdict"].values()]
    if doc.get("logrank") and doc["logrank"].get("logrank"):
        lr = doc["logrank"]
        lines.append(f"matched {lr['matched']['n']} vs unmatched {lr['unmatched']['n']}: event-free "
                     f"{lr['matched']['event_free']:.3f} vs {lr['unmatched']['event_free']:.3f}; log-rank "
                     f"chi2 {lr['logrank']['statistic']:.2f}, p = {lr['logrank']['p_value']:.3g}")
    return lines


def effects_from_config(cfg: RunConfig, out_dir: Path, *, learner: str | None = None, base: str | None = None,
                        settings: Any = None, overwrite: bool = False, progress: bool = True,
                        echo: Echo = quiet) -> dict:
    """Estimate individual and average treatment effects and evaluate the learners' policies; write
    ``DIR/effects.json`` and ``DIR/patient_effects.csv`` atomically and return the JSON document.

    ``learner`` ("dr" or "t") chooses whose recommendations make the top-level policy and log-rank sections
    (default: the first of ``effects.learners``); ``base`` ("mlp" or "gbm") overrides ``effects.base``.
    ``settings``: the effects section as a dict or :class:`EffectsSettings` (default: ``cfg.effects``).
    ``progress`` is accepted for symmetry with the other recipes; progress is reported through ``echo``.
    """
    s = _settings(cfg, settings)
    task = cfg.task
    if task.kind not in TASKS:
        raise ConfigError(f"{cfg.name}: treatment effects support {list(TASKS)} tasks, not {task.kind!r}")
    if not task.treatment:
        raise ConfigError(f"{cfg.name}: set task.treatment to the column holding each patient's arm")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"{out_dir} already exists; choose another --out or pass --overwrite")
    primary = learner or s.learners[0]
    if primary not in LEARNERS:
        raise ConfigError(f"unknown learner {primary!r}; choose one of {sorted(LEARNERS)}")
    base = base or s.base
    catalogue.build_for_task(base, task.kind, None, cfg.seed)  # an unknown or unfit base is one line with the choices
    reported = [primary] + [name for name in s.learners if name != primary]
    fitted = reported + ([] if "t" in reported else ["t"])  # the T-learner's outcome models feed the AIPW ATE

    measure = s.measure or DEFAULT_MEASURE[task.kind]
    if measure not in MEASURES[task.kind]:
        raise ConfigError(f"effects.measure {measure!r} does not fit a {task.kind} task; "
                          f"choose from {list(MEASURES[task.kind])}")
    higher = s.higher_is_better
    if higher is None:
        if task.kind == "regression":
            raise ConfigError("effects.higher_is_better must be set for a regression outcome "
                              "(is a higher value better for the patient?)")
        higher = HIGHER_IS_BETTER[measure]
    horizon = None
    notes: list[str] = []
    if task.kind == "survival":
        horizon = s.horizon if s.horizon is not None else max(task.horizons)
        if s.horizon is None:
            notes.append(f"effects.horizon not set: using the last task horizon, {horizon:g} {task.time_unit}")
    unit = task.time_unit if measure == "rmst" else ""

    echo(f"loading {cfg.data.train.label}")
    cohort = load_cohort(cfg.data.train, cfg)
    notes = list(cohort.notes) + notes
    if cfg.data.test is not None:
        notes.append(f"data.test ({cfg.data.test.label}) is not used: effects are cross-fitted on data.train")
    frame = cohort.frame
    if task.treatment not in frame.columns:
        raise DataError(f"{cohort.name}: treatment column {task.treatment!r} not found; available: "
                        f"{sorted(map(str, frame.columns))[:25]}", column=task.treatment)
    missing = frame[task.treatment].isna().to_numpy()
    if missing.all():
        raise DataError(f"{cohort.name}: treatment column {task.treatment!r} is empty", column=task.treatment)
    if missing.any():
        notes.append(f"{int(missing.sum())} rows without a treatment excluded "
                     f"(patient id(s) {examples(frame.index[missing])})")
        cohort = cohort.subset(np.flatnonzero(~missing))
        frame = cohort.frame
    features = [f for f in cfg.features if f.name != task.treatment]
    if len(features) < len(cfg.features):
        notes.append(f"the treatment {task.treatment!r} is listed as a feature; the learners use it as the arm, "
                     "not as a covariate")
    if not features:
        raise ConfigError(f"{cfg.name}: no covariates besides the treatment")
    X = cohort.X[[f.name for f in features]]
    y = cohort.y
    labels = as_labels(frame[task.treatment].to_numpy())
    arms, control = arm_order(labels, s.arms, s.control)
    codes = np.array([arms.index(v) for v in labels])
    known = None
    if s.propensity == "known":
        given = {str(as_labels([k])[0]): v for k, v in s.known_probabilities.items()}  # type: ignore[union-attr]
        absent = [a for a in arms if a not in given]
        extra = sorted(set(given) - set(arms))
        if absent or extra:
            raise ConfigError(f"effects.known_probabilities must name exactly the arms {arms}; "
                              f"missing {absent}, unknown {extra}")
        known = [given[a] for a in arms]

    level, seed = cfg.evaluation.level, cfg.seed
    params = _base_params(cfg, base, s.bootstrap)
    common = dict(task=task.kind, base=base, base_params=params, measure=measure, horizon=horizon,
                  higher_is_better=higher, arms=arms, control=arms[control], n_bootstrap=s.bootstrap,
                  random_state=seed)
    learners = {}
    for name in fitted:
        extra_params = {"known_probabilities": known, "clip": s.clip, "inner_folds": s.inner_folds} \
            if name == "dr" else {}
        learners[name] = LEARNERS[name](**common, **extra_params)
    ids = frame.index.to_numpy()
    groups = ids if pd.Index(ids).has_duplicates else None
    if groups is not None:
        notes.append("patients with several rows: folds keep each patient's rows together")
    feature_dicts = [f.model_dump() for f in features]
    pre = cfg.preprocess

    def preprocess() -> TabularPreprocessor:
        return TabularPreprocessor(features=feature_dicts, impute=pre.impute, missing_indicators=pre.missing_indicators,
                                   scale=pre.scale, out_of_range="missing")

    echo(f"cross-fitting {', '.join(fitted)} learner(s) on {base} with {s.folds} folds, {s.bootstrap} bootstrap "
         f"refits each, {len(codes)} patients, arms {arms}")
    cf = cross_fit(learners, X, y, labels, folds=s.folds, preprocess=preprocess, groups=groups, random_state=seed,
                   propensity=PropensityModel(len(arms), known, clip=s.clip), echo=echo)

    if task.kind == "survival":
        y_obs, weight = horizon_outcome(y[:, 0], y[:, 1], horizon, measure=measure, groups=codes)
    else:
        y_obs, weight = np.asarray(y, dtype=float), np.ones(len(codes))
    summaries = {name: cf.summary(name, level=level) for name in fitted}
    phi = aipw_scores(y_obs, weight, codes, cf.propensity, summaries["t"].outcomes)
    echo("average treatment effects, overlap and policy values")
    ate, arm_means = average_effects(phi, control, arms, level=level)
    ate_ipw, means_ipw = ipw_effects(y_obs, weight, codes, cf.propensity, control, arms,
                                     n_boot=s.policy_bootstrap, seed=seed, level=level)
    shares = np.bincount(codes, minlength=len(arms)) / len(codes)
    marginal = np.tile(shares, (len(codes), 1))
    ate_raw, means_raw = ipw_effects(y_obs, weight, codes, marginal, control, arms,
                                     n_boot=s.policy_bootstrap, seed=seed, level=level)
    overlap = overlap_diagnostics(cf.propensity, codes, arms, bounds=s.overlap_bounds)
    overlap["propensity"] = "known assignment probabilities" if known else "logistic regression (cross-fitted)"

    per_learner = {}
    for name in reported:
        summ = summaries[name]
        section: dict[str, Any] = {
            "policy": _policy_section(summ, y_obs, weight, codes, cf.propensity, phi, measure=measure,
                                      higher_is_better=higher, n_boot=s.policy_bootstrap, seed=seed, level=level,
                                      unit=unit),
            "mean_predicted_effect": {c: float(summ.effects[:, j].mean()) for j, c in enumerate(summ.contrasts)},
        }
        if task.kind == "survival":
            if measure == "rmst":  # the event-free rate at the horizon as a second policy scale (IPW only)
                y2, w2 = horizon_outcome(y[:, 0], y[:, 1], horizon, measure="survival", groups=codes)
                section["policy_event_free"] = _policy_section(
                    summ, y2, w2, codes, cf.propensity, None, measure="survival", higher_is_better=True,
                    n_boot=s.policy_bootstrap, seed=seed, level=level, unit="")
            section["logrank"] = matched_vs_unmatched(y[:, 0], y[:, 1], codes, summ.recommended, horizon,
                                                      names=arms)
        else:
            section["matched"] = _matched_means(y_obs, codes, summ.recommended, level)
        per_learner[name] = section

    per_arm = {}
    for k, a in enumerate(arms):
        rows = codes == k
        per_arm[a] = {"n": int(rows.sum())}
        if task.kind == "survival":
            per_arm[a]["events"] = int(y[rows, 1].sum())
        elif task.kind == "binary":
            per_arm[a]["events"] = int(y[rows].sum())
    doc = {
        "run": cfg.name,
        "task": task.kind,
        "treatment": task.treatment,
        "arms": arms,
        "control": arms[control],
        "contrasts": summaries[primary].contrasts,
        "measure": measure,
        "higher_is_better": higher,
        **({"horizon": horizon, "time_unit": task.time_unit} if task.kind == "survival" else {}),
        "level": level,
        "design": {
            "learner": primary, "learners": reported, "base": base, "folds": s.folds, "bootstrap": s.bootstrap,
            "inner_folds": s.inner_folds, "propensity": s.propensity,
            "known_probabilities": dict(zip(arms, known, strict=True)) if known else None, "clip": s.clip,
            "policy_bootstrap": s.policy_bootstrap, "seed": seed,
            "honesty": f"{s.folds}-fold cross-fitting: preprocessing, propensity and learners are fitted on the other "
                       "folds for every patient; ATE, policy values and log-rank use out-of-fold predictions only",
        },
        "data": {"name": cohort.name, "n": int(len(codes)), "per_arm": per_arm, "features": [f.name for f in features],
                 "notes": notes},
        "ate": ate,
        "arm_means": arm_means,
        "ate_ipw": ate_ipw,
        "arm_means_ipw": means_ipw,
        "ate_unadjusted": ate_raw,
        "arm_means_unadjusted": means_raw,
        "ate_method": "AIPW with cross-fitted T-learner outcome models and propensities"
                      + (" and inverse-censoring weights" if task.kind == "survival" else "")
                      + "; normal CI from the influence function. ate_ipw: Hajek IPW, bootstrap CI. "
                      "ate_unadjusted: arm means without covariate adjustment.",
        "overlap": overlap,
        "policy": per_learner[primary]["policy"],
        "logrank": per_learner[primary].get("logrank"),
        "learners": per_learner,
    }
    doc = plain(doc)
    table = _patient_table(ids, cohort.id_name, labels, cf.fold, summaries[primary], cf.propensity, measure,
                           {n: summaries[n] for n in reported if n != primary})
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "effects.json").write_text(dumps(doc))
        (tmp / "patient_effects.csv").write_bytes(csv_bytes(table))
    return doc
