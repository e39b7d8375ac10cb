"""Modeling recipes: train, evaluate, predict, demo.

Each recipe reads its inputs, does all its work in memory or in a temporary folder, and only then
publishes the results in one rename, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.atomic import atomic_dir, atomic_write_bytes
from precimed.bundle import Bundle, load_bundle, save_bundle
from precimed.cohort import ROW_ID, Cohort, build_cohort, split_rows, type_features
from precimed.config import RunConfig, SourceConfig, TaskConfig, load_config
from precimed.data import dataset_info, list_datasets, load_dataset, read_table
from precimed.errors import ConfigError, DataError
from precimed.evaluate import (
    background_sample,
    binary_metrics,
    bootstrap_ci,
    multiclass_metrics,
    regression_metrics,
    survival_metrics,
)
from precimed.models.baselines import CoxPHBaseline, GBMModel, LinearBaseline, LogisticBaseline
from precimed.preprocess import TabularPreprocessor, quality_report
from precimed.train.estimators import NeuralRiskModel
from precimed.train.search import tune_mlp
from precimed.workflows.reporting import card_for, write_run_report

DEEP_MODEL = "mlp"
DEMO_CONFIG = "rotterdam-gbsg.yaml"
Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


# ----- building models: one visible mapping, no decorators or string imports ----------------------
def build_mlp(cfg: RunConfig, *, progress: bool, overrides: dict | None = None) -> NeuralRiskModel:
    m, t = cfg.models.mlp, cfg.training
    model = NeuralRiskModel(
        task=cfg.task.kind, hidden=tuple(m.hidden), dropout=m.dropout, activation=m.activation,
        batch_norm=m.batch_norm, optimizer=t.optimizer, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
        batch_size=t.batch_size, max_epochs=t.max_epochs, patience=t.patience, lr_schedule=t.lr_schedule,
        val_fraction=t.val_fraction, class_weight=None if t.class_weight == "none" else t.class_weight,
        ensemble=m.ensemble, random_state=cfg.seed, progress=progress and t.progress,
    )
    return model.set_params(**(overrides or {}))


def tune(cfg: RunConfig, X: np.ndarray, y: np.ndarray, *, progress: bool, echo: Echo) -> dict | None:
    """Optional Optuna search on the training rows (inner validation split); None when not configured."""
    search = cfg.training.search
    if search is None:
        return None
    echo(f"searching {search.trials} MLP settings on an inner validation split of the training rows")
    base = build_mlp(cfg, progress=False).get_params()
    space = search.model_dump(exclude={"trials"})
    return tune_mlp(X, y, base, trials=search.trials, space=space, seed=cfg.seed, progress=progress)


def _class_weight(cfg: RunConfig) -> str | None:
    return None if cfg.training.class_weight == "none" else cfg.training.class_weight


BASELINE_BUILDERS: dict[str, Callable[[RunConfig], Any]] = {
    "logistic": lambda cfg: LogisticBaseline(class_weight=_class_weight(cfg)),
    "linear": lambda cfg: LinearBaseline(),
    "cox_ph": lambda cfg: CoxPHBaseline(),
    "gbm": lambda cfg: GBMModel(task=cfg.task.kind, **cfg.models.gbm.model_dump(),
                                val_fraction=cfg.training.val_fraction, random_state=cfg.seed,
                                class_weight=_class_weight(cfg)),
}


# ----- data ----------------------------------------------------------------------------------------
def load_source(source: SourceConfig) -> tuple[pd.DataFrame, str | None]:
    """The raw table of a source and its default patient id column (None for files)."""
    if source.dataset is not None:
        return load_dataset(source.dataset), dataset_info(source.dataset).id_column
    return read_table(source.path), None  # type: ignore[arg-type]


def _with_id(raw: pd.DataFrame, cfg_id: str | None, default: str | None) -> tuple[pd.DataFrame, str]:
    id_name = cfg_id or default
    if id_name is None:
        raw = raw.copy()
        raw.insert(0, ROW_ID, np.arange(1, len(raw) + 1))
        id_name = ROW_ID
    return raw, id_name


def load_cohort(source: SourceConfig, cfg: RunConfig, *, classes: list[str] | None = None,
                with_labels: bool = True) -> Cohort:
    raw, default_id = load_source(source)
    raw, id_name = _with_id(raw, cfg.patient_id, default_id)
    return build_cohort(raw, source, cfg, id_name=id_name, with_labels=with_labels, classes=classes)


# ----- predictions and scores ------------------------------------------------------------------------
def survival_grid(time: np.ndarray, horizons: list[float]) -> np.ndarray:
    """Time grid for survival curves and the integrated Brier score: from early follow-up to the last horizon."""
    return np.linspace(float(np.percentile(time, 1)), max(horizons), 100)


def model_outputs(model: Any, X: np.ndarray, task: TaskConfig, grid: np.ndarray | None = None) -> dict:
    """What a model says about each row, in the form the metrics of the task consume."""
    if task.kind == "binary":
        return {"proba": model.predict_proba(X)[:, 1]}
    if task.kind == "multiclass":
        return {"proba": model.predict_proba(X)}
    if task.kind == "regression":
        return {"value": model.predict(X)}
    out = {"risk": model.predict_risk(X)}
    if grid is not None:
        out["surv"] = model.predict_survival(X, grid)
    return out


def metric_function(task: TaskConfig, y: np.ndarray, out: dict, *, threshold: float,
                    grid: np.ndarray | None = None) -> Callable[[np.ndarray], dict[str, float]]:
    """The task's metrics on a subset of rows (an index array), for the bootstrap."""
    if task.kind == "binary":
        return lambda i: binary_metrics(y[i], out["proba"][i], threshold=threshold)
    if task.kind == "multiclass":
        return lambda i: multiclass_metrics(y[i].astype(int), out["proba"][i])
    if task.kind == "regression":
        return lambda i: regression_metrics(y[i], out["value"][i])
    return lambda i: survival_metrics(y[i, 0], y[i, 1], out["risk"][i], horizons=task.horizons,
                                      surv=out["surv"][i], surv_times=grid)


@dataclass
class Evaluation:
    """Metrics with CIs, paired differences, and each model's outputs on the evaluation rows."""

    results: dict[str, dict]
    comparisons: dict[str, dict]
    outputs: dict[str, dict]
    grid: np.ndarray | None


def evaluate_models(models: dict[str, Any], X: np.ndarray, y: np.ndarray, cfg: RunConfig,
                    echo: Echo = _quiet) -> tuple[dict[str, dict], dict[str, dict]]:
    """Metrics with bootstrap CIs per model and the deep model's paired differences (see `score_models`)."""
    ev = score_models(models, X, y, cfg, echo)
    return ev.results, ev.comparisons


def score_models(models: dict[str, Any], X: np.ndarray, y: np.ndarray, cfg: RunConfig,
                 echo: Echo = _quiet) -> Evaluation:
    """Every model's metrics with bootstrap CIs, and the deep model's paired differences to each baseline.

    All models are scored on the same bootstrap resamples (same seed and strata), so a difference's CI
    is a paired comparison: it says whether the deep model earned its place on this data.
    """
    task, ev = cfg.task, cfg.evaluation
    grid = survival_grid(y[:, 0], task.horizons) if task.kind == "survival" else None
    if grid is not None and max(task.horizons) >= y[:, 0].max():
        raise DataError(f"horizon {max(task.horizons)} {task.time_unit} lies beyond the last follow-up "
                        f"time {y[:, 0].max():g} of the evaluation data; choose shorter task.horizons")
    # plain (unstratified) resampling: fixing the event count per replicate would make calibration CIs too narrow
    boot = dict(n_boot=ev.bootstrap, seed=cfg.seed, level=ev.level)
    outputs = {name: model_outputs(model, X, task, grid) for name, model in models.items()}
    fns = {name: metric_function(task, y, out, threshold=ev.threshold, grid=grid) for name, out in outputs.items()}
    results = {}
    for name, fn in fns.items():
        echo(f"scoring {name} with {ev.bootstrap} bootstrap replicates")
        results[name] = bootstrap_ci(fn, len(y), **boot)
    comparisons = {}
    if DEEP_MODEL in fns:
        for name in fns:
            if name == DEEP_MODEL:
                continue
            deep, base = fns[DEEP_MODEL], fns[name]

            def diff(i: np.ndarray, deep=deep, base=base) -> dict[str, float]:
                a, b = deep(i), base(i)
                return {k: a[k] - b[k] for k in a}

            echo(f"comparing {DEEP_MODEL} with {name} (paired bootstrap)")
            comparisons[f"{DEEP_MODEL} - {name}"] = bootstrap_ci(diff, len(y), **boot)
    return Evaluation(results, comparisons, outputs, grid)


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict
    bundle_path: Path | None = None
    models: dict[str, Any] | None = None
    preprocessor: TabularPreprocessor | None = None


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _metrics_doc(cfg: RunConfig, train: Cohort, test: Cohort, models: dict[str, dict],
                 comparisons: dict[str, dict]) -> dict:
    return {
        "task": cfg.task.kind,
        "run": cfg.name,
        "data": {"train": train.describe(cfg.task), "test": test.describe(cfg.task)},
        "bootstrap": {"replicates": cfg.evaluation.bootstrap, "level": cfg.evaluation.level, "seed": cfg.seed},
        **({"horizons": cfg.task.horizons, "time_unit": cfg.task.time_unit} if cfg.task.kind == "survival" else {}),
        **({"threshold": cfg.evaluation.threshold} if cfg.task.kind == "binary" else {}),
        "models": models,
        "comparisons": comparisons,
    }


# ----- recipes ----------------------------------------------------------------------------------------
def train_from_config(cfg: RunConfig, out_dir: Path, *, overwrite: bool = False, progress: bool = True,
                      echo: Echo = _quiet) -> RunResult:
    """Train the deep model and the baselines on one split, validate them, and write bundle + metrics."""
    from precimed.workflows.explaining import report_importance
    from precimed.workflows.fairness import analyse_subgroups

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"{out_dir} already exists; choose another --out or pass --overwrite")
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
    features = [f.model_dump() for f in cfg.features]
    quality = {"train": quality_report(train.frame, features, source=train.name, id_name=train.id_name),
               "test": quality_report(test.frame, features, source=test.name, id_name=test.id_name)}
    pre = TabularPreprocessor(features=features, impute=cfg.preprocess.impute,
                              missing_indicators=cfg.preprocess.missing_indicators, scale=cfg.preprocess.scale,
                              out_of_range="missing")
    X_train = pre.fit(train.X).transform(train.X)
    X_test = pre.transform(test.X)
    models: dict[str, Any] = {}
    echo(f"training {DEEP_MODEL} on {len(train)} rows, {X_train.shape[1]} inputs")
    search = tune(cfg, X_train, train.y, progress=progress, echo=echo)  # type: ignore[arg-type]
    overrides = None
    if search is not None:
        overrides = search["best_params"] | {"hidden": tuple(search["best_params"]["hidden"])}
        echo(f"best settings {search['best_params']} (inner validation loss {search['best_value']:.4f})")
    privacy = None
    if cfg.training.privacy is not None:
        from precimed.train.private import fit_private

        p = cfg.training.privacy
        echo(f"DP-SGD at epsilon {p.epsilon:g}")
        models[DEEP_MODEL] = fit_private(build_mlp(cfg, progress=False), X_train, train.y, epsilon=p.epsilon,
                                         delta=p.delta, max_grad_norm=p.max_grad_norm, epochs=p.epochs,
                                         target_range=p.target_range, accountant=p.accountant)
        privacy = models[DEEP_MODEL].privacy_.to_dict()
    else:
        models[DEEP_MODEL] = build_mlp(cfg, progress=progress, overrides=overrides).fit(X_train, train.y)
    for name in cfg.baselines:
        echo(f"training baseline {name}")
        models[name] = BASELINE_BUILDERS[name](cfg).fit(X_train, train.y)
    ev = score_models(models, X_test, test.y, cfg, echo)  # type: ignore[arg-type]
    doc = _metrics_doc(cfg, train, test, ev.results, ev.comparisons)
    echo("subgroups and fairness gaps")
    subgroups = analyse_subgroups(cfg, test, ev.outputs, ev.grid)
    if subgroups is not None:
        doc["subgroups"] = subgroups
    background = background_sample(X_train, pre.feature_groups_, n=100, seed=cfg.seed)
    echo(f"SHAP importance on {min(cfg.evaluation.explain, len(test))} evaluation patients")
    importance = report_importance(models, cfg.task, background, X_test, test.X, pre.feature_groups_,
                                   n=cfg.evaluation.explain, seed=cfg.seed)
    if search is not None:
        doc["search"] = search
    bundled = models
    if privacy is not None:
        doc["privacy"] = privacy | {"note": "the guarantee covers the MLP's weights; baselines were trained "
                                             "non-privately for comparison and are NOT saved in the bundle"}
        bundled = {DEEP_MODEL: models[DEEP_MODEL]}
        background = None  # SHAP background rows come from training data: not stored beside a private model
    card = card_for(cfg, doc, quality, n_inputs=X_train.shape[1], deep_model=DEEP_MODEL,
                    subgroups=subgroups is not None)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_bundle(tmp / "bundle", config=cfg, preprocessor=pre, models=bundled, background=background,
                    extra_files={"model_card.md": card.encode()}, metadata={
            "id_column": train.id_name,
            "classes": cohort.classes,
            "feature_names_out": pre.get_feature_names_out().tolist(),
            "training_data": train.describe(cfg.task),
            "validation_data": test.describe(cfg.task),
            "data_quality": quality,
            "metrics": ev.results,
            "intended_use": cfg.description or f"{cfg.task.kind} model trained on {train.name}",
            "privacy": doc.get("privacy"),
        })
        _write_json(tmp / "metrics.json", doc)
        _write_json(tmp / "quality.json", quality)
        echo("writing report.html and model_card.md")
        (tmp / "model_card.md").write_text(card)
        write_run_report(tmp / "report.html", cfg=cfg, doc=doc, quality=quality, train_X=train.X, train_y=train.y,
                         test_X=test.X, test_y=test.y, outputs=ev.outputs, grid=ev.grid, models=models, card=card,
                         classes=cohort.classes, subgroups=subgroups,
                         importance=importance[0] if importance else None,
                         importance_plot=importance[1] if importance else None)
    return RunResult(out_dir, doc, out_dir / "bundle", models, pre)


def resolve_source(data: str, cfg: RunConfig) -> SourceConfig:
    """A dataset name, a file, or a YAML source spec; reuse the run's harmonization for a source it named."""
    path = Path(data)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        import yaml

        try:
            return SourceConfig.model_validate(yaml.safe_load(path.read_text()))
        except Exception as exc:  # pydantic or YAML: one line naming the file
            raise ConfigError(f"{path}: not a valid source spec ({exc})") from None
    for known in (cfg.data.test, cfg.data.train):
        if known is not None and (known.dataset == data or (known.path is not None and known.path == path.resolve())):
            return known
    if path.exists():
        return SourceConfig(path=path.resolve())
    names = [d.name for d in list_datasets()]
    if data in names:
        return SourceConfig(dataset=data)
    dataset_info(data)  # raises ConfigError with the closest names
    raise ConfigError(f"{data!r} is neither a file nor a built-in dataset")


def evaluate_bundle(bundle_dir: Path, data: str, out_dir: Path, *, overwrite: bool = False,
                    echo: Echo = _quiet) -> RunResult:
    """Validate a bundle's models on another cohort or file; write the same metrics.json."""
    from precimed.workflows.explaining import report_importance
    from precimed.workflows.fairness import analyse_subgroups

    bundle = load_bundle(bundle_dir)
    cfg = bundle.config
    source = resolve_source(data, cfg)
    if Path(out_dir).exists() and not overwrite:
        raise ConfigError(f"{out_dir} already exists; choose another --out or pass --overwrite")
    echo(f"loading {source.label}")
    cohort = load_cohort(source, cfg, classes=bundle.metadata.get("classes"))
    features = [f.model_dump() for f in cfg.features]
    quality = quality_report(cohort.frame, features, source=cohort.name, id_name=cohort.id_name)
    pre = bundle.preprocessor
    pre.out_of_range = "missing"
    X = pre.transform(cohort.X)
    ev = score_models(bundle.models, X, cohort.y, cfg, echo)  # type: ignore[arg-type]
    train_desc = bundle.metadata["training_data"]
    doc = _metrics_doc(cfg, Cohort(train_desc["name"], pd.DataFrame(), None, pd.DataFrame(), ""), cohort,
                       ev.results, ev.comparisons)
    subgroups = analyse_subgroups(cfg, cohort, ev.outputs, ev.grid)
    if subgroups is not None:
        doc["subgroups"] = subgroups
    importance = None
    if bundle.background is not None:
        importance = report_importance(bundle.models, cfg.task, bundle.background, X, cohort.X,
                                       pre.feature_groups_, n=cfg.evaluation.explain, seed=cfg.seed)
    doc["data"]["train"] = train_desc
    doc["bundle"] = bundle.ref
    with atomic_dir(Path(out_dir), overwrite=overwrite) as tmp:
        _write_json(tmp / "metrics.json", doc)
        _write_json(tmp / "quality.json", {"test": quality})
        card = card_for(cfg, doc, {"test": quality}, n_inputs=len(bundle.metadata["feature_names_out"]),
                        deep_model=DEEP_MODEL, subgroups=subgroups is not None)
        write_run_report(tmp / "report.html", cfg=cfg, doc=doc, quality={"test": quality}, train_X=None, train_y=None,
                         test_X=cohort.X, test_y=cohort.y, outputs=ev.outputs, grid=ev.grid, models=bundle.models,
                         card=card, classes=bundle.metadata.get("classes"), subgroups=subgroups,
                         importance=importance[0] if importance else None,
                         importance_plot=importance[1] if importance else None)
    return RunResult(Path(out_dir), doc)


def typed_patients(bundle: Bundle, frame: pd.DataFrame, *, model: str, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """New patients indexed by the bundle's id column (row numbers when absent) and their typed features."""
    if model not in bundle.models:
        raise ConfigError(f"model {model!r} is not in the bundle; it holds {sorted(bundle.models)}")
    if frame.empty:
        raise DataError(f"{where}: the data has no rows")
    id_name = bundle.metadata["id_column"]
    if id_name not in frame.columns:
        frame = frame.copy()
        frame.insert(0, id_name, np.arange(1, len(frame) + 1))
    frame = frame.set_index(id_name, drop=False)
    return frame, type_features(frame, bundle.features, where=where)


def predict_frame(bundle: Bundle, frame: pd.DataFrame, *, model: str = DEEP_MODEL,
                  allow_out_of_range: bool = False, where: str = "input") -> pd.DataFrame:
    """Score new patients; a value outside the plausible range is refused unless allowed."""
    frame, X = typed_patients(bundle, frame, model=model, where=where)
    id_name = bundle.metadata["id_column"]
    pre = bundle.preprocessor
    pre.out_of_range = "missing" if allow_out_of_range else "error"
    Xt = pre.transform(X)
    task = bundle.task
    est = bundle.models[model]
    out = pd.DataFrame({id_name: frame.index.to_numpy()})
    if task.kind == "binary":
        out["probability"] = est.predict_proba(Xt)[:, 1]
    elif task.kind == "multiclass":
        proba = est.predict_proba(Xt)
        for i, c in enumerate(bundle.metadata["classes"]):
            out[f"p_{c}"] = proba[:, i]
    elif task.kind == "regression":
        out["prediction"] = est.predict(Xt)
    else:
        out["risk_score"] = est.predict_risk(Xt)
        surv = est.predict_survival(Xt, np.asarray(task.horizons))
        for j, h in enumerate(task.horizons):
            out[f"event_probability_{h:g}{task.time_unit}"] = 1.0 - surv[:, j]
    out.insert(1, "model", model)
    return out


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write CSV, Parquet or JSON records by suffix, atomically."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        data = frame.to_csv(index=False).encode()
    elif suffix == ".parquet":
        import io

        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        data = buf.getvalue()
    elif suffix == ".json":
        data = frame.to_json(orient="records", indent=1).encode()
    elif suffix == ".jsonl":
        data = frame.to_json(orient="records", lines=True).encode()
    else:
        raise ConfigError(f"{path}: unknown output format {suffix!r}; use .csv, .parquet, .json or .jsonl")
    atomic_write_bytes(path, data)


def predict_file(bundle_dir: Path, input_path: Path, output_path: Path, *, model: str = DEEP_MODEL,
                 allow_out_of_range: bool = False) -> pd.DataFrame:
    bundle = load_bundle(bundle_dir)
    if bundle.sequence_preprocessor is not None:  # a patient-history model: visits in, one score per patient
        from precimed.workflows.sequence import predict_sequence_file

        return predict_sequence_file(bundle_dir, input_path, output_path, model=None if model == DEEP_MODEL else model,
                                     allow_out_of_range=allow_out_of_range)
    suffix = Path(output_path).suffix.lower()
    if suffix not in (".csv", ".parquet", ".json", ".jsonl"):
        raise ConfigError(f"{output_path}: unknown output format {suffix!r}; use .csv, .parquet, .json or .jsonl")
    frame = read_table(input_path)
    out = predict_frame(bundle, frame, model=model, allow_out_of_range=allow_out_of_range, where=str(input_path))
    write_table(out, Path(output_path))
    return out


def demo_config_path() -> Path:
    return Path(str(resources.files("precimed") / "recipes" / DEMO_CONFIG))


def demo(out_dir: Path, *, overwrite: bool = True, progress: bool = True, echo: Echo = _quiet) -> RunResult:
    """Rotterdam node-positive → Cox MLP, Cox PH, gradient boosting → external validation on GBSG."""
    return train_from_config(load_config(demo_config_path()), out_dir, overwrite=overwrite, progress=progress,
                             echo=echo)
