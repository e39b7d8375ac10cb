"""The one CSV writer: every CSV or TSV file precimed writes goes through :func:`csv_bytes`.

A spreadsheet opens a CSV cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a
formula, so a patient's note or an identifier such as ``=HYPERLINK(...)`` could run when a user opens an output.
Text cells that start so are written with a leading apostrophe (the OWASP advice for CSV injection), which
spreadsheets show as text. Numbers are left alone: a numeric column is never touched, and a text cell that is a
plain number such as ``-1.5`` stays as it is, since no spreadsheet reads a number as a formula.

Rows end in CRLF, as RFC 4180 says: the csv writer then quotes every field that holds a carriage return or a line
feed, so no cell can split its row (with LF endings a bare CR inside a field is written unquoted, and readers
that take CR as a line end would shift the columns after it).
"""

from __future__ import annotations

import re

import pandas as pd

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def escape_cell(value: object) -> object:
    """``value`` with a leading apostrophe when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_LEADS) and not _PLAIN_NUMBER.match(value):
        return ESCAPE + value
    return value


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot start a formula (numeric columns are untouched)."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
            out[column] = series.map(escape_cell, na_action="ignore")
    return out


def csv_bytes(frame: pd.DataFrame, *, sep: str = ",", index: bool = False) -> bytes:
    """``frame`` as UTF-8 CSV (or TSV with ``sep="\\t"``) with formula-leading text cells escaped."""
    return escape_formulas(frame).to_csv(index=index, sep=sep, lineterminator="\r\n").encode("utf-8")
