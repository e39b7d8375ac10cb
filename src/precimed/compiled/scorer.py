"""A tabular bundle's scoring path, compiled: patients in, the prediction table's columns out, in arrays.

``Scorer.score_columns`` takes one array per feature (a frame's columns, a Parquet partition) and
``Scorer.score_records`` one mapping per patient (a service request); both return the task's output columns in
the order ``precimed.workflows.predicting.predict_frame`` writes them. Values are checked as the reference
path checks them; whatever the compiled checks cannot vouch for raises ``Declined`` and the caller runs the
reference path, so messages for bad input are the reference path's own and outputs never differ by more than
float32 rounding (``tests/test_compiled.py`` holds every model kind to 1e-6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from precimed.compiled.models import CompiledModel, compile_model, output_names
from precimed.compiled.preprocessing import CompiledPreprocessor, Declined
from precimed.preprocess.tabular import TabularPreprocessor

__all__ = ["Declined", "Scorer"]


class Scorer:
    """The compiled preprocessor and every model the bundle holds that has a compiled form.

    ``models`` maps names to ``CompiledModel``; a model without a compiled form (none today among the tabular
    models) is absent and ``Declined`` sends its requests to the reference path. Immutable after construction:
    one scorer serves any number of threads.
    """

    def __init__(self, preprocessor: TabularPreprocessor, models: Mapping[str, Any], *, task: str,
                 classes: Sequence[Any] | None, horizons: Sequence[float], time_unit: str) -> None:
        self.preprocessor = CompiledPreprocessor(preprocessor)
        self.task = task
        self.names = output_names(task, classes=classes, horizons=horizons, time_unit=time_unit)
        compiled = {name: compile_model(est, task, horizons=horizons, n_columns=self.preprocessor.n_out)
                    for name, est in models.items()}
        self.models: dict[str, CompiledModel] = {k: v for k, v in compiled.items() if v is not None}

    @property
    def features(self) -> list[str]:
        return self.preprocessor.names

    def _model(self, name: str) -> CompiledModel:
        model = self.models.get(name)
        if model is None:
            raise Declined(f"model {name!r} has no compiled form")
        return model

    def encode_columns(self, columns: Mapping[str, Any], n: int, *, allow_out_of_range: bool = False) -> np.ndarray:
        """The encoded float32 matrix of ``n`` patients given one array per feature."""
        policy = "missing" if allow_out_of_range else "error"
        return self.preprocessor.finish(self.preprocessor.raw_columns(columns, n, out_of_range=policy))

    def encode_records(self, records: Sequence[Mapping[str, Any]], *, allow_out_of_range: bool = False) -> np.ndarray:
        policy = "missing" if allow_out_of_range else "error"
        return self.preprocessor.finish(self.preprocessor.raw_records(records, out_of_range=policy))

    def score_columns(self, columns: Mapping[str, Any], n: int, *, model: str,
                      allow_out_of_range: bool = False) -> dict[str, np.ndarray]:
        """Output columns (name -> array of length ``n``) from one array or Series per feature."""
        compiled = self._model(model)
        X = self.encode_columns(columns, n, allow_out_of_range=allow_out_of_range)
        return dict(zip(self.names, compiled.outputs(X), strict=True))

    def score_frame(self, frame: pd.DataFrame, *, model: str, allow_out_of_range: bool = False
                    ) -> dict[str, np.ndarray]:
        """Output columns for a frame holding every feature once (``Declined`` when it does not: the reference
        path names what is missing or repeated)."""
        if frame.empty:
            raise Declined("no rows")
        columns = frame.columns
        if not all(name in columns for name in self.features) or columns[columns.duplicated()].isin(
                self.features).any():
            raise Declined("a feature column is missing or repeated")
        return self.score_columns({name: _plain(frame[name]) for name in self.features}, len(frame), model=model,
                                  allow_out_of_range=allow_out_of_range)

    def score_records(self, records: Sequence[Mapping[str, Any]], *, model: str,
                      allow_out_of_range: bool = False) -> list[dict[str, float]]:
        """One dict of outputs per patient (plain floats), from one mapping of feature values per patient."""
        if not records:
            raise Declined("no patients")
        compiled = self._model(model)
        X = self.encode_records(records, allow_out_of_range=allow_out_of_range)
        columns = [np.asarray(c).tolist() for c in compiled.outputs(X)]
        return [dict(zip(self.names, values, strict=True)) for values in zip(*columns, strict=True)]


def _plain(series: pd.Series) -> Any:
    """A column as numpy, nullable numbers (Int64, Float64, boolean with NA) as float64 with NaN for NA."""
    dtype = series.dtype
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_numeric_dtype(dtype) \
            and not pd.api.types.is_bool_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy()
