"""Where an image model looks: Grad-CAM for conv nets and occlusion maps for any scoring function.

``grad_cam`` (Selvaraju et al., 2017) weighs the feature maps A_k of one convolutional layer by the mean
gradient of the target score over each map, α_k = mean(∂score/∂A_k), and keeps ReLU(Σ_k α_k A_k),
upsampled bilinearly to the input size. ``occlusion_map`` (Zeiler & Fergus, 2014) needs no gradients
and no access to the net: it slides a patch of baseline intensity over the image and records how far
the score drops; it checks Grad-CAM with a method that shares none of its assumptions.

Both return (N, H, W) float32 maps scaled per image to [0, 1] (all zeros when nothing raises the score).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from precimed.errors import ConfigError, DataError

__all__ = ["grad_cam", "occlusion_map"]


def _images(X: Any) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise DataError(f"saliency needs images as a 4-D array (N, C, H, W); got shape {X.shape}")
    if not np.isfinite(X).all():
        raise DataError("saliency needs finite images; got NaN or infinite values")
    return X


def _unit(maps: np.ndarray) -> np.ndarray:
    """Scale each (H, W) map to [0, 1] by its maximum (maps are non-negative); an all-zero map stays zero."""
    peak = maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1.0), 0.0).astype(np.float32)


def grad_cam(model: nn.Module, layer: nn.Module, X: np.ndarray, *, target: int = 0, tabular: Any = None,
             batch_size: int = 32) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] of output column ``target`` with respect to ``layer``'s output.

    The model runs in eval mode; its mode is restored afterwards, the hooks removed, and no parameter
    gradient is kept (gradients are taken with ``torch.autograd.grad`` with respect to the activations).
    ``tabular`` (N, F) is passed as the second input of a fusion net.
    """
    X = _images(X)
    tab = None if tabular is None else np.asarray(tabular, dtype=np.float32)
    if tab is not None and len(tab) != len(X):
        raise DataError(f"tabular features must have one row per image ({len(X)}); got shape {tab.shape}")
    captured: list[Tensor] = []

    def keep(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        captured.append(output)

    was_training = model.training
    handle = layer.register_forward_hook(keep)
    maps: list[np.ndarray] = []
    try:
        model.eval()
        for lo in range(0, len(X), max(int(batch_size), 1)):
            x = torch.from_numpy(X[lo:lo + batch_size])
            captured.clear()
            with torch.enable_grad():
                out = model(x) if tab is None else model(x, torch.from_numpy(tab[lo:lo + batch_size]))
                if not 0 <= target < out.shape[1]:
                    raise ConfigError(f"target {target} is not an output of the model ({out.shape[1]} column(s))")
                if not captured:
                    raise ConfigError(f"the layer {type(layer).__name__} was not used by the model's forward pass")
                activation = captured[-1]
                (grads,) = torch.autograd.grad(out[:, target].sum(), activation)
            weights = grads.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * activation.detach()).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
            maps.append(cam[:, 0].numpy())
    finally:
        handle.remove()
        model.train(was_training)
    return _unit(np.concatenate(maps))


def _starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, max(size - patch, 0) + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)  # cover the last rows / columns too
    return starts


def _scores(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray) -> np.ndarray:
    score = np.asarray(predict(X), dtype=float)
    if score.ndim == 2:
        score = score[:, -1]  # predict_proba: the positive class
    if score.shape != (len(X),):
        raise DataError(f"predict must return one score per image ({len(X)}) or an (N, classes) array; "
                        f"got shape {np.shape(score)}")
    return score


def occlusion_map(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, *, patch: int = 8, stride: int = 4,
                  baseline: float | None = None) -> np.ndarray:
    """Occlusion maps (N, H, W) in [0, 1]: each pixel's mean drop in the score over the patches covering it.

    ``predict(images) -> (N,)`` scores (an (N, K) array: the last column); a ``patch``×``patch`` square,
    moved by ``stride`` pixels, is set to ``baseline`` (default: each image's mean) in every channel.
    Drops are clipped at 0 (a patch whose removal raises the score is not evidence for it).
    """
    X = _images(X)
    if patch < 1 or stride < 1:
        raise ConfigError(f"patch and stride must be positive pixel counts; got patch={patch}, stride={stride}")
    n, _, height, width = X.shape
    fill = (X.mean(axis=(1, 2, 3)) if baseline is None else np.full(n, float(baseline))).astype(np.float32)
    reference = _scores(predict, X)
    total = np.zeros((n, height, width))
    count = np.zeros((height, width))
    for r in _starts(height, patch, stride):
        for c in _starts(width, patch, stride):
            occluded = X.copy()
            occluded[:, :, r:r + patch, c:c + patch] = fill[:, None, None, None]
            drop = reference - _scores(predict, occluded)
            total[:, r:r + patch, c:c + patch] += drop[:, None, None]
            count[r:r + patch, c:c + patch] += 1
    return _unit(np.clip(total / np.maximum(count, 1), 0.0, None))
