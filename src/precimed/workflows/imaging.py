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

Cases and slices come from ``image_cases.py``; ``image_serving.py`` predicts, explains and evaluates with such
bundles.
"""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from precimed.atomic import atomic_dir
from precimed.bundle import save_bundle
from precimed.config import RunConfig
from precimed.errors import ConfigError, DataError
from precimed.evaluate.image_report import write_image_report
from precimed.evaluate.image_scores import score_segmenters, score_slice_classifiers
from precimed.evaluate.segmentation import dice, pointing_game, random_saliency, saliency_iou
from precimed.jsonio import write_json
from precimed.models.saliency import grad_cam, occlusion_map
from precimed.preprocess import TabularPreprocessor
from precimed.preprocess.images import ImagePreprocessor
from precimed.train import catalogue
from precimed.train.imaging import ImageClassifier
from precimed.workflows._run import Echo, RunResult, check_out_dir, quiet
from precimed.workflows.image_cases import (
    PLUMBING_NOTE,
    SMALL_STUDY,
    ImageCase,
    Slices,
    _modality,
    _tabular_preprocessor,
    case_dice,
    describe_cases,
    image_preprocessor,
    load_image_data,
    model_scores,
    occlusion_grid,
    slices_of,
    synthetic_cases,
    threshold_of,
)


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


def _saliency(model: Any, S: Slices, *, seed: int) -> dict[str, Any]:
    """Grad-CAM and occlusion on positive slices: pointing game and IoU against random maps."""
    rows = np.flatnonzero((S.y == 1) & (S.masks.reshape(len(S.y), -1).max(axis=1) > 0)) if S.masks is not None \
        else np.array([], dtype=int)
    if len(rows) == 0 or not hasattr(model, "net_"):
        return {}
    X, masks = S.X[rows], S.masks[rows]  # type: ignore[index]
    cam = grad_cam(model.net_, model.net_.cam_layer, X)
    occ = occlusion_map(lambda x: model.predict_proba(x)[:, 1], X, **occlusion_grid(X.shape[-1]))
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
            dices[name] = (_image_dice(S_test, scores[name], threshold_of(m)) if synthetic
                           else case_dice(test, pre, S_test, scores[name], threshold_of(m)))
        primary_map = scores[plan.primary]
        if synthetic:
            for r in np.flatnonzero(S_test.y == 1)[:40]:
                ident = f"{S_test.groups[r]}/{int(S_test.index[r])}"
                examples.append({"image": S_test.X[r, S_test.X.shape[1] // 2], "truth": S_test.masks[r],  # type: ignore
                                 "pred": primary_map[r] >= threshold_of(models[plan.primary]),
                                 "caption": f"{ident}: Dice {dices[plan.primary][ident]:.2f}",
                                 "dice": dices[plan.primary][ident]})
        for c in ([] if synthetic else test):
            rows = np.flatnonzero(S_test.groups == c.case)
            area = S_test.masks[rows].reshape(len(rows), -1).sum(axis=1)  # type: ignore[union-attr]
            r = rows[int(np.argmax(area))]
            examples.append({"image": S_test.X[r, S_test.X.shape[1] // 2], "truth": S_test.masks[r],  # type: ignore
                             "pred": primary_map[r] >= threshold_of(models[plan.primary]),
                             "caption": f"{c.case} slice {int(S_test.index[r])}: Dice (case) "
                                        f"{dices[plan.primary][c.case]:.2f}", "dice": dices[plan.primary][c.case]})
    saliency = {}
    if cfg.task.kind == "binary" and S_test.masks is not None:
        saliency = _saliency(models[plan.primary], S_test, seed=cfg.seed)
    histories = {n: _plain_history(m.history_) for n, m in models.items() if getattr(m, "history_", None) is not None}
    return FoldResult(scores, S_test, dices, examples, saliency, histories), models, pre, tab


# ----- the recipe -------------------------------------------------------------------------------------
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
        "data": {"source": data.provenance, "all": describe_cases(all_cases, pooled_slices)},
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
            "training_data": describe_cases(all_cases),
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


__all__ = ["patient_splits", "pretrain_classifier", "train_imaging_from_config"]
