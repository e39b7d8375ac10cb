"""Explanations: global SHAP importance for the report, and per-patient explanations in the user's units.

Contributions are computed over the user's features (each feature's one-hot and missing-indicator
columns move together), so they refer to "age = 63 years", not to scaled or encoded internals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.atomic import atomic_dir
from precimed.bundle import Bundle, load_bundle
from precimed.config import FeatureConfig, TaskConfig
from precimed.data import read_table
from precimed.errors import ConfigError
from precimed.evaluate import beeswarm_or_bar_png, describe_rows, explain_rows, global_importance, waterfall_png
from precimed.jsonio import write_json
from precimed.workflows._run import check_outputs_apart, typed_patients

SCALES = {"binary": "probability", "survival": "log-hazard", "regression": "value"}


def predict_fn(model: Any, task: TaskConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The 1-D score SHAP explains: probability (binary), log-hazard (survival) or the value (regression)."""
    if task.kind == "binary":
        return lambda X: model.predict_proba(X)[:, 1]
    if task.kind == "survival":
        return model.predict_risk
    if task.kind == "regression":
        return model.predict
    raise ConfigError("explanations are available for binary, survival and regression tasks, not multiclass")


def units_of(features: list[FeatureConfig]) -> dict[str, str]:
    return {f.name: f.unit for f in features if f.unit}


def report_importance(models: dict[str, Any], task: TaskConfig, background: np.ndarray, X: np.ndarray,
                      frame: pd.DataFrame, groups: dict[str, list[int]], *, n: int, seed: int, primary: str
                      ) -> tuple[dict[str, dict[str, float]], str] | None:
    """Mean |SHAP| per user feature for every model on up to `n` evaluation patients, and a beeswarm of the
    primary model; None for multiclass tasks or when n is 0."""
    if task.kind not in SCALES or n == 0:
        return None
    pick = np.sort(np.random.default_rng(seed).choice(len(X), min(n, len(X)), replace=False))
    results = {name: global_importance(predict_fn(m, task), background, X[pick], groups, seed=seed)
               for name, m in models.items()}
    mean_abs = {name: {k: float(v) for k, v in r["mean_abs"].items()} for name, r in results.items()}
    plot = beeswarm_or_bar_png(results, kind="beeswarm", model=primary, frame=frame.iloc[pick],
                               scale=SCALES[task.kind])
    return mean_abs, plot


def explain_frame(bundle: Bundle, frame: pd.DataFrame, *, model: str | None = None, top_k: int = 5,
                  where: str = "input") -> list[dict]:
    """Each patient's prediction and top contributing features (value in original units, direction).

    ``model`` defaults to the bundle's primary model; values outside the plausible range are refused.
    Pure: the loaded bundle is not changed, so threads may share it.
    """
    model = bundle.model_named(model)
    if bundle.image_preprocessor is not None:
        raise ConfigError(f"{bundle.path}: an imaging bundle explains images (Grad-CAM), not table rows; use "
                          "`precimed explain BUNDLE --input IMAGE --output OUT.json --plots FOLDER`")
    if bundle.background is None:
        raise ConfigError(f"{bundle.path}: the bundle has no explanation background; retrain it with this version")
    _, raw = typed_patients(bundle, frame, where=where)
    X = bundle.preprocessor.transform(raw, out_of_range="error")
    task = bundle.task
    rows = explain_rows(predict_fn(bundle.models[model], task), bundle.background, X, raw,
                        bundle.preprocessor.feature_groups_, top_k=top_k, units=units_of(bundle.features),
                        scale=SCALES[task.kind], seed=bundle.config.seed)
    for row, pid in zip(rows, raw.index, strict=True):
        row["patient_id"] = pid.item() if hasattr(pid, "item") else pid
        row["model"] = model
    return rows


def explain_file(bundle_dir: Path, input_path: Path, output: Path, *, plots: Path | None = None,
                 model: str | None = None, top_k: int = 5) -> list[dict]:
    """`precimed explain`: JSON with each patient's explanation; waterfall PNGs per patient with `plots`."""
    check_outputs_apart({"output": output, "plots": plots}, {"bundle": bundle_dir, "input": input_path})
    bundle = load_bundle(bundle_dir)
    if bundle.image_preprocessor is not None:
        from precimed.workflows.image_serving import explain_image_file

        return explain_image_file(bundle_dir, input_path, output, plots=plots, model=model, top_k=top_k)
    rows = explain_frame(bundle, read_table(input_path), model=model, top_k=top_k, where=str(input_path))
    if plots is not None:
        with atomic_dir(Path(plots), overwrite=True) as tmp:
            for row in rows:
                safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(row["patient_id"]))
                (tmp / f"patient_{safe}.png").write_bytes(waterfall_png(row, title=f"patient {row['patient_id']}"))
    write_json(Path(output), rows, indent=1)
    return rows


__all__ = ["describe_rows", "explain_file", "explain_frame", "predict_fn", "report_importance"]
