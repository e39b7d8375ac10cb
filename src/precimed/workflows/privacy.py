"""The de-identification recipe: tables, FHIR bundles and DICOM through one policy and one key."""

from __future__ import annotations

from pathlib import Path

from precimed.jsonio import write_json
from precimed.privacy import DeidReport, deidentify_path, new_key_file


def deidentify(input: Path | str, output: Path | str, *, policy: Path | str | None = None,
               key_file: Path | str | None = None, key_env: str | None = None, overwrite: bool = False,
               report: Path | str | None = None) -> DeidReport:
    """De-identify `input` (a table, FHIR bundle, or DICOM file/folder) into `output` with a policy and a keyed
    pseudonym key (never over the input; no key, no output); optionally save the report.

    The public ``precimed.deidentify``; ``precimed deidentify`` calls it too.
    """
    policy, key_file = (Path(p) if p is not None else None for p in (policy, key_file))
    result = deidentify_path(Path(input), Path(output), policy, key_file, key_env, overwrite=overwrite)
    if report is not None:
        write_json(Path(report), result.to_dict())
    return result


def make_key(path: Path) -> Path:
    """A new random pseudonymization key file (mode 600); refuses to overwrite an existing one."""
    new_key_file(path)
    return Path(path)
