"""Run plumbing shared by the recipes (private): sources, cohorts, output folders, tables, run documents.

Recipes import from here, never from each other's internals.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from precimed.atomic import atomic_write_bytes
from precimed.cohort import ROW_ID, Cohort, build_cohort, type_features
from precimed.config import RunConfig, SourceConfig
from precimed.csvio import csv_bytes
from precimed.data import dataset_info, list_datasets, load_dataset, read_table
from precimed.data.image_sets import image_set_available, list_image_sets  # noqa: F401 (re-exported for the CLI)
from precimed.errors import ConfigError, DataError
from precimed.jsonio import dumps, dumps_lines
from precimed.limits import read_user_text

if TYPE_CHECKING:  # annotations only: the monitor and plan recipes import this module without torch or scikit-learn
    from precimed.bundle import Bundle
    from precimed.preprocess import TabularPreprocessor

Echo = Callable[[str], None]
TABLE_FORMATS = (".csv", ".parquet", ".json", ".jsonl")


def quiet(_: str) -> None:
    """An echo that says nothing (the default for library calls)."""
    return None


@dataclass
class RunResult:
    """What a run produced: its folder, its metrics document and (training runs) the fitted objects."""

    out_dir: Path
    metrics: dict
    bundle_path: Path | None = None
    models: dict[str, Any] | None = None
    preprocessor: TabularPreprocessor | None = None


def check_out_dir(out_dir: Path | str, overwrite: bool) -> Path:
    """Refuse to replace an existing run folder unless asked to."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"{out_dir} already exists; choose another --out or pass --overwrite")
    return out_dir


# ----- data ----------------------------------------------------------------------------------------
def load_source(source: SourceConfig) -> tuple[pd.DataFrame, str | None]:
    """The raw table of a source and its default patient id column (None for files)."""
    if source.dataset is not None:
        return load_dataset(source.dataset), dataset_info(source.dataset).id_column
    return read_table(source.path), None  # type: ignore[arg-type]


def _with_id(raw: pd.DataFrame, cfg_id: str | None, default: str | None) -> tuple[pd.DataFrame, str]:
    id_name = cfg_id or default
    if id_name is None and ROW_ID in raw.columns:  # a file precimed wrote (predictions, a partition) keeps its ids
        return raw, ROW_ID
    if id_name is None:
        raw = raw.copy()
        raw.insert(0, ROW_ID, np.arange(1, len(raw) + 1))
        id_name = ROW_ID
    return raw, id_name


def load_cohort(source: SourceConfig, cfg: RunConfig, *, classes: list[str] | None = None,
                with_labels: bool = True) -> Cohort:
    """Read, harmonize and type a source as the run config says."""
    raw, default_id = load_source(source)
    raw, id_name = _with_id(raw, cfg.patient_id, default_id)
    return build_cohort(raw, source, cfg, id_name=id_name, with_labels=with_labels, classes=classes)


def resolve_source(data: str, cfg: RunConfig) -> SourceConfig:
    """A dataset name, a file, or a YAML source spec; reuse the run's harmonization for a source it named."""
    path = Path(data)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        try:
            return SourceConfig.model_validate(yaml.safe_load(read_user_text(path)))
        except (ValidationError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: not a valid source spec ({exc})") from None
    for known in (cfg.data.test, cfg.data.train):
        if known is not None and (known.dataset == data or (known.path is not None and known.path == path.resolve())):
            return known
    if path.exists():
        return SourceConfig(path=path.resolve())
    if data in [d.name for d in list_datasets()]:
        return SourceConfig(dataset=data)
    dataset_info(data)  # raises ConfigError with the closest names
    raise ConfigError(f"{data!r} is neither a file nor a built-in dataset")


def typed_patients(bundle: Bundle, frame: pd.DataFrame, *, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """New patients indexed by the bundle's id column (row numbers when absent) and their typed features."""
    if frame.empty:
        raise DataError(f"{where}: the data has no rows")
    id_name = bundle.metadata["id_column"]
    if id_name not in frame.columns:
        frame = frame.copy()
        frame.insert(0, id_name, np.arange(1, len(frame) + 1))
    frame = frame.set_index(id_name, drop=False)
    return frame, type_features(frame, bundle.features, where=where)


# ----- outputs --------------------------------------------------------------------------------------
PathArgs = Mapping[str, Path | str | None]


def _same_file(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return a.exists() and b.exists() and a.samefile(b)  # hard links and bind mounts too
    except OSError:
        return False


def _clash(out_name: str, out: Path, in_name: str, given: Path) -> str | None:
    """Why writing ``out`` would destroy or corrupt ``given`` (None when it cannot)."""
    if _same_file(out, given):
        return f"{out_name} {out} is the same file as {in_name}"
    if out in given.parents:
        return f"{out_name} {out} is a folder that holds {in_name} {given}; replacing it would delete that input"
    if given in out.parents:
        return f"{out_name} {out} is inside {in_name} {given}; writing there would change that input"
    return None


def check_outputs_apart(outputs: PathArgs, inputs: PathArgs) -> None:
    """Refuse, before any work, an output (file or folder) that is an input, the key file or the policy, holds
    one, or sits inside one; and two outputs that are the same path. Names are the options as the user typed
    them ("--output"); None values are options not given."""
    given = {name: Path(p).expanduser().resolve() for name, p in inputs.items() if p is not None and str(p) != "-"}
    written = {name: Path(p).expanduser().resolve() for name, p in outputs.items() if p is not None}
    seen: dict[Path, str] = {}
    for out_name, out in written.items():
        if out in seen:
            raise ConfigError(f"{out_name} and {seen[out]} are the same path {out}; give each output its own path")
        seen[out] = out_name
        for in_name, path in given.items():
            reason = _clash(out_name, out, in_name, path)
            if reason is not None:
                raise ConfigError(f"{reason}; an output never overwrites an input: choose another {out_name}")


def check_table_path(path: Path | str) -> Path:
    """An output table's path, refused early (before any work) when its format is unknown."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_FORMATS:
        raise ConfigError(f"{path}: unknown output format {path.suffix.lower()!r}; use .csv, .parquet, .json or .jsonl")
    return path


def write_table(frame: pd.DataFrame, path: Path | str) -> None:
    """Write CSV, Parquet or JSON records by suffix, atomically (JSON has null for missing, never NaN)."""
    path = check_table_path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        data = csv_bytes(frame)
    elif suffix == ".parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        data = buf.getvalue()
    elif suffix == ".json":
        data = dumps(frame.to_dict(orient="records"), indent=1).encode()
    else:
        data = dumps_lines(frame.to_dict(orient="records")).encode()
    atomic_write_bytes(path, data)


def prediction_columns(out: pd.DataFrame, est: Any, inputs: Any, task: Any, *, classes: list[Any] | None = None,
                       horizon_suffix: str = "") -> pd.DataFrame:
    """Add a model's outputs to `out` as the prediction table's columns: `probability` (binary), `p_<class>`
    (multiclass), `prediction` (regression), or `risk_score` and `event_probability_<h><unit><suffix>` for each
    horizon (survival). One place for the column names that predict and sequence prediction files share."""
    if task.kind == "binary":
        out["probability"] = est.predict_proba(inputs)[:, 1]
    elif task.kind == "multiclass":
        proba = est.predict_proba(inputs)
        for i, c in enumerate(classes or []):
            out[f"p_{c}"] = proba[:, i]
    elif task.kind == "regression":
        out["prediction"] = est.predict(inputs)
    else:
        out["risk_score"] = est.predict_risk(inputs)
        surv = est.predict_survival(inputs, np.asarray(task.horizons))
        for j, h in enumerate(task.horizons):
            out[f"event_probability_{h:g}{task.time_unit}{horizon_suffix}"] = 1.0 - surv[:, j]
    return out


def metrics_doc(cfg: RunConfig, train: dict, test: dict, models: dict[str, dict], comparisons: dict[str, dict],
                *, primary: str) -> dict:
    """The metrics.json document of a run: data described, bootstrap settings, metrics and comparisons."""
    return {
        "task": cfg.task.kind,
        "run": cfg.name,
        "primary_model": primary,
        "data": {"train": train, "test": test},
        "bootstrap": {"replicates": cfg.evaluation.bootstrap, "level": cfg.evaluation.level, "seed": cfg.seed},
        **({"horizons": cfg.task.horizons, "time_unit": cfg.task.time_unit} if cfg.task.kind == "survival" else {}),
        **({"threshold": cfg.evaluation.threshold} if cfg.task.kind == "binary" else {}),
        "models": models,
        "comparisons": comparisons,
    }


def scoring_settings(cfg: RunConfig) -> dict[str, Any]:
    """The run config's evaluation settings as keyword arguments of ``evaluate.scoring.score_models``."""
    ev, task = cfg.evaluation, cfg.task
    return dict(task=task.kind, horizons=task.horizons, time_unit=task.time_unit, n_boot=ev.bootstrap,
                seed=cfg.seed, level=ev.level, threshold=ev.threshold)
