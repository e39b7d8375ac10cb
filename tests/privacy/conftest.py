"""Shared fixtures for the privacy tests: a key, a key file, the issue's policy and a small identifying table."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import yaml

from precimed.privacy import KeyMaterial

KEY_BYTES = b"test-key-0123456789abcdef-0123456789"

ISSUE_POLICY = {
    "patient_id": "mrn",
    "columns": {"name": "identifier", "mrn": "pseudonym", "birth_date": "date", "zip": "quasi", "age": "quasi",
                "notes": "text", "glucose": "keep"},
}


@pytest.fixture
def key() -> KeyMaterial:
    return KeyMaterial(KEY_BYTES, "test")


@pytest.fixture
def key_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    path = folder / "deid.key"
    path.write_bytes(KEY_BYTES + b"\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def write_policy(tmp_path):
    def write(policy: dict, name: str = "policy.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(policy, sort_keys=False))
        return path

    return write


@pytest.fixture
def patients() -> pd.DataFrame:
    """Five rows, three patients; every column of the issue's policy plus an unlisted contact column."""
    return pd.DataFrame({
        "name": ["Maria Quackenbush", "John Smith", "Ann Lee", "Maria Quackenbush", "Ottilie Abernathy"],
        "mrn": ["00123", "00456", "00789", "00123", "00999"],
        "birth_date": ["1931-03-14", "1970-05-01", "1980-03-02", "1931-03-14", "1955-12-31"],
        "zip": ["03601", "02134", "10001-1234", "03601", "60614"],
        "age": ["92", "52", "43", "92", "68"],
        "notes": ["Mrs. Quackenbush seen 2023-01-10 by Dr. Okafor, call (617) 555-0123.", "", "stable",
                  "Maria Quackenbush is a 92-year-old woman. MRN: 00123.", "Lives at 12 Oak Street, Salem, MA 01970"],
        "glucose": ["5.4", "6.10", "NA", "7", "5.0"],
        "contact": ["617-555-0199", "jsmith@example.org", "", "617-555-0199", "none"],
    })
