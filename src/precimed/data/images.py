"""Read medical images (DICOM files and series, NIfTI, NRRD, PNG / JPEG) into one shape: :class:`ImageVolume`.

A volume is a float32 array in (z, y, x) order as stored (a 2-D picture is (1, y, x)), its voxel spacing in mm
along (z, y, x), and a few NON-identifying technical facts in ``meta``. Reading types the values and nothing
more: DICOM rescale slope / intercept are applied (so CT is in Hounsfield units), nothing is resampled,
reoriented or normalised (that is ``preprocess/``'s job, fitted on training images).

``meta`` holds only the keys in :data:`META_KEYS`: never a name, an ID, a date, a UID or an institution, so a
volume can be logged, reported and saved in a bundle. ``direction`` is a 3 x 3 list whose row ``a`` is the unit
vector, in the file's world space (``meta["space"]``: DICOM / NRRD LPS, NIfTI RAS), of array axis ``a`` in (z, y, x)
order; ``origin`` is the world position (mm) of voxel (0, 0, 0).

Every problem with an input is one :class:`DataError` line that names the file (truncated DICOM, a text file
named ``.dcm``, a PNG that is not a PNG, a broken NIfTI header, a mixed series, missing spacing, an undecodable
compressed transfer syntax with the package that decodes it). Every file is checked against the input limit
(:func:`precimed.limits.check_input_size`) before it is read, and a volume whose header says it has more than
:data:`MAX_VOXELS` voxels is refused before its pixels are allocated.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.errors import ConfigError, DataError
from precimed.limits import MAX_INPUT_ENV, check_input_size, max_input_bytes
from precimed.schema import require_columns

MAX_VOXELS = 2**28  # 1 GiB as float32: a header asking for more is refused before allocation
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
ACCEPTED_IMAGE_SUFFIXES = DICOM_SUFFIXES + NIFTI_SUFFIXES + NRRD_SUFFIXES + PICTURE_SUFFIXES
META_KEYS = frozenset({
    "format", "shape", "transfer_syntax", "rescale_slope", "rescale_intercept", "window_center", "window_width",
    "direction", "origin", "space", "frames", "files", "spacing_known", "photometric", "inverted",
})

# CT window presets, name -> (center, width) in HU. Values as tabulated in Radiopaedia, "Windowing (CT)"
# (https://radiopaedia.org/articles/windowing-ct): brain W:80 L:40, subdural W:215 L:75 (within the 130-300 /
# 50-100 range given there), lungs W:1500 L:-600, mediastinum W:350 L:50, soft-tissue abdomen W:400 L:40,
# bone W:1800 L:400, liver W:160 L:60 (within the 150/30 - 160/60 range given there).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "ct_brain": (40.0, 80.0),
    "ct_subdural": (75.0, 215.0),
    "ct_lung": (-600.0, 1500.0),
    "ct_mediastinum": (50.0, 350.0),
    "ct_abdomen": (40.0, 400.0),
    "ct_bone": (400.0, 1800.0),
    "ct_liver": (60.0, 160.0),
}

# Which package decodes which compressed DICOM transfer syntax (pydicom's pixel-data plugin docs).
_DECODERS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg + pylibjpeg-libjpeg, or python-gdcm",  # JPEG baseline (Pillow also)
    "1.2.840.10008.1.2.4.51": "pylibjpeg + pylibjpeg-libjpeg, or python-gdcm",  # JPEG extended (12-bit)
    "1.2.840.10008.1.2.4.57": "pylibjpeg + pylibjpeg-libjpeg, or python-gdcm",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg + pylibjpeg-libjpeg, or python-gdcm",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pyjpegls, or pylibjpeg + pylibjpeg-libjpeg",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls, or pylibjpeg + pylibjpeg-libjpeg",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg + pylibjpeg-openjpeg, or python-gdcm",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg + pylibjpeg-openjpeg, or python-gdcm",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg + pylibjpeg-openjpeg",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg + pylibjpeg-openjpeg",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg + pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg + pylibjpeg-rle",  # RLE lossless (pydicom decodes it itself)
}


@dataclass
class ImageVolume:
    """One image: a float32 (z, y, x) array, spacing in mm along (z, y, x), and non-identifying facts."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    source: str
    modality: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise DataError(f"{self.source}: an image volume must be 3-D (z, y, x), got shape {self.array.shape}")
        self.array = np.asarray(self.array, dtype=np.float32)
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.meta = {k: v for k, v in self.meta.items() if k in META_KEYS}
        self.meta["shape"] = list(self.array.shape)
        self.meta.setdefault("spacing_known", True)


# --------------------------------------------------------------------------------------------- windowing


def apply_window(array: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map values to [0, 1] through the DICOM linear VOI window (PS3.3 C.11.2.1.2.1), as float32.

    ``x <= c - 0.5 - (w - 1) / 2`` -> 0; ``x > c - 0.5 + (w - 1) / 2`` -> 1; otherwise
    ``((x - (c - 0.5)) / (w - 1) + 0.5)``. The standard requires ``width >= 1``.
    """
    if not (math.isfinite(center) and math.isfinite(width)) or width < 1:
        raise ConfigError(f"window center={center!r}, width={width!r}: expected finite numbers with width >= 1")
    x = np.asarray(array, dtype=np.float64)
    if width == 1:
        out = (x > center - 0.5).astype(np.float64)
    else:
        out = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------------ dispatch


def read_image(path: str | Path, *, where: str | None = None) -> ImageVolume:
    """Read an image file or a DICOM series folder by its suffix (or the DICOM 'DICM' marker).

    ``where`` is the name used in error messages instead of the path (e.g. an upload's name); the volume's
    ``source`` is always the basename only.
    """
    p = Path(path)
    name = where or str(p)
    if not p.exists():
        raise DataError(f"{name}: file not found")
    if p.is_dir():
        return _read_dicom_folder(p, name)
    reader = _reader_for(p, name)
    return reader(p, name)


def _suffix(p: Path) -> str:
    lower = p.name.lower()
    return ".nii.gz" if lower.endswith(".nii.gz") else p.suffix.lower()


def _reader_for(p: Path, name: str) -> Callable[[Path, str], ImageVolume]:
    suffix = _suffix(p)
    if suffix in DICOM_SUFFIXES:
        return _read_dicom_file
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti
    if suffix in NRRD_SUFFIXES:
        return _read_nrrd
    if suffix in PICTURE_SUFFIXES:
        return _read_picture
    if suffix == "" and _has_dicom_marker(p):
        return _read_dicom_file
    shown = repr(suffix) if suffix else "no suffix and no DICOM marker"
    raise DataError(f"{name}: unknown image type ({shown}); accepted: a DICOM folder or file, "
                    f"{', '.join(ACCEPTED_IMAGE_SUFFIXES)}")


def _has_dicom_marker(p: Path) -> bool:
    """True when the file has the DICOM part-10 marker 'DICM' at byte 128."""
    try:
        with p.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _checked_dims(shape: Sequence[int], name: str, word: str) -> Any:
    """A header's shape without trailing singleton axes: 2-D or 3-D and within the voxel limit, or a DataError."""
    shape = type(shape)(shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise DataError(f"{name}: the image is {len(shape)}-D, {word} {shape}; 4-D; give one volume")
    if len(shape) < 2:
        raise DataError(f"{name}: the image is {len(shape)}-D, {word} {shape}; expected a 2-D or 3-D image")
    _check_voxels(shape, name)
    return shape


def _check_voxels(shape: tuple[int, ...] | list[int], name: str) -> None:
    count = math.prod(int(s) for s in shape)
    if count > MAX_VOXELS:
        raise DataError(f"{name}: the header says {count:,} voxels (shape {tuple(int(s) for s in shape)}), over the "
                        f"limit of {MAX_VOXELS:,}; crop or downsample the image first")


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


# ---------------------------------------------------------------------------------------------------- DICOM


def read_dicom_bytes(data: bytes, *, where: str = "upload") -> ImageVolume:
    """Read one DICOM file held in memory (a service upload), within the input limit."""
    limit = max_input_bytes()
    if len(data) > limit:
        raise DataError(f"{where}: the file is {len(data):,} bytes, over the input limit of {limit:,} bytes; "
                        f"raise {MAX_INPUT_ENV} if this machine has the memory")
    ds = _dcmread(io.BytesIO(data), where)
    return _dicom_volume([ds], where, source=Path(where).name or "upload")


def _dcmread(fp: Any, name: str, *, stop_before_pixels: bool = False) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(fp, force=False, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise DataError(f"{name}: not a DICOM file (no 'DICM' marker at byte 128 and no readable header)") from None
    except Exception as exc:  # pydicom raises many types (EOFError, struct.error, ValueError...) on damaged files
        raise DataError(f"{name}: damaged or truncated DICOM file ({_short(exc)})") from None


def _read_dicom_file(p: Path, name: str) -> ImageVolume:
    check_input_size(p)
    ds = _dcmread(p, name)
    return _dicom_volume([ds], name, source=p.name)


def _read_dicom_folder(folder: Path, name: str) -> ImageVolume:
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise DataError(f"{name}: the folder is empty; give a folder holding one DICOM series")
    dicom_files = [f for f in files if f.name.upper() != "DICOMDIR"
                   and (_suffix(f) in DICOM_SUFFIXES or _has_dicom_marker(f))]
    if not dicom_files:
        raise DataError(f"{name}: no DICOM file in the folder ({len(files)} other file(s)); "
                        "give a folder holding one DICOM series")
    for f in dicom_files:
        check_input_size(f)
    headers = [_dcmread(f, f"{name}/{f.name}", stop_before_pixels=True) for f in dicom_files]
    for f, h in zip(dicom_files, headers, strict=True):
        if "Rows" not in h or "Columns" not in h:
            raise DataError(f"{name}/{f.name}: no image size in the DICOM header (truncated, or not an image)")
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise DataError(f"mixed series: {len(series)} series in {name}; give one series per folder")
    sizes = {(int(h.get("Rows", 0)), int(h.get("Columns", 0))) for h in headers}
    if len(sizes) > 1:
        raise DataError(f"{name}: mixed image sizes (rows x columns {sorted(sizes)}); give one series per folder")
    frames = sum(_frame_count(h) for h in headers)
    rows, cols = next(iter(sizes))
    _check_voxels((frames, rows, cols), name)
    datasets = [_dcmread(f, f"{name}/{f.name}") for f in dicom_files]
    return _dicom_volume(datasets, name, source=folder.name, file_names=[f.name for f in dicom_files])


def _frame_count(ds: Any) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _floats(value: Any, n: int | None) -> list[float] | None:
    """``n`` finite floats (any number when ``n`` is None) from a DICOM value or multi-value; None when absent,
    malformed or of another length."""
    if value is None or isinstance(value, bytes):
        return None
    items = [value] if isinstance(value, str | int | float) else list(value) if hasattr(value, "__iter__") else [value]
    try:
        out = [float(v) for v in items]
    except (TypeError, ValueError):
        return None
    if not out or (n is not None and len(out) != n) or not all(math.isfinite(v) for v in out):
        return None
    return out


def _lookup(ds: Any, frame: int | None, group: str, keyword: str) -> Any:
    """An attribute of one frame: the per-frame functional group, then the shared group, then the top level."""
    for seq_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        seq = ds.get(seq_name)
        if not seq:
            continue
        item = seq[frame if seq_name.startswith("PerFrame") and frame is not None and frame < len(seq) else 0]
        inner = item.get(group)
        if inner and keyword in inner[0]:
            return inner[0].get(keyword)
    return ds.get(keyword)


@dataclass
class _Slice:
    pixels: np.ndarray  # (y, x) float32 after rescale
    position: list[float] | None
    orientation: list[float] | None
    pixel_spacing: list[float] | None
    order: int


def _decode(ds: Any, name: str) -> np.ndarray:
    rows, cols, frames = int(ds.get("Rows", 0)), int(ds.get("Columns", 0)), _frame_count(ds)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError(f"{name}: the DICOM file holds no pixel data (truncated, or not an image)")
    _check_voxels((frames, rows, cols, int(ds.get("SamplesPerPixel", 1) or 1)), name)
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # decoder plugins raise RuntimeError / NotImplementedError / ValueError
        if ts is not None and ts.is_compressed:
            package = _DECODERS.get(str(ts), "pylibjpeg with its plugins, or python-gdcm")
            raise DataError(f"{name}: cannot decode the pixel data in transfer syntax {ts.name} ({ts}); "
                            f"install {package} to read it") from exc
        raise DataError(f"{name}: damaged or truncated DICOM pixel data ({_short(exc)})") from exc


def _grey(pixels: np.ndarray, ds: Any, multi: bool, name: str) -> np.ndarray:
    """Colour samples -> luminance (ITU-R 601-2, as Pillow's 'L'); always (frames, y, x)."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3:
        pixels = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif samples != 1:
        raise DataError(f"{name}: {samples} samples per pixel; expected 1 (grey) or 3 (colour)")
    return pixels if multi else pixels[None]


def _slices_of(ds: Any, name: str, index: int) -> list[_Slice]:
    frames = _frame_count(ds)
    pixels = _grey(_decode(ds, name), ds, frames > 1, name)
    if pixels.shape[0] != frames:
        raise DataError(f"{name}: {pixels.shape[0]} frames decoded, the header says {frames}")
    out = []
    for f in range(frames):
        fi = f if frames > 1 else None
        slope = _floats(_lookup(ds, fi, "PixelValueTransformationSequence", "RescaleSlope"), 1) or [1.0]
        intercept = _floats(_lookup(ds, fi, "PixelValueTransformationSequence", "RescaleIntercept"), 1) or [0.0]
        values = pixels[f].astype(np.float32) * np.float32(slope[0]) + np.float32(intercept[0])
        spacing = (_floats(_lookup(ds, fi, "PixelMeasuresSequence", "PixelSpacing"), 2)
                   or _floats(ds.get("ImagerPixelSpacing"), 2))
        out.append(_Slice(values, _floats(_lookup(ds, fi, "PlanePositionSequence", "ImagePositionPatient"), 3),
                          _floats(_lookup(ds, fi, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                          spacing if spacing and min(spacing) > 0 else None, index * 100_000 + f))
    return out


def _dicom_volume(datasets: list[Any], name: str, *, source: str,
                  file_names: list[str] | None = None) -> ImageVolume:
    slices: list[_Slice] = []
    for i, ds in enumerate(datasets):
        where = f"{name}/{file_names[i]}" if file_names else name
        number = _floats(ds.get("InstanceNumber"), 1)
        order = int(number[0]) if number else i
        for s in _slices_of(ds, where, i):
            s.order = order * 100_000 + s.order % 100_000
            slices.append(s)
    first = datasets[0]
    array, spacing, direction, origin, spacing_known = _stack(slices, first, name)
    photometric = str(first.get("PhotometricInterpretation", "") or "")
    meta: dict[str, Any] = {
        "format": "dicom", "space": "LPS", "frames": len(slices), "files": len(datasets),
        "photometric": photometric, "spacing_known": spacing_known, "direction": direction, "origin": origin,
    }
    ts = first.file_meta.get("TransferSyntaxUID") if hasattr(first, "file_meta") else None
    if ts is not None:
        meta["transfer_syntax"] = str(ts.name)
    for key, keyword in (("rescale_slope", "RescaleSlope"), ("rescale_intercept", "RescaleIntercept"),
                         ("window_center", "WindowCenter"), ("window_width", "WindowWidth")):
        group = "FrameVOILUTSequence" if key.startswith("window") else "PixelValueTransformationSequence"
        values = _floats(_lookup(first, 0 if _frame_count(first) > 1 else None, group, keyword), None)
        if values:  # a window may list several (center, width) pairs: the first is the default one
            meta[key] = values[0]
    if photometric == "MONOCHROME1":  # low values are white: invert so that higher always means brighter
        array = array.max() + array.min() - array
        meta["inverted"] = True
    modality = str(first.get("Modality", "") or "") or None
    return ImageVolume(array, spacing, source, modality, meta)


def _stack(slices: list[_Slice], first: Any, name: str) -> tuple[np.ndarray, tuple[float, float, float],
                                                                  list[list[float]], list[float], bool]:
    """Sort slices along the slice normal and derive (z, y, x) spacing, direction and origin."""
    in_plane = slices[0].pixel_spacing
    orientation = slices[0].orientation or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, col)
    if any(s.orientation is not None and not np.allclose(s.orientation, orientation, atol=1e-3) for s in slices):
        raise DataError(f"{name}: slices with different orientations; give one series per folder")
    fallback = (_floats(first.get("SpacingBetweenSlices"), 1) or _floats(first.get("SliceThickness"), 1)
                or _floats(_lookup(first, 0, "PixelMeasuresSequence", "SpacingBetweenSlices"), 1)
                or _floats(_lookup(first, 0, "PixelMeasuresSequence", "SliceThickness"), 1))
    if len(slices) > 1 and all(s.position is not None for s in slices):
        along = np.array([float(np.dot(s.position, normal)) for s in slices])
        order = np.argsort(along, kind="stable")
        slices = [slices[i] for i in order]
        steps = np.diff(along[order])
        if np.any(steps < 1e-4):
            raise DataError(f"{name}: duplicate slice positions ({int(np.sum(steps < 1e-4))} repeated); "
                            "give one 3-D series per folder (no time series or repeated slices)")
        z_spacing: float | None = float(np.median(steps))
    else:
        slices = sorted(slices, key=lambda s: s.order)
        z_spacing = fallback[0] if fallback and fallback[0] > 0 else None
    spacing_known = in_plane is not None and (len(slices) == 1 or z_spacing is not None)
    if len(slices) > 1 and not spacing_known:
        missing = "pixel spacing" if in_plane is None else "slice spacing (positions, SpacingBetweenSlices)"
        raise DataError(f"{name}: a 3-D image of {len(slices)} slices with no {missing} in its header; "
                        "the spacing in mm is needed")
    array = np.stack([s.pixels for s in slices]).astype(np.float32, copy=False)
    if in_plane is None:
        spacing = (1.0, 1.0, 1.0)
    else:
        spacing = (float(z_spacing or 1.0), float(in_plane[0]), float(in_plane[1]))
    origin = [float(v) for v in (slices[0].position or [0.0, 0.0, 0.0])]
    direction = [[float(v) for v in normal], [float(v) for v in col], [float(v) for v in row]]
    return array, spacing, direction, origin, spacing_known


# ---------------------------------------------------------------------------------------------------- NIfTI


def _read_nifti(p: Path, name: str) -> ImageVolume:
    import nibabel as nib

    check_input_size(p)
    try:
        img = nib.load(str(p))
        shape = tuple(int(s) for s in img.shape)
    except Exception as exc:  # nibabel raises ImageFileError, HeaderDataError, ValueError, EOFError...
        raise DataError(f"{name}: not a readable NIfTI file ({_short(exc)})") from None
    shape = _checked_dims(shape, name, "shape")
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as exc:
        raise DataError(f"{name}: damaged or truncated NIfTI data ({_short(exc)})") from None
    zooms = [float(z) for z in img.header.get_zooms()[: len(shape)]] + [1.0] * (3 - len(shape))
    if len(shape) == 2:
        data = data[:, :, None]
    affine = np.asarray(img.affine, dtype=float)
    axes = [affine[:3, i] / (np.linalg.norm(affine[:3, i]) or 1.0) for i in range(3)]  # x, y, z columns
    meta = {"format": "nifti", "space": "RAS", "spacing_known": all(z > 0 for z in zooms),
            "direction": [[float(v) for v in axes[i]] for i in (2, 1, 0)],
            "origin": [float(v) for v in affine[:3, 3]]}
    zooms = [z if z > 0 else 1.0 for z in zooms]
    return ImageVolume(np.ascontiguousarray(data.transpose(2, 1, 0)), (zooms[2], zooms[1], zooms[0]), p.name,
                       None, meta)


# ----------------------------------------------------------------------------------------------------- NRRD


_NRRD_SPACES = {"left-posterior-superior": "LPS", "right-anterior-superior": "RAS", "left-anterior-superior": "LAS"}


def _read_nrrd(p: Path, name: str) -> ImageVolume:
    import nrrd

    check_input_size(p)
    try:
        header = nrrd.read_header(str(p))
    except Exception as exc:  # pynrrd raises NRRDError, ValueError, UnicodeDecodeError...
        raise DataError(f"{name}: not a readable NRRD header ({_short(exc)})") from None
    shape = [int(s) for s in header.get("sizes", [])]
    shape = _checked_dims(shape, name, "sizes")
    data_file = header.get("data file") or header.get("datafile")
    if data_file:
        detached = (p.parent / str(data_file)).resolve()
        if not detached.is_relative_to(p.parent.resolve()) or not detached.is_file():
            raise DataError(f"{name}: the detached data file {str(data_file)!r} is missing or outside the folder")
        check_input_size(detached)
    try:
        data, header = nrrd.read(str(p))
    except Exception as exc:
        raise DataError(f"{name}: damaged or truncated NRRD data ({_short(exc)})") from None
    data = np.asarray(data, dtype=np.float32).reshape(shape, order="F")
    if data.ndim == 2:
        data = data[:, :, None]
    spacing, direction, known = _nrrd_geometry(header, len(shape))
    space = str(header.get("space", "") or "")
    meta = {"format": "nrrd", "space": _NRRD_SPACES.get(space, space) or None, "spacing_known": known,
            "direction": direction, "origin": [float(v) for v in header.get("space origin", [0.0, 0.0, 0.0])]}
    return ImageVolume(np.ascontiguousarray(data.transpose(2, 1, 0)), spacing, p.name, None, meta)


def _nrrd_geometry(header: dict, ndim: int) -> tuple[tuple[float, float, float], list[list[float]], bool]:
    """(z, y, x) spacing and direction rows from ``space directions`` (one vector per axis) or ``spacings``."""
    vectors: list[np.ndarray] = []
    directions = header.get("space directions")
    if directions is not None:
        for row in np.asarray(directions, dtype=float)[:ndim]:
            vectors.append(row if np.all(np.isfinite(row)) else np.full(3, np.nan))
    else:
        for s in list(header.get("spacings", [np.nan] * ndim))[:ndim]:
            vectors.append(np.array([float(s), 0.0, 0.0]))
    while len(vectors) < 3:
        vectors.append(np.array([1.0, 0.0, 0.0]) if len(vectors) == 2 else np.full(3, np.nan))
    norms = [float(np.linalg.norm(v)) for v in vectors]
    known = all(math.isfinite(n) and n > 0 for n in norms[:ndim])
    norms = [n if math.isfinite(n) and n > 0 else 1.0 for n in norms]
    units = []
    for i, v in enumerate(vectors):
        unit = v / norms[i] if np.all(np.isfinite(v)) else np.eye(3)[i]
        units.append([float(x) for x in unit[:3]] + [0.0] * (3 - len(unit[:3])))
    return (norms[2], norms[1], norms[0]), [units[2], units[1], units[0]], known


# ------------------------------------------------------------------------------------------------ PNG / JPEG


def _read_picture(p: Path, name: str) -> ImageVolume:
    from PIL import Image, UnidentifiedImageError

    check_input_size(p)
    try:
        with Image.open(p) as img:
            _check_voxels((img.height, img.width), name)
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
                pixels = np.asarray(img, dtype=np.float32)
            else:  # RGB, RGBA, P, LA, CMYK...: luminance (ITU-R 601-2)
                pixels = np.asarray(img.convert("L"), dtype=np.float32)
    except UnidentifiedImageError:
        raise DataError(f"{name}: not a PNG or JPEG image (Pillow cannot identify it)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name}: damaged or truncated image ({_short(exc)})") from None
    if pixels.ndim != 2:
        raise DataError(f"{name}: decoded to shape {pixels.shape}; expected a 2-D grey image")
    meta = {"format": "png" if _suffix(p) == ".png" else "jpeg", "spacing_known": False, "photometric": mode}
    return ImageVolume(pixels[None], (1.0, 1.0, 1.0), p.name, None, meta)


# ------------------------------------------------------------------------------------------------- masks


def read_mask(path: str | Path, like: ImageVolume) -> np.ndarray:
    """A label image as a uint8 0/1 mask of ``like``'s shape: any non-zero label value -> 1."""
    mask = read_image(path)
    if mask.array.shape != like.array.shape:
        raise DataError(f"{path}: the mask has shape {mask.array.shape} (z, y, x), the image {like.source} has "
                        f"{like.array.shape}; give a mask of the image's shape")
    return (np.nan_to_num(mask.array) != 0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- manifests


def read_image_table(path: str | Path) -> pd.DataFrame:
    """A manifest table (patient_id, image, optional mask / label / feature columns) with ``image`` and ``mask``
    turned into absolute path strings, each checked to lie inside the manifest's folder and to exist."""
    from precimed.data.files import read_table

    p = Path(path)
    df = read_table(p)
    require_columns(df, ["patient_id", "image"], where=str(p))
    base = p.resolve().parent
    missing_id = df.index[df["patient_id"].isna()].tolist()
    if missing_id:
        raise DataError(f"{p}: row {missing_id[0] + 1}: patient_id is empty; every image needs its patient",
                        column="patient_id", rows=[r + 1 for r in missing_id])
    for column in ("image", "mask"):
        if column not in df.columns:
            continue
        resolved: list[Any] = []
        absent: list[int] = []
        for i, cell in enumerate(df[column].tolist()):
            if cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == "":
                if column == "image":
                    raise DataError(f"{p}: row {i + 1}, column image: empty; give the image's path",
                                    column=column, rows=[i + 1])
                resolved.append(np.nan)
                continue
            target = _inside(base, str(cell).strip(), p, i + 1, column)
            if not target.exists():
                absent.append(i + 1)
            resolved.append(str(target))
        if absent:
            raise DataError(f"{p}: column {column}: {len(absent)} file(s) not found, rows {absent[:5]} "
                            f"(paths are relative to {p.name}'s folder)", column=column, rows=absent)
        df[column] = resolved
    return df


def _inside(base: Path, cell: str, manifest: Path, row: int, column: str) -> Path:
    given = Path(cell)
    if given.is_absolute() or cell.startswith(("/", "\\")) or (len(cell) > 1 and cell[1] == ":"):
        raise DataError(f"{manifest}: row {row}, column {column}: an absolute path; give a path relative to the "
                        "manifest's folder", column=column, rows=[row])
    target = (base / given).resolve()
    if not target.is_relative_to(base):
        raise DataError(f"{manifest}: row {row}, column {column}: the path leaves the manifest's folder ('..'); "
                        "keep images inside that folder", column=column, rows=[row])
    return target


__all__ = [
    "ACCEPTED_IMAGE_SUFFIXES",
    "MAX_VOXELS",
    "META_KEYS",
    "WINDOW_PRESETS",
    "ImageVolume",
    "apply_window",
    "read_dicom_bytes",
    "read_image",
    "read_image_table",
    "read_mask",
]
