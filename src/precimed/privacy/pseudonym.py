"""Keyed pseudonyms: HMAC-SHA256 of an identifier under a secret key that is never written with the data.

The same key gives the same pseudonym for the same identifier in every run, table, FHIR bundle and
DICOM file, so de-identified sources still link; without the key nobody can recompute or reverse
them (unlike a plain hash of an MRN, which anyone can recompute by hashing candidate MRNs).

No key, no output: :func:`load_key` refuses to run without a key file or an environment variable
holding one, and refuses keys shorter than 16 bytes. :class:`KeyMaterial` never shows the key in
``repr``/``str``/logs, cannot be pickled, and exposes only a short fingerprint (an HMAC of a fixed
label) so reports can say *which* key was used without saying what it is.

Every use of the key is domain-separated: pseudonyms, date shifts, DICOM UIDs and FHIR ids each
MAC a different label, so knowing one kind of output says nothing about another.
"""

from __future__ import annotations

import hmac
import math
import os
import secrets
import stat
import uuid
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pandas as pd

from precimed.errors import ConfigError

MIN_KEY_BYTES = 16
_MISSING_TEXT = frozenset({"", "NA", "NaN", "nan", "null", "None", "<NA>", "NaT"})


class KeyMaterial:
    """A secret key. Shows only its source and fingerprint; cannot be pickled or printed."""

    __slots__ = ("_key", "source")

    def __init__(self, key: bytes, source: str = "memory") -> None:
        if not isinstance(key, bytes | bytearray):
            raise ConfigError("a key must be bytes")
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"the key from {source} is {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes "
                "(e.g. `python -c \"import secrets; print(secrets.token_hex(32))\"`)"
            )
        self._key = bytes(key)
        self.source = source

    def mac(self, domain: str, message: bytes) -> bytes:
        """HMAC-SHA256 of `message` under this key, separated by `domain`."""
        return hmac.digest(self._key, domain.encode() + b"\x00" + message, "sha256")

    @property
    def fingerprint(self) -> str:
        """8 hex characters identifying the key (an HMAC of a fixed label, not the key)."""
        return self.mac("precimed/fingerprint/v1", b"").hex()[:8]

    def __repr__(self) -> str:
        return f"KeyMaterial(source={self.source!r}, fingerprint={self.fingerprint!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):  # noqa: ANN204 - pickling must fail
        raise TypeError("KeyMaterial cannot be pickled; load the key from its file or variable where it is used")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyMaterial) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.fingerprint)


def load_key(key_file: str | Path | None = None, key_env: str | None = None) -> KeyMaterial:
    """The key from a file (its bytes, trailing whitespace stripped) or from an environment variable.

    Exactly one source must be given; there is no default key and no fallback (it fails closed).
    """
    if key_file is not None and key_env is not None:
        raise ConfigError("give either a key file or a key environment variable, not both")
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise ConfigError(f"key file {path} not found; no key, no output")
        data = path.read_bytes().strip()
        if not data:
            raise ConfigError(f"key file {path} is empty; no key, no output")
        return KeyMaterial(data, source=f"file {path.name}")
    if key_env is not None:
        value = os.environ.get(key_env)
        if not value or not value.strip():
            raise ConfigError(f"environment variable {key_env} is not set or empty; no key, no output")
        return KeyMaterial(value.strip().encode(), source=f"environment variable {key_env}")
    raise ConfigError("no key given: pass --key-file KEY (or a key environment variable); no key, no output")


def key_file_warnings(key_file: str | Path | None, data_paths: list[Path]) -> list[str]:
    """Warnings about where a key file lives (readable or writable by others, or beside the data).

    Readable lets others recompute and link pseudonyms; writable lets them swap in a key of their own
    before a run, so that they can recompute every pseudonym made with it.
    """
    if key_file is None:
        return []
    out = []
    path = Path(key_file).resolve()
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        out.append(f"key file {path.name} is readable by group/others; chmod 600 it")
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        out.append(f"key file {path.name} is writable by group/others; chmod 600 it")
    for data in data_paths:
        if path.parent == Path(data).resolve().parent:
            out.append(f"key file {path.name} sits in the same folder as the data; keep keys apart from data")
            break
    return out


def new_key_file(path: str | Path, *, nbytes: int = 32) -> Path:
    """Write a new random key (hex text) to `path` with mode 600; refuse to overwrite an existing file."""
    p = Path(path)
    if p.exists():
        raise ConfigError(f"{p} already exists; a key file is never overwritten")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(nbytes) + "\n")
    return p


def normalize_id(value: object) -> str | None:
    """Canonical text of an identifier: stripped; 12345.0 -> "12345"; missing -> None.

    CSV text "12345" and a Parquet integer 12345 (or a float column's 12345.0) give the same pseudonym.
    """
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if value is pd.NaT or value is pd.NA:
        return None
    text = str(value).strip()
    if text in _MISSING_TEXT:
        return None
    return text


class Pseudonymizer:
    """Keyed pseudonyms: ``prefix + hex(HMAC-SHA256(key, "pseudonym" || id))[:length]``."""

    DOMAIN = "precimed/pseudonym/v1"

    def __init__(self, key: KeyMaterial, length: int = 20, prefix: str = "") -> None:
        if not 16 <= length <= 64:
            raise ConfigError(f"pseudonym length must lie in [16, 64] hex characters, got {length}")
        self.key = key
        self.length = length
        self.prefix = prefix

    def __call__(self, value: object) -> str | None:
        ident = normalize_id(value)
        if ident is None:
            return None
        return self.prefix + self.key.mac(self.DOMAIN, ident.encode()).hex()[: self.length]

    def map_series(self, series: pd.Series) -> pd.Series:
        """Pseudonymize a column: each distinct value is MACed once. Missing stays missing (NaN)."""
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        mapped = np.array([self(u) for u in uniques] + [None], dtype=object)
        out = mapped[codes]  # code -1 picks the trailing None
        out = np.where(pd.isna(out), np.nan, out)
        return pd.Series(out, index=series.index, name=series.name, dtype=object)

    def uuid(self, value: Hashable, domain: str = "precimed/uuid/v1") -> str:
        """A UUID-shaped pseudonym (for FHIR ids and urn:uuid references)."""
        digest = self.key.mac(domain, str(value).encode())
        return str(uuid.UUID(bytes=digest[:16], version=4))
