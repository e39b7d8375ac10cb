"""Validation helpers that say what is wrong, where, and what to do."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from precimed.errors import SchemaError, ValueRangeError


def examples(values: Iterable[object], limit: int = 5) -> list[object]:
    """A few example values (ids, rows) for an error message."""
    out: list[object] = []
    for v in values:
        out.append(v.item() if hasattr(v, "item") else v)
        if len(out) >= limit:
            break
    return out


def require_columns(df: pd.DataFrame, required: Iterable[str], *, where: str) -> None:
    """Raise SchemaError naming every required column that `df` lacks."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        available = sorted(map(str, df.columns))
        shown = available[:25] + (["..."] if len(available) > 25 else [])
        raise SchemaError(
            f"{where}: missing column(s) {missing}; available columns: {shown}",
            column=missing[0],
        )


def as_numeric(series: pd.Series, *, where: str, ids: pd.Series | None = None) -> pd.Series:
    """Convert a column to float, naming the rows whose values are not numbers."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna() & series.notna() & (series.astype(str).str.strip() != "")
    if bad.any():
        keys = ids[bad] if ids is not None else series.index[bad]
        label = "patient id(s)" if ids is not None else "row(s)"
        raise SchemaError(
            f"{where}: column {series.name!r} must be numeric, but {int(bad.sum())} value(s) are not, "
            f"e.g. {examples(series[bad])} at {label} {examples(keys)}",
            column=str(series.name),
            rows=list(keys[:5]),
        )
    return converted.astype(float)


def check_range(
    values: pd.Series,
    low: float | None,
    high: float | None,
    *,
    unit: str,
    ids: pd.Series,
    where: str,
) -> None:
    """Raise ValueRangeError if any non-missing value lies outside [low, high]."""
    mask = outside_range(values, low, high)
    if mask.any():
        raise ValueRangeError(
            f"{where}: {values.name} must lie in [{low}, {high}] {unit}; {int(mask.sum())} value(s) do not, "
            f"e.g. {examples(values[mask])} for patient id(s) {examples(ids[mask])}. "
            "Wrong unit or typo? Fix the input, or pass --allow-out-of-range to treat such values as missing.",
            column=str(values.name),
            rows=list(ids[mask][:5]),
        )


def outside_range(values: pd.Series, low: float | None, high: float | None) -> pd.Series:
    """Boolean mask of non-missing values outside [low, high] (either bound may be None)."""
    mask = pd.Series(False, index=values.index)
    if low is not None:
        mask |= values < low
    if high is not None:
        mask |= values > high
    return mask & values.notna()


def one_of(value: str, allowed: Sequence[str], *, what: str) -> str:
    """Return value if allowed, else raise SchemaError listing the choices."""
    if value not in allowed:
        raise SchemaError(f"unknown {what} {value!r}; expected one of {list(allowed)}")
    return value
