"""Synthetic lesions on real anatomy: known masks for the quantitative checks that 5 real cases cannot give.

:func:`background_slices` takes real 2-D slices from the built-in image sets that are on this machine (Colin27 T1
MRI axial slices, the InVesalius head CT in a brain window, and the lesion-free slices of the pyradiomics cases),
scaled to [0, 1] per source volume and resized to ``size`` x ``size``. :func:`make_lesion_set` inserts seeded
lesions of known radius, contrast, texture and shape into them, so that detection AUROC, segmentation Dice and
saliency localisation can be measured against lesion size and contrast, with each slice's source volume kept as
its group (splits stay by volume, never by slice).

A lesion is an ellipse whose boundary radius carries smooth radial noise (an irregular blob), placed inside the
anatomy (its centre lies where the background is above both its 20th percentile and its 10th percentile + 0.05),
added on top of the background as ``sign x contrast x local std`` (the std of the background around the lesion),
with smoothed Gaussian texture (``texture x local std``) inside and a soft 1-pixel edge; the mask is where the
blob is >= 0.5. Every image, positive or negative, gets the same global Gaussian noise, so noise alone cannot
tell them apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from precimed.errors import ConfigError, DataError

GLOBAL_NOISE = 0.02  # std of the Gaussian noise added to every image, in background units ([0, 1])
MIN_LOCAL_STD = 0.02  # floor of the local background std, so a lesion on a flat patch still has a contrast


@dataclass
class LesionSet:
    """Images with and without an inserted lesion, their masks and the lesion parameters."""

    images: np.ndarray  # (N, 1, H, W) float32
    masks: np.ndarray  # (N, H, W) uint8
    labels: np.ndarray  # (N,) int: 1 = lesion inserted
    radius_px: np.ndarray  # (N,) float: the lesion's nominal radius (0 for negatives)
    contrast: np.ndarray  # (N,) float: in units of the local background std (0 for negatives)
    groups: np.ndarray  # (N,) str: the background's source-volume id


# ----------------------------------------------------------------------------------------------- backgrounds


def background_slices(*, size: int = 64, seed: int = 0, per_source: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Real 2-D backgrounds (N, size, size) float32 in [0, 1] and their source-volume ids (N,) str.

    Up to ``per_source`` slices per source volume (chosen with ``seed``), from whichever of colin27,
    invesalius_ct and pyradiomics are on this machine; a DataError when none is.
    """
    if size < 8 or per_source < 1:
        raise ConfigError(f"background_slices: size={size}, per_source={per_source}; "
                          "expected size >= 8, per_source >= 1")
    rng = np.random.default_rng(seed)
    slices: list[np.ndarray] = []
    groups: list[str] = []
    for group, stack in _source_stacks():
        chosen = _pick(stack, size, per_source, rng)
        slices.extend(chosen)
        groups.extend([group] * len(chosen))
    if not slices:
        raise DataError("no background image set on this machine (colin27, invesalius_ct or pyradiomics); get them "
                        "with: bash scripts/fetch_imaging_data.sh")
    return np.stack(slices).astype(np.float32), np.array(groups, dtype=str)


def _source_stacks():
    """(group id, (z, y, x) float array scaled to [0, 1]) for every available source volume, in a fixed order."""
    from precimed.data.image_sets import image_set_available, image_set_path, load_case, pyradiomics_cases, read_inv3
    from precimed.data.images import WINDOW_PRESETS, apply_window, read_image

    if image_set_available("colin27"):
        volume = read_image(image_set_path("colin27")).array  # RAS: axis 0 runs inferior -> superior, axial slices
        yield "colin27", _percentile_scale(volume)
    if image_set_available("invesalius_ct"):
        volume = read_inv3(image_set_path("invesalius_ct")).array
        yield "invesalius_ct", apply_window(volume, *WINDOW_PRESETS["ct_brain"])
    if image_set_available("pyradiomics"):
        for case in pyradiomics_cases():
            volume, mask = load_case(case)
            free = ~mask.any(axis=(1, 2))
            if not free.any():
                continue
            array = volume.array[free]
            if case["modality"] == "CT":
                scaled = apply_window(array, *WINDOW_PRESETS["ct_lung"])
            else:
                scaled = _percentile_scale(array)
            yield f"pyradiomics:{case['case']}", scaled


def _percentile_scale(volume: np.ndarray) -> np.ndarray:
    low, high = np.percentile(volume, [1.0, 99.0])
    return np.clip((volume - low) / max(float(high - low), 1e-6), 0.0, 1.0).astype(np.float32)


def _square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square, then linear zoom to ``size`` x ``size``."""
    h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top:top + side, left:left + side]
    out = ndimage.zoom(crop, size / side, order=1)
    if out.shape != (size, size):  # zoom rounds the output shape; pad/crop the odd pixel
        out = np.pad(out, [(0, max(0, size - out.shape[0])), (0, max(0, size - out.shape[1]))], mode="edge")
        out = out[:size, :size]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _mostly_background(image: np.ndarray) -> bool:
    """True when fewer than 20 % of the pixels are above the slice's 10th percentile + 0.05."""
    return float(np.mean(image > np.percentile(image, 10) + 0.05)) < 0.2


def _pick(stack: np.ndarray, size: int, per_source: int, rng: np.random.Generator) -> list[np.ndarray]:
    resized = [_square(s, size) for s in stack]
    kept = [s for s in resized if not _mostly_background(s)]
    if len(kept) <= per_source:
        return kept
    index = np.sort(rng.choice(len(kept), size=per_source, replace=False))
    return [kept[i] for i in index]


# -------------------------------------------------------------------------------------------------- lesions


def make_lesion_set(backgrounds: np.ndarray, groups: np.ndarray, *, n: int, seed: int,
                    radius_px: tuple[float, float] = (2.0, 8.0), contrast: tuple[float, float] = (0.5, 3.0),
                    positive_fraction: float = 0.5, texture: float = 0.3, polarity: str = "bright",
                    noise: float = GLOBAL_NOISE) -> LesionSet:
    """``n`` images drawn (with ``seed``) from ``backgrounds`` (M, H, W), a share ``positive_fraction`` of them
    with one inserted lesion of radius in ``radius_px`` and contrast (local-std units) in ``contrast``.

    ``polarity``: "bright" (default), "dark" or "random" (each lesion's sign drawn at random).
    """
    backgrounds = np.asarray(backgrounds, dtype=np.float32)
    groups = np.asarray(groups).astype(str)
    _check_arguments(backgrounds, groups, n, radius_px, contrast, positive_fraction, texture, polarity, noise)
    rng = np.random.default_rng(seed)
    m, h, w = backgrounds.shape
    source = rng.integers(0, m, size=n)
    n_pos = int(round(n * positive_fraction))
    labels = rng.permutation(np.r_[np.ones(n_pos, dtype=int), np.zeros(n - n_pos, dtype=int)])
    images = np.empty((n, 1, h, w), dtype=np.float32)
    masks = np.zeros((n, h, w), dtype=np.uint8)
    radii = np.zeros(n)
    contrasts = np.zeros(n)
    for i in range(n):
        image = backgrounds[source[i]].astype(np.float64)
        if labels[i]:
            radii[i] = rng.uniform(*radius_px)
            contrasts[i] = rng.uniform(*contrast)
            sign = {"bright": 1.0, "dark": -1.0}.get(polarity) or float(rng.choice([-1.0, 1.0]))
            image, masks[i] = _insert(image, radii[i], sign * contrasts[i], texture, rng)
        images[i, 0] = image + rng.normal(0.0, noise, size=(h, w)) if noise > 0 else image
    return LesionSet(images, masks, labels, radii, contrasts, groups[source])


def _check_arguments(backgrounds: np.ndarray, groups: np.ndarray, n: int, radius_px: tuple[float, float],
                     contrast: tuple[float, float], positive_fraction: float, texture: float, polarity: str,
                     noise: float) -> None:
    if backgrounds.ndim != 3 or backgrounds.shape[0] == 0 or min(backgrounds.shape[1:]) < 8:
        raise ConfigError(f"backgrounds of shape {backgrounds.shape}: expected (M, H, W) with M >= 1, H, W >= 8")
    if groups.shape != (backgrounds.shape[0],):
        raise ConfigError(f"groups of shape {groups.shape}: expected one id per background ({backgrounds.shape[0]},)")
    if n < 1 or not 0.0 <= positive_fraction <= 1.0 or texture < 0 or noise < 0:
        raise ConfigError(f"n={n}, positive_fraction={positive_fraction}, texture={texture}, noise={noise}: "
                          "expected n >= 1, 0 <= positive_fraction <= 1, texture >= 0, noise >= 0")
    side = min(backgrounds.shape[1:])
    if not 0.5 <= radius_px[0] <= radius_px[1] or 4 * radius_px[1] + 2 >= side:
        raise ConfigError(f"radius_px={radius_px}: expected 0.5 <= low <= high, and a lesion that fits the "
                          f"{backgrounds.shape[1]}x{backgrounds.shape[2]} image (high < {(side - 2) / 4})")
    if not 0 <= contrast[0] <= contrast[1]:
        raise ConfigError(f"contrast={contrast}: expected 0 <= low <= high")
    if polarity not in ("bright", "dark", "random"):
        raise ConfigError(f"polarity={polarity!r}: expected 'bright', 'dark' or 'random'")


def _blob(shape: tuple[int, int], centre: tuple[float, float], radius: float,
          rng: np.random.Generator) -> np.ndarray:
    """A soft irregular ellipse in [0, 1] (0.5 on its boundary, a 1-pixel ramp): area about pi r^2."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    angle = rng.uniform(0, math.pi)
    aspect = rng.uniform(0.75, 1.33)  # axes r*aspect and r/aspect: the ellipse keeps the area pi r^2
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    rho = np.hypot(u / aspect, v * aspect)
    phi = np.arctan2(v, u)
    wobble = np.zeros_like(phi)
    for k in (2, 3, 4):  # low-frequency radial noise: an irregular but connected outline
        wobble += rng.normal(0.0, 0.06) * np.cos(k * phi + rng.uniform(0, 2 * math.pi))
    boundary = radius * (1.0 + np.clip(wobble, -0.3, 0.3))
    return np.clip(0.5 + (boundary - rho), 0.0, 1.0)


def _insert(image: np.ndarray, radius: float, signed_contrast: float, texture: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape
    margin = int(math.ceil(1.8 * radius)) + 1
    p10, p20 = np.percentile(image, [10, 20])
    inside = image > max(p20, p10 + 0.05)  # anatomy: above the 20th percentile and clear of the air
    allowed = np.zeros_like(inside)
    allowed[margin:h - margin, margin:w - margin] = True
    candidates = np.argwhere(inside & allowed)
    if len(candidates) == 0:
        candidates = np.argwhere(allowed)
    cy, cx = candidates[rng.integers(0, len(candidates))]
    blob = _blob((h, w), (float(cy), float(cx)), radius, rng)
    yy, xx = np.ogrid[0:h, 0:w]
    near = (yy - cy) ** 2 + (xx - cx) ** 2 <= (2 * radius + 2) ** 2
    local_std = max(float(np.std(image[near])), MIN_LOCAL_STD)
    grain = ndimage.gaussian_filter(rng.normal(0.0, 1.0, size=(h, w)), sigma=1.0)
    grain /= max(float(grain.std()), 1e-9)
    lesion = blob * local_std * (signed_contrast + texture * grain)
    return image + lesion, (blob >= 0.5).astype(np.uint8)


__all__ = ["GLOBAL_NOISE", "LesionSet", "background_slices", "make_lesion_set"]
