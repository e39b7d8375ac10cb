"""Imaging recipe: CNN classification and U-Net segmentation of 2-D slices, beside non-deep baselines.

``train_imaging_from_config`` (a run config with ``images:``):

1. reads the cases: a built-in image set (``pyradiomics``: 5 real CT / MRI cases with expert lesion masks;
   ``synthetic_lesions``: lesions with known masks inserted into real anatomy) or a manifest table
   (``patient_id``, ``image``, optional ``mask``, ``label`` and tabular features);
2. splits by patient, never by slice (``leave_one_patient_out``, ``grouped`` or ``external``); in each split the
   :class:`~precimed.preprocess.images.ImagePreprocessor` (resampling, crop / pad, window, normalisation) is
   fitted on the training patients' images only, then every volume is cut into 2-D (or 2.5-D) slices;
3. trains the configured models of the catalogue (``resnet``, ``fusion``, ``resnet_finetuned``,
   ``resnet_pretrained``, ``unet`` and the baselines ``radiomics_logistic``, ``threshold``, ``pixel_gbm``) on the
   training patients; augmentation touches training batches only;
4. scores held-out patients: slice-level AUROC / AUPRC / Brier with patient-bootstrap CIs (binary), Dice per case
   on the original voxel grid with its mean, spread and case-bootstrap CI (segmentation), paired differences of
   each deep model against each baseline, and Grad-CAM localisation (pointing game, IoU) against random maps;
5. writes ``bundle/`` (weights + the fitted image preprocessor, hashed), ``metrics.json`` and ``report.html``
   (with overlays of correct and wrong cases) in one atomic rename. After leave-one-patient-out the bundle's
   models are refit on every patient; the metrics are the held-out estimates.

``predict_image_file`` / ``explain_image_file`` / ``evaluate_image_bundle`` serve such bundles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.atomic import atomic_dir
from precimed.bundle import Bundle, load_bundle, save_bundle
from precimed.config import RunConfig, SourceConfig, SyntheticLesionsConfig
from precimed.data import image_sets
from precimed.data.image_collections import read_class_folders, read_medmnist
from precimed.data.images import ImageVolume, read_image, read_image_table, read_mask
from precimed.data.synthetic_lesions import background_slices, make_lesion_set
from precimed.errors import ConfigError, DataError
from precimed.evaluate.image_report import write_image_report
from precimed.evaluate.image_scores import score_segmenters, score_slice_classifiers
from precimed.evaluate.segmentation import (
    dice,
    overlay_png,
    pointing_game,
    random_saliency,
    saliency_iou,
)
from precimed.jsonio import write_json
from precimed.models.saliency import grad_cam, occlusion_map
from precimed.preprocess import TabularPreprocessor
from precimed.preprocess.images import ImagePreprocessor
from precimed.train import catalogue
from precimed.train.imaging import ImageClassifier
from precimed.workflows._run import Echo, RunResult, check_out_dir, check_outputs_apart, quiet, write_table

LESION_PRESENT = "lesion_present"
SMALL_STUDY = 10  # fewer patients than this: the report and metrics say the run is a plumbing check
PLUMBING_NOTE = ("{n} patients is a plumbing check, not clinical evidence: the figures show that the pipeline runs "
                 "end to end on real images, not how well a model would do in a clinic.")
SYNTHETIC_NOTE = ("SYNTHETIC LESIONS: the backgrounds are real anatomy, but every lesion and its mask was made up by "
                  "precimed's seeded generator. These figures measure the method on known ground truth, not a "
                  "clinical task.")


# ----- cases ------------------------------------------------------------------------------------------
@dataclass
class ImageCase:
    """One patient's image (a volume, or a 2-D picture as a one-slice volume), its mask, label and features."""

    case: str
    volume: ImageVolume
    mask: np.ndarray | None
    label: int | None = None
    tabular: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageData:
    cases: list[ImageCase]
    notes: list[str]
    provenance: dict[str, Any]


def _modality(volume: ImageVolume) -> str | None:
    return volume.modality


def _pyradiomics(echo: Echo) -> ImageData:
    info = {i.name: i for i in image_sets.list_image_sets()}["pyradiomics"]
    cases = []
    for case in image_sets.pyradiomics_cases():
        volume, mask = image_sets.load_case(case)
        cases.append(ImageCase(str(case["case"]), volume, mask))
    echo(f"pyradiomics: {len(cases)} cases, {sum(c.volume.array.shape[0] for c in cases)} slices")
    return ImageData(cases, [], {"set": "pyradiomics", "title": info.title, "licence": info.licence,
                                 "citation": info.citation, "synthetic": False})


def synthetic_cases(cfg: RunConfig, *, seed: int, exclude: Sequence[str] = (),
                    settings: SyntheticLesionsConfig | None = None) -> tuple[list[ImageCase], dict]:
    """Synthetic lesions on real anatomy, as one pseudo-volume per background source (the unit of splitting).

    ``exclude`` drops backgrounds of the named cases (e.g. the real cases a run evaluates on, so pretraining never
    sees their anatomy).
    """
    images = cfg.images
    assert images is not None
    if settings is not None:
        syn = settings
    elif images.synthetic is not None:
        syn = images.synthetic
    elif images.pretrain is not None:
        syn = images.pretrain.synthetic
    else:
        syn = SyntheticLesionsConfig()
    size = int(max(images.size))
    backgrounds, groups = background_slices(size=size, seed=seed, per_source=syn.per_source)
    keep = np.array([str(g).split(":")[-1] not in set(exclude) for g in groups])  # "pyradiomics:brain1" → brain1
    if not keep.any():
        raise DataError("no real background slices are left for synthetic lesions after excluding "
                        f"{sorted(exclude)}; install mricron-data (scripts/fetch_imaging_data.sh)")
    lesions = make_lesion_set(backgrounds[keep], groups[keep], n=syn.n, seed=seed, radius_px=syn.radius_px,
                              contrast=syn.contrast, positive_fraction=syn.positive_fraction, texture=syn.texture)
    cases = []
    for g in np.unique(lesions.groups):
        rows = np.flatnonzero(lesions.groups == g)
        volume = ImageVolume(lesions.images[rows, 0].astype(np.float32), (1.0, 1.0, 1.0), f"synthetic-{g}", None,
                             {"format": "synthetic", "spacing_known": False})
        case = ImageCase(str(g), volume, lesions.masks[rows].astype(np.uint8))
        case.tabular = {"_radius_px": lesions.radius_px[rows], "_contrast": lesions.contrast[rows]}
        cases.append(case)
    provenance = {"set": "synthetic_lesions", "synthetic": True, "n_images": int(len(lesions.labels)),
                  "backgrounds": sorted({str(g) for g in lesions.groups}),
                  "settings": syn.model_dump()}
    return cases, provenance


def _manifest(source: SourceConfig, cfg: RunConfig, echo: Echo) -> ImageData:
    table = read_image_table(source.path)  # type: ignore[arg-type]
    where = str(source.path)
    target = cfg.task.target
    label_column = target if cfg.task.kind == "binary" and target != LESION_PRESENT else None
    if label_column is not None and label_column not in table.columns:
        raise DataError(f"{where}: the task's target column {label_column!r} is missing; the manifest has "
                        f"{list(table.columns)[:20]}", column=label_column)
    needs_mask = cfg.task.kind == "segmentation" or target == LESION_PRESENT
    if needs_mask and "mask" not in table.columns:
        why = "segmentation" if cfg.task.kind == "segmentation" else "the target lesion_present"
        raise DataError(f"{where}: {why} needs a 'mask' column (each image's lesion mask)", column="mask")
    features = [f.name for f in cfg.features]
    missing = [f for f in features if f not in table.columns]
    if missing:
        raise DataError(f"{where}: feature column(s) {missing} are missing from the manifest", column=missing[0])
    cases = []
    for row_number, row in enumerate(table.itertuples(index=False), start=2):
        row = row._asdict()
        volume = read_image(row["image"], where=f"{where} line {row_number}")
        mask = None
        if needs_mask:
            if pd.isna(row.get("mask")):
                raise DataError(f"{where} line {row_number}: no mask given for this image", column="mask")
            mask = read_mask(row["mask"], volume)
        label = None
        if label_column is not None:
            value = row[label_column]
            if value not in (0, 1, True, False, "0", "1"):
                raise DataError(f"{where} line {row_number}: label {label_column!r} must be 0 or 1, got "
                                f"{str(value)[:40]!r}", column=label_column)
            label = int(value in (1, True, "1"))
        cases.append(ImageCase(str(row["patient_id"]), volume, mask, label, {f: row[f] for f in features}))
    names = [c.case for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    notes = []
    if dupes:
        notes.append(f"{len(dupes)} patient(s) have several images; all of a patient's images stay on one side of "
                     "every split")
    echo(f"{where}: {len(cases)} image(s) of {len(set(names))} patient(s)")
    return ImageData(cases, notes, {"set": "manifest", "synthetic": False, "file": Path(where).name})


def _collection(source: SourceConfig, cfg: RunConfig, part: str, echo: Echo) -> ImageData:
    """A user's local copy of a labelled picture collection (MedMNIST .npz, MedNIST class folders)."""
    path = Path(source.path)  # type: ignore[arg-type]
    coll = read_medmnist(path, part=part) if path.suffix == ".npz" else read_class_folders(path)
    positive = cfg.task.positive
    if positive is None:
        if len(coll.classes) != 2:
            raise ConfigError(f"{cfg.name}: {coll.source} has {len(coll.classes)} classes {coll.classes[:12]}; name "
                              "the positive one with task.positive")
        positive = coll.classes[1]
    if str(positive) not in coll.classes:
        raise ConfigError(f"{cfg.name}: task.positive {positive!r} is not a class of {coll.source}; its classes are "
                          f"{coll.classes[:12]}")
    k = coll.classes.index(str(positive))
    cases = [ImageCase(ident, ImageVolume(coll.images[i][None], (1.0, 1.0, 1.0), coll.source, None,
                                          {"format": "collection", "spacing_known": False}),
                       None, int(coll.labels[i] == (k if path.suffix != ".npz" else int(positive))))
             for i, ident in enumerate(coll.ids)]
    echo(f"{coll.source} ({part}): {len(cases)} pictures, {sum(c.label for c in cases)} of class {positive!r}")
    note = (f"{coll.source} records no patient identifiers: each picture counts as its own patient, so pictures of one "
            "patient may sit on both sides of a split unless the collection's own split is used (split external, "
            "the same file as data.test)")
    return ImageData(cases, [note], {"set": "collection", "synthetic": False, "file": coll.source,
                                     "classes": coll.classes, "positive": str(positive)})


def load_image_data(source: SourceConfig, cfg: RunConfig, *, echo: Echo = quiet, part: str = "train") -> ImageData:
    """The cases a source names: a built-in image set, a manifest table, or a local picture collection
    (MedMNIST ``.npz``: its train + val parts, or its test part when ``part`` is "test"; MedNIST class folders)."""
    if source.path is not None and (Path(source.path).suffix == ".npz" or Path(source.path).is_dir()):
        return _collection(source, cfg, part, echo)
    if source.dataset == "pyradiomics":
        return _pyradiomics(echo)
    if source.dataset == "synthetic_lesions":
        cases, provenance = synthetic_cases(cfg, seed=cfg.seed)
        echo(f"synthetic lesions: {provenance['n_images']} images on {len(cases)} real background sources")
        return ImageData(cases, [SYNTHETIC_NOTE], provenance)
    if source.dataset is not None:
        raise ConfigError(f"{cfg.name}: data.train.dataset {source.dataset!r} is not an image set; choose "
                          "'pyradiomics' or 'synthetic_lesions', or give a manifest table as 'path'")
    if source.filter or source.derive or source.rename:
        raise ConfigError(f"{cfg.name}: filter, derive and rename apply to tables, not to an imaging manifest")
    return _manifest(source, cfg, echo)


def image_source(data: str) -> SourceConfig:
    """A built-in image set name or a manifest file, as a source (``precimed evaluate --data``)."""
    if data in ("pyradiomics", "synthetic_lesions"):
        return SourceConfig(dataset=data)
    path = Path(data)
    if not path.is_file():
        raise ConfigError(f"{data!r} is neither a built-in image set (pyradiomics, synthetic_lesions) nor a "
                          "manifest file")
    return SourceConfig(path=path.resolve())


# ----- slices -----------------------------------------------------------------------------------------
@dataclass
class Slices:
    """2-D model inputs cut from volumes: X (N, C, H, W), masks (N, H, W), labels, patients, slice numbers."""

    X: np.ndarray
    masks: np.ndarray | None
    y: np.ndarray
    groups: np.ndarray
    index: np.ndarray
    tabular: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def take(self, rows: np.ndarray) -> Slices:
        return Slices(self.X[rows], None if self.masks is None else self.masks[rows], self.y[rows],
                      self.groups[rows], self.index[rows], None if self.tabular is None else self.tabular[rows],
                      {k: v[rows] for k, v in self.extra.items()})


def image_preprocessor(cfg: RunConfig) -> ImagePreprocessor:
    im = cfg.images
    assert im is not None
    return ImagePreprocessor(spacing=im.spacing, size=tuple(im.size), window=im.window, normalize=im.normalize,
                             context=im.context, per_modality=im.per_modality)


def _tabular_preprocessor(cfg: RunConfig, cases: Sequence[ImageCase]) -> TabularPreprocessor | None:
    if not cfg.features:
        return None
    frame = pd.DataFrame([c.tabular for c in cases], index=[c.case for c in cases])
    pre = TabularPreprocessor(features=[f.model_dump() for f in cfg.features], impute=cfg.preprocess.impute,
                              missing_indicators=cfg.preprocess.missing_indicators, scale=cfg.preprocess.scale,
                              out_of_range="missing")
    return pre.fit(frame[[f.name for f in cfg.features]])


def slices_of(cases: Sequence[ImageCase], pre: ImagePreprocessor, cfg: RunConfig, *,
              tabular: TabularPreprocessor | None = None, cap: bool = True,
              crop_losses: dict[str, str] | None = None) -> Slices:
    """Every case cut into preprocessed slices; the slice label is the lesion's presence or the case's label.

    ``crop_losses`` collects, per case, lesion slices whose lesion fell outside the crop (then lesion-free).
    """
    parts: list[Slices] = []
    rng = np.random.default_rng(cfg.seed)
    limit = cfg.images.max_slices_per_patient if cfg.images is not None and cap else None
    for c in cases:
        X = pre.transform(c.volume, modality=_modality(c.volume))
        masks = pre.transform_mask(c.mask, c.volume) if c.mask is not None else None
        if c.label is not None:
            y = np.full(len(X), c.label, dtype=int)
        elif masks is not None:
            y = (masks.reshape(len(masks), -1).max(axis=1) > 0).astype(int)
            before = int((c.mask.reshape(len(c.mask), -1).max(axis=1) > 0).sum())  # type: ignore[union-attr]
            if int(y.sum()) < before and crop_losses is not None:
                crop_losses[c.case] = f"{before - int(y.sum())} of {before}"
        else:
            y = np.zeros(len(X), dtype=int)
        rows = np.arange(len(X))
        if limit is not None and len(rows) > limit:
            positive, negative = rows[y == 1], rows[y == 0]
            room = max(limit - len(positive), 0)
            rows = np.sort(np.concatenate([positive, rng.choice(negative, min(room, len(negative)), replace=False)]))
        tab = None
        if tabular is not None:
            frame = pd.DataFrame([c.tabular], index=[c.case])[[f.name for f in cfg.features]]
            tab = np.repeat(tabular.transform(frame, out_of_range="missing").astype(np.float32), len(rows), axis=0)
        extra = {k: np.asarray(v)[rows] for k, v in c.tabular.items() if k.startswith("_")}
        parts.append(Slices(X[rows], None if masks is None else masks[rows], y[rows],
                            np.full(len(rows), c.case, dtype=object), rows, tab, extra))
    return Slices(np.concatenate([p.X for p in parts]),
                  None if any(p.masks is None for p in parts) else np.concatenate([p.masks for p in parts]),
                  np.concatenate([p.y for p in parts]), np.concatenate([p.groups for p in parts]),
                  np.concatenate([p.index for p in parts]),
                  None if parts[0].tabular is None else np.concatenate([p.tabular for p in parts]),
                  {k: np.concatenate([p.extra[k] for p in parts]) for k in parts[0].extra})


# ----- models -----------------------------------------------------------------------------------------
def _fit_one(cfg: RunConfig, name: str, S: Slices, *, pretrained: tuple[dict, dict] | None, progress: bool) -> Any:
    spec = catalogue.spec(name)
    mode = spec.extra.get("pretrain")
    if mode == "only":
        return ImageClassifier.from_state(*pretrained)  # type: ignore[misc]
    est = catalogue.build(cfg, name, progress=progress)
    if cfg.task.kind == "segmentation":
        if S.masks is None:
            raise DataError("segmentation needs a mask for every training image")
        return est.fit(S.X, S.masks, groups=S.groups)
    if spec.role == "baseline":
        return est.fit(S.X, S.y, groups=S.groups)
    kwargs: dict[str, Any] = {"groups": S.groups}
    if spec.extra.get("tabular"):
        kwargs["tabular"] = S.tabular
    if mode == "finetune":
        kwargs["init_state"] = pretrained
    return est.fit(S.X, S.y, **kwargs)


def model_scores(model: Any, name: str, S: Slices) -> np.ndarray:
    """P(lesion present) per slice (binary) or the lesion probability map (segmentation)."""
    if catalogue.spec(name).tasks == frozenset({"segmentation"}):
        return np.asarray(model.predict_proba(S.X), dtype=np.float32)
    if catalogue.spec(name).extra.get("tabular"):
        return np.asarray(model.predict_proba(S.X, tabular=S.tabular))[:, 1]
    return np.asarray(model.predict_proba(S.X))[:, 1]


def _threshold(model: Any) -> float:
    return float(getattr(model, "threshold_", 0.5) or 0.5)


def pretrain_classifier(cfg: RunConfig, *, exclude: Sequence[str], progress: bool, echo: Echo
                        ) -> tuple[tuple[dict, dict], dict]:
    """Train the CNN on synthetic lesions in real anatomy (labels known by construction); its state and a summary."""
    im = cfg.images
    assert im is not None and im.pretrain is not None
    cases, provenance = synthetic_cases(cfg, seed=cfg.seed + 1, exclude=exclude, settings=im.pretrain.synthetic)
    pre = ImagePreprocessor(spacing=None, size=tuple(im.size), window=None, normalize=im.normalize,
                            context=im.context, per_modality=False).fit([c.volume for c in cases])
    S = slices_of(cases, pre, cfg, cap=False)
    echo(f"pretraining the CNN on {len(S.y)} synthetic-lesion images ({int(S.y.sum())} with a lesion) from "
         f"{len(cases)} real background sources")
    est = catalogue.build(cfg, "resnet", progress=progress, overrides={"max_epochs": im.pretrain.max_epochs})
    est.fit(S.X, S.y, groups=S.groups)
    return est.to_state(), {"images": int(len(S.y)), "with_lesion": int(S.y.sum()),
                            "backgrounds": provenance["backgrounds"], "epochs": im.pretrain.max_epochs,
                            "excluded_backgrounds": sorted(exclude), "synthetic": provenance["settings"]}


# ----- splits -----------------------------------------------------------------------------------------
def patient_splits(cfg: RunConfig, patients: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """(training patients, test patients) per split: every patient on one side only."""
    names = sorted(set(patients))
    if cfg.split.kind == "leave_one_patient_out":
        if len(names) < 3:
            raise DataError(f"leave-one-patient-out needs at least 3 patients, got {len(names)}")
        return [([n for n in names if n != held], [held]) for held in names]
    order = list(np.random.default_rng(cfg.seed).permutation(names))
    n_test = max(1, int(round(cfg.split.test_fraction * len(order))))
    if n_test >= len(order):
        raise DataError(f"a grouped split of {len(order)} patients leaves none to train on")
    return [(sorted(order[n_test:]), sorted(order[:n_test]))]


@dataclass
class FoldResult:
    scores: dict[str, np.ndarray]
    slices: Slices
    dice: dict[str, dict[str, float]]
    examples: list[dict]
    saliency: dict[str, Any]
    histories: dict[str, Any]


def _case_dice(cases: Sequence[ImageCase], pre: ImagePreprocessor, S: Slices, maps: np.ndarray,
               threshold: float) -> dict[str, float]:
    """Dice of each case over all its voxels, on the case's original grid."""
    out = {}
    for c in cases:
        rows = np.flatnonzero(S.groups == c.case)
        full = np.zeros((c.volume.array.shape[0], *maps.shape[1:]), dtype=np.float32)
        full[S.index[rows]] = maps[rows]
        original = pre.to_original(full, c.volume)
        out[c.case] = dice(original >= threshold, c.mask > 0)  # type: ignore[operator]
    return out


def _occlusion_grid(size: int) -> dict[str, int]:
    """Occlusion patches of an eighth of the image, moved by half a patch: 15 × 15 positions at any size."""
    patch = max(4, size // 8)
    return {"patch": patch, "stride": max(2, patch // 2)}


def _saliency(model: Any, S: Slices, *, seed: int) -> dict[str, Any]:
    """Grad-CAM and occlusion on positive slices: pointing game and IoU against random maps."""
    rows = np.flatnonzero((S.y == 1) & (S.masks.reshape(len(S.y), -1).max(axis=1) > 0)) if S.masks is not None \
        else np.array([], dtype=int)
    if len(rows) == 0 or not hasattr(model, "net_"):
        return {}
    X, masks = S.X[rows], S.masks[rows]  # type: ignore[index]
    cam = grad_cam(model.net_, model.net_.cam_layer, X)
    occ = occlusion_map(lambda x: model.predict_proba(x)[:, 1], X, **_occlusion_grid(X.shape[-1]))
    rand = random_saliency(cam.shape, seed=seed)
    return {"rows": rows, "grad_cam": cam, "occlusion": occ, "random": rand,
            "hits": {k: pointing_game(m, masks) for k, m in (("grad_cam", cam), ("occlusion", occ), ("random", rand))},
            "iou": {k: saliency_iou(m, masks) for k, m in (("grad_cam", cam), ("occlusion", occ), ("random", rand))}}


def _image_dice(S: Slices, maps: np.ndarray, threshold: float) -> dict[str, float]:
    """Synthetic sets: the Dice of each image with a lesion (each image holds its own made-up lesion)."""
    out = {}
    for r in np.flatnonzero(S.y == 1):
        out[f"{S.groups[r]}/{int(S.index[r])}"] = dice(maps[r] >= threshold, S.masks[r] > 0)  # type: ignore[index]
    return out


def _plain_history(history: Any) -> dict[str, Any]:
    """A training history (train/imaging's History dataclass) as the plain dict the report plots."""
    return {"train_loss": list(getattr(history, "train_loss", [])), "val_loss": list(getattr(history, "val_loss", [])),
            "best_epoch": getattr(history, "best_epoch", None)}


def _fold(cfg: RunConfig, plan: catalogue.ModelPlan, train: Sequence[ImageCase], test: Sequence[ImageCase], *,
          pretrained: tuple[dict, dict] | None, progress: bool, echo: Echo, label: str, synthetic: bool = False,
          crop_losses: dict[str, str] | None = None) -> tuple[FoldResult, dict[str, Any], ImagePreprocessor,
                                                   TabularPreprocessor | None]:
    pre = image_preprocessor(cfg).fit([c.volume for c in train], [_modality(c.volume) for c in train])
    tab = _tabular_preprocessor(cfg, train)
    S_train = slices_of(train, pre, cfg, tabular=tab, crop_losses=crop_losses)
    S_test = slices_of(test, pre, cfg, tabular=tab, cap=False, crop_losses=crop_losses)
    who = "background volume(s)" if synthetic else "patient(s)"
    echo(f"{label}: training on {len({c.case for c in train})} {who}, {len(S_train.y)} slices "
         f"({int(S_train.y.sum())} with a lesion); testing on {len({c.case for c in test})} {who}, "
         f"{len(S_test.y)} slices")
    models = {name: _fit_one(cfg, name, S_train, pretrained=pretrained, progress=progress) for name in plan.names}
    scores = {name: model_scores(m, name, S_test) for name, m in models.items()}
    dices: dict[str, dict[str, float]] = {}
    examples: list[dict] = []
    if cfg.task.kind == "segmentation":
        for name, m in models.items():
            dices[name] = (_image_dice(S_test, scores[name], _threshold(m)) if synthetic
                           else _case_dice(test, pre, S_test, scores[name], _threshold(m)))
        primary_map = scores[plan.primary]
        if synthetic:
            for r in np.flatnonzero(S_test.y == 1)[:40]:
                ident = f"{S_test.groups[r]}/{int(S_test.index[r])}"
                examples.append({"image": S_test.X[r, S_test.X.shape[1] // 2], "truth": S_test.masks[r],  # type: ignore
                                 "pred": primary_map[r] >= _threshold(models[plan.primary]),
                                 "caption": f"{ident}: Dice {dices[plan.primary][ident]:.2f}",
                                 "dice": dices[plan.primary][ident]})
        for c in ([] if synthetic else test):
            rows = np.flatnonzero(S_test.groups == c.case)
            area = S_test.masks[rows].reshape(len(rows), -1).sum(axis=1)  # type: ignore[union-attr]
            r = rows[int(np.argmax(area))]
            examples.append({"image": S_test.X[r, S_test.X.shape[1] // 2], "truth": S_test.masks[r],  # type: ignore
                             "pred": primary_map[r] >= _threshold(models[plan.primary]),
                             "caption": f"{c.case} slice {int(S_test.index[r])}: Dice (case) "
                                        f"{dices[plan.primary][c.case]:.2f}", "dice": dices[plan.primary][c.case]})
    saliency = {}
    if cfg.task.kind == "binary" and S_test.masks is not None:
        saliency = _saliency(models[plan.primary], S_test, seed=cfg.seed)
    histories = {n: _plain_history(m.history_) for n, m in models.items() if getattr(m, "history_", None) is not None}
    return FoldResult(scores, S_test, dices, examples, saliency, histories), models, pre, tab


# ----- the recipe -------------------------------------------------------------------------------------
def _describe(cases: Sequence[ImageCase], S: Slices | None = None) -> dict[str, Any]:
    modalities: dict[str, int] = {}
    for c in cases:
        modalities[str(c.volume.modality or "unknown")] = modalities.get(str(c.volume.modality or "unknown"), 0) + 1
    out: dict[str, Any] = {"patients": len({c.case for c in cases}), "images": len(cases),
                           "slices": int(sum(c.volume.array.shape[0] for c in cases)), "modalities": modalities}
    if S is not None:
        out |= {"slices_scored": int(len(S.y)), "slices_with_lesion": int(S.y.sum())}
    return out


def _pooled(folds: Sequence[FoldResult], names: Sequence[str]) -> tuple[dict[str, np.ndarray], Slices]:
    slices = folds[0].slices
    for f in folds[1:]:
        s = f.slices
        slices = Slices(np.concatenate([slices.X, s.X]),
                        None if slices.masks is None or s.masks is None else np.concatenate([slices.masks, s.masks]),
                        np.concatenate([slices.y, s.y]), np.concatenate([slices.groups, s.groups]),
                        np.concatenate([slices.index, s.index]),
                        None if slices.tabular is None else np.concatenate([slices.tabular, s.tabular]),
                        {k: np.concatenate([v, s.extra[k]]) for k, v in slices.extra.items()})
    return {n: np.concatenate([f.scores[n] for f in folds]) for n in names}, slices


def _saliency_summary(folds: Sequence[FoldResult]) -> dict[str, Any] | None:
    parts = [f.saliency for f in folds if f.saliency]
    if not parts:
        return None
    out: dict[str, Any] = {"positive_slices": int(sum(len(p["rows"]) for p in parts))}
    for kind in ("grad_cam", "occlusion", "random"):
        hits = np.concatenate([p["hits"][kind] for p in parts]).astype(float)
        iou = np.concatenate([p["iou"][kind] for p in parts]).astype(float)
        out[kind] = {"pointing_game": float(hits.mean()), "iou": float(np.nanmean(iou))}
    return out


def train_imaging_from_config(cfg: RunConfig, out_dir: Path | str, *, overwrite: bool = False,
                              progress: bool = True, echo: Echo = quiet) -> RunResult:
    """Train and validate image models by patient-level splits; write bundle, metrics and report."""
    if cfg.images is None:
        raise ConfigError("this config has no 'images' section; use workflows.train_from_config")
    plan = catalogue.plan_models(cfg)
    out_dir = check_out_dir(out_dir, overwrite)
    data = load_image_data(cfg.data.train, cfg, echo=echo)
    notes = list(data.notes)
    pretrained, pretrain_info = None, None
    if any(catalogue.spec(n).extra.get("pretrain") in ("finetune", "only") for n in plan.names):
        exclude = [] if data.provenance.get("synthetic") else sorted({c.case for c in data.cases})
        pretrained, pretrain_info = pretrain_classifier(cfg, exclude=exclude, progress=progress, echo=echo)
    if cfg.split.kind == "external":
        test_data = load_image_data(cfg.data.test, cfg, echo=echo, part="test")  # type: ignore[arg-type]
        splits = [(data.cases, test_data.cases)]
        all_cases = data.cases + test_data.cases
    else:
        by_case: dict[str, list[ImageCase]] = {}
        for c in data.cases:
            by_case.setdefault(c.case, []).append(c)
        splits = [([c for n in tr for c in by_case[n]], [c for n in te for c in by_case[n]])
                  for tr, te in patient_splits(cfg, [c.case for c in data.cases])]
        all_cases = data.cases
    synthetic = bool(data.provenance.get("synthetic"))
    if synthetic:
        notes.append("synthetic images are the unit of resampling (each holds its own made-up lesion); the split "
                     "keeps every background volume on one side")
    crop_losses: dict[str, str] = {}
    folds: list[FoldResult] = []
    last: tuple[dict[str, Any], ImagePreprocessor, TabularPreprocessor | None] | None = None
    for k, (train, test) in enumerate(splits, start=1):
        label = f"split {k} of {len(splits)}" if len(splits) > 1 else "split"
        fold, models, pre, tab = _fold(cfg, plan, train, test, pretrained=pretrained, progress=progress, echo=echo,
                                       label=label, synthetic=synthetic, crop_losses=crop_losses)
        folds.append(fold)
        last = (models, pre, tab)
    assert last is not None
    if crop_losses:
        size = cfg.images.size
        lost = ", ".join(f"{case} ({text})" for case, text in sorted(crop_losses.items()))
        notes.append(f"lesion slices whose lesion fell outside the {size[0]}×{size[1]} crop were counted as "
                     f"lesion-free: {lost}; raise images.size or images.spacing to keep them")
    ev = cfg.evaluation
    n_patients = len({c.case for c in all_cases})
    if cfg.task.kind == "segmentation":
        per_model = {n: {case: d for f in folds for case, d in f.dice[n].items()} for n in plan.names}
        results, comparisons = score_segmenters(per_model, comparisons=plan.comparisons, n_boot=ev.bootstrap or 1,
                                                level=ev.level, seed=cfg.seed)
        pooled_slices = None
    else:
        probs, pooled_slices = _pooled(folds, plan.names)
        units = (np.array([f"{g}/{i}" for g, i in zip(pooled_slices.groups, pooled_slices.index, strict=True)])
                 if synthetic else pooled_slices.groups)
        results, comparisons = score_slice_classifiers(probs, pooled_slices.y, units,
                                                       comparisons=plan.comparisons, n_boot=ev.bootstrap or 1,
                                                       level=ev.level, seed=cfg.seed)
    if n_patients < SMALL_STUDY and not data.provenance.get("synthetic"):
        notes.insert(0, PLUMBING_NOTE.format(n=n_patients))
    if cfg.split.kind == "leave_one_patient_out":
        echo(f"refitting every model on all {n_patients} patients for the bundle")
        models, pre, tab = _refit(cfg, plan, all_cases, pretrained=pretrained, progress=progress)
        notes.append(f"metrics are leave-one-patient-out estimates ({len(splits)} splits); the bundle's models were "
                     f"refit on all {n_patients} patients")
    else:
        models, pre, tab = last
    saliency = _saliency_summary(folds)
    doc: dict[str, Any] = {
        "task": cfg.task.kind, "run": cfg.name, "primary_model": plan.primary, "view": "image",
        "split": {"kind": cfg.split.kind, "splits": len(splits), "unit": "patient"},
        "data": {"source": data.provenance, "all": _describe(all_cases, pooled_slices)},
        "bootstrap": {"replicates": ev.bootstrap, "level": ev.level, "seed": cfg.seed, "resampled": "patients"},
        "models": results, "comparisons": comparisons, "notes": notes,
    }
    if saliency is not None:
        doc["saliency"] = saliency
    if pretrain_info is not None:
        doc["pretraining"] = pretrain_info
    if synthetic and pooled_slices is not None:
        doc["by_lesion"] = _by_lesion(pooled_slices, probs, plan, cfg)
    if synthetic and cfg.task.kind == "segmentation":
        doc["by_lesion"] = _dice_by_lesion(folds, plan)
        doc["bootstrap"]["resampled"] = "images"
    elif synthetic:
        doc["bootstrap"]["resampled"] = "images"
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_bundle(tmp / "bundle", config=cfg, preprocessor=tab, image_preprocessor=pre, models=models, metadata={
            "primary_model": plan.primary,
            "comparisons": [f"{a} - {b}" for a, b in plan.comparisons],
            "id_column": "patient_id",
            "classes": None,
            "training_data": _describe(all_cases),
            "data_source": data.provenance,
            "metrics": results,
            "notes": notes,
            "intended_use": cfg.description or f"{cfg.task.kind} of 2-D image slices; research use",
        })
        write_json(tmp / "metrics.json", doc)
        echo("writing report.html")
        write_image_report(tmp / "report.html", title=f"{cfg.name}: {cfg.task.kind} of image slices", doc=doc,
                           examples=_examples(folds, cfg), histories=_histories(folds),
                           outputs=None if pooled_slices is None else {"y": pooled_slices.y, "probabilities": probs})
    return RunResult(out_dir, doc, out_dir / "bundle", models, None)


def _refit(cfg: RunConfig, plan: catalogue.ModelPlan, cases: Sequence[ImageCase], *,
           pretrained: tuple[dict, dict] | None, progress: bool
           ) -> tuple[dict[str, Any], ImagePreprocessor, TabularPreprocessor | None]:
    pre = image_preprocessor(cfg).fit([c.volume for c in cases], [_modality(c.volume) for c in cases])
    tab = _tabular_preprocessor(cfg, cases)
    S = slices_of(cases, pre, cfg, tabular=tab)
    return {n: _fit_one(cfg, n, S, pretrained=pretrained, progress=progress) for n in plan.names}, pre, tab


def _by_lesion(S: Slices, probs: dict[str, np.ndarray], plan: catalogue.ModelPlan, cfg: RunConfig) -> dict:
    """Synthetic sets: AUROC of each model for positives of each radius / contrast tertile against all negatives."""
    out: dict[str, Any] = {}
    for key in ("_radius_px", "_contrast"):
        if key not in S.extra:
            continue
        values = S.extra[key].astype(float)
        pos = S.y == 1
        edges = np.quantile(values[pos], [0, 1 / 3, 2 / 3, 1]) if pos.any() else []
        bands = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            rows = (~pos) | (pos & (values >= lo) & (values <= hi))
            sub = S.take(np.flatnonzero(rows))
            units = np.array([f"{g}/{i}" for g, i in zip(sub.groups, sub.index, strict=True)])  # images
            res, _ = score_slice_classifiers({n: probs[n][rows] for n in plan.names}, sub.y, units,
                                             n_boot=max(cfg.evaluation.bootstrap // 4, 1), level=cfg.evaluation.level,
                                             seed=cfg.seed)
            bands.append({"low": float(lo), "high": float(hi), "n_positive": int(sub.y.sum()),
                          "auroc": {n: res[n]["auroc"] for n in plan.names}})
        out[key.strip("_")] = bands
    return out


def _dice_by_lesion(folds: Sequence[FoldResult], plan: catalogue.ModelPlan) -> dict:
    """Synthetic segmentation: mean Dice of each model by lesion radius and contrast tertile."""
    out: dict[str, Any] = {}
    for key in ("_radius_px", "_contrast"):
        rows = []
        for f in folds:
            for r in np.flatnonzero(f.slices.y == 1):
                if key in f.slices.extra:
                    ident = f"{f.slices.groups[r]}/{int(f.slices.index[r])}"
                    rows.append((float(f.slices.extra[key][r]), {n: f.dice[n][ident] for n in plan.names}))
        if not rows:
            continue
        values = np.array([v for v, _ in rows])
        edges = np.quantile(values, [0, 1 / 3, 2 / 3, 1])
        bands = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            pick = [d for v, d in rows if lo <= v <= hi]
            bands.append({"low": float(lo), "high": float(hi), "n_positive": len(pick),
                          "dice": {n: float(np.mean([d[n] for d in pick])) for n in plan.names}})
        out[key.strip("_")] = bands
    return out


def _examples(folds: Sequence[FoldResult], cfg: RunConfig) -> dict[str, list[dict]]:
    """Overlay figures for the report: the highest- and lowest-Dice segmentations, or Grad-CAM on lesion slices
    the classifier got right (p above the threshold) and wrong."""
    out: dict[str, list[dict]] = {}
    if cfg.task.kind == "segmentation":
        items = sorted((e for f in folds for e in f.examples), key=lambda e: -e["dice"])
        items = [{k: v for k, v in e.items() if k != "dice"} for e in items]
        out["highest Dice"] = items[:4]
        out["lowest Dice"] = items[::-1][:4]
        return out
    right, wrong = [], []
    primary = cfg.models.primary
    for f in folds:
        if not f.saliency:
            continue
        name = primary or next(iter(f.scores))
        for j, r in enumerate(f.saliency["rows"][:12]):
            p = float(f.scores[name][r])
            item = {"image": f.slices.X[r, f.slices.X.shape[1] // 2], "truth": f.slices.masks[r],  # type: ignore
                    "saliency": f.saliency["grad_cam"][j],
                    "caption": f"{f.slices.groups[r]} slice {int(f.slices.index[r])}: p={p:.2f}"}
            (right if p >= cfg.evaluation.threshold else wrong).append(item)
    out["lesion found (correct)"], out["lesion missed (wrong)"] = right[:4], wrong[:4]
    return out


def _histories(folds: Sequence[FoldResult]) -> dict[str, Any]:
    return folds[-1].histories if folds else {}


# ----- using a bundle ---------------------------------------------------------------------------------
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
        mask = pre.to_original(scores, volume) >= _threshold(est)
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


def predict_dicom_upload(bundle: Bundle, data: bytes, *, model: str | None = None) -> Any:
    """Score one uploaded DICOM file (the service): de-identified in memory before it is hashed or read, nothing
    written to disk. Returns a :class:`precimed.workflows.dicom_upload.DicomPrediction` (the de-identified file's
    SHA-256, the model used, one row per slice); the recipe lives in :mod:`precimed.workflows.dicom_upload`."""
    from precimed.workflows import dicom_upload

    return dicom_upload.predict_dicom_upload(bundle, data, model=model)


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
        area = (scores >= _threshold(est)).reshape(len(scores), -1).sum(axis=1)
        for r in np.argsort(-area, kind="stable")[:top_k]:
            rows.append({"slice": int(r), "model": name, "lesion_pixels_model_grid": int(area[r]),
                         "max_probability": float(scores[r].max())})
            figures[f"slice_{int(r):04d}.png"] = overlay_png(X[r, X.shape[1] // 2], pred=scores[r] >= _threshold(est),
                                                              saliency=scores[r], title=f"slice {int(r)} ({name})")
    else:
        if not hasattr(est, "net_"):
            raise ConfigError(f"model {name!r} has no network to explain with Grad-CAM; choose a CNN of the bundle")
        top = np.argsort(-scores, kind="stable")[:top_k]
        cam = grad_cam(est.net_, est.net_.cam_layer, X[top])
        occ = occlusion_map(lambda x: est.predict_proba(x)[:, 1], X[top], **_occlusion_grid(X.shape[-1]))
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
        per_model = {n: _case_dice(data.cases, pre, S, model_scores(bundle.models[n], n, S),
                                   _threshold(bundle.models[n])) for n in names}
        results, comparisons = score_segmenters(per_model, comparisons=pairs, n_boot=ev.bootstrap or 1,
                                                level=ev.level, seed=cfg.seed)
    else:
        probs = {n: model_scores(bundle.models[n], n, S) for n in names}
        results, comparisons = score_slice_classifiers(probs, S.y, S.groups, comparisons=pairs,
                                                       n_boot=ev.bootstrap or 1, level=ev.level, seed=cfg.seed)
    doc = {"task": cfg.task.kind, "run": cfg.name, "bundle": bundle.ref, "primary_model": bundle.primary,
           "view": "image", "split": {"kind": "external", "splits": 1, "unit": "patient"},
           "data": {"source": data.provenance, "all": _describe(data.cases, S)},
           "bootstrap": {"replicates": ev.bootstrap, "level": ev.level, "seed": cfg.seed, "resampled": "patients"},
           "models": results, "comparisons": comparisons, "notes": data.notes}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        write_json(tmp / "metrics.json", doc)
    return RunResult(out_dir, doc)


__all__ = ["ImageCase", "Slices", "evaluate_image_bundle", "explain_image_file", "load_image_data",
           "patient_splits", "predict_dicom_upload", "predict_image_file", "predict_volume", "slices_of",
           "train_imaging_from_config"]
