"""The cases of an imaging run and their 2-D slices: what the imaging recipes share.

Cases come from a built-in image set (``pyradiomics``; ``synthetic_lesions``: lesions with known masks inserted into
real anatomy), a manifest table (``patient_id``, ``image``, optional ``mask``, ``label`` and tabular features) or a
user's local picture collection (MedMNIST ``.npz``, MedNIST class folders). :func:`slices_of` cuts them into
preprocessed 2-D (or 2.5-D) slices with labels and patient groups; :func:`model_scores` runs a catalogue model on
slices. Used by the training recipe (``imaging.py``) and by the recipes that serve a bundle (``image_serving.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.config import RunConfig, SourceConfig, SyntheticLesionsConfig
from precimed.data import image_sets
from precimed.data.image_collections import read_class_folders, read_medmnist
from precimed.data.images import ImageVolume, read_image, read_image_table, read_mask
from precimed.data.synthetic_lesions import background_slices, make_lesion_set
from precimed.errors import ConfigError, DataError
from precimed.evaluate.segmentation import dice
from precimed.preprocess import TabularPreprocessor
from precimed.preprocess.images import ImagePreprocessor
from precimed.train import catalogue
from precimed.workflows._run import Echo, quiet

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



# ----- scoring slices with a catalogue model ----------------------------------------------------------
def model_scores(model: Any, name: str, S: Slices) -> np.ndarray:
    """P(lesion present) per slice (binary) or the lesion probability map (segmentation)."""
    if catalogue.spec(name).tasks == frozenset({"segmentation"}):
        return np.asarray(model.predict_proba(S.X), dtype=np.float32)
    if catalogue.spec(name).extra.get("tabular"):
        return np.asarray(model.predict_proba(S.X, tabular=S.tabular))[:, 1]
    return np.asarray(model.predict_proba(S.X))[:, 1]


def threshold_of(model: Any) -> float:
    return float(getattr(model, "threshold_", 0.5) or 0.5)


def describe_cases(cases: Sequence[ImageCase], S: Slices | None = None) -> dict[str, Any]:
    modalities: dict[str, int] = {}
    for c in cases:
        modalities[str(c.volume.modality or "unknown")] = modalities.get(str(c.volume.modality or "unknown"), 0) + 1
    out: dict[str, Any] = {"patients": len({c.case for c in cases}), "images": len(cases),
                           "slices": int(sum(c.volume.array.shape[0] for c in cases)), "modalities": modalities}
    if S is not None:
        out |= {"slices_scored": int(len(S.y)), "slices_with_lesion": int(S.y.sum())}
    return out


def case_dice(cases: Sequence[ImageCase], pre: ImagePreprocessor, S: Slices, maps: np.ndarray,
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


def occlusion_grid(size: int) -> dict[str, int]:
    """Occlusion patches of an eighth of the image, moved by half a patch: 15 × 15 positions at any size."""
    patch = max(4, size // 8)
    return {"patch": patch, "stride": max(2, patch // 2)}
