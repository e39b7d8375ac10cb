"""Performance by subgroup and fairness gaps between subgroups, with bootstrap confidence intervals.

Groups arrive as plain label arrays, one label per evaluation row (NaN or None where the attribute
is unknown); :func:`age_bands` and :func:`sex_groups` derive them from raw columns. Rows with an
unknown label are counted and reported, never folded into a group.

* :func:`subgroup_metrics` runs any metric function on each group's rows with its own seeded
  bootstrap CI (groups smaller than ``min_size`` are reported as "too small", without metrics).
* :func:`fairness_gaps` (binary tasks) compares each group with a reference group on sensitivity
  (equal opportunity), false-positive rate and calibration-in-the-large (observed minus predicted
  event rate, O-E). :func:`survival_fairness_gaps` does the same for Harrell's C-index. Each
  difference has a paired bootstrap CI: every replicate resamples the rows once (within each
  group) and both groups of a comparison are measured on that same draw. A difference whose CI
  excludes 0 is ``flagged``.

Flags are screening signals, not tests corrected for multiplicity: with several attributes, groups
and measures, some flags are expected by chance at a 95% level.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from precimed.errors import ConfigError, DataError, ValueRangeError

from .bootstrap import bootstrap_ci
from .metrics import (
    _as_1d_float,
    _binary_outcome,
    _check_finite,
    _check_same_length,
    _probabilities,
    undefined_as_nan,
)
from .survival import _concordance, _event_indicator, _times, _TimeTable

__all__ = ["age_bands", "fairness_gaps", "sex_groups", "subgroup_metrics", "survival_fairness_gaps"]

TOO_SMALL = "too small"
UNKNOWN = "(unknown)"
_NAN = float("nan")

_SEX_WORDS = {
    "m": "male", "male": "male", "man": "male", "men": "male",
    "f": "female", "female": "female", "woman": "female", "women": "female",
}


# ---------------------------------------------------------------------------------------------
# deriving groups


def age_bands(age: object, edges: Sequence[float] = (0, 40, 50, 60, 70, 80, 200)) -> pd.Categorical:
    """Age band of each row: labels "<40", "40-49", ..., "80+" for the default edges.

    Bands are [edges[i], edges[i+1]); the first is written "<edges[1]", the last "edges[-2]+", the
    others "a-(b-1)" (ages in completed years). The first and last edges bound plausible ages: a
    value outside them raises ValueRangeError. Missing ages stay missing (unknown band). Returns an
    ordered pandas Categorical, so tables list bands youngest first; ``np.asarray`` gives labels.
    """
    cuts = np.asarray(edges, dtype=float)
    if cuts.ndim != 1 or cuts.size < 3 or not np.isfinite(cuts).all() or (np.diff(cuts) <= 0).any():
        raise ConfigError(f"age band edges must be at least 3 increasing finite numbers, got {list(edges)!r}.")
    values = pd.to_numeric(pd.Series(np.asarray(age, dtype=object).ravel()), errors="coerce").to_numpy(float)
    outside = ~np.isnan(values) & ((values < cuts[0]) | (values >= cuts[-1]))
    if outside.any():
        rows = np.flatnonzero(outside)
        raise ValueRangeError(
            f"age must lie in [{cuts[0]:g}, {cuts[-1]:g}) to be banded; {rows.size} row(s) do not "
            f"(e.g. {values[rows[0]]:g} in row {rows[0]}). Wrong unit (months, days)? Fix the ages or the edges.",
            column="age",
            rows=rows.tolist(),
        )
    labels = [f"<{cuts[1]:g}"]
    labels += [_band(a, b) for a, b in zip(cuts[1:-2], cuts[2:-1], strict=True)]
    labels.append(f"{cuts[-2]:g}+")
    codes = np.searchsorted(cuts, values, side="right") - 1
    codes[np.isnan(values)] = -1
    return pd.Categorical.from_codes(codes, categories=labels, ordered=True)


def _band(a: float, b: float) -> str:
    if float(a).is_integer() and float(b).is_integer():
        return f"{a:g}-{b - 1:g}"
    return f"{a:g} to <{b:g}"


def sex_groups(values: object, mapping: Mapping[Hashable, str] | None = None) -> np.ndarray:
    """Sex label ("female", "male", or the data's own other labels) of each row; None where unknown.

    Text is matched case-insensitively (m/male/man -> "male", f/female/woman -> "female"; any other
    non-empty text is kept, lower-cased, as its own group). A numeric or boolean coding (0/1) means
    nothing by itself, so it needs ``mapping``, e.g. ``{1: "male", 0: "female"}``; a mapping also
    overrides the text rules. Blank, NaN and None are unknown.
    """
    arr = np.asarray(values, dtype=object).ravel()
    out = np.empty(arr.size, dtype=object)
    unmapped: list[int] = []
    for i, v in enumerate(arr):
        if v is None or (isinstance(v, float | np.floating) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
            out[i] = None
            continue
        if mapping is not None:
            key = v.item() if hasattr(v, "item") else v
            if key in mapping:
                out[i] = mapping[key]
                continue
            if isinstance(key, str) and key.strip() in mapping:
                out[i] = mapping[key.strip()]
                continue
        if isinstance(v, str):
            text = v.strip().lower()
            out[i] = _SEX_WORDS.get(text, text) if text else None
            if text and mapping is not None and text not in _SEX_WORDS:
                unmapped.append(i)
        else:
            unmapped.append(i)
    if unmapped and (mapping is not None or not all(isinstance(arr[i], str) for i in unmapped)):
        shown = list(dict.fromkeys(str(arr[i]) for i in unmapped))[:5]
        raise DataError(
            f"sex: cannot name the group of value(s) {shown} (e.g. row {unmapped[0]}); coded values need an "
            "explicit mapping such as {1: 'male', 0: 'female'} from the data dictionary.",
            column="sex",
            rows=unmapped,
        )
    return out


# ---------------------------------------------------------------------------------------------
# shared helpers


def _labels(values: object, n: int, attribute: str) -> tuple[np.ndarray, list[Hashable]]:
    """Integer code per row (-1 = unknown) and the group labels in display order."""
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        cat = pd.Categorical(values)
        present = np.unique(cat.codes[cat.codes >= 0])
        lookup = np.full(len(cat.categories) + 1, -1, dtype=np.int64)  # last slot: code -1 (missing)
        lookup[present] = np.arange(present.size)
        codes = lookup[cat.codes]
        labels = [cat.categories[c] for c in present]
    else:
        arr = np.asarray(values, dtype=object).ravel()
        unknown = np.array([_is_unknown(v) for v in arr], dtype=bool)
        keys = [v.item() if hasattr(v, "item") else v for v in arr[~unknown]]
        try:
            labels = sorted(set(keys))
        except TypeError:
            labels = sorted(set(keys), key=str)
        position = {label: k for k, label in enumerate(labels)}
        codes = np.full(arr.size, -1, dtype=np.int64)
        codes[~unknown] = [position[k] for k in keys]
    if codes.size != n:
        raise DataError(
            f"group attribute {attribute!r} has {codes.size} labels but the evaluation set has {n} rows; "
            "pass one label per row (NaN/None where unknown).",
            column=attribute,
        )
    return codes, [label.item() if hasattr(label, "item") else label for label in labels]


def _is_unknown(v: object) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float | np.floating):
        return bool(np.isnan(v))
    return isinstance(v, str) and not v.strip()


def _check_groups(groups: Mapping[str, object]) -> None:
    if not isinstance(groups, Mapping) or not groups:
        raise ConfigError("groups must be a non-empty dict from attribute name to one label per row.")


def _check_boot(n_boot: int, level: float, min_size: int) -> None:
    if int(n_boot) < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}.")
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"level must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}.")
    if int(min_size) < 1:
        raise ConfigError(f"min_size must be a positive number of rows, got {min_size}.")


# ---------------------------------------------------------------------------------------------
# metrics by subgroup


def subgroup_metrics(
    groups: Mapping[str, object],
    metric_fn: Callable[[np.ndarray], dict[str, float]],
    n: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    strata: np.ndarray | None = None,
    events: np.ndarray | None = None,
    min_size: int = 30,
) -> dict[str, dict[Hashable, dict[str, Any]]]:
    """Metrics with a bootstrap CI on the rows of each group of each attribute.

    ``metric_fn(idx)`` evaluates the metrics on rows ``idx`` of the evaluation set of ``n`` rows
    (the same function :func:`~precimed.evaluate.bootstrap_ci` takes). For each group the point value
    and percentile CI come from ``bootstrap_ci`` restricted to the group's rows (stratified by
    ``strata`` within the group, when given). Metrics undefined in a group (no events) are NaN
    rather than an error. ``events`` (0/1 per row: the binary outcome or the event indicator)
    gives each group's event count; without it ``events`` is None.

    Returns ``{attribute: {group: {"n", "events", "status", metric: {"value", "ci_low", "ci_high"},
    ...}}}``; status is "ok", or "too small" (fewer than ``min_size`` rows: n and events only). Rows
    whose label is unknown appear as the group "(unknown)" with status "unknown" and counts only.
    Groups are listed in label order (an ordered Categorical keeps its own order).
    """
    _check_groups(groups)
    _check_boot(n_boot, level, min_size)
    n = int(n)
    strata_arr = None if strata is None else np.asarray(strata)
    if strata_arr is not None and strata_arr.shape[0] != n:
        raise DataError(f"strata must hold one label per row: expected {n}, got {strata_arr.shape[0]}.",
                        column="strata")
    event_arr = None if events is None else np.asarray(events, dtype=float).ravel()
    if event_arr is not None and event_arr.size != n:
        raise DataError(f"events must hold one 0/1 value per row: expected {n}, got {event_arr.size}.",
                        column="events")

    def count_events(rows: np.ndarray) -> int | None:
        return None if event_arr is None else int(np.nansum(event_arr[rows]))

    result: dict[str, dict[Hashable, dict[str, Any]]] = {}
    for attribute, values in groups.items():
        codes, labels = _labels(values, n, attribute)
        table: dict[Hashable, dict[str, Any]] = {}
        for k, label in enumerate(labels):
            rows = np.flatnonzero(codes == k)
            entry: dict[str, Any] = {"n": int(rows.size), "events": count_events(rows)}
            if rows.size < int(min_size):
                entry["status"] = TOO_SMALL
            else:
                entry["status"] = "ok"
                sub_strata = None if strata_arr is None else strata_arr[rows]

                def fn(idx: np.ndarray, rows: np.ndarray = rows) -> dict[str, float]:
                    return metric_fn(rows[idx])

                with undefined_as_nan():
                    entry.update(bootstrap_ci(fn, rows.size, n_boot=n_boot, seed=seed, strata=sub_strata,
                                              level=level))
            table[label] = entry
        unknown = np.flatnonzero(codes < 0)
        if unknown.size:
            table[UNKNOWN] = {"n": int(unknown.size), "events": count_events(unknown), "status": "unknown"}
        result[attribute] = table
    return result


# ---------------------------------------------------------------------------------------------
# fairness gaps


def _reference_label(attribute: str, labels: list[Hashable], sizes: np.ndarray,
                     reference: Mapping[str, Hashable] | None) -> int:
    if reference is not None and attribute in reference:
        wanted = reference[attribute]
        for k, label in enumerate(labels):
            if label == wanted or str(label) == str(wanted):
                return k
        raise ConfigError(f"reference group {wanted!r} of {attribute!r} is not among its groups {labels}.")
    return int(np.argmax(sizes))  # the largest group; ties go to the first in label order


def _resample(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicity of each row in one bootstrap draw made within each group (sizes stay fixed).

    Outcome classes are not held fixed: the observed event rate must vary between replicates, or
    the CI of observed-minus-expected would be too narrow.
    """
    weight = np.zeros(codes.size)
    for g in range(int(codes.max()) + 1):
        rows = np.flatnonzero(codes == g)
        weight += np.bincount(rows[rng.integers(0, rows.size, rows.size)], minlength=codes.size)
    return weight


def _binary_measures(codes: np.ndarray, k: int, y: np.ndarray, p: np.ndarray, pred: np.ndarray,
                     w: np.ndarray) -> np.ndarray:
    """Sensitivity, false-positive rate and O-E of each group (rows: groups), rows weighted by w."""
    def per_group(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes[codes >= 0], weights=(w * values)[codes >= 0], minlength=k)

    size, pos = per_group(np.ones_like(y)), per_group(y)
    tp, fp = per_group(y * pred), per_group((1.0 - y) * pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = np.where(pos > 0, tp / pos, np.nan)
        fpr = np.where(size - pos > 0, fp / (size - pos), np.nan)
        o_minus_e = np.where(size > 0, (pos - per_group(p)) / size, np.nan)
    return np.column_stack([sens, fpr, o_minus_e])


BINARY_GAP_MEASURES = ("sensitivity", "false_positive_rate", "calibration_in_the_large")


def fairness_gaps(
    y: np.ndarray,
    p: np.ndarray,
    groups: Mapping[str, object],
    threshold: float = 0.5,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    reference: Mapping[str, Hashable] | None = None,
    min_size: int = 30,
) -> list[dict[str, Any]]:
    """Differences between each group and a reference group for a binary outcome, with paired CIs.

    For each attribute, each group with at least ``min_size`` rows is compared with the reference
    group (``reference[attribute]``, by default the largest group) on:

    * ``sensitivity``: TPR at ``threshold`` (p >= threshold is positive), the equal-opportunity gap;
    * ``false_positive_rate``: FPR at ``threshold``;
    * ``calibration_in_the_large``: observed event rate minus mean predicted risk (O-E), so a group
      whose risk the model underestimates has a positive O-E.

    ``difference`` is group minus reference. Each replicate draws rows with replacement within each
    group (group sizes stay fixed; event counts vary, as they must for O-E) and measures both groups
    and all three measures on that one draw; the CI is the percentile interval of the replicate
    differences (replicates where a measure is undefined are left out). ``flagged`` is True when the
    CI excludes 0. Rows with an unknown label are left out of that attribute.

    Returns a list of ``{"attribute", "group", "reference", "measure", "difference", "ci_low",
    "ci_high", "flagged", "n", "n_reference"}``.
    """
    y = _binary_outcome(y, "y")
    p = _probabilities(p, "p")
    n = _check_same_length(y=y, p=p)
    _check_groups(groups)
    _check_boot(n_boot, level, min_size)
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold!r}.")
    pred = (p >= threshold).astype(float)

    def measures(codes: np.ndarray, k: int, w: np.ndarray) -> np.ndarray:
        return _binary_measures(codes, k, y, p, pred, w)

    return _gaps(groups, n, measures, BINARY_GAP_MEASURES, n_boot=n_boot, seed=seed, level=level,
                 reference=reference, min_size=min_size)


def survival_fairness_gaps(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    groups: Mapping[str, object],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    reference: Mapping[str, Hashable] | None = None,
    min_size: int = 30,
) -> list[dict[str, Any]]:
    """Difference in Harrell's C-index between each group and the reference group, with paired CIs.

    Same resampling, reference, flags and output as :func:`fairness_gaps`, with the single measure
    ``c_index``: Harrell's C computed within each group (pairs across groups are not compared).
    Per-group C-indices with CIs come from :func:`subgroup_metrics` with ``survival_metrics``.
    """
    time = _times(time)
    event = _event_indicator(event)
    risk = _as_1d_float(risk, "risk")
    _check_finite(risk, "risk", "predictions")
    n = _check_same_length(time=time, event=event, risk=risk)
    _check_groups(groups)
    _check_boot(n_boot, level, min_size)
    is_event = event.astype(bool)

    def measures(codes: np.ndarray, k: int, w: np.ndarray) -> np.ndarray:
        out = np.full((k, 1), np.nan)
        for g in range(k):
            rows = np.repeat(np.flatnonzero(codes == g), w[codes == g].astype(np.int64))
            if rows.size >= 2 and is_event[rows].any():
                t, e, r = time[rows], is_event[rows], risk[rows]
                out[g, 0] = _concordance(t, e, r, _TimeTable(t, e.astype(float)), None)[0]
        return out

    return _gaps(groups, n, measures, ("c_index",), n_boot=n_boot, seed=seed, level=level,
                 reference=reference, min_size=min_size)


def _gaps(
    groups: Mapping[str, object],
    n: int,
    measures: Callable[[np.ndarray, int, np.ndarray], np.ndarray],
    names: Sequence[str],
    *,
    n_boot: int,
    seed: int,
    level: float,
    reference: Mapping[str, Hashable] | None,
    min_size: int,
) -> list[dict[str, Any]]:
    if reference is not None and not isinstance(reference, Mapping):
        raise ConfigError(f"reference must be a dict from attribute to its reference group, got {reference!r}.")
    unknown_refs = sorted(set(reference or {}) - set(groups))
    if unknown_refs:
        raise ConfigError(f"reference names attribute(s) {unknown_refs} that are not in groups {sorted(groups)}.")
    tail = 100.0 * (1.0 - float(level)) / 2.0
    out: list[dict[str, Any]] = []
    for attribute, values in groups.items():
        codes, labels = _labels(values, n, attribute)
        k = len(labels)
        sizes = np.bincount(codes[codes >= 0], minlength=k)
        if k < 2:
            continue
        ref = _reference_label(attribute, labels, sizes, reference)
        if sizes[ref] < int(min_size):
            raise DataError(
                f"reference group {labels[ref]!r} of {attribute!r} has {sizes[ref]} rows, fewer than "
                f"min_size={min_size}; choose a larger reference group.",
                column=attribute,
            )
        compared = [g for g in range(k) if g != ref and sizes[g] >= int(min_size)]
        if not compared:
            continue
        point = measures(codes, k, np.ones(n))
        rng = np.random.default_rng(seed)
        reps = np.empty((int(n_boot),) + point.shape)
        with np.errstate(invalid="ignore"):
            for b in range(int(n_boot)):
                reps[b] = measures(codes, k, _resample(codes, rng))
        for g in compared:
            for j, measure in enumerate(names):
                diffs = reps[:, g, j] - reps[:, ref, j]
                diffs = diffs[~np.isnan(diffs)]
                low, high = np.percentile(diffs, [tail, 100.0 - tail]) if diffs.size else (_NAN, _NAN)
                out.append({
                    "attribute": attribute,
                    "group": labels[g],
                    "reference": labels[ref],
                    "measure": measure,
                    "difference": float(point[g, j] - point[ref, j]),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "flagged": bool(low > 0 or high < 0),
                    "n": int(sizes[g]),
                    "n_reference": int(sizes[ref]),
                })
    return out
