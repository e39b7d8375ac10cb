"""Grad-CAM and occlusion maps point at the bright square a small CNN learned to detect, better than random maps;
the model is left as it was found."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from precimed.errors import ConfigError, DataError
from precimed.evaluate.segmentation import pointing_game, random_saliency, saliency_iou
from precimed.models.imaging import SmallResNet
from precimed.models.losses import bce_loss
from precimed.models.saliency import grad_cam, occlusion_map


def squares(n: int, seed: int, size: int = 32):
    """Noise images; even rows hold a bright 6×6 square somewhere. Returns images, masks, labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, (n, 1, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(0, n, 2):
        r, c = rng.integers(0, size - 6, 2)
        masks[i, r:r + 6, c:c + 6] = 1
        X[i, 0, r:r + 6, c:c + 6] += 3.0
    return X, masks, (np.arange(n) % 2 == 0).astype(np.float32)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    X, _, y = squares(240, seed=0)
    net = SmallResNet(1, 1, widths=(8, 16), dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, t = torch.from_numpy(X), torch.from_numpy(y)
    for _epoch in range(2):
        net.train()
        for lo in range(0, len(x), 16):
            opt.zero_grad()
            bce_loss(net(x[lo:lo + 16]), t[lo:lo + 16]).backward()
            opt.step()
    net.eval()
    for p in net.parameters():
        p.grad = None
    return net


@pytest.fixture(scope="module")
def positives():
    X, masks, y = squares(40, seed=1)
    return X[y == 1], masks[y == 1]  # 20 images with a square


def _score(net):
    def predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(net(torch.from_numpy(images))[:, 0]).numpy()
    return predict


def test_grad_cam_points_at_the_square_and_a_random_map_does_not(trained, positives):
    X, masks = positives
    maps = grad_cam(trained, trained.cam_layer, X)
    assert maps.shape == (20, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    hits = pointing_game(maps, masks, tolerance_px=2)
    random_hits = pointing_game(random_saliency(maps.shape, seed=0), masks, tolerance_px=2)
    assert hits.mean() >= 0.7
    assert random_hits.mean() < hits.mean() - 0.3
    assert saliency_iou(maps, masks).mean() > saliency_iou(random_saliency(maps.shape, seed=0), masks).mean() + 0.3


def test_occlusion_points_at_the_square_and_a_random_map_does_not(trained, positives):
    X, masks = positives
    maps = occlusion_map(_score(trained), X, patch=6, stride=3)
    assert maps.shape == (20, 32, 32) and maps.min() >= 0.0 and maps.max() <= 1.0
    hits = pointing_game(maps, masks, tolerance_px=2)
    random_hits = pointing_game(random_saliency(maps.shape, seed=1), masks, tolerance_px=2)
    assert hits.mean() >= 0.7
    assert random_hits.mean() < hits.mean() - 0.3


def test_grad_cam_leaves_the_model_unchanged(trained, positives):
    X = positives[0][:4]
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    trained.train()
    maps = grad_cam(trained, trained.cam_layer, X, batch_size=3)
    assert trained.training  # mode restored
    trained.eval()
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())  # batch-norm stats untouched
    assert all(p.grad is None for p in trained.parameters())
    assert not trained.cam_layer._forward_hooks
    assert np.allclose(maps, grad_cam(trained, trained.cam_layer, X), atol=1e-5)  # batching changes nothing


def test_grad_cam_passes_tabular_features_to_a_fusion_net():
    torch.manual_seed(0)
    net = SmallResNet(1, 1, (4, 8), n_tabular=2).eval()
    X = np.random.default_rng(0).normal(size=(3, 1, 16, 16)).astype(np.float32)
    maps = grad_cam(net, net.cam_layer, X, tabular=np.zeros((3, 2)))
    assert maps.shape == (3, 16, 16)
    with pytest.raises(DataError, match="one row per image"):
        grad_cam(net, net.cam_layer, X, tabular=np.zeros((2, 2)))
    with pytest.raises(ConfigError, match="target 1 is not an output"):
        grad_cam(net, net.cam_layer, X, target=1, tabular=np.zeros((3, 2)))


def test_occlusion_is_exact_on_a_score_that_reads_one_pixel():
    X = np.zeros((1, 1, 8, 8), np.float32)
    X[0, 0, 5, 6] = 1.0
    maps = occlusion_map(lambda im: im[:, 0, 5, 6], X, patch=2, stride=2, baseline=0.0)
    assert maps[0, 5, 6] == 1.0
    assert np.count_nonzero(maps) == 4 and maps[0, 4:6, 6:8].all()  # the one 2×2 patch that covers it
    with pytest.raises(ConfigError, match="positive"):
        occlusion_map(lambda im: im[:, 0, 0, 0], X, patch=0)
    with pytest.raises(DataError, match="one score per image"):
        occlusion_map(lambda im: np.zeros(3), X)
