"""Fitted image preprocessing for the 2-D / 2.5-D image models, and training-time augmentation.

``ImagePreprocessor`` turns a volume (any object with ``.array`` (z, y, x) float and ``.spacing`` (z, y, x) mm,
such as ``precimed.data.images.ImageVolume``) into model input ``(z, C, H, W)`` float32, in this order:

1. **intensity** (per modality when ``per_modality``): a window ``[low, high]`` maps voxels linearly to [0, 1]
   with clipping (the arithmetic of MONAI's ``ScaleIntensityRange(clip=True)``); the window is a preset name,
   a (center, width) pair (``low = center - width/2``, ``high = center + width/2``) or ``"fit"``: the 0.5 and
   99.5 percentiles of the training volumes' voxels. Then ``"zscore"`` subtracts the mean and divides by the
   standard deviation of the (windowed) training voxels. Both are learned in ``fit`` from the volumes passed
   there and nothing else: CT and MR intensities are not comparable, so each modality gets its own numbers
   and a modality not seen in training is refused.
2. **in-plane resampling** to ``spacing`` (y, x) mm with MONAI's ``Resize`` (bilinear; masks nearest). z is
   never resampled: slices stay slices, because the models are 2-D.
3. **centre crop / pad** to ``size`` (H, W); padding takes the volume's lowest (normalised) intensity.
4. **2.5-D context**: the ``context`` neighbouring slices on each side become channels; at the first and last
   slices the edge slice repeats.

``transform_mask`` puts a (z, y, x) mask on the same grid, and ``to_original`` maps a (z, H, W) probability
map back onto the volume's (z, y, x) grid (undoing the crop / pad, then the resampling), so predictions are
reported on the image the user gave. The fitted state is plain JSON (``to_state`` / ``from_state``).

``Augment`` is the training-time augmentation the estimators apply to each batch (random left-right flips,
small rotations, intensity scale / shift, Gaussian noise) with torch operations on the whole batch, the same
geometric transform for the image and its mask.

MONAI is imported inside the functions that use it: importing ``monai.transforms`` costs about 3-4 s.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from numbers import Real
from typing import Any, Self

import numpy as np

from precimed.errors import ArtifactError, ConfigError, DataError, NotFittedError
from precimed.preprocess.image_features import finite_float32
from precimed.preprocess.state import STATE_FORMAT, check_state

__all__ = ["FIT_PERCENTILES", "STATE_FORMAT", "Augment", "ImagePreprocessor"]

#: the robust window of ``window="fit"``: these percentiles of the training voxels
FIT_PERCENTILES = (0.5, 99.5)
#: voxels drawn per training volume to fit the intensity statistics (a fixed-seed sample, enough for percentiles)
SAMPLE_PER_VOLUME = 200_000
NORMALIZE = ("zscore", "none")
ALL_MODALITIES = "all"
UNKNOWN_MODALITY = "unknown"


# ----- volumes (duck-typed: anything with .array and .spacing) -----------------------------------------------
def _name(volume: Any) -> str:
    return str(getattr(volume, "source", None) or "the volume")


def _checked(volume: Any) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The (z, y, x) float32 array and spacing of a volume, or a DataError naming the volume's source."""
    name = _name(volume)
    if not hasattr(volume, "array") or not hasattr(volume, "spacing"):
        raise DataError(f"{name}: expected an image volume with .array and .spacing, got {type(volume).__name__}")
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise DataError(f"{name}: an image volume is a 3-D (z, y, x) array; got shape {array.shape}")
    if array.size == 0:
        raise DataError(f"{name}: the image is empty (shape {array.shape})")
    array = finite_float32(array, subject=f"{name}: the image", holds="holds", unit="voxel(s)")
    try:
        spacing = tuple(float(s) for s in volume.spacing)
    except (TypeError, ValueError):
        raise DataError(f"{name}: spacing must be 3 numbers (z, y, x) in mm, got {volume.spacing!r}") from None
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise DataError(f"{name}: spacing must be 3 positive finite numbers (z, y, x) in mm, got {spacing}")
    return array, spacing  # type: ignore[return-value]


def _resize(stack: np.ndarray, shape: tuple[int, int], mode: str) -> np.ndarray:
    """Resize every (y, x) slice of a (z, y, x) stack to ``shape`` with MONAI's Resize (slices as channels)."""
    if stack.shape[1:] == tuple(shape):
        return stack
    from monai.transforms import Resize
    from monai.utils import convert_to_numpy

    out = Resize(spatial_size=tuple(shape), mode=mode)(stack.astype(np.float32, copy=False))
    return convert_to_numpy(out, dtype=np.float32)


@dataclass(frozen=True)
class _Axis:
    """Centre crop / pad of one axis: ``length`` pixels from ``src`` in the resampled image go to ``dst``."""

    src: int
    dst: int
    length: int

    @classmethod
    def centre(cls, n: int, target: int) -> _Axis:
        if n >= target:
            return cls(src=(n - target) // 2, dst=0, length=target)
        return cls(src=0, dst=(target - n) // 2, length=n)


def _crop_pad(stack: np.ndarray, axes: tuple[_Axis, _Axis], size: tuple[int, int], fill: float) -> np.ndarray:
    ay, ax = axes
    out = np.full((stack.shape[0], *size), fill, dtype=stack.dtype)
    out[:, ay.dst:ay.dst + ay.length, ax.dst:ax.dst + ax.length] = \
        stack[:, ay.src:ay.src + ay.length, ax.src:ax.src + ax.length]
    return out


def _modality_key(modality: Any) -> str:
    return UNKNOWN_MODALITY if modality is None or str(modality).strip() == "" else str(modality).strip().upper()


def _window_presets() -> dict[str, tuple[float, float]]:
    """The named CT windows of ``precimed.data.images`` (looked up at run time: that module may be absent)."""
    try:
        module = importlib.import_module("precimed.data.images")
    except ImportError:
        return {}
    return dict(getattr(module, "WINDOW_PRESETS", {}))


# ----- the fitted preprocessor --------------------------------------------------------------------------------
class ImagePreprocessor:
    """Fitted on training volumes only; state saved as JSON with the model (``to_state`` / ``from_state``).

    See the module docstring for the steps. Parameters:

    - ``spacing``: in-plane target (y, x) in mm; None keeps each volume's own pixel grid.
    - ``size``: (H, W) of the output after the centre crop / pad.
    - ``window``: ``"fit"`` (robust percentiles of the training voxels), a preset name of
      ``precimed.data.images.WINDOW_PRESETS``, a (center, width) pair, or None (no window).
    - ``normalize``: ``"zscore"`` (mean / std of the windowed training voxels) or ``"none"``.
    - ``context``: k neighbouring slices on each side as channels (C = 2k + 1).
    - ``per_modality``: fit window and normalisation separately per modality.
    """

    def __init__(self, *, spacing: tuple[float, float] | None = None, size: tuple[int, int] = (96, 96),
                 window: str | tuple[float, float] | None = "fit", normalize: str = "zscore", context: int = 0,
                 per_modality: bool = True) -> None:
        self.spacing = spacing
        self.size = size
        self.window = window
        self.normalize = normalize
        self.context = context
        self.per_modality = per_modality

    # -- parameters --------------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {"spacing": None if self.spacing is None else [float(s) for s in self.spacing],
                "size": [int(s) for s in self.size],
                "window": list(self.window) if isinstance(self.window, tuple | list) else self.window,
                "normalize": self.normalize, "context": int(self.context), "per_modality": bool(self.per_modality)}

    def _check_params(self) -> None:
        where = type(self).__name__
        try:
            spacing = None if self.spacing is None else [float(v) for v in self.spacing]
        except (TypeError, ValueError):
            spacing = []
        if spacing is not None and (len(spacing) != 2 or not all(math.isfinite(v) and v > 0 for v in spacing)):
            raise ConfigError(f"{where}: spacing must be None or 2 positive numbers (y, x) in mm, got {self.spacing!r}")
        try:
            size_ok = len(self.size) == 2 and all(int(v) == v and v >= 1 for v in self.size)
        except (TypeError, ValueError):
            size_ok = False
        if not size_ok:
            raise ConfigError(f"{where}: size must be 2 positive integers (H, W), got {self.size!r}")
        if self.normalize not in NORMALIZE:
            raise ConfigError(f"{where}: normalize must be one of {list(NORMALIZE)}, got {self.normalize!r}")
        if isinstance(self.context, bool) or not isinstance(self.context, int | np.integer) or self.context < 0:
            raise ConfigError(f"{where}: context must be an integer >= 0, got {self.context!r}")
        self._fixed_window()  # a wrong preset name or pair is refused before any data is read

    def _fixed_window(self) -> tuple[float, float] | None:
        """(low, high) of a preset or (center, width) window; None for "fit" and no window."""
        where = type(self).__name__
        window = self.window
        if window is None or window == "fit":
            return None
        if isinstance(window, str):
            presets = _window_presets()
            if window not in presets:
                known = sorted(presets) or "none available: precimed.data.images is not installed"
                raise ConfigError(f"{where}: unknown window preset {window!r}; expected 'fit', None, "
                                  f"(center, width) or a preset name ({known})")
            window = presets[window]
        try:
            center, width = (float(v) for v in window)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: window must be 'fit', None, a preset name or (center, width), "
                              f"got {self.window!r}") from None
        if not (math.isfinite(center) and math.isfinite(width) and width > 0):
            raise ConfigError(f"{where}: a window's width must be positive and both values finite, got "
                              f"center={center}, width={width}")
        return center - width / 2, center + width / 2

    # -- fit ------------------------------------------------------------------------------------------------
    def fit(self, volumes: Sequence, modalities: Sequence[str | None] | None = None) -> Self:
        """Learn the window and normalisation of each modality from these training volumes only.

        ``modalities`` (one per volume) default to each volume's ``.modality``. The statistics are computed on
        all voxels of a volume up to ``SAMPLE_PER_VOLUME`` of them, else on that many drawn at random (seed 0),
        so a large CT volume does not outweigh the others a hundredfold.
        """
        self._check_params()
        volumes = list(volumes)
        if not volumes:
            raise DataError(f"{type(self).__name__}.fit: no training volumes given")
        if modalities is None:
            modalities = [getattr(v, "modality", None) for v in volumes]
        modalities = list(modalities)
        if len(modalities) != len(volumes):
            raise DataError(f"{type(self).__name__}.fit: {len(modalities)} modalities for {len(volumes)} volumes; "
                            "give one modality per volume (or None)")
        rng = np.random.default_rng(0)
        samples: dict[str, list[np.ndarray]] = {}
        for volume, modality in zip(volumes, modalities, strict=True):
            array, _ = _checked(volume)
            flat = array.ravel()
            if flat.size > SAMPLE_PER_VOLUME:
                flat = flat[rng.integers(0, flat.size, SAMPLE_PER_VOLUME)]
            key = self._key(modality) if self.per_modality else ALL_MODALITIES
            samples.setdefault(key, []).append(flat.astype(np.float64))
        self.stats_ = {key: self._fit_stats(np.concatenate(parts)) for key, parts in sorted(samples.items())}
        self.n_volumes_fit_ = len(volumes)
        return self

    @staticmethod
    def _key(modality: Any) -> str:
        return _modality_key(modality)

    def _fit_stats(self, voxels: np.ndarray) -> dict[str, float | None]:
        fixed = self._fixed_window()
        if self.window == "fit":
            low, high = (float(v) for v in np.percentile(voxels, FIT_PERCENTILES))
            if high <= low:  # a constant image: any unit-width window keeps the value
                high = low + 1.0
        elif fixed is not None:
            low, high = fixed
        else:
            low = high = None
        stats: dict[str, float | None] = {"low": low, "high": high, "mean": 0.0, "std": 1.0}
        if self.normalize == "zscore":
            values = _apply_window(voxels, low, high)
            std = float(values.std())
            stats["mean"], stats["std"] = float(values.mean()), std if std > 1e-8 else 1.0
        return stats

    # -- transform ----------------------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not hasattr(self, "stats_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit() on the training volumes first")

    def _stats_for(self, volume: Any, modality: str | None) -> dict[str, float | None]:
        if not self.per_modality:
            return self.stats_[ALL_MODALITIES]
        key = self._key(modality if modality is not None else getattr(volume, "modality", None))
        if key not in self.stats_:
            raise DataError(f"{_name(volume)}: modality {key!r} was not seen in training; the preprocessor was "
                            f"fitted on {sorted(self.stats_)}")
        return self.stats_[key]

    def _geometry(self, shape: tuple[int, ...], spacing: tuple[float, float, float]
                  ) -> tuple[tuple[int, int], tuple[_Axis, _Axis]]:
        """The resampled in-plane shape and the crop / pad of each axis for a volume of this shape and spacing."""
        _, ny, nx = shape
        if self.spacing is None:
            resampled = (ny, nx)
        else:
            ty, tx = (float(s) for s in self.spacing)
            resampled = (max(1, round(ny * spacing[1] / ty)), max(1, round(nx * spacing[2] / tx)))
        h, w = (int(s) for s in self.size)
        return resampled, (_Axis.centre(resampled[0], h), _Axis.centre(resampled[1], w))

    def transform(self, volume: Any, modality: str | None = None) -> np.ndarray:
        """The model input of a volume: (z, C, H, W) float32 (modality: the volume's own when None)."""
        self._require_fitted()
        array, spacing = _checked(volume)
        stats = self._stats_for(volume, modality)
        values = _apply_window(array, stats["low"], stats["high"])
        values = ((values - stats["mean"]) / stats["std"]).astype(np.float32)
        resampled, axes = self._geometry(array.shape, spacing)
        values = _resize(values, resampled, "bilinear")
        values = _crop_pad(values, axes, self._size(), fill=float(values.min()))
        return _with_context(values, int(self.context))

    def transform_mask(self, mask: np.ndarray, volume: Any) -> np.ndarray:
        """A (z, y, x) 0/1 mask of ``volume`` on the model's grid: (z, H, W) uint8 (nearest neighbour)."""
        array, spacing = _checked(volume)
        mask = np.asarray(mask)
        if mask.shape != array.shape:
            raise DataError(f"{_name(volume)}: the mask has shape {mask.shape} but the image {array.shape}; "
                            "a mask must match its image voxel for voxel")
        resampled, axes = self._geometry(array.shape, spacing)
        binary = (mask > 0).astype(np.float32)
        binary = _resize(binary, resampled, "nearest-exact")
        return _crop_pad((binary > 0.5).astype(np.uint8), axes, self._size(), fill=0)

    def to_original(self, prob: np.ndarray, volume: Any) -> np.ndarray:
        """A (z, H, W) map on the model's grid back on the volume's (z, y, x) grid: float32 (outside the crop: 0).

        The crop / pad is undone exactly; the resampling back to the volume's pixels is bilinear, so a
        probability map stays in [0, 1] and a 0/1 mask thresholded at 0.5 is the original mask up to the
        resampling at its border (exactly the original mask when ``spacing`` is None and nothing was cropped).
        """
        array, spacing = _checked(volume)
        prob = np.asarray(prob, dtype=np.float32)
        size = self._size()
        expected = (array.shape[0], *size)
        if prob.shape != expected:
            raise DataError(f"{_name(volume)}: the map to put back has shape {prob.shape}; expected {expected} "
                            "(z slices of the volume, then the preprocessor's size)")
        resampled, (ay, ax) = self._geometry(array.shape, spacing)
        canvas = np.zeros((array.shape[0], *resampled), dtype=np.float32)
        canvas[:, ay.src:ay.src + ay.length, ax.src:ax.src + ax.length] = \
            prob[:, ay.dst:ay.dst + ay.length, ax.dst:ax.dst + ax.length]
        return _resize(canvas, array.shape[1:], "bilinear")

    def _size(self) -> tuple[int, int]:
        return int(self.size[0]), int(self.size[1])

    # -- shape of the output ---------------------------------------------------------------------------------
    @property
    def channel_names(self) -> list[str]:
        """One name per channel: ``z-k`` .. ``z`` .. ``z+k`` (the slice itself is ``z``)."""
        k = int(self.context)
        return [f"z{offset:+d}" if offset else "z" for offset in range(-k, k + 1)]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of each slice the preprocessor produces."""
        return 2 * int(self.context) + 1, *self._size()

    # -- JSON state ------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        self._require_fitted()
        return {"format": STATE_FORMAT, "estimator": type(self).__name__, "params": self.get_params(),
                "stats": {key: dict(value) for key, value in self.stats_.items()},
                "n_volumes_fit": int(self.n_volumes_fit_)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ImagePreprocessor:
        expected = {"format", "estimator", "params", "stats", "n_volumes_fit"}
        check_state(state, cls, expected, "an image preprocessor")
        params = dict(state["params"])
        try:
            new = cls(spacing=None if params.get("spacing") is None else tuple(params["spacing"]),
                      size=tuple(params["size"]),
                      window=tuple(params["window"]) if isinstance(params.get("window"), list) else params["window"],
                      normalize=params["normalize"], context=int(params["context"]),
                      per_modality=bool(params["per_modality"]))
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{cls.__name__}.from_state: bad parameters: {exc}") from None
        stats = {}
        for key, value in state["stats"].items():
            if set(value) != {"low", "high", "mean", "std"}:
                raise ArtifactError(f"{cls.__name__}.from_state: the statistics of {key!r} have keys {sorted(value)}")
            stats[str(key)] = {k: None if v is None else float(v) for k, v in value.items()}
        new.stats_ = stats
        new.n_volumes_fit_ = int(state["n_volumes_fit"])
        return new


def _apply_window(values: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """Linear map of [low, high] to [0, 1] with clipping; values unchanged without a window."""
    if low is None or high is None:
        return values
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _with_context(stack: np.ndarray, k: int) -> np.ndarray:
    """(z, H, W) → (z, 2k+1, H, W): slice i's channels are slices i-k .. i+k, the edge slice repeated."""
    z = stack.shape[0]
    index = np.clip(np.arange(z)[:, None] + np.arange(-k, k + 1)[None, :], 0, z - 1)
    return np.ascontiguousarray(stack[index], dtype=np.float32)


# ----- augmentation ----------------------------------------------------------------------------------------------
@dataclass
class Augment:
    """Training-time augmentation of a batch (images (N, C, H, W), masks (N, H, W) or (N, 1, H, W)).

    Per image, independently, drawn from ``rng``: a left-right flip with probability 0.5 (``flip``); a rotation
    by an angle uniform in ±``rotate_degrees`` about the image centre (bilinear, edge pixels repeated outside
    the image); an intensity scale ``1 + u`` and shift ``v`` with u, v uniform in ±``intensity_jitter`` (in
    the units of the normalised image); Gaussian noise of standard deviation ``noise``. The mask gets the same
    flip and rotation (bilinear, then thresholded at 0.5; zero outside), never the intensity changes. Numpy in
    → numpy out, torch in → torch out, each with its shape and dtype. The same ``rng`` state gives the same
    result.
    """

    flip: bool = True
    rotate_degrees: float = 10.0
    intensity_jitter: float = 0.1
    noise: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rotate_degrees", "intensity_jitter", "noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"Augment: {name} must be a finite number >= 0, got {value!r}")

    def __call__(self, images: Any, masks: Any = None, *, rng: np.random.Generator) -> tuple[Any, Any]:
        import torch

        x = torch.as_tensor(images)
        if x.ndim != 4:
            raise DataError(f"Augment: images must be a (N, C, H, W) batch, got shape {tuple(x.shape)}")
        m = None if masks is None else torch.as_tensor(masks)
        if m is not None and (m.ndim not in (3, 4) or m.shape[0] != x.shape[0] or m.shape[-2:] != x.shape[-2:]):
            raise DataError(f"Augment: masks of shape {tuple(m.shape)} do not match images {tuple(x.shape)}; "
                            "expected (N, H, W) or (N, 1, H, W)")
        n = x.shape[0]
        out = x.float().clone()  # never hand back (a view of) the caller's batch
        mf = None if m is None else (m if m.ndim == 4 else m[:, None]).float()
        if self.flip:
            flipped = torch.as_tensor(rng.random(n) < 0.5, device=out.device)
            out = torch.where(flipped[:, None, None, None], out.flip(-1), out)
            if mf is not None:
                mf = torch.where(flipped[:, None, None, None], mf.flip(-1), mf)
        if self.rotate_degrees > 0:
            angles = np.deg2rad(rng.uniform(-self.rotate_degrees, self.rotate_degrees, n))
            out, mf = _rotate(out, mf, angles)
        if self.intensity_jitter > 0:
            j = self.intensity_jitter
            scale = torch.as_tensor(1 + rng.uniform(-j, j, n), dtype=out.dtype, device=out.device)
            shift = torch.as_tensor(rng.uniform(-j, j, n), dtype=out.dtype, device=out.device)
            out = out * scale[:, None, None, None] + shift[:, None, None, None]
        if self.noise > 0:
            generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
            out = out + self.noise * torch.randn(out.shape, generator=generator, dtype=out.dtype).to(out.device)
        new_images = _like(out, images, x)
        if m is None:
            return new_images, None
        return new_images, _like((mf > 0.5).reshape(m.shape), masks, m)

    def to_dict(self) -> dict[str, Any]:
        return {k: (bool(v) if isinstance(v, bool) else float(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Augment:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"Augment: unknown setting(s) {unknown}; expected some of {sorted(names)}")
        return cls(**dict(d))


def _rotate(images: Any, masks: Any, angles: np.ndarray) -> tuple[Any, Any]:
    """Rotate each image (and mask) of a batch about its centre by its angle (radians), in pixel space."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = images.shape
    cos, sin = np.cos(angles), np.sin(angles)
    # normalised coordinates run over [-1, 1] on both axes; scale by the aspect ratio so the rotation is rigid
    theta = np.zeros((n, 2, 3))
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    theta_t = torch.as_tensor(theta, dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta_t, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if masks is not None:
        masks = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return images, masks


def _like(result: Any, original: Any, as_tensor: Any) -> Any:
    """``result`` in the type, dtype and device of ``original`` (numpy or torch)."""
    if isinstance(original, np.ndarray):
        return result.detach().cpu().numpy().astype(original.dtype, copy=False)
    return result.to(dtype=as_tensor.dtype, device=as_tensor.device)
