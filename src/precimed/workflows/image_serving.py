"""Serving an imaging bundle: predict every slice of one image, explain it (Grad-CAM, occlusion), score an upload,
validate on other cases.

``predict_image_file`` (``precimed predict`` with an imaging bundle), ``predict_volume`` (the Python API and the
service), ``explain_image_file`` (``precimed explain``) and ``evaluate_image_bundle`` (``precimed evaluate``).
Nothing here changes the loaded bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from precimed.atomic import atomic_dir
from precimed.bundle import Bundle, load_bundle
from precimed.config import SourceConfig
from precimed.data.images import ImageVolume, read_image
from precimed.errors import ConfigError, DataError
from precimed.evaluate.image_scores import score_segmenters, score_slice_classifiers
from precimed.evaluate.segmentation import overlay_png
from precimed.jsonio import write_json
from precimed.models.saliency import grad_cam, occlusion_map
from precimed.preprocess.images import ImagePreprocessor
from precimed.train import catalogue
from precimed.workflows._run import Echo, RunResult, check_out_dir, check_outputs_apart, quiet, write_table
from precimed.workflows.image_cases import (
    Slices,
    case_dice,
    describe_cases,
    load_image_data,
    model_scores,
    occlusion_grid,
    slices_of,
    threshold_of,
)


def _image_bundle(bundle: Bundle) -> ImagePreprocessor:
    if bundle.image_preprocessor is None:
        raise ConfigError(f"{bundle.path}: not an imaging bundle")
    return bundle.image_preprocessor


def _transform(pre: ImagePreprocessor, volume: ImageVolume, modality: str | None) -> np.ndarray:
    """The image's model inputs; when the file does not say its modality, the error says how to give it."""
    try:
        return pre.transform(volume, modality=modality or volume.modality)
    except DataError as exc:
        if modality is None and volume.modality is None and "modality" in str(exc):
            raise DataError(f"{exc}; the file does not record its modality: name it with --modality "
                            "(Python: modality=...)") from None
        raise


def predict_volume(bundle: Bundle, volume: ImageVolume, *, model: str | None = None,
                   modality: str | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Score every slice of one image: (a table per slice, the lesion mask on the image's grid or None)."""
    pre = _image_bundle(bundle)
    name = bundle.model_named(model)
    if bundle.preprocessor is not None and catalogue.spec(name).extra.get("tabular"):
        raise ConfigError(f"model {name!r} also needs the patient's tabular features; score it with "
                          "workflows.imaging.evaluate_image_bundle on a manifest")
    X = _transform(pre, volume, modality)
    S = Slices(X, None, np.zeros(len(X), dtype=int), np.full(len(X), volume.source, dtype=object),
               np.arange(len(X)))
    est = bundle.models[name]
    scores = model_scores(est, name, S)
    table = pd.DataFrame({"image": volume.source, "slice": np.arange(len(X)), "model": name})
    if bundle.task.kind == "segmentation":
        mask = pre.to_original(scores, volume) >= threshold_of(est)
        voxel = float(volume.spacing[1] * volume.spacing[2])
        per_slice = mask.reshape(len(mask), -1).sum(axis=1)
        table["lesion_pixels"] = per_slice
        table["lesion_area_mm2"] = per_slice * voxel if volume.meta.get("spacing_known", True) else np.nan
        table["max_probability"] = scores.reshape(len(scores), -1).max(axis=1)
        return table, mask.astype(np.uint8)
    table["probability"] = scores
    return table, None


def _write_mask(mask: np.ndarray, volume: ImageVolume, path: Path) -> None:
    import nibabel as nib

    from precimed.atomic import atomic_write_bytes

    affine = np.diag([volume.spacing[2], volume.spacing[1], volume.spacing[0], 1.0])
    image = nib.Nifti1Image(np.ascontiguousarray(mask.transpose(2, 1, 0)).astype(np.uint8), affine)
    atomic_write_bytes(path, image.to_bytes() if not str(path).endswith(".gz") else _gz(image.to_bytes()))


def _gz(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, mtime=0)


def predict_image_file(bundle_dir: Path | str, input_path: Path | str, output_path: Path | str, *,
                       model: str | None = None, masks: Path | str | None = None,
                       modality: str | None = None) -> pd.DataFrame:
    """``precimed predict`` for an imaging bundle: a DICOM folder / file, NIfTI, NRRD or picture in, a table out
    (one row per slice) and, for a segmentation bundle, optionally the lesion mask as NIfTI (``masks``)."""
    from precimed.workflows._run import check_table_path

    output_path = check_table_path(output_path)
    check_outputs_apart({"output": output_path, "masks": masks}, {"bundle": bundle_dir, "input": input_path})
    bundle = load_bundle(bundle_dir)
    volume = read_image(input_path)
    table, mask = predict_volume(bundle, volume, model=model, modality=modality)
    if masks is not None:
        if mask is None:
            raise ConfigError("--masks applies to segmentation bundles; this bundle classifies slices")
        if not str(masks).endswith((".nii", ".nii.gz")):
            raise ConfigError(f"{masks}: the mask file must end in .nii or .nii.gz")
        _write_mask(mask, volume, Path(masks))
    write_table(table, output_path)
    return table


def explain_image_file(bundle_dir: Path | str, input_path: Path | str, output: Path | str, *,
                       plots: Path | str | None = None, model: str | None = None, top_k: int = 5,
                       modality: str | None = None) -> list[dict]:
    """``precimed explain`` for an imaging bundle: Grad-CAM and an occlusion map (a model-agnostic check) on the
    ``top_k`` slices the classifier scores highest, or the predicted lesion on the slices with the largest lesion
    (segmentation); JSON per slice and, with ``plots``, one PNG overlay per slice."""
    from precimed.atomic import atomic_write_bytes

    check_outputs_apart({"output": output, "plots": plots}, {"bundle": bundle_dir, "input": input_path})
    if top_k < 1 or top_k > 200:
        raise ConfigError(f"--top must lie in [1, 200], got {top_k}")
    bundle = load_bundle(bundle_dir)
    pre = _image_bundle(bundle)
    name = bundle.model_named(model)
    volume = read_image(input_path)
    X = _transform(pre, volume, modality)
    S = Slices(X, None, np.zeros(len(X), dtype=int), np.full(len(X), volume.source, dtype=object), np.arange(len(X)))
    est = bundle.models[name]
    scores = model_scores(est, name, S)
    rows: list[dict] = []
    figures: dict[str, bytes] = {}
    if bundle.task.kind == "segmentation":
        area = (scores >= threshold_of(est)).reshape(len(scores), -1).sum(axis=1)
        for r in np.argsort(-area, kind="stable")[:top_k]:
            rows.append({"slice": int(r), "model": name, "lesion_pixels_model_grid": int(area[r]),
                         "max_probability": float(scores[r].max())})
            figures[f"slice_{int(r):04d}.png"] = overlay_png(X[r, X.shape[1] // 2], pred=scores[r] >= threshold_of(est),
                                                              saliency=scores[r], title=f"slice {int(r)} ({name})")
    else:
        if not hasattr(est, "net_"):
            raise ConfigError(f"model {name!r} has no network to explain with Grad-CAM; choose a CNN of the bundle")
        top = np.argsort(-scores, kind="stable")[:top_k]
        cam = grad_cam(est.net_, est.net_.cam_layer, X[top])
        occ = occlusion_map(lambda x: est.predict_proba(x)[:, 1], X[top], **occlusion_grid(X.shape[-1]))
        for j, r in enumerate(top):
            peak = np.unravel_index(int(np.argmax(cam[j])), cam[j].shape)
            rows.append({"slice": int(r), "model": name, "probability": float(scores[r]),
                         "grad_cam_peak": [int(peak[0]), int(peak[1])],
                         "occlusion_peak": [int(v) for v in np.unravel_index(int(np.argmax(occ[j])), occ[j].shape)],
                         "grid": "model input grid (after resampling and crop / pad)"})
            title = f"slice {int(r)}: p={scores[r]:.2f}, Grad-CAM"
            figures[f"slice_{int(r):04d}_gradcam.png"] = overlay_png(X[r, X.shape[1] // 2], saliency=cam[j],
                                                                      title=title)
            figures[f"slice_{int(r):04d}_occlusion.png"] = overlay_png(X[r, X.shape[1] // 2], saliency=occ[j],
                                                                        title=f"slice {int(r)}: occlusion")
    if plots is not None:
        with atomic_dir(Path(plots), overwrite=True) as tmp:
            for fname, png in figures.items():
                (tmp / fname).write_bytes(png)
    from precimed.jsonio import dumps

    atomic_write_bytes(Path(output), dumps(rows, indent=1).encode())
    return rows


def evaluate_image_bundle(bundle_dir: Path | str, source: SourceConfig, out_dir: Path | str, *,
                          overwrite: bool = False, echo: Echo = quiet) -> RunResult:
    """Validate an imaging bundle on other cases (a manifest or a built-in set): metrics.json in ``out_dir``."""
    bundle = load_bundle(bundle_dir)
    pre = _image_bundle(bundle)
    cfg = bundle.config
    out_dir = check_out_dir(out_dir, overwrite)
    data = load_image_data(source, cfg, echo=echo)
    S = slices_of(data.cases, pre, cfg, tabular=bundle.preprocessor, cap=False)
    names = list(bundle.models)
    pairs = bundle.comparisons
    ev = cfg.evaluation
    if cfg.task.kind == "segmentation":
        per_model = {n: case_dice(data.cases, pre, S, model_scores(bundle.models[n], n, S),
                                   threshold_of(bundle.models[n])) for n in names}
        results, comparisons = score_segmenters(per_model, comparisons=pairs, n_boot=ev.bootstrap or 1,
                                                level=ev.level, seed=cfg.seed)
    else:
        probs = {n: model_scores(bundle.models[n], n, S) for n in names}
        results, comparisons = score_slice_classifiers(probs, S.y, S.groups, comparisons=pairs,
                                                       n_boot=ev.bootstrap or 1, level=ev.level, seed=cfg.seed)
    doc = {"task": cfg.task.kind, "run": cfg.name, "bundle": bundle.ref, "primary_model": bundle.primary,
           "view": "image", "split": {"kind": "external", "splits": 1, "unit": "patient"},
           "data": {"source": data.provenance, "all": describe_cases(data.cases, S)},
           "bootstrap": {"replicates": ev.bootstrap, "level": ev.level, "seed": cfg.seed, "resampled": "patients"},
           "models": results, "comparisons": comparisons, "notes": data.notes}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        write_json(tmp / "metrics.json", doc)
    return RunResult(out_dir, doc)


__all__ = ["evaluate_image_bundle", "explain_image_file", "predict_image_file",
           "predict_volume"]
