"""Evaluation: point metrics, survival metrics and bootstrap confidence intervals.

Arrays and callables in, plain floats out. Imports only numpy/scipy-level libraries and
``precimed.errors``; never torch.
"""

from .bootstrap import bootstrap_ci
from .metrics import binary_metrics, multiclass_metrics, regression_metrics, undefined_as_nan
from .survival import kaplan_meier, survival_metrics

__all__ = [
    "binary_metrics",
    "bootstrap_ci",
    "kaplan_meier",
    "multiclass_metrics",
    "regression_metrics",
    "survival_metrics",
    "undefined_as_nan",
]
