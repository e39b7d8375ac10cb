"""Labelled 2-D image collections a user has downloaded: MedMNIST ``.npz`` files and MedNIST-style class folders.

No labelled diagnosis image set can be fetched here, and precimed never downloads one at run time: a user who has
a local copy names it in the run config (``data.train.path``). Two layouts are read:

- **MedMNIST** (Yang et al., Sci Data 2023;10:41): one ``.npz`` per data set holding ``train_images``,
  ``train_labels``, ``val_images``, ``val_labels``, ``test_images`` and ``test_labels``; images uint8
  ``(N, H, W)`` or ``(N, H, W, 3)``, labels ``(N, 1)`` integers. As ``data.train`` the file gives its train and
  validation parts, as ``data.test`` its test part: the official split.
- **Class folders** (the MedNIST layout: ``ROOT/<class>/<image>.jpeg``): one sub-folder per class, each holding
  PNG / JPEG pictures.

Both are read without pickles (``np.load(..., allow_pickle=False)``), size-checked before reading, and bounded in
the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from precimed.errors import DataError
from precimed.limits import MAX_INPUT_ENV, check_input_size, max_input_bytes

MAX_IMAGES = 500_000
MAX_PIXELS = 2**28  # all pictures of a collection together, as for one volume
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class ImageCollection:
    """Pictures (N, H, W) float32 in their stored intensity units, integer labels (N,), ids and class names."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    classes: list[str]
    source: str


def _grey(array: np.ndarray) -> np.ndarray:
    if array.ndim == 4 and array.shape[-1] in (3, 4):
        return (array[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    return array.astype(np.float32)


def read_medmnist(path: str | Path, *, part: str) -> ImageCollection:
    """The ``part`` ("train": train + val, or "test") of a MedMNIST ``.npz`` file."""
    p = Path(path)
    check_input_size(p)
    _check_unpacked_size(p)
    names = ("train", "val") if part == "train" else ("test",)
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [f"{n}_{k}" for n in names for k in ("images", "labels") if f"{n}_{k}" not in z.files]
            if missing:
                raise DataError(f"{p.name}: not a MedMNIST file: the arrays {missing} are missing (it holds "
                                f"{sorted(z.files)[:10]})")
            images = [z[f"{n}_images"] for n in names]
            labels = [z[f"{n}_labels"] for n in names]
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{p.name}: not a readable .npz file ({type(exc).__name__}: {str(exc)[:120]})") from None
    X = np.concatenate(images)
    y = np.concatenate(labels)
    if X.ndim not in (3, 4) or len(X) == 0 or len(X) > MAX_IMAGES:
        raise DataError(f"{p.name}: expected 1 to {MAX_IMAGES} images of shape (N, H, W) or (N, H, W, 3), got "
                        f"{X.shape}")
    if y.ndim == 2 and y.shape[1] > 1:
        raise DataError(f"{p.name}: {y.shape[1]} labels per image (a multi-label set); precimed reads one label per "
                        "image")
    y = y.reshape(-1)
    if len(y) != len(X) or y.dtype.kind not in "iub":
        raise DataError(f"{p.name}: expected one integer label per image, got labels of shape {y.shape} and dtype "
                        f"{y.dtype}")
    ids = [f"{part}-{i}" for i in range(len(X))]
    return ImageCollection(_grey(X), y.astype(int), ids, [str(c) for c in np.unique(y)], p.name)


def _check_unpacked_size(p: Path) -> None:
    """Refuse a compressed .npz whose arrays unpack to more than the input limit (a zip bomb), before unpacking."""
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            unpacked = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError):
        return  # not a zip: np.load says so below, in one line
    limit = max_input_bytes()
    if unpacked > limit:
        raise DataError(f"{p.name}: its arrays unpack to {unpacked:,} bytes, over the input limit of {limit:,} bytes; "
                        f"raise {MAX_INPUT_ENV} if this machine has the memory")


def read_class_folders(root: str | Path) -> ImageCollection:
    """Pictures in one sub-folder per class (MedNIST layout); every picture must have the same size."""
    from PIL import Image, UnidentifiedImageError

    r = Path(root)
    classes = sorted(d.name for d in r.iterdir() if d.is_dir()) if r.is_dir() else []
    if not classes:
        raise DataError(f"{r}: expected a folder with one sub-folder of pictures per class")
    images, labels, ids = [], [], []
    for k, name in enumerate(classes):
        for f in sorted((r / name).iterdir()):
            if f.suffix.lower() not in PICTURE_SUFFIXES:
                continue
            if len(images) >= MAX_IMAGES:
                raise DataError(f"{r}: more than {MAX_IMAGES} pictures")
            check_input_size(f)
            try:
                with Image.open(f) as im:
                    pixels = np.asarray(im.convert("L"), dtype=np.float32)
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"{name}/{f.name}: not a readable picture ({type(exc).__name__})") from None
            if (len(images) + 1) * pixels.size > MAX_PIXELS:
                raise DataError(f"{r}: the pictures hold more than {MAX_PIXELS:,} pixels together; use a subset")
            if images and pixels.shape != images[0].shape:
                raise DataError(f"{name}/{f.name}: {pixels.shape[1]}×{pixels.shape[0]} pixels, but the first picture "
                                f"is {images[0].shape[1]}×{images[0].shape[0]}; every picture must have one size")
            images.append(pixels)
            labels.append(k)
            ids.append(f"{name}/{f.stem}")
    if not images:
        raise DataError(f"{r}: no PNG / JPEG pictures in the class folders {classes}")
    return ImageCollection(np.stack(images), np.array(labels), ids, classes, r.name)
