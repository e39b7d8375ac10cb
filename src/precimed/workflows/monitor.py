"""Monitoring recipes: replay or stream vital signs through NEWS2 (and a learned risk), simulate a ward,
and compare the learned early-warning model with NEWS2 on it."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.atomic import atomic_dir
from precimed.config import parse_config
from precimed.csvio import csv_bytes
from precimed.errors import ConfigError
from precimed.jsonio import dumps_lines, write_json
from precimed.monitoring import (
    FEATURES,
    deterioration_labels,
    evaluate_early_warning,
    run_monitor,
    score_news2_frame,
    simulate_ward,
    window_features,
)
from precimed.workflows._run import Echo, check_out_dir, quiet

LABEL = "event_within_12h"
MAX_PATIENTS = 100_000  # patients a replayed or live stream follows at once (about 25 MB of NEWS2 state)


def bundle_risk_fn(bundle_dir: Path, model: str | None = None) -> Any:
    """A callable (window-feature rows → probabilities) from a binary bundle trained on monitor features."""
    # the modelling recipes (torch) are imported only when a model is used: NEWS2 alone starts in well under a
    # second (start-up time, not an import cycle)
    from precimed.bundle import load_bundle
    from precimed.workflows.predicting import predict_frame

    bundle = load_bundle(bundle_dir)
    names = {f.name for f in bundle.features}
    if bundle.task.kind != "binary" or not names <= set(FEATURES):
        raise ConfigError(f"{bundle_dir}: --bundle needs a binary model trained on monitor window features "
                          f"(e.g. from `precimed ward compare`); its features are {sorted(names)[:8]}")

    def risk(rows: pd.DataFrame) -> np.ndarray:
        return predict_frame(bundle, rows, model=model, allow_out_of_range=True,
                             where="monitor window")["probability"].to_numpy()

    return risk


def monitor_stream(input: str, output: Path, *, scores: Path | None = None, bundle_dir: Path | None = None,
                   model: str | None = None, risk_threshold: float = 0.5, alert_level: str = "low-medium",
                   clear_after: int = 2, window_hours: float = 24, max_patients: int | None = MAX_PATIENTS) -> dict:
    """Replay a vitals file (JSON lines) or stdin ('-') through the monitor; alerts as JSON lines.

    At most ``max_patients`` patients are followed at once (the least recently seen is forgotten first), and a
    ``{"patient_id": ..., "event": "discharge"}`` record drops a patient's state, so a stream that runs for
    months keeps bounded memory.

    Alerts are written and flushed one by one (not atomically) so that, if a later record is bad, every
    alert already raised stays on disk as a valid line.
    """
    if str(input) != "-" and Path(input).resolve() in {Path(output).resolve(),
                                                        Path(scores).resolve() if scores else None}:
        raise ConfigError(f"{output}: the output would overwrite the input {input}")
    risk_fn = bundle_risk_fn(bundle_dir, model) if bundle_dir is not None else None
    with ExitStack() as stack:
        try:
            src = sys.stdin if str(input) == "-" else stack.enter_context(open(input, encoding="utf-8"))
            alerts = stack.enter_context(open(output, "w", encoding="utf-8"))
            sc = stack.enter_context(open(scores, "w", encoding="utf-8")) if scores else None
        except OSError as exc:
            raise ConfigError(f"cannot open {exc.filename}: {exc.strerror}") from None
        # a replayed file scores the learned risk in batches (identical output); a live stream one by one
        batch = 512 if risk_fn is not None and str(input) != "-" else 1
        return run_monitor(src, alerts, sc, risk_fn=risk_fn, risk_threshold=risk_threshold, alert_level=alert_level,
                           clear_after=clear_after, window=timedelta(hours=window_hours), batch_size=batch,
                           max_patients=max_patients)


def _ward_tables(n_patients: int, days: float, seed: int) -> dict[str, pd.DataFrame]:
    obs, events = simulate_ward(n_patients, days, seed)
    features = window_features(obs)
    features.insert(0, "time", obs["time"].astype(str).to_numpy())
    features.insert(0, "patient_id", obs["patient_id"].to_numpy())
    features["obs_id"] = np.arange(1, len(obs) + 1)
    features[LABEL] = deterioration_labels(obs, events).astype(int).to_numpy()
    return {"observations": obs, "events": events, "features": features}


def _write_ward(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    obs = tables["observations"].copy()
    obs["time"] = obs["time"].map(lambda t: t.isoformat())
    records = obs.astype(object).where(obs.notna(), None).to_dict(orient="records")
    (folder / "observations.jsonl").write_text(dumps_lines(records))
    (folder / "events.csv").write_bytes(csv_bytes(tables["events"]))
    (folder / "features.csv").write_bytes(csv_bytes(tables["features"]))


def simulate_ward_files(out_dir: Path, *, n_patients: int = 200, days: float = 7, seed: int = 0,
                        overwrite: bool = False) -> dict:
    """Write a simulated ward: observations.jsonl (monitor input), events.csv, features.csv (window features
    and the 12-hour deterioration label per observation)."""
    tables = _ward_tables(n_patients, days, seed)
    with atomic_dir(Path(out_dir), overwrite=overwrite) as tmp:
        _write_ward(tmp, tables)
    return {"observations": len(tables["observations"]), "events": len(tables["events"]),
            "patients": n_patients, "days": days, "seed": seed}


def ward_config(train_csv: Path, test_csv: Path, *, bootstrap: int, seed: int) -> dict:
    """The run config of the learned early-warning model: an MLP on the monitor's window features."""
    return {
        "name": "ward-early-warning",
        "description": "Deterioration (ICU transfer or arrest) within 12 h on a SIMULATED ward; not for clinical use.",
        "seed": seed,
        "patient_id": "obs_id",
        "data": {"train": {"path": str(train_csv)}, "test": {"path": str(test_csv)}},
        "task": {"kind": "binary", "target": LABEL, "positive": 1},
        "features": [{"name": f, "kind": "numeric"} for f in FEATURES],
        "split": {"kind": "external"},
        "models": {"mlp": {"hidden": [64, 32], "dropout": 0.1, "ensemble": 3}, "baselines": ["logistic", "gbm"]},
        "training": {"lr": 0.001, "weight_decay": 0.001, "batch_size": 256, "max_epochs": 100, "patience": 10,
                     "class_weight": "none"},
        "evaluation": {"bootstrap": bootstrap},
    }


def ward_comparison(out_dir: Path, *, n_patients: int = 500, days: float = 7, seeds: tuple[int, int] = (1, 2),
                    bootstrap: int = 200, overwrite: bool = False, progress: bool = True,
                    echo: Echo = quiet) -> dict:
    """Train the learned early-warning model on one simulated ward and compare it with NEWS2 on another.

    The model's alert threshold is set on the training ward to raise as many observations as NEWS2 ≥ 5
    does there, so the two are compared at a matched alert burden.
    """
    from precimed.bundle import load_bundle  # the modelling recipes, only when a model is trained (see above)
    from precimed.workflows.predicting import predict_frame
    from precimed.workflows.training import train_from_config

    out_dir = check_out_dir(out_dir, overwrite)
    echo(f"simulating two wards of {n_patients} patients × {days:g} days (seeds {seeds[0]} and {seeds[1]})")
    train, test = _ward_tables(n_patients, days, seeds[0]), _ward_tables(n_patients, days, seeds[1])
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        _write_ward(tmp / "train_ward", train)
        _write_ward(tmp / "test_ward", test)
        cfg = parse_config(ward_config(tmp / "train_ward" / "features.csv", tmp / "test_ward" / "features.csv",
                                       bootstrap=bootstrap, seed=seeds[0]))
        run = train_from_config(cfg, tmp / "model", progress=progress, echo=echo)
        bundle = load_bundle(run.bundle_path)  # type: ignore[arg-type]

        def prob(features: pd.DataFrame) -> np.ndarray:
            scored = predict_frame(bundle, features.drop(columns=[LABEL]), allow_out_of_range=True)
            return scored["probability"].to_numpy()

        news2_train = score_news2_frame(train["observations"])["news2"].to_numpy(dtype=float)
        rate = float(np.mean(news2_train >= 5))
        threshold = float(np.quantile(prob(train["features"]), 1 - rate))
        news2_test = score_news2_frame(test["observations"])["news2"].to_numpy(dtype=float)
        obs, events = test["observations"], test["events"]
        rows = {
            "NEWS2 total >= 5": evaluate_early_warning(obs, events, news2_test, 5),
            "NEWS2 total >= 7": evaluate_early_warning(obs, events, news2_test, 7),
            f"mlp risk >= {threshold:.3f} (alert rate matched to NEWS2 >= 5)":
                evaluate_early_warning(obs, events, prob(test["features"]), threshold),
        }
        result = {"train_ward_seed": seeds[0], "test_ward_seed": seeds[1], "patients": n_patients, "days": days,
                  "threshold": threshold, "comparison": rows, "metrics": run.metrics}
        write_json(tmp / "comparison.json", result)
    return result
