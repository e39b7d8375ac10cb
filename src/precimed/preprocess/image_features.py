"""Radiomic-style slice features and per-pixel features for the non-deep image baselines.

``slice_features`` gives one row of named, hand-defined features per slice: the kind a radiomics pipeline
(pyradiomics' first-order and GLCM classes) computes inside a region of interest, so the slice classifier
baseline is what a radiologist's radiomics model would be. ``pixel_features`` gives every pixel a few local
intensity statistics for the per-pixel gradient-boosting segmenter. Both read the centre channel of a
(N, C, H, W) batch, the slice itself when C = 2k + 1 channels hold its neighbours.

Definitions (x: the intensities inside the ROI, n of them):

- first order: mean, std = sqrt(mean((x - mean)^2)), skewness = m3 / m2^1.5 and kurtosis = m4 / m2^2 (the
  central moments m_k = mean((x - mean)^k); 0 for a constant ROI; kurtosis is not the excess, as in
  pyradiomics), p10 / p50 / p90 percentiles, entropy = -sum(p_b log2 p_b) over a 32-bin histogram of x on
  [min(x), max(x)], energy = sum(x^2).
- gradient: mean and std of the Sobel gradient magnitude sqrt(Gy^2 + Gx^2) of the whole slice, inside the ROI.
- GLCM (grey-level co-occurrence matrix): x quantised to L = 16 levels on [min(x), max(x)],
  q = min(floor(L (x - min) / (max - min)), L - 1); for each offset (0, 1), (1, 1), (1, 0), (1, -1)
  (distance 1, angles 0°, 45°, 90°, 135°) count the pairs of ROI pixels (q at p, q at p + offset), add the
  transpose (symmetric) and divide by the total: p(i, j). Per angle, then averaged over the angles:
  contrast = sum (i - j)^2 p(i, j); homogeneity = sum p(i, j) / (1 + (i - j)^2);
  energy = sum p(i, j)^2; correlation = sum (i - mu_i)(j - mu_j) p(i, j) / (sigma_i sigma_j) (1 when
  sigma = 0, as pyradiomics). A ROI without any pixel pair reads as a constant one (0, 1, 1, 1).
- local maximum: the maximum inside the ROI of the 5×5 mean-filtered slice, and the mean of the top 1 % of x
  (x >= its 99th percentile) minus the median.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from precimed.errors import DataError

__all__ = [
    "GLCM_OFFSETS",
    "PIXEL_FEATURE_NAMES",
    "SLICE_FEATURE_NAMES",
    "check_batch",
    "glcm_features",
    "glcm_matrix",
    "pixel_features",
    "quantize",
    "slice_features",
]

#: (dy, dx) of the four GLCM directions at distance 1: 0°, 45°, 90°, 135°
GLCM_OFFSETS = ((0, 1), (1, 1), (1, 0), (1, -1))
GLCM_LEVELS = 16
HISTOGRAM_BINS = 32
SLICE_FEATURE_NAMES = (
    "mean", "std", "skewness", "kurtosis", "p10", "p50", "p90", "entropy", "energy",
    "gradient_mean", "gradient_std",
    "glcm_contrast", "glcm_homogeneity", "glcm_energy", "glcm_correlation",
    "local_max_mean5", "top1_minus_median",
)
LOCAL_SIZES = (3, 7, 15)
PIXEL_FEATURE_NAMES = (
    "intensity",
    *(f"{stat}_{k}x{k}" for k in LOCAL_SIZES for stat in ("local_mean", "local_std")),
    "gradient", "minus_median", "row", "column",
)


def check_batch(images: Any, *, where: str) -> np.ndarray:
    """A (N, C, H, W) batch of finite numbers as float32, or a DataError naming ``where`` and the shape seen."""
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[0] == 0 or min(array.shape[1:]) == 0:
        raise DataError(f"{where}: images must be a non-empty (N, C, H, W) array, got shape {array.shape}")
    return finite_float32(array, subject=f"{where}: the images", holds="hold", unit="value(s)")


def finite_float32(array: np.ndarray, *, subject: str, holds: str, unit: str) -> np.ndarray:
    """``array`` as float32 when it holds finite numbers; else a DataError naming ``subject`` and the count."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{subject} must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise DataError(f"{subject} {holds} {bad} NaN or infinite {unit}; expected finite intensities")
    return array


def _centre(images: np.ndarray) -> np.ndarray:
    return images[:, images.shape[1] // 2]


# ----- GLCM ------------------------------------------------------------------------------------------------
def quantize(values: np.ndarray, low: float, high: float, levels: int) -> np.ndarray:
    """Grey levels 0 .. levels-1: ``min(floor(levels (v - low) / (high - low)), levels - 1)`` (all 0 if constant)."""
    if high <= low:
        return np.zeros(np.shape(values), dtype=np.int64)
    q = np.floor(levels * (np.asarray(values, dtype=np.float64) - low) / (high - low)).astype(np.int64)
    return np.clip(q, 0, levels - 1)


def glcm_matrix(levels_image: np.ndarray, roi: np.ndarray, levels: int, offset: tuple[int, int]) -> np.ndarray:
    """The symmetric, normalised co-occurrence matrix (levels, levels) of the ROI pixel pairs at ``offset``.

    ``levels_image`` holds integer grey levels 0..levels-1 (see :func:`quantize`); a pair counts when both its
    pixels are in ``roi``. All zeros when no pair exists.
    """
    q = np.asarray(levels_image, dtype=np.int64)
    roi = np.asarray(roi, dtype=bool)
    dy, dx = offset
    h, w = q.shape
    # the pixel p and its neighbour p + offset, both inside the image
    ys, xs = slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))
    yn, xn = slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx))
    both = roi[ys, xs] & roi[yn, xn]
    first, second = q[ys, xs][both], q[yn, xn][both]
    counts = np.bincount(first * levels + second, minlength=levels * levels).reshape(levels, levels).astype(float)
    counts += counts.T
    total = counts.sum()
    return counts / total if total > 0 else counts


def glcm_features(p: np.ndarray) -> dict[str, float]:
    """contrast, homogeneity, energy and correlation of a normalised GLCM ``p`` (see the module docstring)."""
    if p.sum() <= 0:
        return {"glcm_contrast": 0.0, "glcm_homogeneity": 1.0, "glcm_energy": 1.0, "glcm_correlation": 1.0}
    n = p.shape[0]
    i, j = np.indices((n, n), dtype=float)
    mu_i, mu_j = float((i * p).sum()), float((j * p).sum())
    sd_i = float(np.sqrt(((i - mu_i) ** 2 * p).sum()))
    sd_j = float(np.sqrt(((j - mu_j) ** 2 * p).sum()))
    cov = float(((i - mu_i) * (j - mu_j) * p).sum())
    correlation = cov / (sd_i * sd_j) if sd_i > 1e-12 and sd_j > 1e-12 else 1.0
    return {"glcm_contrast": float(((i - j) ** 2 * p).sum()),
            "glcm_homogeneity": float((p / (1 + (i - j) ** 2)).sum()),
            "glcm_energy": float((p ** 2).sum()),
            "glcm_correlation": correlation}


def _glcm_averaged(image: np.ndarray, roi: np.ndarray, low: float, high: float, levels: int) -> dict[str, float]:
    q = quantize(image, low, high, levels)
    matrices = [glcm_matrix(q, roi, levels, offset) for offset in GLCM_OFFSETS]
    # angles without any pair in the ROI (e.g. a one-pixel-wide ROI) do not count; none at all: a constant ROI
    per_angle = [glcm_features(p) for p in matrices if p.sum() > 0] or [glcm_features(matrices[0])]
    return {key: float(np.mean([f[key] for f in per_angle])) for key in per_angle[0]}


# ----- slice features -------------------------------------------------------------------------------------------
def _first_order(x: np.ndarray, bins: int) -> dict[str, float]:
    mean = float(x.mean())
    centred = x - mean
    m2 = float((centred ** 2).mean())
    m3, m4 = float((centred ** 3).mean()), float((centred ** 4).mean())
    flat = m2 <= 1e-12 * max(1.0, mean * mean)
    p10, p50, p90 = (float(v) for v in np.percentile(x, (10, 50, 90)))
    lo, hi = float(x.min()), float(x.max())
    if hi > lo:
        counts = np.histogram(x, bins=bins, range=(lo, hi))[0]
        prob = counts[counts > 0] / x.size
        entropy = float(-(prob * np.log2(prob)).sum())
    else:
        entropy = 0.0
    return {"mean": mean, "std": float(np.sqrt(m2)), "skewness": 0.0 if flat else m3 / m2 ** 1.5,
            "kurtosis": 0.0 if flat else m4 / m2 ** 2, "p10": p10, "p50": p50, "p90": p90, "entropy": entropy,
            "energy": float((x ** 2).sum())}


def _gradient_magnitude(slices: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of each (H, W) slice of a (N, H, W) stack."""
    gy = ndimage.sobel(slices, axis=-2, mode="reflect")
    gx = ndimage.sobel(slices, axis=-1, mode="reflect")
    return np.hypot(gy, gx)


def slice_features(images: np.ndarray, roi: np.ndarray | None = None, *, levels: int = GLCM_LEVELS,
                   bins: int = HISTOGRAM_BINS) -> pd.DataFrame:
    """(N, C, H, W) → a (N, F) frame of the named features of ``SLICE_FEATURE_NAMES`` (module docstring).

    Computed on the centre channel inside ``roi`` (N, H, W) (non-zero = inside) or the whole slice when None.
    An empty ROI is refused (DataError naming the slices).
    """
    array = check_batch(images, where="slice_features").astype(np.float64)
    centre = _centre(array)
    if roi is None:
        regions = np.ones(centre.shape, dtype=bool)
    else:
        regions = np.asarray(roi) != 0
        if regions.shape != centre.shape:
            raise DataError(f"slice_features: roi has shape {regions.shape}; expected (N, H, W) = {centre.shape}")
        empty = np.flatnonzero(~regions.any(axis=(1, 2)))
        if empty.size:
            raise DataError(f"slice_features: the ROI of slice(s) {empty[:10].tolist()} is empty; "
                            "give at least one pixel per slice or roi=None")
    gradient = _gradient_magnitude(centre)
    local_mean = ndimage.uniform_filter(centre, size=(1, 5, 5), mode="reflect")
    rows = []
    for image, region, grad, smooth in zip(centre, regions, gradient, local_mean, strict=True):
        x = image[region]
        features = _first_order(x, bins)
        g = grad[region]
        features |= {"gradient_mean": float(g.mean()), "gradient_std": float(g.std())}
        features |= _glcm_averaged(image, region, float(x.min()), float(x.max()), levels)
        top = x[x >= np.percentile(x, 99)]
        features |= {"local_max_mean5": float(smooth[region].max()),
                     "top1_minus_median": float(top.mean() - features["p50"])}
        rows.append([features[name] for name in SLICE_FEATURE_NAMES])
    return pd.DataFrame(rows, columns=list(SLICE_FEATURE_NAMES), dtype=float)


# ----- pixel features -------------------------------------------------------------------------------------------
def pixel_features(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) → (N*H*W, F) float32 per-pixel features of the centre channel, in ``PIXEL_FEATURE_NAMES``
    order: intensity; local mean and std over 3×3, 7×7 and 15×15 windows (``uniform_filter``,
    std = sqrt(max(E[x^2] - E[x]^2, 0))); Sobel gradient magnitude; intensity minus the slice median; the
    row and column position scaled to [0, 1]. Rows run over slices, then rows, then columns (C order).
    """
    centre = _centre(check_batch(images, where="pixel_features")).astype(np.float64)
    n, h, w = centre.shape
    columns = [centre]
    squared = centre ** 2
    for k in LOCAL_SIZES:
        mean = ndimage.uniform_filter(centre, size=(1, k, k), mode="reflect")
        mean_sq = ndimage.uniform_filter(squared, size=(1, k, k), mode="reflect")
        columns += [mean, np.sqrt(np.maximum(mean_sq - mean ** 2, 0.0))]
    columns.append(_gradient_magnitude(centre))
    columns.append(centre - np.median(centre.reshape(n, -1), axis=1)[:, None, None])
    rows = np.broadcast_to((np.arange(h) / max(h - 1, 1))[None, :, None], centre.shape)
    cols = np.broadcast_to((np.arange(w) / max(w - 1, 1))[None, None, :], centre.shape)
    columns += [rows, cols]
    return np.stack([c.reshape(-1) for c in columns], axis=1).astype(np.float32)
