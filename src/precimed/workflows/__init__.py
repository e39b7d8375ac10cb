"""The recipes both entry points call (layer 6): train, evaluate, predict, demo, and later explain,
plan, effects, monitor and de-identify. Each recipe lives in its own module; this package re-exports them.
"""

from precimed.workflows.modeling import (
    BASELINE_BUILDERS,
    DEEP_MODEL,
    RunResult,
    build_mlp,
    demo,
    demo_config_path,
    evaluate_bundle,
    evaluate_models,
    load_cohort,
    load_source,
    metric_function,
    model_outputs,
    predict_file,
    predict_frame,
    resolve_source,
    survival_grid,
    train_from_config,
    write_table,
)
from precimed.workflows.monitor import monitor_stream, simulate_ward_files, ward_comparison

__all__ = [
    "monitor_stream",
    "simulate_ward_files",
    "ward_comparison",
    "BASELINE_BUILDERS",
    "DEEP_MODEL",
    "RunResult",
    "build_mlp",
    "demo",
    "demo_config_path",
    "evaluate_bundle",
    "evaluate_models",
    "load_cohort",
    "load_source",
    "metric_function",
    "model_outputs",
    "predict_file",
    "predict_frame",
    "resolve_source",
    "survival_grid",
    "train_from_config",
    "write_table",
]
