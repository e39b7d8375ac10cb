"""Early-warning monitoring: NEWS2 as data, a vitals stream with alert hysteresis, a simulated ward.

Imports only precimed's layer 0 and numpy/pandas/pyyaml/pydantic; a learned risk arrives as a plain
callable (rows → probabilities), so NEWS2 runs without torch.
"""

from precimed.monitoring.news2 import (
    LEVELS,
    PARAMETERS,
    News2Result,
    News2Table,
    load_news2_bands,
    score_news2,
    score_news2_frame,
)
from precimed.monitoring.stream import FEATURES, Monitor, RecordError, Step, run_monitor
from precimed.monitoring.ward import (
    deterioration_labels,
    evaluate_early_warning,
    simulate_ward,
    window_features,
)

__all__ = [
    "FEATURES",
    "LEVELS",
    "PARAMETERS",
    "Monitor",
    "News2Result",
    "News2Table",
    "RecordError",
    "Step",
    "deterioration_labels",
    "evaluate_early_warning",
    "load_news2_bands",
    "run_monitor",
    "score_news2",
    "score_news2_frame",
    "simulate_ward",
    "window_features",
]
