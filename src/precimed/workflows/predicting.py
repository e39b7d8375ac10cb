"""The prediction recipe: score new patients with a bundle, purely.

Nothing here changes the loaded bundle: the out-of-range policy is an argument of the transform, so
one loaded bundle serves any number of threads at once (the service shares one per model version).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from precimed.bundle import Bundle, load_bundle
from precimed.compiled import Declined
from precimed.data import read_table
from precimed.data.longitudinal import read_observations
from precimed.errors import ConfigError
from precimed.workflows._run import (
    check_outputs_apart,
    check_table_path,
    prediction_columns,
    typed_patients,
    write_table,
)
from precimed.workflows.sequence import predict_sequence_frame


def predict_frame(bundle: Bundle, frame: pd.DataFrame, *, model: str | None = None,
                  allow_out_of_range: bool = False, where: str = "input", fast: bool = True, runtime: str = "auto",
                  threads: int | None = None) -> pd.DataFrame:
    """Score new patients (one row each) with ``model`` (default: the bundle's primary model).

    Returns one row per patient: the id column, ``model`` and the task's outputs (``probability``;
    ``p_<class>`` per class; ``prediction``; or ``risk_score`` with ``event_probability_<h><unit>`` per
    horizon), then, when the bundle stores per-patient uncertainty for the model (docs/uncertainty.md),
    ``<output>_lower`` / ``<output>_upper``, ``interval_level``, ``interval_method`` and (binary, multiclass)
    ``prediction_set``. A value outside the plausible range is refused (``ValueRangeError`` naming the patient)
    unless ``allow_out_of_range``, which treats it as missing. Sequence bundles read visit tables.

    A tabular bundle scores through its compiled path (``bundle.scorer``, array code on a fixed feature order);
    input that path cannot vouch for, and ``fast=False``, take the reference path (typed pandas columns, the
    fitted preprocessor's ``transform``, the estimator's ``predict_*``), which defines every output (the two
    agree to 1e-6) and every error message. ``runtime`` picks the compiled path's engine for bulk rows: ``numpy``,
    ``onnx`` (the bundle's ONNX graphs on onnxruntime) or ``auto`` (onnx for a net's bulk rows when present, else
    numpy); ``threads`` its threads (default: the CPUs).
    """
    name = bundle.model_named(model)
    if bundle.scorer is not None and fast:
        try:
            return _predict_compiled(bundle, frame, name, allow_out_of_range=allow_out_of_range, runtime=runtime,
                                     threads=threads)
        except Declined:
            pass  # the reference path below scores it, or names what is wrong
    if bundle.image_preprocessor is not None:
        raise ConfigError(f"{bundle.path}: an imaging bundle scores images, not table rows; use "
                          "workflows.imaging.predict_volume or `precimed predict BUNDLE --input IMAGE`")
    if bundle.sequence_preprocessor is not None:
        return predict_sequence_frame(bundle, frame, model=name, allow_out_of_range=allow_out_of_range, where=where)
    frame, X = typed_patients(bundle, frame, where=where)
    id_name = bundle.metadata["id_column"]
    Xt = bundle.preprocessor.transform(X, out_of_range="missing" if allow_out_of_range else "error")
    task = bundle.task
    est = bundle.models[name]
    out = prediction_columns(pd.DataFrame({id_name: frame.index.to_numpy()}), est, Xt, task,
                             classes=bundle.metadata.get("classes"))
    out.insert(1, "model", name)
    return with_uncertainty(bundle, name, out)


def with_uncertainty(bundle: Bundle, name: str, out: pd.DataFrame) -> pd.DataFrame:
    """``out`` with the model's uncertainty columns (``<output>_lower`` / ``_upper``, ``interval_level``,
    ``interval_method``, ``prediction_set``) when the bundle stores uncertainty for it; unchanged otherwise."""
    unc = bundle.uncertainty.get(name)
    if unc is None:
        return out
    added = unc.apply({c: out[c].to_numpy() for c in out.columns if c not in (bundle.metadata["id_column"], "model")})
    return out.assign(**{k: v for k, v in added.items()})


def _predict_compiled(bundle: Bundle, frame: pd.DataFrame, name: str, *, allow_out_of_range: bool,
                      runtime: str = "auto", threads: int | None = None) -> pd.DataFrame:
    """``predict_frame`` through the compiled scorer; ``Declined`` when it cannot vouch for the input."""
    id_name = bundle.metadata["id_column"]
    columns = bundle.scorer.score_frame(frame, model=name, allow_out_of_range=allow_out_of_range, runtime=runtime,
                                        threads=threads)
    if id_name in frame.columns:
        ids = frame[id_name]
        if isinstance(ids, pd.DataFrame):
            raise Declined("the id column repeats")
        ids = ids.to_numpy()
    else:
        ids = np.arange(1, len(frame) + 1)
    return pd.DataFrame({id_name: ids, "model": name, **columns})


def predict_file(bundle_dir: Path | str, input_path: Path | str, output_path: Path | str, *,
                 model: str | None = None, allow_out_of_range: bool = False, at: float | None = None,
                 observations_path: Path | str | None = None, masks: Path | str | None = None,
                 modality: str | None = None, runtime: str = "auto") -> pd.DataFrame:
    """``precimed predict``: read patients (CSV/Parquet/JSON), score them, write the table atomically.

    For a sequence bundle the input is a visit table; ``at`` moves the prediction time and
    ``observations_path`` gives long-format observations for runs trained on them. For an imaging bundle the
    input is an image (DICOM file or series folder, NIfTI, NRRD, PNG / JPEG): one row per slice, and ``masks``
    (segmentation bundles) writes the lesion mask as NIfTI; ``modality`` names it when the file does not.
    """
    output_path = check_table_path(output_path)
    check_outputs_apart({"output": output_path}, {"bundle": bundle_dir, "input": input_path,
                                                  "observations": observations_path})
    bundle = load_bundle(bundle_dir)
    if bundle.image_preprocessor is not None:
        from precimed.workflows.image_serving import predict_image_file

        return predict_image_file(bundle_dir, input_path, output_path, model=model, masks=masks, modality=modality)
    if masks is not None or modality is not None:
        raise ConfigError("--masks and --modality apply to imaging bundles; this bundle scores table rows")
    frame = read_table(input_path)
    if bundle.sequence_preprocessor is not None:
        obs = read_observations(observations_path) if observations_path is not None else None
        out = predict_sequence_frame(bundle, frame, model=bundle.model_named(model), at=at, observations=obs,
                                     allow_out_of_range=allow_out_of_range, where=str(input_path))
    else:
        out = predict_frame(bundle, frame, model=model, allow_out_of_range=allow_out_of_range, where=str(input_path),
                            runtime=runtime)
    written = out
    if "prediction_set" in out.columns and Path(output_path).suffix.lower() == ".csv":
        # a CSV cell holds text: the set's labels joined by '|' (JSON and Parquet keep the list)
        written = out.assign(prediction_set=["|".join(map(str, s)) for s in out["prediction_set"]])
    write_table(written, output_path)
    return out
