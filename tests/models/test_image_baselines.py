"""Non-deep image baselines on bright discs in noise: they learn, round-trip through JSON state, check input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from precimed.errors import ConfigError, DataError
from precimed.models.image_baselines import PixelGBMSegmenter, RadiomicsLogistic, ThresholdSegmenter, case_dice


def discs(n: int, seed: int, *, size: int = 32, channels: int = 1, contrast: float = 1.5,
          share: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n slices of Gaussian noise (sd 0.4) with a disc of radius 3-7 pixels, intensity +contrast, in a share."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size))
    images = rng.normal(0.0, 0.4, size=(n, channels, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    for i in np.flatnonzero(rng.random(n) < share):
        r = rng.uniform(3, 7)
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        masks[i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        images[i, :, masks[i].astype(bool)] += contrast
    return images, masks, masks.any(axis=(1, 2)).astype(int)


def pooled_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool), truth.astype(bool)
    return float(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))


TRAIN, TEST = discs(40, 0), discs(30, 1)
MAKERS = {"threshold": ThresholdSegmenter, "pixel_gbm": lambda: PixelGBMSegmenter(n_estimators=40, max_pixels=20_000),
          "radiomics": RadiomicsLogistic}


def _fit(name: str, data=TRAIN):
    images, masks, labels = data
    return MAKERS[name]().fit(images, labels if name == "radiomics" else masks)


@pytest.fixture(scope="module")
def fitted() -> dict:
    return {name: _fit(name) for name in MAKERS}


def test_case_dice_pools_the_slices_of_a_case_and_an_empty_case_agreeing_scores_one():
    # case 0: slices with (predicted, overlap, true) pixels (2, 1, 2) and (0, 0, 2): 2*1 / (2 + 4)
    # case 1: nothing predicted, nothing true: 1;  case 2: 3 false-positive pixels: 0
    value = case_dice(np.array([2, 0, 0, 3.0]), np.array([1, 0, 0, 0.0]), np.array([2, 2, 0, 0.0]),
                      np.array([0, 0, 1, 2]))
    assert value == pytest.approx((1 / 3 + 1 + 0) / 3)


def test_the_threshold_segmenter_finds_bright_discs(fitted):
    model = fitted["threshold"]
    assert model.polarity_ == 1.0 and 1 <= model.n_components_ <= 3
    images, masks, _ = TEST
    pred = model.predict(images)
    assert pred.shape == masks.shape and pred.dtype == np.uint8
    assert pooled_dice(pred, masks) > 0.7
    proba = model.predict_proba(images)
    assert proba.dtype == np.float32 and proba.min() >= 0 and proba.max() <= 1
    np.testing.assert_array_equal(pred, (proba >= 0.5).astype(np.uint8))


def test_the_threshold_search_scores_what_predict_gives_per_case():
    images, masks, _ = TRAIN
    groups = np.repeat(["a", "b", "c", "d"], 10)
    model = ThresholdSegmenter().fit(images, masks, groups=groups)
    pred = model.predict(images).astype(bool)
    per_case = [pooled_dice(pred[groups == g], masks[groups == g]) for g in "abcd"]
    assert model.train_dice_ == pytest.approx(np.mean(per_case))
    assert model.min_size_ > 0    # noise specks above the threshold are dropped


def test_the_threshold_segmenter_learns_dark_lesions_too():
    images, masks, _ = TRAIN
    model = ThresholdSegmenter().fit(-images, masks)
    assert model.polarity_ == -1.0
    assert pooled_dice(model.predict(-TEST[0]), TEST[1]) > 0.7


def test_the_pixel_gbm_segmenter_finds_bright_discs(fitted):
    model = fitted["pixel_gbm"]
    images, masks, _ = TEST
    proba = model.predict_proba(images)
    assert proba.shape == masks.shape and proba.dtype == np.float32
    assert pooled_dice(model.predict(images), masks) > 0.6
    assert model.n_pixels_fit_ <= 20_000


def test_the_radiomics_logistic_tells_disc_from_no_disc(fitted):
    model = fitted["radiomics"]
    images, _, labels = TEST
    proba = model.predict_proba(images)
    assert proba.shape == (30, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert roc_auc_score(labels, proba[:, 1]) > 0.9
    assert set(np.unique(model.predict(images))) <= {0, 1}


@pytest.mark.parametrize("name", list(MAKERS))
def test_a_json_state_round_trip_predicts_identically(fitted, name):
    model = fitted[name]
    state, blobs = model.to_state()
    loaded = type(model).from_state(json.loads(json.dumps(state)), blobs)
    images = TEST[0]
    np.testing.assert_array_equal(loaded.predict_proba(images), model.predict_proba(images))
    np.testing.assert_array_equal(loaded.predict(images), model.predict(images))


@pytest.mark.parametrize("name", list(MAKERS))
def test_the_same_seed_gives_the_same_model(fitted, name):
    np.testing.assert_array_equal(_fit(name).predict_proba(TEST[0]), fitted[name].predict_proba(TEST[0]))


@pytest.mark.parametrize("name", list(MAKERS))
def test_an_unfitted_model_refuses_to_predict(name):
    with pytest.raises(NotFittedError):
        MAKERS[name]().predict_proba(TEST[0])


@pytest.mark.parametrize("name", list(MAKERS))
def test_wrong_input_shapes_are_data_errors(fitted, name):
    images, masks, labels = TRAIN
    target = labels if name == "radiomics" else masks
    with pytest.raises(DataError, match=r"images must be a non-empty \(N, C, H, W\) array, got shape \(40, 32, 32\)"):
        MAKERS[name]().fit(images[:, 0], target)
    with pytest.raises(DataError, match=r"images have 3 channel\(s\); the model was fitted on 1"):
        fitted[name].predict_proba(np.repeat(images, 3, axis=1))
    with pytest.raises(DataError, match="NaN or infinite"):
        fitted[name].predict_proba(np.where(np.arange(32) == 5, np.inf, images))
    with pytest.raises(DataError, match="groups for 40 slices"):
        MAKERS[name]().fit(images, target, groups=["p1"] * 39)


def test_segmenters_check_their_masks():
    images, masks, _ = TRAIN
    with pytest.raises(DataError, match=r"masks have shape \(40, 32, 31\); expected \(N, H, W\) = \(40, 32, 32\)"):
        ThresholdSegmenter().fit(images, masks[:, :, :31])
    with pytest.raises(DataError, match="masks must hold 0/1 values only"):
        PixelGBMSegmenter().fit(images, masks * 2)
    with pytest.raises(DataError, match="hold no lesion pixel"):
        ThresholdSegmenter().fit(images, np.zeros_like(masks))
    with pytest.raises(ConfigError, match="positive_weight must be 'balanced' or a positive number"):
        PixelGBMSegmenter(positive_weight="auto").fit(images, masks)


def test_the_radiomics_logistic_checks_its_labels():
    images, _, labels = TRAIN
    with pytest.raises(DataError, match=r"single class \[0\]"):
        RadiomicsLogistic().fit(images, np.zeros(40, int))
    with pytest.raises(DataError, match=r"y has shape \(39,\)"):
        RadiomicsLogistic().fit(images, labels[:39])
    with pytest.raises(ConfigError, match="class_weight must be None or 'balanced'"):
        RadiomicsLogistic(class_weight="auto").fit(images, labels)


def test_2_5_d_input_is_read_through_its_centre_channel():
    images, masks, labels = discs(30, 2, channels=3)
    images[:, [0, 2]] = np.random.default_rng(3).normal(size=(30, 2, 32, 32))  # neighbours unrelated to the mask
    model = ThresholdSegmenter().fit(images, masks)
    assert pooled_dice(model.predict(images), masks) > 0.7
    clf = RadiomicsLogistic(class_weight="balanced").fit(images, labels)
    assert roc_auc_score(labels, clf.predict_proba(images)[:, 1]) > 0.9
