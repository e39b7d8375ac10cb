"""The training recipe: train the catalogue's models on one split, validate them, write the run folder.

Reads the inputs, does all its work in memory, and only then publishes the run folder (bundle,
metrics.json, quality.json, report.html, model_card.md) in one rename, so a failed run leaves nothing
half-written.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.atomic import atomic_dir
from precimed.bundle import save_bundle
from precimed.cohort import Cohort, split_rows
from precimed.config import FeatureConfig, RunConfig, SplitConfig, load_config
from precimed.errors import DataError
from precimed.evaluate import background_sample
from precimed.evaluate.conformal import Uncertainty, check_calibration_size, coverage_report, fit_uncertainty
from precimed.evaluate.scoring import score_models
from precimed.jsonio import write_json
from precimed.preprocess import TabularPreprocessor, quality_report
from precimed.preprocess.encoders import is_blank, value_key
from precimed.preprocess.tabular import BINARY_FALSE, BINARY_TRUE, binary_key
from precimed.train import catalogue
from precimed.train.private import fit_private
from precimed.train.search import tune_net
from precimed.workflows._run import (
    Echo,
    RunResult,
    check_out_dir,
    load_cohort,
    metrics_doc,
    prediction_columns,
    quiet,
    scoring_settings,
)
from precimed.workflows.explaining import report_importance
from precimed.workflows.fairness import analyse_subgroups
from precimed.workflows.reporting import card_for, write_run_report

DEMO_CONFIG = "rotterdam-gbsg.yaml"
#: quantile levels of a numeric feature in the bundle's training distribution; the first and last bound its range
DISTRIBUTION_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
#: fewer values than this and a feature's summary is its count only
MIN_SUMMARY_VALUES = 10


def tune(cfg: RunConfig, name: str, X: np.ndarray, y: np.ndarray, *, progress: bool, echo: Echo) -> dict | None:
    """Optional Optuna search of one deep net's settings on the training rows (inner validation split)."""
    search = cfg.training.search
    if search is None:
        return None
    echo(f"searching {search.trials} {name} settings on an inner validation split of the training rows")
    base = catalogue.build(cfg, name, progress=False)
    space = search.model_dump(exclude={"trials", "storage", "study"})
    shared: dict[str, str] = {}
    if search.storage is not None:
        # one study per searched model: a study named in the config gets the model's name appended when
        # several models are searched
        several = sum(_searchable(n) for n in catalogue.plan_models(cfg).names) > 1
        study = search.study + (f"-{name}" if several else "") if search.study else f"precimed-{cfg.name}-{name}"
        shared = {"storage": search.storage, "study": study}
        echo(f"sharing the search in study {study!r} at {search.masked_storage}")
    return tune_net(X, y, base, trials=search.trials, space=space, seed=cfg.seed, progress=progress, **shared)


def _searchable(name: str) -> bool:
    s = catalogue.spec(name)
    return s.role == "deep" and s.view == "tabular" and s.takes("hidden")


def _fit_models(cfg: RunConfig, plan: catalogue.ModelPlan, X: np.ndarray, y: np.ndarray, *, progress: bool,
                echo: Echo) -> tuple[dict[str, Any], dict[str, dict], dict | None]:
    """Every planned model fitted on the training rows, the searches run, and the privacy account."""
    models: dict[str, Any] = {}
    searches: dict[str, dict] = {}
    privacy = None
    for name in plan.names:
        if catalogue.spec(name).role == "baseline":
            echo(f"training baseline {name}")
            models[name] = catalogue.build(cfg, name).fit(X, y)
            continue
        echo(f"training {name} on {len(X)} rows, {X.shape[1]} inputs")
        if cfg.training.privacy is not None:
            p = cfg.training.privacy
            echo(f"DP-SGD at epsilon {p.epsilon:g}")
            models[name] = fit_private(catalogue.build(cfg, name, progress=False), X, y, epsilon=p.epsilon,
                                       delta=p.delta, max_grad_norm=p.max_grad_norm, epochs=p.epochs,
                                       target_range=p.target_range, accountant=p.accountant)
            privacy = models[name].privacy_.to_dict()
            continue
        overrides = None
        search = tune(cfg, name, X, y, progress=progress, echo=echo) if _searchable(name) else None
        if search is not None:
            searches[name] = search
            overrides = search["best_params"] | {"hidden": tuple(search["best_params"]["hidden"])}
            echo(f"best {name} settings {search['best_params']} (inner validation loss {search['best_value']:.4f})")
        models[name] = catalogue.build(cfg, name, progress=progress, overrides=overrides).fit(X, y)
    return models, searches, privacy


def hold_out_calibration(cfg: RunConfig, train: Cohort) -> tuple[Cohort, Cohort | None]:
    """The training rows split into (rows to fit on, calibration rows) when the run asks for uncertainty.

    The calibration rows leave before any fitting (preprocessor, models, early stopping, search), by patient
    (the run's group column for grouped splits) and stratified on the outcome for classification and survival.
    """
    if cfg.uncertainty is None:
        return train, None
    grouped = cfg.split.kind == "grouped"
    split = SplitConfig(kind="grouped" if grouped else "stratified",
                        test_fraction=cfg.uncertainty.calibration_fraction, group=cfg.split.group if grouped else None)
    try:
        fit_rows, cal_rows = split_rows(train, split, cfg.task, cfg.seed + 1)
    except ValueError as exc:  # scikit-learn: too few rows of some class to stratify
        raise DataError(f"{train.name}: cannot hold out {cfg.uncertainty.calibration_fraction:g} of {len(train)} "
                        f"training rows for uncertainty.calibration_fraction ({exc})") from None
    if cfg.task.kind != "survival":  # before any fitting: too few rows would only fail after training
        check_calibration_size(len(cal_rows), cfg.uncertainty.level, f"{train.name} calibration rows")
    return (train.subset(fit_rows, f"{train.name} (fitting rows)"),
            train.subset(cal_rows, f"{train.name} (calibration rows)"))


def distribution_summary(features: list[FeatureConfig], frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per feature, what the patient page compares a new patient with (``patient_view.training_distribution``),
    from the rows given: the FITTING rows of a run, never its calibration or test rows.

    Numeric: ``n`` (values the model used: recorded and inside the plausible range, as the preprocessor reads them),
    ``quantiles`` {level: value} at :data:`DISTRIBUTION_QUANTILES` (numpy's linear interpolation) and ``range``, the
    1st to 99th percentile. No minimum or maximum is stored: each is one real patient's value. Binary, categorical
    and ordinal: ``n`` and ``shares`` {category: fraction} (binary keyed "1" / "0" as the model encodes them).
    A feature with fewer than :data:`MIN_SUMMARY_VALUES` values gets ``n`` and a note only (its quantiles would be
    single patients' values); genotype features are not summarised.
    """
    out: dict[str, dict[str, Any]] = {}
    for f in features:
        if f.name not in frame.columns or f.kind == "genotype":
            continue
        column = frame[f.name]
        observed = column[~column.map(is_blank).to_numpy(dtype=bool)]
        entry: dict[str, Any] = {"kind": f.kind}
        if f.kind == "numeric":
            values = pd.to_numeric(observed, errors="coerce").to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if f.range is not None:
                values = values[(values >= f.range[0]) & (values <= f.range[1])]
            entry["n"] = int(len(values))
            if len(values) < MIN_SUMMARY_VALUES:
                out[f.name] = entry | {"note": f"fewer than {MIN_SUMMARY_VALUES} values: not summarised"}
                continue
            q = np.quantile(values, DISTRIBUTION_QUANTILES)
            entry["quantiles"] = {f"{level:g}": float(v) for level, v in zip(DISTRIBUTION_QUANTILES, q, strict=True)}
            entry["range"] = [float(q[0]), float(q[-1])]
            entry["range_quantiles"] = [DISTRIBUTION_QUANTILES[0], DISTRIBUTION_QUANTILES[-1]]
        else:
            if f.kind == "binary":
                positive = {binary_key(v) for v in f.positive or []}
                keys = [_binary_code(binary_key(v), positive) for v in observed]
            else:
                keys = [value_key(v) for v in observed]
            counts = pd.Series([k for k in keys if k is not None], dtype=object).value_counts()
            entry["n"] = int(counts.sum())
            if entry["n"] < MIN_SUMMARY_VALUES:
                out[f.name] = entry | {"note": f"fewer than {MIN_SUMMARY_VALUES} values: not summarised"}
                continue
            entry["shares"] = {str(k): float(c / entry["n"]) for k, c in counts.sort_index().items()}
        out[f.name] = entry
    return out


def _binary_code(key: str, positive: set[str]) -> str | None:
    """A binary value's code as the preprocessor gives it: "1" / "0" (None: a value it cannot read)."""
    if positive:
        return "1" if key in positive else "0"
    return "1" if key in BINARY_TRUE else "0" if key in BINARY_FALSE else None


def _distribution_metadata(cfg: RunConfig, train: Cohort) -> dict[str, Any]:
    """The bundle metadata keys ``training_distribution`` (None when not stored) and ``training_distribution_info``
    (which rows it describes, or why it was not stored)."""
    if cfg.training.privacy is not None:
        return {"training_distribution": None, "training_distribution_info": {
            "stored": False, "reason": "differentially private run: the DP guarantee covers the model weights only, "
                                       "so no summary of the training rows is stored beside them"}}
    return {"training_distribution": distribution_summary(cfg.features, train.X), "training_distribution_info": {
        "stored": True, "rows": train.name, "n": len(train), "patients": int(train.X.index.nunique()),
        "note": "fitting rows only (no calibration or test rows); numeric features: quantiles and the 1st-99th "
                "percentile range, never a minimum or maximum"}}


def _output_table(cfg: RunConfig, model: Any, X: np.ndarray, classes: list[str] | None) -> dict[str, np.ndarray]:
    """A model's prediction-table columns (``probability``, ``p_<class>``, ``prediction``, ``event_probability_…``)."""
    table = prediction_columns(pd.DataFrame(index=np.arange(len(X))), model, X, cfg.task, classes=classes)
    return {c: table[c].to_numpy() for c in table.columns}


def fit_and_check_uncertainty(cfg: RunConfig, models: dict[str, Any], X_cal: np.ndarray, y_cal: np.ndarray,
                              X_test: np.ndarray, y_test: np.ndarray, classes: list[str] | None, *,
                              echo: Echo = quiet) -> tuple[dict[str, Uncertainty], dict[str, dict]]:
    """Each model's uncertainty fitted on the calibration rows, and its coverage on the held-out test rows
    (bootstrap CI at the run's evaluation level)."""
    assert cfg.uncertainty is not None
    fitted: dict[str, Uncertainty] = {}
    checked: dict[str, dict] = {}
    for name, model in models.items():
        echo(f"fitting {name}'s per-patient uncertainty on {len(y_cal)} calibration rows")
        fitted[name] = fit_uncertainty(cfg.task.kind, _output_table(cfg, model, X_cal, classes), y_cal,
                                       level=cfg.uncertainty.level, classes=classes, horizons=cfg.task.horizons,
                                       time_unit=cfg.task.time_unit, positive=cfg.task.positive)
        checked[name] = coverage_report(fitted[name], _output_table(cfg, model, X_test, classes), y_test,
                                        n_boot=cfg.evaluation.bootstrap, seed=cfg.seed, ci_level=cfg.evaluation.level)
    return fitted, checked


def train_from_config(cfg: RunConfig, out_dir: Path | str, *, overwrite: bool = False, progress: bool = True,
                      echo: Echo = quiet) -> RunResult:
    """Train the configured models on one split, validate them, and write bundle, metrics and report."""
    plan = catalogue.plan_models(cfg)
    out_dir = check_out_dir(out_dir, overwrite)
    echo(f"loading {cfg.data.train.label}")
    cohort = load_cohort(cfg.data.train, cfg)
    if cfg.split.kind == "external":
        train = cohort
        echo(f"loading {cfg.data.test.label} (external validation)")  # type: ignore[union-attr]
        test = load_cohort(cfg.data.test, cfg, classes=cohort.classes)  # type: ignore[arg-type]
    else:
        tr, te = split_rows(cohort, cfg.split, cfg.task, cfg.seed)
        train = cohort.subset(tr, f"{cohort.name} (train, {cfg.split.kind} split)")
        test = cohort.subset(te, f"{cohort.name} (test, {cfg.split.kind} split)")
    train, calibration = hold_out_calibration(cfg, train)
    if calibration is not None:
        echo(f"holding out {len(calibration)} calibration rows for per-patient uncertainty")
    features = [f.model_dump() for f in cfg.features]
    quality = {"train": quality_report(train.frame, features, source=train.name, id_name=train.id_name),
               "test": quality_report(test.frame, features, source=test.name, id_name=test.id_name)}
    pre = TabularPreprocessor(features=features, impute=cfg.preprocess.impute,
                              missing_indicators=cfg.preprocess.missing_indicators, scale=cfg.preprocess.scale,
                              out_of_range="missing")
    X_train = pre.fit(train.X).transform(train.X)
    X_test = pre.transform(test.X)
    models, searches, privacy = _fit_models(cfg, plan, X_train, train.y, progress=progress, echo=echo)
    ev = score_models(models, X_test, test.y, comparisons=plan.comparisons, echo=echo,  # type: ignore[arg-type]
                      **scoring_settings(cfg))
    doc = metrics_doc(cfg, train.describe(cfg.task), test.describe(cfg.task), ev.results, ev.comparisons,
                      primary=plan.primary)
    echo("subgroups and fairness gaps")
    subgroups = analyse_subgroups(cfg, test, ev.outputs, ev.grid, model=plan.primary)
    if subgroups is not None:
        doc["subgroups"] = subgroups
    background = background_sample(X_train, pre.feature_groups_, n=100, seed=cfg.seed)
    echo(f"SHAP importance on {min(cfg.evaluation.explain, len(test))} evaluation patients")
    importance = report_importance(models, cfg.task, background, X_test, test.X, pre.feature_groups_,
                                   n=cfg.evaluation.explain, seed=cfg.seed, primary=plan.primary)
    uncertainty: dict[str, Uncertainty] | None = None
    if calibration is not None:
        uncertainty, doc["uncertainty"] = fit_and_check_uncertainty(  # not with privacy (the config refuses it)
            cfg, models, pre.transform(calibration.X), calibration.y, X_test, test.y, cohort.classes, echo=echo)
        doc["data"]["calibration"] = calibration.describe(cfg.task)
    if searches:
        # one searched model keeps the historical layout {"best_params", ...}; several are keyed by model
        doc["search"] = next(iter(searches.values())) if len(searches) == 1 else searches
    bundled = models
    if privacy is not None:
        doc["privacy"] = privacy | {"note": f"the guarantee covers the {plan.primary} weights; baselines were "
                                             "trained non-privately for comparison and are NOT saved in the bundle"}
        bundled = {plan.primary: models[plan.primary]}
        background = None  # SHAP background rows come from training data: not stored beside a private model
    card = card_for(cfg, doc, quality, n_inputs=X_train.shape[1], deep_model=plan.primary,
                    subgroups=subgroups is not None)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_bundle(tmp / "bundle", config=cfg, preprocessor=pre, models=bundled, background=background,
                    extra_files={"model_card.md": card.encode()}, uncertainty=uncertainty, metadata={
            "primary_model": plan.primary,
            "comparisons": [c for c in ev.comparisons if all(m in bundled for m in c.split(" - "))],
            "id_column": train.id_name,
            "classes": cohort.classes,
            "feature_names_out": pre.get_feature_names_out().tolist(),
            "training_data": train.describe(cfg.task),
            "validation_data": test.describe(cfg.task),
            "data_quality": quality,
            "metrics": ev.results,
            "intended_use": cfg.description or f"{cfg.task.kind} model trained on {train.name}",
            "privacy": doc.get("privacy"),
            **_distribution_metadata(cfg, train),
            **({"uncertainty": {"level": cfg.uncertainty.level, "calibration_data": doc["data"]["calibration"],
                                "coverage": doc["uncertainty"]}} if uncertainty else {}),
        })
        write_json(tmp / "metrics.json", doc)
        write_json(tmp / "quality.json", quality)
        echo("writing report.html and model_card.md")
        (tmp / "model_card.md").write_text(card)
        write_run_report(tmp / "report.html", cfg=cfg, doc=doc, quality=quality, train_X=train.X, train_y=train.y,
                         test_X=test.X, test_y=test.y, outputs=ev.outputs, grid=ev.grid, models=models, card=card,
                         classes=cohort.classes, subgroups=subgroups,
                         importance=importance[0] if importance else None,
                         importance_plot=importance[1] if importance else None)
    return RunResult(out_dir, doc, out_dir / "bundle", models, pre)


def demo_config_path() -> Path:
    """The packaged Rotterdam → GBSG run config the demo trains."""
    return Path(str(resources.files("precimed") / "recipes" / DEMO_CONFIG))


def demo(out_dir: Path | str, *, overwrite: bool = True, progress: bool = True, echo: Echo = quiet) -> RunResult:
    """Rotterdam node-positive → Cox MLP, Cox PH, gradient boosting → external validation on GBSG."""
    return train_from_config(load_config(demo_config_path()), out_dir, overwrite=overwrite, progress=progress,
                             echo=echo)
