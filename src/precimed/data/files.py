"""Read a user's table file (CSV, TSV, Parquet, JSON records, JSON lines) into a typed DataFrame.

Reading types the values and nothing more: no cleaning, no renaming. Every error is a DataError (or a
SchemaError for duplicate column names) whose message starts with the file path and says what to do.

CSV / TSV: text is read as UTF-8 (a byte-order mark is ignored); exactly "", "NA", "NaN" and "null" are
missing; a column becomes numeric when every present value is a number, unless some value has a leading
zero such as "007" (an identifier or code), in which case it stays text. JSON and Parquet keep their own
types. In every format a missing value in a text column is NaN (never None).

Limits, checked so that a hostile or mistaken file costs a line of text, not the machine: the file's size
(``PRECIMED_MAX_INPUT_BYTES``, default 100 MiB) before a byte is read; a CSV row with more or fewer fields than the
header, a NUL byte or a field over 131,072 characters; JSON nested deeper than a table can be, integers with more
than 20 digits and cells that are lists or objects; Parquet list, struct or map columns. Each is a DataError
naming the file and the row, line or column.
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
from precimed.limits import check_input_size

ACCEPTED_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl")
MISSING_TEXT = ("", "NA", "NaN", "null")
_LEADING_ZERO = re.compile(r"^[+-]?0\d")
MAX_CSV_FIELD = 131_072  # the csv module's own default limit, kept: a longer cell is an error, not a slowdown
MAX_INT_DIGITS = 20  # 2**64 has 20 digits: a longer integer is no measurement (write identifiers as text)
MAX_CSV_DIGITS = 100  # CSV has no types: a run of digits longer than any code or number is refused
_LONG_INTEGER = re.compile(rf"^[+-]?\d{{{MAX_CSV_DIGITS + 1},}}$")


def read_table(path: str | Path, *, max_bytes: int | None = None) -> pd.DataFrame:
    """Read ``path`` by its suffix (.csv, .tsv, .parquet, .json as a list of records, .jsonl).

    ``max_bytes`` caps the file's size (default: :func:`max_input_bytes`); it is checked before reading.
    """
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
    if check_input_size(p, max_bytes) == 0:
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
    """A clean file through pyarrow's C++ reader (about 5x faster); any file it finds a problem in through the
    csv module, which names the row and line of that problem. Both give the same frame for a clean file."""
    columns = _read_delimited_fast(p, sep)
    if columns is None:
        return _read_delimited_exact(p, sep)
    return pd.DataFrame({name: _infer_numbers(_text_column(cells), leading_zero=zero)
                         for name, (cells, zero) in columns.items()})


def _read_delimited_fast(p: Path, sep: str) -> dict[str, tuple[Any, bool]] | None:
    """Every column as text, or None when the file needs the exact reader: a ragged row, a repeated or empty
    header, no rows, text that is not UTF-8, a NUL byte, a field over the limit or a number too long to be one."""
    import pyarrow as pa  # imported here: start-up of commands that read no CSV stays quick
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    try:
        with p.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=sep), None)
    except (UnicodeDecodeError, csv.Error):
        return None
    if not header or len(set(header)) != len(header) or "" in header or "\x00" in "".join(header):
        return None
    ragged: list[object] = []

    def on_invalid_row(row: object) -> str:
        ragged.append(row)
        return "skip"

    try:
        table = pa_csv.read_csv(
            p, read_options=pa_csv.ReadOptions(use_threads=True),
            parse_options=pa_csv.ParseOptions(delimiter=sep, newlines_in_values=True,
                                              invalid_row_handler=on_invalid_row),
            convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()),
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowException, OSError):
        return None
    if ragged or table.num_rows == 0 or table.column_names != header:
        return None
    for column in table.columns:  # what the exact reader refuses: let it name the row and line
        longest = pc.max(pc.utf8_length(column)).as_py()
        if longest > MAX_CSV_FIELD or pc.any(pc.match_substring(column, "\x00")).as_py():
            return None
        if longest > MAX_CSV_DIGITS and pc.any(pc.match_substring_regex(column, _LONG_INTEGER.pattern)).as_py():
            return None
    # whether a present value has a leading zero ("007": a code, kept as text), computed in C++ not per cell
    present = {name: pc.filter(table.column(name), pc.invert(pc.is_in(table.column(name),
                                                                      pa.array(MISSING_TEXT)))) for name in header}
    return {name: (table.column(name).to_numpy(zero_copy_only=False),
                   bool(pc.any(pc.match_substring_regex(present[name], _LEADING_ZERO.pattern)).as_py()))
            for name in header}


def _read_delimited_exact(p: Path, sep: str) -> pd.DataFrame:
    """Parse every row with the csv module (so a ragged row, a NUL or a huge field is named, never shifted)."""
    kind = "TSV" if sep == "\t" else "CSV"
    csv.field_size_limit(MAX_CSV_FIELD)  # process-wide and raised by some libraries: set it for every read
    try:
        with p.open(newline="", encoding="utf-8-sig") as handle:
            header, rows, lines = _csv_rows(csv.reader(handle, delimiter=sep), p, kind)
    except UnicodeDecodeError as exc:
        raise _not_utf8(p, exc) from None
    if not rows:
        raise _no_rows(p)
    _check_header(header, p, kind)
    columns = dict(zip(_column_names(header), zip(*rows, strict=True), strict=True))
    for name, cells in columns.items():
        _check_column(cells, name, lines, p, kind)
    return pd.DataFrame({name: _infer_numbers(_text_column(cells)) for name, cells in columns.items()})


def _csv_rows(reader: Any, p: Path, kind: str) -> tuple[list[str], list[list[str]], list[int]]:
    """The header, the data rows (blank lines skipped) and each row's last line; a ragged row is refused."""
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row:
                continue
            if header is None:
                if not any(name.strip() for name in row):
                    raise _no_rows(p)
                # pandas would rename a repeated header to "name.1"; name the clash instead.
                _require_unique_columns(row, p)
                header = row
            elif len(row) != len(header):
                raise DataError(f"{p}: cannot parse the file as {kind}: row {len(rows) + 1} (line {reader.line_num}) "
                                f"has {len(row)} field(s), expected {len(header)} like the header; quote fields "
                                "that contain the separator")
            else:
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{p}: cannot parse the file as {kind} at line {max(reader.line_num, 1)}: {_one_line(exc)} "
                        f"(a field may have at most {MAX_CSV_FIELD:,} characters)") from None
    if header is None:
        raise _no_rows(p)
    return header, rows, lines


def _check_column(cells: tuple[str, ...], name: str, lines: list[int], p: Path, kind: str) -> None:
    """Refuse a NUL byte (a binary file or a broken export) and a number too long to be one, naming the row.

    Both scans run at C speed (one join, one map of len); only a column that fails is searched for its row.
    """
    if "\x00" in "".join(cells):
        row = next(i for i, cell in enumerate(cells) if "\x00" in cell)
        raise DataError(f"{p}: cannot parse the file as {kind}: row {row + 1} (line {lines[row]}), column {name!r} "
                        "holds a NUL byte; export the table again as plain text", column=name)
    if max(map(len, cells)) > MAX_CSV_DIGITS:
        row = next((i for i, cell in enumerate(cells) if _LONG_INTEGER.match(cell)), None)
        if row is not None:
            digits = len(cells[row].lstrip("+-"))
            raise DataError(f"{p}: row {row + 1} (line {lines[row]}), column {name!r} is a number with {digits} "
                            f"digits; expected at most {MAX_CSV_DIGITS}", column=name)


def _check_header(header: list[str], p: Path, kind: str) -> None:
    """The header's names hold no NUL byte."""
    if any("\x00" in name for name in header):
        raise DataError(f"{p}: cannot parse the file as {kind}: the header holds a NUL byte; export the table "
                        "again as plain text")


def _column_names(header: list[str]) -> list[str]:
    """Header names as pandas gives them: an empty name becomes "Unnamed: i"."""
    return [name if name != "" else f"Unnamed: {i}" for i, name in enumerate(header)]


def _text_column(cells: tuple[str, ...]) -> pd.Series:
    """A text column with the four missing spellings as NaN."""
    series = pd.Series(cells, dtype=object)
    return series.where(~series.isin(MISSING_TEXT), np.nan)


def _infer_numbers(column: pd.Series, *, leading_zero: bool | None = None) -> pd.Series:
    """Numbers when every present value is one and none has a leading zero (`leading_zero` when already known)."""
    present = column.dropna()
    if present.empty:
        return column.astype(float)
    if leading_zero if leading_zero is not None else present.str.match(_LEADING_ZERO).any():
        return column
    try:
        numbers = pd.to_numeric(present)
    except (ValueError, TypeError):
        return column
    # parsed once; missing values come back as NaN (so integers with a gap become floats, as pandas does)
    return numbers if len(numbers) == len(column) else numbers.reindex(column.index)


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
        for column, value in record.items():
            if isinstance(value, (dict, list)):
                raise DataError(f"{p}: {label(i)}, column {column!r} is {_kind(value)}; expected a single value "
                                "(text, a number, true/false or null)", column=str(column))
    if not records:
        raise _no_rows(p)
    return pd.DataFrame.from_records(records)


def _bounded_int(p: Path, where: Callable[[], str]) -> Callable[[str], int]:
    """json's parse_int: an integer of more than 20 digits is refused (Python would stop at 4,300 with a
    ValueError; pandas cannot hold more than 64 bits anyway)."""

    def parse(text: str) -> int:
        digits = len(text.lstrip("-"))
        if digits > MAX_INT_DIGITS:
            raise DataError(f"{p}: {where()} has an integer with {digits} digits; expected at most "
                            f"{MAX_INT_DIGITS} (write identifiers as text)")
        return int(text)

    return parse


def _loads(text: str, p: Path, where: Callable[[], str]) -> Any:
    """json.loads with unique keys and bounded integers; nesting too deep for Python is a DataError."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys(p), parse_int=_bounded_int(p, where))
    except RecursionError:
        raise DataError(f"{p}: {where()} is nested too deeply; expected records of column: value pairs") from None


def _read_json(p: Path) -> pd.DataFrame:
    text = _read_text(p)
    if not text.strip():
        raise _no_rows(p)
    try:
        data = _loads(text, p, lambda: "the JSON")
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
            records.append(_loads(line, p, lambda number=number: f"line {number}"))
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
        schema = pq.read_schema(p)
        _require_unique_columns(list(schema.names), p)
        _require_flat_columns(schema, p)
        df = pd.read_parquet(p)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{p}: cannot read the file as Parquet: {_one_line(exc)}") from None
    named_index = isinstance(df.index, pd.MultiIndex) or df.index.name is not None
    if named_index:
        return df.reset_index()  # a stored index (e.g. patient id) becomes columns, not lost
    return df.reset_index(drop=True)


def _require_flat_columns(schema: Any, p: Path) -> None:
    """A table cell holds one value: list, struct and map columns are refused by name."""
    import pyarrow as pa

    for field in schema:
        if pa.types.is_nested(field.type):
            raise SchemaError(f"{p}: column {field.name!r} has nested values ({field.type}); expected one value per "
                              "cell (numbers, text, booleans or dates): flatten the column before exporting",
                              column=str(field.name))


_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": lambda p: _read_delimited(p, ","),
    ".tsv": lambda p: _read_delimited(p, "\t"),
    ".parquet": _read_parquet,
    ".json": _read_json,
    ".jsonl": _read_json_lines,
}
