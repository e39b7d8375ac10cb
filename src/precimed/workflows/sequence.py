"""Sequence recipe: a landmark design on longitudinal data; sequence nets vs baselines on one patient split.

``train_sequence_from_config`` (for a run config with ``sequence:``):

1. reads the source (a visit table, or a patient table plus a long-format observation file), harmonizes
   it as the config says, turns the visits into long-format observations and converts their units;
2. keeps one row per patient (static features from the first row, the outcome constant per patient),
   and keeps only patients still at risk at the landmark: the outcome time counts from the landmark,
   and the excluded patients are counted in the notes (events and censorings before the landmark);
3. splits by patient (each patient is one sample), fits the static ``TabularPreprocessor`` and the
   ``SequencePreprocessor`` on the training patients only (observations at or before the landmark);
4. trains the configured sequence nets (GRU, LSTM, temporal CNN, Transformer) and the baselines on the
   same split: gradient boosting on the last observation of each variable (``gbm_last``), logistic /
   linear / Cox regression on summary statistics over the window (``cox_ph_summary``, ...);
5. scores every model on the test patients with ``evaluate.scoring.score_models`` (bootstrap CIs) with
   paired bootstrap differences of every sequence model against every baseline (or ``models.compare``);
6. writes ``bundle/`` (with ``sequence_preprocessor.json``), ``metrics.json`` and ``quality.json`` in one
   atomic rename.

``predict_sequence_frame`` / ``predict_sequence_file`` score new patients with such a bundle at the
landmark (or another prediction time); observations after the prediction time are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.atomic import atomic_dir
from precimed.bundle import Bundle, save_bundle
from precimed.cohort import Cohort, build_cohort, harmonize, split_rows, type_features
from precimed.config import RunConfig, SourceConfig
from precimed.data.longitudinal import harmonize_units, read_observations, wide_to_long
from precimed.errors import ConfigError, DataError, SchemaError
from precimed.evaluate.scoring import score_models
from precimed.jsonio import write_json
from precimed.preprocess import TabularPreprocessor, quality_report
from precimed.preprocess.temporal import SequencePreprocessor, landmark_samples
from precimed.schema import as_numeric, examples, require_columns
from precimed.train import catalogue
from precimed.train.sequence import pack_static
from precimed.workflows._run import (
    Echo,
    RunResult,
    check_out_dir,
    load_source,
    metrics_doc,
    prediction_columns,
    quiet,
    scoring_settings,
)
from precimed.workflows.reporting import card_for, write_run_report

#: the tabular view each baseline reads in a sequence run (sequence nets read "sequence"): boosting gets the
#: last observation of each variable, regressions summary statistics over the window (the default)
BASELINE_VIEWS = {"gbm": "last"}


@dataclass
class LandmarkData:
    """Patients at risk at the landmark (one row each; y counted from the landmark) and their observations."""

    cohort: Cohort
    observations: pd.DataFrame
    samples: pd.Series
    notes: list[str]


class OnView:
    """A model that reads its own view of a dict of inputs, so every model is scored on one input."""

    def __init__(self, model: Any, view: str) -> None:
        self.model, self.view = model, view

    def predict_proba(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.model.predict_proba(inputs[self.view])

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.model.predict(inputs[self.view])

    def predict_risk(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.model.predict_risk(inputs[self.view])

    def predict_survival(self, inputs: dict[str, np.ndarray], times: np.ndarray) -> np.ndarray:
        return self.model.predict_survival(inputs[self.view], times)


# ----- data -------------------------------------------------------------------------------------------
def _id_name(cfg: RunConfig, default: str | None, where: str) -> str:
    id_name = cfg.patient_id or default
    if id_name is None:
        raise ConfigError(f"{where}: a sequence run needs the patient id column; set 'patient_id' in the config")
    return id_name


def _tables(frame: pd.DataFrame, cfg: RunConfig, id_name: str, *, where: str, outcome: list[str],
            observations: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per patient, long-format observations in the declared units) from a harmonized frame."""
    seq = cfg.sequence
    assert seq is not None
    require_columns(frame, [id_name], where=where)
    names = [v.name for v in seq.variables]
    if observations is None and seq.observations is None:
        require_columns(frame, [seq.time, *names], where=where)
        times = as_numeric(frame[seq.time], where=where, ids=frame[id_name])
        if times.isna().any():
            bad = frame[id_name][times.isna()]
            raise SchemaError(f"{where}: visit time {seq.time!r} missing for patient id(s) {examples(bad)}",
                              column=seq.time, rows=examples(bad))
        frame = frame.assign(**{seq.time: times}).sort_values([id_name, seq.time], kind="mergesort")
        units = {v.name: seq.source_units.get(v.name, v.unit) for v in seq.variables}
        obs = wide_to_long(frame, id_column=id_name, time_column=seq.time, variables=names,
                           units={k: u for k, u in units.items() if u is not None}, where=where)
    else:
        obs = observations if observations is not None else read_observations(seq.observations)  # type: ignore
    targets = {v.name: v.unit for v in seq.variables if v.unit is not None}
    obs = harmonize_units(obs[obs["variable"].isin(names)], units=targets, analytes=seq.analytes, where=where)
    present = [c for c in outcome if c in frame.columns]
    if present:
        varying = frame.groupby(id_name, sort=False)[present].nunique(dropna=False).max(axis=1) > 1
        if varying.any():
            raise SchemaError(f"{where}: outcome column(s) {present} differ between rows of the same patient "
                              f"(patient id(s) {examples(varying.index[varying])}); give each patient one outcome",
                              column=present[0], rows=examples(varying.index[varying]))
    patients = frame.groupby(id_name, sort=False).head(1)
    return patients, obs


def landmark_data(source: SourceConfig, cfg: RunConfig, *, echo: Echo = quiet) -> LandmarkData:
    """Load a source and apply the landmark design (see the module docstring)."""
    seq, task = cfg.sequence, cfg.task
    if seq is None:
        raise ConfigError("this config has no 'sequence' section; use workflows.train_from_config")
    where = source.label
    raw, default_id = load_source(source)
    id_name = _id_name(cfg, default_id, where)
    frame, notes = harmonize(raw, source, where=where)
    outcome = task.label_columns + ([seq.exit_time] if seq.exit_time else [])
    patients, obs = _tables(frame, cfg, id_name, where=where, outcome=outcome)
    echo(f"{where}: {len(patients)} patients, {len(obs)} observations of {len(seq.variables)} variables")
    plain = source.model_copy(update={"rename": {}, "derive": {}, "filter": None})
    uncensored = cfg.model_copy(update={"task": task.model_copy(update={"censor_at": None})})
    cohort = build_cohort(patients, plain, uncensored, id_name=id_name)
    notes = notes + cohort.notes
    y = np.array(cohort.y, dtype=float)
    landmark = seq.landmark
    unit = task.time_unit
    keep = np.ones(len(cohort), dtype=bool)
    if task.kind == "survival":
        time, event = y[:, 0], y[:, 1]
        keep = time > landmark
        gone = ~keep
        if gone.any():
            notes.append(f"landmark {landmark:g} {unit}: {int(gone.sum())} of {len(cohort)} patients excluded as no "
                         f"longer at risk ({int((gone & (event == 1)).sum())} with the event and "
                         f"{int((gone & (event == 0)).sum())} censored at or before the landmark; e.g. patient id(s) "
                         f"{examples(cohort.X.index[gone])})")
        time = time - landmark
        if task.censor_at is not None:
            late = time > task.censor_at
            event = np.where(late, 0.0, event)
            time = np.where(late, task.censor_at, time)
        y = np.column_stack([time, event])
    elif seq.exit_time is not None:
        exit_time = as_numeric(cohort.frame[seq.exit_time], where=where).to_numpy()
        keep = exit_time > landmark
        if (~keep).any():
            notes.append(f"landmark {landmark:g} {unit}: {int((~keep).sum())} of {len(cohort)} patients excluded, "
                         f"{seq.exit_time!r} at or before the landmark (e.g. patient id(s) "
                         f"{examples(cohort.X.index[~keep])})")
    else:
        notes.append(f"landmark {landmark:g} {unit}: no exit_time declared, so no patient was excluded as no "
                     "longer at risk; the outcome must not be known at the landmark")
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise DataError(f"{where}: no patient is still at risk at the landmark {landmark:g} {unit}")
    cohort = Cohort(cohort.name, cohort.X.iloc[rows], y[rows], cohort.frame.iloc[rows], id_name, notes,
                    cohort.classes)
    if task.kind == "survival" and cohort.y[:, 1].sum() == 0:  # type: ignore[index]
        raise DataError(f"{where}: no events after the landmark {landmark:g} {unit}; nothing to learn")
    samples = landmark_samples(cohort.X.index, landmark)
    seen = obs[obs["time"] <= landmark]
    without = int((~cohort.X.index.isin(seen["patient_id"])).sum())
    after = int((obs["time"] > landmark).sum())
    notes.append(f"{len(seen)} observations at or before the landmark are used; {after} after it are ignored")
    if without:
        notes.append(f"{without} patient(s) at risk have no observation at or before the landmark (static "
                     "features and empty sequences only)")
    return LandmarkData(cohort, obs, samples, notes)


def _subset(data: LandmarkData, rows: np.ndarray, name: str) -> LandmarkData:
    cohort = data.cohort.subset(rows, name)
    obs = data.observations[data.observations["patient_id"].isin(cohort.X.index)]
    return LandmarkData(cohort, obs, data.samples.iloc[rows], data.notes)


# ----- models -----------------------------------------------------------------------------------------
def _cnn_reach(cfg: RunConfig) -> tuple[int, int]:
    """Kernel size and layers of the sequence nets (for the CNN's receptive field note)."""
    m = catalogue.settings_for(cfg, "cnn")
    return m.kernel_size, m.layers


def sequence_preprocessor(cfg: RunConfig) -> SequencePreprocessor:
    seq = cfg.sequence
    assert seq is not None
    return SequencePreprocessor(variables=[v.model_dump() for v in seq.variables], step=seq.step, bins=seq.bins,
                                max_carry=seq.max_carry, aggregate=seq.aggregate)


def model_inputs(static_pre: TabularPreprocessor, seq_pre: SequencePreprocessor, X: pd.DataFrame,
                 obs: pd.DataFrame, samples: pd.Series, *, out_of_range: str | None = None) -> dict[str, np.ndarray]:
    """Every view of the same samples: packed sequences, last observations, summary statistics."""
    static = static_pre.transform(X, out_of_range=out_of_range)
    return {
        "sequence": pack_static(seq_pre.transform(obs, samples), static),
        "last": np.hstack([static, seq_pre.summary(obs, samples, "last")]),
        "summary": np.hstack([static, seq_pre.summary(obs, samples, "summary")]),
    }


def _observation_quality(obs: pd.DataFrame, data: LandmarkData, seq_pre: SequencePreprocessor) -> dict:
    landmark = float(data.samples.iloc[0]) if len(data.samples) else float("nan")
    mine = obs[obs["patient_id"].isin(data.cohort.X.index)]
    seen = mine[mine["time"] <= landmark]
    out = {}
    for v in seq_pre.variables_:
        rows = seen[seen["variable"] == v["name"]]
        out[v["name"]] = {"observations_used": int(len(rows)), "patients_observed": int(rows["patient_id"].nunique()),
                          "patients": int(len(data.cohort)),
                          "ignored_after_landmark": int(((mine["variable"] == v["name"])
                                                         & (mine["time"] > landmark)).sum())}
    return out


# ----- recipes ----------------------------------------------------------------------------------------
def train_sequence_from_config(cfg: RunConfig, out_dir: Path, *, overwrite: bool = False, progress: bool = True,
                               echo: Echo = quiet) -> RunResult:
    """Landmark design: train sequence nets and baselines on one patient split, validate, write the run folder."""
    seq, task = cfg.sequence, cfg.task
    if seq is None:
        raise ConfigError("this config has no 'sequence' section; use workflows.train_from_config")
    plan = catalogue.plan_models(cfg)
    out_dir = check_out_dir(out_dir, overwrite)
    echo(f"loading {cfg.data.train.label}")
    data = landmark_data(cfg.data.train, cfg, echo=echo)
    if cfg.split.kind == "external":
        echo(f"loading {cfg.data.test.label} (external validation)")  # type: ignore[union-attr]
        train, test = data, landmark_data(cfg.data.test, cfg, echo=echo)  # type: ignore[arg-type]
    else:
        if cfg.split.group:
            raise ConfigError("a sequence run splits by patient (one sample per patient); remove split.group")
        tr, te = split_rows(data.cohort, cfg.split, task, cfg.seed)
        train = _subset(data, tr, f"{data.cohort.name} (train, patients at risk at the landmark)")
        test = _subset(data, te, f"{data.cohort.name} (test, patients at risk at the landmark)")
    features = [f.model_dump() for f in cfg.features]
    static_pre = TabularPreprocessor(features=features, impute=cfg.preprocess.impute,
                                     missing_indicators=cfg.preprocess.missing_indicators,
                                     scale=cfg.preprocess.scale, out_of_range="missing").fit(train.cohort.X)
    seq_pre = sequence_preprocessor(cfg).fit(train.observations, train.samples)
    inputs_train = model_inputs(static_pre, seq_pre, train.cohort.X, train.observations, train.samples)
    inputs_test = model_inputs(static_pre, seq_pre, test.cohort.X, test.observations, test.samples)
    n_static = len(static_pre.get_feature_names_out())
    models: dict[str, Any] = {}
    views: dict[str, str] = {}
    shape = inputs_train["sequence"].shape
    kernel_size, layers = _cnn_reach(cfg)
    seen = 1 + 2 * (kernel_size - 1) * (2**layers - 1)
    if "cnn" in plan.deep and seen < seq.bins:
        data.notes.append(f"the cnn's last step sees {seen} of the {seq.bins} bins; raise models.sequence.layers "
                          "or kernel_size to cover the window")
        echo(data.notes[-1])
    names: dict[str, str] = {}  # catalogue name → label in the run (baselines carry their view)
    for name in plan.names:
        if catalogue.spec(name).view == "sequence":
            echo(f"training {name} on {shape[0]} patients, {shape[1]} steps x {shape[2]} channels")
            models[name] = catalogue.build(cfg, name, progress=progress, n_static=n_static,
                                           mask_channels=seq_pre.mask_channels_).fit(inputs_train["sequence"],
                                                                                     train.cohort.y)
            views[name], names[name] = "sequence", name
            continue
        view = BASELINE_VIEWS.get(name, "summary")
        label = f"{name}_{view}"
        echo(f"training baseline {label} on {inputs_train[view].shape[1]} features")
        models[label] = catalogue.build(cfg, name).fit(inputs_train[view], train.cohort.y)
        views[label], names[name] = view, label
    baselines = [names[b] for b in plan.baselines]
    pairs = [(names[a], names[b]) for a, b in plan.comparisons]
    scored = {name: OnView(model, views[name]) for name, model in models.items()}
    ev = score_models(scored, inputs_test, test.cohort.y, comparisons=pairs, echo=echo,  # type: ignore[arg-type]
                      **scoring_settings(cfg))
    results = ev.results
    primary = names[plan.primary]
    design = {"landmark": seq.landmark, "time_unit": task.time_unit, "bins": seq.bins, "step": seq.step,
              "window": seq_pre.window, "max_carry": seq.max_carry, "aggregate": seq.aggregate,
              "variables": [v.name for v in seq.variables], "inputs": views, "notes": data.notes}
    doc = metrics_doc(cfg, train.cohort.describe(task), test.cohort.describe(task), results, ev.comparisons,
                      primary=primary)
    doc = {k: doc[k] for k in list(doc)[:-2]} | {"sequence": design, "models": results,
                                                  "comparisons": ev.comparisons}
    quality = {
        "train": quality_report(train.cohort.frame, features, source=train.cohort.name, id_name=train.cohort.id_name),
        "test": quality_report(test.cohort.frame, features, source=test.cohort.name, id_name=test.cohort.id_name),
        "longitudinal": {"train": _observation_quality(train.observations, train, seq_pre),
                         "test": _observation_quality(test.observations, test, seq_pre),
                         "out_of_range_in_training": seq_pre.range_report_},
    }
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_bundle(tmp / "bundle", config=cfg, preprocessor=static_pre, models=models,
                    sequence_preprocessor=seq_pre, metadata={
                        "primary_model": primary,
                        "comparisons": list(ev.comparisons),
                        "id_column": train.cohort.id_name,
                        "classes": None,
                        "feature_names_out": static_pre.get_feature_names_out().tolist(),
                        "sequence": {"channels": seq_pre.channel_names_, "inputs": views,
                                     "models": [n for n in plan.names if n in plan.deep],
                                     "baselines": baselines,
                                     "last_features": seq_pre.summary_names("last"),
                                     "summary_features": seq_pre.summary_names("summary")},
                        "training_data": train.cohort.describe(task),
                        "validation_data": test.cohort.describe(task),
                        "data_quality": quality,
                        "metrics": results,
                        "intended_use": cfg.description or f"{task.kind} model at a landmark, trained on "
                                                           f"{train.cohort.name}",
                    })
        write_json(tmp / "metrics.json", doc)
        write_json(tmp / "quality.json", quality)
        echo("writing report.html and model_card.md")
        card = card_for(cfg, doc, quality, n_inputs=int(np.prod(shape[1:])) + n_static, deep_model=primary)
        (tmp / "model_card.md").write_text(card)
        write_run_report(tmp / "report.html", cfg=cfg, doc=doc, quality=quality, train_X=train.cohort.X,
                         train_y=train.cohort.y, test_X=test.cohort.X, test_y=test.cohort.y, outputs=ev.outputs,
                         grid=ev.grid, models=models, card=card, classes=None)
    return RunResult(out_dir, doc, out_dir / "bundle", models, static_pre)


def predict_sequence_frame(bundle: Bundle, frame: pd.DataFrame, *, model: str | None = None,
                           at: float | None = None, observations: pd.DataFrame | None = None,
                           allow_out_of_range: bool = False, where: str = "input") -> pd.DataFrame:
    """Score patients with a sequence bundle at the landmark (or at time `at`).

    `frame` has the training layout after harmonization: a visit table (patient id, visit time, the
    variables and the static features), or, for runs with long-format observations, a patient table with
    `observations` in long format. Observations after the prediction time are ignored. Every patient in
    `frame` is scored: the caller decides who is still at risk. A time `at` other than the landmark
    applies the landmark model to another prediction time (horizons count from `at`); it was trained
    at the landmark only.
    """
    if bundle.sequence_preprocessor is None:
        raise ConfigError(f"{bundle.path} is not a sequence bundle; use workflows.predict_frame")
    cfg = bundle.config
    seq = cfg.sequence
    assert seq is not None
    model = bundle.model_named(model)
    if frame.empty:
        raise DataError(f"{where}: the data has no rows")
    id_name = bundle.metadata["id_column"]
    if observations is None and seq.observations is not None:
        raise ConfigError(f"{where}: this bundle reads long-format observations; pass them as `observations`")
    patients, obs = _tables(frame, cfg, id_name, where=where, outcome=[], observations=observations)
    patients = patients.set_index(id_name, drop=False)
    X = type_features(patients, bundle.features, where=where)
    when = seq.landmark if at is None else float(at)
    samples = landmark_samples(X.index, when)
    view = bundle.metadata["sequence"]["inputs"][model]
    inputs = model_inputs(bundle.preprocessor, bundle.sequence_preprocessor, X, obs, samples,
                          out_of_range="missing" if allow_out_of_range else "error")
    est = OnView(bundle.models[model], view)
    task = cfg.task
    out = pd.DataFrame({id_name: X.index.to_numpy(), "model": model, "prediction_time": when})
    return prediction_columns(out, est, inputs, task, horizon_suffix="_after")
