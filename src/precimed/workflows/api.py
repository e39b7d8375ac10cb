"""The public Python API, for notebooks and scripts, in the style of scikit-learn and lifelines.

``import precimed`` gives these names (and nothing else): :func:`load_bundle`, :func:`train`,
:func:`evaluate`, :func:`predict`, :func:`explain`, :func:`plan`, :func:`deidentify` and
:class:`~precimed.config.RunConfig`. The CLI and the service call the same recipes.

A session on the Pima cohort (the built-in MASS data; a small run, so it is quick):

>>> import tempfile, precimed
>>> cfg = precimed.RunConfig.model_validate({
...     "name": "pima-notebook", "seed": 0,
...     "data": {"train": {"dataset": "pima_tr"}, "test": {"dataset": "pima_te"}},
...     "task": {"kind": "binary", "target": "type", "positive": "Yes"},
...     "features": [{"name": "glu", "unit": "mg/dL", "range": [40, 250]},
...                  {"name": "bmi", "unit": "kg/m2", "range": [15, 70]},
...                  {"name": "age", "unit": "years", "range": [18, 100]}],
...     "split": {"kind": "external"},
...     "models": {"names": ["resmlp", "logistic"], "resmlp": {"hidden": [16], "ensemble": 1}},
...     "training": {"max_epochs": 30, "progress": False},
...     "evaluation": {"bootstrap": 50, "explain": 0}})
>>> run = precimed.train(cfg, tempfile.mkdtemp() + "/pima")
>>> sorted(run.metrics["models"]), run.metrics["primary_model"]
(['logistic', 'resmlp'], 'resmlp')
>>> list(run.metrics["comparisons"])
['resmlp - logistic']
>>> model = precimed.load_bundle(run.bundle_path)
>>> model
<precimed model 'pima-notebook': binary, primary resmlp, models ['resmlp', 'logistic']>
>>> [f["name"] for f in model.schema]
['glu', 'bmi', 'age']
>>> import pandas as pd
>>> patients = pd.DataFrame({"glu": [95, 180], "bmi": [24.0, 38.5], "age": [30, 58]})
>>> risks = model.predict(patients)
>>> list(risks.columns)
['row_id', 'model', 'probability']
>>> bool(risks["probability"].iloc[1] > risks["probability"].iloc[0])
True
>>> model.predict(patients.assign(glu=[95, 900]))
Traceback (most recent call last):
...
precimed.errors.ValueRangeError: ...glu must lie in [40.0, 250.0] mg/dL; ... [900.0] for patient id(s) [2]...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from precimed.bundle import Bundle
from precimed.bundle import load_bundle as _load_verified
from precimed.config import RunConfig, load_config, parse_config
from precimed.data import read_table
from precimed.workflows._run import Echo, RunResult, quiet
from precimed.workflows.evaluating import evaluate_bundle
from precimed.workflows.explaining import explain_frame
from precimed.workflows.planning import plan
from precimed.workflows.predicting import predict_frame
from precimed.workflows.privacy import deidentify
from precimed.workflows.sequence import train_sequence_from_config
from precimed.workflows.training import train_from_config


class LoadedBundle:
    """A verified model bundle, ready to score patients. Prediction never changes it (thread-safe).

    ``schema`` lists the features a patient needs (name, kind, unit, plausible range, categories);
    ``primary`` the model used unless another is named; ``models`` every model it holds.
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    @property
    def path(self) -> Path:
        return self.bundle.path

    @property
    def primary(self) -> str:
        return self.bundle.primary

    @property
    def models(self) -> list[str]:
        return list(self.bundle.models)

    @property
    def task(self) -> str:
        return self.bundle.task.kind

    @property
    def metrics(self) -> dict:
        """Each model's validation metrics with CIs, as recorded at training time."""
        return self.bundle.metadata.get("metrics", {})

    @property
    def schema(self) -> list[dict[str, Any]]:
        """The input features: name, kind, unit, plausible range, categories, description."""
        return [{"name": f.name, "kind": f.kind, "unit": f.unit, "range": list(f.range) if f.range else None,
                 "categories": f.categories, "description": f.description} for f in self.bundle.features]

    def predict(self, frame: pd.DataFrame, *, model: str | None = None,
                allow_out_of_range: bool = False) -> pd.DataFrame:
        """One row of predictions per patient (see :func:`precimed.workflows.predicting.predict_frame`)."""
        return predict_frame(self.bundle, frame, model=model, allow_out_of_range=allow_out_of_range)

    def explain(self, frame: pd.DataFrame, *, model: str | None = None, top_k: int = 5) -> list[dict]:
        """Each patient's prediction and top contributing features, in the user's units (SHAP)."""
        return explain_frame(self.bundle, frame, model=model, top_k=top_k)

    def __repr__(self) -> str:
        return (f"<precimed model {self.bundle.metadata['name']!r}: {self.task}, primary {self.primary}, "
                f"models {self.models}>")


def load_bundle(path: Path | str) -> LoadedBundle:
    """Load and verify a bundle folder (refused if any file was altered)."""
    return LoadedBundle(_load_verified(path))


def _as_bundle(bundle: LoadedBundle | Bundle | Path | str) -> Bundle:
    if isinstance(bundle, LoadedBundle):
        return bundle.bundle
    if isinstance(bundle, Bundle):
        return bundle
    return _load_verified(bundle)


def _as_frame(data: pd.DataFrame | Path | str) -> tuple[pd.DataFrame, str]:
    if isinstance(data, pd.DataFrame):
        return data, "input"
    return read_table(Path(data)), str(data)


def _as_config(config: RunConfig | dict | Path | str) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


def train(config: RunConfig | dict | Path | str, out: Path | str, *, overwrite: bool = False,
          progress: bool = True, echo: Echo = quiet) -> RunResult:
    """Train the configured models (tabular; with ``sequence:`` patient histories; with ``images:`` image slices),
    validate, write the run.

    ``config`` is a :class:`RunConfig`, a dict of the same settings, or a YAML file. Returns the run's
    folder, metrics document (``.metrics``) and bundle path (``.bundle_path``).
    """
    cfg = _as_config(config)
    if cfg.images is not None:
        from precimed.workflows.imaging import train_imaging_from_config

        return train_imaging_from_config(cfg, out, overwrite=overwrite, progress=progress, echo=echo)
    recipe = train_sequence_from_config if cfg.sequence is not None else train_from_config
    return recipe(cfg, out, overwrite=overwrite, progress=progress, echo=echo)


def evaluate(bundle: Path | str, data: str, out: Path | str, *, overwrite: bool = False,
             echo: Echo = quiet) -> RunResult:
    """Validate a bundle's models on another cohort (a built-in name, a file or a YAML source spec)."""
    return evaluate_bundle(bundle, data, out, overwrite=overwrite, echo=echo)


def predict(bundle: LoadedBundle | Path | str, data: pd.DataFrame | Path | str, *, model: str | None = None,
            allow_out_of_range: bool = False) -> pd.DataFrame:
    """Score patients (a DataFrame or a CSV/Parquet/JSON file) with a bundle's primary (or named) model."""
    frame, where = _as_frame(data)
    return predict_frame(_as_bundle(bundle), frame, model=model, allow_out_of_range=allow_out_of_range, where=where)


def explain(bundle: LoadedBundle | Path | str, data: pd.DataFrame | Path | str, *, model: str | None = None,
            top_k: int = 5) -> list[dict]:
    """Each patient's prediction and the features that drove it (SHAP over the user's features)."""
    frame, where = _as_frame(data)
    return explain_frame(_as_bundle(bundle), frame, model=model, top_k=top_k, where=where)


__all__ = ["LoadedBundle", "RunConfig", "deidentify", "evaluate", "explain", "load_bundle", "plan", "predict",
           "train"]
