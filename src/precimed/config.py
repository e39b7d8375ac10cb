"""The run config: YAML parsed into pydantic models that reject unknown keys by name.

One file declares the data sources (a built-in cohort or a file, and an optional external test
source), harmonizing renames / derived columns / filters, the task, the features with units and
plausible ranges, the split, preprocessing, models, training and evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from precimed import expressions
from precimed.errors import ConfigError
from precimed.limits import read_user_text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """Where rows come from, and how they are harmonized before typing."""

    dataset: str | None = None
    path: Path | None = None
    filter: str | None = None
    rename: dict[str, str] = {}
    derive: dict[str, str] = {}

    @model_validator(mode="after")
    def _one_origin(self) -> SourceConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of 'dataset' (a built-in cohort) or 'path' (a CSV/Parquet/JSON file)")
        places = [("filter", self.filter)] if self.filter else []
        for place, text in places + [(f"derived column {k!r}", v) for k, v in self.derive.items()]:
            try:
                expressions.parse(text, where=place)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    @property
    def label(self) -> str:
        """A short human name: the dataset name or the file name."""
        return self.dataset if self.dataset is not None else str(self.path)


class DataConfig(_Strict):
    train: SourceConfig
    test: SourceConfig | None = None


TaskKind = Literal["binary", "multiclass", "regression", "survival", "segmentation"]


class TaskConfig(_Strict):
    """What is predicted: a label, a number, or (time, event)."""

    kind: TaskKind
    target: str | None = None
    positive: str | int | float | bool | None = None
    classes: list[str] | None = None
    time: str | None = None
    event: str | None = None
    time_unit: str = "days"
    censor_at: float | None = Field(default=None, gt=0)
    horizons: list[float] = []
    treatment: str | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> TaskConfig:
        if self.kind == "survival":
            if not (self.time and self.event):
                raise ValueError("a survival task needs 'time' and 'event' columns")
            if not self.horizons:
                raise ValueError("a survival task needs 'horizons' (times at which AUC and Brier are reported)")
            if any(h <= 0 for h in self.horizons):
                raise ValueError(f"horizons must be positive, got {self.horizons}")
        elif self.kind == "segmentation":
            if self.target is not None:
                raise ValueError("a segmentation task reads its masks from the images: remove 'target'")
        elif not self.target:
            raise ValueError(f"a {self.kind} task needs a 'target' column")
        return self

    @property
    def label_columns(self) -> list[str]:
        if self.kind == "segmentation":
            return []
        return [self.time, self.event] if self.kind == "survival" else [self.target]  # type: ignore[list-item]


FeatureKind = Literal["numeric", "binary", "categorical", "ordinal", "genotype"]


class FeatureConfig(_Strict):
    """One input feature: its kind, unit and plausible range."""

    name: str
    kind: FeatureKind = "numeric"
    unit: str | None = None
    range: tuple[float, float] | None = None
    log: bool = False
    categories: list[str | int | float] | None = None
    positive: list[str | int | float | bool] | None = None
    alleles: list[str] | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> FeatureConfig:
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError(f"feature {self.name!r}: range low {self.range[0]} > high {self.range[1]}")
        if self.kind == "ordinal" and not self.categories:
            raise ValueError(f"ordinal feature {self.name!r} needs 'categories' in their order")
        if self.kind == "genotype" and not self.alleles:
            raise ValueError(f"genotype feature {self.name!r} needs 'alleles' (e.g. [E2, E3, E4])")
        if self.log and self.kind != "numeric":
            raise ValueError(f"feature {self.name!r}: 'log' applies to numeric features only")
        if self.range is not None and self.kind not in ("numeric", "ordinal"):
            raise ValueError(f"feature {self.name!r}: 'range' applies to numeric features only")
        return self


class SplitConfig(_Strict):
    """stratified: random split stratified on the outcome; grouped: no patient on both sides;
    external: train on data.train, test on data.test; leave_one_patient_out (imaging runs): every patient is the
    test set once, the others train, and the bundle's models are refit on every patient."""

    kind: Literal["stratified", "grouped", "external", "leave_one_patient_out"] = "stratified"
    test_fraction: float = Field(default=0.25, gt=0, lt=1)
    group: str | None = None


class PreprocessConfig(_Strict):
    impute: Literal["median", "mean"] = "median"
    missing_indicators: bool = True
    scale: Literal["standard", "robust", "none"] = "standard"


class MLPConfig(_Strict):
    hidden: list[int] = [64, 32]
    dropout: float = Field(default=0.1, ge=0, lt=1)
    activation: Literal["relu", "gelu", "tanh", "elu", "selu", "leaky_relu"] = "relu"
    batch_norm: bool = False
    ensemble: int = Field(default=1, ge=1, le=50)

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h <= 0 for h in v):
            raise ValueError(f"hidden sizes must be positive, got {v}")
        return v


class GBMConfig(_Strict):
    n_estimators: int = Field(default=500, ge=1)
    learning_rate: float = Field(default=0.03, gt=0)
    num_leaves: int = Field(default=8, ge=2)
    min_child_samples: int = Field(default=20, ge=1)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    reg_lambda: float = Field(default=1.0, ge=0)


SequenceKind = Literal["gru", "lstm", "cnn", "transformer"]


class SequenceModelConfig(_Strict):
    """Sequence nets of a sequence run (``sequence:`` set): which kinds, and their shared architecture."""

    kinds: list[SequenceKind] = Field(default=["gru", "lstm", "cnn", "transformer"], min_length=1)
    hidden: int = Field(default=32, ge=1)
    layers: int = Field(default=1, ge=1, le=8)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    kernel_size: int = Field(default=3, ge=2)
    heads: int = Field(default=2, ge=1)
    head_hidden: int = Field(default=16, ge=0)
    ensemble: int = Field(default=1, ge=1, le=50)

    @model_validator(mode="after")
    def _consistent(self) -> SequenceModelConfig:
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"kinds listed twice: {self.kinds}")
        if "transformer" in self.kinds and self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by heads={self.heads} for the transformer")
        return self


class ImageCNNConfig(_Strict):
    """The image classifier (``resnet`` and its variants): a small ResNet-style 2-D CNN; with tabular features
    (``fusion``) its image embedding is joined with an embedding of the run's features."""

    widths: list[int] = Field(default=[16, 32, 64], min_length=1, max_length=6)
    blocks_per_stage: int = Field(default=1, ge=1, le=4)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    tabular_hidden: int = Field(default=16, ge=1)
    batch_size: int = Field(default=32, ge=2)

    @field_validator("widths")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(w <= 0 or w > 512 for w in v):
            raise ValueError(f"widths must lie in [1, 512], got {v}")
        return v


class UNetConfig(_Strict):
    """The U-Net segmenter (MONAI's UNet, 2-D), trained with Dice + cross-entropy."""

    channels: list[int] = Field(default=[16, 32, 64, 128], min_length=2, max_length=6)
    num_res_units: int = Field(default=1, ge=0, le=4)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    lesion_weight: float | Literal["balanced"] = "balanced"
    batch_size: int = Field(default=16, ge=2)

    @field_validator("channels")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(c <= 0 or c > 512 for c in v):
            raise ValueError(f"channels must lie in [1, 512], got {v}")
        return v


class PixelGBMConfig(_Strict):
    """The per-pixel LightGBM segmentation baseline on intensity / local-texture features."""

    n_estimators: int = Field(default=200, ge=1, le=5000)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=31, ge=2)
    max_pixels: int = Field(default=200_000, ge=1000)


class ModelsConfig(_Strict):
    """Which models a run trains, which one is primary, which pairs it compares, and each model's settings.

    ``names`` lists the models (any number of deep ones among them; names from the model catalogue,
    ``precimed.train.catalogue``); without it a run trains ``mlp`` (a sequence run: ``sequence.kinds``)
    plus ``baselines`` or the task's default baselines. ``primary`` (default: the first deep model) is the
    model predictions, explanations and plans use unless told otherwise. ``compare`` lists paired
    comparisons as ``"a - b"`` (default: the primary versus each baseline).

    Settings sections are keyed by model: ``mlp``, ``gbm`` and ``sequence`` are typed here; any other
    key (e.g. ``resmlp``) is a catalogue model's settings section, checked by the catalogue, which
    refuses an unknown name with the list of choices.
    """

    model_config = ConfigDict(extra="allow")

    names: list[str] | None = Field(default=None, min_length=1)
    primary: str | None = None
    compare: list[str] | None = None
    baselines: list[str] | None = None
    mlp: MLPConfig = MLPConfig()
    gbm: GBMConfig = GBMConfig()
    sequence: SequenceModelConfig | None = None


SEARCH_STORAGE_SCHEMES = ("postgresql", "postgresql+psycopg", "sqlite")


def mask_url(url: str) -> str:
    """A database URL with its password replaced by ***: postgresql://user:***@host/db (never shows a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, host = rest.rsplit("@", 1)  # the last '@' ends the credentials: if in doubt, mask more, not less
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


class SearchConfig(_Strict):
    """Optuna search over the MLP's shape and training settings, on an inner validation split only.

    With `storage` (a SQLAlchemy URL: postgresql://user:password@host/db, or sqlite:///search.db on one machine)
    the search runs in a shared Optuna study, so several `precimed train` processes or machines split its
    trials; it stops when the study holds `trials` completed trials in total.
    """

    trials: int = Field(default=20, ge=1, le=500)
    depth: tuple[int, int] = (1, 3)
    width: tuple[int, int] = (16, 128)
    dropout: tuple[float, float] = (0.0, 0.5)
    lr: tuple[float, float] = (1e-4, 1e-2)
    weight_decay: tuple[float, float] = (1e-6, 1e-1)
    # excluded from every dump (the bundle's metadata, metrics.json): the URL may hold a password
    storage: str | None = Field(default=None, exclude=True, repr=False)
    study: str | None = Field(default=None, min_length=1, max_length=200)

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    @field_validator("storage")
    @classmethod
    def _storage_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in SEARCH_STORAGE_SCHEMES:
            raise ValueError(f"{mask_url(url)!r} is not a supported search storage: give a URL whose scheme is "
                             f"{', '.join(SEARCH_STORAGE_SCHEMES)}, e.g. postgresql://user:password@host:5432/db "
                             "or sqlite:///search.db")
        if scheme == "sqlite" and url.partition("://")[2].strip("/") in ("", ":memory:"):
            raise ValueError(f"{url!r}: an in-memory SQLite study is not shared between processes; "
                             "give a file, e.g. sqlite:///search.db")
        return url

    @property
    def masked_storage(self) -> str | None:
        """The storage URL with its password masked, for messages, logs and metrics.json."""
        return None if self.storage is None else mask_url(self.storage)


class PrivacyConfig(_Strict):
    """DP-SGD (Opacus) for the MLP: the (ε, δ) guarantee covers the network weights."""

    epsilon: float = Field(gt=0)
    delta: float | None = Field(default=None, gt=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    epochs: int | None = Field(default=None, ge=1)
    target_range: tuple[float, float] | None = None
    accountant: Literal["rdp", "prv", "gdp"] = "rdp"


class TrainingConfig(_Strict):
    optimizer: Literal["sgd", "adam", "adamw", "adagrad", "rmsprop"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=1e-4, ge=0)
    batch_size: int = Field(default=256, ge=2)
    max_epochs: int = Field(default=200, ge=1)
    patience: int = Field(default=20, ge=1)
    lr_schedule: Literal["none", "cosine", "step", "plateau"] = "none"
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    class_weight: Literal["none", "balanced"] = "none"
    progress: bool = True
    search: SearchConfig | None = None
    privacy: PrivacyConfig | None = None


class SubgroupConfig(_Strict):
    """A column to report subgroups by: 'age' is banded by decade; numeric columns with many values by quartile."""

    column: str
    labels: dict[str, str] | None = None  # e.g. {"0": "female", "1": "male"}


class EvaluationConfig(_Strict):
    bootstrap: int = Field(default=1000, ge=0)
    threshold: float = Field(default=0.5, gt=0, lt=1)
    level: float = Field(default=0.95, gt=0, lt=1)
    subgroups: list[str | SubgroupConfig] | None = None  # None: age and sex when the data have them
    min_subgroup: int = Field(default=30, ge=5)
    explain: int = Field(default=200, ge=0)  # patients whose SHAP values make the report's importance plots


class UncertaintyConfig(_Strict):
    """Per-patient uncertainty (docs/uncertainty.md): ``calibration_fraction`` of the training rows is held out
    by patient before any fitting (stratified on the outcome for classification and survival), and each
    bundled model gets split-conformal sets / intervals at ``level`` fitted on those rows."""

    level: float = Field(default=0.9, gt=0, lt=1)
    #: at most half: the models must keep most of the training rows (the inner validation split and early
    #: stopping need rows of every class)
    calibration_fraction: float = Field(default=0.2, gt=0, le=0.5)


class SequenceConfig(_Strict):
    """Longitudinal inputs and the landmark design of a sequence run (``precimed train`` with ``sequence:``).

    Each patient's observations up to the landmark (at or before it) are put on a grid of ``bins`` bins
    of width ``step`` ending at the landmark; only patients still at risk at the landmark are kept, and
    their outcome time (task.time, and task.censor_at and task.horizons) counts from the landmark.
    ``features`` of the run are the static features, read from each patient's first row.

    The observations come from the rows of ``data.train`` (a visit table: one row per visit, ``time``
    the visit time, one column per variable) or, with ``observations``, from a long-format file
    (patient_id, time, variable, value, unit; the patient table is then ``data.train``).
    """

    time: str = "time"
    landmark: float = Field(gt=0)
    step: float = Field(gt=0)
    bins: int = Field(default=8, ge=1, le=1000)
    max_carry: float | None = Field(default=None, ge=0)
    aggregate: Literal["last", "mean"] = "last"
    variables: list[FeatureConfig] = Field(min_length=1)
    analytes: dict[str, str] = {}
    source_units: dict[str, str] = {}
    observations: Path | None = None
    exit_time: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SequenceConfig:
        names = [v.name for v in self.variables]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variables listed twice: {dupes}")
        wrong = [v.name for v in self.variables if v.kind not in ("numeric", "binary")]
        if wrong:
            raise ValueError(f"longitudinal variables must be numeric or binary; {wrong} are not")
        for key in ("analytes", "source_units"):
            unknown = sorted(set(getattr(self, key)) - set(names))
            if unknown:
                raise ValueError(f"{key} names {unknown}, which are not among the variables {names}")
        if self.time in names:
            raise ValueError(f"the time column {self.time!r} cannot also be a variable")
        return self


class EffectsConfig(_Strict):
    """The ``effects:`` section of a run config (unknown keys are refused)."""

    control: str | int | float | bool
    arms: list[str | int | float | bool] | None = None
    horizon: float | None = Field(default=None, gt=0)
    measure: Literal["rmst", "survival", "risk", "mean"] | None = None
    higher_is_better: bool | None = None
    propensity: Literal["known", "logistic"] = "logistic"
    known_probabilities: dict[str | int | float | bool, float] | None = None
    learners: list[Literal["t", "dr"]] = Field(default=["dr", "t"], min_length=1)
    base: str = "mlp"  # a catalogue model that takes a task: mlp, resmlp, gbm
    bootstrap: int = Field(default=30, ge=0, le=500)
    folds: int = Field(default=5, ge=2, le=20)
    inner_folds: int = Field(default=2, ge=2, le=10)
    clip: float = Field(default=0.01, ge=0, lt=0.5)
    overlap_bounds: tuple[float, float] = (0.05, 0.95)
    policy_bootstrap: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> EffectsConfig:
        if self.propensity == "known" and not self.known_probabilities:
            raise ValueError("propensity 'known' needs known_probabilities, e.g. {Obs: 0.333, Lev: 0.333, ...}")
        if self.propensity == "logistic" and self.known_probabilities:
            raise ValueError("known_probabilities are given: set propensity to 'known' (or remove them)")
        if self.known_probabilities and any(p <= 0 or p >= 1 for p in self.known_probabilities.values()):
            raise ValueError(f"known probabilities must lie in (0, 1); got {self.known_probabilities}")
        if len(set(self.learners)) != len(self.learners):
            raise ValueError(f"learners listed twice: {self.learners}")
        lo, hi = self.overlap_bounds
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"overlap_bounds must satisfy 0 <= low < high <= 1; got {self.overlap_bounds}")
        return self



class AugmentConfig(_Strict):
    """Augmentation of training images only (never of validation, test or scored images)."""

    flip: bool = True
    rotate_degrees: float = Field(default=10.0, ge=0, le=45)
    intensity_jitter: float = Field(default=0.1, ge=0, le=1)
    noise: float = Field(default=0.0, ge=0, le=1)


class SyntheticLesionsConfig(_Strict):
    """Synthetic lesions on real anatomy (``data.train.dataset: synthetic_lesions``): known masks for checks
    real data cannot give. The backgrounds are real slices; the lesions and their masks are made up."""

    n: int = Field(default=600, ge=20, le=20000)
    radius_px: tuple[float, float] = (2.0, 8.0)
    contrast: tuple[float, float] = (0.5, 3.0)
    positive_fraction: float = Field(default=0.5, gt=0, lt=1)
    texture: float = Field(default=0.3, ge=0, le=2)
    per_source: int = Field(default=40, ge=1, le=1000)

    @model_validator(mode="after")
    def _ranges(self) -> SyntheticLesionsConfig:
        for name in ("radius_px", "contrast"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {[lo, hi]}")
        return self


class PretrainConfig(_Strict):
    """Pretraining of the image classifier before fine-tuning on the run's own labelled cases.

    The network is first trained on synthetic lesions inserted into real anatomy (``source: synthetic_lesions``,
    labels known by construction), then fine-tuned on the training patients of each split: ``freeze`` lists
    parameter groups kept fixed (``stem``, ``stage1``.., or ``backbone``), ``backbone_lr`` a smaller learning
    rate for the unfrozen backbone. The run reports the fine-tuned model beside the same net trained from
    scratch and the pretrained net applied without fine-tuning, on the same patient splits.
    """

    source: Literal["synthetic_lesions"] = "synthetic_lesions"
    synthetic: SyntheticLesionsConfig = SyntheticLesionsConfig()
    max_epochs: int = Field(default=15, ge=1)
    freeze: list[str] = []
    backbone_lr: float | None = Field(default=None, gt=0)


class ImagesConfig(_Strict):
    """The image inputs of an imaging run (``precimed train`` with ``images:``).

    ``data.train`` names a built-in image set (``dataset: pyradiomics`` or ``synthetic_lesions``) or a manifest
    table (``path``: columns ``patient_id``, ``image`` and optional ``mask``, ``label`` and tabular features; image
    paths relative to the manifest's folder). Each volume is cut into 2-D slices (``context`` neighbouring slices
    each side as extra channels: 2.5-D), resampled in-plane to ``spacing`` mm, centre-cropped / padded to
    ``size``, windowed and normalised with intensity statistics fitted on the training images only.
    ``label`` names the slice label: ``lesion_present`` (any mask pixel on the slice) or a manifest column.
    """

    spacing: tuple[float, float] | None = None
    size: tuple[int, int] = (96, 96)
    window: str | tuple[float, float] | None = "fit"
    normalize: Literal["zscore", "none"] = "zscore"
    context: int = Field(default=0, ge=0, le=3)
    per_modality: bool = True
    augment: AugmentConfig = AugmentConfig()
    synthetic: SyntheticLesionsConfig | None = None
    pretrain: PretrainConfig | None = None
    max_slices_per_patient: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _sizes(self) -> ImagesConfig:
        if any(s < 16 or s > 1024 for s in self.size):
            raise ValueError(f"size must lie in [16, 1024] pixels per side, got {list(self.size)}")
        if self.spacing is not None and any(s <= 0 or s > 20 for s in self.spacing):
            raise ValueError(f"spacing must lie in (0, 20] mm, got {list(self.spacing)}")
        if isinstance(self.window, tuple) and self.window[1] <= 0:
            raise ValueError(f"window width must be positive, got {self.window[1]}")
        return self


class RunConfig(_Strict):
    name: str
    description: str = ""
    seed: int = 0
    patient_id: str | None = None
    data: DataConfig
    task: TaskConfig
    features: list[FeatureConfig] = []
    split: SplitConfig = SplitConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    models: ModelsConfig = ModelsConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    effects: EffectsConfig | None = None
    sequence: SequenceConfig | None = None
    images: ImagesConfig | None = None
    uncertainty: UncertaintyConfig | None = None

    @model_validator(mode="after")
    def _uncertainty_consistent(self) -> RunConfig:
        if self.uncertainty is not None and (self.images is not None or self.sequence is not None
                                             or self.effects is not None):
            raise ValueError("'uncertainty:' is available for tabular runs (not with 'images:', 'sequence:' or "
                             "'effects:')")
        if self.uncertainty is not None and self.training.privacy is not None:
            raise ValueError("'uncertainty:' with training.privacy: the calibration grid stores real patients' "
                             "scores and outcome steps that the DP guarantee does not cover")
        return self

    @model_validator(mode="after")
    def _images_consistent(self) -> RunConfig:
        if self.images is None:
            if not self.features:
                raise ValueError("features: list at least one feature")
            if self.task.kind == "segmentation":
                raise ValueError("a segmentation task needs an 'images:' section")
            if self.split.kind == "leave_one_patient_out":
                raise ValueError("split kind 'leave_one_patient_out' is for imaging runs (with 'images:')")
            return self
        if self.sequence is not None or self.effects is not None:
            raise ValueError("an imaging run cannot also have 'sequence:' or 'effects:'")
        if self.task.kind not in ("binary", "segmentation"):
            raise ValueError(f"an imaging run supports binary (slice label) and segmentation tasks, not "
                             f"{self.task.kind}")
        if self.split.kind == "stratified":
            raise ValueError("an imaging run splits by patient, never by slice: set split.kind to 'grouped', "
                             "'leave_one_patient_out' or 'external'")
        if self.training.privacy is not None or self.training.search is not None:
            raise ValueError("training.privacy and training.search are not available for imaging runs yet")
        if self.images.pretrain is not None and self.task.kind != "binary":
            raise ValueError("images.pretrain applies to the image classifier (a binary task)")
        return self

    @model_validator(mode="after")
    def _sequence_consistent(self) -> RunConfig:
        if self.sequence is None:
            return self
        names = {v.name for v in self.sequence.variables}
        clash = sorted(names & ({f.name for f in self.features} | set(self.task.label_columns)))
        if clash:
            raise ValueError(f"sequence variables {clash} cannot also be static features or the outcome")
        if self.task.kind == "multiclass":
            raise ValueError("a sequence run supports binary, regression and survival tasks")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features listed twice: {dupes}")
        clash = set(names) & set(self.task.label_columns)
        if clash:
            raise ValueError(f"{sorted(clash)} cannot be both a feature and the outcome")
        if self.split.kind == "external" and self.data.test is None:
            raise ValueError("split kind 'external' needs data.test")
        if self.split.kind != "external" and self.data.test is not None:
            raise ValueError("data.test is given: set split.kind to 'external' (or remove data.test)")
        if self.effects is not None and not self.task.treatment:
            raise ValueError("an 'effects:' section needs task.treatment (the column holding the arm)")
        if self.training.privacy is not None:
            if self.task.kind == "survival":
                raise ValueError("training.privacy: DP-SGD is not available for survival (Cox) models: the loss ties "
                                 "each patient to a risk set, so per-patient clipping does not bound influence")
            if self.training.search is not None:
                raise ValueError("training.privacy and training.search together would spend privacy unaccounted")
        return self


def _describe(error: ValidationError, path: Path | str) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown key '{where}' (check the spelling)")
        else:
            msg = item["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {msg}")
    return f"{path}: " + "; ".join(parts)


def parse_config(data: Any, *, source: str = "<config>", base_dir: Path | None = None) -> RunConfig:
    """Validate a mapping as a RunConfig; file paths are resolved against `base_dir`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    if base_dir is not None:
        for src in (cfg.data.train, cfg.data.test):
            if src is not None and src.path is not None and not src.path.is_absolute():
                src.path = (base_dir / src.path).resolve()
        if cfg.sequence is not None and cfg.sequence.observations is not None \
                and not cfg.sequence.observations.is_absolute():
            cfg.sequence.observations = (base_dir / cfg.sequence.observations).resolve()
    return cfg


def load_config(path: Path | str) -> RunConfig:
    """Read a YAML run config; every problem is a ConfigError naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(read_user_text(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, source=str(path), base_dir=path.parent)
