"""The update recipe: a cheaper update of a bundle's model on new data, saved as a new bundle version.

``update_bundle`` reads a bundle and new labelled data (a later period, another site), updates the bundle's
primary model (or the one ``settings.model`` names) by

- ``recalibrate``: logistic (binary), Cox (survival) or linear (regression) recalibration of the model's output,
  intercept and slope (``precimed.train.updating.RecalibratedModel``);
- ``recalibrate_intercept``: the intercept only (binary: calibration-in-the-large; survival: the baseline
  hazard only; regression: the mean residual);
- ``finetune``: the net's weights trained further on the new rows (``precimed.train.updating.fine_tune``;
  ``settings.finetune`` chooses the layers, learning rate, epochs and patience),

and writes ``OUT/bundle`` (same run config, same preprocessor; models: the updated one under the parent's
model name, so clients asking for it by name keep working, and the untouched parent as ``<name>_parent`` for
comparison) and ``OUT/update.json``. The bundle's metadata records ``parent`` (the parent bundle's ref,
name@metadata-sha prefix) and ``update``: the method, its settings, the fitted recalibration or the layers
fine-tuned, and the data window (rows, events, a SHA-256 digest of the patient ids; never the ids). With
``settings.holdout`` a stratified part of the new rows is kept out of the update and both models are scored on
it with paired bootstrap CIs (``metrics`` / ``comparisons`` in update.json). The folder is published in one
rename, so a failed update leaves nothing behind. Per-patient intervals (``uncertainty.json``) were calibrated on
the parent's outputs: the updated model gets none, the unchanged parent keeps its own, and ``update.uncertainty``
says so (:func:`carried_uncertainty`).

``update_model`` is the in-memory core (a loaded bundle and a cohort in, the updated model out) for callers that
compare updates without writing bundles (benchmarks/site_transfer.py, the retraining simulation).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sklearn.base import clone

from precimed.atomic import atomic_dir
from precimed.bundle import Bundle, load_bundle, save_bundle
from precimed.cohort import Cohort
from precimed.errors import ConfigError, DataError
from precimed.evaluate.conformal import Uncertainty
from precimed.evaluate.scoring import score_models
from precimed.jsonio import write_json
from precimed.limits import read_user_text
from precimed.preprocess import TabularPreprocessor
from precimed.train.estimators import TabularNetEstimator
from precimed.train.updating import RECALIBRATION_TASKS, RecalibratedModel, fine_tune, frozen_layers
from precimed.workflows._run import (
    Echo,
    RunResult,
    check_out_dir,
    check_outputs_apart,
    load_cohort,
    metrics_doc,
    quiet,
    resolve_source,
    scoring_settings,
)

__all__ = ["METHODS", "FineTuneSettings", "Update", "UpdateSettings", "carried_uncertainty", "data_window",
           "labelled_cohort", "load_update_settings", "update_bundle", "update_model"]

METHODS = ("recalibrate", "recalibrate_intercept", "finetune")
PARENT_SUFFIX = "_parent"


class FineTuneSettings(BaseModel):
    """How ``finetune`` trains: which layers, the learning rate, epochs and early-stopping patience.

    ``layers``: ``all``, ``head`` (the output layer only) or k, the last k layers. ``lr``: default a tenth of the
    parent's. ``batch_size`` / ``weight_decay``: default the parent's. ``refit_preprocessor``: refit imputation and
    scaling on the new rows instead of keeping the parent's encoding; rarely wise: the net's first layer was
    learned for the old encoding, so every input moves under it and fine-tuning must first undo that shift, the
    new centres and scales come from fewer rows, and the untouched parent can no longer be kept beside the
    updated model in the bundle (one bundle has one preprocessor).
    """

    model_config = ConfigDict(extra="forbid")

    layers: Literal["all", "head"] | int = "all"
    lr: float | None = Field(None, gt=0)
    max_epochs: int = Field(50, ge=1, le=10_000)
    patience: int = Field(10, ge=1)
    batch_size: int | None = Field(None, ge=2)
    weight_decay: float | None = Field(None, ge=0)
    refit_preprocessor: bool = False


class UpdateSettings(BaseModel):
    """The update's settings (the ``--settings`` YAML): which model, a holdout for scoring, the seed, fine-tuning.

    ``model``: the bundle's model to update (default its primary model). ``holdout``: the fraction of the new rows
    kept out of the update to score updated vs parent on (0: none, every row updates). ``seed``: default the
    run config's.
    """

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    holdout: float = Field(0.0, ge=0.0, le=0.8)
    seed: int | None = None
    finetune: FineTuneSettings = FineTuneSettings()


def load_update_settings(path: Path | str) -> UpdateSettings:
    """The update settings from a YAML file; a wrong key or value is one line naming it."""
    path = Path(path)
    try:
        raw = yaml.safe_load(read_user_text(path)) or {}
        return UpdateSettings.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "settings"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def _settings(settings: UpdateSettings | dict | None) -> UpdateSettings:
    if settings is None:
        return UpdateSettings()
    if isinstance(settings, UpdateSettings):
        return settings
    try:
        return UpdateSettings.model_validate(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"update settings: {'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from None


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown update method {method!r}; choose from {list(METHODS)}")


def labelled_cohort(bundle: Bundle, data: str, *, echo: Echo = quiet) -> Cohort:
    """New labelled rows (a dataset name, file or YAML source spec), harmonized and typed as the bundle's run
    config says; a missing column, no rows or (survival) no events is a one-line DataError naming it."""
    source = resolve_source(data, bundle.config)
    echo(f"loading {source.label}")
    return load_cohort(source, bundle.config, classes=bundle.metadata.get("classes"))


def data_window(cohort: Cohort, task: str) -> dict[str, Any]:
    """What the update saw, without identifying anyone: rows, outcome counts, a digest of the sorted ids."""
    ids = "\n".join(sorted(map(str, cohort.X.index)))
    out: dict[str, Any] = {"name": cohort.name, "rows": len(cohort),
                           "ids_sha256": hashlib.sha256(ids.encode()).hexdigest()}
    if cohort.y is not None and task == "survival":
        out |= {"events": int(cohort.y[:, 1].sum()), "max_follow_up": float(cohort.y[:, 0].max())}
    elif cohort.y is not None and task == "binary":
        out["events"] = int(cohort.y.sum())
    return out


@dataclass
class Update:
    """An updated model: its name in the bundle, the model, the preprocessor it reads, and what was fitted."""

    name: str
    model: Any
    preprocessor: TabularPreprocessor
    details: dict[str, Any]


def update_model(bundle: Bundle, cohort: Cohort, *, method: str = "recalibrate",
                 settings: UpdateSettings | dict | None = None) -> Update:
    """Update one of ``bundle``'s models on ``cohort`` (labelled, typed as the bundle's config says); in memory.

    The bundle is not changed. Raises ConfigError for a method the model cannot take (recalibration of a
    multiclass model, fine-tuning a model without weights) and DataError for unusable data (no events, one class).
    """
    _check_method(method)
    settings = _settings(settings)
    if bundle.preprocessor is None or bundle.sequence_preprocessor is not None or bundle.image_preprocessor is not None:
        raise ConfigError(f"{bundle.path}: updating covers tabular bundles; this one scores "
                          f"{'sequences' if bundle.sequence_preprocessor is not None else 'images'}")
    if cohort.y is None or len(cohort) == 0:
        raise DataError(f"{cohort.name}: the update needs labelled rows; got none")
    name = bundle.model_named(settings.model)
    parent = bundle.models[name]
    task = bundle.task.kind
    seed = bundle.config.seed if settings.seed is None else settings.seed
    ft = settings.finetune
    if method != "finetune":
        if ft.refit_preprocessor:
            raise ConfigError("finetune.refit_preprocessor applies to fine-tuning; recalibration reads the model's "
                              "outputs through the parent's own encoding")
        if task not in RECALIBRATION_TASKS:
            raise ConfigError(f"recalibration covers {list(RECALIBRATION_TASKS)} models; {name!r} is a {task} "
                              "model: use --method finetune or retrain")
        X = bundle.preprocessor.transform(cohort.X, out_of_range="missing")
        model = RecalibratedModel(parent, task=task, intercept_only=method == "recalibrate_intercept").fit(X, cohort.y)
        details: dict[str, Any] = {"a": model.a_, "b": model.b_}
        if task == "survival":  # no intercept: the new Breslow baseline hazard takes its place
            details = {"b": model.b_, "baseline": f"Breslow, refitted on {len(cohort)} rows "
                                                  f"({int(cohort.y[:, 1].sum())} events)"}
        return Update(name, model, bundle.preprocessor, details)
    if not isinstance(parent, TabularNetEstimator):
        raise ConfigError(f"fine-tuning continues training a net; {name!r} ({type(parent).__name__}) has no weights "
                          f"to fine-tune: use --method recalibrate, or update one of the bundle's nets "
                          f"{[n for n, m in bundle.models.items() if isinstance(m, TabularNetEstimator)]}")
    pre = bundle.preprocessor
    if ft.refit_preprocessor:
        pre = clone(bundle.preprocessor).fit(cohort.X)
    X = pre.transform(cohort.X, out_of_range="missing")
    model = fine_tune(parent, X, cohort.y, layers=ft.layers, lr=ft.lr or parent.lr / 10, max_epochs=ft.max_epochs,
                      patience=ft.patience, batch_size=ft.batch_size, weight_decay=ft.weight_decay,
                      random_state=seed)
    details = {"layers": ft.layers, "frozen": frozen_layers(parent, ft.layers), "lr": model.lr,
               "best_epochs": [h.best_epoch for h in model.histories_],
               "note": "best epoch -1: no epoch beat the parent's weights on the member's validation rows, "
                       "which were kept"}
    return Update(name, model, pre, details)


def carried_uncertainty(bundle: Bundle, name: str, *, keep_parent: bool) -> tuple[dict[str, Uncertainty] | None,
                                                                               dict[str, Any] | None]:
    """What becomes of the parent's per-patient uncertainty (docs/uncertainty.md) in an updated bundle.

    The updated model's outputs differ from the ones the intervals were calibrated on, so its intervals are dropped:
    stored for it they would claim a coverage nobody checked. The untouched parent (kept as ``<name>_parent`` when
    the encoding is unchanged) scores exactly as before, so its own uncertainty still holds for it and goes with it.
    Returns (uncertainty for ``save_bundle`` or None, the metadata record saying so or None when the parent had
    none).
    """
    unc = bundle.uncertainty.get(name)
    if unc is None:
        return None, None
    kept = {name + PARENT_SUFFIX: unc} if keep_parent else None
    record = {"level": unc.level, "method": unc.method, "updated_model": "dropped",
              "parent_model": "kept" if kept else "not in the bundle",
              "note": f"{name!r} was updated, so the intervals calibrated for its parent no longer describe it and "
                      "were dropped: its predictions carry no interval keys. Retrain with an uncertainty: section "
                      "to get intervals fitted on held-out rows of the new data"
                      + (f"; {name + PARENT_SUFFIX!r} is unchanged and keeps its own" if kept else "") + "."}
    return kept, record


def _split(cohort: Cohort, fraction: float, task: str, seed: int) -> tuple[Cohort, Cohort | None]:
    """(rows that update, rows that score) — stratified on the outcome (survival: the event)."""
    if fraction <= 0:
        return cohort, None
    from sklearn.model_selection import train_test_split

    y = cohort.y
    strata = y[:, 1] if task == "survival" else y if task in ("binary", "multiclass") else None
    try:
        fit_rows, eval_rows = train_test_split(np.arange(len(cohort)), test_size=fraction, random_state=seed,
                                               stratify=strata)
    except ValueError as exc:
        raise DataError(f"{cohort.name}: cannot keep a stratified holdout of {fraction:g} of {len(cohort)} rows "
                        f"({exc}); lower settings.holdout or add rows") from None
    return (cohort.subset(np.sort(fit_rows), f"{cohort.name} (update part)"),
            cohort.subset(np.sort(eval_rows), f"{cohort.name} (holdout)"))


def update_bundle(bundle_dir: Path | str, new_data: str, out_dir: Path | str, *, method: str = "recalibrate",
                  settings: UpdateSettings | dict | None = None, overwrite: bool = False,
                  echo: Echo = quiet) -> RunResult:
    """``precimed update``: update a bundle's model on ``new_data`` (a dataset name, file or YAML source spec) and
    write ``out_dir/bundle`` (a new version that names its parent) and ``out_dir/update.json``."""
    _check_method(method)
    settings = _settings(settings)
    out_dir = check_out_dir(out_dir, overwrite)
    check_outputs_apart({"--out": out_dir}, {"BUNDLE": bundle_dir,
                                             "--data": new_data if Path(new_data).exists() else None})
    bundle = load_bundle(bundle_dir)
    cfg = bundle.config
    task = cfg.task.kind
    cohort = labelled_cohort(bundle, new_data, echo=echo)
    seed = cfg.seed if settings.seed is None else settings.seed
    fit_part, holdout = _split(cohort, settings.holdout, task, seed)
    echo(f"{method} of {bundle.model_named(settings.model)!r} from {bundle.ref} on {len(fit_part)} rows")
    update = update_model(bundle, fit_part, method=method, settings=settings)
    name, parent_name = update.name, update.name + PARENT_SUFFIX
    keep_parent = update.preprocessor is bundle.preprocessor
    models = {name: update.model, **({parent_name: bundle.models[name]} if keep_parent else {})}
    comparisons = [(name, parent_name)] if keep_parent else []
    uncertainty, uncertainty_note = carried_uncertainty(bundle, name, keep_parent=keep_parent)
    if uncertainty_note is not None:
        echo(uncertainty_note["note"])
    record = {"parent": bundle.ref, "parent_model": name, "method": method,
              "settings": settings.model_dump(mode="json"), "fitted": update.details,
              "data": data_window(fit_part, task),
              "holdout": None if holdout is None else data_window(holdout, task),
              **({"uncertainty": uncertainty_note} if uncertainty_note is not None else {})}
    doc: dict[str, Any] = {"task": task, "run": cfg.name, "update": record}
    results: dict[str, Any] = {}
    if holdout is not None:
        echo(f"scoring {name} and its parent on {len(holdout)} held-out rows")
        X_hold = update.preprocessor.transform(holdout.X, out_of_range="missing")
        ev = score_models(models, X_hold, holdout.y, comparisons=comparisons, echo=echo,  # type: ignore[arg-type]
                          **scoring_settings(cfg))
        results = ev.results
        doc = metrics_doc(cfg, fit_part.describe(cfg.task), holdout.describe(cfg.task), ev.results, ev.comparisons,
                          primary=name) | {"update": record}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_bundle(tmp / "bundle", config=cfg, preprocessor=update.preprocessor, models=models,
                    background=bundle.background if keep_parent else None, uncertainty=uncertainty, metadata={
            "primary_model": name,
            "comparisons": [f"{a} - {b}" for a, b in comparisons],
            "id_column": bundle.metadata["id_column"],
            "classes": bundle.metadata.get("classes"),
            "feature_names_out": update.preprocessor.get_feature_names_out().tolist(),
            "training_data": bundle.metadata.get("training_data"),
            "validation_data": None if holdout is None else holdout.describe(cfg.task),
            "metrics": results,
            "intended_use": bundle.metadata.get("intended_use"),
            "parent": bundle.ref,
            "update": record,
        })
        write_json(tmp / "update.json", doc)
    return RunResult(Path(out_dir), doc, Path(out_dir) / "bundle", models, update.preprocessor)
