"""ImagePreprocessor (fitted windows, resampling, crop / pad, 2.5-D, inverse mapping, JSON state) and Augment."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from precimed.errors import ArtifactError, ConfigError, DataError, NotFittedError
from precimed.preprocess.images import Augment, ImagePreprocessor

PYRADIOMICS = Path.home() / ".cache/precimed/images/pyradiomics-3.1.0/data"


@dataclass
class Vol:
    """A stand-in for precimed.data.images.ImageVolume (the preprocessor only reads these attributes)."""

    array: np.ndarray
    spacing: tuple = (1.0, 1.0, 1.0)
    source: str = "case.nii"
    modality: str | None = None
    meta: dict = field(default_factory=dict)


def _noise(seed: int, shape=(4, 20, 24), loc=0.0, scale=1.0, **kw) -> Vol:
    rng = np.random.default_rng(seed)
    return Vol(rng.normal(loc, scale, size=shape).astype(np.float32), **kw)


def _blob_mask(shape=(4, 20, 24)) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (((y - 9) ** 2 + (x - 13) ** 2 <= 16) & (z >= 1)).astype(np.uint8)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / (a.sum() + b.sum())


# ----- fit and intensity ---------------------------------------------------------------------------------------
def test_fit_learns_windows_only_from_the_volumes_passed():
    low = ImagePreprocessor(size=(20, 24)).fit([_noise(0), _noise(1)])
    high = ImagePreprocessor(size=(20, 24)).fit([_noise(2, loc=100.0, scale=5.0)])
    assert low.stats_["unknown"]["high"] < 5 < 80 < high.stats_["unknown"]["low"]
    probe = _noise(3)
    assert not np.allclose(low.transform(probe), high.transform(probe))


def test_fit_window_is_the_robust_percentiles_and_zscore_centres_the_training_voxels():
    volume = Vol(np.arange(1000, dtype=np.float32).reshape(10, 10, 10))
    pre = ImagePreprocessor(size=(10, 10)).fit([volume])
    stats = pre.stats_["unknown"]
    assert stats["low"] == pytest.approx(np.percentile(np.arange(1000), 0.5))
    assert stats["high"] == pytest.approx(np.percentile(np.arange(1000), 99.5))
    out = pre.transform(volume)
    assert out.mean() == pytest.approx(0.0, abs=1e-5) and out.std() == pytest.approx(1.0, abs=1e-3)


def test_a_center_width_window_maps_linearly_to_unit_range_with_clipping():
    volume = Vol(np.array([[[-100.0, 0.0, 40.0, 80.0, 500.0]]], dtype=np.float32))
    pre = ImagePreprocessor(size=(1, 5), window=(40, 80), normalize="none").fit([volume])
    np.testing.assert_allclose(pre.transform(volume)[0, 0, 0], [0.0, 0.0, 0.5, 1.0, 1.0])


def test_a_preset_window_is_looked_up_by_name_at_run_time(monkeypatch):
    fake = types.ModuleType("precimed.data.images")
    fake.WINDOW_PRESETS = {"ct_test": (100.0, 200.0)}
    monkeypatch.setitem(sys.modules, "precimed.data.images", fake)
    pre = ImagePreprocessor(size=(1, 3), window="ct_test", normalize="none").fit([Vol(np.zeros((1, 1, 3)))])
    assert (pre.stats_["unknown"]["low"], pre.stats_["unknown"]["high"]) == (0.0, 200.0)
    with pytest.raises(ConfigError, match=r"unknown window preset 'ct_nope'.*ct_test"):
        ImagePreprocessor(window="ct_nope").fit([Vol(np.zeros((1, 1, 3)))])


def test_each_modality_gets_its_own_statistics_and_an_unseen_one_is_refused():
    ct = _noise(0, loc=-500.0, scale=100.0, modality="CT")
    mr = _noise(1, loc=300.0, scale=50.0, modality="mr")
    pre = ImagePreprocessor(size=(20, 24)).fit([ct, mr])
    assert sorted(pre.stats_) == ["CT", "MR"]
    assert pre.stats_["CT"]["high"] < pre.stats_["MR"]["low"]
    assert abs(float(pre.transform(ct).mean())) < 0.1 and abs(float(pre.transform(mr).mean())) < 0.1
    with pytest.raises(DataError, match=r"scan.dcm: modality 'US' was not seen in training.*\['CT', 'MR'\]"):
        pre.transform(_noise(2, modality="US", source="scan.dcm"))
    # the modality argument overrides the volume's own
    np.testing.assert_array_equal(pre.transform(_noise(3, modality=None), modality="CT"),
                                  pre.transform(_noise(3, modality="CT")))
    pooled = ImagePreprocessor(size=(20, 24), per_modality=False).fit([ct, mr])
    assert list(pooled.stats_) == ["all"] and pooled.transform(_noise(2, modality="US")).shape == (4, 1, 20, 24)


@pytest.mark.parametrize(("array", "spacing", "message"), [
    (np.full((2, 3, 3), np.nan, np.float32), (1, 1, 1), "bad.nrrd: the image holds 18 NaN or infinite"),
    (np.array([[[1.0, np.inf]]], np.float32), (1, 1, 1), "bad.nrrd: the image holds 1 NaN or infinite"),
    (np.zeros((0, 3, 3), np.float32), (1, 1, 1), r"bad.nrrd: the image is empty \(shape \(0, 3, 3\)\)"),
    (np.zeros((2, 3, 3), np.float32), (1, 0.0, 1), "bad.nrrd: spacing must be 3 positive finite numbers"),
    (np.zeros((2, 3, 3), np.float32), (1, -1, 1), "bad.nrrd: spacing must be 3 positive finite numbers"),
    (np.zeros((3, 3), np.float32), (1, 1, 1), r"bad.nrrd: an image volume is a 3-D \(z, y, x\) array"),
])
def test_bad_volumes_are_refused_naming_the_source(array, spacing, message):
    pre = ImagePreprocessor(size=(3, 3)).fit([_noise(0, shape=(2, 3, 3))])
    with pytest.raises(DataError, match=message):
        pre.transform(Vol(array, spacing, source="bad.nrrd"))
    with pytest.raises(DataError, match=message):
        ImagePreprocessor(size=(3, 3)).fit([Vol(array, spacing, source="bad.nrrd")])


def test_transform_before_fit_and_bad_settings_are_refused():
    with pytest.raises(NotFittedError, match="call fit"):
        ImagePreprocessor().transform(_noise(0))
    for kwargs in ({"normalize": "minmax"}, {"size": (0, 4)}, {"spacing": (1.0, -1.0)}, {"context": -1},
                   {"window": (40, 0)}):
        with pytest.raises(ConfigError):
            ImagePreprocessor(**kwargs).fit([_noise(0)])


# ----- geometry ----------------------------------------------------------------------------------------------
def test_output_shape_channels_and_edge_slices_repeat_in_2_5_d():
    array = np.broadcast_to(np.arange(5, dtype=np.float32)[:, None, None], (5, 6, 6)).copy()
    pre = ImagePreprocessor(size=(6, 6), window=None, normalize="none", context=1).fit([Vol(array)])
    out = pre.transform(Vol(array))
    assert out.shape == (5, 3, 6, 6) and out.dtype == np.float32
    assert pre.out_shape == (3, 6, 6) and pre.channel_names == ["z-1", "z", "z+1"]
    np.testing.assert_array_equal(out[:, :, 0, 0], [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]])


def test_crop_and_pad_are_centred_and_padding_takes_the_lowest_intensity():
    array = np.arange(24, dtype=np.float32).reshape(1, 4, 6) + 10
    pre = ImagePreprocessor(size=(6, 4), window=None, normalize="none").fit([Vol(array)])
    out = pre.transform(Vol(array))[0, 0]
    np.testing.assert_array_equal(out[1:5], array[0, :, 1:5])   # rows padded by 1 on each side, columns cropped
    np.testing.assert_array_equal(out[[0, 5]], 10.0)


def test_mask_round_trip_is_exact_without_resampling_and_crops_to_zero():
    mask = _blob_mask()
    volume = _noise(0)
    pre = ImagePreprocessor(size=(32, 32)).fit([volume])
    on_grid = pre.transform_mask(mask, volume)
    assert on_grid.shape == (4, 32, 32) and on_grid.dtype == np.uint8 and on_grid.sum() == mask.sum()
    back = pre.to_original(on_grid, volume)
    assert back.shape == mask.shape and back.dtype == np.float32
    np.testing.assert_array_equal(back, mask)
    small = ImagePreprocessor(size=(8, 8)).fit([volume])  # rows 6..13, columns 8..15 survive the crop
    back = small.to_original(small.transform_mask(mask, volume), volume)
    expected = np.zeros_like(mask)
    expected[:, 6:14, 8:16] = mask[:, 6:14, 8:16]
    np.testing.assert_array_equal(back, expected)


def test_in_plane_resampling_follows_the_spacing_and_never_touches_z():
    mask = _blob_mask((3, 40, 48))
    volume = Vol(np.zeros((3, 40, 48), np.float32), spacing=(5.0, 0.5, 0.25))
    pre = ImagePreprocessor(spacing=(1.0, 1.0), size=(20, 12), window=None, normalize="none").fit([volume])
    on_grid = pre.transform_mask(mask, volume)     # 40 x 0.5 mm -> 20 rows, 48 x 0.25 mm -> 12 columns
    assert on_grid.shape == (3, 20, 12)
    assert on_grid.sum() == pytest.approx(mask.sum() / 8, rel=0.3)
    assert pre.to_original(on_grid.astype(np.float32), volume).shape == (3, 40, 48)


def test_to_original_and_transform_mask_check_their_shapes():
    volume = _noise(0)
    pre = ImagePreprocessor(size=(8, 8)).fit([volume])
    with pytest.raises(DataError, match=r"case.nii: the map to put back has shape \(4, 9, 8\); expected \(4, 8, 8\)"):
        pre.to_original(np.zeros((4, 9, 8)), volume)
    with pytest.raises(DataError, match=r"case.nii: the mask has shape \(4, 20, 23\) but the image \(4, 20, 24\)"):
        pre.transform_mask(np.zeros((4, 20, 23)), volume)


def _real_case(name: str) -> tuple[Vol, np.ndarray]:
    nrrd = pytest.importorskip("nrrd")
    image, label = PYRADIOMICS / f"{name}_image.nrrd", PYRADIOMICS / f"{name}_label.nrrd"
    if not image.exists() or not label.exists():
        pytest.skip(f"the pyradiomics case {name} is not under {PYRADIOMICS}")
    array, header = nrrd.read(str(image))
    mask, _ = nrrd.read(str(label))
    spacing = tuple(float(s) for s in np.linalg.norm(header["space directions"], axis=0)[::-1])
    return Vol(array.transpose(2, 1, 0).astype(np.float32), spacing, f"{name}_image.nrrd", "MR"), \
        (mask.transpose(2, 1, 0) > 0).astype(np.uint8)


def test_a_real_lesion_mask_survives_resampling_and_back():
    volume, mask = _real_case("brain1")   # 0.78 mm pixels -> 1 mm -> back
    pre = ImagePreprocessor(spacing=(1.0, 1.0), size=(224, 224)).fit([volume])
    x = pre.transform(volume)
    assert x.shape == (volume.array.shape[0], 1, 224, 224) and np.isfinite(x).all()
    on_grid = pre.transform_mask(mask, volume)
    assert on_grid.sum() == pytest.approx(mask.sum() * 0.78125 ** 2, rel=0.1)
    back = pre.to_original(on_grid, volume) >= 0.5
    assert _dice(back, mask) > 0.95


# ----- state ---------------------------------------------------------------------------------------------------
def test_a_json_state_round_trip_transforms_identically():
    volumes = [_noise(0, modality="CT"), _noise(1, loc=5.0, modality="MR")]
    pre = ImagePreprocessor(spacing=(0.8, 1.3), size=(16, 16), window=(0.0, 4.0), context=2).fit(volumes)
    loaded = ImagePreprocessor.from_state(json.loads(json.dumps(pre.to_state())))
    assert loaded.get_params() == pre.get_params()
    for volume in volumes:
        np.testing.assert_array_equal(loaded.transform(volume), pre.transform(volume))
        np.testing.assert_array_equal(loaded.transform_mask(_blob_mask(), volume), pre.transform_mask(_blob_mask(),
                                                                                                      volume))
    with pytest.raises(ArtifactError, match="not an image preprocessor state"):
        ImagePreprocessor.from_state({"format": 1})
    with pytest.raises(ArtifactError, match="format 99"):
        ImagePreprocessor.from_state(pre.to_state() | {"format": 99})


# ----- augmentation ---------------------------------------------------------------------------------------------
def _disc_batch(n=6, size=32) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.indices((size, size))
    masks = np.stack([((yy - 12) ** 2 + (xx - 9 - i) ** 2 <= 20) for i in range(n)]).astype(np.uint8)
    return masks[:, None].astype(np.float32), masks


def test_augment_keeps_shapes_and_types_and_is_seeded():
    images, masks = _disc_batch()
    aug = Augment(noise=0.05)
    out, out_masks = aug(images, masks, rng=np.random.default_rng(1))
    assert out.shape == images.shape and out.dtype == np.float32
    assert out_masks.shape == masks.shape and out_masks.dtype == np.uint8 and set(np.unique(out_masks)) <= {0, 1}
    again, again_masks = aug(images, masks, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(again_masks, out_masks)
    other, _ = aug(images, masks, rng=np.random.default_rng(2))
    assert not np.array_equal(other, out)
    assert aug(images, rng=np.random.default_rng(1))[1] is None
    channel_masks = aug(images, masks[:, None], rng=np.random.default_rng(1))[1]
    np.testing.assert_array_equal(channel_masks[:, 0], out_masks)


def test_augment_on_torch_returns_torch_and_leaves_the_input_alone():
    torch = pytest.importorskip("torch")
    images, masks = _disc_batch()
    before = images.copy()
    x, m = torch.from_numpy(images), torch.from_numpy(masks)
    out, out_masks = Augment()(x, m, rng=np.random.default_rng(0))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and tuple(out.shape) == images.shape
    assert isinstance(out_masks, torch.Tensor) and out_masks.dtype == torch.uint8
    np.testing.assert_array_equal(images, before)


def test_the_mask_follows_the_image_geometry_and_skips_intensity_changes():
    images, masks = _disc_batch()
    out, out_masks = Augment(flip=True, rotate_degrees=25.0, intensity_jitter=0.0)(
        images, masks, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(out[:, 0] > 0.5, out_masks.astype(bool))   # the image is its own mask here
    assert not np.array_equal(out_masks, masks)
    jittered, same_masks = Augment(flip=False, rotate_degrees=0.0, intensity_jitter=0.5)(
        images, masks, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(same_masks, masks)
    assert not np.allclose(jittered, images)


def test_flips_are_left_right_and_exact():
    images, masks = _disc_batch(n=16)
    out, out_masks = Augment(rotate_degrees=0.0, intensity_jitter=0.0)(images, masks, rng=np.random.default_rng(0))
    flipped = [not np.array_equal(o, i) for o, i in zip(out, images, strict=True)]
    assert 0 < sum(flipped) < 16
    for o, i, m, om, f in zip(out, images, masks, out_masks, flipped, strict=True):
        np.testing.assert_array_equal(o, i[..., ::-1] if f else i)
        np.testing.assert_array_equal(om, m[..., ::-1] if f else m)


def test_a_small_rotation_keeps_a_centred_disc_in_place():
    size = 33
    yy, xx = np.indices((size, size))
    disc = ((yy - 16) ** 2 + (xx - 16) ** 2 <= 64).astype(np.uint8)[None]
    _, rotated = Augment(flip=False, rotate_degrees=10.0)(disc[None].astype(np.float32), disc,
                                                           rng=np.random.default_rng(0))
    assert _dice(rotated, disc) > 0.95


def test_augment_settings_round_trip_and_bad_values_are_refused():
    aug = Augment(flip=False, rotate_degrees=5, intensity_jitter=0.2, noise=0.01)
    assert Augment.from_dict(json.loads(json.dumps(aug.to_dict()))) == aug
    with pytest.raises(ConfigError, match="rotate_degrees must be a finite number >= 0"):
        Augment(rotate_degrees=-1)
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['zoom'\]"):
        Augment.from_dict({"zoom": 1.2})
    with pytest.raises(DataError, match=r"images must be a \(N, C, H, W\) batch"):
        Augment()(np.zeros((3, 8, 8), np.float32), rng=np.random.default_rng(0))
    with pytest.raises(DataError, match="do not match images"):
        Augment()(np.zeros((3, 1, 8, 8), np.float32), np.zeros((2, 8, 8)), rng=np.random.default_rng(0))
