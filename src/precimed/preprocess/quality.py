"""A data-quality report: duplicates, missing values, out-of-range and unreadable values.

It only reports; nothing is dropped or changed. The frame's index is the patient id. The report is
plain JSON data, so it can be written next to a model bundle or returned by the service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from precimed.config import FeatureConfig
from precimed.preprocess.encoders import UnreadableGenotype, blank_mask, parse_genotype, value_key
from precimed.preprocess.tabular import BINARY_FALSE, BINARY_TRUE, binary_key, jsonable, normalize_features
from precimed.schema import outside_range

__all__ = ["format_quality", "quality_report"]

_MAX_LISTED = 20  # ids / values kept per entry
_MAX_SHOWN = 5  # examples written into a sentence


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _distinct(values: Sequence[object], limit: int = _MAX_LISTED) -> list[object]:
    return jsonable(list(dict.fromkeys(values))[:limit])


def _examples(who: str, ids: Sequence[object], values: Sequence[object] | None = None) -> str:
    """"patient 430: 430.0" / "patients 3: 'n/a', 5: '<0.5', ..."."""
    shown = list(ids)[:_MAX_SHOWN]
    label = who if len(ids) == 1 else f"{who}s"
    if values is None:
        parts = [str(i) for i in shown]
    else:
        parts = [f"{i}: {v!r}" for i, v in zip(shown, values, strict=False)]
    more = ", ..." if len(ids) > _MAX_SHOWN else ""
    return f"{label} {', '.join(parts)}{more}"


def quality_report(frame: pd.DataFrame, features: Sequence[Mapping[str, Any] | FeatureConfig], *,
                   source: str, id_name: str = "patient_id") -> dict[str, Any]:
    """Describe the quality of `frame` (index = patient id) for the declared `features`.

    Returns JSON-able data: ``source``, ``id_name``, ``rows``, ``duplicate_rows`` and
    ``duplicate_ids`` (``count``: rows repeating an earlier one; ``ids``: first 20), ``missing``
    (``{feature: {"count", "fraction"}}`` for every declared feature; ``"absent": True`` when the
    column is not in the frame), ``out_of_range`` (``{feature: {"count", "low", "high", "unit",
    "ids", "values"}}`` for features with values outside their declared range; the preprocessor
    treats them as missing), ``invalid`` (``{feature: {"count", "reason", "ids", "values"}}``:
    non-numeric numbers, unknown categories, unreadable genotypes, binary values not readable as
    0/1) and ``notes``: human sentences.
    """
    declared = normalize_features(features)
    n = len(frame)
    who = id_name.removesuffix("_id").replace("_", " ").strip() or "row"
    ids = pd.Series(frame.index)
    notes: dict[str, list[str]] = {k: [] for k in ("absent", "empty", "invalid", "range", "dupes", "missing")}

    repeated_rows = frame.reset_index(drop=True).duplicated(keep="first").to_numpy()
    repeated_ids = frame.index.duplicated(keep="first")
    duplicate_rows = {"count": int(repeated_rows.sum()), "ids": _distinct(ids[repeated_rows])}
    duplicate_ids = {"count": int(repeated_ids.sum()), "ids": _distinct(ids[repeated_ids])}
    if duplicate_rows["count"]:
        notes["dupes"].append(
            f"{_plural(duplicate_rows['count'], 'row')} "
            f"{'repeats' if duplicate_rows['count'] == 1 else 'repeat'} an earlier row exactly "
            f"({_examples(who, duplicate_rows['ids'])}); kept: remove them if they are copies"
        )
    if duplicate_ids["count"]:
        notes["dupes"].append(
            f"{_plural(duplicate_ids['count'], 'row')} "
            f"{'reuses' if duplicate_ids['count'] == 1 else 'reuse'} an earlier {id_name} "
            f"({_examples(who, duplicate_ids['ids'])}); split by patient so no one is on both sides"
        )

    missing: dict[str, dict[str, Any]] = {}
    out_of_range: dict[str, dict[str, Any]] = {}
    invalid: dict[str, dict[str, Any]] = {}
    for feature in declared:
        name = feature["name"]
        if name not in frame.columns:
            missing[name] = {"count": n, "fraction": 1.0 if n else 0.0, "absent": True}
            notes["absent"].append(f"{name}: column not found in {source}")
            continue
        column = frame[name]
        if isinstance(column, pd.DataFrame):  # a repeated column name: look at the first
            notes["absent"].append(
                f"{name}: the column appears {column.shape[1]} times; the first is reported"
            )
            column = column.iloc[:, 0]
        series = column.reset_index(drop=True)
        blank = blank_mask(series)
        missing_mask, bad, reason = blank.copy(), np.zeros(n, dtype=bool), ""
        kind = feature["kind"]
        low, high = feature["range"] if feature.get("range") else (None, None)
        numbers = None
        if kind == "numeric" or (kind == "ordinal" and feature.get("range")):
            numbers = pd.to_numeric(series.astype(object).where(~blank), errors="coerce").astype(float)
            if kind == "numeric":
                bad = ~blank & numbers.isna().to_numpy()
                reason = "not a number"
        if kind == "binary":
            keys = np.array([binary_key(v) if not b else "" for v, b in zip(series, blank, strict=True)])
            if feature.get("positive"):
                positive = {binary_key(p) for p in feature["positive"]}
                others = list(dict.fromkeys(k for k in keys[~blank] if k not in positive))
                if len(others) > 1:
                    bad = ~blank & np.isin(keys, others[1:])
                    reason = f"a third value besides positive {feature['positive']} and {others[0]!r}"
            else:
                bad = ~blank & ~np.isin(keys, list(BINARY_TRUE | BINARY_FALSE))
                reason = "not readable as 0/1 (1/0, true/false, yes/no, y/n); declare `positive`"
        elif kind in ("categorical", "ordinal") and feature.get("categories"):
            allowed = {value_key(c) for c in feature["categories"]}
            keys = np.array([value_key(v) if not b else "" for v, b in zip(series, blank, strict=True)],
                            dtype=object)
            bad = ~blank & ~np.isin(keys, list(allowed))
            reason = f"not one of the declared categories {feature['categories']}"
        elif kind == "genotype":
            for i, value in enumerate(series):
                if blank[i]:
                    continue
                try:
                    missing_mask[i] = parse_genotype(value, feature["alleles"]) is None
                except UnreadableGenotype:
                    bad[i] = True
            reason = f"not a genotype of two of the alleles {feature['alleles']}"

        if numbers is not None and (low is not None or high is not None):
            outside = outside_range(numbers, low, high).to_numpy()
            bad &= ~outside  # an out-of-range number is reported once, as out of range
            if outside.any():
                count, unit = int(outside.sum()), feature.get("unit")
                entry = {"count": count, "low": low, "high": high, "unit": unit,
                         "ids": jsonable(list(ids[outside])[:_MAX_LISTED]),
                         "values": jsonable(list(numbers[outside])[:_MAX_LISTED])}
                out_of_range[name] = entry
                unit_text = f" {unit}" if unit else ""
                notes["range"].append(
                    f"{name}: {_plural(count, 'value')} outside [{_num(low)}, {_num(high)}]{unit_text} "
                    f"set to missing ({_examples(who, entry['ids'], entry['values'])})"
                )
        if bad.any():
            entry = {"count": int(bad.sum()), "reason": reason,
                     "ids": jsonable(list(ids[bad])[:_MAX_LISTED]),
                     "values": jsonable(list(series[bad])[:_MAX_LISTED])}
            invalid[name] = entry
            notes["invalid"].append(
                f"{name}: {_plural(entry['count'], 'value')} {reason} "
                f"({_examples(who, entry['ids'], entry['values'])})"
            )
        count = int(missing_mask.sum())
        missing[name] = {"count": count, "fraction": count / n if n else 0.0}
        if n and count == n:
            notes["empty"].append(f"{name}: all {n} values missing; the feature cannot be used")
        elif count:
            notes["missing"].append(f"{name}: {count} of {n} values missing ({100 * count / n:.1f}%)")

    return {
        "source": source,
        "id_name": id_name,
        "rows": n,
        "features": [f["name"] for f in declared],
        "duplicate_rows": duplicate_rows,
        "duplicate_ids": duplicate_ids,
        "missing": missing,
        "out_of_range": out_of_range,
        "invalid": invalid,
        "notes": [note for group in notes.values() for note in group],
    }


def format_quality(report: Mapping[str, Any], *, max_notes: int = 10) -> list[str]:
    """A short human summary of `quality_report` output: a few headline lines, then the notes."""
    features = report.get("features", list(report["missing"]))
    lines = [f"{report['source']}: {_plural(report['rows'], 'row')}, {_plural(len(features), 'feature')}"]
    rows, ids = report["duplicate_rows"]["count"], report["duplicate_ids"]["count"]
    lines.append(f"duplicates: {rows} repeated row(s), {ids} repeated {report.get('id_name', 'id')}(s)"
                 if rows or ids else "duplicates: none")
    incomplete = sorted(((m["fraction"], name) for name, m in report["missing"].items() if m["count"]),
                        key=lambda item: (-item[0], item[1]))
    if incomplete:
        worst = ", ".join(f"{name} {100 * frac:.1f}%" for frac, name in incomplete[:3])
        lines.append(f"missing: {len(incomplete)} of {len(features)} feature(s) incomplete; most: {worst}")
    else:
        lines.append("missing: none")
    ranged = report.get("out_of_range", {})
    lines.append("out of range (set to missing): "
                 + (", ".join(f"{name} {e['count']}" for name, e in ranged.items()) or "none"))
    bad = report.get("invalid", {})
    if bad:
        lines.append("invalid values: " + ", ".join(f"{name} {e['count']}" for name, e in bad.items()))
    notes = list(report.get("notes", []))
    lines += [f"- {note}" for note in notes[:max_notes]]
    if len(notes) > max_notes:
        lines.append(f"- ... {len(notes) - max_notes} more note(s) in the report")
    return lines
