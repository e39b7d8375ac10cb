"""Synthetic lesions: seeded, masks exactly for positives, asked contrast and size, groups carried through."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from precimed.data.image_sets import image_set_available
from precimed.data.synthetic_lesions import LesionSet, background_slices, make_lesion_set
from precimed.errors import ConfigError

STD = 0.05


@pytest.fixture
def flat() -> tuple[np.ndarray, np.ndarray]:
    """Three 64x64 backgrounds of mean 0.5 and pixel std 0.05 (so the local std is known), two groups."""
    rng = np.random.default_rng(7)
    backgrounds = (0.5 + rng.normal(0.0, STD, size=(3, 64, 64))).astype(np.float32)
    return backgrounds, np.array(["a", "b", "b"])


def test_same_seed_same_arrays_other_seed_differs(flat):
    one = make_lesion_set(*flat, n=20, seed=3)
    two = make_lesion_set(*flat, n=20, seed=3)
    for name in ("images", "masks", "labels", "radius_px", "contrast", "groups"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    other = make_lesion_set(*flat, n=20, seed=4)
    assert not np.array_equal(one.images, other.images)


def test_shapes_labels_masks_and_groups(flat):
    s = make_lesion_set(*flat, n=40, seed=0, positive_fraction=0.25)
    assert isinstance(s, LesionSet)
    assert s.images.shape == (40, 1, 64, 64) and s.images.dtype == np.float32
    assert s.masks.shape == (40, 64, 64) and s.masks.dtype == np.uint8
    assert s.labels.sum() == 10 and set(np.unique(s.labels)) == {0, 1}
    has_mask = s.masks.reshape(40, -1).any(axis=1)
    np.testing.assert_array_equal(has_mask, s.labels == 1)
    assert np.all(s.radius_px[s.labels == 0] == 0) and np.all(s.contrast[s.labels == 0] == 0)
    assert set(s.groups) <= {"a", "b"} and len(set(s.groups)) == 2
    for i in range(40):  # each image's group is its background's: background 0 is 'a'
        nearest = int(np.argmin([np.abs(s.images[i, 0] - b).mean() for b in flat[0]]))
        if s.labels[i] == 0:
            assert s.groups[i] == flat[1][nearest]


def test_negatives_are_background_plus_noise_only(flat):
    s = make_lesion_set(*flat, n=30, seed=1, noise=0.0)
    for i in np.flatnonzero(s.labels == 0):
        assert any(np.array_equal(s.images[i, 0], b) for b in flat[0])
    noisy = make_lesion_set(*flat, n=30, seed=1)
    diff = noisy.images[noisy.labels == 0, 0] - s.images[s.labels == 0, 0]
    assert diff.std() == pytest.approx(0.02, rel=0.05)  # the global noise, on negatives too


@pytest.mark.parametrize("contrast", [1.0, 3.0])
def test_lesion_brighter_than_its_ring_by_the_asked_contrast(flat, contrast):
    s = make_lesion_set(*flat, n=40, seed=2, contrast=(contrast, contrast), radius_px=(4.0, 6.0), texture=0.0,
                        noise=0.0)
    for i in np.flatnonzero(s.labels == 1):
        mask = s.masks[i].astype(bool)
        core = ndimage.binary_erosion(mask, iterations=1)  # away from the soft edge
        ring = ndimage.binary_dilation(mask, iterations=4) & ~ndimage.binary_dilation(mask, iterations=1)
        gap = (s.images[i, 0][core].mean() - s.images[i, 0][ring].mean()) / STD
        assert gap == pytest.approx(contrast, abs=0.35 + 0.15 * contrast)


def test_dark_polarity(flat):
    s = make_lesion_set(*flat, n=10, seed=2, contrast=(2.0, 2.0), polarity="dark", texture=0.0, noise=0.0)
    for i in np.flatnonzero(s.labels == 1):
        mask = s.masks[i].astype(bool)
        assert s.images[i, 0][mask].mean() < 0.5 - STD


def test_radius_within_range_and_area_near_pi_r_squared(flat):
    s = make_lesion_set(*flat, n=60, seed=5, radius_px=(3.0, 7.0))
    pos = s.labels == 1
    assert np.all((s.radius_px[pos] >= 3.0) & (s.radius_px[pos] <= 7.0))
    ratio = s.masks[pos].reshape(pos.sum(), -1).sum(axis=1) / (np.pi * s.radius_px[pos] ** 2)
    assert np.all((ratio > 0.6) & (ratio < 1.5))
    assert abs(float(np.median(ratio)) - 1.0) < 0.15
    for mask in s.masks[pos]:  # one connected lesion per positive
        assert ndimage.label(mask)[1] == 1


def test_bad_arguments(flat):
    with pytest.raises(ConfigError, match="radius_px"):
        make_lesion_set(*flat, n=4, seed=0, radius_px=(2.0, 20.0))
    with pytest.raises(ConfigError, match="groups of shape"):
        make_lesion_set(flat[0], np.array(["a"]), n=4, seed=0)
    with pytest.raises(ConfigError, match="polarity"):
        make_lesion_set(*flat, n=4, seed=0, polarity="both")


def test_real_backgrounds():
    if not any(image_set_available(n) for n in ("colin27", "invesalius_ct", "pyradiomics")):
        pytest.skip("no background image set on this machine: run bash scripts/fetch_imaging_data.sh")
    backgrounds, groups = background_slices(size=32, seed=0, per_source=5)
    assert backgrounds.ndim == 3 and backgrounds.shape[1:] == (32, 32) and backgrounds.dtype == np.float32
    assert backgrounds.min() >= 0.0 and backgrounds.max() <= 1.0
    assert len(groups) == len(backgrounds)
    for group in set(groups):
        assert (groups == group).sum() <= 5
    if image_set_available("colin27"):
        assert "colin27" in set(groups)
    again, _ = background_slices(size=32, seed=0, per_source=5)
    np.testing.assert_array_equal(backgrounds, again)
    s = make_lesion_set(backgrounds, groups, n=20, seed=0, radius_px=(2.0, 4.0))
    assert set(s.groups) <= set(groups)
    np.testing.assert_array_equal(s.masks.reshape(20, -1).any(axis=1), s.labels == 1)
