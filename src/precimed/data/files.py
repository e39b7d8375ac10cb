"""Read a user's table file (CSV, TSV, Parquet, JSON records, JSON lines) into a typed DataFrame.

Reading types the values and nothing more: no cleaning, no renaming. Every error is a DataError (or a
SchemaError for duplicate column names) whose message starts with the file path and says what to do.

CSV / TSV: text is read as UTF-8 (a byte-order mark is ignored); exactly "", "NA", "NaN" and "null" are
missing; a column becomes numeric when every present value is a number, unless some value has a leading
zero such as "007" (an identifier or code), in which case it stays text. JSON and Parquet keep their own
types. In every format a missing value in a text column is NaN (never None).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precimed.errors import DataError, SchemaError

ACCEPTED_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl")
MISSING_TEXT = ("", "NA", "NaN", "null")
_LEADING_ZERO = re.compile(r"^[+-]?0\d")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read ``path`` by its suffix (.csv, .tsv, .parquet, .json as a list of records, .jsonl)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory; give the path of a table file")
    suffix = p.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        shown = repr(suffix) if suffix else "no suffix"
        raise DataError(
            f"{p}: unknown file type ({shown}); accepted: {', '.join(ACCEPTED_SUFFIXES)}. "
            "Convert the file or rename it to the suffix that matches its content"
        )
    if p.stat().st_size == 0:
        raise _no_rows(p)
    df = reader(p)
    _require_unique_columns(list(df.columns), p)
    if df.shape[1] == 0:
        raise DataError(f"{p}: the file has no columns")
    if len(df) == 0:
        raise _no_rows(p)
    for column in df.select_dtypes(include="object").columns:
        df[column] = df[column].where(df[column].notna(), np.nan)  # one missing marker: NaN, never None
    return df


def _no_rows(p: Path) -> DataError:
    return DataError(f"{p}: the file has no rows")


def _require_unique_columns(names: list[Any], p: Path) -> None:
    named = [n for n in names if not (isinstance(n, str) and n == "")]
    duplicates = sorted({str(n) for n in named if named.count(n) > 1})
    if duplicates:
        raise SchemaError(
            f"{p}: duplicate column name(s) {duplicates}; rename them so that every column is unique",
            column=duplicates[0],
        )


# ------------------------------------------------------------------------------------------- CSV / TSV


def _read_delimited(p: Path, sep: str) -> pd.DataFrame:
    kind = "TSV" if sep == "\t" else "CSV"
    try:
        with p.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=sep), None)
    except UnicodeDecodeError as exc:
        raise _not_utf8(p, exc) from None
    except csv.Error as exc:
        raise DataError(f"{p}: cannot parse the {kind} header: {exc}") from None
    if header is None or not any(name.strip() for name in header):
        raise _no_rows(p)
    # pandas would rename a repeated header to "name.1"; name the clash instead.
    _require_unique_columns(header, p)
    try:
        text = pd.read_csv(
            p,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=list(MISSING_TEXT),
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise _no_rows(p) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{p}: cannot parse the file as {kind}: {_one_line(exc)}") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(p, exc) from None
    return pd.DataFrame({column: _infer_numbers(text[column]) for column in text.columns})


def _infer_numbers(column: pd.Series) -> pd.Series:
    present = column.dropna()
    if present.empty:
        return column.astype(float)
    if present.str.match(_LEADING_ZERO).any():
        return column
    try:
        pd.to_numeric(present)
    except (ValueError, TypeError):
        return column
    return pd.to_numeric(column)


def _not_utf8(p: Path, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{p}: the file is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# ------------------------------------------------------------------------------------------------ JSON


def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(p, exc) from None


def _unique_keys(p: Path) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        _require_unique_columns([key for key, _ in pairs], p)
        return dict(pairs)

    return hook


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _frame(records: list[Any], p: Path, label: Callable[[int], str]) -> pd.DataFrame:
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{p}: {label(i)} is {_kind(record)}; expected an object of column: value pairs")
    if not records:
        raise _no_rows(p)
    return pd.DataFrame.from_records(records)


def _read_json(p: Path) -> pd.DataFrame:
    text = _read_text(p)
    if not text.strip():
        raise _no_rows(p)
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys(p))
    except json.JSONDecodeError as exc:
        hint = (
            "; it looks like JSON lines (one object per line): name the file .jsonl"
            if exc.msg == "Extra data"
            else ""
        )
        raise DataError(
            f"{p}: cannot parse the JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}"
        ) from None
    if not isinstance(data, list):
        raise DataError(
            f"{p}: expected a JSON list of records ([{{column: value, ...}}, ...]), found {_kind(data)}; "
            "write it with pandas' to_json(orient='records')"
        )
    return _frame(data, p, lambda i: f"record {i + 1}")


def _read_json_lines(p: Path) -> pd.DataFrame:
    records: list[Any] = []
    lines: list[int] = []
    for number, line in enumerate(_read_text(p).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line, object_pairs_hook=_unique_keys(p)))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{p}: cannot parse the JSON at line {number} column {exc.colno}: {exc.msg}"
            ) from None
        lines.append(number)
    return _frame(records, p, lambda i: f"line {lines[i]}")


# --------------------------------------------------------------------------------------------- Parquet


def _read_parquet(p: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        # Check the names first: pyarrow refuses to read a file whose columns repeat a name.
        _require_unique_columns(list(pq.read_schema(p).names), p)
        df = pd.read_parquet(p)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        if isinstance(exc, SchemaError):
            raise
        raise DataError(f"{p}: cannot read the file as Parquet: {_one_line(exc)}") from None
    named_index = isinstance(df.index, pd.MultiIndex) or df.index.name is not None
    if named_index:
        return df.reset_index()  # a stored index (e.g. patient id) becomes columns, not lost
    return df.reset_index(drop=True)


_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": lambda p: _read_delimited(p, ","),
    ".tsv": lambda p: _read_delimited(p, "\t"),
    ".parquet": _read_parquet,
    ".json": _read_json,
    ".jsonl": _read_json_lines,
}
