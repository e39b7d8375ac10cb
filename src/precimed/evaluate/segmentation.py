"""Segmentation and saliency scores on plain arrays, and overlay figures as PNG bytes.

Masks in, numbers out: Dice and IoU (with an explicit convention for two empty masks), Dice per case
(over all of a case's voxels, as segmentation papers report it), the pointing game and the IoU of a
thresholded saliency map (how well an explanation map points at the lesion), the smoothed random map
these are compared against, and a bootstrap CI of a mean. Nothing here imports torch or a model: the
caller passes arrays (masks (N, H, W) 0/1, maps (N, H, W) in [0, 1]).

Overlays are drawn on matplotlib's Agg canvas (``Figure`` + ``FigureCanvasAgg``, never pyplot, as in
``precimed.evaluate.plots``): grey image, true lesion outline in green, predicted outline in red,
saliency as a translucent heat map.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage

from precimed.errors import ConfigError, DataError

from .bootstrap import bootstrap_ci

__all__ = [
    "dice",
    "iou",
    "mean_ci",
    "overlay_grid_png",
    "overlay_png",
    "per_case_dice",
    "pointing_game",
    "random_saliency",
    "saliency_iou",
]

TRUTH_COLOR = "#00C000"
PRED_COLOR = "#E00000"
DPI = 100


# ----- overlap ---------------------------------------------------------------------------------------------
def _pair(pred: Any, truth: Any, what: str = "masks") -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise DataError(f"the predicted and true {what} must have the same shape; got {pred.shape} and {truth.shape}")
    return pred != 0, truth != 0


def dice(pred: np.ndarray, truth: np.ndarray, *, empty: float = 1.0) -> float:
    """2|P∩T| / (|P| + |T|) over all pixels (non-zero = lesion); ``empty`` when both masks are empty."""
    p, t = _pair(pred, truth)
    total = int(p.sum()) + int(t.sum())
    return float(empty) if total == 0 else 2.0 * int(np.logical_and(p, t).sum()) / total


def iou(pred: np.ndarray, truth: np.ndarray, *, empty: float = 1.0) -> float:
    """|P∩T| / |P∪T| (Jaccard); ``empty`` when both masks are empty."""
    p, t = _pair(pred, truth)
    union = int(np.logical_or(p, t).sum())
    return float(empty) if union == 0 else int(np.logical_and(p, t).sum()) / union


def per_case_dice(pred_masks: np.ndarray, true_masks: np.ndarray, cases: np.ndarray) -> dict[str, float]:
    """Dice over all voxels of each case (slices grouped by ``cases``, one label per slice), keyed by str(case)."""
    p, t = _pair(pred_masks, true_masks)
    cases = np.asarray(cases)
    if cases.ndim != 1 or len(cases) != len(p):
        raise DataError(f"cases must hold one label per slice ({len(p)}); got shape {cases.shape}", column="cases")
    return {str(case): dice(p[cases == case], t[cases == case]) for case in dict.fromkeys(cases.tolist())}


# ----- saliency ----------------------------------------------------------------------------------------------
def _maps(saliency: Any, masks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(maps, masks, rows with a lesion) as float / bool (N, H, W) arrays."""
    saliency, masks = np.asarray(saliency, dtype=float), np.asarray(masks)
    if saliency.ndim != 3 or saliency.shape != masks.shape:
        raise DataError(f"saliency maps and masks must both be (N, H, W) arrays of one shape; got {saliency.shape} "
                        f"and {masks.shape}")
    if not np.isfinite(saliency).all():
        raise DataError("saliency maps hold NaN or infinite values; expected finite scores")
    masks = masks != 0
    return saliency, masks, np.flatnonzero(masks.any(axis=(1, 2)))


def pointing_game(saliency: np.ndarray, masks: np.ndarray, *, tolerance_px: int = 0) -> np.ndarray:
    """Hit or miss for each image WITH a lesion (images without one are skipped, in order): whether the map's
    maximum (the first in row-major order when tied) falls in the lesion mask grown by ``tolerance_px`` pixels
    (Euclidean distance)."""
    saliency, masks, rows = _maps(saliency, masks)
    if tolerance_px < 0:
        raise ConfigError(f"tolerance_px must be 0 or more; got {tolerance_px}")
    hits = np.zeros(len(rows), dtype=bool)
    for k, i in enumerate(rows):
        r, c = np.unravel_index(int(np.argmax(saliency[i])), saliency[i].shape)
        if tolerance_px == 0:
            hits[k] = bool(masks[i, r, c])
        else:
            distance = ndimage.distance_transform_edt(~masks[i])
            hits[k] = bool(distance[r, c] <= tolerance_px)
    return hits


def saliency_iou(saliency: np.ndarray, masks: np.ndarray, *, top_fraction: float | None = None) -> np.ndarray:
    """IoU with the lesion mask of each map's top pixels, for each image WITH a lesion (in order).

    The top ``top_fraction`` of an image's pixels (default: the lesion's own share of the image, so a
    perfect map scores 1) form the thresholded map; ties are broken by pixel order, so exactly that
    many pixels are kept.
    """
    saliency, masks, rows = _maps(saliency, masks)
    if top_fraction is not None and not 0.0 < top_fraction <= 1.0:
        raise ConfigError(f"top_fraction must lie in (0, 1]; got {top_fraction}")
    out = np.zeros(len(rows))
    for k, i in enumerate(rows):
        flat, truth = saliency[i].ravel(), masks[i].ravel()
        n_top = int(truth.sum()) if top_fraction is None else max(1, int(round(top_fraction * flat.size)))
        top = np.zeros(flat.size, dtype=bool)
        top[np.argsort(-flat, kind="stable")[:n_top]] = True
        out[k] = iou(top, truth)
    return out


def random_saliency(shape: Sequence[int], *, seed: int, smooth: float = 4.0) -> np.ndarray:
    """Random maps (N, H, W) in [0, 1]: Gaussian noise smoothed by a Gaussian of ``smooth`` pixels per image,
    scaled to [0, 1], so the baseline has blobs of about a lesion's size rather than single-pixel peaks."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ConfigError(f"random_saliency needs a shape (N, H, W); got {list(shape)}")
    noise = np.random.default_rng(seed).normal(size=shape)
    if smooth > 0:
        noise = ndimage.gaussian_filter(noise, sigma=(0.0, smooth, smooth))
    return _unit(noise)


def _unit(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


# ----- summaries ---------------------------------------------------------------------------------------------
def mean_ci(values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """The mean of the finite values and its percentile bootstrap CI: {"mean", "low", "high", "n"}
    (NaN entries, e.g. an undefined per-case score, are left out and not counted; no values: NaN, n 0)."""
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    ci = bootstrap_ci(lambda idx: {"mean": float(values[idx].mean())}, values.size, n_boot=n_boot, seed=seed,
                      level=level)["mean"]
    return {"mean": ci["value"], "low": ci["ci_low"], "high": ci["ci_high"], "n": int(values.size)}


# ----- overlays ----------------------------------------------------------------------------------------------
def _draw(ax: Any, image: np.ndarray, truth: Any, pred: Any, saliency: Any, caption: str) -> None:
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise DataError(f"an overlay needs a 2-D image (H, W); got shape {image.shape}")
    finite = image[np.isfinite(image)]
    low, high = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    ax.imshow(image, cmap="gray", vmin=low, vmax=high if high > low else low + 1, interpolation="nearest")
    if saliency is not None:
        ax.imshow(_layer(saliency, image.shape, "saliency"), cmap="jet", alpha=0.4, vmin=0, vmax=1,
                  interpolation="bilinear")
    for mask, color in ((truth, TRUTH_COLOR), (pred, PRED_COLOR)):
        if mask is not None:
            layer = _layer(mask, image.shape, "mask") > 0
            if layer.any() and not layer.all():
                ax.contour(layer.astype(float), levels=[0.5], colors=[color], linewidths=1.2)
    ax.set_xticks([])
    ax.set_yticks([])
    if caption:
        ax.set_title(caption, fontsize=8)


def _layer(values: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.shape != shape:
        raise DataError(f"the {what} must have the image's shape {shape}; got {values.shape}")
    return values


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def overlay_png(image: np.ndarray, *, truth: np.ndarray | None = None, pred: np.ndarray | None = None,
                saliency: np.ndarray | None = None, title: str = "") -> bytes:
    """One slice as PNG bytes: grey image, true outline green, predicted outline red, saliency heat map."""
    fig = Figure(figsize=(3.2, 3.4 if title else 3.2), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    _draw(fig.add_subplot(), image, truth, pred, saliency, title)
    return _png(fig)


def overlay_grid_png(items: list[dict], *, columns: int = 4, title: str = "") -> bytes:
    """A grid of overlays as PNG bytes; each item a dict with "image" and optional "truth", "pred",
    "saliency" and "caption"."""
    if not items:
        raise DataError("overlay_grid_png needs at least one item to draw")
    if columns < 1:
        raise ConfigError(f"columns must be at least 1; got {columns}")
    unknown = sorted({k for item in items for k in item} - {"image", "truth", "pred", "saliency", "caption"})
    if unknown or any("image" not in item for item in items):
        raise DataError(f"each overlay item needs 'image' and may have truth, pred, saliency, caption; "
                        f"got unknown keys {unknown}" if unknown else "each overlay item needs an 'image'")
    cols = min(columns, len(items))
    rows = -(-len(items) // cols)
    fig = Figure(figsize=(2.4 * cols, 2.5 * rows + (0.3 if title else 0.0)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontsize=10)
    for k, item in enumerate(items):
        ax = fig.add_subplot(rows, cols, k + 1)
        _draw(ax, item["image"], item.get("truth"), item.get("pred"), item.get("saliency"),
              str(item.get("caption", "")))
    return _png(fig)
