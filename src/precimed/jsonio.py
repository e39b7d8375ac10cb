"""The one JSON writer: every file and row precimed writes as JSON goes through here.

Why one writer: ``json.dumps`` writes NaN and infinities as bare ``NaN`` / ``Infinity``, which is not
JSON (strict parsers, browsers and PostgreSQL's ``jsonb`` refuse it), and numpy scalars, arrays,
paths, dates and pandas missing values each need a rule. Here a non-finite number is ``null``
everywhere, numpy values become plain numbers and lists, and anything else unknown is refused rather
than silently stringified, so a new output type is a decision, not an accident.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

from precimed.atomic import atomic_write_bytes


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: dicts with str keys, lists, str, int, float (finite) or None."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in (sorted(value, key=str) if isinstance(value, set | frozenset) else value)]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return plain(value.value)
    if hasattr(value, "tolist") and not isinstance(value, bytes):  # numpy arrays and scalars, pandas arrays
        return plain(value.tolist())
    if hasattr(value, "model_dump"):  # pydantic models
        return plain(value.model_dump(mode="json"))
    if _is_missing(value):  # pandas NA / NaT
        return None
    raise TypeError(f"cannot write a {type(value).__name__} as JSON: {value!r:.80}")


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, bool | int | float) or hasattr(k, "item"):
        return str(plain(k))
    return str(k)


def _is_missing(value: Any) -> bool:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a core dependency
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def dumps(value: Any, *, indent: int | None = 2, sort_keys: bool = False, compact: bool = False) -> str:
    """Strict JSON text of ``value`` (NaN and infinities as ``null``); ``compact`` for stored rows."""
    if compact:
        return json.dumps(plain(value), sort_keys=sort_keys, separators=(",", ":"), allow_nan=False,
                          ensure_ascii=False)
    return json.dumps(plain(value), indent=indent, sort_keys=sort_keys, allow_nan=False, ensure_ascii=False)


def dumps_plain(value: Any, *, sort_keys: bool = False) -> str:
    """``dumps(value, compact=True)`` for data precimed built itself from plain values with str keys (a served
    prediction), without the walk through ``plain``: json writes it directly, and whatever json cannot write
    strictly (a numpy value, NaN or an infinity) sends the whole value the ``dumps`` way instead, so the text is the
    same either way. The caller vouches for the keys: json would write a key True as "true" where ``dumps``
    writes "True"."""
    try:
        return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError):
        return dumps(value, compact=True, sort_keys=sort_keys)


def dumps_lines(rows: Any) -> str:
    """JSON lines: one compact object per line, each ending in a newline."""
    return "".join(dumps(r, compact=True) + "\n" for r in rows)


def write_json(path: Path | str, value: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write ``value`` as strict JSON to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    atomic_write_bytes(path, dumps(value, indent=indent, sort_keys=sort_keys).encode("utf-8"))
    return path


def write_json_lines(path: Path | str, rows: Any) -> Path:
    """Write rows as JSON lines atomically."""
    path = Path(path)
    atomic_write_bytes(path, dumps_lines(rows).encode("utf-8"))
    return path


def loads_strict(text: str | bytes) -> Any:
    """Parse JSON refusing ``NaN`` / ``Infinity`` (what a strict consumer does); used by tests and loaders."""
    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: bare {token}")

    return json.loads(text, parse_constant=refuse)
