"""Non-deep image baselines the deep image models must beat, each with a JSON-safe state.

- ``ThresholdSegmenter``: an intensity threshold plus connected components, learned on training slices;
- ``PixelGBMSegmenter``: LightGBM on per-pixel intensity features (``pixel_features``);
- ``RadiomicsLogistic``: radiomic-style slice features (``slice_features``), standardised, into an
  L2-penalised logistic regression for "lesion present" per slice.

They keep the estimator contract of ``precimed.models.baselines`` (``__init__`` only stores its arguments,
``fit`` returns self, learned state ends in ``_``, ``to_state() -> (dict, blobs)`` / ``from_state``), take
images (N, C, H, W) float32 with masks (N, H, W) 0/1 or slice labels (N,), read the centre channel of a
2.5-D input, and refuse a wrong shape or non-finite values with a DataError. ``groups`` (the patient of each
slice) is accepted so every image model is called alike; these baselines have no inner split that needs it.
"""

from __future__ import annotations

from typing import Any, Self

import lightgbm as lgb
import numpy as np
from scipy import ndimage
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from precimed.errors import ArtifactError, ConfigError, DataError
from precimed.models.baselines import check_class_weight
from precimed.preprocess.image_features import (
    PIXEL_FEATURE_NAMES,
    SLICE_FEATURE_NAMES,
    check_batch,
    pixel_features,
    slice_features,
)

__all__ = ["PixelGBMSegmenter", "RadiomicsLogistic", "ThresholdSegmenter", "case_dice"]

#: 8-connectivity for the connected components of a 2-D slice
CONNECTIVITY = np.ones((3, 3), dtype=bool)
MAX_COMPONENTS = 3
MIN_SIZE_GRID = (0, 2, 5, 10, 20, 50, 100)
#: slices predicted per LightGBM call (bounds the memory of the per-pixel feature matrix)
PREDICT_CHUNK = 64


# ----- shared checks -----------------------------------------------------------------------------------------
def _images(estimator: Any, X: Any, *, fitted: bool) -> np.ndarray:
    """X as (N, C, H, W) float32; when fitted, with the channel count the model was fitted on."""
    name = type(estimator).__name__
    if fitted:
        check_is_fitted(estimator)
    X = check_batch(X, where=name)
    if fitted and X.shape[1] != estimator.n_channels_:
        raise DataError(f"{name}: images have {X.shape[1]} channel(s); the model was fitted on "
                        f"{estimator.n_channels_} (N, C, H, W)")
    return X


def _masks(estimator: Any, masks: Any, X: np.ndarray) -> np.ndarray:
    name = type(estimator).__name__
    masks = np.asarray(masks)
    expected = (X.shape[0], *X.shape[2:])
    if masks.shape != expected:
        raise DataError(f"{name}: masks have shape {masks.shape}; expected (N, H, W) = {expected} to match the images")
    if masks.dtype.kind not in "biuf" or not np.isin(masks, (0, 1)).all():
        raise DataError(f"{name}: masks must hold 0/1 values only")
    if not masks.any():
        raise DataError(f"{name}: the training masks hold no lesion pixel; a segmenter cannot learn from them")
    return masks.astype(bool)


def _group_codes(estimator: Any, groups: Any, n: int) -> np.ndarray:
    """The case (0..G-1) of each slice; all 0 without groups."""
    if groups is None:
        return np.zeros(n, dtype=np.int64)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise DataError(f"{type(estimator).__name__}: {len(groups)} groups for {n} slices; give one per slice")
    return np.unique(groups, return_inverse=True)[1].reshape(-1)


def case_dice(pred_area: np.ndarray, inter: np.ndarray, truth_area: np.ndarray, codes: np.ndarray) -> float:
    """Mean over cases of the Dice 2|A∩B| / (|A| + |B|) pooled over each case's slices (1 when both are empty).

    The arrays hold per-slice pixel counts; ``codes`` the case (0..G-1) of each slice.
    """
    area = np.bincount(codes, pred_area)
    both = np.bincount(codes, inter)
    truth = np.bincount(codes, truth_area)
    total = area + truth
    return float(np.where(total > 0, 2 * both / np.maximum(total, 1), 1.0).mean())


def _hard(proba: np.ndarray, threshold: float) -> np.ndarray:
    return (proba >= threshold).astype(np.uint8)


# ----- thresholding + connected components --------------------------------------------------------------------
def _components(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 8-connected components of a (H, W) slice: labels, the size of each label (0 = background), and the
    component labels ordered largest first (ties: lower label first)."""
    labels, n = ndimage.label(binary, structure=CONNECTIVITY)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    order = np.argsort(-sizes[1:], kind="stable") + 1
    return labels, sizes, order


def _keep(labels: np.ndarray, sizes: np.ndarray, order: np.ndarray, min_size: int, k: int) -> np.ndarray:
    """The union of the k largest components of at least ``min_size`` pixels."""
    kept = order[sizes[order] >= max(min_size, 1)][:k]
    if kept.size == 0:
        return np.zeros(labels.shape, dtype=bool)
    return np.isin(labels, kept)


def _top_components(binary: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and lesion pixels of the MAX_COMPONENTS largest components of a slice (0-padded), largest first."""
    labels, sizes, order = _components(binary)
    top = order[:MAX_COMPONENTS]
    inter = np.bincount(labels.ravel(), weights=truth.ravel(), minlength=sizes.size)
    size_out, inter_out = np.zeros(MAX_COMPONENTS), np.zeros(MAX_COMPONENTS)
    size_out[:top.size], inter_out[:top.size] = sizes[top], inter[top]
    return size_out, inter_out


class ThresholdSegmenter(BaseEstimator):
    """Intensity thresholding and connected components, learned on training slices.

    ``fit`` reads the centre channel. Polarity: lesions are bright when the mean intensity inside the training
    masks exceeds the mean outside, dark otherwise (then the intensity is negated: s = -x). A pixel is lesion
    when s > t, and of the 8-connected components of at least ``min_size`` pixels the k largest are kept.
    (t, min_size, k) is the combination with the best mean Dice per case on the training slices: t among
    quantiles of all training pixels (0.5 to 0.9999) and of the lesion pixels (0.02 to 0.98), min_size in
    ``MIN_SIZE_GRID``, k in 1..3. A case is a ``groups`` value (the patient: its slices' Dice pooled, as the
    evaluation scores a volume; a case without lesion scores 1 when nothing is predicted, 0 otherwise); without
    groups all training slices form one case (the pooled Dice). A mean of per-slice Dice would reward
    predicting nothing, since most slices hold no lesion.

    ``predict_proba`` is the soft score sigmoid((s - t) / scale) inside the kept components and 0 elsewhere,
    with scale = 0.1 × the training pixels' standard deviation; ``predict(X, 0.5)`` is exactly the hard
    segmentation.
    """

    kind = "threshold"

    def fit(self, X: Any, masks: Any, groups: Any = None) -> Self:
        X = _images(self, X, fitted=False)
        truth = _masks(self, masks, X)
        codes = _group_codes(self, groups, len(X))
        centre = X[:, X.shape[1] // 2].astype(np.float64)
        inside, outside = centre[truth], centre[~truth]
        polarity = 1.0 if outside.size == 0 or inside.mean() >= outside.mean() else -1.0
        score = polarity * centre
        pixels = score.ravel()
        candidates = np.unique(np.concatenate([
            np.quantile(pixels, 1 - np.geomspace(0.5, 1e-4, 40)),
            np.quantile(polarity * inside, np.linspace(0.02, 0.98, 25)),
        ]))
        truth_area = truth.sum(axis=(1, 2)).astype(float)
        rank = np.arange(MAX_COMPONENTS)
        best = (-np.inf, 0.0, 0, MAX_COMPONENTS)
        for t in candidates:
            stats = [_top_components(s > t, tr) for s, tr in zip(score, truth, strict=True)]
            sizes, inters = np.stack([a for a, _ in stats]), np.stack([b for _, b in stats])
            for min_size in MIN_SIZE_GRID:
                large = sizes >= max(min_size, 1)  # a prefix of each row: the sizes are sorted
                for k in range(1, MAX_COMPONENTS + 1):
                    kept = large & (rank < k)
                    value = case_dice((sizes * kept).sum(1), (inters * kept).sum(1), truth_area, codes)
                    if value > best[0] + 1e-12:
                        best = (value, float(t), min_size, k)
        self.train_dice_, self.threshold_, self.min_size_, self.n_components_ = best
        self.polarity_ = polarity
        self.scale_ = max(0.1 * float(pixels.std()), 1e-6)
        self.n_channels_ = X.shape[1]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, H, W) float32 scores in [0, 1] (see the class docstring)."""
        X = _images(self, X, fitted=True)
        score = self.polarity_ * X[:, X.shape[1] // 2].astype(np.float64)
        keep = np.stack([_keep(*_components(s > self.threshold_), self.min_size_, self.n_components_)
                         for s in score])
        soft = 1.0 / (1.0 + np.exp(-np.clip((score - self.threshold_) / self.scale_, -50, 50)))
        return np.where(keep, soft, 0.0).astype(np.float32)

    def predict(self, X: Any, threshold: float = 0.5) -> np.ndarray:
        """(N, H, W) uint8 0/1: ``predict_proba(X) >= threshold``."""
        return _hard(self.predict_proba(X), threshold)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        check_is_fitted(self)
        return {"threshold": self.threshold_, "polarity": self.polarity_, "min_size": int(self.min_size_),
                "n_components": int(self.n_components_), "scale": self.scale_, "n_channels": int(self.n_channels_),
                "train_dice": self.train_dice_}, {}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        self = cls()
        self.threshold_ = float(state["threshold"])
        self.polarity_ = float(state["polarity"])
        self.min_size_ = int(state["min_size"])
        self.n_components_ = int(state["n_components"])
        self.scale_ = float(state["scale"])
        self.n_channels_ = int(state["n_channels"])
        self.train_dice_ = float(state["train_dice"])
        return self


# ----- per-pixel gradient boosting ------------------------------------------------------------------------------
class PixelGBMSegmenter(BaseEstimator):
    """LightGBM on per-pixel features (``pixel_features``: local intensity statistics, gradient, position).

    Training pixels are subsampled to at most ``max_pixels``: every lesion pixel when they fill at most half of
    it (else a random half), and background pixels at random for the rest. Sample weights undo the
    subsampling, so the fitted class balance is the real one times the positive weight: ``positive_weight``
    is ``"balanced"`` (lesion and background pixels weigh the same in total) or a number (1.0 = the real
    prevalence). ``num_leaves``, ``learning_rate`` and ``n_estimators`` go to LightGBM (one thread,
    deterministic, seeded by ``random_state``).
    """

    kind = "pixel_gbm"

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.05, num_leaves: int = 31,
                 max_pixels: int = 200_000, positive_weight: str | float = "balanced", random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_pixels = max_pixels
        self.positive_weight = positive_weight
        self.random_state = random_state

    def _params(self) -> dict[str, Any]:
        return {"objective": "binary", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                "seed": self.random_state, "num_threads": 1, "deterministic": True, "force_row_wise": True,
                "verbosity": -1}

    def _sample(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the training pixels and their weights (see the class docstring)."""
        if not (isinstance(self.max_pixels, int | np.integer) and self.max_pixels >= 2):
            raise ConfigError(f"PixelGBMSegmenter: max_pixels must be an integer >= 2, got {self.max_pixels!r}")
        weight_pos = self.positive_weight
        if weight_pos != "balanced" and not (isinstance(weight_pos, int | float) and weight_pos > 0):
            raise ConfigError(f"PixelGBMSegmenter: positive_weight must be 'balanced' or a positive number, "
                              f"got {weight_pos!r}")
        rng = np.random.default_rng(self.random_state)
        pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
        n_pos = min(pos.size, self.max_pixels // 2)
        n_neg = min(neg.size, self.max_pixels - n_pos)
        pos_idx = pos if n_pos == pos.size else np.sort(rng.choice(pos, n_pos, replace=False))
        neg_idx = neg if n_neg == neg.size else np.sort(rng.choice(neg, n_neg, replace=False))
        if weight_pos == "balanced":
            w_pos, w_neg = 0.5 / max(n_pos, 1), 0.5 / max(n_neg, 1)
        else:  # each kept pixel stands for the pixels of its class left out, times the positive weight
            w_pos, w_neg = float(weight_pos) * pos.size / max(n_pos, 1), neg.size / max(n_neg, 1)
        index = np.concatenate([pos_idx, neg_idx])
        weight = np.concatenate([np.full(pos_idx.size, w_pos), np.full(neg_idx.size, w_neg)])
        return index, weight * (index.size / weight.sum())  # mean weight 1 keeps LightGBM's leaf sizes meaningful

    def fit(self, X: Any, masks: Any, groups: Any = None) -> Self:
        X = _images(self, X, fitted=False)
        truth = _masks(self, masks, X).ravel()
        _group_codes(self, groups, len(X))
        if truth.all():
            raise DataError("PixelGBMSegmenter: every training pixel is lesion; need background pixels too")
        index, weight = self._sample(truth)
        features = pixel_features(X)[index]
        data = lgb.Dataset(features, truth[index].astype(float), weight=weight,
                           feature_name=list(PIXEL_FEATURE_NAMES), free_raw_data=True)
        self.booster_ = lgb.train(self._params(), data, num_boost_round=self.n_estimators)
        self.n_channels_ = X.shape[1]
        self.n_pixels_fit_ = int(index.size)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, H, W) float32 lesion probability of each pixel."""
        X = _images(self, X, fitted=True)
        n, _, h, w = X.shape
        out = np.empty((n, h, w), dtype=np.float32)
        for start in range(0, n, PREDICT_CHUNK):
            chunk = X[start:start + PREDICT_CHUNK]
            out[start:start + len(chunk)] = self.booster_.predict(pixel_features(chunk)).reshape(len(chunk), h, w)
        return out

    def predict(self, X: Any, threshold: float = 0.5) -> np.ndarray:
        """(N, H, W) uint8 0/1: ``predict_proba(X) >= threshold``."""
        return _hard(self.predict_proba(X), threshold)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        check_is_fitted(self)
        state = {"params": self.get_params(), "n_channels": int(self.n_channels_),
                 "n_pixels_fit": self.n_pixels_fit_}
        return state, {"gbm.txt": self.booster_.model_to_string().encode()}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        self = cls(**state["params"])
        self.booster_ = lgb.Booster(model_str=blobs["gbm.txt"].decode())
        self.n_channels_ = int(state["n_channels"])
        self.n_pixels_fit_ = int(state["n_pixels_fit"])
        return self


# ----- radiomics + logistic regression --------------------------------------------------------------------------
class RadiomicsLogistic(ClassifierMixin, BaseEstimator):
    """"Lesion present" per slice: ``slice_features`` of the whole slice, standardised with the training mean
    and standard deviation (1 for a constant feature), into an L2-penalised logistic regression (``C``,
    ``class_weight`` None or "balanced"). ``predict_proba`` gives (N, 2): P(no lesion), P(lesion).
    """

    kind = "radiomics_logistic"

    def __init__(self, C: float = 1.0, class_weight: str | None = None, random_state: int = 0) -> None:
        self.C = C
        self.class_weight = class_weight
        self.random_state = random_state

    def _features(self, X: np.ndarray) -> np.ndarray:
        features = slice_features(X).to_numpy(dtype=np.float64)
        if not np.isfinite(features).all():
            raise DataError(f"{type(self).__name__}: the slice features hold non-finite values; check the images")
        return features

    def fit(self, X: Any, y: Any, groups: Any = None) -> Self:
        check_class_weight(self.class_weight)
        X = _images(self, X, fitted=False)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise DataError(f"{type(self).__name__}: y has shape {y.shape}; expected one 0/1 label per slice "
                            f"({len(X)},)")
        if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
            raise DataError(f"{type(self).__name__}: y must hold 0/1 labels (lesion present), got {np.unique(y)[:10]}")
        if len(np.unique(y)) < 2:
            raise DataError(f"{type(self).__name__}: the training labels have a single class "
                            f"{np.unique(y).tolist()}; need slices with and without lesion")
        _group_codes(self, groups, len(X))
        features = self._features(X)
        self.mean_ = features.mean(axis=0)
        std = features.std(axis=0)
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        model = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=5000,
                                   random_state=self.random_state)
        model.fit((features - self.mean_) / self.scale_, y.astype(int))
        self.coef_ = model.coef_.ravel().astype(np.float64)
        self.intercept_ = float(model.intercept_[0])
        self.classes_ = np.array([0, 1])
        self.feature_names_ = list(SLICE_FEATURE_NAMES)
        self.n_channels_ = X.shape[1]
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        X = _images(self, X, fitted=True)
        return ((self._features(X) - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        z = self.decision_function(X)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
        return np.column_stack([1 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def to_state(self) -> tuple[dict, dict[str, bytes]]:
        check_is_fitted(self)
        return {"C": float(self.C), "class_weight": self.class_weight, "random_state": self.random_state,
                "coef": self.coef_.tolist(), "intercept": self.intercept_, "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "feature_names": list(self.feature_names_),
                "n_channels": int(self.n_channels_)}, {}

    @classmethod
    def from_state(cls, state: dict, blobs: dict[str, bytes]) -> Self:
        if list(state["feature_names"]) != list(SLICE_FEATURE_NAMES):
            raise ArtifactError(f"RadiomicsLogistic.from_state: saved features {state['feature_names']} differ from "
                            f"this version's {list(SLICE_FEATURE_NAMES)}")
        self = cls(C=state["C"], class_weight=state["class_weight"], random_state=state["random_state"])
        self.coef_ = np.asarray(state["coef"], dtype=np.float64)
        self.intercept_ = float(state["intercept"])
        self.mean_ = np.asarray(state["mean"], dtype=np.float64)
        self.scale_ = np.asarray(state["scale"], dtype=np.float64)
        self.feature_names_ = list(state["feature_names"])
        self.classes_ = np.array([0, 1])
        self.n_channels_ = int(state["n_channels"])
        return self
