"""Per-patient uncertainty: split-conformal prediction sets and intervals, inductive Venn-Abers probability
intervals, and their IPCW versions for censored survival data.

Everything is fitted on *calibration rows*: patients held out of the training rows before any fitting, so no
model, early stopping or search has seen them. Arrays in, a small JSON-able object out; applying it to new
outputs is a lookup (a ``searchsorted`` on a precomputed grid), so a patient costs microseconds.

What each piece promises (see docs/uncertainty.md):

* **Prediction set** (binary, multiclass): every class ``c`` with ``1 - p(c) <= q``, where ``q`` is the
  ``ceil((n+1)(1-alpha))``-th smallest calibration score ``1 - p(true class)``, plus the most probable class
  (so no set is empty: an empty set would be valid but tells a clinician nothing). If calibration and new
  patients are exchangeable, ``P(true class in set) >= 1 - alpha`` marginally (averaged over patients and
  calibration draws), whatever the model. Not per patient, not per subgroup, not under dataset shift.
* **Regression interval**: ``prediction -/+ q`` with ``q`` the same quantile of ``|y - prediction|``; the
  same marginal guarantee.
* **Probability interval** (binary, multiclass one-vs-rest, survival event probability): inductive
  Venn-Abers. For a new score ``s`` two isotonic calibrations are fitted on the calibration rows plus
  ``(s, 0)`` and plus ``(s, 1)``; their values at ``s`` are ``[p0, p1]``. Venn predictors are valid in the
  sense that one of the two is a calibrated probability; the width says how much the calibration data pin down
  the calibrated risk at that score. It is an interval for the *calibrated* probability, not a confidence
  interval for the patient's true risk, and it can lie away from the model's raw probability when the model is
  miscalibrated. It has no coverage level.
* **Survival** (event by horizon ``h``): the label ``1{T <= h}`` is unknown for patients censored before
  ``h``; patients whose status at ``h`` is known are weighted by ``1/G(min(T, h)-)`` with ``G`` the
  Kaplan-Meier estimate of the censoring distribution (IPCW). Venn-Abers then uses weighted isotonic fits, and
  the event-status prediction set a weighted conformal quantile. The guarantee becomes approximate (it holds
  as the calibration set grows if censoring is independent of the event given nothing), and "coverage" is the
  IPCW-weighted share of patients with known status whose status lies in the set.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from precimed.errors import ArtifactError, ConfigError, DataError
from precimed.evaluate.bootstrap import bootstrap_ci
from precimed.evaluate.survival import kaplan_meier

__all__ = [
    "FORMAT",
    "Interval",
    "Uncertainty",
    "check_calibration_size",
    "check_level",
    "conformal_quantile",
    "coverage_report",
    "fit_uncertainty",
    "from_file_state",
    "status_at",
    "to_file_state",
    "venn_abers",
    "weighted_conformal_quantile",
]

FORMAT = 1
#: most distinct calibration scores a Venn-Abers grid keeps exactly; beyond it the grid's edges are quantiles
MAX_EDGES = 400


def check_level(level: float, *, where: str = "uncertainty.level") -> float:
    """``level`` as a float strictly between 0 and 1 (ConfigError naming the value otherwise)."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number strictly between 0 and 1 (e.g. 0.9), got {level!r}") from None
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{where} must lie strictly between 0 and 1 (e.g. 0.9), got {level!r}")
    return value


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal threshold: the ``ceil((n+1) level)``-th smallest score (``inf`` when that rank
    exceeds ``n``, i.e. too few calibration rows for the level: every answer is then allowed)."""
    scores = np.sort(np.asarray(scores, dtype=float))
    n = scores.size
    rank = math.ceil((n + 1) * check_level(level))
    return float(scores[rank - 1]) if rank <= n else math.inf


def weighted_conformal_quantile(scores: np.ndarray, weights: np.ndarray, level: float, *,
                                test_weight: float = 1.0) -> float:
    """Weighted split-conformal threshold: the smallest score ``s`` with weight share of scores <= ``s``,
    counting the new patient's ``test_weight`` at +inf, reaching ``level`` (``inf`` if none does)."""
    order = np.argsort(scores, kind="stable")
    s = np.asarray(scores, dtype=float)[order]
    w = np.asarray(weights, dtype=float)[order]
    share = np.cumsum(w) / (w.sum() + test_weight)
    hit = np.flatnonzero(share >= check_level(level) - 1e-12)
    return float(s[hit[0]]) if hit.size else math.inf


@dataclass
class Interval:
    """How one output gets its interval.

    ``venn_abers``: ``edges`` are sorted calibration scores; a new score ``s`` falls in region
    ``searchsorted(edges, s)`` and gets ``[lower, upper]`` of that region (one more region than edges).
    ``absolute``: ``[value - half_width, value + half_width]``.
    ``set_threshold`` (survival event status): the conformal threshold of the event-by-horizon set, used by the
    coverage check; ``horizon`` the horizon of a survival output.
    """

    kind: str
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lower: np.ndarray = field(default_factory=lambda: np.zeros(0))
    upper: np.ndarray = field(default_factory=lambda: np.zeros(0))
    half_width: float | None = None
    set_threshold: float | None = None
    horizon: float | None = None

    def bounds(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bound for each value (float64)."""
        v = np.asarray(values, dtype=float)
        if self.kind == "absolute":
            hw = math.inf if self.half_width is None else self.half_width
            return v - hw, v + hw
        region = np.searchsorted(self.edges, v, side="left")
        lo, hi = self.lower[region], self.upper[region]
        missing = np.isnan(v)
        if missing.any():
            lo, hi = np.where(missing, np.nan, lo), np.where(missing, np.nan, hi)
        return lo, hi

    def bound_one(self, value: float) -> tuple[float, float]:
        """``bounds`` of one value in plain Python (one patient at a time: a few hundred nanoseconds)."""
        if value != value:  # NaN
            return math.nan, math.nan
        if self.kind == "absolute":
            hw = math.inf if self.half_width is None else self.half_width
            return value - hw, value + hw
        lists = self.__dict__.get("_lists")
        if lists is None:
            lists = self.__dict__["_lists"] = (self.edges.tolist(), self.lower.tolist(), self.upper.tolist())
        k = bisect_left(lists[0], value)
        return lists[1][k], lists[2][k]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "venn_abers":
            out |= {"edges": self.edges.tolist(), "lower": self.lower.tolist(), "upper": self.upper.tolist()}
        if self.half_width is not None:
            out["half_width"] = self.half_width if math.isfinite(self.half_width) else None
        if self.set_threshold is not None:
            out["set_threshold"] = self.set_threshold if math.isfinite(self.set_threshold) else None
        if self.horizon is not None:
            out["horizon"] = self.horizon
        return out

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Interval:
        kind = state["kind"]
        if kind not in ("venn_abers", "absolute"):
            raise ValueError(f"unknown interval kind {str(kind)[:40]!r}")
        edges = np.asarray(state.get("edges", []), dtype=float)
        lower = np.asarray(state.get("lower", []), dtype=float)
        upper = np.asarray(state.get("upper", []), dtype=float)
        if kind == "venn_abers" and not (lower.size == upper.size == edges.size + 1 and edges.ndim == 1):
            raise ValueError("a Venn-Abers grid needs one more lower/upper value than edges")
        hw = state.get("half_width", math.inf if kind == "absolute" else None)
        thr = state.get("set_threshold") if "set_threshold" in state else None
        return cls(kind, edges, lower, upper, math.inf if kind == "absolute" and hw is None else hw,
                   math.inf if "set_threshold" in state and thr is None else thr, state.get("horizon"))


@dataclass
class Uncertainty:
    """One model's fitted uncertainty: what ``apply`` adds to its output columns.

    ``classes`` are the labels a prediction set lists (binary: [negative, positive]); ``set_threshold`` the
    conformal threshold on ``1 - p(class)`` (None: no sets); ``intervals`` maps an output column
    (``probability``, ``p_<class>``, ``prediction``, ``event_probability_<h><unit>``) to its interval.
    """

    task: str
    level: float
    method: str
    n_calibration: int
    intervals: dict[str, Interval]
    classes: list[Any] | None = None
    set_threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def apply(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The uncertainty columns for the given output columns (each an array, one value per patient):
        ``<output>_lower`` / ``_upper``, ``interval_level``, ``interval_method`` and (binary, multiclass)
        ``prediction_set`` as an object array of lists."""
        n = len(next(iter(columns.values())))
        out: dict[str, Any] = {}
        for name, interval in self.intervals.items():
            if name in columns:
                out[f"{name}_lower"], out[f"{name}_upper"] = interval.bounds(columns[name])
        out["interval_level"] = np.full(n, self.level)
        out["interval_method"] = np.full(n, self.method, dtype=object)
        if self.set_threshold is not None and self.classes is not None:
            keep = self.set_members(self._class_probabilities(columns))
            sets = np.empty(n, dtype=object)
            labels = self.classes
            for i, row in enumerate(keep.tolist()):
                sets[i] = [c for c, k in zip(labels, row, strict=True) if k]
            out["prediction_set"] = sets
        return out

    def apply_row(self, row: Mapping[str, float]) -> dict[str, Any]:
        """``apply`` for one patient's outputs (plain floats in, plain values out): the same numbers, without
        numpy's per-call overhead, for the service's one-patient requests."""
        out: dict[str, Any] = {}
        for name, interval in self.intervals.items():
            if name in row:
                out[f"{name}_lower"], out[f"{name}_upper"] = interval.bound_one(float(row[name]))
        out["interval_level"] = self.level
        out["interval_method"] = self.method
        if self.set_threshold is not None and self.classes is not None:
            if self.task == "binary":
                p = float(row["probability"])
                proba = [1.0 - p, p]
            else:
                proba = [float(row[f"p_{c}"]) for c in self.classes]
            top = max(proba)
            out["prediction_set"] = [c for c, q in zip(self.classes, proba, strict=True)
                                     if 1.0 - q <= self.set_threshold or q >= top]
        return out

    def set_members(self, proba: np.ndarray) -> np.ndarray:
        """Which classes each patient's prediction set holds: ``1 - p(c) <= threshold``, and always the most
        probable class, so no set is empty (adding a class can only raise coverage)."""
        thr = self.set_threshold if self.set_threshold is not None else math.inf
        return ((1.0 - proba) <= thr) | (proba >= proba.max(axis=1, keepdims=True))

    def _class_probabilities(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.task == "binary":
            p = np.asarray(columns["probability"], dtype=float)
            return np.column_stack([1.0 - p, p])
        return np.column_stack([np.asarray(columns[f"p_{c}"], dtype=float) for c in self.classes or []])

    def to_dict(self) -> dict[str, Any]:
        thr = self.set_threshold
        return {"task": self.task, "level": self.level, "method": self.method, "n_calibration": self.n_calibration,
                "classes": self.classes, "has_sets": thr is not None,
                "set_threshold": thr if thr is not None and math.isfinite(thr) else None,
                "intervals": {k: v.to_dict() for k, v in self.intervals.items()}, "extra": self.extra}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Uncertainty:
        thr = state.get("set_threshold")
        if state.get("has_sets") and thr is None:
            thr = math.inf
        return cls(task=str(state["task"]), level=check_level(state["level"]), method=str(state["method"]),
                   n_calibration=int(state["n_calibration"]),
                   intervals={str(k): Interval.from_dict(v) for k, v in dict(state["intervals"]).items()},
                   classes=list(state["classes"]) if state.get("classes") is not None else None,
                   set_threshold=None if thr is None else float(thr), extra=dict(state.get("extra") or {}))


def to_file_state(models: Mapping[str, Uncertainty]) -> dict[str, Any]:
    """The ``uncertainty.json`` document of a bundle: every model's fitted uncertainty."""
    return {"format": FORMAT, "models": {name: u.to_dict() for name, u in models.items()}}


def from_file_state(state: Any) -> dict[str, Uncertainty]:
    """Read ``uncertainty.json``; ArtifactError when it is not the format this version writes."""
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("models"), dict):
        raise ArtifactError(f"uncertainty.json: expected format {FORMAT} with a 'models' mapping")
    return {str(name): Uncertainty.from_dict(s) for name, s in state["models"].items()}


# ----- fitting ------------------------------------------------------------------------------------------------
def venn_abers(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None, *,
               max_edges: int = MAX_EDGES) -> Interval:
    """Inductive Venn-Abers on a grid: ``[p0, p1]`` for every region between sorted calibration scores.

    A new score's interval depends only on where it falls among the calibration scores (the isotonic fits see
    the order), so one representative per region gives the exact answer up to ties with a calibration score
    (taken as just below it). With more than ``max_edges`` distinct scores, edges are their quantiles and a new
    score gets the interval of its quantile region's midpoint (approximate). ``weights`` (IPCW) weight the
    calibration rows; the new patient counts 1. Each fit is scikit-learn's weighted isotonic regression
    (pool adjacent violators) on the calibration rows pooled by distinct score plus the new point.
    """
    from sklearn.isotonic import isotonic_regression

    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=float)
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=float)
    if s.size < 2:
        raise DataError(f"Venn-Abers needs at least 2 calibration rows with a known outcome, got {s.size}")
    unique, inverse = np.unique(s, return_inverse=True)
    pooled_w = np.bincount(inverse, weights=w, minlength=unique.size)
    pooled_y = np.bincount(inverse, weights=w * y, minlength=unique.size) / np.where(pooled_w > 0, pooled_w, 1.0)
    edges = unique if unique.size <= max_edges else np.unique(np.quantile(s, np.linspace(0, 1, max_edges)))
    reps = np.concatenate([[edges[0] - 1.0], (edges[:-1] + edges[1:]) / 2.0, [edges[-1] + 1.0]])
    lower = np.empty(reps.size)
    upper = np.empty(reps.size)
    for j, r in enumerate(reps):
        k = int(np.searchsorted(unique, r, side="left"))
        ww = np.insert(pooled_w, k, 1.0)
        for label, out in ((0.0, lower), (1.0, upper)):
            fit = isotonic_regression(np.insert(pooled_y, k, label), sample_weight=ww, y_min=0.0, y_max=1.0)
            out[j] = float(fit[k])
    # monotone in the score by construction; enforce against rounding so lookups never go backwards
    return Interval("venn_abers", edges, np.maximum.accumulate(lower), np.maximum.accumulate(upper))


def status_at(time: np.ndarray, event: np.ndarray, horizon: float, *,
              censoring: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Event-by-``horizon`` status and IPCW weights: ``(known, label, weight)``.

    ``known``: the status at ``horizon`` is observed (an event by then, or follow-up beyond it); ``label``
    1 for an event by ``horizon``; ``weight`` ``1/G(min(T, h)-)`` for known rows (0 otherwise), with G the
    Kaplan-Meier censoring survival of these rows unless ``censoring`` gives (times, G) from elsewhere.
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=float)
    known = (t > horizon) | ((t <= horizon) & (e == 1))
    label = ((t <= horizon) & (e == 1)).astype(float)
    times, g = censoring if censoring is not None else kaplan_meier(t, e, censoring=True)
    at = np.where(t > horizon, horizon, t)
    # G just before min(T, h): the last censoring-survival step strictly before that time
    idx = np.searchsorted(times, at, side="left") - 1
    g_minus = np.where(idx >= 0, g[np.maximum(idx, 0)], 1.0)
    with np.errstate(divide="ignore"):
        weight = np.where(known & (g_minus > 0), 1.0 / np.where(g_minus > 0, g_minus, 1.0), 0.0)
    return known, label, weight


def _set_threshold(proba: np.ndarray, y: np.ndarray, level: float) -> float:
    """Split-conformal threshold on ``1 - p(true class)``; ``proba`` is (n, k), ``y`` class codes."""
    scores = 1.0 - proba[np.arange(len(y)), y.astype(int)]
    return conformal_quantile(scores, level)


def check_calibration_size(n: int, level: float, what: str) -> None:
    """DataError unless ``n`` calibration rows give a finite split-conformal bound at ``level``."""
    needed = math.ceil(level / (1.0 - level))
    if n < needed:
        raise DataError(f"{what}: {n} calibration rows cannot give a finite split-conformal bound at level "
                        f"{level:g} (at least {needed} needed); raise uncertainty.calibration_fraction or lower "
                        "uncertainty.level")


def fit_uncertainty(task: str, columns: Mapping[str, np.ndarray], y: np.ndarray, *, level: float,
                    classes: Sequence[Any] | None = None, horizons: Sequence[float] = (), time_unit: str = "",
                    positive: Any = None) -> Uncertainty:
    """Fit a model's uncertainty on its calibration outputs.

    ``columns`` are the model's output columns on the calibration rows, named as the prediction table names
    them; ``y`` the calibration labels (binary 0/1, multiclass codes, regression values, survival (n, 2) time
    and event).
    """
    level = check_level(level)
    y = np.asarray(y, dtype=float)
    n = int(len(y))
    if task == "binary":
        check_calibration_size(n, level, "binary calibration")
        p = np.asarray(columns["probability"], dtype=float)
        pos = "1" if positive is None else str(positive)
        labels = ["0", "1"] if positive is None else [f"not {pos}", pos]
        thr = _set_threshold(np.column_stack([1.0 - p, p]), y, level)
        return Uncertainty(task, level, "conformal-set+venn-abers", n, {"probability": venn_abers(p, y)}, labels,
                           thr)
    if task == "multiclass":
        check_calibration_size(n, level, "multiclass calibration")
        names = [str(c) for c in classes or []]
        proba = np.column_stack([np.asarray(columns[f"p_{c}"], dtype=float) for c in names])
        intervals = {f"p_{c}": venn_abers(proba[:, j], (y == j).astype(float)) for j, c in enumerate(names)}
        return Uncertainty(task, level, "conformal-set+venn-abers-ovr", n, intervals, names,
                           _set_threshold(proba, y, level))
    if task == "regression":
        check_calibration_size(n, level, "regression calibration")
        residual = np.abs(y - np.asarray(columns["prediction"], dtype=float))
        q = conformal_quantile(residual, level)
        return Uncertainty(task, level, "conformal-absolute-residual", n,
                           {"prediction": Interval("absolute", half_width=q)})
    if task == "survival":
        time, event = y[:, 0], y[:, 1]
        censoring = kaplan_meier(time, event, censoring=True)
        intervals: dict[str, Interval] = {}
        known_counts = {}
        for h in horizons:
            name = f"event_probability_{h:g}{time_unit}"
            known, label, weight = status_at(time, event, h, censoring=censoring)
            if known.sum() < 2 or np.unique(label[known]).size < 2:
                raise DataError(f"survival calibration: at horizon {h:g} {time_unit} the calibration rows hold "
                                f"{int(known.sum())} patients with a known status and not both outcomes; choose "
                                "shorter horizons or a larger uncertainty.calibration_fraction")
            f = np.asarray(columns[name], dtype=float)
            interval = venn_abers(f[known], label[known], weight[known])
            proba = np.column_stack([1.0 - f[known], f[known]])
            scores = 1.0 - proba[np.arange(int(known.sum())), label[known].astype(int)]
            interval.set_threshold = weighted_conformal_quantile(scores, weight[known], level)
            interval.horizon = float(h)
            intervals[name] = interval
            known_counts[name] = int(known.sum())
        return Uncertainty(task, level, "ipcw-venn-abers", n, intervals, extra={"known_status": known_counts})
    raise ConfigError(f"per-patient uncertainty is not available for {task!r} tasks")


# ----- checking on held-out rows ------------------------------------------------------------------------------
def _row_stats(unc: Uncertainty, columns: Mapping[str, np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row quantities the coverage metrics average: ``covered``, ``size`` or ``width`` (and survival
    ``known`` / ``weight`` per output)."""
    applied = unc.apply(columns)
    out: dict[str, np.ndarray] = {}
    if unc.task in ("binary", "multiclass"):
        keep = unc.set_members(unc._class_probabilities(columns))
        out["covered"] = keep[np.arange(len(y)), np.asarray(y, dtype=int)].astype(float)
        out["size"] = keep.sum(axis=1).astype(float)
        for name in unc.intervals:
            out[f"width:{name}"] = applied[f"{name}_upper"] - applied[f"{name}_lower"]
            out[f"lower:{name}"] = applied[f"{name}_lower"]
            out[f"upper:{name}"] = applied[f"{name}_upper"]
    elif unc.task == "regression":
        lo, hi = applied["prediction_lower"], applied["prediction_upper"]
        out["covered"] = ((y >= lo) & (y <= hi)).astype(float)
        out["width"] = hi - lo
    else:
        time, event = y[:, 0], y[:, 1]
        censoring = kaplan_meier(time, event, censoring=True)
        for name, interval in unc.intervals.items():
            known, label, weight = status_at(time, event, float(interval.horizon or 0), censoring=censoring)
            f = np.asarray(columns[name], dtype=float)
            thr = interval.set_threshold if interval.set_threshold is not None else math.inf
            in_event = (1.0 - f) <= thr
            in_none = f <= thr
            out[f"covered:{name}"] = np.where(label == 1, in_event, in_none).astype(float)
            out[f"size:{name}"] = in_event.astype(float) + in_none.astype(float)
            out[f"weight:{name}"] = weight
            out[f"label:{name}"] = label
            out[f"width:{name}"] = applied[f"{name}_upper"] - applied[f"{name}_lower"]
            out[f"lower:{name}"] = applied[f"{name}_lower"]
            out[f"upper:{name}"] = applied[f"{name}_upper"]
    return out


def _metric_fn(unc: Uncertainty, stats: Mapping[str, np.ndarray], y: np.ndarray):  # noqa: ANN202
    def fn(i: np.ndarray) -> dict[str, float]:
        if unc.task in ("binary", "multiclass"):
            res = {"coverage": float(stats["covered"][i].mean()), "mean_set_size": float(stats["size"][i].mean()),
                   "empty_sets": float((stats["size"][i] == 0).mean())}
            for name in unc.intervals:
                res[f"mean_width {name}"] = float(np.nanmean(stats[f"width:{name}"][i]))
            if unc.task == "binary" and "probability" in unc.intervals:
                # Venn-Abers check: the observed event rate against the mean lower and upper bounds
                res["observed_rate"] = float(np.mean(y[i]))
                res["mean_lower probability"] = float(np.nanmean(stats["lower:probability"][i]))
                res["mean_upper probability"] = float(np.nanmean(stats["upper:probability"][i]))
            return res
        if unc.task == "regression":
            return {"coverage": float(stats["covered"][i].mean()), "mean_width": float(stats["width"][i].mean())}
        res = {}
        for name in unc.intervals:
            w = stats[f"weight:{name}"][i]
            total = w.sum()
            res[f"coverage {name}"] = float((w * stats[f"covered:{name}"][i]).sum() / total) if total else math.nan
            res[f"mean_set_size {name}"] = float((w * stats[f"size:{name}"][i]).sum() / total) if total else math.nan
            res[f"observed_risk {name}"] = float((w * stats[f"label:{name}"][i]).sum() / total) if total else math.nan
            res[f"mean_lower {name}"] = float(np.nanmean(stats[f"lower:{name}"][i]))
            res[f"mean_upper {name}"] = float(np.nanmean(stats[f"upper:{name}"][i]))
            res[f"mean_width {name}"] = float(np.nanmean(stats[f"width:{name}"][i]))
        return res
    return fn


def coverage_report(unc: Uncertainty, columns: Mapping[str, np.ndarray], y: np.ndarray, *, n_boot: int = 1000,
                    seed: int = 0, ci_level: float = 0.95) -> dict[str, Any]:
    """Empirical coverage and size/width of a fitted uncertainty on held-out rows, with bootstrap CIs.

    ``columns`` are the model's outputs on the held-out rows, ``y`` their labels. For survival the IPCW
    weights use the held-out rows' own censoring distribution; a bootstrap replicate resamples patients and
    keeps those weights (the censoring estimate is not refitted per replicate).
    """
    y = np.asarray(y, dtype=float)
    stats = _row_stats(unc, columns, y)
    fn = _metric_fn(unc, stats, y)
    n = len(y)
    if n_boot >= 1:
        metrics = bootstrap_ci(fn, n, n_boot=n_boot, seed=seed, level=ci_level)
    else:
        metrics = {k: {"value": v, "ci_low": math.nan, "ci_high": math.nan} for k, v in fn(np.arange(n)).items()}
    return {"level": unc.level, "method": unc.method, "n_calibration": unc.n_calibration, "n_evaluated": n,
            "metrics": metrics}
