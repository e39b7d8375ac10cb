"""The walk-forward recipe: train on the early years, then score each later block of years as a deployment would.

``precimed walk-forward CONFIG --time-column year --train-until 1986 --block 2 --out DIR``:

1. the config's models are trained (``train_from_config``, unchanged: its own inner validation split for early
   stopping and search) on the rows with ``time_column <= train_until`` only. The training source gets the extra
   filter ``time_column <= train_until`` and the later rows (``> train_until``) become the run's external test
   source, so the saved bundle's config re-loads exactly its training rows (``precimed drift BUNDLE --reference
   train``) and no later row can reach training;
2. the later rows are cut into blocks of ``block`` consecutive calendar units (a trailing block shorter than
   ``block`` joins the one before, and so does any block under ``min_rows`` rows);
3. every block is scored by every model: C-index with bootstrap CIs (Harrell's; Uno's, which weights by the
   inverse probability of censoring, so the shorter follow-up of later years does not bias it), the calibration
   slope (survival: the coefficient of the model's linear predictor in a Cox model fitted on the block, with its
   Wald CI; binary: logistic recalibration slope with a bootstrap CI) and, at each horizon where the block's labels
   are mature, Kaplan-Meier observed vs mean predicted risk; plus the drift of every feature against the training
   rows (PSI, KS / chi-squared, BH-adjusted), the domain classifier and the shift of the predictions.

Writes ``walkforward.json`` and ``walkforward.html`` beside ``training/`` (the training run folder: bundle,
metrics.json on all later rows pooled, report.html), all in one rename.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.atomic import atomic_dir
from precimed.bundle import load_bundle
from precimed.config import RunConfig, SourceConfig, load_config, parse_config
from precimed.errors import ConfigError, DataError, SchemaError
from precimed.evaluate.drift import (
    PSI_THRESHOLD,
    binary_window_metrics,
    domain_classifier,
    feature_drift,
    prediction_shift,
    survival_window_metrics,
)
from precimed.evaluate.drift_report import walk_forward_sections, walk_forward_table, write_page
from precimed.jsonio import write_json
from precimed.schema import as_numeric
from precimed.workflows._run import Echo, check_out_dir, load_cohort, quiet
from precimed.workflows.training import train_from_config

__all__ = ["time_blocks", "walk_forward", "walk_forward_table"]

MIN_TRAINING_ROWS = 50


def _with_filter(source: SourceConfig, condition: str) -> dict[str, Any]:
    data = source.model_dump(mode="json", exclude_none=True)
    data["filter"] = f"({source.filter}) & ({condition})" if source.filter else condition
    return data


def training_config(cfg: RunConfig, time_column: str, train_until: float) -> RunConfig:
    """The config trained by the walk-forward: the training source limited to ``time_column <= train_until`` and
    the later rows of the same source as the external test source (the config's own test source is not used)."""
    if not time_column.isidentifier():
        raise ConfigError(f"--time-column {time_column!r}: the walk-forward filters on it, so it must be a plain "
                          "column name (letters, digits, underscores); rename it in data.train.rename")
    data = cfg.model_dump(mode="json", exclude_none=True)
    limit = f"{train_until:g}"
    data["name"] = f"{cfg.name}-until-{limit}"
    data["data"] = {"train": _with_filter(cfg.data.train, f"{time_column} <= {limit}"),
                    "test": _with_filter(cfg.data.train, f"{time_column} > {limit}")}
    data["split"] = {"kind": "external"}
    return parse_config(data, source=f"{cfg.name} (walk-forward training config)")


def time_blocks(values: np.ndarray, *, block: int, min_rows: int = 100) -> list[tuple[str, np.ndarray]]:
    """Blocks of ``block`` consecutive calendar units (years) over ``values``: [(label, row positions)].

    Block k holds the values in [start + k * block, start + (k + 1) * block) with start the first value (floored).
    A trailing block that covers fewer than ``block`` units joins the one before (so 1991, 1992, 1993 with blocks of
    2 make one block 1991-1993), and so does any block with fewer than ``min_rows`` rows (the first one joins the
    next).
    """
    if int(block) < 1:
        raise ConfigError(f"--block must be at least 1 (calendar units per block), got {block}")
    v = np.asarray(values, dtype=float)
    start = np.floor(v.min())
    key = np.floor((v - start) / block).astype(np.int64)
    groups = [np.flatnonzero(key == k) for k in np.unique(key)]
    last_end = start + (int(np.unique(key)[-1]) + 1) * block - 1
    if len(groups) > 1 and last_end > np.floor(v.max()):
        tail = groups.pop()
        groups[-1] = np.concatenate([groups[-1], tail])
    merged: list[np.ndarray] = []
    for g in groups:
        if merged and len(merged[-1]) < min_rows:
            merged[-1] = np.concatenate([merged[-1], g])
        else:
            merged.append(g)
    if len(merged) > 1 and len(merged[-1]) < min_rows:
        tail = merged.pop()
        merged[-1] = np.concatenate([merged[-1], tail])

    def label(idx: np.ndarray) -> str:
        lo, hi = v[idx].min(), v[idx].max()
        return f"{lo:g}" if lo == hi else f"{lo:g}–{hi:g}"

    return [(label(np.sort(g)), np.sort(g)) for g in merged]


def _times(frame: pd.DataFrame, column: str, where: str) -> np.ndarray:
    if column not in frame.columns:
        raise SchemaError(f"{where}: --time-column {column!r} not found after harmonization; available: "
                          f"{sorted(map(str, frame.columns))[:25]}", column=column)
    raw = frame[column]
    if not pd.api.types.is_numeric_dtype(raw):
        stamps = pd.to_datetime(raw, errors="coerce", format="mixed")
        if stamps.notna().sum() == raw.notna().sum():
            return (stamps.dt.year + (stamps.dt.dayofyear - 1) / 365.25).to_numpy(dtype=float)
    values = as_numeric(raw, where=where).to_numpy(dtype=float)
    if np.isnan(values).any():
        raise DataError(f"{where}: {int(np.isnan(values).sum())} row(s) have no {column!r}; the walk-forward needs "
                        "every row's calendar time (filter them out in the config)", column=column)
    return values


def walk_forward(config: RunConfig | Path | str, out_dir: Path | str, *, time_column: str, train_until: float,
                 block: int = 1, min_rows: int = 100, n_boot: int | None = None, alpha: float = 0.05,
                 bins: int = 10, min_known: float = 0.8, overwrite: bool = False, progress: bool = False,
                 echo: Echo = quiet) -> dict[str, Any]:
    """Train on ``time_column <= train_until``, score each later block; write the walk-forward folder.

    Returns the walkforward.json document. ``n_boot`` defaults to the config's evaluation.bootstrap.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    config_name = str(config) if not isinstance(config, RunConfig) else cfg.name
    if cfg.images is not None or cfg.sequence is not None or cfg.effects is not None:
        raise ConfigError(f"{config_name}: the walk-forward is for tabular runs (no images, sequence or effects)")
    if cfg.task.kind not in ("survival", "binary"):
        raise ConfigError(f"{config_name}: the walk-forward scores survival and binary tasks, not {cfg.task.kind}")
    out_dir = check_out_dir(out_dir, overwrite)
    n_boot = cfg.evaluation.bootstrap if n_boot is None else int(n_boot)
    if n_boot < 1:
        raise ConfigError("the walk-forward needs bootstrap replicates for its CIs: --bootstrap at least 1")
    level = cfg.evaluation.level

    echo(f"loading {cfg.data.train.label} to find the calendar range of {time_column!r}")
    everything = load_cohort(cfg.data.train, cfg)
    when = _times(everything.frame, time_column, cfg.data.train.label)
    n_early, n_late = int((when <= train_until).sum()), int((when > train_until).sum())
    if n_early < MIN_TRAINING_ROWS:
        raise DataError(f"--train-until {train_until:g}: only {n_early} row(s) with {time_column} <= {train_until:g} "
                        f"(range {when.min():g}–{when.max():g}); at least {MIN_TRAINING_ROWS} are needed to train")
    if n_late == 0:
        raise DataError(f"--train-until {train_until:g}: no row comes later ({time_column} ranges "
                        f"{when.min():g}–{when.max():g}); nothing to walk forward over")
    tcfg = training_config(cfg, time_column, train_until)

    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        echo(f"training on {n_early} rows with {time_column} <= {train_until:g}; {n_late} later rows held out")
        run = train_from_config(tcfg, tmp / "training", progress=progress, echo=echo)
        bundle = load_bundle(run.bundle_path)
        train = load_cohort(tcfg.data.train, tcfg, classes=bundle.metadata.get("classes"))
        later = load_cohort(tcfg.data.test, tcfg, classes=bundle.metadata.get("classes"))  # type: ignore[arg-type]
        overlap = set(map(str, train.X.index)) & set(map(str, later.X.index))
        if overlap:
            raise DataError(f"patient id(s) {sorted(overlap)[:5]} are both in the training years and a later block; "
                            "the walk-forward needs one row per patient", column=train.id_name)
        later_when = _times(later.frame, time_column, "later rows")
        blocks = time_blocks(later_when, block=block, min_rows=min_rows)
        features = bundle.features
        names = [f.name for f in features]
        pre = bundle.preprocessor
        X_train = pre.transform(train.X, out_of_range="missing")
        primary = bundle.primary
        train_pred = _risk_shown(bundle.models[primary], X_train, cfg)

        doc: dict[str, Any] = {
            "config": config_name, "run": cfg.name, "task": cfg.task.kind, "time_column": time_column,
            "train_until": train_until, "block": block, "min_rows": min_rows, "bootstrap": n_boot, "level": level,
            "alpha": alpha, "psi_threshold": PSI_THRESHOLD, "seed": cfg.seed, "models": list(bundle.models),
            "primary_model": primary,
            "training": {"label": f"{time_column} <= {train_until:g}", **train.describe(cfg.task),
                         "range": [float(when[when <= train_until].min()), float(train_until)]},
            "pooled_later": {"metrics": run.metrics["models"], "data": run.metrics["data"]["test"]},
            "blocks": [], "notes": [],
        }
        if cfg.task.kind == "survival":
            doc |= {"horizons": list(cfg.task.horizons), "time_unit": cfg.task.time_unit, "min_known": min_known}
            doc["notes"] += [
                "Later blocks have shorter follow-up (administrative censoring at the data cut). Uno's C weights "
                "comparable pairs by the inverse probability of censoring (truncated at the largest horizon that is "
                "mature in the block), Kaplan-Meier gives the observed risk, and a horizon is scored in a block only "
                f"when at least {100 * min_known:.0f}% of its patients had the event by then or were followed that "
                "long.",
                "Calibration slope: the coefficient of the model's log-hazard (linear predictor) in a Cox model fitted "
                "on the block, with its 95% Wald CI (1 ideal; below 1 the predictions are too extreme).",
            ]
            if cfg.task.censor_at is not None:
                doc["notes"].append(f"Follow-up is censored at {cfg.task.censor_at:g} {cfg.task.time_unit} for every "
                                    "patient, as in the config.")
        if cfg.data.test is not None:
            doc["notes"].append(f"The config's own test source ({cfg.data.test.label}) is not used: the later years "
                                "of the training source are the test data.")
        frames = []
        for label, idx in blocks:
            part = later.subset(idx, f"{later.name} ({label})")
            echo(f"block {label}: {len(part)} rows")
            X = pre.transform(part.X, out_of_range="missing")
            entry: dict[str, Any] = {"label": label, "n": len(part), "range": [float(later_when[idx].min()),
                                                                               float(later_when[idx].max())]}
            if cfg.task.kind == "survival":
                entry["events"] = int(part.y[:, 1].sum())
                entry["median_follow_up"] = float(np.median(part.y[:, 0]))
            else:
                entry["events"] = int(np.nansum(part.y))
            entry["models"] = {name: _score(est, X, part.y, cfg, n_boot=n_boot, level=level, min_known=min_known)
                               for name, est in bundle.models.items()}
            table = feature_drift(train.X[names], part.X[names], features, bins=bins, alpha=alpha)
            dc = domain_classifier(train.X[names], part.X[names], features, seed=cfg.seed, n_boot=n_boot, level=level)
            shift = prediction_shift(train_pred, _risk_shown(bundle.models[primary], X, cfg), bins=bins)
            entry["drift"] = {"features": table.records(), "drifting": table.drifting, "domain_auroc": dc["auroc"],
                              "prediction": {k: v for k, v in shift.items() if k != "quantiles"}}
            doc["blocks"].append(entry)
            frames.append((label, part.X))
        doc["training_ids_in_blocks"] = len(overlap)
        sections = walk_forward_sections(doc, features=features, reference=train.X, blocks=frames)
        write_json(tmp / "walkforward.json", doc)
        write_page(tmp / "walkforward.html", f"{cfg.name}: walk-forward temporal validation",
                   f"trained on {time_column} <= {train_until:g}, scored per block of {block}", sections)
    return doc


def _risk_shown(est: Any, X: np.ndarray, cfg: RunConfig) -> np.ndarray:
    """The output compared across blocks: risk at the last horizon (survival) or the probability (binary)."""
    if cfg.task.kind == "survival":
        return 1.0 - est.predict_survival(X, np.array([max(cfg.task.horizons)], dtype=float))[:, 0]
    return est.predict_proba(X)[:, 1]


def _score(est: Any, X: np.ndarray, y: np.ndarray, cfg: RunConfig, *, n_boot: int, level: float,
           min_known: float) -> dict[str, Any]:
    if cfg.task.kind == "survival":
        horizons = np.asarray(cfg.task.horizons, dtype=float)
        return survival_window_metrics(y[:, 0], y[:, 1], est.predict_risk(X), horizons=horizons,
                                       surv_at_horizons=est.predict_survival(X, horizons), n_boot=n_boot,
                                       seed=cfg.seed, level=level, min_known=min_known)
    return binary_window_metrics(y, est.predict_proba(X)[:, 1], n_boot=n_boot, seed=cfg.seed, level=level,
                                 min_known=0.0)
