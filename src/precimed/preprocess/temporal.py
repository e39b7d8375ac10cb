"""Temporal windows: long-format observations on a regular grid that ends at a prediction time.

A *sample* is a patient at a prediction time t (a landmark such as "2 years after enrolment", or any
time at which a prediction is wanted); samples are given as a ``pandas.Series`` whose index holds the
patient ids (repeated when a patient has several prediction times) and whose values are the times t.

**No look-ahead.** Everything computed for a sample uses only observations with ``time <= t``
(``inclusive=True``, the default: a result reported at t is usable at t) or ``time < t``
(``inclusive=False``). Changing, adding or removing observations after t changes nothing; a test in
``tests/preprocess/test_temporal.py`` proves it.

**The grid.** ``bins`` bins of width ``step`` end at t: bin k (k = 0 .. bins-1) covers the times
``(t - (bins-k)*step, t - (bins-1-k)*step]``, so the last bin ends at t. Per bin and variable:

- ``observed``: at least one observation falls in the bin;
- ``values``: the last observation in the bin (``aggregate="last"``) or their mean (``"mean"``); a bin
  without observations carries the most recent earlier value forward (also from before the window),
  unless it is older than ``max_carry`` (then NaN: not known, never 0);
- ``since_last``: time from the last observation at or before the bin's end to the bin's end (NaN
  when the variable was never observed up to then).

``summarize`` gives per-sample summary features for non-sequence baselines: the last observation and
its age (any time up to t), and the mean, min, max, least-squares slope (per time unit) and count of the
observations in the window ``(t - window, t]``.

``SequencePreprocessor`` learns per-variable normalisation on training samples only and turns samples
into float32 arrays of shape (n, T, 3C): normalised values, observation masks and scaled time since the
last observation; its fitted state is JSON (``to_state`` / ``from_state``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from precimed.errors import ArtifactError, ConfigError, DataError, SchemaError, ValueRangeError
from precimed.preprocess.encoders import require_fitted
from precimed.preprocess.state import STATE_FORMAT, check_state
from precimed.preprocess.tabular import TabularPreprocessor, jsonable, normalize_features
from precimed.schema import examples, outside_range, require_columns

__all__ = [
    "STATE_FORMAT",
    "SUMMARY_STATS",
    "Grid",
    "SequencePreprocessor",
    "landmark_samples",
    "resample",
    "summarize",
]

SUMMARY_STATS = ("last", "age", "mean", "min", "max", "slope", "count")
LAST_STATS = ("last", "age")
WHERE = "SequencePreprocessor"


@dataclass
class Grid:
    """Observations of n samples on T bins for C variables (see the module docstring)."""

    ids: np.ndarray
    times: np.ndarray
    variables: list[str]
    step: float
    offsets: np.ndarray
    values: np.ndarray
    observed: np.ndarray
    since_last: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.values.shape  # type: ignore[return-value]


def landmark_samples(ids: Sequence[Any] | np.ndarray | pd.Index, at: float | Sequence[float] | np.ndarray
                     ) -> pd.Series:
    """Samples for the given patients at one prediction time (a landmark) or one time each."""
    ids = list(ids)
    times = np.broadcast_to(np.asarray(at, dtype=float), (len(ids),)).copy()
    return pd.Series(times, index=pd.Index(ids, name="patient_id"), name="time")


def _samples(samples: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(samples, pd.Series):
        raise ConfigError("samples must be a pandas Series: index = patient id, values = prediction time "
                          "(see landmark_samples)")
    times = pd.to_numeric(samples, errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(times).all():
        bad = samples.index[~np.isfinite(times)]
        raise DataError(f"prediction time missing or not a number for patient id(s) {examples(bad)}",
                        column="time", rows=examples(bad))
    return samples.index.to_numpy(), times


def _check_ids(obs: pd.DataFrame, ids: np.ndarray) -> None:
    if len(obs) == 0 or len(ids) == 0:
        return
    obs_numeric = pd.api.types.is_numeric_dtype(obs["patient_id"])
    ids_numeric = pd.api.types.is_numeric_dtype(pd.Series(ids))
    if obs_numeric != ids_numeric:
        kinds = {True: "numbers", False: "text"}
        raise SchemaError(f"patient ids of the observations are {kinds[obs_numeric]} but those of the samples are "
                          f"{kinds[ids_numeric]} (e.g. {examples(obs['patient_id'], 2)} vs {examples(ids, 2)}); "
                          "give both the same type", column="patient_id")


def _visible(obs: pd.DataFrame, samples: pd.Series, variables: Sequence[str], *, inclusive: bool
             ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Observations of each sample's patient at or before (or strictly before) its prediction time.

    Returns the joined rows with ``sample`` (row of `samples`), ``var`` (index into `variables`),
    ``time``, ``value`` and ``offset`` = t - time >= 0, sorted by sample, variable and time.
    """
    require_columns(obs, ["patient_id", "time", "variable", "value"], where="observations")
    ids, times = _samples(samples)
    _check_ids(obs, ids)
    position = {v: i for i, v in enumerate(variables)}
    kept = obs[obs["variable"].isin(position) & obs["value"].notna()]
    frame = pd.DataFrame({"patient_id": ids, "sample": np.arange(len(ids)), "t": times})
    m = kept[["patient_id", "time", "variable", "value"]].merge(frame, on="patient_id", how="inner")
    offset = m["t"].to_numpy() - m["time"].to_numpy(dtype=float)
    keep = offset >= 0 if inclusive else offset > 0
    m = m[keep]
    out = pd.DataFrame({"sample": m["sample"].to_numpy(), "var": m["variable"].map(position).to_numpy(dtype=int),
                        "time": m["time"].to_numpy(dtype=float), "value": m["value"].to_numpy(dtype=float),
                        "offset": offset[keep]})
    out = out.sort_values(["sample", "var", "time"], kind="mergesort").reset_index(drop=True)
    return out, ids, times


def _rows_up_to(obs: pd.DataFrame, samples: pd.Series, *, inclusive: bool) -> pd.DataFrame:
    """The observations visible to at least one sample (its patient's, at or before its prediction time)."""
    require_columns(obs, ["patient_id", "time"], where="observations")
    ids, times = _samples(samples)
    _check_ids(obs, ids)
    latest = pd.Series(times, index=ids).groupby(level=0).max()
    limit = obs["patient_id"].map(latest).to_numpy(dtype=float)
    when = obs["time"].to_numpy(dtype=float)
    keep = ~np.isnan(limit) & ((when <= limit) if inclusive else (when < limit))
    return obs[keep]


def resample(obs: pd.DataFrame, samples: pd.Series, variables: Sequence[str], *, step: float, bins: int,
             aggregate: str = "last", max_carry: float | None = None, inclusive: bool = True) -> Grid:
    """Put each sample's history on ``bins`` bins of width ``step`` ending at its prediction time."""
    if not (step > 0 and math.isfinite(step)):
        raise ConfigError(f"step must be a positive number, got {step!r}")
    if int(bins) < 1:
        raise ConfigError(f"bins must be at least 1, got {bins!r}")
    if aggregate not in ("last", "mean"):
        raise ConfigError(f"aggregate must be 'last' or 'mean', got {aggregate!r}")
    if max_carry is not None and max_carry < 0:
        raise ConfigError(f"max_carry must be >= 0 or None (no limit), got {max_carry!r}")
    variables = list(variables)
    T, C = int(bins), len(variables)
    m, ids, times = _visible(obs, samples, variables, inclusive=inclusive)
    n = len(ids)
    # bucket 0 holds the last observation before the window (for carrying forward); buckets 1..T the bins
    j = np.floor(m["offset"].to_numpy() / step).astype(np.int64)
    bucket = np.maximum(T - j, 0)
    m = m.assign(bucket=bucket)
    grouped = m.groupby(["sample", "var", "bucket"], sort=False)
    agg = grouped.agg(last=("value", "last"), mean=("value", "mean"), latest=("time", "max")).reset_index()
    s, c, b = (agg[col].to_numpy(dtype=np.int64) for col in ("sample", "var", "bucket"))
    val = np.full((n, T + 1, C), np.nan)
    when = np.full((n, T + 1, C), np.nan)
    has = np.zeros((n, T + 1, C), dtype=bool)
    chosen = np.where((b == 0) | (aggregate == "last"), agg["last"].to_numpy(), agg["mean"].to_numpy())
    val[s, b, c] = chosen
    when[s, b, c] = agg["latest"].to_numpy()
    has[s, b, c] = True
    index = np.where(has, np.arange(T + 1)[None, :, None], -1)
    index = np.maximum.accumulate(index, axis=1)
    seen = index >= 0
    safe = np.clip(index, 0, None)
    carried = np.where(seen, np.take_along_axis(val, safe, axis=1), np.nan)[:, 1:]
    latest = np.where(seen, np.take_along_axis(when, safe, axis=1), np.nan)[:, 1:]
    offsets = step * (np.arange(T, dtype=float) - (T - 1))  # bin ends relative to t; the last is 0
    bin_end = times[:, None, None] + offsets[None, :, None]
    since = bin_end - latest
    observed = has[:, 1:]
    available = ~np.isnan(latest) if max_carry is None else observed | (since <= max_carry)
    values = np.where(available, carried, np.nan)
    return Grid(ids, times, variables, float(step), offsets, values, observed, since)


def summarize(obs: pd.DataFrame, samples: pd.Series, variables: Sequence[str], *, window: float,
              inclusive: bool = True, stats: Sequence[str] = SUMMARY_STATS) -> pd.DataFrame:
    """Summary features per sample: ``<variable>_<stat>`` for stat in `stats` (see ``SUMMARY_STATS``).

    ``last`` / ``age``: the most recent observation at or before t and t minus its time (NaN if none);
    ``mean`` / ``min`` / ``max`` / ``slope`` / ``count`` over the window (t - window, t]; the slope is
    the least-squares change per time unit (NaN with fewer than two distinct times); the count is 0,
    and the other statistics NaN, when the window holds no observation. Index: the samples' patient ids.
    """
    unknown = [s for s in stats if s not in SUMMARY_STATS]
    if unknown:
        raise ConfigError(f"unknown summary statistic(s) {unknown}; choose from {list(SUMMARY_STATS)}")
    if not (window > 0 and math.isfinite(window)):
        raise ConfigError(f"window must be a positive number, got {window!r}")
    variables = list(variables)
    m, ids, times = _visible(obs, samples, variables, inclusive=inclusive)
    n, C = len(ids), len(variables)
    out: dict[str, np.ndarray] = {}
    table = {stat: np.full((n, C), np.nan) for stat in SUMMARY_STATS}
    table["count"] = np.zeros((n, C))
    if len(m):
        last = m.groupby(["sample", "var"], sort=False).agg(value=("value", "last"), offset=("offset", "min"))
        s, c = (last.index.get_level_values(k).to_numpy() for k in (0, 1))
        table["last"][s, c] = last["value"].to_numpy()
        table["age"][s, c] = last["offset"].to_numpy()
        w = m[m["offset"].to_numpy() < window]
        if len(w):
            x = -w["offset"].to_numpy()
            y = w["value"].to_numpy()
            g = pd.DataFrame({"sample": w["sample"].to_numpy(), "var": w["var"].to_numpy(), "y": y, "x": x,
                              "xx": x * x, "xy": x * y})
            sums = g.groupby(["sample", "var"], sort=False).agg(
                count=("y", "size"), mean=("y", "mean"), min=("y", "min"), max=("y", "max"), sx=("x", "sum"),
                sy=("y", "sum"), sxx=("xx", "sum"), sxy=("xy", "sum"))
            s, c = (sums.index.get_level_values(k).to_numpy() for k in (0, 1))
            k = sums["count"].to_numpy(dtype=float)
            for stat in ("count", "mean", "min", "max"):
                table[stat][s, c] = sums[stat].to_numpy(dtype=float)
            denom = k * sums["sxx"].to_numpy() - sums["sx"].to_numpy() ** 2
            numer = k * sums["sxy"].to_numpy() - sums["sx"].to_numpy() * sums["sy"].to_numpy()
            scale = np.maximum(k * sums["sxx"].to_numpy(), 1e-300)
            ok = (k >= 2) & (denom > 1e-9 * scale)
            table["slope"][s, c] = np.where(ok, numer / np.where(ok, denom, 1.0), np.nan)
    for j, variable in enumerate(variables):
        for stat in stats:
            out[f"{variable}_{stat}"] = table[stat][:, j]
    return pd.DataFrame(out, index=pd.Index(ids, name="patient_id"))


# --------------------------------------------------------------------------------------------------
# the fitted preprocessor
# --------------------------------------------------------------------------------------------------
class SequencePreprocessor(BaseEstimator):
    """Long-format observations → (n, T, 3C) float32 sequences and baseline summary features.

    Fitted on the training samples only, from the observations they can see (at or before their
    prediction times). Per variable: plausible-range guard (values outside the
    declared range are dropped, i.e. not observed, and counted in ``range_report_``), ``log1p`` where
    declared, then centring and scaling by the mean and sd of the training samples' visible
    observations (those at or before each sample's prediction time).

    Parameters
    ----------
    variables : list of dict (``FeatureConfig`` fields: name, kind numeric or binary, unit, range, log)
    step, bins : bin width (time units) and number of bins; the window is ``step * bins``.
    max_carry : carry a value forward at most this long (time units); None: no limit; 0: never.
    aggregate : "last" or "mean" of the observations inside a bin.
    inclusive : observations at the prediction time itself are used (True) or not (False).
    summary_window : window of the summary statistics (default: the grid's window).
    delta_cap : the time-since-last channel is ``since / window`` clipped to [0, delta_cap]; a variable
        never observed gets ``delta_cap``.

    Output channels of ``transform``, for C variables: ``[values (C), observed masks (C), since-last
    (C)]``; ``mask_channels_ = (C, 2C)`` locates the masks (the Transformer uses them to mask empty bins).
    ``summary(obs, samples, "last")`` gives ``<var>_last`` and ``<var>_age`` on the model's scale (log
    where declared) with NaN kept (for gradient boosting); ``summary(..., "summary")`` gives every
    statistic of ``SUMMARY_STATS``, imputed with training medians, missing indicators added, and
    standardised (for logistic / Cox regression).
    """

    def __init__(self, variables=None, step=1.0, bins=8, max_carry=None, aggregate="last", inclusive=True,
                 summary_window=None, delta_cap=2.0):
        self.variables = variables
        self.step = step
        self.bins = bins
        self.max_carry = max_carry
        self.aggregate = aggregate
        self.inclusive = inclusive
        self.summary_window = summary_window
        self.delta_cap = delta_cap

    # -- parameters and input -----------------------------------------------------------------------
    @property
    def window(self) -> float:
        return float(self.step) * int(self.bins)

    def _window_summary(self) -> float:
        return float(self.summary_window) if self.summary_window is not None else self.window

    def _declared(self) -> list[dict]:
        if self.variables is None:
            raise ConfigError(f"{WHERE}: declare the longitudinal variables (name, kind, unit, range, log)")
        declared = normalize_features(self.variables)
        wrong = [f["name"] for f in declared if f["kind"] not in ("numeric", "binary")]
        if wrong:
            raise ConfigError(f"{WHERE}: longitudinal variables must be numeric or binary; {wrong} are not")
        return declared

    def _prepare(self, obs: pd.DataFrame, *, report: dict | None) -> pd.DataFrame:
        """The declared variables' observations: range-guarded, binary-checked, log-transformed."""
        require_columns(obs, ["patient_id", "time", "variable", "value"], where=f"{WHERE} observations")
        features = {f["name"]: f for f in self.variables_}
        kept = obs[obs["variable"].isin(features) & obs["value"].notna()]
        parts = []
        for name, f in features.items():
            part = kept[kept["variable"] == name]
            values = part["value"].astype(float)
            low, high = (None, None) if f.get("range") is None else (float(f["range"][0]), float(f["range"][1]))
            bad = outside_range(values, low, high).to_numpy()
            if bad.any():
                if report is not None:
                    report[name] = {"count": int(bad.sum()), "low": low, "high": high, "unit": f.get("unit"),
                                    "ids": jsonable(examples(pd.unique(part["patient_id"][bad]), 20)),
                                    "values": jsonable(examples(values[bad], 20))}
                part, values = part[~bad], values[~bad]
            if f["kind"] == "binary":
                wrong = ~values.isin([0.0, 1.0]).to_numpy()
                if wrong.any():
                    raise SchemaError(f"{WHERE}: binary variable {name!r} has value(s) {examples(values[wrong])} "
                                      f"for patient id(s) {examples(part['patient_id'][wrong])}; expected 0 or 1 "
                                      "(declare it numeric if it has more levels)", column=name,
                                      rows=examples(part["patient_id"][wrong]))
            if f.get("log"):
                negative = (values < 0).to_numpy()
                if negative.any():
                    raise ValueRangeError(f"{WHERE}: {name!r} is log-transformed (log1p) but has negative value(s) "
                                          f"{examples(values[negative])} for patient id(s) "
                                          f"{examples(part['patient_id'][negative])}; fix them or declare a range",
                                          column=name, rows=examples(part["patient_id"][negative]))
                values = np.log1p(values)
            parts.append(part.assign(value=values.to_numpy()))
        if not parts:
            return kept.iloc[:0]
        return pd.concat(parts, ignore_index=True)

    # -- fit -----------------------------------------------------------------------------------------
    def fit(self, obs: pd.DataFrame, samples: pd.Series) -> SequencePreprocessor:
        """Learn normalisation and summary statistics from the training samples' visible observations."""
        for name in ("step", "delta_cap"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ConfigError(f"{WHERE}: {name} must be a positive number, got {value!r}")
        if not (isinstance(self.bins, int | np.integer) and self.bins >= 1):
            raise ConfigError(f"{WHERE}: bins must be a positive integer, got {self.bins!r}")
        if self.summary_window is not None and not self.summary_window > 0:
            raise ConfigError(f"{WHERE}: summary_window must be positive, got {self.summary_window!r}")
        self.variables_ = self._declared()
        names = [f["name"] for f in self.variables_]
        report: dict[str, Any] = {}
        # only what the training samples can see: no statistic (nor the range report) looks ahead
        prepared = self._prepare(_rows_up_to(obs, samples, inclusive=self.inclusive), report=report)
        visible, _, _ = _visible(prepared, samples, names, inclusive=self.inclusive)
        center, scale = [], []
        for j, f in enumerate(self.variables_):
            values = visible["value"].to_numpy()[visible["var"].to_numpy() == j]
            if len(values) == 0:
                raise DataError(f"{WHERE}: variable {f['name']!r} has no observation at or before the prediction "
                                f"time in the {len(samples)} training sample(s); drop it or supply data",
                                column=f["name"])
            sd = float(values.std())
            center.append(float(values.mean()))
            scale.append(sd if math.isfinite(sd) and sd > 1e-12 else 1.0)
        self.center_, self.scale_ = center, scale
        self.range_report_ = report
        raw = summarize(prepared, samples, names, window=self._window_summary(), inclusive=self.inclusive)
        usable = [c for c in raw.columns if raw[c].notna().any()]
        self.summary_columns_ = usable
        self.summary_preprocessor_ = TabularPreprocessor(impute="median", missing_indicators=True,
                                                         scale="standard").fit(raw[usable])
        self.n_samples_fit_ = len(samples)
        return self

    @property
    def channel_names_(self) -> list[str]:
        require_fitted(self, "center_")
        names = [f["name"] for f in self.variables_]
        return names + [f"{n}_observed" for n in names] + [f"{n}_since_last" for n in names]

    @property
    def mask_channels_(self) -> tuple[int, int]:
        require_fitted(self, "center_")
        C = len(self.variables_)
        return C, 2 * C

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.channel_names_, dtype=object)

    # -- transform -----------------------------------------------------------------------------------
    def grid(self, obs: pd.DataFrame, samples: pd.Series) -> Grid:
        """The (log-transformed, unnormalised) grid of the samples."""
        require_fitted(self, "center_")
        prepared = self._prepare(obs, report=None)
        return resample(prepared, samples, [f["name"] for f in self.variables_], step=float(self.step),
                        bins=int(self.bins), aggregate=self.aggregate, max_carry=self.max_carry,
                        inclusive=self.inclusive)

    def transform(self, obs: pd.DataFrame, samples: pd.Series) -> np.ndarray:
        """(n, T, 3C) float32: normalised values (0 = training mean where unknown), masks, since-last."""
        g = self.grid(obs, samples)
        center = np.asarray(self.center_)[None, None, :]
        scale = np.asarray(self.scale_)[None, None, :]
        values = np.nan_to_num((g.values - center) / scale, nan=0.0)
        since = np.clip(g.since_last / self.window, 0.0, float(self.delta_cap))
        since = np.where(np.isnan(since), float(self.delta_cap), since)
        return np.concatenate([values, g.observed.astype(float), since], axis=2).astype(np.float32)

    def summary_names(self, view: str) -> list[str]:
        require_fitted(self, "center_")
        if view == "last":
            return [f"{f['name']}_{s}" for f in self.variables_ for s in LAST_STATS]
        if view == "summary":
            return [str(n) for n in self.summary_preprocessor_.get_feature_names_out()]
        raise ConfigError(f"view must be 'last' or 'summary', got {view!r}")

    def summary(self, obs: pd.DataFrame, samples: pd.Series, view: str = "summary") -> np.ndarray:
        """Baseline features per sample: ``"last"`` (NaN kept) or ``"summary"`` (imputed, standardised)."""
        require_fitted(self, "center_")
        if view not in ("last", "summary"):
            raise ConfigError(f"view must be 'last' or 'summary', got {view!r}")
        prepared = self._prepare(obs, report=None)
        names = [f["name"] for f in self.variables_]
        if view == "last":
            raw = summarize(prepared, samples, names, window=self._window_summary(), inclusive=self.inclusive,
                            stats=LAST_STATS)
            return raw.to_numpy(dtype=np.float32)
        raw = summarize(prepared, samples, names, window=self._window_summary(), inclusive=self.inclusive)
        return self.summary_preprocessor_.transform(raw[self.summary_columns_])

    # -- JSON state ----------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        require_fitted(self, "center_")
        return jsonable({
            "format": STATE_FORMAT,
            "estimator": type(self).__name__,
            "params": self.get_params(deep=False),
            "variables": self.variables_,
            "center": self.center_,
            "scale": self.scale_,
            "range_report": self.range_report_,
            "summary_columns": self.summary_columns_,
            "summary_preprocessor": self.summary_preprocessor_.to_state(),
            "n_samples_fit": self.n_samples_fit_,
        })

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SequencePreprocessor:
        expected = {"format", "estimator", "params", "variables", "center", "scale", "range_report",
                    "summary_columns", "summary_preprocessor", "n_samples_fit"}
        check_state(state, cls, expected, "a sequence preprocessor")
        try:
            new = cls(**state["params"])
        except TypeError as exc:
            raise ArtifactError(f"{cls.__name__}.from_state: unexpected parameters: {exc}") from None
        new.variables_ = [dict(v) for v in state["variables"]]
        new.center_ = [float(v) for v in state["center"]]
        new.scale_ = [float(v) for v in state["scale"]]
        new.range_report_ = dict(state["range_report"])
        new.summary_columns_ = list(state["summary_columns"])
        new.summary_preprocessor_ = TabularPreprocessor.from_state(state["summary_preprocessor"])
        new.n_samples_fit_ = int(state["n_samples_fit"])
        return new
