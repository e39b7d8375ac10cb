"""Run documents: the one-page HTML report and the model card, from what a train or evaluate run knows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.config import RunConfig
from precimed.evaluate.model_card import model_card
from precimed.evaluate.report import write_report
from precimed.train import catalogue


def histories_of(model: Any) -> list[dict] | None:
    """Loss curves of a deep model (one per ensemble member), or None for a baseline."""
    hist = getattr(model, "histories_", None)
    if not hist:
        return None
    return [{"train_loss": h.train_loss, "val_loss": h.val_loss, "best_epoch": h.best_epoch} for h in hist]


def _settings(cfg: RunConfig, name: str) -> dict:
    """The settings section a model was built from (empty for models without one)."""
    settings = catalogue.settings_for(cfg, name)
    return settings.model_dump(mode="json") if settings is not None else {}


def card_for(cfg: RunConfig, doc: dict, quality: dict, *, n_inputs: int, deep_model: str,
             subgroups: bool = False) -> str:
    """The Markdown model card of a run."""
    return model_card({
        **doc, "description": cfg.description, "features": [f.model_dump() for f in cfg.features],
        "quality": quality, "split": cfg.split.model_dump(), "outcome": cfg.task.model_dump(),
        "preprocess": cfg.preprocess.model_dump(), "training": cfg.training.model_dump(mode="json"),
        "model_details": {deep_model: _settings(cfg, deep_model)}, "n_parameters": n_inputs,
        "deep_model": deep_model, "subgroups": subgroups,
    })


def write_run_report(path: Path, *, cfg: RunConfig, doc: dict, quality: dict, train_X: pd.DataFrame | None,
                     train_y: np.ndarray | None, test_X: pd.DataFrame, test_y: np.ndarray, outputs: dict[str, dict],
                     grid: np.ndarray | None, models: dict[str, Any], card: str, classes: list[str] | None,
                     subgroups: dict | None = None, importance: dict | None = None,
                     importance_plot: str | None = None) -> Path:
    """report.html: cohort, metrics with CIs, curves, calibration, decision curve, training curves, card."""
    survival = cfg.task.kind == "survival"
    histories = {name: h for name, m in models.items() if (h := histories_of(m))}
    return write_report(
        path, title=f"{cfg.name}: evaluation report", task=cfg.task.kind, metrics_doc=doc, quality=quality,
        train_frame=train_X, test_frame=test_X, y_train=train_y, y_test=test_y,
        features=[f.model_dump() for f in cfg.features], outputs=outputs, threshold=cfg.evaluation.threshold,
        horizons=cfg.task.horizons if survival else None, time_unit=cfg.task.time_unit if survival else None,
        surv_grid=grid, histories=histories or None, subgroups=subgroups, importance=importance,
        importance_plot=importance_plot, model_card_md=card, classes=classes, seed=cfg.seed,
    )
