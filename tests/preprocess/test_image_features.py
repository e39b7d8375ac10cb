"""Radiomic-style slice features (hand-computed GLCM and first-order values) and per-pixel features."""

from __future__ import annotations

import numpy as np
import pytest

from precimed.errors import DataError
from precimed.preprocess.image_features import (
    GLCM_OFFSETS,
    PIXEL_FEATURE_NAMES,
    SLICE_FEATURE_NAMES,
    glcm_features,
    glcm_matrix,
    pixel_features,
    quantize,
    slice_features,
)

# Haralick's 4x4 example (grey levels 0..3)
HARALICK = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 2], [2, 2, 3, 3]])
ALL = np.ones((4, 4), dtype=bool)


def test_the_horizontal_glcm_of_haralicks_example_is_the_hand_computed_one():
    p = glcm_matrix(HARALICK, ALL, 4, (0, 1))
    # 12 horizontal pairs, counted both ways: 24
    np.testing.assert_allclose(p * 24, [[4, 2, 1, 0], [2, 4, 0, 0], [1, 0, 6, 1], [0, 0, 1, 2]])
    f = glcm_features(p)
    assert f["glcm_contrast"] == pytest.approx(14 / 24)              # (2*2*1 + 2*1*4 + 2*1*1) / 24
    assert f["glcm_homogeneity"] == pytest.approx(19.4 / 24)         # (16 + 4/2 + 2/2 + 2/5) / 24
    assert f["glcm_energy"] == pytest.approx(84 / 576)               # (16+4+4+16+1+1+36+1+1+4) / 24^2
    assert f["glcm_correlation"] == pytest.approx(431 / 599)         # cov 431/576, var 599/576


def test_vertical_pairs_and_the_roi_restrict_the_glcm():
    # vertical pairs: squared differences 0,0,4 | 0,4,0 | 0,1,1 | 0,1,1 over 12 pairs
    assert glcm_features(glcm_matrix(HARALICK, ALL, 4, (1, 0)))["glcm_contrast"] == pytest.approx(1.0)
    roi = np.zeros((4, 4), dtype=bool)
    roi[:2, :2] = True                                                 # a constant 2x2 block of zeros
    p = glcm_matrix(HARALICK, roi, 4, (0, 1))
    assert p[0, 0] == 1.0 and p.sum() == 1.0
    assert glcm_features(p) == {"glcm_contrast": 0.0, "glcm_homogeneity": 1.0, "glcm_energy": 1.0,
                                "glcm_correlation": 1.0}


def test_slice_glcm_features_average_the_four_angles():
    f = slice_features(HARALICK[None, None].astype(np.float32), levels=4).iloc[0]
    per_angle = [glcm_features(glcm_matrix(HARALICK, ALL, 4, o))["glcm_contrast"] for o in GLCM_OFFSETS]
    assert f["glcm_contrast"] == pytest.approx(np.mean(per_angle))
    assert per_angle[0] == pytest.approx(14 / 24) and per_angle[2] == pytest.approx(1.0)


def test_quantize_uses_equal_bins_over_the_range():
    np.testing.assert_array_equal(quantize(np.array([0.0, 0.99, 1.0, 2.5, 4.0]), 0.0, 4.0, 4), [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(quantize(np.array([3.0, 3.0]), 3.0, 3.0, 16), [0, 0])


def test_first_order_features_of_a_half_and_half_slice():
    image = np.zeros((1, 1, 4, 4), np.float32)
    image[0, 0, :, 2:] = 1.0
    f = slice_features(image).iloc[0]
    assert list(slice_features(image).columns) == list(SLICE_FEATURE_NAMES)
    assert (f["mean"], f["std"], f["skewness"], f["kurtosis"]) == pytest.approx((0.5, 0.5, 0.0, 1.0))
    assert (f["p10"], f["p50"], f["p90"]) == pytest.approx((0.0, 0.5, 1.0))
    assert f["entropy"] == pytest.approx(1.0) and f["energy"] == pytest.approx(8.0)
    assert f["top1_minus_median"] == pytest.approx(0.5)


def test_a_constant_slice_has_no_spread_and_no_texture():
    f = slice_features(np.full((2, 1, 8, 8), 3.0, np.float32)).iloc[1]
    assert (f["std"], f["skewness"], f["kurtosis"], f["entropy"]) == (0.0, 0.0, 0.0, 0.0)
    assert (f["gradient_mean"], f["glcm_contrast"], f["glcm_homogeneity"]) == (0.0, 0.0, 1.0)
    assert f["local_max_mean5"] == pytest.approx(3.0)


def test_features_read_the_centre_channel_inside_the_roi():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 3, 16, 16)).astype(np.float32)
    roi = np.zeros((3, 16, 16), np.uint8)
    roi[:, 4:10, 5:12] = 1
    f = slice_features(images, roi)
    inside = images[:, 1][roi.astype(bool)].reshape(3, -1)
    np.testing.assert_allclose(f["mean"], inside.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(f["p90"], np.percentile(inside, 90, axis=1), rtol=1e-6)
    shuffled = images.copy()
    shuffled[:, [0, 2]] = rng.normal(size=(3, 2, 16, 16))
    np.testing.assert_allclose(slice_features(shuffled, roi).to_numpy(), f.to_numpy())


def test_a_bright_disc_raises_the_local_maximum_features():
    rng = np.random.default_rng(1)
    yy, xx = np.indices((32, 32))
    plain = rng.normal(0, 0.2, size=(1, 1, 32, 32)).astype(np.float32)
    disc = plain.copy()
    disc[0, 0][(yy - 15) ** 2 + (xx - 15) ** 2 <= 16] += 3.0
    a, b = slice_features(plain).iloc[0], slice_features(disc).iloc[0]
    assert b["local_max_mean5"] > a["local_max_mean5"] + 1.5
    assert b["top1_minus_median"] > a["top1_minus_median"] + 1.5
    assert b["gradient_mean"] > a["gradient_mean"]


def test_slice_features_refuse_bad_input():
    with pytest.raises(DataError, match=r"images must be a non-empty \(N, C, H, W\) array, got shape \(4, 4\)"):
        slice_features(np.zeros((4, 4)))
    with pytest.raises(DataError, match=r"the ROI of slice\(s\) \[1\] is empty"):
        slice_features(np.zeros((2, 1, 4, 4)), np.stack([np.ones((4, 4)), np.zeros((4, 4))]))
    with pytest.raises(DataError, match="roi has shape"):
        slice_features(np.zeros((2, 1, 4, 4)), np.ones((2, 4, 5)))
    with pytest.raises(DataError, match="1 NaN or infinite"):
        slice_features(np.where(np.eye(4) > 0, np.nan, 0.0)[None, None][:, :, :1])


def test_pixel_features_shape_order_and_values():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 3, 5, 7)).astype(np.float32)
    f = pixel_features(images)
    assert f.shape == (2 * 5 * 7, len(PIXEL_FEATURE_NAMES)) == (70, 11) and f.dtype == np.float32
    column = {name: f[:, i] for i, name in enumerate(PIXEL_FEATURE_NAMES)}
    np.testing.assert_array_equal(column["intensity"], images[:, 1].ravel())
    np.testing.assert_allclose(column["minus_median"].reshape(2, -1),
                               images[:, 1].reshape(2, -1) - np.median(images[:, 1].reshape(2, -1), axis=1)[:, None],
                               atol=1e-6)
    np.testing.assert_allclose(column["row"].reshape(2, 5, 7)[0, :, 0], np.linspace(0, 1, 5), atol=1e-7)
    np.testing.assert_allclose(column["column"].reshape(2, 5, 7)[1, 0], np.linspace(0, 1, 7), atol=1e-7)
    # the 3x3 local mean at an inner pixel is the mean of its neighbourhood
    assert column["local_mean_3x3"].reshape(2, 5, 7)[0, 2, 3] == pytest.approx(images[0, 1, 1:4, 2:5].mean(), rel=1e-5)
    assert column["local_std_3x3"].reshape(2, 5, 7)[0, 2, 3] == pytest.approx(images[0, 1, 1:4, 2:5].std(), rel=1e-4)


def test_pixel_features_of_a_constant_image_have_no_spread_or_gradient():
    f = pixel_features(np.full((1, 1, 6, 6), 2.0, np.float32))
    names = list(PIXEL_FEATURE_NAMES)
    for name in ("local_std_3x3", "local_std_7x7", "local_std_15x15", "gradient", "minus_median"):
        np.testing.assert_allclose(f[:, names.index(name)], 0.0, atol=1e-6)
    with pytest.raises(DataError, match=r"pixel_features: images must be a non-empty \(N, C, H, W\) array"):
        pixel_features(np.zeros((0, 1, 4, 4)))
