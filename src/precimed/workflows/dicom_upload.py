"""Score one DICOM file uploaded to the service, de-identified before anything is kept.

The service receives the raw bytes of a DICOM file (``Content-Type: application/dicom``). This recipe parses them in
memory with pydicom, de-identifies the dataset (PS3.15 Basic Profile, :func:`precimed.privacy.dicom.
deidentify_dataset`: names, IDs, dates and UIDs gone or remapped, private tags removed) and only then serialises,
hashes and reads it as an image (:func:`precimed.data.images.read_dicom_bytes`: rescale, spacing, orientation) to
score it with :func:`precimed.workflows.imaging.predict_volume`. What it hands back, and so all the service can
store or audit, is the digest of the de-identified file and the per-slice results: never a header value.

The pseudonym key is random per process: an upload's remapped UIDs link to nothing, so they need not be stable
across restarts. Every problem with the file is one :class:`~precimed.errors.DataError` line that names the problem
and never a value read from the file; pydicom's warnings (which can quote header values) are silenced while it runs.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

from precimed.bundle import Bundle
from precimed.data.images import read_dicom_bytes
from precimed.errors import DataError
from precimed.jsonio import plain
from precimed.privacy import KeyMaterial, Policy, deidentify_dataset
from precimed.privacy.policy import DicomOptions, PolicyOptions

WHERE = "the uploaded file"
SLICE_COLUMNS = ("slice", "model", "probability", "lesion_pixels", "lesion_area_mm2", "max_probability")
_KEY = KeyMaterial(secrets.token_bytes(32), source="per-process random key")
_POLICY = Policy(options=PolicyOptions(dicom=DicomOptions(dates="profile", patient_id="empty")))


@dataclass(frozen=True)
class DicomPrediction:
    """An uploaded file's scores: the de-identified file's SHA-256, the bundle's model used and one row per slice."""

    digest: str
    model: str
    slices: list[dict[str, Any]]


def is_imaging(bundle: Bundle) -> bool:
    """True for a bundle that scores images (it holds a fitted image preprocessor), False for table rows."""
    return bundle.image_preprocessor is not None


#: the most voxels one uploaded file may decode to (float32: 256 MiB), checked on the header before any pixel is
#: decoded, so a small compressed file cannot make a request allocate gigabytes
MAX_UPLOAD_VOXELS = 2**26


def _declared_voxels(ds: Any) -> int:
    try:
        frames = max(int(ds.get("NumberOfFrames", 1) or 1), 1)
        return int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0) * frames
    except (TypeError, ValueError):
        return 0  # an unreadable size: the image reader refuses the file in one line


def deidentified_dicom(data: bytes) -> bytes:
    """The uploaded DICOM file de-identified, as DICOM bytes; DataError (one line, no header value) if the body is
    empty, not DICOM, damaged, or its header cannot be de-identified."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not data:
        raise DataError(f"{WHERE} is empty: send the DICOM file's bytes as the body (Content-Type: application/dicom)")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
    except InvalidDicomError:
        raise DataError(f"{WHERE} is not a DICOM file (no 'DICM' marker at byte 128 and no readable header)") from None
    except Exception as exc:  # pydicom raises EOFError, struct.error, ValueError... on damaged files
        raise DataError(f"{WHERE} is a damaged or truncated DICOM file ({type(exc).__name__})") from None
    voxels = _declared_voxels(ds)
    if voxels > MAX_UPLOAD_VOXELS:
        raise DataError(f"{WHERE} declares {voxels:,} voxels (rows × columns × frames), over the {MAX_UPLOAD_VOXELS:,} "
                        "one request may decode; send fewer frames per file")
    try:
        deidentify_dataset(ds, _KEY, _POLICY)
        out = io.BytesIO()
        ds.save_as(out)
    except Exception as exc:  # a malformed header value met while walking or writing the dataset
        raise DataError(f"{WHERE} has a DICOM header that cannot be read for de-identification "
                        f"({type(exc).__name__}); check the file with a DICOM validator") from None
    return out.getvalue()


def predict_dicom_upload(bundle: Bundle, data: bytes, *, model: str | None = None) -> DicomPrediction:
    """Score every slice of one uploaded DICOM file with the bundle's ``model`` (default: its primary model).

    The bytes are de-identified first; only the de-identified file is hashed and read. Nothing is written to disk.
    """
    from precimed.workflows.image_serving import predict_volume

    name = bundle.model_named(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings may quote header values (names, IDs)
        clean = deidentified_dicom(data)
        try:
            volume = read_dicom_bytes(clean, where=WHERE)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - hostile bytes: pydicom raises ValueError etc. deep in decoding
            raise DataError(f"{WHERE} is a damaged DICOM file whose header or pixel data cannot be read "
                            f"({type(exc).__name__})") from None
    table, _ = predict_volume(bundle, volume, model=name)
    columns = [c for c in SLICE_COLUMNS if c in table.columns]
    rows = plain(table[columns].to_dict(orient="records"))
    return DicomPrediction(hashlib.sha256(clean).hexdigest(), name, rows)


__all__ = ["DicomPrediction", "deidentified_dicom", "is_imaging", "predict_dicom_upload"]
