"""The de-identification recipe: tables, FHIR bundles and DICOM through one policy and one key."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

from precimed.errors import ConfigError
from precimed.jsonio import write_json
from precimed.privacy import (
    NOTES_MODES,
    DeidReport,
    KeyMaterial,
    deidentify_path,
    load_key,
    new_key_file,
    refuse_clashes,
)
from precimed.privacy.pseudonym import key_file_warnings


def deidentify(input: Path | str, output: Path | str, *, policy: Path | str | None = None,
               key_file: Path | str | None = None, key_env: str | None = None, overwrite: bool = False,
               report: Path | str | None = None, notes_mode: str | None = None) -> DeidReport:
    """De-identify `input` (a table, FHIR bundle, or DICOM file/folder) into `output` with a policy and a keyed
    pseudonym key (never over the input; no key, no output); optionally save the report.

    Neither the output nor the report may name the input, the key file, the policy or each other: that
    is refused before anything is read or written. `notes_mode` ("strict" / "allowlist") overrides the
    policy's ``options.text.mode``. The public ``precimed.deidentify``; ``precimed deidentify`` calls it too.
    """
    policy, key_file = (Path(p) if p is not None else None for p in (policy, key_file))
    if notes_mode is not None and notes_mode not in NOTES_MODES:
        raise ConfigError(f"--notes-mode {notes_mode!r} is not one of {', '.join(NOTES_MODES)}")
    refuse_clashes({"--out": Path(output), "--report": Path(report) if report is not None else None},
                   {"input": Path(input), "key file": key_file, "policy": policy})
    result = deidentify_path(Path(input), Path(output), policy, key_file, key_env, overwrite=overwrite,
                             notes_mode=notes_mode)
    if report is not None:
        write_json(Path(report), result.to_dict())
    return result


def make_key(path: Path) -> Path:
    """A new random pseudonymization key file (mode 600); refuses to overwrite an existing one."""
    new_key_file(path)
    return Path(path)


def service_key(path: Path, *, create: bool = False) -> tuple[KeyMaterial, list[str]]:
    """A service secret (e.g. the audit key) from its key file, through the pseudonym key's loader and checks:
    created first (random, mode 600) when `create` and the file is absent; returned with warnings about its
    permissions. ConfigError (one line) if it is missing, empty or too short."""
    path = Path(path)
    if create and not path.exists():
        with suppress(ConfigError):  # another process created it first
            new_key_file(path)
    return load_key(key_file=path), key_file_warnings(path, [])
