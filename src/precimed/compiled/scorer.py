"""A tabular bundle's scoring path, compiled: patients in, the prediction table's columns out, in arrays.

``Scorer.score_columns`` takes one array per feature (a frame's columns, a Parquet partition) and
``Scorer.score_records`` one mapping per patient (a service request); both return the task's output columns in
the order ``precimed.workflows.predicting.predict_frame`` writes them. Values are checked as the reference
path checks them; whatever the compiled checks cannot vouch for raises ``Declined`` and the caller runs the
reference path, so messages for bad input are the reference path's own and outputs never differ by more than
float32 rounding (``tests/test_compiled.py`` holds every model kind to 1e-6). A model with fitted uncertainty
(``uncertainty.json``) gets its interval columns added by the same lookup the reference path uses
(``precimed.evaluate.conformal.Uncertainty.apply``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from precimed.compiled.models import CompiledModel, compile_model, output_names
from precimed.compiled.onnx_graph import check_graph
from precimed.compiled.preprocessing import CompiledPreprocessor, Declined
from precimed.errors import ConfigError
from precimed.evaluate.conformal import Uncertainty
from precimed.preprocess.tabular import TabularPreprocessor

__all__ = ["CHUNK", "ONNX_ROWS", "RUNTIMES", "Declined", "Scorer"]

#: rows per chunk in bulk scoring (benchmarks/inference_speed.py measured 1-4 k as the fast range)
CHUNK = 2048
#: from this many rows ``auto`` runs a net's ONNX graph (when present): below it numpy's lower overhead wins
ONNX_ROWS = 4 * CHUNK
RUNTIMES = ("auto", "numpy", "onnx")
#: up to this many records, uncertainty columns are added row by row in plain Python (numpy's per-call cost wins
#: only for larger requests)
FEW = 8


class Scorer:
    """The compiled preprocessor and every model the bundle holds that has a compiled form.

    ``models`` maps names to ``CompiledModel``; a model without a compiled form (none today among the tabular
    models) is absent and ``Declined`` sends its requests to the reference path. ``onnx`` holds the bundle's
    ONNX file of each model that has one (``models/<name>.onnx``); bulk scoring may run it with onnxruntime.
    Immutable after construction apart from a cache of onnxruntime sessions: one scorer serves any number of
    threads.
    """

    def __init__(self, preprocessor: TabularPreprocessor, models: Mapping[str, Any], *, task: str,
                 classes: Sequence[Any] | None, horizons: Sequence[float], time_unit: str,
                 onnx: Mapping[str, bytes] | None = None,
                 uncertainty: Mapping[str, Uncertainty] | None = None) -> None:
        self.preprocessor = CompiledPreprocessor(preprocessor)
        self.task = task
        self.names = output_names(task, classes=classes, horizons=horizons, time_unit=time_unit)
        compiled = {name: compile_model(est, task, horizons=horizons, n_columns=self.preprocessor.n_out)
                    for name, est in models.items()}
        self.models: dict[str, CompiledModel] = {k: v for k, v in compiled.items() if v is not None}
        zero = np.zeros((1, self.preprocessor.n_out), dtype=np.float32)
        #: each model's output dtypes on the numpy path (the ONNX path's float64 columns are cast to them)
        self.dtypes = {k: [np.asarray(o).dtype for o in m.outputs(zero)] for k, m in self.models.items()}
        self.onnx = dict(onnx or {})
        #: each model's fitted uncertainty: ``<output>_lower`` / ``_upper``, ``interval_*``, ``prediction_set``
        self.uncertainty = dict(uncertainty or {})
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def features(self) -> list[str]:
        return self.preprocessor.names

    def _model(self, name: str) -> CompiledModel:
        model = self.models.get(name)
        if model is None:
            raise Declined(f"model {name!r} has no compiled form")
        return model

    # ----- engines ----------------------------------------------------------------------------------------------
    def session(self, name: str) -> Any:
        """The onnxruntime session of model ``name`` (one intra-op thread: bulk scoring runs chunks in
        parallel), or None when the bundle has no ONNX file for it or onnxruntime is not installed."""
        if name not in self.onnx:
            return None
        with self._lock:
            if name not in self._sessions:
                self._sessions[name] = _session(self.onnx[name])
            return self._sessions[name]

    def runtime_for(self, name: str, runtime: str, n: int = 0) -> str:
        """``numpy`` or ``onnx``. ``auto`` takes onnxruntime for a net's bulk rows (``n`` >= ``ONNX_ROWS``) when the
        bundle has its graph and onnxruntime is installed, numpy otherwise: measured faster that way round
        (benchmarks/inference_speed.py, docs/performance.md). ``onnx`` needs the model's file and onnxruntime."""
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {list(RUNTIMES)}, got {str(runtime)[:40]!r}")
        if runtime == "onnx" and self.session(name) is None:
            why = ("onnxruntime is not installed (pip install 'precimed[onnx]')" if name in self.onnx
                   else "the bundle holds no ONNX graph for it (LightGBM models have none)")
            raise ConfigError(f"model {name!r} cannot run on onnxruntime: {why}; use --runtime numpy")
        if runtime == "auto":
            nets = self.models.get(name) is not None and self.models[name].kind == "nets"
            return "onnx" if nets and n >= ONNX_ROWS and self.session(name) is not None else "numpy"
        return runtime

    def _outputs(self, name: str, raw: np.ndarray, runtime: str) -> list[np.ndarray]:
        """The model's output columns from raw codes with the log already applied."""
        if runtime == "onnx":
            table = self.session(name).run(None, {"raw": raw})[0]
            return [table[:, j].astype(dtype, copy=False) for j, dtype in enumerate(self.dtypes[name])]
        return self._model(name).outputs(self.preprocessor.encode(raw))

    # ----- scoring ----------------------------------------------------------------------------------------------
    def encode_columns(self, columns: Mapping[str, Any], n: int, *, allow_out_of_range: bool = False) -> np.ndarray:
        """The encoded float32 matrix of ``n`` patients given one array per feature."""
        policy = "missing" if allow_out_of_range else "error"
        return self.preprocessor.finish(self.preprocessor.raw_columns(columns, n, out_of_range=policy))

    def encode_records(self, records: Sequence[Mapping[str, Any]], *, allow_out_of_range: bool = False) -> np.ndarray:
        policy = "missing" if allow_out_of_range else "error"
        return self.preprocessor.finish(self.preprocessor.raw_records(records, out_of_range=policy))

    def score_columns(self, columns: Mapping[str, Any], n: int, *, model: str, allow_out_of_range: bool = False,
                      runtime: str = "auto", threads: int | None = None) -> dict[str, np.ndarray]:
        """Output columns (name -> array of length ``n``) from one array per feature.

        The rows are split into one contiguous part per thread (``threads``, default: the CPUs; numpy and
        onnxruntime release the GIL while they compute). Each part is checked and coded column by column (a
        categorical's distinct values are mapped once per part), its log features taken, and then scored in chunks
        of ``CHUNK`` rows (the members' hidden layers of a chunk stay in cache). Checking and coding in the threads
        rather than before them took bulk MLP scoring on 2 CPUs from 4.9 to 6.1 M rows/s (ONNX) and from 3.9 to 6.1
        M rows/s (numpy; benchmarks/inference_speed.py). ``Declined`` from any part declines the whole call.
        """
        self._model(model)
        if n <= 0:
            raise Declined("no rows")
        runtime = self.runtime_for(model, runtime, n)
        policy = "missing" if allow_out_of_range else "error"
        workers = max(1, min(threads or os.cpu_count() or 1, -(-n // CHUNK)))
        # part boundaries on multiples of CHUNK: the same chunks (so the same sums, bit for bit) whatever the threads
        chunks = -(-n // CHUNK)
        bounds = [min(n, CHUNK * round(chunks * k / workers)) for k in range(workers + 1)]
        parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        workers = len(parts)

        def score_part(rows: slice) -> list[np.ndarray]:
            size = rows.stop - rows.start
            part = {name: _rows(values, rows) for name, values in columns.items()} if workers > 1 else columns
            raw = self.preprocessor.apply_log(self.preprocessor.raw_columns(part, size, out_of_range=policy))
            chunks = [self._outputs(model, raw[i:i + CHUNK], runtime) for i in range(0, size, CHUNK)]
            return chunks[0] if len(chunks) == 1 else [np.concatenate([c[j] for c in chunks])
                                                       for j in range(len(chunks[0]))]

        if workers == 1:
            results = [score_part(parts[0])]
        else:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(score_part, parts))
        if len(results) == 1:
            out = dict(zip(self.names, results[0], strict=True))
        else:
            out = {name: np.concatenate([r[j] for r in results]) for j, name in enumerate(self.names)}
        return self._with_uncertainty(model, out)

    def _with_uncertainty(self, model: str, columns: dict[str, Any]) -> dict[str, Any]:
        """``columns`` and, when the model has fitted uncertainty, its interval columns."""
        unc = self.uncertainty.get(model)
        return columns if unc is None else {**columns, **unc.apply(columns)}

    def score_frame(self, frame: pd.DataFrame, *, model: str, allow_out_of_range: bool = False,
                    runtime: str = "auto", threads: int | None = None) -> dict[str, np.ndarray]:
        """Output columns for a frame holding every feature once (``Declined`` when it does not: the reference
        path names what is missing or repeated)."""
        if frame.empty:
            raise Declined("no rows")
        columns = frame.columns
        if not all(name in columns for name in self.features) or columns[columns.duplicated()].isin(
                self.features).any():
            raise Declined("a feature column is missing or repeated")
        return self.score_columns({name: _plain(frame[name]) for name in self.features}, len(frame), model=model,
                                  allow_out_of_range=allow_out_of_range, runtime=runtime, threads=threads)

    def score_records(self, records: Sequence[Mapping[str, Any]], *, model: str,
                      allow_out_of_range: bool = False) -> list[dict[str, float]]:
        """One dict of outputs per patient (plain floats), from one mapping of feature values per patient."""
        return self.score_records_encoded(records, model=model, allow_out_of_range=allow_out_of_range)[0]

    def score_records_encoded(self, records: Sequence[Mapping[str, Any]], *, model: str,
                              allow_out_of_range: bool = False) -> tuple[list[dict[str, float]], np.ndarray]:
        """``score_records`` and the encoded float32 matrix the model saw (one row per patient)."""
        if not records:
            raise Declined("no patients")
        compiled = self._model(model)
        X = self.encode_records(records, allow_out_of_range=allow_out_of_range)
        unc = self.uncertainty.get(model)
        if unc is not None and len(records) > FEW:
            table = self._with_uncertainty(model, dict(zip(self.names, compiled.outputs(X), strict=True)))
            names = list(table)
            columns = [np.asarray(c).tolist() for c in table.values()]
            return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)], X
        columns = [np.asarray(c).tolist() for c in compiled.outputs(X)]
        rows = [dict(zip(self.names, values, strict=True)) for values in zip(*columns, strict=True)]
        if unc is not None:  # a few patients: the same lookups in plain Python, cheaper than numpy's calls
            for row in rows:
                row.update(unc.apply_row(row))
        return rows, X


def _session(data: bytes) -> Any:
    """An onnxruntime session of a checked ONNX file, or None without onnxruntime (or a file it must not run)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if check_graph(data) is not None:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _rows(values: Any, rows: slice) -> Any:
    """Rows ``rows`` of a feature's array or Series (a view where possible)."""
    return values.iloc[rows] if isinstance(values, pd.Series) else np.asarray(values)[rows]


def _plain(series: pd.Series) -> Any:
    """A column as numpy, nullable numbers (Int64, Float64, boolean with NA) as float64 with NaN for NA."""
    dtype = series.dtype
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_numeric_dtype(dtype) \
            and not pd.api.types.is_bool_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy()
