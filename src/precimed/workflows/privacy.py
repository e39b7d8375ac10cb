"""The de-identification recipe: tables, FHIR bundles and DICOM through one policy and one key."""

from __future__ import annotations

from pathlib import Path

from precimed.atomic import atomic_write_bytes
from precimed.privacy import DeidReport, deidentify_path, new_key_file


def deidentify(input: Path, output: Path, *, policy: Path | None, key_file: Path | None, key_env: str | None,
               overwrite: bool = False, report: Path | None = None) -> DeidReport:
    """De-identify `input` into `output` (never over the input; no key, no output); optionally save the report."""
    result = deidentify_path(input, output, policy, key_file, key_env, overwrite=overwrite)
    if report is not None:
        atomic_write_bytes(Path(report), result.to_json().encode())
    return result


def make_key(path: Path) -> Path:
    """A new random pseudonymization key file (mode 600); refuses to overwrite an existing one."""
    new_key_file(path)
    return Path(path)
