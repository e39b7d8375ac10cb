""""Table 1": the characteristics of the training and test cohorts, overall and by outcome group.

Columns are, for each split (training, then test), the whole split and then one column per outcome
group: binary tasks by outcome (0 / 1), survival tasks by event indicator (censored / event),
multiclass tasks by class; regression tasks have the overall column only.

Rows follow the usual conventions of clinical papers (Hayes-Larson et al., "Who is in this study,
anyway? Guidelines for a useful Table 1", J Clin Epidemiol 2019;114:125-132):

* numeric features: mean (SD), or median [IQR] when the feature is skewed (|sample skewness| > 1
  in the training rows) or declared ``log: true``; the same summary is used in every column of a row;
* binary features: n (%) with the positive value;
* categorical, ordinal and genotype features: n (%) per level, levels in their declared order;
* percentages use the rows with a value as denominator; a ``missing, n (%)`` line (denominator: all
  rows of the column) follows every feature with a missing value in any column, and values outside
  a numeric feature's declared range are counted on an ``out of range`` line and left out of the
  summary (the preprocessor treats them as missing too).

No p-values: differences between groups in Table 1 are descriptive (CONSORT 2010 item 15 advises
against testing baseline differences; the same reasoning applies to outcome groups here).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import skew

from precimed.errors import ConfigError, DataError

__all__ = ["table_one"]

_TRUE = frozenset({"1", "yes", "y", "true"})
_FALSE = frozenset({"0", "no", "n", "false"})
SKEW_LIMIT = 1.0


def _key(value: object) -> str:
    """Canonical text of a category value: 1, 1.0 and "1" compare equal; strings are stripped."""
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value).strip()


def _blank(values: pd.Series) -> np.ndarray:
    blank = values.isna().to_numpy()
    text = values.astype(str).str.strip()
    return blank | text.isin(["", "nan", "NaN", "None", "NA", "N/A"]).to_numpy()


def _pct(k: float, n: float) -> str:
    return f"{int(k)} ({100.0 * k / n:.1f}%)" if n > 0 else f"{int(k)} (-)"


def _decimals(reference: float) -> int:
    ref = abs(reference)
    if not math.isfinite(ref):
        return 2
    return 0 if ref >= 100 else 1 if ref >= 10 else 2 if ref >= 1 else 3


def _num(x: float, d: int) -> str:
    return "-" if not math.isfinite(x) else f"{x:,.{d}f}" if abs(x) >= 10_000 else f"{x:.{d}f}"


class _Column:
    def __init__(self, split: str, group: str, rows: np.ndarray, frame: pd.DataFrame, y: np.ndarray | None):
        self.split, self.group, self.rows = split, group, rows
        self.frame = frame.iloc[np.flatnonzero(rows)]
        self.y = None if y is None else y[rows]

    @property
    def n(self) -> int:
        return int(self.rows.sum())


def _groups(task: str, y: np.ndarray, classes: Sequence[str] | None) -> list[tuple[str, np.ndarray]]:
    if task == "binary":
        return [("without outcome (0)", y == 0), ("with outcome (1)", y == 1)]
    if task == "survival":
        return [("censored", y[:, 1] == 0), ("event", y[:, 1] == 1)]
    if task == "multiclass":
        codes = y.astype(int)
        k = len(classes) if classes else int(codes.max()) + 1
        names = list(classes) if classes else [f"class {i}" for i in range(k)]
        return [(str(names[i]), codes == i) for i in range(k)]
    return []


def _check_y(task: str, y: object, n: int, where: str) -> np.ndarray:
    arr = np.asarray(y, dtype=float)
    want = (n, 2) if task == "survival" else (n,)
    if arr.shape != want:
        raise DataError(f"{where}: y must have shape {want} for a {task} task (one row per patient"
                        f"{', columns time and event' if task == 'survival' else ''}); got {arr.shape}.",
                        column="y")
    return arr


def _numeric(values: pd.Series, feature: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(numbers, missing mask, out-of-range mask) of a numeric feature."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    missing = ~np.isfinite(numbers)
    outside = np.zeros(len(numbers), dtype=bool)
    if feature.get("range"):
        low, high = feature["range"]
        with np.errstate(invalid="ignore"):
            outside = ~missing & ((numbers < low) | (numbers > high))
    return numbers, missing, outside


def _levels(values: pd.Series, feature: Mapping[str, Any]) -> np.ndarray:
    """Canonical level text per row ('' when missing)."""
    blank = _blank(values)
    kind = feature.get("kind", "categorical")
    out = np.empty(len(values), dtype=object)
    alleles = [str(a) for a in feature.get("alleles") or []]
    for i, (v, b) in enumerate(zip(values, blank, strict=True)):
        if b:
            out[i] = ""
        elif kind == "genotype":
            parts = [p.strip() for p in re.split(r"[/|]", str(v)) if p.strip()]
            rank = {a: j for j, a in enumerate(alleles)}
            out[i] = "/".join(sorted(parts, key=lambda a: (rank.get(a, len(rank)), a)))
        else:
            out[i] = _key(v)
    return out


def _binary(values: pd.Series, feature: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
    """(positive mask, missing-or-unreadable mask, label of the positive value)."""
    blank = _blank(values)
    keys = np.array(["" if b else _key(v).lower() for v, b in zip(values, blank, strict=True)], dtype=object)
    if feature.get("positive"):
        positive = {_key(p).lower() for p in feature["positive"]}
        pos = np.isin(keys, list(positive))
        label = ", ".join(_key(p) for p in feature["positive"])
        return pos & ~blank, blank, label
    pos = np.isin(keys, list(_TRUE))
    neg = np.isin(keys, list(_FALSE))
    return pos, blank | ~(pos | neg), "yes"


def _title(feature: Mapping[str, Any]) -> str:
    name = str(feature["name"])
    unit = feature.get("unit")
    return f"{name} ({unit})" if unit else name


def table_one(
    train_frame: pd.DataFrame | None,
    test_frame: pd.DataFrame | None,
    y_train: np.ndarray | None,
    y_test: np.ndarray | None,
    features: Sequence[Mapping[str, Any]],
    *,
    task: str,
    classes: Sequence[str] | None = None,
    time_unit: str | None = None,
    split_names: tuple[str, str] = ("Training", "Test"),
) -> dict[str, Any]:
    """Build Table 1 for the training (and test) cohort.

    ``*_frame`` are the typed feature frames (``Cohort.X``: numeric features as floats, others as
    objects), ``y_*`` the labels as the cohort holds them (survival: an (n, 2) array of time and
    event), ``features`` the declarations (``FeatureConfig.model_dump()`` dicts). Pass ``None``
    for one split's frame and labels to describe the other cohort alone (e.g. a bundle evaluated
    on new data, whose training rows are not at hand).

    Returns ``{"columns": [{"split", "group", "n", "label"}], "rows": [{"label", "level", "kind",
    "cells"}], "notes": [...]}``: ``cells`` has one string per column; ``level`` is 0 for a
    feature's line and 1 for its levels and missing/out-of-range lines.
    """
    if task not in ("binary", "multiclass", "regression", "survival"):
        raise ConfigError(f"task must be binary, multiclass, regression or survival, got {task!r}.")
    splits = [(name, f, y) for name, f, y in zip(split_names, (train_frame, test_frame), (y_train, y_test),
                                                 strict=True) if f is not None]
    if not splits:
        raise DataError("Table 1 needs at least one of train_frame and test_frame.")
    columns: list[_Column] = []
    for split, frame, y in splits:
        if y is None:
            raise DataError(f"{split}: labels are needed for Table 1 by outcome group.", column="y")
        yy = _check_y(task, y, len(frame), split)
        columns.append(_Column(split, "overall", np.ones(len(frame), dtype=bool), frame, yy))
        for group, mask in _groups(task, yy, classes):
            columns.append(_Column(split, group, mask, frame, yy))

    rows: list[dict[str, Any]] = []
    notes: list[str] = []

    def add(label: str, cells: list[str], level: int = 0, kind: str = "value") -> None:
        rows.append({"label": label, "level": level, "kind": kind, "cells": cells})

    # ----- outcome --------------------------------------------------------------------------------
    if task == "binary":
        add("outcome, n (%)", [_pct(c.y.sum(), c.n) for c in columns])
    elif task == "survival":
        unit = f" ({time_unit})" if time_unit else ""
        add("events, n (%)", [_pct(c.y[:, 1].sum(), c.n) for c in columns])
        d = _decimals(float(np.median(columns[0].y[:, 0])) if columns[0].n else 1.0)
        add(f"time to event or censoring{unit}, median [IQR]",
            [_median_iqr(c.y[:, 0], d) for c in columns])
    elif task == "regression":
        d = _decimals(float(np.median(np.abs(columns[0].y))) if columns[0].n else 1.0)
        add("outcome, mean (SD)", [_mean_sd(c.y, d) for c in columns])
    else:
        names = list(classes) if classes else None
        for i, c_name in enumerate(names or []):
            add(f"class {c_name}, n (%)", [_pct(np.sum(c.y.astype(int) == i), c.n) for c in columns])

    # ----- features -------------------------------------------------------------------------------
    # the summary type (mean or median) and decimals are chosen once per feature, on the first split
    reference = next((f for _, f, _ in splits if len(f)), splits[0][1])
    for feature in features:
        name = str(feature["name"])
        kind = feature.get("kind", "numeric")
        absent = [c.split for c in columns if c.group == "overall" and name not in c.frame.columns]
        if absent:
            notes.append(f"{name}: column not found in {', '.join(absent)}")
            add(_title(feature), ["-" for _ in columns])
            continue
        if kind == "numeric":
            _numeric_rows(feature, reference[name], columns, add)
        elif kind == "binary":
            parts = [_binary(c.frame[name], feature) for c in columns]
            label = parts[0][2]
            add(f"{_title(feature)} = {label}, n (%)",
                [_pct(pos.sum(), (~miss).sum()) for pos, miss, _ in parts])
            _missing_row([miss for _, miss, _ in parts], columns, add)
        else:
            levels = [_levels(c.frame[name], feature) for c in columns]
            declared = [_key(v) for v in feature.get("categories") or []]
            seen = sorted({v for lv in levels for v in lv if v and v not in declared})
            add(f"{_title(feature)}, n (%)", ["" for _ in columns], kind="header")
            for level in declared + seen:
                add(level, [_pct(np.sum(lv == level), np.sum(lv != "")) for lv in levels], level=1)
            _missing_row([lv == "" for lv in levels], columns, add)

    header = [{"split": c.split, "group": c.group, "n": c.n,
               "label": f"{c.split} {'(all)' if c.group == 'overall' else c.group}"} for c in columns]
    notes.append("Numbers are n (%) with the rows that have a value as denominator, mean (SD), or median "
                 "[IQR] for skewed features; a 'missing' line appears for every feature with missing values.")
    return {"columns": header, "rows": rows, "notes": notes}


def _mean_sd(x: np.ndarray, d: int) -> str:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return "-"
    sd = float(np.std(x, ddof=1)) if x.size > 1 else float("nan")
    return f"{_num(float(np.mean(x)), d)} ({_num(sd, d)})"


def _median_iqr(x: np.ndarray, d: int) -> str:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return "-"
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return f"{_num(float(med), d)} [{_num(float(q1), d)}, {_num(float(q3), d)}]"


def _numeric_rows(feature: Mapping[str, Any], reference: pd.Series, columns: list[_Column], add) -> None:
    name = feature["name"]
    ref_numbers, ref_missing, ref_outside = _numeric(reference, feature)
    ref_values = ref_numbers[~ref_missing & ~ref_outside]
    skewed = bool(feature.get("log"))
    if not skewed and ref_values.size > 2 and np.ptp(ref_values) > 0:
        skewed = abs(float(skew(ref_values, bias=False))) > SKEW_LIMIT
    d = _decimals(float(np.median(np.abs(ref_values))) if ref_values.size else 1.0)
    if ref_values.size and np.all(ref_values == np.round(ref_values)):  # counts, grades, whole years
        d = 0 if skewed else min(d, 1)
    parts = [_numeric(c.frame[name], feature) for c in columns]
    values = [num[~miss & ~out] for num, miss, out in parts]
    if skewed:
        add(f"{_title(feature)}, median [IQR]", [_median_iqr(v, d) for v in values])
    else:
        add(f"{_title(feature)}, mean (SD)", [_mean_sd(v, d) for v in values])
    _missing_row([miss for _, miss, _ in parts], columns, add)
    if any(out.any() for _, _, out in parts):
        low, high = feature["range"]
        add(f"outside [{low:g}, {high:g}] (treated as missing), n (%)",
            [_pct(out.sum(), len(out)) for _, _, out in parts], level=1, kind="missing")


def _missing_row(masks: list[np.ndarray], columns: list[_Column], add) -> None:
    if any(m.any() for m in masks):
        add("missing, n (%)", [_pct(m.sum(), len(m)) for m in masks], level=1, kind="missing")
