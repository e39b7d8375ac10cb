"""Image estimators: they learn a bright square, split by patient, refuse bad input, save and reload exactly,
and fine-tune from pretrained weights with frozen groups and a backbone learning rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from precimed import jsonio
from precimed.errors import ConfigError, DataError, NotFittedError
from precimed.train.imaging import THRESHOLDS, ImageClassifier, ImageSegmenter, dice_ce_loss

SMALL = dict(widths=(8, 16), batch_size=16)
SEG = dict(channels=(8, 16, 32), batch_size=8)


def squares(n: int, size: int = 32, seed: int = 0, contrast: float = 3.0):
    """Noise images, half of them (even rows) with a bright 8×8 square; masks and labels to match."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, (n, 1, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    y = np.zeros(n, int)
    for i in range(0, n, 2):
        r, c = rng.integers(1, size - 9, 2)
        masks[i, r:r + 8, c:c + 8] = 1
        X[i, 0, r:r + 8, c:c + 8] += contrast
        y[i] = 1
    return X, masks, y


@pytest.fixture(scope="module")
def data():
    X, masks, y = squares(80)
    groups = np.repeat([f"p{k}" for k in range(8)], 10)
    return X, masks, y, groups


@pytest.fixture(scope="module")
def classifier(data):
    X, _, y, groups = data
    return ImageClassifier(max_epochs=4, **SMALL).fit(X, y, groups=groups)


def _params(net):
    return {k: v.detach().clone() for k, v in net.named_parameters()}


# ----- the classifier ----------------------------------------------------------------------------------------
def test_the_classifier_finds_the_bright_square_on_new_images(classifier):
    X, _, y = squares(60, seed=1)
    proba = classifier.predict_proba(X)
    assert proba.shape == (60, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert roc_auc_score(y, proba[:, 1]) > 0.9
    assert set(classifier.predict(X)) <= {0, 1}
    assert classifier.embed(X).shape == (60, 16)
    assert len(classifier.history_.val_loss) == len(classifier.history_.train_loss) <= 4
    assert classifier.net_.training is False


def test_validation_slices_come_from_patients_not_used_for_training(data):
    _, _, y, groups = data
    model = ImageClassifier(val_fraction=0.25, random_state=3)
    tr, va = model._split(len(y), groups, y)
    assert not set(groups[tr]) & set(groups[va])
    assert len(set(groups[va])) == 2 and len(tr) + len(va) == len(y)
    with pytest.raises(DataError, match="1 patient"):
        model._split(len(y), np.full(len(y), "p0"), y)


def test_the_same_seed_gives_the_same_model_and_another_seed_does_not(data):
    X, _, y, groups = data
    a = ImageClassifier(max_epochs=1, **SMALL).fit(X[:40], y[:40], groups=groups[:40]).predict_proba(X[40:])
    b = ImageClassifier(max_epochs=1, **SMALL).fit(X[:40], y[:40], groups=groups[:40]).predict_proba(X[40:])
    c = ImageClassifier(max_epochs=1, random_state=1, **SMALL).fit(X[:40], y[:40], groups=groups[:40])
    assert np.array_equal(a, b)
    assert not np.allclose(a, c.predict_proba(X[40:]))


def test_state_is_json_plus_weights_and_reloads_to_the_same_predictions(classifier, data):
    X = data[0]
    state, blobs = classifier.to_state()
    assert set(blobs) == {"cnn.pt"}
    assert state["params"]["augment"] is None and state["params"]["widths"] == [8, 16]
    restored = ImageClassifier.from_state(jsonio.loads_strict(jsonio.dumps(state)), blobs)  # through JSON text
    assert np.array_equal(restored.predict_proba(X), classifier.predict_proba(X))


def test_the_fusion_classifier_learns_from_tabular_features(data):
    X, _, _, groups = data
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, len(X))
    noise = rng.normal(0.0, 1.0, X.shape).astype(np.float32)  # images carry no signal; the tabular column does
    tabular = np.column_stack([y * 2.0 - 1.0 + rng.normal(0, 0.3, len(y)), rng.normal(0, 1, len(y))])
    model = ImageClassifier(max_epochs=4, lr=3e-3, **SMALL).fit(noise, y, groups=groups, tabular=tabular)
    assert model.n_tabular_ == 2
    assert roc_auc_score(y, model.predict_proba(noise, tabular=tabular)[:, 1]) > 0.9
    with pytest.raises(DataError, match="2 tabular feature"):
        model.predict_proba(noise)
    with pytest.raises(DataError, match="fitted with 2 tabular"):
        model.predict_proba(noise, tabular=tabular[:, :1])


def test_augment_sees_training_batches_only(data):
    X, _, y, groups = data
    seen: list[int] = []

    def flip(images, masks, rng):
        seen.append(len(images))
        assert masks is None  # a classifier has no mask
        return torch.flip(images, dims=[-1]) if rng.random() < 0.5 else images, masks

    model = ImageClassifier(max_epochs=2, patience=5, augment=flip, **SMALL).fit(X, y, groups=groups)
    n_train = len(X) - 20  # two of the eight patients validate
    assert sum(seen) == 2 * n_train
    assert model.get_params()["augment"] is flip
    assert model.to_state()[0]["params"]["augment"] is None


def test_bad_classifier_input_is_refused_with_the_shape_or_values(data):
    X, _, y, groups = data
    model = ImageClassifier(max_epochs=1, **SMALL)
    with pytest.raises(NotFittedError):
        model.predict_proba(X)
    with pytest.raises(DataError, match=r"4-D array .* got shape \(80, 32, 32\)"):
        model.fit(X[:, 0], y)
    bad = X.copy()
    bad[3, 0, 1, 1] = np.nan
    with pytest.raises(DataError, match="1 NaN/inf value"):
        model.fit(bad, y)
    with pytest.raises(DataError, match="both present"):
        model.fit(X, np.zeros(len(X)))
    with pytest.raises(DataError, match="both present"):
        model.fit(X, y * 2)
    with pytest.raises(DataError, match="one value per slice"):
        model.fit(X, y, groups=groups[:5])
    fitted = model.fit(X[:40], y[:40], groups=groups[:40])
    with pytest.raises(DataError, match=r"1 channel\(s\); got shape \(2, 3, 32, 32\)"):
        fitted.predict(np.zeros((2, 3, 32, 32), np.float32))


# ----- fine-tuning -------------------------------------------------------------------------------------------
def test_fine_tuning_starts_from_the_pretrained_weights_and_keeps_frozen_groups(classifier, data):
    X, _, y, groups = data
    pretrained = classifier.to_state()
    before = _params(classifier.net_)
    tuned = ImageClassifier(max_epochs=2, freeze=("stem", "stage1"), **SMALL).fit(X, y, groups=groups,
                                                                                  init_state=pretrained)
    after = _params(tuned.net_)
    frozen = [k for k in after if k.startswith(("stem.", "stages.0."))]
    moving = [k for k in after if k.startswith(("stages.1.", "head."))]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    assert any(not torch.equal(after[k], before[k]) for k in moving)
    # batch-norm statistics of a frozen group stay as pretrained too
    buffers = dict(tuned.net_.named_buffers())
    assert torch.equal(buffers["stem.1.running_mean"], dict(classifier.net_.named_buffers())["stem.1.running_mean"])
    assert tuned.fine_tuned_ and tuned.to_state()[0]["fine_tuned"] is True
    assert all(p.requires_grad for p in tuned.net_.parameters())


def test_a_zero_backbone_learning_rate_moves_only_the_head(classifier, data):
    X, _, y, groups = data
    before = _params(classifier.net_)
    tuned = ImageClassifier(max_epochs=1, backbone_lr=0.0, lr=1e-2, **SMALL).fit(
        X, y, groups=groups, init_state=classifier.to_state())
    after = _params(tuned.net_)
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith(("stem.", "stages.")))
    assert not torch.equal(after["head.weight"], before["head.weight"])


def test_pretrained_weights_of_another_architecture_are_refused_naming_the_layer(classifier, data):
    X, _, y, groups = data
    wide = ImageClassifier(max_epochs=1, widths=(8, 32), batch_size=16)
    with pytest.raises(ConfigError, match=r"layer 'stages.1.0.conv1.weight' has shape \(16, 8, 3, 3\)"):
        wide.fit(X, y, groups=groups, init_state=classifier.to_state())
    with pytest.raises(ConfigError, match="cannot freeze \\['stage9'\\]"):
        ImageClassifier(freeze=("stage9",), **SMALL).fit(X, y, groups=groups, init_state=classifier.to_state())
    with pytest.raises(ConfigError, match="no 'cnn.pt' weights"):
        ImageClassifier(**SMALL).fit(X, y, groups=groups, init_state=({}, {"unet.pt": b""}))


# ----- the segmenter -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def segmenter(data):
    X, masks, _, groups = data
    return ImageSegmenter(max_epochs=4, lr=5e-3, **SEG).fit(X, masks, groups=groups)


def test_the_segmenter_outlines_the_square_on_new_images(segmenter):
    X, masks, _ = squares(20, seed=2)
    proba = segmenter.predict_proba(X)
    assert proba.shape == (20, 32, 32) and proba.dtype == np.float32
    assert proba.min() >= 0.0 and proba.max() <= 1.0
    pred = segmenter.predict(X)
    assert pred.dtype == np.uint8 and set(np.unique(pred)) <= {0, 1}
    dice = 2 * (pred & masks).sum() / (pred.sum() + masks.sum())
    assert dice > 0.5
    assert segmenter.threshold_ in THRESHOLDS
    assert np.array_equal(segmenter.predict(X, threshold=1.01), np.zeros_like(pred))
    assert segmenter.lesion_weight_ == pytest.approx((32 * 32 * 2 - 64) / 64, rel=0.2)


def test_sliding_window_prediction_covers_larger_slices(segmenter):
    X, masks, _ = squares(4, size=64, seed=3)
    out = segmenter.predict_volume(X, roi=(32, 32), overlap=0.25)
    assert out.shape == (4, 64, 64) and out.dtype == np.uint8
    proba = segmenter.predict_volume(X, roi=(32, 32), proba=True)
    assert proba.dtype == np.float32 and np.array_equal(out, (proba >= segmenter.threshold_).astype(np.uint8))
    assert proba[masks == 1].mean() > proba[masks == 0].mean()
    with pytest.raises(DataError, match="divisible by 4; got 30×32"):
        segmenter.predict_volume(X, roi=(30, 32))
    # one window the size of the slice is the plain forward pass
    assert np.allclose(segmenter.predict_volume(X, roi=(64, 64), proba=True), segmenter.predict_proba(X), atol=1e-6)


def test_the_segmenter_state_reloads_to_the_same_masks(segmenter, data):
    X = data[0][:10]
    state, blobs = segmenter.to_state()
    assert set(blobs) == {"unet.pt"} and state["params"]["channels"] == [8, 16, 32]
    restored = ImageSegmenter.from_state(jsonio.loads_strict(jsonio.dumps(state)), blobs)
    assert restored.threshold_ == segmenter.threshold_
    assert np.array_equal(restored.predict_proba(X), segmenter.predict_proba(X))


def test_the_segmenter_fine_tunes_with_a_frozen_encoder(segmenter, data):
    X, masks, _, groups = data
    before = _params(segmenter.net_)
    tuned = ImageSegmenter(max_epochs=1, freeze=("backbone",), **SEG).fit(X, masks, groups=groups,
                                                                         init_state=segmenter.to_state())
    after = _params(tuned.net_)
    assert torch.equal(after["model.0.conv.unit0.conv.weight"], before["model.0.conv.unit0.conv.weight"])
    assert any(not torch.equal(after[k], before[k]) for k in after)


def test_the_segmenter_moves_masks_with_augmented_images(data):
    X, masks, _, groups = data
    seen = []

    def flip(images, batch_masks, rng):
        assert batch_masks.shape == (len(images), 32, 32) and set(np.unique(batch_masks.numpy())) <= {0, 1}
        seen.append(int(batch_masks.sum()))
        return torch.flip(images, dims=[-1]), torch.flip(batch_masks, dims=[-1])

    model = ImageSegmenter(max_epochs=1, augment=flip, **SEG).fit(X, masks, groups=groups)
    train_rows, _ = model._split(len(X), groups.astype(str), masks.max(axis=(1, 2)).astype(int))
    assert sum(seen) == masks[train_rows].sum()  # every training mask once per epoch, no validation mask


def test_bad_segmenter_input_is_refused(data):
    X, masks, _, _ = data
    model = ImageSegmenter(max_epochs=1, **SEG)
    with pytest.raises(NotFittedError):
        model.predict(X)
    with pytest.raises(DataError, match=r"masks must have shape .* \(80, 32, 32\)"):
        model.fit(X, masks[:, :16])
    with pytest.raises(DataError, match=r"0 \(background\) and 1 \(lesion\) only; got values \[0, 2\]"):
        model.fit(X, masks * 2)
    with pytest.raises(DataError, match="divisible by 4; got 30×32"):
        model.fit(X[:, :, :30], masks[:, :30])
    with pytest.raises(ConfigError, match="lesion_weight"):
        ImageSegmenter(lesion_weight=-1, **SEG).fit(X, masks)


def test_the_lesion_weight_enters_the_cross_entropy_term_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.8).float()
    plain, weighted = dice_ce_loss(1.0), dice_ce_loss(10.0)
    assert torch.allclose(plain.dice(logits, target), weighted.dice(logits, target))
    assert not torch.allclose(plain.ce(logits, target), weighted.ce(logits, target))
