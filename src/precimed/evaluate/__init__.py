"""Evaluation: point metrics, survival metrics, bootstrap confidence intervals, subgroups and explanations.

Arrays and callables in, plain floats (and PNG plots) out. Imports only numpy/scipy-level libraries,
``precimed.errors`` and ``precimed.schema``; shap and matplotlib are imported when first used;
never torch (models arrive as plain callables).
"""

from .bootstrap import bootstrap_ci
from .explain import (
    background_sample,
    beeswarm_or_bar_png,
    describe_rows,
    explain_rows,
    global_importance,
    waterfall_png,
)
from .metrics import binary_metrics, multiclass_metrics, regression_metrics, undefined_as_nan
from .subgroups import age_bands, fairness_gaps, sex_groups, subgroup_metrics, survival_fairness_gaps
from .survival import kaplan_meier, survival_metrics

__all__ = [
    "age_bands",
    "background_sample",
    "beeswarm_or_bar_png",
    "binary_metrics",
    "bootstrap_ci",
    "describe_rows",
    "explain_rows",
    "fairness_gaps",
    "global_importance",
    "kaplan_meier",
    "multiclass_metrics",
    "regression_metrics",
    "sex_groups",
    "subgroup_metrics",
    "survival_fairness_gaps",
    "survival_metrics",
    "undefined_as_nan",
    "waterfall_png",
]
