"""Segmentation and saliency scores: exact values on hand-made masks, the empty-mask conventions, the pointing
game on constructed maps, bootstrap CIs of a mean, and overlay PNGs."""

from __future__ import annotations

import numpy as np
import pytest

from precimed.errors import ConfigError, DataError
from precimed.evaluate.segmentation import (
    dice,
    iou,
    mean_ci,
    overlay_grid_png,
    overlay_png,
    per_case_dice,
    pointing_game,
    random_saliency,
    saliency_iou,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _mask(shape, *cells):
    m = np.zeros(shape, np.uint8)
    for cell in cells:
        m[cell] = 1
    return m


def test_dice_and_iou_are_exact_on_hand_made_masks():
    truth = _mask((4, 4), (0, 0), (0, 1), (1, 0), (1, 1))   # 4 pixels
    pred = _mask((4, 4), (0, 0), (0, 1), (3, 3), (3, 2))    # 2 of them, plus 2 elsewhere
    assert dice(pred, truth) == 0.5
    assert iou(pred, truth) == pytest.approx(2 / 6)
    assert dice(truth, truth) == 1.0 and iou(truth, truth) == 1.0
    assert dice(np.zeros_like(truth), truth) == 0.0
    assert dice(pred.astype(float) * 0.7, truth) == 0.5  # non-zero is lesion


def test_two_empty_masks_score_the_chosen_convention():
    empty = np.zeros((3, 3), np.uint8)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert np.isnan(dice(empty, empty, empty=np.nan))
    assert iou(empty, empty, empty=0.0) == 0.0
    assert dice(empty, _mask((3, 3), (1, 1)), empty=1.0) == 0.0  # only BOTH empty takes the convention
    with pytest.raises(DataError, match=r"same shape; got \(3, 3\) and \(2, 3\)"):
        dice(empty, empty[:2])


def test_per_case_dice_pools_each_case_s_slices():
    truth = np.stack([_mask((2, 2), (0, 0)), _mask((2, 2), (1, 1)), _mask((2, 2), (0, 1)), np.zeros((2, 2))])
    pred = np.stack([_mask((2, 2), (0, 0)), np.zeros((2, 2)), _mask((2, 2), (0, 1)), np.zeros((2, 2))])
    out = per_case_dice(pred, truth, np.array(["b", "b", 7, 7], dtype=object))
    assert list(out) == ["b", "7"]
    assert out["b"] == pytest.approx(2 * 1 / (1 + 2))  # not the mean of the slice Dices (1 and 0)
    assert out["7"] == 1.0
    with pytest.raises(DataError, match="one label per slice"):
        per_case_dice(pred, truth, np.array(["a"]))


def test_the_pointing_game_scores_only_lesion_images_and_takes_the_first_tied_peak():
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[0, 2:4, 2:4] = 1
    masks[2, 6:8, 6:8] = 1
    sal = np.zeros((3, 8, 8))
    sal[0, 3, 3] = 1.0           # inside
    sal[1, 0, 0] = 1.0           # no lesion: skipped
    sal[2, 4, 4] = sal[2, 7, 7] = 1.0  # tie: the first (4, 4) counts, 2 px from the lesion
    assert pointing_game(sal, masks).tolist() == [True, False]
    assert pointing_game(sal, masks, tolerance_px=2).tolist() == [True, False]  # (4,4)→(6,6) is 2.83 px
    assert pointing_game(sal, masks, tolerance_px=3).tolist() == [True, True]
    with pytest.raises(DataError, match="one shape"):
        pointing_game(sal, masks[:2])


def test_saliency_iou_thresholds_at_the_lesion_area_by_default():
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[0, :2, :2] = 1
    masks[1, 0, :2] = 1
    sal = np.zeros((2, 4, 4))
    sal[0] = masks[0] * 0.9 + 0.1              # perfect map
    sal[1, 0, 0], sal[1, 3, 3] = 1.0, 0.9      # half right
    assert saliency_iou(sal, masks).tolist() == [1.0, pytest.approx(1 / 3)]
    assert saliency_iou(sal, masks, top_fraction=0.5)[0] == pytest.approx(4 / 8)
    with pytest.raises(ConfigError, match="top_fraction"):
        saliency_iou(sal, masks, top_fraction=0.0)


def test_random_maps_are_seeded_smooth_and_in_unit_range():
    a = random_saliency((3, 32, 32), seed=1)
    assert a.shape == (3, 32, 32) and a.dtype == np.float32
    assert a.min() == 0.0 and a.max() == 1.0
    assert np.array_equal(a, random_saliency((3, 32, 32), seed=1))
    assert not np.array_equal(a, random_saliency((3, 32, 32), seed=2))
    rough = random_saliency((3, 32, 32), seed=1, smooth=0)
    assert np.abs(np.diff(a, axis=2)).mean() < np.abs(np.diff(rough, axis=2)).mean() / 3
    # a random map rarely points into a small lesion
    masks = np.zeros((200, 32, 32), np.uint8)
    masks[:, 10:14, 10:14] = 1
    assert pointing_game(random_saliency((200, 32, 32), seed=0), masks).mean() < 0.15


def test_mean_ci_covers_the_mean_narrows_with_n_and_ignores_nan():
    rng = np.random.default_rng(0)
    small = mean_ci(rng.normal(0.6, 0.2, 20), n_boot=500)
    large = mean_ci(rng.normal(0.6, 0.2, 500), n_boot=500)
    for ci in (small, large):
        assert ci["low"] < ci["mean"] < ci["high"]
    assert small["n"] == 20 and large["n"] == 500
    assert large["high"] - large["low"] < (small["high"] - small["low"]) / 2
    assert mean_ci(np.array([0.5, np.nan, 0.7]))["n"] == 2
    assert mean_ci(np.array([0.5, np.nan, 0.7]))["mean"] == pytest.approx(0.6)
    assert mean_ci(np.array([]))["n"] == 0
    assert mean_ci(np.arange(10.0), seed=3) == mean_ci(np.arange(10.0), seed=3)


def test_overlays_are_png_bytes():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(32, 32))
    truth = np.zeros((32, 32), np.uint8)
    truth[8:16, 8:16] = 1
    pred = np.roll(truth, 2, axis=1)
    png = overlay_png(image, truth=truth, pred=pred, saliency=rng.random((32, 32)), title="case 1")
    assert png.startswith(PNG) and len(png) > 1000
    assert overlay_png(image).startswith(PNG)
    grid = overlay_grid_png([{"image": image, "truth": truth, "caption": "hit"}, {"image": image, "pred": pred}] * 3,
                            columns=4, title="examples")
    assert grid.startswith(PNG)
    with pytest.raises(DataError, match=r"image's shape \(32, 32\); got \(16, 16\)"):
        overlay_png(image, truth=truth[:16, :16])
    with pytest.raises(DataError, match="unknown keys \\['mask'\\]"):
        overlay_grid_png([{"image": image, "mask": truth}])
    with pytest.raises(DataError, match="at least one item"):
        overlay_grid_png([])
