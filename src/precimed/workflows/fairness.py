"""Subgroup metrics with CIs and fairness gaps, by age band, sex and any attribute the config names."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from precimed.cohort import Cohort
from precimed.config import RunConfig, SubgroupConfig
from precimed.errors import ConfigError
from precimed.evaluate import (
    age_bands,
    fairness_gaps,
    subgroup_metrics,
    survival_fairness_gaps,
    survival_metrics,
)
from precimed.evaluate.scoring import metric_function

DEFAULT = ("age", "sex")


def _labels(column: pd.Series, spec: SubgroupConfig) -> np.ndarray:
    """One group label per row (None = unknown)."""
    if spec.labels:
        mapped = column.map(lambda v: spec.labels.get(str(v).removesuffix(".0")) if pd.notna(v) else None)
        return mapped.to_numpy(dtype=object)
    numeric = pd.to_numeric(column, errors="coerce")
    if spec.column.lower() == "age" and numeric.notna().any():
        return np.asarray(age_bands(numeric), dtype=object)
    if numeric.notna().sum() == column.notna().sum() and numeric.nunique() > 10:
        bands = pd.qcut(numeric, 4, duplicates="drop")
        return bands.astype(str).where(bands.notna(), None).to_numpy(dtype=object)
    return column.map(lambda v: None if pd.isna(v) else str(v).removesuffix(".0")).to_numpy(dtype=object)


def subgroup_columns(cfg: RunConfig, cohort: Cohort) -> dict[str, np.ndarray]:
    """The configured attributes (or age and sex when present), as label arrays over the cohort's rows."""
    wanted = cfg.evaluation.subgroups
    specs = [SubgroupConfig(column=c) if isinstance(c, str) else c for c in (wanted or DEFAULT)]
    out = {}
    for spec in specs:
        if spec.column not in cohort.frame.columns:
            if wanted is not None:
                raise ConfigError(f"evaluation.subgroups: column {spec.column!r} is not in {cohort.name}")
            continue
        out[spec.column] = _labels(cohort.frame[spec.column], spec)
    return out


def analyse_subgroups(cfg: RunConfig, cohort: Cohort, outputs: dict[str, dict], grid: Any, *,
                      model: str) -> dict | None:
    """``model``'s metrics per subgroup (CIs) and the gaps between groups (paired CIs, flagged)."""
    groups = subgroup_columns(cfg, cohort)
    if not groups:
        return None
    task, ev, y = cfg.task, cfg.evaluation, cohort.y
    out = outputs[model]
    boot = dict(n_boot=ev.bootstrap, seed=cfg.seed, level=ev.level)
    if task.kind == "survival":
        def fn(i: np.ndarray) -> dict[str, float]:
            m = survival_metrics(y[i, 0], y[i, 1], out["risk"][i], horizons=task.horizons)
            return {"c_harrell": m["c_harrell"], "c_uno": m["c_uno"]}

        events = y[:, 1]
        gaps = survival_fairness_gaps(y[:, 0], y[:, 1], out["risk"], groups, min_size=ev.min_subgroup, **boot)
    else:
        fn = metric_function(task.kind, y, out, threshold=ev.threshold, horizons=task.horizons, grid=grid)
        events = y if task.kind == "binary" else None
        gaps = (fairness_gaps(y, out["proba"], groups, ev.threshold, min_size=ev.min_subgroup, **boot)
                if task.kind == "binary" else [])
    result: dict[str, Any] = subgroup_metrics(groups, fn, len(y), events=events, min_size=ev.min_subgroup, **boot)
    result["gaps"] = gaps
    result["model"] = model
    return result
