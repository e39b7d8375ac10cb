"""The recipes every entry point calls (layer 6), one module per recipe.

training (train, demo), evaluating, predicting, explaining, planning, effects, monitor, sequence,
privacy; ``_run`` holds the plumbing they share. The names below are re-exported lazily: importing
``precimed.workflows.planning`` (a plan without a model) does not pay for torch, LightGBM or
scikit-learn, which the modelling recipes import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunResult": "_run",
    "load_cohort": "_run",
    "list_datasets": "_run",
    "list_image_sets": "_run",
    "image_set_available": "_run",
    "load_source": "_run",
    "resolve_source": "_run",
    "write_table": "_run",
    "train_from_config": "training",
    "demo": "training",
    "demo_config_path": "training",
    "evaluate_bundle": "evaluating",
    "predict_frame": "predicting",
    "predict_file": "predicting",
    "explain_frame": "explaining",
    "explain_file": "explaining",
    "plan_patient": "planning",
    "write_plan": "planning",
    "monitor_stream": "monitor",
    "simulate_ward_files": "monitor",
    "ward_comparison": "monitor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'precimed.workflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"precimed.workflows.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
