"""The model catalogue: the one table of every model precimed can train.

Each entry says what a model is (its estimator class), which tasks it supports, which input view it
reads (``tabular`` rows of encoded features, ``sequence`` packed patient histories, ``image``), its
role (``deep``: a model that must earn its place; ``baseline``: the strong non-deep comparator), the
settings section it reads from the run config (``models.<name>`` unless shared), and how it is built
from a run config. Config checks, the training and sequence recipes, bundle loading and the
treatment-effect learners all read this table; nothing else names models.

Adding a model is one estimator class (scikit-learn contract plus ``to_state`` / ``from_state``) and one
entry in ``CATALOGUE`` below. ``tests/train/test_catalogue.py`` proves it.

Updated models (``UPDATED``) are the one exception: a wrapper made from an already fitted model by
``precimed.train.updating`` (recalibration) is never trained from a run config, so it has no tasks, settings
or role a run could choose, and is not a ``CATALOGUE`` entry; bundles still find its class by name
(:func:`class_named` reads both tables).

A run's model plan (:func:`plan_models`) is checked here rather than in ``config.py``: the config
layer holds only the structure of a run, the catalogue knows the models, their tasks and settings.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from precimed.config import (
    GBMConfig,
    ImageCNNConfig,
    MLPConfig,
    PixelGBMConfig,
    RunConfig,
    SequenceModelConfig,
    UNetConfig,
)
from precimed.errors import ConfigError
from precimed.models.baselines import CoxPHBaseline, GBMModel, LinearBaseline, LogisticBaseline
from precimed.models.image_baselines import PixelGBMSegmenter, RadiomicsLogistic, ThresholdSegmenter
from precimed.preprocess.images import Augment
from precimed.train.estimators import NeuralRiskModel, ResidualRiskModel
from precimed.train.imaging import ImageClassifier, ImageSegmenter
from precimed.train.sequence import SequenceRiskModel
from precimed.train.updating import RecalibratedModel

View = Literal["tabular", "sequence", "image"]
Role = Literal["deep", "baseline"]
ALL_TASKS = frozenset({"binary", "multiclass", "regression", "survival"})
#: baselines trained beside the deep models when a config names none (the task's classic comparators)
DEFAULT_BASELINES = {"binary": ["logistic", "gbm"], "multiclass": ["logistic", "gbm"],
                     "regression": ["linear", "gbm"], "survival": ["cox_ph", "gbm"]}
#: an imaging run's default baselines: radiomic-style features + logistic regression for the slice label,
#: intensity thresholding + connected components and per-pixel boosting for segmentation
IMAGE_BASELINES = {"binary": ["radiomics_logistic"], "segmentation": ["threshold", "pixel_gbm"]}
DEFAULT_DEEP = {"tabular": ["mlp"], "sequence": ["gru", "lstm", "cnn", "transformer"]}
IMAGE_DEEP = {"binary": ["resnet"], "segmentation": ["unet"]}


@dataclass(frozen=True)
class ModelSpec:
    """One catalogue entry.

    ``params(cfg, settings, context)`` returns the estimator's constructor arguments; ``settings`` is the
    validated settings section (an instance of ``settings_model``, or None) and ``context`` holds facts
    known only once the data are prepared (e.g. ``n_static`` for sequence nets).
    """

    name: str
    cls: type
    tasks: frozenset[str]
    view: View
    role: Role
    params: Callable[[RunConfig, Any, Mapping[str, Any]], dict[str, Any]]
    settings_model: type[BaseModel] | None = None
    settings_key: str | None = None  # the models.<key> section it reads; default: its own name
    summary: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def section(self) -> str:
        return self.settings_key or self.name

    def takes(self, parameter: str) -> bool:
        """Whether the estimator's constructor has this parameter."""
        return parameter in inspect.signature(self.cls.__init__).parameters


# ----- how each kind of model is built from a run config ------------------------------------------------
def _class_weight(cfg: RunConfig) -> str | None:
    return None if cfg.training.class_weight == "none" else cfg.training.class_weight


def _net_params(cfg: RunConfig, m: MLPConfig, _context: Mapping[str, Any]) -> dict[str, Any]:
    t = cfg.training
    return dict(task=cfg.task.kind, hidden=tuple(m.hidden), dropout=m.dropout, activation=m.activation,
                batch_norm=m.batch_norm, optimizer=t.optimizer, lr=t.lr, momentum=t.momentum,
                weight_decay=t.weight_decay, batch_size=t.batch_size, max_epochs=t.max_epochs, patience=t.patience,
                lr_schedule=t.lr_schedule, val_fraction=t.val_fraction, class_weight=_class_weight(cfg),
                ensemble=m.ensemble, random_state=cfg.seed, progress=t.progress)


def _sequence_params(kind: str) -> Callable[[RunConfig, Any, Mapping[str, Any]], dict[str, Any]]:
    def params(cfg: RunConfig, m: SequenceModelConfig, context: Mapping[str, Any]) -> dict[str, Any]:
        t = cfg.training
        return dict(task=cfg.task.kind, kind=kind, hidden=m.hidden, layers=m.layers, dropout=m.dropout,
                    kernel_size=m.kernel_size, heads=m.heads, head_hidden=m.head_hidden,
                    n_static=int(context.get("n_static", 0)), mask_channels=context.get("mask_channels"),
                    optimizer=t.optimizer, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                    batch_size=t.batch_size, max_epochs=t.max_epochs, patience=t.patience,
                    lr_schedule=t.lr_schedule, val_fraction=t.val_fraction, class_weight=_class_weight(cfg),
                    ensemble=m.ensemble, random_state=cfg.seed, progress=t.progress)
    return params


def _gbm_params(cfg: RunConfig, m: GBMConfig, _context: Mapping[str, Any]) -> dict[str, Any]:
    return dict(task=cfg.task.kind, **m.model_dump(), val_fraction=cfg.training.val_fraction,
                random_state=cfg.seed, class_weight=_class_weight(cfg))


def _image_training(cfg: RunConfig) -> dict[str, Any]:
    t = cfg.training
    augment = Augment.from_dict(cfg.images.augment.model_dump()) if cfg.images is not None else None
    return dict(optimizer=t.optimizer, lr=t.lr, weight_decay=t.weight_decay, max_epochs=t.max_epochs,
                patience=t.patience, val_fraction=t.val_fraction, augment=augment, random_state=cfg.seed,
                progress=t.progress)


def _cnn_params(variant: str) -> Callable[[RunConfig, Any, Mapping[str, Any]], dict[str, Any]]:
    """The image classifier; ``variant`` is scratch, fusion, finetuned or pretrained (see ``extra``)."""
    def params(cfg: RunConfig, m: ImageCNNConfig, _context: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(widths=tuple(m.widths), blocks_per_stage=m.blocks_per_stage, dropout=m.dropout,
                   tabular_hidden=m.tabular_hidden, batch_size=m.batch_size,
                   class_weight=_class_weight(cfg) or "balanced", **_image_training(cfg))
        pre = cfg.images.pretrain if cfg.images is not None else None
        if variant == "finetuned" and pre is not None:
            out.update(freeze=tuple(pre.freeze), backbone_lr=pre.backbone_lr)
        return out
    return params


def _unet_params(cfg: RunConfig, m: UNetConfig, _context: Mapping[str, Any]) -> dict[str, Any]:
    return dict(channels=tuple(m.channels), num_res_units=m.num_res_units, dropout=m.dropout,
                lesion_weight=m.lesion_weight, batch_size=m.batch_size, **_image_training(cfg))


_SEQUENCE_TASKS = frozenset({"binary", "regression", "survival"})
_SLICE = frozenset({"binary"})
_SEGMENTATION = frozenset({"segmentation"})
_SEQUENCE_NAMES = {"gru": "GRU", "lstm": "LSTM", "cnn": "causal dilated 1D CNN", "transformer": "Transformer encoder"}

CATALOGUE: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec("mlp", NeuralRiskModel, ALL_TASKS, "tabular", "deep", _net_params, MLPConfig,
              summary="feed-forward net (default 64-32), seeded ensemble"),
    ModelSpec("resmlp", ResidualRiskModel, ALL_TASKS, "tabular", "deep", _net_params, MLPConfig,
              summary="residual MLP with a linear (wide) skip path: starts as, and can stay, a regression"),
    *[ModelSpec(kind, SequenceRiskModel, _SEQUENCE_TASKS, "sequence", "deep", _sequence_params(kind),
                SequenceModelConfig, settings_key="sequence", summary=f"{label} over the patient's history")
      for kind, label in _SEQUENCE_NAMES.items()],
    ModelSpec("logistic", LogisticBaseline, frozenset({"binary", "multiclass"}), "tabular", "baseline",
              lambda cfg, _m, _c: {"class_weight": _class_weight(cfg)},
              summary="L2-penalised logistic regression"),
    ModelSpec("linear", LinearBaseline, frozenset({"regression"}), "tabular", "baseline", lambda cfg, _m, _c: {},
              summary="ordinary least squares"),
    ModelSpec("cox_ph", CoxPHBaseline, frozenset({"survival"}), "tabular", "baseline", lambda cfg, _m, _c: {},
              summary="Cox proportional hazards (lifelines), Breslow baseline"),
    ModelSpec("gbm", GBMModel, ALL_TASKS, "tabular", "baseline", _gbm_params, GBMConfig,
              summary="LightGBM gradient boosting (survival: Cox objective)"),
    ModelSpec("resnet", ImageClassifier, _SLICE, "image", "deep", _cnn_params("scratch"), ImageCNNConfig,
              settings_key="resnet", summary="small ResNet-style 2-D CNN (slice label), trained from scratch",
              extra={"pretrain": "none", "tabular": False}),
    ModelSpec("fusion", ImageClassifier, _SLICE, "image", "deep", _cnn_params("fusion"), ImageCNNConfig,
              settings_key="resnet", summary="the CNN's image embedding joined with the run's tabular features",
              extra={"pretrain": "none", "tabular": True}),
    ModelSpec("resnet_finetuned", ImageClassifier, _SLICE, "image", "deep", _cnn_params("finetuned"),
              ImageCNNConfig, settings_key="resnet",
              summary="the CNN pretrained (images.pretrain), then fine-tuned on the training patients",
              extra={"pretrain": "finetune", "tabular": False}),
    ModelSpec("resnet_pretrained", ImageClassifier, _SLICE, "image", "deep", _cnn_params("pretrained"),
              ImageCNNConfig, settings_key="resnet",
              summary="the pretrained CNN applied as it is, without fine-tuning (a reference)",
              extra={"pretrain": "only", "tabular": False}),
    ModelSpec("unet", ImageSegmenter, _SEGMENTATION, "image", "deep", _unet_params, UNetConfig,
              summary="2-D U-Net (MONAI), Dice + cross-entropy loss"),
    ModelSpec("radiomics_logistic", RadiomicsLogistic, _SLICE, "image", "baseline",
              lambda cfg, _m, _c: {"class_weight": _class_weight(cfg) or "balanced", "random_state": cfg.seed},
              summary="radiomic-style intensity / texture features + L2 logistic regression"),
    ModelSpec("threshold", ThresholdSegmenter, _SEGMENTATION, "image", "baseline", lambda cfg, _m, _c: {},
              summary="intensity threshold + connected components, fitted on training slices"),
    ModelSpec("pixel_gbm", PixelGBMSegmenter, _SEGMENTATION, "image", "baseline",
              lambda cfg, m, _c: {**m.model_dump(), "random_state": cfg.seed}, PixelGBMConfig,
              summary="LightGBM on per-pixel intensity and local-texture features"),
]}


#: models made from a fitted model (never from a run config), found by class name when a bundle is loaded
UPDATED: dict[str, type] = {"recalibrated": RecalibratedModel}


# ----- looking models up -------------------------------------------------------------------------------
def spec(name: str) -> ModelSpec:
    """The catalogue entry named ``name``; an unknown name is one line listing the choices."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose from {sorted(CATALOGUE)}") from None


def class_named(class_name: str) -> type | None:
    """The estimator class a bundle recorded by name (bundles store class names, never import paths)."""
    found = next((s.cls for s in CATALOGUE.values() if s.cls.__name__ == class_name), None)
    return found or next((cls for cls in UPDATED.values() if cls.__name__ == class_name), None)


def names(*, view: View | None = None, role: Role | None = None, task: str | None = None) -> list[str]:
    """Catalogue names, filtered by view, role and task."""
    return [s.name for s in CATALOGUE.values() if (view is None or s.view == view)
            and (role is None or s.role == role) and (task is None or task in s.tasks)]


def settings_for(cfg: RunConfig, name: str) -> Any:
    """The validated settings section a model reads (``models.<section>``), defaults when absent."""
    s = spec(name)
    if s.settings_model is None:
        return None
    raw = getattr(cfg.models, s.section, None)
    if raw is None:
        raw = (cfg.models.model_extra or {}).get(s.section)
    if isinstance(raw, s.settings_model):
        return raw
    try:
        return s.settings_model.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise ConfigError(f"{cfg.name}: models.{s.section}: {problems}") from None


def build(cfg: RunConfig, name: str, *, progress: bool = True, overrides: Mapping[str, Any] | None = None,
          **context: Any) -> Any:
    """An unfitted estimator for model ``name`` as the run config describes it."""
    s = spec(name)
    params = s.params(cfg, settings_for(cfg, name), context)
    if "progress" in params:
        params["progress"] = bool(params["progress"] and progress)
    params.update(overrides or {})
    return s.cls(**params)


def build_for_task(name: str, task: str, params: Mapping[str, Any] | None, seed: int) -> Any:
    """An unfitted estimator of model ``name`` for ``task`` with constructor ``params`` (effect learners' bases)."""
    s = spec(name)
    if task not in s.tasks or not s.takes("task"):
        usable = [n for n in CATALOGUE if task in CATALOGUE[n].tasks and CATALOGUE[n].takes("task")
                  and CATALOGUE[n].view == "tabular"]
        raise ConfigError(f"model {name!r} cannot serve as a {task} outcome model; choose from {usable}")
    kwargs = {k: v for k, v in dict(params or {}).items() if k not in ("task", "random_state")}
    return s.cls(task=task, random_state=seed, **kwargs)


# ----- a run's model plan ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelPlan:
    """Which models a run trains (in order), its primary model, and the paired comparisons it reports."""

    names: list[str]
    primary: str
    comparisons: list[tuple[str, str]]

    @property
    def deep(self) -> list[str]:
        return [n for n in self.names if CATALOGUE[n].role == "deep"]

    @property
    def baselines(self) -> list[str]:
        return [n for n in self.names if CATALOGUE[n].role == "baseline"]


def _parse_pair(text: str, where: str) -> tuple[str, str]:
    parts = [p.strip() for p in str(text).split(" - ")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{where}: comparison {text!r} must read 'model_a - model_b' (spaces around the minus)")
    return parts[0], parts[1]


def plan_models(cfg: RunConfig) -> ModelPlan:
    """Check the config's models against the catalogue and the task; return the plan a recipe trains.

    ``models.names`` lists the models (any number of deep ones); without it a run trains its view's
    default deep models plus ``models.baselines`` (or the task's default baselines). ``models.primary``
    defaults to the first deep model; ``models.compare`` (``"a - b"`` strings) defaults to the primary
    versus each baseline, and for a sequence run every deep model versus each baseline.
    """
    m, task = cfg.models, cfg.task.kind
    where = f"{cfg.name}: models"
    view: View = "image" if cfg.images is not None else "sequence" if cfg.sequence is not None else "tabular"
    if m.names is not None and m.baselines is not None:
        raise ConfigError(f"{where}: give either 'names' (every model to train) or 'baselines', not both")
    if m.names is not None:
        chosen = list(m.names)
    elif view == "image":
        chosen = IMAGE_DEEP[task] + list(m.baselines if m.baselines is not None else IMAGE_BASELINES[task])
    else:
        deep = list(m.sequence.kinds) if view == "sequence" and m.sequence is not None else DEFAULT_DEEP[view]
        for b in m.baselines or []:
            if b in CATALOGUE and CATALOGUE[b].role != "baseline":
                raise ConfigError(f"{where}.baselines: {b!r} is a deep model; list it under models.names")
        chosen = deep + list(m.baselines if m.baselines is not None else DEFAULT_BASELINES[task])
    dupes = sorted({n for n in chosen if chosen.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: listed twice: {dupes}")
    if not chosen:
        raise ConfigError(f"{where}: no model to train; name at least one of {names(task=task)}")
    for name in chosen:
        s = spec(name)
        if task not in s.tasks:
            raise ConfigError(f"{where}: {name!r} does not fit a {task} task; choose from {names(task=task)}")
        if view == "image" and s.view != "image" or view != "image" and s.view == "image":
            fitting = names(view=view, task=task)
            raise ConfigError(f"{where}: {name!r} reads {s.view} inputs, but this is a {view} run; "
                              f"its models are {fitting}")
        if view == "image" and s.extra.get("pretrain") in ("finetune", "only") \
                and (cfg.images is None or cfg.images.pretrain is None):
            raise ConfigError(f"{where}: {name!r} needs images.pretrain (how the CNN is pretrained)")
        if s.extra.get("tabular") and not cfg.features:
            raise ConfigError(f"{where}: {name!r} joins images with tabular features; list them under 'features'")
        if s.role == "deep" and s.view != view:
            fitting = names(view=view, role="deep", task=task)
            raise ConfigError(f"{where}: {name!r} reads {s.view} inputs, but this is a {view} run; "
                              f"its deep models are {fitting}")
        settings_for(cfg, name)  # validates the model's settings section
    for key in (m.model_extra or {}):
        if key not in CATALOGUE:
            raise ConfigError(f"{where}: unknown model settings {key!r}; choose from {sorted(CATALOGUE)}")
    deep = [n for n in chosen if CATALOGUE[n].role == "deep"]
    primary = m.primary or (deep[0] if deep else chosen[0])
    if primary not in chosen:
        raise ConfigError(f"{where}.primary: {primary!r} is not among the models trained {chosen}")
    if m.compare is not None:
        pairs = [_parse_pair(text, f"{where}.compare") for text in m.compare]
        for a, b in pairs:
            missing = [x for x in (a, b) if x not in chosen]
            if missing or a == b:
                raise ConfigError(f"{where}.compare: {a} - {b}: both must be different models among {chosen}")
    else:
        leads = deep if view == "sequence" else [primary]
        pairs = [(a, b) for a in leads for b in chosen if b != a and CATALOGUE[b].role == "baseline"]
    _check_privacy(cfg, primary)
    return ModelPlan(chosen, primary, pairs)


def _check_privacy(cfg: RunConfig, primary: str) -> None:
    """DP-SGD trains the primary model: a single tabular net without batch norm or class weights."""
    if cfg.training.privacy is None:
        return
    s = spec(primary)
    settings = settings_for(cfg, primary)
    others = [n for n in (cfg.models.names or []) if n != primary and CATALOGUE[n].role == "deep"]
    if others:
        raise ConfigError(f"{cfg.name}: training.privacy trains one deep model, the primary {primary!r}; "
                          f"remove {others} from models.names")
    if s.role != "deep" or s.view != "tabular":
        raise ConfigError(f"{cfg.name}: training.privacy trains the primary model, which must be a tabular deep "
                          f"net; {primary!r} is not")
    if getattr(settings, "ensemble", 1) > 1 or getattr(settings, "batch_norm", False) \
            or cfg.training.class_weight != "none":
        raise ConfigError(f"{cfg.name}: training.privacy needs models.{s.section}.ensemble 1, no batch_norm and "
                          "no class_weight")
