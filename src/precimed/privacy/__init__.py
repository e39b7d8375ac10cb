"""De-identification and pseudonymization: tables, free-text notes, FHIR bundles, DICOM headers; k-anonymity.

Layer 1: imports only precimed.errors, precimed.schema, precimed.atomic and third-party libraries.

Entry point for files: :func:`deidentify_path` picks the handler by the input (CSV/TSV/Parquet table,
FHIR Bundle JSON, DICOM file or folder). Every handler needs a key (file or environment variable; no
key, no output), never writes over its input, writes atomically, and returns a
:class:`~precimed.privacy.policy.DeidReport` that holds counts and actions, never a value.
"""

from __future__ import annotations

from pathlib import Path

from precimed.errors import ConfigError
from precimed.privacy.dates import DateShifter
from precimed.privacy.dicom import deidentify_dataset, deidentify_dicom
from precimed.privacy.fhir import deidentify_bundle, deidentify_bundle_file
from precimed.privacy.kanon import KAnonymityReport, achieve_k, generalize, kanonymity_report
from precimed.privacy.note_corpus import evaluate_notes, generate_notes
from precimed.privacy.notes import NOTES_MODES, PHI_TYPES, KnownIdentifiers, Span, detect_phi, redact, redact_text
from precimed.privacy.policy import DeidReport, Policy, load_policy, parse_policy
from precimed.privacy.pseudonym import KeyMaterial, Pseudonymizer, load_key, new_key_file
from precimed.privacy.safe_harbor import generalize_age, generalize_zip, restricted_zip3, safe_harbor_identifiers
from precimed.privacy.scan import scan_frame, scan_values
from precimed.privacy.tables import TABLE_SUFFIXES, deidentify_file, deidentify_table, refuse_clashes

DICOM_SUFFIXES = (".dcm", ".dicom")
FHIR_SUFFIXES = (".json",)


def input_kind(path: str | Path) -> str:
    """"table", "fhir" or "dicom", by suffix (a folder is DICOM; an unsuffixed file with the DICM preamble too)."""
    p = Path(path)
    if p.is_dir():
        return "dicom"
    suffix = p.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return "table"
    if suffix in FHIR_SUFFIXES:
        return "fhir"
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    if p.is_file():
        with p.open("rb") as fh:
            head = fh.read(132)
        if head[128:132] == b"DICM":
            return "dicom"
    raise ConfigError(f"{p}: cannot tell the input type from {suffix or 'its name'}; expected a table "
                      f"({', '.join(TABLE_SUFFIXES)}), a FHIR Bundle (.json) or DICOM (.dcm or a folder)")


def deidentify_path(input: str | Path, output: str | Path, policy_path: str | Path | None = None,
                    key_file: str | Path | None = None, key_env: str | None = None, *,
                    overwrite: bool = False, notes_mode: str | None = None) -> DeidReport:
    """De-identify a table, FHIR bundle or DICOM file/folder into `output`; return the report.

    `notes_mode` ("strict" / "allowlist") overrides the policy's ``options.text.mode`` for a table's notes.
    """
    kind = input_kind(input)
    if kind == "table":
        if policy_path is None:
            raise ConfigError("a table needs a policy (--policy POLICY.yaml) declaring each column's role")
        return deidentify_file(input, output, policy_path, key_file, key_env, overwrite=overwrite,
                               notes_mode=notes_mode)
    if kind == "fhir":
        return deidentify_bundle_file(input, output, policy_path, key_file, key_env, overwrite=overwrite)
    return deidentify_dicom(input, output, policy_path, key_file, key_env, overwrite=overwrite)


__all__ = [
    "NOTES_MODES",
    "PHI_TYPES",
    "KnownIdentifiers",
    "refuse_clashes",
    "DateShifter",
    "DeidReport",
    "KAnonymityReport",
    "KeyMaterial",
    "Policy",
    "Pseudonymizer",
    "Span",
    "achieve_k",
    "deidentify_bundle",
    "deidentify_bundle_file",
    "deidentify_dataset",
    "deidentify_dicom",
    "deidentify_file",
    "deidentify_path",
    "deidentify_table",
    "detect_phi",
    "evaluate_notes",
    "generalize",
    "generalize_age",
    "generalize_zip",
    "generate_notes",
    "input_kind",
    "kanonymity_report",
    "load_key",
    "load_policy",
    "new_key_file",
    "parse_policy",
    "redact",
    "redact_text",
    "restricted_zip3",
    "safe_harbor_identifiers",
    "scan_frame",
    "scan_values",
]
