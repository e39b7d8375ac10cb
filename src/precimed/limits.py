"""How much of a user's file precimed will read: one limit, checked before a byte is read.

A hostile or mistaken input (a 200 MB "patient file", a gzip bomb posing as a VCF) must cost a line of text,
not the machine's memory. Every reader of a file a user names (tables, run configs, patient JSON, VCFs, site
rule files, observation tables, key files and mappings) goes through :func:`check_input_size` or
:func:`read_user_text`. The limit is ``PRECIMED_MAX_INPUT_BYTES`` (default 100 MiB); a gzip file is also
refused when it decompresses to more than the limit.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from precimed.errors import ConfigError, DataError

MAX_INPUT_ENV = "PRECIMED_MAX_INPUT_BYTES"
DEFAULT_MAX_INPUT_BYTES = 100 * 1024 * 1024


def max_input_bytes() -> int:
    """The largest input file read, in bytes: ``PRECIMED_MAX_INPUT_BYTES`` when set, else 100 MiB."""
    text = os.environ.get(MAX_INPUT_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_INPUT_BYTES
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_INPUT_ENV}={text[:40]!r}: expected a whole number of bytes ≥ 1, e.g. 500000000")
    return value


def check_input_size(p: Path, limit: int | None = None) -> int:
    """The size of ``p`` in bytes, refused (before any byte is read) when over ``limit`` (default: the setting)."""
    limit = max_input_bytes() if limit is None else limit
    size = p.stat().st_size
    if size > limit:
        raise DataError(f"{p}: the file is {size:,} bytes, over the input limit of {limit:,} bytes; "
                        f"split it, or raise {MAX_INPUT_ENV} if this machine has the memory")
    return size


def read_user_text(path: Path | str, *, encoding: str = "utf-8") -> str:
    """The text of a file a user named, within the input limit (a ``.gz`` file: its decompressed text, which
    must fit the limit too). A file that is not text in ``encoding`` is a DataError naming it."""
    p = Path(path)
    limit = max_input_bytes()
    check_input_size(p, limit)
    try:
        if p.suffix == ".gz":
            with gzip.open(p, "rb") as fh:
                data = fh.read(limit + 1)
            if len(data) > limit:
                raise DataError(f"{p}: decompresses to more than the input limit of {limit:,} bytes; "
                                f"raise {MAX_INPUT_ENV} if this machine has the memory")
        else:
            data = p.read_bytes()
        return data.decode(encoding)
    except (OSError, EOFError) as exc:  # a damaged gzip stream
        raise DataError(f"{p}: cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: the file is not {encoding.upper()} text (byte {exc.start}: {exc.reason})") from None


__all__ = ["DEFAULT_MAX_INPUT_BYTES", "MAX_INPUT_ENV", "check_input_size", "max_input_bytes", "read_user_text"]
